"""ib_sriov end to end on a kernel-like fixture tree: check mode, diff, refusals, idempotence."""

import os

import pytest
import yaml

from ansible_collections.hpcnet.infiniband.plugins.module_utils._host import Host
from ansible_collections.hpcnet.infiniband.plugins.modules import ib_sriov
from fakehost import snapshot
from fakekernel import PF_PCI, FakeRunner, bind_vf, make_tree
from fakesriov import SriovKernelHost as KernelHost
from testlib import run_module


@pytest.fixture
def node(tmp_path, monkeypatch):
    sysfs = tmp_path / "sys"
    root = tmp_path / "root"
    os.makedirs(str(root))
    make_tree(sysfs)
    runner = FakeRunner()
    host = KernelHost(sysfs, fs_root=root, runner=runner)
    monkeypatch.setattr(Host, "from_module", classmethod(lambda cls, module, sysfs_root="/sys", fs_root="/": host))
    return host, runner, tmp_path


def test_check_mode_diff_apply_idempotent(node, capsys):
    host, _runner, tmp_path = node
    before = snapshot(tmp_path)
    result = run_module(ib_sriov, {"pf": "ib0", "num_vfs": 8, "guid_policy": "derived"}, capsys, check=True, diff=True)
    assert result["changed"] and result["_rc"] == 0
    assert result["plan"][0]["before"] == 0 and result["plan"][0]["after"] == 8
    assert len(result["vf_guids"]) == 8 and result["diff"]
    assert snapshot(tmp_path) == before
    result = run_module(ib_sriov, {"pf": "ib0", "num_vfs": 8, "guid_policy": "derived"}, capsys)
    assert result["changed"] and result["numvfs"] == 8
    result = run_module(ib_sriov, {"pf": "ib0", "num_vfs": 8, "guid_policy": "derived"}, capsys)
    assert not result["changed"]
    result = run_module(ib_sriov, {"pf": "ib0", "num_vfs": 4, "guid_policy": "derived"}, capsys)
    assert result["changed"] and result["numvfs"] == 4
    assert [w[1] for w in host.writes if w[0].endswith("sriov_numvfs")] == ["8", "0", "4"]


def test_refusals_change_nothing(node, capsys):
    host, runner, tmp_path = node
    runner.mstconfig = "Configurations:      Next Boot\n  NUM_OF_VFS    16\n  SRIOV_EN   True(1)\n"
    before = snapshot(tmp_path)
    result = run_module(ib_sriov, {"pf": "ib0", "num_vfs": 32}, capsys)
    assert result["failed"] and "NUM_OF_VFS=32" in result["msg"] and "NUM_OF_VFS=16 (next boot)" not in result["msg"]
    assert "NUM_OF_VFS=16" in result["msg"]
    assert result["firmware"]["settings"]["NUM_OF_VFS"]["next_boot"] == "16"
    assert snapshot(tmp_path) == before
    run_module(ib_sriov, {"pf": "ib0", "num_vfs": 4}, capsys)
    bind_vf(tmp_path / "sys", PF_PCI, 3, "vfio-pci")
    before = snapshot(tmp_path)
    result = run_module(ib_sriov, {"pf": "ib0", "num_vfs": 2}, capsys)
    assert result["failed"] and "VF 3" in result["msg"] and "vfio-pci" in result["msg"]
    assert snapshot(tmp_path) == before
    result = run_module(ib_sriov, {"pf": "ib0", "num_vfs": 2, "force": True}, capsys)
    assert result["changed"] and result["numvfs"] == 2


def test_bad_input(node, capsys):
    result = run_module(ib_sriov, {"pf": "../../x", "num_vfs": 2}, capsys)
    assert result["failed"] and "neither an interface name nor a PCI address" in result["msg"]
    result = run_module(ib_sriov, {"pf": "ib0", "num_vfs": 2, "guid_policy": "pool"}, capsys)
    assert result["failed"] and "guid_pool_start" in result["msg"]


def test_failed_guid_reports_state(node, capsys):
    _host, runner, _tmp = node
    runner.vf_guid_error = "RTNETLINK answers: Operation not supported"
    result = run_module(ib_sriov, {"pf": "ib0", "num_vfs": 2, "guid_policy": "derived"}, capsys)
    assert result["failed"] and "Operation not supported" in result["msg"]
    assert result["applied"][0].startswith(PF_PCI)


def test_refusal_after_a_planned_change_reports_changed_false(node, capsys):
    """Issue 10 item 12: the VF count change is planned, then the GUID pool is refused: nothing changed."""
    _host, _runner, tmp_path = node
    before = snapshot(tmp_path)
    args = {"pf": "ib0", "num_vfs": 4, "guid_policy": "pool", "guid_pool_start": "0000:0000:0000:0000"}
    for check in (True, False):
        result = run_module(ib_sriov, args, capsys, check=check)
        assert result["failed"] and result["changed"] is False and result["plan"] == []
    assert snapshot(tmp_path) == before


def test_guid_options_are_raw(node, capsys):
    """Issue 10 item 10: an unquoted YAML GUID reaches the module as an int and means that value."""
    options = yaml.safe_load(ib_sriov.DOCUMENTATION)["options"]
    assert options["guid_pool_start"]["type"] == "raw"
    assert {o["type"] for o in options["guids"]["suboptions"].values()} == {"raw"}
    result = run_module(ib_sriov, {"pf": "ib0", "num_vfs": 1, "guid_policy": "pool",
                                   "guid_pool_start": 0x0200000000000010}, capsys, check=True)
    assert result["vf_guids"][0]["node_guid"] == "0200:0000:0000:0010", result
    explicit = [{"node_guid": 0x0200000000000001, "port_guid": "02:00:00:00:00:00:00:02"}]
    result = run_module(ib_sriov, {"pf": "ib0", "num_vfs": 1, "guid_policy": "explicit", "guids": explicit},
                        capsys, check=True)
    assert result["vf_guids"][0] == {"index": 0, "node_guid": "0200:0000:0000:0001", "port_guid": "0200:0000:0000:0002"}


def test_persist_writes_no_udev_rule(node, capsys):
    _host, _runner, tmp_path = node
    result = run_module(ib_sriov, {"pf": PF_PCI, "num_vfs": 2, "guid_policy": "derived", "persist": True}, capsys)
    assert result["changed"] and not result.get("failed"), result
    assert not os.path.exists(str(tmp_path / "root/etc/udev"))
    assert "unbind_vf" in [c["action"] for c in result["plan"]]
