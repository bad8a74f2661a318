#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: hpcnet.infiniband contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Configure a node's networks (address, IPoIB child, mode, MTU) through the host's network manager."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: ib_network
short_description: Put a node's network addresses on its interfaces through the host's own network manager
version_added: 0.2.0
description:
  - For each member of O(members) (one network of the node, as discovery's C(discovery_host_networks) lists
    them) configures the device that carries the address (the IPoIB P_Key child, the interface itself, the OVS
    bridge of an EIPoIB member or a VLAN device), its IPoIB transport mode and MTU, its address and gateway.
  - The configuration is written where the host's network manager recreates it at boot. C(networkmanager) writes
    one keyfile per device in C(/etc/NetworkManager/system-connections) (mode 0600, C(type=infiniband) with
    C(parent), C(p-key), C(transport-mode), C(mtu)), reloads and activates only the changed connections.
    C(systemd-networkd) writes C(.netdev) files (C(Kind=ipoib) with C(PartitionKey) and C(Mode), or VLANs) and
    C(.network) files in C(/etc/systemd/network) and runs C(networkctl reload) when one changed. C(ifupdown)
    writes one stanza file per device in C(/etc/network/interfaces.d) (the P_Key child and its mode are made in
    C(pre-up)) and runs C(ifdown)/C(ifup) of the changed device only. C(runtime) sets everything with sysfs
    and C(ip) and nothing persists across a reboot.
  - Every file starts with C(# Managed by hpcnet.infiniband); a file of the same name without it is never
    overwritten (the module refuses, naming it). Unrelated interfaces are never touched.
author:
  - hpcnet.infiniband developers (@hpcnet)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - hpcnet.infiniband.host
  - hpcnet.infiniband.host.fs_root
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
    details: Before and after text of every file written.
  platform:
    platforms: posix
options:
  members:
    description:
      - The node's networks. Each item has C(network) (name), C(interface), C(device) (the netdev carrying the
        address; the P_Key child V(ib0.8002) for C(ipoib_child), the OVS bridge for C(eipoib), default the
        interface), C(kind) (V(ipoib), V(ipoib_child), V(eipoib), V(roce) or V(ethernet)), C(address) with
        prefix (V(10.20.0.11/24)), and optional C(gateway), C(pkey) (hex text or its integer value), C(vlan),
        C(mtu) and C(mode) (V(datagram) or V(connected), IPoIB kinds only).
    type: list
    elements: dict
    default: []
  backend:
    description:
      - Which network manager keeps the configuration. V(auto) uses NetworkManager when it runs,
        systemd-networkd when it is active, ifupdown when C(/etc/network/interfaces) and C(ifup) are there,
        else V(runtime).
    type: str
    choices: [auto, networkmanager, systemd-networkd, ifupdown, runtime]
    default: auto
  activate:
    description:
      - Apply what changed now (NetworkManager reload and C(nmcli connection up), C(networkctl reload), C(ifdown)/C(ifup)).
        V(false) writes the files only; the network manager reads them at its next reload or at boot (an image
        being prepared, a maintenance window). Not possible with V(runtime).
    type: bool
    default: true
notes:
  - NetworkManager cannot put an address on an OVS bridge it did not create; EIPoIB members are refused there.
  - The ifupdown backend needs C(/etc/network/interfaces) to source C(/etc/network/interfaces.d).
  - A network removed from O(members) keeps its file; remove it by hand.
seealso:
  - module: hpcnet.infiniband.ib_ipoib
"""

EXAMPLES = r"""
- name: Addresses of this node's networks, through whatever manages its network
  hpcnet.infiniband.ib_network:
    members:
      - network: storage
        interface: ib0
        device: ib0.8002
        kind: ipoib_child
        address: 10.20.0.11/24
        pkey: "0x8002"
        mtu: 65520
        mode: connected
      - network: management
        interface: eth0
        kind: ethernet
        address: 10.10.0.11/24
        gateway: 10.10.0.1
  register: ib_net

- name: Say when nothing persists
  ansible.builtin.debug:
    msg: "{{ ib_net.summary }}"
"""

RETURN = r"""
changed:
  description: Whether a file was written or a device configured (or would be, in check mode).
  returned: always
  type: bool
plan:
  description: The changes in order (C(write_file), C(nm_reload), C(nm_up), C(networkd_reload), C(ifup),
    C(create_child), C(write_sysfs), C(run)).
  returned: always
  type: list
  elements: dict
reboot_required:
  description: Always false.
  returned: always
  type: bool
reload_required:
  description: Always false (the module reloads the network manager itself).
  returned: always
  type: bool
backend:
  description: The backend used.
  returned: always
  type: str
  sample: ifupdown
backend_reason:
  description: Why that backend.
  returned: always
  type: str
persistent:
  description: Whether the configuration survives a reboot (false for C(runtime)).
  returned: always
  type: bool
summary:
  description: One line saying what the backend keeps, and for C(runtime) that nothing persists.
  returned: always
  type: str
devices:
  description: The devices configured.
  returned: always
  type: list
  elements: str
files:
  description: The files the backend keeps the configuration in.
  returned: always
  type: list
  elements: str
done:
  description: What was applied.
  returned: when changed and not in check mode
  type: list
  elements: str
diff:
  description: Before/after text of every file (diff mode).
  returned: when diff mode is on
  type: list
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.hpcnet.infiniband.plugins.module_utils import _netconf
from ansible_collections.hpcnet.infiniband.plugins.module_utils._host import Host, HostError
from ansible_collections.hpcnet.infiniband.plugins.module_utils._plan import run_plan


def main():
    module = AnsibleModule(
        argument_spec=dict(
            members=dict(type="list", elements="dict", default=[]),
            backend=dict(type="str", choices=["auto"] + list(_netconf.BACKENDS), default="auto"),
            activate=dict(type="bool", default=True),
            sysfs_root=dict(type="path", default="/sys"),
            fs_root=dict(type="path", default="/"),
        ),
        supports_check_mode=True,
    )
    params = module.params
    host = Host.from_module(module, sysfs_root=params["sysfs_root"], fs_root=params["fs_root"])
    try:
        devices = _netconf.devices_of(params["members"])
    except _netconf.MemberError as exc:
        module.fail_json(msg=str(exc))
    try:
        have = _netconf.read_have(host, params["backend"], devices)
    except HostError as exc:
        module.fail_json(msg="cannot read the host: %s" % exc)
    plan, info = _netconf.plan_network(params["members"], have, activate=params["activate"])
    info["summary"] = _netconf.summary(info)

    def apply(the_plan):
        try:
            return _netconf.apply_network(host, the_plan)
        except HostError as exc:
            module.fail_json(msg=str(exc), **dict(the_plan.result(), **info))

    run_plan(module, plan, apply, info)


if __name__ == "__main__":
    main()
