# -*- coding: utf-8 -*-
# Copyright: hpcnet.infiniband contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The site's networks (``discovery_networks``) and the addresses of their members.

Pure code, no host access. All address math goes through netaddr.

- ``parse_networks(entries)`` checks the operator's list and returns the definitions the nodes model
  keeps (``networks.definitions``).
- ``member(definition, interface, node_networks, bridges)`` says which netdev carries a node's address on
  a network (the IPoIB P_Key child, the EIPoIB bridge, a VLAN device or the interface itself).
- ``allocate(definitions, members, kept, static)`` gives every (node, network) member an address that
  never moves: a node keeps the address the model already has for it (keyed by its inventory hostname),
  a per-host static address wins, new members take the lowest free address of the range. Every problem
  is collected and raised at once (``NetworkError``) before anything is written.
"""

from __future__ import annotations

import re

from ansible_collections.hpcnet.infiniband.plugins.module_utils import _values

try:
    import netaddr
except ImportError:  # pragma: no cover - netaddr is a controller requirement (requirements.txt)
    netaddr = None

__all__ = [
    "NetworkError",
    "MEMBER_KINDS",
    "IB_FABRIC_KINDS",
    "DEFAULT_BRIDGES",
    "parse_networks",
    "parse_bridges",
    "member",
    "allocate",
    "check_overlaps",
    "check_one_fabric",
    "fabric_of",
    "host_network",
    "from_ib_networks",
]

MEMBER_KINDS = ("ipoib", "ipoib_child", "eipoib", "roce", "ethernet")
# Kinds whose frames travel on the InfiniBand fabric; the others on an Ethernet one.
IB_FABRIC_KINDS = ("ipoib", "ipoib_child", "eipoib")
MODES = ("datagram", "connected")
NETWORK_KEYS = ("name", "cidr", "gateway", "ip_range", "pkey", "vlan", "mtu", "ipoib_mode")
# The eipoib_ovs role's default bridges (roles/eipoib_ovs/defaults/main.yml, eipoib_ovs_networks): the
# first role listed owns an interface shared by several roles, so its bridge carries their addresses.
DEFAULT_BRIDGES = ({"role": "storage", "bridge": "br-storage"},
                   {"role": "private", "bridge": "br-prv"},
                   {"role": "public", "bridge": "br-ex"})
_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_\-]*$")


class NetworkError(ValueError):
    """The networks or the addresses are wrong; the message names network, node and value."""


def _need_netaddr():
    if netaddr is None:
        raise NetworkError("the Python package netaddr is needed on the controller for discovery_networks")


def _ip(text, what):
    try:
        if isinstance(text, bool) or not isinstance(text, str) or "/" in text:
            raise ValueError
        return netaddr.IPAddress(text.strip())
    except (ValueError, TypeError, netaddr.AddrFormatError):
        raise NetworkError("%s: %r is not an IP address" % (what, text))


def _usable(net):
    """(first, last) host addresses of a CIDR: not the network address, nor the IPv4 broadcast."""
    if net.version == 4 and net.prefixlen <= 30:
        return net.first + 1, net.last - 1
    if net.version == 6 and net.prefixlen <= 126:
        return net.first + 1, net.last  # the subnet-router anycast address is the network's first
    return net.first, net.last


def _reserved(definition):
    """Addresses of the CIDR no member may have: network, broadcast (IPv4), gateway."""
    net = netaddr.IPNetwork(definition["cidr"])
    first, last = _usable(net)
    reserved = {value for value in (net.first, net.last) if not first <= value <= last}
    if definition.get("gateway"):
        reserved.add(int(netaddr.IPAddress(definition["gateway"])))
    return reserved


# ------------------------------------------------------------------------------------- definitions
def _one_network(entry, index):
    where = "discovery_networks[%d]" % index
    if not isinstance(entry, dict):
        raise NetworkError("%s must be a mapping with name and cidr, got %r" % (where, entry))
    unknown = sorted(set(entry) - set(NETWORK_KEYS))
    if unknown:
        raise NetworkError("%s has unknown key(s) %s; allowed: %s" % (where, ", ".join(unknown), ", ".join(NETWORK_KEYS)))
    name = entry.get("name")
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise NetworkError("%s: name must be a network role such as 'storage', got %r" % (where, name))
    where = "network %s" % name
    cidr_text = entry.get("cidr")
    try:
        if not isinstance(cidr_text, str) or "/" not in cidr_text:
            raise ValueError
        net = netaddr.IPNetwork(cidr_text.strip())
    except (ValueError, TypeError, netaddr.AddrFormatError):
        raise NetworkError("%s: cidr %r is not a network such as 10.20.0.0/24" % (where, cidr_text))
    if net.ip != net.network:
        raise NetworkError("%s: cidr %s has host bits set; the network is %s" % (where, cidr_text, net.cidr))
    definition = {"name": name, "cidr": str(net.cidr), "gateway": None, "pkey": None, "vlan": None,
                  "mtu": None, "mode": None, "ip_range": None}
    first, last = _usable(net)
    gateway = entry.get("gateway")
    if gateway not in (None, ""):
        address = _ip(gateway, "%s: gateway" % where)
        if address not in net or not first <= int(address) <= last:
            raise NetworkError("%s: gateway %s is not a host address of %s" % (where, gateway, net.cidr))
        definition["gateway"] = str(address)
    ip_range = entry.get("ip_range")
    low, high = first, last
    if ip_range not in (None, {}):
        if not isinstance(ip_range, dict) or set(ip_range) - {"first", "last"}:
            raise NetworkError("%s: ip_range must be a mapping with first and/or last, got %r" % (where, ip_range))
        if ip_range.get("first") is not None:
            low = int(_ip(ip_range["first"], "%s: ip_range.first" % where))
        if ip_range.get("last") is not None:
            high = int(_ip(ip_range["last"], "%s: ip_range.last" % where))
        for key, value in (("first", low), ("last", high)):
            if not first <= value <= last:
                raise NetworkError("%s: ip_range.%s %s is not a host address of %s"
                                   % (where, key, netaddr.IPAddress(value, net.version), net.cidr))
        if low > high:
            raise NetworkError("%s: ip_range.first %s comes after ip_range.last %s"
                               % (where, netaddr.IPAddress(low, net.version), netaddr.IPAddress(high, net.version)))
    definition["ip_range"] = {"first": str(netaddr.IPAddress(low, net.version)),
                              "last": str(netaddr.IPAddress(high, net.version))}
    if entry.get("pkey") is not None:
        try:
            definition["pkey"] = _values.format_pkey(_values.parse_pkey(entry["pkey"]))
        except ValueError as exc:
            raise NetworkError("%s: %s" % (where, exc))
    vlan = entry.get("vlan")
    if vlan is not None:
        if isinstance(vlan, bool) or not isinstance(vlan, int) or not 1 <= vlan <= 4094:
            raise NetworkError("%s: vlan %r is not a VLAN id (1-4094)" % (where, vlan))
        definition["vlan"] = vlan
    elif definition["pkey"] is not None:
        # Fuel's rule: an Ethernet-framed member of a partition is tagged with its partition number.
        number = _values.partition(_values.parse_pkey(definition["pkey"]))
        if number != _values.PARTITION_MASK:
            if number > 4094:
                raise NetworkError("%s: P_Key %s gives VLAN %d, outside 1-4094; set vlan" % (where, definition["pkey"], number))
            definition["vlan"] = number
    mtu = entry.get("mtu")
    if mtu is not None:
        if not _values.is_mtu(mtu):
            raise NetworkError("%s: mtu %r is not an MTU (%d-%d)" % (where, mtu, _values.MTU_MIN, _values.MTU_MAX))
        definition["mtu"] = mtu
    mode = entry.get("ipoib_mode")
    if mode is not None:
        if mode not in MODES:
            raise NetworkError("%s: ipoib_mode %r is not one of %s" % (where, mode, ", ".join(MODES)))
        definition["mode"] = mode
    return definition


def parse_networks(entries):
    """The operator's ``discovery_networks`` list -> {name: definition} (in the given order)."""
    if entries in (None, []):
        return {}
    _need_netaddr()
    if not isinstance(entries, list):
        raise NetworkError("discovery_networks must be a list of networks, got %s" % type(entries).__name__)
    definitions = {}
    for index, entry in enumerate(entries):
        definition = _one_network(entry, index)
        if definition["name"] in definitions:
            raise NetworkError("network %s is defined twice in discovery_networks" % definition["name"])
        definitions[definition["name"]] = definition
    return definitions


def parse_bridges(entries):
    """[{role, bridge}] in eipoib_ovs priority order (its ``eipoib_ovs_networks``) -> list of (role, bridge)."""
    if entries is None:
        entries = list(DEFAULT_BRIDGES)
    if not isinstance(entries, list):
        raise NetworkError("the EIPoIB bridges must be a list of {role, bridge}, got %s" % type(entries).__name__)
    pairs = []
    for entry in entries:
        if not isinstance(entry, dict) or not isinstance(entry.get("role"), str) \
                or not isinstance(entry.get("bridge"), str) or not entry["bridge"]:
            raise NetworkError("each EIPoIB bridge entry needs role and bridge, got %r" % (entry,))
        pairs.append((entry["role"], entry["bridge"]))
    return pairs


# ------------------------------------------------------------------------------------- members
def member(definition, interface, node_networks, bridges):
    """(kind, device, vlan) of one node's member of a network.

    ``interface`` is the model's interface view (name, kind, ipoib); ``node_networks`` the node's
    {role: {interface}}; ``bridges`` the (role, bridge) pairs of the eipoib_ovs role in its order.
    """
    name = interface["name"]
    kind = interface.get("kind")
    pkey = definition.get("pkey") if definition else None
    if kind == "ipoib_child":
        return "ipoib_child", name, None
    if kind == "ipoib":
        number = _values.full_member(_values.parse_pkey(pkey)) if pkey else _values.DEFAULT_PKEY
        if number == _values.DEFAULT_PKEY:
            return "ipoib", name, None
        # The kernel names the child after the P_Key it was given, full membership as the ipoib role sets it.
        return "ipoib_child", _values.child_name(name, number), None
    vlan = definition.get("vlan") if definition else None
    if kind == "eipoib":
        # The eipoib_ovs role bridges an interface once, for the first of its roles allocated to it; the
        # address belongs on that bridge's internal port.
        for role, bridge in bridges:
            if (node_networks.get(role) or {}).get("interface") == name:
                return "eipoib", bridge, vlan
        return "eipoib", name, vlan
    member_kind = "roce" if kind == "roce" else "ethernet"
    # A tagged Ethernet member's address sits on its 802.1Q device, named as iproute2 and ifupdown do.
    return member_kind, ("%s.%d" % (name, vlan) if vlan else name), vlan


def fabric_of(member_kind):
    """The link layer a member's frames travel on: IPoIB and EIPoIB on the InfiniBand fabric, RoCE and
    plain Ethernet on an Ethernet one."""
    return "InfiniBand" if member_kind in IB_FABRIC_KINDS else "Ethernet"


def check_one_fabric(fabrics):
    """Networks whose members are on both an InfiniBand and an Ethernet fabric -> list of errors.

    ``fabrics``: {network: {fabric: ["node interface"]}}. One CIDR is one link: an IPoIB member cannot
    reach a RoCE or Ethernet member without a router, so such a network would be allocated but never work.
    """
    errors = []
    for network in sorted(fabrics):
        by_fabric = fabrics[network]
        if len(by_fabric) > 1:
            errors.append(
                "network %s has members on two fabrics that cannot reach each other over one subnet: %s; give "
                "each fabric its own network (discovery_network_rules and discovery_networks)"
                % (network, "; ".join("%s: %s" % (fabric, ", ".join(sorted(by_fabric[fabric], key=_natural)))
                                      for fabric in sorted(by_fabric))))
    return errors


# ------------------------------------------------------------------------------------- addresses
def _with_prefix(value, definition):
    return "%s/%d" % (netaddr.IPAddress(value, netaddr.IPNetwork(definition["cidr"]).version),
                      netaddr.IPNetwork(definition["cidr"]).prefixlen)


def _static_value(text, definition, node):
    """A static address (bare or with the network's prefix) -> int; NetworkError naming it."""
    where = "network %s, node %s: static address %r" % (definition["name"], node, text)
    net = netaddr.IPNetwork(definition["cidr"])
    if isinstance(text, str) and "/" in text:
        try:
            given = netaddr.IPNetwork(text.strip())
        except (ValueError, netaddr.AddrFormatError):
            raise NetworkError("%s is not an IP address" % where)
        if given.prefixlen != net.prefixlen:
            raise NetworkError("%s has prefix /%d, the network is %s" % (where, given.prefixlen, net.cidr))
        address = given.ip
    else:
        try:
            address = _ip(text, "")
        except NetworkError:
            raise NetworkError("%s is not an IP address" % where)
    if address.version != net.version or address not in net:
        raise NetworkError("%s is outside the network's CIDR %s" % (where, net.cidr))
    value = int(address)
    if value in _reserved(definition):
        what = "the gateway" if definition.get("gateway") and address == netaddr.IPAddress(definition["gateway"]) \
            else "the network or broadcast address"
        raise NetworkError("%s is %s of %s" % (where, what, net.cidr))
    return value


def _kept_value(text, definition):
    """A model's address -> int when it still is a valid host address of the network, else None."""
    try:
        given = netaddr.IPNetwork(text) if isinstance(text, str) else None
    except (ValueError, netaddr.AddrFormatError):
        return None
    net = netaddr.IPNetwork(definition["cidr"])
    if given is None or given.version != net.version or given.ip not in net or given.prefixlen != net.prefixlen:
        return None
    value = int(given.ip)
    return None if value in _reserved(definition) else value


def allocate(definitions, members, kept=None, static=None):
    """Addresses of every member. Returns ({network: {node: "a.b.c.d/p"}}, [warnings]).

    ``members``: {network: [node]} (nodes that carry the network); ``kept``: {network: {node: address}}
    from the model already written; ``static``: {node: {network: address}} (per-host static addresses,
    they win). Raises NetworkError with every problem at once (each naming network, node and value).
    """
    _need_netaddr()
    kept = kept or {}
    static = static or {}
    errors = []
    warnings = []
    result = {}
    for node in sorted(static, key=_natural):
        wanted = static[node]
        if not isinstance(wanted, dict):
            errors.append("node %s: static addresses must be a mapping of network to address, got %r" % (node, wanted))
            continue
        for network in wanted:
            if network not in definitions:
                errors.append("node %s: static address %r for network %s, which discovery_networks does not define"
                              % (node, wanted[network], network))
    for name, definition in definitions.items():
        nodes = sorted(set(members.get(name) or ()), key=_natural)
        first = int(netaddr.IPAddress(definition["ip_range"]["first"]))
        last = int(netaddr.IPAddress(definition["ip_range"]["last"]))
        reserved = _reserved(definition)
        taken = {}
        assigned = {}
        # 1. Static addresses win, checked.
        for node in sorted(static, key=_natural):
            wanted = static[node] if isinstance(static[node], dict) else {}
            if wanted.get(name) in (None, ""):
                continue
            try:
                value = _static_value(wanted[name], definition, node)
            except NetworkError as exc:
                errors.append(str(exc))
                continue
            if value in taken:
                errors.append("network %s: static address %s of node %s is also node %s's"
                              % (name, netaddr.IPAddress(value), node, taken[value]))
                continue
            if node not in nodes:
                errors.append("network %s, node %s: static address %s but no interface of the node carries %s"
                              % (name, node, wanted[name], name))
                continue
            taken[value] = node
            assigned[node] = value
        # 2. Members keep the address the model has for them.
        for node in nodes:
            if node in assigned:
                continue
            text = (kept.get(name) or {}).get(node)
            if text is None:
                continue
            value = _kept_value(text, definition)
            if value is None:
                warnings.append("network %s, node %s: address %s no longer fits %s; a new one is allocated"
                                % (name, node, text, definition["cidr"]))
            elif value in taken:
                warnings.append("network %s, node %s: address %s is now node %s's (static); a new one is allocated"
                                % (name, node, text, taken[value]))
            else:
                taken[value] = node
                assigned[node] = value
        # 3. New members take the lowest free address of the range, in node name order.
        candidate = first
        for node in nodes:
            if node in assigned:
                continue
            while candidate <= last and (candidate in taken or candidate in reserved):
                candidate += 1
            if candidate > last:
                errors.append("network %s, node %s: no free address left in %s-%s (%s)"
                              % (name, node, definition["ip_range"]["first"], definition["ip_range"]["last"],
                                 definition["cidr"]))
                continue
            taken[candidate] = node
            assigned[node] = candidate
        result[name] = {node: _with_prefix(value, definition) for node, value in assigned.items()}
    if errors:
        raise NetworkError("; ".join(errors))
    return result, warnings


def check_overlaps(definitions, node, network_interfaces):
    """Networks of one node whose CIDRs overlap on one interface -> list of errors."""
    errors = []
    names = sorted(n for n in network_interfaces if n in definitions)
    for index, left in enumerate(names):
        for right in names[index + 1:]:
            if network_interfaces[left] != network_interfaces[right]:
                continue
            a, b = netaddr.IPNetwork(definitions[left]["cidr"]), netaddr.IPNetwork(definitions[right]["cidr"])
            if a.version == b.version and (a.first <= b.last and b.first <= a.last):
                errors.append("node %s, interface %s: networks %s (%s) and %s (%s) overlap"
                              % (node, network_interfaces[left], left, a.cidr, right, b.cidr))
    return errors


def _item(network, interface, device, kind, address, gateway, pkey, vlan, mtu, mode):
    """One ``discovery_host_networks`` item. A P_Key child is described by its parent and the P_Key the
    kernel named it after (full membership: ``0x0002`` and ``0x8002`` are both ``ib0.8002``)."""
    if kind == "ipoib_child" and device:
        parent, _sep, suffix = device.rpartition(".")
        number = _values.pkey_or_none(suffix) if parent and len(suffix) == 4 else None
        if number is not None:
            interface, pkey = parent, _values.format_pkey(_values.full_member(number))
    return {"network": network, "interface": interface, "device": device, "kind": kind, "address": address,
            "gateway": gateway, "pkey": pkey, "vlan": vlan, "mtu": mtu,
            "mode": mode if kind in ("ipoib", "ipoib_child") else None}


def host_network(name, entry, definition):
    """One item of the ``discovery_host_networks`` fact (docs/networks.md) from a model network entry."""
    return _item(name, entry.get("interface"), entry.get("device"), entry.get("kind"), entry.get("address"),
                 definition.get("gateway"), definition.get("pkey"), entry.get("vlan"), definition.get("mtu"),
                 definition.get("mode"))


def from_ib_networks(ib_networks):
    """The ``discovery_host_networks`` list from the inventory plugin's ``ib_networks`` host var."""
    items = []
    for role, entry in (ib_networks or {}).items():
        if not isinstance(entry, dict) or not entry.get("address"):
            continue
        address = entry["address"] if entry.get("prefix") is None else "%s/%s" % (entry["address"], entry["prefix"])
        items.append(_item(role, entry.get("interface"), entry.get("device"), entry.get("kind"), address,
                           entry.get("gateway"), entry.get("pkey"), entry.get("vlan"), entry.get("mtu"),
                           entry.get("mode")))
    return items


def _natural(text):
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", str(text))]
