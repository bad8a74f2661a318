"""Network verification on the lab: green on a healthy lab, then each breakage found exactly.

Lab `net`: 3 cx3-eipoib nodes (ib0/ib1 IPoIB, EIPoIB eth1 over ib0, eth2 over ib1). Networks from the
nodes model that discovery writes: rdma on ib0, storage (+private+public) on eth1. Each breakage is
made inside the lab (on the node's real links, through `labctl exec`), undone afterwards, and must be
reported with the right node and interface and nothing else.
"""

from __future__ import annotations

import json
import os
import time

import pytest

# HPCNET_NETCHECK_LAB: another lab name, when a lab `net` is somebody else's.
LAB_NAME = os.environ.get("HPCNET_NETCHECK_LAB", "net")
NETWORKS = [{"name": "rdma"}, {"name": "storage"}]


@pytest.fixture(scope="module")
def lab(lab_factory):
    return lab_factory(LAB_NAME, nodes=3, profiles=["cx3-eipoib"])


def wait_ports_active(lab, timeout=90):
    """The simulated fabric brings the ports ACTIVE once opensm has swept (slow on a loaded machine)."""
    deadline = time.monotonic() + timeout
    states = {}
    while time.monotonic() < deadline:
        states = {n["name"]: lab.exec(n["name"], ["cat", "/sys/class/infiniband/mlx4_0/ports/1/state",
                                                  "/sys/class/infiniband/mlx4_0/ports/2/state"]).stdout.split()
                  for n in lab.nodes}
        if all(s.count("ACTIVE") == 2 for s in states.values()):
            return
        time.sleep(2)
    pytest.fail(f"IB ports not ACTIVE after {timeout} s: {states}")


@pytest.fixture(scope="module")
def model(lab, tmp_path_factory):
    wait_ports_active(lab)
    out = tmp_path_factory.mktemp("netcheck-discovery")
    cp = lab.playbook("playbooks/discover.yml", extra_vars={"discovery_output_dir": str(out)})
    assert cp.returncode == 0, cp.stdout[-3000:] + cp.stderr[-2000:]
    path = out / "nodes.json"
    allocation = json.loads(path.read_text())["networks"]["allocation"]
    assert all(a.get("rdma") == "ib0" and a.get("storage") == "eth1" for a in allocation.values()), allocation
    # The lab addresses IPoIB links only; an operator would address the EIPoIB interface (or its bridge).
    # (ARP on the shared lab segment: the lab's node setup sets arp_ignore/arp_announce, see docs/lab.md.)
    index = lab.info["index"]
    for node in lab.nodes:
        if not node["links"].get("eth1", {}).get("address"):
            lab.exec(node["name"], ["ip", "addr", "replace", f"10.234.{index}.{10 + node['index']}/24",
                                    "dev", "eth1"], check=True)
    return path


def verify(lab, model, tmp_path, **extra):
    result_file = tmp_path / "netcheck.json"
    started = time.monotonic()
    extra_vars = dict(netcheck_nodes_model=str(model), netcheck_result_file=str(result_file),
                      netcheck_networks=NETWORKS)
    extra_vars.update(extra)
    cp = lab.playbook("playbooks/verify_network.yml", extra_vars=extra_vars)
    elapsed = time.monotonic() - started
    result = json.loads(result_file.read_text()) if result_file.exists() else None
    print(f"verify_network.yml: {elapsed:.1f} s, rc {cp.returncode}")
    return cp, result


def where(result):
    return {(f["node"], f["interface"]) for f in result["findings"]}


def fields(result):
    return {f["field"] for f in result["findings"]}


def test_healthy_lab_is_green(lab, model, tmp_path):
    cp, result = verify(lab, model, tmp_path)
    assert cp.returncode == 0, cp.stdout[-4000:]
    assert result["ok"] and result["findings"] == []
    assert set(result["networks"]) == {"rdma", "storage"}
    for network in result["networks"].values():
        assert {state for row in network["matrix"].values() for state in row.values()} == {"ok"}
        assert len(network["matrix"]) == 3
    assert "all networks verified" in cp.stdout


def test_interface_down_is_found_on_that_node_only(lab, model, tmp_path):
    lab.exec("node2", ["ip", "link", "set", "eth1", "down"], check=True)
    try:
        cp, result = verify(lab, model, tmp_path)
    finally:
        lab.exec("node2", ["ip", "link", "set", "eth1", "up"], check=True)
    assert cp.returncode != 0
    assert where(result) == {("node2", "eth1")}, result["findings"]
    assert {"operstate", "reachability"} <= fields(result)
    assert result["networks"]["storage"]["cannot_reach"]  # the matrix shows it too
    assert "node2 eth1 is down" in cp.stdout


def link_mtu(lab, node, link):
    return int(lab.exec(node, ["cat", f"/sys/class/net/{link}/mtu"], check=True).stdout)


def test_wrong_mtu_is_found_on_that_node_only(lab, model, tmp_path):
    # Lowering ib0's MTU also lowers it on the EIPoIB eth1 over it (macvlan, as the kernel does), and
    # raising ib0 again does not raise eth1: put both back, or the later tests see eth1 at 1500.
    before = {link: link_mtu(lab, "node3", link) for link in ("ib0", "eth1")}
    lab.exec("node3", ["ip", "link", "set", "ib0", "mtu", "1500"], check=True)
    try:
        cp, result = verify(lab, model, tmp_path, netcheck_networks=[{"name": "rdma"}])
    finally:
        for link, mtu in before.items():
            lab.exec("node3", ["ip", "link", "set", link, "mtu", str(mtu)], check=True)
    assert cp.returncode != 0
    assert where(result) == {("node3", "ib0")}, result["findings"]
    mtu = [f for f in result["findings"] if f["field"] == "mtu"]
    assert len(mtu) == 1 and (mtu[0]["expected"], mtu[0]["actual"]) == (2044, 1500)
    assert "path_mtu" in fields(result)  # full-size probes do not cross node3's ib0


def test_missing_pkey_is_found_on_every_port_without_it(lab, model, tmp_path):
    # The lab's ports hold the default partition only (0xffff); a network on P_Key 0x8002 is not theirs.
    cp, result = verify(lab, model, tmp_path, netcheck_networks=[{"name": "rdma", "pkey": "0x8002"}])
    assert cp.returncode != 0
    assert where(result) == {("node1", "ib0"), ("node2", "ib0"), ("node3", "ib0")}
    assert fields(result) == {"pkeys"}


def test_unreachable_node_is_listed_and_others_checked(lab, model, tmp_path):
    # node3 unreachable for Ansible: a copy of the inventory points it at an address of the lab's own
    # management subnet that no node holds (one ssh attempt, inside the lab).
    import subprocess

    import yaml
    from conftest import REPO, VENV_BIN, ansible_env

    inventory = yaml.safe_load(lab.inventory.read_text())
    inventory["all"]["children"]["lab_nodes"]["hosts"]["node3"]["ansible_host"] = f"10.231.{lab.info['index']}.99"
    inventory_copy = tmp_path / "inventory.yml"
    inventory_copy.write_text(yaml.safe_dump(inventory))
    result_file = tmp_path / "netcheck.json"
    cp = subprocess.run([str(VENV_BIN / "ansible-playbook"), "-i", str(inventory_copy), "playbooks/verify_network.yml",
                         "-e", json.dumps({"netcheck_nodes_model": str(model), "netcheck_result_file": str(result_file),
                                           "netcheck_networks": [{"name": "rdma"}]}),
                         "-e", "ansible_ssh_timeout=3"],
                        capture_output=True, text=True, cwd=REPO, env=ansible_env(), timeout=300, check=False)
    result = json.loads(result_file.read_text())
    assert cp.returncode != 0
    assert where(result) == {("node3", "ib0")} and fields(result) == {"node"}, result["findings"]
    assert set(result["networks"]["rdma"]["matrix"]) == {"node1", "node2"}


# Faults in one node's view of the hardware (`labctl hw set`, docs/lab.md): the port of ib0 (and of
# EIPoIB eth1, which runs over ib0) is mlx4_0 port 1 on the cx3-eipoib profile.
PORT1 = "class/infiniband/mlx4_0/ports/1"


def hw_get(lab, node, path):
    return lab.labctl("hw", "get", node, path, check=True).stdout.strip()


def test_duplicate_port_guid_is_found_on_that_node_only(lab, model, tmp_path):
    gid0 = hw_get(lab, "node1", f"{PORT1}/gids/0")
    lab.labctl("hw", "set", "node2", f"{PORT1}/gids/0", gid0, check=True)
    try:
        cp, result = verify(lab, model, tmp_path)
    finally:
        lab.labctl("hw", "reset", "node2", check=True)
    assert cp.returncode != 0 and result is not None, cp.stdout[-4000:]
    # node1 holds the GUID first; node2's ib0 (rdma) and eth1 (storage, over ib0) both sit on that port.
    assert where(result) == {("node2", "ib0"), ("node2", "eth1")}, result["findings"]
    assert fields(result) == {"port_guid"}, result["findings"]
    assert {(f["duplicate_of"]["node"], f["duplicate_of"]["interface"]) for f in result["findings"]} == {
        ("node1", "ib0"), ("node1", "eth1")}
    assert hw_get(lab, "node2", f"{PORT1}/gids/0") != gid0  # reset


def test_pkey_dropped_from_one_port_table_is_found_on_that_node_only(lab, model, tmp_path):
    # The SM "gives" partition 0x8002 to ib0's port on every node (entry 1; entry 0 is the default
    # 0xffff), the network is green on it; then node2's port loses it.
    assert {hw_get(lab, n, f"{PORT1}/pkeys/0") for n in lab.node_names} == {"0xffff"}
    networks = [{"name": "rdma", "pkey": "0x8002"}]
    try:
        for node in lab.node_names:
            lab.labctl("hw", "set", node, f"{PORT1}/pkeys/1", "0x8002", check=True)
        cp, result = verify(lab, model, tmp_path, netcheck_networks=networks)
        assert cp.returncode == 0 and result["findings"] == [], cp.stdout[-4000:]
        lab.labctl("hw", "set", "node2", f"{PORT1}/pkeys/1", "0x0000", check=True)
        cp, result = verify(lab, model, tmp_path, netcheck_networks=networks)
    finally:
        for node in lab.node_names:
            lab.labctl("hw", "reset", node, check=True)
    assert cp.returncode != 0 and result is not None, cp.stdout[-4000:]
    assert where(result) == {("node2", "ib0")}, result["findings"]
    assert fields(result) == {"pkeys"}
    assert result["findings"][0]["expected"] == "0x8002"


def test_limit_says_which_nodes_were_not_checked(lab, model, tmp_path):
    """Issue 10 item 1: a run over part of the model must not say "all networks verified"."""
    result_file = tmp_path / "netcheck.json"
    cp = lab.playbook("playbooks/verify_network.yml", limit="node1,node2", extra_vars={
        "netcheck_nodes_model": str(model), "netcheck_result_file": str(result_file),
        "netcheck_networks": [{"name": "rdma"}]})
    assert cp.returncode == 0, cp.stdout[-4000:]
    text = " ".join(cp.stdout.split())   # the callback wraps long messages
    assert "all networks verified" not in text
    assert "NOT checked: node3 (not in this play)" in text
    result = json.loads(result_file.read_text())
    assert result["not_checked"] == {"node3": "not in this play"} and result["ok"]


def test_bad_bounds_are_refused_before_probing(lab, model, tmp_path):
    """Issue 10 item 15: netcheck_wait=-1 is refused, not turned into "unreachable" findings."""
    cp, result = verify(lab, model, tmp_path, netcheck_wait=-1)
    assert cp.returncode != 0 and result is None
    text = " ".join(cp.stdout.split())
    assert "netcheck_wait (-1)" in text and "must be 1 or more" in text


def test_result_path_relative_to_the_working_directory(lab, model, tmp_path):
    """The default result file is out/netcheck/netcheck.json under the directory ansible-playbook runs in."""
    import subprocess

    from conftest import REPO, VENV_BIN, ansible_env

    env = ansible_env()
    env["ANSIBLE_CONFIG"] = str(REPO / "ansible.cfg")
    cp = subprocess.run([str(VENV_BIN / "ansible-playbook"), "-i", str(lab.inventory),
                         str(REPO / "playbooks" / "verify_network.yml"),
                         "-e", json.dumps({"netcheck_nodes_model": str(model), "netcheck_networks": [{"name": "rdma"}]})],
                        capture_output=True, text=True, cwd=tmp_path, env=env, timeout=600, check=False)
    assert cp.returncode == 0, cp.stdout[-3000:]
    assert json.loads((tmp_path / "out" / "netcheck" / "netcheck.json").read_text())["ok"]
