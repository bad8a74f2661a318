# -*- coding: utf-8 -*-
# Copyright: hpcnet.infiniband contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Typed option model of the kernel modules of the InfiniBand stack, and /etc/modprobe.d files.

What the kernel accepts for each option is known here (types, ranges, array lengths, which stack
ships the option), so that a wrong value is refused before anything is written, with one clear
message, instead of a driver that silently ignores it or fails to probe at the next boot.

Pure functions, except the initramfs probes at the end (``initramfs_modules``, ``initramfs_rebuild``,
``plan_initramfs``, ``initramfs_rebuild_argv``), which read the host through the Host seam. ``_ofed`` gathers the host
view (cards, stack) that ``validate`` checks against.

Sources: the module_param declarations of drivers/net/ethernet/mellanox/mlx4/main.c
(``num_vfs``/``probe_vf`` byte arrays ``port1,port2,port1+2``; ``port_type_array`` int[2], 1 = IB,
2 = Ethernet; ``log_num_mgm_entry_size``), mlx5/core/main.c (``prof_sel``),
drivers/infiniband/ulp/ipoib/ipoib_main.c (queue sizes 2..8192, rounded up to a power of two) and
MLNX_OFED's documented additions (``ipoib_enhanced``, mlx5 ``probe_vf``, ``eth_ipoib``).
"""

from __future__ import annotations

import re

__all__ = [
    "MODULES",
    "CORE_DRIVERS",
    "OptionError",
    "normalize_module_name",
    "valid_module_name",
    "normalize_options",
    "validate",
    "render_options_file",
    "parse_modprobe_conf",
    "render_modules_load",
    "parse_modules_load",
    "options_file_path",
    "MODPROBE_D",
    "MODULES_LOAD_FILE",
    "HEADER",
    "initramfs_list_argv",
    "initramfs_modules",
    "initramfs_rebuild",
    "initramfs_rebuild_argv",
    "plan_initramfs",
]

MODPROBE_D = "/etc/modprobe.d"
MODULES_LOAD_FILE = "/etc/modules-load.d/hpcnet-infiniband.conf"
HEADER = "# Managed by hpcnet.infiniband (ib_kernel_modules): local changes are overwritten.\n"

# mlx4 limits (include/linux/mlx4/device.h)
MLX4_MAX_PORTS = 2
MLX4_MAX_NUM_VF = 126
MLX4_MAX_NUM_VF_P_PORT = 64

# Card limits for VFs when the firmware does not tell us (sriov_totalvfs missing): the documented
# maxima of the ConnectX-3 (16) and ConnectX-3 Pro (128, bounded by the driver's 126).
MLX4_CARD_VF_LIMITS = {0x1003: 16, 0x1007: 128}

# HCA core drivers: reloading them removes every RDMA device, IPoIB and Ethernet netdev of the card,
# and port types / VFs are only read at probe time, so option changes need a reboot (or a
# maintenance window) rather than a quiet reload.
CORE_DRIVERS = ("mlx4_core", "mlx5_core")

_MODULE_NAME_RE = re.compile(r"^[A-Za-z0-9_]{1,56}$")
_PORT_TYPE_NAMES = {"ib": 1, "infiniband": 1, "eth": 2, "ethernet": 2}
_BOOL_TRUE = ("1", "y", "yes", "true", "on")
_BOOL_FALSE = ("0", "n", "no", "false", "off")


class OptionError(ValueError):
    """A value the kernel would not accept (message is for the operator)."""


class Option:
    """One module parameter.

    :param kind: ``int``, ``bool``, ``vf_array`` (mlx4 ``port1,port2,port1+2``) or ``port_types``.
    :param minimum/maximum: inclusive range of an ``int`` (or of each array element).
    :param allowed: explicit set of allowed ints (checked instead of the range when given).
    :param power_of_two: the kernel rounds the value up to a power of two; we ask for one.
    :param stacks: stacks whose module has this parameter (``None``: every stack).
    """

    def __init__(self, kind, minimum=None, maximum=None, allowed=None, power_of_two=False, stacks=None,
                 description=""):
        self.kind = kind
        self.minimum = minimum
        self.maximum = maximum
        self.allowed = allowed
        self.power_of_two = power_of_two
        self.stacks = stacks
        self.description = description


MLNX_ONLY = ("mlnx_ofed",)

MODULES = {
    "mlx4_core": {
        "num_vfs": Option("vf_array", 0, 255, description="VFs: N (dual-port) or port1,port2,port1+2"),
        "probe_vf": Option("vf_array", 0, 255, description="VFs the PF driver probes itself"),
        "port_type_array": Option("port_types", description="per port: 1 = InfiniBand, 2 = Ethernet"),
        "log_num_mgm_entry_size": Option(
            "int", allowed=set(range(-7, 0)) | set(range(7, 13)),
            description="7..12, or -1 (device managed flow steering)"),
        "enable_64b_cqe_eqe": Option("bool"),
        "enable_4k_uar": Option("bool"),
        "log_num_mac": Option("int", 1, 7),
        "log_num_vlan": Option("int", 0, 7),
        "use_prio": Option("bool"),
        "log_mtts_per_seg": Option("int", 1, 7),
        "msi_x": Option("int", 0, 1),
        "debug_level": Option("int", 0, 1 << 30),
        "enable_qos": Option("bool"),
        "internal_err_reset": Option("int", 0, 1),
    },
    "mlx5_core": {
        "prof_sel": Option("int", 0, 2, description="resource profile 0..2"),
        "debug_mask": Option("int", 0, (1 << 31) - 1),
        "probe_vf": Option("bool", stacks=MLNX_ONLY),
    },
    "ib_ipoib": {
        "send_queue_size": Option("int", 2, 8192, power_of_two=True),
        "recv_queue_size": Option("int", 2, 8192, power_of_two=True),
        "debug_level": Option("int", 0, 1 << 30),
        "mcast_debug_level": Option("int", 0, 1 << 30),
        "data_debug_level": Option("int", 0, 1 << 30),
        "max_nonsrq_conn_qp": Option("int", 1, 1 << 16),
        "ipoib_enhanced": Option("bool", stacks=MLNX_ONLY, description="mlx5 enhanced IPoIB (MLNX_OFED)"),
    },
    "mlx4_ib": {"sm_guid_assign": Option("int", 0, 1)},
    "mlx5_ib": {},
    "mlx4_en": {"udp_rss": Option("int", 0, 1), "inline_thold": Option("int", 0, 104)},
    "ib_core": {},
    "ib_uverbs": {},
    "ib_umad": {},
    "ib_cm": {},
    "rdma_cm": {},
    "rdma_ucm": {},
    "ib_qib": {},
    "eth_ipoib": {},
}

# Modules that exist only in one stack (loading them elsewhere cannot work).
MODULE_STACKS = {"eth_ipoib": MLNX_ONLY}


def normalize_module_name(name):
    """Kernel module names treat ``-`` and ``_`` alike; we write ``_``."""
    return name.replace("-", "_") if isinstance(name, str) else name


def valid_module_name(name):
    return isinstance(name, str) and bool(_MODULE_NAME_RE.match(normalize_module_name(name)))


def options_file_path(module):
    return "%s/hpcnet-%s.conf" % (MODPROBE_D, normalize_module_name(module))


# ---------------------------------------------------------------------- value coercion
def _as_int(value, where):
    if isinstance(value, bool):
        raise OptionError("%s: expected an integer, got a boolean (%r)" % (where, value))
    if isinstance(value, int):
        return value
    if isinstance(value, str) and re.match(r"^-?[0-9]+$", value.strip()):
        return int(value.strip())
    raise OptionError("%s: expected an integer, got %r" % (where, value))


def _as_bool(value, where):
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        text = value.strip().lower()
        if text in _BOOL_TRUE:
            return True
        if text in _BOOL_FALSE:
            return False
    raise OptionError("%s: expected a boolean (true/false, 1/0, Y/N), got %r" % (where, value))


def _as_list(value):
    if isinstance(value, str):
        return [part.strip() for part in value.split(",")]
    if isinstance(value, (list, tuple)):
        return list(value)
    return [value]


def _check_range(number, option, where):
    if option.allowed is not None:
        if number not in option.allowed:
            raise OptionError("%s: %d is not allowed (%s)" % (where, number, option.description or sorted(option.allowed)))
        return
    if option.minimum is not None and number < option.minimum:
        raise OptionError("%s: %d is below the minimum %d" % (where, number, option.minimum))
    if option.maximum is not None and number > option.maximum:
        raise OptionError("%s: %d is above the maximum %d" % (where, number, option.maximum))
    if option.power_of_two and number & (number - 1):
        rounded = 1 << (number - 1).bit_length()
        raise OptionError(
            "%s: %d is not a power of two (the kernel would silently use %d); write %d" % (where, number, rounded, rounded))


def coerce(module, name, option, value):
    """Canonical value of one option: int, bool, or tuple of ints. Raises OptionError."""
    where = "%s option %s" % (module, name)
    if value is None:
        raise OptionError("%s: no value given (remove the option to use the driver default)" % where)
    if option.kind == "int":
        number = _as_int(value, where)
        _check_range(number, option, where)
        return number
    if option.kind == "bool":
        return _as_bool(value, where)
    if option.kind == "vf_array":
        items = _as_list(value)
        if not 1 <= len(items) <= 3:
            raise OptionError(
                "%s: expected N (VFs on both ports) or up to three numbers port1,port2,port1+2, got %d values"
                % (where, len(items)))
        numbers = tuple(_as_int(item, where) for item in items)
        for number in numbers:
            _check_range(number, option, where)
        return numbers
    if option.kind == "port_types":
        items = _as_list(value)
        if not 1 <= len(items) <= MLX4_MAX_PORTS:
            raise OptionError(
                "%s: mlx4 cards have 1 or 2 ports, got %d values" % (where, len(items)))
        types = []
        for index, item in enumerate(items, start=1):
            if isinstance(item, str) and item.strip().lower() in _PORT_TYPE_NAMES:
                types.append(_PORT_TYPE_NAMES[item.strip().lower()])
                continue
            try:
                number = _as_int(item, where)
            except OptionError:
                number = None
            if number not in (1, 2):
                raise OptionError(
                    "%s: port %d type %r is not 1 (InfiniBand) or 2 (Ethernet)" % (where, index, item))
            types.append(number)
        return tuple(types)
    raise OptionError("%s: internal error, unknown kind %s" % (where, option.kind))


def render_value(value):
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, tuple):
        return ",".join(str(item) for item in value)
    return str(value)


def normalize_options(requested):
    """``{module: {option: value}}`` from the operator -> (canonical dict, errors list).

    Unknown modules, unknown option names and values of the wrong type are errors; nothing here
    depends on the host.
    """
    errors = []
    canonical = {}
    if requested is None:
        return canonical, errors
    if not isinstance(requested, dict):
        return canonical, ["options must be a mapping of module name to a mapping of option: value"]
    for raw_module, options in requested.items():
        module = normalize_module_name(raw_module)
        if not valid_module_name(module):
            errors.append("%r is not a kernel module name" % (raw_module,))
            continue
        if module not in MODULES:
            errors.append(
                "no option model for kernel module %s; modules with options: %s"
                % (module, ", ".join(sorted(name for name in MODULES if MODULES[name]))))
            continue
        if options is None:
            options = {}
        if not isinstance(options, dict):
            errors.append("options of %s must be a mapping of option: value, got %r" % (module, options))
            continue
        known = MODULES[module]
        values = {}
        for name, value in options.items():
            if name not in known:
                errors.append(
                    "%s has no option %r; known options: %s"
                    % (module, name, ", ".join(sorted(known)) or "(none)"))
                continue
            try:
                values[name] = coerce(module, name, known[name], value)
            except OptionError as exc:
                errors.append(str(exc))
        canonical[module] = values
    return canonical, errors


# ---------------------------------------------------------------------- checks against the host
def _ib_port_count(card):
    return card.get("ports")


def validate(options, cards, stack, eipoib=False, modules=()):
    """Errors (list of str) for canonical ``options`` on this host.

    :param cards: physical functions found by ``_ofed.detect_cards``: dicts with ``pci_address``,
        ``device_id`` (int), ``model``, ``family`` (mlx4/mlx5/qib...), ``ports`` (int or None),
        ``link_layers`` ({port: "InfiniBand"|"Ethernet"}), ``sriov_totalvfs`` (int or None).
    :param stack: ``inbox`` or ``mlnx_ofed``.
    :param eipoib: EIPoIB (eth_ipoib) is wanted.
    :param modules: modules to load.
    """
    errors = []
    mlx4_cards = [card for card in cards if card.get("family") == "mlx4"]
    mlx5_cards = [card for card in cards if card.get("family") == "mlx5"]

    for module, values in sorted(options.items()):
        for name in sorted(values):
            option = MODULES[module][name]
            if option.stacks and stack not in option.stacks:
                errors.append(
                    "%s option %s exists only in MLNX_OFED's %s; this host runs the %s stack"
                    % (module, name, module, stack))

    for module in modules:
        needs = MODULE_STACKS.get(module)
        if module == "eth_ipoib" and eipoib:
            continue  # the EIPoIB check below says it better
        if needs and stack not in needs:
            errors.append("kernel module %s exists only in MLNX_OFED; this host runs the %s stack" % (module, stack))

    mlx4 = options.get("mlx4_core", {})
    port_types = mlx4.get("port_type_array")
    if port_types is not None:
        if not mlx4_cards:
            errors.append(
                "mlx4_core port_type_array is set but no mlx4 (ConnectX-3 class) card was found"
                + _found(cards))
        for card in mlx4_cards:
            ports = _ib_port_count(card)
            if ports is not None and len(port_types) != ports:
                errors.append(
                    "mlx4_core port_type_array has %d value%s (%s) but %s %s has %d port%s"
                    % (len(port_types), "" if len(port_types) == 1 else "s", render_value(port_types),
                       card.get("model") or "card", card.get("pci_address"), ports, "" if ports == 1 else "s"))

    for vf_option in ("num_vfs", "probe_vf"):
        vfs = mlx4.get(vf_option)
        if vfs is None:
            continue
        errors.extend(_check_vfs(vf_option, vfs, mlx4_cards, port_types, cards))
    num_vfs = mlx4.get("num_vfs")
    probe_vf = mlx4.get("probe_vf")
    if probe_vf is not None:
        total_probe = _vf_total(probe_vf)
        total_num = _vf_total(num_vfs) if num_vfs is not None else 0
        if total_probe > total_num:
            errors.append(
                "mlx4_core probe_vf asks the PF driver to probe %d VFs but num_vfs creates only %d"
                % (total_probe, total_num))

    if "ipoib_enhanced" in options.get("ib_ipoib", {}) and not mlx5_cards and cards:
        errors.append("ib_ipoib option ipoib_enhanced applies to mlx5 cards (Connect-IB, ConnectX-4 and later)"
                      + _found(cards))

    if eipoib:
        errors.extend(_check_eipoib(stack, mlx4_cards, port_types, cards))
    return errors


def _found(cards):
    if not cards:
        return "; no RDMA card was found on this host"
    return "; found: " + ", ".join(
        "%s %s (%s)" % (card.get("model") or "unknown card", card.get("pci_address"), card.get("family") or "?")
        for card in cards)


def _vf_total(vfs):
    return sum(vfs)


def _check_vfs(option_name, vfs, mlx4_cards, port_types, cards):
    errors = []
    where = "mlx4_core %s=%s" % (option_name, render_value(vfs))
    if not mlx4_cards:
        errors.append("%s is set but no mlx4 (ConnectX-3 class) card was found%s" % (where, _found(cards)))
        return errors
    total = _vf_total(vfs)
    if total > MLX4_MAX_NUM_VF:
        errors.append("%s asks for %d VFs; mlx4_core supports at most %d" % (where, total, MLX4_MAX_NUM_VF))
    per_port = len(vfs) > 1 and any(vfs[:2])
    if per_port:
        for index, count in enumerate(vfs[:2], start=1):
            if count > MLX4_MAX_NUM_VF_P_PORT:
                errors.append("%s asks for %d single-port VFs on port %d; mlx4_core allows at most %d per port"
                              % (where, count, index, MLX4_MAX_NUM_VF_P_PORT))
    for card in mlx4_cards:
        ports = card.get("ports")
        if per_port and ports == 1 and len(vfs) >= 2 and vfs[1]:
            errors.append("%s asks for VFs on port 2 but %s %s has one port"
                          % (where, card.get("model") or "card", card.get("pci_address")))
        if per_port:
            link_layers = _effective_link_layers(card, port_types)
            if any(layer != "Ethernet" for layer in link_layers.values()):
                errors.append(
                    "%s uses the single-port VF form (port1,port2,port1+2), which mlx4_core accepts only when "
                    "every port of the card is Ethernet; %s %s has InfiniBand ports: use num_vfs=N (dual-port VFs)"
                    % (where, card.get("model") or "card", card.get("pci_address")))
        if option_name != "num_vfs":
            continue
        limit, source = card_vf_limit(card)
        if limit is not None and total > limit:
            errors.append("%s asks for %d VFs but %s %s allows at most %d (%s)"
                          % (where, total, card.get("model") or "card", card.get("pci_address"), limit, source))
    return errors


def card_vf_limit(card):
    """(limit, where the limit comes from) for a card's VFs, or (None, None) when unknown.

    The firmware's ``sriov_totalvfs`` wins (it is what the PCI SR-IOV capability really offers);
    without it the documented maximum of the model (ConnectX-3: 16, ConnectX-3 Pro: 128).
    """
    totalvfs = card.get("sriov_totalvfs")
    if isinstance(totalvfs, int) and not isinstance(totalvfs, bool):
        return totalvfs, "firmware sriov_totalvfs"
    limit = MLX4_CARD_VF_LIMITS.get(card.get("device_id"))
    if limit is not None:
        return limit, "%s limit" % (card.get("model") or "card")
    return None, None


def _effective_link_layers(card, port_types):
    """Link layer of each port after the requested port_type_array (or as detected now)."""
    layers = dict(card.get("link_layers") or {})
    ports = card.get("ports") or len(layers)
    if port_types is not None:
        for index, kind in enumerate(port_types, start=1):
            if ports and index > ports:
                break
            layers[str(index)] = "InfiniBand" if kind == 1 else "Ethernet"
    return layers


def _check_eipoib(stack, mlx4_cards, port_types, cards):
    errors = []
    if stack != "mlnx_ofed":
        errors.append(
            "EIPoIB (eth_ipoib) needs MLNX_OFED; this host runs the %s stack (eth_ipoib is not part of the "
            "kernel or rdma-core)" % stack)
    cx3 = [card for card in mlx4_cards if card.get("device_id") in MLX4_CARD_VF_LIMITS]
    if not cx3:
        errors.append("EIPoIB needs a ConnectX-3 or ConnectX-3 Pro (mlx4) card with an InfiniBand port" + _found(cards))
        return errors
    with_ib = [card for card in cx3 if "InfiniBand" in _effective_link_layers(card, port_types).values()]
    if not with_ib:
        errors.append(
            "EIPoIB needs an InfiniBand port, but every port of %s would be Ethernet%s"
            % (", ".join("%s %s" % (card.get("model"), card.get("pci_address")) for card in cx3),
               " (port_type_array=%s)" % render_value(port_types) if port_types is not None else ""))
    return errors


# ---------------------------------------------------------------------- files
def render_options_file(module, values):
    """Content of /etc/modprobe.d/hpcnet-<module>.conf: one ``options`` line per option, model order."""
    module = normalize_module_name(module)
    lines = [HEADER]
    for name in MODULES.get(module, {}):
        if name in values:
            lines.append("options %s %s=%s\n" % (module, name, render_value(values[name])))
    for name in sorted(set(values) - set(MODULES.get(module, {}))):
        lines.append("options %s %s=%s\n" % (module, name, render_value(values[name])))
    return "".join(lines)


def _logical_lines(text):
    """Lines of a modprobe.d file with ``\\`` continuations joined and comments dropped."""
    pending = ""
    for raw in (text or "").splitlines():
        line = raw.rstrip()
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = pending + line
        pending = ""
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        yield stripped
    if pending.strip() and not pending.strip().startswith("#"):
        yield pending.strip()


def parse_modprobe_conf(text):
    """``options`` of a modprobe.d file: list of (module, option, raw value) in file order.

    Other commands (install, blacklist, alias, softdep) are ignored: we only read options.
    """
    found = []
    for line in _logical_lines(text):
        words = line.split()
        if len(words) < 2 or words[0] != "options":
            continue
        module = normalize_module_name(words[1])
        for word in words[2:]:
            if "=" in word:
                name, value = word.split("=", 1)
            else:
                name, value = word, ""
            found.append((module, name, value.strip('"')))
    return found


def render_modules_load(modules):
    """Content of /etc/modules-load.d/hpcnet-infiniband.conf (systemd-modules-load format)."""
    return HEADER + "".join("%s\n" % normalize_module_name(module) for module in modules)


def parse_modules_load(text):
    modules = []
    for raw in (text or "").splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        modules.append(normalize_module_name(line.split()[0]))
    return modules


def running_value_matches(option, canonical, running):
    """Does the value in /sys/module/<m>/parameters/<opt> equal what we render? None when unknown."""
    if running is None:
        return None
    text = running.strip()
    if option.kind == "bool":
        if text in ("Y", "1"):
            return canonical is True
        if text in ("N", "0"):
            return canonical is False
        return None
    if option.kind in ("vf_array", "port_types"):
        try:
            numbers = tuple(int(part) for part in text.split(","))
        except ValueError:
            return None
        if option.kind == "vf_array" and len(canonical) == 1:
            return None  # the kernel stores N as the dual-port entry; not comparable verbatim
        padded = tuple(canonical) + (0,) * (len(numbers) - len(canonical))
        return numbers[:len(padded)] == padded
    try:
        return int(text) == canonical
    except ValueError:
        return None


# ---------------------------------------------------------------------- initramfs
# The two functions below read the host (through the Host seam, argv only); everything above is pure.
# A driver that the initramfs contains is loaded from it at boot with the modprobe.d options copied
# into the image when it was built (initramfs-tools and dracut both copy /etc/modprobe.d), so a new
# option in /etc/modprobe.d only applies at boot once the image is rebuilt.
INITRAMFS_TIMEOUT = 120
_RELEASE_RE = re.compile(r"^[A-Za-z0-9._+~-]{1,100}$")
_KO_RE = re.compile(r"^(?P<name>[A-Za-z0-9_-]+)\.ko(?:\.(?:xz|gz|zst|bz2))?$")
_DEBIAN_IDS = ("debian", "ubuntu")
_REDHAT_IDS = ("rhel", "fedora", "centos", "rocky", "almalinux", "ol")


def _os_family(host):
    """``debian``, ``redhat`` or None, from os-release's ID and ID_LIKE."""
    text = host.read_file("/etc/os-release") or host.read_file("/usr/lib/os-release") or ""
    ids = []
    for line in text.splitlines():
        key, _sep, value = line.partition("=")
        if key.strip() in ("ID", "ID_LIKE"):
            ids += value.strip().strip("\"'").lower().split()
    if any(i in _DEBIAN_IDS for i in ids):
        return "debian"
    if any(i in _REDHAT_IDS for i in ids):
        return "redhat"
    return None


def _kernel_release(host):
    rc, out, _err = host.run(["uname", "-r"], 10)
    release = (out or "").strip()
    return release if rc == 0 and _RELEASE_RE.match(release) else None


def initramfs_list_argv(host):
    """argv that lists the running kernel's initramfs (``lsinitramfs`` / ``lsinitrd``), or None."""
    if not host.has_commands():
        return None
    family = _os_family(host)
    release = _kernel_release(host) if family else None
    if release is None:
        return None
    if family == "debian":
        return ["lsinitramfs", "/boot/initrd.img-%s" % release]
    return ["lsinitrd", "/boot/initramfs-%s.img" % release]


def initramfs_modules(host):
    """Names (normalised) of the kernel modules in the running kernel's initramfs, listed once.

    None when it cannot be told (no commands, unknown distribution, no image, lister missing or failing).
    """
    argv = initramfs_list_argv(host)
    if argv is None:
        return None
    rc, out, _err = host.run(argv, INITRAMFS_TIMEOUT)
    if rc != 0:
        return None
    names = set()
    for line in (out or "").splitlines():
        words = line.split()
        # lsinitramfs prints paths; lsinitrd prints ``ls -l`` lines whose last word is the path.
        match = _KO_RE.match(words[-1].rsplit("/", 1)[-1]) if words else None
        if match:
            names.add(normalize_module_name(match.group("name")))
    return names


def initramfs_rebuild(host, changed):
    """What changed module options mean for the initramfs: ``changed`` is {module name: the options file
    that changed}. Lists the image once. Returns (result, warning): result has ``initramfs_rebuild``
    (true when the image holds one of the modules), ``initramfs_reason`` and ``initramfs_rebuild_argv``
    (None when no rebuild); warning says when the image cannot be listed (None otherwise or when
    ``changed`` is empty, which lists nothing)."""
    result = {"initramfs_rebuild": False, "initramfs_reason": None, "initramfs_rebuild_argv": None}
    wanted = {normalize_module_name(m): path for m, path in changed.items() if valid_module_name(m)}
    if not wanted:
        return result, None
    names = initramfs_modules(host)
    if names is None:
        if not host.has_commands():
            return result, None
        return result, (
            "cannot tell whether the initramfs contains %s (%s): if it does, rebuild it for %s to apply at boot"
            % (", ".join(sorted(wanted)), " ".join(initramfs_list_argv(host) or ["no lsinitramfs/lsinitrd"]),
               ", ".join(sorted(set(wanted.values())))))
    inside = sorted(m for m in wanted if m in names)
    if inside:
        result.update(
            initramfs_rebuild=True,
            initramfs_reason="%s %s in the initramfs, which loads %s at boot with the modprobe.d options copied "
            "into the image: %s changed, so the image must be rebuilt"
            % (", ".join(inside), "is" if len(inside) == 1 else "are", "it" if len(inside) == 1 else "them",
               ", ".join(sorted({wanted[m] for m in inside}))),
            initramfs_rebuild_argv=initramfs_rebuild_argv(host),
        )
    return result, None


def plan_initramfs(host, plan, changed):
    """initramfs_rebuild() for a configuring module's plan: ``changed`` is {module: its options file that
    the plan writes or removes}. A refused plan lists nothing; the warning goes on the plan, and a needed
    rebuild makes it ``reboot_required`` (the image's options apply at the next boot). Returns the result."""
    result, warning = initramfs_rebuild(host, changed if plan.ok else {})
    if warning:
        plan.warn(warning)
    if result["initramfs_rebuild"]:
        plan.reboot_required = True
    return result


def initramfs_rebuild_argv(host):
    """argv that rebuilds the initramfs: Debian/Ubuntu ``update-initramfs -u -k all``, EL ``dracut -f``."""
    family = _os_family(host)
    if family == "debian":
        return ["update-initramfs", "-u", "-k", "all"]
    if family == "redhat":
        return ["dracut", "-f"]
    return None
