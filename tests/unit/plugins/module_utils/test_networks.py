"""Networks of the site: definitions, member devices, stable address allocation and its refusals."""

import pytest

from ansible_collections.hpcnet.infiniband.plugins.module_utils import _networks as nw

RDMA = {"name": "rdma", "cidr": "10.20.0.0/24", "pkey": "0x8002", "mtu": 2044, "ipoib_mode": "datagram"}
STORAGE = {"name": "storage", "cidr": "10.20.1.0/24", "gateway": "10.20.1.1",
           "ip_range": {"first": "10.20.1.11", "last": "10.20.1.13"}}


def _defs(*entries):
    return nw.parse_networks(list(entries))


# ------------------------------------------------------------------------------------- definitions
def test_definitions_normalised():
    defs = _defs(RDMA, STORAGE, {"name": "public", "cidr": "192.168.8.0/30", "pkey": 0x8003, "vlan": 30},
                 {"name": "v6", "cidr": "fd00:20::/64"})
    assert list(defs) == ["rdma", "storage", "public", "v6"]
    assert defs["rdma"] == {"name": "rdma", "cidr": "10.20.0.0/24", "gateway": None, "pkey": "0x8002", "vlan": 2,
                            "mtu": 2044, "mode": "datagram",
                            "ip_range": {"first": "10.20.0.1", "last": "10.20.0.254"}}
    assert defs["storage"]["ip_range"] == {"first": "10.20.1.11", "last": "10.20.1.13"}
    assert defs["storage"]["vlan"] is None and defs["storage"]["pkey"] is None
    assert defs["public"]["pkey"] == "0x8003" and defs["public"]["vlan"] == 30  # explicit vlan wins
    assert defs["public"]["ip_range"] == {"first": "192.168.8.1", "last": "192.168.8.2"}
    assert defs["v6"]["ip_range"]["first"] == "fd00:20::1"
    # The default partition is untagged.
    assert _defs({"name": "x", "cidr": "10.0.0.0/24", "pkey": "ffff"})["x"]["vlan"] is None


@pytest.mark.parametrize("entry, message", [
    ({"name": "rdma", "cidr": "10.20.0.5/24"}, "network rdma: cidr 10.20.0.5/24 has host bits set; the network is 10.20.0.0/24"),
    ({"name": "rdma", "cidr": "10.20.0.0"}, "network rdma: cidr '10.20.0.0' is not a network"),
    ({"name": "rdma", "cidr": "10.20.0.0/24", "gateway": "10.20.5.1"}, "gateway 10.20.5.1 is not a host address of 10.20.0.0/24"),
    ({"name": "rdma", "cidr": "10.20.0.0/24", "gateway": "10.20.0.255"}, "gateway 10.20.0.255 is not a host address"),
    ({"name": "rdma", "cidr": "10.20.0.0/24", "pkey": "8g02"}, "network rdma: P_Key '8g02' is not a hexadecimal P_Key"),
    ({"name": "rdma", "cidr": "10.20.0.0/24", "pkey": "0x9000"}, "P_Key 0x9000 gives VLAN 4096, outside 1-4094; set vlan"),
    ({"name": "rdma", "cidr": "10.20.0.0/24", "vlan": 5000}, "vlan 5000 is not a VLAN id"),
    ({"name": "rdma", "cidr": "10.20.0.0/24", "mtu": 10}, "mtu 10 is not an MTU"),
    ({"name": "rdma", "cidr": "10.20.0.0/24", "ipoib_mode": "fast"}, "ipoib_mode 'fast' is not one of datagram, connected"),
    ({"name": "rdma", "cidr": "10.20.0.0/24", "ip_range": {"first": "10.20.0.20", "last": "10.20.0.10"}},
     "ip_range.first 10.20.0.20 comes after ip_range.last 10.20.0.10"),
    ({"name": "rdma", "cidr": "10.20.0.0/24", "ip_range": {"first": "10.20.1.1"}}, "ip_range.first 10.20.1.1 is not a host address"),
    ({"name": "rdma", "cidr": "10.20.0.0/24", "colour": "red"}, "discovery_networks[0] has unknown key(s) colour"),
    ({"name": "bad name", "cidr": "10.20.0.0/24"}, "name must be a network role"),
])
def test_bad_definitions_one_clear_error(entry, message):
    with pytest.raises(nw.NetworkError) as err:
        nw.parse_networks([entry])
    assert message in str(err.value)


def test_network_defined_twice():
    with pytest.raises(nw.NetworkError, match="network rdma is defined twice"):
        nw.parse_networks([RDMA, RDMA])


# ------------------------------------------------------------------------------------- members
def test_member_devices():
    defs = _defs(RDMA, STORAGE, {"name": "private", "cidr": "10.20.2.0/24", "pkey": "0x0005"})
    bridges = nw.parse_bridges(None)
    ib0 = {"name": "ib0", "kind": "ipoib"}
    # IPoIB with a P_Key: the child named as the kernel names it, full membership.
    assert nw.member(defs["rdma"], ib0, {}, bridges) == ("ipoib_child", "ib0.8002", None)
    assert nw.member(defs["private"], ib0, {}, bridges) == ("ipoib_child", "ib0.8005", None)
    assert nw.member(defs["storage"], ib0, {}, bridges) == ("ipoib", "ib0", None)
    assert nw.member(None, ib0, {}, bridges) == ("ipoib", "ib0", None)
    assert nw.member(defs["rdma"], {"name": "ib0.8002", "kind": "ipoib_child"}, {}, bridges) == \
        ("ipoib_child", "ib0.8002", None)
    # EIPoIB: the bridge of the first eipoib_ovs role on the same interface carries every address there.
    eth1 = {"name": "eth1", "kind": "eipoib"}
    shared = {"storage": {"interface": "eth1"}, "private": {"interface": "eth1"}}
    assert nw.member(defs["private"], eth1, shared, bridges) == ("eipoib", "br-storage", 5)
    assert nw.member(defs["private"], eth1, {"private": {"interface": "eth1"}}, bridges) == ("eipoib", "br-prv", 5)
    assert nw.member(defs["rdma"], eth1, {"rdma": {"interface": "eth1"}}, bridges) == ("eipoib", "eth1", 2)
    # RoCE / Ethernet: tagged members on their 802.1Q device.
    roce = {"name": "ens2f0", "kind": "roce"}
    assert nw.member(defs["rdma"], roce, {}, bridges) == ("roce", "ens2f0.2", 2)
    assert nw.member(defs["storage"], roce, {}, bridges) == ("roce", "ens2f0", None)
    assert nw.member(defs["storage"], {"name": "eth0", "kind": "vf"}, {}, bridges) == ("ethernet", "eth0", None)


def test_overlapping_cidrs_on_one_interface():
    defs = _defs({"name": "a", "cidr": "10.0.0.0/16"}, {"name": "b", "cidr": "10.0.5.0/24"},
                 {"name": "c", "cidr": "10.1.0.0/24"})
    errors = nw.check_overlaps(defs, "node1", {"a": "ib0", "b": "ib0", "c": "ib0"})
    assert errors == ["node node1, interface ib0: networks a (10.0.0.0/16) and b (10.0.5.0/24) overlap"]
    assert nw.check_overlaps(defs, "node1", {"a": "ib0", "b": "eth1"}) == []


# ------------------------------------------------------------------------------------- allocation
def test_lowest_free_then_stable_across_order_add_and_remove():
    defs = _defs(STORAGE)
    first, warnings = nw.allocate(defs, {"storage": ["node2", "node10", "node1"]})
    assert first["storage"] == {"node1": "10.20.1.11/24", "node2": "10.20.1.12/24", "node10": "10.20.1.13/24"}
    assert warnings == []
    # node2 removed, node3 added, listed in another order: nobody moves, node3 takes the freed address.
    again, _w = nw.allocate(defs, {"storage": ["node3", "node10", "node1"]}, kept=first)
    assert again["storage"] == {"node1": "10.20.1.11/24", "node10": "10.20.1.13/24", "node3": "10.20.1.12/24"}


def test_static_addresses_win_and_are_checked():
    defs = _defs(STORAGE)
    kept = {"storage": {"node1": "10.20.1.11/24", "node2": "10.20.1.12/24"}}
    result, warnings = nw.allocate(defs, {"storage": ["node1", "node2"]}, kept=kept,
                                   static={"node2": {"storage": "10.20.1.11"}, "node1": {}})
    assert result["storage"]["node2"] == "10.20.1.11/24"
    assert result["storage"]["node1"] == "10.20.1.12/24"
    assert warnings == ["network storage, node node1: address 10.20.1.11/24 is now node node2's (static); "
                        "a new one is allocated"]
    # A static address outside ip_range but inside the CIDR is fine.
    result, _w = nw.allocate(defs, {"storage": ["node1"]}, static={"node1": {"storage": "10.20.1.200/24"}})
    assert result["storage"]["node1"] == "10.20.1.200/24"


@pytest.mark.parametrize("static, members, message", [
    ({"node1": {"storage": "10.20.2.5"}}, ["node1"],
     "network storage, node node1: static address '10.20.2.5' is outside the network's CIDR 10.20.1.0/24"),
    ({"node1": {"storage": "10.20.1.1"}}, ["node1"],
     "network storage, node node1: static address '10.20.1.1' is the gateway of 10.20.1.0/24"),
    ({"node1": {"storage": "10.20.1.255"}}, ["node1"], "is the network or broadcast address of 10.20.1.0/24"),
    ({"node1": {"storage": "10.20.1.0"}}, ["node1"], "is the network or broadcast address"),
    ({"node1": {"storage": "10.20.1.50/16"}}, ["node1"], "has prefix /16, the network is 10.20.1.0/24"),
    ({"node1": {"storage": "nonsense"}}, ["node1"], "static address 'nonsense' is not an IP address"),
    ({"node1": {"storage": "10.20.1.50"}, "node2": {"storage": "10.20.1.50"}}, ["node1", "node2"],
     "network storage: static address 10.20.1.50 of node node2 is also node node1's"),
    ({"node1": {"backup": "10.20.1.50"}}, ["node1"], "node node1: static address '10.20.1.50' for network backup, "
                                                     "which discovery_networks does not define"),
    ({"node9": {"storage": "10.20.1.50"}}, ["node1"],
     "network storage, node node9: static address 10.20.1.50 but no interface of the node carries storage"),
])
def test_static_address_refusals(static, members, message):
    with pytest.raises(nw.NetworkError) as err:
        nw.allocate(_defs(STORAGE), {"storage": members}, static=static)
    assert message in str(err.value)


def test_exhausted_range_names_network_node_and_range():
    with pytest.raises(nw.NetworkError) as err:
        nw.allocate(_defs(STORAGE), {"storage": ["node1", "node2", "node3", "node4"]})
    assert str(err.value) == "network storage, node node4: no free address left in 10.20.1.11-10.20.1.13 (10.20.1.0/24)"


def test_kept_address_that_no_longer_fits_is_reallocated_with_a_warning():
    kept = {"storage": {"node1": "10.99.0.5/24", "node2": "10.20.1.13/24"}}
    result, warnings = nw.allocate(_defs(STORAGE), {"storage": ["node1", "node2"]}, kept=kept)
    assert result["storage"] == {"node1": "10.20.1.11/24", "node2": "10.20.1.13/24"}
    assert warnings == ["network storage, node node1: address 10.99.0.5/24 no longer fits 10.20.1.0/24; "
                        "a new one is allocated"]


def test_gateway_and_network_skipped_ipv6_too():
    defs = _defs({"name": "n", "cidr": "10.0.0.0/29", "gateway": "10.0.0.1"}, {"name": "v6", "cidr": "fd00::/126"})
    result, _w = nw.allocate(defs, {"n": ["a", "b"], "v6": ["a", "b", "c"]})
    assert result["n"] == {"a": "10.0.0.2/29", "b": "10.0.0.3/29"}
    assert result["v6"] == {"a": "fd00::1/126", "b": "fd00::2/126", "c": "fd00::3/126"}


def test_host_network_contract_item():
    defs = _defs(RDMA)
    entry = {"interface": "ib0", "device": "ib0.8002", "kind": "ipoib_child", "vlan": None, "address": "10.20.0.11/24"}
    assert nw.host_network("rdma", entry, defs["rdma"]) == {
        "network": "rdma", "interface": "ib0", "device": "ib0.8002", "kind": "ipoib_child",
        "address": "10.20.0.11/24", "gateway": None, "pkey": "0x8002", "vlan": None, "mtu": 2044, "mode": "datagram"}


def test_contract_item_of_a_child_names_its_parent_and_full_member_pkey():
    limited = _defs({"name": "rdma", "cidr": "10.20.0.0/24", "pkey": "0x0002"})["rdma"]
    derived = {"interface": "ib0", "device": "ib0.8002", "kind": "ipoib_child", "vlan": None, "address": "10.20.0.11/24"}
    item = nw.host_network("rdma", derived, limited)
    assert (item["interface"], item["device"], item["pkey"]) == ("ib0", "ib0.8002", "0x8002")
    # An existing child chosen by the rules: described by its parent and its own P_Key.
    existing = {"interface": "ib0.8005", "device": "ib0.8005", "kind": "ipoib_child", "vlan": None,
                "address": "10.20.0.11/24"}
    item = nw.host_network("rdma", existing, _defs({"name": "rdma", "cidr": "10.20.0.0/24"})["rdma"])
    assert (item["interface"], item["device"], item["pkey"]) == ("ib0", "ib0.8005", "0x8005")
    assert nw.from_ib_networks({"rdma": dict(existing, address="10.20.0.11", prefix=24, pkey=None)}) == [item]


def test_one_network_on_two_fabrics_is_refused():
    # IPoIB and RoCE ports are on different fabrics: one subnet over both can never work.
    assert nw.fabric_of("ipoib_child") == nw.fabric_of("eipoib") == "InfiniBand"
    assert nw.fabric_of("roce") == nw.fabric_of("ethernet") == "Ethernet"
    errors = nw.check_one_fabric({
        "rdma": {"InfiniBand": ["node10 ib0", "node2 ib0"], "Ethernet": ["node5 eth1"]},
        "storage": {"InfiniBand": ["node1 br-storage"]},
    })
    assert errors == ["network rdma has members on two fabrics that cannot reach each other over one subnet: "
                      "Ethernet: node5 eth1; InfiniBand: node2 ib0, node10 ib0; give each fabric its own network "
                      "(discovery_network_rules and discovery_networks)"]
