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
