# -*- coding: utf-8 -*-
# Copyright: hpcnet.infiniband contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Adapter firmware configuration of Mellanox/NVIDIA cards through ``mstconfig`` (mstflint) or ``mlxconfig`` (MFT).

The one parser of the tools' query output (``_sriov`` reads the firmware through ``parse_query`` too).
Firmware settings live in the card's non-volatile configuration: ``set`` changes the *Next Boot* value,
which becomes *Current* at the next boot or firmware reset (``mstfwreset``). So:

- have: ``query`` -> ``{"device_type", "name", "description", "device", "settings": {NAME: {"default",
  "current", "next_boot", "modified", "read_only"}}}``; each value ``{"text": "True(1)", "value": 1}``.
- plan (pure): the wanted SRIOV_EN / NUM_OF_VFS / LINK_TYPE_P1 / LINK_TYPE_P2, checked against the card
  (Mellanox/NVIDIA PCI vendor 0x15b3, a physical function, the key present in its query, the value in its
  range, NUM_OF_VFS within the card's maximum and with SR-IOV enabled) before anything is written; one
  change per key whose Next Boot value differs.
- apply: one ``set`` of every changed key, then a query to prove Next Boot holds the wanted values.
- reboot: required when a change was made, or when a wanted key's Current value still differs from its
  Next Boot value (an earlier change waits for the next boot); the reason names each key.
"""

from __future__ import annotations

import re

from ansible_collections.hpcnet.infiniband.plugins.module_utils import _ids
from ansible_collections.hpcnet.infiniband.plugins.module_utils._host import HostError, valid_ifname, valid_pci_address, \
    valid_rdma_device
from ansible_collections.hpcnet.infiniband.plugins.module_utils._plan import Plan

TOOLS = ("mstconfig", "mlxconfig")
KEYS = ("SRIOV_EN", "NUM_OF_VFS", "LINK_TYPE_P1", "LINK_TYPE_P2")
LINK_TYPES = {"IB": 1, "ETH": 2, "VPI": 3}
LINK_TYPE_NAMES = {1: "IB", 2: "ETH", 3: "VPI"}
# Most VFs the firmware of each family accepts (NUM_OF_VFS); ConnectX-3's mlx4 driver takes up to 126 (63
# per port with an InfiniBand port), ConnectX-4 onwards 127 per PF (further limited by the BAR size).
MAX_VFS = {"ConnectX3": 126, "ConnectX3Pro": 126}
DEFAULT_MAX_VFS = 127
# ConnectX-3 (mlx4) ports may be VPI (3: the driver chooses); ConnectX-4 onwards IB or ETH only.
VPI_FAMILIES = ("ConnectX3", "ConnectX3Pro")
QUERY_TIMEOUT = 120

_VALUE_RE = re.compile(r"^(?P<label>[^()]*)\((?P<number>-?\d+)\)$")
_NAME_RE = re.compile(r"^[A-Z][A-Z0-9_]*(?:\[\d+\])?$")


class FirmwareError(Exception):
    pass


# --------------------------------------------------------------------------- parsing
def parse_value(text):
    """``True(1)`` -> {"text", "value": 1, "label": "True"}; ``16`` -> value 16; ``IB`` -> label IB;
    ``N/A`` and ``Array[0..7]`` -> value None."""
    text = str(text).strip()
    match = _VALUE_RE.match(text)
    if match:
        return {"text": text, "value": int(match.group("number")), "label": match.group("label") or None}
    if re.match(r"^-?\d+$", text):
        return {"text": text, "value": int(text), "label": None}
    label = text if text not in ("N/A", "") and not text.startswith("Array[") else None
    value = LINK_TYPES.get(label.upper()) if label and label.upper() in LINK_TYPES else None
    return {"text": text, "value": value, "label": label}


def parse_query(text):
    """``mstconfig [-e] -d <dev> q`` output -> {"device_type", "name", "description", "device", "columns",
    "settings": {NAME: {"next_boot": value, "current": value, "default": value, "modified", "read_only"}}}.

    Both layouts: ``Next Boot`` only (no ``-e`` or old firmware) and ``Default  Current  Next Boot``; values are
    mapped from the right (Next Boot is always the last column). ``*`` marks a Next Boot that differs, ``RO`` a
    read-only parameter (newer mstflint prints them glued: ``*RO``)."""
    result = {"device_type": None, "name": None, "description": None, "device": None, "columns": None,
              "settings": {}}
    heads = {"Device type:": "device_type", "Name:": "name", "Description:": "description", "Device:": "device"}
    for raw in (text or "").splitlines():
        line = raw.strip()
        if not line:
            continue
        head = next((h for h in heads if line.startswith(h)), None)
        if head and result["columns"] is None:
            value = line[len(head):].strip()
            result[heads[head]] = value if value and value != "N/A" else None
            continue
        if line.startswith("Configurations:"):
            header = line[len("Configurations:"):].strip()
            columns = [c.strip().lower().replace(" ", "_") for c in re.split(r"\s{2,}", header) if c.strip()]
            result["columns"] = [c for c in columns if c in ("default", "current", "next_boot")] or ["next_boot"]
            continue
        if result["columns"] is None:
            continue
        parts = line.split()
        flags = ""
        while parts and re.match(r"^\*?(RO)?$", parts[0]) and parts[0]:
            flags += parts.pop(0)
        if parts and parts[0].startswith("*") and _NAME_RE.match(parts[0][1:]):
            flags += "*"
            parts[0] = parts[0][1:]
        if len(parts) < 2 or not _NAME_RE.match(parts[0]):
            continue
        name, values = parts[0], parts[1:]
        if len(values) > len(result["columns"]):
            continue  # not a settings row (a message line)
        entry = {"modified": "*" in flags, "read_only": "RO" in flags}
        for column, value in zip(result["columns"][-len(values):], values):
            entry[column] = parse_value(value)
        result["settings"][name] = entry
    return result


# --------------------------------------------------------------------------- have
def resolve_pci(host, device):
    """PCI address of ``device`` (a PCI address, a netdev or an RDMA device name). Raises FirmwareError."""
    text = str(device or "").strip()
    if valid_pci_address(text):
        if not host.exists("bus/pci/devices/%s" % text):
            raise FirmwareError("PCI device %s not found under %s/bus/pci/devices" % (text, host.sysfs_root))
        return text
    for base, check in (("class/net/%s/device", valid_ifname), ("class/infiniband/%s/device", valid_rdma_device)):
        if check(text) and host.exists(base % text):
            name = host.readlink_name(base % text)
            if name and valid_pci_address(name):
                return name
    raise FirmwareError("device %r is neither a PCI address (0000:5e:00.0) nor a netdev or RDMA device with a "
                        "PCI function on this host" % text)


def read_card(host, pci):
    """Vendor, device id, model and whether it is a VF, from sysfs."""
    base = "bus/pci/devices/%s" % pci
    vendor, device = host.read(base + "/vendor"), host.read(base + "/device")
    info = _ids.lookup(vendor, device) if vendor and device else {}
    return {"pci_address": pci, "vendor_id": vendor, "device_id": device, "model": (info or {}).get("model"),
            "vf": bool((info or {}).get("vf")) or host.exists(base + "/physfn")}


def query(host, tool, pci, timeout=QUERY_TIMEOUT):
    """Run the tool's query (all parameters, with Default/Current columns) and parse it."""
    rc, out, err = host.run([tool, "-e", "-d", pci, "q"], timeout)
    if rc != 0:
        message = " ".join((err or out or "").split())[:400] or "exit code %d" % rc
        raise FirmwareError("%s -d %s q failed: %s" % (tool, pci, message))
    parsed = parse_query(out)
    if not parsed["settings"]:
        raise FirmwareError("%s -d %s q printed no configuration (is it a Mellanox/NVIDIA card?)" % (tool, pci))
    return parsed


def read_have(host, tool, device, timeout=QUERY_TIMEOUT):
    """{"card": read_card, "firmware": parse_query or None (not queried: not a Mellanox PF)}."""
    pci = resolve_pci(host, device)
    card = read_card(host, pci)
    have = {"card": card, "firmware": None, "tool": tool}
    if _ids.normalize_id(card["vendor_id"]) == _ids.VENDOR_MELLANOX and not card["vf"] and tool:
        have["firmware"] = query(host, tool, pci, timeout)
    return have


# --------------------------------------------------------------------------- plan
def _want_value(key, value, family):
    """(number, None) or (None, refusal) for a wanted value."""
    if key == "SRIOV_EN":
        text = str(value).strip().lower()
        table = {"true": 1, "false": 0, "1": 1, "0": 0, "yes": 1, "no": 0, "on": 1, "off": 0}
        if isinstance(value, bool) or text in table:
            return (int(value) if isinstance(value, bool) else table[text]), None
        return None, "SRIOV_EN=%r is not a boolean (true/false, 1/0)" % (value,)
    if key == "NUM_OF_VFS":
        if isinstance(value, bool) or not re.match(r"^\d+$", str(value).strip()):
            return None, "NUM_OF_VFS=%r is not a number of VFs (0 or more)" % (value,)
        return int(str(value).strip()), None
    text = str(value).strip().upper()
    allowed = dict(LINK_TYPES) if family in VPI_FAMILIES else {k: v for k, v in LINK_TYPES.items() if k != "VPI"}
    if text in allowed:
        return allowed[text], None
    if text.isdigit() and int(text) in allowed.values():
        return int(text), None
    return None, "%s=%r is not a port type of this card (%s)" % (
        key, value, ", ".join("%s (%d)" % (k, v) for k, v in sorted(allowed.items(), key=lambda kv: kv[1])))


def _shown(key, number):
    if number is None:
        return "unknown"
    if key == "SRIOV_EN":
        return "%s(%d)" % ("True" if number else "False", number)
    if key.startswith("LINK_TYPE_"):
        return "%s(%d)" % (LINK_TYPE_NAMES.get(number, "?"), number)
    return str(number)


def plan_firmware(have, settings, max_vfs=None):
    """Plan of ``set_firmware`` changes (target = key, before/after = Next Boot values) and the reboot."""
    plan = Plan()
    card, firmware = have["card"], have["firmware"]
    model = card.get("model") or "PCI %s:%s" % (card.get("vendor_id"), card.get("device_id"))
    where = "%s (%s)" % (card["pci_address"], model)
    if _ids.normalize_id(card.get("vendor_id")) != _ids.VENDOR_MELLANOX:
        plan.refuse("%s is not a Mellanox/NVIDIA card (PCI vendor %s, not 0x15b3): its firmware is not "
                    "configured with mstconfig" % (where, card.get("vendor_id")))
        return plan
    if card.get("vf"):
        plan.refuse("%s is a virtual function: firmware settings belong to its physical function" % where)
        return plan
    if firmware is None:
        plan.refuse("%s: neither mstconfig (Debian/EL package mstflint) nor mlxconfig (MFT) is installed"
                    % where)
        return plan
    family = firmware.get("device_type") or ""
    present = firmware["settings"]
    wanted = {}
    order = {key: index for index, key in enumerate(KEYS)}
    for raw_key, value in sorted((settings or {}).items(), key=lambda kv: (order.get(str(kv[0]).upper(), 9), str(kv[0]))):
        key = str(raw_key).strip().upper()
        if key not in KEYS:
            plan.refuse("unknown firmware setting %r: this module sets %s" % (raw_key, ", ".join(KEYS)))
            continue
        if key not in present:
            plan.refuse("%s has no %s (%s firmware): %s cannot be set on this card" % (
                where, key, family or "unknown", key))
            continue
        number, error = _want_value(key, value, family)
        if error:
            plan.refuse("%s: %s" % (where, error))
            continue
        wanted[key] = number
    limit = MAX_VFS.get(family, DEFAULT_MAX_VFS)
    if max_vfs is not None:
        limit = min(limit, max_vfs)
    if wanted.get("NUM_OF_VFS") is not None and wanted["NUM_OF_VFS"] > limit:
        plan.refuse("%s: NUM_OF_VFS=%d is above the card's maximum of %d VFs (%s%s)" % (
            where, wanted["NUM_OF_VFS"], limit, family or "this card", ", max_vfs" if max_vfs is not None else ""))
    sriov_after = wanted.get("SRIOV_EN", _next(present, "SRIOV_EN"))
    if wanted.get("NUM_OF_VFS") and sriov_after == 0:
        plan.refuse("%s: NUM_OF_VFS=%d needs SR-IOV enabled (SRIOV_EN=1): the firmware would expose no VF" % (
            where, wanted["NUM_OF_VFS"]))
    for key, number in wanted.items():
        if present[key].get("read_only"):
            plan.refuse("%s: %s is read-only on this card" % (where, key))
    if not plan.ok:
        return plan
    reasons = []
    for key, number in wanted.items():
        nxt, cur = _next(present, key), _current(present, key)
        if nxt != number:
            plan.add("set_firmware", key, _shown(key, nxt), _shown(key, number), pci=card["pci_address"], value=number)
            reasons.append("%s %s -> %s" % (key, _shown(key, nxt), _shown(key, number)))
        elif cur is not None and cur != number:
            reasons.append("%s is %s now and %s after the next boot (set earlier)" % (
                key, _shown(key, cur), _shown(key, number)))
    if reasons:
        plan.reboot_required = True
        plan.info["reboot_reason"] = ("%s: firmware settings take effect at the next boot or firmware reset "
                                      "(mstfwreset -d %s reset): %s" % (where, card["pci_address"], "; ".join(reasons)))
    plan.info["wanted"] = wanted
    return plan


def _next(present, key):
    return ((present.get(key) or {}).get("next_boot") or {}).get("value")


def _current(present, key):
    return ((present.get(key) or {}).get("current") or {}).get("value")


# --------------------------------------------------------------------------- apply
def set_argv(tool, pci, plan):
    return [tool, "-y", "-d", pci, "set"] + ["%s=%d" % (c.target, c.detail["value"]) for c in plan.changes]


def apply_firmware(host, tool, pci, plan, timeout=QUERY_TIMEOUT):
    """One ``set`` of every change, then a query proving Next Boot holds them. Raises FirmwareError."""
    argv = set_argv(tool, pci, plan)
    try:
        rc, out, err = host.run(argv, timeout)
    except HostError as exc:
        raise FirmwareError("%s: %s" % (" ".join(argv), exc))
    if rc != 0:
        raise FirmwareError("%s failed (nothing confirmed set): %s" % (
            " ".join(argv), " ".join((err or out or "").split())[:400] or "exit code %d" % rc))
    after = query(host, tool, pci, timeout)
    wrong = [c.target for c in plan.changes if _next(after["settings"], c.target) != c.detail["value"]]
    if wrong:
        raise FirmwareError("%s reported success but Next Boot of %s is not what was set" % (
            " ".join(argv), ", ".join(wrong)))
    return after


def summary(firmware, keys=KEYS):
    """The settings the module reports: {KEY: {"default", "current", "next_boot"} (texts)}."""
    out = {}
    for key in keys:
        entry = (firmware or {}).get("settings", {}).get(key)
        if entry:
            out[key] = {column: (entry.get(column) or {}).get("text") for column in ("default", "current", "next_boot")}
    return out
