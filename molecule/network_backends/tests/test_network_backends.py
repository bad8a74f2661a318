"""Verifier of the network_backends scenario: the real programs read the files the role wrote.

What this proves: NetworkManager loads our keyfiles and reads back the P_Key, transport mode, MTU and
address we meant, exactly as from the keyfiles its own `nmcli --offline connection add` writes for the same
settings; systemd-networkd reloads our .netdev/.network files without a warning about them; ifquery parses
our stanzas and ifup would run the child creation. What it cannot prove here: that a device comes up with
them (this kernel has no IPoIB and the container no network devices): the lab test (tests/integration/
test_network.py) brings ifupdown stanzas up with the real ifup on the lab's emulated IPoIB.
"""

import os

import pytest
import testinfra.utils.ansible_runner

testinfra_hosts = testinfra.utils.ansible_runner.AnsibleRunner(
    os.environ["MOLECULE_INVENTORY_FILE"]).get_hosts("all")

MARKER = "# Managed by hpcnet.infiniband"
FIELDS = "connection.type,connection.interface-name,infiniband.p-key,infiniband.parent,infiniband.transport-mode," \
         "infiniband.mtu,ipv4.method,ipv4.addresses,ipv4.gateway"
VLAN_FIELDS = "connection.type,connection.interface-name,vlan.id,vlan.parent,802-3-ethernet.mtu,ipv4.method,ipv4.addresses"
# Each connection the role wrote, with the nmcli --offline arguments of the same settings.
REFERENCE = {
    "ib0.8002": (FIELDS, ["type", "infiniband", "ifname", "ib0.8002", "infiniband.parent", "ib0",
                          "infiniband.p-key", "0x8002", "infiniband.transport-mode", "connected",
                          "infiniband.mtu", "65520", "ipv4.method", "manual", "ipv4.addresses", "10.20.0.11/24",
                          "ipv4.gateway", "10.20.0.1", "ipv6.method", "disabled"]),
    "ib0": (FIELDS, ["type", "infiniband", "ifname", "ib0", "infiniband.transport-mode", "datagram",
                     "infiniband.mtu", "2044", "ipv4.method", "manual", "ipv4.addresses", "10.21.0.11/24",
                     "ipv6.method", "disabled"]),
    "eth1.12": (VLAN_FIELDS, ["type", "vlan", "ifname", "eth1.12", "vlan.parent", "eth1", "vlan.id", "12",
                              "ethernet.mtu", "9000", "ipv4.method", "manual", "ipv4.addresses", "10.22.0.11/24",
                              "ipv6.method", "disabled"]),
}


def run(host, *argv):
    cmd = host.run(" ".join(["%s"] * len(argv)), *argv)
    assert cmd.rc == 0, "%s: %s" % (" ".join(argv), cmd.stderr)
    return cmd.stdout


@pytest.fixture(scope="module")
def nm_loaded(host):
    """Our keyfiles and NetworkManager's own (nmcli --offline, as ref-DEVICE) loaded by the daemon."""
    for device, (_fields, args) in REFERENCE.items():
        keyfile = run(host, "nmcli", "--offline", "connection", "add", "con-name", "ref-" + device, *args)
        path = "/etc/NetworkManager/system-connections/ref-%s.nmconnection" % device
        host.run("umask 077 && printf '%%s' %s > %s", keyfile, path)
    run(host, "nmcli", "connection", "reload")
    return True


@pytest.mark.parametrize("device", sorted(REFERENCE))
def test_networkmanager_reads_back_what_we_meant(host, nm_loaded, device):
    fields, _args = REFERENCE[device]
    ours = run(host, "nmcli", "-g", fields, "connection", "show", "hpcnet-" + device)
    theirs = run(host, "nmcli", "-g", fields, "connection", "show", "ref-" + device)
    assert ours == theirs
    if device == "ib0.8002":
        assert ours.split("\n")[0:1] and "connected" in ours and "65520" in ours and "10.20.0.11/24" in ours


def test_keyfiles_are_root_0600_with_our_marker(host):
    for device in REFERENCE:
        keyfile = host.file("/etc/NetworkManager/system-connections/hpcnet-%s.nmconnection" % device)
        assert keyfile.user == "root" and keyfile.mode == 0o600
        assert keyfile.content_string.startswith(MARKER)


def test_networkmanager_logs_nothing_about_our_files(host, nm_loaded):
    journal = run(host, "journalctl", "-u", "NetworkManager", "-o", "cat", "--no-pager")
    bad = [line for line in journal.splitlines() if "hpcnet" in line and ("warn" in line.lower() or "error" in line.lower())]
    assert bad == []


def test_networkd_loads_our_files_without_a_warning(host):
    since = run(host, "date", "+%Y-%m-%d %H:%M:%S").strip()
    run(host, "networkctl", "reload")
    assert host.run("sleep 1").rc == 0
    journal = run(host, "journalctl", "-u", "systemd-networkd", "-o", "cat", "--no-pager", "--since", since)
    everything = run(host, "journalctl", "-u", "systemd-networkd", "-o", "cat", "--no-pager")
    assert [line for line in everything.splitlines() if "hpcnet" in line] == [], everything
    assert "Failed" not in journal, journal


def test_ifquery_parses_our_stanzas(host):
    assert set(run(host, "ifquery", "--list").split()) >= {"ib0", "ib0.8002", "eth1.12"}
    child = run(host, "ifquery", "ib0.8002")
    for line in ("address: 10.20.0.11", "netmask: 255.255.255.0", "gateway: 10.20.0.1", "mtu: 65520",
                 "pre-up: echo connected > /sys/class/net/ib0.8002/mode"):
        assert line in child
    cmd = host.run("ifup --no-act ib0.8002")  # prints what it would run on stderr
    plan = cmd.stdout + cmd.stderr
    assert cmd.rc == 0, plan
    assert "echo 0x8002 > /sys/class/net/ib0/create_child" in plan
