# -*- coding: utf-8 -*-
# Copyright: hpcnet.infiniband contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""SR-IOV of one physical function (PF): VF count, InfiniBand VF GUIDs, mlx4 module options.

have (``read_pf``: sysfs + ``ip -j`` through the Host seam) -> plan (``plan_sriov``: pure, every refusal
decided here) -> apply (``apply_sriov``: the only writer).

``prepare(host, params)`` -> (plan, have, extra) and ``apply_for_module(host, plan, have, timeout)`` are
the whole module and need no AnsibleModule: the boot path replays a PF's desired state through them.

Kernel rules this follows (drivers/pci/iov.c ``sriov_numvfs_store``):
- writing N to ``sriov_numvfs`` while it is non-zero and N != 0 fails with EBUSY, so a resize is
  ``0`` then ``N``; N > ``sriov_totalvfs`` fails with ERANGE;
- ``sriov_totalvfs`` is what the firmware exposes; on Mellanox cards it is raised with
  ``mstconfig -d <pci> set SRIOV_EN=1 NUM_OF_VFS=<n>`` and a reboot or ``mstfwreset``;
- mlx4 (ConnectX-3) does not implement ``sriov_configure``: VFs come from mlx4_core module options
  (``num_vfs``, ``probe_vf``), read at module load.
"""

from __future__ import annotations

import errno
import hashlib
import json
import re

from ansible_collections.hpcnet.infiniband.plugins.module_utils import _firmware  # the one mstconfig parser
from ansible_collections.hpcnet.infiniband.plugins.module_utils import _ids
from ansible_collections.hpcnet.infiniband.plugins.module_utils import _modprobe  # OFED role's option model
from ansible_collections.hpcnet.infiniband.plugins.module_utils._host import (
    HostError,
    valid_ifname,
    valid_pci_address,
    valid_rdma_device,
)
from ansible_collections.hpcnet.infiniband.plugins.module_utils._plan import Plan
from ansible_collections.hpcnet.infiniband.plugins.module_utils._values import (
    format_guid,
    format_guid_octets,
    guid_or_none,
    parse_guid,
)

try:  # the shared facts model (docs/dev/contracts.md section 4); optional until it lands everywhere
    from ansible_collections.hpcnet.infiniband.plugins.module_utils import _facts
except ImportError:  # pragma: no cover - depends on the checkout
    _facts = None


__all__ = [
    "SriovError",
    "read_pf",
    "read_firmware",
    "vfs_in_use",
    "plan_sriov",
    "files_to_read",
    "apply_sriov",
    "prepare",
    "apply_for_module",
    "PARAM_DEFAULTS",
    "derived_guids",
    "pool_guids",
    "render_mlx4_options",
]

MLX4_PF_DEVICE_IDS = (0x1003, 0x1007)
# PF driver -> the driver that binds its VFs when the PF's own VF driver is used.
VF_DRIVER_OF = {
    "mlx5_core": "mlx5_core",
    "mlx4_core": "mlx4_core",
    "ixgbe": "ixgbevf",
    "i40e": "iavf",
    "ice": "iavf",
    "igb": "igbvf",
    "bnxt_en": "bnxt_en",
    "qede": "qede",
}
# Drivers that mean "handed to a guest or a userspace program" whatever the PF is.
PASSTHROUGH_DRIVERS = ("vfio-pci", "vfio_pci", "pci-stub", "pci_stub", "uio_pci_generic", "igb_uio")
IFF_UP = 0x1
IP_TIMEOUT = 15
MSTCONFIG_TIMEOUT = 30
# Firmware settings the SR-IOV hint reports (ib_firmware changes them).
FIRMWARE_KEYS = ("SRIOV_EN", "NUM_OF_VFS", "SRIOV_IB_ROUTING_MODE_P1")
MLX4_OPTIONS_PATH = "/etc/modprobe.d/hpcnet-sriov-mlx4.conf"
# The only files mlx4_options_path may name: modprobe.d reads *.conf only, and nothing else is ours to write.
MLX4_OPTIONS_PATH_RE = re.compile(r"^/etc/modprobe\.d/[A-Za-z0-9_][A-Za-z0-9_.-]{0,100}\.conf$")
# Earlier versions wrote a udev rule keyed on the PF's netdev name (never fires on renamed interfaces);
# the boot service replaces it, and we remove the rule where we wrote it.
UDEV_RULES_DIR = "/etc/udev/rules.d"
LEGACY_UDEV_MARKER = "# Managed by hpcnet.infiniband.ib_sriov"
DRIVER_NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
# What ``prepare`` assumes for a parameter its caller leaves out (the module's argument_spec defaults).
PARAM_DEFAULTS = {
    "force": False,
    "guid_policy": "none",
    "guid_pool_start": None,
    "guids": None,
    "persist": False,
    "mlx4_num_vfs_per_port": None,
    "mlx4_probe_vf": None,
    "mlx4_options_path": MLX4_OPTIONS_PATH,
    "firmware_info": False,
}


class SriovError(Exception):
    """Bad input or a PF that cannot be found: one clear message, nothing changed."""


# ---------------------------------------------------------------------- GUIDs
def _locally_administered(digest):
    # EUI-64 first octet: bit 1 = locally administered (so it never equals a vendor-burnt GUID),
    # bit 0 = group; keep it clear. The set bit also makes the GUID never zero.
    first = (digest[0] & 0xFC) | 0x02
    return int.from_bytes(bytes([first]) + digest[1:8], "big")


def derived_guids(pf_port_guid, index):
    """Node and port GUID of VF ``index`` derived from the PF's port GUID (an int).

    SHA-256 over (PF port GUID, VF index, role), first 8 bytes, locally administered bit set: the
    same inputs give the same GUIDs on every run, different PFs/VFs give different ones (a collision
    across an inventory is astronomically unlikely and the role checks for it anyway).
    """
    result = []
    for role in ("node", "port"):
        digest = hashlib.sha256(("hpcnet-vf-guid:%016x:%d:%s" % (pf_port_guid, index, role)).encode()).digest()
        result.append(_locally_administered(digest))
    return result[0], result[1]


def pool_guids(pool_start, index):
    """Node and port GUID of VF ``index`` from an operator pool: start + 2*index, start + 2*index + 1."""
    return pool_start + 2 * index, pool_start + 2 * index + 1


# ---------------------------------------------------------------------- have
def _hex_id(text):
    value = _ids.normalize_id(text) if text else None
    return None if value is None else "0x%04x" % value


def _pci_rel(host, name):
    """(pci_address, sysfs path of the PCI function, netdev name or None) for a netdev name or PCI address."""
    if valid_pci_address(name):
        rel = "bus/pci/devices/%s" % name
        if not host.isdir(rel):
            raise SriovError("PCI function %s not found in %s" % (name, host.sysfs_root))
        netdevs = host.listdir(rel + "/net")
        for netdev in netdevs:
            _check_host_name("interface", netdev, valid_ifname, "PCI function %s" % name)
        return name, rel, (netdevs[0] if netdevs else None)
    if not valid_ifname(name):
        raise SriovError("%r is neither an interface name nor a PCI address (dddd:bb:ss.f)" % (name,))
    if not host.exists("class/net/%s" % name):
        raise SriovError("interface %s not found" % name)
    device = host.relpath("class/net/%s/device" % name)
    address = device.rsplit("/", 1)[-1] if device else None
    if not address or not valid_pci_address(address):
        raise SriovError("interface %s is not a PCI function (no device link): cannot use SR-IOV" % name)
    return address, "bus/pci/devices/%s" % address, name


def _check_host_name(kind, value, check, where):
    """A name read from the host becomes a path, an argv word or a file line only when valid."""
    if value is not None and not check(value):
        raise SriovError(
            "%s has a %s named %r, which is not a valid %s name: refusing to use it" % (where, kind, value, kind)
        )
    return value


def _valid_driver(name):
    return isinstance(name, str) and bool(DRIVER_NAME_RE.match(name))


def _netdev_state(host, ifname):
    flags = host.read_int("class/net/%s/flags" % ifname, 16)
    return {
        "name": ifname,
        "operstate": host.read("class/net/%s/operstate" % ifname),
        "up": bool(flags is not None and flags & IFF_UP),
        "master": host.readlink_name("class/net/%s/master" % ifname),
        "addresses": [],
    }


def _ip_json(host, args):
    """``ip -j ARGS`` as a list of objects, or None when commands are unavailable or ip fails."""
    if not host.has_commands():
        return None
    rc, out, _err = host.run(["ip", "-j"] + args, IP_TIMEOUT)
    if rc != 0:
        return None
    try:
        data = json.loads(out or "[]")
    except ValueError:
        return None
    return data if isinstance(data, list) else []


def _read_addresses(host, ifname):
    """Addresses that mean "somebody configured this interface" (IPv6 link-local is automatic)."""
    data = _ip_json(host, ["addr", "show", "dev", ifname])
    if data is None:
        return None
    result = []
    for link in data:
        for info in link.get("addr_info") or []:
            local = info.get("local")
            if not local:
                continue
            if info.get("family") == "inet6" and info.get("scope") == "link":
                continue
            result.append("%s/%s" % (local, info.get("prefixlen")))
    return result


def read_vf_guids(host, pf_netdev):
    """VF GUIDs the PF reports (``ip -j link show``): {index: {"node_guid", "port_guid"}} or None."""
    data = _ip_json(host, ["link", "show", "dev", pf_netdev]) if pf_netdev else None
    if data is None:
        return None
    result = {}
    for link in data:
        for entry in link.get("vfinfo_list") or []:
            index = entry.get("vf")
            if not isinstance(index, int):
                continue
            node = guid_or_none(entry.get("node guid", entry.get("node_guid")))
            port = guid_or_none(entry.get("port guid", entry.get("port_guid")))
            result[index] = {
                "node_guid": format_guid(node) if node is not None else None,
                "port_guid": format_guid(port) if port is not None else None,
            }
    return result


def _port_guids(host, pci_rel):
    """{ibdev: [port GUIDs in port order]} of the RDMA devices on a PCI function (from gids/0)."""
    result = {}
    for ibdev in host.listdir(pci_rel + "/infiniband"):
        if not valid_rdma_device(ibdev):
            continue
        guids = []
        for port in sorted(host.listdir("%s/infiniband/%s/ports" % (pci_rel, ibdev)), key=_int_or_zero):
            gid = host.read("%s/infiniband/%s/ports/%s/gids/0" % (pci_rel, ibdev, port))
            guid = None
            if gid and gid.count(":") == 7:
                guid = guid_or_none(":".join(gid.split(":")[4:]))
            if guid:
                guids.append(format_guid(guid))
        node = guid_or_none(host.read("%s/infiniband/%s/node_guid" % (pci_rel, ibdev)))
        layers = {}
        for port in host.listdir("%s/infiniband/%s/ports" % (pci_rel, ibdev)):
            layers[port] = host.read("%s/infiniband/%s/ports/%s/link_layer" % (pci_rel, ibdev, port))
        result[ibdev] = {
            "node_guid": format_guid(node) if node else None,
            "port_guids": guids,
            "link_layer": layers.get("1"),
            "link_layers": layers,
        }
    return result


def _int_or_zero(text):
    try:
        return int(text)
    except ValueError:
        return 0


def read_pf(host, name, with_addresses=True):
    """What the host says about PF ``name`` (netdev or PCI address) and its VFs.

    Uses the facts model (``_facts.read_netdev``) for the PF's identity when it is available, and reads
    the VF details the facts model does not carry (driver binding, netdev state, addresses) itself.
    """
    pci_address, pci_rel, netdev = _pci_rel(host, name)
    facts = None
    if _facts is not None and netdev and hasattr(_facts, "read_netdev"):
        try:
            facts = _facts.read_netdev(host, netdev)
        except Exception:  # pylint: disable=broad-except  # facts are a help here, never a blocker
            facts = None
    facts = facts or {}
    vendor_id = facts.get("vendor_id") or _hex_id(host.read(pci_rel + "/vendor"))
    device_id = facts.get("device_id") or _hex_id(host.read(pci_rel + "/device"))
    known = _ids.lookup(vendor_id, device_id) or {}
    driver = facts.get("pci_driver") or host.readlink_name(pci_rel + "/driver")
    _check_host_name("driver", driver, _valid_driver, "PCI function %s" % pci_address)
    family = "generic"
    if known.get("family") == "mlx4" or (
        _ids.normalize_id(vendor_id) == _ids.VENDOR_MELLANOX and _ids.normalize_id(device_id) in MLX4_PF_DEVICE_IDS
    ):
        family = "mlx4"
    elif known.get("family") == "mlx5" or driver == "mlx5_core":
        family = "mlx5"
    have = {
        "name": netdev,
        "pci_address": pci_address,
        "pci_path": pci_rel,
        "vendor_id": vendor_id,
        "device_id": device_id,
        "model": facts.get("model") or known.get("model"),
        "is_vf": bool(known.get("vf")) or host.exists(pci_rel + "/physfn"),
        "driver": driver,
        "family": family,
        "totalvfs": host.read_int(pci_rel + "/sriov_totalvfs", 10),
        "numvfs": host.read_int(pci_rel + "/sriov_numvfs", 10),
        "netdevs": [n for n in host.listdir(pci_rel + "/net") if valid_ifname(n)],
        "rdma": _port_guids(host, pci_rel),
        "vfs": [],
        "vf_guids": None,
    }
    if family == "mlx4":
        have["mlx4_param_num_vfs"] = host.read("module/mlx4_core/parameters/num_vfs")
    have["port_guid"] = None
    have["link_layer"] = None
    for info in have["rdma"].values():
        have["link_layer"] = have["link_layer"] or info.get("link_layer")
        if info["port_guids"]:
            have["port_guid"] = info["port_guids"][0]
            break
    vf_indexes = sorted(
        int(entry[len("virtfn") :]) for entry in host.listdir(pci_rel) if re.match(r"^virtfn\d+$", entry)
    )
    for index in vf_indexes:
        vf_rel = host.relpath("%s/virtfn%d" % (pci_rel, index))
        vf_address = vf_rel.rsplit("/", 1)[-1] if vf_rel else None
        where = "VF %d of %s" % (index, pci_address)
        _check_host_name("PCI address", vf_address, valid_pci_address, where)
        vf = {"index": index, "pci_address": vf_address, "driver": None, "netdevs": [], "rdma": []}
        if vf_rel:
            vf["driver"] = _check_host_name("driver", host.readlink_name(vf_rel + "/driver"), _valid_driver, where)
            vf["rdma"] = [d for d in host.listdir(vf_rel + "/infiniband") if valid_rdma_device(d)]
            for ifname in host.listdir(vf_rel + "/net"):
                _check_host_name("interface", ifname, valid_ifname, where)
                state = _netdev_state(host, ifname)
                if with_addresses and state["up"]:
                    state["addresses"] = _read_addresses(host, ifname)
                vf["netdevs"].append(state)
        have["vfs"].append(vf)
    if family != "mlx4":
        have["vf_guids"] = read_vf_guids(host, netdev) if netdev else None
        # mlx5's per-VF sysfs (device/sriov/<N>/node|port, MLNX_OFED and the lab) when the PF has it.
        for index in vf_indexes:
            node = guid_or_none(host.read("%s/sriov/%d/node" % (pci_rel, index)))
            port = guid_or_none(host.read("%s/sriov/%d/port" % (pci_rel, index)))
            if node is not None and port is not None:
                have["vf_guids"] = have["vf_guids"] or {}
                have["vf_guids"][index] = {"node_guid": format_guid(node), "port_guid": format_guid(port)}
    return have


# ---------------------------------------------------------------------- firmware (read-only)
def read_firmware(host, pci_address):
    """Firmware SR-IOV settings (SRIOV_EN, NUM_OF_VFS) through ``mstconfig``; read-only.

    Returns {"available": bool, "tool": ..., "settings": {...}, "error": str | None}.
    """
    if not host.has_commands():
        return {"available": False, "tool": None, "settings": {}, "error": "commands are not available"}
    for tool in ("mstconfig", "mlxconfig"):
        rc, out, err = host.run([tool, "-d", pci_address, "q"], MSTCONFIG_TIMEOUT)
        if rc == 127:
            continue
        if rc != 0:
            message = " ".join((err or out or "").split())[:300] or "exit code %d" % rc
            return {"available": True, "tool": tool, "settings": {}, "error": message}
        parsed = _firmware.parse_query(out)
        return {
            "available": True,
            "tool": tool,
            "settings": _firmware.summary(parsed, keys=FIRMWARE_KEYS),
            "device_type": parsed["device_type"],
            "error": None,
        }
    return {
        "available": False,
        "tool": None,
        "settings": {},
        "error": "mstconfig is not installed (Debian package mstflint); firmware settings unknown",
    }


def _firmware_hint(pci_address, want_vfs, firmware):
    hint = (
        "raise the firmware cap with 'mstconfig -d %s set SRIOV_EN=1 NUM_OF_VFS=%d', then reboot "
        "(or 'mstfwreset -d %s reset')" % (pci_address, want_vfs, pci_address)
    )
    if not firmware:
        return hint
    if firmware.get("settings"):
        shown = ", ".join(
            "%s=%s" % (k, v.get("next_boot", v.get("current", "?"))) for k, v in sorted(firmware["settings"].items())
        )
        return "%s; firmware now: %s (next boot)" % (hint, shown)
    if firmware.get("error"):
        return "%s; firmware settings not readable: %s" % (hint, firmware["error"])
    return hint


# ---------------------------------------------------------------------- in-use guard
def vfs_in_use(have, up_counts=False):
    """[{"index", "pci_address", "holders": [...]}] for VFs something else is using.

    ``up_counts``: a netdev that is up counts as in use even without addresses (rebinding a VF for its
    GUIDs takes its netdev down and back; a resize only cares about what would be lost).
    """
    expected = VF_DRIVER_OF.get(have.get("driver") or "")
    # A VF bound to the PF's VF driver has a netdev in the namespace it lives in. When its siblings
    # show theirs here and it does not, it was moved (ip link set .. netns): a container holds it.
    # When no VF shows a netdev here (ib_ipoib not loaded, or all moved) we cannot tell: plan warns.
    siblings_visible = any(vf.get("netdevs") for vf in have.get("vfs", []))
    result = []
    for vf in have.get("vfs", []):
        holders = []
        driver = vf.get("driver")
        if driver and (driver in PASSTHROUGH_DRIVERS or (expected and driver != expected)):
            holders.append("bound to driver %s (not the PF's VF driver %s)" % (driver, expected or "?"))
        for netdev in vf.get("netdevs", []):
            if netdev.get("up") and netdev.get("addresses"):
                holders.append("netdev %s is up with addresses %s" % (netdev["name"], ", ".join(netdev["addresses"])))
            elif netdev.get("up") and up_counts:
                holders.append("netdev %s is up" % netdev["name"])
            if netdev.get("master"):
                holders.append("netdev %s is enslaved to %s" % (netdev["name"], netdev["master"]))
        if driver and expected and driver == expected and siblings_visible and not vf.get("netdevs"):
            holders.append(
                "bound to %s but its netdev is not in this network namespace (moved to a container or another netns)"
                % driver
            )
        if holders:
            result.append({"index": vf["index"], "pci_address": vf.get("pci_address"), "holders": holders})
    return result


# ---------------------------------------------------------------------- mlx4 options
# mlx4_core reads num_vfs/probe_vf once, at probe time, for every ConnectX-3 on the host (upstream
# form: N, or port1,port2,port1+2). The values go through the OFED role's option model (_modprobe)
# so both agree on what the kernel accepts; our own file keeps the two owners apart.
MLX4_OPTIONS_HEADER_MARKER = "# Managed by hpcnet.infiniband (ib_sriov)"
MLX4_OPTIONS_HEADER = MLX4_OPTIONS_HEADER_MARKER + ": mlx4_core SR-IOV, read when mlx4_core loads.\n"


def _mlx4_vf_value(value):
    """Canonical tuple for a mlx4 VF option (N or [port1, port2, port1+2]); raises ValueError."""
    option = _modprobe.MODULES["mlx4_core"]["num_vfs"]
    return _modprobe.coerce("mlx4_core", "num_vfs", option, value)


def _render_vf_value(value):
    return _modprobe.render_value(value)


def _mlx4_options_from_text(text):
    """{option: raw value} of ``options mlx4_core`` lines in a modprobe.d file."""
    return {name: value for module, name, value in _modprobe.parse_modprobe_conf(text) if module == "mlx4_core"}


def render_mlx4_options(values):
    """Our modprobe.d file: ``options mlx4_core num_vfs=.. probe_vf=..`` (canonical tuples)."""
    text = MLX4_OPTIONS_HEADER
    for name in ("num_vfs", "probe_vf"):
        if values.get(name) is not None:
            text += "options mlx4_core %s=%s\n" % (name, _render_vf_value(values[name]))
    return text


def _mlx4_card(have):
    layers = {}
    for info in have.get("rdma", {}).values():
        for port, layer in (info.get("link_layers") or {}).items():
            layers[port] = layer
    return {
        "pci_address": have["pci_address"],
        "device_id": _ids.normalize_id(have.get("device_id")),
        "model": have.get("model"),
        "family": "mlx4",
        "ports": len(layers) or None,
        "link_layers": layers,
        "sriov_totalvfs": have.get("totalvfs"),
    }


# ---------------------------------------------------------------------- legacy persistence
def udev_rule_path(have):
    """Where earlier versions wrote the PF's udev rule (removed when it carries our marker)."""
    return "%s/70-hpcnet-sriov-%s.rules" % (UDEV_RULES_DIR, have["pci_address"].replace(":", "-"))


# ---------------------------------------------------------------------- plan
def files_to_read(have, want):
    """Paths of the files ``plan_sriov`` compares (read them with Host.read_file into ``files``)."""
    if have["family"] == "mlx4":
        path = want.get("mlx4_options_path") or MLX4_OPTIONS_PATH
        # Only a path the plan accepts is ever read (the plan refuses the others, naming them).
        paths = [path] if MLX4_OPTIONS_PATH_RE.match(path) else []
        return paths + [_modprobe.options_file_path("mlx4_core")]
    return [udev_rule_path(have)]


def _want_guids(have, want, plan):
    """[{"index", "node_guid", "port_guid"}] wanted for VFs 0..num_vfs-1, or [] (policy none)."""
    policy = want.get("guid_policy") or "none"
    count = want["num_vfs"]
    if policy == "none" or count == 0:
        return []
    result = []
    if policy == "derived":
        base = guid_or_none(have.get("port_guid"))
        if not base:
            plan.refuse(
                "guid_policy=derived needs the PF's port GUID, and %s has no InfiniBand port GUID "
                "(no RDMA device under %s/infiniband): use guid_policy=pool or explicit guids"
                % (have["pci_address"], have["pci_path"])
            )
            return []
        for index in range(count):
            node, port = derived_guids(base, index)
            result.append({"index": index, "node_guid": format_guid(node), "port_guid": format_guid(port)})
    elif policy == "pool":
        try:
            start = parse_guid(want.get("guid_pool_start"))
        except ValueError as exc:
            plan.refuse("guid_pool_start: %s" % exc)
            return []
        if not start:
            plan.refuse("guid_policy=pool needs guid_pool_start, a non-zero GUID (xxxx:xxxx:xxxx:xxxx)")
            return []
        if start + 2 * count > (1 << 64):
            plan.refuse("guid_pool_start %s leaves no room for %d VFs" % (want.get("guid_pool_start"), count))
            return []
        for index in range(count):
            node, port = pool_guids(start, index)
            result.append({"index": index, "node_guid": format_guid(node), "port_guid": format_guid(port)})
    elif policy == "explicit":
        given = want.get("guids") or []
        if len(given) != count:
            plan.refuse("guid_policy=explicit needs one entry per VF: %d given for num_vfs=%d" % (len(given), count))
            return []
        for index, entry in enumerate(given):
            try:
                node = parse_guid((entry or {}).get("node_guid"))
                port = parse_guid((entry or {}).get("port_guid"))
            except ValueError as exc:
                plan.refuse("guids[%d]: %s" % (index, exc))
                return []
            result.append({"index": index, "node_guid": format_guid(node), "port_guid": format_guid(port)})
    else:
        plan.refuse("unknown guid_policy %r" % policy)
        return []
    seen = {}
    for entry in result:
        for key in ("node_guid", "port_guid"):
            value = entry[key]
            if value in ("0000:0000:0000:0000", "ffff:ffff:ffff:ffff"):
                plan.refuse("VF %d %s %s is not a usable GUID" % (entry["index"], key, value))
            # A VF's node GUID may equal its own port GUID only if the operator said so explicitly.
            if value in seen and not (policy == "explicit" and seen[value][0] == entry["index"]):
                plan.refuse("GUID %s is used twice (VF %d and VF %d)" % (value, seen[value][0], entry["index"]))
            seen.setdefault(value, (entry["index"], key))
    known = set()
    for info in have.get("rdma", {}).values():
        known.update(info.get("port_guids") or [])
        if info.get("node_guid"):
            known.add(info["node_guid"])
    for entry in result:
        for key in ("node_guid", "port_guid"):
            if entry[key] in known:
                plan.refuse("VF %d %s %s equals a GUID of the PF itself" % (entry["index"], key, entry[key]))
    return result


def plan_sriov(have, want, firmware=None, files=None):
    """Pure: what to change on PF ``have`` to reach ``want``. Returns a ``Plan``.

    ``want``: num_vfs, force, guid_policy (none|derived|pool|explicit), guid_pool_start, guids,
    mlx4_num_vfs_per_port ([p1, p2, dual]), mlx4_probe_vf (int or [p1, p2, dual]),
    mlx4_options_path. ``files``: {path: current text or None} of the files the plan may write.
    A refused plan has no changes: nothing is applied, and the run says ``changed: false``.
    """
    plan = _plan_sriov(have, want, firmware, files)
    if plan.errors:
        plan.changes = []
        plan.reboot_required = False
    return plan


def _plan_sriov(have, want, firmware, files):
    plan = Plan()
    files = files or {}
    num_vfs = want["num_vfs"]
    pci = have["pci_address"]
    plan.info.update(
        {
            "pf": have["name"],
            "pci_address": pci,
            "family": have["family"],
            "totalvfs": have.get("totalvfs"),
            "numvfs": have.get("numvfs"),
        }
    )
    if not isinstance(num_vfs, int) or isinstance(num_vfs, bool) or num_vfs < 0:
        plan.refuse("num_vfs must be a non-negative integer")
        return plan
    if have.get("is_vf"):
        plan.refuse("%s is itself a virtual function: SR-IOV is configured on its PF" % pci)
        return plan
    if have["family"] == "mlx4":
        return _plan_mlx4(have, want, plan, files, firmware)

    total = have.get("totalvfs")
    current = have.get("numvfs")
    if total is None or current is None:
        plan.refuse(
            "%s has no SR-IOV capability in sysfs (no sriov_totalvfs/sriov_numvfs): SR-IOV is off in the "
            "firmware or the BIOS; %s" % (pci, _firmware_hint(pci, max(num_vfs, 1), firmware))
        )
        return plan
    if num_vfs > total:
        plan.refuse(
            "%s: num_vfs=%d is more than the %d VFs the firmware exposes (sriov_totalvfs=%d); %s"
            % (pci, num_vfs, total, total, _firmware_hint(pci, num_vfs, firmware))
        )
        return plan
    resize = current != num_vfs
    if resize and current > 0:
        # 0-then-N destroys every current VF, not only the ones above N.
        busy = vfs_in_use(have)
        if busy and not want.get("force"):
            described = "; ".join(
                "VF %d (%s): %s" % (b["index"], b["pci_address"], ", ".join(b["holders"])) for b in busy
            )
            plan.refuse(
                "%s: changing the VF count %d -> %d removes every VF, and %d in use: %s. "
                "Free them first or set force: true" % (pci, current, num_vfs, len(busy), described)
            )
            return plan
        if busy:
            plan.warn("force: removing VFs in use on %s: %s" % (pci, ", ".join(str(b["index"]) for b in busy)))
        if have.get("netdevs") and not any(vf.get("netdevs") for vf in have.get("vfs", [])):
            plan.warn(
                "%s: no VF shows a netdev in this namespace, so VFs moved to other namespaces cannot be "
                "detected" % pci
            )
    if resize:
        steps = ([0] if current > 0 else []) + ([num_vfs] if num_vfs > 0 else [])
        plan.add(
            "set_numvfs",
            "%s/sriov_numvfs" % pci,
            current,
            num_vfs,
            pf=have["name"],
            steps=steps,
            path=have["pci_path"] + "/sriov_numvfs",
        )

    guids = _want_guids(have, want, plan)
    if guids and not have.get("name"):
        plan.refuse("%s has no netdev in this namespace: VF GUIDs are set through 'ip link set <pf> vf N'" % pci)
        guids = []
    if guids and have.get("link_layer") == "Ethernet":
        plan.refuse("%s is an Ethernet port: VF node/port GUIDs apply to InfiniBand only" % pci)
        guids = []
    _plan_vf_guids(have, want, plan, guids, resize)
    plan.info["vf_guids"] = guids

    path = udev_rule_path(have)
    if (files.get(path) or "").startswith(LEGACY_UDEV_MARKER):
        plan.add("remove_file", path, files.get(path), None)
    return plan


def _plan_vf_guids(have, want, plan, guids, resize):
    """Per VF whose GUIDs change: unbind it from its driver, set node/port GUID, bind it again.

    A VF picks up new GUIDs only when its driver probes it again (what the SR-IOV network operator
    does), so a VF something uses is refused before any write unless ``force``. After a resize the
    VFs are new: bound by autoprobe to the PF's VF driver, at addresses known only once they exist.
    """
    have_guids = {} if resize else (have.get("vf_guids") or {})
    vfs = {} if resize else {vf["index"]: vf for vf in have.get("vfs", [])}
    busy = {} if resize else {b["index"]: b for b in vfs_in_use(have, up_counts=True)}
    expected = VF_DRIVER_OF.get(have.get("driver") or "")
    refused = []
    for entry in guids:
        index = entry["index"]
        now = have_guids.get(index)
        wanted = {"node_guid": entry["node_guid"], "port_guid": entry["port_guid"]}
        if now == wanted:
            continue
        if index in busy:
            if not want.get("force"):
                refused.append(busy[index])
                continue
            plan.warn("force: rebinding VF %d of %s, which is in use" % (index, have["pci_address"]))
        vf = vfs.get(index) or {}
        driver = vf.get("driver") if vf else expected
        target = "%s vf %d" % (have["name"], index)
        common = {"pf": have["name"], "vf": index, "pci_path": have["pci_path"], "vf_pci": vf.get("pci_address")}
        if driver:
            plan.add("unbind_vf", target, driver, None, driver=driver, **common)
        before = dict(now or {})
        plan.add("set_vf_guid", target, _guid_text(now), _guid_text(wanted), previous=before, **dict(common, **wanted))
        if driver:
            plan.add("bind_vf", target, None, driver, driver=driver, **common)
    if refused:
        plan.refuse(
            "%s: setting VF GUIDs unbinds and rebinds each VF, and %d in use: %s. Free them first or set force: true"
            % (
                have["pci_address"],
                len(refused),
                "; ".join("VF %d (%s): %s" % (b["index"], b["pci_address"], ", ".join(b["holders"])) for b in refused),
            )
        )


def _guid_text(entry):
    if not entry:
        return None
    return "node_guid %s port_guid %s" % (entry.get("node_guid"), entry.get("port_guid"))


def _plan_mlx4(have, want, plan, files, firmware=None):
    pci = have["pci_address"]
    path = want.get("mlx4_options_path") or MLX4_OPTIONS_PATH
    if not MLX4_OPTIONS_PATH_RE.match(path):
        plan.refuse(
            "mlx4_options_path %r is not a file /etc/modprobe.d/<name>.conf: the module writes nowhere else" % (path,)
        )
        return plan
    num_vfs = want["num_vfs"]
    per_port = want.get("mlx4_num_vfs_per_port")
    probe = want.get("mlx4_probe_vf")
    values = {}
    try:
        if per_port:
            values["num_vfs"] = _mlx4_vf_value(list(per_port))
            if sum(values["num_vfs"]) != num_vfs:
                plan.refuse("mlx4_num_vfs_per_port %s must add up to num_vfs=%d" % (list(per_port), num_vfs))
                return plan
        elif num_vfs > 0:
            values["num_vfs"] = _mlx4_vf_value(num_vfs)
        if probe is not None and num_vfs > 0:
            values["probe_vf"] = _mlx4_vf_value(probe)
    except ValueError as exc:
        plan.refuse("mlx4 VF options: %s" % exc)
        return plan
    if values:
        for message in _modprobe.validate({"mlx4_core": values}, [_mlx4_card(have)], "inbox"):
            plan.refuse(message)
    total = have.get("totalvfs")
    if total is not None and num_vfs > total:
        plan.refuse(
            "%s: num_vfs=%d is more than the %d VFs the firmware exposes (sriov_totalvfs=%d); %s"
            % (pci, num_vfs, total, total, _firmware_hint(pci, num_vfs, firmware))
        )
    if plan.errors:
        return plan
    if want.get("guid_policy") not in (None, "none"):
        plan.warn("mlx4 VF GUIDs come from the SM's alias GUID table (iov/ports/N/admin_guids): not set by this module")
    # The OFED role's file may carry num_vfs/probe_vf too: two owners of one setting is refused.
    other_path = _modprobe.options_file_path("mlx4_core")
    if path == other_path:
        plan.refuse("mlx4_options_path %s is the file of ib_kernel_modules (ofed role): choose another" % path)
        return plan
    other = _mlx4_options_from_text(files.get(other_path))
    clash = sorted(k for k in ("num_vfs", "probe_vf") if k in other)
    if clash:
        plan.refuse(
            "%s already sets mlx4_core %s (ib_kernel_modules / ofed role): set the VF count in one "
            "place only" % (other_path, ", ".join(clash))
        )
        return plan
    current_text = files.get(path)
    if current_text is not None and not current_text.startswith(MLX4_OPTIONS_HEADER_MARKER):
        # Not ours (no marker): never rewritten nor removed. Refused when it matters, naming the file.
        theirs = sorted(k for k in ("num_vfs", "probe_vf") if k in _mlx4_options_from_text(current_text))
        if values or theirs:
            plan.refuse(
                "%s was not written by hpcnet.infiniband (no '%s' header line)%s: it is left as it is. Remove "
                "the mlx4_core num_vfs/probe_vf options from it, or set mlx4_options_path to another file"
                % (path, MLX4_OPTIONS_HEADER_MARKER, " and sets mlx4_core %s" % ", ".join(theirs) if theirs else "")
            )
            return plan
        current_text = text = None
    else:
        text = render_mlx4_options(values) if values else None
    if text != current_text:
        plan.add("write_file" if text else "remove_file", path, current_text, text, mode="0644")
        plan.info["modprobe_changed"] = path
    plan.info["mlx4_options"] = {k: _render_vf_value(v) for k, v in values.items()}
    running = have.get("numvfs")
    param = have.get("mlx4_param_num_vfs")
    wanted_param = plan.info["mlx4_options"].get("num_vfs", "0")
    pending = bool(plan.changes)
    if running is not None:
        pending = pending or running != num_vfs
    elif param is not None:
        pending = pending or param.replace(" ", "") not in (wanted_param, wanted_param + ",0,0")
    elif not plan.changes:
        plan.warn(
            "%s: neither sriov_numvfs nor /sys/module/mlx4_core/parameters/num_vfs is readable: cannot tell "
            "whether the running mlx4_core already uses num_vfs=%s" % (pci, wanted_param)
        )
    if pending:
        plan.reboot_required = True
        plan.warn(
            "%s is a ConnectX-3 (mlx4): the VF count comes from mlx4_core options (for every ConnectX-3 on the "
            "host); running VFs %s, wanted %d: takes effect when mlx4_core is reloaded or the host reboots"
            % (pci, "unknown" if running is None else running, num_vfs)
        )
    return plan


# ---------------------------------------------------------------------- apply
def _read_numvfs(host, path):
    return host.read_int(path, 10)


def _write_numvfs(host, path, value, timeout):
    host.write(path, str(value), timeout=timeout)


def apply_sriov(host, plan, timeout=60):
    """Make the changes of ``plan``; returns a result dict. Raises SriovApplyError with the exact state."""
    done = []
    unbound = {}  # VF index -> (driver, VF PCI address) while this run holds it unbound
    for change in plan.changes:
        if change.action == "set_numvfs":
            _apply_numvfs(host, change, timeout, done)
        elif change.action == "unbind_vf":
            _apply_unbind(host, change, timeout, done, unbound)
        elif change.action == "set_vf_guid":
            try:
                _apply_vf_guid(host, change, timeout, done)
            except SriovApplyError as exc:
                raise _rolled_back(host, change, exc, timeout, done, unbound) from exc
            done.append(change.describe())
        elif change.action == "bind_vf":
            _apply_bind(host, change, timeout, done, unbound)
        elif change.action == "write_file":
            host.write_file(change.target, change.after, int(change.detail.get("mode", "0644"), 8))
            done.append(change.describe())
        elif change.action == "remove_file":
            host.remove_file(change.target)
            done.append(change.describe())
    return {"applied": done}


def _vf_function(host, change):
    """(VF PCI address, driver bound now) of the change's VF, read now (after a resize it is new)."""
    vf_rel = host.relpath("%s/virtfn%d" % (change.detail["pci_path"], change.detail["vf"]))
    address = vf_rel.rsplit("/", 1)[-1] if vf_rel else None
    if not valid_pci_address(address):
        raise SriovApplyError("VF %d of %s: no valid PCI function (%r)" % (change.detail["vf"], change.detail["pf"], address), [])
    driver = host.readlink_name(vf_rel + "/driver")
    if driver is not None and not _valid_driver(driver):
        raise SriovApplyError("VF %d (%s) is bound to a driver named %r: refusing to use it" % (change.detail["vf"], address, driver), [])
    return address, driver


def _apply_unbind(host, change, timeout, done, unbound):
    vf = change.detail["vf"]
    try:
        address, driver = _vf_function(host, change)
    except SriovApplyError as exc:
        raise SriovApplyError(str(exc), done) from exc
    if driver is None:
        unbound[vf] = None
        done.append("%s: not bound to a driver, nothing to unbind" % change.target)
        return
    try:
        host.write("bus/pci/drivers/%s/unbind" % driver, address, timeout=timeout)
    except HostError as exc:
        raise SriovApplyError("unbinding VF %d (%s) from %s failed: %s" % (vf, address, driver, exc), done) from exc
    unbound[vf] = (driver, address)
    done.append("%s: unbound %s from %s" % (change.target, address, driver))


def _bind(host, held, timeout):
    driver, address = held
    host.write("bus/pci/drivers/%s/bind" % driver, address, timeout=timeout)


def _apply_bind(host, change, timeout, done, unbound):
    vf = change.detail["vf"]
    held = unbound.pop(vf, None)
    if held is None:
        return
    try:
        _bind(host, held, timeout)
    except HostError as exc:
        raise SriovApplyError(
            "VF %d (%s) has its new GUIDs but binding it to %s failed: %s; the VF is unbound (bind it with "
            "'echo %s > /sys/bus/pci/drivers/%s/bind')" % (vf, held[1], held[0], exc, held[1], held[0]),
            done,
            {"vf": vf, "pci_address": held[1], "driver": None},
        ) from exc
    done.append("%s: bound %s to %s" % (change.target, held[1], held[0]))


def _rolled_back(host, change, error, timeout, done, unbound):
    """After a failed GUID write: put the old GUIDs back where known, rebind the VF; say what happened."""
    vf = change.detail["vf"]
    notes = []
    previous = change.detail.get("previous") or {}
    if previous.get("node_guid") and previous.get("port_guid"):
        try:
            _apply_vf_guid(host, _with_guids(change, previous), timeout, done)
            notes.append("its previous GUIDs were put back")
        except SriovApplyError as exc:
            notes.append("putting its previous GUIDs back failed: %s" % exc)
    held = unbound.pop(vf, None)
    if held:
        try:
            _bind(host, held, timeout)
            notes.append("it was bound to %s again" % held[0])
        except HostError as exc:
            notes.append("binding it to %s again failed: %s" % (held[0], exc))
    message = str(error) + ("; VF %d: %s" % (vf, ", ".join(notes)) if notes else "")
    return SriovApplyError(message, done, {"vf": vf, "rollback": notes})


def _with_guids(change, guids):
    detail = dict(change.detail, node_guid=guids["node_guid"], port_guid=guids["port_guid"])
    return type(change)(change.action, change.target, None, None, **detail)


def _apply_vf_guid(host, change, timeout, done):
    """Set one VF's GUIDs: mlx5's per-VF sysfs when the PF has it, else ``ip link set .. vf N``."""
    vf = change.detail["vf"]
    wanted = (parse_guid(change.detail["node_guid"]), parse_guid(change.detail["port_guid"]))
    node, port = format_guid_octets(wanted[0]), format_guid_octets(wanted[1])
    base = "%s/sriov/%d" % (change.detail["pci_path"], vf)
    if host.exists(base + "/node") and host.exists(base + "/port"):
        try:
            host.write(base + "/node", node, timeout=timeout)
            host.write(base + "/port", port, timeout=timeout)
        except HostError as exc:
            raise SriovApplyError("setting GUIDs of VF %d through %s failed: %s" % (vf, base, exc), done)
        got = (guid_or_none(host.read(base + "/node")), guid_or_none(host.read(base + "/port")))
        if got != wanted:
            raise SriovApplyError(
                "VF %d GUIDs read back as %s/%s after writing %s/%s"
                % (vf, host.read(base + "/node"), host.read(base + "/port"), node, port),
                done,
            )
        return
    argv = ["ip", "link", "set", "dev", change.detail["pf"], "vf", str(vf), "node_guid", node, "port_guid", port]
    rc, out, err = host.run(argv, IP_TIMEOUT)
    if rc != 0:
        reason = " ".join((err or out or "").split()) or "exit code %d" % rc
        hint = ""
        if "not supported" in reason.lower():
            hint = " (the PF's driver does not support VF GUIDs: needs an InfiniBand mlx5 PF)"
        raise SriovApplyError(
            "setting GUIDs of VF %d on %s failed: %s%s" % (vf, change.detail["pf"], reason, hint), done
        )


class SriovApplyError(Exception):
    def __init__(self, message, done, state=None):
        super().__init__(message)
        self.done = list(done)
        self.state = state or {}


def _apply_numvfs(host, change, timeout, done):
    path = change.detail["path"]
    previous = change.before
    for step in change.detail["steps"]:
        try:
            _write_numvfs(host, path, step, timeout)
        except HostError as exc:
            state = _recover(host, path, previous, step, timeout)
            kind = {errno.EBUSY: "EBUSY", errno.ETIMEDOUT: "timed out", errno.ERANGE: "ERANGE"}.get(exc.errno, str(exc))
            raise SriovApplyError(
                "writing %d to %s failed (%s): %s; %s" % (step, path, kind, exc, state["message"]), done, state
            )
        now = _read_numvfs(host, path)
        if now != step:
            state = _recover(host, path, previous, step, timeout)
            raise SriovApplyError(
                "wrote %d to %s but it reads back %s; %s" % (step, path, now, state["message"]), done, state
            )
        done.append("%s: %s" % (change.target, step))


def _recover(host, path, previous, failed_step, timeout):
    """After a failed step: try to put the previous count back; say exactly where the PF is."""
    now = _read_numvfs(host, path)
    attempt = None
    if previous and now != previous:
        try:
            if now:
                _write_numvfs(host, path, 0, timeout)
            _write_numvfs(host, path, previous, timeout)
            attempt = "restored the previous count %d" % previous
        except HostError as exc:
            attempt = "restoring the previous count %d failed: %s" % (previous, exc)
        now = _read_numvfs(host, path)
    message = "sriov_numvfs is now %s" % now
    if attempt:
        message += " (%s)" % attempt
    return {"numvfs": now, "previous": previous, "failed_step": failed_step, "message": message}


# ---------------------------------------------------------------------- module glue
def prepare(host, params):
    """have + plan: returns (plan, have, extra result dict). Raises SriovError.

    ``params``: ``pf`` and ``num_vfs`` (required) and any of ``PARAM_DEFAULTS``; what is left out takes
    the default there (no firmware query). Needs no AnsibleModule: the boot path calls it as the module does.
    """
    params = dict(PARAM_DEFAULTS, **{k: v for k, v in params.items() if v is not None})
    have = read_pf(host, params["pf"])
    firmware = None
    mellanox = _ids.normalize_id(have.get("vendor_id")) == _ids.VENDOR_MELLANOX
    if params.get("firmware_info") and mellanox and host.has_commands():
        firmware = read_firmware(host, have["pci_address"])
    files = {}
    for path in files_to_read(have, params):
        files[path] = host.read_file(path)
    plan = plan_sriov(have, params, firmware=firmware, files=files)
    initramfs = _initramfs(host, plan)
    busy = vfs_in_use(have)
    extra = {
        "pf": {k: have.get(k) for k in ("name", "pci_address", "model", "driver", "family", "totalvfs", "port_guid")},
        "numvfs": have.get("numvfs"),
        "totalvfs": have.get("totalvfs"),
        "vfs_in_use": busy,
        "vf_guids": plan.info.get("vf_guids", []),
        "firmware": firmware,
        "mlx4_options": plan.info.get("mlx4_options"),
    }
    extra.update(initramfs)
    return plan, have, extra


def _initramfs(host, plan):
    """Whether the mlx4_core options change needs an initramfs rebuild: only when the image holds mlx4_core."""
    path = plan.info.get("modprobe_changed")
    return _modprobe.plan_initramfs(host, plan, {"mlx4_core": path} if path else {})


def apply_for_module(host, plan, have, timeout):
    """Apply, then read back the PF: {"numvfs", "applied"}; raises SriovApplyError."""
    result = apply_sriov(host, plan, timeout=timeout)
    if have["family"] != "mlx4":
        result["numvfs"] = host.read_int(have["pci_path"] + "/sriov_numvfs", 10)
    return result
