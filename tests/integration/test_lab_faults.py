"""Breaking the lab on purpose (docs/lab.md, "Breaking the lab on purpose"), on a real lab (root):
runtime hardware changes (`labctl hw set/get/reset`), port state driving the IPoIB data plane
(`labctl fabric unlink/relink`), and the plain kernel faults (interface down, wrong MTU).

    sudo .venv/bin/python -m pytest -q -p no:cacheprovider tests/integration/test_lab_faults.py
"""
import json
import os
import time

import pytest

from conftest import wait_for  # tests/integration/conftest.py

LAB_NAME = "flt"
PROFILES = ["cx3-ipoib", "cx5-ib-sriov", "cx3-eipoib"]
PORT1 = "class/infiniband/mlx4_0/ports/1"        # node1, node3
PORT2 = "class/infiniband/mlx5_0/ports/1"        # node2

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (namespaces, FUSE mounts)")


@pytest.fixture(scope="module")
def lab(lab_factory):
    return lab_factory(LAB_NAME, nodes=3, profiles=PROFILES, ovs=False)


def sysread(lab, node, *paths):
    cp = lab.exec(node, ["cat", *[f"/sys/{p}" for p in paths]])
    assert cp.returncode == 0, cp.stderr
    return cp.stdout.splitlines()


def ping(lab, src, address):
    return lab.exec(src, ["ping", "-c", "1", "-W", "1", address], timeout=30).returncode == 0


def test_hw_set_pkey_then_reset(lab):
    cp = lab.labctl("hw", "set", "node1", f"{PORT1}/pkeys/0", "0x0000")
    assert cp.returncode == 0 and "was 0xffff" in cp.stdout, cp.stdout + cp.stderr
    assert sysread(lab, "node1", f"{PORT1}/pkeys/0") == ["0x0000"]
    ssh = lab.ssh("node1", f"cat /sys/{PORT1}/pkeys/0")          # what Ansible sees
    assert ssh.stdout == "0x0000\n", ssh.stdout + ssh.stderr
    assert sysread(lab, "node3", f"{PORT1}/pkeys/0") == ["0xffff"]   # other nodes untouched
    cp = lab.labctl("hw", "get", "node1")
    assert cp.stdout == f"{PORT1}/pkeys/0\t0x0000\n"
    cp = lab.labctl("hw", "get", "node1", f"/sys/{PORT1}/pkeys/0")
    assert cp.stdout == "0x0000\n"
    assert lab.labctl("hw", "reset", "node1", f"{PORT1}/pkeys/0").returncode == 0
    assert sysread(lab, "node1", f"{PORT1}/pkeys/0") == ["0xffff"]


def test_hw_set_duplicate_port_guid(lab):
    gid1, addr1 = sysread(lab, "node1", f"{PORT1}/gids/0", "class/net/ib0/address")
    cp = lab.labctl("hw", "set", "node2", f"{PORT2}/gids/0", gid1)
    assert cp.returncode == 0, cp.stderr
    gid2, addr2 = sysread(lab, "node2", f"{PORT2}/gids/0", "class/net/ib0/address")
    assert gid2 == gid1
    assert addr2[12:] == addr1[12:]                 # IPoIB address: same GID part, own flags/QPN
    cp = lab.labctl("hw", "set", "node2", "class/infiniband/mlx5_0/node_guid", "0002:c903:00f9:bfa0")
    assert cp.returncode == 0 and sysread(lab, "node2", "class/infiniband/mlx5_0/node_guid") == \
        ["0002:c903:00f9:bfa0"]
    assert lab.labctl("hw", "reset", "node2").returncode == 0
    assert sysread(lab, "node2", f"{PORT2}/gids/0")[0] != gid1
    assert not json.loads((lab.dir / "nodes/node2/hw/overrides.json").read_text())["attributes"]


def test_hw_set_refuses_what_the_view_lacks(lab):
    cp = lab.labctl("hw", "set", "node1", "class/net/ib0/no_such_attr", "1")
    assert cp.returncode != 0 and "No such file" in cp.stderr
    cp = lab.labctl("hw", "set", "node1", "class/../kernel/x", "1")
    assert cp.returncode == 2 and "bad sysfs path" in cp.stderr
    assert lab.labctl("hw", "get", "node1").stdout == ""


def test_unlink_drops_ipoib_carrier_and_traffic(lab):
    node1 = lab.node("node1")["ib_address"]
    assert wait_for(lambda: ping(lab, "node2", node1), 20), "ib0 traffic node2 -> node1 before unlink"
    t0 = time.monotonic()
    assert lab.labctl("fabric", "unlink", "node1").returncode == 0
    try:
        assert wait_for(lambda: sysread(lab, "node1", "class/net/ib0/carrier") == ["0"], 15)
        print(f"unlink -> node1 ib0 carrier 0 after {time.monotonic() - t0:.1f} s")
        state, phys = sysread(lab, "node1", f"{PORT1}/state", f"{PORT1}/phys_state")
        assert (state, phys) == ("1: DOWN", "2: Polling")
        assert sysread(lab, "node1", "class/net/ib0/operstate") == ["down"]
        assert int(sysread(lab, "node1", "class/net/ib0/flags")[0], 16) & 1   # still administratively up
        assert not ping(lab, "node2", node1)
        assert sysread(lab, "node2", "class/net/ib0/carrier") == ["1"]
        status = lab.labctl("fabric", "status").stdout
        assert "node1: mlx4_0/1 DOWN" in status and "; no carrier: ib0" in status, status
    finally:
        t0 = time.monotonic()
        assert lab.labctl("fabric", "relink", "node1").returncode == 0
    assert wait_for(lambda: sysread(lab, "node1", "class/net/ib0/carrier", f"{PORT1}/state")
                    == ["1", "4: ACTIVE"], 20)
    print(f"relink -> node1 ib0 carrier 1 after {time.monotonic() - t0:.1f} s")
    assert sysread(lab, "node1", "class/net/ib0/operstate") == ["up"]
    assert wait_for(lambda: ping(lab, "node2", node1), 10)


def test_kernel_faults_interface_down_and_wrong_mtu(lab):
    """Plain kernel state of the node's links: the view shows it as is (no lab command needed)."""
    try:
        assert lab.exec("node3", ["ip", "link", "set", "ib0", "mtu", "1500"]).returncode == 0
        assert sysread(lab, "node3", "class/net/ib0/mtu") == ["1500"]
        assert lab.exec("node3", ["ip", "link", "set", "ib1", "down"]).returncode == 0
        operstate, flags = sysread(lab, "node3", "class/net/ib1/operstate", "class/net/ib1/flags")
        assert operstate == "down" and not int(flags, 16) & 1          # IFF_UP cleared
    finally:
        lab.exec("node3", ["ip", "link", "set", "ib0", "mtu", "2044"])
        lab.exec("node3", ["ip", "link", "set", "ib1", "up"])
    assert sysread(lab, "node3", "class/net/ib0/mtu") == ["2044"]


def test_sync_round_is_cheap(lab):
    beat = json.loads((lab.dir / "hw-fabric/sync.json").read_text())
    assert beat["ports"] == 4 and beat["seconds"] < 3.0, beat
    assert set(beat["carrier"].values()) == {"up"}


def test_sm_stop_reset_leaves_ipoib_without_carrier_until_sm_start(lab):
    cp = lab.labctl("sm", "stop", "--reset")
    assert cp.returncode == 0 and "reset to INIT" in cp.stdout, cp.stdout + cp.stderr
    try:
        assert wait_for(lambda: sysread(lab, "node1", f"{PORT1}/state", "class/net/ib0/carrier")
                        == ["2: INIT", "0"], 20), sysread(lab, "node1", f"{PORT1}/state", "class/net/ib0/carrier")
        assert sysread(lab, "node1", f"{PORT1}/sm_lid") == ["0x0"]
        assert not ping(lab, "node2", lab.node("node1")["ib_address"])
    finally:
        cp = lab.labctl("sm", "start")
    assert cp.returncode == 0 and "SMINFO_MASTER" in cp.stdout, cp.stdout + cp.stderr
    assert wait_for(lambda: sysread(lab, "node1", f"{PORT1}/state", "class/net/ib0/carrier")
                    == ["4: ACTIVE", "1"], 20)
    assert wait_for(lambda: ping(lab, "node2", lab.node("node1")["ib_address"]), 10)
