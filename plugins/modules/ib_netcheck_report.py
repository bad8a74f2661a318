#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: hpcnet.infiniband contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Controller side of the network verification: matrix, findings, result file, verdict."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: ib_netcheck_report
short_description: Evaluate a network verification over InfiniBand (matrix, findings, verdict)
version_added: 0.1.0
description:
  - Takes what M(hpcnet.infiniband.ib_netcheck) returned on every node and decides, per network, who
    cannot reach whom (connectivity matrix) and what is inconsistent, each finding with the exact node,
    interface and field.
  - "Checks: interface present and up; same MTU on all members (the network's C(mtu), or the most common
    one); full-MTU probes that must not fragment; same IPoIB mode; an IPv4 address; no duplicate IPv4
    addresses or port GUIDs (the first holder by node name keeps it, the others are reported); every IB
    port ACTIVE with a subnet manager, the same SM LID on all members; the network's P_Key in each member
    port's P_Key table (membership bit ignored); every IB member port at the expected rate (O(expect_rate),
    the network's C(expect_rate), or the most common rate of its members); with O(topology), every member
    port on a link that is not degraded (trained below what both ends support, or below the fabric's
    usual width/speed), naming the switch port."
  - Members of the networks in O(allocation) that are not in O(nodes) (a run with C(--limit)) or sent no
    result are listed in C(not_checked); the verification then covers the others only and says so.
  - A node that no other member can reach and that reaches none is reported once (not once per pair),
    when the remaining members can reach each other.
  - Writes the whole result as JSON to O(dest) and fails when there is any finding (unless
    O(fail_on_findings=false)). Run it once (C(run_once)); it always runs in the controller process (an
    action plugin), and O(dest) is a path on the controller.
author:
  - hpcnet.infiniband developers (@hpcnet)
options:
  networks:
    description: Networks to verify, as given to M(hpcnet.infiniband.ib_netcheck) (empty = every allocated role).
    type: list
    elements: dict
    default: []
  allocation:
    description: Node -> role -> interface, as given to M(hpcnet.infiniband.ib_netcheck).
    type: dict
    default: {}
  nodes:
    description: Only these nodes are members; all when omitted.
    type: list
    elements: str
  results:
    description: Node name -> the C(netcheck) dict M(hpcnet.infiniband.ib_netcheck) returned there.
    type: dict
    required: true
  unreachable_nodes:
    description: Members that Ansible could not reach; reported, left out of the matrix.
    type: list
    elements: str
    default: []
  dest:
    description:
      - Path of the JSON result file (on the controller); not written when omitted. Written atomically
        (a temporary file in the same directory, then renamed), with mode 0644.
    type: path
  expect_rate:
    description: Gb/s every InfiniBand member port should run at; the most common rate per network when omitted.
    type: float
  topology:
    description: The fabric as M(hpcnet.infiniband.ib_topology) returns it; its degraded links are reported on their members.
    type: dict
  fail_on_findings:
    description: Fail (a non-zero verdict for the play) when there is any finding.
    type: bool
    default: true
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  platform:
    platforms: posix
  check_mode:
    support: full
    details: The result file is written in check mode too (it is a report, not host state).
  diff_mode:
    support: none
seealso:
  - module: hpcnet.infiniband.ib_netcheck
"""

EXAMPLES = r"""
- name: Evaluate and write the result file
  hpcnet.infiniband.ib_netcheck_report:
    networks: [{name: rdma, pkey: "0x8002"}]
    allocation: "{{ allocation }}"
    results: "{{ dict(ansible_play_hosts | zip(ansible_play_hosts
                 | map('extract', hostvars, ['probe', 'netcheck']))) }}"
    dest: /var/tmp/netcheck.json
  delegate_to: localhost
  run_once: true
"""

RETURN = r"""
ok:
  description: True when nothing was found.
  returned: always
  type: bool
findings:
  description:
    - Problems, each with network, node, interface, field, expected, actual, severity and a message.
    - C(severity) V(error) fails the verification; V(warning) is reported only (a member port slower than
      the most common rate of its network when no expected rate was given; a slower adapter generation,
      not a degraded link).
  returned: always
  type: list
  elements: dict
  sample: [{"network": "rdma", "node": "node2", "interface": "ib0", "field": "mtu", "expected": 2044,
            "actual": 1500, "severity": "error", "message": "node2 ib0 has MTU 1500, the network uses 2044"}]
networks:
  description: Per network its members, MTU, P_Key, matrix (sender -> receiver -> ok/mtu/fail/skip),
    cannot_reach and path_mtu_failures pairs.
  returned: always
  type: dict
problems:
  description: How many findings fail the verification (severity V(error); warnings are not counted).
  returned: always
  type: int
matrix_text:
  description: The matrices as printable lines.
  returned: always
  type: list
  elements: str
not_checked:
  description: Members of the allocation's networks left out of this verification, node -> reason
    (C(not in this play), C(no result)).
  returned: always
  type: dict
  sample: {"node3": "not in this play"}
dest:
  description: Where the JSON result was written.
  returned: when O(dest) is set
  type: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.hpcnet.infiniband.plugins.module_utils import _netcheck
from ansible_collections.hpcnet.infiniband.plugins.module_utils._host import Host


def main():
    module = AnsibleModule(argument_spec=_netcheck.REPORT_ARGUMENT_SPEC, supports_check_mode=True)
    output, message = _netcheck.report(module.params, Host())
    if message:
        module.fail_json(msg=message, **output)
    module.exit_json(**output)


if __name__ == "__main__":
    main()
