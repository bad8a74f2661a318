#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: hpcnet.infiniband contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Node side of the network verification: report the member interfaces, probe the peers."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: ib_netcheck
short_description: Report a node's network member interfaces and probe its peers over them
version_added: 0.1.0
description:
  - Node side of the network verification (the role M(hpcnet.infiniband.ib_netcheck_report) evaluates).
  - Reports, for every interface the node has in O(networks), its state, MTU, IPoIB mode, IPv4 addresses
    and the InfiniBand port behind it (state, port GUID, LID, SM LID, P_Key table); an EIPoIB interface
    reports the port of its IPoIB slave. An interface without an IPv4 address that is an Open vSwitch port
    is probed through its bridge, where the host's address lives.
  - With O(peers) (the reports of all members, from a first run), probes every peer of every network over
    the assigned interface, all at once. First one don't-fragment ping of the network's MTU
    (C(ping -M do -s MTU-28 -I IFACE)), then, only to the peers that did not answer, the same probe again
    and a small one, to tell unreachable from a too small path MTU (see O(rounds)). At most
    O(max_parallel) pings run at a time, each waits O(wait) seconds.
  - It reads only the member interfaces (and the IPoIB interfaces EIPoIB members run over), the P_Key
    tables of the member ports of networks that have a P_Key, and the IPv4 addresses (one
    C(ip -j -4 addr show), which lists only the links that have one). The probe run (with O(peers)) reads
    nothing of the host; it takes this node's report from O(peers).
  - Never changes the host.
author:
  - hpcnet.infiniband developers (@hpcnet)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - hpcnet.infiniband.host
options:
  node:
    description: This node's name in O(networks) (usually C(inventory_hostname)).
    type: str
    required: true
  networks:
    description:
      - Networks to verify. Members come from O(allocation) unless given.
      - Empty means every network role allocated on at least two nodes.
    type: list
    elements: dict
    default: []
    suboptions:
      name:
        description: Network role (C(storage), C(rdma)...).
        type: str
        required: true
      pkey:
        description:
          - P_Key of the network (checked against the member ports' P_Key tables). Hexadecimal text
            (V(0x8002), V(8002)) or an integer taken as its value; the membership bit is ignored.
        type: raw
      mtu:
        description: MTU of the network (68-65520); the most common member MTU when omitted.
        type: int
      expect_rate:
        description: Gb/s every InfiniBand member port should run at (checked by M(hpcnet.infiniband.ib_netcheck_report)).
        type: float
      members:
        description: Node name -> interface name (instead of O(allocation)).
        type: dict
  allocation:
    description:
      - Which interface carries which network role on each node, as the nodes model has it
        (C(networks.allocation)) or the inventory plugin's C(ib_networks) host vars (role -> {interface}).
    type: dict
    default: {}
  nodes:
    description: Only these nodes are members (for example C(ansible_play_hosts_all)); all when omitted.
    type: list
    elements: str
  peers:
    description:
      - Reports of all members (node name -> the C(netcheck.interfaces) this module returned on that node).
      - When given, the node probes its peers; when omitted, it only reports.
    type: dict
  wait:
    description: Seconds each ping waits for its answer (C(ping -W)); 1 or more.
    type: int
    default: 1
  max_parallel:
    description: Most pings running at the same time on this node (1 or more).
    type: int
    default: 64
  rounds:
    description:
      - Probe rounds. Round 1 sends the full-MTU probe to every peer; each later round, only for the peers
        that have not answered it, sends it again with a small probe (a first probe can be lost to ARP).
      - The probing is bounded by O(rounds) * (O(wait) + 1) seconds whatever the number of peers
        (as long as they fit in O(max_parallel)). 1 or more.
    type: int
    default: 3
attributes:
  platform:
    platforms: posix
  check_mode:
    support: full
  diff_mode:
    support: none
requirements:
  - C(ping) (iputils) and C(ip) (iproute2) on the node
notes:
  - Read-only; it runs in check mode too (the probes change nothing).
seealso:
  - module: hpcnet.infiniband.ib_netcheck_report
"""

EXAMPLES = r"""
- name: Report the member interfaces
  hpcnet.infiniband.ib_netcheck:
    node: "{{ inventory_hostname }}"
    networks:
      - name: rdma
        pkey: "0x8002"
    allocation: {node1: {rdma: ib0}, node2: {rdma: ib0}, node3: {rdma: ib0}}
  register: netcheck_local

- name: Probe the peers
  hpcnet.infiniband.ib_netcheck:
    node: "{{ inventory_hostname }}"
    networks: [{name: rdma, pkey: "0x8002"}]
    allocation: {node1: {rdma: ib0}, node2: {rdma: ib0}, node3: {rdma: ib0}}
    peers: "{{ reports_of_all_nodes }}"
"""

RETURN = r"""
netcheck:
  description: What this node saw.
  returned: always
  type: dict
  contains:
    node:
      description: The node name.
      type: str
    networks:
      description: The networks with their members, as this node understood them.
      type: list
      elements: dict
    interfaces:
      description: Interface name -> record (exists, operstate, mtu, ipoib_mode, addresses, ib_device, ib_port,
        port_state, port_guid, node_guid, lid, sm_lid, pkeys, rate, rate_gbps, link_width, link_speed, kind, link_type, carrier).
      type: dict
    probes:
      description: One entry per peer and network (network, peer, interface, address, size, reachable, mtu_ok);
        C(reachable) is null when the peer had no address to probe.
      type: list
      elements: dict
    seconds:
      description: Time spent probing.
      type: float
  sample: {"node": "node1", "interfaces": {"ib0": {"exists": true, "mtu": 2044, "addresses": ["10.20.1.11/24"]}},
           "probes": [{"network": "rdma", "peer": "node2", "interface": "ib0", "address": "10.20.1.12",
                       "size": 2016, "reachable": true, "mtu_ok": true}], "seconds": 0.05}
"""

import time

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.hpcnet.infiniband.plugins.module_utils import _netcheck
from ansible_collections.hpcnet.infiniband.plugins.module_utils._facts import PKEYS_NONE, FactsError, complete_pkeys, gather
from ansible_collections.hpcnet.infiniband.plugins.module_utils._host import Host, HostError


def read_members(host, networks, node):
    """ib_facts nics of this node's member interfaces (plus the IPoIB interfaces EIPoIB members run over),
    P_Key tables only of the ports a network with a P_Key checks."""
    wanted = _netcheck.interfaces_of(networks, node)
    present = [name for name in wanted if host.exists("class/net/%s" % name)]
    facts = gather(host, interfaces=present, pkeys=PKEYS_NONE) if present else {"nics": {}, "devices": {}}
    nics, devices = dict(facts["nics"]), dict(facts.get("devices") or {})
    slaves = sorted({s for nic in nics.values() for s in ((nic.get("eipoib") or {}).get("slaves") or [])
                     if s not in nics and host.exists("class/net/%s" % s)})
    if slaves:
        more = gather(host, interfaces=slaves, pkeys=PKEYS_NONE)
        nics.update(more["nics"])
        devices.update(more.get("devices") or {})
    checked = sorted({net["members"][node] for net in networks
                      if node in net["members"] and net.get("pkey") not in (None, "")})
    complete_pkeys(host, nics, checked)
    return wanted, nics, devices


def main():
    module = AnsibleModule(
        argument_spec=dict(
            node=dict(type="str", required=True),
            networks=dict(type="list", elements="dict", default=[], options=dict(
                name=dict(type="str", required=True),
                pkey=dict(type="raw", no_log=False),
                mtu=dict(type="int"),
                expect_rate=dict(type="float"),
                members=dict(type="dict"),
            )),
            allocation=dict(type="dict", default={}),
            nodes=dict(type="list", elements="str"),
            peers=dict(type="dict"),
            wait=dict(type="int", default=1),
            max_parallel=dict(type="int", default=64),
            rounds=dict(type="int", default=3),
            sysfs_root=dict(type="path", default="/sys"),
        ),
        supports_check_mode=True,
    )
    params = module.params
    for name in ("wait", "max_parallel", "rounds"):
        if params[name] < 1:
            module.fail_json(msg="%s must be 1 or more, not %d" % (name, params[name]))
    node = params["node"]
    networks = _netcheck.networks_from_allocation(params["allocation"], params["networks"], params["nodes"])
    try:
        _netcheck.check_networks(networks)
    except ValueError as exc:
        module.fail_json(msg=str(exc))
    own = (params["peers"] or {}).get(node)
    if params["peers"] is not None and isinstance(own, dict):
        # The probe run: this node's report is in peers (the first run's data); read nothing again.
        interfaces = own
    else:
        host = Host.from_module(module, sysfs_root=params["sysfs_root"])
        try:
            wanted, nics, devices = read_members(host, networks, node)
            rc, out, err = host.run(["ip", "-j", "-4", "addr", "show"], timeout=10)
        except (FactsError, HostError) as exc:
            module.fail_json(msg=str(exc))
        if rc != 0:
            module.fail_json(msg="ip -j -4 addr show failed: %s" % (err or out).strip())
        vsctl = module.get_bin_path("ovs-vsctl")

        def ovs_bridge_of(name):
            # Only asked for member interfaces without an address: with the kernel datapath an OVS port has
            # no IP of its own, the host's address is on the bridge.
            if not vsctl:
                return None
            rc, out, _err = host.run([vsctl, "--timeout=5", "port-to-br", name], timeout=10)
            return out.strip() if rc == 0 else None

        interfaces = _netcheck.local_report(nics, _netcheck.parse_ip_addr_json(out), wanted, ovs_bridge_of, devices,
                                            _netcheck.parse_ip_mtus(out))
    result = {"node": node, "networks": networks, "interfaces": interfaces, "probes": [], "seconds": 0.0}
    if params["peers"] is not None:
        started = time.monotonic()
        probes = _netcheck.plan_probes(node, networks, params["peers"])
        ping = module.get_bin_path("ping", required=True)
        result["probes"] = _netcheck.run_probes(probes, params["wait"], params["max_parallel"], ping=ping,
                                                rounds=params["rounds"])
        result["seconds"] = round(time.monotonic() - started, 3)
    module.exit_json(changed=False, netcheck=result)


if __name__ == "__main__":
    main()
