"""Bootstrap discovery on the lab: playbooks/discover.yml, the nodes model per profile, the inventory
plugin round trip, the HTML report in a real headless Chromium, and discovery of real sysfs captures.

Run (root):  .venv/bin/python -m pytest -q tests/integration/test_discovery.py
One lab named "disc" with one node per profile (6 nodes) is brought up for the module and torn down
at the end of the session.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from html.parser import HTMLParser

import pytest
import yaml

from conftest import REPO, VENV_BIN, ansible_env
from testlib import REALDATA, capture_archives, plain, unpack_capture

LAB_NAME = "disc"
PROFILES = ["cx3-ipoib", "qib-ipoib", "cx3-eipoib", "cx5-ib-sriov", "cx5-roce", "plain-ethernet"]

# What Fuel's rule says each profile's node is, and where the default rules put the roles.
EXPECTED_MODE = {
    "cx3-ipoib": "infiniband", "qib-ipoib": "infiniband", "cx3-eipoib": "infiniband",
    "cx5-ib-sriov": "infiniband", "cx5-roce": "ethernet", "plain-ethernet": "none",
}
EXPECTED_ALLOCATION = {
    "cx3-ipoib": {"management": "eth0", "rdma": "ib0"},
    "qib-ipoib": {"management": "eth0", "rdma": "ib0"},
    "cx3-eipoib": {"management": "eth0", "storage": "eth1", "private": "eth1", "public": "eth1", "rdma": "ib0"},
    "cx5-ib-sriov": {"management": "eth0", "rdma": "ib0"},
    "cx5-roce": {"management": "eth0", "storage": "enp94s0f0np0", "private": "enp94s0f0np0",
                 "public": "enp94s0f0np0", "rdma": "enp94s0f0np0"},
    "plain-ethernet": {"management": "eth0"},
}
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def _profile(name):
    return yaml.safe_load((REPO / "lab" / "profiles" / ("%s.yml" % name)).read_text())


def _run(argv, timeout=300, **kwargs):
    kwargs.setdefault("check", False)  # callers look at returncode themselves
    return subprocess.run(  # pylint: disable=subprocess-run-check
        argv, capture_output=True, text=True, timeout=timeout, cwd=REPO, env=ansible_env(), **kwargs)


@pytest.fixture(scope="module", name="lab")
def _lab(lab_factory):
    return lab_factory(LAB_NAME, nodes=len(PROFILES), profiles=PROFILES)


def _wait_for_fabric(lab, timeout=120):
    """(ready, last status): ready once opensm is master and every IB port of the lab is ACTIVE."""
    deadline = time.monotonic() + timeout
    status = ""
    while time.monotonic() < deadline:
        status = lab.labctl("fabric", "status", timeout=60).stdout
        if "SMINFO_MASTER" in status and not re.search(r"\b(DOWN|INIT|ARMED|POLLING)\b|no data", status):
            return True, status
        time.sleep(2)
    return False, status


@pytest.fixture(scope="module", name="discovery")
def _discovery(lab, tmp_path_factory):
    fabric_up, fabric_status = _wait_for_fabric(lab)
    out = tmp_path_factory.mktemp("discovery")
    cp = lab.playbook("playbooks/discover.yml", extra_vars={"discovery_output_dir": str(out)})
    model = json.loads((out / "nodes.json").read_text()) if (out / "nodes.json").exists() else None
    return {"out": out, "cp": cp, "model": model, "fabric_up": fabric_up, "fabric_status": fabric_status}


def _node(model, name):
    return next(n for n in model["nodes"] if n["name"] == name)


def test_playbook_prints_report_and_paths(lab, discovery):
    cp = discovery["cp"]
    assert cp.returncode == 0, cp.stdout[-4000:] + cp.stderr[-2000:]
    out = discovery["out"]
    assert "Nodes model: %s" % (out / "nodes.json") in cp.stdout
    assert "HTML report: %s" % (out / "nodes.html") in cp.stdout
    assert re.search(r"NODE +INTERFACE +MAC +DRIVER +BUS_INFO +SPEED +STATE +IB_STATE +RATE +LID +SM_LID", cp.stdout)
    for name in lab.node_names:
        assert re.search(r"^\s*%s\s" % re.escape(name), cp.stdout, re.M), name
    assert "%d node(s): %d discovered, 0 refused, 0 failed, 0 unreachable" % (
        len(PROFILES), len(PROFILES)) in cp.stdout
    yaml_model = yaml.safe_load((out / "nodes.yaml").read_text())
    assert yaml_model == discovery["model"]


@pytest.mark.parametrize("profile", PROFILES)
def test_model_per_profile(lab, discovery, profile):
    model = discovery["model"]
    assert model is not None, discovery["cp"].stdout[-3000:]
    node_info = next(n for n in lab.nodes if n["profile"] == profile)
    node = _node(model, node_info["name"])
    data = _profile(profile)
    assert node["status"] == "discovered", node
    assert node["source"] == "live"
    assert node["address"] == node_info.get("mgmt_address", node["address"])
    assert node["network_mode"] == EXPECTED_MODE[profile], node["network_mode_reasons"]
    interfaces = {i["name"]: i for i in node["interfaces"]}
    for netdev in data["netdevs"]:
        iface = interfaces.get(netdev["name"])
        assert iface is not None, "%s: %s missing from %s" % (profile, netdev["name"], sorted(interfaces))
        ethtool = netdev.get("ethtool") or {}
        if ethtool.get("driver"):
            assert iface["driver"] == ethtool["driver"], (netdev["name"], iface)
        if ethtool.get("bus_info"):
            assert iface["bus_info"] == ethtool["bus_info"]
        elif netdev.get("pci"):
            assert iface["bus_info"] == netdev["pci"]
        for key in ("mac", "name", "driver", "bus_info", "current_speed", "max_speed", "state"):
            assert key in iface
    assert set(node["devices"]) == {d["name"] for d in data.get("rdma_devices") or []}
    for device in data.get("rdma_devices") or []:
        for port in device["ports"]:
            got = node["devices"][device["name"]]["ports"][str(port["port"])]
            assert got["link_layer"] == port["link_layer"]
    allocation = {role: chosen["interface"] for role, chosen in node["networks"].items()}
    assert allocation == EXPECTED_ALLOCATION[profile]
    for role, name in allocation.items():
        assert role in interfaces[name]["assigned_networks"]
    if EXPECTED_MODE[profile] == "infiniband":
        ib0 = interfaces["ib0"]
        assert ib0["ib"]["link_layer"] == "InfiniBand"
        # The simulated fabric and opensm bring every port up; discovery must see it.
        assert discovery["fabric_up"], "lab fabric not ready:\n" + discovery["fabric_status"]
        if discovery["fabric_up"]:
            assert ib0["ib"]["state"] == "ACTIVE"
            assert ib0["ib"]["lid"] and ib0["ib"]["sm_lid"] and node["sm_present"] is True
            assert ib0["current_speed"] == int(ib0["ib"]["rate_gbps"] * 1000)


def test_second_run_changes_nothing(lab, discovery):
    """Nothing is rewritten when the model is unchanged (the timestamp is kept).

    The fabric may still be settling (a port going ACTIVE is a real change), so up to three runs are
    made until two in a row see the same hosts; the later one must then report changed=0.
    """
    model_file = discovery["out"] / "nodes.json"
    for _attempt in range(3):
        before = model_file.read_text()
        cp = lab.playbook("playbooks/discover.yml", extra_vars={"discovery_output_dir": str(discovery["out"])})
        assert cp.returncode == 0, cp.stdout[-3000:]
        after = model_file.read_text()
        recap = [line for line in cp.stdout.splitlines() if re.match(r"^\S+\s+: ok=", line)]
        assert len(recap) == len(PROFILES)
        unchanged = all("changed=0" in line for line in recap)
        if before == after:
            assert unchanged, recap
            return
        assert not unchanged  # the content moved on: that must be reported as a change
    pytest.fail("the nodes model kept changing over three discovery runs")


def test_inventory_plugin_round_trip(lab, discovery, tmp_path):
    config = tmp_path / "lab.ib_nodes.yml"
    config.write_text("plugin: hpcnet.infiniband.nodes\npath: %s\n" % (discovery["out"] / "nodes.yaml"))
    listed = _run([str(VENV_BIN / "ansible-inventory"), "-i", str(config), "--list"], timeout=120)
    assert listed.returncode == 0, listed.stderr
    data = json.loads(listed.stdout)
    hostvars = plain(data["_meta"]["hostvars"])
    model = json.loads((discovery["out"] / "nodes.json").read_text())  # latest run's
    assert sorted(hostvars) == sorted(lab.node_names)
    for node in model["nodes"]:
        assert hostvars[node["name"]]["ib_interfaces"] == node["interfaces"]
        assert hostvars[node["name"]]["ib_network_mode"] == node["network_mode"]
        assert hostvars[node["name"]]["ansible_host"] == node["address"]

    def members(group):
        return sorted(data.get(group, {}).get("hosts", []))

    by_profile = {n["profile"]: n["name"] for n in lab.nodes}
    assert members("ib_mode_infiniband") == sorted(by_profile[p] for p in PROFILES if EXPECTED_MODE[p] == "infiniband")
    assert members("ib_mode_ethernet") == [by_profile["cx5-roce"]]
    assert members("driver_eth_ipoib") == [by_profile["cx3-eipoib"]]
    assert members("driver_mlx5_core_ib_ipoib") == [by_profile["cx5-ib-sriov"]]
    assert by_profile["cx3-ipoib"] in members("hca_connectx_3")
    assert members("unreachable") == []
    assert members("sm_local") == sorted(n["name"] for n in model["nodes"] if n["sm_local"])

    graph = _run([str(VENV_BIN / "ansible-inventory"), "-i", str(config), "--graph"], timeout=120)
    assert graph.returncode == 0 and "@ib_mode_infiniband:" in graph.stdout and "@driver_igb:" in graph.stdout

    # The model's groups next to the lab's connection vars: reach exactly the InfiniBand nodes.
    ping = _run([str(VENV_BIN / "ansible"), "-i", str(lab.inventory), "-i", str(config), "ib_mode_infiniband",
                 "-m", "ansible.builtin.ping", "-o"], timeout=120)
    assert ping.returncode == 0, ping.stdout + ping.stderr
    pinged = sorted(re.findall(r"^(\S+) \| SUCCESS", ping.stdout, re.M))
    assert pinged == members("ib_mode_infiniband")


class _Dom(HTMLParser):
    def __init__(self):
        super().__init__()
        self.rows = []
        self.sections = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "tr" and "data-interface" in attrs:
            self.rows.append((attrs["data-node"], attrs["data-interface"]))
        if tag == "section" and "data-node" in attrs:
            self.sections.append(attrs["data-node"])


@pytest.mark.skipif(not shutil.which("chromium"), reason="Debian chromium not installed")
def test_html_report_in_headless_chromium(discovery, tmp_path):
    page = discovery["out"] / "nodes.html"
    profile_dir = tmp_path / "chromium-profile"
    base = ["chromium"] + CHROMIUM_FLAGS + ["--user-data-dir=%s" % profile_dir]
    dom = subprocess.run(base + ["--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120, check=False)
    assert dom.returncode == 0, dom.stderr[-2000:]
    parsed = _Dom()
    parsed.feed(dom.stdout)
    model = json.loads((discovery["out"] / "nodes.json").read_text())
    assert "<title>InfiniBand discovery report</title>" in dom.stdout
    assert parsed.sections == [n["name"] for n in model["nodes"]]
    assert parsed.rows == [(n["name"], i["name"]) for n in model["nodes"] for i in n["interfaces"]]
    shot = tmp_path / "nodes.png"
    cp = subprocess.run(base + ["--window-size=1600,1200", "--screenshot=%s" % shot, page.as_uri()],
                        capture_output=True, text=True, timeout=120, check=False)
    assert cp.returncode == 0, cp.stderr[-2000:]
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10000


def test_unreachable_node_listed_others_discovered(lab, tmp_path):
    extra = tmp_path / "gone.yml"
    # A node nobody answers for, on loopback (port 1 is closed): connection refused at once.
    extra.write_text(yaml.safe_dump({"all": {"hosts": {"gone": {
        "ansible_host": "127.0.0.1", "ansible_port": 1, "ansible_user": "root",
        "ansible_ssh_common_args": "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null "
                                   "-o ConnectTimeout=5"}}}}))
    out = tmp_path / "out"
    cp = _run([str(VENV_BIN / "ansible-playbook"), "-i", str(lab.inventory), "-i", str(extra),
               "playbooks/discover.yml", "-e", json.dumps({"discovery_output_dir": str(out)})])
    assert cp.returncode == 0, cp.stdout[-3000:]
    model = json.loads((out / "nodes.json").read_text())
    assert _node(model, "gone")["status"] == "unreachable"
    assert "gone: UNREACHABLE:" in cp.stdout
    assert all(_node(model, name)["status"] == "discovered" for name in lab.node_names)
    failing = _run([str(VENV_BIN / "ansible-playbook"), "-i", str(lab.inventory), "-i", str(extra),
                    "playbooks/discover.yml", "-e", json.dumps({"discovery_output_dir": str(out),
                                                                "discovery_fail_unreachable": True})])
    assert failing.returncode != 0 and re.search(r"^gone\s+:.*failed=1", failing.stdout, re.M)


NETWORKS = [
    {"name": "rdma", "cidr": "10.20.0.0/24", "mtu": 2044, "ipoib_mode": "datagram",
     "ip_range": {"first": "10.20.0.11", "last": "10.20.0.250"}},
    {"name": "storage", "cidr": "10.20.1.0/24", "pkey": "0x8002",
     "ip_range": {"first": "10.20.1.11", "last": "10.20.1.250"}},
]


def test_networks_addresses_limit_and_removal(lab, tmp_path):
    """Addresses allocated and kept; a --limit run keeps every other node; removal is explicit; the
    discovery_host_networks fact has the contract's shape (docs/networks.md)."""
    out = tmp_path / "out"
    names = lab.node_names
    first_node = names[0]
    # One network per fabric: the lab mixes IPoIB/EIPoIB nodes with a RoCE one (docs/networks.md).
    extra = {"discovery_output_dir": str(out), "discovery_networks": NETWORKS,
             "discovery_network_rules": {"rdma": [{"kind": "ipoib"}], "storage": [{"kind": "eipoib"}]}}
    refused = lab.playbook("playbooks/discover.yml", extra_vars=dict(extra, discovery_network_rules={}))
    assert refused.returncode != 0 and "network rdma has members on two fabrics" in refused.stdout + refused.stderr
    assert not (out / "nodes.json").exists()
    cp = lab.playbook("playbooks/discover.yml", extra_vars=extra)
    assert cp.returncode == 0, cp.stdout[-4000:]
    model = json.loads((out / "nodes.json").read_text())
    by_name = {n["name"]: n for n in model["nodes"]}
    rdma = {name: node["networks"]["rdma"]["address"] for name, node in by_name.items() if "rdma" in node["networks"]}
    assert sorted(rdma.values()) == ["10.20.0.%d/24" % (11 + i) for i in range(len(rdma))]
    assert "addresses: rdma 10.20.0.11/24 on" in cp.stdout
    eipoib = next(n for n in lab.nodes if n["profile"] == "cx3-eipoib")["name"]
    storage = by_name[eipoib]["networks"]["storage"]
    assert (storage["kind"], storage["device"], storage["vlan"]) == ("eipoib", "br-storage", 2)

    # --limit: the other nodes are kept as they were, and nobody's address moves.
    fact_check = tmp_path / "fact.yml"
    fact_check.write_text(yaml.safe_dump([{
        "name": "discovery then the fact", "hosts": "all", "gather_facts": False,
        "roles": [{"role": "hpcnet.infiniband.discovery"}],
        "tasks": [{"name": "keep the fact", "delegate_to": "localhost", "ansible.builtin.copy": {
            "content": "{{ discovery_host_networks | to_json }}", "dest": str(tmp_path / "fact.json")}}]}]))
    limited = lab.playbook(str(fact_check), extra_vars=extra, limit=first_node)
    assert limited.returncode == 0, limited.stdout[-4000:]
    again = json.loads((out / "nodes.json").read_text())
    assert [n["name"] for n in again["nodes"]] == [n["name"] for n in model["nodes"]]
    assert again == model  # nothing changed: the same file
    fact = json.loads((tmp_path / "fact.json").read_text())
    assert [item["network"] for item in fact] == [r for r in by_name[first_node]["networks"] if r in ("rdma", "storage")]
    for item in fact:
        assert list(item) == ["network", "interface", "device", "kind", "address", "gateway", "pkey", "vlan", "mtu", "mode"]
        assert item["address"] == by_name[first_node]["networks"][item["network"]]["address"]

    # Removal is explicit; the freed address goes to the next new member, others stay.
    removed = lab.playbook("playbooks/discover.yml", limit=names[1],
                           extra_vars=dict(extra, discovery_remove_nodes=[first_node]))
    assert removed.returncode == 0, removed.stdout[-4000:]
    after = json.loads((out / "nodes.json").read_text())
    assert first_node not in [n["name"] for n in after["nodes"]]
    for node in after["nodes"]:
        if "rdma" in node["networks"]:
            assert node["networks"]["rdma"]["address"] == rdma[node["name"]]


def test_discovery_of_real_captures(tmp_path):
    archives = capture_archives()
    if not archives:
        pytest.skip("no captures in %s" % REALDATA)
    hosts = {}
    for index, archive in enumerate(archives):
        sysfs = unpack_capture(archive, tmp_path / ("capture%d" % index))  # the whole capture
        hosts[archive.name.split(".")[0]] = {"discovery_sysfs_root": sysfs}
    inventory = tmp_path / "captures.yml"
    inventory.write_text(yaml.safe_dump({"captures": {"hosts": hosts, "vars": {
        "ansible_connection": "local", "ansible_python_interpreter": str(VENV_BIN / "python")}}}))
    out = tmp_path / "out"
    cp = _run([str(VENV_BIN / "ansible-playbook"), "-i", str(inventory), "playbooks/discover.yml",
               "-e", json.dumps({"discovery_output_dir": str(out)})])
    assert cp.returncode == 0, cp.stdout[-3000:]
    model = json.loads((out / "nodes.json").read_text())
    by_name = {n["name"]: n for n in model["nodes"]}
    mic = by_name["32em64t-2n8c+dax+nvme+mic+dimms"]
    assert mic["source"] == "snapshot" and mic["network_mode"] == "infiniband"
    ib0 = next(i for i in mic["interfaces"] if i["name"] == "ib0")
    assert (ib0["driver"], ib0["bus_info"], ib0["current_speed"]) == ("ib_ipoib", "0000:82:00.0", 56000)
    assert (ib0["ib"]["lid"], ib0["ib"]["sm_lid"], ib0["ib"]["state"]) == (932, 1, "ACTIVE")
    assert mic["devices"]["mlx4_0"]["fw_ver"] == "2.11.500"
    assert mic["devices"]["mlx4_0"]["node_guid"] == "0002:c903:00f9:bfa0"
    qib = by_name["40intel64-2g2n4c+pcilocality"]
    ib0 = next(i for i in qib["interfaces"] if i["name"] == "ib0")
    assert ib0["current_speed"] == 40000 and ib0["ib"]["lid"] == 298 and "qib0" in qib["devices"]
    assert "address" in mic and mic["address"] is None


def test_sm_local_follows_the_fabric(lab, tmp_path):
    """Run opensm as one node's HCA: that node, and only it, becomes sm_local in model and inventory."""
    sm_node = next(n["name"] for n in lab.nodes if n["profile"] == "cx3-ipoib")
    lab.labctl("sm", "stop", timeout=120)
    try:
        lab.labctl("sm", "start", "--on", sm_node, timeout=120, check=True)
        ready, status = _wait_for_fabric(lab, timeout=240)
        assert ready, "fabric not ready with opensm on %s:\n%s" % (sm_node, status)
        out = tmp_path / "out"
        cp = lab.playbook("playbooks/discover.yml", extra_vars={"discovery_output_dir": str(out)})
        assert cp.returncode == 0, cp.stdout[-3000:]
        model = json.loads((out / "nodes.json").read_text())
        assert sorted(n["name"] for n in model["nodes"] if n["sm_local"]) == [sm_node]
        assert "%s: discovered, network mode infiniband" % sm_node in cp.stdout
        assert "subnet manager local" in cp.stdout
        config = tmp_path / "sm.ib_nodes.yml"
        config.write_text("plugin: hpcnet.infiniband.nodes\npath: out/nodes.json\n")
        listed = _run([str(VENV_BIN / "ansible-inventory"), "-i", str(config), "--list"], timeout=120)
        assert json.loads(listed.stdout)["sm_local"]["hosts"] == [sm_node]
    finally:
        lab.labctl("sm", "stop", timeout=120)
        lab.labctl("sm", "start", timeout=120)
