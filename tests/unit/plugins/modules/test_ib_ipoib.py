"""ib_ipoib end to end on a kernel-like fixture tree."""

import pytest

from ansible_collections.hpcnet.infiniband.plugins.module_utils._host import Host
from ansible_collections.hpcnet.infiniband.plugins.modules import ib_ipoib
from fakehost import snapshot
from fakekernel import KernelHost, make_tree
from testlib import run_module


@pytest.fixture
def host(tmp_path, monkeypatch):
    make_tree(tmp_path)
    fake = KernelHost(tmp_path)
    monkeypatch.setattr(Host, "from_module", classmethod(lambda cls, module, sysfs_root="/sys", fs_root="/": fake))
    return fake


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
