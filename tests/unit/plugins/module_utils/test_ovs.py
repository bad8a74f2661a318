"""Unit tests for the OVS-over-EIPoIB rules (plugins/module_utils/_ovs.py)."""
import json

import pytest

from ansible_collections.hpcnet.infiniband.plugins.module_utils import _ovs


def nic(name, link_type="ether", kind="ethernet", mtu=1500, **extra):
    entry = {"name": name, "link_type": link_type, "kind": kind, "mtu": mtu}
    entry.update(extra)
    return entry


def eipoib_nics():
    """ib0 (IPoIB, MTU 2044) with EIPoIB eth2 over it; ib1 with no EIPoIB; child ib0.8002; plain eth0."""
    return {
        "eth0": nic("eth0"),
        "ib0": nic("ib0", "infiniband", "ipoib", 2044, ipoib={"mode": "datagram", "pkey": "0xffff", "parent": None}),
        "ib1": nic("ib1", "infiniband", "ipoib", 2044, ipoib={"mode": "datagram", "pkey": "0xffff", "parent": None}),
        "ib0.8002": nic("ib0.8002", "infiniband", "ipoib_child", 2044,
                        ipoib={"mode": "datagram", "pkey": "0x8002", "parent": "ib0"}),
        "eth2": nic("eth2", kind="eipoib", mtu=2044, driver="eth_ipoib", bus_info="ib0", eipoib={"slaves": ["ib0"]}),
    }


def empty_ovs():
    return {"bridges": {}, "ports": {}, "interfaces": {}}


def ovs_with(bridge, ports, datapath_type="netdev", tags=None):
    tags = tags or {}
    state = {"bridges": {bridge: {"datapath_type": datapath_type, "ports": sorted([bridge] + ports)}},
             "ports": {}, "interfaces": {}}
    for name in [bridge] + ports:
        state["ports"][name] = {"bridge": bridge, "tag": tags.get(name), "interfaces": [name]}
        state["interfaces"][name] = {"type": "internal" if name == bridge else "", "error": None,
                                     "ofport": 65534 if name == bridge else 1, "mtu": 1500, "mtu_request": None}
    return state


def want(**kw):
    base = {"bridge": "br-storage", "state": "present", "datapath_type": "netdev", "ports": [], "mtu": None,
            "move": False, "purge_ports": False}
    base.update(kw)
    return base


# ------------------------------------------------------------------ P_Key -> VLAN
@pytest.mark.parametrize("pkey,vlan", [("0x8002", 2), ("8002", 2), ("0x0002", 2), (0x8abc, 0xabc & 0x7fff),
                                       ("0x8ffe", 0xffe), (0x0001, 1)])
def test_vlan_from_pkey(pkey, vlan):
    assert _ovs.vlan_from_pkey(pkey) == vlan


@pytest.mark.parametrize("pkey,words", [("0x0000", "no partition"), ("0x8000", "no partition"), ("0xffff", "802.1Q"),
                                        ("0x7fff", "802.1Q"), ("0x9000", "802.1Q"), ("zz", "hexadecimal"),
                                        ("0x10000", "four hex digits"), (0x10000, "outside"), (True, "number")])
def test_vlan_from_pkey_refuses(pkey, words):
    with pytest.raises(ValueError, match=words):
        _ovs.vlan_from_pkey(pkey)


# ------------------------------------------------------------------ interface rules
def test_raw_ipoib_refused_and_eipoib_named():
    problems = _ovs.check_port_interface("ib0", eipoib_nics())
    assert len(problems) == 1
    assert "ib0 is a raw IPoIB interface (link type infiniband)" in problems[0]
    assert "use the EIPoIB interface eth2 that runs over ib0" in problems[0]


def test_raw_ipoib_without_eipoib_says_so():
    problems = _ovs.check_port_interface("ib1", eipoib_nics())
    assert "no EIPoIB interface runs over ib1" in problems[0]


def test_ipoib_child_points_to_eipoib_over_parent():
    problems = _ovs.check_port_interface("ib0.8002", eipoib_nics())
    assert "eth2 that runs over ib0" in problems[0]


def test_missing_interface_and_bad_name():
    assert _ovs.check_port_interface("eth9", eipoib_nics()) == ["interface eth9 does not exist on this host"]
    assert "not a valid interface name" in _ovs.check_port_interface("../etc", eipoib_nics())[0]


def test_eipoib_and_ethernet_accepted():
    assert _ovs.check_port_interface("eth2", eipoib_nics()) == []
    assert _ovs.check_port_interface("eth0", eipoib_nics()) == []


def test_eipoib_found_by_bus_info_when_slaves_unknown():
    nics = eipoib_nics()
    nics["eth2"]["eipoib"] = None
    assert _ovs.eipoib_over(nics, "ib0") == ["eth2"]
    assert _ovs.ipoib_parents(nics, "eth2") == ["ib0"]


def test_mtu_against_ipoib_parent():
    nics = eipoib_nics()
    assert _ovs.check_port_mtu("eth2", nics) == []
    assert _ovs.check_port_mtu("eth2", nics, 2044) == []
    problem = _ovs.check_port_mtu("eth2", nics, 4092)
    assert "requested MTU 4092 for eth2 exceeds the MTU 2044 of its IPoIB parent ib0" in problem[0]
    nics["eth2"]["mtu"] = 9000
    assert "eth2 has MTU 9000" in _ovs.check_port_mtu("eth2", nics)[0]
    assert _ovs.check_port_mtu("eth0", nics, 9000) == []  # plain Ethernet: no IPoIB parent


# ------------------------------------------------------------------ plan
def test_plan_new_bridge_with_pkey_tag():
    plan = _ovs.plan_bridge(want(ports=[{"name": "eth2", "pkey": "0x8002"}]), eipoib_nics(), empty_ovs())
    assert plan.ok
    assert [(c.action, c.target) for c in plan.changes] == [("add_bridge", "br-storage"), ("add_port", "eth2")]
    assert plan.changes[1].after == {"bridge": "br-storage", "vlan": 2}
    argv = _ovs.vsctl_argv(plan, "br-storage", "unix:/x.sock", 5)
    assert argv == ["ovs-vsctl", "--db=unix:/x.sock", "--timeout=5",
                    "--", "add-br", "br-storage", "--", "set", "Bridge", "br-storage", "datapath_type=netdev",
                    "--", "add-port", "br-storage", "eth2", "tag=2"]


def test_plan_idempotent():
    ovs = ovs_with("br-storage", ["eth2"], tags={"eth2": 2})
    plan = _ovs.plan_bridge(want(ports=[{"name": "eth2", "pkey": "0x8002"}]), eipoib_nics(), ovs)
    assert plan.ok and not plan.changed


def test_plan_reconciles_datapath_and_clears_tag():
    ovs = ovs_with("br-storage", ["eth2"], datapath_type="system", tags={"eth2": 5})
    plan = _ovs.plan_bridge(want(ports=["eth2"]), eipoib_nics(), ovs)
    assert [(c.action, c.before, c.after) for c in plan.changes] == [
        ("set_datapath_type", "system", "netdev"), ("set_vlan", 5, None)]
    argv = _ovs.vsctl_argv(plan, "br-storage")
    assert argv[-5:] == ["--", "clear", "Port", "eth2", "tag"]


def test_plan_refuses_raw_ipoib_and_changes_nothing():
    plan = _ovs.plan_bridge(want(ports=["eth0", "ib0"]), eipoib_nics(), empty_ovs())
    assert not plan.ok and not plan.changed
    assert "eth2" in plan.errors[0]


def test_plan_refuses_port_in_other_bridge_unless_move():
    ovs = ovs_with("br-old", ["eth2"])
    plan = _ovs.plan_bridge(want(ports=["eth2"]), eipoib_nics(), ovs)
    assert plan.errors == ["interface eth2 is already a port of bridge br-old; set move: true to move it to "
                           "br-storage"]
    plan = _ovs.plan_bridge(want(ports=[{"name": "eth2", "move": True}]), eipoib_nics(), ovs)
    assert plan.ok
    assert plan.changes[-1].action == "move_port"
    argv = _ovs.vsctl_argv(plan, "br-storage")
    assert argv[-8:] == ["--", "del-port", "br-old", "eth2", "--", "add-port", "br-storage", "eth2"]
    assert _ovs.plan_bridge(want(ports=["eth2"], move=True), eipoib_nics(), ovs).ok


def test_plan_refuses_all_problems_at_once():
    plan = _ovs.plan_bridge(want(ports=["ib0", "eth9", {"name": "eth2", "vlan": 5000}]), eipoib_nics(), empty_ovs())
    assert len(plan.errors) == 1 and "VLAN 5000" in plan.errors[0]
    plan = _ovs.plan_bridge(want(ports=["ib0", "eth9"], mtu=4092), eipoib_nics(), empty_ovs())
    assert len(plan.errors) == 2 and not plan.changed


def test_plan_mtu_request_and_purge():
    ovs = ovs_with("br-storage", ["eth2", "eth0"])
    plan = _ovs.plan_bridge(want(ports=["eth2"], mtu=2044, purge_ports=True), eipoib_nics(), ovs)
    assert [(c.action, c.target) for c in plan.changes] == [
        ("set_mtu_request", "br-storage"), ("set_mtu_request", "eth2"), ("del_port", "eth0")]


def test_plan_absent():
    assert not _ovs.plan_bridge(want(state="absent"), {}, empty_ovs()).changed
    plan = _ovs.plan_bridge(want(state="absent"), {}, ovs_with("br-storage", []))
    assert _ovs.vsctl_argv(plan, "br-storage")[-4:] == ["--", "--if-exists", "del-br", "br-storage"]


def test_plan_bad_names():
    assert not _ovs.plan_bridge(want(bridge="br/../x"), {}, empty_ovs()).ok
    assert "listed twice" in _ovs.plan_bridge(want(ports=["eth2", "eth2"]), eipoib_nics(), empty_ovs()).errors[0]


# ------------------------------------------------------------------ ovsdb parsing and status
OVSDB_OUTPUT = "\n".join(json.dumps(doc) for doc in [
    {"data": [["br-a", "netdev", ["set", [["uuid", "p1"], ["uuid", "p2"]]], ["map", [["hwaddr", "02:00:00:00:00:0a"]]]],
              ["br-sys", "", ["uuid", "p3"], ["map", []]]], "headings": ["name", "datapath_type", "ports", "other_config"]},
    {"data": [[["uuid", "p1"], "br-a", ["set", []], ["uuid", "i1"]],
              [["uuid", "p2"], "eth2", 5, ["uuid", "i2"]],
              [["uuid", "p3"], "br-sys", ["set", []], ["uuid", "i3"]]],
     "headings": ["_uuid", "name", "tag", "interfaces"]},
    {"data": [[["uuid", "i1"], "br-a", "internal", ["set", []], 65534, 1500, ["set", []]],
              [["uuid", "i2"], "eth2", "", ["set", []], 1, 1500, 2044],
              [["uuid", "i3"], "br-sys", "internal", ["set", []], ["set", []], ["set", []], ["set", []]]],
     "headings": ["_uuid", "name", "type", "error", "ofport", "mtu", "mtu_request"]},
    {"data": [[3, 3]], "headings": ["next_cfg", "cur_cfg"]},
]) + "\n"


def test_parse_ovsdb_and_status():
    state = _ovs.ovs_state_from_tables(*_ovs.parse_ovsdb_tables(OVSDB_OUTPUT))
    assert state["bridges"] == {"br-a": {"datapath_type": "netdev", "ports": ["br-a", "eth2"], "hwaddr": "02:00:00:00:00:0a"},
                                "br-sys": {"datapath_type": "system", "ports": ["br-sys"], "hwaddr": None}}
    assert state["ports"]["eth2"] == {"bridge": "br-a", "tag": 5, "interfaces": ["eth2"]}
    assert state["interfaces"]["eth2"]["mtu_request"] == 2044
    assert _ovs.bridge_problems(state, "br-a", ["eth2"]) == []
    problems = _ovs.bridge_problems(state, "br-sys")
    assert "interface br-sys has no OpenFlow port" in problems[0]
    assert "datapath_type netdev" in problems[1]


class FakeHost:
    def __init__(self, rc=0, out=OVSDB_OUTPUT, err=""):
        self.result = (rc, out, err)
        self.calls = []

    def run(self, argv, timeout=30):
        self.calls.append(argv)
        return self.result


def test_read_ovs_argv_and_errors():
    host = FakeHost()
    state = _ovs.read_ovs(host, "unix:/db.sock", 3)
    assert host.calls[0][:3] == ["ovs-vsctl", "--db=unix:/db.sock", "--timeout=3"]
    assert "br-a" in state["bridges"]
    with pytest.raises(_ovs.OvsError, match="database.*rc 1.*no such socket"):
        _ovs.read_ovs(FakeHost(1, "", "no such socket"))
    assert host.calls[0][-3:] == ["--columns=next_cfg,cur_cfg", "list", "Open_vSwitch"]
    assert _ovs.read_ovs(FakeHost())["vswitchd"] == {"next_cfg": 3, "cur_cfg": 3}


# ------------------------------------------------------------------ regressions (issue 10)
@pytest.mark.parametrize("given", ["8002", "0x8002", "0X8002", 32770, "0002", 2])
def test_pkey_hex_text_and_integer_values_give_one_vlan(given):
    # "0x8002" unquoted in YAML reaches the module as 32770: it is the same P_Key, VLAN 2.
    assert _ovs.vlan_from_pkey(given) == 2
    ports = _ovs.normalize_ports([{"name": "eth2", "pkey": given}])
    assert ports[0]["vlan"] == 2 and ports[0]["pkey"] in ("0x8002", "0x0002")


def test_old_parsers_are_gone():
    assert not hasattr(_ovs, "parse_pkey") and not hasattr(_ovs, "format_pkey")


@pytest.mark.parametrize("args,words", [
    ({"mtu": 100000}, "mtu 100000 is out of range 68..65520"),
    ({"mtu": 0}, "mtu 0 is out of range"),
    ({"timeout": 0}, "timeout 0 is not a positive number"),
    ({"timeout": -5}, "timeout -5 is not a positive number"),
    ({"state": "absent", "mtu": 2044}, "state=absent removes bridge br-storage with its ports; mtu cannot be set"),
    ({"state": "absent", "ports": [{"name": "eth2"}]}, "ports cannot be set"),
])
def test_bad_arguments_refused_naming_the_value(args, words):
    assert any(words in p for p in _ovs.check_params(want(**args)))
    plan = _ovs.plan_bridge(want(**args), eipoib_nics(), empty_ovs())
    assert not plan.ok and not plan.changes and words in plan.error_message()


def test_vswitchd_behind_the_database_is_a_problem():
    state = ovs_with("br-storage", ["eth2"])
    for name in state["interfaces"]:
        state["interfaces"][name]["ofport"] = None
    state["vswitchd"] = {"next_cfg": 5, "cur_cfg": 4}
    problems = _ovs.bridge_problems(state, "br-storage", ["eth2"])
    assert "ovs-vswitchd has not applied the database (cur_cfg 4, next_cfg 5)" in problems[0]
    assert not any("datapath_type" in p for p in problems)


def test_port_nics_read_without_whole_host_or_pkey_tables(monkeypatch):
    calls = []
    nics = eipoib_nics()

    def gather(host, interfaces=None, pkeys="physical"):
        calls.append((sorted(interfaces or []), pkeys))
        return {"nics": {n: nics[n] for n in (interfaces or nics)}}

    class Tree:
        sysfs_root = "/x"

        def isdir(self, rel):
            return rel == "class/net"

        def exists(self, rel):
            return rel[len("class/net/"):] in nics

    monkeypatch.setattr(_ovs._facts, "gather", gather)
    got = _ovs.read_port_nics(Tree(), ["eth2", "eth9"])
    assert calls == [(["eth2"], "none"), (["ib0"], "none")]
    assert sorted(got) == ["eth2", "ib0"]
    assert _ovs.check_port_mtu("eth2", got, 4092)  # the IPoIB parent's MTU is known
    calls[:] = []
    _ovs.read_port_nics(Tree(), ["ib0"])  # refused later: read all to name the EIPoIB interface
    assert calls == [(["ib0"], "none"), ([], "none")]


def test_wrong_sysfs_root_named():
    class Empty:
        sysfs_root = "/nowhere"

        def isdir(self, rel):
            return False

    with pytest.raises(_ovs._facts.FactsError, match="sysfs_root /nowhere is not a sysfs tree"):
        _ovs.read_port_nics(Empty(), ["eth2"])
