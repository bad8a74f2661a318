#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: hpcnet.infiniband contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: ib_sm_check
short_description: Check that a subnet manager has brought this host's InfiniBand ports up
version_added: "0.1.0"
description:
  - Read-only prerequisite check. For the selected ports (default every port whose link layer is
    InfiniBand; Ethernet/RoCE ports are ignored) it verifies that the port is C(ACTIVE), its
    physical state is C(LinkUp) and its C(sm_lid) is not 0, i.e. a subnet manager has configured it.
  - >-
    Every failing port gets its own message, and the module fails with all of them in one message,
    for example "mlx4_0 port 1 is INIT (LinkUp): no subnet manager has configured it; start opensm
    on a node or the switch" or "mlx4_0 port 1 is DOWN (Polling): no link: check the cable and the
    switch port".
  - With O(wait_timeout) it polls until the ports are ready (a freshly started SM needs a sweep) and
    gives up after that many seconds with the final message.
  - With infiniband-diags installed it asks the fabric with C(sminfo) (and C(saquery SMIR) for
    standby SMs) for the master SM's GUID, LID, priority and state, and tells whether the SM runs on
    this host. It can require a minimum number of SMs, a given SM GUID, or that the SM is not local.
  - Every rail is asked. The query goes out through each checked physical port (C(sminfo -C <device> -P <port>));
    a host with two ports on two fabrics has two subnet managers, and either fabric may lack one. With
    more than one port every message names the port it is about.
  - It reads only the port attributes it judges (state, phys_state, link_layer, lid, sm_lid, sm_sl,
    rate, GID 0 for the port GUID), never the P_Key tables.
author:
  - hpcnet.infiniband developers (@hpcnet)
attributes:
  platform:
    platforms: posix
  check_mode:
    support: full
    details: Read-only; behaves the same in check mode.
  diff_mode:
    support: none
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - hpcnet.infiniband.host
options:
  devices:
    description:
      - RDMA device names (HCAs) to check, for example V(mlx4_0). Each must exist.
      - Default is every RDMA device of the host.
    type: list
    elements: str
  ports:
    description:
      - Port numbers to check on the selected devices. Each must exist on a selected device.
      - Default is every port. Ports whose link layer is Ethernet are never checked.
    type: list
    elements: int
  wait_timeout:
    description:
      - Seconds to keep polling until every selected port is ready and the SM requirements hold.
      - V(0) checks once.
    type: int
    default: 0
  poll_interval:
    description: Seconds between two readings while waiting.
    type: float
    default: 2.0
  query_sm:
    description:
      - V(auto) runs C(sminfo) when infiniband-diags is installed and the ports are ACTIVE; a
        missing tool is no failure, a failing query only fails the check when O(min_sms),
        O(sm_guid) or O(allow_local_sm=false) need its answer.
      - V(always) requires the query to succeed (no SM answering fails the check).
      - V(never) checks the ports only.
    type: str
    choices: [auto, always, never]
    default: auto
  sm_query_timeout:
    description: Seconds one C(sminfo) or C(saquery) run may take before it counts as no answer.
    type: int
    default: 15
  min_sms:
    description:
      - Minimum number of subnet managers on the fabric (master and standby, from C(saquery SMIR)).
      - V(0) requires nothing beyond a working master.
    type: int
    default: 0
  sm_guid:
    description:
      - Port GUID the master SM must have, in any spelling the tools print (C(0x0002c90300a1b2c1),
        C(0002:c903:00a1:b2c1)) or an integer. With several ports, the master of every port's fabric.
    type: raw
  allow_local_sm:
    description:
      - When V(false), fail if the master SM runs on this host (its GUID is one of this host's
        port GUIDs).
    type: bool
    default: true
  require_ports:
    description:
      - A host without any InfiniBand port (RoCE or Ethernet only) has nothing for a subnet manager to
        serve.
      - >-
        With V(false) it passes at once with an empty RV(ports) list and the message "no InfiniBand
        port: nothing for a subnet manager to serve"; with V(true) it fails at once (it is never
        polled, waiting does not grow a port).
    type: bool
    default: false
notes:
  - Requires no root. C(sminfo) needs access to C(/dev/infiniband/umad*) (usually root).
seealso:
  - module: hpcnet.infiniband.ib_opensm_config
  - name: opensm(8)
    description: The OpenSM subnet manager.
    link: https://github.com/linux-rdma/opensm
"""

EXAMPLES = r"""
- name: Check that a subnet manager serves every IB port (wait up to a minute for a sweep)
  hpcnet.infiniband.ib_sm_check:
    wait_timeout: 60

- name: Require two SMs (master + standby) and a master that is not a compute node
  hpcnet.infiniband.ib_sm_check:
    min_sms: 2
    allow_local_sm: false
    query_sm: always

- name: Check one HCA port and a known SM
  hpcnet.infiniband.ib_sm_check:
    devices: [mlx5_0]
    ports: [1]
    sm_guid: "0x0002c90300a1b2c1"
  register: sm_check
"""

RETURN = r"""
ports:
  description: The checked ports, each with its reading and verdict.
  returned: always
  type: list
  elements: dict
  contains:
    device:
      description: RDMA device name.
      type: str
      sample: mlx4_0
    port:
      description: Port number.
      type: int
      sample: 1
    link_layer:
      description: C(InfiniBand) or C(Ethernet).
      type: str
      sample: InfiniBand
    state:
      description: Logical port state.
      type: str
      sample: ACTIVE
    state_code:
      description: Kernel state code (4 is ACTIVE).
      type: int
      sample: 4
    phys_state:
      description: Physical port state.
      type: str
      sample: LinkUp
    phys_state_code:
      description: Kernel physical state code (5 is LinkUp).
      type: int
      sample: 5
    lid:
      description: Port LID (0 until an SM assigns one).
      type: int
      sample: 3
    sm_lid:
      description: LID of the SM that configured the port (0 is none).
      type: int
      sample: 1
    sm_sl:
      description: Service level to reach the SM.
      type: int
      sample: 0
    port_guid:
      description: Port GUID in kernel format.
      type: str
      sample: "0002:c903:0001:0001"
    rate:
      description: Port rate as the kernel prints it.
      type: str
      sample: "56 Gb/sec (4X FDR)"
    local_sm:
      description: True when the SM answers from this very port (its LID equals its SM LID).
      type: bool
    virtual:
      description:
        - True for a port of an SR-IOV VF. It is checked like any port, but the SM is asked through the
          physical ports only (a VF's port is on its PF's fabric and may not send SMPs).
      type: bool
    sm:
      description:
        - What C(sminfo) through this port reported about its fabric's master SM (the keys of RV(sm));
          null when not queried.
      type: dict
    ok:
      description: True when the port is ready.
      type: bool
    message:
      description: Why the port is not ready; null when it is.
      type: str
sm:
  description:
    - What C(sminfo) through the first checked port reported about the master SM; null when not
      queried. Each port's own answer is in RV(ports[].sm).
  returned: always
  type: dict
  contains:
    queried:
      description: False when infiniband-diags is not installed.
      type: bool
    error:
      description: Why the query failed, for example a timeout because no SM answers.
      type: str
    guid:
      description: Master SM port GUID in kernel format.
      type: str
      sample: "0000:0000:0010:0003"
    guid_hex:
      description: Master SM port GUID as opensm prints it.
      type: str
      sample: "0x0000000000100003"
    lid:
      description: Master SM LID.
      type: int
      sample: 1
    priority:
      description: Master SM priority (0-15).
      type: int
      sample: 5
    state:
      description: SM state, one of MASTER, STANDBY, DISCOVERING, NOTACTIVE.
      type: str
      sample: MASTER
    activity_count:
      description: SM activity counter.
      type: int
      sample: 65
    local:
      description: True when the master SM runs on this host.
      type: bool
    count:
      description: Number of SMs known to the master (master and standby).
      type: int
      sample: 1
    sms:
      description: Every SM known to the master with keys guid, guid_hex, lid, priority, state, local.
      type: list
      elements: dict
failed_ports:
  description: The ports that are not ready (device, port, state, phys_state, message).
  returned: always
  type: list
  elements: dict
attempts:
  description: How many times the ports were read.
  returned: always
  type: int
  sample: 1
waited:
  description: Seconds spent polling.
  returned: always
  type: float
  sample: 0.0
msg:
  description: All problems in one message, or a summary when everything is ready.
  returned: always
  type: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.hpcnet.infiniband.plugins.module_utils._host import Host
from ansible_collections.hpcnet.infiniband.plugins.module_utils._sm import run_check, summary

ARGUMENT_SPEC = dict(
    devices=dict(type="list", elements="str"),
    ports=dict(type="list", elements="int"),
    wait_timeout=dict(type="int", default=0),
    poll_interval=dict(type="float", default=2.0),
    query_sm=dict(type="str", choices=["auto", "always", "never"], default="auto"),
    sm_query_timeout=dict(type="int", default=15),
    min_sms=dict(type="int", default=0),
    sm_guid=dict(type="raw"),
    allow_local_sm=dict(type="bool", default=True),
    require_ports=dict(type="bool", default=False),
    sysfs_root=dict(type="path", default="/sys"),
)


def main():
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    params = module.params
    host = Host.from_module(module, sysfs_root=params["sysfs_root"])
    result, failure = run_check(
        host,
        devices=params["devices"],
        ports=params["ports"],
        wait_timeout=params["wait_timeout"],
        poll_interval=params["poll_interval"],
        query=params["query_sm"],
        min_sms=params["min_sms"],
        sm_guid=params["sm_guid"],
        allow_local_sm=params["allow_local_sm"],
        require_ports=params["require_ports"],
        sm_query_timeout=params["sm_query_timeout"],
    )
    for warning in host.warnings:
        module.warn(warning)
    if failure:
        module.fail_json(msg=failure, changed=False, **result)
    module.exit_json(msg=summary(result), changed=False, **result)


if __name__ == "__main__":
    main()
