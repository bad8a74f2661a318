# -*- coding: utf-8 -*-
"""ib_facts on every lab hardware profile (lab/profiles/*.yml expanded by the lab's hw package).

The lab answers the ethtool ioctl from the profile (an LD_PRELOAD shim), so on a lab node ib_facts sees
``driver_source: ethtool``. Reading the same tree as a snapshot must infer exactly the same driver and
bus_info: live and snapshot agree.
"""

from __future__ import annotations

import json
import os
import sys

import pytest

from ansible_collections.hpcnet.infiniband.plugins.module_utils import _facts
from ansible_collections.hpcnet.infiniband.plugins.module_utils._host import Host

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", "..", "..", ".."))
LAB = os.path.join(REPO, "lab")

if LAB not in sys.path:
    sys.path.insert(0, LAB)
hw_profile = pytest.importorskip("hw.profile")

PROFILES = hw_profile.list_profiles() if os.path.isdir(hw_profile.PROFILES_DIR) else []

# What each profile must look like to ib_facts (known profiles; new ones still get the generic checks).
EXPECTED_MODE = {
    "cx3-ipoib": "infiniband",
    "qib-ipoib": "infiniband",
    "cx3-eipoib": "infiniband",
    "cx5-ib-sriov": "infiniband",
    "cx5-roce": "ethernet",
    "plain-ethernet": "none",
}


def expand(name, tmp_path, index=1):
    hw = hw_profile.expand(hw_profile.load_profile(name), index, "node%d" % index)
    root = tmp_path / ("%s-%d" % (name, index))
    hw.tree.write_out(str(root))
    return hw, str(root)


@pytest.mark.parametrize("name", PROFILES)
def test_profile_snapshot(name, tmp_path):
    hw, root = expand(name, tmp_path)
    facts = _facts.gather(Host(sysfs_root=root, live=False))
    assert json.loads(json.dumps(facts)) == facts
    assert facts["warnings"] == []
    if name in EXPECTED_MODE:
        assert facts["network_mode"] == EXPECTED_MODE[name], facts["network_mode_reasons"]
    for netdev, answer in hw.ethtool.items():
        nic = facts["nics"][netdev]
        assert (nic["driver"], nic["bus_info"]) == (answer.get("driver"), answer.get("bus_info")), netdev
        assert nic["driver_source"] in ("sysfs", "inferred")
    for info in hw.netdevs.values():
        assert info  # every profile netdev is reported:
    assert set(hw.netdevs) <= set(facts["nics"])
    for key, port in hw.ports.items():
        device, number = key.split("/")
        data = facts["devices"][device]["ports"][number]
        assert data["link_layer"] == port["link_layer"]
        assert data["lid"] == int(port["lid"], 16)
        if port["link_layer"] == "InfiniBand":
            assert key in facts["subnet_manager"]


@pytest.mark.parametrize("name", PROFILES)
def test_profile_live_agrees(name, tmp_path):
    """The same tree with the shim's ethtool answers: source ethtool, same driver and bus_info."""
    hw, root = expand(name, tmp_path, index=2)
    snap = _facts.gather(Host(sysfs_root=root, live=False))
    live = _facts.gather(Host(sysfs_root=root, live=True, ethtool=hw.ethtool.get))
    assert live["source"] == "live"
    for netdev in hw.ethtool:
        assert live["nics"][netdev]["driver_source"] == "ethtool"
        for key in ("driver", "bus_info", "kind", "network_mode"):
            assert live["nics"][netdev][key] == snap["nics"][netdev][key], (netdev, key)
    assert live["network_mode"] == snap["network_mode"]


def _model(hw):
    sysfs = pytest.importorskip("hw.sysfs")
    return sysfs.SysfsModel(hw)


def test_profile_ipoib_child_created_by_lab(tmp_path):
    if "cx3-ipoib" not in PROFILES:
        pytest.skip("profile cx3-ipoib not present")
    hw = hw_profile.expand(hw_profile.load_profile("cx3-ipoib"), 1, "node1")
    model = _model(hw)
    model.write("class/net/ib0/create_child", "0x8002\n")
    root = tmp_path / "sys"
    hw.tree.write_out(str(root))
    facts = _facts.gather(Host(sysfs_root=str(root), live=False))
    child = facts["nics"]["ib0.8002"]
    assert child["kind"] == "ipoib_child"
    assert child["ipoib"]["parent"] == "ib0" and child["ipoib"]["pkey"] == "0x8002"
    assert child["driver"] == "ib_ipoib" and child["bus_info"] == hw.ethtool["ib0"]["bus_info"]
    assert facts["nics"]["ib0"]["ipoib"]["children"] == ["ib0.8002"]


def test_profile_sriov_vfs_enabled_by_lab(tmp_path):
    if "cx5-ib-sriov" not in PROFILES:
        pytest.skip("profile cx5-ib-sriov not present")
    hw = hw_profile.expand(hw_profile.load_profile("cx5-ib-sriov"), 1, "node1")
    model = _model(hw)
    address, pf = next(iter(hw.pfs.items()))
    model.write(pf["path"] + "/sriov_numvfs", "4\n")
    root = tmp_path / "sys"
    hw.tree.write_out(str(root))
    # sriov_numvfs is computed by the lab's model on read; write_out stores the static default.
    (root / pf["path"] / "sriov_numvfs").write_bytes(model.read(pf["path"] + "/sriov_numvfs"))
    facts = _facts.gather(Host(sysfs_root=str(root), live=False))
    pf_nic = [n for n in facts["nics"].values() if n["pci_address"] == address and n["sriov"]]
    assert pf_nic, "no netdev on the SR-IOV PF %s" % address
    sriov = pf_nic[0]["sriov"]
    assert sriov["numvfs"] == 4 and sriov["totalvfs"] == int(pf["sriov"]["totalvfs"])
    assert [vf["index"] for vf in sriov["vfs"]] == [0, 1, 2, 3]
    assert all(vf["pci_address"] for vf in sriov["vfs"])
