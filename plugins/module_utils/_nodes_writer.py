# -*- coding: utf-8 -*-
# Copyright: hpcnet.infiniband contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Render the nodes model (JSON, YAML, HTML) and write what changed, atomically.

Used by the ``ib_nodes_model`` module on the controller. The run's results are merged into the model
already written (nodes outside this run are kept, see ``_nodes_model.merge_model``). The model's
timestamp is kept from the existing file when nothing else changed, so a second run rewrites nothing
(changed=false). Every file goes through ``Host.write_file`` (mkstemp in the target directory, explicit
mode, rename): a planted ``<dest>.tmp`` symlink is never followed.
"""

from __future__ import annotations

import datetime
import json
import os

from ansible_collections.hpcnet.infiniband.plugins.module_utils._host import Host
from ansible_collections.hpcnet.infiniband.plugins.module_utils._nodes_model import (
    ModelError,
    comparable,
    host_networks,
    merge_model,
)
from ansible_collections.hpcnet.infiniband.plugins.module_utils._report import render_html, render_table

try:
    import yaml
except ImportError:  # pragma: no cover - PyYAML comes with ansible-core on the controller
    yaml = None

_YAML_DUMPER = getattr(yaml, "CSafeDumper", None) or getattr(yaml, "SafeDumper", None)

BASENAME_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-")


def parse_mode(mode):
    """'0644' / '644' / 420 -> 0o644; ValueError otherwise."""
    if isinstance(mode, int) and not isinstance(mode, bool):
        value = mode
    elif isinstance(mode, str) and mode.strip().isdigit():
        value = int(mode.strip(), 8)
    else:
        raise ValueError("mode must be an octal string like '0644', got %r" % (mode,))
    if not 0 <= value <= 0o7777:
        raise ValueError("mode %r is out of range" % (mode,))
    return value


def dump_json(model):
    return json.dumps(model, indent=2, sort_keys=False, ensure_ascii=False) + "\n"


def dump_yaml(model):
    if yaml is None:
        raise ValueError("PyYAML is needed on the host that writes the nodes model")
    # Plain data only (the model is built from JSON-like dicts); block style, keys in model order.
    # libyaml's emitter when PyYAML has it: the same text for the model, 4x faster (a 16-node model:
    # 0.19 s -> 0.04 s, most of the model writer's time), and it keeps a NEL (U+0085) that the pure-Python
    # emitter folds into a space.
    return "---\n" + yaml.dump(model, Dumper=_YAML_DUMPER, default_flow_style=False, sort_keys=False, width=4096,
                               allow_unicode=True)


def _read_existing_model(path):
    """The model already written at ``path``, None when there is none; ModelError when unreadable
    (a file we cannot read as a model is never overwritten)."""
    try:
        with open(path, "r", encoding="utf-8") as handle:
            return json.load(handle)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise ModelError("cannot read the existing nodes model %s (%s); move it away or choose another "
                         "output directory" % (path, exc))


def _now():
    return datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")


# The arguments of ib_nodes_model: the module and its action plugin (which runs the writer in the
# controller process) validate against this one spec.
ARGUMENT_SPEC = dict(
    results=dict(type="dict", required=True),
    addresses=dict(type="dict", default={}),
    local_hosts=dict(type="list", elements="str", default=[]),
    failed_hosts=dict(type="list", elements="str", default=[]),
    remove_nodes=dict(type="list", elements="str", default=[]),
    networks=dict(type="list", elements="dict", default=[], options=dict(
        name=dict(type="str", required=True),
        cidr=dict(type="str", required=True),
        gateway=dict(type="str"),
        ip_range=dict(type="dict", options=dict(first=dict(type="str"), last=dict(type="str"))),
        pkey=dict(type="raw", no_log=False),
        vlan=dict(type="int"),
        mtu=dict(type="int"),
        ipoib_mode=dict(type="str", choices=["datagram", "connected"]),
    )),
    static_addresses=dict(type="dict", default={}),
    eipoib_bridges=dict(type="list", elements="dict"),
    output_dir=dict(type="path", required=True),
    basename=dict(type="str", default="nodes"),
    rules=dict(type="dict"),
    allow_mixed=dict(type="bool", default=False),
    exclude_kinds=dict(type="list", elements="str", default=["loopback", "virtual"]),
    html=dict(type="bool", default=True),
    title=dict(type="str", default="InfiniBand discovery report"),
    topology=dict(type="dict"),
    mode=dict(type="raw", default="0644"),
)


def write_outputs(params, check_mode=False):
    """Build the model from module params, write the files that differ. Returns the module result."""
    basename = params.get("basename") or "nodes"
    if not set(basename) <= BASENAME_CHARS or basename.startswith("."):
        raise ValueError("basename must be a plain file name (letters, digits, _ . -), got %r" % basename)
    output_dir = os.path.abspath(params["output_dir"])
    file_mode = parse_mode(params.get("mode", "0644"))
    results = dict(params["results"])
    # Hosts that failed an earlier task of this run (site.yml's later stages): the model says so.
    for name in params.get("failed_hosts") or ():
        results.setdefault(name, {"failed": True, "msg": "%s failed or was unreachable in an earlier task of this run "
                                                         "(see above); its last discovered data is kept" % name})
    local = set(params.get("local_hosts") or ())
    # The address goes back out as ansible_host; a host reached by its name or locally has none of its own.
    addresses = {name: (None if name in local or address in (None, "", name) else address)
                 for name, address in (params.get("addresses") or {}).items()}
    json_path = os.path.join(output_dir, basename + ".json")
    yaml_path = os.path.join(output_dir, basename + ".yaml")
    html_path = os.path.join(output_dir, basename + ".html") if params.get("html", True) else None
    existing = _read_existing_model(json_path)
    model, removed, warnings = merge_model(
        results,
        rules=params.get("rules"),
        addresses=addresses,
        allow_mixed=params.get("allow_mixed", False),
        generated_at=_now(),
        exclude_kinds=params.get("exclude_kinds") or (),
        networks=params.get("networks"),
        static_addresses=params.get("static_addresses") or {},
        previous=existing,
        remove_nodes=params.get("remove_nodes") or (),
        bridges=params.get("eipoib_bridges"),
        topology=params.get("topology"),
    )
    if existing is not None and comparable(existing) == comparable(json.loads(dump_json(model))):
        model["generated_at"] = existing.get("generated_at") or model["generated_at"]
    contents = [(json_path, dump_json(model)), (yaml_path, dump_yaml(model))]
    if html_path:
        contents.append((html_path, render_html(model, title=params.get("title") or "InfiniBand discovery report")))
    host = Host(sysfs_root="/sys", fs_root="/", live=False)
    written = []
    for path, text in contents:
        try:
            with open(path, "r", encoding="utf-8") as handle:
                same = handle.read() == text
            same = same and (os.stat(path).st_mode & 0o7777) == file_mode
        except OSError:
            same = False
        if same:
            continue
        written.append(path)
        if not check_mode:
            host.write_file(path, text, mode=file_mode)
    nodes = model["nodes"]
    return {
        "warnings": warnings,
        "removed": removed,
        "host_networks": host_networks(model),
        "changed": bool(written),
        "written": [] if check_mode else written,
        "model_path": json_path,
        "yaml_path": yaml_path,
        "html_path": html_path,
        "report": render_table(model),
        "summary": model["summary"],
        "node_status": {n["name"]: n["status"] for n in nodes},
        "node_errors": {n["name"]: n["message"] for n in nodes
                        if n["name"] in results and n["status"] in ("refused", "failed")},
        "allocation": model["networks"]["allocation"],
    }
