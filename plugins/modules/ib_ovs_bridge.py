#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: hpcnet.infiniband contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Open vSwitch bridge with EIPoIB ports.

Why our own module and not openvswitch.openvswitch.openvswitch_bridge/openvswitch_port (2.1.1)? Tried
on a real ovs-vswitchd (userspace datapath): openvswitch_bridge applies ``set`` (the only way to give a
datapath_type) only when it creates the bridge and reports ``ok`` for an existing bridge with the wrong
datapath type; openvswitch_port cannot remove a VLAN tag (it runs ``tag=None`` and fails), cannot move a
port from another bridge, happily adds a port whose netdev does not exist, and neither module notices
that ovs-vswitchd failed to set a bridge up (``ovs-vsctl`` exits 0 then). Neither can refuse a raw IPoIB
interface before changing anything, has check/diff mode with a plan, or avoids shell strings.
"""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: ib_ovs_bridge
short_description: Open vSwitch bridge over EIPoIB interfaces, VLAN tags from P_Keys
version_added: 0.1.0
description:
  - Creates, reconciles or removes an Open vSwitch bridge and its ports, in one C(ovs-vsctl) transaction.
  - Refuses, before changing anything, a raw IPoIB interface (link type infiniband) as a port, naming the
    EIPoIB interface that runs over it if there is one; an interface that does not exist; an interface that
    already is a port of another bridge (unless O(move=true) or the port's C(move)); an MTU larger than the
    MTU of the EIPoIB interface's IPoIB parent.
  - The VLAN tag of a port can be derived from a P_Key (C(pkey & 0x7fff)).
  - After applying, checks that ovs-vswitchd really set the bridge and ports up (C(ovs-vsctl) exits 0
    even when it could not, for example a C(system) datapath without the kernel module) and fails if not.
    When ovs-vswitchd is down, the change written to ovsdb is reported (C(changed=true)) and the run fails;
    a later run fails too, with nothing to change, as long as ovs-vswitchd has not set the bridge up.
  - Reads only the listed ports' netdevs and the IPoIB interfaces under them (no P_Key tables), not the
    whole host.
author:
  - hpcnet.infiniband developers (@hpcnet)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - hpcnet.infiniband.host
options:
  bridge:
    description: Name of the bridge (also the name of its internal interface).
    type: str
    required: true
  state:
    description: Whether the bridge should exist.
    type: str
    choices: [present, absent]
    default: present
  datapath_type:
    description:
      - C(system) (the kernel datapath) or C(netdev) (userspace datapath). An existing bridge with another
        datapath type is changed.
    type: str
    choices: [system, netdev]
    default: system
  ports:
    description:
      - Ports the bridge must have. Ports not listed are kept unless O(purge_ports=true).
      - Not with O(state=absent) (the bridge is removed with its ports).
    type: list
    elements: dict
    default: []
    suboptions:
      name:
        description: Interface name (an EIPoIB C(eth*) interface or any Ethernet netdev).
        type: str
        required: true
      vlan:
        description: VLAN tag (1-4094). Omit both O(ports[].vlan) and O(ports[].pkey) for an untagged port.
        type: int
      pkey:
        description:
          - P_Key, hexadecimal as every InfiniBand tool prints it, C(0x) optional (V(0x8002), V(8002)), or an
            integer taken as its value (V(32770), which unquoted YAML C(0x8002) also gives). The VLAN tag
            becomes C(pkey & 0x7fff).
        type: raw
      move:
        description: Move the interface from the bridge it is in now.
        type: bool
        default: false
  mtu:
    description:
      - MTU requested for the bridge's internal interface and every listed port (C(mtu_request)), 68..65520
        (the largest IPoIB MTU). Must not exceed the MTU of the IPoIB parent of any EIPoIB port.
      - Not with O(state=absent).
    type: int
  hwaddr:
    description:
      - MAC address of the bridge's own interface (ovsdb C(other_config:hwaddr)).
      - V(port) gives it the MAC of the first port in O(ports). An EIPoIB interface receives only for the
        MACs it maps to IPoIB, so an address on the bridge works only with the EIPoIB interface's own MAC.
      - V(ovs) leaves it as it is (Open vSwitch picks one); or give a unicast MAC such as C(02:00:00:00:00:01).
    type: str
    default: port
  move:
    description: Move every listed interface that is a port of another bridge now.
    type: bool
    default: false
  purge_ports:
    description: Remove ports of the bridge that are not listed.
    type: bool
    default: false
  database:
    description: ovsdb-server to talk to (C(unix:/path/db.sock)); the ovs-vsctl default when omitted.
    type: str
  timeout:
    description: Seconds C(ovs-vsctl) may wait for ovs-vswitchd (a positive number).
    type: int
    default: 10
attributes:
  platform:
    platforms: posix
  check_mode:
    support: full
  diff_mode:
    support: full
requirements:
  - ovs-vsctl on the managed node
notes:
  - C(ovs-vsctl) is called with argv lists, never through a shell.
seealso:
  - module: hpcnet.infiniband.ib_facts
"""

EXAMPLES = r"""
- name: Storage bridge over the EIPoIB interface, tagged from the storage P_Key
  hpcnet.infiniband.ib_ovs_bridge:
    bridge: br-storage
    ports:
      - name: eth2
        pkey: 0x8002  # or "8002", "0x8002", 32770: the same P_Key, VLAN 2

- name: Userspace datapath (no openvswitch kernel module), move eth3 from br-old
  hpcnet.infiniband.ib_ovs_bridge:
    bridge: br-prv
    datapath_type: netdev
    mtu: 2044
    ports:
      - name: eth3
        move: true

- name: Remove a bridge
  hpcnet.infiniband.ib_ovs_bridge:
    bridge: br-old
    state: absent
"""

RETURN = r"""
changed:
  description: Whether ovsdb was (or in check mode would be) changed, also when the run then failed.
  returned: always
  type: bool
plan:
  description: Changes made or planned (action, target, before, after).
  returned: always
  type: list
  elements: dict
  sample: [{"action": "add_port", "target": "eth2", "before": null, "after": {"bridge": "br-storage", "vlan": 2}}]
reboot_required:
  description: Always false (OVS changes apply at once).
  returned: always
  type: bool
reload_required:
  description: Always false.
  returned: always
  type: bool
bridge:
  description: The bridge as wanted, with VLAN tags resolved from P_Keys.
  returned: success
  type: dict
  sample: {"name": "br-storage", "datapath_type": "netdev", "mtu": null,
           "ports": [{"name": "eth2", "vlan": 2, "pkey": "0x8002", "move": false}]}
ovs_status:
  description: Problems ovs-vswitchd reports for the bridge and its ports after the run ([] when healthy).
  returned: when ovsdb was read
  type: list
  elements: str
commands:
  description: The ovs-vsctl argv that was (or in check mode would be) run.
  returned: when changed
  type: list
  elements: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.hpcnet.infiniband.plugins.module_utils import _ovs
from ansible_collections.hpcnet.infiniband.plugins.module_utils._facts import FactsError
from ansible_collections.hpcnet.infiniband.plugins.module_utils._host import Host, HostError
from ansible_collections.hpcnet.infiniband.plugins.module_utils._plan import run_plan


def main():
    module = AnsibleModule(
        argument_spec=dict(
            bridge=dict(type="str", required=True),
            state=dict(type="str", choices=["present", "absent"], default="present"),
            datapath_type=dict(type="str", choices=["system", "netdev"], default="system"),
            ports=dict(type="list", elements="dict", default=[], options=dict(
                name=dict(type="str", required=True),
                vlan=dict(type="int"),
                pkey=dict(type="raw", no_log=False),
                move=dict(type="bool", default=False),
            ), mutually_exclusive=[("vlan", "pkey")]),
            mtu=dict(type="int"),
            hwaddr=dict(type="str", default="port"),
            move=dict(type="bool", default=False),
            purge_ports=dict(type="bool", default=False),
            database=dict(type="str"),
            timeout=dict(type="int", default=10),
            sysfs_root=dict(type="path", default="/sys"),
        ),
        supports_check_mode=True,
    )
    params = module.params
    problems = _ovs.check_params(params)
    if problems:
        module.fail_json(msg="; ".join(problems), changed=False)
    host = Host.from_module(module, sysfs_root=params["sysfs_root"])
    try:
        ovs = _ovs.read_ovs(host, params["database"], params["timeout"])
        nics = _ovs.read_port_nics(host, _ovs.port_names(params)) if params["state"] == "present" else {}
    except (_ovs.OvsError, FactsError, HostError, ValueError) as exc:
        module.fail_json(msg=str(exc), changed=False)
    plan = _ovs.plan_bridge(params, nics, ovs)
    argv = _ovs.vsctl_argv(plan, params["bridge"], params["database"], params["timeout"])
    port_names = [p["name"] for p in plan.info.get("ports", [])]
    extra = {"bridge": {"name": params["bridge"], "datapath_type": params["datapath_type"], "mtu": params["mtu"],
                        "ports": plan.info.get("ports", [])},
             "ovs_status": []}
    if plan.changed:
        extra["commands"] = argv
    elif plan.ok and params["state"] == "present" and params["bridge"] in ovs["bridges"]:
        # Nothing to write, but a bridge ovs-vswitchd never set up is not "ok" (vswitchd down when it
        # was added, or a datapath it cannot create).
        extra["ovs_status"] = _ovs.bridge_problems(ovs, params["bridge"], port_names)
        if extra["ovs_status"]:
            module.fail_json(msg="bridge %s is in ovsdb but ovs-vswitchd has not set it up: %s" % (
                params["bridge"], "; ".join(extra["ovs_status"])), **dict(plan.result(), **extra))

    def apply(_plan):
        rc, out, err = host.run(argv, timeout=params["timeout"] + 5)
        after = _ovs.read_ovs(host, params["database"], params["timeout"])
        # ovs-vsctl commits before it waits for vswitchd: what ovsdb holds now is what was changed.
        written = rc == 0 or _ovs.config_view(after) != _ovs.config_view(ovs)
        # After a removal only vswitchd's lag can be reported: the bridge's interfaces are gone from ovsdb.
        status = _ovs.bridge_problems(after, params["bridge"], port_names)
        if rc != 0 or status:
            if rc == 0:
                why = "exited 0 but ovs-vswitchd could not set the bridge up"
            else:
                why = "failed (rc %s%s)" % (rc, ", after writing ovsdb" if written else "")
            module.fail_json(msg="ovs-vsctl %s: %s" % (why, "; ".join(status) or (err or out).strip()),
                             **dict(plan.result(), **dict(extra, changed=written, ovs_status=status)))
        return {"ovs_status": status}

    run_plan(module, plan, apply, extra)


if __name__ == "__main__":
    main()
