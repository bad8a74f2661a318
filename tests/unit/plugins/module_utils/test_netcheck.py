"""Unit tests for the network verification rules (plugins/module_utils/_netcheck.py)."""
import json
import os
import subprocess

import pytest

from ansible_collections.hpcnet.infiniband.plugins.module_utils import _netcheck as nc
from ansible_collections.hpcnet.infiniband.plugins.module_utils import _topology
from ansible_collections.hpcnet.infiniband.plugins.module_utils._host import Host

FIXTURES = os.path.join(os.path.dirname(__file__), "..", "..", "fixtures", "tool_outputs")


def fixture(name):
    with open(os.path.join(FIXTURES, name), encoding="utf-8") as handle:
        return handle.read()


NODES = ["node1", "node2", "node3", "node4"]


def ib_nic(name, index, mtu=2044, mode="datagram", state="ACTIVE", sm_lid=1, pkeys=("0xffff", "0x8002")):
    return {"name": name, "kind": "ipoib", "link_type": "infiniband", "operstate": "up", "carrier": 1, "mtu": mtu,
            "ipoib": {"mode": mode, "pkey": "0xffff", "parent": None},
            "ib": {"device": "mlx4_0", "port": 1, "state": state, "lid": index + 1, "sm_lid": sm_lid,
                   "port_guid": "0002:c903:00a1:%04x" % index, "pkeys": list(pkeys)}}


def healthy():
    """Per node: ib_facts.nics with ib0 and EIPoIB eth2 over it; addresses per interface."""
    facts, addrs = {}, {}
    for i, node in enumerate(NODES, start=1):
        facts[node] = {"ib0": ib_nic("ib0", i),
                       "eth2": {"name": "eth2", "kind": "eipoib", "link_type": "ether", "operstate": "up",
                                "mtu": 2044, "eipoib": {"slaves": ["ib0"]}}}
        addrs[node] = {"ib0": ["10.10.0.%d/24" % i], "eth2": ["10.11.0.%d/24" % i]}
    return facts, addrs


NETWORKS = [{"name": "rdma", "pkey": "0x8002", "mtu": None, "members": {n: "ib0" for n in NODES}},
            {"name": "storage", "pkey": None, "mtu": 2044, "members": {n: "eth2" for n in NODES}}]


def reports_of(facts, addrs):
    return {node: nc.local_report(facts[node], addrs[node], nc.interfaces_of(NETWORKS, node)) for node in NODES}


def simulate(reports, down=(), small_mtu=()):
    """Probe results as a fabric would give them: a node in ``down`` answers nothing and sends nothing;
    a node in ``small_mtu`` (node, iface, mtu) drops/refuses frames above its MTU."""
    small = {(n, i): m for n, i, m in small_mtu}
    results = {}
    for node in NODES:
        probes = nc.plan_probes(node, NETWORKS, reports)
        out = []
        for probe in probes:
            peer_iface = next(n["members"][probe["peer"]] for n in NETWORKS if n["name"] == probe["network"])
            reach = node not in down and probe["peer"] not in down
            limit = min(small.get((node, probe["interface"]), 65520), small.get((probe["peer"], peer_iface), 65520))
            full = reach and probe["size"] + 28 <= limit
            out.append(dict(probe, reachable=reach, mtu_ok=True if full else (False if reach else None)))
        results[node] = out
    return results


def where(result):
    return sorted({(f["node"], f["interface"], f["field"]) for f in result["findings"]})


def test_healthy_all_green():
    facts, addrs = healthy()
    reports = reports_of(facts, addrs)
    result = nc.evaluate(NETWORKS, reports, simulate(reports))
    assert result["ok"], result["findings"]
    assert result["networks"]["rdma"]["mtu"] == 2044
    assert set(result["networks"]["rdma"]["matrix"]["node1"].values()) == {"ok"}


def test_eipoib_report_uses_ipoib_slave_port():
    facts, addrs = healthy()
    record = nc.local_report(facts["node2"], addrs["node2"], ["eth2"])["eth2"]
    assert record["ipoib_mode"] == "datagram" and record["port_guid"] == "0002:c903:00a1:0002"
    assert record["addresses"] == ["10.11.0.2/24"]


def test_interface_down_blames_only_that_node():
    facts, addrs = healthy()
    facts["node3"]["ib0"]["operstate"] = "down"
    reports = reports_of(facts, addrs)
    probes = simulate(reports, down=[])
    # ib0 of node3 down: nothing crosses ib0 of node3 (storage over eth2 is unaffected in this simulation)
    for node in NODES:
        for p in probes[node]:
            if p["network"] == "rdma" and "node3" in (node, p["peer"]):
                p.update(reachable=False, mtu_ok=None)
    result = nc.evaluate(NETWORKS, reports, probes)
    assert where(result) == [("node3", "ib0", "operstate"), ("node3", "ib0", "reachability")]
    assert result["networks"]["rdma"]["cannot_reach"].count(["node1", "node3"]) == 1
    assert not result["ok"]


def test_wrong_mtu_blames_only_that_node():
    facts, addrs = healthy()
    facts["node2"]["ib0"]["mtu"] = 1500
    reports = reports_of(facts, addrs)
    result = nc.evaluate(NETWORKS, reports, simulate(reports, small_mtu=[("node2", "ib0", 1500)]))
    assert where(result) == [("node2", "ib0", "mtu"), ("node2", "ib0", "path_mtu")]
    mtu_finding = [f for f in result["findings"] if f["field"] == "mtu"][0]
    assert (mtu_finding["expected"], mtu_finding["actual"]) == (2044, 1500)


def test_duplicate_guid_reports_the_later_holder():
    facts, addrs = healthy()
    facts["node4"]["ib0"]["ib"]["port_guid"] = facts["node1"]["ib0"]["ib"]["port_guid"]
    reports = reports_of(facts, addrs)
    result = nc.evaluate(NETWORKS, reports, simulate(reports))
    # eth2 runs over ib0: the storage network sees the same duplicate through the EIPoIB interface
    assert where(result) == [("node4", "eth2", "port_guid"), ("node4", "ib0", "port_guid")]
    assert result["findings"][0]["duplicate_of"]["node"] == "node1"


def test_missing_pkey_reported_only_on_networks_with_that_pkey():
    facts, addrs = healthy()
    facts["node2"]["ib0"]["ib"]["pkeys"] = ["0xffff"]
    reports = reports_of(facts, addrs)
    result = nc.evaluate(NETWORKS, reports, simulate(reports))
    assert where(result) == [("node2", "ib0", "pkeys")]
    assert "P_Key 0x8002 is not in the P_Key table of mlx4_0 port 1" in result["findings"][0]["message"]


def test_unread_pkey_table_is_not_a_finding():
    facts, addrs = healthy()
    facts["node2"]["ib0"]["ib"]["pkeys"] = None  # a table the gather did not read: unknown, not empty
    reports = reports_of(facts, addrs)
    assert reports["node2"]["ib0"]["pkeys"] is None
    assert nc.evaluate(NETWORKS, reports, simulate(reports))["ok"]


def test_pkey_match_ignores_membership_bit():
    facts, addrs = healthy()
    facts["node2"]["ib0"]["ib"]["pkeys"] = ["0xffff", "0x0002"]  # limited member of the same partition
    reports = reports_of(facts, addrs)
    assert nc.evaluate(NETWORKS, reports, simulate(reports))["ok"]


def test_mode_sm_state_duplicate_ip_and_missing_interface():
    facts, addrs = healthy()
    facts["node1"]["ib0"]["ipoib"]["mode"] = "connected"
    facts["node2"]["ib0"]["ib"]["sm_lid"] = 7
    facts["node3"]["ib0"]["ib"]["state"] = "INIT"
    addrs["node4"]["ib0"] = ["10.10.0.1/24"]
    reports = reports_of(facts, addrs)
    result = nc.evaluate(NETWORKS, reports, simulate(reports))
    assert ("node1", "ib0", "ipoib_mode") in where(result)
    assert ("node2", "ib0", "sm_lid") in where(result)
    assert ("node3", "ib0", "port_state") in where(result)
    assert ("node4", "ib0", "addresses") in where(result)
    # the EIPoIB members share ib0's port: the same mode/SM/state findings appear on eth2, nothing on others
    assert {node for node, _iface, _field in where(result)} == {"node1", "node2", "node3", "node4"}

    del facts["node2"]["eth2"]
    reports = reports_of(facts, addrs)
    assert ("node2", "eth2", "interface") in where(nc.evaluate(NETWORKS, reports, {}))


def test_unreachable_node_listed_and_left_out_of_matrix():
    facts, addrs = healthy()
    reports = reports_of(facts, addrs)
    del reports["node4"]
    probes = simulate(reports_of(facts, addrs))
    del probes["node4"]
    result = nc.evaluate(NETWORKS, reports, probes, unreachable_nodes=["node4"])
    assert where(result) == [("node4", "eth2", "node"), ("node4", "ib0", "node")]
    assert "node4" not in result["networks"]["rdma"]["matrix"]


def test_pair_failure_not_blamed_on_a_node():
    facts, addrs = healthy()
    reports = reports_of(facts, addrs)
    probes = simulate(reports)
    for p in probes["node1"]:
        if p["network"] == "rdma" and p["peer"] == "node2":
            p.update(reachable=False, mtu_ok=None)
    result = nc.evaluate(NETWORKS, reports, probes)
    assert where(result) == [("node1", "ib0", "reachability")]
    assert result["findings"][0]["peer"] == "node2"


def test_two_node_network_reports_each_direction():
    nets = [{"name": "rdma", "pkey": None, "mtu": None, "members": {"a": "ib0", "b": "ib0"}}]
    reports = {n: {"ib0": {"exists": True, "operstate": "up", "mtu": 2044, "addresses": ["10.0.0.%d/24" % i]}}
               for i, n in enumerate("ab", 1)}
    probes = {n: [dict(p, reachable=False, mtu_ok=None) for p in nc.plan_probes(n, nets, reports)] for n in "ab"}
    result = nc.evaluate(nets, reports, probes)
    assert where(result) == [("a", "ib0", "reachability"), ("b", "ib0", "reachability")]


def test_plan_probes_sizes_and_bad_addresses():
    facts, addrs = healthy()
    addrs["node2"]["ib0"] = ["-f/24"]
    reports = reports_of(facts, addrs)
    probes = nc.plan_probes("node1", NETWORKS, reports)
    assert len(probes) == 6
    assert {p["size"] for p in probes} == {2016}
    assert [p["address"] for p in probes if p["network"] == "rdma"] == [None, "10.10.0.3", "10.10.0.4"]


def test_ping_argv():
    assert nc.ping_argv("ib0", "10.0.0.2", 2016, 1, True) == [
        "ping", "-n", "-q", "-c", "1", "-W", "1", "-I", "ib0", "-M", "do", "-s", "2016", "10.0.0.2"]


def test_networks_from_model():
    model = {"nodes": [{"name": "node1", "status": "discovered"}, {"name": "node2", "status": "discovered"},
                       {"name": "node3", "status": "unreachable"}, {"name": "node4", "status": "discovered"}],
             "networks": {"allocation": {"node1": {"storage": "eth2", "rdma": "ib0"},
                                         "node2": {"storage": "eth2", "rdma": "ib0"},
                                         "node3": {"storage": "eth2"},
                                         "node4": {"rdma": "ib0"}}}}
    nets = nc.networks_from_model(model)
    assert [(n["name"], sorted(n["members"])) for n in nets] == [
        ("rdma", ["node1", "node2", "node4"]), ("storage", ["node1", "node2"])]
    nets = nc.networks_from_model(model, [{"name": "rdma", "pkey": "0x8002", "mtu": 2044}, "public"])
    assert nets == [{"name": "rdma", "roles": ["rdma"], "pkey": "0x8002", "mtu": 2044, "expect_rate": None,
                     "members": {"node1": "ib0", "node2": "ib0", "node4": "ib0"}}]


def test_parse_ip_addr_json():
    text = ('[{"ifname":"lo","addr_info":[{"family":"inet","local":"127.0.0.1","prefixlen":8}]},'
            '{"ifname":"ib0","addr_info":[{"family":"inet6","local":"fe80::1","prefixlen":64},'
            '{"family":"inet","local":"10.1.0.2","prefixlen":24}]}]')
    assert nc.parse_ip_addr_json(text) == {"lo": ["127.0.0.1/8"], "ib0": ["10.1.0.2/24"]}
    assert nc.parse_ip_addr_json("garbage") == {}


class FakeProc:
    def __init__(self, code, hang=False):
        self.code, self.hang, self.killed = code, hang, False

    def wait(self, timeout=None):
        if self.hang and not self.killed:
            raise subprocess.TimeoutExpired("ping", timeout)
        return self.code

    def kill(self):
        self.killed = True


def test_run_parallel_bounded_and_kills_stragglers():
    spawned = []

    def spawn(argv):
        if argv[0] == "missing":
            raise OSError("no such file")
        proc = FakeProc(int(argv[1]), hang=argv[1] == "9")
        spawned.append(proc)
        return proc

    codes = nc.run_parallel([["x", "0"], ["x", "1"], ["missing"], ["x", "9"], ["x", "0"]], 0, max_parallel=2,
                            spawn=spawn)
    assert codes == [0, 1, None, None, 0]
    assert [p.killed for p in spawned] == [False, False, True, False]


def test_run_probes_two_rounds():
    calls = []

    def spawn(argv):
        calls.append(argv)
        # 10.0.0.2 answers only small probes (path MTU problem); 10.0.0.3 never answers
        big = "-M" in argv
        ok = argv[-1] == "10.0.0.1" or (argv[-1] == "10.0.0.2" and not big)
        return FakeProc(0 if ok else 1)

    probes = [{"network": "n", "peer": p, "interface": "ib0", "address": a, "size": 2016}
              for p, a in (("a", "10.0.0.1"), ("b", "10.0.0.2"), ("c", "10.0.0.3"), ("d", None))]
    results = nc.run_probes(probes, spawn=spawn)
    assert [(r["reachable"], r["mtu_ok"]) for r in results] == [(True, True), (True, False), (False, None),
                                                                (None, None)]
    # round 1: 3 full-size; round 2: full + small for the 2 failures; nothing for the peer without address
    assert len(calls) == 7


def test_run_probes_first_loss_is_not_a_path_mtu_problem():
    seen = set()

    def spawn(argv):
        first = argv[-1] not in seen
        seen.add(argv[-1])
        return FakeProc(1 if first else 0)  # the first probe to each peer is lost (ARP), later ones pass

    probes = [{"network": "n", "peer": "a", "interface": "ib0", "address": "10.0.0.1", "size": 2016}]
    assert [(r["reachable"], r["mtu_ok"]) for r in nc.run_probes(probes, spawn=spawn)] == [(True, True)]
    assert [(r["reachable"], r["mtu_ok"]) for r in nc.run_probes(probes, spawn=spawn, rounds=1)] == [(True, True)]


def test_matrix_text():
    lines = nc.matrix_text("rdma", {"a": {"b": "ok"}, "b": {"a": "fail"}})
    assert lines[2].split()[:3] == ["a", "-", "."] and lines[3].split()[:3] == ["b", "X", "-"]


def test_write_result(tmp_path):
    path = tmp_path / "out" / "netcheck.json"
    nc.write_result(Host(), str(path), {"ok": True})
    assert path.read_text() == '{\n  "ok": true\n}\n'
    assert oct(path.stat().st_mode & 0o777) == "0o644"


def test_write_result_never_follows_a_planted_link(tmp_path):
    """Issue 10 item 4: <dest>.tmp planted as a link to a victim file must not be written through."""
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    path = tmp_path / "netcheck.json"
    (tmp_path / "netcheck.json.tmp").symlink_to(victim)
    nc.write_result(Host(), str(path), {"ok": False})
    assert victim.read_text() == "precious\n"
    assert json.loads(path.read_text()) == {"ok": False} and not path.is_symlink()
    # A link at the destination itself is replaced, not followed.
    path.unlink()
    path.symlink_to(victim)
    nc.write_result(Host(), str(path), {"ok": True})
    assert victim.read_text() == "precious\n" and not path.is_symlink()


def test_not_checked_names_nodes_outside_the_play():
    """Issue 10 item 1: a verification over part of the model says which members it did not check."""
    allocation = {n: {"rdma": "ib0"} for n in NODES}
    left = nc.not_checked(allocation, [], ["node1", "node2", "node3"], {"node1": {}, "node2": {}})
    assert left == {"node3": "no result", "node4": "not in this play"}
    assert nc.not_checked(allocation, [], None, {n: {} for n in NODES}) == {}


def test_pkeys_through_values():
    """One P_Key parser: integers are values, text is hex; a bad P_Key is refused naming it."""
    facts, addrs = healthy()
    reports = reports_of(facts, addrs)
    for pkey in (0x8002, "8002", "0x0002", 2):
        nets = [dict(NETWORKS[0], pkey=pkey), NETWORKS[1]]
        nc.check_networks(nets)
        assert nc.evaluate(nets, reports, simulate(reports))["ok"], pkey
    with pytest.raises(ValueError, match="'zz'"):
        nc.check_networks([{"name": "rdma", "pkey": "zz"}])
    with pytest.raises(ValueError, match="expect_rate"):
        nc.check_networks([{"name": "rdma", "expect_rate": -1}])
    assert not hasattr(nc, "pkey_base")


def test_rate_below_the_network_is_reported():
    """Issue 14 item 4: a member port slower than the most common rate (or the expected one) is named."""
    facts, addrs = healthy()
    for node in NODES:
        facts[node]["ib0"]["ib"].update(rate="100 Gb/sec (4X EDR)", rate_gbps=100.0)
    facts["node3"]["ib0"]["ib"].update(rate="25 Gb/sec (1X EDR)", rate_gbps=25.0)
    reports = reports_of(facts, addrs)
    assert reports["node3"]["ib0"]["link_width"] == "1X" and reports["node3"]["ib0"]["link_speed"] == "EDR"
    result = nc.evaluate(NETWORKS, reports, simulate(reports))
    # eth2 is EIPoIB over ib0: same port, same finding on the storage network
    assert where(result) == [("node3", "eth2", "rate"), ("node3", "ib0", "rate")]
    finding = [f for f in result["findings"] if f["interface"] == "ib0"][0]
    assert (finding["expected"], finding["actual"]) == (100.0, 25.0)
    assert "25 Gb/sec (1X EDR)" in finding["message"] and "100 Gb/sec" in finding["message"]
    # Below the most common rate only: a warning (a slower adapter generation), the verification passes.
    assert finding["severity"] == "warning" and "warning:" in finding["message"]
    assert result["ok"] and nc.errors(result["findings"]) == []
    # An explicit expectation above every member: every member is reported, as an error.
    result = nc.evaluate(NETWORKS[:1], reports, simulate(reports), expect_rate=200)
    assert {f["node"] for f in result["findings"]} == set(NODES)
    assert {f["severity"] for f in result["findings"]} == {"error"} and not result["ok"]


def test_degraded_link_from_the_topology():
    facts, addrs = healthy()
    guid = "0002:c903:00f9:c0a1"
    facts["node2"]["ib0"]["ib"]["port_guid"] = guid
    reports = reports_of(facts, addrs)
    topo = _topology.build(fixture("ibnetdiscover-ibsim-2switch-degraded.txt"),
                           fixture("iblinkinfo-ibsim-2switch-degraded.txt"))
    result = nc.evaluate(NETWORKS[:1], reports, simulate(reports), topology=topo)
    assert where(result) == [("node2", "ib0", "link")]
    finding = result["findings"][0]
    assert (finding["switch"], finding["switch_port"], finding["actual"], finding["expected"]) == (
        "lab switch 2", 2, "4X HDR", "12X HDR")
    assert "both ends support 12X" in finding["message"]


def test_degraded_link_expects_what_both_ends_support():
    """ibsim's default fabric: every link 4X SDR, each "could be 12X QDR". The fabric's usual width/speed is
    4X SDR, so the finding's expected value is what both ends of the link support, not the usual."""
    facts, addrs = healthy()
    facts["node1"]["ib0"]["ib"]["port_guid"] = "9803:9b03:0045:6c11"
    reports = reports_of(facts, addrs)
    topo = _topology.build(fixture("ibnetdiscover-ibsim-1switch.txt"), fixture("iblinkinfo-ibsim-1switch.txt"))
    result = nc.evaluate(NETWORKS[:1], reports, simulate(reports), topology=topo)
    assert where(result) == [("node1", "ib0", "link")]
    finding = result["findings"][0]
    assert (finding["switch"], finding["switch_port"], finding["actual"], finding["expected"]) == (
        "lab switch", 2, "4X SDR", "12X QDR")
    assert finding["severity"] == "error" and not result["ok"]
    assert "node1 ib0: the link of mlx4_0 port 1 to lab switch port 2 is degraded: both ends support 12X QDR, " \
           "it runs 4X SDR" in finding["message"]


def test_networks_from_allocation_inventory_form_and_limits():
    allocation = {"node1": {"rdma": {"interface": "ib0", "rule": {"kind": "ipoib"}}, "storage": {"interface": "eth2"}},
                  "node2": {"rdma": {"interface": "ib0"}, "storage": None},
                  "node3": {"rdma": "ib0"}}
    nets = nc.networks_from_allocation(allocation, nodes=["node1", "node2"])
    assert nets == [{"name": "rdma", "roles": ["rdma"], "pkey": None, "mtu": None, "expect_rate": None,
                     "members": {"node1": "ib0", "node2": "ib0"}}]
    nets = nc.networks_from_allocation(allocation, [{"name": "x", "members": {"node1": "eth5", "node3": "eth5"}}],
                                       nodes=["node1", "node2"])
    assert nets[0]["members"] == {"node1": "eth5"}


def test_roles_on_the_same_interfaces_are_verified_once():
    allocation = {n: {"storage": "eth1", "private": "eth1", "public": "eth1", "rdma": "ib0"} for n in NODES}
    nets = nc.networks_from_allocation(allocation, ["storage", "private", "public", "rdma"])
    assert [(n["name"], n["roles"]) for n in nets] == [
        ("storage+private+public", ["storage", "private", "public"]), ("rdma", ["rdma"])]
    nets = nc.networks_from_allocation(allocation, [{"name": "storage", "pkey": "0x8002"}, "private"])
    assert [n["name"] for n in nets] == ["storage", "private"]  # different P_Key: different networks


def test_ovs_port_is_probed_through_its_bridge():
    facts, addrs = healthy()
    for node in NODES:
        addrs[node]["br-storage"] = addrs[node].pop("eth2")
    reports = {node: nc.local_report(facts[node], addrs[node], ["ib0", "eth2"],
                                     lambda name: "br-storage" if name == "eth2" else None) for node in NODES}
    assert reports["node1"]["eth2"]["probe_interface"] == "br-storage"
    assert reports["node1"]["ib0"]["probe_interface"] == "ib0"
    probes = nc.plan_probes("node1", NETWORKS, reports)
    assert {(p["network"], p["interface"]) for p in probes} == {("rdma", "ib0"), ("storage", "br-storage")}
    assert nc.evaluate(NETWORKS, reports, simulate(reports))["ok"]


def test_matrix_text_natural_order():
    matrix = {n: {m: "ok" for m in ("node2", "node10", "node1") if m != n} for n in ("node2", "node10", "node1")}
    assert [line.split()[0] for line in nc.matrix_text("x", matrix)[2:]] == ["node1", "node2", "node10"]


def test_degraded_link_found_by_node_guid_and_port():
    """mlx5's port GUID is its node GUID; ibsim's CA port GUIDs are node GUID + port: match the HCA too."""
    facts, addrs = healthy()
    facts["node2"]["ib0"]["ib"].update(port_guid="0002:c903:00f9:c0a0", device="mlx5_0", port=1)
    reports = {node: nc.local_report(facts[node], addrs[node], nc.interfaces_of(NETWORKS, node),
                                     devices={"mlx5_0": {"node_guid": "0002:c903:00f9:c0a0"}}) for node in NODES}
    assert reports["node2"]["ib0"]["node_guid"] == "0002:c903:00f9:c0a0"
    topo = _topology.build(fixture("ibnetdiscover-ibsim-2switch-degraded.txt"),
                           fixture("iblinkinfo-ibsim-2switch-degraded.txt"))
    result = nc.evaluate(NETWORKS[:1], reports, simulate(reports), topology=topo)
    assert where(result) == [("node2", "ib0", "link")]


def test_a_pkey_network_is_checked_on_its_child_with_the_model_settings():
    """The model's node entries (and the inventory's ib_networks) name the device that carries a network's
    address: a P_Key network is verified on the child, with the definition's P_Key and MTU; an EIPoIB
    member stays on its EIPoIB interface (probed through its bridge)."""
    allocation = {
        "node1": {"rdma": {"interface": "ib0", "device": "ib0.8002", "kind": "ipoib_child", "pkey": "0x8002",
                           "mtu": 2044},
                  "storage": {"interface": "eth1", "device": "br-storage", "kind": "eipoib"}},
        "node2": {"rdma": {"interface": "ib0", "device": "ib0.8002", "kind": "ipoib_child", "pkey": "0x8002",
                           "mtu": 2044},
                  "storage": {"interface": "eth1", "device": "br-storage", "kind": "eipoib"}},
    }
    networks = {n["name"]: n for n in nc.networks_from_allocation(allocation)}
    assert networks["rdma"]["members"] == {"node1": "ib0.8002", "node2": "ib0.8002"}
    assert (networks["rdma"]["pkey"], networks["rdma"]["mtu"]) == ("0x8002", 2044)
    assert networks["storage"]["members"] == {"node1": "eth1", "node2": "eth1"}
    # What the operator says wins over the model's settings.
    wanted = nc.networks_from_allocation(allocation, [{"name": "rdma", "mtu": 4092}])
    assert wanted[0]["mtu"] == 4092 and wanted[0]["pkey"] == "0x8002"


def test_bridged_member_mtu_is_the_smaller_of_port_and_bridge():
    # The lab's userspace datapath leaves the bridge at 1500 over a 2044 EIPoIB port: the address on the
    # bridge sends at most 1500, so that is the member's MTU (the probe would fail locally otherwise).
    facts, addrs = healthy()
    addrs["node1"]["br-storage"] = addrs["node1"].pop("eth2")
    text = json.dumps([{"ifname": "br-storage", "mtu": 1500, "addr_info": [
        {"family": "inet", "local": "10.11.0.1", "prefixlen": 24}]}, {"ifname": "eth2", "mtu": 2044}])
    assert nc.parse_ip_mtus(text) == {"br-storage": 1500, "eth2": 2044}
    assert nc.parse_ip_addr_json(text) == {"br-storage": ["10.11.0.1/24"], "eth2": []}
    record = nc.local_report(facts["node1"], addrs["node1"], ["eth2"], lambda name: "br-storage",
                             mtus=nc.parse_ip_mtus(text))["eth2"]
    assert (record["mtu"], record["mtu_limited_by"], record["probe_interface"]) == (1500, "br-storage", "br-storage")


def test_roce_port_has_no_subnet_manager_to_check():
    facts, addrs = healthy()
    for node in NODES:
        facts[node]["ib0"]["ib"].update(link_layer="Ethernet", sm_lid=0, lid=0)
    reports = reports_of(facts, addrs)
    assert reports["node1"]["ib0"]["ib_device"] is None
    assert "sm_lid" not in [f["field"] for f in nc.evaluate(NETWORKS, reports, simulate(reports))["findings"]]


def report_params(tmp_path, **extra):
    """ib_netcheck_report's options for the healthy four nodes (what the netcheck role passes)."""
    facts, addrs = healthy()
    reports = reports_of(facts, addrs)
    probes = simulate(reports)
    params = {"networks": [{"name": "rdma", "pkey": "0x8002"}, {"name": "storage", "mtu": 2044}],
              "allocation": {n: {"rdma": "ib0", "storage": "eth2"} for n in NODES}, "nodes": None,
              "results": {n: {"interfaces": reports[n], "probes": probes[n], "seconds": 0.5} for n in NODES},
              "unreachable_nodes": [], "dest": str(tmp_path / "out" / "netcheck.json"), "fail_on_findings": True,
              "expect_rate": None, "topology": None}
    params.update(extra)
    return params


def test_report_green_writes_the_result_file(tmp_path):
    (tmp_path / "out").mkdir()
    output, message = nc.report(report_params(tmp_path), Host())
    assert message is None and output["ok"] and output["problems"] == 0
    assert output["dest"] == str(tmp_path / "out" / "netcheck.json")
    assert json.loads((tmp_path / "out" / "netcheck.json").read_text())["ok"] is True
    assert any("rdma" in line for line in output["matrix_text"])


def test_report_fails_on_findings_naming_them_and_still_writes(tmp_path):
    (tmp_path / "out").mkdir()
    params = report_params(tmp_path)
    params["results"]["node2"]["interfaces"]["ib0"]["mtu"] = 1500
    output, message = nc.report(params, Host())
    assert not output["ok"] and "problem(s)" in message and "node2" in message
    assert (tmp_path / "out" / "netcheck.json").exists()
    output, message = nc.report(dict(params, fail_on_findings=False), Host())
    assert message is None and not output["ok"]


def test_report_refuses_a_bad_rate_before_anything(tmp_path):
    output, message = nc.report(report_params(tmp_path, expect_rate=0.0), Host())
    assert message == "expect_rate must be a positive number of Gb/s, not 0.0" and output == {"changed": False}
    assert not (tmp_path / "out").exists()


def test_report_refuses_a_result_that_is_not_a_dict_naming_the_node(tmp_path):
    params = report_params(tmp_path)
    params["results"]["node3"] = "ok"
    output, message = nc.report(params, Host())
    assert message == "results[node3] must be the netcheck dict ib_netcheck returned on that node, not str"
    assert output == {"changed": False} and not (tmp_path / "out").exists()
