#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: hpcnet.infiniband contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: ib_boot_state
short_description: Desired-state file and boot unit that bring VFs, VF GUIDs and IPoIB interfaces back at boot
version_added: "0.2.0"
description:
  - Writes the desired-state file C(/etc/hpcnet-infiniband/boot-state.json) with the parameters of
    M(hpcnet.infiniband.ib_sriov) and M(hpcnet.infiniband.ib_ipoib) runs, and installs the systemd oneshot
    C(hpcnet-ib-boot.service) that applies it early at boot, ordered before C(network-pre.target), through
    the same code as those modules (C(/usr/local/sbin/hpcnet-ib-boot) with copies of the collection's
    module_utils under C(/usr/local/lib/hpcnet-infiniband)). See docs/boot.md for why a oneshot and not a
    udev rule.
  - Every file carries a C(Managed by hpcnet.infiniband) marker line; a file at one of these paths without it
    is never overwritten (the module refuses, naming it).
  - Enables the unit when it is not enabled, with C(systemctl enable), which also works without a running
    systemd (it makes the C([Install]) symlinks, so an image built in a chroot or container boots with the unit
    enabled); runs C(systemctl daemon-reload) only when systemd is PID 1 and the unit file changed. Without
    C(systemctl) on the host it writes the files only and returns RV(enabled=null).
  - At boot, entries whose PF or parent interface is absent are logged and skipped (exit 0); the boot path
    never writes files and never queries the firmware.
author:
  - hpcnet.infiniband developers (@hpcnet)
extends_documentation_fragment:
  - hpcnet.infiniband.host.fs_root
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
  platform:
    platforms: posix
options:
  sriov:
    description:
      - Parameters of M(hpcnet.infiniband.ib_sriov), one dict per PF. The M(hpcnet.infiniband.boot_state) role
        resolves them through the module itself, so they are complete and typed.
      - At boot their C(persist) and C(firmware_info) are ignored (no files, no firmware query).
    type: list
    elements: dict
    default: []
  ipoib:
    description:
      - Parameters of M(hpcnet.infiniband.ib_ipoib), one dict per interface, complete, applied after O(sriov).
    type: list
    elements: dict
    default: []
  state:
    description: V(absent) removes the files (and disables the unit under systemd).
    type: str
    choices: [present, absent]
    default: present
  enable:
    description: Enable the unit (where C(systemctl) exists).
    type: bool
    default: true
  python:
    description: Interpreter of the boot script on the host.
    type: path
    default: /usr/bin/python3
seealso:
  - module: hpcnet.infiniband.ib_sriov
  - module: hpcnet.infiniband.ib_ipoib
"""

EXAMPLES = r"""
- name: VFs with GUIDs and a P_Key child come back at boot
  hpcnet.infiniband.ib_boot_state:
    sriov:
      - {pf: ib0, num_vfs: 8, force: false, guid_policy: derived, persist: false, firmware_info: false,
         mlx4_options_path: /etc/modprobe.d/hpcnet-mlx4-sriov.conf, timeout: 120, sysfs_root: /sys, fs_root: /}
    ipoib:
      - {parent: ib0, pkey: "0x8002", membership: full, state: present, mode: connected, mtu: 65520,
         pkey_check: warn, port_ib_mtu: 4096, timeout: 30, sysfs_root: /sys}

- name: Remove the boot path
  hpcnet.infiniband.ib_boot_state:
    state: absent
"""

RETURN = r"""
changed:
  description: Whether a file or the unit's enablement changed (or would, in check mode).
  returned: always
  type: bool
plan:
  description: Changes (write_file, remove_file, systemctl) with target, before, after.
  returned: always
  type: list
  elements: dict
reboot_required:
  description: Always false (the state file only matters at the next boot).
  returned: always
  type: bool
reload_required:
  description: Always false.
  returned: always
  type: bool
state_path:
  description: The desired-state file.
  returned: always
  type: str
  sample: /etc/hpcnet-infiniband/boot-state.json
unit:
  description: The unit's name.
  returned: always
  type: str
  sample: hpcnet-ib-boot.service
systemd:
  description: Whether systemd is PID 1 on the host (only then is the unit run by this boot's systemd after a daemon-reload).
  returned: always
  type: bool
enabled:
  description: Whether the unit is enabled after the run; null when the host has no C(systemctl).
  returned: always
  type: bool
files:
  description: Every file of the boot path.
  returned: always
  type: list
  elements: str
applied:
  description: What was done, in order.
  returned: when changes were applied
  type: list
  elements: str
diff:
  description: Before/after of each change.
  returned: diff mode
  type: list
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.hpcnet.infiniband.plugins.module_utils import _boot
from ansible_collections.hpcnet.infiniband.plugins.module_utils._host import Host, HostError
from ansible_collections.hpcnet.infiniband.plugins.module_utils._plan import run_plan


def main():
    module = AnsibleModule(
        argument_spec=dict(
            sriov=dict(type="list", elements="dict", default=[]),
            ipoib=dict(type="list", elements="dict", default=[]),
            state=dict(type="str", choices=["present", "absent"], default="present"),
            enable=dict(type="bool", default=True),
            python=dict(type="path", default="/usr/bin/python3"),
            fs_root=dict(type="path", default="/"),
        ),
        supports_check_mode=True,
    )
    params = module.params
    host = Host.from_module(module, fs_root=params["fs_root"])
    try:
        want = _boot.wanted_files(params["sriov"], params["ipoib"], params["python"])
        have = _boot.read_have(host, list(want))
    except (_boot.BootError, HostError) as exc:
        module.fail_json(msg=str(exc))
    plan = _boot.plan_boot(have, want, params["state"], params["enable"])
    extra = {
        "state_path": _boot.STATE_PATH,
        "unit": _boot.UNIT_NAME,
        "systemd": have["systemd"],
        "enabled": plan.info.get("enabled"),
        "files": sorted(want),
    }

    def apply(the_plan):
        try:
            return _boot.apply_boot(host, the_plan)
        except HostError as exc:
            module.fail_json(msg=str(exc), **dict(the_plan.result(), **extra))

    run_plan(module, plan, apply, extra)


if __name__ == "__main__":
    main()
