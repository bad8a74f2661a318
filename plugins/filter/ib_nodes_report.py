# -*- coding: utf-8 -*-
# Copyright: hpcnet.infiniband contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters over the nodes model of InfiniBand discovery (docs in ib_nodes_report.yml, ib_nodes_report_html.yml,
ib_host_networks.yml)."""

from __future__ import annotations

from ansible.errors import AnsibleFilterError

from ansible_collections.hpcnet.infiniband.plugins.module_utils._networks import from_ib_networks
from ansible_collections.hpcnet.infiniband.plugins.module_utils._report import render_html, render_table


def _check(model):
    if not isinstance(model, dict) or not isinstance(model.get("nodes"), list):
        raise AnsibleFilterError("ib_nodes_report expects the nodes model (a mapping with a 'nodes' list), "
                                 "e.g. lookup('file', 'out/discovery/nodes.json') | from_json")
    return model


def ib_nodes_report(model, output="lines"):
    """The terminal report of a nodes model: a list of lines, or one string with output='text'."""
    lines = render_table(_check(model))
    if output == "text":
        return "\n".join(lines)
    if output != "lines":
        raise AnsibleFilterError("ib_nodes_report: output must be 'lines' or 'text', got %r" % (output,))
    return lines


def ib_nodes_report_html(model, title="InfiniBand discovery report"):
    """The static HTML page of a nodes model, as one string."""
    return render_html(_check(model), title=title)


def ib_host_networks(ib_networks):
    """The discovery_host_networks list (docs/networks.md) of a host from its ib_networks host var."""
    if not isinstance(ib_networks, dict):
        raise AnsibleFilterError("ib_host_networks expects the ib_networks host var of the hpcnet.infiniband.nodes "
                                 "inventory (a mapping of network role to its interface and address)")
    return from_ib_networks(ib_networks)


class FilterModule:
    def filters(self):
        return {"ib_nodes_report": ib_nodes_report, "ib_nodes_report_html": ib_nodes_report_html,
                "ib_host_networks": ib_host_networks}
