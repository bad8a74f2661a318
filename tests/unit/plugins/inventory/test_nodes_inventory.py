"""Inventory plugin hpcnet.infiniband.nodes: groups and host vars from a nodes model file.

The plugin is exercised through the real ``ansible-inventory`` (it is what operators run), with the
repository's ansible.cfg so the collection resolves; small and fast (~1.5 s per call).
"""

import json
import os
import subprocess

import pytest
import yaml

from ansible_collections.hpcnet.infiniband.plugins.filter.ib_nodes_report import ib_host_networks
from ansible_collections.hpcnet.infiniband.plugins.inventory import nodes as nodes_plugin
from ansible_collections.hpcnet.infiniband.plugins.module_utils import _nodes_model as nm
from ansible_collections.hpcnet.infiniband.plugins.module_utils import _nodes_writer as writer
import nodes_facts_fixtures as fx
from testlib import REPO, plain

ANSIBLE_INVENTORY = os.path.join(REPO, ".venv", "bin", "ansible-inventory")


def _inventory(args, config):
    env = dict(os.environ, ANSIBLE_HOME=os.path.join(REPO, ".ansible"), ANSIBLE_INVENTORY_UNPARSED_FAILED="1",
               ANSIBLE_INVENTORY_ANY_UNPARSED_IS_FAILED="1")
    proc = subprocess.run([ANSIBLE_INVENTORY, "-i", str(config)] + args, cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=60, check=False)
    return proc


def _model_results():
    results = fx.lab_results()
    results["node6"] = fx.registered(fx.mixed())
    return results


@pytest.fixture(name="model_dir")
def _model_dir(tmp_path):
    params = {"results": _model_results(), "addresses": {"node1": "10.77.1.11", "node2": "10.77.1.12"},
              "output_dir": str(tmp_path / "out"), "basename": "nodes", "rules": fx.RULES, "allow_mixed": False,
              "exclude_kinds": ["loopback", "virtual"], "html": False, "title": "t", "mode": "0644",
              "networks": fx.NETWORKS}
    writer.write_outputs(params)
    fx.validate_model(json.loads((tmp_path / "out" / "nodes.json").read_text()))
    return tmp_path


def test_group_suffix():
    assert nodes_plugin.group_suffix("ConnectX-3") == "connectx_3"
    assert nodes_plugin.group_suffix("mlx5_core[ib_ipoib]") == "mlx5_core_ib_ipoib"
    assert nodes_plugin.group_suffix("TrueScale QLE7340/7342 (7322)") == "truescale_qle7340_7342_7322"
    assert nodes_plugin.group_suffix("--") is None


def test_verify_file(tmp_path):
    plugin = nodes_plugin.InventoryModule()
    for name, ok in (("a.ib_nodes.yml", True), ("a.ib_nodes.yaml", True), ("a.yml", False), ("nodes.json", False)):
        path = tmp_path / name
        path.write_text("plugin: hpcnet.infiniband.nodes\n")
        assert plugin.verify_file(str(path)) is ok, name
    assert plugin.verify_file(str(tmp_path / "missing.ib_nodes.yml")) is False


@pytest.mark.parametrize("model_file", ["nodes.json", "nodes.yaml"])
def test_list_round_trip(model_dir, model_file):
    config = model_dir / "lab.ib_nodes.yml"
    config.write_text("plugin: hpcnet.infiniband.nodes\npath: out/%s\n" % model_file)  # relative to the config
    proc = _inventory(["--list"], config)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    hostvars = plain(data["_meta"]["hostvars"])
    # Values discovered on hosts are not templates: they stay marked unsafe.
    assert data["_meta"]["hostvars"]["node1"]["ib_network_mode"] == {"__ansible_unsafe": "infiniband"}
    assert sorted(hostvars) == ["node1", "node2", "node3", "node4", "node5", "node6"]
    model = json.loads((model_dir / "out" / "nodes.json").read_text())
    for node in model["nodes"]:
        host = hostvars[node["name"]]
        assert host["ib_interfaces"] == node["interfaces"]
        assert host["ib_devices"] == node["devices"]
        assert host["ib_network_mode"] == node["network_mode"]
        assert host["ib_node_status"] == node["status"]
    assert hostvars["node1"]["ansible_host"] == "10.77.1.11"
    assert "ansible_host" not in hostvars["node3"]
    assert hostvars["node2"]["ib_networks"]["storage"]["interface"] == "eth1"
    # Addresses: {interface, device, kind, address, prefix, cidr, gateway, pkey, vlan, mtu, mode}.
    rdma = hostvars["node1"]["ib_networks"]["rdma"]
    assert {k: rdma[k] for k in ("interface", "device", "kind", "address", "prefix", "cidr", "gateway", "pkey",
                                 "vlan", "mtu", "mode")} == {
        "interface": "ib0", "device": "ib0.8002", "kind": "ipoib_child", "address": "10.20.0.11", "prefix": 24,
        "cidr": "10.20.0.0/24", "gateway": None, "pkey": "0x8002", "vlan": None, "mtu": 2044, "mode": "datagram"}
    storage = hostvars["node2"]["ib_networks"]["storage"]
    assert (storage["device"], storage["address"], storage["gateway"]) == ("br-storage", "10.20.1.11", "10.20.1.1")
    assert hostvars["node1"]["ib_networks"]["management"]["address"] is None  # no definition, no address
    # The discovery_host_networks contract, derived from ib_networks by the filter (docs/networks.md).
    # (ansible-inventory sorts mapping keys, so compare in network order.)
    for name in hostvars:
        assert sorted(ib_host_networks(hostvars[name]["ib_networks"]), key=lambda i: i["network"]) == \
            sorted(nm.host_networks(model)[name], key=lambda i: i["network"])

    def members(group):
        return sorted(data.get(group, {}).get("hosts", []))

    assert members("ib_mode_infiniband") == ["node1", "node2"]
    assert members("ib_mode_ethernet") == ["node3"]
    assert members("ib_mode_mixed") == ["node6"]
    assert members("ib_mode_none") == ["node5"]
    assert members("unreachable") == ["node4"]
    assert members("discovery_refused") == ["node6"]
    assert members("sm_local") == ["node2"]
    assert members("hca_connectx_3") == ["node1", "node2", "node6"]
    assert members("hca_connectx_5") == ["node3"]
    assert members("driver_eth_ipoib") == ["node2"]
    assert members("driver_ib_ipoib") == ["node1", "node2", "node6"]
    assert members("driver_mlx5_core") == ["node3"]
    assert members("driver_mlx4_en") == ["node6"]
    assert members("driver_igb") == ["node1", "node2", "node3", "node5", "node6"]
    assert members("ib_network_rdma") == ["node1", "node2", "node6"]
    assert members("ib_network_storage") == ["node2"]
    assert members("ib_network_roce") == ["node3", "node6"]
    assert "node4" in hostvars and hostvars["node4"]["ib_last_seen"] is None


def test_schema_1_model_read_with_a_warning(model_dir):
    model = json.loads((model_dir / "out" / "nodes.json").read_text())
    model["schema"] = 1
    for node in model["nodes"]:
        for chosen in node["networks"].values():
            for key in ("kind", "device", "vlan", "address"):
                chosen.pop(key)
    (model_dir / "old.json").write_text(json.dumps(model))
    config = model_dir / "old.ib_nodes.yml"
    config.write_text("plugin: hpcnet.infiniband.nodes\npath: old.json\n")
    proc = _inventory(["--list"], config)
    assert proc.returncode == 0, proc.stderr
    assert "schema 1" in proc.stderr and "re-run" in proc.stderr
    rdma = plain(json.loads(proc.stdout)["_meta"]["hostvars"])["node1"]["ib_networks"]["rdma"]
    assert rdma["interface"] == "ib0" and rdma["device"] == "ib0" and rdma["address"] is None


def test_graph_constructed_and_unreachable_left_out(model_dir):
    config = model_dir / "lab.ib_nodes.yaml"
    config.write_text(yaml.safe_dump({
        "plugin": "hpcnet.infiniband.nodes",
        "path": str(model_dir / "out" / "nodes.json"),
        "include_unreachable": False,
        "keyed_groups": [{"key": "ib_networks.roce.interface | default('none')", "prefix": "roce_on"}],
        "groups": {"ib_capable": "ib_network_mode in ['infiniband', 'mixed']"},
    }))
    proc = _inventory(["--graph"], config)
    assert proc.returncode == 0, proc.stderr
    graph = proc.stdout
    assert "@ib_mode_infiniband:" in graph and "@hca_connectx_3:" in graph and "@sm_local:" in graph
    assert "@roce_on_none:" in graph and "@roce_on_ens2f0:" in graph and "@ib_capable:" in graph
    assert "node4" not in graph and "@unreachable" not in graph


@pytest.mark.parametrize("content, message", [
    ("{\"kind\": \"something else\", \"nodes\": []}", "is not a nodes model"),
    ("{not json", "is not valid JSON"),
    ("{\"kind\": \"hpcnet.infiniband.nodes\", \"schema\": 9, \"nodes\": []}", "schema 9"),
])
def test_bad_model_file_one_clear_error(tmp_path, content, message):
    (tmp_path / "nodes.json").write_text(content)
    config = tmp_path / "bad.ib_nodes.yml"
    config.write_text("plugin: hpcnet.infiniband.nodes\npath: nodes.json\n")
    proc = _inventory(["--list"], config)
    assert proc.returncode != 0
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr


def test_model_kind_constant_matches():
    assert nodes_plugin.MODEL_KIND == nm.MODEL_KIND and nodes_plugin.MODEL_SCHEMA == nm.MODEL_SCHEMA
