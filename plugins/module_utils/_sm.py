# -*- coding: utf-8 -*-
# Copyright: hpcnet.infiniband contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Subnet-manager rules: port verdicts, sminfo/saquery parsing, SM requirements, opensm config model.

Pure functions except ``read_ports``/``query_sm``/``run_check`` and the opensm config plan/apply, which
reach the host only through the Host seam (a few sysfs attributes per port, ``Host.run``, files).
GUIDs and P_Keys are parsed and formatted by ``_values`` only.

Why a port needs an SM: an IB port trains its link by itself (phys_state LinkUp) but stays
logical state INIT until a subnet manager assigns it a LID and moves it to ARMED then ACTIVE; the
port's ``sm_lid`` then names the SM that did it. Without that no P_Keys are set and IPoIB never comes up.
"""

from __future__ import annotations

import os
import re
import time

from ansible_collections.hpcnet.infiniband.plugins.module_utils._host import HostError, valid_rdma_device
from ansible_collections.hpcnet.infiniband.plugins.module_utils._plan import Plan
from ansible_collections.hpcnet.infiniband.plugins.module_utils._values import (
    format_guid,
    format_guid_hex,
    format_pkey,
    guid_or_none,
    parse_guid,
    parse_pkey,
    partition,
)

# ---------------------------------------------------------------------------------------------
# Kernel port states (include/rdma/ib_verbs.h enum ib_port_state, ib_port_phys_state)
PORT_STATES = {0: "NOP", 1: "DOWN", 2: "INIT", 3: "ARMED", 4: "ACTIVE", 5: "ACTIVE_DEFER"}
PHYS_STATES = {
    1: "Sleep",
    2: "Polling",
    3: "Disabled",
    4: "PortConfigurationTraining",
    5: "LinkUp",
    6: "LinkErrorRecovery",
    7: "Phy Test",
}
# SMInfo SMState (IBA 14.2.5.13)
SM_STATES = {0: "NOTACTIVE", 1: "DISCOVERING", 2: "STANDBY", 3: "MASTER"}

START_SM_HINT = "start opensm on a node or the switch"


# ---------------------------------------------------------------------------------------------
# small parsers
def parse_state(text, names):
    """``"4: ACTIVE"`` -> (4, "ACTIVE"); ``"ACTIVE"`` -> (code, "ACTIVE"); None -> (None, None)."""
    if text is None:
        return None, None
    if isinstance(text, int):
        return text, names.get(text)
    text = str(text).strip()
    match = re.match(r"^(\d+)\s*:\s*(.*)$", text)
    if match:
        code = int(match.group(1))
        return code, (match.group(2).strip() or names.get(code))
    for code, name in names.items():
        if name.lower() == text.lower():
            return code, name
    return None, text or None


def parse_lid(value):
    """LID from sysfs text (``0x3a4``), an int, or a decimal string; None when unknown."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    text = str(value).strip()
    try:
        return int(text, 16) if text.lower().startswith("0x") else int(text)
    except ValueError:
        return None


# ---------------------------------------------------------------------------------------------
# reading ports: the few attributes the verdict needs, never the P_Key tables (on real mlx4/mlx5
# hardware each P_Key entry read is a firmware query).
PORT_ATTRS = ("state", "phys_state", "link_layer", "lid", "sm_lid", "sm_sl", "rate")
# A sysfs attribute fits a page; these are a few dozen bytes: anything longer is not one of them.
ATTR_LIMIT = 256


def _kernel_guid(value):
    number = guid_or_none(value)
    return None if number is None else format_guid(number)


def _hex_guid(value):
    number = guid_or_none(value)
    return None if number is None else format_guid_hex(number)


def list_ports(host):
    """[(device, port_number)] of every RDMA port the host shows, sorted."""
    found = []
    for device in host.listdir("class/infiniband"):
        if not valid_rdma_device(device):
            continue
        for name in host.listdir("class/infiniband/%s/ports" % device):
            if name.isdigit():
                found.append((device, int(name)))
    return sorted(found)


def virtual_devices(host, devices):
    """The RDMA devices that are SR-IOV VFs (their PCI function has a ``physfn``)."""
    return {device for device in devices if host.exists("class/infiniband/%s/device/physfn" % device)}


def _text(data):
    if data is None or len(data) >= ATTR_LIMIT:
        return None
    return data.decode("utf-8", "replace").strip() or None


def read_port_attrs(host, device, port):
    """{attribute: text or None} of one port (PORT_ATTRS and ``gid0``), one directory open."""
    pdir = host.opendir("class/infiniband/%s/ports/%d" % (device, port))
    if pdir is None:
        return {}
    reading = {name: _text(data) for name, data in pdir.read_bytes(PORT_ATTRS, ATTR_LIMIT).items()}
    gids = pdir.opendir("gids")
    reading["gid0"] = _text(gids.read_bytes(["0"], ATTR_LIMIT)["0"]) if gids is not None else None
    return reading


def _port_guid(gid0):
    """The port GUID is the interface ID, the low 64 bits of GID 0 (``fe80:...:0002:c903:00a1:b2c1``)."""
    if not gid0 or gid0.count(":") != 7:
        return None
    return _kernel_guid(":".join(gid0.split(":")[4:]))


def port_view(reading, device, port):
    """Normalise one port reading (``read_port_attrs``) into what the check reports."""
    reading = reading or {}
    state_code, state = parse_state(reading.get("state"), PORT_STATES)
    phys_code, phys = parse_state(reading.get("phys_state"), PHYS_STATES)
    lid = parse_lid(reading.get("lid"))
    sm_lid = parse_lid(reading.get("sm_lid"))
    link_layer = reading.get("link_layer")
    # Kernels before link_layer existed (2.6.3x) only had InfiniBand ports.
    if link_layer is None and state is not None:
        link_layer = "InfiniBand"
    return {
        "device": device,
        "port": int(port),
        "link_layer": link_layer,
        "state": state,
        "state_code": state_code,
        "phys_state": phys,
        "phys_state_code": phys_code,
        "rate": reading.get("rate"),
        "lid": lid,
        "sm_lid": sm_lid,
        "sm_sl": parse_lid(reading.get("sm_sl")),
        "port_guid": _port_guid(reading.get("gid0")),
        # The SM answers from its own port: on that port the SM LID is the port's own LID.
        "local_sm": bool(lid and sm_lid and lid == sm_lid),
    }


def is_infiniband(view):
    # A port whose attributes cannot be read at all is checked (and fails, saying so).
    return view.get("link_layer") in (None, "InfiniBand", "IB")


def select_ports(views, devices=None, ports=None):
    """Pick the ports to check. Returns (selected, errors).

    Default: every InfiniBand link-layer port. ``devices`` restricts to those HCAs (each must exist),
    ``ports`` to those port numbers (each must exist on at least one selected HCA). Ethernet (RoCE)
    ports are never checked: no subnet manager is involved there.
    """
    errors = []
    present = sorted({v["device"] for v in views})
    if devices:
        missing = [d for d in devices if d not in present]
        for name in missing:
            errors.append(
                "HCA %s not found on this host (present: %s)" % (name, ", ".join(present) or "none")
            )
        views = [v for v in views if v["device"] in devices]
    if ports:
        numbers = sorted({v["port"] for v in views})
        for number in ports:
            if int(number) not in numbers:
                errors.append(
                    "port %s not found on %s (ports: %s)"
                    % (number, ", ".join(devices or present) or "this host", ", ".join(map(str, numbers)) or "none")
                )
        views = [v for v in views if v["port"] in [int(p) for p in ports]]
    selected = [v for v in views if is_infiniband(v)]
    return selected, errors


def read_ports(host, devices=None, ports=None):
    """(all port views, selected views, selection errors) from one reading of the host."""
    with host.cached():
        ports_found = list_ports(host)
        virtual = virtual_devices(host, {device for device, _port in ports_found})
        views = [port_view(read_port_attrs(host, device, port), device, port) for device, port in ports_found]
    for view in views:
        view["virtual"] = view["device"] in virtual
    selected, errors = select_ports(views, devices, ports)
    return views, selected, errors


# ---------------------------------------------------------------------------------------------
# verdicts
def port_problem(view):
    """None when the port is ACTIVE, LinkUp and knows its SM; otherwise the message saying why not."""
    name = "%s port %s" % (view["device"], view["port"])
    state, phys = view.get("state"), view.get("phys_state")
    shown = "%s (%s)" % (state or "unknown", phys or "unknown")
    if state is None:
        return "%s: the port state cannot be read (sysfs state missing)" % name
    if state == "ACTIVE":
        if phys not in (None, "LinkUp"):
            return "%s is %s: the link is not up; check the cable and the switch port" % (name, shown)
        if not view.get("sm_lid"):
            return (
                "%s is %s but its sm_lid is 0: the port does not know its subnet manager; "
                "check that opensm is still running and sweeping" % (name, shown)
            )
        return None
    if state == "INIT":
        if phys in (None, "LinkUp"):
            return "%s is %s: no subnet manager has configured it; %s" % (name, shown, START_SM_HINT)
        return "%s is %s: the link is not trained; check the cable and the switch port" % (name, shown)
    if state == "ARMED":
        return (
            "%s is %s: the subnet manager has not finished bringing it up; wait for its next sweep "
            "or check the opensm log" % (name, shown)
        )
    if state == "DOWN":
        if phys == "Disabled":
            return "%s is %s: the port is disabled; enable it on the HCA or the switch (ibportstate enable)" % (
                name,
                shown,
            )
        return "%s is %s: no link: check the cable and the switch port" % (name, shown)
    return "%s is %s: not ACTIVE" % (name, shown)


def combine(problems):
    """One message for every problem (the check reports all failing ports at once)."""
    problems = [p for p in problems if p]
    if not problems:
        return None
    if len(problems) == 1:
        return problems[0]
    return "%d subnet-manager problems: %s" % (len(problems), "; ".join(problems))


# ---------------------------------------------------------------------------------------------
# sminfo / saquery output
SMINFO_RE = re.compile(
    r"sm lid\s+(?P<lid>\d+)\s+sm guid\s+(?P<guid>0x[0-9a-fA-F]+),\s*activity count\s+(?P<act>\d+)\s+"
    r"priority\s+(?P<priority>\d+)\s+state\s+(?P<state>\d+)(?:\s+(?P<name>\S+))?"
)


def parse_sminfo(text):
    """Parse ``sminfo: sm lid 1 sm guid 0x100003, activity count 65 priority 5 state 3 SMINFO_MASTER``.

    Returns {lid, guid (kernel format), guid_hex, activity_count, priority, state_code, state} or None.
    """
    match = SMINFO_RE.search(text or "")
    if not match:
        return None
    code = int(match.group("state"))
    return {
        "lid": int(match.group("lid")),
        "guid": _kernel_guid(match.group("guid")),
        "guid_hex": _hex_guid(match.group("guid")),
        "activity_count": int(match.group("act")),
        "priority": int(match.group("priority")),
        "state_code": code,
        "state": SM_STATES.get(code, "UNKNOWN"),
    }


def parse_smir(text):
    """Parse ``saquery SMIR`` (one SMInfoRecord per SM the master knows, standby ones included)."""
    records = []
    current = None
    for line in (text or "").splitlines():
        line = line.strip()
        if line.startswith("SMInfoRecord dump"):
            current = {}
            records.append(current)
            continue
        if current is None:
            continue
        match = re.match(r"^(LID|GUID|ActCount|Priority|SMState)\.+\s*(\S+)$", line)
        if match:
            current[match.group(1)] = match.group(2)
    result = []
    for record in records:
        guid = _kernel_guid(record.get("GUID"))
        if guid is None:
            continue
        code = parse_lid(record.get("SMState"))
        result.append(
            {
                "lid": parse_lid(record.get("LID")),
                "guid": guid,
                "guid_hex": _hex_guid(guid),
                "activity_count": parse_lid(record.get("ActCount")),
                "priority": parse_lid(record.get("Priority")),
                "state_code": code,
                "state": SM_STATES.get(code, "UNKNOWN"),
            }
        )
    return result


def _first_line(text):
    for line in (text or "").splitlines():
        if line.strip():
            return line.strip()
    return ""


def query_sm(host, device=None, port=None, timeout=15):
    """Ask the fabric behind one port for its SM with ``sminfo`` (and ``saquery SMIR`` for the standby ones).

    ``device``/``port``: the HCA port to ask through (``-C``/``-P``); a host with two rails has two
    fabrics, each with its own SM. Without them the tools pick the first active port.
    Returns {available, master, sms, error}: ``available`` False when infiniband-diags is not
    installed; ``error`` set when sminfo ran and failed (no SM answers, timeout).
    """
    through = ["-C", device, "-P", str(port)] if device else []
    info = {"available": True, "master": None, "sms": [], "error": None}
    try:
        rc, out, err = host.run(["sminfo"] + through, timeout=timeout)
    except HostError as exc:
        info.update(available=False, error=str(exc))
        return info
    if rc == 127:
        info.update(available=False, error="sminfo not found (infiniband-diags is not installed)")
        return info
    if rc == 124 or rc == 137:
        info["error"] = "sminfo timed out after %ss: no subnet manager answers" % timeout
        return info
    master = parse_sminfo(out) if rc == 0 else None
    if master is None:
        detail = _first_line(err) or _first_line(out) or "rc=%s" % rc
        info["error"] = "sminfo found no subnet manager (%s)" % detail
        return info
    info["master"] = master
    try:
        rc, out, _err = host.run(["saquery"] + through + ["SMIR"], timeout=timeout)
    except HostError:
        rc, out = 1, ""
    sms = parse_smir(out) if rc == 0 else []
    if not any(sm["guid"] == master["guid"] for sm in sms):
        sms.insert(0, dict(master))  # SMIR unavailable: at least the master is known
    info["sms"] = sms
    return info


# ---------------------------------------------------------------------------------------------
# requirements on the SM
def sm_problems(sm_info, local_guids, min_sms=0, sm_guid=None, allow_local_sm=True, required=False):
    """Problems with what sminfo reported. ``local_guids``: kernel-format port GUIDs of this host."""
    problems = []
    master = (sm_info or {}).get("master")
    if master is None:
        needs = []
        if required:
            needs.append("query_sm=always")
        if min_sms:
            needs.append("min_sms=%d" % min_sms)
        if sm_guid:
            needs.append("sm_guid")
        if not allow_local_sm:
            needs.append("allow_local_sm=false")
        if needs:
            reason = (sm_info or {}).get("error") or "the subnet manager was not queried"
            problems.append("cannot verify the subnet manager (%s): %s" % (", ".join(needs), reason))
        return problems
    sms = sm_info.get("sms") or [master]
    if min_sms and len(sms) < min_sms:
        problems.append(
            "%d subnet manager(s) on the fabric (%s), at least %d required; start a standby opensm"
            % (len(sms), ", ".join("%s %s" % (s["guid_hex"], s["state"]) for s in sms), min_sms)
        )
    if sm_guid:
        wanted = _kernel_guid(sm_guid)
        if master["guid"] != wanted:
            problems.append(
                "the master subnet manager is %s (LID %s, priority %s), not the expected %s"
                % (master["guid_hex"], master["lid"], master["priority"], _hex_guid(wanted))
            )
    if not allow_local_sm and master["guid"] in (local_guids or []):
        problems.append(
            "the master subnet manager %s runs on this host, and allow_local_sm is false" % master["guid_hex"]
        )
    return problems


def check_sms(host, selected, all_views, query, min_sms, sm_guid, allow_local_sm, timeout):
    """Ask every selected port's fabric for its SM. Returns (first port's sm_info, problems, warnings).

    Each view gets ``sm`` (what its fabric's SM is). With more than one port every message names the
    port it is about: two rails are two fabrics, and either may have lost its SM.
    """
    local = [v["port_guid"] for v in all_views if v.get("port_guid")]
    # A VF's port is a virtual port of its PF's port, on the PF's fabric, and a VF may not send the
    # SMPs sminfo sends: the SM is asked through physical ports only.
    physical = [v for v in selected if not v.get("virtual")]
    # With one physical InfiniBand port on the host the tools' default port is that port: it is asked
    # without -C/-P, which also works where the umad CA name differs from sysfs (the lab's simulated HCA).
    explicit = len([v for v in all_views if is_infiniband(v) and not v.get("virtual")]) > 1
    first, problems, warnings = None, [], []
    for view in physical:
        info = query_sm(host, view["device"] if explicit else None, view["port"], timeout=timeout)
        for sm in ([info["master"]] if info.get("master") else []) + info["sms"]:
            sm["local"] = sm["guid"] in local
        view["sm"] = sm_summary(info)
        if first is None:
            first = info
        where = "%s port %s: " % (view["device"], view["port"]) if len(physical) > 1 else ""
        checks = sm_problems(info, local, min_sms, sm_guid, allow_local_sm, required=(query == "always"))
        problems.extend(where + check for check in checks)
        if info["available"] and info["error"] and not checks:
            # Ports keep ACTIVE when the SM dies: say so even though nothing required the answer.
            warnings.append("%sthe port%s ACTIVE but %s; the fabric may have lost its subnet manager"
                            % (where, " is" if where else "s are", info["error"]))
        if not info["available"]:
            break  # no infiniband-diags: every other port would say the same
    return first, problems, warnings


# ---------------------------------------------------------------------------------------------
# the whole check (read-only)
NO_IB_PORT = "no InfiniBand port: nothing for a subnet manager to serve"


def run_check(
    host,
    devices=None,
    ports=None,
    wait_timeout=0,
    poll_interval=2,
    query="auto",
    min_sms=0,
    sm_guid=None,
    allow_local_sm=True,
    require_ports=False,
    sm_query_timeout=15,
    sleep=None,
    clock=None,
):
    """Read, judge and (within ``wait_timeout``) poll again until the fabric is ready.

    Returns (result dict, failure message or None). Selection errors and a host without InfiniBand
    ports never wait: they will not heal during a subnet-manager sweep.
    """
    sleep = sleep or time.sleep
    clock = clock or time.monotonic
    errors = check_arguments(devices, ports, wait_timeout, poll_interval, min_sms, sm_guid, sm_query_timeout)
    if query == "never" and (min_sms or sm_guid or not allow_local_sm):
        errors.append("min_sms, sm_guid and allow_local_sm=false need the SM query: set query_sm to auto or always")
    if errors:
        return _result([], None, [], 0, 0.0), combine(errors)
    started = clock()
    deadline = started + max(0, wait_timeout or 0)
    attempts = 0
    while True:
        attempts += 1
        all_views, selected, errors = read_ports(host, devices, ports)
        if errors:
            return _result(selected, None, [], attempts, clock() - started), combine(errors)
        if not selected:
            failure = "%s on this host (require_ports is true)" % NO_IB_PORT if require_ports else None
            return _result(selected, None, [], attempts, clock() - started), failure
        problems = []
        failed = []
        for view in selected:
            message = port_problem(view)
            view["ok"] = message is None
            view["message"] = message
            view["sm"] = None
            if message:
                failed.append({"device": view["device"], "port": view["port"], "state": view["state"],
                               "phys_state": view["phys_state"], "message": message})
                problems.append(message)
        sm_info = None
        warnings = []
        if query != "never" and not failed:
            sm_info, sm_checks, warnings = check_sms(host, selected, all_views, query, min_sms, sm_guid,
                                                     allow_local_sm, sm_query_timeout)
            problems.extend(sm_checks)
        message = combine(problems)
        if message is None or clock() >= deadline:
            for warning in warnings:
                host.warn(warning)
            return _result(selected, sm_info, failed, attempts, clock() - started), message
        sleep(max(0.0, min(float(poll_interval), deadline - clock())))


def check_arguments(devices, ports, wait_timeout, poll_interval, min_sms, sm_guid, sm_query_timeout):
    """Bad input -> one clear message each, before anything is read."""
    errors = []
    for name in devices or []:
        if not valid_rdma_device(name):
            errors.append("devices: %r is not an RDMA device name" % (name,))
    for number in ports or []:
        if not 1 <= int(number) <= 254:
            errors.append("ports: %r is not a port number (1-254)" % (number,))
    if (wait_timeout or 0) < 0:
        errors.append("wait_timeout must be >= 0 seconds")
    if not poll_interval or poll_interval <= 0:
        errors.append("poll_interval must be > 0 seconds")
    if (min_sms or 0) < 0:
        errors.append("min_sms must be >= 0")
    if sm_guid is not None:
        try:
            parse_guid(sm_guid)
        except ValueError as exc:
            errors.append("sm_guid: %s" % exc)
    if not sm_query_timeout or sm_query_timeout < 1:
        errors.append("sm_query_timeout must be >= 1 second")
    return errors


def summary(result):
    """One line for a passing check."""
    ports = result.get("ports") or []
    if not ports:
        return NO_IB_PORT
    text = "%d InfiniBand port(s) ACTIVE" % len(ports)
    masters = []
    for port in ports:
        sm = port.get("sm") or {}
        if sm.get("guid_hex"):
            line = "%s (LID %s, priority %s, %s%s)" % (
                sm["guid_hex"], sm["lid"], sm["priority"], sm["state"], ", on this host" if sm.get("local") else "")
            if sm.get("count", 0) > 1:
                line += ", %d SMs in total" % sm["count"]
            if len(ports) > 1:
                line = "%s port %s: %s" % (port["device"], port["port"], line)
            masters.append(line)
    if masters:
        text += "; master SM " + "; ".join(masters)
    else:
        text += "; SM LID %s" % ", ".join(sorted({str(p.get("sm_lid")) for p in ports}))
    return text


def sm_summary(sm_info):
    """What the result says about one fabric's SM (``query_sm``'s answer); None when not queried."""
    if sm_info is None:
        return None
    master = sm_info.get("master") or {}
    return {
        "queried": bool(sm_info.get("available")),
        "error": sm_info.get("error"),
        "guid": master.get("guid"),
        "guid_hex": master.get("guid_hex"),
        "lid": master.get("lid"),
        "priority": master.get("priority"),
        "state": master.get("state"),
        "activity_count": master.get("activity_count"),
        "local": master.get("local"),
        "count": len(sm_info.get("sms") or []),
        "sms": sm_info.get("sms") or [],
    }


def _result(selected, sm_info, failed, attempts, elapsed):
    return {
        "ports": selected,
        "sm": sm_summary(sm_info),
        "failed_ports": failed,
        "attempts": attempts,
        "waited": round(max(0.0, elapsed), 1),
    }


# ---------------------------------------------------------------------------------------------
# opensm configuration model (opensm.conf, partitions.conf, the distribution's service defaults)
PARTITION_NAME_RE = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")
OPTION_NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
MEMBER_KEYWORDS = ("ALL", "ALL_CAS", "ALL_SWITCHES", "ALL_ROUTERS", "SELF")
MEMBERSHIPS = ("full", "limited", "both")
# IB MTU codes (1=256 ... 5=4096) and rate codes opensm accepts in partitions.conf
MTU_CODES = {1: 256, 2: 512, 3: 1024, 4: 2048, 5: 4096}
RATE_CODES = tuple(range(2, 23))
DEFAULT_PKEY = 0x7FFF
# Keys the model renders itself; ``options`` must not set them a second time.
MODELLED_KEYS = ("guid", "sm_priority", "virt_enabled", "sweep_interval", "partition_config_file")
# A file whose first line starts with MANAGED_MARKER was written by the collection: it is rewritten
# whole. Any other existing file is the operator's (or the package's): see plan_opensm_config.
MANAGED_MARKER = "# Managed by hpcnet.infiniband"
MANAGED_HEADER = MANAGED_MARKER + " (ib_opensm_config); local changes are overwritten.\n"
MERGED_NOTE = "# Set by hpcnet.infiniband (ib_opensm_config):"


def normalize_partitions(partitions, add_default=True):
    """Validate the partitions from variables. Returns (normalised list, errors).

    Each item: name, pkey, ipoib (bool), mtu (IB MTU code 1-5), rate (code), sl (0-15),
    defmember (full|limited|both), members [{guid: GUID|ALL|ALL_CAS|ALL_SWITCHES|ALL_ROUTERS|SELF,
    membership: full|limited|both}]. The default partition 0x7fff is added when missing, because
    every port needs it to reach the SA.
    """
    errors = []
    result = []
    seen_names, seen_pkeys = {}, {}
    for index, item in enumerate(partitions or []):
        where = "partitions[%d]" % index
        if not isinstance(item, dict):
            errors.append("%s: must be a dict with name, pkey and members" % where)
            continue
        name = item.get("name")
        if not isinstance(name, str) or not PARTITION_NAME_RE.match(name):
            errors.append("%s: name %r must be 1-64 characters of letters, digits, '_', '.', '-'" % (where, name))
            continue
        where = "partition %s" % name
        try:
            # opensm sets the membership bit per member: 0x8002 and 0x0002 are one partition.
            pkey = partition(parse_pkey(item.get("pkey")))
        except ValueError as exc:
            errors.append("%s: %s" % (where, exc))
            continue
        if name in seen_names:
            errors.append("%s: defined twice" % where)
        if pkey in seen_pkeys and seen_pkeys[pkey] != name:
            errors.append("%s: P_Key %s is already used by partition %s" % (where, format_pkey(pkey), seen_pkeys[pkey]))
        seen_names[name] = True
        seen_pkeys.setdefault(pkey, name)
        entry = {"name": name, "pkey": pkey, "ipoib": bool(item.get("ipoib", True))}
        for key, low, high in (("mtu", 1, 5), ("rate", 2, 22), ("sl", 0, 15)):
            value = item.get(key)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                errors.append("%s: %s %r must be an integer %d-%d%s" % (
                    where, key, value, low, high, " (IB MTU code: 4=2048, 5=4096)" if key == "mtu" else ""))
                continue
            entry[key] = value
        defmember = item.get("defmember")
        if defmember is not None:
            if defmember not in MEMBERSHIPS:
                errors.append("%s: defmember %r must be one of %s" % (where, defmember, ", ".join(MEMBERSHIPS)))
            else:
                entry["defmember"] = defmember
        members = []
        for mindex, member in enumerate(item.get("members") or []):
            if isinstance(member, (str, int)) and not isinstance(member, bool):
                member = {"guid": member}
            if not isinstance(member, dict):
                errors.append("%s: members[%d] must be a GUID, a keyword or {guid, membership}" % (where, mindex))
                continue
            guid = member.get("guid")
            if guid in MEMBER_KEYWORDS:
                spelled = guid
            else:
                spelled = _hex_guid(guid)
                if spelled is None:
                    errors.append("%s: member %r is not a port GUID nor one of %s" % (
                        where, guid, ", ".join(MEMBER_KEYWORDS)))
                    continue
            membership = member.get("membership")
            if membership is not None and membership not in MEMBERSHIPS:
                errors.append("%s: member %s membership %r must be one of %s" % (
                    where, spelled, membership, ", ".join(MEMBERSHIPS)))
                continue
            members.append({"guid": spelled, "membership": membership})
        entry["members"] = members
        result.append(entry)
    if add_default and not errors and DEFAULT_PKEY not in seen_pkeys:
        result.insert(0, {
            "name": "Default", "pkey": DEFAULT_PKEY, "ipoib": True, "defmember": "full",
            "members": [{"guid": "ALL", "membership": None}, {"guid": "ALL_SWITCHES", "membership": "full"},
                        {"guid": "SELF", "membership": "full"}],
        })
    return result, errors


def render_partitions(partitions):
    """partitions.conf text (opensm partition-config format) from normalised partitions."""
    lines = [MANAGED_HEADER.rstrip("\n")]
    for part in partitions:
        flags = []
        if part.get("ipoib"):
            flags.append("ipoib")
        for key in ("mtu", "rate", "sl", "defmember"):
            if part.get(key) is not None:
                flags.append("%s=%s" % (key, part[key]))
        head = "%s=%s" % (part["name"], format_pkey(part["pkey"]))
        if flags:
            head += ", " + ", ".join(flags)
        members = ", ".join(
            m["guid"] + ("=" + m["membership"] if m.get("membership") else "") for m in part["members"]
        )
        lines.append("%s : %s ;" % (head, members) if members else "%s : ;" % head)
    return "\n".join(lines) + "\n"


def _conf_value(value):
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    return str(value)


def opensm_settings(guid=None, priority=None, virt_enabled=None, sweep_interval=None,
                    partitions_path=None, options=None):
    """Validate the opensm.conf model. Returns (ordered [(key, value)], errors)."""
    errors = []
    settings = []
    if guid is not None:
        spelled = _hex_guid(guid)
        if spelled is None:
            errors.append("guid %r is not a port GUID (0x0002c90300a1b2c1 or 0002:c903:00a1:b2c1)" % guid)
        else:
            settings.append(("guid", spelled))
    if priority is not None:
        if isinstance(priority, bool) or not isinstance(priority, int) or not 0 <= priority <= 15:
            errors.append("priority %r must be 0 (lowest) to 15 (highest)" % priority)
        else:
            settings.append(("sm_priority", str(priority)))
    if virt_enabled is not None:
        if virt_enabled not in (0, 1, 2):
            errors.append("virt_enabled %r must be 0 (disabled), 1 (ignore VFs) or 2 (enabled)" % virt_enabled)
        else:
            settings.append(("virt_enabled", str(virt_enabled)))
    if sweep_interval is not None:
        if isinstance(sweep_interval, bool) or not isinstance(sweep_interval, int) or sweep_interval < 0:
            errors.append("sweep_interval %r must be seconds >= 0 (0 disables sweeping)" % sweep_interval)
        else:
            settings.append(("sweep_interval", str(sweep_interval)))
    if partitions_path:
        settings.append(("partition_config_file", partitions_path))
    for key in sorted(options or {}):
        value = (options or {})[key]
        if not isinstance(key, str) or not OPTION_NAME_RE.match(key):
            errors.append("option name %r is not an opensm.conf key" % (key,))
            continue
        if key in MODELLED_KEYS:
            errors.append("option %s is set by its own parameter, not through options" % key)
            continue
        text = _conf_value(value)
        if value is None or "\n" in text or not text.strip():
            errors.append("option %s: value %r must be a non-empty single line" % (key, value))
            continue
        settings.append((key, text.strip()))
    return settings, errors


def render_opensm_conf(settings):
    """opensm.conf text: opensm keeps its built-in default for every key not listed."""
    lines = [MANAGED_HEADER.rstrip("\n"), "# opensm uses its built-in default for every key not listed here."]
    lines.extend("%s %s" % (key, value) for key, value in settings)
    return "\n".join(lines) + "\n"


def render_service_defaults(guid):
    """Debian's /etc/default/opensm: the service starts one opensm per listed port GUID."""
    return MANAGED_HEADER + "# Port GUIDs opensm binds to (ibstat -p lists them), or ALL / NONE.\n%s\n" % (
        _service_ports_line(guid))


def _service_ports_line(guid):
    return 'PORTS="%s"' % (_hex_guid(guid) if guid is not None else "ALL")


# ---------------------------------------------------------------------------------------------
# files the collection did not write: merge the keys it owns, keep a backup, never lose a line
def is_managed(text):
    """True when ``text`` is a file the collection wrote (its first line is the marker header)."""
    return text.startswith(MANAGED_MARKER)


def merge_settings(text, settings, separator=" ", key_re=None):
    """The operator's ``text`` with each (key, value) of ``settings`` set; every other line kept as is.

    Uncommented lines setting a key get the new value in place (every one of them: opensm and the
    shell take the last); a key not set yet is appended under a note saying who set it.
    """
    key_re = key_re or re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)(?:\s|$)")
    lines = text.splitlines()
    wanted = dict(settings)
    found = set()
    for index, line in enumerate(lines):
        match = key_re.match(line)
        if match and match.group(1) in wanted:
            key = match.group(1)
            lines[index] = "%s%s%s" % (key, separator, wanted[key])
            found.add(key)
    missing = [(key, value) for key, value in settings if key not in found]
    if missing:
        if MERGED_NOTE not in lines:
            lines.append(MERGED_NOTE)
        lines.extend("%s%s%s" % (key, separator, value) for key, value in missing)
    return "\n".join(lines) + "\n"


SHELL_KEY_RE = re.compile(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)=")


def backup_path(path, now=None):
    """Where the original of ``path`` is kept, named as ansible.builtin's ``backup: true`` names it."""
    stamp = time.strftime("%Y-%m-%d@%H:%M:%S", time.localtime(now))
    return "%s.%d.%s~" % (path, os.getpid(), stamp)


def plan_file(plan, path, current, managed_text, merged_text, backup):
    """Plan one file. ``merged_text``: the operator's file with our keys set, or None when the file is
    not a key list (partitions.conf): then an unmanaged file is replaced only with a backup."""
    if current is None or is_managed(current):
        wanted = managed_text
    elif merged_text is not None:
        wanted = merged_text
        if wanted != current:
            plan.warn("%s was not written by hpcnet.infiniband: only the keys this module sets were changed in it%s"
                      % (path, " (the original is kept as a backup)" if backup else ""))
    elif backup:
        wanted = managed_text
        if wanted != current:
            plan.warn("%s was not written by hpcnet.infiniband: it is replaced, and the original kept as a backup"
                      % path)
    else:
        plan.refuse("%s exists and was not written by hpcnet.infiniband (no '%s' header): set backup=true to "
                    "replace it keeping the original next to it, or move it away; nothing was changed"
                    % (path, MANAGED_MARKER))
        return None
    if wanted != current:
        detail = {"mode": 0o644}
        if current is not None and backup and not is_managed(current):
            detail["backup"] = backup_path(path)
        plan.add("write_file", path, current, wanted, **detail)
    return wanted


def plan_opensm_config(host, params):
    """have (the files now) -> plan (write_file changes). Returns (Plan, {path: wanted text}).

    Files the collection wrote (marker header) are rewritten whole. An existing file it did not write
    is the operator's: opensm.conf and the service defaults get the keys this module sets merged in
    (every other line kept); partitions.conf is replaced only when ``backup`` keeps the original.
    With ``backup`` the original of every unmanaged file it changes is kept next to it.
    Every refusal is decided here; nothing is written by this function.
    """
    plan = Plan()
    conf_path = params.get("conf_path") or "/etc/opensm/opensm.conf"
    partitions_path = params.get("partitions_path") or "/etc/opensm/partitions.conf"
    defaults_path = params.get("service_defaults_path")
    backup = params.get("backup", True)
    paths = [p for p in (conf_path, partitions_path, defaults_path) if p]
    for path in paths:
        if not str(path).startswith("/"):
            plan.refuse("%s is not an absolute path" % path)
    if len(set(paths)) != len(paths):
        plan.refuse("conf_path, partitions_path and service_defaults_path must be different files")
    partitions, errors = normalize_partitions(params.get("partitions") or [])
    for error in errors:
        plan.refuse(error)
    settings, errors = opensm_settings(
        guid=params.get("guid"),
        priority=params.get("priority"),
        virt_enabled=params.get("virt_enabled"),
        sweep_interval=params.get("sweep_interval"),
        partitions_path=partitions_path,
        options=params.get("options") or {},
    )
    for error in errors:
        plan.refuse(error)
    if not plan.ok:
        return plan, {}
    # path -> (text when the file is ours, merge of our keys into the operator's text or None)
    renderings = {
        conf_path: (render_opensm_conf(settings), lambda text: merge_settings(text, settings)),
        partitions_path: (render_partitions(partitions), None),
    }
    if defaults_path:
        ports_key, ports_value = _service_ports_line(params.get("guid")).split("=", 1)
        renderings[defaults_path] = (
            render_service_defaults(params.get("guid")),
            lambda text: merge_settings(text, [(ports_key, ports_value)], "=", SHELL_KEY_RE),
        )
    files = {}
    for path, (managed_text, merge) in renderings.items():
        try:
            current = host.read_file(path)
        except HostError as exc:
            plan.refuse(str(exc))
            continue
        merged = merge(current) if merge and current is not None and not is_managed(current) else None
        wanted = plan_file(plan, path, current, managed_text, merged, backup)
        if wanted is not None:
            files[path] = wanted
    if not plan.ok:
        # A refusal changes nothing: no partial plan is reported as changes.
        plan.changes = []
        return plan, files
    # opensm reads its configuration when it starts: a changed file needs a restart.
    plan.reload_required = plan.changed
    return plan, files


def apply_opensm_config(host, plan):
    """The only writer: the backup of an unmanaged original (mode 0600: opensm.conf may hold the SM's
    keys), then the file itself, each atomically. Returns {path: backup path} of the backups made."""
    backups = {}
    for change in plan.changes:
        if change.action != "write_file":
            continue
        if change.detail.get("backup"):
            host.write_file(change.detail["backup"], change.before, mode=0o600)
            backups[change.target] = change.detail["backup"]
        host.write_file(change.target, change.after, mode=change.detail.get("mode", 0o644))
    return backups
