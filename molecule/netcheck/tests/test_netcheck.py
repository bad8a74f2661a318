"""Verifier of the netcheck scenario: the JSON result says all green, with a full matrix per network,
and one probe repeated by hand on the node agrees."""

import json
import os
from pathlib import Path

import pytest
import testinfra.utils.ansible_runner

testinfra_hosts = testinfra.utils.ansible_runner.AnsibleRunner(
    os.environ["MOLECULE_INVENTORY_FILE"]).get_hosts("lab_nodes")

RESULT = Path("/run/hpcnet-lab/mol-netcheck/netcheck.json")


@pytest.fixture(scope="module")
def result():
    return json.loads(RESULT.read_text())


def test_all_green(result):
    assert result["ok"] is True and result["findings"] == []
    assert set(result["networks"]) == {"rdma", "storage"}


def test_matrix_is_complete(result, host):
    me = host.ansible.get_variables()["inventory_hostname"]
    for network in result["networks"].values():
        assert set(network["matrix"][me].values()) == {"ok"}
        assert len(network["matrix"][me]) == 2


def test_one_full_mtu_probe_by_hand(host, result):
    me = host.ansible.get_variables()["inventory_hostname"]
    peer = "node2" if me != "node2" else "node1"
    lab = json.loads(Path("/run/hpcnet-lab/mol-netcheck/lab.json").read_text())
    target = next(n for n in lab["nodes"] if n["name"] == peer)["links"]["ib0"]["address"]
    cmd = host.run("ping -n -q -c 1 -W 2 -I ib0 -M do -s %s %s", str(result["networks"]["rdma"]["mtu"] - 28), target)
    assert cmd.rc == 0, cmd.stdout + cmd.stderr
