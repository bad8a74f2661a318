# -*- coding: utf-8 -*-
# Copyright: hpcnet.infiniband contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The nodes model: what bootstrap discovery learnt about every node, in one document.

Pure code (no host access, no Ansible imports). Input: per host the result of the ``ib_facts`` task
(``ansible_facts.ib_facts``, schema 1, see docs/facts.md), or the marks Ansible left on it
(``unreachable``, ``failed``), and the model already written. Output: a dict (schema 2,
``schemas/nodes_model.schema.json``) that is written as JSON and YAML and read back by the
``hpcnet.infiniband.nodes`` inventory plugin and the report.

The model is the inventory's source of truth: a run updates the nodes it covers and keeps every other
node as it was; a node that fails this run keeps its last good data with the status and error of this
run. Only ``remove_nodes`` takes a node out. Each node's facts are checked first (types, finite numbers,
bounded strings): one node's bad facts fail that node, never the model.

It mirrors what Fuel kept per node: every interface carries Fuel's REST fields (``name``, ``mac``,
``driver``, ``bus_info``, ``current_speed``, ``max_speed``, ``state``, ``assigned_networks``) plus
our InfiniBand fields; the node carries its ``network_mode``; the ``networks`` section says which
interface carries which network role, chosen by operator rules (``DEFAULT_RULES`` otherwise).
"""

from __future__ import annotations

import copy
import fnmatch
import math
import re

from ansible_collections.hpcnet.infiniband.plugins.module_utils import _facts, _networks

__all__ = [
    "MODEL_SCHEMA",
    "MODEL_KIND",
    "ROLES",
    "DEFAULT_RULES",
    "RuleError",
    "validate_rules",
    "build_model",
    "merge_model",
    "check_facts",
    "host_networks",
    "interface_view",
    "node_network_mode_problem",
    "comparable",
]

MODEL_SCHEMA = 2
READABLE_SCHEMAS = (1, 2)
MODEL_KIND = "hpcnet.infiniband.nodes"

# Fuel's network roles; "management" is the admin/PXE network of a bootstrap node.
ROLES = ("management", "storage", "private", "public", "rdma")

# Defaults (Fuel's Mellanox plugin): the OVS-backed roles need an Ethernet-framed device, so on IB
# they go on EIPoIB (eth_ipoib) and on RoCE nodes on the mlx Ethernet port; RDMA traffic itself uses
# IPoIB (or the RoCE port); admin/PXE stays on plain Ethernet, which is what a node PXE-boots from.
DEFAULT_RULES = {
    "management": [{"kind": "ethernet"}],
    "storage": [{"kind": "eipoib"}, {"kind": "roce"}],
    "private": [{"kind": "eipoib"}, {"kind": "roce"}],
    "public": [{"kind": "eipoib"}, {"kind": "roce"}],
    "rdma": [{"kind": "ipoib"}, {"kind": "roce"}],
}

# Keys a rule (matcher) may use; a value is one string or a list (any of them matches).
MATCHER_KEYS = ("kind", "driver", "name", "link_type", "network_mode", "model", "pci_driver")

DEFAULT_EXCLUDE_KINDS = ("loopback", "virtual")

# Interface kinds whose traffic runs in InfiniBand mode, and in Ethernet (RoCE) mode.
IB_MODE_KINDS = _networks.IB_FABRIC_KINDS
ETH_MODE_KINDS = ("roce",)

# Highest link rate (Mb/s) of known adapters, for Fuel's max_speed. The kernel does not publish the
# supported IB rates in sysfs, so this comes from the adapter generation (FDR 56, EDR 100, HDR 200...).
MAX_SPEED_BY_MODEL = (
    ("connectx-7", 400000),
    ("connectx-6 dx", 100000),
    ("connectx-6 lx", 50000),
    ("connectx-6", 200000),
    ("connectx-5", 100000),
    ("connectx-4 lx", 50000),
    ("connectx-4", 100000),
    ("connect-ib", 56000),
    ("connectx-3", 56000),
    ("connectx-2", 40000),
    ("connectx", 20000),
    ("bluefield-3", 400000),
    ("bluefield-2", 100000),
    ("bluefield", 100000),
    ("qle7", 40000),  # QLogic/Intel TrueScale QLE73xx (qib), QDR
    ("truescale", 40000),
)

NODE_STATUSES = ("discovered", "refused", "failed", "unreachable")
# Statuses of a run that read the node (its data is this run's).
READ_STATUSES = ("discovered", "refused")


class RuleError(ValueError):
    """The operator's allocation rules are malformed."""


class ModelError(ValueError):
    """The model file already written cannot be merged (not a nodes model, or a newer schema)."""


# ---------------------------------------------------------------------------------------- facts checks
# A sysfs attribute fits a page; a MAC is at most 20 bytes of hex pairs (IPoIB).
MAX_TEXT = 4096
MAC_RE = re.compile(r"^[0-9a-fA-F]{2}(?::[0-9a-fA-F]{2}){0,19}$")
MAX_DEPTH = 12
# Sections of ib_facts and the type each must have (None allowed where the facts say "not read").
_NIC_SECTIONS = ("ib", "ipoib", "eipoib", "sriov")
# The scalar fields the model computes with, sorts by or copies, and their types in docs/facts.md (null
# allowed): text, an integer, or a number with its range. A crafted value of another type or out of range
# fails that node only (a rate of "1" and 400 zeros was float infinity, and int() of it crashed the run).
_TEXT = "text"
_NODE_FIELDS = {"network_mode": _TEXT, "source": _TEXT}
_NIC_FIELDS = {"name": _TEXT, "kind": _TEXT, "driver": _TEXT, "model": _TEXT, "operstate": _TEXT,
               "link_type": _TEXT, "driver_source": _TEXT, "bus_info": _TEXT, "pci_address": _TEXT,
               "pci_driver": _TEXT, "vendor_id": _TEXT, "device_id": _TEXT, "network_mode": _TEXT,
               "mtu": (int, 0, 2 ** 32), "speed_mbps": (int, 0, 2 ** 32), "numa_node": (int, -1, 2 ** 16)}
# ib_facts reports a rate above 100000 Gb/s as null (docs/facts.md); anything above is not a port's rate.
_RATE = ((int, float), 0, 100000)
_PORT_FIELDS = {"state": _TEXT, "link_layer": _TEXT, "rate_gbps": _RATE}
_DEVICE_FIELDS = {"name": _TEXT, "model": _TEXT, "driver": _TEXT, "pci_address": _TEXT}


class FactsError(ValueError):
    """One node's facts are malformed; the node is marked failed with this reason."""


def _clean(value, path, warnings, depth=0):
    """A copy of a JSON-like value: over-long strings dropped (warning), non-finite numbers refused."""
    if depth > MAX_DEPTH:
        raise FactsError("%s is nested deeper than %d levels" % (path, MAX_DEPTH))
    if isinstance(value, dict):
        return {str(k)[:MAX_TEXT]: _clean(v, "%s.%s" % (path, k), warnings, depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v, "%s[%d]" % (path, i), warnings, depth + 1) for i, v in enumerate(value)]
    if isinstance(value, float) and not math.isfinite(value):
        raise FactsError("%s is not a finite number (%r)" % (path, value))
    if isinstance(value, str) and len(value) > MAX_TEXT:
        warnings.append("%s: a %d-character value was dropped (more than a sysfs page)" % (path, len(value)))
        return None
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise FactsError("%s has a value of type %s" % (path, type(value).__name__))


def _need(value, kind, path, optional=False):
    if value is None and optional:
        return
    if not isinstance(value, kind):
        raise FactsError("%s must be a %s, got %s" % (path, "mapping" if kind is dict else "list",
                                                      type(value).__name__))


def _check_fields(record, fields, path):
    """FactsError unless each of ``fields`` in ``record`` is null or of its documented type and range."""
    for key, kind in fields.items():
        value = record.get(key)
        if value is None:
            continue
        where = "%s.%s" % (path, key)
        if kind == _TEXT:
            if not isinstance(value, str):
                raise FactsError("%s must be text, got %s" % (where, type(value).__name__))
            continue
        types, low, high = kind
        if isinstance(value, bool) or not isinstance(value, types):
            raise FactsError("%s must be a number, got %s" % (where, type(value).__name__))
        if not low <= value <= high:
            raise FactsError("%s is out of range %s..%s (%s)" % (where, low, high, str(value)[:20]))


def check_facts(facts):
    """(clean copy of ``facts``, [warnings]) or FactsError with the reason.

    The shape the model reads is checked (mappings where mappings are expected, finite numbers); values
    longer than a sysfs page and MACs that are not hex pairs are dropped with a warning, never copied
    into the model or the reports.
    """
    warnings = []
    _need(facts, dict, "ib_facts")
    clean = _clean(facts, "ib_facts", warnings)
    _need(clean.get("nics"), dict, "ib_facts.nics")
    _need(clean.get("devices"), dict, "ib_facts.devices", optional=True)
    _need(clean.get("subnet_manager"), dict, "ib_facts.subnet_manager", optional=True)
    _need(clean.get("warnings"), list, "ib_facts.warnings", optional=True)
    _need(clean.get("network_mode_reasons"), list, "ib_facts.network_mode_reasons", optional=True)
    _check_fields(clean, _NODE_FIELDS, "ib_facts")
    for name, nic in clean["nics"].items():
        path = "ib_facts.nics.%s" % name
        _need(nic, dict, path)
        _check_fields(nic, _NIC_FIELDS, path)
        for section in _NIC_SECTIONS:
            _need(nic.get(section), dict, "%s.%s" % (path, section), optional=True)
        if isinstance(nic.get("ib"), dict):
            _check_fields(nic["ib"], _PORT_FIELDS, "%s.ib" % path)
        if isinstance(nic.get("eipoib"), dict):
            _need(nic["eipoib"].get("slaves"), list, "%s.eipoib.slaves" % path, optional=True)
        mac = nic.get("mac")
        if mac is not None and not (isinstance(mac, str) and MAC_RE.match(mac)):
            warnings.append("%s.mac: %r is not a MAC (hex pairs, at most 20 bytes); dropped" % (path, str(mac)[:40]))
            nic["mac"] = None
    for name, device in (clean.get("devices") or {}).items():
        path = "ib_facts.devices.%s" % name
        _need(device, dict, path)
        _check_fields(device, _DEVICE_FIELDS, path)
        _need(device.get("ports"), dict, "%s.ports" % path, optional=True)
        for port_name, port in (device.get("ports") or {}).items():
            _need(port, dict, "%s.ports.%s" % (path, port_name))
            _check_fields(port, _PORT_FIELDS, "%s.ports.%s" % (path, port_name))
    for name, entry in (clean.get("subnet_manager") or {}).items():
        _need(entry, dict, "ib_facts.subnet_manager.%s" % name)
    return clean, warnings


# ---------------------------------------------------------------------------------------- helpers
def natural_key(text):
    """Sort key that puts ib2 before ib10."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", str(text))]


def _as_list(value):
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return list(value)
    return [value]


def _int_or_none(value):
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value)
    if isinstance(value, str):
        try:
            return int(value, 0)
        except ValueError:
            return None
    return None


def _num_or_none(value):
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return value
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def max_speed_for_model(model):
    """Highest link rate in Mb/s for a known adapter model name, else None."""
    if not isinstance(model, str) or not model:
        return None
    lowered = model.lower()
    for prefix, mbps in MAX_SPEED_BY_MODEL:
        if prefix in lowered:
            return mbps
    return None


# ---------------------------------------------------------------------------------------- rules
def validate_rules(rules):
    """Merge operator rules over the defaults and check them. Returns a new dict role -> [matcher].

    ``rules`` maps a role to a list of matchers (dicts of MATCHER_KEYS) tried in order, or to an
    empty list / ``None`` to leave the role unassigned. Roles not mentioned keep their default;
    other role names are accepted (an operator may add e.g. ``backup``).
    """
    merged = {role: [{key: _as_list(value) for key, value in matcher.items()} for matcher in matchers]
              for role, matchers in DEFAULT_RULES.items()}
    if rules is None:
        return merged
    if not isinstance(rules, dict):
        raise RuleError("allocation rules must be a mapping of network role to a list of matchers, got %s"
                        % type(rules).__name__)
    for role, matchers in rules.items():
        if not isinstance(role, str) or not re.match(r"^[A-Za-z][A-Za-z0-9_\-]*$", role):
            raise RuleError("network role names are words like 'storage', got %r" % (role,))
        if matchers is None:
            merged[role] = []
            continue
        if isinstance(matchers, dict):
            matchers = [matchers]
        if not isinstance(matchers, list):
            raise RuleError("rules for role %r must be a list of matchers, got %s"
                            % (role, type(matchers).__name__))
        checked = []
        for index, matcher in enumerate(matchers):
            if not isinstance(matcher, dict) or not matcher:
                raise RuleError("rule %d of role %r must be a non-empty mapping with keys from %s"
                                % (index + 1, role, ", ".join(MATCHER_KEYS)))
            unknown = sorted(set(matcher) - set(MATCHER_KEYS))
            if unknown:
                raise RuleError("rule %d of role %r has unknown key(s) %s; allowed: %s"
                                % (index + 1, role, ", ".join(unknown), ", ".join(MATCHER_KEYS)))
            clean = {}
            for key, value in matcher.items():
                values = _as_list(value)
                if not values or not all(isinstance(v, str) and v for v in values):
                    raise RuleError("rule %d of role %r: %s must be a string or a list of strings"
                                    % (index + 1, role, key))
                clean[key] = values
            checked.append(clean)
        merged[role] = checked
    return merged


def _matches(interface, matcher):
    for key, patterns in matcher.items():
        value = interface.get(key)
        if value is None:
            return False
        value = str(value)
        if key == "name":
            if not any(fnmatch.fnmatchcase(value, pattern) for pattern in patterns):
                return False
        elif key == "model":
            if not any(fnmatch.fnmatch(value.lower(), pattern.lower()) for pattern in patterns):
                return False
        elif value not in patterns:
            return False
    return True


def _link_up(interface):
    ib = interface.get("ib") or {}
    if ib:
        return ib.get("state") == "ACTIVE"
    return interface.get("carrier") in (1, True, "1") or interface.get("state") == "up"


def allocate(interfaces, rules):
    """Pick an interface per role. Returns (assignments {role: {interface, rule}}, unassigned [role]).

    For each role the matchers are tried in order; among the interfaces one matcher selects, those
    with link up come first, then by name (ib2 before ib10). One interface may carry several roles.
    """
    assignments = {}
    unassigned = []
    for role in sorted(rules, key=lambda r: (ROLES.index(r) if r in ROLES else len(ROLES), r)):
        chosen = None
        for index, matcher in enumerate(rules[role]):
            candidates = [i for i in interfaces if _matches(i, matcher)]
            if candidates:
                candidates.sort(key=lambda i: (not _link_up(i), natural_key(i["name"])))
                chosen = {"interface": candidates[0]["name"], "rule": index + 1,
                          "matched": {k: (v[0] if len(v) == 1 else v) for k, v in matcher.items()}}
                break
        if chosen is None:
            unassigned.append(role)
        else:
            assignments[role] = chosen
    return assignments, unassigned


# ---------------------------------------------------------------------------------------- interfaces
def _interface_mode(nic):
    mode = nic.get("network_mode")
    if mode in ("infiniband", "ethernet"):
        return mode
    kind = nic.get("kind")
    if kind in IB_MODE_KINDS:
        return "infiniband"
    if kind in ETH_MODE_KINDS:
        return "ethernet"
    return None


def interface_view(nic, nics=None):
    """One interface as the nodes model keeps it: Fuel's REST fields first, then ours.

    ``current_speed``/``max_speed`` are Mb/s like Fuel's: the IB port rate when the port is ACTIVE,
    else the Ethernet ``speed`` when the link is up; EIPoIB reports the best of its IPoIB slaves.
    """
    nics = nics or {}
    ib = nic.get("ib") if isinstance(nic.get("ib"), dict) else None
    current = None
    if ib:
        rate = _num_or_none(ib.get("rate_gbps"))
        if rate and ib.get("state") == "ACTIVE":
            current = int(round(rate * 1000))
    else:
        speed = _int_or_none(nic.get("speed_mbps"))
        if speed and speed > 0 and nic.get("operstate") in ("up", "unknown", None):
            current = speed
    eipoib = nic.get("eipoib") if isinstance(nic.get("eipoib"), dict) else None
    model = nic.get("model")
    if eipoib and current is None:
        slave_speeds = []
        for slave in _as_list(eipoib.get("slaves")):
            slave_nic = nics.get(slave) if isinstance(slave, str) else None
            if isinstance(slave_nic, dict):
                slave_view = interface_view(slave_nic)
                if slave_view["current_speed"]:
                    slave_speeds.append(slave_view["current_speed"])
                model = model or slave_nic.get("model")
        current = max(slave_speeds) if slave_speeds else None
    max_speed = max_speed_for_model(model)
    if max_speed is not None and current and current > max_speed:
        max_speed = current  # the table is a floor, the running link is proof
    view = {
        "name": nic.get("name"),
        "mac": nic.get("mac"),
        "driver": nic.get("driver"),
        "bus_info": nic.get("bus_info"),
        "current_speed": current,
        "max_speed": max_speed,
        "state": nic.get("operstate"),
        "kind": nic.get("kind"),
        "link_type": nic.get("link_type"),
        "network_mode": _interface_mode(nic),
        "driver_source": nic.get("driver_source"),
        "model": nic.get("model"),
        "pci_address": nic.get("pci_address"),
        "pci_driver": nic.get("pci_driver"),
        "vendor_id": nic.get("vendor_id"),
        "device_id": nic.get("device_id"),
        "numa_node": nic.get("numa_node"),
        "mtu": nic.get("mtu"),
        "carrier": nic.get("carrier"),
        "speed_mbps": nic.get("speed_mbps"),
    }
    for section in ("ib", "ipoib", "eipoib", "sriov"):
        if isinstance(nic.get(section), dict):
            view[section] = copy.deepcopy(nic[section])
    if nic.get("physfn") is not None:
        view["physfn"] = nic.get("physfn")
    view["assigned_networks"] = []
    return view


def _describe(interface):
    return "%s (%s)" % (interface["name"], interface.get("driver") or "driver unknown")


def node_network_mode_problem(node_name, facts_mode, interfaces, assignments):
    """Fuel's "mismatching Mellanox drivers" check. Returns a message or None.

    A node is refused when ib_facts says ``mixed`` (it has both IB-mode and Ethernet-mode RDMA
    interfaces) or when the chosen network roles would run over both modes.
    """
    by_name = {i["name"]: i for i in interfaces}
    used = {}
    for role, chosen in assignments.items():
        if role == "management":
            continue
        interface = by_name.get(chosen["interface"])
        if interface and interface.get("network_mode") in ("infiniband", "ethernet"):
            used.setdefault(interface["network_mode"], {})[interface["name"]] = interface
    if len(used) > 1:
        ib_side = ", ".join(_describe(i) for i in sorted(used["infiniband"].values(),
                                                         key=lambda i: natural_key(i["name"])))
        eth_side = ", ".join(_describe(i) for i in sorted(used["ethernet"].values(),
                                                          key=lambda i: natural_key(i["name"])))
        return ("node %s: mismatching Mellanox drivers: its network roles would use InfiniBand mode on %s "
                "and Ethernet (RoCE) mode on %s; one node must use one mode"
                % (node_name, ib_side, eth_side))
    if facts_mode == "mixed":
        ib_side = [i for i in interfaces if i.get("network_mode") == "infiniband"]
        eth_side = [i for i in interfaces if i.get("network_mode") == "ethernet"]
        return ("node %s: mismatching Mellanox drivers: InfiniBand-mode interfaces %s and Ethernet-mode "
                "(RoCE) interfaces %s on the same node; one node must use one mode"
                % (node_name,
                   ", ".join(_describe(i) for i in ib_side) or "(none listed)",
                   ", ".join(_describe(i) for i in eth_side) or "(none listed)"))
    return None


# ---------------------------------------------------------------------------------------- nodes
def subnet_manager_summary(subnet_manager):
    """(sm_present, sm_local) of a node from ib_facts' ``subnet_manager`` ("mlx4_0/1" -> port entry).

    None when the node has no InfiniBand port at all.
    """
    if not isinstance(subnet_manager, dict) or not subnet_manager:
        return None, None
    entries = [e for e in subnet_manager.values() if isinstance(e, dict)]
    if not entries:
        return None, None
    present = any(e.get("sm_present") for e in entries)
    local = any(e.get("sm_local") for e in entries)
    return present, local


def _facts_of(result):
    """(ib_facts or None, status, message) from a registered task result or a bare facts dict."""
    if result is None:
        return None, "unreachable", "no discovery result for this host (it was not reached)"
    if not isinstance(result, dict):
        return None, "failed", "unexpected discovery result of type %s" % type(result).__name__
    if result.get("unreachable"):
        return None, "unreachable", str(result.get("msg") or "host unreachable").strip()[:MAX_TEXT]
    if result.get("failed"):
        return None, "failed", str(result.get("msg") or "ib_facts failed").strip()[:MAX_TEXT]
    if result.get("skipped"):
        return None, "failed", "discovery was skipped on this host"
    if "schema" in result and "nics" in result:
        return result, "discovered", None
    facts = (result.get("ansible_facts") or {}).get("ib_facts")
    if isinstance(facts, dict):
        return facts, "discovered", None
    return None, "failed", "the result holds no ansible_facts.ib_facts"


def _empty_node(name, address, status, message):
    return {
        "name": name,
        "address": address,
        "status": status,
        "message": message,
        "last_seen": None,
        "source": None,
        "network_mode": None,
        "network_mode_reasons": [],
        "interfaces": [],
        "devices": {},
        "subnet_manager": {},
        "sm_present": None,
        "sm_local": None,
        "networks": {},
        "unassigned_networks": [],
        "errors": [],
        "warnings": [],
    }


def build_node(name, result, rules, address=None, allow_mixed=False,
               exclude_kinds=DEFAULT_EXCLUDE_KINDS):
    """One node entry of the model from this run's result (see docs/discovery.md)."""
    facts, status, message = _facts_of(result)
    node = _empty_node(name, address, status, message)
    if facts is not None:
        try:
            facts, facts_warnings = check_facts(facts)
        except FactsError as exc:
            facts, status = None, "failed"
            message = "node %s: malformed facts: %s" % (name, exc)
            node.update(status=status, message=message)
        else:
            node["warnings"].extend(facts_warnings)
            # A lean result (ib_facts' default) says each thing once; the model keeps the full form.
            facts = _facts.expand(facts)
    if facts is None:
        if status == "failed":
            node["errors"].append(message)
        return node
    schema = facts.get("schema")
    if schema != 1:
        node["warnings"].append("ib_facts schema %r, this model understands schema 1" % (schema,))
    nics = facts["nics"]
    node["source"] = facts.get("source")
    node["network_mode"] = facts.get("network_mode")
    node["network_mode_reasons"] = [str(r) for r in _as_list(facts.get("network_mode_reasons"))]
    node["devices"] = facts.get("devices") or {}
    node["subnet_manager"] = facts.get("subnet_manager") or {}
    node["sm_present"], node["sm_local"] = subnet_manager_summary(node["subnet_manager"])
    node["warnings"].extend(str(w) for w in _as_list(facts.get("warnings")))
    interfaces = []
    for nic_name in sorted(nics, key=natural_key):
        nic = nics[nic_name]
        if nic.get("kind") in exclude_kinds:
            continue
        nic = dict(nic, name=nic.get("name") or nic_name)
        interfaces.append(interface_view(nic, nics))
    assignments, unassigned = allocate(interfaces, rules)
    by_name = {i["name"]: i for i in interfaces}
    for role, chosen in assignments.items():
        by_name[chosen["interface"]]["assigned_networks"].append(role)
    node["interfaces"] = interfaces
    node["networks"] = assignments
    node["unassigned_networks"] = unassigned
    problem = node_network_mode_problem(name, node["network_mode"], interfaces, assignments)
    if problem:
        if allow_mixed:
            node["warnings"].append(problem + " (accepted: mixed nodes are allowed)")
        else:
            node["status"] = "refused"
            node["message"] = problem
            node["errors"].append(problem)
    return node


# ---------------------------------------------------------------------------------------- merge
def previous_nodes(previous):
    """{name: node} of the model already written (schema 1 or 2); ModelError when it is not one."""
    if previous is None:
        return {}
    if not isinstance(previous, dict) or previous.get("kind") != MODEL_KIND or not isinstance(previous.get("nodes"), list):
        raise ModelError("the existing model file is not a nodes model (kind %s with a nodes list); "
                         "move it away or choose another output directory" % MODEL_KIND)
    if previous.get("schema") not in READABLE_SCHEMAS:
        raise ModelError("the existing model file has schema %r; this collection reads schemas %s"
                         % (previous.get("schema"), ", ".join(str(v) for v in READABLE_SCHEMAS)))
    return {str(n["name"]): n for n in previous["nodes"] if isinstance(n, dict) and n.get("name")}


def _has_data(node):
    return bool(node.get("interfaces") or node.get("devices") or node.get("networks"))


def merge_node(fresh, old):
    """This run's entry for a node, given its entry in the model already written (or None)."""
    if fresh["status"] in READ_STATUSES or old is None or not _has_data(old):
        return fresh
    # Failed or unreachable this run: keep the last good data, say what happened now.
    kept = copy.deepcopy(old)
    kept.update(status=fresh["status"], message=fresh["message"], errors=[fresh["message"]])
    kept.setdefault("last_seen", None)
    if fresh.get("address"):
        kept["address"] = fresh["address"]
    return kept


# ---------------------------------------------------------------------------------------- networks
def _place_networks(nodes, definitions, bridges, kept_addresses, static_addresses):
    """Member kind, device, VLAN and address of every node's networks (in place). Returns warnings."""
    errors = []
    members = {}
    fabrics = {}  # network -> fabric -> ["node interface"]
    for node in nodes:
        by_name = {i.get("name"): i for i in node.get("interfaces") or [] if isinstance(i, dict)}
        placed = {}
        for role, chosen in (node.get("networks") or {}).items():
            interface = by_name.get(chosen.get("interface")) or {"name": chosen.get("interface")}
            definition = definitions.get(role)
            try:
                kind, device, vlan = _networks.member(definition, interface, node["networks"], bridges)
            except ValueError as exc:
                errors.append("network %s, node %s: %s" % (role, node["name"], exc))
                continue
            chosen.update(kind=kind, device=device, vlan=vlan, address=None)
            if definition is not None:
                members.setdefault(role, []).append(node["name"])
                fabrics.setdefault(role, {}).setdefault(_networks.fabric_of(kind), []).append(
                    "%s %s" % (node["name"], chosen.get("interface")))
                placed[role] = chosen.get("interface")
        errors.extend(_networks.check_overlaps(definitions, node["name"], placed))
    errors.extend(_networks.check_one_fabric(fabrics))
    if errors:
        raise _networks.NetworkError("; ".join(errors))
    addresses, warnings = _networks.allocate(definitions, members, kept_addresses, static_addresses)
    for node in nodes:
        for role, chosen in (node.get("networks") or {}).items():
            chosen["address"] = (addresses.get(role) or {}).get(node["name"])
    return warnings


def _kept_addresses(old_nodes):
    kept = {}
    for name, node in old_nodes.items():
        for role, chosen in (node.get("networks") or {}).items():
            if isinstance(chosen, dict) and chosen.get("address"):
                kept.setdefault(role, {})[name] = chosen["address"]
    return kept


def _same_but_time(left, right):
    return dict(left, last_seen=None) == dict(right, last_seen=None)


def merge_model(results, rules=None, addresses=None, allow_mixed=False, generated_at=None,
                exclude_kinds=DEFAULT_EXCLUDE_KINDS, networks=None, static_addresses=None, previous=None,
                remove_nodes=(), bridges=None, topology=None):
    """The nodes model from ``results`` (host name -> registered ib_facts result or ib_facts dict),
    merged into ``previous`` (the model already written, or None).

    ``networks`` is the operator's ``discovery_networks`` list, ``static_addresses`` {node: {network:
    address}}, ``bridges`` the eipoib_ovs (role, bridge) list, ``remove_nodes`` the nodes to drop,
    ``topology`` the fabric as ib_topology maps it (None: the previous model's topology is kept).
    Raises RuleError, NetworkError or ModelError for operator errors (nothing else is fatal: bad nodes
    are marked in the model). Returns (model, removed, warnings).
    """
    checked_rules = validate_rules(rules)
    definitions = _networks.parse_networks(networks)
    bridge_pairs = _networks.parse_bridges(bridges)
    addresses = addresses or {}
    old_nodes = previous_nodes(previous)
    merged = {name: dict(copy.deepcopy(node), last_seen=node.get("last_seen")) for name, node in old_nodes.items()}
    for name in results:
        fresh = build_node(name, results[name], checked_rules, addresses.get(name), allow_mixed,
                           tuple(exclude_kinds))
        merged[name] = merge_node(fresh, old_nodes.get(name))
    warnings = []
    removed = []
    for name in remove_nodes or ():
        if merged.pop(name, None) is None:
            warnings.append("remove_nodes: %s is not in the nodes model" % name)
        else:
            removed.append(name)
    nodes = [merged[name] for name in sorted(merged, key=natural_key)]
    warnings.extend(_place_networks(nodes, definitions, bridge_pairs, _kept_addresses(old_nodes),
                                    static_addresses or {}))
    for node in nodes:
        if node["name"] in results and node["status"] in READ_STATUSES:
            old = old_nodes.get(node["name"])
            same = old is not None and old.get("last_seen") and _same_but_time(old, node)
            node["last_seen"] = old["last_seen"] if same else generated_at
    summary = {"nodes": len(nodes)}
    for status in NODE_STATUSES:
        summary[status] = sum(1 for n in nodes if n.get("status") == status)
    modes = {}
    for node in nodes:
        if node.get("network_mode"):
            modes[node["network_mode"]] = modes.get(node["network_mode"], 0) + 1
    summary["network_modes"] = modes
    allocation = {}
    unassigned = {}
    for node in nodes:
        if node.get("networks"):
            allocation[node["name"]] = {role: chosen.get("interface") for role, chosen in node["networks"].items()}
        if node.get("unassigned_networks"):
            unassigned[node["name"]] = list(node["unassigned_networks"])
    model = {
        "schema": MODEL_SCHEMA,
        "kind": MODEL_KIND,
        "generated_at": generated_at,
        "allow_mixed": bool(allow_mixed),
        "summary": summary,
        "networks": {
            "roles": sorted(checked_rules, key=lambda r: (ROLES.index(r) if r in ROLES else len(ROLES), r)),
            "rules": checked_rules,
            "definitions": definitions,
            "allocation": allocation,
            "unassigned": unassigned,
        },
        "nodes": nodes,
    }
    if topology is None and isinstance(previous, dict):
        topology = previous.get("topology")
    if topology:
        model["topology"] = topology
    return model, removed, warnings


def build_model(results, **options):
    """The model alone (see merge_model)."""
    return merge_model(results, **options)[0]


def host_networks(model):
    """{node: [discovery_host_networks items]} (docs/networks.md): the networks defined in the model
    that the node carries, with their addresses."""
    definitions = (model.get("networks") or {}).get("definitions") or {}
    out = {}
    for node in model.get("nodes") or []:
        items = []
        for role, chosen in (node.get("networks") or {}).items():
            if role in definitions and chosen.get("address"):
                items.append(_networks.host_network(role, chosen, definitions[role]))
        out[node["name"]] = items
    return out


def comparable(model):
    """The model without its timestamp, to decide whether a rewrite changes anything."""
    if not isinstance(model, dict):
        return model
    clean = dict(model)
    clean.pop("generated_at", None)
    return clean
