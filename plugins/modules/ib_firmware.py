#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: hpcnet.infiniband contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Firmware configuration of Mellanox/NVIDIA adapters: SR-IOV enable, number of VFs, port types."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: ib_firmware
short_description: Set a Mellanox/NVIDIA adapter's firmware SR-IOV and port type settings (mstconfig)
version_added: 0.2.0
description:
  - SR-IOV on Mellanox/NVIDIA adapters needs the firmware set first (C(SRIOV_EN=1), C(NUM_OF_VFS=N); otherwise
    C(sriov_totalvfs) is 0), and ConnectX-4 and later VPI cards choose InfiniBand or Ethernet per port in
    firmware (C(LINK_TYPE_P1)/C(LINK_TYPE_P2)).
  - Queries the card with C(mstconfig -e -d <pci> q) (Debian/EL package C(mstflint); C(mlxconfig) from MFT when
    mstconfig is missing or O(tool=mlxconfig)), compares the wanted values with the B(Next Boot) column and runs
    one C(mstconfig -y -d <pci> set KEY=VALUE ...) only for the keys that differ, then queries again to prove it.
  - Refuses, before writing anything, unknown keys, keys the card does not have, values outside the card's
    range, C(NUM_OF_VFS) above the card's maximum (or O(max_vfs)) or without SR-IOV enabled, read-only
    settings, virtual functions and cards that are not Mellanox/NVIDIA (PCI vendor 0x15b3).
  - Firmware settings apply at the next boot or firmware reset (C(mstfwreset)). C(reboot_required) is true, with
    the reason, when this run changed a setting or a wanted setting's Current value still differs from its Next
    Boot value (an earlier change not yet active).
author:
  - hpcnet.infiniband developers (@hpcnet)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - hpcnet.infiniband.host
options:
  device:
    description: The adapter - a PCI address (V(0000:5e:00.0)), or a netdev or RDMA device name on it (V(ib0), V(mlx5_0)).
    type: str
    required: true
  settings:
    description:
      - Wanted firmware settings. Keys C(SRIOV_EN) (boolean), C(NUM_OF_VFS) (number of VFs),
        C(LINK_TYPE_P1) and C(LINK_TYPE_P2) (V(IB), V(ETH), V(VPI) on ConnectX-3 only, or 1/2/3). Other keys are refused.
      - Empty reports the card's settings and whether a reboot is pending, changing nothing.
    type: dict
    default: {}
  max_vfs:
    description: Refuse C(NUM_OF_VFS) above this (your platform's limit), besides the card's own maximum.
    type: int
  tool:
    description: Which tool to use; V(auto) takes C(mstconfig), else C(mlxconfig).
    type: str
    choices: [auto, mstconfig, mlxconfig]
    default: auto
  timeout:
    description: Seconds one query or set may take (a full query takes 10-20 s on some cards).
    type: int
    default: 120
attributes:
  platform:
    platforms: posix
  check_mode:
    support: full
    details: Queries the card and shows the plan; sets nothing.
  diff_mode:
    support: full
requirements:
  - C(mstconfig) (package mstflint) or C(mlxconfig) (NVIDIA MFT) on the host
notes:
  - A reboot or C(mstfwreset -d <pci> reset) makes the new values current; this module never reboots.
seealso:
  - module: hpcnet.infiniband.ib_sriov
  - name: docs/firmware.md
    description: Firmware settings, the lab's stand-in and the reboot.
    link: https://github.com/hpcnet/infiniband/blob/main/docs/firmware.md
"""

EXAMPLES = r"""
- name: Enable SR-IOV with 8 VFs and InfiniBand on port 1
  hpcnet.infiniband.ib_firmware:
    device: "0000:5e:00.0"
    settings:
      SRIOV_EN: true
      NUM_OF_VFS: 8
      LINK_TYPE_P1: IB
  register: fw

- name: Reboot when the firmware asks for it
  ansible.builtin.reboot:
  when: fw.reboot_required
"""

RETURN = r"""
plan:
  description: One change per key whose Next Boot value differs (action C(set_firmware), target the key, before/after).
  returned: always
  type: list
  elements: dict
reboot_required:
  description: A changed or pending setting needs a boot or firmware reset to take effect.
  returned: always
  type: bool
reboot_reason:
  description: Which keys wait for the next boot, with their values.
  returned: always
  type: str
  sample: "0000:5e:00.0 (ConnectX-5): firmware settings take effect at the next boot or firmware reset
    (mstfwreset -d 0000:5e:00.0 reset): NUM_OF_VFS 16 -> 8"
reload_required:
  description: Always false.
  returned: always
  type: bool
firmware:
  description: The card and its settings after the run (texts as the tool prints them).
  returned: when the card was queried
  type: dict
  contains:
    tool:
      description: The tool used.
      type: str
    pci_address:
      description: PCI address of the card.
      type: str
    device_type:
      description: The tool's device type (C(ConnectX5)).
      type: str
    name:
      description: Board name (C(MCX555A-ECA_Ax)).
      type: str
    settings:
      description: KEY -> {default, current, next_boot} for the keys this module manages.
      type: dict
  sample: {"tool": "mstconfig", "pci_address": "0000:5e:00.0", "device_type": "ConnectX5",
           "settings": {"SRIOV_EN": {"default": "False(0)", "current": "True(1)", "next_boot": "True(1)"}}}
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.hpcnet.infiniband.plugins.module_utils import _firmware
from ansible_collections.hpcnet.infiniband.plugins.module_utils._host import Host, HostError
from ansible_collections.hpcnet.infiniband.plugins.module_utils._plan import run_plan


def main():
    module = AnsibleModule(
        argument_spec=dict(
            device=dict(type="str", required=True),
            settings=dict(type="dict", default={}),
            max_vfs=dict(type="int"),
            tool=dict(type="str", choices=["auto", "mstconfig", "mlxconfig"], default="auto"),
            timeout=dict(type="int", default=120),
            sysfs_root=dict(type="path", default="/sys"),
        ),
        supports_check_mode=True,
    )
    params = module.params
    if params["timeout"] <= 0:
        module.fail_json(msg="timeout must be a positive number of seconds, not %d" % params["timeout"])
    if params["max_vfs"] is not None and params["max_vfs"] < 0:
        module.fail_json(msg="max_vfs must be 0 or more, not %d" % params["max_vfs"])
    names = _firmware.TOOLS if params["tool"] == "auto" else (params["tool"],)
    tool = next((path for path in (module.get_bin_path(name) for name in names) if path), None)
    host = Host.from_module(module, sysfs_root=params["sysfs_root"])
    try:
        have = _firmware.read_have(host, tool, params["device"], params["timeout"])
    except (_firmware.FirmwareError, HostError) as exc:
        module.fail_json(msg=str(exc))
    plan = _firmware.plan_firmware(have, params["settings"], params["max_vfs"])
    pci = have["card"]["pci_address"]

    def report(firmware):
        if firmware is None:
            return None
        return {"tool": tool, "pci_address": pci, "device_type": firmware.get("device_type"),
                "name": firmware.get("name"), "settings": _firmware.summary(firmware)}

    extra = {"reboot_reason": plan.info.get("reboot_reason", ""), "firmware": report(have["firmware"])}

    def apply(plan):
        try:
            after = _firmware.apply_firmware(host, tool, pci, plan, params["timeout"])
        except (_firmware.FirmwareError, HostError) as exc:
            module.fail_json(msg=str(exc), changed=True, plan=[c.as_dict() for c in plan.changes],
                             reboot_required=True, reboot_reason=extra["reboot_reason"])
        return {"firmware": report(after)}

    run_plan(module, plan, apply, extra)


if __name__ == "__main__":
    main()
