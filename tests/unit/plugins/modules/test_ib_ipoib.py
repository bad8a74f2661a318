"""ib_ipoib end to end on a kernel-like fixture tree."""

import pytest

from ansible_collections.hpcnet.infiniband.plugins.module_utils._host import Host
from ansible_collections.hpcnet.infiniband.plugins.modules import ib_ipoib
from fakehost import snapshot
from fakekernel import KernelHost, make_tree
from testlib import run_module


def use(monkeypatch, fake):
    monkeypatch.setattr(Host, "from_module", classmethod(lambda cls, module, sysfs_root="/sys", fs_root="/": fake))
    return fake


@pytest.fixture
def host(tmp_path, monkeypatch):
    make_tree(tmp_path, driver="mlx4_core", ibdev="mlx4_0", device="0x1003")  # classic IPoIB
    return use(monkeypatch, KernelHost(tmp_path))


def test_child_lifecycle(host, tmp_path, capsys):
    args = {"parent": "ib0", "pkey": "0x0002", "mode": "connected", "mtu": 65520}
    before = snapshot(tmp_path)
    result = run_module(ib_ipoib, args, capsys, check=True, diff=True)
    assert result["changed"] and result["interface"] == "ib0.8002" and result["diff"]
    assert snapshot(tmp_path) == before
    result = run_module(ib_ipoib, args, capsys)
    assert result["changed"] and host.read("class/net/ib0.8002/mode") == "connected"
    assert not run_module(ib_ipoib, args, capsys)["changed"]
    result = run_module(ib_ipoib, {"parent": "ib0", "pkey": 0x8002, "state": "absent"}, capsys)
    assert result["changed"] and not host.exists("class/net/ib0.8002")
    assert not run_module(ib_ipoib, {"parent": "ib0", "pkey": 0x8002, "state": "absent"}, capsys)["changed"]


def test_refusals(host, tmp_path, capsys):
    before = snapshot(tmp_path)
    for args in (
        {"parent": "ib0", "pkey": 0x8000},
        {"parent": "ib0", "pkey": "0xffff"},
        {"parent": "ib0", "pkey": 0x8002, "mtu": 9000},
        {"parent": "ib0", "pkey": 0x8009, "pkey_check": "refuse"},
        {"parent": "ib0", "state": "absent"},
    ):
        result = run_module(ib_ipoib, args, capsys)
        assert result["failed"], args
    assert snapshot(tmp_path) == before


def test_refusals_report_unchanged(host, tmp_path, capsys):
    # Regression: a refusal after a planned create_child said changed: true.
    before = snapshot(tmp_path)
    for args, words in (
        ({"parent": "ib0", "pkey": "8002", "mtu": 9000}, "mtu 9000 is out of range"),
        ({"parent": "ib0", "pkey": "8002", "timeout": -1}, "timeout -1 is not a positive number"),
        ({"parent": "ib0", "pkey": "8002", "timeout": 0}, "timeout 0 is not a positive number"),
        ({"parent": "ib0", "pkey": "8002", "state": "absent", "mode": "datagram", "mtu": 2044},
         "state=absent removes the child; mode/mtu cannot be set"),
    ):
        result = run_module(ib_ipoib, args, capsys)
        assert result["failed"] and result["changed"] is False, args
        assert words in result["msg"], result["msg"]
    assert snapshot(tmp_path) == before


def test_wrong_sysfs_root_named(tmp_path, capsys):
    root = tmp_path / "capture"
    root.mkdir()
    result = run_module(ib_ipoib, {"parent": "ib0", "pkey": "0x8002", "sysfs_root": str(root)}, capsys)
    assert result["failed"] and "sysfs_root %s is not a sysfs tree" % root in result["msg"]


def test_enhanced_ipoib_connected_refused_before_any_write(tmp_path, monkeypatch, capsys):
    make_tree(tmp_path)  # ConnectX-5, mlx5_core: enhanced IPoIB
    use(monkeypatch, KernelHost(tmp_path))
    before = snapshot(tmp_path)
    result = run_module(ib_ipoib, {"parent": "ib0", "pkey": "8002", "mode": "connected"}, capsys)
    assert result["failed"] and not result["changed"] and "enhanced IPoIB" in result["msg"]
    assert snapshot(tmp_path) == before


def test_failed_apply_rolls_back_and_reports(host, monkeypatch, capsys):
    real_write = host.write

    def write(rel, value, timeout=30):
        if rel == "class/net/ib0.8002/umcast":
            raise ib_ipoib._ipoib.HostError("Invalid argument", 22, rel)
        return real_write(rel, value, timeout)

    monkeypatch.setattr(host, "write", write)
    result = run_module(ib_ipoib, {"parent": "ib0", "pkey": "8002", "umcast": True}, capsys)
    assert result["failed"] and result["changed"] is False
    assert result["applied"][0].startswith("create_child") and result["rolled_back"]
    assert "rolled back: delete_child ib0/delete_child: ib0.8002" in result["msg"]
    assert not host.exists("class/net/ib0.8002")
