"""The lab's stand-in for mstflint's `mstconfig`: adapter firmware settings with next-boot semantics.

Inside a node it is /usr/local/sbin/mstconfig (ahead of the real one on the node's PATH, as the
infiniband-diags wrappers are), a copy of this file run by the node's python3 (stdlib only). It answers

    mstconfig [-e] [-y] -d <pci> q|query [NAME...]
    mstconfig [-y] -d <pci> s|set NAME=VALUE...

in mstflint 4.2x's output format (Device #1 block; Configurations with Default/Current/Next Boot columns
under -e, Next Boot only without; `*` before a setting whose Next Boot differs) from the node's firmware
state file /etc/hpcnet-lab/mstconfig.json (override: $HPCNET_MSTCONFIG_STATE). `set` changes Next Boot
only. The profiles' `firmware:` sections (lab/profiles/cx5-*.yml, cx3-*.yml, per PCI function) give the
card's identity, its settings (the Current values at the first boot) and limits.

At a node's (re)boot - when the node's FUSE sysfs starts from its profile - `boot()` makes Next Boot
Current and returns the profile as that firmware shows it: SRIOV_EN/NUM_OF_VFS drive the PCI function's
SR-IOV capability (`sriov_totalvfs`; no SR-IOV files at all with SRIOV_EN=0), LINK_TYPE_P1/P2 the ports'
`link_layer` (IB -> InfiniBand, ETH -> Ethernet). The hooks (hw.node, hw.fusefs) call `install()` and
`boot()`; see docs/firmware.md.
"""
import copy
import json
import os
import re
import sys
import tempfile

STATE_IN_NODE = "/etc/hpcnet-lab/mstconfig.json"
SHIM_IN_NODE = "/usr/local/sbin/mstconfig"
KINDS = {"SRIOV_EN": "bool", "NUM_OF_VFS": "int", "LINK_TYPE_P1": "link", "LINK_TYPE_P2": "link"}
LINK_NAMES = {1: "IB", 2: "ETH", 3: "VPI"}
LINK_LAYERS = {1: "InfiniBand", 2: "Ethernet"}
NAME_W, VALUE_W = 56, 20       # mstflint's CONFIG_TABLE_NAME_WIDTH / CONFIG_TABLE_VALUE_WIDTH
EXIT_ERR = 3                   # what mstconfig returns on errors (MLX_CFG_ERROR_EXIT)


class ShimError(Exception):
    pass


# ------------------------------------------------------------------ state
def initial_state(profile):
    """{"devices": {pci: {...}}} from the firmware sections of a (resolved) profile."""
    devices = {}
    for pci in profile.get("pci_devices") or []:
        fw = pci.get("firmware")
        if not fw:
            continue
        params = {}
        for name, value in (fw.get("settings") or {}).items():
            default = (fw.get("defaults") or {}).get(name, value)
            params[name] = {"default": int(default), "current": int(value), "next": int(value)}
        devices[pci["address"]] = {"device_type": fw["device_type"], "name": fw.get("name", "N/A"),
                                   "description": fw.get("description", "N/A"), "max_vfs": int(fw.get("max_vfs", 127)),
                                   "link_types": fw.get("link_types", [1, 2]), "params": params}
    return {"version": 1, "devices": devices}


def load(path):
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


def save(path, state):
    directory = os.path.dirname(path)
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".mstconfig-", dir=directory)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(state, fh, indent=1, sort_keys=True)
        fh.write("\n")
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


# ------------------------------------------------------------------ output (mstflint's mlxcfg_ui.cpp layout)
def _text(name, number):
    kind = KINDS.get(name, "int")
    if kind == "bool":
        return f"{'True' if number else 'False'}({number})"
    if kind == "link":
        return f"{LINK_NAMES.get(number, 'N/A')}({number})"
    return str(number)


def _opening(dev, pci):
    return ["", "Device #1:", "----------", "",
            f"{'Device type:':<20}{dev['device_type']:<20}", f"{'Name:':<20}{dev['name']:<20}",
            f"{'Description:':<20}{dev['description']:<20}", f"{'Device:':<20}{pci:<20}", ""]


def query_text(dev, pci, names=None, verbose=False):
    lines = _opening(dev, pci)
    header = f"{'Configurations:':<{NAME_W}}"
    header += (f"{'Default':<{VALUE_W}} {'Current':<{VALUE_W}} " if verbose else "") + f"{'Next Boot':<{VALUE_W}}"
    lines.append(header)
    differ = False
    for name in names or sorted(dev["params"], key=_order):
        param = dev["params"][name]
        star = verbose and (param["next"] != param["default"] or param["next"] != param["current"])
        differ |= star
        row = f"{'*' if star else ' '}       {name:<48}"
        cols = [param["default"], param["current"], param["next"]] if verbose else [param["next"]]
        row += " ".join(f"{_text(name, v):<{VALUE_W}}" for v in cols)
        lines.append(row)
    if differ:
        lines.append("The '*' shows parameters with next value different from default/current value.")
    return "\n".join(lines) + "\n"


def _order(name):
    # mstflint prints TLV order: the SR-IOV block before the port types.
    return (["NUM_OF_VFS", "SRIOV_EN", "LINK_TYPE_P1", "LINK_TYPE_P2"] + [name]).index(name), name


def _parse_value(name, text, dev):
    kind = KINDS.get(name)
    raw = text.strip()
    upper = raw.upper()
    if kind == "bool" and upper in ("TRUE", "FALSE"):
        return 1 if upper == "TRUE" else 0
    if kind == "link" and upper in ("IB", "ETH", "VPI"):
        upper = str({"IB": 1, "ETH": 2, "VPI": 3}[upper])
    if not re.fullmatch(r"\d+", upper):
        raise ShimError(f"-E- Failed to set configuration: Unknown value {raw} for parameter {name}")
    number = int(upper)
    if (kind == "bool" and number not in (0, 1)) or (kind == "link" and number not in dev["link_types"]) or \
            (name == "NUM_OF_VFS" and number > dev["max_vfs"]):
        raise ShimError(f"-E- Failed to set configuration: The Parameter {name} value {number} is out of range")
    return number


def run(argv, state_path):
    """(rc, stdout, stderr) of one mstconfig command line (argv without the program name)."""
    args = list(argv)
    verbose = yes = False
    dev_name = None
    while args and args[0].startswith("-"):
        opt = args.pop(0)
        if opt in ("-e", "--enable_verbosity"):
            verbose = True
        elif opt in ("-y", "--yes"):
            yes = True
        elif opt in ("-d", "--dev") and args:
            dev_name = args.pop(0)
        elif opt in ("-h", "--help"):
            return 0, "    NAME:\n        mstconfig (hpcnet lab stand-in)\n", ""
        elif opt in ("-v", "--version"):
            return 0, "mstconfig, mstflint 4.21.0 (hpcnet lab stand-in)\n", ""
        else:
            return EXIT_ERR, "", f"-E- Unknown option: {opt}\n"
    if not args:
        return EXIT_ERR, "", "-E- No command found. For more information please read the help message:\n"
    command, rest = args[0], args[1:]
    try:
        state = load(state_path)
    except (OSError, ValueError):
        state = {"devices": {}}
    dev = (state.get("devices") or {}).get(dev_name or "")
    if dev is None:
        return EXIT_ERR, "", f"-E- Failed to open the device: {dev_name}\n-E- Failed to open device: {dev_name}, " \
                             "No such file or directory\n"
    if command in ("q", "query"):
        unknown = [n for n in rest if n not in dev["params"]]
        if unknown:
            return EXIT_ERR, "", f"-E- Unknown Parameter: {unknown[0]}\n"
        return 0, query_text(dev, dev_name, rest or None, verbose), ""
    if command in ("s", "set"):
        if not rest:
            return EXIT_ERR, "", "-E- missing configuration\n"
        wanted = {}
        try:
            for item in rest:
                name, sep, value = item.partition("=")
                if not sep or name not in dev["params"]:
                    raise ShimError(f"-E- Unknown Parameter: {name}")
                wanted[name] = _parse_value(name, value, dev)
        except ShimError as exc:
            return EXIT_ERR, "", f"{exc}\n"
        lines = _opening(dev, dev_name)
        lines.append(f"{'Configurations:':<{NAME_W}}{'Next Boot':<{VALUE_W}} {'New':<{VALUE_W}}")
        for name, number in wanted.items():
            lines.append(f"        {name:<48}{_text(name, dev['params'][name]['next']):<{VALUE_W}} "
                         f"{_text(name, number):<{VALUE_W}}")
        if not yes:
            lines += ["", " Apply new Configuration? (y/n) [n] : N", "Aborted by user"]
            return EXIT_ERR, "\n".join(lines) + "\n", ""
        for name, number in wanted.items():
            dev["params"][name]["next"] = number
        save(state_path, state)
        lines += ["", " Apply new Configuration? (y/n) [n] : y", "Applying... Done!",
                  "-I- Please reboot machine to load new configurations."]
        return 0, "\n".join(lines) + "\n", ""
    return EXIT_ERR, "", f"-E- Unknown command: {command}\n"


# ------------------------------------------------------------------ node hooks
def install(root, profile):
    """hw.node setup: put this stand-in on the node's PATH and, unless it is there (a reboot keeps the card's
    firmware), the initial firmware state from the (resolved) profile. Returns the state path on the host."""
    state_path = os.path.join(root, STATE_IN_NODE.lstrip("/"))
    shim = os.path.join(root, SHIM_IN_NODE.lstrip("/"))
    if not initial_state(profile)["devices"]:
        for path in (shim,):
            if os.path.exists(path):
                os.unlink(path)
        return None
    with open(os.path.abspath(__file__), encoding="utf-8") as fh:
        # The node's python3 runs the copy (this source file is a module: no shebang of its own).
        text = "#!/usr/bin/python3\n" + fh.read()
    os.makedirs(os.path.dirname(shim), exist_ok=True)
    with open(shim + ".tmp", "w", encoding="utf-8") as fh:
        fh.write(text)
    os.chmod(shim + ".tmp", 0o755)
    os.replace(shim + ".tmp", shim)
    if not os.path.exists(state_path):
        save(state_path, initial_state(profile))
    return state_path


def boot(profile, state_path):
    """A node (re)boots: Next Boot becomes Current in the state file; returns a copy of the (unresolved or
    resolved) profile as the firmware now shows it. Without a state file the profile is returned as is."""
    try:
        state = load(state_path)
    except (OSError, ValueError):
        return profile
    prof = copy.deepcopy(profile)
    for dev in (state.get("devices") or {}).values():
        for param in dev["params"].values():
            param["current"] = param["next"]
    save(state_path, state)
    for pci in prof.get("pci_devices") or []:
        dev = (state.get("devices") or {}).get(pci["address"])
        if dev is None:
            continue
        params = {name: p["current"] for name, p in dev["params"].items()}
        fw = pci.get("firmware") or {}
        if "SRIOV_EN" in params:
            if params["SRIOV_EN"]:
                sriov = dict(pci.get("sriov") or fw.get("sriov") or {})
                if sriov:
                    sriov["totalvfs"] = int(params.get("NUM_OF_VFS", sriov.get("totalvfs", 0)))
                    pci["sriov"] = sriov
            else:
                pci.pop("sriov", None)   # no SR-IOV capability: the kernel shows no sriov_* files
        for rdma in prof.get("rdma_devices") or []:
            if rdma.get("pci") != pci["address"]:
                continue
            for port in rdma["ports"]:
                link = params.get(f"LINK_TYPE_P{port['port']}")
                if link in LINK_LAYERS:
                    port["link_layer"] = LINK_LAYERS[link]
    return prof


def main(argv=None):
    rc, out, err = run(sys.argv[1:] if argv is None else argv,
                       os.environ.get("HPCNET_MSTCONFIG_STATE") or STATE_IN_NODE)
    sys.stdout.write(out)
    sys.stderr.write(err)
    return rc


if __name__ == "__main__":
    sys.exit(main())
