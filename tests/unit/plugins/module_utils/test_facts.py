# -*- coding: utf-8 -*-
"""ib_facts logic (_facts.gather and helpers) on real captures and hand-made sysfs trees."""

from __future__ import annotations

import json
import os
import shutil

import pytest

from ansible_collections.hpcnet.infiniband.plugins.module_utils import _facts, _ids
from ansible_collections.hpcnet.infiniband.plugins.module_utils._host import Host
from testlib import count_opens
from testlib import sysfs_builder as builder


def snapshot(root):
    return Host(sysfs_root=str(root), live=False)


def assert_fields(record, **expected):
    """``record`` holds these values (pytest shows every mismatch at once)."""
    assert {key: record[key] for key in expected} == expected


def assert_serialisable(facts):
    # ansible_facts must be plain JSON: ints, strings, lists, dicts, None (and bools).
    assert json.loads(json.dumps(facts)) == facts


# ---------------------------------------------------------------------------------------------------
# Real captures (hwloc-gather-topology tarballs): the mlx4_capture and qib_capture fixtures, conftest.py
# ---------------------------------------------------------------------------------------------------
def test_capture_mlx4_device_and_port(mlx4_capture):
    facts = _facts.gather(snapshot(mlx4_capture))
    assert_serialisable(facts)
    assert facts["schema"] == 1
    assert facts["source"] == "snapshot"
    dev = facts["devices"]["mlx4_0"]
    assert_fields(dev, node_guid="0002:c903:00f9:bfa0", sys_image_guid="0002:c903:00f9:bfa3", fw_ver="2.11.500",
                  board_id="DEL0A30000019", hca_type="MT4099", node_type="CA", pci_address="0000:82:00.0",
                  model="ConnectX-3", driver="mlx4_core", numa_node=1, netdevs=["ib0"])
    assert_fields(dev["ports"]["1"], port=1, link_layer="InfiniBand", state="ACTIVE", state_code=4,
                  phys_state="LinkUp", phys_state_code=5, lid=0x3A4, sm_lid=1, sm_sl=0, rate="56 Gb/sec (4X FDR)",
                  rate_gbps=56, gid0="fe80:0000:0000:0000:0002:c903:00f9:bfa1", port_guid="0002:c903:00f9:bfa1",
                  pkeys=["0xffff"])
    # scif0's link points to a directory the capture did not copy: reported, not fatal.
    assert facts["devices"]["scif0"]["ports"] == {}
    assert any("scif0" in w for w in facts["warnings"])


def test_capture_mlx4_nics(mlx4_capture):
    facts = _facts.gather(snapshot(mlx4_capture))
    ib0 = facts["nics"]["ib0"]
    assert_fields(ib0, kind="ipoib", link_type="infiniband", driver="ib_ipoib", driver_source="inferred",
                  bus_info="0000:82:00.0", pci_driver="mlx4_core", vendor_id="0x15b3", device_id="0x1003",
                  model="ConnectX-3", mac="80:00:00:48:fe:80:00:00:00:00:00:00:00:02:c9:03:00:f9:bf:a1", mtu=2044,
                  operstate="up", network_mode="infiniband")
    assert ib0["carrier"] is True
    assert ib0["ib"]["device"] == "mlx4_0" and ib0["ib"]["port"] == 1
    assert ib0["ib"]["lid"] == 932
    assert ib0["ipoib"]["mode"] == "connected"
    assert ib0["ipoib"]["pkey"] == "0xffff"
    eth0 = facts["nics"]["eth0"]
    assert (eth0["kind"], eth0["driver"], eth0["driver_source"]) == ("ethernet", "igb", "sysfs")
    assert eth0["bus_info"] == "0000:02:00.0"
    assert eth0["speed_mbps"] == 1000
    assert eth0["network_mode"] is None
    assert facts["nics"]["lo"]["kind"] == "loopback"
    for name in ("br0", "eth0.1015", "mic0"):
        assert facts["nics"][name]["kind"] == "virtual"
    assert facts["network_mode"] == "infiniband"
    assert facts["network_mode_interfaces"] == {"infiniband": ["ib0"], "ethernet": []}
    sm = facts["subnet_manager"]["mlx4_0/1"]
    assert sm["sm_present"] is True and sm["sm_local"] is False
    assert sm["lid"] == 932 and sm["sm_lid"] == 1


def test_capture_qib(qib_capture):
    facts = _facts.gather(snapshot(qib_capture))
    assert_serialisable(facts)
    assert facts["warnings"] == []
    dev = facts["devices"]["qib0"]
    assert_fields(dev, node_guid="0011:7500:0077:cfc8", board_id="InfiniPath_QLE7340", hw_rev="2", driver="ib_qib",
                  pci_address="0000:43:00.0")
    assert dev["fw_ver"] is None  # qib has no fw_ver attribute
    assert dev["model"].startswith("TrueScale QLE7340")
    port = dev["ports"]["1"]
    assert (port["lid"], port["sm_lid"], port["rate"], port["rate_gbps"]) == (0x12A, 1, "40 Gb/sec (4X QDR)", 40)
    assert port["port_guid"] == "0011:7500:0077:cfc8"
    ib0 = facts["nics"]["ib0"]
    assert (ib0["driver"], ib0["bus_info"], ib0["driver_source"]) == ("ib_ipoib", "0000:43:00.0", "inferred")
    assert ib0["ib"]["device"] == "qib0"
    assert ib0["numa_node"] == 2
    assert [facts["nics"]["eth%d" % i]["driver"] for i in range(4)] == ["bnx2"] * 4
    assert facts["network_mode"] == "infiniband"


def test_capture_read_helpers(mlx4_capture):
    host = snapshot(mlx4_capture)
    port = _facts.read_port(host, "mlx4_0", 1)
    assert port["lid"] == 932 and port["state"] == "ACTIVE"
    assert _facts.read_port(host, "mlx4_0", 2) is None
    assert _facts.read_port(host, "../etc", 1) is None
    dev = _facts.read_device(host, "mlx4_0")
    assert dev["fw_ver"] == "2.11.500" and "1" in dev["ports"]
    assert _facts.read_device(host, "nope0") is None
    nic = _facts.read_netdev(host, "ib0")
    assert nic["driver"] == "ib_ipoib" and nic["ib"]["port"] == 1
    assert _facts.read_netdev(host, "nope0") is None
    assert _facts.read_netdev(host, "../../x") is None


def test_capture_interfaces_filter(qib_capture):
    facts = _facts.gather(snapshot(qib_capture), interfaces=["ib0"])
    assert list(facts["nics"]) == ["ib0"]
    assert "qib0" in facts["devices"]
    with pytest.raises(_facts.FactsError) as err:
        _facts.gather(snapshot(qib_capture), interfaces=["ib0", "ib9"])
    assert "ib9" in str(err.value) and "eth0, eth1, eth2, eth3, ib0, lo" in str(err.value)


# ---------------------------------------------------------------------------------------------------
# Hand-made trees
# ---------------------------------------------------------------------------------------------------
def test_dual_port_mlx4_ib_and_ethernet_is_mixed(tmp_path):
    builder.cx3_dual_port_mixed(tmp_path / "sys")
    facts = _facts.gather(snapshot(tmp_path / "sys"))
    assert_serialisable(facts)
    ib0, eth2 = facts["nics"]["ib0"], facts["nics"]["eth2"]
    assert (ib0["kind"], ib0["ib"]["port"], ib0["ib"]["link_layer"]) == ("ipoib", 1, "InfiniBand")
    assert (eth2["kind"], eth2["ib"]["port"], eth2["ib"]["link_layer"]) == ("roce", 2, "Ethernet")
    assert (eth2["driver"], eth2["bus_info"], eth2["driver_source"]) == ("mlx4_en", "0000:82:00.0", "inferred")
    assert ib0["driver"] == "ib_ipoib"
    assert facts["network_mode"] == "mixed"
    assert facts["network_mode_interfaces"] == {"infiniband": ["ib0"], "ethernet": ["eth2"]}
    assert any("eth2" in r and "mlx4_en" in r for r in facts["network_mode_reasons"])
    assert any("ib0" in r and "ib_ipoib" in r for r in facts["network_mode_reasons"])
    # Only IB ports are in subnet_manager; the RoCE port is not.
    assert list(facts["subnet_manager"]) == ["mlx4_0/1"]
    assert facts["devices"]["mlx4_0"]["ports"]["1"]["pkeys"] == ["0xffff", "0x8002"]
    assert facts["devices"]["mlx4_0"]["ports"]["2"]["netdevs"] == ["eth2"]
    # Restricting to the IB interface makes the node infiniband.
    assert _facts.gather(snapshot(tmp_path / "sys"), interfaces=["ib0"])["network_mode"] == "infiniband"


def test_two_hcas_child_and_enhanced_ipoib(tmp_path):
    builder.two_hcas_with_child(tmp_path / "sys")
    facts = _facts.gather(snapshot(tmp_path / "sys"))
    nics = facts["nics"]
    assert sorted(facts["devices"]) == ["mlx4_0", "mlx5_0"]
    child = nics["ib0.8002"]
    assert child["kind"] == "ipoib_child"
    assert child["ipoib"] == {"mode": "datagram", "pkey": "0x8002", "parent": "ib0", "umcast": False,
                              "children": []}
    assert child["ib"]["device"] == "mlx4_0"
    assert nics["ib0"]["ipoib"]["children"] == ["ib0.8002"]
    assert (nics["ib0"]["driver"], nics["ib0"]["bus_info"]) == ("ib_ipoib", "0000:82:00.0")
    # mlx5 offloaded IPoIB names itself mlx5_core[ib_ipoib] in ethtool.
    assert (nics["ib1"]["driver"], nics["ib1"]["bus_info"]) == ("mlx5_core[ib_ipoib]", "0000:05:00.0")
    assert nics["ib1"]["model"] == "ConnectX-5"
    assert facts["devices"]["mlx4_0"]["ports"]["1"]["pkeys"] == ["0xffff", "0x8002", "0x7fff"]
    assert sorted(facts["devices"]["mlx4_0"]["netdevs"]) == ["ib0", "ib0.8002"]
    sm = facts["subnet_manager"]
    assert sm["mlx4_0/1"]["sm_local"] is True and sm["mlx4_0/1"]["sm_present"] is True
    assert sm["mlx5_0/1"]["sm_local"] is False and sm["mlx5_0/1"]["sm_present"] is True
    assert facts["network_mode"] == "infiniband"
    assert nics["eth0"]["driver"] == "bnx2"


def test_sriov_pf_with_vfs_roce(tmp_path):
    builder.sriov_pf_with_vfs(tmp_path / "sys", numvfs=4, totalvfs=8)
    facts = _facts.gather(snapshot(tmp_path / "sys"))
    pf = facts["nics"]["enp5s0f0"]
    assert pf["kind"] == "roce"
    assert (pf["driver"], pf["driver_source"]) == ("mlx5_core", "sysfs")
    assert pf["sriov"]["totalvfs"] == 8 and pf["sriov"]["numvfs"] == 4
    assert [vf["index"] for vf in pf["sriov"]["vfs"]] == [0, 1, 2, 3]
    assert pf["sriov"]["vfs"][0] == {"index": 0, "pci_address": "0000:05:00.2", "netdev": "enp5s0f0v0"}
    vf = facts["nics"]["enp5s0f0v0"]
    assert vf["kind"] == "vf" and vf["is_vf"] is True
    assert vf["physfn"] == "0000:05:00.0"
    assert vf["model"] == "ConnectX-5 Virtual Function"
    assert vf["ib"]["device"] == "mlx5_1" and vf["ib"]["link_layer"] == "Ethernet"
    assert vf["network_mode"] == "ethernet"
    assert facts["network_mode"] == "ethernet"
    assert facts["subnet_manager"] == {}


def test_sriov_ib_vfs(tmp_path):
    builder.sriov_pf_with_vfs(tmp_path / "sys", numvfs=2, totalvfs=8, link_layer="InfiniBand")
    facts = _facts.gather(snapshot(tmp_path / "sys"))
    assert facts["nics"]["ib0"]["sriov"]["vfs"][1]["netdev"] == "ib2"
    ib1 = facts["nics"]["ib1"]
    assert ib1["kind"] == "ipoib" and ib1["is_vf"] and ib1["physfn"] == "0000:05:00.0"
    assert ib1["driver"] == "mlx5_core[ib_ipoib]"
    assert len(facts["subnet_manager"]) == 3
    assert facts["network_mode"] == "infiniband"


def test_eipoib(tmp_path):
    builder.eipoib_host(tmp_path / "sys")
    facts = _facts.gather(snapshot(tmp_path / "sys"))
    eth2 = facts["nics"]["eth2"]
    assert eth2["kind"] == "eipoib"
    assert (eth2["driver"], eth2["bus_info"], eth2["driver_source"]) == ("eth_ipoib", "ib0", "inferred")
    assert eth2["eipoib"] == {"ipoib_interface": "ib0", "slaves": ["ib0.1"]}
    assert eth2["ib"]["device"] == "mlx4_0"
    assert eth2["network_mode"] == "infiniband"
    assert facts["nics"]["ib0.1"]["kind"] == "ipoib_child"
    br0 = facts["nics"]["br0"]
    assert (br0["kind"], br0["driver"], br0["bus_info"], br0["driver_source"]) == (
        "virtual", "bridge", "N/A", "inferred")
    assert "eth_ipoib_interfaces" not in facts["nics"]
    assert facts["network_mode"] == "infiniband"
    assert any("EIPoIB" in r for r in facts["network_mode_reasons"])


def test_plain_ethernet_is_none(tmp_path):
    b = builder.SysfsBuilder(tmp_path / "sys")
    b.netdev("eth0", b.pci("0000:00:03.0", "0x8086", "0x100e", "e1000"), speed=1000)
    b.netdev("lo", None, type=772)
    facts = _facts.gather(snapshot(tmp_path / "sys"))
    assert facts["network_mode"] == "none"
    assert facts["devices"] == {} and facts["subnet_manager"] == {}
    assert facts["nics"]["eth0"]["driver"] == "e1000"


def test_live_ethtool_wins_over_inference(tmp_path):
    builder.cx3_dual_port_mixed(tmp_path / "sys")
    answers = {"ib0": {"driver": "ib_ipoib", "bus_info": "0000:82:00.0", "version": "1.0.0",
                       "fw_version": "2.11.500"}}
    host = Host(sysfs_root=str(tmp_path / "sys"), live=True, ethtool=answers.get)
    facts = _facts.gather(host)
    assert facts["source"] == "live"
    ib0 = facts["nics"]["ib0"]
    assert (ib0["driver"], ib0["driver_source"], ib0["firmware_version"]) == ("ib_ipoib", "ethtool", "2.11.500")
    # The ioctl said nothing for eth2: inferred from sysfs.
    assert facts["nics"]["eth2"]["driver_source"] == "inferred"


def test_old_kernel_dev_id_selects_port(tmp_path):
    b = builder.SysfsBuilder(tmp_path / "sys")
    hca = b.pci("0000:82:00.0", "0x15b3", "0x1003", "mlx4_core")
    b.ibdev("mlx4_0", hca, ports={1: dict(lid=1), 2: dict(lid=2, port_guid="0002:c903:0001:0002")})
    b.netdev("ib0", hca, type=32, ipoib={}, dev_port=None, dev_id=0)
    b.netdev("ib1", hca, type=32, ipoib={}, dev_port=None, dev_id=1)
    facts = _facts.gather(snapshot(tmp_path / "sys"))
    assert facts["nics"]["ib0"]["ib"]["port"] == 1
    assert facts["nics"]["ib1"]["ib"]["port"] == 2
    assert facts["nics"]["ib1"]["ib"]["lid"] == 2


# ---------------------------------------------------------------------------------------------------
# Robustness: bad roots, missing files, garbage, loops, escapes
# ---------------------------------------------------------------------------------------------------
def test_missing_root(tmp_path):
    with pytest.raises(_facts.FactsError, match="does not exist"):
        _facts.gather(snapshot(tmp_path / "nope"))


def test_not_a_sysfs_tree(tmp_path):
    (tmp_path / "etc").mkdir()
    with pytest.raises(_facts.FactsError, match="not a sysfs tree"):
        _facts.gather(snapshot(tmp_path))


def test_missing_files_give_nulls(tmp_path):
    b = builder.cx3_dual_port_mixed(tmp_path / "sys")
    port = tmp_path / "sys" / "devices/pci0000:00/0000:82:00.0/infiniband/mlx4_0/ports/1"
    for name in ("lid", "rate", "state"):
        os.unlink(port / name)
    shutil.rmtree(port / "pkeys")
    os.unlink(tmp_path / "sys" / "devices/pci0000:00/0000:82:00.0/net/ib0/mtu")
    os.unlink(tmp_path / "sys" / "devices/pci0000:00/0000:82:00.0/infiniband/mlx4_0/fw_ver")
    del b
    facts = _facts.gather(snapshot(tmp_path / "sys"))
    data = facts["devices"]["mlx4_0"]["ports"]["1"]
    assert (data["lid"], data["rate"], data["rate_gbps"], data["state"]) == (None, None, None, None)
    assert data["pkeys"] is None  # no pkeys/ directory: the table is unknown
    assert facts["nics"]["ib0"]["mtu"] is None
    assert facts["devices"]["mlx4_0"]["fw_ver"] is None
    assert facts["subnet_manager"]["mlx4_0/1"]["sm_present"] is False
    assert facts["warnings"] == []


def test_garbage_and_binary_attributes(tmp_path):
    builder.cx3_dual_port_mixed(tmp_path / "sys")
    pci = tmp_path / "sys" / "devices/pci0000:00/0000:82:00.0"
    (pci / "infiniband/mlx4_0/ports/1/lid").write_text("not-a-lid\n")
    (pci / "infiniband/mlx4_0/ports/1/state").write_text("ACTIVE-ish\n")
    (pci / "infiniband/mlx4_0/ports/1/pkeys/5").write_text("0xzzzz\n")
    (pci / "infiniband/mlx4_0/node_guid").write_bytes(b"\x00\xff\xfe\x01garbage")
    (pci / "net/ib0/mtu").write_bytes(b"\x89PNG\r\n\x1a\n")
    (pci / "net/ib0/operstate").write_bytes(b"")
    (pci / "vendor").write_text("Mellanox\n")
    facts = _facts.gather(snapshot(tmp_path / "sys"))
    assert_serialisable(facts)
    port = facts["devices"]["mlx4_0"]["ports"]["1"]
    assert port["lid"] is None and port["state"] is None
    assert port["pkeys"] == ["0xffff", "0x8002"]
    assert facts["devices"]["mlx4_0"]["node_guid"] is None
    assert facts["nics"]["ib0"]["mtu"] is None
    assert facts["nics"]["ib0"]["operstate"] is None
    assert facts["nics"]["ib0"]["vendor_id"] is None and facts["nics"]["ib0"]["model"] is None
    text = "\n".join(facts["warnings"])
    for fragment in ("ports/1/lid", "ports/1/state", "pkeys/5", "mlx4_0/node_guid", "ib0/mtu", "vendor"):
        assert fragment in text


def test_symlink_loops(tmp_path):
    b = builder.cx3_dual_port_mixed(tmp_path / "sys")
    root = tmp_path / "sys"
    # class/net/loop0 -> loop1 -> loop0, and a device link that points to itself.
    os.symlink("loop1", root / "class/net/loop0")
    os.symlink("loop0", root / "class/net/loop1")
    dev = root / "devices/pci0000:00/0000:82:00.0/net/ib0/device"
    os.unlink(dev)
    os.symlink("device", dev)
    os.symlink("selfloop", root / "class/infiniband/selfloop")
    del b
    facts = _facts.gather(snapshot(root))
    assert_serialisable(facts)
    assert facts["nics"]["loop0"]["kind"] is not None
    assert facts["nics"]["loop0"]["mtu"] is None
    assert facts["nics"]["ib0"]["pci_address"] is None
    # Without its device link ib0 is still IPoIB; its port is unknown.
    assert facts["nics"]["ib0"]["kind"] == "ipoib"
    assert facts["devices"]["selfloop"]["ports"] == {}
    text = "\n".join(facts["warnings"])
    assert "class/net/loop0: symlink loop" in text
    assert "class/infiniband/selfloop: symlink loop" in text


def test_links_escaping_root_are_not_followed(tmp_path):
    outside = tmp_path / "outside"
    (outside / "net/evil0").mkdir(parents=True)
    (outside / "net/evil0/mtu").write_text("9000\n")
    (outside / "secret").write_text("0x15b3\n")
    root = tmp_path / "sys"
    b = builder.cx3_dual_port_mixed(root)
    del b
    os.symlink("../../../outside/net/evil0", root / "class/net/evil0")
    os.symlink(str(outside / "net/evil0"), root / "class/net/evil1")
    vendor = root / "devices/pci0000:00/0000:82:00.0/vendor"
    os.unlink(vendor)
    os.symlink("../../../../outside/secret", vendor)
    # A directory on the way to an attribute (ports/1/gids) that is a link leaving the root.
    (outside / "gids").mkdir()
    (outside / "gids/0").write_text("fe80:0000:0000:0000:dead:beef:dead:beef\n")
    gids = root / "devices/pci0000:00/0000:82:00.0/infiniband/mlx4_0/ports/1/gids"
    shutil.rmtree(gids)
    os.symlink(str(outside / "gids"), gids)
    facts = _facts.gather(snapshot(root))
    assert facts["devices"]["mlx4_0"]["ports"]["1"]["gid0"] is None
    assert facts["nics"]["ib0"]["ib"]["port_guid"] is None
    assert facts["nics"]["evil0"]["mtu"] is None
    assert facts["nics"]["evil1"]["mtu"] is None
    assert facts["nics"]["ib0"]["vendor_id"] is None
    text = "\n".join(facts["warnings"])
    assert "class/net/evil0: link points outside sysfs_root" in text
    assert "class/net/evil1: link points outside sysfs_root" in text


def test_invalid_names_in_tree_are_skipped(tmp_path):
    root = tmp_path / "sys"
    builder.cx3_dual_port_mixed(root)
    os.symlink("../../devices/virtual/net/x", root / "class/net/bad name")
    os.symlink("../../devices/virtual/net/y", root / "class/net" / ("a" * 20))
    (root / "class/net/bonding_masters").write_text("bond0\n")
    facts = _facts.gather(snapshot(root))
    assert "bad name" not in facts["nics"] and "a" * 20 not in facts["nics"]
    assert "bonding_masters" not in facts["nics"]
    assert any("invalid interface name" in w for w in facts["warnings"])


def test_fifo_and_directory_attributes_do_not_hang(tmp_path):
    root = tmp_path / "sys"
    builder.cx3_dual_port_mixed(root)
    mtu = root / "devices/pci0000:00/0000:82:00.0/net/ib0/mtu"
    os.unlink(mtu)
    os.mkfifo(mtu)
    speed = root / "devices/pci0000:00/0000:02:00.0/net/eth0/speed"
    os.unlink(speed)
    speed.mkdir()
    facts = _facts.gather(snapshot(root))
    assert facts["nics"]["ib0"]["mtu"] is None
    assert facts["nics"]["eth0"]["speed_mbps"] is None


def test_warnings_are_bounded(tmp_path):
    root = tmp_path / "sys"
    b = builder.SysfsBuilder(root)
    hca = b.pci("0000:82:00.0", "0x15b3", "0x1003", "mlx4_core")
    b.ibdev("mlx4_0", hca, ports={1: dict(pkey_table_size=400)})
    for index in range(400):
        (root / ("devices/pci0000:00/0000:82:00.0/infiniband/mlx4_0/ports/1/pkeys/%d" % index)).write_text("junk")
    facts = _facts.gather(snapshot(root))
    assert len(facts["warnings"]) == _facts.MAX_WARNINGS + 1
    assert facts["warnings"][-1].endswith("more warnings not shown")


def test_host_without_sysfs_root_uses_host_reads(tmp_path):
    """A Host double without a real sysfs_root still works: facts read only through Host methods."""
    builder.two_hcas_with_child(tmp_path / "sys")
    real = snapshot(tmp_path / "sys")

    class Double:
        live = False
        warnings = []
        sysfs_root = None

        def __getattr__(self, name):
            return getattr(real, name)

    facts = _facts.gather(Double())
    reference = _facts.gather(real)
    for key in ("network_mode", "subnet_manager"):
        assert facts[key] == reference[key]
    assert facts["nics"]["ib0.8002"]["kind"] == "ipoib_child"
    assert facts["devices"]["mlx4_0"]["ports"]["1"]["pkeys"] == ["0xffff", "0x8002", "0x7fff"]


# ---------------------------------------------------------------------------------------------------
# Linear cost (counted, not timed)
# ---------------------------------------------------------------------------------------------------
def gather_counting_opens(monkeypatch, root, **kwargs):
    """_facts.gather() on ``root`` with the files it opens counted: (facts, number of os.open calls)."""
    return count_opens(monkeypatch, lambda: _facts.gather(snapshot(root), **kwargs))


def test_reads_grow_linearly(tmp_path, monkeypatch):
    counts = {}
    for size in (16, 64):
        root = tmp_path / str(size) / "sys"
        builder.many_netdevs(root, size, vfs_per_pf=7, pkey_table_size=4)
        facts, counts[size] = gather_counting_opens(monkeypatch, root)
        assert len(facts["nics"]) == size
    ratio = counts[64] / counts[16]
    assert 3.0 <= ratio <= 5.0, counts


# ---------------------------------------------------------------------------------------------------
# PCI ID table
# ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("vendor,device,model", [
    ("0x15b3", "0x1003", "ConnectX-3"),
    ("0x15b3", "0x1004", "ConnectX-3 Virtual Function"),
    ("0x15b3", "0x1007", "ConnectX-3 Pro"),
    ("0x15b3", "0x1011", "Connect-IB"),
    ("0x15b3", "0x1013", "ConnectX-4"),
    ("0x15b3", "0x1015", "ConnectX-4 Lx"),
    ("0x15b3", "0x1017", "ConnectX-5"),
    ("0x15b3", "0x101b", "ConnectX-6"),
    ("0x15b3", "0x1021", "ConnectX-7"),
    ("15b3", "a2d6", "BlueField-2"),
    (0x15B3, 0xA2DC, "BlueField-3"),
    ("0x8086", "0x24f0", "Omni-Path HFI Silicon 100 (discrete)"),
])
def test_ids_known(vendor, device, model):
    assert _ids.model_name(vendor, device) == model


def test_ids_qlogic_and_unknown():
    assert _ids.lookup("0x1077", "0x7322")["family"] == "qib"
    assert _ids.lookup("0x1fc1", "0x0010")["family"] == "qib"
    assert _ids.lookup("0x15b3", "0x1018")["vf"] is True
    assert _ids.model_name("0x8086", "0x1521") is None
    assert _ids.model_name(None, "0x1003") is None
    assert _ids.model_name("junk", "0x1003") is None
    assert _ids.model_name(True, 1) is None


# ---------------------------------------------------------------------------------------------------
# The machine the tests run on (live /sys, real ioctl)
# ---------------------------------------------------------------------------------------------------
@pytest.mark.skipif(not os.path.isdir("/sys/class/net"), reason="no live sysfs")
def test_live_host_does_not_fail():
    facts = _facts.gather(Host())
    assert_serialisable(facts)
    assert facts["source"] == "live"
    assert facts["nics"]["lo"]["kind"] == "loopback"
    assert facts["nics"]["lo"]["link_type"] == "loopback"
    for nic in facts["nics"].values():
        assert nic["driver_source"] in ("ethtool", "sysfs", "inferred", "unknown")
        assert nic["kind"] in ("ipoib", "ipoib_child", "eipoib", "roce", "ethernet", "vf", "virtual", "loopback")


# ---------------------------------------------------------------------------------------------------
# Restricted gathers (interfaces) and the pkeys switch: same facts, less reading
# ---------------------------------------------------------------------------------------------------
def _restricted_trees(tmp_path):
    trees = {}
    for name, make in (("mixed", builder.cx3_dual_port_mixed), ("child", builder.two_hcas_with_child),
                       ("sriov_eth", builder.sriov_pf_with_vfs), ("eipoib", builder.eipoib_host)):
        root = tmp_path / name / "sys"
        make(root)
        trees[name] = str(root)
    root = tmp_path / "sriov_ib" / "sys"
    builder.sriov_pf_with_vfs(root, link_layer="InfiniBand")
    trees["sriov_ib"] = str(root)
    return trees


def assert_restricted_matches_full(root):
    # A restricted gather reads the P_Key tables of every port it reads, VFs' too.
    full = _facts.gather(snapshot(root), pkeys="all")
    for name, nic in full["nics"].items():
        part = _facts.gather(snapshot(root), interfaces=[name])
        assert_serialisable(part)
        assert part["nics"] == {name: nic}, name
        assert part["network_mode"] == {"infiniband": "infiniband", "ethernet": "ethernet"}.get(
            nic["network_mode"], "none"), name
        # Only the devices the netdev is on, otherwise identical, naming only the selected netdev.
        assert set(part["devices"]) <= set(full["devices"]), name
        if nic["ib"]:
            assert nic["ib"]["device"] in part["devices"], name
        for dev_name, dev in part["devices"].items():
            expected = json.loads(json.dumps(full["devices"][dev_name]))
            expected["netdevs"] = [n for n in expected["netdevs"] if n == name]
            for port in expected["ports"].values():
                port["netdevs"] = [n for n in port["netdevs"] if n == name]
            assert dev == expected, (name, dev_name)
        for key, entry in part["subnet_manager"].items():
            assert entry == dict(full["subnet_manager"][key], netdevs=[n for n in entry["netdevs"] if n == name])
    return full


def test_restricted_gather_equals_full_gather(tmp_path):
    for root in _restricted_trees(tmp_path).values():
        assert_restricted_matches_full(root)


def test_restricted_gather_on_captures(mlx4_capture, qib_capture):
    for root in (mlx4_capture, qib_capture):
        assert_restricted_matches_full(root)


def test_restricted_gather_keeps_children_and_vf_netdevs(tmp_path):
    trees = _restricted_trees(tmp_path)
    full = _facts.gather(snapshot(trees["child"]))
    parents = [n for n, nic in full["nics"].items() if nic["ipoib"] and nic["ipoib"]["children"]]
    assert parents
    for name in parents:
        part = _facts.gather(snapshot(trees["child"]), interfaces=[name])
        assert part["nics"][name]["ipoib"]["children"] == full["nics"][name]["ipoib"]["children"]
    full = _facts.gather(snapshot(trees["sriov_eth"]))
    pfs = [n for n, nic in full["nics"].items() if nic["sriov"] and any(vf["netdev"] for vf in nic["sriov"]["vfs"])]
    assert pfs
    for name in pfs:
        part = _facts.gather(snapshot(trees["sriov_eth"]), interfaces=[name])
        assert part["nics"][name]["sriov"] == full["nics"][name]["sriov"]


def test_restricted_gather_reads_less(tmp_path, monkeypatch):
    root = tmp_path / "sys"
    builder.many_netdevs(root, 32, vfs_per_pf=7, pkey_table_size=4)
    name = sorted(_facts.gather(snapshot(root))["nics"])[5]
    _full, full_opens = gather_counting_opens(monkeypatch, root)
    part, part_opens = gather_counting_opens(monkeypatch, root, interfaces=[name])
    assert list(part["nics"]) == [name] and len(part["devices"]) == 1
    assert part_opens * 5 < full_opens, (part_opens, full_opens)
    assert _facts.read_netdev(snapshot(root), name, pkeys="all") == part["nics"][name]


def _without_pkeys(facts):
    """``facts`` with every port's ``pkeys`` None, as a gather that reads no P_Key table reports them."""
    facts = json.loads(json.dumps(facts))
    for dev in facts["devices"].values():
        for port in dev["ports"].values():
            port["pkeys"] = None
    for nic in facts["nics"].values():
        if nic["ib"]:
            nic["ib"]["pkeys"] = None
    return facts


@pytest.mark.parametrize("pkeys", ["none", False])
def test_pkeys_none_reads_no_table(tmp_path, pkeys):
    for root in _restricted_trees(tmp_path).values():
        full = _facts.gather(snapshot(root), pkeys="all")
        light = _facts.gather(snapshot(root), pkeys=pkeys)
        ports = [port for dev in light["devices"].values() for port in dev["ports"].values()]
        assert ports and all(port["pkeys"] is None for port in ports)
        assert light == _without_pkeys(full)


def test_pkeys_physical_is_the_default_and_leaves_out_vf_ports(tmp_path):
    root = _restricted_trees(tmp_path)["sriov_ib"]
    full = _facts.gather(snapshot(root), pkeys="all")
    default = _facts.gather(snapshot(root))
    assert default == _facts.gather(snapshot(root), pkeys="physical")
    vf_devices = {nic["ib"]["device"] for nic in full["nics"].values() if nic["physfn"] and nic["ib"]}
    pf_devices = {nic["ib"]["device"] for nic in full["nics"].values() if nic["sriov"] and nic["ib"]}
    assert vf_devices and pf_devices
    for name, dev in default["devices"].items():
        for port in dev["ports"].values():
            if name in vf_devices:
                assert port["pkeys"] is None, name
            else:
                assert port["pkeys"] == full["devices"][name]["ports"][str(port["port"])]["pkeys"], name
    assert _without_pkeys(default) == _without_pkeys(full)
    # The tables left out are read back for the interfaces that need them (what ib_netcheck does).
    vf_nics = sorted(n for n, nic in default["nics"].items() if nic["physfn"] and nic["ib"])
    _facts.complete_pkeys(snapshot(root), default["nics"], vf_nics + ["no-such-netdev"])
    for name in vf_nics:
        assert default["nics"][name]["ib"]["pkeys"] == full["nics"][name]["ib"]["pkeys"]


def test_pkeys_bad_value_is_one_clear_error(tmp_path):
    root = _restricted_trees(tmp_path)["child"]
    with pytest.raises(_facts.FactsError, match="pkeys must be one of all, physical, none"):
        _facts.gather(snapshot(root), pkeys="some")


def test_pkeys_scope_decides_the_files_read(tmp_path, monkeypatch):
    root = tmp_path / "many" / "sys"
    builder.many_netdevs(root, 8, vfs_per_pf=7, pkey_table_size=32)  # 1 PF + 7 VFs, IB
    counts = {}
    for pkeys in ("all", "physical", "none"):
        _facts_read, counts[pkeys] = gather_counting_opens(monkeypatch, root, pkeys=pkeys)
    assert counts["all"] - counts["physical"] >= 7 * 32, counts   # the 7 VF tables
    assert counts["physical"] - counts["none"] >= 32, counts      # the PF table
    assert counts["physical"] - counts["none"] < 2 * 32, counts


# ---------------------------------------------------------------------------------------------------
# Lean results (the ib_facts module's default): expand() gives back exactly the full form
# ---------------------------------------------------------------------------------------------------
def assert_expands_to_full(root, **gather_args):
    lean = _facts.gather(snapshot(root), lean=True, **gather_args)
    full = _facts.gather(snapshot(root), **gather_args)
    assert lean["lean"] is True and full["lean"] is False
    assert_serialisable(lean)
    for nic in lean["nics"].values():
        assert nic.get("ib") is None or tuple(nic["ib"]) == _facts.LEAN_IB_FIELDS
    assert all(tuple(entry) == _facts.LEAN_SM_FIELDS for entry in lean["subnet_manager"].values())
    expanded = _facts.expand(json.loads(json.dumps(lean)))
    # loopback and virtual netdevs without an RDMA port keep their short record
    short = [name for name, nic in lean["nics"].items() if tuple(nic) == _facts.SHORT_NIC_FIELDS]
    for name in short:
        whole = full["nics"].pop(name)
        assert expanded["nics"].pop(name) == dict((k, whole[k]) for k in _facts.SHORT_NIC_FIELDS)
    assert expanded == full
    assert _facts.expand(full) is full  # a full result is left as it is
    return lean


@pytest.mark.parametrize("make", [
    builder.cx3_dual_port_mixed,
    builder.two_hcas_with_child,
    builder.eipoib_host,
    lambda root: builder.sriov_pf_with_vfs(root, numvfs=4, totalvfs=8),
    lambda root: builder.sriov_pf_with_vfs(root, numvfs=2, totalvfs=8, link_layer="InfiniBand"),
])
def test_lean_expands_to_full(tmp_path, make):
    make(tmp_path / "sys")
    assert_expands_to_full(tmp_path / "sys")
    assert_expands_to_full(tmp_path / "sys", pkeys="none")


def test_lean_expands_to_full_on_captures(mlx4_capture, qib_capture):
    for root in (mlx4_capture, qib_capture):
        assert_expands_to_full(root)


def test_lean_restricted_gather_expands_to_full(tmp_path):
    builder.two_hcas_with_child(tmp_path / "sys")
    names = sorted(_facts.gather(snapshot(tmp_path / "sys"))["nics"])
    assert_expands_to_full(tmp_path / "sys", interfaces=[n for n in names if n != "lo"][:1])


def test_lean_reasons_grouped(tmp_path):
    builder.cx3_dual_port_mixed(tmp_path / "sys")
    lean = _facts.gather(snapshot(tmp_path / "sys"), lean=True)
    full = _facts.gather(snapshot(tmp_path / "sys"))
    # one netdev per kind of reason: the whole sentences, as in the full form
    assert lean["network_mode_reasons"] == full["network_mode_reasons"]
    builder.many_netdevs(tmp_path / "many", 8, vfs_per_pf=3, pkey_table_size=2)
    lean = _facts.gather(snapshot(tmp_path / "many"), lean=True)
    assert lean["network_mode_reasons"] == [
        "ib0, ib0v0, ib0v1, ib0v2 and 4 more: mlx5_core[ib_ipoib] (IPoIB) -> infiniband"]
    assert lean["network_mode_interfaces"]["infiniband"] == sorted(lean["nics"])


@pytest.mark.parametrize("make", [builder.cx3_dual_port_mixed, builder.eipoib_host,
                                  lambda root: builder.sriov_pf_with_vfs(root, numvfs=2, totalvfs=8)])
def test_nodes_model_is_the_same_from_lean_and_full_facts(tmp_path, make):
    from ansible_collections.hpcnet.infiniband.plugins.module_utils import _nodes_model  # noqa: PLC0415

    make(tmp_path / "sys")
    lean = json.loads(json.dumps(_facts.gather(snapshot(tmp_path / "sys"), lean=True)))
    full = json.loads(json.dumps(_facts.gather(snapshot(tmp_path / "sys"))))
    rules = _nodes_model.DEFAULT_RULES
    node = _nodes_model.build_node("n1", {"ansible_facts": {"ib_facts": lean}}, rules, allow_mixed=True)
    assert node == _nodes_model.build_node("n1", {"ansible_facts": {"ib_facts": full}}, rules, allow_mixed=True)
    assert node["status"] == "discovered" and node["interfaces"]
