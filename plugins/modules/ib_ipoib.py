#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: hpcnet.infiniband contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: ib_ipoib
short_description: IPoIB P_Key child interfaces, transport mode, MTU and umcast
version_added: "0.1.0"
description:
  - With O(pkey), creates or removes the P_Key child of an IPoIB parent through the kernel's
    C(create_child)/C(delete_child), so it gets the kernel's name C(<parent>.<pkey>) (for example
    V(ib0.8002) for P_Key 0x8002, full membership), then sets its transport mode, MTU and C(umcast).
  - Without O(pkey), sets the mode, MTU and C(umcast) of the parent interface itself.
  - "P_Keys are hexadecimal, as every InfiniBand tool prints them: V(8002), V(0x8002) and V(0X8002) all
    mean 0x8002 (child V(ib0.8002)); an integer is taken as its value (unquoted YAML C(0x8002) is 32770,
    the same P_Key). The partition number must be 0x0001-0x7ffe plus the membership bit;
    0x0000/0x8000 (invalid) and 0x7fff/0xffff (the default partition the parent already uses) are refused."
  - When the P_Key is not in the port's P_Key table (C(ports/N/pkeys/*), filled by the subnet manager)
    the module warns or, with O(pkey_check=refuse), refuses.
  - The MTU is checked against the mode. Datagram allows at most the IB MTU minus the 4-byte IPoIB header
    (4092 with a 4096 IB MTU, see O(port_ib_mtu)); connected allows 65520.
  - "mlx5 enhanced IPoIB (ethtool driver C(mlx5_core[ib_ipoib])) has no connected mode: O(mode=connected)
    on such a parent or its children is refused before anything is changed."
  - Every refusal is decided before anything is written, so a refused run reports C(changed=false).
    When a step fails after a child was created in the same run, the child is deleted again and the
    error lists what was done and what was rolled back.
  - The module reads only the parent netdev, its port and (when a P_Key is checked) that port's P_Key
    table, not the whole host.
  - Addresses are out of scope; configure them with the host's network manager.
author:
  - hpcnet.infiniband developers (@hpcnet)
extends_documentation_fragment:
  - hpcnet.infiniband.host
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
  platform:
    platforms: posix
options:
  parent:
    description: The IPoIB parent interface, for example V(ib0).
    type: str
    required: true
  pkey:
    description:
      - P_Key of the child, hexadecimal with or without V(0x) (V(0x8002), V(8002)), or an integer taken as
        its value (V(32770)). V(0x0002) with O(membership=full) sets the full-membership bit.
        Omit to configure the parent itself.
    type: raw
  membership:
    description:
      - V(full) sets the full-membership bit (0x8000) on the P_Key; V(limited) requires it clear.
    type: str
    choices: [full, limited]
    default: full
  state:
    description:
      - Whether the child exists. V(absent) requires O(pkey) and refuses O(mode), O(mtu) and O(umcast)
        (the child and its settings go together).
    type: str
    choices: [present, absent]
    default: present
  mode:
    description: IPoIB transport mode.
    type: str
    choices: [datagram, connected]
  mtu:
    description: Interface MTU, checked against the mode.
    type: int
  umcast:
    description: Allow user-space multicast (C(umcast) attribute).
    type: bool
  pkey_check:
    description: What to do when the P_Key is not in the port's P_Key table (or only as limited member).
    type: str
    choices: [warn, refuse, ignore]
    default: warn
  port_ib_mtu:
    description:
      - The port's IB MTU in bytes (256..4096), which bounds the datagram-mode MTU (IB MTU - 4).
    type: int
    default: 4096
    choices: [256, 512, 1024, 2048, 4096]
  timeout:
    description: Seconds each sysfs write may take (a positive number).
    type: int
    default: 30
seealso:
  - module: hpcnet.infiniband.ib_sriov
"""

EXAMPLES = r"""
- name: Storage partition child ib0.8002 in connected mode
  hpcnet.infiniband.ib_ipoib:
    parent: ib0
    pkey: 0x8002
    mode: connected
    mtu: 65520
    pkey_check: refuse

- name: Remove the child
  hpcnet.infiniband.ib_ipoib:
    parent: ib0
    pkey: 0x8002
    state: absent

- name: Parent in datagram mode with a 2048 IB MTU fabric
  hpcnet.infiniband.ib_ipoib:
    parent: ib0
    mode: datagram
    mtu: 2044
    port_ib_mtu: 2048
"""

RETURN = r"""
changed:
  description: Whether anything was (or in check mode would be) changed.
  returned: always
  type: bool
plan:
  description: Changes (create_child, delete_child, set_mode, set_mtu, set_umcast) with target, before, after.
  returned: always
  type: list
  elements: dict
reboot_required:
  description: Always false.
  returned: always
  type: bool
reload_required:
  description: Always false.
  returned: always
  type: bool
interface:
  description: The interface configured (V(ib0.8002), or the parent).
  returned: success
  type: str
pkey:
  description: The P_Key with the membership bit applied (V(0x8002)).
  returned: success
  type: str
parent:
  description: The parent interface.
  returned: success
  type: str
rdma_device:
  description: RDMA device of the parent (V(mlx5_0)).
  returned: success
  type: str
port:
  description: Port number of the parent on its RDMA device.
  returned: success
  type: str
port_pkeys:
  description:
    - The port's P_Key table (non-zero entries); null when it was not read (no O(pkey), O(state=absent)
      or O(pkey_check=ignore)).
  returned: success
  type: list
  elements: str
before:
  description: mode, mtu, umcast and pkey of the interface before the run (null when it did not exist).
  returned: success
  type: dict
applied:
  description: What was done, in order (also on failure).
  returned: when changes were applied
  type: list
  elements: str
rolled_back:
  description: On a failed apply, the children created in this run that were deleted again.
  returned: failure after changes
  type: list
  elements: str
diff:
  description: Before/after of each change.
  returned: diff mode
  type: list
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.hpcnet.infiniband.plugins.module_utils import _ipoib
from ansible_collections.hpcnet.infiniband.plugins.module_utils._host import Host
from ansible_collections.hpcnet.infiniband.plugins.module_utils._plan import run_plan


def main():
    module = AnsibleModule(
        argument_spec=dict(
            parent=dict(type="str", required=True),
            pkey=dict(type="raw", no_log=False),
            membership=dict(type="str", choices=["full", "limited"], default="full"),
            state=dict(type="str", choices=["present", "absent"], default="present"),
            mode=dict(type="str", choices=["datagram", "connected"]),
            mtu=dict(type="int"),
            umcast=dict(type="bool"),
            pkey_check=dict(type="str", choices=["warn", "refuse", "ignore"], default="warn"),
            port_ib_mtu=dict(type="int", default=4096, choices=[256, 512, 1024, 2048, 4096]),
            timeout=dict(type="int", default=30),
            sysfs_root=dict(type="path", default="/sys"),
        ),
        required_if=[("state", "absent", ["pkey"])],
        supports_check_mode=True,
    )
    host = Host.from_module(module, sysfs_root=module.params["sysfs_root"])
    try:
        plan, extra = _ipoib.prepare(host, module.params)
    except _ipoib.IpoibError as exc:
        module.fail_json(msg=str(exc))

    def apply(the_plan):
        try:
            return _ipoib.apply_ipoib(host, the_plan, module.params["timeout"])
        except _ipoib.IpoibApplyError as exc:
            result = dict(the_plan.result(), **extra)
            result["changed"] = exc.changed
            module.fail_json(msg=str(exc), applied=exc.done, rolled_back=exc.undone, **result)

    run_plan(module, plan, apply, extra)


if __name__ == "__main__":
    main()
