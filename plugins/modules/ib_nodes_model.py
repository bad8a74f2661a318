#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: hpcnet.infiniband contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: ib_nodes_model
short_description: Write the nodes model, its terminal report and HTML page from gathered ib_facts
version_added: 0.1.0
description:
  - Builds the I(nodes model) of bootstrap discovery from the C(hpcnet.infiniband.ib_facts) result of
    every node, and writes it as JSON and YAML, plus a static self-contained HTML report, into
    O(output_dir) on the host the module runs on (run it once, delegated to the controller).
  - Every interface carries Fuel's REST fields (V(name), V(mac), V(driver), V(bus_info),
    V(current_speed), V(max_speed), V(state), V(assigned_networks)) and the InfiniBand fields of
    C(ib_facts); every node its network mode and RDMA devices; the C(networks) section says which
    interface carries which network role, chosen by O(rules).
  - The run is merged into the model already in O(output_dir) (schema 1 or 2, rewritten as schema 2);
    nodes of this run are updated, every other node is kept as it was, and a node that failed or was
    unreachable this run keeps its last good data with the status and error of this run. Only
    O(remove_nodes) takes a node out of the model.
  - Each node's facts are checked on the controller (mappings where mappings belong, finite numbers);
    a node with malformed facts is V(failed) with the reason, the others are modelled. Values longer than
    a sysfs page and MACs that are not hex pairs are dropped with a warning.
  - With O(networks), every node that carries a network gets an address of it, kept in the model under the
    node's inventory hostname so that it never moves (re-runs, re-discovery, nodes added, removed or listed
    in another order); new members take the lowest free address of the range; O(static_addresses) win.
    Any address problem fails the task before anything is written, naming network, node and value.
  - Nodes that were unreachable or whose facts failed are listed with that status and do not stop the
    others. A node whose interfaces or chosen roles mix InfiniBand and Ethernet (RoCE) mode is marked
    V(refused) with Fuel's meaning C(mismatching Mellanox drivers), unless O(allow_mixed=true). The
    module itself does not fail for such nodes; it returns them in RV(node_errors) so the play can
    fail exactly those hosts.
  - Files are written atomically. When the model is unchanged apart from its timestamp nothing is
    rewritten and the module reports no change.
  - The format of the model is described in the collection's C(docs/discovery.md).
author:
  - hpcnet.infiniband developers (@hpcnet)
options:
  results:
    description:
      - Per host name, the registered result of the C(hpcnet.infiniband.ib_facts) task (with
        C(ansible_facts.ib_facts), or C(unreachable)/C(failed) and C(msg)), or an C(ib_facts) dict.
      - A host mapped to V(null) is listed as unreachable.
    type: dict
    required: true
  addresses:
    description:
      - Per host name, the address used to reach it (C(ansible_host)); stored in the model. An address equal
        to the host name, or of a host in O(local_hosts), is not stored.
    type: dict
    default: {}
  local_hosts:
    description: Hosts reached with the C(local) connection (captures on the controller); no address stored.
    type: list
    elements: str
    default: []
  failed_hosts:
    description:
      - Hosts of the play that failed an earlier task of this run. They are V(failed) in the model and keep
        their last discovered data.
    type: list
    elements: str
    default: []
  remove_nodes:
    description: Nodes to take out of the model (the only way a node leaves it); their addresses become free.
    type: list
    elements: str
    default: []
  networks:
    description:
      - The site's networks (C(discovery_networks), see the collection's C(docs/networks.md)). Each
        network's members (the nodes whose allocation carries the network role O(networks[].name)) get an
        address.
    type: list
    elements: dict
    default: []
    suboptions:
      name:
        description: The network role (V(storage), V(rdma)... as in the allocation rules).
        type: str
        required: true
      cidr:
        description: The network, IPv4 or IPv6, e.g. V(10.20.0.0/24).
        type: str
        required: true
      gateway:
        description: Gateway address inside O(networks[].cidr); never given to a node.
        type: str
      ip_range:
        description: First and last address handed out (default the whole CIDR without network and broadcast).
        type: dict
        suboptions:
          first:
            description: First address.
            type: str
          last:
            description: Last address.
            type: str
      pkey:
        description:
          - P_Key of the network (hex text such as V(0x8002), an integer is its value). IPoIB members use the
            P_Key child C(<parent>.<P_Key with full membership>).
        type: raw
      vlan:
        description: VLAN of Ethernet-framed members (EIPoIB, RoCE, Ethernet); default the P_Key's partition number.
        type: int
      mtu:
        description: MTU of the network's devices.
        type: int
      ipoib_mode:
        description: IPoIB transport mode of IPoIB members.
        type: str
        choices: [datagram, connected]
  static_addresses:
    description:
      - Per host name, network name -> address (bare or with the network's prefix). They win over the
        kept and allocated addresses and are checked like them.
    type: dict
    default: {}
  eipoib_bridges:
    description:
      - The C(hpcnet.infiniband.eipoib_ovs) role's bridges in its priority order (its C(eipoib_ovs_networks),
        items with C(role) and C(bridge)). The address of an EIPoIB member goes on the bridge of the first of
        these roles allocated to the same interface.
      - Default the role's default, V(storage) C(br-storage), V(private) C(br-prv), V(public) C(br-ex).
    type: list
    elements: dict
  output_dir:
    description: Directory for the files; created (mode 0755) when missing.
    type: path
    required: true
  basename:
    description: File name without extension; the module writes C(<basename>.json), C(.yaml) and C(.html).
    type: str
    default: nodes
  rules:
    description:
      - Network allocation rules, per network role a list of matchers tried in order. A matcher is a
        mapping of interface fields (V(kind), V(driver), V(name) (a glob), V(link_type),
        V(network_mode), V(model) (a glob), V(pci_driver)) to a value or a list of values; all given
        fields must match. Among the matching interfaces those with link up win, then by name.
      - Roles not given keep their default; a role mapped to V(null) or V([]) stays unassigned.
      - 'Defaults: V(management) on V(kind=ethernet); V(storage), V(private), V(public) on
        V(kind=eipoib), else V(kind=roce); V(rdma) on V(kind=ipoib), else V(kind=roce).'
    type: dict
  allow_mixed:
    description: Accept nodes that mix InfiniBand-mode and Ethernet-mode interfaces (a warning instead of V(refused)).
    type: bool
    default: false
  exclude_kinds:
    description: Interface kinds (from C(ib_facts)) left out of the model and report.
    type: list
    elements: str
    default: [loopback, virtual]
  html:
    description: Also write the HTML report C(<basename>.html).
    type: bool
    default: true
  title:
    description: Title of the HTML report.
    type: str
    default: InfiniBand discovery report
  topology:
    description:
      - The fabric as M(hpcnet.infiniband.ib_topology) returns it (switches, HCAs, links, C(hca_ports)),
        stored as the model's C(topology) and drawn in the HTML report. Omitted, the model keeps the
        topology it had.
    type: dict
  mode:
    description: File mode of the written files.
    type: raw
    default: '0644'
notes:
  - Check mode computes everything and reports what would change, without writing.
  - An action plugin runs the writer in the controller process (no module payload with every node's facts
    as its arguments); the files are written on the controller whatever the task is delegated to.
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - ansible.builtin.action_common_attributes.flow
attributes:
  action:
    support: full
  async:
    support: none
  bypass_host_loop:
    support: none
  check_mode:
    support: full
  diff_mode:
    support: none
  platform:
    platforms: posix
"""

EXAMPLES = r"""
- name: Gather InfiniBand facts
  hpcnet.infiniband.ib_facts:
  register: discovered
  ignore_unreachable: true
  ignore_errors: true

- name: Write the nodes model on the controller
  hpcnet.infiniband.ib_nodes_model:
    results: "{{ dict(ansible_play_hosts_all | zip(ansible_play_hosts_all | map('extract', hostvars, 'discovered'))) }}"
    output_dir: "{{ playbook_dir }}/../out/discovery"
    rules:
      storage:
        - kind: eipoib
          name: "eth*"
    allow_mixed: false
  delegate_to: localhost
  run_once: true
  register: nodes_model

- name: Print the report
  ansible.builtin.debug:
    msg: "{{ nodes_model.report | join('\n') }}"
  run_once: true
"""

RETURN = r"""
model_path:
  description: The JSON nodes model.
  returned: always
  type: str
  sample: /srv/discovery/nodes.json
yaml_path:
  description: The YAML nodes model (same content).
  returned: always
  type: str
  sample: /srv/discovery/nodes.yaml
html_path:
  description: The HTML report, or null when O(html=false).
  returned: always
  type: str
  sample: /srv/discovery/nodes.html
written:
  description: Files (re)written by this run (empty in check mode and when nothing changed).
  returned: always
  type: list
  elements: str
report:
  description: The terminal report, one line per element (table of interfaces, then one summary per node).
  returned: always
  type: list
  elements: str
summary:
  description: Counts of nodes per status and per network mode.
  returned: always
  type: dict
  sample: {nodes: 3, discovered: 2, refused: 0, failed: 0, unreachable: 1, network_modes: {infiniband: 2}}
node_status:
  description: Per host, V(discovered), V(refused), V(failed) or V(unreachable).
  returned: always
  type: dict
  sample: {node1: discovered, node2: unreachable}
node_errors:
  description: Per refused or failed host, why (e.g. C(mismatching Mellanox drivers) naming the interfaces).
  returned: always
  type: dict
allocation:
  description: Per host, network role -> interface.
  returned: always
  type: dict
  sample: {node1: {management: eth0, rdma: ib0, storage: eth2}}
host_networks:
  description:
    - Per host, its networks with their addresses (the role's C(discovery_host_networks) fact), items
      C(network), C(interface), C(device), C(kind), C(address), C(gateway), C(pkey), C(vlan), C(mtu), C(mode).
  returned: always
  type: dict
  sample: {node1: [{network: rdma, interface: ib0, device: ib0, kind: ipoib, address: 10.20.0.11/24,
                    gateway: null, pkey: null, vlan: null, mtu: 2044, mode: datagram}]}
removed:
  description: Nodes O(remove_nodes) took out of the model.
  returned: always
  type: list
  elements: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.hpcnet.infiniband.plugins.module_utils._host import HostError
from ansible_collections.hpcnet.infiniband.plugins.module_utils._nodes_writer import ARGUMENT_SPEC, write_outputs


def main():
    module = AnsibleModule(
        argument_spec=ARGUMENT_SPEC,
        supports_check_mode=True,
    )
    try:
        result = write_outputs(module.params, check_mode=module.check_mode)
    except (HostError, ValueError, OSError) as exc:
        module.fail_json(msg=str(exc))
    for warning in result.pop("warnings"):
        module.warn(warning)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
