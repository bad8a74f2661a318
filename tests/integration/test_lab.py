"""The lab's node/network part: each test fails if its part is broken.

Run (root): .venv/bin/python -m pytest -p no:cacheprovider tests/integration/test_lab.py -v -s
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
STATE_ROOT = Path("/run/hpcnet-lab")


def run_labctl(*args: str, timeout: float = 600, check: bool = False):
    cp = subprocess.run([str(REPO / "lab" / "labctl"), *args], capture_output=True, text=True,
                        timeout=timeout, cwd=REPO, check=False)
    assert not check or cp.returncode == 0, f"labctl {args}: {cp.stdout}{cp.stderr}"
    return cp


LAB = "core"


@pytest.fixture(scope="module")
def lab(lab_factory):
    return lab_factory(LAB, nodes=3)


def _leftovers(name: str, index: int) -> list[str]:
    found = []
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=False).stdout
    found += [line.split()[0] for line in netns.splitlines()
              if re.match(rf"^hpcl-{re.escape(name)}-(node\d+|fabric)\b", line)]
    links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True, check=False).stdout
    found += [m.group(1) for m in re.finditer(rf"^\d+: (hpl{index:03d}[^:@]*)", links, re.M)]
    if (STATE_ROOT / name).exists():
        found.append(str(STATE_ROOT / name))
    return found


def test_up_prints_startup_time(lab):
    assert re.search(r"lab 'core' (up: 3 nodes in [0-9.]+ s|already up)", lab.up_output), \
        lab.up_output


def test_ssh_hostname_on_every_node(lab):
    for node in lab.node_names:
        cp = lab.ssh(node, "hostname")
        assert cp.returncode == 0, cp.stderr
        assert cp.stdout.strip() == node


def test_inventory_drives_ansible(lab, tmp_path):
    play = tmp_path / "ping.yml"
    play.write_text(
        "- name: Reach every lab node\n"
        "  hosts: lab_nodes\n"
        "  gather_facts: false\n"
        "  tasks:\n"
        "    - name: Ping\n"
        "      ansible.builtin.ping:\n")
    cp = lab.playbook(play)
    assert cp.returncode == 0, cp.stdout + cp.stderr
    for node in lab.node_names:
        assert re.search(rf"{node}\s*: ok=1 ", cp.stdout), cp.stdout


def test_node_private_etc(lab):
    marker = "/etc/hpcnet-lab-private-check"
    try:
        cp = lab.ssh("node1", f"echo node1 > {marker} && cat {marker}")
        assert cp.returncode == 0 and cp.stdout.strip() == "node1", cp.stderr
        assert not Path(marker).exists(), "a node's /etc write reached the host"
        cp = lab.exec("node2", ["test", "-e", marker])
        assert cp.returncode == 1, "a node's /etc write is visible on another node"
        # Each node has its own hosts file and loopback resolver.
        cp = lab.exec("node2", ["cat", "/etc/resolv.conf", "/etc/hostname"])
        assert "nameserver 127.0.0.1" in cp.stdout and "node2" in cp.stdout
    finally:
        lab.exec("node1", ["rm", "-f", marker])


def test_exec_sees_node_sys_and_links(lab):
    for node in lab.nodes:
        cp = lab.exec(node["name"], ["ls", "/sys/class/net"], check=True)
        names = set(cp.stdout.split())
        assert set(node["links"]) <= names, (node["name"], names)
        assert "ifb0" not in names, "node sees the host's netdevs"


def test_ib0_traffic_between_nodes(lab):
    ib_nodes = [n for n in lab.nodes if n.get("ib_address")]
    assert len(ib_nodes) >= 2, "default lab should have at least two nodes with ib0"
    for src in ib_nodes:
        for dst in ib_nodes:
            if src is dst:
                continue
            cp = lab.exec(src["name"], ["ping", "-c", "1", "-W", "2", "-I", "ib0",
                                        dst["ib_address"]], timeout=15)
            assert cp.returncode == 0, f"{src['name']} -> {dst['name']} over ib0: {cp.stdout}"


def test_ovs_on_node(lab):
    cp = lab.ssh("node1", "ovs-vsctl --timeout=10 add-br hpcnet-t0 -- "
                          "set bridge hpcnet-t0 datapath_type=netdev")
    try:
        assert cp.returncode == 0, cp.stderr
        # ovs-vsctl exits 0 even when the datapath failed: check what vswitchd made of it.
        cp = lab.ssh("node1", "ovs-vsctl --timeout=10 get interface hpcnet-t0 ofport error")
        assert cp.returncode == 0, cp.stderr
        ofport, error = cp.stdout.split("\n")[:2]
        assert ofport.strip() not in ("-1", "[]"), cp.stdout
        assert error.strip() in ("[]", ""), cp.stdout
        cp = lab.exec("node1", ["ip", "link", "show", "hpcnet-t0"])
        assert cp.returncode == 0, "bridge port netdev missing in the node"
        # Per-node databases: node2 does not see node1's bridge.
        cp = lab.ssh("node2", "ovs-vsctl --timeout=10 br-exists hpcnet-t0")
        assert cp.returncode == 2, cp.stdout + cp.stderr
    finally:
        lab.ssh("node1", "ovs-vsctl --timeout=10 --if-exists del-br hpcnet-t0")
    assert lab.ssh("node1", "ovs-vsctl --timeout=10 br-exists hpcnet-t0").returncode == 2


def _port_state(lab, node: str, hca: str) -> str:
    cp = lab.exec(node, ["cat", f"/sys/class/infiniband/{hca}/ports/1/state"])
    return cp.stdout.strip()


def _wait_port(lab, node: str, hca: str, want: str, timeout: float = 30) -> str:
    deadline = time.monotonic() + timeout
    state = _port_state(lab, node, hca)
    while want not in state and time.monotonic() < deadline:
        time.sleep(1)
        state = _port_state(lab, node, hca)
    return state


def test_fabric_commands_reach_the_fabric(lab):
    """labctl status/fabric forward to lab-hw's fabric: opensm MASTER, unlink/relink a node."""
    if not lab.info.get("hw"):
        pytest.skip("lab runs without hardware profiles (--no-hw): no fabric")
    cp = lab.labctl("fabric", "status")
    assert cp.returncode == 0 and "MASTER" in cp.stdout, cp.stdout + cp.stderr
    node = next(n for n in lab.nodes if n["name"] != "node1" and any(
        p["link_layer"] == "InfiniBand" for h in n["hcas"] for p in h["ports"]))
    hca = node["hcas"][0]["name"]
    assert "ACTIVE" in _wait_port(lab, node["name"], hca, "ACTIVE")
    try:
        assert lab.labctl("fabric", "unlink", node["name"]).returncode == 0
        assert "DOWN" in _wait_port(lab, node["name"], hca, "DOWN")
    finally:
        assert lab.labctl("fabric", "relink", node["name"]).returncode == 0
    assert "ACTIVE" in _wait_port(lab, node["name"], hca, "ACTIVE", timeout=60)


def test_up_is_idempotent(lab):
    before = {n["name"]: n["holder_pid"] for n in lab.nodes}
    cp = lab.labctl("up")
    assert cp.returncode == 0, cp.stderr
    assert "already up" in cp.stdout
    assert {n["name"]: n["holder_pid"] for n in lab.nodes} == before
    cp = lab.labctl("status")
    assert cp.returncode == 0, cp.stdout + cp.stderr


def test_env_prints_assignments(lab):
    cp = lab.labctl("env")
    assert cp.returncode == 0, cp.stderr
    values = dict(line.split("=", 1) for line in cp.stdout.splitlines())
    assert values["LAB_DIR"] == str(lab.dir)
    assert values["LAB_INVENTORY"] == str(lab.inventory)


def test_broken_lab_is_rebuilt_and_down_twice_is_fine():
    name = "core-dt"
    run_labctl("up", "--name", name, "--nodes", "1", "--no-sm", check=True)
    state = STATE_ROOT / name / "lab.json"
    info = json.loads(state.read_text())
    # Break the node (its namespaces go away): the next `up` must rebuild, not report healthy.
    subprocess.run(["kill", "-9", str(info["nodes"][0]["holder_pid"])], check=True)
    cp = run_labctl("status", "--name", name)
    assert cp.returncode == 1 and "PROBLEM" in cp.stdout
    cp = run_labctl("up", "--name", name, "--nodes", "1", "--no-sm", check=True)
    assert "removing it first" in cp.stdout and "up: 1 node in" in cp.stdout
    index = json.loads(state.read_text())["index"]
    run_labctl("down", "--name", name, check=True)
    cp = run_labctl("down", "--name", name, check=True)
    assert "not running" in cp.stdout
    assert _leftovers(name, index) == []


def test_failed_up_leaves_nothing():
    name = "core-fail"
    cp = run_labctl("up", "--name", name, "--profiles", "no-such-profile", "--nodes", "1")
    assert cp.returncode != 0
    assert not (STATE_ROOT / name).exists()
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=False).stdout
    assert f"hpcl-{name}-" not in netns


def test_16_nodes_bring_up_time():
    name = "core-16"
    t0 = time.monotonic()
    cp = run_labctl("up", "--name", name, "--nodes", "16", timeout=900)
    try:
        assert cp.returncode == 0, cp.stdout + cp.stderr
        print(f"\n16-node bring-up: {cp.stdout.strip()} (wall {time.monotonic() - t0:.1f} s)")
        ssh_config = STATE_ROOT / name / "ssh_config"
        out = subprocess.run(["ssh", "-F", str(ssh_config), "-o", "BatchMode=yes", "node16",
                              "hostname"], capture_output=True, text=True, timeout=60, check=False)
        assert out.stdout.strip() == "node16", out.stderr
    finally:
        t1 = time.monotonic()
        down = run_labctl("down", "--name", name, timeout=300)
        print(f"16-node teardown: {down.stdout.strip()} (wall {time.monotonic() - t1:.1f} s)")
    assert time.monotonic() - t0 < 300
