"""Hardware profiles: compact YAML (lab/profiles/NAME.yml) expanded into a sysfs tree.

CLI (contract with lab-core):
    python -m hw.profile links --profile NAME --node-index I      -> JSON of links/HCAs for lab-core
    python -m hw.profile expand --profile NAME --node-index I --node NODE --out DIR   (inspect a tree)
    python -m hw.profile list
Per-node values derive from node-index I (1-based): GUIDs + (I-1)*0x100, LIDs + (I-1), MACs + (I-1), so
node 1 of a profile built from a capture carries exactly the captured values.
"""
import argparse
import copy
import json
import os
import posixpath
import sys

import yaml

from hw.tree import Tree

PROFILES_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "profiles")
GUID_STRIDE = 0x100
ZERO_GID = "0000:0000:0000:0000:0000:0000:0000:0000"
IB_BROADCAST = "00:ff:ff:ff:ff:12:40:1b:ff:ff:00:00:00:00:00:00:ff:ff:ff:ff"
LINK_KIND = {"ib": "ib", "mgmt": "mgmt", "eth": "eth", "roce": "roce", "eipoib": "eipoib"}


class ProfileError(Exception):
    pass


# ---------------------------------------------------------------- value helpers
def list_profiles():
    return sorted(f[:-4] for f in os.listdir(PROFILES_DIR) if f.endswith(".yml"))


def load_profile(name):
    if name not in list_profiles():
        raise ProfileError(f"unknown profile {name!r}; known: {', '.join(list_profiles())}")
    with open(os.path.join(PROFILES_DIR, name + ".yml"), encoding="utf-8") as fh:
        return yaml.safe_load(fh)


def guid_int(guid):
    return int(guid.replace(":", ""), 16)


def guid_str(value):
    text = f"{value:016x}"
    return ":".join(text[i:i + 4] for i in range(0, 16, 4))


def guid_add(guid, offset):
    return guid_str(guid_int(guid) + offset)


def mac_add(mac, offset):
    value = int(mac.replace(":", ""), 16) + offset
    text = f"{value:012x}"
    return ":".join(text[i:i + 2] for i in range(0, 12, 2))


def gid_str(prefix_hex16, guid):
    """Kernel %pI6 style GID: eight zero-padded groups."""
    text = prefix_hex16 + guid.replace(":", "")
    return ":".join(text[i:i + 4] for i in range(0, 32, 4))


def eui64_from_mac(mac):
    b = [int(x, 16) for x in mac.split(":")]
    b[0] ^= 0x02
    e = b[:3] + [0xFF, 0xFE] + b[3:]
    return ":".join(f"{e[i]:02x}{e[i + 1]:02x}" for i in range(0, 8, 2))


def ipoib_address(flags_cm, qpn, port_guid):
    raw = bytes([0x80 if flags_cm else 0x00]) + qpn.to_bytes(3, "big")
    raw += bytes.fromhex("fe80000000000000" + port_guid.replace(":", ""))
    return ":".join(f"{b:02x}" for b in raw)


def ipoib_broadcast(pkey):
    parts = IB_BROADCAST.split(":")
    full = pkey | 0x8000
    parts[8], parts[9] = f"{full >> 8:02x}", f"{full & 0xff:02x}"
    return ":".join(parts)


def rate_mbps(rate):
    try:
        return int(float(str(rate).split()[0]) * 1000)
    except (ValueError, IndexError):
        return None


def pci_path(pci):
    return f"devices/{pci['parent']}/{pci['address']}"


# ---------------------------------------------------------------- per-node resolution
def resolve(profile, index):
    """Copy of the profile with per-node GUIDs, LIDs and MACs for node-index ``index`` (1-based)."""
    if index < 1:
        raise ProfileError("node-index is 1-based")
    prof = copy.deepcopy(profile)
    off = index - 1
    for dev in prof.get("rdma_devices") or []:
        dev["node_guid"] = guid_add(dev["node_guid"], off * GUID_STRIDE)
        dev["sys_image_guid"] = guid_add(dev["sys_image_guid"], off * GUID_STRIDE)
        for port in dev["ports"]:
            if port["link_layer"] == "InfiniBand":
                port["lid"] = int(port["lid"]) + off
    for nd in prof.get("netdevs") or []:
        if nd.get("mac"):
            nd["mac"] = mac_add(nd["mac"], off * 0x100)
    return prof


def links(profile, index):
    prof = resolve(profile, index)
    out = {"management_interface": None, "links": [], "hcas": []}
    for nd in prof["netdevs"]:
        link = {"name": nd["name"], "kind": LINK_KIND[nd["kind"]], "mtu": nd.get("mtu", 1500),
                "mac": nd.get("mac")}
        if nd["kind"] == "eipoib":
            link["parent"] = nd["parent"]
        if nd["kind"] == "mgmt":
            out["management_interface"] = nd["name"]
        out["links"].append(link)
    for dev in prof.get("rdma_devices") or []:
        ports = []
        for port in dev["ports"]:
            netdev = port.get("roce_netdev")
            for nd in prof["netdevs"]:
                ipo = nd.get("ipoib")
                if ipo and ipo["rdma_device"] == dev["name"] and ipo["port"] == port["port"]:
                    netdev = nd["name"]
            ports.append({"port": port["port"], "link_layer": port["link_layer"], "netdev": netdev})
        out["hcas"].append({"name": dev["name"], "node_guid": dev["node_guid"], "ports": ports})
    return out


# ---------------------------------------------------------------- tree builders
def add_pci_function(tree, path, address, pci, driver=None):
    """A PCI function directory like drivers/pci/pci-sysfs.c shows it."""
    ven, dev = pci["vendor"], pci["device"]
    sven, sdev = pci.get("subsystem_vendor", ven), pci.get("subsystem_device", "0x0000")
    cls = pci.get("class", "0x020000")
    tree.mkdir(path)
    for name in ("vendor", "device", "subsystem_vendor", "subsystem_device", "class"):
        values = {"vendor": ven, "device": dev, "subsystem_vendor": sven, "subsystem_device": sdev, "class": cls}
        tree.file(f"{path}/{name}", values[name])
    tree.file(f"{path}/numa_node", pci.get("numa_node", -1))
    tree.file(f"{path}/local_cpulist", pci.get("local_cpulist", "0-1"))
    tree.file(f"{path}/local_cpus", pci.get("local_cpus", "3"))
    tree.file(f"{path}/enable", "1", mode=0o644)
    tree.file(f"{path}/broken_parity_status", "0", mode=0o644)
    tree.file(f"{path}/msi_bus", "1", mode=0o644)
    tree.file(f"{path}/revision", pci.get("revision", "0x00"))
    tree.file(f"{path}/irq", pci.get("irq", "0"))
    tree.file(f"{path}/driver_override", "(null)", mode=0o644, attr="stored")
    c = int(cls, 16)
    modalias = (f"pci:v0000{int(ven, 16):04X}d0000{int(dev, 16):04X}sv0000{int(sven, 16):04X}"
                f"sd0000{int(sdev, 16):04X}bc{c >> 16:02X}sc{(c >> 8) & 0xff:02X}i{c & 0xff:02X}")
    tree.file(f"{path}/modalias", modalias)
    set_pci_driver(tree, path, address, driver, pci)
    tree.link(f"{path}/subsystem", "bus/pci")
    tree.link(f"bus/pci/devices/{address}", path)


def set_pci_driver(tree, path, address, driver, pci):
    """(Re)bind: driver link, bus/pci/drivers/<drv>/<addr> link and uevent, as the driver core does."""
    old = tree.get(f"{path}/driver")
    if old is not None:
        old_drv = posixpath.basename(old.value)
        tree.remove(f"bus/pci/drivers/{old_drv}/{address}")
        tree.remove(f"{path}/driver")
    cls = pci.get("class", "0x020000")
    ven, dev = pci["vendor"], pci["device"]
    sven, sdev = pci.get("subsystem_vendor", ven), pci.get("subsystem_device", "0x0000")
    lines = []
    if driver:
        add_pci_driver_dir(tree, driver)
        tree.link(f"{path}/driver", f"bus/pci/drivers/{driver}")
        tree.link(f"bus/pci/drivers/{driver}/{address}", path)
        lines.append(f"DRIVER={driver}")
    lines += [f"PCI_CLASS={int(cls, 16):X}", f"PCI_ID={int(ven, 16):04X}:{int(dev, 16):04X}",
              f"PCI_SUBSYS_ID={int(sven, 16):04X}:{int(sdev, 16):04X}", f"PCI_SLOT_NAME={address}"]
    tree.file(f"{path}/uevent", "\n".join(lines), mode=0o644)


def add_pci_driver_dir(tree, driver):
    base = f"bus/pci/drivers/{driver}"
    if tree.get(base) is not None:
        return
    tree.mkdir(base, real=base)
    for name in ("bind", "unbind"):
        tree.file(f"{base}/{name}", "", mode=0o200, attr="driver_" + name, driver=driver)
    tree.file(f"{base}/new_id", "", mode=0o200)
    tree.file(f"{base}/remove_id", "", mode=0o200)
    tree.file(f"{base}/uevent", "", mode=0o200)


def add_module(tree, mod):
    """/sys/module/<name> of a loaded module (initstate, refcnt, version for out-of-tree stacks such as
    MLNX_OFED, drivers/pci:<drv> <-> bus/pci/drivers/<drv>/module links)."""
    base = f"module/{mod['name']}"
    tree.file(f"{base}/initstate", "live")
    tree.file(f"{base}/refcnt", mod.get("refcnt", 0))
    if mod.get("version"):
        tree.file(f"{base}/version", mod["version"])
    for name, value in (mod.get("parameters") or {}).items():
        tree.file(f"{base}/parameters/{name}", value)
    for drv in mod.get("pci_drivers") or []:
        add_pci_driver_dir(tree, drv)
        tree.link(f"{base}/drivers/pci:{drv}", f"bus/pci/drivers/{drv}")
        tree.link(f"bus/pci/drivers/{drv}/module", base)


def add_rdma_device(tree, dev, pci_dir, hostname, netdev_of_port):
    base = f"{pci_dir}/infiniband/{dev['name']}"
    tree.mkdir(base)
    tree.file(f"{base}/node_guid", dev["node_guid"])
    tree.file(f"{base}/sys_image_guid", dev["sys_image_guid"])
    tree.file(f"{base}/node_type", "1: CA")
    tree.file(f"{base}/node_desc", f"{hostname} HCA-1", mode=0o644, attr="stored")
    for name in ("fw_ver", "hca_type", "board_id", "hw_rev"):
        if dev.get(name) is not None:
            tree.file(f"{base}/{name}", dev[name])
    for name, value in (dev.get("extra") or {}).items():
        tree.file(f"{base}/{name}", value)
    tree.file(f"{base}/uevent", f"NAME={dev['name']}", mode=0o644)
    tree.link(f"{base}/device", pci_dir)
    tree.link(f"{base}/subsystem", "class/infiniband")
    tree.link(f"class/infiniband/{dev['name']}", base)
    offset = int(dev.get("port_guid_offset", 0))
    for port in dev["ports"]:
        num = port["port"]
        pdir = f"{base}/ports/{num}"
        ctx = {"rdma_device": dev["name"], "port": num}
        tree.file(f"{pdir}/link_layer", port["link_layer"])
        tree.file(f"{pdir}/rate", port["rate"])
        tree.file(f"{pdir}/cap_mask", port["cap_mask"])
        tree.file(f"{pdir}/lid_mask_count", "0")
        for counter in ("port_rcv_data", "port_xmit_data", "port_rcv_packets", "port_xmit_packets",
                        "symbol_error", "link_downed", "port_rcv_errors"):
            tree.file(f"{pdir}/counters/{counter}", "0")
        if port["link_layer"] == "InfiniBand":
            defaults = {"state": "4: ACTIVE", "phys_state": "5: LinkUp", "lid": f"0x{int(port['lid']):x}",
                        "sm_lid": f"0x{int(port['sm_lid']):x}", "sm_sl": "0"}
            for name, value in defaults.items():
                tree.file(f"{pdir}/{name}", value, attr="port", name=name, **ctx)
            port_guid = guid_add(dev["node_guid"], num if offset else 0)
            for i in range(int(port["gid_table"])):
                tree.file(f"{pdir}/gids/{i}", gid_str("fe80000000000000", port_guid) if i == 0 else ZERO_GID)
            for i in range(int(port["pkey_table"])):
                tree.file(f"{pdir}/pkeys/{i}", "0xffff" if i == 0 else "0x0000")
        else:
            # RoCE: the port follows its netdev; no LIDs. A P_Key table only when the driver has one
            # (mlx4: one entry, 0xffff).
            for name, value in (("state", "4: ACTIVE"), ("phys_state", "5: LinkUp"), ("lid", "0x0"),
                                ("sm_lid", "0x0"), ("sm_sl", "0")):
                tree.file(f"{pdir}/{name}", value)
            for i in range(int(port.get("pkey_table", 0))):
                tree.file(f"{pdir}/pkeys/{i}", "0xffff" if i == 0 else "0x0000")
            ndev = port.get("roce_netdev")
            mac = netdev_of_port.get(ndev, {}).get("mac", "00:00:00:00:00:00")
            link_local = gid_str("fe80000000000000", eui64_from_mac(mac))
            # One default GID per RoCE version the port supports (ConnectX-3: v1 only).
            gid_types = port.get("roce_gid_types") or ["IB/RoCE v1", "RoCE v2"]
            for i in range(int(port["gid_table"])):
                if i < len(gid_types):
                    tree.file(f"{pdir}/gids/{i}", link_local)
                    tree.file(f"{pdir}/gid_attrs/types/{i}", gid_types[i])
                    tree.file(f"{pdir}/gid_attrs/ndevs/{i}", ndev)
                else:
                    tree.file(f"{pdir}/gids/{i}", ZERO_GID)
                    tree.file(f"{pdir}/gid_attrs/types/{i}", None, attr="einval")
                    tree.file(f"{pdir}/gid_attrs/ndevs/{i}", None, attr="einval")
    return base


def netdev_common(tree, ndir, name, ifindex_hint):
    """Defaults for attributes a real veth also has; the node's real link wins when it exists."""
    for attr, value in (("operstate", "up"), ("carrier", "1"), ("flags", "0x1003"), ("dormant", "0"),
                        ("ifindex", ifindex_hint), ("iflink", ifindex_hint), ("tx_queue_len", "1000"),
                        ("ifalias", ""), ("link_mode", "0"), ("carrier_changes", "1"), ("proto_down", "0"),
                        ("uevent", f"INTERFACE={name}\nIFINDEX={ifindex_hint}")):
        tree.file(f"{ndir}/{attr}", value, weak=True, mode=0o644 if attr in ("ifalias", "tx_queue_len") else 0o444)
    tree.link(f"{ndir}/subsystem", "class/net")
    tree.link(f"class/net/{name}", ndir)


def add_ipoib_netdev(tree, name, ndir, pci_dir, port_guid, ipoib, mtu, pkey=0xFFFF, parent=None, ifindex=10,
                     speed=None):
    tree.mkdir(ndir, real=f"class/net/{name}")
    if ndir != f"devices/virtual/net/{name}":
        tree.hidden.add(f"devices/virtual/net/{name}")
    netdev_common(tree, ndir, name, ifindex)
    tree.file(f"{ndir}/mtu", mtu, weak=True, mode=0o644, attr="mtu", netdev=name)
    tree.file(f"{ndir}/type", "32")
    tree.file(f"{ndir}/addr_len", "20")
    tree.file(f"{ndir}/addr_assign_type", "0")
    tree.file(f"{ndir}/address", ipoib_address(ipoib.get("connected_mode", True), int(ipoib["qpn"]), port_guid))
    tree.file(f"{ndir}/broadcast", ipoib_broadcast(pkey))
    port = int(ipoib["port"])
    tree.file(f"{ndir}/dev_id", f"0x{port - 1:x}")
    tree.file(f"{ndir}/dev_port", str(port - 1))
    tree.file(f"{ndir}/features", ipoib.get("features", "0xc20"), weak=True)
    tree.file(f"{ndir}/speed", speed if speed else "", weak=not speed)
    tree.file(f"{ndir}/duplex", "full")
    tree.file(f"{ndir}/pkey", f"0x{pkey:04x}")
    tree.file(f"{ndir}/mode", None, mode=0o644, attr="mode", netdev=name)
    tree.file(f"{ndir}/umcast", "0", mode=0o644, attr="bool01", netdev=name)
    tree.file(f"{ndir}/create_child", "", mode=0o200, attr="create_child", netdev=name)
    tree.file(f"{ndir}/delete_child", "", mode=0o200, attr="delete_child", netdev=name)
    if parent:
        tree.file(f"{ndir}/parent", parent)
    tree.link(f"{ndir}/device", pci_dir)


def add_eth_netdev(tree, name, ndir, device_dir, nd, ifindex):
    tree.mkdir(ndir, real=f"class/net/{name}")
    if ndir != f"devices/virtual/net/{name}":
        tree.hidden.add(f"devices/virtual/net/{name}")
    netdev_common(tree, ndir, name, ifindex)
    tree.file(f"{ndir}/mtu", nd.get("mtu", 1500), weak=True, mode=0o644, attr="mtu", netdev=name)
    tree.file(f"{ndir}/type", "1")
    tree.file(f"{ndir}/addr_len", "6")
    tree.file(f"{ndir}/address", nd.get("mac"), weak=True)
    tree.file(f"{ndir}/broadcast", "ff:ff:ff:ff:ff:ff")
    tree.file(f"{ndir}/dev_id", "0x0")
    # Port index on a multi-port function (mlx4_en: port - 1), as udev's "d1" name suffix uses it.
    tree.file(f"{ndir}/dev_port", str(nd.get("dev_port", 0)))
    if nd.get("speed"):
        tree.file(f"{ndir}/speed", nd["speed"])
        tree.file(f"{ndir}/duplex", "full")
    if nd.get("phys_port_name"):
        tree.file(f"{ndir}/phys_port_name", nd["phys_port_name"])
    if device_dir:
        tree.link(f"{ndir}/device", device_dir)


class Hardware:
    """An expanded profile: the static tree plus what the write logic needs to know."""

    def __init__(self, name, index, hostname):
        self.name, self.index, self.hostname = name, index, hostname
        self.tree = Tree()
        self.netdevs = {}   # name -> dict(kind, dir, pci_dir, ipoib, port_guid, mtu, parent)
        self.pfs = {}       # pci address -> dict(path, parent_dir, pci, sriov)
        self.ports = {}     # "mlx4_0/1" -> default attrs
        self.ethtool = {}   # netdev -> dict(driver, version, fw_version, bus_info)
        self.eipoib = []    # (eth, ib) pairs


def expand(profile, index, hostname):
    prof = resolve(profile, index)
    hw = Hardware(prof["name"], index, hostname)
    tree = hw.tree
    pcis = {}
    for pci in prof.get("pci_devices") or []:
        path = pci_path(pci)
        pcis[pci["address"]] = (path, pci)
        add_pci_function(tree, path, pci["address"], pci, pci.get("driver"))
        for name, value in (pci.get("extra") or {}).items():
            tree.file(f"{path}/{name}", value, mode=0o644)
        if pci.get("virtio_child"):
            vdir = f"{path}/{pci['virtio_child']}"
            tree.file(f"{vdir}/device", "0x0001")
            tree.file(f"{vdir}/vendor", "0x1af4")
            tree.link(f"{vdir}/driver", "bus/virtio/drivers/virtio_net")
        if pci.get("sriov"):
            sr = pci["sriov"]
            tree.file(f"{path}/sriov_totalvfs", sr["totalvfs"])
            tree.file(f"{path}/sriov_numvfs", "0", mode=0o664, attr="sriov_numvfs", pci=pci["address"])
            tree.file(f"{path}/sriov_offset", sr.get("offset", 1))
            tree.file(f"{path}/sriov_stride", sr.get("stride", 1))
            tree.file(f"{path}/sriov_vf_device", sr["vf_device"])
            tree.file(f"{path}/sriov_drivers_autoprobe", "1", mode=0o644, attr="bool01")
            hw.pfs[pci["address"]] = {"path": path, "parent": pci["parent"], "pci": pci, "sriov": sr}
    netdev_by_name = {nd["name"]: nd for nd in prof["netdevs"]}
    ifindex = 10
    dev_by_name = {}
    for dev in prof.get("rdma_devices") or []:
        pdir = pcis[dev["pci"]][0]
        add_rdma_device(tree, dev, pdir, hostname, netdev_by_name)
        dev_by_name[dev["name"]] = dev
        for port in dev["ports"]:
            hw.ports[f"{dev['name']}/{port['port']}"] = {
                "link_layer": port["link_layer"], "lid": f"0x{int(port['lid']):x}",
                "sm_lid": f"0x{int(port['sm_lid']):x}"}
    for nd in prof["netdevs"]:
        ifindex += 1
        name, kind = nd["name"], nd["kind"]
        eth = dict(nd.get("ethtool") or {})
        if kind == "ib":
            ipo = nd["ipoib"]
            dev = dev_by_name[ipo["rdma_device"]]
            pdir = pcis[nd["pci"]][0]
            offset = int(dev.get("port_guid_offset", 0))
            port_guid = guid_add(dev["node_guid"], ipo["port"] if offset else 0)
            port_rate = next(p["rate"] for p in dev["ports"] if p["port"] == ipo["port"])
            ndir = f"{pdir}/net/{name}"
            add_ipoib_netdev(tree, name, ndir, pdir, port_guid, ipo, nd.get("mtu", 2044), ifindex=ifindex,
                             speed=rate_mbps(port_rate))
            hw.netdevs[name] = {"kind": kind, "dir": ndir, "pci_dir": pdir, "ipoib": ipo, "port_guid": port_guid,
                                "mode": ipo.get("mode", "datagram"), "mtu": nd.get("mtu", 2044), "pkey": 0xFFFF,
                                "parent": None, "speed": rate_mbps(port_rate)}
            eth.setdefault("bus_info", nd["pci"])
        elif kind == "eipoib":
            ndir = f"devices/virtual/net/{name}"
            add_eth_netdev(tree, name, ndir, None, nd, ifindex)
            hw.netdevs[name] = {"kind": kind, "dir": ndir, "parent": nd["parent"]}
            hw.eipoib.append((name, nd["parent"]))
            eth.setdefault("bus_info", nd["parent"])
        else:
            pdir, pci = pcis[nd["pci"]]
            ndir = f"{pdir}/{nd['virtio']}/net/{name}" if nd.get("virtio") else f"{pdir}/net/{name}"
            add_eth_netdev(tree, name, ndir, f"{pdir}/{nd['virtio']}" if nd.get("virtio") else pdir, nd, ifindex)
            hw.netdevs[name] = {"kind": kind, "dir": ndir, "pci_dir": pdir}
            eth.setdefault("bus_info", nd["pci"])
        if eth.get("driver"):
            hw.ethtool[name] = eth
    for mod in prof.get("modules") or []:
        add_module(tree, mod)
    if hw.eipoib:
        text = "".join(f"{e} over IB port: {i}\n" for e, i in hw.eipoib)
        tree.file("class/net/eth_ipoib_interfaces", text, attr="eipoib_interfaces")
    return hw


def ethtool_table(ethtool):
    """Text the LD_PRELOAD shim reads: one line per netdev, tab separated, '-' for empty."""
    lines = []
    for name in sorted(ethtool):
        e = ethtool[name]
        fields = [name, e.get("driver") or "-", e.get("version") or "-", e.get("fw_version") or "-",
                  e.get("bus_info") or "-"]
        lines.append("\t".join(f.replace("\t", " ") for f in fields))
    return "\n".join(lines) + "\n"


def main(argv=None):
    ap = argparse.ArgumentParser(prog="hw.profile")
    sub = ap.add_subparsers(dest="cmd", required=True)
    p_links = sub.add_parser("links")
    p_links.add_argument("--profile", required=True)
    p_links.add_argument("--node-index", type=int, required=True)
    p_exp = sub.add_parser("expand")
    p_exp.add_argument("--profile", required=True)
    p_exp.add_argument("--node-index", type=int, required=True)
    p_exp.add_argument("--node", default="node1")
    p_exp.add_argument("--out", required=True)
    sub.add_parser("list")
    args = ap.parse_args(argv)
    try:
        if args.cmd == "list":
            print("\n".join(list_profiles()))
        elif args.cmd == "links":
            print(json.dumps(links(load_profile(args.profile), args.node_index)))
        else:
            hw = expand(load_profile(args.profile), args.node_index, args.node)
            hw.tree.write_out(args.out)
            print(args.out)
    except ProfileError as exc:
        print(f"hw.profile: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
