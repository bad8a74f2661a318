"""roles/boot_state's defaults, templated as Ansible does: what the boot path restores by default (issue 12
item 1): ipoib_interfaces, and under the network role's runtime backend its members' IPoIB children, mode
and MTU; nothing of the other backends (their network manager keeps them)."""

import os

import pytest
import yaml
from ansible.parsing.dataloader import DataLoader
from ansible.template import Templar, trust_as_template

DEFAULTS = os.path.join(os.path.dirname(__file__), "..", "..", "..", "roles", "boot_state", "defaults", "main.yml")

MEMBERS = [
    {"network": "rdma", "interface": "ib0", "device": "ib0.8002", "kind": "ipoib_child", "address": "10.20.0.11/24",
     "gateway": None, "pkey": "0x8002", "vlan": None, "mtu": 2044, "mode": "datagram"},
    {"network": "ipoib", "interface": "ib1", "device": "ib1", "kind": "ipoib", "address": "10.20.2.11/24",
     "gateway": None, "pkey": None, "vlan": None, "mtu": 65520, "mode": "connected"},
    {"network": "plain", "interface": "ib2", "device": "ib2", "kind": "ipoib", "address": "10.20.3.11/24",
     "gateway": None, "pkey": None, "vlan": None, "mtu": None, "mode": None},
    {"network": "storage", "interface": "eth2", "device": "br-storage", "kind": "eipoib", "address": "10.20.1.11/24",
     "gateway": None, "pkey": None, "vlan": None, "mtu": None, "mode": None},
]
IPOIB_INTERFACES = [{"parent": "ib0", "pkey": "0x8004", "mode": "connected", "mtu": 65520}]


def template(name, **variables):
    with open(DEFAULTS, encoding="utf-8") as handle:
        defaults = yaml.safe_load(handle)
    variables = dict({k: trust_as_template(v) if isinstance(v, str) else v for k, v in defaults.items()}, **variables)
    return Templar(loader=DataLoader(), variables=variables).template(variables[name])


def network_result(backend):
    return {"changed": False, "backend": backend, "invocation": {"module_args": {"members": MEMBERS}}}


def test_runtime_backend_members_come_back_through_the_boot_path():
    items = template("boot_state_ipoib", ipoib_interfaces=IPOIB_INTERFACES, network_result=network_result("runtime"))
    assert items == IPOIB_INTERFACES + [
        {"parent": "ib0", "pkey": "0x8002", "mode": "datagram", "mtu": 2044},
        {"parent": "ib1", "pkey": None, "mode": "connected", "mtu": 65520},
    ]
    assert template("boot_state_state", network_result=network_result("runtime")) == "present"


@pytest.mark.parametrize("backend", ["networkmanager", "systemd-networkd", "ifupdown"])
def test_a_network_manager_keeps_its_members(backend):
    items = template("boot_state_ipoib", ipoib_interfaces=IPOIB_INTERFACES, network_result=network_result(backend))
    assert items == IPOIB_INTERFACES
    assert template("boot_state_state", network_result=network_result(backend)) == "absent"


def test_without_the_network_role():
    assert template("boot_state_ipoib") == []
    assert template("boot_state_ipoib", network_result={"skipped": True}) == []
    assert template("boot_state_state") == "absent"
