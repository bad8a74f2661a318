#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: hpcnet.infiniband contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Map the InfiniBand fabric from one node: switches, HCAs, links with width/speed, degraded links."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: ib_topology
short_description: Map the InfiniBand fabric (which HCA port is cabled to which switch port) and find degraded links
version_added: 0.2.0
description:
  - Runs C(ibnetdiscover) (and C(iblinkinfo) unless O(linkinfo=false)) on the node and returns the fabric as
    data - switches, HCAs, every link with its width and speed, and every HCA port with the switch and
    switch port it is cabled to.
  - A link is degraded when C(iblinkinfo) says it could be wider or faster (it trained below what both
    ends support), or when its width or speed is below O(expect_width)/O(expect_speed) (default the most
    common among the links with an HCA end).
  - Run it once per fabric (C(run_once)) on a node with an active InfiniBand port; the discovery writes
    the result into the nodes model as C(topology), and the HTML report draws it.
  - Never changes the host.
author:
  - hpcnet.infiniband developers (@hpcnet)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
options:
  device:
    description: RDMA device to send the discovery through (C(-C)); the tools' default port when omitted.
    type: str
  port:
    description: Port of O(device) to send the discovery through (C(-P)).
    type: int
  linkinfo:
    description: Also run C(iblinkinfo) for the link states and what both ends of each link support.
    type: bool
    default: true
  expect_width:
    description: Width every HCA link should have (C(4X)); the most common one when omitted.
    type: str
  expect_speed:
    description: Speed every HCA link should have (C(EDR), C(HDR)...); the most common one when omitted.
    type: str
  timeout:
    description: Seconds each tool may run.
    type: int
    default: 60
attributes:
  platform:
    platforms: posix
  check_mode:
    support: full
    details: Read-only; behaves the same in check mode.
  diff_mode:
    support: none
requirements:
  - infiniband-diags (C(ibnetdiscover), C(iblinkinfo)) on the node
seealso:
  - module: hpcnet.infiniband.ib_netcheck_report
"""

EXAMPLES = r"""
- name: Map the fabric from the first node
  hpcnet.infiniband.ib_topology:
  run_once: true
  register: fabric

- name: Show the degraded links
  ansible.builtin.debug:
    msg: "{{ fabric.topology.hca_ports | selectattr('degraded') | list }}"
"""

RETURN = r"""
topology:
  description:
    - The fabric. C(switches) and C(hcas) by node GUID (C(0x) + 16 hex digits) with name and port count;
      C(links) with both ends (guid, type, name, port, port_guid for HCA ends), width, speed, rate_gbps,
      state, phys_state, could_be, expected (what the link should run - the widest and fastest of what it
      runs, what both ends support and the fabric's expected width/speed), degraded and reasons;
      C(hca_ports) one row per cabled HCA port (hca, host, port, port_guid, switch, switch_guid,
      switch_port, width, speed, rate_gbps, expected, degraded, reasons); C(expected) the fabric's
      expected width and speed.
  returned: success
  type: dict
  sample: {"switches": {"0x0000fab000000000": {"guid": "0x0000fab000000000", "name": "lab switch", "ports": 8,
                                               "lid": 2}},
           "hca_ports": [{"host": "node1", "hca": "node1 HCA-1", "port": 1, "port_guid": "0x98039b0300456c11",
                          "switch": "lab switch", "switch_port": 2, "width": "4X", "speed": "EDR",
                          "rate_gbps": 100.0, "expected": "4X EDR", "degraded": false, "reasons": []}]}
degraded:
  description: The C(hca_ports) rows that are degraded.
  returned: success
  type: list
  elements: dict
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.hpcnet.infiniband.plugins.module_utils import _topology
from ansible_collections.hpcnet.infiniband.plugins.module_utils._host import Host, HostError, valid_rdma_device


def main():
    module = AnsibleModule(
        argument_spec=dict(
            device=dict(type="str"),
            port=dict(type="int"),
            linkinfo=dict(type="bool", default=True),
            expect_width=dict(type="str"),
            expect_speed=dict(type="str"),
            timeout=dict(type="int", default=60),
        ),
        supports_check_mode=True,
    )
    params = module.params
    if params["timeout"] <= 0:
        module.fail_json(msg="timeout must be a positive number of seconds, not %d" % params["timeout"])
    if params["device"] is not None and not valid_rdma_device(params["device"]):
        module.fail_json(msg="device %r is not an RDMA device name" % params["device"])
    if params["port"] is not None and params["port"] <= 0:
        module.fail_json(msg="port must be 1 or more, not %d" % params["port"])
    via = (["-C", params["device"]] if params["device"] else []) + (["-P", str(params["port"])] if params["port"] else [])
    host = Host.from_module(module)
    try:
        topology = _topology.map_fabric(host, module.get_bin_path, via, params["linkinfo"], params["timeout"],
                                        params["expect_width"], params["expect_speed"])
    except (HostError, _topology.TopologyError) as exc:
        module.fail_json(msg=str(exc))
    module.exit_json(changed=False, topology=topology,
                     degraded=[row for row in topology["hca_ports"] if row["degraded"]])


if __name__ == "__main__":
    main()
