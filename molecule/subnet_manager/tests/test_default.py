"""Verifier of the subnet_manager scenario: the rendered opensm files on the SM hosts (line by line),
nothing on the other node, and the check itself run again on every node over ssh."""

import os

import testinfra.utils.ansible_runner

testinfra_hosts = testinfra.utils.ansible_runner.AnsibleRunner(
    os.environ["MOLECULE_INVENTORY_FILE"]).get_hosts("lab_nodes")

HEADER = "# Managed by hpcnet.infiniband (ib_opensm_config); local changes are overwritten."


def sm_host(host):
    return "ib_sm_hosts" in host.ansible.get_variables().get("group_names", [])


def test_opensm_conf(host):
    conf = host.file("/etc/opensm/opensm.conf")
    if not sm_host(host):
        assert not conf.exists
        return
    assert conf.exists and conf.mode == 0o644 and conf.user == "root"
    lines = conf.content_string.splitlines()
    assert lines[0] == HEADER
    name = host.ansible.get_variables()["inventory_hostname"]
    expected = {
        "node1": ["guid 0x0002c90300f9bfa1", "sm_priority 14"],
        "node2": ["sm_priority 13"],
    }[name]
    assert lines[2:] == expected + ["virt_enabled 2", "partition_config_file /etc/opensm/partitions.conf"]


def test_partitions_conf(host):
    part = host.file("/etc/opensm/partitions.conf")
    if not sm_host(host):
        assert not part.exists
        return
    assert part.mode == 0o644
    assert part.content_string.splitlines() == [
        HEADER,
        "Default=0x7fff, ipoib, defmember=full : ALL, ALL_SWITCHES=full, SELF=full ;",
        "storage=0x0001, ipoib, mtu=4 : ALL_CAS ;",
        "mgmt=0x0002, ipoib, defmember=limited : 0x0002c90300f9bfa1=full ;",
    ]


def test_service_defaults_bind_the_guid(host):
    """The opensm package's /etc/default/opensm is not the collection's: only PORTS= is set in it, every
    other line is kept, and its original is kept next to it (ib_opensm_config backup)."""
    defaults = host.file("/etc/default/opensm")
    if not sm_host(host):  # node3 runs no opensm: the package's file is left as it is, no backup
        assert host.run("ls /etc/default/opensm.*~").rc != 0
        return
    lines = defaults.content_string.splitlines()
    ports = [line for line in lines if line.startswith("PORTS=")]
    name = host.ansible.get_variables()["inventory_hostname"]
    if name == "node1":
        assert ports == ['PORTS="0x0002c90300f9bfa1"']
    elif name == "node2":
        assert ports == ['PORTS="ALL"']
    if lines[0] != HEADER:
        assert host.run("ls /etc/default/opensm.*~").rc == 0


def test_check_passes_with_the_labs_master_sm(host):
    result = host.ansible("hpcnet.infiniband.ib_sm_check", "query_sm=always require_ports=false wait_timeout=30",
                          check=False)
    assert not result.get("failed"), result.get("msg")
    if host.ansible.get_variables()["inventory_hostname"] == "node3":  # cx5-roce: Ethernet port only
        assert result["ports"] == [] and result["sm"] is None
        return
    assert all(p["state"] == "ACTIVE" and p["sm_lid"] for p in result["ports"])
    assert result["sm"]["state"] == "MASTER" and result["sm"]["local"] is False
