"""Nodes model: interface views, network allocation rules, Fuel's mixed-driver check, statuses."""

import json

import pytest

import nodes_facts_fixtures as fx
from ansible_collections.hpcnet.infiniband.plugins.module_utils import _nodes_model as nm


def _node(model, name):
    return next(n for n in model["nodes"] if n["name"] == name)


def _iface(node, name):
    return next(i for i in node["interfaces"] if i["name"] == name)


def test_default_allocation_per_profile():
    model = nm.build_model(fx.lab_results(), generated_at="t")
    alloc = model["networks"]["allocation"]
    # IPoIB only: no Ethernet-framed IB device, so the OVS-backed roles stay unassigned.
    assert alloc["node1"] == {"management": "eth0", "rdma": "ib0"}
    assert model["networks"]["unassigned"]["node1"] == ["storage", "private", "public"]
    # EIPoIB: OVS-backed roles on eth_ipoib, RDMA on IPoIB, admin on igb.
    assert alloc["node2"] == {"management": "eth0", "storage": "eth1", "private": "eth1", "public": "eth1",
                              "rdma": "ib0"}
    # RoCE: everything RDMA-ish on the mlx5 Ethernet port.
    assert alloc["node3"] == {"management": "eth0", "storage": "ens2f0", "private": "ens2f0",
                              "public": "ens2f0", "rdma": "ens2f0"}
    assert alloc["node5"] == {"management": "eth0"}
    assert "node4" not in alloc
    node2 = _node(model, "node2")
    assert _iface(node2, "eth1")["assigned_networks"] == ["storage", "private", "public"]
    assert _iface(node2, "ib0")["assigned_networks"] == ["rdma"]
    assert node2["networks"]["storage"] == {"interface": "eth1", "rule": 1, "matched": {"kind": "eipoib"},
                                            "kind": "eipoib", "device": "br-storage", "vlan": None, "address": None}
    assert _node(model, "node3")["networks"]["storage"]["rule"] == 2


def test_fuel_fields_and_speeds():
    model = nm.build_model({"n": fx.registered(fx.cx3_eipoib())}, generated_at="t")
    node = _node(model, "n")
    names = [i["name"] for i in node["interfaces"]]
    assert names == ["eth0", "eth1", "ib0"]  # loopback left out, natural order
    ib0 = _iface(node, "ib0")
    for key in ("mac", "name", "driver", "bus_info", "current_speed", "max_speed", "state", "assigned_networks"):
        assert key in ib0
    assert ib0["driver"] == "ib_ipoib" and ib0["bus_info"] == "0000:82:00.0"
    assert ib0["current_speed"] == 56000 and ib0["max_speed"] == 56000
    assert ib0["state"] == "up" and ib0["network_mode"] == "infiniband"
    assert ib0["ib"]["lid"] == 1 and ib0["ipoib"]["mode"] == "datagram"
    eth1 = _iface(node, "eth1")
    assert eth1["driver"] == "eth_ipoib" and eth1["bus_info"] == "ib0" and eth1["current_speed"] == 56000
    assert eth1["eipoib"]["slaves"] == ["ib0"]
    eth0 = _iface(node, "eth0")
    assert eth0["current_speed"] == 1000 and eth0["max_speed"] is None
    assert node["sm_present"] is True and node["sm_local"] is True
    assert node["devices"]["mlx4_0"]["model"] == "ConnectX-3"


def test_port_down_has_no_current_speed():
    facts = fx.cx3_ipoib()
    facts["nics"]["ib0"]["ib"]["state"] = "DOWN"
    facts["nics"]["ib0"]["operstate"] = "down"
    node = _node(nm.build_model({"n": facts}), "n")  # a bare ib_facts dict is accepted too
    assert _iface(node, "ib0")["current_speed"] is None
    assert _iface(node, "ib0")["max_speed"] == 56000


def test_eipoib_speed_from_slaves_when_no_port():
    facts = fx.cx3_eipoib()
    facts["nics"]["eth1"]["ib"] = None
    node = _node(nm.build_model({"n": facts}), "n")
    assert _iface(node, "eth1")["current_speed"] == 56000


def test_mixed_node_refused_with_interfaces_named():
    model = nm.build_model({"m": fx.registered(fx.mixed()), "ok": fx.registered(fx.cx3_ipoib())})
    node = _node(model, "m")
    assert node["status"] == "refused"
    assert "mismatching Mellanox drivers" in node["message"]
    assert "ib0 (ib_ipoib)" in node["message"] and "eth2 (mlx4_en)" in node["message"]
    assert node["errors"] == [node["message"]]
    assert _node(model, "ok")["status"] == "discovered"
    assert model["summary"]["refused"] == 1 and model["summary"]["discovered"] == 1


def test_mixed_node_allowed():
    model = nm.build_model({"m": fx.registered(fx.mixed())}, allow_mixed=True)
    node = _node(model, "m")
    assert node["status"] == "discovered"
    assert any("mismatching Mellanox drivers" in w and "allowed" in w for w in node["warnings"])
    assert model["allow_mixed"] is True


def test_roles_spanning_both_modes_refused_even_if_facts_say_infiniband():
    facts = fx.mixed()
    facts["network_mode"] = "infiniband"
    rules = {"storage": [{"kind": "roce"}], "rdma": [{"kind": "ipoib"}]}
    node = _node(nm.build_model({"m": facts}, rules=rules), "m")
    assert node["status"] == "refused"
    assert "network roles would use InfiniBand mode on ib0 (ib_ipoib)" in node["message"]
    assert "Ethernet (RoCE) mode on eth2 (mlx4_en)" in node["message"]


def test_operator_rules():
    rules = {
        "storage": [{"name": "ib*", "kind": ["ipoib", "ipoib_child"]}],
        "public": None,
        "backup": {"driver": "igb"},
    }
    model = nm.build_model({"n": fx.registered(fx.cx3_eipoib())}, rules=rules)
    node = _node(model, "n")
    assert node["networks"]["storage"]["interface"] == "ib0"
    assert "public" in node["unassigned_networks"]
    assert node["networks"]["backup"]["interface"] == "eth0"
    assert node["networks"]["private"]["interface"] == "eth1"  # default kept
    assert model["networks"]["roles"][-1] == "backup"
    assert model["networks"]["rules"]["backup"] == [{"driver": ["igb"]}]


def test_link_up_preferred_then_natural_order():
    facts = fx.cx3_ipoib()
    for name in ("ib10", "ib2"):
        facts["nics"][name] = dict(facts["nics"]["ib0"], name=name, ib=dict(facts["nics"]["ib0"]["ib"]))
    facts["nics"]["ib0"]["ib"]["state"] = "DOWN"
    node = _node(nm.build_model({"n": facts}), "n")
    assert [i["name"] for i in node["interfaces"]] == ["eth0", "ib0", "ib2", "ib10"]
    assert node["networks"]["rdma"]["interface"] == "ib2"


@pytest.mark.parametrize("rules, message", [
    ("storage", "must be a mapping"),
    ({"storage": "eipoib"}, "must be a list"),
    ({"storage": [{"knd": "eipoib"}]}, "unknown key(s) knd"),
    ({"storage": [{}]}, "non-empty mapping"),
    ({"storage": [{"kind": 3}]}, "kind must be a string"),
    ({"bad role": []}, "network role names"),
])
def test_bad_rules(rules, message):
    with pytest.raises(nm.RuleError) as err:
        nm.build_model({"n": fx.cx3_ipoib()}, rules=rules)
    assert message in str(err.value)


def test_unreachable_failed_and_missing_results():
    results = {"a": fx.UNREACHABLE, "b": fx.FAILED, "c": None, "d": {"changed": False}, "e": "garbage",
               "f": {"skipped": True}}
    model = nm.build_model(results)
    status = {n["name"]: n["status"] for n in model["nodes"]}
    assert status == {"a": "unreachable", "b": "failed", "c": "unreachable", "d": "failed", "e": "failed",
                      "f": "failed"}
    assert "Connection refused" in _node(model, "a")["message"]
    assert _node(model, "b")["errors"] == ["sysfs_root /nope does not exist or is not a directory"]
    assert model["summary"]["unreachable"] == 2 and model["summary"]["failed"] == 4
    assert model["networks"]["allocation"] == {}


def test_addresses_kinds_and_schema_warning():
    facts = fx.plain_ethernet()
    facts["schema"] = 2
    model = nm.build_model({"n": facts}, addresses={"n": "10.1.2.3"}, exclude_kinds=["loopback"])
    node = _node(model, "n")
    assert node["address"] == "10.1.2.3"
    assert [i["name"] for i in node["interfaces"]] == ["br0", "eth0"]
    assert any("schema 2" in w for w in node["warnings"])
    assert node["sm_present"] is None


def test_model_is_json_serialisable_and_comparable():
    model = nm.build_model(fx.lab_results(), generated_at="2026-01-01T00:00:00Z")
    again = json.loads(json.dumps(model))
    assert nm.comparable(again) == nm.comparable(dict(model, generated_at="other"))
    assert model["kind"] == "hpcnet.infiniband.nodes" and model["schema"] == 2
    assert [n["name"] for n in model["nodes"]] == ["node1", "node2", "node3", "node4", "node5"]


def test_max_speed_table():
    assert nm.max_speed_for_model("ConnectX-6 Dx") == 100000
    assert nm.max_speed_for_model("ConnectX-6") == 200000
    assert nm.max_speed_for_model("TrueScale QLE7340/7342 (7322)") == 40000
    assert nm.max_speed_for_model(None) is None and nm.max_speed_for_model("I350") is None


# ------------------------------------------------------------------ real captures through the facts model
@pytest.mark.parametrize("capture", ["mlx4_capture", "qib_capture"])  # fixtures, tests/unit/conftest.py
def test_real_capture_through_facts(request, capture):
    facts_mod = pytest.importorskip(
        "ansible_collections.hpcnet.infiniband.plugins.module_utils._facts")
    from ansible_collections.hpcnet.infiniband.plugins.module_utils._host import Host

    sysfs = request.getfixturevalue(capture)
    facts = facts_mod.gather(Host(sysfs_root=sysfs, live=False))
    model = nm.build_model({"capture": facts}, generated_at="t")
    node = _node(model, "capture")
    assert node["status"] == "discovered" and node["source"] == "snapshot"
    assert node["network_mode"] == "infiniband"
    ib0 = _iface(node, "ib0")
    assert ib0["driver"] == "ib_ipoib" and ib0["ib"]["state"] == "ACTIVE"
    assert node["networks"]["rdma"]["interface"] == "ib0"
    assert node["networks"]["management"]["interface"] == "eth0"
    if capture == "mlx4_capture":  # hwloc's c412-603: ConnectX-3 FDR, LID 0x3a4
        assert ib0["current_speed"] == 56000 and ib0["ib"]["lid"] == 932
        assert node["devices"]["mlx4_0"]["model"] == "ConnectX-3"
    else:  # QLogic QLE7340 QDR
        assert ib0["current_speed"] == 40000
        assert "qib0" in node["devices"]


# ------------------------------------------------------------------ schema 2: merge, facts checks, addresses
def _run(results, previous=None, **options):
    options.setdefault("networks", fx.NETWORKS)
    options.setdefault("rules", fx.RULES)
    model = nm.build_model(results, previous=previous, generated_at=options.pop("at", "t1"), **options)
    return fx.validate_model(model)


def test_every_model_validates_against_the_shipped_schema():
    results = fx.lab_results()
    results["node6"] = fx.registered(fx.mixed())
    fx.validate_model(nm.build_model(results, generated_at="t"))
    fx.validate_model(_run(results))


def test_limit_run_keeps_every_other_node_as_it_was():
    full = _run(fx.lab_results())
    limited = _run({"node1": fx.registered(fx.cx3_ipoib())}, previous=full, at="t2")
    assert [n["name"] for n in limited["nodes"]] == ["node1", "node2", "node3", "node4", "node5"]
    for name in ("node2", "node3", "node4", "node5"):
        assert _node(limited, name) == _node(full, name)
    assert limited["networks"]["allocation"] == full["networks"]["allocation"]
    # Nothing changed on node1 either: the same last_seen, so a re-run rewrites nothing.
    assert nm.comparable(limited) == nm.comparable(full)


def test_failed_node_keeps_last_good_data_with_this_runs_status_and_error():
    full = _run(fx.lab_results())
    failed = _run({"node1": fx.FAILED, "node2": fx.UNREACHABLE}, previous=full, at="t2")
    node1, node2 = _node(failed, "node1"), _node(failed, "node2")
    assert node1["status"] == "failed" and node1["errors"] == [fx.FAILED["msg"]] and node1["message"] == fx.FAILED["msg"]
    assert node1["interfaces"] == _node(full, "node1")["interfaces"] and node1["last_seen"] == "t1"
    assert node1["networks"]["rdma"]["address"] == _node(full, "node1")["networks"]["rdma"]["address"]
    assert node2["status"] == "unreachable" and "Connection refused" in node2["message"]
    assert failed["summary"]["failed"] == 1 and failed["summary"]["unreachable"] == 2
    # Back again: discovered, same addresses.
    back = _run({"node1": fx.registered(fx.cx3_ipoib())}, previous=failed, at="t3")
    assert _node(back, "node1")["status"] == "discovered"
    assert _node(back, "node1")["networks"] == _node(full, "node1")["networks"]


def test_removal_is_explicit_and_frees_the_address():
    full = _run(fx.lab_results())
    removed_model, removed, warnings = nm.merge_model({}, previous=full, networks=fx.NETWORKS, rules=fx.RULES, generated_at="t2",
                                                      remove_nodes=["node1", "nodeX"])
    fx.validate_model(removed_model)
    assert removed == ["node1"] and warnings == ["remove_nodes: nodeX is not in the nodes model"]
    assert "node1" not in [n["name"] for n in removed_model["nodes"]]
    added = _run({"node7": fx.registered(fx.cx3_ipoib())}, previous=removed_model, at="t3")
    assert _node(added, "node7")["networks"]["rdma"]["address"] == "10.20.0.11/24"  # node1's old one, lowest free


def test_addresses_are_stable_over_reruns_reorder_and_additions():
    first = _run(fx.lab_results())
    rdma = {n["name"]: n["networks"]["rdma"]["address"] for n in first["nodes"] if "rdma" in n["networks"]}
    assert rdma == {"node1": "10.20.0.11/24", "node2": "10.20.0.12/24"}
    results = dict(reversed(list(fx.lab_results().items())))
    results["node0"] = fx.registered(fx.cx3_ipoib())  # sorts first, but takes the lowest *free* address
    again = _run(results, previous=first, at="t2")
    rdma2 = {n["name"]: n["networks"]["rdma"]["address"] for n in again["nodes"] if "rdma" in n["networks"]}
    assert rdma2 == dict(rdma, node0="10.20.0.13/24")
    node1 = _node(again, "node1")["networks"]["rdma"]
    assert (node1["interface"], node1["device"], node1["kind"]) == ("ib0", "ib0.8002", "ipoib_child")
    storage = _node(again, "node2")["networks"]["storage"]
    assert (storage["device"], storage["kind"], storage["address"]) == ("br-storage", "eipoib", "10.20.1.11/24")
    assert _node(again, "node3")["networks"]["roce"]["device"] == "ens2f0.2"  # RoCE member tagged (vlan 2)


def test_static_address_from_host_vars_wins():
    model = _run(fx.lab_results(), static_addresses={"node2": {"storage": "10.20.1.100"}})
    assert _node(model, "node2")["networks"]["storage"]["address"] == "10.20.1.100/24"


def test_address_errors_refuse_the_whole_model():
    with pytest.raises(nm._networks.NetworkError, match="network storage, node node3: static address '10.30.0.1' "
                                                        "is outside the network's CIDR 10.20.1.0/24"):
        _run(fx.lab_results(), static_addresses={"node3": {"storage": "10.30.0.1"}})
    overlapping = fx.NETWORKS + [{"name": "private", "cidr": "10.20.1.128/25"}]
    with pytest.raises(nm._networks.NetworkError, match="node node2, interface eth1: networks private "
                                                        r"\(10.20.1.128/25\) and storage \(10.20.1.0/24\) overlap"):
        _run(fx.lab_results(), networks=overlapping)
    # The default rules put rdma on IPoIB and on RoCE ports: one subnet over two fabrics is refused.
    with pytest.raises(nm._networks.NetworkError, match="network rdma has members on two fabrics that cannot reach "
                                                        "each other over one subnet: Ethernet: node3 ens2f0; "
                                                        "InfiniBand: node1 ib0, node2 ib0"):
        _run(fx.lab_results(), rules=None)


def test_host_networks_contract_shape():
    model = _run(fx.lab_results())
    per_host = nm.host_networks(model)
    assert per_host["node4"] == [] and per_host["node5"] == []
    keys = ["network", "interface", "device", "kind", "address", "gateway", "pkey", "vlan", "mtu", "mode"]
    for items in per_host.values():
        for item in items:
            assert list(item) == keys
            assert item["kind"] in ("ipoib", "ipoib_child", "eipoib", "roce", "ethernet")
            assert "/" in item["address"]
            assert item["vlan"] is None or isinstance(item["vlan"], int)
            assert item["mode"] in ("datagram", "connected", None)
    assert per_host["node1"] == [
        {"network": "rdma", "interface": "ib0", "device": "ib0.8002", "kind": "ipoib_child",
         "address": "10.20.0.11/24", "gateway": None, "pkey": "0x8002", "vlan": None, "mtu": 2044, "mode": "datagram"}]
    assert per_host["node2"][0] == {
        "network": "storage", "interface": "eth1", "device": "br-storage", "kind": "eipoib",
        "address": "10.20.1.11/24", "gateway": "10.20.1.1", "pkey": None, "vlan": None, "mtu": None, "mode": None}


def test_schema_1_model_is_read_and_rewritten_as_schema_2():
    old = _run(fx.lab_results(), networks=[])
    old["schema"] = 1
    for node in old["nodes"]:
        node.pop("last_seen")
        for chosen in node["networks"].values():
            for key in ("kind", "device", "vlan", "address"):
                chosen.pop(key)
    old["networks"].pop("definitions")
    model = _run({"node1": fx.registered(fx.cx3_ipoib())}, previous=old, at="t2")
    assert model["schema"] == 2 and _node(model, "node2")["networks"]["storage"]["address"] == "10.20.1.11/24"


def test_existing_file_that_is_not_a_model_is_refused():
    with pytest.raises(nm.ModelError, match="not a nodes model"):
        nm.build_model({}, previous={"kind": "something"})
    with pytest.raises(nm.ModelError, match="schema 7"):
        nm.build_model({}, previous={"kind": nm.MODEL_KIND, "schema": 7, "nodes": []})


@pytest.mark.parametrize("spoil, reason", [
    (lambda f: f["devices"]["mlx4_0"]["ports"]["1"].update(rate_gbps=float("1" + "0" * 400)),
     "ib_facts.devices.mlx4_0.ports.1.rate_gbps is not a finite number (inf)"),
    (lambda f: f["nics"]["ib0"]["ib"].update(rate_gbps=float("inf")), "ib_facts.nics.ib0.ib.rate_gbps is not a finite"),
    (lambda f: f.update(devices={"mlx": "oops"}), "ib_facts.devices.mlx must be a mapping, got str"),
    (lambda f: f["nics"].update(ib9="oops"), "ib_facts.nics.ib9 must be a mapping, got str"),
    (lambda f: f.update(nics=[]), "ib_facts.nics must be a mapping, got list"),
    (lambda f: f["nics"]["ib0"].update(ipoib="connected"), "ib_facts.nics.ib0.ipoib must be a mapping"),
])
def test_bad_facts_fail_that_node_only(spoil, reason):
    bad = fx.cx3_ipoib()
    spoil(bad)
    model = _run({"bad": fx.registered(bad), "good": fx.registered(fx.cx3_eipoib())})
    node = _node(model, "bad")
    assert node["status"] == "failed" and reason in node["message"] and node["errors"] == [node["message"]]
    assert node["message"].startswith("node bad: malformed facts: ")
    assert _node(model, "good")["status"] == "discovered"


def test_absurd_mac_and_attribute_dropped_with_a_warning():
    from ansible_collections.hpcnet.infiniband.plugins.module_utils import _report as rp

    facts = fx.cx3_ipoib()
    facts["nics"]["eth0"]["mac"] = "ab:" * 8000
    facts["nics"]["ib0"]["mac"] = "zz:zz"
    facts["devices"]["mlx4_0"]["board_id"] = "x" * 8192
    model = _run({"n": fx.registered(facts)})
    node = _node(model, "n")
    assert node["status"] == "discovered"
    assert _iface(node, "eth0")["mac"] is None and _iface(node, "ib0")["mac"] is None
    assert node["devices"]["mlx4_0"]["board_id"] is None
    assert any("ib_facts.nics.eth0.mac: a 24000-character value was dropped" in w for w in node["warnings"])
    assert any("ib_facts.nics.ib0.mac: 'zz:zz' is not a MAC" in w for w in node["warnings"])
    assert max(len(line) for line in rp.render_table(model)) < 400  # never padded into the report


def test_writer_merges_the_file_and_never_follows_a_planted_tmp_symlink(tmp_path):
    import os
    from ansible_collections.hpcnet.infiniband.plugins.module_utils import _nodes_writer as writer

    out = tmp_path / "out"
    out.mkdir()
    victim = tmp_path / "victim"
    victim.write_text("keep me\n")
    os.symlink(str(victim), str(out / "nodes.json.tmp"))
    params = {"results": fx.lab_results(), "output_dir": str(out), "basename": "nodes", "html": True,
              "title": "t", "mode": "0640", "networks": fx.NETWORKS,
              "rules": fx.RULES}
    first = writer.write_outputs(params)
    assert victim.read_text() == "keep me\n" and os.path.islink(out / "nodes.json.tmp")
    assert oct(os.stat(out / "nodes.json").st_mode & 0o777) == "0o640"
    fx.validate_model(json.loads((out / "nodes.json").read_text()))
    assert first["host_networks"]["node1"][0]["address"] == "10.20.0.11/24"
    limited = writer.write_outputs(dict(params, results={"node1": fx.registered(fx.cx3_ipoib())}))
    assert limited["changed"] is False  # node1 unchanged, the others kept: nothing to rewrite
    assert sorted(limited["node_status"]) == ["node1", "node2", "node3", "node4", "node5"]
    gone = writer.write_outputs(dict(params, results={}, remove_nodes=["node4"], failed_hosts=["node2"]))
    assert gone["removed"] == ["node4"] and gone["node_status"]["node2"] == "failed"
    assert "failed or was unreachable in an earlier task of this run" in gone["node_errors"]["node2"]
    (out / "nodes.json").write_text("operator notes, not a model\n")
    with pytest.raises(nm.ModelError, match="cannot read the existing nodes model"):
        writer.write_outputs(params)
    assert (out / "nodes.json").read_text() == "operator notes, not a model\n"
