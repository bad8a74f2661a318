#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: hpcnet.infiniband contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: ib_sriov
short_description: Set the SR-IOV VF count of a physical function and the GUIDs of its InfiniBand VFs
version_added: "0.1.0"
description:
  - Sets C(sriov_numvfs) of one physical function (PF) the way the kernel allows it. When the count
    changes it writes V(0), then the new count (the kernel refuses N to M directly with EBUSY). Each write
    is bounded by O(timeout) and read back.
  - Refuses a count above C(sriov_totalvfs) with the firmware cap and how to raise it
    (C(mstconfig -d <pci> set SRIOV_EN=1 NUM_OF_VFS=<n>), then reboot or C(mstfwreset)). On Mellanox
    cards the firmware settings are reported read-only when C(mstconfig) (Debian C(mstflint)) is installed.
  - Before a resize (which removes every VF) it refuses when a VF is in use, naming the VF and what
    holds it. In use means bound to a driver other than the PF's VF driver (for example C(vfio-pci)), a netdev that
    is up with addresses, or a netdev moved to another network namespace. O(force=true) overrides.
  - If a write fails midway (EBUSY, timeout) it puts the previous count back where possible and fails
    with the exact state of the PF.
  - ConnectX-3 (mlx4, PCI IDs 15b3 1003 and 15b3 1007) cannot change VFs through sysfs. For those the
    module writes the C(mlx4_core) options C(num_vfs)/C(probe_vf) (validated by the same option model as
    M(hpcnet.infiniband.ib_kernel_modules)) to its own C(/etc/modprobe.d) file, reports
    RV(reboot_required), and never writes C(sriov_numvfs).
  - The module owns only files it wrote (first line C(# Managed by hpcnet.infiniband (ib_sriov))). A file
    at O(mlx4_options_path) without that line is never rewritten nor removed; the module refuses, naming
    it, when it would have to change it.
  - When the C(mlx4_core) options change and the initramfs of the running kernel contains C(mlx4_core)
    (C(lsinitramfs) on Debian/Ubuntu, C(lsinitrd) on EL), RV(initramfs_rebuild) is true with
    RV(initramfs_reason) and RV(initramfs_rebuild_argv); the C(sriov) role then rebuilds the image.
  - InfiniBand VF GUIDs (node and port GUID of each VF) follow O(guid_policy). Each VF whose GUIDs change
    is unbound from its driver, gets its GUIDs (mlx5's per-VF sysfs, else
    C(ip link set dev <pf> vf N node_guid X port_guid Y)) and is bound again, so they take effect at once.
    A VF in use (bound to another driver, its netdev up, holding addresses or enslaved) is refused before
    any write unless O(force=true). They are never zero and never repeated on this PF; the C(sriov) role
    checks uniqueness across the inventory.
  - A refused run changes nothing and reports C(changed=false).
  - Everything is read through the facts model and the host seam; every refusal happens before any change.
author:
  - hpcnet.infiniband developers (@hpcnet)
extends_documentation_fragment:
  - hpcnet.infiniband.host
  - hpcnet.infiniband.host.fs_root
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: The plan (for example C(numvfs 0 -> 8) and the GUIDs to set) is returned; nothing is changed.
  diff_mode:
    support: full
  platform:
    platforms: posix
options:
  pf:
    description:
      - The physical function, by netdev name (V(ib0)) or PCI address (V(0000:82:00.0)).
    type: str
    required: true
  num_vfs:
    description:
      - Wanted number of VFs. V(0) removes all VFs.
    type: int
    required: true
  force:
    description:
      - Resize even when VFs are in use (they are destroyed).
    type: bool
    default: false
  guid_policy:
    description:
      - How VF node/port GUIDs are chosen. V(none) leaves them alone.
      - V(derived) computes them from the PF's port GUID and the VF index (SHA-256, locally
        administered EUI-64, so they never clash with vendor GUIDs and never are zero).
      - V(pool) takes them from O(guid_pool_start) (VF i gets start+2i and start+2i+1).
      - V(explicit) takes O(guids), one entry per VF.
    type: str
    choices: [none, derived, pool, explicit]
    default: none
  guid_pool_start:
    description:
      - First GUID of this PF's pool, with O(guid_policy=pool). Non-zero.
      - Any GUID spelling (V(0x0200000000001000), V(0200:0000:0000:1000), V(02:00:00:00:00:00:10:00));
        an integer is taken as its value.
    type: raw
  guids:
    description:
      - Node and port GUID of each VF in index order, with O(guid_policy=explicit).
    type: list
    elements: dict
    suboptions:
      node_guid:
        description: Node GUID of the VF (any GUID spelling, or an integer).
        type: raw
        required: true
      port_guid:
        description: Port GUID of the VF (any GUID spelling, or an integer).
        type: raw
        required: true
  persist:
    description:
      - Kept for compatibility; the module itself writes nothing for it. VF counts and GUIDs come back at
        boot through the boot service (C(hpcnet-ib-boot.service)), which replays the desired state the
        C(sriov) role records with this module's code. mlx4 options persist in their modprobe.d file.
      - The udev rule earlier versions wrote (C(/etc/udev/rules.d/70-hpcnet-sriov-<pci>.rules), keyed on
        the netdev name, which never matches renamed interfaces) is removed when it carries our marker.
    type: bool
    default: false
  mlx4_num_vfs_per_port:
    description:
      - mlx4 only, the per-port form of C(num_vfs) as [port 1, port 2, dual-port]; must add up to O(num_vfs).
        mlx4_core accepts single-port VFs only when every port of the card is Ethernet.
    type: list
    elements: int
  mlx4_probe_vf:
    description:
      - mlx4 only, VFs the PF driver probes itself (C(probe_vf)), N or [port 1, port 2, dual-port].
    type: raw
  mlx4_options_path:
    description:
      - For mlx4, the modprobe.d file this module owns. Must be C(/etc/modprobe.d/<name>.conf); any
        other path is refused before anything is written.
      - An existing file there without our marker line is the operator's and is never changed.
    type: path
    default: /etc/modprobe.d/hpcnet-sriov-mlx4.conf
  firmware_info:
    description:
      - On Mellanox PFs, read the firmware's C(SRIOV_EN)/C(NUM_OF_VFS) with C(mstconfig -d <pci> q)
        (read-only) and report them in RV(firmware) and in refusals.
    type: bool
    default: true
  timeout:
    description: Seconds each C(sriov_numvfs) write may take (creating many VFs takes time); 1 or more.
    type: int
    default: 120
notes:
  - The lab this collection is tested on has no real VFs; it answers C(sriov_numvfs) writes like the kernel.
seealso:
  - module: hpcnet.infiniband.ib_ipoib
  - module: hpcnet.infiniband.ib_kernel_modules
"""

EXAMPLES = r"""
- name: Eight VFs on the ConnectX-5 with GUIDs derived from the PF
  hpcnet.infiniband.ib_sriov:
    pf: ib0
    num_vfs: 8
    guid_policy: derived

- name: Shrink to four VFs even though a guest still holds one
  hpcnet.infiniband.ib_sriov:
    pf: "0000:82:00.0"
    num_vfs: 4
    force: true

- name: ConnectX-3 -- plan mlx4_core options (takes effect after a reboot)
  hpcnet.infiniband.ib_sriov:
    pf: ib0
    num_vfs: 8
    mlx4_probe_vf: 1
  register: cx3_sriov
"""

RETURN = r"""
changed:
  description: Whether anything was (or in check mode would be) changed.
  returned: always
  type: bool
plan:
  description:
    - The changes, each with action (V(set_numvfs), V(unbind_vf), V(set_vf_guid), V(bind_vf), V(write_file),
      V(remove_file)), target, before, after. Empty when the run is refused.
  returned: always
  type: list
  elements: dict
  sample: [{"action": "set_numvfs", "target": "0000:82:00.0/sriov_numvfs", "before": 0, "after": 8}]
reboot_required:
  description: True for mlx4 when the wanted VF count is not yet the running one, or the initramfs must be rebuilt.
  returned: always
  type: bool
initramfs_rebuild:
  description: True when the C(mlx4_core) options change and the initramfs contains C(mlx4_core).
  returned: success
  type: bool
initramfs_reason:
  description: Why the initramfs must be rebuilt (null when it need not).
  returned: success
  type: str
initramfs_rebuild_argv:
  description: The command that rebuilds it on this host (C(update-initramfs -u -k all), C(dracut -f)), or null.
  returned: success
  type: list
  elements: str
reload_required:
  description: Always false (kept for the shared result shape).
  returned: always
  type: bool
pf:
  description: The PF (name, pci_address, model, driver, family, totalvfs, port_guid).
  returned: success
  type: dict
numvfs:
  description: VF count after the run (before it in check mode or on mlx4).
  returned: success
  type: int
totalvfs:
  description: The firmware's cap, C(sriov_totalvfs).
  returned: success
  type: int
vfs_in_use:
  description: VFs found in use before the run, with their holders.
  returned: success
  type: list
  elements: dict
  sample: [{"index": 1, "pci_address": "0000:82:00.2", "holders": ["bound to driver vfio-pci (not the PF's VF driver mlx5_core)"]}]
vf_guids:
  description: GUIDs wanted for each VF (kernel format).
  returned: success
  type: list
  elements: dict
  sample: [{"index": 0, "node_guid": "0296:1c4e:a2f0:0d11", "port_guid": "12b9:7d0e:5c3a:8e40"}]
firmware:
  description: Firmware SR-IOV settings from C(mstconfig) (available, tool, settings, error); null when not asked.
  returned: success
  type: dict
mlx4_options:
  description: mlx4_core options planned (num_vfs, probe_vf) on ConnectX-3.
  returned: success
  type: dict
applied:
  description: What was done, in order (also on failure).
  returned: when changes were applied
  type: list
  elements: str
state:
  description: On a failed write, the PF's state afterwards (numvfs, previous, failed_step, message).
  returned: failure
  type: dict
diff:
  description: Before/after of each change.
  returned: diff mode
  type: list
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.hpcnet.infiniband.plugins.module_utils import _sriov
from ansible_collections.hpcnet.infiniband.plugins.module_utils._host import Host, HostError
from ansible_collections.hpcnet.infiniband.plugins.module_utils._plan import run_plan


def main():
    module = AnsibleModule(
        argument_spec=dict(
            pf=dict(type="str", required=True),
            num_vfs=dict(type="int", required=True),
            force=dict(type="bool", default=False),
            guid_policy=dict(type="str", choices=["none", "derived", "pool", "explicit"], default="none"),
            guid_pool_start=dict(type="raw"),
            guids=dict(
                type="list",
                elements="dict",
                options=dict(node_guid=dict(type="raw", required=True), port_guid=dict(type="raw", required=True)),
            ),
            persist=dict(type="bool", default=False),
            mlx4_num_vfs_per_port=dict(type="list", elements="int"),
            mlx4_probe_vf=dict(type="raw"),
            mlx4_options_path=dict(type="path", default=_sriov.MLX4_OPTIONS_PATH),
            firmware_info=dict(type="bool", default=True),
            timeout=dict(type="int", default=120),
            sysfs_root=dict(type="path", default="/sys"),
            fs_root=dict(type="path", default="/"),
        ),
        required_if=[("guid_policy", "pool", ["guid_pool_start"]), ("guid_policy", "explicit", ["guids"])],
        supports_check_mode=True,
    )
    # A timeout of 0 or less is refused before anything is read: it used to reach the write's timer
    # ("Invalid argument") after the plan, or make the write unbounded.
    if module.params["timeout"] <= 0:
        module.fail_json(msg="timeout must be a positive number of seconds, not %d" % module.params["timeout"], changed=False)
    host = Host.from_module(module, sysfs_root=module.params["sysfs_root"], fs_root=module.params["fs_root"])
    try:
        plan, have, extra = _sriov.prepare(host, module.params)
    except (_sriov.SriovError, HostError) as exc:
        module.fail_json(msg=str(exc))

    def apply(the_plan):
        try:
            return _sriov.apply_for_module(host, the_plan, have, module.params["timeout"])
        except _sriov.SriovApplyError as exc:
            module.fail_json(msg=str(exc), applied=exc.done, state=exc.state, **dict(the_plan.result(), **extra))
        except HostError as exc:
            module.fail_json(msg=str(exc), **dict(the_plan.result(), **extra))

    run_plan(module, plan, apply, extra)


if __name__ == "__main__":
    main()
