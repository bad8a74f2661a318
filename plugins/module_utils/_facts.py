# -*- coding: utf-8 -*-
# Copyright: hpcnet.infiniband contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""InfiniBand host networking facts (``ib_facts``, schema 1) read from sysfs through the Host seam.

The schema is the contract documented in docs/facts.md. Public API (docs/dev/contracts.md section 4):
``gather(host, interfaces=None, pkeys="physical", lean=False)``, ``read_device(host, device, pkeys=False)``,
``read_port(host, device, port, pkeys=False)``, ``read_netdev(host, name, pkeys="none")``, ``port_of(facts, nic)``,
``complete_pkeys(host, nics, names)``, ``expand(facts)`` (a lean result back in the full form).

Reading rules:
- Everything is read through the Host (``opendir``/``SysDir``, ``listdir``, inside ``Host.cached()``:
  links resolved by hand inside ``sysfs_root``); names read from the tree are validated before they
  become path components.
- A missing or empty attribute is ``None``. An attribute that exists but cannot be parsed (garbage,
  binary) is ``None`` plus an entry in ``warnings``; a link that loops or leaves the root likewise.
- Cost is linear in the number of netdevs, RDMA ports and P_Key table entries: each directory is
  resolved once and its attributes are read relative to the resolved (link-free) directory.
"""

from __future__ import annotations

import os
import re

from ansible_collections.hpcnet.infiniband.plugins.module_utils import _ids
from ansible_collections.hpcnet.infiniband.plugins.module_utils._host import (
    ATTR_MAX_BYTES,
    PCI_ADDRESS_RE,
    oversized,
    valid_ifname,
    valid_rdma_device,
)
from ansible_collections.hpcnet.infiniband.plugins.module_utils._values import (
    PARTITION_MASK,
    format_guid,
    format_pkey,
    guid_or_none,
    pkey_or_none,
)

__all__ = [
    "SCHEMA_VERSION",
    "FactsError",
    "gather",
    "read_device",
    "read_port",
    "read_netdev",
    "port_of",
    "complete_pkeys",
    "expand",
    "LEAN_IB_FIELDS",
    "LEAN_SM_FIELDS",
    "SHORT_NIC_FIELDS",
    "PKEYS_CHOICES",
]

SCHEMA_VERSION = 1
MAX_WARNINGS = 200
# Which ports' P_Key tables a gather reads (module option ``pkeys``).
PKEYS_ALL, PKEYS_PHYSICAL, PKEYS_NONE = "all", "physical", "none"
PKEYS_CHOICES = (PKEYS_ALL, PKEYS_PHYSICAL, PKEYS_NONE)
# Lean results (the ib_facts module's default): the handling of a result costs per value, on the module side
# (exit_json's no_log walk, JSON) and far more on the controller (JSON decoding, fact cleaning, copies,
# the callback's output), so a lean result says each thing once. A netdev refers to its port ...
LEAN_IB_FIELDS = ("device", "port")
# ... a subnet_manager entry keeps what no port record says (the port's state, LIDs and SL are in devices) ...
LEAN_SM_FIELDS = ("sm_present", "sm_local")
# ... and records leave out what their key or another section says (docs/facts.md#lean-results).
_LEAN_DEVICE_DROP = ("name", "netdevs")
_LEAN_PORT_DROP = ("device", "port", "netdevs")
# At most this many interface names in one grouped network_mode_reasons sentence.
REASON_NAMES_SHOWN = 4
_NO_MODE_REASON = "no IPoIB, EIPoIB or RoCE interface found"
# ... and what a loopback or virtual netdev without an RDMA port keeps (discovery leaves them out).
SHORT_NIC_FIELDS = ("name", "ifindex", "mac", "type", "link_type", "kind", "virtual", "driver", "driver_source",
                    "bus_info", "mtu", "operstate", "carrier", "speed_mbps", "master", "network_mode")

# ARPHRD_* -> the name iproute2 prints as "link/<name>".
LINK_TYPES = {
    1: "ether",
    6: "ieee802",
    24: "ieee1394",
    32: "infiniband",
    256: "slip",
    512: "ppp",
    768: "ipip",
    769: "tunnel6",
    772: "loopback",
    776: "sit",
    778: "gre",
    783: "irda",
    801: "ieee802.11",
    803: "ieee802.11/radiotap",
    823: "ip6gre",
    65534: "none",
}
ARPHRD_ETHER = 1
ARPHRD_INFINIBAND = 32
ARPHRD_LOOPBACK = 772

# Port attributes as the kernel prints them: "4: ACTIVE", "5: LinkUp".
_CODE_NAME_RE = re.compile(r"^\s*(\d+)\s*:\s*(\S.*?)\s*$")
_GID_RE = re.compile(r"^([0-9a-f]{4}:){7}[0-9a-f]{4}$")
# "56 Gb/sec (4X FDR)": a few digits; a rate that needs more is garbage, not a fast link.
_RATE_RE = re.compile(r"^\s*(\d{1,5}(?:\.\d{1,3})?)\s*Gb/sec")
MAX_RATE_GBPS = 100000
# A link-layer address is at most MAX_ADDR_LEN (32) bytes; the longest in use is IPoIB's 20 bytes.
_MAC_RE = re.compile(r"^[0-9a-f]{2}(?::[0-9a-f]{2}){0,19}$")
# Free-text attributes (IB node_desc is 64 bytes; fw_ver, board_id, hca_type... are short strings).
TEXT_MAX_CHARS = 64
_HEX_ID_RE = re.compile(r"^0x[0-9a-f]{1,8}$")
_IPOIB_CHILD_RE = re.compile(r"^(.+)\.([0-9a-f]{4})$")
_EIPOIB_LINE_RE = re.compile(r"^\s*(\S+)\s+over\s+IB\s+port:\s*(\S+)\s*$")
_VIRTFN_RE = re.compile(r"^virtfn(\d+)$")

# What `ethtool -i` says (driver, bus-info) for virtual devices, keyed by uevent DEVTYPE
# (br_get_drvinfo says bus-info "N/A"; vlan, bonding, macvlan, vxlan, veth leave it empty).
_VIRTUAL_DRIVERS = {
    "bridge": ("bridge", "N/A"),
    "bond": ("bonding", None),
    "vlan": ("802.1Q VLAN Support", None),
    "macvlan": ("macvlan", None),
    "vxlan": ("vxlan", None),
    "veth": ("veth", None),
    "openvswitch": ("openvswitch", None),
}
_IFF_TAP = 0x0002

# PCI drivers whose Ethernet netdev has another driver name in ethtool (ethtool names the netdev's
# driver, sysfs names the PCI function's driver).
_PCI_TO_ETH_DRIVER = {"mlx4_core": "mlx4_en"}


class FactsError(Exception):
    """Bad input (sysfs_root not a sysfs tree, unknown interface): one clear message."""


# ---------------------------------------------------------------------------------------------------
# Reading layer
# ---------------------------------------------------------------------------------------------------
class _Reader:
    """Warning-collecting reads of one gather through the Host seam (``Host.opendir``/``SysDir``,
    inside ``Host.cached()``): attribute text is decoded here so that binary content is a warning."""

    def __init__(self, host):
        self.host = host
        self.warnings = []
        self._dropped = 0

    # -- warnings
    def warn(self, message):
        if message in self.warnings:
            return
        if len(self.warnings) >= MAX_WARNINGS:
            self._dropped += 1
            return
        self.warnings.append(message)

    def all_warnings(self):
        out = list(getattr(self.host, "warnings", []) or [])
        out.extend(w for w in self.warnings if w not in out)
        if self._dropped:
            out.append("%d more warnings not shown" % self._dropped)
        return out

    def dir(self, rel, label=None):
        sysdir = self.host.opendir(rel)
        return _Dir(self, label or rel, sysdir) if sysdir is not None else None

    def explain_unresolvable(self, rel):
        """Why ``rel`` (a link) does not resolve: 'escapes', 'loop', 'dangling' or None (not a link)."""
        parent, _sep, name = rel.rpartition("/")
        pdir = self.host.opendir(parent)
        return pdir.unresolved_reason(name) if pdir is not None else None

    def decode(self, data, label, name):
        if not data:
            return None
        if oversized(data):
            self.warn("%s/%s: larger than a sysfs attribute (%d bytes); ignored" % (label, name, ATTR_MAX_BYTES))
            return None
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            self.warn("%s/%s: binary content ignored" % (label, name))
            return None
        text = text.strip()
        if not text:
            return None
        if not text.isprintable() and not text.replace("\n", "").replace("\t", "").isprintable():
            self.warn("%s/%s: binary content ignored" % (label, name))
            return None
        return text


class _Dir:
    """A resolved sysfs directory (a ``SysDir``) with its attributes' text cached; ``label`` is the
    logical path used in warnings. Names may be relative paths ("gids/0"): each component is opened
    as a ``SysDir`` entry."""

    __slots__ = ("reader", "label", "sysdir", "real", "_cache")

    def __init__(self, reader, label, sysdir):
        self.reader = reader
        self.label = label
        self.sysdir = sysdir
        self.real = sysdir.rel
        self._cache = {}

    def prefetch(self, names):
        """Read these attributes (single names) in one pass (one directory open)."""
        missing = [n for n in names if n not in self._cache]
        if missing:
            decode, label = self.reader.decode, self.label
            for name, data in self.sysdir.read_bytes(missing).items():
                self._cache[name] = decode(data, label, name)

    def _leaf(self, name):
        """(SysDir holding the last component of ``name``, that component), or (None, None)."""
        sysdir = self.sysdir
        parts = name.split("/")
        for part in parts[:-1]:
            sysdir = sysdir.opendir(part)
            if sysdir is None:
                return None, None
        return sysdir, parts[-1]

    def read(self, name):
        try:
            return self._cache[name]
        except KeyError:
            pass
        sysdir, leaf = self._leaf(name)
        data = sysdir.read_bytes((leaf,))[leaf] if sysdir is not None else None
        value = self._cache[name] = self.reader.decode(data, self.label, name)
        return value

    def read_int(self, name, base=10):
        text = self.read(name)
        if text is None:
            return None
        try:
            return int(text, base)
        except ValueError:
            pass
        if base == 10:
            try:
                return int(text, 0)
            except ValueError:
                pass
        self.reader.warn("%s/%s: cannot parse %r as an integer" % (self.label, name, text[:40]))
        return None

    def read_text(self, name, limit=TEXT_MAX_CHARS):
        """Free-text attribute of at most ``limit`` characters; longer -> None + warning."""
        text = self.read(name)
        if text is not None and len(text) > limit:
            self.reader.warn("%s/%s: longer than %d characters; ignored" % (self.label, name, limit))
            return None
        return text

    def read_mac(self, name="address"):
        """Link-layer address: hex pairs, at most 20 bytes (IPoIB); anything else -> None + warning."""
        text = self.read(name)
        if text is None:
            return None
        low = text.lower()
        if not _MAC_RE.match(low):
            self.reader.warn("%s/%s: not a link-layer address (hex pairs, 20 bytes at most): %r" % (
                self.label, name, text[:40]))
            return None
        return low

    def read_guid(self, name):
        """GUID attribute -> kernel sysfs format ``0002:c903:00a1:b2c1`` (through _values)."""
        text = self.read(name)
        if text is None:
            return None
        number = guid_or_none(text)
        if number is None:
            self.reader.warn("%s/%s: not a GUID: %r" % (self.label, name, text[:40]))
            return None
        return format_guid(number)

    def read_hex(self, name):
        """Hex attribute ('0x3a4') -> int."""
        text = self.read(name)
        if text is None:
            return None
        try:
            return int(text, 16)
        except ValueError:
            self.reader.warn("%s/%s: cannot parse %r as a hex number" % (self.label, name, text[:40]))
            return None

    def read_id(self, name):
        """PCI ID attribute ('0x15b3') -> normalised lower-case '0x15b3' string."""
        text = self.read(name)
        if text is None:
            return None
        low = text.lower()
        if not _HEX_ID_RE.match(low):
            self.reader.warn("%s/%s: not a hex ID: %r" % (self.label, name, text[:40]))
            return None
        return "0x%04x" % int(low, 16)

    def read_code_name(self, name):
        """'4: ACTIVE' -> (4, 'ACTIVE'); garbage -> (None, None) + warning."""
        text = self.read(name)
        if text is None:
            return None, None
        match = _CODE_NAME_RE.match(text)
        if not match:
            self.reader.warn("%s/%s: unexpected value %r" % (self.label, name, text[:40]))
            return None, None
        return int(match.group(1)), match.group(2)

    def listdir(self, name=None):
        if name:
            sub = self.sub(name)
            return sub.listdir() if sub is not None else []
        return self.sysdir.listdir()

    def sub(self, name):
        sysdir, leaf = self._leaf(name)
        sysdir = sysdir.opendir(leaf) if sysdir is not None else None
        return _Dir(self.reader, self.label + "/" + name, sysdir) if sysdir is not None else None

    def exists(self, name):
        sysdir, leaf = self._leaf(name)
        return sysdir is not None and sysdir.exists(leaf)

    def link_name(self, name):
        """Basename of the target of link ``name`` (``driver`` -> ``mlx4_core``)."""
        base = self.sysdir.readlink_name(name)
        return base if base and valid_rdma_device(base) else None


# ---------------------------------------------------------------------------------------------------
# Value helpers
# ---------------------------------------------------------------------------------------------------
def _rate_gbps(rate, reader, label):
    """'56 Gb/sec (4X FDR)' -> 56; a value no link has (or no number) -> None + warning."""
    if not rate:
        return None
    match = _RATE_RE.match(rate)
    value = float(match.group(1)) if match else None
    if value is None or value > MAX_RATE_GBPS:
        reader.warn("%s: not a link rate: %r" % (label, rate[:40]))
        return None
    return int(value) if value.is_integer() else value


def _port_guid_from_gid(gid):
    if not gid or not _GID_RE.match(gid):
        return None
    return gid[20:]


def _numeric_key(name):
    try:
        return (0, int(name))
    except ValueError:
        return (1, name)


def _pci_address(name):
    return name if isinstance(name, str) and PCI_ADDRESS_RE.match(name) else None


# ---------------------------------------------------------------------------------------------------
# RDMA devices and ports
# ---------------------------------------------------------------------------------------------------
_PORT_ATTRS = ("state", "phys_state", "rate", "link_layer", "lid", "sm_lid", "sm_sl", "lid_mask_count",
               "cap_mask")


def _read_port(reader, ibdev_dir, device, port, read_table=True):
    label = "class/infiniband/%s/ports/%s" % (device, port)
    pdir = ibdev_dir.sub("ports/%s" % port) if ibdev_dir is not None else None
    if pdir is None:
        return None
    pdir.label = label
    pdir.prefetch(_PORT_ATTRS)
    state_code, state = pdir.read_code_name("state")
    phys_code, phys_state = pdir.read_code_name("phys_state")
    rate = pdir.read_text("rate")
    gid0 = None
    gid_text = pdir.read("gids/0")
    if gid_text is not None:
        low = gid_text.lower()
        if _GID_RE.match(low):
            gid0 = low
        else:
            reader.warn("%s/gids/0: not a GID: %r" % (label, gid_text[:60]))
    # None (unknown) when the table is not read (read_table=False) or the port has no pkeys/ directory.
    table = pdir.sysdir.opendir("pkeys") if read_table else None
    pkeys = [] if table is not None else None
    if table is not None:
        for index, raw in _read_pkey_table(reader, table, label + "/pkeys"):
            number = pkey_or_none(raw)
            if number is not None:
                pkeys.append(format_pkey(number))
            elif not _empty_pkey_slot(raw):
                reader.warn("%s/pkeys/%s: not a P_Key: %r" % (label, index, raw[:40]))
    link_layer = pdir.read("link_layer")
    # Kernels before link_layer existed (2.6.3x) only had InfiniBand ports.
    if link_layer is None and state is not None:
        link_layer = "InfiniBand"
    lid = pdir.read_hex("lid")
    sm_lid = pdir.read_hex("sm_lid")
    return {
        "device": device,
        "port": int(port) if str(port).isdigit() else port,
        "link_layer": link_layer,
        "state": state,
        "state_code": state_code,
        "phys_state": phys_state,
        "phys_state_code": phys_code,
        "rate": rate,
        "rate_gbps": _rate_gbps(rate, reader, label + "/rate"),
        "lid": lid,
        "sm_lid": sm_lid,
        "sm_sl": pdir.read_int("sm_sl"),
        "lid_mask_count": pdir.read_int("lid_mask_count"),
        "cap_mask": pdir.read_text("cap_mask"),
        "port_guid": _port_guid_from_gid(gid0),
        "gid0": gid0,
        "pkeys": pkeys,
        "netdevs": [],
        # RoCE: the netdev the kernel bound to GID 0 (Ethernet link layer only).
        "_ndev0": _gid_ndev(pdir) if link_layer == "Ethernet" else None,
    }


def _empty_pkey_slot(raw):
    """0x0000 / 0x8000: a slot that names no partition (left out silently, as the kernel shows them)."""
    try:
        return int(raw, 16) & PARTITION_MASK == 0
    except ValueError:
        return False


def _read_pkey_table(reader, table, label):
    """[(index, text)] of a P_Key table (one file per entry), in numeric order; entries reading exactly
    ``0x0000`` (empty slots: most of a table) are left out."""
    names = [name for name in table.listdir() if name.isdigit()]
    rows = [(name, reader.decode(data, label, name)) for name, data in table.read_bytes(names, 256).items()
            if data is not None and data != b"0x0000\n"]
    rows.sort(key=lambda item: int(item[0]))
    return [row for row in rows if row[1] is not None]


def _gid_ndev(pdir):
    name = pdir.read("gid_attrs/ndevs/0")
    return name if name and valid_ifname(name) else None


def _read_device(reader, ctx, device, pkeys=PKEYS_ALL):
    label = "class/infiniband/%s" % device
    ddir = reader.dir(label)
    info = {
        "name": device,
        "node_guid": None,
        "sys_image_guid": None,
        "fw_ver": None,
        "board_id": None,
        "hca_type": None,
        "hw_rev": None,
        "node_desc": None,
        "node_type": None,
        "node_type_code": None,
        "pci_address": None,
        "vendor_id": None,
        "device_id": None,
        "model": None,
        "driver": None,
        "numa_node": None,
        "ports": {},
        "netdevs": [],
    }
    if ddir is None:
        why = reader.explain_unresolvable(label)
        if why == "escapes":
            reader.warn("%s: link points outside sysfs_root; ignored" % label)
        elif why == "loop":
            reader.warn("%s: symlink loop; ignored" % label)
        else:
            reader.warn("%s: device directory missing (incomplete capture?)" % label)
        return info, None
    ddir.label = label
    ddir.prefetch(("node_guid", "sys_image_guid", "fw_ver", "board_id", "hca_type", "hw_rev", "node_desc",
                   "node_type"))
    info["node_guid"] = ddir.read_guid("node_guid")
    info["sys_image_guid"] = ddir.read_guid("sys_image_guid")
    for key in ("fw_ver", "board_id", "hca_type", "hw_rev", "node_desc"):
        info[key] = ddir.read_text(key)
    info["node_type_code"], info["node_type"] = ddir.read_code_name("node_type")
    pci = ctx.pci_info(ddir, label + "/device") if ctx is not None else _PciContext(reader).pci_info(
        ddir, label + "/device")
    if pci is not None:
        info["pci_address"] = pci["pci_address"]
        info["vendor_id"] = pci["vendor_id"]
        info["device_id"] = pci["device_id"]
        info["model"] = pci["model"]
        info["driver"] = pci["pci_driver"]
        info["numa_node"] = pci["numa_node"]
    # "physical": a VF's table is left out (one firmware command per entry on real HCAs, 128 per port,
    # for a table that the SM or the PF driver manages for a guest).
    read_tables = pkeys == PKEYS_ALL or (pkeys == PKEYS_PHYSICAL and not (pci and pci["is_vf"]))
    for port in sorted(ddir.listdir("ports"), key=_numeric_key):
        if not port.isdigit():
            reader.warn("%s/ports/%s: not a port number; ignored" % (label, port[:40]))
            continue
        data = _read_port(reader, ddir, device, port, read_tables)
        if data is not None:
            info["ports"][port] = data
    return info, (pci["real"] if pci else None)


class _PciContext:
    """Per-PCI-function facts, read once per function (many netdevs may share one)."""

    def __init__(self, reader):
        self.reader = reader
        self._cache = {}

    def pci_info(self, owner_dir, device_label):
        """Facts of the device ``owner_dir``/device points to (a PCI function, or virtio on PCI)."""
        dev = owner_dir.sub("device")
        if dev is None:
            return None
        if dev.real in self._cache:
            return self._cache[dev.real]
        dev.label = device_label
        base = os.path.basename(dev.real)
        pci_dir = dev
        if not _pci_address(base):
            # virtio0 -> its parent is the PCI function (what ethtool's bus-info shows).
            parent_real = os.path.dirname(dev.real)
            if _pci_address(os.path.basename(parent_real)):
                pci_dir = self.reader.dir(parent_real, device_label + "/..") or dev
        address = _pci_address(os.path.basename(pci_dir.real))
        if address:
            pci_dir.prefetch(("vendor", "device", "numa_node", "sriov_totalvfs", "sriov_numvfs"))
        info = {
            "real": dev.real,
            "pci_real": pci_dir.real if address else None,
            "bus_name": base if valid_rdma_device(base) else None,
            "pci_address": address,
            "pci_driver": dev.link_name("driver"),
            "vendor_id": pci_dir.read_id("vendor") if address else None,
            "device_id": pci_dir.read_id("device") if address else None,
            "numa_node": pci_dir.read_int("numa_node") if address else None,
            "model": None,
            "is_vf": False,
            "physfn": None,
            "sriov": None,
        }
        known = _ids.lookup(info["vendor_id"], info["device_id"])
        if known:
            info["model"] = known["model"]
        if address:
            if pci_dir.exists("physfn"):
                info["is_vf"] = True
                phys = pci_dir.sub("physfn")
                info["physfn"] = _pci_address(os.path.basename(phys.real)) if phys is not None else None
            total = pci_dir.read_int("sriov_totalvfs")
            if total is not None:
                vfs = []
                for entry in pci_dir.listdir():
                    match = _VIRTFN_RE.match(entry)
                    if not match:
                        continue
                    vf_dir = pci_dir.sub(entry)
                    vfs.append({
                        "index": int(match.group(1)),
                        "pci_address": _pci_address(os.path.basename(vf_dir.real)) if vf_dir else None,
                        "netdev": None,
                        "_real": vf_dir.real if vf_dir else None,
                    })
                vfs.sort(key=lambda vf: vf["index"])
                info["sriov"] = {
                    "totalvfs": total,
                    "numvfs": pci_dir.read_int("sriov_numvfs"),
                    "vfs": vfs,
                }
        self._cache[dev.real] = info
        return info


# ---------------------------------------------------------------------------------------------------
# Gathering context: what is shared between netdevs
# ---------------------------------------------------------------------------------------------------
class _Context(_PciContext):
    def __init__(self, host, pkeys=PKEYS_ALL):
        super().__init__(_Reader(host))
        self.host = host
        self.pkeys = pkeys
        self.devices = {}
        self.dev_by_pci = {}  # resolved device dir -> [ibdev, ...]
        self.roce_ndev = {}  # netdev -> (ibdev, port)
        self.eipoib = {}  # eipoib netdev -> ipoib interface
        self.nics = {}
        self.netdev_dirs = {}
        self.class_net = None  # SysDir of class/net
        self._ib_loaded = False
        self._eipoib_loaded = False

    def load_rdma(self, only=None):
        """Read the RDMA devices (all, or those named in ``only``) and class/net/eth_ipoib_interfaces."""
        if self._ib_loaded:
            return
        self._ib_loaded = True
        for name in self.host.listdir("class/infiniband"):
            if only is not None and name not in only:
                continue
            if not valid_rdma_device(name):
                self.reader.warn("class/infiniband/%r: invalid RDMA device name; ignored" % name[:40])
                continue
            info, real = _read_device(self.reader, self, name, self.pkeys)
            self.devices[name] = info
            if real is not None:
                self.dev_by_pci.setdefault(real, []).append(name)
            for port, pdata in info["ports"].items():
                ndev = pdata.pop("_ndev0", None)
                if ndev:
                    self.roce_ndev.setdefault(ndev, (name, port))
        self.load_eipoib()

    def load_eipoib(self):
        """EIPoIB interfaces and the IPoIB interface each runs over (class/net/eth_ipoib_interfaces)."""
        if self._eipoib_loaded:
            return
        self._eipoib_loaded = True
        text = self.reader.dir("class/net")
        raw = text.read("eth_ipoib_interfaces") if text is not None else None
        if raw:
            for line in raw.splitlines():
                match = _EIPOIB_LINE_RE.match(line)
                if match and valid_ifname(match.group(1)) and valid_ifname(match.group(2)):
                    self.eipoib[match.group(1)] = match.group(2)
                elif line.strip():
                    self.reader.warn("class/net/eth_ipoib_interfaces: unexpected line %r" % line[:60])

    def scan_rdma(self):
        """Light pass over every RDMA device, for a restricted gather: {PCI device dir: [devices]} and
        {netdev named by GID 0 of an Ethernet port: device} (what placing a netdev on a port needs),
        without reading the devices' other attributes or P_Key tables."""
        by_pci, by_ndev = {}, {}
        reader = self.reader
        for name in self.host.listdir("class/infiniband"):
            if not valid_rdma_device(name):
                continue
            ddir = reader.dir("class/infiniband/" + name)
            if ddir is None:
                continue
            dev = ddir.sub("device")
            if dev is not None:
                by_pci.setdefault(dev.real, []).append(name)
            for port in ddir.listdir("ports"):
                if not port.isdigit():
                    continue
                pdir = ddir.sub("ports/" + port)
                if pdir is not None and pdir.read("link_layer") == "Ethernet":
                    ndev = _gid_ndev(pdir)
                    if ndev:
                        by_ndev.setdefault(ndev, name)
        return by_pci, by_ndev

    def port(self, device, port):
        dev = self.devices.get(device)
        if not dev:
            return None
        return dev["ports"].get(str(port))


def _empty_nic(name):
    return {
        "name": name,
        "ifindex": None,
        "mac": None,
        "type": None,
        "link_type": None,
        "kind": None,
        "driver": None,
        "driver_source": "unknown",
        "driver_version": None,
        "firmware_version": None,
        "bus_info": None,
        "pci_address": None,
        "pci_driver": None,
        "vendor_id": None,
        "device_id": None,
        "model": None,
        "numa_node": None,
        "mtu": None,
        "operstate": None,
        "carrier": None,
        "speed_mbps": None,
        "dev_port": None,
        "virtual": False,
        "is_vf": False,
        "physfn": None,
        "master": None,
        "network_mode": None,
        "ib": None,
        "ipoib": None,
        "eipoib": None,
        "sriov": None,
    }


# IPoIB's attributes are read in the same pass: cheaper than a second pass for IPoIB netdevs, and
# on others a missing file costs one failed open.
_NETDEV_ATTRS = ("ifindex", "address", "type", "mtu", "operstate", "carrier", "speed", "dev_port", "dev_id",
                 "mode", "pkey", "umcast", "parent")


def _netdev(ctx, name):
    """Facts of one netdev (without the cross-netdev parts: children, VF netdev names)."""
    reader = ctx.reader
    label = "class/net/%s" % name
    nic = _empty_nic(name)
    ndir = reader.dir(label)
    target = (ctx.class_net.readlink(name) if ctx.class_net is not None else None) or ""
    if ndir is None:
        why = reader.explain_unresolvable(label)
        if why == "escapes":
            reader.warn("%s: link points outside sysfs_root; ignored" % label)
        elif why == "loop":
            reader.warn("%s: symlink loop; ignored" % label)
        elif why == "dangling" and "/virtual/" not in "/" + target:
            reader.warn("%s: device directory missing (incomplete capture?)" % label)
    else:
        ndir.label = label
    is_virtual = "devices/virtual/" in target or (ndir is not None and "devices/virtual/" in ndir.real)
    nic["virtual"] = bool(is_virtual)
    ctx.netdev_dirs[name] = ndir
    if ndir is not None:
        ndir.prefetch(_NETDEV_ATTRS)
        nic["ifindex"] = ndir.read_int("ifindex")
        nic["mac"] = ndir.read_mac("address")
        nic["type"] = ndir.read_int("type")
        nic["mtu"] = ndir.read_int("mtu")
        nic["operstate"] = ndir.read("operstate")
        carrier = ndir.read("carrier")
        nic["carrier"] = {"1": True, "0": False}.get(carrier) if carrier is not None else None
        speed = ndir.read("speed")
        try:
            nic["speed_mbps"] = int(speed) if speed is not None and int(speed) > 0 else None
        except ValueError:
            reader.warn("%s/speed: cannot parse %r as an integer" % (label, speed[:40]))
        nic["dev_port"] = ndir.read_int("dev_port")
        master = ndir.link_name("master")
        nic["master"] = master if master and valid_ifname(master) else None
    if nic["type"] is not None:
        nic["link_type"] = LINK_TYPES.get(nic["type"], str(nic["type"]))
    pci = ctx.pci_info(ndir, label + "/device") if ndir is not None else None
    if pci is not None:
        for key in ("pci_address", "pci_driver", "vendor_id", "device_id", "model", "numa_node",
                    "is_vf", "physfn"):
            nic[key] = pci[key]
        if pci["sriov"] is not None:
            nic["sriov"] = {
                "totalvfs": pci["sriov"]["totalvfs"],
                "numvfs": pci["sriov"]["numvfs"],
                "vfs": [dict((k, v) for k, v in vf.items() if not k.startswith("_"))
                        for vf in pci["sriov"]["vfs"]],
            }
    return nic, ndir, pci


def _ipoib_attrs(ndir):
    if ndir is None:
        return None
    mode = ndir.read("mode")
    pkey_raw = ndir.read("pkey")
    if mode is None and pkey_raw is None and not ndir.exists("create_child"):
        return None
    number = pkey_or_none(pkey_raw) if pkey_raw is not None else None
    pkey = format_pkey(number) if number is not None else None
    if pkey_raw is not None and pkey is None:
        ndir.reader.warn("%s/pkey: not a P_Key: %r" % (ndir.label, pkey_raw[:40]))
    umcast = ndir.read("umcast")
    parent = ndir.read("parent")
    if parent is not None and not valid_ifname(parent):
        ndir.reader.warn("%s/parent: invalid interface name %r" % (ndir.label, parent[:40]))
        parent = None
    return {
        "mode": mode,
        "pkey": pkey,
        "parent": parent,
        "umcast": {"1": True, "0": False}.get(umcast) if umcast is not None else None,
        "children": [],
    }


def _find_ib_port(ctx, nic, ndir, pci, want_layer):
    """(device, port) of the RDMA port behind this netdev, or (None, None)."""
    name = nic["name"]
    if name in ctx.roce_ndev:
        return ctx.roce_ndev[name]
    if pci is None:
        return None, None
    candidates = list(ctx.dev_by_pci.get(pci["real"], []))
    if not candidates and ndir is not None:
        for entry in ctx.host.listdir(pci["real"] + "/infiniband"):
            if entry in ctx.devices:
                candidates.append(entry)
    if not candidates:
        return None, None
    dev_port = nic["dev_port"]
    dev_id = ndir.read_hex("dev_id") if ndir is not None else None
    if dev_port:
        index = dev_port + 1
    elif dev_id:
        index = dev_id + 1
    else:
        index = 1
    for device in candidates:
        ports = ctx.devices[device]["ports"]
        port = ports.get(str(index))
        if port is not None and (want_layer is None or port["link_layer"] == want_layer):
            return device, str(index)
    # dev_port did not lead to a port of the right link layer: take the only one that fits.
    fitting = [(d, p) for d in candidates for p, data in sorted(ctx.devices[d]["ports"].items())
               if want_layer is None or data["link_layer"] == want_layer]
    if len(fitting) == 1:
        return fitting[0]
    return None, None


def _uevent_devtype(ndir):
    text = ndir.read("uevent") if ndir is not None else None
    if not text:
        return None
    for line in text.splitlines():
        if line.startswith("DEVTYPE="):
            return line[8:].strip() or None
    return None


def _classify(ctx, nic, ndir, pci):
    name = nic["name"]
    ntype = nic["type"]
    ipoib = _ipoib_attrs(ndir) if (ntype in (ARPHRD_INFINIBAND, None)) else None
    if ntype is None and ipoib is not None and ipoib["mode"] is None and ipoib["pkey"] is None:
        ipoib = None
    if ntype == ARPHRD_LOOPBACK or (name == "lo" and (nic["virtual"] or ndir is None)):
        return "loopback", None
    if name in ctx.eipoib or (ndir is not None and ndir.exists("eth/slaves")):
        return "eipoib", None
    if ntype == ARPHRD_INFINIBAND or ipoib is not None:
        child = False
        if ipoib is not None and ipoib["parent"]:
            child = True
        else:
            match = _IPOIB_CHILD_RE.match(name)
            if match and match.group(1) in ctx.all_names:
                child = True
                if ipoib is not None:
                    ipoib["parent"] = match.group(1)
        return ("ipoib_child" if child else "ipoib"), ipoib
    if nic["is_vf"]:
        return "vf", None
    if nic["virtual"]:
        return "virtual", None
    return "ethernet", None


def _infer_driver(ctx, nic, ndir, pci):
    """(driver, bus_info, source) as ethtool would say, deduced from sysfs."""
    kind = nic["kind"]
    address = nic["pci_address"]
    if kind == "loopback":
        return None, None, "unknown"
    if kind == "eipoib":
        return "eth_ipoib", ctx.eipoib.get(nic["name"]) or (nic["eipoib"] or {}).get("ipoib_interface"), "inferred"
    if kind in ("ipoib", "ipoib_child"):
        hca_address = address
        if hca_address is None and nic["ib"]:
            hca_address = ctx.devices.get(nic["ib"]["device"], {}).get("pci_address")
        pci_driver = nic["pci_driver"]
        if pci_driver is None and nic["ib"]:
            pci_driver = ctx.devices.get(nic["ib"]["device"], {}).get("driver")
        mode = (nic["ipoib"] or {}).get("mode")
        # mlx5 offloads IPoIB ("enhanced IPoIB", datagram mode only) and names itself in ethtool.
        if pci_driver == "mlx5_core" and mode != "connected":
            return "mlx5_core[ib_ipoib]", hca_address, "inferred"
        return "ib_ipoib", hca_address, "inferred"
    if pci is not None and nic["pci_driver"]:
        bus_info = address or pci.get("bus_name")
        eth_driver = _PCI_TO_ETH_DRIVER.get(nic["pci_driver"])
        if eth_driver:
            return eth_driver, bus_info, "inferred"
        # Includes virtio: the netdev's device is virtioN, bound to virtio_net, on a PCI function.
        return nic["pci_driver"], bus_info, "sysfs"
    if nic["virtual"] and ndir is not None:
        devtype = _uevent_devtype(ndir)
        if devtype in _VIRTUAL_DRIVERS:
            driver, bus_info = _VIRTUAL_DRIVERS[devtype]
            return driver, bus_info, "inferred"
        if ndir.exists("bridge"):
            return "bridge", "N/A", "inferred"
        if ndir.exists("bonding"):
            return "bonding", None, "inferred"
        flags = ndir.read_hex("tun_flags") if ndir.exists("tun_flags") else None
        if flags is not None:
            # tun_get_drvinfo: bus-info is "tap" or "tun" by device type.
            return "tun", "tap" if flags & _IFF_TAP else "tun", "inferred"
    return None, None, "unknown"


def _ib_view(port):
    if port is None:
        return None
    return dict((k, v) for k, v in port.items() if k not in ("netdevs",) and not k.startswith("_"))


def _complete_nic(ctx, nic, ndir, pci):
    """Kind, IB port, IPoIB/EIPoIB details, driver and network mode of one netdev."""
    kind, ipoib = _classify(ctx, nic, ndir, pci)
    nic["kind"] = kind
    nic["ipoib"] = ipoib
    if kind in ("ipoib", "ipoib_child"):
        device, port = _find_ib_port(ctx, nic, ndir, pci, "InfiniBand")
        if device is None and ipoib and ipoib["parent"] and ipoib["parent"] in ctx.nics:
            parent_ib = ctx.nics[ipoib["parent"]]["ib"]
            if parent_ib:
                device, port = parent_ib["device"], str(parent_ib["port"])
        if device is not None:
            nic["ib"] = _ib_view(ctx.port(device, port))
    elif kind == "eipoib":
        over = ctx.eipoib.get(nic["name"])
        slaves = []
        if ndir is not None:
            raw = ndir.read("eth/slaves")
            if raw:
                slaves = [s for s in raw.split() if valid_ifname(s)]
        nic["eipoib"] = {"ipoib_interface": over, "slaves": slaves}
    elif kind in ("ethernet", "vf", "virtual") and nic["type"] in (ARPHRD_ETHER, None):
        device, port = _find_ib_port(ctx, nic, ndir, pci, "Ethernet")
        if device is not None:
            nic["ib"] = _ib_view(ctx.port(device, port))
            if kind == "ethernet":
                nic["kind"] = "roce"

    # Driver and bus-info with ethtool semantics.
    live = ctx.host.ethtool_drvinfo(nic["name"]) if getattr(ctx.host, "live", False) else None
    if live and live.get("driver"):
        nic["driver"] = live["driver"]
        nic["bus_info"] = live.get("bus_info") or None
        nic["driver_version"] = live.get("version") or None
        nic["firmware_version"] = live.get("fw_version") or None
        nic["driver_source"] = "ethtool"
    else:
        nic["driver"], nic["bus_info"], nic["driver_source"] = _infer_driver(ctx, nic, ndir, pci)


def _mode_reason(nic, link_layer, detail=True):
    """(network mode by Fuel's rule, why - without the netdev's name) of one netdev, or (None, None).
    ``link_layer`` is its port's; ``detail`` False leaves out what differs between netdevs alike (port,
    EIPoIB's IPoIB interface), for grouped reasons."""
    kind = nic.get("kind")
    driver = nic.get("driver") or "unknown driver"
    ib = nic.get("ib")
    if kind == "eipoib" or nic.get("driver") == "eth_ipoib":
        over = (nic.get("eipoib") or {}).get("ipoib_interface") or nic.get("bus_info")
        return "infiniband", "%s (EIPoIB%s) -> infiniband" % (driver, " over %s" % (over or "?") if detail else "")
    if kind in ("ipoib", "ipoib_child"):
        where = " on %s port %s" % (ib["device"], ib["port"]) if ib and detail else ""
        return "infiniband", "%s (IPoIB%s) -> infiniband" % (driver, where)
    if ib and link_layer == "Ethernet":
        where = " on %s port %s" % (ib["device"], ib["port"]) if detail else ""
        return "ethernet", "%s%s with Ethernet link layer (RoCE) -> ethernet" % (driver, where)
    return None, None


def _network_mode(nic, name=None):
    """Per-NIC network mode (Fuel's rule) and the reason naming the netdev, or (None, None). ``nic["ib"]``
    is the whole port record (a gather, an expanded result); short records have none."""
    mode, why = _mode_reason(nic, (nic.get("ib") or {}).get("link_layer"))
    return (mode, "%s: %s" % (name or nic["name"], why)) if mode else (None, None)


def _sm_entry(dev_name, port, sm_present, sm_local):
    """A full-form ``subnet_manager`` entry of one port record (a gather's, or an expanded one)."""
    return {
        "device": dev_name,
        "port": port["port"],
        "state": port.get("state"),
        "lid": port.get("lid"),
        "sm_lid": port.get("sm_lid"),
        "sm_sl": port.get("sm_sl"),
        "sm_present": sm_present,
        "sm_local": sm_local,
        "netdevs": list(port["netdevs"]),
    }


# ---------------------------------------------------------------------------------------------------
# Public API
# ---------------------------------------------------------------------------------------------------
def _check_tree(host):
    root = getattr(host, "sysfs_root", None)
    if isinstance(root, str) and not os.path.isdir(root):
        raise FactsError("sysfs_root %s does not exist or is not a directory" % root)
    check_sysfs_tree(host)


def check_sysfs_tree(host):
    """Raise FactsError naming sysfs_root when it has no class/net (a capture's top, a wrong path): for the
    modules that read a few netdevs and would otherwise say "interface not found"."""
    root = getattr(host, "sysfs_root", None)
    if not host.isdir("class/net"):
        hint = "give the 'sys' folder of a capture, e.g. <capture>/sys"
        if isinstance(root, str) and os.path.isdir(os.path.join(root, "sys", "class", "net")):
            hint = "did you mean %s?" % os.path.join(root, "sys")
        raise FactsError("sysfs_root %s is not a sysfs tree (no class/net directory); %s" % (root, hint))


def _netdev_names(ctx):
    names = []
    class_net = ctx.class_net = ctx.host.opendir("class/net")
    for entry in ctx.host.listdir("class/net"):
        # Files such as bonding_masters / eth_ipoib_interfaces live beside the netdev links.
        if class_net is None or not (class_net.islink(entry) or class_net.isdir(entry)):
            continue
        if not valid_ifname(entry):
            ctx.reader.warn("class/net/%r: invalid interface name; ignored" % entry[:40])
            continue
        names.append(entry)
    return names


def _restricted_read(ctx, names, selected, raw):
    """Read (into ``raw``) the selected netdevs plus the netdevs and RDMA devices their facts depend on.

    Returns (names read, {PCI device dir: [netdevs]}). Depended on: IPoIB parents (``parent``
    attribute or ``<parent>.<pkey>`` name) and EIPoIB's IPoIB interface, transitively; the IPoIB
    children of selected netdevs (named ``<parent>.<pkey>``, or listed beside their parent in its PCI
    function's ``net/``: a child shares its parent's device); the RDMA devices on the PCI functions of
    the netdevs read. Other netdevs are not looked at: SR-IOV ``vfs[].netdev`` comes from each VF's
    ``net/`` directory. Only a netdev with no RDMA device on its own PCI function (a virtual netdev
    over a RoCE port) costs a light pass over the RDMA ports (``gid_attrs/ndevs/0``), so one netdev
    costs about the same on a host with 8 netdevs or 512.
    """
    reader = ctx.reader
    ctx.load_eipoib()
    parents = {}  # name -> its `parent` attribute (read netdevs only)

    def parent_attr(name):
        if name not in parents:
            ndir = reader.dir("class/net/" + name)
            parent = ndir.read("parent") if ndir is not None else None
            parents[name] = parent if parent and valid_ifname(parent) and parent in ctx.all_names else None
        return parents[name]

    def depends_on(name):
        found = []
        if parent_attr(name):
            found.append(parents[name])
        match = _IPOIB_CHILD_RE.match(name)
        if match and match.group(1) in ctx.all_names:
            found.append(match.group(1))
        over = ctx.eipoib.get(name)
        if over in ctx.all_names:
            found.append(over)
        return found

    chosen = set(selected)
    for name in names:
        match = _IPOIB_CHILD_RE.match(name)
        if match and match.group(1) in chosen:
            chosen.add(name)
    for name in list(chosen):  # children with any name: beside the parent on its PCI function
        ndir = reader.dir("class/net/" + name)
        dev = ndir.sub("device") if ndir is not None else None
        if dev is not None:
            for other in ctx.host.listdir(dev.real + "/net"):
                if other not in chosen and other in ctx.all_names and parent_attr(other) in chosen:
                    chosen.add(other)
    pending = list(chosen)
    while pending:
        for other in depends_on(pending.pop()):
            if other not in chosen:
                chosen.add(other)
                pending.append(other)
    read_names = [n for n in names if n in chosen]
    for name in read_names:
        raw[name] = _netdev(ctx, name)

    devices, unplaced = set(), False
    for name in read_names:
        nic, _ndir, pci = raw[name]
        on_pci = ctx.host.listdir(pci["real"] + "/infiniband") if pci is not None else []
        devices.update(on_pci)
        if not on_pci and nic["type"] in (ARPHRD_ETHER, None) and name != "lo":
            unplaced = True
    if unplaced:
        by_pci, by_ndev = ctx.scan_rdma()
        for name in read_names:
            if name in by_ndev:
                devices.add(by_ndev[name])
            pci = raw[name][2]
            if pci is not None:
                devices.update(by_pci.get(pci["real"], ()))
    ctx.load_rdma(only=devices)

    netdevs_by_dev = {}
    for name in read_names:
        pci = raw[name][2]
        for vf in ((pci or {}).get("sriov") or {}).get("vfs") or ():
            if vf["_real"] and vf["_real"] not in netdevs_by_dev:
                netdevs_by_dev[vf["_real"]] = [n for n in ctx.host.listdir(vf["_real"] + "/net") if n in ctx.all_names]
    return read_names, netdevs_by_dev


def gather(host, interfaces=None, pkeys=PKEYS_PHYSICAL, lean=False):
    """All IB host networking facts (``ib_facts``, schema 1) of the host seen through ``host``.

    :param interfaces: restrict the facts to these netdevs (unknown names -> FactsError): ``nics`` holds
        them, ``devices``/``subnet_manager`` only the RDMA devices they are on, ``netdevs`` lists only
        them; other netdevs and devices are not read (see docs/facts.md).
    :param pkeys: which ports' P_Key tables are read (one file per table entry, 128 per port on
        ConnectX: most of the cost on InfiniBand hosts with many ports): ``"all"``; ``"physical"``
        (ports of physical functions; VF ports too when ``interfaces`` restricts the gather); ``"none"``.
        Ports whose table is not read have ``pkeys`` None. True/False mean "all"/"none".
    :param lean: the ib_facts module's result form: no copy of the port record per netdev (``nics[].ib``
        keeps ``LEAN_IB_FIELDS``, ``port_of(facts, nic)`` finds the rest) and short records for loopback
        and virtual netdevs (``SHORT_NIC_FIELDS``); ``lean: true`` at the top. In-process callers keep
        the full form (default).
    :raises FactsError: sysfs_root is not a sysfs tree, or ``interfaces`` names an unknown netdev,
        or ``pkeys`` is none of the above.
    """
    pkeys = {True: PKEYS_ALL, False: PKEYS_NONE}.get(pkeys, pkeys)
    if pkeys not in PKEYS_CHOICES:
        raise FactsError("pkeys must be one of %s, not %r" % (", ".join(PKEYS_CHOICES), pkeys))
    if interfaces and pkeys == PKEYS_PHYSICAL:
        pkeys = PKEYS_ALL  # a restricted gather reads only the devices of the named interfaces
    with host.cached():
        facts = _gather(host, interfaces, pkeys)
    return _lean(facts) if lean else facts


def complete_pkeys(host, nics, names):
    """Read the P_Key table of the ports behind ``names`` (netdevs of ``nics``) whose table a gather left
    out (``ib.pkeys`` None), in place: for checks that need the tables of a few interfaces only."""
    tables = {}  # (device, port) -> pkeys: interfaces on one port (EIPoIB over IPoIB) read it once
    for name in names:
        ib = (nics.get(name) or {}).get("ib")
        if ib and ib.get("pkeys") is None and ib.get("device") and ib.get("port") is not None:
            key = (ib["device"], ib["port"])
            if key not in tables:
                port = read_port(host, *key, pkeys=True)
                tables[key] = port["pkeys"] if port else None
            ib["pkeys"] = tables[key]


def _gather(host, interfaces, pkeys):
    _check_tree(host)
    ctx = _Context(host, pkeys=pkeys)
    names = _netdev_names(ctx)
    ctx.all_names = set(names)
    selected = names
    if interfaces:
        bad = [i for i in interfaces if not isinstance(i, str) or not valid_ifname(i)]
        unknown = [i for i in interfaces if i not in ctx.all_names]
        if bad or unknown:
            raise FactsError("unknown interface(s): %s; known interfaces: %s" % (
                ", ".join(repr(i) for i in (bad + [u for u in unknown if u not in bad])),
                ", ".join(names) or "(none)"))
        wanted = set(interfaces)
        selected = [n for n in names if n in wanted]

    raw = {}
    if selected is names:
        ctx.load_rdma()
        read_names = names
        for name in names:
            raw[name] = _netdev(ctx, name)
        netdevs_by_dev = {}
        for name in names:
            pci = raw[name][2]
            if pci is not None:
                netdevs_by_dev.setdefault(pci["real"], []).append(name)
    else:
        # Restricted: read the selected netdevs and what their facts depend on, not the whole host.
        read_names, netdevs_by_dev = _restricted_read(ctx, names, selected, raw)

    # Pass 1: per-netdev sysfs facts. Parents before children so a child can borrow its parent's port.
    order = sorted(read_names, key=lambda n: (1 if _IPOIB_CHILD_RE.match(n) else 0, n))
    for name in order:
        nic, ndir, pci = raw[name]
        ctx.nics[name] = nic
        _complete_nic(ctx, nic, ndir, pci)

    # Pass 2: cross-netdev links (children, VF netdevs, port -> netdevs, EIPoIB -> IB port).
    for name in read_names:
        nic, ndir, pci = raw[name]
        if nic["ipoib"] and nic["ipoib"]["parent"] in ctx.nics:
            parent = ctx.nics[nic["ipoib"]["parent"]]
            if parent["ipoib"] is not None:
                parent["ipoib"]["children"].append(name)
        if nic["sriov"] is not None:
            for vf_public, vf in zip(nic["sriov"]["vfs"], pci["sriov"]["vfs"]):
                vf_names = netdevs_by_dev.get(vf["_real"]) or []
                vf_public["netdev"] = vf_names[0] if vf_names else None
        if nic["kind"] == "eipoib":
            over = (nic["eipoib"] or {}).get("ipoib_interface") or (
                nic["bus_info"] if nic["driver"] == "eth_ipoib" else None)
            if over in ctx.nics and ctx.nics[over]["ib"]:
                nic["ib"] = dict(ctx.nics[over]["ib"])
        if nic["ib"]:
            port = ctx.port(nic["ib"]["device"], nic["ib"]["port"])
            if port is not None and name not in port["netdevs"]:
                port["netdevs"].append(name)
                dev = ctx.devices[nic["ib"]["device"]]
                if name not in dev["netdevs"]:
                    dev["netdevs"].append(name)
        nic["network_mode"], _reason = _network_mode(nic)

    nics = {}
    for name in selected:
        nics[name] = ctx.nics[name]
    if selected is not names:
        # A restricted gather names only the selected netdevs (it has not read the others).
        keep = set(selected)
        for dev in ctx.devices.values():
            dev["netdevs"] = [n for n in dev["netdevs"] if n in keep]
            for port in dev["ports"].values():
                port["netdevs"] = [n for n in port["netdevs"] if n in keep]

    reasons = []
    by_mode = {"infiniband": [], "ethernet": []}
    for name in selected:
        mode, reason = _network_mode(nics[name])
        if mode:
            by_mode[mode].append(name)
            reasons.append(reason)
    if by_mode["infiniband"] and by_mode["ethernet"]:
        node_mode = "mixed"
    elif by_mode["infiniband"]:
        node_mode = "infiniband"
    elif by_mode["ethernet"]:
        node_mode = "ethernet"
    else:
        node_mode = "none"
        reasons.append(_NO_MODE_REASON)

    subnet_manager = {}
    for dev_name, dev in sorted(ctx.devices.items()):
        for port_name, port in sorted(dev["ports"].items(), key=lambda kv: _numeric_key(kv[0])):
            if port["link_layer"] != "InfiniBand":
                continue
            active = port["state"] == "ACTIVE"
            subnet_manager["%s/%s" % (dev_name, port_name)] = _sm_entry(
                dev_name, port, bool(active and port["sm_lid"]),
                bool(active and port["sm_lid"] and port["sm_lid"] == port["lid"]))

    return {
        "schema": SCHEMA_VERSION,
        "source": "live" if getattr(host, "live", False) else "snapshot",
        "sysfs_root": getattr(host, "sysfs_root", None),
        "lean": False,
        "network_mode": node_mode,
        "network_mode_reasons": reasons,
        "network_mode_interfaces": by_mode,
        "nics": nics,
        "devices": ctx.devices,
        "subnet_manager": subnet_manager,
        "warnings": ctx.reader.all_warnings(),
    }


def read_device(host, device, pkeys=False):
    """Facts of one RDMA device (``devices[device]`` of gather, without netdevs), or None.

    P_Key tables are read only with ``pkeys=True`` (else every port's ``pkeys`` is None): card and
    link-layer detection need none of them, and each entry is a firmware query on real HCAs.
    """
    if not valid_rdma_device(device) or not host.exists("class/infiniband/%s" % device):
        return None
    reader = _Reader(host)
    with host.cached():
        info, _real = _read_device(reader, _PciContext(reader), device, PKEYS_ALL if pkeys else PKEYS_NONE)
    for port in info["ports"].values():
        port.pop("_ndev0", None)
    return info


def read_port(host, device, port, pkeys=False):
    """Facts of one RDMA port (``devices[device].ports[port]`` of gather, without netdevs), or None.

    Its P_Key table is read only with ``pkeys=True`` (else ``pkeys`` is None).
    """
    if not valid_rdma_device(device) or not str(port).isdigit():
        return None
    reader = _Reader(host)
    with host.cached():
        ddir = reader.dir("class/infiniband/%s" % device)
        data = _read_port(reader, ddir, device, str(int(port)), read_table=bool(pkeys)) if ddir is not None else None
    if data is not None:
        data.pop("_ndev0", None)
    return data


def read_netdev(host, name, pkeys=PKEYS_NONE):
    """Facts of one netdev (``nics[name]`` of gather), or None when it does not exist.

    Costs one gather restricted to ``name`` (the RDMA devices it is on are read to place it). ``pkeys``
    as for gather, taken literally: ``"none"`` (default) reads no P_Key table, ``"physical"`` the table
    of the netdev's port unless it is a VF's, ``"all"`` that table in any case.
    """
    if not valid_ifname(name):
        return None
    pkeys = {True: PKEYS_ALL, False: PKEYS_NONE}.get(pkeys, pkeys)
    if pkeys not in PKEYS_CHOICES:
        raise FactsError("pkeys must be one of %s, not %r" % (", ".join(PKEYS_CHOICES), pkeys))
    try:
        with host.cached():
            facts = _gather(host, [name], pkeys)
    except FactsError:
        return None
    return facts["nics"].get(name)


def port_of(facts, nic):
    """The whole port record (``devices[dev].ports[n]``) behind a netdev of ``facts``, or None.

    In a lean result (``gather(..., lean=True)``, the ib_facts module's default) ``nics[name].ib`` holds
    only the port's identity and link summary (``LEAN_IB_FIELDS``); this finds the rest.
    """
    ib = (nic or {}).get("ib") if isinstance(nic, dict) else None
    if not isinstance(ib, dict) or ib.get("device") is None or ib.get("port") is None:
        return None
    device = ((facts or {}).get("devices") or {}).get(ib["device"])
    if not isinstance(device, dict):
        return None
    return (device.get("ports") or {}).get(str(ib["port"]))


def _grouped_reasons(facts):
    """network_mode_reasons of a lean result: one sentence per kind of reason (driver, IPoIB/EIPoIB/RoCE),
    naming at most REASON_NAMES_SHOWN netdevs (network_mode_interfaces names them all); a reason that
    only one netdev gives keeps its whole sentence."""
    groups = {}  # nameless, portless reason -> [(name, nic)]
    for name, nic in facts["nics"].items():
        mode, brief = _mode_reason(nic, (nic.get("ib") or {}).get("link_layer"), detail=False)
        if mode:
            groups.setdefault(brief, []).append((name, nic))
    reasons = []
    for brief, members in groups.items():
        if len(members) == 1:
            name, nic = members[0]
            reasons.append(_network_mode(nic, name)[1])
            continue
        names = ", ".join(name for name, _nic in members[:REASON_NAMES_SHOWN])
        more = len(members) - REASON_NAMES_SHOWN
        reasons.append("%s%s: %s" % (names, " and %d more" % more if more > 0 else "", brief))
    return reasons or [_NO_MODE_REASON]


def _lean(facts):
    """Lean result, in place (docs/facts.md#lean-results): ``nics[name].ib`` is a reference
    (LEAN_IB_FIELDS) to ``devices[device].ports[port]``; loopback/virtual netdevs without an RDMA port keep
    SHORT_NIC_FIELDS; device and port records leave out their own key and the netdevs on them (nics say
    it); ``subnet_manager`` entries keep LEAN_SM_FIELDS; ``network_mode_reasons`` are grouped."""
    facts["network_mode_reasons"] = _grouped_reasons(facts)
    for name, nic in facts["nics"].items():
        if nic["ib"] is not None:
            nic["ib"] = dict((key, nic["ib"].get(key)) for key in LEAN_IB_FIELDS)
        elif nic["kind"] in ("loopback", "virtual"):
            facts["nics"][name] = dict((key, nic[key]) for key in SHORT_NIC_FIELDS)
    for dev in facts["devices"].values():
        for key in _LEAN_DEVICE_DROP:
            dev.pop(key, None)
        for port in dev["ports"].values():
            for key in _LEAN_PORT_DROP:
                port.pop(key, None)
    facts["subnet_manager"] = dict((key, dict((k, entry[k]) for k in LEAN_SM_FIELDS))
                                   for key, entry in facts["subnet_manager"].items())
    facts["lean"] = True
    return facts


def expand(facts):
    """The full form (``lean: false``) of an ib_facts result, from a lean one (a full one is returned as
    it is), in place: what a lean result says once is put back where the full form repeats it - port
    records in ``nics[].ib`` (without ``netdevs``), device and port ``name``/``device``/``port``/``netdevs``,
    whole ``subnet_manager`` entries and one ``network_mode_reasons`` sentence per netdev. Loopback and
    virtual netdevs keep their short records. Tolerates missing parts (a reference to an unknown port
    stays a reference)."""
    if not isinstance(facts, dict) or not facts.get("lean"):
        return facts
    devices = facts.get("devices") if isinstance(facts.get("devices"), dict) else {}
    for dev_name, dev in devices.items():
        if not isinstance(dev, dict):
            continue
        dev["name"] = dev_name
        dev["netdevs"] = []
        for port_name, port in (dev.get("ports") or {}).items():
            if isinstance(port, dict):
                port["device"] = dev_name
                port["port"] = int(port_name) if str(port_name).isdigit() else port_name
                port["netdevs"] = []
    reasons = []
    for name, nic in (facts.get("nics") or {}).items():
        if not isinstance(nic, dict):
            continue
        port = port_of(facts, nic)
        if port is not None:
            dev = devices[nic["ib"]["device"]]
            nic["ib"] = dict((key, value if not isinstance(value, list) else list(value))
                             for key, value in port.items() if key != "netdevs")
            port["netdevs"].append(name)
            if name not in dev["netdevs"]:
                dev["netdevs"].append(name)
        mode, reason = _network_mode(nic, name)
        if mode:
            reasons.append(reason)
    facts["network_mode_reasons"] = reasons or [_NO_MODE_REASON]
    subnet_manager = facts.get("subnet_manager") if isinstance(facts.get("subnet_manager"), dict) else {}
    for key, entry in subnet_manager.items():
        dev_name, _sep, port_name = str(key).rpartition("/")
        port = ((devices.get(dev_name) or {}).get("ports") or {}).get(port_name)
        if isinstance(entry, dict) and isinstance(port, dict):
            subnet_manager[key] = _sm_entry(dev_name, port, entry.get("sm_present"), entry.get("sm_local"))
    facts["lean"] = False
    return facts
