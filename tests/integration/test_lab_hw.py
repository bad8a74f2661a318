"""The lab's hardware half on a real lab (root): FUSE sysfs profiles, kernel-like writes, the ethtool shim,
ibsim + OpenSM with port states that follow the simulated fabric.

    sudo .venv/bin/python -m pytest -q tests/integration/test_lab_hw.py
"""
import json
import os
import sys
import time

import pytest

from conftest import REPO, fabric, wait_for  # tests/integration/conftest.py

LAB_NAME = "hw"
PROFILES = ["cx3-ipoib", "cx5-ib-sriov", "cx3-eipoib"]
PORT = "/sys/class/infiniband/mlx4_0/ports/1"

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (namespaces, FUSE mounts)")


@pytest.fixture(scope="module")
def lab(lab_factory):
    return lab_factory(LAB_NAME, nodes=3, profiles=PROFILES, ovs=False)


def sh(lab, node, script, timeout=60):
    return lab.exec(node, ["bash", "-c", script], timeout=timeout)


def port_attrs(lab, node, port=PORT):
    cp = sh(lab, node, f"cat {port}/state {port}/phys_state {port}/lid {port}/sm_lid")
    return cp.stdout.split("\n")


def test_profile_view_at_sys(lab):
    sys.path.insert(0, str(REPO / "lab"))
    from hw import profile as hwprofile  # pylint: disable=import-outside-toplevel
    guid = hwprofile.links(hwprofile.load_profile("cx3-ipoib"), 1)["hcas"][0]["node_guid"]
    cp = sh(lab, "node1", "cat /sys/class/infiniband/mlx4_0/node_guid /sys/class/net/ib0/type "
                          "/sys/class/net/ib0/addr_len; readlink /sys/class/net/ib0; ls /sys/class/net; "
                          "cat /sys/class/net/ib0/device/vendor; mount | grep ' /sys '")
    out = cp.stdout.splitlines()
    assert out[0] == guid and out[1] == "32" and out[2] == "20", cp.stdout + cp.stderr
    assert out[3] == "../../devices/pci0000:80/0000:80:02.2/0000:82:00.0/net/ib0"
    assert {"eth0", "ib0", "lo"} <= set(out[4:]) and "0x15b3" in out
    assert "fuse" in cp.stdout
    cp = sh(lab, "node3", "cat /sys/class/net/eth_ipoib_interfaces")
    assert cp.stdout == "eth1 over IB port: ib0\neth2 over IB port: ib1\n"


def test_sriov_numvfs_like_the_kernel(lab):
    script = """P=/sys/class/net/ib0/device/sriov_numvfs
    cat /sys/class/net/ib0/device/sriov_totalvfs
    echo 8 > $P && echo ok-0-8
    echo 4 > $P || echo refused-8-4
    echo 0 > $P && echo 4 > $P && echo ok-0-4
    echo 32 > $P || echo refused-32
    ls /sys/class/net/ib0/device | grep -c virtfn
    readlink /sys/class/net/ib0/device/virtfn3/physfn
    cat /sys/bus/pci/devices/0000:5e:00.4/device
    """
    cp = sh(lab, "node2", script)
    out = cp.stdout.splitlines()
    assert out[:2] == ["16", "ok-0-8"], cp.stdout + cp.stderr
    assert "Device or resource busy" in cp.stderr and "refused-8-4" in out
    assert "ok-0-4" in out and "refused-32" in out and "Numerical result out of range" in cp.stderr
    assert out[-3:] == ["4", "../0000:5e:00.0", "0x1018"]
    sh(lab, "node2", "echo 0 > /sys/class/net/ib0/device/sriov_numvfs")


def test_create_child_makes_pkey_interface(lab):
    cp = sh(lab, "node1", "echo 0x8002 > /sys/class/net/ib0/create_child; cat /sys/class/net/ib0.8002/pkey "
                          "/sys/class/net/ib0.8002/parent; ip -o link show ib0.8002; "
                          "echo 0x8002 > /sys/class/net/ib0/create_child")
    out = cp.stdout.splitlines()
    assert out[:2] == ["0x8002", "ib0"], cp.stdout + cp.stderr
    assert "ib0.8002@ib0" in out[2]
    assert "Name not unique on network" in cp.stderr
    cp = sh(lab, "node1", "ip addr add 192.0.2.1/24 dev ib0.8002 && echo addr-ok; "
                          "echo 0x8002 > /sys/class/net/ib0/delete_child; ls /sys/class/net; "
                          "ip link show ib0.8002 2>&1 | head -1")
    assert "addr-ok" in cp.stdout and "ib0.8002\n" not in cp.stdout.split("lo\n")[0]
    assert "does not exist" in cp.stdout


def test_ethtool_answers_profile_driver(lab):
    cp = sh(lab, "node1", "ethtool -i ib0")
    assert "driver: ib_ipoib" in cp.stdout and "bus-info: 0000:82:00.0" in cp.stdout, cp.stdout + cp.stderr
    cp = sh(lab, "node2", "ethtool -i ib0")
    assert "driver: mlx5_core[ib_ipoib]" in cp.stdout and "bus-info: 0000:5e:00.0" in cp.stdout
    cp = sh(lab, "node3", "ethtool -i eth1")
    assert "driver: eth_ipoib" in cp.stdout and "bus-info: ib0" in cp.stdout
    cp = sh(lab, "node1", "python3 -c 'import socket; print(socket.if_nametoindex(\"lo\"))'")
    assert cp.stdout.strip() == "1"       # everything else passes through the shim


def test_opensm_master_and_sminfo_from_a_node(lab):
    cp = fabric(lab, "status")
    assert cp.returncode == 0 and "MASTER" in cp.stdout, cp.stdout + cp.stderr
    cp = sh(lab, "node1", "sminfo")
    assert "SMINFO_MASTER" in cp.stdout, cp.stdout + cp.stderr
    cp = sh(lab, "node2", "ibstat")
    assert "State: Active" in cp.stdout and "Node GUID: 0x98039b0300456d10" in cp.stdout, cp.stdout


def test_ports_active_with_sm_lid_after_sweep(lab):
    def active():
        for node, port in (("node1", PORT), ("node2", "/sys/class/infiniband/mlx5_0/ports/1"),
                           ("node3", PORT), ("node3", "/sys/class/infiniband/mlx4_0/ports/2")):
            st, phys, lid, sm_lid = port_attrs(lab, node, port)[:4]
            if st != "4: ACTIVE" or phys != "5: LinkUp" or sm_lid == "0x0" or lid == "0x0":
                return False
        return True
    assert wait_for(active, 20), port_attrs(lab, "node1")


def test_unlink_takes_one_node_down(lab):
    t0 = time.monotonic()
    assert fabric(lab, "unlink", "node1").returncode == 0
    assert wait_for(lambda: port_attrs(lab, "node1")[0] != "4: ACTIVE", 10)
    print(f"unlink seen in node1 sysfs after {time.monotonic() - t0:.1f} s")
    assert port_attrs(lab, "node1")[:2] == ["1: DOWN", "2: Polling"]
    assert port_attrs(lab, "node2", "/sys/class/infiniband/mlx5_0/ports/1")[0] == "4: ACTIVE"
    assert fabric(lab, "relink", "node1").returncode == 0
    assert wait_for(lambda: port_attrs(lab, "node1")[0] == "4: ACTIVE", 20)


def test_no_sm_means_init_then_active_after_sm_start(lab):
    cp = fabric(lab, "sm-stop", "--reset")
    assert cp.returncode == 0, cp.stderr
    assert wait_for(lambda: port_attrs(lab, "node1")[0] == "2: INIT", 15), port_attrs(lab, "node1")
    assert port_attrs(lab, "node1")[3] == "0x0"
    cp = sh(lab, "node1", "timeout 20 sminfo -t 300")
    assert cp.returncode != 0
    t0 = time.monotonic()
    cp = fabric(lab, "sm-start")
    assert cp.returncode == 0 and "SMINFO_MASTER" in cp.stdout, cp.stdout + cp.stderr
    assert wait_for(lambda: port_attrs(lab, "node1")[0] == "4: ACTIVE", 20)
    print(f"sm-start -> node1 ACTIVE in {time.monotonic() - t0:.1f} s")
    state = json.loads((lab.dir / "nodes/node1/hw/fabric-state.json").read_text())
    assert state["ports"]["mlx4_0/1"]["sm_lid"] != "0x0"
