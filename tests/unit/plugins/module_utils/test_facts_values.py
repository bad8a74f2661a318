# -*- coding: utf-8 -*-
"""ib_facts against hostile attribute values: bounded reads, MAC shape, absurd rates, one P_Key/GUID
parser (issue 10 items 7, 8, 10; review: an unread P_Key table is null)."""

from __future__ import annotations

import json
import shutil

from ansible_collections.hpcnet.infiniband.plugins.module_utils import _facts, _host
from ansible_collections.hpcnet.infiniband.plugins.module_utils._host import Host
from testlib import sysfs_builder as builder

PCI = "devices/pci0000:00/0000:82:00.0"


def _tree(tmp_path):
    builder.cx3_dual_port_mixed(tmp_path / "sys")
    return tmp_path / "sys", tmp_path / "sys" / PCI


def _gather(root):
    facts = _facts.gather(Host(sysfs_root=str(root), live=False))
    assert json.loads(json.dumps(facts, allow_nan=False)) == facts
    return facts


# ------------------------------------------------------------------------------------------- item 8
def test_oversized_mac_is_refused_with_a_warning(tmp_path):
    root, pci = _tree(tmp_path)
    (pci / "net/ib0/address").write_text(("ab:" * 2800)[:8192] + "\n")  # 8 KB of hex pairs
    facts = _gather(root)
    assert facts["nics"]["ib0"]["mac"] is None
    assert any("ib0/address" in w for w in facts["warnings"])
    assert all(len(w) < 300 for w in facts["warnings"])


def test_mac_longer_than_20_bytes_or_not_hex_pairs_is_refused(tmp_path):
    root, pci = _tree(tmp_path)
    (pci / "net/ib0/address").write_text(":".join(["aa"] * 21) + "\n")  # 62 chars: one byte too many
    (pci / "net/eth2/address").write_text("zz:zz:zz:zz:zz:zz\n")
    facts = _gather(root)
    assert facts["nics"]["ib0"]["mac"] is None
    assert facts["nics"]["eth2"]["mac"] is None
    text = "\n".join(facts["warnings"])
    assert "ib0/address" in text and "eth2/address" in text


def test_twenty_byte_ipoib_mac_is_kept(tmp_path):
    root, _pci = _tree(tmp_path)
    mac = _gather(root)["nics"]["ib0"]["mac"]
    assert len(mac) == 59 and mac.count(":") == 19


def test_attribute_larger_than_a_page_is_ignored_with_a_warning(tmp_path):
    root, pci = _tree(tmp_path)
    (pci / "infiniband/mlx4_0/node_desc").write_text("x" * 5000 + "\n")
    (pci / "infiniband/mlx4_0/board_id").write_text("B" * 300 + "\n")
    facts = _gather(root)
    dev = facts["devices"]["mlx4_0"]
    assert dev["node_desc"] is None and dev["board_id"] is None
    text = "\n".join(facts["warnings"])
    assert "mlx4_0/node_desc" in text and "mlx4_0/board_id" in text


def test_host_read_is_bounded_to_a_page(tmp_path):
    (tmp_path / "big").write_text("1" * 5000)
    (tmp_path / "page").write_text("2" * 4096)
    host = Host(sysfs_root=str(tmp_path), live=False)
    assert host.read("big") is None
    assert any("big" in w for w in host.warnings)
    assert host.read("page") == "2" * 4096
    assert host.opendir("").read("big") is None
    assert _host.ATTR_MAX_BYTES == 4096


# ------------------------------------------------------------------------------------------- item 7
def test_absurd_rate_is_none_with_a_warning_not_infinity(tmp_path):
    root, pci = _tree(tmp_path)
    (pci / "infiniband/mlx4_0/ports/1/rate").write_text("1" + "0" * 400 + " Gb/sec (4X FDR)\n")
    facts = _gather(root)
    port = facts["devices"]["mlx4_0"]["ports"]["1"]
    assert port["rate_gbps"] is None
    assert any("ports/1/rate" in w for w in facts["warnings"])


def test_fractional_rate_is_kept(tmp_path):
    root, pci = _tree(tmp_path)
    (pci / "infiniband/mlx4_0/ports/1/rate").write_text("2.5 Gb/sec (1X SDR)\n")
    assert _gather(root)["devices"]["mlx4_0"]["ports"]["1"]["rate_gbps"] == 2.5


# ------------------------------------------------------------------------------------------- review
def test_port_without_pkeys_directory_reports_null(tmp_path):
    root, pci = _tree(tmp_path)
    shutil.rmtree(pci / "infiniband/mlx4_0/ports/1/pkeys")
    facts = _gather(root)
    assert facts["devices"]["mlx4_0"]["ports"]["1"]["pkeys"] is None
    assert facts["nics"]["ib0"]["ib"].get("pkeys") is None


# ------------------------------------------------------------------------------------------- item 10
def test_values_is_the_only_parser():
    for name in ("_guid", "_pkey", "_GUID_RE", "_PKEY_RE"):
        assert not hasattr(_facts, name), name


def test_ipoib_pkey_through_values(tmp_path):
    root, pci = _tree(tmp_path)
    (pci / "net/ib0/pkey").write_text("8002\n")  # hex without 0x: 0x8002 as everywhere else
    assert _gather(root)["nics"]["ib0"]["ipoib"]["pkey"] == "0x8002"
    (pci / "net/ib0/pkey").write_text("0x8000\n")  # membership bit without a partition
    facts = _gather(root)
    assert facts["nics"]["ib0"]["ipoib"]["pkey"] is None
    assert any("ib0/pkey" in w for w in facts["warnings"])


def test_guids_through_values_keep_the_kernel_format(tmp_path):
    root, pci = _tree(tmp_path)
    (pci / "infiniband/mlx4_0/node_guid").write_text("0002:C903:0001:0000\n")
    (pci / "infiniband/mlx4_0/sys_image_guid").write_text("0x0002c90300010003\n")
    dev = _gather(root)["devices"]["mlx4_0"]
    assert dev["node_guid"] == "0002:c903:0001:0000"
    assert dev["sys_image_guid"] == "0002:c903:0001:0003"
