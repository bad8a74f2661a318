# -*- coding: utf-8 -*-
# Copyright: hpcnet.infiniband contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Network members of a node -> the host's own network configuration (docs/networks-deploy.md).

A member is one network of the node (discovery's ``discovery_host_networks``): the interface, the
netdev that carries the address (``device``: the IPoIB child ``ib0.8002``, the OVS bridge of an EIPoIB
member, else the interface), kind, address with prefix, gateway, P_Key, VLAN, MTU and IPoIB mode.

Four backends, chosen by ``network_backend`` (``auto`` asks the host which one runs):

- ``networkmanager``: one keyfile per device in /etc/NetworkManager/system-connections (0600), the
  same keys ``nmcli --offline connection add`` writes; ``nmcli connection reload`` and ``up`` of the
  changed connections.
- ``systemd-networkd``: ``.netdev`` for P_Key children and VLANs, ``.network`` per device (the parent's
  carries ``IPoIB=``/``VLAN=``); ``networkctl reload`` when a file changed.
- ``ifupdown``: one stanza file per device in /etc/network/interfaces.d, the IPoIB child created and its
  mode set in ``pre-up``; ``ifdown``/``ifup`` of the changed device only.
- ``runtime``: sysfs and ``ip`` only; nothing persists across a reboot.

Renderers are pure functions of the desired devices. ``read_have`` reads only the files and state the
plan compares; ``plan_network`` refuses (before any write) a file the collection did not write.
"""

from __future__ import annotations

import ipaddress
import re
import shlex
import uuid

from ansible_collections.hpcnet.infiniband.plugins.module_utils._host import HostError, valid_ifname
from ansible_collections.hpcnet.infiniband.plugins.module_utils._plan import Plan
from ansible_collections.hpcnet.infiniband.plugins.module_utils._values import MTU_MAX, MTU_MIN, child_name, format_pkey, is_mtu, parse_pkey

__all__ = [
    "BACKENDS", "KINDS", "MARKER", "NM_DIR", "NETWORKD_DIR", "IFUPDOWN_DIR", "IFUPDOWN_MAIN",
    "MemberError", "devices_of", "connection_uuid", "render_networkmanager", "render_networkd",
    "render_ifupdown", "render_files", "detect_backend", "read_have", "plan_network", "apply_network", "summary",
]

MARKER = "# Managed by hpcnet.infiniband"
BACKENDS = ("networkmanager", "systemd-networkd", "ifupdown", "runtime")
KINDS = ("ipoib", "ipoib_child", "eipoib", "roce", "ethernet")
IPOIB_KINDS = ("ipoib", "ipoib_child")
MODES = ("datagram", "connected")
NM_DIR = "/etc/NetworkManager/system-connections"
NETWORKD_DIR = "/etc/systemd/network"
IFUPDOWN_DIR = "/etc/network/interfaces.d"
IFUPDOWN_MAIN = "/etc/network/interfaces"
# Connection UUIDs are uuid5(this namespace, device): stable across runs and hosts, so a re-run
# rewrites the same connection instead of adding a second one.
UUID_NAMESPACE = uuid.UUID("5e1f3f0c-7c1a-4b8e-9a43-6b2d6c1e0a11")
# Datagram mode carries at most the IB MTU (4096) minus the 4-byte IPoIB header.
DATAGRAM_MTU_MAX = 4092
VLAN_MAX = 4094
_NETWORK_NAME_RE = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")


class MemberError(ValueError):
    """A member the renderers cannot express (message names the network and value)."""


def _header(networks):
    return "%s (network %s): local changes are overwritten.\n" % (MARKER, ", ".join(networks))


def owned(content):
    """True when a file's text is one the collection wrote (its marker in the first line)."""
    return content is None or content.split("\n", 1)[0].startswith(MARKER)


# ---------------------------------------------------------------------------- members -> devices
def _member(raw, index):
    if not isinstance(raw, dict):
        raise MemberError("member #%d is not a mapping: %r" % (index, raw))
    network = raw.get("network")
    where = "network %s" % network if isinstance(network, str) else "member #%d" % index
    if not isinstance(network, str) or not _NETWORK_NAME_RE.match(network):
        raise MemberError("%s: network name %r must be 1-64 letters, digits, '.', '_' or '-'" % (where, network))
    kind = raw.get("kind")
    if kind not in KINDS:
        raise MemberError("%s: kind %r is not one of %s" % (where, kind, ", ".join(KINDS)))
    interface, device = raw.get("interface"), raw.get("device") or raw.get("interface")
    for label, name in (("interface", interface), ("device", device)):
        if not valid_ifname(name):
            raise MemberError("%s: %s %r is not a valid interface name" % (where, label, name))
    text = raw.get("address")
    if not isinstance(text, str) or "/" not in text:
        raise MemberError("%s: address %r must carry its prefix, e.g. 10.20.0.11/24" % (where, text))
    try:
        address = ipaddress.ip_interface(text.strip())
    except ValueError:
        raise MemberError("%s: address %r is not an IP address with prefix" % (where, text)) from None
    gateway = raw.get("gateway")
    if gateway not in (None, ""):
        try:
            gateway = ipaddress.ip_address(str(gateway).strip())
        except ValueError:
            raise MemberError("%s: gateway %r is not an IP address" % (where, gateway)) from None
        if gateway.version != address.version or gateway not in address.network:
            raise MemberError("%s: gateway %s is not in %s" % (where, gateway, address.network))
    else:
        gateway = None
    pkey = None
    if raw.get("pkey") not in (None, ""):
        try:
            pkey = parse_pkey(raw["pkey"])
        except ValueError as exc:
            raise MemberError("%s: %s" % (where, exc)) from None
    vlan = raw.get("vlan")
    if vlan is not None and (isinstance(vlan, bool) or not isinstance(vlan, int) or not 1 <= vlan <= VLAN_MAX):
        raise MemberError("%s: vlan %r is not 1-%d" % (where, vlan, VLAN_MAX))
    mtu = raw.get("mtu")
    if mtu is not None and not is_mtu(mtu):
        raise MemberError("%s: mtu %r is not %d-%d" % (where, mtu, MTU_MIN, MTU_MAX))
    # A network's IPoIB mode does not apply to its Ethernet (RoCE, EIPoIB) members.
    mode = raw.get("mode") if kind in IPOIB_KINDS else None
    if mode is not None and mode not in MODES:
        raise MemberError("%s: mode %r is not datagram or connected" % (where, mode))
    if mode == "datagram" and mtu is not None and mtu > DATAGRAM_MTU_MAX:
        raise MemberError("%s: mtu %d is above %d, the most datagram mode carries" % (where, mtu, DATAGRAM_MTU_MAX))
    if kind == "ipoib_child":
        if pkey is None:
            raise MemberError("%s: an ipoib_child member needs its pkey" % where)
        if device != child_name(interface, pkey):
            raise MemberError("%s: device %r is not %r, the name the kernel gives the P_Key %s child of %s"
                              % (where, device, child_name(interface, pkey), format_pkey(pkey), interface))
    elif kind in ("roce", "ethernet") and vlan is not None:
        if device == interface:
            raise MemberError("%s: vlan %d needs its own device (e.g. %s.%d), not %s" % (where, vlan, interface, vlan, interface))
    elif kind != "eipoib" and device != interface:
        raise MemberError("%s: device %r must be the interface %r for kind %s" % (where, device, interface, kind))
    if kind == "eipoib" and device == interface:
        raise MemberError("%s: the address of an EIPoIB member belongs on its OVS bridge, not on %s" % (where, interface))
    return {"network": network, "interface": interface, "device": device, "kind": kind, "address": address,
            "gateway": gateway, "pkey": pkey if kind == "ipoib_child" else None,
            "vlan": vlan if kind in ("roce", "ethernet") else None, "mtu": mtu, "mode": mode}


def devices_of(members):
    """Members -> one desired device per ``device`` (sorted, parents before children).

    A device: {device, interface, kind, pkey, vlan, mtu, mode, addresses [ip_interface], gateways
    {4: ip, 6: ip}, networks [names]}. Raises MemberError for a member that cannot be rendered or two
    members that disagree about one device."""
    devices = {}
    for index, raw in enumerate(members or []):
        member = _member(raw, index)
        dev = devices.get(member["device"])
        if dev is None:
            dev = devices[member["device"]] = {
                key: member[key] for key in ("device", "interface", "kind", "pkey", "vlan", "mtu", "mode")}
            dev.update(addresses=[], gateways={}, networks=[])
        else:
            for key in ("interface", "kind", "pkey", "vlan", "mtu", "mode"):
                if dev[key] is None:
                    dev[key] = member[key]
                elif member[key] is not None and member[key] != dev[key]:
                    raise MemberError("networks %s and %s disagree about %s of %s: %r and %r" % (
                        ", ".join(dev["networks"]), member["network"], key, dev["device"], dev[key], member[key]))
        if member["address"] in dev["addresses"]:
            raise MemberError("network %s: address %s is given twice on %s" % (member["network"], member["address"], dev["device"]))
        gateway = member["gateway"]
        if gateway is not None:
            if dev["gateways"].get(gateway.version) not in (None, gateway):
                raise MemberError("network %s: a second IPv%d gateway %s on %s" % (member["network"], gateway.version, gateway, dev["device"]))
            dev["gateways"][gateway.version] = gateway
        dev["addresses"].append(member["address"])
        dev["networks"].append(member["network"])
    names = set(devices)
    for dev in devices.values():
        if dev["kind"] == "ipoib_child" and dev["interface"] in names and devices[dev["interface"]]["kind"] != "ipoib":
            raise MemberError("%s is the IPoIB parent of %s but is given as kind %s" % (
                dev["interface"], dev["device"], devices[dev["interface"]]["kind"]))
    return sorted(devices.values(), key=lambda d: (d["device"] != d["interface"], d["device"]))


def connection_uuid(device):
    return str(uuid.uuid5(UUID_NAMESPACE, device))


def _by_family(addresses, version):
    return [a for a in addresses if a.version == version]


# ---------------------------------------------------------------------------- NetworkManager
def nm_path(device):
    return "%s/hpcnet-%s.nmconnection" % (NM_DIR, device)


def nm_id(device):
    return "hpcnet-%s" % device


def _ini(sections):
    out = []
    for name, pairs in sections:
        out.append("[%s]" % name)
        out += ["%s=%s" % pair for pair in pairs]
        out.append("")
    return "\n".join(out)


def _nm_ip(dev, version):
    addresses = _by_family(dev["addresses"], version)
    if not addresses:
        return [("method", "disabled")]
    gateway = dev["gateways"].get(version)
    pairs = []
    for number, address in enumerate(addresses, start=1):
        # NM's keyfile form: addressN=ADDR/PREFIX[,GATEWAY] (the gateway rides on the first address).
        pairs.append(("address%d" % number, str(address) + ("," + str(gateway) if gateway and number == 1 else "")))
    pairs.append(("method", "manual"))
    return pairs


def render_networkmanager(dev):
    """{path: keyfile text} of one device, key for key what ``nmcli --offline connection add`` writes."""
    device, kind = dev["device"], dev["kind"]
    if kind == "eipoib":
        raise MemberError(
            "network %s: NetworkManager cannot put an address on %s, an OVS bridge it did not create (its "
            "ovs-interface profiles need NM to own the bridge); use network_backend ifupdown, "
            "systemd-networkd or runtime for EIPoIB members" % (", ".join(dev["networks"]), device))
    if kind in IPOIB_KINDS:
        conn_type = "infiniband"
        link = [("mtu", dev["mtu"])] if dev["mtu"] else []
        if kind == "ipoib_child":
            # NM stores the P_Key as a decimal integer (p-key=32770 for 0x8002).
            link += [("p-key", dev["pkey"]), ("parent", dev["interface"])]
        if dev["mode"]:
            link.append(("transport-mode", dev["mode"]))
        type_sections = [("infiniband", link)]
    else:
        conn_type = "vlan" if dev["vlan"] else "ethernet"
        type_sections = [("ethernet", [("mtu", dev["mtu"])] if dev["mtu"] else [])]
        if dev["vlan"]:
            type_sections.append(("vlan", [("flags", 1), ("id", dev["vlan"]), ("parent", dev["interface"])]))
    ipv6 = _nm_ip(dev, 6)
    if ipv6 == [("method", "disabled")]:
        ipv6 = [("addr-gen-mode", "default"), ("method", "disabled")]
    sections = [("connection", [("id", nm_id(device)), ("uuid", connection_uuid(device)), ("type", conn_type),
                                ("interface-name", device)])]
    sections += type_sections + [("ipv4", _nm_ip(dev, 4)), ("ipv6", ipv6), ("proxy", [])]
    return {nm_path(device): _header(dev["networks"]) + _ini(sections)}


# ---------------------------------------------------------------------------- systemd-networkd
def networkd_path(device, suffix):
    return "%s/10-hpcnet-%s.%s" % (NETWORKD_DIR, device, suffix)


def render_networkd(devices):
    """{path: text} of every device: ``.netdev`` for P_Key children and VLANs, ``.network`` per
    device; a parent that carries children gets ``IPoIB=``/``VLAN=`` in its ``.network`` (one written
    for it when the parent has no network of its own)."""
    files = {}
    by_name = {d["device"]: d for d in devices}
    stacked = {}
    for dev in devices:
        if dev["kind"] == "ipoib_child" or dev["vlan"]:
            stacked.setdefault(dev["interface"], []).append(dev)
    for dev in devices:
        device = dev["device"]
        if dev["kind"] == "ipoib_child" or dev["vlan"]:
            netdev = [("Name", device), ("Kind", "ipoib" if dev["kind"] == "ipoib_child" else "vlan")]
            if dev["mtu"]:
                netdev.append(("MTUBytes", dev["mtu"]))
            if dev["kind"] == "ipoib_child":
                # Decimal: networkd documents an integer; its parser's hex support differs by version.
                extra = ("IPoIB", [("PartitionKey", dev["pkey"])] + ([("Mode", dev["mode"])] if dev["mode"] else []))
            else:
                extra = ("VLAN", [("Id", dev["vlan"])])
            files[networkd_path(device, "netdev")] = _header(dev["networks"]) + _ini([("NetDev", netdev), extra])
        files[networkd_path(device, "network")] = _header(dev["networks"]) + _networkd_network(dev, stacked.get(device, []))
    for parent, children in stacked.items():
        if parent not in by_name:
            networks = sorted({n for child in children for n in child["networks"]})
            files[networkd_path(parent, "network")] = _header(networks) + _networkd_network(
                {"device": parent, "kind": None, "mtu": None, "mode": None, "addresses": [], "gateways": {}}, children)
    return files


def _networkd_network(dev, children):
    network = [("Address", str(a)) for a in dev["addresses"]]
    network += [("Gateway", str(dev["gateways"][v])) for v in (4, 6) if v in dev["gateways"]]
    network.append(("LinkLocalAddressing", "no" if not _by_family(dev["addresses"], 6) else "ipv6"))
    network += [("IPoIB" if c["kind"] == "ipoib_child" else "VLAN", c["device"]) for c in children]
    sections = [("Match", [("Name", dev["device"])])]
    if dev["mtu"] and dev["kind"] != "ipoib_child" and not dev.get("vlan"):
        sections.append(("Link", [("MTUBytes", dev["mtu"])]))
    sections.append(("Network", network))
    return _ini(sections)


# ---------------------------------------------------------------------------- ifupdown
def ifupdown_path(device):
    # source-directory reads only run-parts names ([A-Za-z0-9_-]): no dots in ours.
    return "%s/hpcnet-%s" % (IFUPDOWN_DIR, device.replace(".", "_"))


def _sysnet(name, attr=None):
    return shlex.quote("/sys/class/net/%s%s" % (name, "/" + attr if attr else ""))


def render_ifupdown(dev):
    """{path: stanza text} of one device. pre-up lines are shell lines of ifupdown: every name in them
    was validated (valid_ifname) and is quoted."""
    device, parent = dev["device"], dev["interface"]
    qdev, qparent = shlex.quote(device), shlex.quote(parent)
    pre = []
    if device != parent:
        pre.append("ip link set dev %s up" % qparent)
    if dev["kind"] == "ipoib_child":
        pre.append("[ -e %s ] || echo %s > %s" % (_sysnet(device), format_pkey(dev["pkey"]), _sysnet(parent, "create_child")))
    elif dev["vlan"]:
        pre.append("[ -e %s ] || ip link add link %s name %s type vlan id %d" % (_sysnet(device), qparent, qdev, dev["vlan"]))
    if dev["mode"]:
        # Before the MTU: connected mode is what allows an MTU above 4092.
        pre.append("echo %s > %s" % (dev["mode"], _sysnet(device, "mode")))
    lines = ["auto %s" % device]
    first = True
    for version, method in ((4, "inet"), (6, "inet6")):
        addresses = _by_family(dev["addresses"], version)
        if not addresses:
            continue
        lines.append("iface %s %s static" % (device, method))
        lines += ["    address %s" % a for a in addresses]
        if version in dev["gateways"]:
            lines.append("    gateway %s" % dev["gateways"][version])
        if first:
            if dev["mtu"]:
                lines.append("    mtu %d" % dev["mtu"])
            lines += ["    pre-up %s" % line for line in pre]
            first = False
    return {ifupdown_path(device): _header(dev["networks"]) + "\n".join(lines) + "\n"}


def interfaces_sources_dir(text):
    """True when /etc/network/interfaces reads our files in interfaces.d."""
    for line in (text or "").splitlines():
        words = line.split()
        if len(words) == 2 and words[0] == "source" and words[1] in (
                IFUPDOWN_DIR + "/*", "interfaces.d/*", IFUPDOWN_DIR + "/hpcnet-*"):
            return True
        if len(words) == 2 and words[0] == "source-directory" and words[1].rstrip("/") in (IFUPDOWN_DIR, "interfaces.d"):
            return True
    return False


def render_files(backend, devices):
    """{path: text} the backend needs for ``devices`` ({} for runtime)."""
    files = {}
    if backend == "networkmanager":
        for dev in devices:
            files.update(render_networkmanager(dev))
    elif backend == "systemd-networkd":
        files = render_networkd(devices)
    elif backend == "ifupdown":
        for dev in devices:
            files.update(render_ifupdown(dev))
    return files


# systemd 252 (Debian 12) rejects an [IPoIB] section in .network files ("Unknown section 'IPoIB'",
# seen in the molecule scenario network_backends) although its manual lists one: networkd sets the mode
# of the P_Key children it creates (.netdev), not of an IPoIB parent.
MODE_NOT_KEPT = ("systemd-networkd cannot keep the transport mode of %s (an IPoIB parent): the ipoib role sets it "
                 "now and the boot path keeps it")

FILE_MODES = {"networkmanager": 0o600, "systemd-networkd": 0o644, "ifupdown": 0o644}


# ---------------------------------------------------------------------------- have
def detect_backend(host):
    """(backend, reason): what manages this host's network. NetworkManager when its daemon runs,
    networkd when it is active, ifupdown when /etc/network/interfaces and ifup are there, else runtime."""
    rc, out, _err = host.run(["nmcli", "-t", "-f", "RUNNING", "general"])
    if rc == 0 and out.strip() == "running":
        return "networkmanager", "NetworkManager is running (nmcli general)"
    rc, out, _err = host.run(["systemctl", "is-active", "systemd-networkd.service"])
    if rc == 0 and out.strip() == "active":
        return "systemd-networkd", "systemd-networkd.service is active"
    if host.read_file(IFUPDOWN_MAIN) is not None:
        rc, _out, _err = host.run(["ifup", "--version"])
        if rc == 0:
            return "ifupdown", "%s exists and ifup runs" % IFUPDOWN_MAIN
    return "runtime", "no NetworkManager, systemd-networkd or ifupdown found"


def _ip_addresses(host, device):
    rc, out, _err = host.run(["ip", "-o", "addr", "show", "dev", device])
    if rc != 0:
        return []
    found = []
    for line in out.splitlines():
        words = line.split()
        for family in ("inet", "inet6"):
            if family in words and words.index(family) + 1 < len(words):
                found.append(words[words.index(family) + 1])
    return found


def read_have(host, backend, devices):
    """What the plan compares: the backend (detected for ``auto``), the files it would write, and per
    device the live state the backend needs (ifupdown: configured or not; runtime: link, mode, MTU,
    addresses, default route)."""
    reason = "chosen by network_backend"
    if backend == "auto":
        backend, reason = detect_backend(host)
    have = {"backend": backend, "reason": reason, "files": {}, "devices": {}}
    try:
        files = render_files(backend, devices)
    except MemberError:
        files = {}  # plan_network renders again and refuses with the message
    for path in files:
        have["files"][path] = host.read_file(path)
    if backend == "ifupdown":
        have["interfaces"] = host.read_file(IFUPDOWN_MAIN)
        for dev in devices:
            rc, out, _err = host.run(["ifquery", "--state", dev["device"]])
            state = {"up": rc == 0 and bool(out.strip())}
            if have["files"].get(ifupdown_path(dev["device"])) is None:
                # Defined elsewhere already? (ifquery reads every file ifup would.)
                rc, out, _err = host.run(["ifquery", dev["device"]])
                state["defined_elsewhere"] = rc == 0
            have["devices"][dev["device"]] = state
    elif backend == "runtime":
        for dev in devices:
            name = dev["device"]
            exists = host.exists("class/net/%s" % name)
            flags = host.read_int("class/net/%s/flags" % name, 16) if exists else None
            have["devices"][name] = {
                "exists": exists,
                "up": bool(flags is not None and flags & 1),
                "mtu": host.read_int("class/net/%s/mtu" % name) if exists else None,
                "mode": host.read("class/net/%s/mode" % name) if exists and dev["mode"] else None,
                "addresses": _ip_addresses(host, name) if exists else [],
            }
        if any(d["gateways"] for d in devices):
            rc, out, _err = host.run(["ip", "route", "show", "default"])
            have["default_routes"] = out.strip().splitlines() if rc == 0 else []
            rc, out, _err = host.run(["ip", "-6", "route", "show", "default"])
            have["default_routes6"] = out.strip().splitlines() if rc == 0 else []
    return have


# ---------------------------------------------------------------------------- plan
def plan_network(members, have, activate=True):
    """Pure: (plan, info). Refusals are decided here, before anything is written. ``activate=False``
    writes the files only (no reload, no ifup): the manager picks them up at its next reload or boot."""
    plan = Plan()
    backend = have["backend"]
    info = {"backend": backend, "backend_reason": have["reason"], "persistent": backend != "runtime",
            "devices": [], "files": []}
    try:
        devices = devices_of(members)
        files = render_files(backend, devices)
    except MemberError as exc:
        plan.refuse(str(exc))
        return plan, info
    info["devices"] = [d["device"] for d in devices]
    info["files"] = sorted(files)
    for path in sorted(files):
        if not owned(have["files"].get(path)):
            plan.refuse("%s exists and was not written by hpcnet.infiniband (no '%s' first line): "
                        "refusing to overwrite it; move it away or merge it by hand" % (path, MARKER))
    if backend == "ifupdown":
        if have.get("interfaces") is None:
            plan.refuse("%s does not exist: ifupdown would not read %s" % (IFUPDOWN_MAIN, IFUPDOWN_DIR))
        elif not interfaces_sources_dir(have["interfaces"]):
            plan.refuse("%s does not source %s (add 'source %s/*'): ifup would not read the stanzas"
                        % (IFUPDOWN_MAIN, IFUPDOWN_DIR, IFUPDOWN_DIR))
        for dev in devices:
            if have["devices"].get(dev["device"], {}).get("defined_elsewhere"):
                plan.refuse("%s is already defined for ifupdown outside %s (ifquery %s): refusing a second "
                            "stanza" % (dev["device"], ifupdown_path(dev["device"]), dev["device"]))
    if not plan.ok:
        return plan, info
    if backend == "runtime" and not activate:
        plan.refuse("network_backend runtime with activate false would do nothing: runtime has no files")
        return plan, info
    if backend == "runtime":
        plan.warn("network_backend runtime: addresses, children, mode and MTU are set now and nothing "
                  "persists across a reboot")
        _plan_runtime(plan, devices, have)
        return plan, info
    if backend == "systemd-networkd" and not activate:
        for dev in devices:
            if dev["kind"] == "ipoib" and dev["mode"]:
                plan.warn(MODE_NOT_KEPT % dev["device"])
    changed = set()
    for path in sorted(files):
        if have["files"].get(path) != files[path]:
            plan.add("write_file", path, have["files"].get(path), files[path], mode=FILE_MODES[backend])
            changed.add(path)
    if not activate:
        return plan, info
    if backend == "networkmanager":
        if changed:
            plan.add("nm_reload", "nmcli connection reload")
        for dev in devices:
            if nm_path(dev["device"]) in changed:
                plan.add("nm_up", nm_id(dev["device"]), device=dev["device"])
    elif backend == "systemd-networkd":
        if changed:
            plan.add("networkd_reload", "networkctl reload")
        for dev in devices:
            if dev["kind"] == "ipoib" and dev["mode"]:
                plan.warn(MODE_NOT_KEPT % dev["device"])
    else:
        for dev in devices:
            state = have["devices"].get(dev["device"], {})
            if ifupdown_path(dev["device"]) in changed:
                plan.add("ifup", dev["device"], "up" if state.get("up") else "down", "up",
                         restart=bool(state.get("up")))
            elif not state.get("up"):
                plan.add("ifup", dev["device"], "down", "up", restart=False)
    return plan, info


def _plan_runtime(plan, devices, have):
    for dev in devices:
        name = dev["device"]
        state = have["devices"].get(name, {})
        if not state.get("exists"):
            if dev["kind"] == "ipoib_child":
                plan.add("create_child", "class/net/%s/create_child" % dev["interface"], None, format_pkey(dev["pkey"]),
                         device=name)
            elif dev["vlan"]:
                plan.add("run", name, None, "vlan %d" % dev["vlan"],
                         argv=["ip", "link", "add", "link", dev["interface"], "name", name, "type", "vlan", "id", str(dev["vlan"])])
            else:
                plan.refuse("%s does not exist on this host (network %s)" % (name, ", ".join(dev["networks"])))
                continue
        if dev["mode"] and state.get("mode") != dev["mode"]:
            plan.add("write_sysfs", "class/net/%s/mode" % name, state.get("mode"), dev["mode"])
        if dev["mtu"] and state.get("mtu") != dev["mtu"]:
            plan.add("run", "%s mtu" % name, state.get("mtu"), dev["mtu"], argv=["ip", "link", "set", "dev", name, "mtu", str(dev["mtu"])])
        if not state.get("up"):
            plan.add("run", "%s link" % name, "down", "up", argv=["ip", "link", "set", "dev", name, "up"])
        present = set(state.get("addresses") or [])
        for address in dev["addresses"]:
            if str(address) not in present:
                plan.add("run", "%s address" % name, None, str(address),
                         argv=["ip", "addr", "add", str(address), "dev", name])
        for version, gateway in sorted(dev["gateways"].items()):
            routes = have.get("default_routes" if version == 4 else "default_routes6") or []
            if any(("via %s " % gateway) in route + " " for route in routes):
                continue
            if routes:
                plan.warn("%s: a default route exists (%s); not adding one via %s" % (name, routes[0], gateway))
                continue
            family = ["-6"] if version == 6 else []
            plan.add("run", "default route", None, str(gateway),
                     argv=["ip"] + family + ["route", "add", "default", "via", str(gateway), "dev", name])


# ---------------------------------------------------------------------------- apply
def _run(host, argv, done, timeout=60):
    rc, out, err = host.run(argv, timeout)
    if rc != 0:
        raise HostError("%s failed (rc=%d): %s" % (" ".join(argv), rc, (err or out).strip()))
    done.append(" ".join(argv))


def apply_network(host, plan):
    """The only writer. Returns {done: [...]}; on failure raises HostError naming what was done."""
    done = []
    try:
        # ifupdown: a configured device is taken down with its old stanza before the new one is written.
        for change in plan.changes:
            if change.action == "ifup" and change.detail.get("restart"):
                _run(host, ["ifdown", change.target], done)
        for change in plan.changes:
            action = change.action
            if action == "write_file":
                host.write_file(change.target, change.after, change.detail["mode"])
                done.append("wrote %s" % change.target)
            elif action == "create_child":
                host.write(change.target, change.after)
                done.append("created %s" % change.detail["device"])
            elif action == "write_sysfs":
                host.write(change.target, change.after)
                done.append("%s = %s" % (change.target, change.after))
            elif action == "run":
                _run(host, change.detail["argv"], done)
            elif action == "nm_reload":
                _run(host, ["nmcli", "connection", "reload"], done)
            elif action == "nm_up":
                _run(host, ["nmcli", "connection", "up", "id", change.target], done, timeout=120)
            elif action == "networkd_reload":
                _run(host, ["networkctl", "reload"], done)
            elif action == "ifup":
                _run(host, ["ifup", change.target], done, timeout=120)
    except HostError as exc:
        raise HostError("%s (done before: %s)" % (exc, "; ".join(done) or "nothing"), exc.errno, exc.path) from None
    return {"done": done}


def summary(info):
    """One line for the operator: where the configuration lives, or that nothing persists."""
    if not info["persistent"]:
        return ("runtime backend: %d device(s) configured with sysfs and ip only; nothing persists across a reboot "
                "(the boot_state role brings back IPoIB children, mode and MTU, never addresses)" % len(info["devices"]))
    return "%s backend (%s): %d device(s), kept in %s" % (
        info["backend"], info["backend_reason"], len(info["devices"]), ", ".join(info["files"]) or "no file")
