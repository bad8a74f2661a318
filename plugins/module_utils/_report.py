# -*- coding: utf-8 -*-
# Copyright: hpcnet.infiniband contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Human views of the nodes model: a terminal table and a static, self-contained HTML page.

Pure code: input is the nodes model dict (``_nodes_model.build_model``), output is text. The columns
are those Fuel's UI showed per interface (name, MAC, driver, bus_info, speed, state) plus the IB port
state, rate, LID, SM LID, the interface's network mode, the network roles it carries and the addresses
that discovery allocated on them.
"""

from __future__ import annotations

import html

from ansible_collections.hpcnet.infiniband.plugins.module_utils import _topology

__all__ = ["COLUMNS", "interface_rows", "render_table", "render_html", "format_speed"]

# (key, terminal heading, HTML heading)
COLUMNS = (
    ("node", "NODE", "Node"),
    ("name", "INTERFACE", "Interface"),
    ("mac", "MAC", "MAC"),
    ("driver", "DRIVER", "Driver"),
    ("bus_info", "BUS_INFO", "bus_info"),
    ("speed", "SPEED", "Speed"),
    ("state", "STATE", "State"),
    ("ib_state", "IB_STATE", "IB port state"),
    ("rate", "RATE", "Rate"),
    ("lid", "LID", "LID"),
    ("sm_lid", "SM_LID", "SM LID"),
    ("mode", "MODE", "Mode"),
    ("networks", "NETWORKS", "Networks"),
    ("addresses", "ADDRESSES", "Addresses"),
)

EMPTY = "-"


def format_speed(mbps):
    """1000 -> '1 Gb/s', 56000 -> '56 Gb/s', 100 -> '100 Mb/s', None -> '-'."""
    if mbps is None or isinstance(mbps, bool) or not isinstance(mbps, (int, float)) or mbps <= 0:
        return EMPTY
    if mbps >= 1000:
        value = mbps / 1000.0
        text = ("%d" % value) if value == int(value) else ("%.1f" % value)
        return text + " Gb/s"
    return "%d Mb/s" % mbps


def _text(value):
    if value is None or value == "" or value == []:
        return EMPTY
    return str(value)


def _ib_mode_label(interface):
    """Network mode of an RDMA interface with the detail that matters: IPoIB mode, EIPoIB, RoCE."""
    mode = interface.get("network_mode")
    kind = interface.get("kind")
    if not mode:
        return None
    ipoib = interface.get("ipoib") or {}
    if kind in ("ipoib", "ipoib_child") and ipoib.get("mode"):
        return "%s/%s" % (mode, ipoib["mode"])
    if kind in ("eipoib", "roce"):
        return "%s/%s" % (mode, kind)
    return mode


def _addresses_by_interface(node):
    """{interface: ["10.20.0.11/24", ...]} of a node's allocated addresses, in role order."""
    out = {}
    for chosen in (node.get("networks") or {}).values():
        if isinstance(chosen, dict) and chosen.get("address"):
            out.setdefault(chosen.get("interface"), []).append(chosen["address"])
    return out


def address_text(role, chosen):
    """'rdma 10.20.0.11/24 on ib0.8002 (ib0)' for one addressed network of a node."""
    text = "%s %s on %s" % (role, chosen.get("address"), chosen.get("device") or chosen.get("interface"))
    if chosen.get("device") and chosen.get("device") != chosen.get("interface"):
        text += " (%s)" % chosen.get("interface")
    return text


def interface_rows(node):
    """Rows (dicts keyed like COLUMNS) for one node's interfaces."""
    rows = []
    addresses = _addresses_by_interface(node)
    for interface in node.get("interfaces") or []:
        ib = interface.get("ib") or {}
        rows.append({
            "node": node.get("name"),
            "name": interface.get("name"),
            "mac": _text(interface.get("mac")),
            "driver": _text(interface.get("driver")),
            "bus_info": _text(interface.get("bus_info")),
            "speed": format_speed(interface.get("current_speed")),
            "state": _text(interface.get("state")),
            "ib_state": _text(ib.get("state")),
            "rate": _text(ib.get("rate")),
            # LIDs are InfiniBand addresses; a RoCE port's 0 means "none", so show none.
            "lid": _text(ib.get("lid")) if ib.get("link_layer") != "Ethernet" else EMPTY,
            "sm_lid": _text(ib.get("sm_lid")) if ib.get("link_layer") != "Ethernet" else EMPTY,
            "mode": _text(_ib_mode_label(interface)),
            "networks": _text(",".join(interface.get("assigned_networks") or [])),
            "addresses": _text(",".join(addresses.get(interface.get("name")) or [])),
        })
    return rows


def _device_line(name, device):
    ports = device.get("ports") or {}
    port_text = " ".join("%s:%s" % (num, (port or {}).get("state") or "?") for num, port in sorted(ports.items()))
    parts = [name, device.get("model") or device.get("hca_type") or "unknown HCA"]
    if device.get("fw_ver"):
        parts.append("fw %s" % device["fw_ver"])
    if device.get("node_guid"):
        parts.append("guid %s" % device["node_guid"])
    if port_text:
        parts.append("ports %s" % port_text)
    return " ".join(parts)


def _sm_text(node):
    if node.get("sm_local"):
        return "subnet manager local"
    if node.get("sm_present"):
        return "subnet manager answers"
    if node.get("sm_present") is False:
        return "no subnet manager"
    return None


def node_summary_lines(node):
    """Lines under the table for one node: status, mode, devices, networks, problems."""
    name = node.get("name")
    status = node.get("status")
    if status in ("unreachable", "failed") and not node.get("interfaces"):
        return ["%s: %s: %s" % (name, status.upper(), node.get("message") or "")]
    if status in ("unreachable", "failed"):
        # Failed this run; the model kept its last good data.
        head = "%s: %s: %s; data kept from %s, network mode %s" % (
            name, status.upper(), node.get("message") or "", node.get("last_seen") or "an earlier run",
            node.get("network_mode") or "unknown")
    else:
        head = "%s: %s, network mode %s" % (name, status, node.get("network_mode") or "unknown")
    if node.get("address"):
        head += ", address %s" % node["address"]
    if node.get("source") and node.get("source") != "live":
        head += ", from a %s" % node["source"]
    sm_text = _sm_text(node)
    if sm_text:
        head += ", %s" % sm_text
    lines = [head]
    for dev_name in sorted(node.get("devices") or {}):
        lines.append("  device %s" % _device_line(dev_name, node["devices"][dev_name]))
    networks = node.get("networks") or {}
    if networks or node.get("unassigned_networks"):
        assigned = " ".join("%s=%s" % (role, chosen.get("interface")) for role, chosen in networks.items())
        text = "  networks: %s" % (assigned or "(none)")
        if node.get("unassigned_networks"):
            text += "; unassigned: %s" % ", ".join(node["unassigned_networks"])
        lines.append(text)
    addressed = [address_text(role, chosen) for role, chosen in networks.items()
                 if isinstance(chosen, dict) and chosen.get("address")]
    if addressed:
        lines.append("  addresses: %s" % ", ".join(addressed))
    for error in node.get("errors") or []:
        if status in ("unreachable", "failed") and error == node.get("message"):
            continue
        lines.append("  ERROR: %s" % error)
    for warning in node.get("warnings") or []:
        lines.append("  warning: %s" % warning)
    return lines


def render_table(model):
    """The whole report as a list of lines (an aligned table, then per-node summaries)."""
    nodes = model.get("nodes") or []
    rows = []
    for node in nodes:
        node_rows = interface_rows(node)
        if not node_rows:
            node_rows = [dict({key: EMPTY for key, _h, _x in COLUMNS}, node=node.get("name"),
                              name="(no interfaces)" if node.get("status") == "discovered"
                              else "(%s)" % node.get("status"))]
        for index, row in enumerate(node_rows):
            if index:
                row = dict(row, node="")
            rows.append(row)
    widths = {key: len(heading) for key, heading, _x in COLUMNS}
    for row in rows:
        for key, _heading, _x in COLUMNS:
            widths[key] = max(widths[key], len(str(row[key])))
    lines = ["  ".join(heading.ljust(widths[key]) for key, heading, _x in COLUMNS).rstrip()]
    lines.append("  ".join("-" * widths[key] for key, _h, _x in COLUMNS))
    for row in rows:
        lines.append("  ".join(str(row[key]).ljust(widths[key]) for key, _h, _x in COLUMNS).rstrip())
    lines.append("")
    for node in nodes:
        lines.extend(node_summary_lines(node))
    summary = model.get("summary") or {}
    if summary:
        lines.append("")
        lines.append("%d node(s): %d discovered, %d refused, %d failed, %d unreachable" % (
            summary.get("nodes", 0), summary.get("discovered", 0), summary.get("refused", 0),
            summary.get("failed", 0), summary.get("unreachable", 0)))
    return lines


# ---------------------------------------------------------------------------------------- HTML
_CSS = """
body { font-family: sans-serif; margin: 1.5em; color: #222; }
h1 { font-size: 1.4em; } h2 { font-size: 1.15em; margin-top: 1.6em; } h3 { font-size: 1em; }
table { border-collapse: collapse; margin: 0.4em 0 1em 0; }
th, td { border: 1px solid #bbb; padding: 0.2em 0.5em; text-align: left; font-size: 0.9em; }
th { background: #eee; }
td.mono { font-family: monospace; }
.status-discovered { color: #176117; } .status-refused, .status-failed { color: #a11; }
.status-unreachable { color: #a60; }
.error { color: #a11; } .warning { color: #a60; }
.summary td, .summary th { font-size: 0.9em; }
"""

_MONO = ("mac", "bus_info", "lid", "sm_lid")


def _esc(value):
    return html.escape(_text(value), quote=True)


def render_html(model, title="InfiniBand discovery report"):
    """A static, self-contained HTML page (inline CSS, no scripts, no external resources)."""
    nodes = model.get("nodes") or []
    summary = model.get("summary") or {}
    out = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        "<title>%s</title>" % html.escape(title),
        "<style>%s</style>" % _CSS,
        "</head>",
        "<body>",
        "<h1>%s</h1>" % html.escape(title),
        '<p id="generated">Generated %s by hpcnet.infiniband discovery (nodes model schema %s).</p>'
        % (_esc(model.get("generated_at")), _esc(model.get("schema"))),
        '<table class="summary" id="summary"><tr><th>Nodes</th><th>Discovered</th><th>Refused</th>'
        "<th>Failed</th><th>Unreachable</th></tr><tr>%s</tr></table>"
        % "".join("<td>%s</td>" % _esc(summary.get(k, 0))
                  for k in ("nodes", "discovered", "refused", "failed", "unreachable")),
    ]
    # Overview: one line per node, linking to its section.
    out.append('<table class="summary" id="overview"><tr><th>Node</th><th>Status</th><th>Network mode</th>'
               "<th>Address</th><th>Interfaces</th></tr>")
    for node in nodes:
        out.append('<tr><td><a href="#node-%s">%s</a></td><td class="status-%s">%s</td><td>%s</td>'
                   "<td>%s</td><td>%d</td></tr>"
                   % (_esc(node.get("name")), _esc(node.get("name")), _esc(node.get("status")),
                      _esc(node.get("status")), _esc(node.get("network_mode")), _esc(node.get("address")),
                      len(node.get("interfaces") or [])))
    out.append("</table>")
    # The fabric as a picture (ib_topology): switches, hosts, links with width/speed, degraded ones red.
    svg = _topology.topology_svg(model.get("topology"))
    if svg:
        out.append('<section id="topology"><h2>Fabric</h2>%s</section>' % svg)
    for node in nodes:
        name = node.get("name")
        out.append('<section class="node" id="node-%s" data-node="%s" data-status="%s">'
                   % (_esc(name), _esc(name), _esc(node.get("status"))))
        out.append('<h2>%s <span class="status-%s">(%s)</span></h2>'
                   % (_esc(name), _esc(node.get("status")), _esc(node.get("status"))))
        if node.get("status") in ("unreachable", "failed"):
            out.append('<p class="error">%s: %s</p>' % (_esc(node.get("status")).capitalize(), _esc(node.get("message"))))
            if node.get("interfaces"):
                out.append("<p>Data kept from %s.</p>" % _esc(node.get("last_seen") or "an earlier run"))
        else:
            out.append("<p>%s</p>" % html.escape(node_summary_lines(node)[0]))
        rows = interface_rows(node)
        if rows:
            out.append('<table class="interfaces">')
            out.append("<tr>%s</tr>" % "".join("<th>%s</th>" % html.escape(h) for key, _t, h in COLUMNS
                                               if key != "node"))
            for row in rows:
                out.append('<tr data-node="%s" data-interface="%s">%s</tr>' % (
                    _esc(name), _esc(row["name"]),
                    "".join('<td class="%s">%s</td>' % ("mono" if key in _MONO else key, _esc(row[key]))
                            for key, _t, _h in COLUMNS if key != "node")))
            out.append("</table>")
        devices = node.get("devices") or {}
        if devices:
            out.append("<h3>RDMA devices</h3>")
            out.append('<table class="devices"><tr><th>Device</th><th>Model</th><th>Firmware</th>'
                       "<th>Node GUID</th><th>PCI</th><th>Ports</th></tr>")
            for dev_name in sorted(devices):
                device = devices[dev_name] or {}
                ports = device.get("ports") or {}
                port_text = "; ".join(
                    "%s: %s %s LID %s SM %s" % (num, (p or {}).get("state") or "?", (p or {}).get("rate") or "",
                                                (p or {}).get("lid"), (p or {}).get("sm_lid"))
                    for num, p in sorted(ports.items()))
                out.append('<tr data-device="%s"><td>%s</td><td>%s</td><td>%s</td><td class="mono">%s</td>'
                           '<td class="mono">%s</td><td>%s</td></tr>'
                           % (_esc(dev_name), _esc(dev_name), _esc(device.get("model") or device.get("hca_type")),
                              _esc(device.get("fw_ver")), _esc(device.get("node_guid")),
                              _esc(device.get("pci_address")), _esc(port_text)))
            out.append("</table>")
        networks = node.get("networks") or {}
        if networks or node.get("unassigned_networks"):
            out.append("<h3>Networks</h3>")
            out.append('<table class="networks"><tr><th>Network</th><th>Interface</th><th>Device</th>'
                       "<th>Kind</th><th>Address</th><th>VLAN</th></tr>")
            for role, chosen in networks.items():
                out.append('<tr data-network="%s"><td>%s</td><td>%s</td><td>%s</td><td>%s</td>'
                           '<td class="mono">%s</td><td>%s</td></tr>'
                           % (_esc(role), _esc(role), _esc(chosen.get("interface")), _esc(chosen.get("device")),
                              _esc(chosen.get("kind")), _esc(chosen.get("address")), _esc(chosen.get("vlan"))))
            for role in node.get("unassigned_networks") or []:
                out.append('<tr data-network="%s"><td>%s</td><td colspan="5"><em>unassigned</em></td></tr>'
                           % (_esc(role), _esc(role)))
            out.append("</table>")
        for error in node.get("errors") or []:
            if error != node.get("message") or node.get("status") not in ("unreachable", "failed"):
                out.append('<p class="error">Error: %s</p>' % _esc(error))
        for warning in node.get("warnings") or []:
            out.append('<p class="warning">Warning: %s</p>' % _esc(warning))
        out.append("</section>")
    out.append("</body>")
    out.append("</html>")
    return "\n".join(out) + "\n"
