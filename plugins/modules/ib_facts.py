#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: hpcnet.infiniband contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: ib_facts
short_description: InfiniBand, IPoIB, EIPoIB, RoCE and SR-IOV facts of a host (or of a sysfs capture)
version_added: "0.1.0"
description:
  - Reads sysfs and returns C(ansible_facts.ib_facts) (schema 1, see C(docs/facts.md) in the collection)
    for B(every) netdev of the host (physical, IPoIB, IPoIB P_Key children, EIPoIB, VFs, plain Ethernet,
    loopback and virtual devices marked as such) and every RDMA device and port.
  - For each interface it reports what C(ethtool -i) would say as C(driver) and C(bus_info). On a live
    host it asks the kernel with the C(SIOCETHTOOL)/C(ETHTOOL_GDRVINFO) ioctl (no C(ethtool) binary
    needed); when that is impossible (a capture, or the ioctl fails) it infers the answer from sysfs and
    says so in C(driver_source).
  - Computes the node's network mode with Fuel's rule (C(eth_ipoib) or IPoIB -> C(infiniband);
    C(mlx4_en)/C(mlx5_core) on an Ethernet link-layer RDMA port (RoCE) -> C(ethernet); both -> C(mixed);
    neither -> C(none)) and explains it in C(network_mode_reasons).
  - Reports per InfiniBand port whether a subnet manager answers (C(sm_lid) set and port ACTIVE) and
    whether it runs on this port (C(sm_lid) == C(lid)).
  - With O(sysfs_root) it reads a captured tree (hwloc-gather-topology, sosreport) instead of the live
    host. Links are resolved by hand and never followed outside O(sysfs_root); missing, empty or garbage
    attributes become V(null) and garbage/loops are listed in C(warnings).
author:
  - hpcnet.infiniband developers (@hpcnet)
options:
  sysfs_root:
    description:
      - Where sysfs is. V(/sys) reads the running host (C(source=live)); any other path is read as a
        capture (C(source=snapshot)), for example the C(sys/) folder of an unpacked
        C(hwloc-gather-topology) tarball.
    type: path
    default: /sys
  interfaces:
    description:
      - Only read and report these netdevs in C(nics), with their IPoIB/EIPoIB parents and P_Key
        children; C(devices) and C(subnet_manager) then hold only the RDMA devices they are on.
        Reading less is what makes this option fast on hosts with hundreds of VFs.
      - A name that does not exist fails the module with the list of known interfaces.
      - The node-level C(network_mode) is computed from the reported interfaces only.
    type: list
    elements: str
  pkeys:
    description:
      - Which RDMA ports' P_Key tables are read into C(pkeys). The kernel exposes one file per table
        entry (128 per port on ConnectX) and each read is a firmware query on Mellanox HCAs, so on hosts
        with many ports the tables are most of the cost of a gather.
      - V(physical) reads the tables of physical functions (HCAs and SR-IOV PFs) and leaves out those of
        VFs' RDMA devices, whose C(pkeys) is then V(null); a VF's table is what the SM or the PF driver
        gives a guest. With O(interfaces) the tables of the selected interfaces' ports are read, VFs included.
      - V(all) reads every table, V(none) none (every C(pkeys) is V(null)).
    type: str
    choices: [all, physical, none]
    default: physical
  lean:
    description:
      - V(true) (default) returns a lean result, which says each thing once (the cost of handling a result,
        in the module and far more on the controller, grows with its number of values). C(nics[name].ib)
        is a reference to the port, C(device) and C(port); the port's record (state, LIDs, rate, GUIDs,
        P_Key table) is C(devices[device].ports[port]). Device and port records leave out their own name
        and the C(netdevs) on them (C(nics[].ib) say it). C(subnet_manager) entries keep C(sm_present) and
        C(sm_local) (the port's state and LIDs are in C(devices)). C(network_mode_reasons) has one sentence
        per kind of reason, naming a few of its interfaces (C(network_mode_interfaces) names them all).
        Loopback and virtual netdevs without an RDMA port have a short record (C(name), C(ifindex),
        C(mac), C(type), C(link_type), C(kind), C(virtual), C(driver), C(driver_source), C(bus_info),
        C(mtu), C(operstate), C(carrier), C(speed_mbps), C(master), C(network_mode)).
      - V(false) returns the full form, which repeats the port record in every netdev's C(ib), names the
        netdevs on each device and port, gives whole C(subnet_manager) entries and one reason per
        interface, and gives every netdev every field.
    type: bool
    default: true
  topology:
    description:
      - Also map the InfiniBand fabric from this node, as M(hpcnet.infiniband.ib_topology) does with its
        defaults (C(ibnetdiscover) and C(iblinkinfo)), when the node has an ACTIVE InfiniBand port; the map
        is RV(topology), not a fact.
      - The discovery asks it of the first node of the play, so that the map costs no task of its own.
      - A node without an ACTIVE InfiniBand port returns RV(topology=null); a tool that is missing or fails
        is a warning with RV(topology=null), never a failure of the facts.
    type: bool
    default: false
notes:
  - Read-only; check mode is supported and changes nothing (nothing is ever changed).
  - Field reference and the schema version policy are in C(docs/facts.md).
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - ansible.builtin.action_common_attributes.facts
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
  facts:
    support: full
  platform:
    platforms: posix
"""

EXAMPLES = r"""
- name: Gather InfiniBand facts of the host
  hpcnet.infiniband.ib_facts:

- name: Show the node's network mode and the reasons
  ansible.builtin.debug:
    msg: "{{ ansible_facts.ib_facts.network_mode }}: {{ ansible_facts.ib_facts.network_mode_reasons }}"

- name: Read a captured sysfs tree on the controller
  hpcnet.infiniband.ib_facts:
    sysfs_root: /srv/captures/node042/sys
  delegate_to: localhost

- name: Only IPoIB interfaces ib0 and its P_Key child
  hpcnet.infiniband.ib_facts:
    interfaces: [ib0, ib0.8002]

- name: Fail when a port has no subnet manager
  ansible.builtin.assert:
    that: item.value.sm_present
    fail_msg: "{{ item.key }} sees no subnet manager"
  loop: "{{ ansible_facts.ib_facts.subnet_manager | dict2items }}"

- name: The state of the port behind ib0 (a lean result refers to the port record in devices)
  ansible.builtin.debug:
    msg: "{{ ansible_facts.ib_facts.devices[nic.ib.device].ports[nic.ib.port | string].state }}"
  vars:
    nic: "{{ ansible_facts.ib_facts.nics.ib0 }}"
"""

RETURN = r"""
ansible_facts:
  description: Facts to add to ansible_facts.
  returned: always
  type: dict
  contains:
    ib_facts:
      description: InfiniBand host networking facts, schema 1 (field by field in docs/facts.md).
      returned: always
      type: dict
      contains:
        schema:
          description: Schema version of this dict; bumped only on incompatible changes.
          type: int
          sample: 1
        source:
          description: V(live) when read from the running host's /sys, V(snapshot) for a capture.
          type: str
          sample: live
        sysfs_root:
          description: The sysfs tree that was read (links resolved).
          type: str
          sample: /sys
        lean:
          description: Whether the result is lean (see O(lean)).
          type: bool
          sample: true
        network_mode:
          description: Node network mode, V(infiniband), V(ethernet), V(mixed) or V(none).
          type: str
          sample: infiniband
        network_mode_reasons:
          description:
            - Why the mode. Lean - one sentence per kind of reason (driver, IPoIB, EIPoIB or RoCE) naming at
              most four of its interfaces; a reason only one interface gives keeps its whole sentence
              (interface, driver, port). Full - one sentence per interface.
          type: list
          elements: str
          sample: ["ib0: ib_ipoib (IPoIB on mlx4_0 port 1) -> infiniband",
                   "ib1, ib1v0, ib1v1, ib1v2 and 28 more: mlx5_core[ib_ipoib] (IPoIB) -> infiniband"]
        network_mode_interfaces:
          description: Interfaces per mode, keys V(infiniband) and V(ethernet).
          type: dict
          sample: {"infiniband": ["ib0"], "ethernet": []}
        nics:
          description:
            - Every netdev keyed by name. Keys always present (V(null) when unknown or not
              applicable) - name, ifindex, mac, type, link_type, kind, driver, driver_source,
              driver_version, firmware_version, bus_info, pci_address, pci_driver, vendor_id,
              device_id, model, numa_node, mtu, operstate, carrier, speed_mbps, dev_port, virtual,
              is_vf, physfn, master, network_mode, ib, ipoib, eipoib, sriov (with O(lean), loopback and
              virtual netdevs without an RDMA port have a short record and C(ib) is a reference to the port,
              C(device) and C(port), whose record is in C(devices)).
            - C(kind) is one of V(ipoib), V(ipoib_child), V(eipoib), V(roce), V(ethernet), V(vf),
              V(virtual), V(loopback).
            - C(driver_source) is one of V(ethtool), V(sysfs), V(inferred), V(unknown).
          type: dict
          sample:
            ib0:
              name: ib0
              kind: ipoib
              driver: ib_ipoib
              driver_source: ethtool
              bus_info: "0000:82:00.0"
              model: ConnectX-3
              ib: {device: mlx4_0, port: 1}
              ipoib: {mode: datagram, pkey: "0xffff", parent: null, umcast: false, children: []}
        devices:
          description:
            - Every RDMA device keyed by name, with its ports keyed by port number (a string); a port record
              holds its state, LIDs, rate, GUIDs and P_Key table.
            - The full form (O(lean=false)) adds C(name) and C(netdevs) to each device, C(device), C(port)
              and C(netdevs) to each port.
          type: dict
          sample:
            mlx4_0:
              node_guid: "0002:c903:00f9:bfa0"
              fw_ver: 2.11.500
              board_id: DEL0A30000019
              ports: {"1": {state: ACTIVE, lid: 932, sm_lid: 1, pkeys: ["0xffff"]}}
        subnet_manager:
          description:
            - Per InfiniBand port (key V(device/port)) - C(sm_present) (an SM answers - port ACTIVE, sm_lid set)
              and C(sm_local) (it runs on this port - sm_lid == lid).
            - The full form (O(lean=false)) adds device, port, state, lid, sm_lid, sm_sl and netdevs.
          type: dict
          sample: {"mlx4_0/1": {sm_present: true, sm_local: false}}
        warnings:
          description: Problems found in the tree (garbage attributes, symlink loops, links leaving
            sysfs_root, incomplete captures). The facts are still returned with V(null) fields.
          type: list
          elements: str
          sample: []
topology:
  description: The fabric as M(hpcnet.infiniband.ib_topology) returns it, with O(topology=true) on a node with
    an ACTIVE InfiniBand port; null otherwise.
  returned: always
  type: dict
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.hpcnet.infiniband.plugins.module_utils._facts import PKEYS_CHOICES, FactsError, gather
from ansible_collections.hpcnet.infiniband.plugins.module_utils._host import Host


def main():
    module = AnsibleModule(
        argument_spec=dict(
            sysfs_root=dict(type="path", default="/sys"),
            interfaces=dict(type="list", elements="str"),
            pkeys=dict(type="str", choices=list(PKEYS_CHOICES), default="physical"),
            lean=dict(type="bool", default=True),
            topology=dict(type="bool", default=False),
        ),
        supports_check_mode=True,
    )
    host = Host.from_module(module, sysfs_root=module.params["sysfs_root"])
    try:
        facts = gather(host, interfaces=module.params["interfaces"], pkeys=module.params["pkeys"],
                       lean=module.params["lean"])
    except FactsError as exc:
        module.fail_json(msg=str(exc))
    topology = None
    if module.params["topology"]:
        # Imported only here: one node of a discovery maps the fabric, and every other call would compile
        # the mapper for nothing (the payload carries it either way).
        from ansible_collections.hpcnet.infiniband.plugins.module_utils._topology import map_fabric_from

        topology, warning = map_fabric_from(host, facts, module.get_bin_path)
        if warning:
            module.warn(warning)
    module.exit_json(changed=False, ansible_facts={"ib_facts": facts}, topology=topology)


if __name__ == "__main__":
    main()
