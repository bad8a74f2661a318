# -*- coding: utf-8 -*-
# Copyright: hpcnet.infiniband contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The OFED stack of a host: which stack runs, which cards it drives, and the kernel-module plan.

have  (``read_have``): stack (inbox rdma-core or MLNX_OFED), cards (PCI scan + the facts model's
      RDMA devices), current files (/etc/modprobe.d, /etc/modules-load.d, openib.conf), module state
      (/sys/module) and whether modprobe can find each module (``modprobe --dry-run``, read-only).
plan  (``plan_kernel_modules``): pure; every refusal decided here.
apply (``apply_kernel_modules``): the only writer (Host.write_file, modprobe argv).

Stack detection, strongest evidence first: ``ofed_info -s`` (MLNX_OFED only), the ``version`` file
of mlx4_core/mlx5_core/ib_core in /sys/module (MLNX_OFED modules carry a release like
``5.8-1.0.1``; inbox modules an old ``4.0-0``/``5.0-0`` or none).
"""

from __future__ import annotations

import os
import re

from ansible_collections.hpcnet.infiniband.plugins.module_utils import _ids
from ansible_collections.hpcnet.infiniband.plugins.module_utils import _modprobe as mp
from ansible_collections.hpcnet.infiniband.plugins.module_utils._host import HostError, valid_pci_address, valid_rdma_device
from ansible_collections.hpcnet.infiniband.plugins.module_utils._plan import Plan

try:  # the facts model gives RDMA devices with ports and link layers (contracts §4)
    from ansible_collections.hpcnet.infiniband.plugins.module_utils._facts import read_device
except ImportError:  # pragma: no cover - only while the facts model is not there
    read_device = None

__all__ = [
    "IB_MODULES",
    "HCA_MODULES",
    "host_module_names",
    "OPENIB_CONF",
    "STACK_MODULES",
    "detect_stack",
    "detect_cards",
    "module_state",
    "parse_openib_conf",
    "set_openib_values",
    "openib_value",
    "read_have",
    "plan_kernel_modules",
    "apply_kernel_modules",
]

OPENIB_CONF = "/etc/infiniband/openib.conf"
# Modules whose version/state tell the stack and that ib_ofed_info reports.
STACK_MODULES = (
    "ib_core", "ib_uverbs", "ib_umad", "ib_cm", "rdma_cm", "rdma_ucm", "ib_ipoib",
    "mlx4_core", "mlx4_ib", "mlx4_en", "mlx5_core", "mlx5_ib", "ib_qib", "eth_ipoib",
)
# The collection's list of RDMA/InfiniBand kernel modules: a name outside it must be known to the host
# (loaded, built in, in modules.dep/modules.builtin, or found by modprobe) or listed in allow_unknown,
# so that a misspelt name is refused instead of being persisted.
IB_MODULES = frozenset(STACK_MODULES + (
    "ib_mad", "ib_sa", "ib_addr", "iw_cm", "ib_ucm", "rdma_rxe", "siw", "ib_srp", "ib_srpt", "ib_iser",
    "ib_isert", "rpcrdma", "svcrdma", "xprtrdma", "nvme_rdma", "nvmet_rdma", "smc", "rds_rdma", "mlx_compat",
    "mlx5_vdpa", "mlxfw", "mlxdevm", "hfi1", "ib_mthca", "ib_qib", "irdma", "i40iw", "bnxt_re", "qedr", "efa",
    "erdma", "mana_ib", "ocrdma", "vmw_pvrdma", "usnic_verbs", "iw_cxgb4", "iw_cxgb3", "hns_roce_hw_v2", "knem",
    "ib_sdp", "mlx4_vnic", "mlx5_fpga_tools", "ib_ipath", "ib_ehca", "nes",
))
# Card family -> the RDMA (verbs) module of its driver (option hca_modules).
HCA_MODULES = {"mlx4": "mlx4_ib", "mlx5": "mlx5_ib"}
_RELEASE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+\-]{0,63}$")
_MODULE_FILE_RE = re.compile(r"^(?:.*/)?([A-Za-z0-9_\-]+)\.ko(?:\.[a-z0-9]+)?:?$")
_MLNX_VERSION_RE = re.compile(r"^\d+\.\d+-\d+\.\d+\.\d+")
_OFED_INFO_RE = re.compile(r"MLNX_OFED_LINUX-([0-9][0-9A-Za-z.\-]*?)\s*:?\s*$")
_OPENIB_KEY_RE = re.compile(r"^[A-Z][A-Z0-9_]*$")
_OPENIB_VALUE_RE = re.compile(r"^[A-Za-z0-9_.,:/+\-]*$")
_OPENIB_LINE_RE = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*?)\s*$")
MELLANOX = 0x15B3


# ---------------------------------------------------------------------- stack
def detect_stack(host, run_commands=True):
    """``{"stack": "inbox"|"mlnx_ofed", "ofed_version", "module_versions", "evidence": [...]}``."""
    evidence = []
    ofed_version = None
    if run_commands and host.has_commands():
        try:
            rc, out, _err = host.run(["ofed_info", "-s"], timeout=20)
        except HostError:
            rc, out = 127, ""
        if rc == 0:
            match = _OFED_INFO_RE.search((out or "").strip().splitlines()[0] if (out or "").strip() else "")
            if match:
                ofed_version = match.group(1)
                evidence.append("ofed_info -s: MLNX_OFED_LINUX-%s" % ofed_version)
    module_versions = {}
    for module in ("mlx4_core", "mlx5_core", "ib_core", "ib_ipoib"):
        version = host.read("module/%s/version" % module)
        if version:
            module_versions[module] = version
            if _MLNX_VERSION_RE.match(version):
                evidence.append("/sys/module/%s/version: %s (MLNX_OFED release)" % (module, version))
    mlnx = ofed_version is not None or any(_MLNX_VERSION_RE.match(v) for v in module_versions.values())
    if not mlnx:
        evidence.append("no ofed_info, no MLNX_OFED module version: inbox kernel drivers with rdma-core")
    return {
        "stack": "mlnx_ofed" if mlnx else "inbox",
        "ofed_version": ofed_version,
        "module_versions": module_versions,
        "evidence": evidence,
    }


# ---------------------------------------------------------------------- cards
def _int_id(text):
    return _ids.normalize_id(text)


def detect_cards(host):
    """Physical RDMA functions: PCI scan (works before the driver is loaded) + RDMA devices.

    Each card: ``pci_address, vendor_id, device_id`` (ints), ``model, family, driver, ports``
    (int or None), ``link_layers`` ({"1": "InfiniBand"}), ``rdma_devices``, ``sriov_totalvfs``.
    """
    cards = {}
    for address in host.listdir("bus/pci/devices"):
        if not valid_pci_address(address):
            continue
        base = "bus/pci/devices/%s" % address
        if host.exists(base + "/physfn"):  # a VF: checked first, one lookup instead of two reads
            continue
        vendor = _int_id(host.read(base + "/vendor"))
        device = _int_id(host.read(base + "/device"))
        known = _ids.lookup(vendor, device)
        if known is None or known["vf"]:
            continue
        cards[address] = _card(host, base, address, vendor, device, known)
    for ibdev in host.listdir("class/infiniband"):
        # A VF's RDMA device is never a card (below, as in the PCI scan): not read at all, so that
        # hundreds of VFs cost one existence check each.
        if not valid_rdma_device(ibdev) or host.exists("class/infiniband/%s/device/physfn" % ibdev):
            continue
        info = read_device(host, ibdev, pkeys=False) if read_device else None  # no P_Key table: link layers only
        if not info:
            continue
        address = info.get("pci_address")
        if not address or not valid_pci_address(address):
            continue
        if address not in cards:
            vendor = _int_id(info.get("vendor_id"))
            device = _int_id(info.get("device_id"))
            known = _ids.lookup(vendor, device)
            if known is None or known["vf"]:
                continue
            cards[address] = _card(host, "bus/pci/devices/%s" % address, address, vendor, device, known)
        card = cards[address]
        card["rdma_devices"].append(ibdev)
        ports = info.get("ports") or {}
        if ports:
            card["ports"] = max(card["ports"] or 0, len(ports))
            for number, port in ports.items():
                if port.get("link_layer"):
                    card["link_layers"][str(number)] = port["link_layer"]
        if not card["driver"] and info.get("driver"):
            card["driver"] = info["driver"]
    return [cards[address] for address in sorted(cards)]


def _card(host, base, address, vendor, device, known):
    ports = None
    if known["family"] == "mlx4":
        # mlx4_core creates mlx4_port<N> (ib/eth/auto) for every port of the card it drives.
        count = len([name for name in host.listdir(base) if re.match(r"^mlx4_port\d$", name)])
        ports = count or None
    return {
        "pci_address": address,
        "vendor_id": vendor,
        "device_id": device,
        "model": known["model"],
        "family": known["family"],
        "driver": host.readlink_name(base + "/driver"),
        "ports": ports,
        "link_layers": {},
        "rdma_devices": [],
        "sriov_totalvfs": host.read_int(base + "/sriov_totalvfs", 10),
    }


def public_card(card):
    """A card as returned to the operator (hex IDs like the facts)."""
    result = dict(card)
    result["vendor_id"] = "0x%04x" % card["vendor_id"] if card.get("vendor_id") is not None else None
    result["device_id"] = "0x%04x" % card["device_id"] if card.get("device_id") is not None else None
    vf_limit, source = mp.card_vf_limit(card) if card.get("family") == "mlx4" else (card.get("sriov_totalvfs"), None)
    result["vf_limit"] = vf_limit
    result["vf_limit_source"] = source or ("firmware sriov_totalvfs" if vf_limit is not None else None)
    return result


# ---------------------------------------------------------------------- /sys/module
def module_state(host, module):
    """``loaded`` (initstate live), ``builtin`` (in the kernel image), ``loading``/... or ``absent``."""
    if not mp.valid_module_name(module) or not host.isdir("module/%s" % module):
        return "absent"
    initstate = host.read("module/%s/initstate" % module)
    if initstate is None:
        return "builtin"
    return "loaded" if initstate == "live" else initstate


def module_parameters(host, module, names):
    values = {}
    for name in names:
        value = host.read("module/%s/parameters/%s" % (module, name))
        if value is not None:
            values[name] = value
    return values


def modprobe_available(host, module):
    """(available, reason): can modprobe find ``module``? Asked with --dry-run (changes nothing)."""
    if not host.has_commands():
        return False, "commands are not available on this host view"
    try:
        rc, out, err = host.run(["modprobe", "--dry-run", module], timeout=30)
    except HostError as exc:
        return False, str(exc)
    if rc == 0:
        return True, None
    if rc == 127:
        return False, "modprobe is not installed"
    text = (err or out or "").strip().splitlines()
    return False, (text[-1] if text else "modprobe --dry-run %s failed (rc %d)" % (module, rc))


# ---------------------------------------------------------------------- openib.conf
def parse_openib_conf(text):
    """``{KEY: value}`` of the active (uncommented) assignments; the last one wins, as in shell."""
    values = {}
    for line in (text or "").splitlines():
        if line.lstrip().startswith("#"):
            continue
        match = _OPENIB_LINE_RE.match(line)
        if match:
            values[match.group(1)] = match.group(2).strip("\"'")
    return values


def openib_value(value):
    """yes/no for booleans, the text otherwise (None when not representable safely)."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str) and _OPENIB_VALUE_RE.match(value):
        return value
    return None


def set_openib_values(text, settings):
    """New openib.conf text with ``settings`` applied; other lines and comments stay as they are.

    Every active assignment of a key is rewritten (a later duplicate would win when the file is
    sourced); keys not present are appended.
    """
    lines = (text or "").splitlines(True)
    seen = set()
    out = []
    for line in lines:
        match = None if line.lstrip().startswith("#") else _OPENIB_LINE_RE.match(line.rstrip("\n"))
        if match and match.group(1) in settings:
            key = match.group(1)
            seen.add(key)
            out.append("%s=%s\n" % (key, settings[key]))
            continue
        out.append(line)
    if out and not out[-1].endswith("\n"):
        out[-1] += "\n"
    for key in settings:
        if key not in seen:
            out.append("%s=%s\n" % (key, settings[key]))
    return "".join(out)


# ---------------------------------------------------------------------- have
def host_module_names(host):
    """Module names the running kernel has (modules.dep and modules.builtin of ``uname -r``, '-' as
    '_'), or None when they cannot be read (no commands, no /lib/modules for that release)."""
    if not host.has_commands():
        return None
    try:
        rc, out, _err = host.run(["uname", "-r"], timeout=10)
    except HostError:
        return None
    release = (out or "").strip()
    if rc != 0 or not _RELEASE_RE.match(release):
        return None
    names, found = set(), False
    for index in ("modules.dep", "modules.builtin"):
        try:
            text = host.read_file("/lib/modules/%s/%s" % (release, index))
        except HostError:
            text = None
        if text is None:
            continue
        found = True
        for line in text.splitlines():
            match = _MODULE_FILE_RE.match(line.split(" ", 1)[0].strip())
            if match:
                names.add(match.group(1).replace("-", "_"))
    return names if found else None


def read_have(host, want_modules, option_modules, check_availability=True, hca_modules=False):
    """Everything the plan needs to know about the host. ``hca_modules``: add the RDMA module of every
    mlx4/mlx5 card found to ``want_modules`` (reported as ``have["hca_modules"]``)."""
    # One memo of the tree's shape for the whole reading (nothing is written meanwhile): the card scan
    # walks the same PCI and RDMA paths many times, and each step of a walk is a syscall (on the lab's
    # FUSE sysfs a round trip to its daemon).
    with host.cached():
        return _read_have(host, want_modules, option_modules, check_availability, hca_modules)


def _read_have(host, want_modules, option_modules, check_availability, hca_modules):
    stack = detect_stack(host)
    cards = detect_cards(host)
    extra = sorted({HCA_MODULES[c["family"]] for c in cards if c.get("family") in HCA_MODULES}) if hca_modules else []
    want_modules = list(want_modules) + [m for m in extra if m not in want_modules]
    files = {}
    paths = [mp.MODULES_LOAD_FILE, OPENIB_CONF] + [mp.options_file_path(m) for m in option_modules]
    for path in paths:
        files[path] = host.read_file(path)
    other_options = []
    for name in host_listdir_files(host, mp.MODPROBE_D):
        path = "%s/%s" % (mp.MODPROBE_D, name)
        if path in files or not name.endswith(".conf"):
            continue
        try:
            text = host.read_file(path)
        except HostError:
            continue
        for module, option, value in mp.parse_modprobe_conf(text):
            other_options.append({"file": path, "module": module, "option": option, "value": value})
    modules = {}
    for module in sorted(set(want_modules) | set(option_modules)):
        state = module_state(host, module)
        entry = {"state": state}
        if state == "absent" and module in want_modules and check_availability:
            entry["available"], entry["reason"] = modprobe_available(host, module)
        entry["parameters"] = module_parameters(host, module, mp.MODULES.get(module, {}))
        modules[module] = entry
    stack_loaded = any(module_state(host, module) == "loaded" for module in STACK_MODULES)
    # Only a name outside the collection's list, not loaded and not found by modprobe needs the index.
    unsure = [m for m in want_modules if m not in IB_MODULES and modules[m]["state"] == "absent"
              and not modules[m].get("available")]
    return {"stack": stack, "cards": cards, "files": files, "other_options": other_options, "modules": modules,
            "stack_loaded": stack_loaded, "hca_modules": extra,
            "host_modules": host_module_names(host) if unsure else None}


def host_listdir_files(host, directory):
    """Names in an ordinary directory under fs_root (sorted, [] when missing)."""
    try:
        return sorted(os.listdir(host.file_path(directory)))
    except OSError:
        return []


# ---------------------------------------------------------------------- plan
def _module_known(module, have):
    """The collection knows it, or the host does (loaded/built in, found by modprobe, in its index)."""
    if module in IB_MODULES:
        return True
    info = have["modules"].get(module) or {}
    if info.get("state", "absent") != "absent" or info.get("available"):
        return True
    return module in (have.get("host_modules") or ())


def plan_kernel_modules(want, have):
    """Plan for ib_kernel_modules. ``want`` keys: modules, allow_unknown, options, eipoib, openib_conf,
    persist, load, stack (``have["hca_modules"]`` are added to modules). Returns (plan, report) where report holds the per-module view."""
    plan = Plan()
    stack = have["stack"]["stack"]
    report = {"modules": {}, "files": {}}

    if want.get("stack") not in (None, "auto") and want["stack"] != stack:
        plan.refuse(
            "the expected stack is %s but this host runs %s (%s)"
            % (want["stack"], stack, "; ".join(have["stack"]["evidence"])))

    # The cards' RDMA drivers first: systemd-modules-load loads the list in order, the HCA before the
    # upper-layer modules that use it.
    modules = list(have.get("hca_modules") or [])
    allowed = set(mp.normalize_module_name(n) for n in (want.get("allow_unknown") or []) if isinstance(n, str))
    for name in want.get("modules") or []:
        module = mp.normalize_module_name(name)
        if not mp.valid_module_name(module):
            plan.refuse("%r is not a kernel module name" % (name,))
            continue
        if module not in allowed and not _module_known(module, have):
            plan.refuse(
                "kernel module %s is unknown: not an RDMA module this collection knows, not loaded or built in, "
                "%s, and modprobe cannot find it; fix the name, or list it in allow_unknown if it is expected"
                % (module, "not in the kernel's modules.dep/modules.builtin" if have.get("host_modules") is not None
                   else "the kernel's modules.dep could not be read"))
            continue
        if module not in modules:
            modules.append(module)
    eipoib = want.get("eipoib")
    if eipoib and "eth_ipoib" not in modules:
        modules.append("eth_ipoib")

    options, errors = mp.normalize_options(want.get("options"))
    for error in errors:
        plan.refuse(error)
    for error in mp.validate(options, have["cards"], stack, eipoib=bool(eipoib), modules=modules):
        plan.refuse(error)

    openib_settings = {}
    for key, value in (want.get("openib_conf") or {}).items():
        if not isinstance(key, str) or not _OPENIB_KEY_RE.match(key):
            plan.refuse("openib.conf key %r is not a shell variable name in upper case (like IPOIB_LOAD)" % (key,))
            continue
        rendered = openib_value(value)
        if rendered is None:
            plan.refuse("openib.conf %s=%r: use yes/no or a value without spaces, quotes or shell characters"
                        % (key, value))
            continue
        openib_settings[key] = rendered
    openib_before = have["files"].get(OPENIB_CONF)
    if eipoib or (eipoib is not None and openib_before is not None):
        # eipoib: false only switches an existing openib.conf off; it never creates one
        openib_settings["E_IPOIB_LOAD"] = "yes" if eipoib else "no"
    if openib_settings and stack != "mlnx_ofed":
        others = sorted(item for item in openib_settings.items() if item[0] != "E_IPOIB_LOAD")
        if others:
            plan.refuse(
                "%s is read by MLNX_OFED's openibd only; this host runs the %s stack (%s)"
                % (OPENIB_CONF, stack, ", ".join("%s=%s" % item for item in others)))
        # E_IPOIB_LOAD: yes on inbox is refused by the EIPoIB check; no is already true there.
        openib_settings = {}
    if not plan.ok:
        return plan, report

    # modprobe.d options files
    for module, values in sorted(options.items()):
        path = mp.options_file_path(module)
        before = have["files"].get(path)
        after = mp.render_options_file(module, values) if values else None
        report["files"][path] = "absent" if after is None else "present"
        if before == after:
            continue
        if after is None:
            plan.add("remove_file", path, before, None)
        else:
            plan.add("write_file", path, before, after, mode=0o644)
        # for the initramfs check (_modprobe.plan_initramfs), which needs the host
        plan.info.setdefault("options_changed", {})[module] = path
        state = have["modules"].get(module, {}).get("state", "absent")
        running = have["modules"].get(module, {}).get("parameters", {})
        if state == "loaded" and _options_differ(module, values, running):
            if module in mp.CORE_DRIVERS:
                plan.reboot_required = True
            else:
                plan.reload_required = True
        for item in have["other_options"]:
            if item["module"] == module and item["option"] in values:
                plan.warn("%s also sets %s %s=%s; modprobe applies every options line in order and the last "
                          "one wins" % (item["file"], module, item["option"], item["value"]))

    # modules-load.d list
    if want.get("persist", True) and modules:
        before = have["files"].get(mp.MODULES_LOAD_FILE)
        after = mp.render_modules_load(modules)
        report["files"][mp.MODULES_LOAD_FILE] = "present"
        if before != after:
            plan.add("write_file", mp.MODULES_LOAD_FILE, before, after, mode=0o644)

    # openib.conf
    if openib_settings:
        before = openib_before
        after = set_openib_values(before if before is not None else _OPENIB_HEADER, openib_settings)
        report["files"][OPENIB_CONF] = "present"
        if before != after:
            plan.add("write_file", OPENIB_CONF, before, after, mode=0o644)
            if any(info.get("state") == "loaded" for info in have["modules"].values()) or have.get("stack_loaded"):
                # openibd reads the file when it (re)starts the stack: only a running stack needs it
                plan.reload_required = True

    # loading
    for module in modules:
        info = have["modules"].get(module, {"state": "absent"})
        entry = {"state_before": info["state"], "persistent": bool(want.get("persist", True))}
        if module in options:
            entry["options"] = {name: mp.render_value(value) for name, value in options[module].items()}
        if info["state"] in ("loaded", "builtin"):
            entry["status"] = "already_loaded"
        elif not want.get("load", True):
            entry["status"] = "not_loaded"
            entry["reason"] = "load is false"
        elif info.get("available"):
            entry["status"] = "loaded"  # becomes would_load in check mode
            plan.add("load_module", module, "absent", "loaded")
        else:
            entry["status"] = "skipped_not_available"
            entry["reason"] = info.get("reason") or "modprobe cannot find the module"
            plan.warn("kernel module %s was not loaded: %s (it is persisted and loads at boot when available)"
                      % (module, entry["reason"]))
        report["modules"][module] = entry
    for module in options:
        if module not in report["modules"]:
            info = have["modules"].get(module, {"state": "absent"})
            report["modules"][module] = {
                "state_before": info["state"],
                "status": "options_only",
                "options": {name: mp.render_value(value) for name, value in options[module].items()},
            }
    return plan, report


_OPENIB_HEADER = "# Written by hpcnet.infiniband: openibd start-up settings of MLNX_OFED.\n"


def _options_differ(module, values, running):
    for name, value in values.items():
        matches = mp.running_value_matches(mp.MODULES[module][name], value, running.get(name))
        if matches is not True:
            return True
    return False


# ---------------------------------------------------------------------- apply
def apply_kernel_modules(host, plan, report, check_mode=False):
    """Write files, then load modules (argv only). Returns result additions; raises HostError."""
    done = []
    for change in plan.changes:
        if change.action == "write_file":
            host.write_file(change.target, change.after, mode=change.detail.get("mode", 0o644))
            done.append(change.target)
        elif change.action == "remove_file":
            host.remove_file(change.target)
            done.append(change.target)
    failures = []
    for change in plan.changes:
        if change.action != "load_module":
            continue
        rc, out, err = host.run(["modprobe", change.target], timeout=120)
        entry = report["modules"][change.target]
        if rc == 0 and module_state(host, change.target) in ("loaded", "builtin", "coming"):
            entry["status"] = "loaded"
        elif rc == 0:
            entry["status"] = "failed"
            entry["reason"] = "modprobe returned 0 but /sys/module/%s does not show it" % change.target
            failures.append(change.target)
        else:
            entry["status"] = "failed"
            entry["reason"] = (err or out or "").strip() or "modprobe rc %d" % rc
            failures.append(change.target)
    return {"written": done, "failures": failures}


def check_mode_report(report, plan):
    for change in plan.changes:
        if change.action == "load_module":
            report["modules"][change.target]["status"] = "would_load"
    return report


# ---------------------------------------------------------------------- read-only report
# Packages of either stack: inbox (Debian and RHEL names) and MLNX_OFED's.
STACK_PACKAGES = (
    "rdma-core", "ibverbs-providers", "ibverbs-utils", "libibverbs-utils", "libibverbs1", "infiniband-diags",
    "opensm", "mlnx-ofed-kernel-utils", "mlnx-ofed-kernel", "mlnx-ofed-kernel-dkms", "mlnx-ofed-basic",
    "mlnx-ofed-all", "kmod-mlnx-ofed-kernel", "ofed-scripts",
)


def installed_packages(host):
    """``{package: version}`` of STACK_PACKAGES through dpkg-query or rpm (argv, read-only)."""
    if not host.has_commands():
        return {}
    found = {}
    try:
        rc, out, _err = host.run(
            ["dpkg-query", "-W", "-f", "${Package} ${Version} ${db:Status-Abbrev}\n"] + list(STACK_PACKAGES),
            timeout=30)
    except HostError:
        rc, out = 127, ""
    if rc != 127:
        for line in (out or "").splitlines():
            words = line.split()
            if len(words) >= 3 and words[2].startswith("ii"):
                found[words[0]] = words[1]
        return found
    try:
        rc, out, _err = host.run(["rpm", "-q", "--qf", "%{NAME} %{VERSION}-%{RELEASE}\n"] + list(STACK_PACKAGES),
                                 timeout=30)
    except HostError:
        return found
    for line in (out or "").splitlines():
        words = line.split()
        if len(words) == 2 and "not installed" not in line:
            found[words[0]] = words[1]
    return found


def gather_info(host, packages=True):
    stack = detect_stack(host)
    modules = {}
    loaded = []
    for module in STACK_MODULES:
        state = module_state(host, module)
        entry = {"state": state, "version": host.read("module/%s/version" % module) if state != "absent" else None}
        entry["parameters"] = module_parameters(host, module, mp.MODULES.get(module, {})) if state != "absent" else {}
        modules[module] = entry
        if state in ("loaded", "builtin"):
            loaded.append(module)
    try:
        openib_text = host.read_file(OPENIB_CONF)
    except HostError:
        openib_text = None
    return {
        "stack": stack,
        "cards": [public_card(card) for card in detect_cards(host)],
        "modules": modules,
        "loaded_modules": loaded,
        "packages": installed_packages(host) if packages else {},
        "openib_conf": parse_openib_conf(openib_text) if openib_text is not None else None,
    }
