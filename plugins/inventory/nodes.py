# -*- coding: utf-8 -*-
# Copyright: hpcnet.infiniband contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
name: nodes
short_description: Hosts and groups from the nodes model written by InfiniBand discovery
version_added: 0.1.0
description:
  - Reads the nodes model (JSON or YAML) that C(playbooks/discover.yml) / the
    C(hpcnet.infiniband.ib_nodes_model) module wrote, and yields one host per node.
  - 'Host vars: C(ansible_host) (the address discovery used, when known), C(ib_node_status),
    C(ib_network_mode), C(ib_network_mode_reasons), C(ib_interfaces) (list, Fuel REST fields plus IB
    fields), C(ib_devices), C(ib_subnet_manager), C(ib_networks), C(ib_unassigned_networks),
    C(ib_sm_present), C(ib_sm_local), C(ib_node_errors), C(ib_node_warnings), C(ib_facts_source),
    C(ib_last_seen).'
  - 'C(ib_networks) maps each network role of the node to C(interface) (the allocated interface),
    C(device) (the netdev carrying the address: IPoIB P_Key child, EIPoIB bridge, VLAN device or the
    interface), C(kind), C(address) (without prefix), C(prefix), C(cidr), C(gateway), C(pkey), C(vlan),
    C(mtu), C(mode); the address fields are null for roles that C(discovery_networks) does not define.'
  - 'Groups: C(ib_mode_infiniband), C(ib_mode_ethernet), C(ib_mode_mixed), C(ib_mode_none) after the
    node network mode; C(driver_<name>) per interface driver and C(hca_<model>) per RDMA device model
    (names lower-cased, every run of other characters than letters and digits made one C(_), e.g.
    C(driver_mlx5_core_ib_ipoib), C(hca_connectx_3)); C(sm_local) for nodes running the subnet manager
    of their fabric; C(unreachable), C(discovery_failed) and C(discovery_refused) by status;
    C(ib_network_<role>) for the nodes that carry a network role.'
  - Reads nodes model schemas 1 and 2; a schema 1 model has no addresses (a warning says to re-run
    discovery).
  - The file name of the configuration must end in C(.ib_nodes.yml) or C(.ib_nodes.yaml).
  - Supports C(compose), C(groups) and C(keyed_groups) like other constructed inventories.
author:
  - hpcnet.infiniband developers (@hpcnet)
options:
  plugin:
    description: The name of this plugin; it makes the configuration file ours.
    required: true
    choices: ['hpcnet.infiniband.nodes']
    type: str
  path:
    description:
      - The nodes model file (C(nodes.json) or C(nodes.yaml)). A relative path is taken from the
        directory of the configuration file. C(~) is expanded.
    required: true
    type: str
  include_unreachable:
    description: Also yield the nodes discovery could not reach (in group C(unreachable), without facts).
    type: bool
    default: true
extends_documentation_fragment:
  - constructed
"""

EXAMPLES = r"""
# cluster.ib_nodes.yml, beside the nodes model written by playbooks/discover.yml
plugin: hpcnet.infiniband.nodes
path: ../out/discovery/nodes.json

# Then:
#   ansible-inventory -i cluster.ib_nodes.yml --graph
#   ansible-playbook -i cluster.ib_nodes.yml site.yml --limit ib_mode_infiniband:&hca_connectx_3

# With constructed extras:
# plugin: hpcnet.infiniband.nodes
# path: /srv/discovery/nodes.yaml
# include_unreachable: false
# keyed_groups:
#   - key: ib_networks.rdma.interface | default('none')
#     prefix: rdma_on
"""

import json
import os
import re

from ansible.errors import AnsibleParserError
from ansible.module_utils.common.text.converters import to_native, to_text
from ansible.plugins.inventory import BaseInventoryPlugin, Constructable

try:
    import yaml
except ImportError:  # pragma: no cover - ansible-core requires PyYAML
    yaml = None

MODEL_KIND = "hpcnet.infiniband.nodes"
MODEL_SCHEMA = 2
READABLE_SCHEMAS = (1, 2)

_NON_WORD = re.compile(r"[^a-z0-9]+")


def group_suffix(value):
    """'ConnectX-3 Pro' -> 'connectx_3_pro', 'mlx5_core[ib_ipoib]' -> 'mlx5_core_ib_ipoib'."""
    text = _NON_WORD.sub("_", str(value).lower()).strip("_")
    return text or None


class InventoryModule(BaseInventoryPlugin, Constructable):
    NAME = "hpcnet.infiniband.nodes"

    def verify_file(self, path):
        if not super().verify_file(path):
            return False
        return path.endswith((".ib_nodes.yml", ".ib_nodes.yaml"))

    def _load_model(self, model_path):
        try:
            with open(model_path, "rb") as handle:
                raw = to_text(handle.read(), errors="surrogate_or_strict")
        except (OSError, UnicodeError) as exc:
            raise AnsibleParserError("cannot read the nodes model %s: %s" % (model_path, to_native(exc)))
        try:
            if model_path.endswith(".json"):
                model = json.loads(raw)
            else:
                if yaml is None:
                    raise AnsibleParserError("PyYAML is needed to read %s" % model_path)
                model = yaml.safe_load(raw)
        except ValueError as exc:
            raise AnsibleParserError("the nodes model %s is not valid JSON: %s" % (model_path, to_native(exc)))
        except yaml.YAMLError as exc:
            raise AnsibleParserError("the nodes model %s is not valid YAML: %s" % (model_path, to_native(exc)))
        if not isinstance(model, dict) or model.get("kind") != MODEL_KIND or not isinstance(model.get("nodes"), list):
            raise AnsibleParserError("%s is not a nodes model (kind %s with a nodes list)" % (model_path, MODEL_KIND))
        if model.get("schema") not in READABLE_SCHEMAS:
            raise AnsibleParserError("%s has nodes model schema %r; this plugin reads schemas 1 and 2"
                                     % (model_path, model.get("schema")))
        if model.get("schema") == 1:
            self.display.warning("%s is a nodes model of schema 1, without network addresses: re-run "
                                 "playbooks/discover.yml to write schema 2" % model_path)
        return model

    @staticmethod
    def host_networks(node, definitions):
        """The ib_networks host var of a node: per role its interface, device and address fields."""
        out = {}
        for role, chosen in (node.get("networks") or {}).items():
            if not isinstance(chosen, dict):
                continue
            definition = definitions.get(role) if isinstance(definitions.get(role), dict) else {}
            address, _sep, prefix = (chosen.get("address") or "").partition("/")
            kind = chosen.get("kind")
            out[role] = dict(chosen, **{
                "device": chosen.get("device") or chosen.get("interface"),
                "address": address or None,
                "prefix": int(prefix) if prefix.isdigit() else None,
                "cidr": definition.get("cidr"),
                "gateway": definition.get("gateway"),
                "pkey": definition.get("pkey"),
                "vlan": chosen.get("vlan"),
                "mtu": definition.get("mtu"),
                "mode": definition.get("mode") if kind in ("ipoib", "ipoib_child") else None,
            })
        return out

    def _add_group(self, group, host):
        name = self.inventory.add_group(group)
        self.inventory.add_child(name, host)

    def parse(self, inventory, loader, path, cache=True):
        super().parse(inventory, loader, path, cache)
        self._read_config_data(path)
        model_path = os.path.expanduser(self.get_option("path"))
        if not os.path.isabs(model_path):
            model_path = os.path.join(os.path.dirname(os.path.abspath(path)), model_path)
        model = self._load_model(model_path)
        include_unreachable = self.get_option("include_unreachable")
        definitions = (model.get("networks") or {}).get("definitions") or {}
        strict = self.get_option("strict")

        for node in model["nodes"]:
            if not isinstance(node, dict) or not node.get("name"):
                continue
            status = node.get("status")
            if status == "unreachable" and not include_unreachable:
                continue
            host = self.inventory.add_host(str(node["name"]))
            hostvars = {
                "ib_node_status": status,
                "ib_network_mode": node.get("network_mode"),
                "ib_network_mode_reasons": node.get("network_mode_reasons") or [],
                "ib_facts_source": node.get("source"),
                "ib_interfaces": node.get("interfaces") or [],
                "ib_devices": node.get("devices") or {},
                "ib_subnet_manager": node.get("subnet_manager") or {},
                "ib_networks": self.host_networks(node, definitions if isinstance(definitions, dict) else {}),
                "ib_unassigned_networks": node.get("unassigned_networks") or [],
                "ib_sm_present": node.get("sm_present"),
                "ib_sm_local": node.get("sm_local"),
                "ib_node_errors": node.get("errors") or [],
                "ib_node_warnings": node.get("warnings") or [],
                "ib_last_seen": node.get("last_seen"),
            }
            if node.get("address"):
                hostvars["ansible_host"] = node["address"]
            for key, value in hostvars.items():
                self.inventory.set_variable(host, key, value)

            if status == "unreachable":
                self._add_group("unreachable", host)
            elif status == "failed":
                self._add_group("discovery_failed", host)
            elif status == "refused":
                self._add_group("discovery_refused", host)
            mode = group_suffix(node.get("network_mode")) if node.get("network_mode") else None
            if mode:
                self._add_group("ib_mode_%s" % mode, host)
            for interface in node.get("interfaces") or []:
                driver = group_suffix(interface.get("driver")) if interface.get("driver") else None
                if driver:
                    self._add_group("driver_%s" % driver, host)
            for device in (node.get("devices") or {}).values():
                model_name = (device or {}).get("model") or (device or {}).get("hca_type")
                suffix = group_suffix(model_name) if model_name else None
                if suffix:
                    self._add_group("hca_%s" % suffix, host)
            if node.get("sm_local") is True:
                self._add_group("sm_local", host)
            for role in hostvars["ib_networks"]:
                suffix = group_suffix(role)
                if suffix:
                    self._add_group("ib_network_%s" % suffix, host)

            # constructed: compose / groups / keyed_groups over the host vars above.
            self._set_composite_vars(self.get_option("compose"), hostvars, host, strict=strict)
            self._add_host_to_composed_groups(self.get_option("groups"), hostvars, host, strict=strict)
            self._add_host_to_keyed_groups(self.get_option("keyed_groups"), hostvars, host, strict=strict)
