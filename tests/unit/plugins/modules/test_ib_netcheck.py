"""The ib_netcheck module on a fixture sysfs tree: the report run reads the members and the IPv4 addresses
once; the probe run takes this node's report from ``peers`` and reads nothing of the host again."""

import json

import pytest

from ansible_collections.hpcnet.infiniband.plugins.module_utils import _netcheck
from ansible_collections.hpcnet.infiniband.plugins.module_utils._host import Host
from ansible_collections.hpcnet.infiniband.plugins.modules import ib_netcheck
from fakehost import FakeRunner
from fakekernel import make_tree
from testlib import run_module

ALLOCATION = {"node1": {"rdma": "ib0"}, "node2": {"rdma": "ib0"}}
ARGS = {"node": "node1", "networks": [{"name": "rdma", "pkey": "0xffff"}], "allocation": ALLOCATION}


def ip_addr(argv):
    """``ip -j -4 addr show``: only links with an IPv4 address (what the family filter gives)."""
    assert argv == ["ip", "-j", "-4", "addr", "show"], argv
    return 0, json.dumps([{"ifname": "ib0", "addr_info": [
        {"family": "inet", "local": "10.20.0.11", "prefixlen": 24}]}]), ""


@pytest.fixture
def host(tmp_path):
    make_tree(tmp_path)
    return Host(sysfs_root=str(tmp_path), fs_root=str(tmp_path), runner=FakeRunner({"ip": ip_addr}), live=False)


def test_report_reads_the_members_and_one_ip_call(host, monkeypatch, capsys):
    monkeypatch.setattr(ib_netcheck.Host, "from_module", classmethod(lambda cls, module, **kw: host))
    result = run_module(ib_netcheck, ARGS, capsys)
    assert result["_rc"] == 0, result
    record = result["netcheck"]["interfaces"]["ib0"]
    assert record["exists"] and record["addresses"] == ["10.20.0.11/24"]
    assert record["pkeys"] == ["0xffff", "0x8002", "0x0003"]  # the network has a P_Key: its table is read
    assert host.runner.calls == [["ip", "-j", "-4", "addr", "show"]]
    assert result["netcheck"]["probes"] == []


def test_probe_run_reuses_the_report_and_reads_nothing(host, monkeypatch, capsys):
    monkeypatch.setattr(ib_netcheck.Host, "from_module", classmethod(lambda cls, module, **kw: host))
    report = run_module(ib_netcheck, ARGS, capsys)["netcheck"]["interfaces"]
    peer = {"ib0": dict(report["ib0"], addresses=["10.20.0.12/24"])}

    def no_host(cls, module, **kw):
        raise AssertionError("the probe run read the host again")

    sent = []

    def fake_parallel(argvs, timeout, max_parallel=64, spawn=None):
        sent.extend(argvs)
        return [0] * len(argvs)

    monkeypatch.setattr(ib_netcheck.Host, "from_module", classmethod(no_host))
    monkeypatch.setattr(_netcheck, "run_parallel", fake_parallel)
    result = run_module(ib_netcheck, dict(ARGS, peers={"node1": report, "node2": peer}), capsys)
    assert result["_rc"] == 0, result
    assert result["netcheck"]["interfaces"] == report
    assert [(p["peer"], p["address"], p["reachable"], p["mtu_ok"]) for p in result["netcheck"]["probes"]] == [
        ("node2", "10.20.0.12", True, True)]
    assert len(sent) == 1 and sent[0][-1] == "10.20.0.12" and "-M" in sent[0]
    assert host.runner.calls == [["ip", "-j", "-4", "addr", "show"]]  # the report run's only
