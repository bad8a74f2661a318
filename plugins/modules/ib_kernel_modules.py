#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: hpcnet.infiniband contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Kernel modules of the InfiniBand stack: typed options, persistence, loading, openib.conf.

Why not community.general.modprobe? It takes options as one free string (nothing to validate against
the card), fails the task when modprobe cannot find a module (a host without the module, like our lab,
could never converge), reads /proc/modules and /lib/modules directly (no way to point it at a test
tree), has no diff mode, writes ``/etc/modprobe.d/<name>.conf`` non-atomically and comments out
``options`` lines of that module in every other file of /etc/modprobe.d. We keep its good idea (one
options file per module plus a modules-load.d list) and add the option model.
"""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: ib_kernel_modules
short_description: Load and persist InfiniBand kernel modules with validated options
version_added: 0.1.0
description:
  - Renders module options from a typed model into C(/etc/modprobe.d/hpcnet-<module>.conf) (one
    C(options) line per option), lists the modules to load at boot in
    C(/etc/modules-load.d/hpcnet-infiniband.conf), sets MLNX_OFED's C(/etc/infiniband/openib.conf)
    keys (C(E_IPOIB_LOAD) for EIPoIB) while keeping every other line, and loads the modules with
    C(modprobe).
  - Refuses before writing anything, with one message per problem, an unknown module or option name, a
    value of the wrong type or out of range, a mlx4_core C(port_type_array) whose length differs from the
    number of ports of the detected card, C(num_vfs) above the card limit (ConnectX-3 16, ConnectX-3 Pro
    128, or the firmware's C(sriov_totalvfs)), MLNX_OFED-only options or modules on the inbox stack, and
    EIPoIB on a card or stack that cannot do it (it needs MLNX_OFED and a ConnectX-3 class card with an
    InfiniBand port).
  - Refuses a module name that neither the collection nor the host knows (see O(allow_unknown)).
  - A module that modprobe cannot find is reported as C(skipped_not_available) with the reason, never as
    loaded; the files are written all the same so that it loads at the next boot when it is there.
  - When options of a loaded module change the result says so (C(reload_required), or
    C(reboot_required) for the HCA drivers mlx4_core/mlx5_core); the module never reloads or reboots.
  - When the options of a module that the initramfs of the running kernel contains change (C(lsinitramfs)
    on Debian/Ubuntu, C(lsinitrd) on EL; often C(mlx4_core), C(mlx5_core), C(ib_ipoib)), the image keeps
    the old options until it is rebuilt, so RV(initramfs_rebuild) is true with RV(initramfs_reason) and
    RV(initramfs_rebuild_argv), and C(reboot_required) is true. The C(ofed) role then rebuilds the image.
author:
  - hpcnet.infiniband developers (@hpcnet)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - hpcnet.infiniband.host
  - hpcnet.infiniband.host.fs_root
options:
  modules:
    description:
      - Kernel modules to load now and at every boot (for example C(ib_ipoib), C(ib_umad), C(rdma_ucm),
        C(mlx5_ib)). C(eth_ipoib) is added when O(eipoib=true).
    type: list
    elements: str
    default: []
  allow_unknown:
    description:
      - Module names in O(modules) that are expected although nothing knows them yet. Without this, a name
        that is not in the collection's list of RDMA modules, not loaded or built in, not in the running
        kernel's C(modules.dep)/C(modules.builtin) and not found by C(modprobe --dry-run) is refused (a
        misspelt C(ib_ipiob) is never persisted).
    type: list
    elements: str
    default: []
  hca_modules:
    description:
      - Add the RDMA module of every Mellanox card found (C(mlx4_ib) for ConnectX-3, C(mlx5_ib) for
        ConnectX-4 and later) to O(modules).
    type: bool
    default: false
  options:
    description:
      - Module options, a mapping of module name to a mapping of option name to value. Known modules and options are listed in the
        collection's docs/ofed.md; for example C(mlx4_core) C(port_type_array) (list of 1 = InfiniBand or
        2 = Ethernet, or C(ib)/C(eth), one per port), C(num_vfs) and C(probe_vf) (N, or
        C([port1, port2, port1+2])), C(log_num_mgm_entry_size), C(enable_64b_cqe_eqe); C(ib_ipoib)
        C(send_queue_size)/C(recv_queue_size) (powers of two, 2..8192) and C(ipoib_enhanced) (MLNX_OFED).
      - A module given with an empty mapping has its options file removed.
    type: dict
    default: {}
  eipoib:
    description:
      - C(true) loads C(eth_ipoib) and sets C(E_IPOIB_LOAD=yes) in openib.conf; C(false) sets
        C(E_IPOIB_LOAD=no) (on MLNX_OFED hosts); unset leaves EIPoIB alone.
    type: bool
  openib_conf:
    description:
      - Other C(/etc/infiniband/openib.conf) settings, a mapping of C(KEY) to value; booleans become C(yes)/C(no).
        MLNX_OFED only.
    type: dict
    default: {}
  persist:
    description: Write the modules-load.d list so that O(modules) load at boot.
    type: bool
    default: true
  load:
    description: Load O(modules) now with C(modprobe).
    type: bool
    default: true
  stack:
    description:
      - The stack the operator expects. C(auto) accepts what is detected; C(inbox) or C(mlnx_ofed) refuse
        a host that runs the other one.
    type: str
    choices: [auto, inbox, mlnx_ofed]
    default: auto
attributes:
  platform:
    platforms: posix
  check_mode:
    support: full
  diff_mode:
    support: full
    details: Before and after text of every file written or removed.
notes:
  - Check mode runs C(modprobe --dry-run) only; the modules that would be loaded have status C(would_load).
seealso:
  - module: hpcnet.infiniband.ib_ofed_info
"""

EXAMPLES = r"""
- name: ConnectX-3 with two IB ports, 8 VFs, IPoIB queues, EIPoIB (MLNX_OFED)
  hpcnet.infiniband.ib_kernel_modules:
    modules: [mlx4_ib, ib_ipoib, ib_umad, rdma_ucm]
    options:
      mlx4_core:
        port_type_array: [ib, ib]
        num_vfs: 8
        probe_vf: 0
        log_num_mgm_entry_size: -1
      ib_ipoib:
        send_queue_size: 512
        recv_queue_size: 512
    eipoib: true
  register: ib_modules

- name: Tell the operator when a reboot is needed
  ansible.builtin.debug:
    msg: "Reboot {{ inventory_hostname }} to apply the new mlx4_core options"
  when: ib_modules.reboot_required
"""

RETURN = r"""
changed:
  description: Whether a file was written or a module loaded (or would be, in check mode).
  returned: always
  type: bool
plan:
  description: The changes, in order (C(write_file), C(remove_file), C(load_module)).
  returned: always
  type: list
  elements: dict
  sample: [{"action": "write_file", "target": "/etc/modprobe.d/hpcnet-ib_ipoib.conf", "before": null,
            "after": "...", "detail": {"mode": 420}}]
reboot_required:
  description: Options of a loaded HCA driver (mlx4_core, mlx5_core) changed, or options of a module in the
    initramfs; they apply after a reboot.
  returned: always
  type: bool
initramfs_rebuild:
  description: True when the options of a module that the initramfs contains change.
  returned: always
  type: bool
initramfs_reason:
  description: Why the initramfs must be rebuilt (null when it need not).
  returned: always
  type: str
initramfs_rebuild_argv:
  description: The command that rebuilds it on this host (C(update-initramfs -u -k all), C(dracut -f)), or null.
  returned: always
  type: list
  elements: str
reload_required:
  description: Options of another loaded module, or openib.conf, changed; reloading the module (or
    restarting openibd) applies them.
  returned: always
  type: bool
stack:
  description: The detected stack.
  returned: always
  type: dict
  sample: {"stack": "inbox", "ofed_version": null, "module_versions": {}, "evidence": ["..."]}
cards:
  description: RDMA cards found (physical functions), with ports, link layers and VF limit.
  returned: always
  type: list
  elements: dict
modules:
  description:
    - Per module, C(status) (C(loaded), C(already_loaded), C(would_load), C(skipped_not_available),
      C(not_loaded), C(options_only), C(failed)), C(reason) when not loaded, C(state_before), the
      rendered C(options) and C(persistent).
  returned: always
  type: dict
  sample: {"ib_ipoib": {"status": "skipped_not_available", "reason": "modprobe: FATAL: Module ib_ipoib not
           found", "state_before": "absent", "persistent": true}}
files:
  description: Files this module manages and whether they should exist (C(present)/C(absent)).
  returned: always
  type: dict
diff:
  description: Before/after text of every file (diff mode).
  returned: when diff mode is on
  type: list
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.hpcnet.infiniband.plugins.module_utils import _ofed
from ansible_collections.hpcnet.infiniband.plugins.module_utils import _modprobe
from ansible_collections.hpcnet.infiniband.plugins.module_utils._host import Host, HostError
from ansible_collections.hpcnet.infiniband.plugins.module_utils._plan import run_plan


def main():
    module = AnsibleModule(
        argument_spec=dict(
            modules=dict(type="list", elements="str", default=[]),
            allow_unknown=dict(type="list", elements="str", default=[]),
            hca_modules=dict(type="bool", default=False),
            options=dict(type="dict", default={}),
            eipoib=dict(type="bool"),
            openib_conf=dict(type="dict", default={}),
            persist=dict(type="bool", default=True),
            load=dict(type="bool", default=True),
            stack=dict(type="str", choices=["auto", "inbox", "mlnx_ofed"], default="auto"),
            sysfs_root=dict(type="path", default="/sys"),
            fs_root=dict(type="path", default="/"),
        ),
        supports_check_mode=True,
    )
    params = module.params
    host = Host.from_module(module, sysfs_root=params["sysfs_root"], fs_root=params["fs_root"])
    want_modules = [_modprobe.normalize_module_name(m) for m in params["modules"] if _modprobe.valid_module_name(m)]
    if params["eipoib"]:
        want_modules.append("eth_ipoib")
    option_modules = [_modprobe.normalize_module_name(m) for m in params["options"]
                      if _modprobe.valid_module_name(m) and _modprobe.normalize_module_name(m) in _modprobe.MODULES]
    try:
        have = _ofed.read_have(host, want_modules, option_modules, check_availability=params["load"],
                               hca_modules=params["hca_modules"])
    except HostError as exc:
        module.fail_json(msg="cannot read the host: %s" % exc)
    plan, report = _ofed.plan_kernel_modules(params, have)
    initramfs = _modprobe.plan_initramfs(host, plan, plan.info.get("options_changed", {}))
    if module.check_mode:
        _ofed.check_mode_report(report, plan)
    extra = {"stack": have["stack"], "cards": [_ofed.public_card(c) for c in have["cards"]],
             "modules": report["modules"], "files": report["files"]}
    extra.update(initramfs)

    def apply(the_plan):
        try:
            applied = _ofed.apply_kernel_modules(host, the_plan, report)
        except HostError as exc:
            module.fail_json(msg=str(exc), **dict(the_plan.result(), **extra))
        if applied["failures"]:
            module.fail_json(msg="modprobe failed for %s (the files are written)" % ", ".join(applied["failures"]),
                             **dict(the_plan.result(), **extra))
        return {"modules": report["modules"]}

    run_plan(module, plan, apply, extra)


if __name__ == "__main__":
    main()
