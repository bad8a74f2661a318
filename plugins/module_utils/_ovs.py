# -*- coding: utf-8 -*-
# Copyright: hpcnet.infiniband contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Open vSwitch bridges over EIPoIB: validation rules, plan and ovs-vsctl argv (pure except ``read_ovs``
and ``read_port_nics``).

Why OVS needs EIPoIB: an OVS port forwards Ethernet frames. A raw IPoIB netdev (``type`` 32, link type
``infiniband``) carries IPoIB frames with 20-byte hardware addresses, so OVS cannot switch it. MLNX_OFED's
``eth_ipoib`` driver exposes an Ethernet netdev (``eth*``) over one or more IPoIB interfaces; that is the
interface to put in the bridge. The VLAN tag of a network is derived from its P_Key: the low 15 bits
(``pkey & 0x7fff``; the top bit is the full-membership flag), and it must fit a 802.1Q VID (1..4094).
P_Keys are parsed and formatted by ``_values`` only: hex text (0x optional), an int is its value.

ovs-vsctl commits its transaction to ovsdb first and then waits for ovs-vswitchd to apply it (``cur_cfg``
catching up with ``next_cfg``); it exits 0 even when vswitchd could not set a bridge up (the interface's
``error`` column, no ``ofport``), and when vswitchd is down the wait times out after the commit. So the
database state is read back after every transaction: what was written is reported as a change, and a
datapath vswitchd has not set up is a failure, on this run and on the next.

The bridge's own MAC (``other_config:hwaddr``) is its first port's by default: an EIPoIB interface
receives only for the MACs it maps to IPoIB (its own, and those of the VMs registered behind it), so the
host's own address on the bridge works only with that MAC. Left to itself Open vSwitch may give the bridge
another MAC (it did on the lab's userspace datapath), and ARP for the address is then never answered.

``nics`` everywhere below is ``ib_facts.nics`` (docs/dev/contracts.md section 4).
"""

from __future__ import annotations

import json
import re

from ansible_collections.hpcnet.infiniband.plugins.module_utils import _facts, _values
from ansible_collections.hpcnet.infiniband.plugins.module_utils._host import valid_ifname
from ansible_collections.hpcnet.infiniband.plugins.module_utils._plan import Plan

DATAPATH_TYPES = ("system", "netdev")
# hwaddr: "port" (the first port's MAC), "ovs" (left to Open vSwitch) or a unicast Ethernet MAC.
HWADDR_CHOICES = ("port", "ovs")
_MAC_RE = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")


def ethernet_mac(text):
    """A unicast Ethernet MAC as ovsdb stores it (lower case), or None: from input and from sysfs."""
    mac = text.strip().lower() if isinstance(text, str) else ""
    if not _MAC_RE.match(mac) or int(mac[:2], 16) & 1 or mac == "00:00:00:00:00:00":
        return None
    return mac


VLAN_MIN, VLAN_MAX = 1, 4094


# --------------------------------------------------------------------------- P_Key -> VLAN
def vlan_from_pkey(value):
    """802.1Q VLAN id for a P_Key: ``pkey & 0x7fff``; refuses ids a VLAN tag cannot carry."""
    pkey = _values.parse_pkey(value)
    vlan = _values.partition(pkey)
    if not VLAN_MIN <= vlan <= VLAN_MAX:
        raise ValueError(
            "P_Key %s gives VLAN %d (pkey & 0x7fff), outside the 802.1Q range %d-%d; "
            "the default partition 0x7fff/0xffff cannot be a VLAN tag: leave the port untagged"
            % (_values.format_pkey(pkey), vlan, VLAN_MIN, VLAN_MAX)
        )
    return vlan


# --------------------------------------------------------------------------- netdev rules
def eipoib_over(nics, ipoib_name):
    """Names of EIPoIB interfaces that run over the IPoIB interface ``ipoib_name`` (sorted)."""
    found = []
    for name, nic in (nics or {}).items():
        if not isinstance(nic, dict):
            continue
        slaves = ((nic.get("eipoib") or {}).get("slaves")) or []
        if ipoib_name in slaves:
            found.append(name)
        elif nic.get("kind") == "eipoib" and not slaves and nic.get("bus_info") == ipoib_name:
            # eth_ipoib reports the IPoIB parent as its bus-info (ethtool -i).
            found.append(name)
    return sorted(found)


def ipoib_parents(nics, name):
    """IPoIB interfaces under an EIPoIB interface (its slaves), [] for anything else."""
    nic = (nics or {}).get(name) or {}
    slaves = list(((nic.get("eipoib") or {}).get("slaves")) or [])
    if not slaves and nic.get("kind") == "eipoib" and nic.get("bus_info") in (nics or {}):
        slaves = [nic["bus_info"]]
    return [s for s in slaves if s in (nics or {})]


def check_port_interface(name, nics):
    """Refusals for using netdev ``name`` as an OVS port (empty list: usable)."""
    if not valid_ifname(name):
        return ["%r is not a valid interface name" % (name,)]
    nic = (nics or {}).get(name)
    if nic is None:
        return ["interface %s does not exist on this host" % name]
    if nic.get("link_type") == "infiniband" or nic.get("kind") in ("ipoib", "ipoib_child"):
        candidates = eipoib_over(nics, name)
        parent = (nic.get("ipoib") or {}).get("parent")
        if not candidates and parent and parent != name:
            candidates = eipoib_over(nics, parent)
        if candidates:
            hint = "use the EIPoIB interface %s that runs over %s instead" % (
                " or ".join(candidates), name if eipoib_over(nics, name) else parent)
        else:
            hint = ("no EIPoIB interface runs over %s on this host (it needs MLNX_OFED's eth_ipoib "
                    "driver)" % name)
        return ["%s is a raw IPoIB interface (link type infiniband): Open vSwitch switches Ethernet "
                "frames only; %s" % (name, hint)]
    return []


def check_port_mtu(name, nics, mtu=None):
    """Refusals when the port's MTU (or the requested one) exceeds its IPoIB parents' MTU."""
    nic = (nics or {}).get(name) or {}
    parents = ipoib_parents(nics, name)
    limits = [(p, nics[p].get("mtu")) for p in parents if isinstance(nics[p].get("mtu"), int)]
    if not limits:
        return []
    parent, limit = min(limits, key=lambda item: item[1])
    wanted = mtu if mtu is not None else nic.get("mtu")
    if isinstance(wanted, int) and wanted > limit:
        what = "requested MTU %d for %s" % (wanted, name) if mtu is not None else "%s has MTU %d, which" % (
            name, wanted)
        return ["%s exceeds the MTU %d of its IPoIB parent %s: Ethernet frames over IPoIB cannot be "
                "larger than the IPoIB MTU" % (what, limit, parent)]
    return []


# --------------------------------------------------------------------------- ovsdb reading
def _ovs_value(value):
    """Decode an OVSDB JSON value: ["set", [...]] -> list, ["map", [...]] -> dict, ["uuid", x] -> x."""
    if isinstance(value, list) and len(value) == 2 and isinstance(value[0], str):
        kind, payload = value
        if kind == "set":
            return [_ovs_value(v) for v in payload]
        if kind == "map":
            return {_ovs_value(k): _ovs_value(v) for k, v in payload}
        if kind in ("uuid", "named-uuid"):
            return payload
    return value


def _scalar(value):
    """Optional OVSDB column: an empty set means unset."""
    if isinstance(value, list):
        return value[0] if len(value) == 1 else None
    return value


def parse_ovsdb_tables(text):
    """Rows of the ``-f json -d json list`` outputs (one JSON document per line) as lists of dicts."""
    tables = []
    for line in (text or "").splitlines():
        line = line.strip()
        if not line:
            continue
        doc = json.loads(line)
        headings = doc.get("headings") or []
        rows = []
        for raw in doc.get("data") or []:
            rows.append({h: _ovs_value(v) for h, v in zip(headings, raw)})
        tables.append(rows)
    return tables


def ovs_state_from_tables(bridges, ports, interfaces, root=()):
    """{bridges: {name: {datapath_type, ports}}, ports: {name: {bridge, tag, interfaces}},
    interfaces: {name: {type, error, ofport, mtu, mtu_request}}, vswitchd: {next_cfg, cur_cfg}} from the
    ``list`` tables Bridge, Port, Interface and Open_vSwitch."""
    port_by_uuid = {p["_uuid"]: p for p in ports}
    iface_by_uuid = {i["_uuid"]: i for i in interfaces}
    top = root[0] if root else {}
    state = {"bridges": {}, "ports": {}, "interfaces": {},
             "vswitchd": {"next_cfg": _scalar(top.get("next_cfg")), "cur_cfg": _scalar(top.get("cur_cfg"))}}
    for iface in interfaces:
        state["interfaces"][iface["name"]] = {
            "type": iface.get("type") or "",
            "error": _scalar(iface.get("error")),
            "ofport": _scalar(iface.get("ofport")),
            "mtu": _scalar(iface.get("mtu")),
            "mtu_request": _scalar(iface.get("mtu_request")),
        }
    for bridge in bridges:
        uuids = bridge.get("ports")
        uuids = uuids if isinstance(uuids, list) else [uuids]
        names = []
        for uuid in uuids:
            port = port_by_uuid.get(uuid)
            if port is None:
                continue
            names.append(port["name"])
            ifaces = port.get("interfaces")
            ifaces = ifaces if isinstance(ifaces, list) else [ifaces]
            state["ports"][port["name"]] = {
                "bridge": bridge["name"],
                "tag": _scalar(port.get("tag")),
                "interfaces": sorted(iface_by_uuid[u]["name"] for u in ifaces if u in iface_by_uuid),
            }
        other_config = bridge.get("other_config")
        state["bridges"][bridge["name"]] = {
            "datapath_type": bridge.get("datapath_type") or "system",
            "ports": sorted(names),
            "hwaddr": (other_config if isinstance(other_config, dict) else {}).get("hwaddr"),
        }
    return state


def vsctl_base(database=None, timeout=5):
    argv = ["ovs-vsctl"]
    if database:
        argv.append("--db=%s" % database)
    argv.append("--timeout=%d" % int(timeout))
    return argv


def read_ovs(host, database=None, timeout=5):
    """Bridges, ports and interfaces as ovsdb holds them, through one read-only ovs-vsctl call."""
    argv = vsctl_base(database, timeout) + [
        "--format=json", "--data=json",
        "--", "--columns=name,datapath_type,ports,other_config", "list", "Bridge",
        "--", "--columns=_uuid,name,tag,interfaces", "list", "Port",
        "--", "--columns=_uuid,name,type,error,ofport,mtu,mtu_request", "list", "Interface",
        "--", "--columns=next_cfg,cur_cfg", "list", "Open_vSwitch",
    ]
    rc, out, err = host.run(argv, timeout=timeout + 5)
    if rc != 0:
        raise OvsError("ovs-vsctl cannot read the Open vSwitch database (rc %s): %s" % (
            rc, (err or out or "").strip() or "no output"))
    tables = parse_ovsdb_tables(out)
    if len(tables) != 4:
        raise OvsError("unexpected ovs-vsctl output: %d tables" % len(tables))
    return ovs_state_from_tables(*tables)


class OvsError(Exception):
    pass


# --------------------------------------------------------------------------- status after apply
def bridge_problems(ovs, bridge, port_names=()):
    """What ovs-vswitchd could not set up (ovs-vsctl exits 0 even then): a database vswitchd has not
    applied (``cur_cfg`` behind ``next_cfg``: vswitchd down or stuck), interface errors, no ofport."""
    cfg = ovs.get("vswitchd") or {}
    lagging = (isinstance(cfg.get("next_cfg"), int) and isinstance(cfg.get("cur_cfg"), int)
               and cfg["cur_cfg"] < cfg["next_cfg"])
    problems = []
    for name in [bridge] + list(port_names):
        port = ovs["ports"].get(name)
        ifaces = port["interfaces"] if port else [name]
        for iface_name in ifaces:
            iface = ovs["interfaces"].get(iface_name)
            if iface is None:
                continue
            if iface.get("error"):
                problems.append("interface %s: %s" % (iface_name, iface["error"]))
            elif iface.get("ofport") in (None, -1):
                problems.append("interface %s has no OpenFlow port (ovs-vswitchd did not set it up)" %
                                iface_name)
    if lagging:
        # vswitchd is not running (or stuck): that, not the datapath type, is why nothing is set up.
        problems.insert(0, "ovs-vswitchd has not applied the database (cur_cfg %d, next_cfg %d): is "
                           "ovs-vswitchd running?" % (cfg["cur_cfg"], cfg["next_cfg"]))
    elif problems and (ovs["bridges"].get(bridge) or {}).get("datapath_type") == "system":
        problems.append("bridge %s uses datapath_type system, which needs the openvswitch kernel "
                        "datapath; without it use datapath_type netdev (userspace)" % bridge)
    return problems


def config_view(ovs):
    """What a transaction of this module writes (bridges, ports, tags, mtu_request), to tell whether
    ovsdb changed even when ovs-vsctl failed after committing."""
    return (ovs["bridges"], ovs["ports"], {n: i.get("mtu_request") for n, i in ovs["interfaces"].items()})


# --------------------------------------------------------------------------- plan
def normalize_ports(ports):
    """Wanted ports with the VLAN resolved: [{name, vlan, pkey, move}]; raises ValueError."""
    result = []
    seen = set()
    for entry in ports or []:
        if isinstance(entry, str):
            entry = {"name": entry}
        name = entry.get("name")
        if name in seen:
            raise ValueError("port %s is listed twice" % name)
        seen.add(name)
        vlan = entry.get("vlan")
        pkey = entry.get("pkey")
        if vlan is not None and pkey is not None:
            raise ValueError("port %s: give vlan or pkey, not both" % name)
        if pkey is not None:
            vlan = vlan_from_pkey(pkey)
        elif vlan is not None and not VLAN_MIN <= int(vlan) <= VLAN_MAX:
            raise ValueError("port %s: VLAN %s is outside %d-%d" % (name, vlan, VLAN_MIN, VLAN_MAX))
        result.append({
            "name": name,
            "vlan": int(vlan) if vlan is not None else None,
            "pkey": _values.format_pkey(_values.parse_pkey(pkey)) if pkey is not None else None,
            "move": bool(entry.get("move", False)),
        })
    return result


def check_params(want):
    """Refusals of the arguments alone, before anything is read: [] when they are usable."""
    problems = []
    if not valid_ifname(want.get("bridge")):
        problems.append("%r is not a valid bridge name (it becomes a netdev name)" % (want.get("bridge"),))
    timeout = want.get("timeout")
    if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, int) or timeout <= 0):
        problems.append("timeout %r is not a positive number of seconds" % (timeout,))
    mtu = want.get("mtu")
    # An OVS port's MTU is an interface MTU, at most the largest IPoIB one: every EIPoIB frame crosses one.
    if mtu is not None and not _values.is_mtu(mtu):
        problems.append("mtu %d is out of range %d..%d (the largest IPoIB MTU is %d)" % (
            mtu, _values.MTU_MIN, _values.MTU_MAX, _values.MTU_MAX))
    hwaddr = want.get("hwaddr")
    if hwaddr is not None and hwaddr not in HWADDR_CHOICES and ethernet_mac(hwaddr) is None:
        problems.append("hwaddr %r is neither %s nor a unicast Ethernet MAC such as 02:00:00:00:00:01" % (
            hwaddr, " nor ".join(HWADDR_CHOICES)))
    if want.get("state") == "absent":
        given = [key for key in ("ports", "mtu") if want.get(key)]
        if given:
            problems.append("state=absent removes bridge %s with its ports; %s cannot be set on it (drop %s)" % (
                want.get("bridge"), "/".join(given), ", ".join(given)))
    return problems


def port_names(want):
    """Names of the wanted ports (strings or dicts), as given."""
    return [p if isinstance(p, str) else (p or {}).get("name") for p in want.get("ports") or []]


def read_port_nics(host, names):
    """``ib_facts.nics`` for the wanted port netdevs and the IPoIB interfaces under them (their MTU
    bounds the port's), without P_Key tables: not the whole host. A raw IPoIB interface given as a port
    is refused, and the refusal names the EIPoIB interface over it: only then is every netdev read.
    Raises ``_facts.FactsError`` (naming the root) when sysfs_root is not a sysfs tree."""
    _facts.check_sysfs_tree(host)
    present = [n for n in names if isinstance(n, str) and valid_ifname(n) and host.exists("class/net/" + n)]
    if not present:
        return {}
    nics = _facts.gather(host, interfaces=present, pkeys="none")["nics"]
    if any(n.get("link_type") == "infiniband" or n.get("kind") in ("ipoib", "ipoib_child") for n in nics.values()):
        return _facts.gather(host, pkeys="none")["nics"]
    parents = sorted({p for name in present for p in _ipoib_names_under(nics.get(name))} - set(nics))
    parents = [p for p in parents if valid_ifname(p) and host.exists("class/net/" + p)]
    if parents:
        nics.update(_facts.gather(host, interfaces=parents, pkeys="none")["nics"])
    return nics


def _ipoib_names_under(nic):
    """Names of the IPoIB interfaces an EIPoIB netdev runs over, as its own record gives them."""
    nic = nic or {}
    names = list(((nic.get("eipoib") or {}).get("slaves")) or [])
    over = (nic.get("eipoib") or {}).get("ipoib_interface")
    if over:
        names.append(over)
    if nic.get("kind") == "eipoib" and nic.get("bus_info"):
        names.append(nic["bus_info"])
    return [n for n in names if isinstance(n, str)]


def plan_bridge(want, nics, ovs):
    """Plan for one bridge. ``want``: bridge, state, datapath_type, mtu, ports, purge_ports, move, timeout."""
    plan = Plan()
    bridge = want["bridge"]
    for problem in check_params(want):
        plan.refuse(problem)
    if not plan.ok:
        return plan
    have_bridge = ovs["bridges"].get(bridge)
    if want.get("state", "present") == "absent":
        if have_bridge is not None:
            plan.add("del_bridge", bridge, before=dict(have_bridge), after=None)
        return plan

    datapath_type = want.get("datapath_type") or "system"
    if datapath_type not in DATAPATH_TYPES:
        plan.refuse("datapath_type must be one of %s, not %r" % (", ".join(DATAPATH_TYPES), datapath_type))
    mtu = want.get("mtu")
    try:
        ports = normalize_ports(want.get("ports"))
    except ValueError as exc:
        plan.refuse("bridge %s: %s" % (bridge, exc))
        ports = []
    plan.info["ports"] = ports
    if bridge in ovs["ports"] and ovs["ports"][bridge]["bridge"] != bridge:
        plan.refuse("%s is already a port of bridge %s; it cannot also be a bridge" % (
            bridge, ovs["ports"][bridge]["bridge"]))

    # Refusals first: every port is validated before anything is planned, so a refused run changes nothing.
    for port in ports:
        name = port["name"]
        for problem in check_port_interface(name, nics):
            plan.refuse(problem)
        for problem in check_port_mtu(name, nics, mtu):
            plan.refuse(problem)
        owner = (ovs["ports"].get(name) or {}).get("bridge")
        if owner and owner != bridge and not (port["move"] or want.get("move")):
            plan.refuse("interface %s is already a port of bridge %s; set move: true to move it to %s" % (
                name, owner, bridge))
    if not plan.ok:
        return plan

    if have_bridge is None:
        plan.add("add_bridge", bridge, before=None, after={"datapath_type": datapath_type})
    elif have_bridge["datapath_type"] != datapath_type:
        plan.add("set_datapath_type", bridge, before=have_bridge["datapath_type"], after=datapath_type)

    for port in ports:
        name = port["name"]
        have_port = ovs["ports"].get(name)
        owner = (have_port or {}).get("bridge")
        if owner is None:
            plan.add("add_port", name, before=None, after={"bridge": bridge, "vlan": port["vlan"]})
        elif owner != bridge:
            plan.add("move_port", name, before={"bridge": owner, "vlan": have_port["tag"]},
                     after={"bridge": bridge, "vlan": port["vlan"]}, from_bridge=owner)
        elif have_port["tag"] != port["vlan"]:
            plan.add("set_vlan", name, before=have_port["tag"], after=port["vlan"])

    if mtu is not None:
        for iface in [bridge] + [p["name"] for p in ports]:
            have_iface = ovs["interfaces"].get(iface) or {}
            if have_iface.get("mtu_request") != mtu:
                plan.add("set_mtu_request", iface, before=have_iface.get("mtu_request"), after=mtu)

    wanted_mac = _wanted_hwaddr(want.get("hwaddr", "port"), ports, nics)
    have_mac = (have_bridge or {}).get("hwaddr")
    if wanted_mac is not None and wanted_mac != have_mac:
        plan.add("set_hwaddr", bridge, before=have_mac, after=wanted_mac)

    if want.get("purge_ports") and have_bridge is not None:
        wanted = {p["name"] for p in ports} | {bridge}
        for name in have_bridge["ports"]:
            if name not in wanted:
                plan.add("del_port", name, before={"bridge": bridge}, after=None)
    return plan


def _wanted_hwaddr(hwaddr, ports, nics):
    """The MAC the bridge should have, or None when it is left as it is."""
    if hwaddr == "ovs":
        return None
    if hwaddr not in (None, "port"):
        return ethernet_mac(hwaddr)
    if not ports:
        return None
    # The port's MAC as sysfs gives it, checked like any value from the host before it lands in ovsdb.
    return ethernet_mac(((nics or {}).get(ports[0]["name"]) or {}).get("mac"))


def vsctl_argv(plan, bridge, database=None, timeout=5, datapath_type="system"):
    """One ovs-vsctl transaction (argv) applying the plan's changes, in plan order."""
    argv = vsctl_base(database, timeout)
    for change in plan.changes:
        target = change.target
        if change.action == "del_bridge":
            argv += ["--", "--if-exists", "del-br", target]
        elif change.action == "add_bridge":
            argv += ["--", "add-br", target, "--", "set", "Bridge", target,
                     "datapath_type=%s" % change.after["datapath_type"]]
        elif change.action == "set_datapath_type":
            argv += ["--", "set", "Bridge", target, "datapath_type=%s" % change.after]
        elif change.action in ("add_port", "move_port"):
            if change.action == "move_port":
                argv += ["--", "del-port", change.detail["from_bridge"], target]
            argv += ["--", "add-port", bridge, target]
            if change.after["vlan"] is not None:
                argv.append("tag=%d" % change.after["vlan"])
        elif change.action == "set_vlan":
            if change.after is None:
                argv += ["--", "clear", "Port", target, "tag"]
            else:
                argv += ["--", "set", "Port", target, "tag=%d" % change.after]
        elif change.action == "set_hwaddr":
            # ovs-vsctl parses the value: a MAC is a string and needs its quotes (no shell is involved).
            argv += ["--", "set", "Bridge", target, 'other_config:hwaddr="%s"' % change.after]
        elif change.action == "set_mtu_request":
            argv += ["--", "set", "Interface", target, "mtu_request=%d" % change.after]
        elif change.action == "del_port":
            argv += ["--", "--if-exists", "del-port", bridge, target]
        else:  # pragma: no cover - plan and argv are written together
            raise ValueError("unknown change %s" % change.action)
    return argv
