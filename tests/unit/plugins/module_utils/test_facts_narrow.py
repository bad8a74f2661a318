# -*- coding: utf-8 -*-
"""Narrow readers of the facts model (issue 13 item 1): one netdev, one device or one port, without P_Key
tables unless asked; OFED card detection reads no table."""

from __future__ import annotations

import os

import pytest

from ansible_collections.hpcnet.infiniband.plugins.module_utils import _facts, _host, _ofed
from ansible_collections.hpcnet.infiniband.plugins.module_utils._host import Host
from testlib import count_opens
from testlib import sysfs_builder as builder


def snapshot(root):
    return Host(sysfs_root=str(root), live=False)


@pytest.fixture
def opened(monkeypatch):
    """Paths (relative names included) os.open is called with, while the test runs."""
    paths = []
    real_open = os.open

    def recording_open(path, *args, **kw):
        paths.append(str(path))
        return real_open(path, *args, **kw)

    monkeypatch.setattr(_host.os, "open", recording_open)
    return paths


def _table_reads(paths):
    return [p for p in paths if "/pkeys" in p or p.isdigit()]


def test_read_device_reads_no_pkey_table_by_default(tmp_path, opened):
    builder.cx3_dual_port_mixed(tmp_path / "sys")
    dev = _facts.read_device(snapshot(tmp_path / "sys"), "mlx4_0")
    assert dev["ports"]["1"]["pkeys"] is None and dev["ports"]["1"]["link_layer"] == "InfiniBand"
    assert _table_reads(opened) == []
    assert _facts.read_device(snapshot(tmp_path / "sys"), "mlx4_0", pkeys=True)["ports"]["1"]["pkeys"] == [
        "0xffff", "0x8002"]


def test_read_port_reads_its_table_only_when_asked(tmp_path, opened):
    builder.cx3_dual_port_mixed(tmp_path / "sys")
    host = snapshot(tmp_path / "sys")
    port = _facts.read_port(host, "mlx4_0", 1)
    assert port["pkeys"] is None and port["lid"] == 0x3A4
    assert _table_reads(opened) == []
    assert _facts.read_port(host, "mlx4_0", 1, pkeys=True)["pkeys"] == ["0xffff", "0x8002"]


def test_read_netdev_reads_no_table_by_default(tmp_path, opened):
    builder.cx3_dual_port_mixed(tmp_path / "sys")
    nic = _facts.read_netdev(snapshot(tmp_path / "sys"), "ib0")
    assert nic["kind"] == "ipoib" and nic["ib"]["device"] == "mlx4_0" and nic["ib"]["port"] == 1
    assert nic["ib"].get("pkeys") is None
    assert _table_reads(opened) == []


def test_read_netdev_physical_stays_physical(tmp_path):
    builder.sriov_pf_with_vfs(tmp_path / "sys", numvfs=2, link_layer="InfiniBand")
    host = snapshot(tmp_path / "sys")
    facts = _facts.gather(host, pkeys="all")
    vf = next(n for n, nic in facts["nics"].items() if nic["is_vf"] and nic["ib"])
    pf = next(n for n, nic in facts["nics"].items() if nic["sriov"] and nic["ib"])
    assert _facts.read_netdev(host, pf, pkeys="physical")["ib"]["pkeys"] is not None
    # "physical" does not become "all" for a one-netdev read: a VF's table is still left out.
    vf_nic = _facts.read_netdev(host, vf, pkeys="physical")
    dev = vf_nic["ib"]["device"]
    assert _facts.port_of(facts, facts["nics"][vf]) is not None
    assert vf_nic["ib"].get("pkeys") is None, dev
    assert _facts.read_netdev(host, vf, pkeys="all")["ib"]["pkeys"] is not None


def test_detect_cards_reads_no_pkey_table(tmp_path, opened):
    builder.cx3_dual_port_mixed(tmp_path / "sys")
    cards = _ofed.detect_cards(snapshot(tmp_path / "sys"))
    assert [c["pci_address"] for c in cards if c["rdma_devices"]] == ["0000:82:00.0"]
    assert cards[-1]["link_layers"] == {"1": "InfiniBand", "2": "Ethernet"}
    assert _table_reads(opened) == []


def test_complete_pkeys_reads_only_the_named_ports(tmp_path):
    builder.cx3_dual_port_mixed(tmp_path / "sys")
    host = snapshot(tmp_path / "sys")
    nics = _facts.gather(host, pkeys="none")["nics"]
    _facts.complete_pkeys(host, nics, ["ib0"])
    assert nics["ib0"]["ib"]["pkeys"] == ["0xffff", "0x8002"]


def test_one_netdev_costs_the_same_on_8_or_128_netdevs(tmp_path, monkeypatch):
    opens = {}
    for size in (8, 128):
        root = tmp_path / str(size) / "sys"
        builder.many_netdevs(root, size, vfs_per_pf=7, pkey_table_size=4)
        host = snapshot(root)
        opens[size] = (count_opens(monkeypatch, lambda: _facts.read_netdev(host, "ib0v3"))[1],
                       count_opens(monkeypatch, lambda: _facts.read_netdev(host, "ib0"))[1])
        assert _facts.read_netdev(host, "ib0v3", pkeys="all") == _facts.gather(host, pkeys="all")["nics"]["ib0v3"]
    assert opens[128] == opens[8], opens
