# -*- coding: utf-8 -*-
# Copyright: hpcnet.infiniband contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The boot path: what no network manager owns (VF counts, VF GUIDs, IPoIB children/mode/MTU) comes
back at boot from one desired-state file, applied by the same module_utils code as the modules.

Files (all owned by the marker line ``# Managed by hpcnet.infiniband``, within its first two lines):

- ``STATE_PATH``: JSON, ``{"_managed_by", "schema": 1, "sriov": [ib_sriov params], "ipoib":
  [ib_ipoib params]}``; the params are complete (the module's own defaults filled in by the role);
- ``SCRIPT_PATH``: a few lines of Python that put ``LIB_DIR`` on ``sys.path`` and call ``main()`` below;
- ``LIB_DIR/ansible_collections/hpcnet/infiniband/plugins/module_utils/*.py``: copies of this module and
  everything it imports from the collection, so the imports resolve unchanged (namespace packages:
  no ``__init__.py`` needed) and the host needs neither Ansible nor the collection;
- ``UNIT_PATH``: the systemd oneshot ordered before ``network-pre.target`` (why: docs/boot.md).

have (``read_files``) -> plan (``plan_boot``: pure) -> apply (``apply_boot``: files, then systemd).
At boot: ``main()`` -> ``apply_state`` (``_sriov.prepare``/``apply_for_module``, ``_ipoib.prepare``/
``apply_ipoib``).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import subprocess
import sys
import time

from ansible_collections.hpcnet.infiniband.plugins.module_utils._host import (
    Host,
    HostError,
    valid_ifname,
    valid_pci_address,
)
from ansible_collections.hpcnet.infiniband.plugins.module_utils._plan import Plan

STATE_PATH = "/etc/hpcnet-infiniband/boot-state.json"
UNIT_NAME = "hpcnet-ib-boot.service"
UNIT_PATH = "/etc/systemd/system/" + UNIT_NAME
SCRIPT_PATH = "/usr/local/sbin/hpcnet-ib-boot"
LIB_DIR = "/usr/local/lib/hpcnet-infiniband"
WANTED_BY = "sysinit.target"
PACKAGE = "ansible_collections.hpcnet.infiniband.plugins.module_utils"
LIB_PACKAGE_DIR = LIB_DIR + "/" + PACKAGE.replace(".", "/")
MARKER = "Managed by hpcnet.infiniband"
SCHEMA = 1
# Bounded wait for udev to finish the coldplug events (netdev renames) before the first read.
SETTLE_SECONDS = 30
# What the boot path never does, whatever the state file says: write files (the roles own them) or
# ask the firmware (mstconfig only explains refusals).
BOOT_PARAMS = {"sriov": {"persist": False, "firmware_info": False}, "ipoib": {}}
FILE_ACTIONS = ("write_file", "remove_file")

__all__ = [
    "BootError",
    "render_state",
    "parse_state",
    "render_unit",
    "render_script",
    "library_sources",
    "owned",
    "read_have",
    "plan_boot",
    "apply_boot",
    "apply_state",
    "main",
]


class BootError(Exception):
    pass


def owned(text):
    """Whether a file's text carries the collection's marker (first two lines)."""
    return text is not None and MARKER in "".join(text.splitlines(True)[:2])


# ---------------------------------------------------------------------- renderers (pure)
def _entry_name(kind, entry):
    key = "pf" if kind == "sriov" else "parent"
    if not isinstance(entry, dict) or not isinstance(entry.get(key), str):
        raise BootError("%s entry %r has no %s" % (kind, entry, key))
    name = entry[key]
    if not (valid_ifname(name) or (kind == "sriov" and valid_pci_address(name))):
        raise BootError("%s entry: %r is not a valid %s" % (kind, name, "PF" if kind == "sriov" else "interface name"))
    return name


def render_state(sriov, ipoib):
    """The desired-state file: JSON with sorted keys (a re-render of the same state is byte-identical)."""
    state = {
        "_managed_by": MARKER + " (ib_boot_state): applied at boot by %s; local changes are overwritten" % UNIT_NAME,
        "schema": SCHEMA,
        "sriov": [],
        "ipoib": [],
    }
    for kind, entries in (("sriov", sriov), ("ipoib", ipoib)):
        for entry in entries or []:
            _entry_name(kind, entry)
            # None is "not set": the module's own default applies, as when the option is omitted.
            state[kind].append({k: v for k, v in entry.items() if v is not None})
    return json.dumps(state, indent=1, sort_keys=True) + "\n"


def parse_state(text, path=STATE_PATH):
    try:
        state = json.loads(text)
    except ValueError as exc:
        raise BootError("%s is not JSON: %s" % (path, exc))
    if not isinstance(state, dict) or not owned(text):
        raise BootError("%s is not a state file of hpcnet.infiniband (no %r marker)" % (path, MARKER))
    if state.get("schema") != SCHEMA:
        raise BootError("%s: schema %r, this code reads schema %d" % (path, state.get("schema"), SCHEMA))
    for kind in ("sriov", "ipoib"):
        if not isinstance(state.get(kind, []), list):
            raise BootError("%s: %s is not a list" % (path, kind))
        for entry in state.get(kind, []):
            _entry_name(kind, entry)
    return state


def render_unit(script_path=SCRIPT_PATH, state_path=STATE_PATH):
    # DefaultDependencies=no + Before=network-pre.target: runs early, before any network manager (which
    # orders itself After=network-pre.target) looks for the VFs and P_Key children. After udev's
    # coldplug and modules-load: the PF and IPoIB netdevs exist and carry their final (renamed) names.
    return "\n".join(
        [
            "# %s (ib_boot_state): local changes are overwritten." % MARKER,
            "[Unit]",
            "Description=hpcnet.infiniband: SR-IOV VFs, VF GUIDs and IPoIB interfaces from %s" % state_path,
            "DefaultDependencies=no",
            "Wants=network-pre.target",
            "Before=network-pre.target shutdown.target",
            "After=local-fs.target systemd-modules-load.service systemd-udev-trigger.service "
            "systemd-udev-settle.service",
            "Conflicts=shutdown.target",
            "ConditionPathExists=%s" % state_path,
            "",
            "[Service]",
            "Type=oneshot",
            "RemainAfterExit=yes",
            "ExecStart=%s --state %s" % (script_path, state_path),
            "",
            "[Install]",
            "WantedBy=%s" % WANTED_BY,
            "",
        ]
    )


def render_script(python="/usr/bin/python3", lib_dir=LIB_DIR):
    # -I: neither PYTHONPATH nor the user's site-packages can replace the copies in lib_dir.
    return "\n".join(
        [
            "#!%s -I" % python,
            "# %s (ib_boot_state): applies the desired-state file at boot (%s)." % (MARKER, UNIT_NAME),
            "import sys",
            "",
            "sys.path.insert(0, %r)" % lib_dir,
            "from %s import _boot  # noqa: E402" % PACKAGE,
            "",
            "sys.exit(_boot.main())",
            "",
        ]
    )


def _source(name):
    spec = importlib.util.find_spec("%s.%s" % (PACKAGE, name))
    source = spec.loader.get_source(spec.name) if spec and spec.loader else None
    if source is None:
        raise BootError("cannot read the source of %s.%s" % (PACKAGE, name))
    return source


# `from PACKAGE._x import ...` (group 1: _x) or `from PACKAGE import _x, _y` / `import (...)` (group 2).
# A regex, not ast: parsing and walking the whole closure cost ~0.45 s CPU in every ib_boot_state run, and
# these are the collection's own sources, which import in only these two forms (the unit test runs the copy).
_IMPORT_RE = re.compile(r"^[ \t]*from[ \t]+%s(?:\.(\w+))?[ \t]+import[ \t]+(\([^)]*\)|[^\n]*)" % re.escape(PACKAGE), re.M)


def _imported(source):
    """Names of the collection's module_utils a source imports (anywhere in it)."""
    names = set()
    for match in _IMPORT_RE.finditer(source.replace("\\\n", " ")):
        if match.group(1):
            names.add(match.group(1))
            continue
        listed = re.sub(r"#[^\n]*", "", match.group(2)).strip("()")
        names.update(item.split()[0] for item in listed.split(",") if item.strip())
    return names


def library_sources():
    """{file name: text} of this module and every collection module_utils it imports, transitively,
    each with the marker line first (the coding line stays within the first two lines)."""
    pending, sources = ["_boot"], {}
    while pending:
        name = pending.pop()
        if name in sources:
            continue
        source = _source(name)
        sources[name] = source
        pending.extend(sorted(_imported(source) - set(sources)))
    header = "# %s (ib_boot_state): copy for %s; local changes are overwritten.\n" % (MARKER, SCRIPT_PATH)
    return {name + ".py": header + text for name, text in sorted(sources.items())}


# ---------------------------------------------------------------------- have / plan / apply (module)
def wanted_files(sriov, ipoib, python="/usr/bin/python3"):
    """{absolute path: text} of every file the boot path consists of."""
    files = {
        STATE_PATH: render_state(sriov, ipoib),
        UNIT_PATH: render_unit(),
        SCRIPT_PATH: render_script(python),
    }
    for name, text in library_sources().items():
        files["%s/%s" % (LIB_PACKAGE_DIR, name)] = text
    return files


FILE_MODES = {SCRIPT_PATH: "0755"}


def systemd_booted(host):
    """sd_booted(): systemd is PID 1 when /run/systemd/system is a directory."""
    return os.path.isdir(host.file_path("/run/systemd/system"))


def read_have(host, paths):
    """{"files": {path: text or None} (``paths`` plus the copies already in the library folder),
    "systemd": whether systemd is PID 1, "systemctl": whether systemctl is there, "enabled"}."""
    files = {path: host.read_file(path) for path in paths}
    folder = host.file_path(LIB_PACKAGE_DIR)
    if os.path.isdir(folder):
        for name in sorted(os.listdir(folder)):
            path = "%s/%s" % (LIB_PACKAGE_DIR, name)
            if name.endswith(".py") and path not in files:
                files[path] = host.read_file(path)
    # is-enabled and enable work without a running systemd too (they read and make the [Install]
    # symlinks): an image built in a chroot or container then boots with the unit enabled.
    rc, out, _err = host.run(["systemctl", "is-enabled", UNIT_NAME], 30)
    return {"files": files, "systemd": systemd_booted(host), "systemctl": rc != 127,
            "enabled": rc == 0 and out.strip() == "enabled"}


def plan_boot(have, want, state="present", enable=True):
    """Pure. ``want``: {path: text}. Refuses (naming it) any file without the marker. Enables/disables
    the unit where systemctl exists; daemon-reload only when systemd is PID 1 and the unit file changes."""
    plan = Plan()
    current = have["files"]
    targets = sorted(set(current) | set(want))
    for path in targets:
        if current.get(path) is not None and not owned(current[path]):
            plan.refuse("%s exists and was not written by hpcnet.infiniband (no %r line): move it away" % (path, MARKER))
    if plan.errors:
        return plan
    wanted_enabled = have["systemctl"] and enable and state == "present"
    if have["enabled"] and not wanted_enabled:
        plan.add("systemctl", "disable %s" % UNIT_NAME, "enabled", "disabled", argv=["disable", UNIT_NAME])
    for path in targets:
        wanted = want.get(path) if state == "present" else None
        if current.get(path) == wanted:
            continue
        if wanted is None:
            plan.add("remove_file", path, current.get(path), None)
        else:
            plan.add("write_file", path, current.get(path), wanted, mode=FILE_MODES.get(path, "0644"))
    if have["systemd"] and any(c.target == UNIT_PATH for c in plan.changes):
        plan.add("systemctl", "daemon-reload", None, None, argv=["daemon-reload"])
    if wanted_enabled and not have["enabled"]:
        plan.add("systemctl", "enable %s" % UNIT_NAME, "disabled", "enabled", argv=["enable", UNIT_NAME])
    plan.info["enabled"] = wanted_enabled if have["systemctl"] else None
    return plan


def apply_boot(host, plan):
    """Make the changes in order; returns {"applied": [...]}; raises HostError saying what was done."""
    done = []
    for change in plan.changes:
        try:
            if change.action == "write_file":
                host.write_file(change.target, change.after, int(change.detail["mode"], 8))
            elif change.action == "remove_file":
                host.remove_file(change.target)
            else:
                rc, out, err = host.run(["systemctl"] + change.detail["argv"], 60)
                if rc != 0:
                    raise HostError("rc %d: %s" % (rc, (err or out).strip()))
        except HostError as exc:
            raise HostError("%s failed (done: %s): %s" % (change.describe(), "; ".join(done) or "nothing", exc))
        done.append(change.describe())
    return {"applied": done}


# ---------------------------------------------------------------------- at boot
def _present(host, name):
    if valid_pci_address(name):
        return host.exists("bus/pci/devices/%s" % name)
    return host.exists("class/net/%s" % name)


def _kinds():
    """(kind, key field, prepare, errors) in order: VFs first (an IPoIB entry may name a VF's netdev).

    _sriov and _ipoib are imported here, not at the top: only the boot script applies entries, and
    ib_boot_state would otherwise compile them (with _facts, ~4,000 lines) on every run. library_sources
    finds these imports too, so the boot copy has them."""
    from ansible_collections.hpcnet.infiniband.plugins.module_utils import _ipoib, _sriov

    def sriov_entry(host, params):
        plan, have, _extra = _sriov.prepare(host, params)
        return plan, lambda: _sriov.apply_for_module(host, plan, have, params["timeout"])

    def ipoib_entry(host, params):
        plan, _extra = _ipoib.prepare(host, params)
        return plan, lambda: _ipoib.apply_ipoib(host, plan, params["timeout"])

    return (
        ("sriov", "pf", sriov_entry, (_sriov.SriovError, _sriov.SriovApplyError, HostError)),
        ("ipoib", "parent", ipoib_entry, (_ipoib.IpoibError, _ipoib.IpoibApplyError, HostError)),
    )


def apply_state(host, state, log):
    """Apply every entry of ``state`` as its module would. An entry whose PF/parent is absent is logged
    and skipped; a refusal or failure is logged and the others still run. Returns (changes, problems)."""
    changes, problems = 0, []
    for kind, key, prepare, errors in _kinds():
        for entry in state.get(kind, []):
            params = dict(entry, **BOOT_PARAMS[kind])
            label = "%s %s%s" % (kind, params[key], " pkey %s" % params["pkey"] if params.get("pkey") is not None else "")
            if not _present(host, params[key]):
                log("%s: %s is not present on this host: skipped" % (label, params[key]))
                continue
            problem = None
            try:
                plan, apply = prepare(host, params)
                for warning in plan.warnings:
                    log("%s: warning: %s" % (label, warning))
                files = [c.target for c in plan.changes if c.action in FILE_ACTIONS]
                if files:
                    log("%s: %s differ from what the roles wrote: not written at boot (re-run the roles)"
                        % (label, ", ".join(files)))
                    plan.changes = [c for c in plan.changes if c.action not in FILE_ACTIONS]
                if plan.errors:
                    problem = "%s: refused: %s" % (label, plan.error_message())
                elif plan.changes:
                    apply()
                    changes += len(plan.changes)
                    log("%s: %s" % (label, "; ".join(c.describe() for c in plan.changes)))
                else:
                    log("%s: already as wanted" % label)
            except errors as exc:
                problem = "%s: failed: %s" % (label, exc)
            if problem:
                problems.append(problem)
                log(problem)
    return changes, problems


def _runner(argv, timeout=30):
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    except FileNotFoundError:
        return 127, "", "%s: command not found" % argv[0]
    except subprocess.TimeoutExpired:
        return 124, "", "%s: timed out after %d s" % (argv[0], timeout)
    return proc.returncode, proc.stdout, proc.stderr


def main(argv=None):
    """hpcnet-ib-boot [--state PATH] [--sysfs-root /sys] [--fs-root /]: exit 0 when everything present
    was applied (absent hardware is not an error), 1 when an entry was refused or failed, 2 on a bad file."""
    parser = argparse.ArgumentParser(prog="hpcnet-ib-boot", description=__doc__.splitlines()[0])
    parser.add_argument("--state", default=STATE_PATH)
    parser.add_argument("--sysfs-root", default="/sys")
    parser.add_argument("--fs-root", default="/")
    args = parser.parse_args(argv)

    def log(message):
        # One line per message, flushed: journald timestamps each as it comes.
        sys.stdout.write("hpcnet-ib-boot: %s\n" % message)
        sys.stdout.flush()

    host = Host(sysfs_root=args.sysfs_root, fs_root=args.fs_root, runner=_runner)
    try:
        text = host.read_file(args.state)
        if text is None:
            log("%s does not exist: nothing to apply" % args.state)
            return 0
        state = parse_state(text, args.state)
    except (BootError, HostError) as exc:
        log(str(exc))
        return 2
    if not state.get("sriov") and not state.get("ipoib"):
        log("%s is empty: nothing to apply" % args.state)
        return 0
    started = time.monotonic()
    if host.live:
        host.run(["udevadm", "settle", "--timeout=%d" % SETTLE_SECONDS], SETTLE_SECONDS + 5)
    changes, problems = apply_state(host, state, log)
    log("%d change(s) in %.1f s, %d problem(s)" % (changes, time.monotonic() - started, len(problems)))
    return 1 if problems else 0
