"""Role network on the lab: the collection, not the lab, puts the data-plane addresses on the nodes.

Lab `netdeploy`: 3 cx3-ipoib nodes brought up WITHOUT pre-assigned data addresses. The nodes are Debian
without NetworkManager or systemd, so `auto` picks ifupdown and the real `ifup` applies our stanzas:
an address on ib0 (the lab's data subnet) and a P_Key child ib0.8002 in connected mode with its own
subnet (the lab makes children as macvlans on ib0, so IP traffic flows over them between nodes).
"""

from __future__ import annotations

import ipaddress
import json
import re

import pytest
from conftest import wait_for

LAB_NAME = "netdeploy"
NODES = ("node1", "node2", "node3")
PLAYBOOK = """---
- name: Configure the networks
  hosts: lab_nodes
  gather_facts: false
  vars:
    discovery_host_networks: "{{ test_members[inventory_hostname] }}"
  roles:
    - role: hpcnet.infiniband.network
"""


@pytest.fixture(scope="module")
def lab(lab_factory):
    return lab_factory(LAB_NAME, nodes=len(NODES), profiles=["cx3-ipoib"], ovs=False, data_addresses=False)


@pytest.fixture(scope="module")
def members(lab):
    """discovery_host_networks of each node, as discovery hands them over."""
    private = ipaddress.ip_network(lab.info["data"]["subnets"]["ib0"])
    # The child's subnet: lab-unique through the lab index, only on the lab's own data bridge.
    storage = ipaddress.ip_network("172.30.%d.0/24" % lab.info["index"])
    out = {}
    for i, node in enumerate(NODES, start=1):
        out[node] = [
            {"network": "private", "interface": "ib0", "device": "ib0", "kind": "ipoib",
             "address": "%s/24" % private[10 + i], "gateway": None, "pkey": None, "vlan": None, "mtu": None,
             "mode": None},
            {"network": "storage", "interface": "ib0", "device": "ib0.8002", "kind": "ipoib_child",
             "address": "%s/24" % storage[10 + i], "gateway": None, "pkey": "0x8002", "vlan": None,
             "mtu": 2044, "mode": "connected"},
        ]
    return out


@pytest.fixture(scope="module")
def playbook(tmp_path_factory):
    path = tmp_path_factory.mktemp("network") / "network.yml"
    path.write_text(PLAYBOOK)
    return path


def changed(cp):
    recap = cp.stdout.split("PLAY RECAP")[-1]
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\S+)\s+:\s+ok=\d+\s+changed=(\d+)", recap, re.M)}


def etc_network(lab, node):
    """Every file under the node's /etc/network with its mode and text."""
    cp = lab.exec(node, ["sh", "-c", "find /etc/network -type f -printf '%p %m\\n' -exec cat {} \\; | sort"], check=True)
    return cp.stdout


def addresses(lab, node, device):
    cp = lab.exec(node, ["ip", "-j", "addr", "show", "dev", device])
    if cp.returncode != 0:
        return []
    return ["%s/%s" % (a["local"], a["prefixlen"]) for link in json.loads(cp.stdout)
            for a in link.get("addr_info", []) if a.get("family") == "inet"]


def test_lab_no_longer_assigns_data_addresses(lab):
    for node in NODES:
        assert addresses(lab, node, "ib0") == []
        assert lab.node(node)["ib_address"] is None


def test_check_mode_on_unconfigured_nodes_changes_nothing(lab, members, playbook):
    before = {node: etc_network(lab, node) for node in NODES}
    cp = lab.playbook(playbook, extra_vars={"test_members": members}, check=True, args=["--diff"])
    assert cp.returncode == 0, cp.stdout[-3000:] + cp.stderr[-2000:]
    assert all(count > 0 for count in changed(cp).values()), cp.stdout[-3000:]
    assert "create_child" in cp.stdout  # the diff shows the stanza
    for node in NODES:
        assert etc_network(lab, node) == before[node]
        assert addresses(lab, node, "ib0") == []
        assert lab.exec(node, ["test", "-e", "/sys/class/net/ib0.8002"]).returncode != 0


def test_apply_with_ifup_then_nodes_ping_over_both_networks(lab, members, playbook):
    cp = lab.playbook(playbook, extra_vars={"test_members": members})
    assert cp.returncode == 0, cp.stdout[-4000:] + cp.stderr[-2000:]
    assert "ifupdown backend" in cp.stdout
    for node in NODES:
        assert addresses(lab, node, "ib0") == [members[node][0]["address"]]
        assert addresses(lab, node, "ib0.8002") == [members[node][1]["address"]]
        mode = lab.exec(node, ["cat", "/sys/class/net/ib0.8002/mode"], check=True).stdout.strip()
        assert mode == "connected"
        text = lab.exec(node, ["cat", "/etc/network/interfaces.d/hpcnet-ib0_8002"], check=True).stdout
        assert text.startswith("# Managed by hpcnet.infiniband")
    # IB links have carrier once the subnet manager has brought the ports ACTIVE.
    for node in NODES:
        assert wait_for(lambda n=node: lab.exec(n, ["cat", "/sys/class/net/ib0/carrier"]).stdout.strip() == "1", 60)
    for src in NODES:
        for dst in NODES:
            if src == dst:
                continue
            for index, device in ((0, "ib0"), (1, "ib0.8002")):
                target = members[dst][index]["address"].split("/")[0]
                ping = lab.exec(src, ["ping", "-n", "-q", "-c", "1", "-W", "2", "-I", device, target], timeout=20)
                assert ping.returncode == 0, "%s -> %s over %s: %s" % (src, target, device, ping.stdout + ping.stderr)


def test_second_run_changes_nothing(lab, members, playbook):
    cp = lab.playbook(playbook, extra_vars={"test_members": members})
    assert cp.returncode == 0, cp.stdout[-3000:]
    assert changed(cp) == {node: 0 for node in NODES}, cp.stdout[-3000:]
