"""Hand-written ib_facts (schema 1, docs/dev/contracts.md section 4) for the nodes-model tests.

Shapes follow what ``_facts.gather`` returns; values follow the lab profiles (cx3-ipoib, cx3-eipoib,
cx5-roce, plain-ethernet) plus a mixed node (dual-port mlx4: port 1 IB, port 2 Ethernet).
"""

import copy
import json
import os

import jsonschema

SCHEMA_PATH = os.path.join(os.path.dirname(__file__), "..", "..", "..", "..", "schemas", "nodes_model.schema.json")

# The lab's networks (docs/examples/lab-site-vars.yml has the same shape), with a P_Key on rdma.
NETWORKS = [
    {"name": "rdma", "cidr": "10.20.0.0/24", "pkey": "0x8002", "mtu": 2044, "ipoib_mode": "datagram",
     "ip_range": {"first": "10.20.0.11", "last": "10.20.0.250"}},
    {"name": "storage", "cidr": "10.20.1.0/24", "gateway": "10.20.1.1",
     "ip_range": {"first": "10.20.1.11", "last": "10.20.1.250"}},
    {"name": "roce", "cidr": "10.20.2.0/24", "vlan": 2, "ip_range": {"first": "10.20.2.11", "last": "10.20.2.250"}},
]
# One network per fabric, as a mixed site must have (a subnet over IPoIB and RoCE members is refused):
# IPoIB and EIPoIB members on the InfiniBand fabric, the RoCE ports on their own network.
RULES = {"rdma": [{"kind": "ipoib"}], "storage": [{"kind": "eipoib"}], "roce": [{"kind": "roce"}]}


def validate_model(model):
    """Every model a test writes is checked against the shipped JSON Schema (as JSON, as written)."""
    with open(SCHEMA_PATH, encoding="utf-8") as handle:
        schema = json.load(handle)
    jsonschema.validate(json.loads(json.dumps(model)), schema)
    return model


def _port(device, port, link_layer="InfiniBand", state="ACTIVE", rate="56 Gb/sec (4X FDR)", rate_gbps=56,
          lid=0x3a4, sm_lid=1):
    return {
        "device": device, "port": port, "link_layer": link_layer, "state": state,
        "state_code": {"ACTIVE": 4, "DOWN": 1, "INIT": 2}.get(state), "phys_state": "LinkUp",
        "phys_state_code": 5, "rate": rate, "rate_gbps": rate_gbps, "lid": lid, "sm_lid": sm_lid, "sm_sl": 0,
        "lid_mask_count": 0, "cap_mask": "0x02514868", "port_guid": "0002:c903:00f9:bfa1",
        "gid0": "fe80:0000:0000:0000:0002:c903:00f9:bfa1", "pkeys": ["0xffff"],
    }


def _nic(name, kind, driver, mac, bus_info=None, pci_address=None, pci_driver=None, model=None, link_type="ether",
         operstate="up", carrier=True, speed_mbps=None, network_mode=None, ib=None, ipoib=None, eipoib=None,
         sriov=None, mtu=1500):
    return {
        "name": name, "mac": mac, "link_type": link_type, "kind": kind, "driver": driver,
        "driver_source": "ethtool", "bus_info": bus_info, "pci_address": pci_address, "pci_driver": pci_driver,
        "vendor_id": None, "device_id": None, "model": model, "numa_node": 0, "mtu": mtu,
        "operstate": operstate, "carrier": carrier, "speed_mbps": speed_mbps, "network_mode": network_mode,
        "ib": ib, "ipoib": ipoib, "eipoib": eipoib, "sriov": sriov, "physfn": None,
    }


def _lo():
    return _nic("lo", "loopback", None, "00:00:00:00:00:00", link_type="loopback", operstate="unknown")


def _eth0(mac="84:8f:69:fe:cc:40"):
    return _nic("eth0", "ethernet", "igb", mac, bus_info="0000:02:00.0", pci_address="0000:02:00.0",
                pci_driver="igb", model="I350", speed_mbps=1000)


IPOIB_MAC = "80:00:00:48:fe:80:00:00:00:00:00:00:00:02:c9:03:00:f9:bf:a1"


def _device(name, model, ports, pci="0000:82:00.0", driver="mlx4_core"):
    return {
        "name": name, "node_guid": "0002:c903:00f9:bfa0", "sys_image_guid": "0002:c903:00f9:bfa3",
        "fw_ver": "2.11.500", "board_id": "DEL0A30000019", "hca_type": "MT4099", "hw_rev": "0",
        "node_desc": "node1 HCA-1", "node_type": "CA", "pci_address": pci, "vendor_id": "0x15b3",
        "device_id": "0x1003", "model": model, "driver": driver,
        "ports": {str(p["port"]): dict(p, netdevs=[]) for p in ports}, "netdevs": [],
    }


def _sm(ports):
    return {"%s/%s" % (p["device"], p["port"]): {
        "device": p["device"], "port": p["port"], "state": p["state"], "lid": p["lid"], "sm_lid": p["sm_lid"],
        "sm_present": bool(p["state"] == "ACTIVE" and p["sm_lid"]),
        "sm_local": bool(p["state"] == "ACTIVE" and p["sm_lid"] and p["sm_lid"] == p["lid"]),
    } for p in ports if p["link_layer"] == "InfiniBand"}


def _facts(nics, devices, mode, reasons, ib_ports):
    return {
        "schema": 1, "source": "live", "network_mode": mode, "network_mode_reasons": reasons,
        "nics": {n["name"]: n for n in nics}, "devices": {d["name"]: d for d in devices},
        "subnet_manager": _sm(ib_ports), "warnings": [],
    }


def cx3_ipoib():
    port = _port("mlx4_0", 1)
    ib0 = _nic("ib0", "ipoib", "ib_ipoib", IPOIB_MAC, bus_info="0000:82:00.0", pci_address="0000:82:00.0",
               pci_driver="mlx4_core", model="ConnectX-3", link_type="infiniband", network_mode="infiniband",
               ib=port, ipoib={"mode": "connected", "pkey": "0xffff", "parent": None, "umcast": False},
               mtu=2044)
    return _facts([_lo(), _eth0(), ib0], [_device("mlx4_0", "ConnectX-3", [port])], "infiniband",
                  ["ib0: ib_ipoib (IPoIB on mlx4_0 port 1) -> infiniband"], [port])


def cx3_eipoib(sm_local=True):
    port = _port("mlx4_0", 1, lid=1 if sm_local else 5, sm_lid=1)
    ib0 = _nic("ib0", "ipoib", "ib_ipoib", IPOIB_MAC, bus_info="0000:82:00.0", pci_address="0000:82:00.0",
               pci_driver="mlx4_core", model="ConnectX-3", link_type="infiniband", network_mode="infiniband",
               ib=port, ipoib={"mode": "datagram", "pkey": "0xffff", "parent": None, "umcast": False})
    eth1 = _nic("eth1", "eipoib", "eth_ipoib", "00:02:c9:f9:bf:a1", bus_info="ib0", network_mode="infiniband",
                ib=dict(port), eipoib={"ipoib_interface": "ib0", "slaves": ["ib0"]})
    return _facts([_lo(), _eth0(), ib0, eth1], [_device("mlx4_0", "ConnectX-3", [port])], "infiniband",
                  ["eth1: eth_ipoib (EIPoIB over ib0) -> infiniband", "ib0: ib_ipoib -> infiniband"], [port])


def cx5_roce():
    port = _port("mlx5_0", 1, link_layer="Ethernet", rate="100 Gb/sec (4X EDR)", rate_gbps=100, lid=0, sm_lid=0)
    ens = _nic("ens2f0", "roce", "mlx5_core", "b8:59:9f:00:00:01", bus_info="0000:3b:00.0",
               pci_address="0000:3b:00.0", pci_driver="mlx5_core", model="ConnectX-5", network_mode="ethernet",
               speed_mbps=100000, ib=port)
    return _facts([_lo(), _eth0(), ens], [_device("mlx5_0", "ConnectX-5", [port], pci="0000:3b:00.0",
                                                  driver="mlx5_core")],
                  "ethernet", ["ens2f0: mlx5_core with Ethernet link layer (RoCE) -> ethernet"], [port])


def plain_ethernet():
    bridge = _nic("br0", "virtual", "bridge", "02:00:00:00:00:01")
    return _facts([_lo(), _eth0(), bridge], [], "none", ["no IPoIB, EIPoIB or RoCE interface found"], [])


def mixed():
    ib_port = _port("mlx4_0", 1)
    eth_port = _port("mlx4_0", 2, link_layer="Ethernet", rate="40 Gb/sec (4X QDR)", rate_gbps=40, lid=0, sm_lid=0)
    ib0 = _nic("ib0", "ipoib", "ib_ipoib", IPOIB_MAC, bus_info="0000:82:00.0", pci_address="0000:82:00.0",
               pci_driver="mlx4_core", model="ConnectX-3", link_type="infiniband", network_mode="infiniband",
               ib=ib_port, ipoib={"mode": "datagram", "pkey": "0xffff", "parent": None, "umcast": False})
    eth2 = _nic("eth2", "roce", "mlx4_en", "00:02:c9:00:00:02", bus_info="0000:82:00.0", pci_address="0000:82:00.0",
                pci_driver="mlx4_core", model="ConnectX-3", network_mode="ethernet", speed_mbps=40000, ib=eth_port)
    return _facts([_lo(), _eth0(), ib0, eth2], [_device("mlx4_0", "ConnectX-3", [ib_port, eth_port])], "mixed",
                  ["ib0: ib_ipoib (IPoIB on mlx4_0 port 1) -> infiniband",
                   "eth2: mlx4_en on mlx4_0 port 2 with Ethernet link layer (RoCE) -> ethernet"], [ib_port])


def registered(facts):
    """What ``register:`` holds after a successful ib_facts task."""
    return {"changed": False, "failed": False, "ansible_facts": {"ib_facts": copy.deepcopy(facts)}}


UNREACHABLE = {"unreachable": True, "changed": False,
               "msg": "Failed to connect to the host via ssh: ssh: connect to host 10.0.0.9 port 22: "
                      "Connection refused"}
FAILED = {"failed": True, "msg": "sysfs_root /nope does not exist or is not a directory"}


def lab_results():
    """A four-node discovery like the lab's: one per profile kind plus one unreachable node."""
    return {
        "node1": registered(cx3_ipoib()),
        "node2": registered(cx3_eipoib()),
        "node3": registered(cx5_roce()),
        "node4": UNREACHABLE,
        "node5": registered(plain_ethernet()),
    }
