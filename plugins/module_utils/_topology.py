# -*- coding: utf-8 -*-
# Copyright: hpcnet.infiniband contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""InfiniBand fabric topology: parse ``ibnetdiscover`` and ``iblinkinfo``, find degraded links, draw it.

Pure functions, except ``map_fabric`` (runs the tools through the Host seam). The model (the nodes model's ``topology`` field)::

    {"switches": {"0x0000fab000000000": {"guid", "name", "ports", "lid"}},
     "hcas": {"0x98039b0300456c10": {"guid", "name", "host", "ports"}},
     "links": [{"a": END, "b": END, "width": "4X", "speed": "EDR", "rate_gbps": 100.0,
                "state": "Active", "phys_state": "LinkUp", "could_be": "12X" | None,
                "expected": "12X EDR", "degraded": bool, "reasons": [str]}],
     "hca_ports": [{"hca", "host", "port", "port_guid", "switch", "switch_guid", "switch_port",
                    "width", "speed", "rate_gbps", "expected", "degraded", "reasons"}],
     "expected": {"width": "4X", "speed": "EDR"}}
    END = {"guid", "type": "switch"|"hca", "name", "port", "port_guid" (HCA ends)}

GUIDs are ``0x`` + 16 hex digits (as the fabric tools print them), through ``_values``. A link is
degraded when iblinkinfo says it "could be" wider or faster (what both ends support), or when its
width or speed is below what the fabric expects (given, or the most common among the HCA links).
"""

from __future__ import annotations

import html
import re

from ansible_collections.hpcnet.infiniband.plugins.module_utils._host import HostError
from ansible_collections.hpcnet.infiniband.plugins.module_utils._values import format_guid_hex, guid_or_none

# Per-lane signalling (iblinkinfo prints it) -> speed name; data rate per lane in Gb/s (the kernel's
# sysfs ``rate`` and ibstat use these: 4X EDR = 100 Gb/sec).
LANE_SPEEDS = {"2.5": "SDR", "5.0": "DDR", "10.0": "QDR", "14.0625": "FDR", "25.78125": "EDR",
               "53.125": "HDR", "106.25": "NDR", "212.5": "XDR"}
LANE_GBPS = {"SDR": 2.5, "DDR": 5.0, "QDR": 10.0, "FDR10": 10.0, "FDR": 14.0, "EDR": 25.0, "HDR": 50.0,
             "NDR": 100.0, "XDR": 200.0}
SPEED_ORDER = ["SDR", "DDR", "QDR", "FDR10", "FDR", "EDR", "HDR", "NDR", "XDR"]
WIDTHS = {"1X": 1, "2X": 2, "4X": 4, "8X": 8, "12X": 12}

_NODE_RE = re.compile(r'^(?P<type>Switch|Ca|Rt)\s+(?P<ports>\d+)\s+"(?P<id>[^"]*)"\s*(?:#\s*"(?P<desc>[^"]*)"(?P<rest>.*))?$')
_GUID_LINE_RE = re.compile(r"^(?P<kind>switchguid|caguid|rtguid)=(?P<guid>0x[0-9a-fA-F]+)")
# Switch port: [2]	"H-98039b0300456c10"[1](98039b0300456c11) 	# "node1 HCA-1" lid 3 4xEDR
# CA port:     [1](98039b0300456c11) 	"S-0000fab000000000"[2]	# lid 3 lmc 0 "lab switch" lid 2 4xEDR
_PORT_RE = re.compile(r'^\[(?P<port>\d+)\](?:\((?P<pguid>[0-9a-fA-F]+)\))?\s+"(?P<peer>[^"]*)"\[(?P<pport>\d+)\]'
                      r'(?:\((?P<ppguid>[0-9a-fA-F]+)\))?\s*(?:#(?P<comment>.*))?$')
_CONN_RE = re.compile(r'(?P<width>\d+)x(?P<speed>[A-Z0-9]+)\s*$', re.I)
_LID_RE = re.compile(r"\blid (\d+)")
# iblinkinfo (default layout):
#      0x98039b0300456c11      3    1[  ] ==( 4X      25.78125 Gbps Active/  LinkUp)==>   2    2[  ] "lab switch" ( )
#            2    3[  ] ==( 4X  10.0 Gbps (FDR10) Active/  LinkUp)==>     4    1[  ] "node2 HCA-1" (Could be 12X )
_LINK_RE = re.compile(r'^\s*(?:(?P<guid>0x[0-9a-fA-F]+)\s+)?(?P<lid>\d+)\s+(?P<port>\d+)\[[^\]]*\]\s+==\((?P<link>[^)]*'
                      r'(?:\([^)]*\)[^)]*)?)\)==>\s+(?:(?P<rlid>\d+)\s+(?P<rport>\d+))?\[[^\]]*\]\s+"(?P<rname>[^"]*)"'
                      r'\s*\((?P<note>[^)]*)\)')
_LINK_STATE_RE = re.compile(r'^\s*(?:(?P<width>\d+X)\s+(?P<lane>[\d.]+)\s+Gbps(?:\s+\((?P<mode>FDR10)\))?\s+)?'
                            r'(?P<state>\w+)/\s*(?P<phys>\w+)\s*$')


def _guid(text):
    number = guid_or_none(text)
    return format_guid_hex(number) if number is not None else None


def _host_of(desc):
    """The host name of an HCA's node description (``node1 HCA-1``, ``node1 mlx5_0``) or the description."""
    text = (desc or "").strip()
    parts = text.split()
    if len(parts) >= 2 and (re.match(r"^HCA-\d+$", parts[-1]) or re.match(r"^[a-z]+\d*_\d+$", parts[-1])):
        return " ".join(parts[:-1])
    return text or None


def rate_gbps(width, speed):
    """Data rate of a link (4X EDR -> 100.0), or None."""
    lanes = WIDTHS.get(str(width or "").upper())
    per_lane = LANE_GBPS.get(str(speed or "").upper())
    return lanes * per_lane if lanes and per_lane else None


def parse_kernel_rate(text):
    """Kernel sysfs ``rate`` (``100 Gb/sec (4X EDR)``) -> {"rate_gbps", "width", "speed"} (None when unknown)."""
    match = re.match(r"^\s*([\d.]+)\s*Gb/sec(?:\s*\((\d+X)\s*([A-Z0-9]*)\))?", str(text or ""))
    if not match:
        return {"rate_gbps": None, "width": None, "speed": None}
    try:
        gbps = float(match.group(1))
    except ValueError:
        gbps = None
    return {"rate_gbps": gbps, "width": match.group(2), "speed": match.group(3) or None}


# --------------------------------------------------------------------------- ibnetdiscover
def parse_ibnetdiscover(text):
    """``ibnetdiscover`` output -> topology (switches, hcas, links with width/speed); malformed lines skipped."""
    topo = {"switches": {}, "hcas": {}, "links": [], "source": ["ibnetdiscover"]}
    ids = {}          # ibnetdiscover node id ("S-...", "H-...") -> (type, guid)
    ports = []        # (node guid, node type, line match)
    pending_guid = None
    current = None
    for raw in (text or "").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            if not line:
                current = None
            continue
        match = _GUID_LINE_RE.match(line)
        if match:
            pending_guid = _guid(match.group("guid"))
            continue
        match = _NODE_RE.match(line)
        if match:
            kind = {"Switch": "switch", "Ca": "hca", "Rt": "router"}[match.group("type")]
            guid = pending_guid or _guid(match.group("id").split("-", 1)[-1])
            if guid is None or kind == "router":
                current = None
                continue
            desc = match.group("desc") or match.group("id")
            lid = _LID_RE.search(match.group("rest") or "")
            entry = {"guid": guid, "name": desc, "ports": int(match.group("ports"))}
            if kind == "switch":
                entry["lid"] = int(lid.group(1)) if lid else None
                topo["switches"][guid] = entry
            else:
                entry["host"] = _host_of(desc)
                topo["hcas"][guid] = entry
            ids[match.group("id")] = (kind, guid)
            current = (kind, guid)
            continue
        match = _PORT_RE.match(line)
        if match and current:
            ports.append((current, match))
    seen = set()
    for (kind, guid), match in ports:
        peer = ids.get(match.group("peer"))
        if peer is None:
            continue
        a = (kind, guid, int(match.group("port")))
        b = (peer[0], peer[1], int(match.group("pport")))
        key = tuple(sorted([a, b]))
        if key in seen:
            continue
        seen.add(key)
        conn = _CONN_RE.search(match.group("comment") or "")
        width = (conn.group("width") + "X") if conn else None
        speed = conn.group("speed").upper() if conn else None
        link = {"a": _end(topo, a, match.group("pguid")), "b": _end(topo, b, match.group("ppguid")),
                "width": width, "speed": speed, "rate_gbps": rate_gbps(width, speed), "state": None,
                "phys_state": None, "could_be": None, "degraded": False, "reasons": []}
        topo["links"].append(link)
    return topo


def _end(topo, key, port_guid):
    kind, guid, port = key
    table = topo["switches"] if kind == "switch" else topo["hcas"]
    end = {"guid": guid, "type": kind, "name": (table.get(guid) or {}).get("name"), "port": port}
    if kind == "hca":
        end["port_guid"] = _guid(port_guid) if port_guid else None
    return end


# --------------------------------------------------------------------------- iblinkinfo
def parse_iblinkinfo(text):
    """``iblinkinfo`` output -> [{"node_type", "node_name", "node_guid", "port_guid", "lid", "port",
    "width", "speed", "state", "phys_state", "remote_lid", "remote_port", "remote_name", "could_be"}]."""
    records = []
    node = None
    for raw in (text or "").splitlines():
        if raw.startswith("CA:"):
            node = {"node_type": "hca", "node_name": raw[3:].strip().rstrip(":"), "node_guid": None}
            continue
        if raw.startswith("Switch:"):
            head = raw[len("Switch:"):].strip().rstrip(":")
            guid, _sep, name = head.partition(" ")
            node = {"node_type": "switch", "node_name": name.strip(), "node_guid": _guid(guid)}
            continue
        match = _LINK_RE.match(raw)
        if not match or node is None:
            continue
        state = _LINK_STATE_RE.match(match.group("link"))
        if not state:
            continue
        speed = LANE_SPEEDS.get(state.group("lane")) if state.group("lane") else None
        if state.group("mode"):
            speed = state.group("mode")
        records.append(dict(node, port_guid=_guid(match.group("guid")) if match.group("guid") else None,
                            lid=int(match.group("lid")), port=int(match.group("port")),
                            width=state.group("width"), speed=speed, state=state.group("state"),
                            phys_state=state.group("phys"),
                            remote_lid=int(match.group("rlid")) if match.group("rlid") else None,
                            remote_port=int(match.group("rport")) if match.group("rport") else None,
                            remote_name=match.group("rname") or None,
                            could_be=_could_be(match.group("note"))))
    return records


def _could_be(note):
    """iblinkinfo's "(Could be 12X Could be 25.78125 Gbps)" -> "12X EDR" (what both ends support), or None."""
    parts = []
    for value in re.findall(r"Could be ([\d.]+ Gbps|\d+X)", note or ""):
        parts.append(LANE_SPEEDS.get(value.split()[0], value) if value.endswith("Gbps") else value)
    return " ".join(parts) or None


def merge_linkinfo(topo, records):
    """Add iblinkinfo's state and "could be" to the links of ``topo`` (matched by switch GUID and port;
    switch GUIDs come from the switch sections, CA lines by their port GUID)."""
    by_switch_port = {}
    by_port_guid = {}
    for rec in records:
        if rec["node_type"] == "switch" and rec["node_guid"]:
            by_switch_port[(rec["node_guid"], rec["port"])] = rec
        elif rec["port_guid"]:
            by_port_guid[rec["port_guid"]] = rec
    for link in topo["links"]:
        found = None
        for end in (link["a"], link["b"]):
            if end["type"] == "switch":
                found = found or by_switch_port.get((end["guid"], end["port"]))
            elif end.get("port_guid"):
                found = found or by_port_guid.get(end["port_guid"])
        if found:
            link["state"], link["phys_state"] = found["state"], found["phys_state"]
            link["could_be"] = found["could_be"]
            link["width"] = link["width"] or found["width"]
            link["speed"] = link["speed"] or found["speed"]
            link["rate_gbps"] = rate_gbps(link["width"], link["speed"])
    if "iblinkinfo" not in topo["source"]:
        topo["source"].append("iblinkinfo")
    return topo


# --------------------------------------------------------------------------- degraded links, port map
def _speed_rank(speed):
    return SPEED_ORDER.index(speed) if speed in SPEED_ORDER else None


def _most_common(values):
    counts = {}
    for value in values:
        if value:
            counts[value] = counts.get(value, 0) + 1
    if not counts:
        return None
    best = max(counts.values())
    return sorted(v for v, c in counts.items() if c == best)[0]


def mark_degraded(topo, expect_width=None, expect_speed=None):
    """Set ``degraded``/``reasons`` on every link: below what both ends support (iblinkinfo's "could be"),
    or below the expected width/speed (given, else the most common among links with an HCA end)."""
    hca_links = [l for l in topo["links"] if "hca" in (l["a"]["type"], l["b"]["type"])]
    width = (expect_width or "").upper() or _most_common([l["width"] for l in hca_links])
    speed = (expect_speed or "").upper() or _most_common([l["speed"] for l in hca_links])
    topo["expected"] = {"width": width, "speed": speed}
    for link in topo["links"]:
        link["expected"] = _should_run(link, width, speed)
        reasons = []
        if link.get("could_be"):
            reasons.append("both ends support %s, it runs %s %s" % (link["could_be"], link["width"], link["speed"]))
        if width and link["width"] and WIDTHS.get(link["width"], 0) < WIDTHS.get(width, 0):
            reasons.append("width %s below the expected %s" % (link["width"], width))
        if speed and link["speed"] and _speed_rank(link["speed"]) is not None and _speed_rank(speed) is not None \
                and _speed_rank(link["speed"]) < _speed_rank(speed):
            reasons.append("speed %s below the expected %s" % (link["speed"], speed))
        link["reasons"] = reasons
        link["degraded"] = bool(reasons)
    topo["hca_ports"] = hca_ports(topo)
    return topo


def _should_run(link, width, speed):
    """What a link should run at ("12X HDR"): the widest and fastest of what it runs, what both of its ends
    support (iblinkinfo's "could be") and the fabric's expected width/speed; None when nothing is known."""
    could = (link.get("could_be") or "").split()
    widths = [w for w in [link.get("width"), width] + could if w in WIDTHS]
    speeds = [s for s in [link.get("speed"), speed] + could if s in SPEED_ORDER]
    best = (max(widths, key=WIDTHS.get) if widths else None, max(speeds, key=SPEED_ORDER.index) if speeds else None)
    return " ".join(v for v in best if v) or None


def hca_ports(topo):
    """Every HCA port cabled to a switch: which switch port it is on, at what width/speed."""
    rows = []
    for link in topo["links"]:
        ends = {link["a"]["type"]: link["a"], link["b"]["type"]: link["b"]} if link["a"]["type"] != link["b"]["type"] \
            else {}
        if set(ends) != {"hca", "switch"}:
            continue
        hca, switch = ends["hca"], ends["switch"]
        rows.append({"hca": hca["name"], "host": (topo["hcas"].get(hca["guid"]) or {}).get("host"),
                     "hca_guid": hca["guid"], "port": hca["port"], "port_guid": hca.get("port_guid"),
                     "switch": switch["name"], "switch_guid": switch["guid"], "switch_port": switch["port"],
                     "width": link["width"], "speed": link["speed"], "rate_gbps": link["rate_gbps"],
                     "expected": link.get("expected"), "degraded": link["degraded"],
                     "reasons": list(link["reasons"])})
    return sorted(rows, key=lambda r: (str(r["host"]), r["port"]))


def build(ibnetdiscover_text, iblinkinfo_text=None, expect_width=None, expect_speed=None):
    """The topology model from the tools' outputs (iblinkinfo optional)."""
    topo = parse_ibnetdiscover(ibnetdiscover_text)
    if iblinkinfo_text:
        merge_linkinfo(topo, parse_iblinkinfo(iblinkinfo_text))
    return mark_degraded(topo, expect_width, expect_speed)


class TopologyError(Exception):
    """A tool could not be found or failed; the message names it."""


def map_fabric(host, bin_path, via=(), linkinfo=True, timeout=60, expect_width=None, expect_speed=None):
    """Run ``ibnetdiscover`` (and ``iblinkinfo``) through ``host`` and build the model. ``bin_path(tool)``
    finds a tool (``AnsibleModule.get_bin_path``); ``via`` is ``-C dev``/``-P port``. Raises TopologyError."""
    outputs = {}
    for tool in ["ibnetdiscover"] + (["iblinkinfo"] if linkinfo else []):
        path = bin_path(tool)
        if not path:
            raise TopologyError("%s not found: install infiniband-diags" % tool)
        rc, out, err = host.run([path] + list(via), timeout=timeout)
        if rc != 0:
            raise TopologyError("%s failed (rc %d): %s" % (tool, rc, (err or out).strip()[:500]))
        outputs[tool] = out
    return build(outputs["ibnetdiscover"], outputs.get("iblinkinfo"), expect_width, expect_speed)


def map_fabric_from(host, facts, bin_path):
    """(topology, warning) for ib_facts' ``topology`` option: the map when ``facts`` show an ACTIVE
    InfiniBand port (the tools' default port answers then), (None, None) without one, (None, warning)
    when a tool is missing or fails."""
    active = any(port.get("link_layer") == "InfiniBand" and port.get("state") == "ACTIVE"
                 for device in (facts.get("devices") or {}).values()
                 for port in (device.get("ports") or {}).values())
    if not active:
        return None, None
    try:
        return map_fabric(host, bin_path), None
    except (TopologyError, HostError) as exc:
        return None, "the fabric was not mapped from this node: %s" % exc


def port_link(topo, port_guid, node_guid=None, port=None):
    """The ``hca_ports`` row of an HCA port, by its port GUID, else by its node GUID and port number (GUIDs in
    any spelling; tools and drivers do not always agree on port GUIDs: ibsim's are node GUID + port), or None."""
    rows = (topo or {}).get("hca_ports") or []
    wanted = _guid(port_guid) if port_guid else None
    for row in rows:
        if wanted and row.get("port_guid") == wanted:
            return row
    node = _guid(node_guid) if node_guid else None
    for row in rows:
        if node and row.get("hca_guid") == node and port is not None and str(row.get("port")) == str(port):
            return row
    return None


# --------------------------------------------------------------------------- picture
def topology_svg(topology, min_width=320):
    """Inline SVG of the fabric: switches in a row on top, HCAs below them grouped by the switch they hang
    on, one line per link labelled with width/speed; degraded links red and dashed. '' without data."""
    topo = topology or {}
    switches = sorted((topo.get("switches") or {}).values(), key=lambda s: (s.get("name") or "", s["guid"]))
    hcas = topo.get("hcas") or {}
    links = topo.get("links") or []
    if not switches and not hcas:
        return ""
    sw_index = {s["guid"]: i for i, s in enumerate(switches)}
    # Each HCA under the first switch it is cabled to.
    home = {}
    for link in links:
        ends = (link["a"], link["b"])
        for one, other in (ends, ends[::-1]):
            if one["type"] == "hca" and other["type"] == "switch" and one["guid"] not in home:
                home[one["guid"]] = sw_index.get(other["guid"], 0)
    columns = {}
    for guid in sorted(hcas, key=lambda g: (home.get(g, len(switches)), hcas[g].get("name") or "", g)):
        columns.setdefault(home.get(guid, len(switches)), []).append(guid)
    box_w, box_h, gap, per_row = 130, 40, 16, 6
    slot = box_w + gap
    # Each switch gets a band as wide as its HCAs (at most per_row in a row); a second row is shifted by
    # half a slot so the lines to it pass between the boxes of the row above.
    bands = [(col, columns.get(col, [])) for col in range(len(switches))]
    if len(switches) in columns:
        bands.append((len(switches), columns[len(switches)]))  # HCAs cabled to no switch
    x0, band_x = 20, {}
    for col, guids in bands:
        band_x[col] = x0
        x0 += max(1, min(per_row, len(guids))) * slot + (slot // 2 if len(guids) > per_row else 0) + gap
    total_w = max(min_width, x0 + 20)
    rows = max([(len(g) + per_row - 1) // per_row for _c, g in bands] or [1])
    top_hca = 40 + box_h + 90
    height = top_hca + rows * (box_h + 50) + 20
    pos = {}
    out = ['<svg xmlns="http://www.w3.org/2000/svg" class="ib-topology" width="%d" height="%d" '
           'viewBox="0 0 %d %d" font-family="sans-serif" font-size="12">' % (total_w, height, total_w, height),
           '<title>InfiniBand fabric: %d switches, %d HCAs, %d links</title>' % (len(switches), len(hcas), len(links))]
    for col, guids in bands:
        band_w = max(1, min(per_row, len(guids))) * slot
        if col < len(switches):
            pos[switches[col]["guid"]] = (band_x[col] + (band_w - box_w) // 2, 40)
        for j, guid in enumerate(guids):
            row, k = divmod(j, per_row)
            pos[guid] = (band_x[col] + k * slot + (slot // 2 if row % 2 else 0), top_hca + row * (box_h + 50))
    for link in links:
        a, b = link["a"], link["b"]
        if a["guid"] not in pos or b["guid"] not in pos:
            continue
        (ax, ay), (bx, by) = pos[a["guid"]], pos[b["guid"]]
        x1, y1 = ax + box_w // 2, ay + box_h
        x2, y2 = bx + box_w // 2, by
        if a["type"] == b["type"] == "switch":  # inter-switch link: between the two boxes
            x1, y1, x2, y2 = ax + box_w, ay + box_h // 2, bx, by + box_h // 2
            if x2 < x1:
                x1, x2 = ax, bx + box_w
        elif a["type"] == "hca":
            x1, y1, x2, y2 = bx + box_w // 2, by + box_h, ax + box_w // 2, ay
        label = " ".join(v for v in (link.get("width"), link.get("speed")) if v) or "?"
        ports = "%s:%s" % (a["port"], b["port"])
        color, dash = ("#d0021b", ' stroke-dasharray="6 3"') if link.get("degraded") else ("#4a4a4a", "")
        tip = "%s port %s - %s port %s: %s%s" % (a.get("name"), a["port"], b.get("name"), b["port"], label,
                                                 ("; degraded: " + "; ".join(link.get("reasons") or []))
                                                 if link.get("degraded") else "")
        css = " degraded" if link.get("degraded") else ""
        out.append('<g class="link%s"><title>%s</title><line x1="%d" y1="%d" x2="%d" y2="%d" stroke="%s" '
                   'stroke-width="%d"%s/>' % (css, html.escape(tip), x1, y1, x2, y2, color, 3 if css else 2, dash))
        # Labels near the lower end (the HCA), where lines fanning out of one switch are apart.
        mx, my = ((x1 + x2) // 2, (y1 + y2) // 2) if y1 == y2 else ((x1 + 2 * x2) // 3, (y1 + 2 * y2) // 3)
        out.append('<text x="%d" y="%d" text-anchor="middle" fill="%s" font-size="11" stroke="white" '
                   'stroke-width="3" paint-order="stroke">%s (%s)</text></g>' % (
                       mx, my - 3, color, html.escape(label), html.escape(ports)))
    for sw in switches:
        x, y = pos[sw["guid"]]
        out.append('<g class="switch"><title>switch %s %s</title><rect x="%d" y="%d" width="%d" height="%d" rx="4" '
                   'fill="#dbe9f6" stroke="#1f5f99"/><text x="%d" y="%d" text-anchor="middle" font-weight="bold">'
                   '%s</text><text x="%d" y="%d" text-anchor="middle" font-size="10">%s</text></g>' % (
                       html.escape(sw.get("name") or ""), sw["guid"], x, y, box_w, box_h, x + box_w // 2, y + 17,
                       html.escape(_short(sw.get("name") or sw["guid"])), x + box_w // 2, y + 32, sw["guid"]))
    for guid, hca in hcas.items():
        if guid not in pos:
            continue
        x, y = pos[guid]
        out.append('<g class="hca"><title>HCA %s %s</title><rect x="%d" y="%d" width="%d" height="%d" rx="4" '
                   'fill="#eef7e8" stroke="#3b7d23"/><text x="%d" y="%d" text-anchor="middle" font-weight="bold">'
                   '%s</text><text x="%d" y="%d" text-anchor="middle" font-size="10">%s</text></g>' % (
                       html.escape(hca.get("name") or ""), guid, x, y, box_w, box_h, x + box_w // 2, y + 17,
                       html.escape(_short(hca.get("host") or hca.get("name") or guid)), x + box_w // 2, y + 32,
                       html.escape(_short(hca.get("name") or ""))))
    out.append("</svg>")
    return "\n".join(out)


def _short(text, limit=22):
    text = str(text)
    return text if len(text) <= limit else text[:limit - 1] + "\u2026"
