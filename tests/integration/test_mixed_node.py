"""Fuel's "mixed node" rule end to end on the lab: a node whose one ConnectX-3 has an InfiniBand port
(ib0, ib_ipoib) and an Ethernet port (enp5s0d1, mlx4_en, RoCE) is refused by playbooks/discover.yml
with a message naming both interfaces and drivers, unless discovery_allow_mixed is true.

Lab `mixedtest`: node1 = cx3-ipoib, node2 = cx3-mixed (mlx4 port_type_array=1,2). It comes up without a
subnet manager; the test starts OpenSM and checks that it brings the mixed node's IB port ACTIVE while
its Ethernet port, which is not on the IB fabric, is left alone.

Run (root):  .venv/bin/pytest -q tests/integration/test_mixed_node.py    (about 30 s)
"""

from __future__ import annotations

import json
import re
import time

import pytest

LAB_NAME = "mixedtest"
PROFILES = ["cx3-ipoib", "cx3-mixed"]
IB_PORT = "/sys/class/infiniband/mlx4_0/ports/1"
ETH_PORT = "/sys/class/infiniband/mlx4_0/ports/2"
REFUSAL_ROLES = ("node node2: mismatching Mellanox drivers: its network roles would use InfiniBand mode on "
                 "ib0 (ib_ipoib) and Ethernet (RoCE) mode on enp5s0d1 (mlx4_en); one node must use one mode")
REFUSAL_NODE = ("node node2: mismatching Mellanox drivers: InfiniBand-mode interfaces ib0 (ib_ipoib) and "
                "Ethernet-mode (RoCE) interfaces enp5s0d1 (mlx4_en) on the same node; one node must use one mode")


@pytest.fixture(scope="module", name="lab")
def _lab(lab_factory):
    # No OVS: discovery does not use it. No SM at first: the test starts it.
    return lab_factory(LAB_NAME, nodes=len(PROFILES), profiles=PROFILES, sm=False, ovs=False)


def port_attrs(lab, node, port_dir, names=("link_layer", "state", "phys_state", "lid", "sm_lid")):
    cp = lab.exec(node, ["sh", "-c", " ; ".join(f"cat {port_dir}/{n}" for n in names)], check=True)
    return dict(zip(names, cp.stdout.splitlines()))


def carrier(lab, node, netdev):
    return lab.exec(node, ["cat", f"/sys/class/net/{netdev}/carrier"]).stdout.strip()


def wait_for(predicate, timeout, interval=1.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    return predicate()


@pytest.fixture(scope="module", name="sm_started")
def _sm_started(lab):
    """Port states before (no SM: INIT once the fabric sync ran) and after `labctl sm start`."""
    before_ok = wait_for(lambda: port_attrs(lab, "node2", IB_PORT)["state"] == "2: INIT", 30)
    wait_for(lambda: carrier(lab, "node2", "ib0") == "0", 10)
    before = {"ib": port_attrs(lab, "node2", IB_PORT), "eth": port_attrs(lab, "node2", ETH_PORT),
              "ib0_carrier": carrier(lab, "node2", "ib0")}
    cp = lab.labctl("sm", "start", timeout=120)
    assert cp.returncode == 0, cp.stdout + cp.stderr
    active = wait_for(lambda: all(port_attrs(lab, n, IB_PORT)["state"] == "4: ACTIVE"
                                  for n in ("node1", "node2")), 60)
    wait_for(lambda: carrier(lab, "node2", "ib0") == "1", 15)
    after = {"ib": port_attrs(lab, "node2", IB_PORT), "eth": port_attrs(lab, "node2", ETH_PORT),
             "ib0_carrier": carrier(lab, "node2", "ib0")}
    return {"before_ok": before_ok, "before": before, "active": active, "after": after}


def discover(lab, out, **extra):
    cp = lab.playbook("playbooks/discover.yml", extra_vars=dict(extra, discovery_output_dir=str(out)))
    model_file = out / "nodes.json"
    model = json.loads(model_file.read_text()) if model_file.exists() else None
    return cp, model


def node_of(model, name):
    return next(n for n in model["nodes"] if n["name"] == name)


def recap(cp, node):
    match = re.search(r"^%s\s+: ok=\d+\s+changed=\d+\s+unreachable=(\d+)\s+failed=(\d+)" % node, cp.stdout, re.M)
    assert match, cp.stdout[-3000:]
    return {"unreachable": int(match.group(1)), "failed": int(match.group(2))}


def test_only_the_ib_port_is_on_the_fabric(lab):
    fabric = json.loads((lab.dir / "hw-fabric" / "fabric.json").read_text())
    assert [(p["node"], p["hca"], p["port"], p["netdev"]) for p in fabric["ports"]] == [
        ("node1", "mlx4_0", 1, "ib0"), ("node2", "mlx4_0", 1, "ib0")]
    net = (lab.dir / "hw-fabric" / "net").read_text()
    assert 'Hca 1 "node2-mlx4_0"' in net
    assert '"node2-mlx4_0"[2]' not in net
    # The node sees both ports of its one ConnectX-3 with the kernel's mlx4 attributes.
    cp = lab.exec("node2", ["sh", "-c", "cat /sys/bus/pci/devices/0000:05:00.0/mlx4_port1 "
                            "/sys/bus/pci/devices/0000:05:00.0/mlx4_port2 "
                            "/sys/module/mlx4_core/parameters/port_type_array"], check=True)
    assert cp.stdout.split() == ["ib", "eth", "1,2"]
    cp = lab.exec("node2", ["ethtool", "-i", "enp5s0d1"], check=True)
    assert "driver: mlx4_en" in cp.stdout and "bus-info: 0000:05:00.0" in cp.stdout
    cp = lab.exec("node2", ["ethtool", "-i", "ib0"], check=True)
    assert "driver: ib_ipoib" in cp.stdout and "bus-info: 0000:05:00.0" in cp.stdout


def test_subnet_manager_makes_the_mixed_ib_port_active(lab, sm_started):
    before, after = sm_started["before"], sm_started["after"]
    assert sm_started["before_ok"], before
    assert before["ib"]["link_layer"] == "InfiniBand"
    assert (before["ib"]["state"], before["ib"]["lid"]) == ("2: INIT", "0x0")
    assert before["ib0_carrier"] == "0"
    assert sm_started["active"], after
    assert after["ib"]["state"] == "4: ACTIVE" and after["ib"]["phys_state"] == "5: LinkUp"
    assert after["ib"]["lid"] != "0x0" and after["ib"]["sm_lid"] == "0x1"
    assert after["ib0_carrier"] == "1"
    # Port 2 is Ethernet: not on the IB fabric, untouched by the SM (it follows its netdev; no LID).
    for state in (before["eth"], after["eth"]):
        assert state == {"link_layer": "Ethernet", "state": "4: ACTIVE", "phys_state": "5: LinkUp",
                         "lid": "0x0", "sm_lid": "0x0"}
    # The node's own IB port reaches the SM (diag tools go through the fabric as the node's HCA).
    cp = lab.exec("node2", ["sminfo"], timeout=60)
    assert cp.returncode == 0 and "SMINFO_MASTER" in cp.stdout, cp.stdout + cp.stderr
    state = json.loads((lab.dir / "nodes" / "node2" / "hw" / "fabric-state.json").read_text())
    assert list(state["ports"]) == ["mlx4_0/1"]


def test_mixed_node_is_refused(lab, sm_started, tmp_path):
    assert sm_started["active"]
    cp, model = discover(lab, tmp_path)
    assert cp.returncode != 0
    assert recap(cp, "node1") == {"unreachable": 0, "failed": 0}
    assert recap(cp, "node2") == {"unreachable": 0, "failed": 1}
    assert re.search(r"fatal: \[node2\]: FAILED!", cp.stdout)
    assert "fatal: [node1]" not in cp.stdout
    assert REFUSAL_ROLES in cp.stdout  # the report's ERROR line
    assert "2 node(s): 1 discovered, 1 refused, 0 failed, 0 unreachable" in cp.stdout
    assert model is not None, cp.stdout[-3000:]
    assert model["allow_mixed"] is False
    node1, node2 = node_of(model, "node1"), node_of(model, "node2")
    assert (node1["status"], node1["network_mode"]) == ("discovered", "infiniband")
    assert (node2["status"], node2["network_mode"]) == ("refused", "mixed")
    assert node2["message"] == REFUSAL_ROLES and REFUSAL_ROLES in node2["errors"]
    reasons = "\n".join(node2["network_mode_reasons"])
    assert "ib0: ib_ipoib (IPoIB on mlx4_0 port 1) -> infiniband" in reasons
    assert "enp5s0d1: mlx4_en on mlx4_0 port 2 with Ethernet link layer (RoCE) -> ethernet" in reasons


def test_mixed_node_is_refused_even_if_no_role_uses_roce(lab, sm_started, tmp_path):
    """The node-level rule, not only the role allocation: with no role on the RoCE port, still refused."""
    assert sm_started["active"]
    rules = {"storage": None, "private": None, "public": None}
    cp, model = discover(lab, tmp_path, discovery_network_rules=rules)
    assert cp.returncode != 0
    assert recap(cp, "node2")["failed"] == 1 and recap(cp, "node1")["failed"] == 0
    node2 = node_of(model, "node2")
    assert {role: c["interface"] for role, c in node2["networks"].items()} == {"management": "eth0", "rdma": "ib0"}
    assert (node2["status"], node2["message"]) == ("refused", REFUSAL_NODE)


def test_mixed_node_is_accepted_when_allowed(lab, sm_started, tmp_path):
    assert sm_started["active"]
    cp, model = discover(lab, tmp_path, discovery_allow_mixed=True)
    assert cp.returncode == 0, cp.stdout[-4000:] + cp.stderr[-2000:]
    assert "2 node(s): 2 discovered, 0 refused, 0 failed, 0 unreachable" in cp.stdout
    assert model["allow_mixed"] is True
    node1, node2 = node_of(model, "node1"), node_of(model, "node2")
    assert (node1["status"], node1["network_mode"]) == ("discovered", "infiniband")
    assert (node2["status"], node2["network_mode"]) == ("discovered", "mixed")
    assert REFUSAL_ROLES + " (accepted: mixed nodes are allowed)" in node2["warnings"]
    interfaces = {i["name"]: i for i in node2["interfaces"]}
    ib0, roce = interfaces["ib0"], interfaces["enp5s0d1"]
    assert (ib0["kind"], ib0["driver"], ib0["network_mode"]) == ("ipoib", "ib_ipoib", "infiniband")
    assert (roce["kind"], roce["driver"], roce["network_mode"]) == ("roce", "mlx4_en", "ethernet")
    assert ib0["bus_info"] == roce["bus_info"] == "0000:05:00.0"
    assert ib0["ib"]["state"] == "ACTIVE" and ib0["ib"]["lid"] and ib0["ib"]["sm_lid"] == 1
    assert roce["ib"]["link_layer"] == "Ethernet" and roce["ib"]["port"] == 2
    assert node2["sm_present"] is True
    assert {role: c["interface"] for role, c in node2["networks"].items()} == {
        "management": "eth0", "storage": "enp5s0d1", "private": "enp5s0d1", "public": "enp5s0d1", "rdma": "ib0"}
