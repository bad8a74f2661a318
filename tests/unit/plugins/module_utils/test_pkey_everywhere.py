# -*- coding: utf-8 -*-
"""One meaning per P_Key (issue 10 item 9): the same inputs reach every module and role helper that takes
a P_Key and mean the same partition there. Before, "8002" was decimal (0x1f42) in ib_ipoib and in the
opensm partitions, hex in ib_ovs_bridge and netcheck, and an unquoted YAML 0x8002 (32770) was refused by
ib_ovs_bridge."""

import pytest

from ansible_collections.hpcnet.infiniband.plugins.module_utils import _ipoib, _netconf, _networks, _ovs, _sm, _values

SAME_PKEY = ["8002", "0x8002", "0X8002", " 8002 ", 32770]


@pytest.mark.parametrize("given", SAME_PKEY)
def test_every_consumer_reads_the_same_pkey(given):
    assert _values.parse_pkey(given) == 0x8002
    # ib_ipoib: the child the kernel names after the full-member P_Key
    assert _values.child_name("ib0", _ipoib._want_pkey({"pkey": given, "membership": "full"})) == "ib0.8002"
    # ib_ovs_bridge / eipoib_ovs: Fuel's VLAN = pkey & 0x7fff
    assert _ovs.vlan_from_pkey(given) == 2
    # ib_opensm_config / subnet_manager: the partition opensm sees (membership bit per member)
    partitions, errors = _sm.normalize_partitions([{"name": "storage", "pkey": given, "members": [{"guid": "ALL"}]}])
    assert not errors and [p["pkey"] for p in partitions if p["name"] == "storage"] == [0x0002]
    # discovery_networks (the nodes model)
    definitions = _networks.parse_networks([{"name": "rdma", "cidr": "10.20.0.0/24", "pkey": given}])
    assert definitions["rdma"]["pkey"] == "0x8002"
    # ib_network (the network role): the child device and the keyfile's decimal p-key
    member = {"network": "rdma", "kind": "ipoib_child", "interface": "ib0", "device": "ib0.8002",
              "address": "10.20.0.11/24", "pkey": given}
    files = _netconf.render_files("networkmanager", _netconf.devices_of([member]))
    assert [text for text in files.values() if "p-key=32770" in text], files


@pytest.mark.parametrize("given", ["0x0000", "8000", 0, 0x10000, "0x18002", "pkey", True])
def test_every_consumer_refuses_the_same_bad_pkey(given):
    with pytest.raises(ValueError):
        _ovs.vlan_from_pkey(given)
    assert _ipoib._want_pkey({"pkey": given}) is None  # the plan then refuses it, naming the value
    _partitions, errors = _sm.normalize_partitions([{"name": "storage", "pkey": given, "members": [{"guid": "ALL"}]}])
    assert errors and "P_Key" in errors[0]
    with pytest.raises(_networks.NetworkError):
        _networks.parse_networks([{"name": "rdma", "cidr": "10.20.0.0/24", "pkey": given}])
