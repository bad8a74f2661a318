"""EIPoIB bridges under the lab's real Open vSwitch (userspace datapath), through Ansible over ssh.

Lab `ovs`: 2 cx3-eipoib nodes (IPoIB ib0/ib1 with EIPoIB eth1 over ib0 and eth2 over ib1).
"""

from __future__ import annotations

import time

import pytest
from conftest import run_module

LAB_NAME = "ovs"


@pytest.fixture(scope="module")
def lab(lab_factory):
    return lab_factory(LAB_NAME, nodes=2, profiles=["cx3-eipoib"])


def module(lab, node, name, args, check=False):
    """Run one module ad hoc on a node; -> its result dict."""
    return run_module(lab, name, node, args, check=check, timeout=300)[node]


def show(lab, node):
    return lab.exec(node, ["ovs-vsctl", "show"], check=True).stdout


def bridge(lab, node, name, ports, **extra):
    args = {"bridge": name, "datapath_type": "netdev", "ports": ports}
    args.update(extra)
    return module(lab, node, "hpcnet.infiniband.ib_ovs_bridge", args)


def assert_refused(lab, node, messages, name, ports, **extra):
    """ib_ovs_bridge refuses (every one of ``messages`` in its msg) and the node's OVS is left as it was."""
    before = show(lab, node)
    result = bridge(lab, node, name, ports, **extra)
    assert result["failed"] and not result["changed"]
    for message in messages:
        assert message in result["msg"], result["msg"]
    assert show(lab, node) == before


def test_raw_ipoib_refused_naming_the_eipoib_interface(lab):
    assert_refused(lab, "node1", ["ib0 is a raw IPoIB interface (link type infiniband)",
                                  "use the EIPoIB interface eth1 that runs over ib0 instead"],
                   "br-raw", [{"name": "ib0"}])


def test_missing_interface_and_mtu_above_ipoib_parent_refused_together(lab):
    assert_refused(lab, "node1", ["interface eth9 does not exist on this host",
                                  "requested MTU 4092 for eth1 exceeds the MTU 2044 of its IPoIB parent ib0"],
                   "br-x", [{"name": "eth9"}, {"name": "eth1"}], mtu=4092)


def test_check_mode_then_apply_then_idempotent(lab):
    before = show(lab, "node2")
    args = {"bridge": "br-storage", "datapath_type": "netdev", "ports": [{"name": "eth1", "pkey": "0x8002"}]}
    checked = module(lab, "node2", "hpcnet.infiniband.ib_ovs_bridge", args, check=True)
    assert checked["changed"] and [c["action"] for c in checked["plan"]] == ["add_bridge", "add_port", "set_hwaddr"]
    assert show(lab, "node2") == before
    applied = module(lab, "node2", "hpcnet.infiniband.ib_ovs_bridge", args)
    assert applied["changed"] and applied["ovs_status"] == []
    assert lab.exec("node2", ["ovs-vsctl", "get", "Port", "eth1", "tag"]).stdout.strip() == "2"
    # The bridge has its EIPoIB port's MAC, the only one the EIPoIB interface receives for.
    port_mac = lab.exec("node2", ["cat", "/sys/class/net/eth1/address"]).stdout.strip()
    assert lab.exec("node2", ["ovs-vsctl", "get", "Bridge", "br-storage", "other_config:hwaddr"]).stdout.strip() \
        == '"%s"' % port_mac
    assert lab.exec("node2", ["cat", "/sys/class/net/br-storage/address"]).stdout.strip() == port_mac
    again = module(lab, "node2", "hpcnet.infiniband.ib_ovs_bridge", args)
    assert not again["changed"] and again["plan"] == []


def test_port_of_another_bridge_refused_unless_move(lab):
    bridge(lab, "node1", "br-old", [{"name": "eth2"}])
    refused = bridge(lab, "node1", "br-prv", [{"name": "eth2"}])
    assert refused["failed"]
    assert "interface eth2 is already a port of bridge br-old; set move: true" in refused["msg"]
    moved = bridge(lab, "node1", "br-prv", [{"name": "eth2", "move": True}])
    assert moved["changed"] and [c["action"] for c in moved["plan"]] == ["add_bridge", "move_port", "set_hwaddr"]
    assert lab.exec("node1", ["ovs-vsctl", "port-to-br", "eth2"]).stdout.strip() == "br-prv"
    assert bridge(lab, "node1", "br-old", [], state="absent")["changed"]


def test_tag_removed_and_datapath_reconciled(lab):
    # Two things openvswitch.openvswitch 2.1.1 cannot do (see the module's docstring).
    bridge(lab, "node1", "br-t", [{"name": "eth1", "vlan": 7}])
    result = bridge(lab, "node1", "br-t", [{"name": "eth1"}])
    assert [c["action"] for c in result["plan"]] == ["set_vlan"]
    assert lab.exec("node1", ["ovs-vsctl", "get", "Port", "eth1", "tag"]).stdout.strip() == "[]"
    bridge(lab, "node1", "br-t", [], state="absent")


def test_system_datapath_failure_is_reported(lab):
    # No openvswitch kernel module here: ovs-vsctl exits 0 but ovs-vswitchd cannot create the datapath.
    result = module(lab, "node2", "hpcnet.infiniband.ib_ovs_bridge",
                    {"bridge": "br-sys", "datapath_type": "system", "ports": []})
    assert result["failed"]
    assert "exited 0 but ovs-vswitchd could not set the bridge up" in result["msg"]
    assert "datapath_type netdev" in result["msg"]
    module(lab, "node2", "hpcnet.infiniband.ib_ovs_bridge", {"bridge": "br-sys", "state": "absent"})


def test_role_converges_and_is_idempotent(lab, tmp_path):
    extra = {"eipoib_ovs_datapath_type": "netdev",
             "eipoib_ovs_allocation": {"storage": "eth1", "private": "eth1", "public": "eth2"},
             "eipoib_ovs_networks": [{"role": "storage", "bridge": "br-storage", "pkey": "0x8002", "tagged": True},
                                     {"role": "private", "bridge": "br-prv"},
                                     {"role": "public", "bridge": "br-ex", "mtu": 2044}],
             "eipoib_ovs_move": True}
    for node in ("node1", "node2"):  # start from an empty ovsdb
        for name in lab.exec(node, ["ovs-vsctl", "list-br"]).stdout.split():
            lab.exec(node, ["ovs-vsctl", "del-br", name], check=True)
    playbook = tmp_path / "ovs.yml"
    playbook.write_text("- hosts: all\n  gather_facts: false\n  roles: [hpcnet.infiniband.eipoib_ovs]\n")
    first = lab.playbook(playbook, extra_vars=extra)
    assert first.returncode == 0, first.stdout[-3000:]
    assert "private is not bridged: its interface eth1 already is the port" in first.stdout
    second = lab.playbook(playbook, extra_vars=extra)
    assert second.returncode == 0 and "changed=0" in second.stdout.split("PLAY RECAP")[1], second.stdout[-3000:]
    for node in ("node1", "node2"):
        assert sorted(lab.exec(node, ["ovs-vsctl", "list-br"]).stdout.split()) == ["br-ex", "br-storage"]
        assert lab.exec(node, ["ovs-vsctl", "list-ports", "br-ex"]).stdout.split() == ["eth2"]


def _vswitchd_running(lab, node):
    return lab.exec(node, ["ovs-appctl", "-t", "ovs-vswitchd", "version"]).returncode == 0


def _wait(predicate, seconds=30):
    deadline = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.5)
    return True


def test_vswitchd_down_reports_the_write_and_fails_until_it_is_up(lab):
    # ovs-vsctl commits to ovsdb, then waits for ovs-vswitchd: with vswitchd down the first run wrote ovsdb
    # and said changed: false, the second said ok for a bridge vswitchd never set up.
    node = "node1"
    lab.exec(node, ["ovs-vsctl", "--if-exists", "del-br", "br-down"], check=True)
    lab.exec(node, ["ovs-appctl", "-t", "ovs-vswitchd", "exit"], check=True)
    try:
        assert _wait(lambda: not _vswitchd_running(lab, node))
        args = {"bridge": "br-down", "datapath_type": "netdev", "ports": [], "timeout": 3}
        first = module(lab, node, "hpcnet.infiniband.ib_ovs_bridge", args)
        assert first["failed"] and first["changed"] is True, first
        assert "ovs-vswitchd has not applied the database" in first["msg"]
        second = module(lab, node, "hpcnet.infiniband.ib_ovs_bridge", args)
        assert second["failed"] and second["changed"] is False and second["plan"] == [], second
        assert "br-down is in ovsdb but ovs-vswitchd has not set it up" in second["msg"]
    finally:
        if not _vswitchd_running(lab, node):
            lab.exec(node, ["ovs-vswitchd", "--pidfile", "--log-file", "--detach", "--no-chdir"], check=True)
    assert _wait(lambda: lab.exec(node, ["ovs-vsctl", "get", "Interface", "br-down", "ofport"]).stdout.strip()
                 not in ("", "[]", "-1"))
    third = module(lab, node, "hpcnet.infiniband.ib_ovs_bridge", args)
    assert not third.get("failed") and not third["changed"] and third["ovs_status"] == [], third
    lab.exec(node, ["ovs-vsctl", "del-br", "br-down"], check=True)
