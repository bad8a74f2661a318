"""Verifier of the eipoib_ovs scenario: ask each node's own Open vSwitch (ovs-vsctl over ssh)."""

import json
import os

import pytest
import testinfra.utils.ansible_runner

testinfra_hosts = testinfra.utils.ansible_runner.AnsibleRunner(
    os.environ["MOLECULE_INVENTORY_FILE"]).get_hosts("lab_nodes")


def vsctl(host, *args):
    return host.check_output("ovs-vsctl " + " ".join(args))


def column(host, table, record, name):
    return json.loads(vsctl(host, "--format=json", "--data=json", "--columns=" + name, "list", table, record))[
        "data"][0][0]


def test_bridges(host):
    assert sorted(vsctl(host, "list-br").split()) == ["br-prv", "br-storage"]


@pytest.mark.parametrize("bridge,port", [("br-storage", "eth1"), ("br-prv", "eth2")])
def test_ports_and_datapath(host, bridge, port):
    assert vsctl(host, "list-ports", bridge).split() == [port]
    assert column(host, "Bridge", bridge, "datapath_type") == "netdev"
    # ovs-vsctl exits 0 even when ovs-vswitchd cannot set a port up: check the interface status.
    for iface in (bridge, port):
        assert column(host, "Interface", iface, "error") == ["set", []], iface
        assert isinstance(column(host, "Interface", iface, "ofport"), int) and column(
            host, "Interface", iface, "ofport") > 0, iface


def test_vlan_tag_from_pkey(host):
    assert column(host, "Port", "eth2", "tag") == 0x8002 & 0x7FFF
    assert column(host, "Port", "eth1", "tag") == ["set", []]


def test_mtu_requested_within_ipoib_parent(host):
    assert column(host, "Interface", "eth1", "mtu_request") == 2044
    assert host.file("/sys/class/net/eth1/mtu").content_string.strip() == "2044"


def test_no_bridge_for_the_raw_ipoib_refusal(host):
    assert "br-raw" not in vsctl(host, "list-br").split()
