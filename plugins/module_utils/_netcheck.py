# -*- coding: utf-8 -*-
# Copyright: hpcnet.infiniband contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Network verification over InfiniBand: member reports, probe plans, parallel probes, evaluation.

Three steps, each pure except ``run_parallel`` (which spawns ``ping`` processes):

1. On every node, ``local_report`` turns ``ib_facts.nics`` plus the node's IPv4 addresses into one
   record per network interface (state, MTU, IPoIB mode, the IB port behind it: state, GUID, SM LID,
   P_Key table).
2. On every node, ``plan_probes`` lists what to send to every peer of every network the node is in:
   one don't-fragment probe of the network's MTU (``ping -M do -s MTU-28``); only the peers that do not
   answer get a second, small probe, to tell "unreachable" from "path MTU too small". All probes of a
   round run in parallel, bounded in number of processes and time.
3. On the controller, ``evaluate`` builds per network the connectivity matrix and the findings, each
   with the exact node, interface and field; ``report`` is the whole controller step of the
   ``ib_netcheck_report`` module and its action plugin (verdict, matrix text, result file).

A network is ``{"name", "pkey", "mtu", "members": {node: interface}}``.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import subprocess
import time

from ansible_collections.hpcnet.infiniband.plugins.module_utils import _topology
from ansible_collections.hpcnet.infiniband.plugins.module_utils._host import HostError, valid_ifname
from ansible_collections.hpcnet.infiniband.plugins.module_utils._values import (
    MTU_MAX, MTU_MIN, format_guid_hex, format_pkey, full_member, guid_or_none, is_mtu, parse_pkey, partition,
    pkey_or_none)

ICMP_IPV4_OVERHEAD = 28  # 20 bytes IPv4 header + 8 bytes ICMP header


# --------------------------------------------------------------------------- step 1: local report
def _ip_links(text):
    try:
        data = json.loads(text or "[]")
    except ValueError:
        return []
    return [link for link in (data if isinstance(data, list) else []) if isinstance(link, dict) and link.get("ifname")]


def parse_ip_addr_json(text):
    """``ip -j addr show`` -> {ifname: ["10.0.0.1/24", ...]} (IPv4 only: the probes are IPv4)."""
    result = {}
    for link in _ip_links(text):
        addrs = []
        for info in link.get("addr_info") or []:
            if info.get("family") == "inet" and info.get("local"):
                addrs.append("%s/%s" % (info["local"], info.get("prefixlen", 32)))
        result[link["ifname"]] = addrs
    return result


def parse_ip_mtus(text):
    """``ip -j addr show`` -> {ifname: mtu}."""
    return {link["ifname"]: link["mtu"] for link in _ip_links(text) if isinstance(link.get("mtu"), int)}


def _ib_behind(nics, nic):
    """(ib port dict, ipoib dict) of an interface; EIPoIB interfaces use their first IPoIB slave's."""
    ib = nic.get("ib") if isinstance(nic.get("ib"), dict) else None
    ipoib = nic.get("ipoib") if isinstance(nic.get("ipoib"), dict) else None
    slaves = ((nic.get("eipoib") or {}).get("slaves")) or []
    for slave in slaves:
        slave_nic = nics.get(slave)
        if isinstance(slave_nic, dict):
            ib = ib or (slave_nic.get("ib") if isinstance(slave_nic.get("ib"), dict) else None)
            ipoib = ipoib or (slave_nic.get("ipoib") if isinstance(slave_nic.get("ipoib"), dict) else None)
            break
    return ib or {}, ipoib or {}


def local_report(nics, addresses, interfaces, ovs_bridge_of=None, devices=None, mtus=None):
    """One record per requested interface, from ``ib_facts.nics`` and ``parse_ip_addr_json``.

    ``ovs_bridge_of(name)`` -> bridge name or None: an interface without an address that is an OVS port
    is reached through its bridge (with the kernel datapath, the host's address lives on the bridge's
    internal interface), so the record then carries the bridge's addresses and ``probe_interface``.
    Its MTU is then the smaller of the port's and the bridge's (``mtus``, from ``parse_ip_mtus``): the
    largest packet the address can send over the port.
    ``devices`` (``ib_facts.devices``) gives each IB record its HCA's node GUID (to find its link in the fabric).
    """
    report = {}
    for name in interfaces:
        nic = (nics or {}).get(name)
        if not isinstance(nic, dict):
            report[name] = {"interface": name, "exists": False, "addresses": []}
            continue
        ib, ipoib = _ib_behind(nics, nic)
        if ib.get("link_layer") == "Ethernet":
            ib = {}  # a RoCE port: an Ethernet link, no subnet manager, LID or P_Key to check
        rate = _topology.parse_kernel_rate(ib.get("rate"))
        report[name] = {
            "interface": name,
            "exists": True,
            "kind": nic.get("kind"),
            "link_type": nic.get("link_type"),
            "operstate": nic.get("operstate"),
            "carrier": nic.get("carrier"),
            "mtu": nic.get("mtu"),
            "ipoib_mode": ipoib.get("mode"),
            "ib_device": ib.get("device"),
            "ib_port": ib.get("port"),
            "port_state": ib.get("state"),
            "port_guid": ib.get("port_guid"),
            "node_guid": ((devices or {}).get(ib.get("device")) or {}).get("node_guid") if ib else None,
            "lid": ib.get("lid"),
            "sm_lid": ib.get("sm_lid"),
            "pkeys": list(ib["pkeys"]) if ib and isinstance(ib.get("pkeys"), list) else None,
            "rate": ib.get("rate"),
            "rate_gbps": ib.get("rate_gbps") if ib.get("rate_gbps") is not None else rate["rate_gbps"],
            "link_width": rate["width"],
            "link_speed": rate["speed"],
            "addresses": list((addresses or {}).get(name) or []),
            "probe_interface": name,
        }
        if not report[name]["addresses"] and ovs_bridge_of is not None:
            bridge = ovs_bridge_of(name)
            if bridge and valid_ifname(bridge) and (addresses or {}).get(bridge):
                report[name].update(addresses=list(addresses[bridge]), probe_interface=bridge, ovs_bridge=bridge)
                bridge_mtu = (mtus or {}).get(bridge)
                if isinstance(bridge_mtu, int) and (not isinstance(nic.get("mtu"), int) or bridge_mtu < nic["mtu"]):
                    report[name].update(mtu=bridge_mtu, mtu_limited_by=bridge)
    return report


# --------------------------------------------------------------------------- networks
def check_networks(networks):
    """Refuse networks whose P_Key, MTU or expected rate cannot be understood (ValueError naming the value)."""
    for network in networks or []:
        if network.get("pkey") not in (None, ""):
            parse_pkey(network["pkey"])
        mtu = network.get("mtu")
        # Anything but an interface MTU would only give false MTU findings and probes.
        if mtu is not None and not is_mtu(mtu):
            raise ValueError("network %s: mtu %r is out of range %d..%d" % (network.get("name"), mtu, MTU_MIN, MTU_MAX))
        rate = network.get("expect_rate")
        if rate is not None and (isinstance(rate, bool) or not isinstance(rate, (int, float)) or rate <= 0):
            raise ValueError("network %s: expect_rate %r is not a positive number of Gb/s" % (network.get("name"), rate))


def _member_netdev(value):
    """The netdev a network runs over on a node: a plain name (``networks.allocation``), or a node's
    network entry (the model's ``nodes[].networks``, the inventory's ``ib_networks``): its ``device``
    (the P_Key child ib0.8002 or VLAN device that carries the address), except for EIPoIB members, which
    are checked on the EIPoIB interface and probed through their OVS bridge."""
    if not isinstance(value, dict):
        return value
    if value.get("device") and value.get("kind") != "eipoib":
        return value["device"]
    return value.get("interface")


def normalize_allocation(allocation, nodes=None):
    """{node: {role: netdev}} from a nodes model's ``networks.allocation`` or ``nodes[].networks``, or the
    inventory plugin's ``ib_networks`` host vars (role -> {"interface": ..., "device": ...}); only
    ``nodes`` when given."""
    result = {}
    for node, per_node in sorted((allocation or {}).items()):
        if nodes is not None and node not in nodes:
            continue
        roles = {}
        for role, value in (per_node or {}).items():
            iface = _member_netdev(value)
            if isinstance(iface, str) and iface:
                roles[role] = iface
        result[node] = roles
    return result


def _role_settings(allocation):
    """{role: {"pkey", "mtu"}} that the allocation's network entries carry (the model's definitions as
    the inventory plugin and the model's nodes repeat them): the defaults of a network to verify."""
    settings = {}
    for per_node in (allocation or {}).values():
        for role, value in (per_node or {}).items():
            if isinstance(value, dict):
                known = settings.setdefault(role, {})
                for key in ("pkey", "mtu"):
                    if value.get(key) is not None:
                        known.setdefault(key, value[key])
    return settings


def networks_from_allocation(allocation, wanted=None, nodes=None):
    """Networks to check: ``wanted`` is a list of {name (role), pkey, mtu, members (optional)} or role
    names; default every role allocated on at least two nodes. Explicit ``members`` win."""
    settings = _role_settings(allocation)
    allocation = normalize_allocation(allocation, nodes)
    if not wanted:
        roles = sorted({role for per_node in allocation.values() for role in per_node})
        wanted = [{"name": role} for role in roles]
        implicit = True
    else:
        implicit = False
    networks = []
    for entry in wanted:
        entry = {"name": entry} if isinstance(entry, str) else dict(entry)
        for key, value in settings.get(entry["name"], {}).items():
            if entry.get(key) is None:
                entry[key] = value
        members = {node: roles[entry["name"]] for node, roles in allocation.items() if entry["name"] in roles}
        explicit = entry.get("members") or {}
        if explicit:
            members = normalize_allocation({n: {"x": i} for n, i in explicit.items()}, nodes)
            members = {n: r["x"] for n, r in members.items() if r}
        if not members or (implicit and len(members) < 2):
            continue  # nothing to verify (a single member is still checked for consistency)
        same = [n for n in networks if n["members"] == members and n["pkey"] == entry.get("pkey")
                and n["mtu"] == entry.get("mtu") and n.get("expect_rate") == entry.get("expect_rate")]
        if same:
            # Roles carried by the same interfaces with the same P_Key and MTU are one network on the wire:
            # verify it once (storage, private and public all on eth1 by default).
            same[0]["roles"].append(entry["name"])
            same[0]["name"] = "+".join(same[0]["roles"])
            continue
        networks.append({"name": entry["name"], "roles": [entry["name"]], "pkey": entry.get("pkey"),
                         "mtu": entry.get("mtu"), "expect_rate": entry.get("expect_rate"), "members": members})
    return networks


def networks_from_model(model, wanted=None):
    """Networks from a nodes model: members are the nodes discovery reached (``status: discovered``)."""
    allocation = ((model or {}).get("networks") or {}).get("allocation") or {}
    usable = [n.get("name") for n in (model or {}).get("nodes") or [] if n.get("status") == "discovered"]
    return networks_from_allocation(allocation, wanted, usable if usable else None)


def interfaces_of(networks, node):
    return sorted({net["members"][node] for net in networks if node in net["members"]})


def _majority(values):
    """Most common non-None value (ties: the smallest), or None."""
    counts = {}
    for value in values:
        if value is not None:
            counts[value] = counts.get(value, 0) + 1
    if not counts:
        return None
    best = max(counts.values())
    return sorted((v for v, c in counts.items() if c == best), key=lambda v: (str(type(v)), v))[0]


def expected_mtu(network, reports):
    if network.get("mtu"):
        return int(network["mtu"])
    return _majority([(reports.get(node) or {}).get(iface, {}).get("mtu")
                      for node, iface in network["members"].items()])


def _ipv4(address):
    """The IPv4 address of ``10.1.2.3/24``, or None when it is not one (it becomes a ping argument)."""
    if not address:
        return None
    text = str(address).split("/", 1)[0]
    try:
        return str(ipaddress.IPv4Address(text))
    except ValueError:
        return None


# --------------------------------------------------------------------------- step 2: probes
def plan_probes(node, networks, reports):
    """Probes ``node`` sends: [{network, peer, interface, address, size}] (size = ICMP payload).

    ``interface`` is the member interface, or its OVS bridge when the address lives there."""
    probes = []
    for network in networks:
        member = network["members"].get(node)
        if member is None or not valid_ifname(member):
            continue
        iface = ((reports.get(node) or {}).get(member) or {}).get("probe_interface") or member
        if not valid_ifname(iface):
            continue
        mtu = expected_mtu(network, reports)
        size = max(0, int(mtu) - ICMP_IPV4_OVERHEAD) if mtu else 56
        for peer, peer_iface in sorted(network["members"].items()):
            if peer == node:
                continue
            peer_addrs = ((reports.get(peer) or {}).get(peer_iface) or {}).get("addresses") or []
            probes.append({"network": network["name"], "peer": peer, "interface": iface,
                           "address": _ipv4(peer_addrs[0]) if peer_addrs else None, "size": size})
    return probes


def ping_argv(interface, address, size=None, wait=1, dont_fragment=False, ping="ping"):
    argv = [ping, "-n", "-q", "-c", "1", "-W", str(int(wait)), "-I", interface]
    if dont_fragment:
        argv += ["-M", "do"]
    if size is not None:
        argv += ["-s", str(int(size))]
    return argv + [address]


def run_parallel(argvs, timeout, max_parallel=64, spawn=None, clock=time.monotonic):
    """Run argv lists at most ``max_parallel`` at a time; -> [returncode or None (killed/failed)].

    Every process gets the same deadline per batch; the whole call is bounded by
    ``ceil(len/max_parallel) * (timeout + 1)`` seconds.
    """
    spawn = spawn or (lambda argv: subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                                    stderr=subprocess.DEVNULL, close_fds=True))
    results = [None] * len(argvs)
    for start in range(0, len(argvs), max(1, int(max_parallel))):
        batch = list(range(start, min(len(argvs), start + max(1, int(max_parallel)))))
        procs = {}
        for index in batch:
            try:
                procs[index] = spawn(argvs[index])
            except OSError:
                results[index] = None
        deadline = clock() + timeout + 1
        for index, proc in procs.items():
            remaining = max(0.0, deadline - clock())
            try:
                results[index] = proc.wait(timeout=remaining)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                results[index] = None
    return results


def run_probes(probes, wait=1, max_parallel=64, spawn=None, ping="ping", rounds=2):
    """Round 1: one MTU-sized don't-fragment probe to every peer, all at once. Later rounds (only for the
    peers that did not answer it): the full-size probe again and a small one, so that a first probe lost
    to ARP resolution is not taken for a path MTU problem. Bounded: ``rounds * (wait + 1)`` seconds."""
    results = [dict(p, reachable=None, mtu_ok=None) for p in probes]
    todo = [i for i, p in enumerate(probes) if p.get("address")]
    full_ok, small_ok = set(), set()
    for round_number in range(max(1, int(rounds))):
        pending = [i for i in todo if i not in full_ok]
        if not pending:
            break
        argvs, owners = [], []
        for i in pending:
            probe = probes[i]
            argvs.append(ping_argv(probe["interface"], probe["address"], probe["size"], wait, True, ping))
            owners.append((i, True))
            if round_number > 0 and i not in small_ok:
                argvs.append(ping_argv(probe["interface"], probe["address"], None, wait, False, ping))
                owners.append((i, False))
        for (i, full), code in zip(owners, run_parallel(argvs, wait, max_parallel, spawn)):
            if code == 0:
                (full_ok if full else small_ok).add(i)
    for i in todo:
        if i in full_ok:
            results[i].update(reachable=True, mtu_ok=True)
        elif i in small_ok:
            results[i].update(reachable=True, mtu_ok=False)
        else:
            results[i].update(reachable=False, mtu_ok=None)
    return results


# --------------------------------------------------------------------------- step 3: evaluate
def _finding(network, node, interface, field, message, expected=None, actual=None, severity="error", **extra):
    """One finding; ``severity`` "error" fails the verification, "warning" is reported only."""
    entry = {"network": network, "node": node, "interface": interface, "field": field,
             "expected": expected, "actual": actual, "severity": severity,
             "message": "[%s] %s%s" % (network, "warning: " if severity == "warning" else "", message)}
    entry.update(extra)
    return entry


def _consistency(network, reports, unreachable_nodes, expect_rate=None, topology=None):
    name = network["name"]
    findings = []
    members = []
    for node, iface in sorted(network["members"].items()):
        if node in unreachable_nodes:
            findings.append(_finding(name, node, iface, "node", "node %s did not answer (not checked)" % node,
                                     expected="reachable", actual="unreachable"))
            continue
        record = (reports.get(node) or {}).get(iface)
        if record is None or not record.get("exists"):
            findings.append(_finding(name, node, iface, "interface",
                                     "%s: interface %s does not exist" % (node, iface),
                                     expected="present", actual="absent"))
            continue
        members.append((node, iface, record))

    mtu = expected_mtu(network, reports)
    records = [record for _node, _iface, record in members]
    mode = _majority([r.get("ipoib_mode") for r in records])
    sm_lid = _majority([r.get("sm_lid") for r in records if r.get("sm_lid")])
    wanted = pkey_or_none(network.get("pkey")) if network.get("pkey") not in (None, "") else None
    want_pkey = partition(wanted) if wanted is not None else None
    # The rate every IB member port should run at: the network's, the play's, or the most common one.
    # Below a rate the operator set is an error; below the most common one only a warning: a slower
    # adapter generation in the network (a QDR card among FDR ones) runs at its best, its link is not
    # degraded (that is the topology's verdict, which is an error).
    rate = network.get("expect_rate") or expect_rate
    rate_severity = "error"
    if not rate:
        rate = _majority([r.get("rate_gbps") for r in records if r.get("ib_device") is not None])
        rate_severity = "warning"
    for node, iface, record in members:
        where = "%s %s" % (node, iface)
        if record.get("operstate") not in ("up", "unknown"):
            findings.append(_finding(name, node, iface, "operstate", "%s is %s, not up" % (
                where, record.get("operstate")), expected="up", actual=record.get("operstate")))
        if mtu is not None and record.get("mtu") != mtu:
            findings.append(_finding(name, node, iface, "mtu", "%s has MTU %s, the network uses %s" % (
                where, record.get("mtu"), mtu), expected=mtu, actual=record.get("mtu")))
        if mode is not None and record.get("ipoib_mode") != mode:
            findings.append(_finding(name, node, iface, "ipoib_mode", "%s IPoIB mode is %s, the others use %s" % (
                where, record.get("ipoib_mode"), mode), expected=mode, actual=record.get("ipoib_mode")))
        if not record.get("addresses"):
            findings.append(_finding(name, node, iface, "addresses", "%s has no IPv4 address" % where,
                                     expected="an IPv4 address", actual=None))
        if record.get("ib_device") is None:
            continue  # not IB-backed (RoCE, plain Ethernet): no port checks
        port = "%s port %s" % (record.get("ib_device"), record.get("ib_port"))
        if record.get("port_state") != "ACTIVE":
            findings.append(_finding(name, node, iface, "port_state", "%s: %s is %s, not ACTIVE" % (
                where, port, record.get("port_state")), expected="ACTIVE", actual=record.get("port_state")))
        if not record.get("sm_lid"):
            findings.append(_finding(name, node, iface, "sm_lid", "%s: no subnet manager answers on %s" % (
                where, port), expected=sm_lid, actual=record.get("sm_lid")))
        elif sm_lid is not None and record.get("sm_lid") != sm_lid:
            findings.append(_finding(name, node, iface, "sm_lid", "%s: %s is managed by the SM at LID %s, the "
                                     "others by LID %s" % (where, port, record.get("sm_lid"), sm_lid),
                                     expected=sm_lid, actual=record.get("sm_lid")))
        if want_pkey is not None and record.get("pkeys") is not None:  # None: table not read
            table = {partition(p) for p in (pkey_or_none(text) for text in record["pkeys"]) if p is not None}
            if want_pkey not in table:
                shown = format_pkey(full_member(want_pkey))
                findings.append(_finding(name, node, iface, "pkeys", "%s: P_Key %s is not in the P_Key table "
                                         "of %s (the SM did not give this partition to the port)" % (
                                             where, shown, port), expected=shown, actual=record.get("pkeys")))
        findings += _degraded(name, node, iface, record, where, port, (rate, rate_severity), topology)

    # Duplicates: the first holder (by node name) keeps the value, every later one is reported.
    for field, label, values_of in (
            ("port_guid", "port GUID", lambda r: [r.get("port_guid")] if r.get("port_guid") else []),
            ("addresses", "IPv4 address", lambda r: [_ipv4(a) for a in r.get("addresses") or []])):
        holders = {}
        for node, iface, record in members:
            for value in values_of(record):
                if value in holders and holders[value][0] != node:
                    first = holders[value]
                    findings.append(_finding(name, node, iface, field, "%s %s: %s %s is also used by %s %s" % (
                        node, iface, label, value, first[0], first[1]), expected="unique", actual=value,
                        duplicate_of={"node": first[0], "interface": first[1]}))
                else:
                    holders.setdefault(value, (node, iface))
    return findings


def _degraded(name, node, iface, record, where, port, expected_rate, topology):
    """A member port running below the expected rate ((Gb/s, severity)), or on a link that trained below
    what both of its ends support or below the fabric's usual width/speed (the topology's verdict, by port
    GUID)."""
    findings = []
    actual = record.get("rate_gbps")
    rate, severity = expected_rate
    if rate and actual is not None and actual < rate:
        findings.append(_finding(name, node, iface, "rate", "%s: %s runs at %s, the network expects %g Gb/sec" % (
            where, port, record.get("rate") or "%g Gb/sec" % actual, rate), expected=rate, actual=actual,
            severity=severity, rate=record.get("rate")))
    guid, node_guid = guid_or_none(record.get("port_guid")), guid_or_none(record.get("node_guid"))
    link = _topology.port_link(topology, format_guid_hex(guid) if guid is not None else None,
                               format_guid_hex(node_guid) if node_guid is not None else None,
                               record.get("ib_port")) if topology else None
    if link and link.get("degraded"):
        findings.append(_finding(name, node, iface, "link", "%s: the link of %s to %s port %s is degraded: %s" % (
            where, port, link.get("switch"), link.get("switch_port"), "; ".join(link.get("reasons") or [])),
            expected=link.get("expected"),
            actual=" ".join(v for v in (link.get("width"), link.get("speed")) if v) or None,
            switch=link.get("switch"), switch_port=link.get("switch_port")))
    return findings


def _connectivity(network, probe_results, unreachable_nodes):
    """Matrix {src: {dst: "ok"|"mtu"|"fail"|"skip"}} and findings, blaming a node when it is isolated."""
    name = network["name"]
    nodes = sorted(n for n in network["members"] if n not in unreachable_nodes)
    matrix = {src: {dst: "skip" for dst in nodes if dst != src} for src in nodes}
    for src in nodes:
        for probe in probe_results.get(src) or []:
            if probe.get("network") != name or probe.get("peer") not in matrix[src]:
                continue
            if probe.get("address") is None:
                state = "skip"
            elif probe.get("reachable") and probe.get("mtu_ok"):
                state = "ok"
            elif probe.get("reachable"):
                state = "mtu"
            else:
                state = "fail"
            matrix[src][probe["peer"]] = state
    findings = []
    for kind, field, words in (("fail", "reachability", "cannot reach"),
                               ("mtu", "path_mtu", "cannot send full-MTU frames to")):
        pairs = {(s, d) for s in nodes for d in matrix[s] if matrix[s][d] == kind}
        if not pairs:
            continue
        isolated = []
        if len(nodes) >= 3:
            for node in nodes:
                others = [n for n in nodes if n != node]
                if all((node, o) in pairs and (o, node) in pairs for o in others):
                    isolated.append(node)
            # Blame a node only when the rest can talk among themselves.
            rest_ok = all((s, d) not in pairs for s in nodes for d in nodes
                          if s != d and s not in isolated and d not in isolated)
            if not rest_ok:
                isolated = []
        for node in isolated:
            iface = network["members"][node]
            findings.append(_finding(name, node, iface, field, "%s %s: no other member can %s it and it %s none "
                                     "of them" % (node, iface, "reach" if kind == "fail" else "exchange full-MTU "
                                                  "frames with", "reaches" if kind == "fail" else "does so with"),
                                     expected="all peers", actual="none", peers=[n for n in nodes if n != node]))
        for src, dst in sorted(pairs):
            if src in isolated or dst in isolated:
                continue
            iface = network["members"][src]
            findings.append(_finding(name, src, iface, field, "%s %s %s %s %s" % (
                src, iface, words, dst, network["members"][dst]), expected="ok", actual=matrix[src][dst],
                peer=dst, peer_interface=network["members"][dst]))
    return matrix, findings


def evaluate(networks, reports, probe_results, unreachable_nodes=(), expect_rate=None, topology=None):
    """{ok, networks: {name: {members, mtu, pkey, matrix, unreachable_pairs}}, findings: [...]}

    ``expect_rate``: Gb/s every IB member port should run at (default the most common rate per network);
    ``topology``: the fabric (``_topology.build``), whose degraded links are reported on their members."""
    unreachable_nodes = set(unreachable_nodes or ())
    result = {"ok": True, "networks": {}, "findings": []}
    for network in networks:
        findings = _consistency(network, reports, unreachable_nodes, expect_rate, topology)
        matrix, link_findings = _connectivity(network, probe_results, unreachable_nodes)
        findings += link_findings
        result["networks"][network["name"]] = {
            "members": dict(network["members"]),
            "pkey": network.get("pkey"),
            "mtu": expected_mtu(network, reports),
            "matrix": matrix,
            "cannot_reach": sorted([s, d] for s in matrix for d in matrix[s] if matrix[s][d] == "fail"),
            "path_mtu_failures": sorted([s, d] for s in matrix for d in matrix[s] if matrix[s][d] == "mtu"),
            "findings": len(findings),
        }
        result["findings"] += findings
    result["ok"] = not errors(result["findings"])
    return result


def errors(findings):
    """The findings that fail a verification (warnings are only reported)."""
    return [f for f in findings if f.get("severity", "error") == "error"]


def _natural_key(name):
    """node2 before node10."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", str(name))]


def matrix_text(name, matrix):
    """Matrix as text lines: rows are senders, columns receivers; . ok, M path MTU, X fail, ? skipped."""
    nodes = sorted(matrix, key=_natural_key)
    symbol = {"ok": ".", "mtu": "M", "fail": "X", "skip": "?"}
    width = max([len(n) for n in nodes] + [4])
    lines = ["network %s (rows send, columns receive; . ok, M path MTU, X unreachable, ? not probed)" % name,
             " " * width + " " + " ".join(str(i + 1).rjust(2) for i in range(len(nodes)))]
    for i, src in enumerate(nodes):
        cells = [" -" if dst == src else symbol.get(matrix[src].get(dst), "?").rjust(2) for dst in nodes]
        lines.append("%s %s   (%d)" % (src.ljust(width), " ".join(cells), i + 1))
    return lines


def not_checked(allocation, wanted, nodes, results):
    """Nodes that are members of a wanted network in the allocation but were left out of this verification
    (not in the play, e.g. ``--limit``; or no result from them): {node: reason}."""
    every = {n for net in networks_from_allocation(allocation, wanted) for n in net["members"]}
    left = {}
    for node in sorted(every):
        if nodes is not None and node not in nodes:
            left[node] = "not in this play"
        elif node not in results:
            left[node] = "no result"
    return left


def write_result(host, path, result):
    """Write the JSON result file through the host seam's atomic writer (mkstemp in the target directory,
    rename: a planted ``<path>.tmp`` link is never followed)."""
    host.write_file(path, json.dumps(result, indent=2, sort_keys=True) + "\n", 0o644)


# --------------------------------------------------------------------------- the controller step
# The options of ib_netcheck_report: its module and its action plugin validate against this one spec.
REPORT_ARGUMENT_SPEC = dict(
    networks=dict(type="list", elements="dict", default=[]),
    allocation=dict(type="dict", default={}),
    nodes=dict(type="list", elements="str"),
    results=dict(type="dict", required=True),
    unreachable_nodes=dict(type="list", elements="str", default=[]),
    dest=dict(type="path"),
    fail_on_findings=dict(type="bool", default=True),
    expect_rate=dict(type="float"),
    topology=dict(type="dict"),
)


def report(params, host):
    """The verification's verdict from every node's ib_netcheck result (validated ib_netcheck_report
    options): (result, message). ``message`` is None on success; otherwise the task fails with it, and
    with the result when there is one (findings, or a result file that could not be written)."""
    results = {node: value or {} for node, value in params["results"].items()}
    for node, value in sorted(results.items()):
        if not isinstance(value, dict):
            return {"changed": False}, ("results[%s] must be the netcheck dict ib_netcheck returned on that node, "
                                        "not %s" % (node, type(value).__name__))
    reports = {node: value.get("interfaces") or {} for node, value in results.items()}
    probes = {node: value.get("probes") or [] for node, value in results.items()}
    if params["expect_rate"] is not None and params["expect_rate"] <= 0:
        return {"changed": False}, "expect_rate must be a positive number of Gb/s, not %s" % params["expect_rate"]
    networks = networks_from_allocation(params["allocation"], params["networks"], params["nodes"])
    try:
        check_networks(networks)
    except ValueError as exc:
        return {"changed": False}, str(exc)
    missing = [n for net in networks for n in net.get("members", {}) if n not in results]
    unreachable = sorted(set(params["unreachable_nodes"]) | set(missing))
    verdict = evaluate(networks, reports, probes, unreachable, params["expect_rate"], params["topology"])
    verdict["not_checked"] = not_checked(params["allocation"], params["networks"], params["nodes"], results)
    verdict["probe_seconds"] = {node: value.get("seconds") for node, value in sorted(results.items())}
    lines = []
    for name, network in verdict["networks"].items():
        lines += matrix_text(name, network["matrix"])
    problems = errors(verdict["findings"])
    output = dict(changed=False, ok=verdict["ok"], findings=verdict["findings"], problems=len(problems),
                  networks=verdict["networks"], matrix_text=lines, not_checked=verdict["not_checked"])
    if params["dest"]:
        try:
            write_result(host, os.path.abspath(params["dest"]), verdict)
        except HostError as exc:
            return output, str(exc)
        output["dest"] = params["dest"]
    if not verdict["ok"] and params["fail_on_findings"]:
        return output, "network verification found %d problem(s): %s" % (
            len(problems), "; ".join(f["message"] for f in problems))
    return output, None
