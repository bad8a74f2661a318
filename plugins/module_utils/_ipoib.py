# -*- coding: utf-8 -*-
# Copyright: hpcnet.infiniband contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""IPoIB interfaces: P_Key children, transport mode, MTU, umcast.

have (``read_ipoib``) -> plan (``plan_ipoib``: pure) -> apply (``apply_ipoib``: the only writer).

Kernel rules (drivers/infiniband/ulp/ipoib): writing a P_Key to ``/sys/class/net/<parent>/create_child``
makes ``<parent>.<pkey as %04x>`` (so ``0x8002`` -> ``ib0.8002``); 0, 0x8000 and values > 0xffff are
EINVAL, an existing legacy child with the same P_Key is ENOTUNIQ; ``delete_child`` takes the same P_Key.
``mode`` takes ``datagram``/``connected``; ``umcast`` 0/1. A datagram-mode MTU is bounded by the IB
MTU minus the 4-byte IPoIB header (4092 for a 4096 IB MTU); connected mode allows 65520.
mlx5 "enhanced IPoIB" (drivers/net/ethernet/mellanox/mlx5/core/ipoib, ethtool driver
``mlx5_core[ib_ipoib]``, the default while ib_ipoib's ``ipoib_enhanced`` parameter is 1) has no connected
mode: writing ``connected`` is EINVAL, on the parent and on its children alike.

P_Keys are parsed and formatted by ``_values`` only (hex text, an int is its value).
"""

from __future__ import annotations

import time

from ansible_collections.hpcnet.infiniband.plugins.module_utils import _facts  # the shared facts model
from ansible_collections.hpcnet.infiniband.plugins.module_utils import _values
from ansible_collections.hpcnet.infiniband.plugins.module_utils._host import (
    HostError,
    valid_ifname,
    valid_rdma_device,
)
from ansible_collections.hpcnet.infiniband.plugins.module_utils._plan import Plan


__all__ = [
    "IpoibError",
    "IpoibApplyError",
    "read_ipoib",
    "plan_ipoib",
    "apply_ipoib",
    "prepare",
    "datagram_mtu_limit",
    "CONNECTED_MTU_MAX",
]

ARPHRD_INFINIBAND = 32
CONNECTED_MTU_MAX = 65520
IPOIB_HEADER = 4
MIN_MTU = 68
CHILD_WAIT_SECONDS = 5.0
ENHANCED_DRIVER = "mlx5_core[ib_ipoib]"
ENHANCED_PARAM = "module/ib_ipoib/parameters/ipoib_enhanced"


class IpoibError(Exception):
    pass


def datagram_mtu_limit(port_ib_mtu):
    return min(4096, port_ib_mtu or 4096) - IPOIB_HEADER


def _read_iface(host, ifname):
    base = "class/net/%s" % ifname
    if not host.exists(base):
        return None
    return {
        "name": ifname,
        "type": host.read_int(base + "/type", 10),
        "pkey": host.read(base + "/pkey"),
        "mode": host.read(base + "/mode"),
        "umcast": host.read(base + "/umcast"),
        "mtu": host.read_int(base + "/mtu", 10),
        "operstate": host.read(base + "/operstate"),
        "device": host.relpath(base + "/device"),
        "has_create_child": host.exists(base + "/create_child"),
    }


def _port_of(host, ifname):
    """(rdma device, port number) under an IPoIB netdev: dev_port (0-based) or dev_id, like the kernel."""
    ibdevs = [d for d in host.listdir("class/net/%s/device/infiniband" % ifname) if valid_rdma_device(d)]
    if not ibdevs:
        return None, None
    ibdev = ibdevs[0]
    index = host.read_int("class/net/%s/dev_port" % ifname, 0)
    if not index:
        index = host.read_int("class/net/%s/dev_id" % ifname, 0) or 0
    ports = sorted(
        host.listdir("class/infiniband/%s/ports" % ibdev)
        or host.listdir("class/net/%s/device/infiniband/%s/ports" % (ifname, ibdev)),
        key=_int_or_zero,
    )
    port = str(index + 1)
    if port not in ports and ports:
        port = ports[0]
    return ibdev, port


def _int_or_zero(text):
    try:
        return int(text)
    except ValueError:
        return 0


def _pkey_table(host, ifname, ibdev, port):
    if not ibdev:
        return None
    for base in (
        "class/infiniband/%s/ports/%s/pkeys" % (ibdev, port),
        "class/net/%s/device/infiniband/%s/ports/%s/pkeys" % (ifname, ibdev, port),
    ):
        entries = host.listdir(base)
        if entries:
            table = []
            for entry in sorted(entries, key=_int_or_zero):
                value = _values.pkey_or_none(host.read("%s/%s" % (base, entry)))
                if value:
                    table.append(value)
            return table
    return None


def _facts_of(host, ifname):
    """The facts model's record of one netdev, without any P_Key table (None when it cannot place it)."""
    try:
        return _facts.read_netdev(host, ifname, pkeys="none")
    except Exception:  # pylint: disable=broad-except  # facts help here, never block
        return None


def _is_enhanced(host, nic):
    """Whether the netdev is mlx5 enhanced IPoIB (no connected mode). ethtool's driver name says so on a
    live host; where the facts model infers it from the PCI driver, ib_ipoib's ``ipoib_enhanced=0``
    (classic IPoIB on mlx5) overrides the inference."""
    if (nic or {}).get("driver") != ENHANCED_DRIVER:
        return False
    if nic.get("driver_source") != "ethtool" and host.read(ENHANCED_PARAM) in ("0", "N"):
        return False
    return True


def read_ipoib(host, parent, pkey=None, read_table=True):
    """The parent IPoIB netdev, its port's P_Key table (only with ``read_table``), and the child for
    ``pkey`` (full P_Key int). Reads the parent's own netdev, port and table only, not the whole host."""
    if not valid_ifname(parent):
        raise IpoibError("%r is not a valid interface name" % (parent,))
    try:
        _facts.check_sysfs_tree(host)
    except _facts.FactsError as exc:
        raise IpoibError(str(exc))
    have = {
        "parent": _read_iface(host, parent),
        "child": None,
        "others": [],
        "pkeys": None,
        "rdma_device": None,
        "port": None,
        "enhanced": False,
    }
    if have["parent"] is None:
        return have
    # The shared facts model places the netdev on its RDMA port the same way everywhere and names its
    # driver; prefer it, and place the port here only when it cannot.
    nic = _facts_of(host, parent)
    have["enhanced"] = _is_enhanced(host, nic)
    ib = (nic or {}).get("ib") or {}
    if ib.get("device") and ib.get("port") is not None:
        have["rdma_device"], have["port"] = ib["device"], str(ib["port"])
        if read_table:
            _facts.complete_pkeys(host, {parent: nic}, [parent])
            if isinstance(ib.get("pkeys"), list):
                have["pkeys"] = [v for v in (_values.pkey_or_none(p) for p in ib["pkeys"]) if v]
    else:
        ibdev, port = _port_of(host, parent)
        have["rdma_device"], have["port"] = ibdev, port
        if read_table:
            have["pkeys"] = _pkey_table(host, parent, ibdev, port)
    if pkey is not None:
        name = _values.child_name(parent, pkey)
        if valid_ifname(name):
            have["child"] = _read_iface(host, name)
        # Children made another way (ip link add ... type ipoib pkey X) under another name.
        prefix = parent + "."
        for ifname in host.listdir("class/net"):
            if ifname == name or not valid_ifname(ifname) or not ifname.startswith(prefix):
                continue
            other = _read_iface(host, ifname)
            if other and _values.pkey_or_none(other.get("pkey")) == pkey:
                have["others"].append(ifname)
    return have


def _effective_mode(want, iface):
    return want.get("mode") or (iface or {}).get("mode") or "datagram"


def plan_ipoib(have, want):
    """Pure plan. ``want``: parent, pkey, membership (full|limited), state, mode, mtu, umcast,
    pkey_check (warn|refuse|ignore), port_ib_mtu."""
    plan = Plan()
    parent_name = want["parent"]
    parent = have.get("parent")
    state = want.get("state") or "present"
    timeout = want.get("timeout")
    if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, int) or timeout <= 0):
        plan.refuse("timeout %r is not a positive number of seconds" % (timeout,))
    if state == "absent":
        # Removing a child takes its settings with it: asking for settings there is a mistake, say so.
        given = [key for key in ("mode", "mtu", "umcast") if want.get(key) is not None]
        if given:
            plan.refuse("state=absent removes the child; %s cannot be set on it (drop %s)" % (
                "/".join(given), ", ".join(given)))
    if not plan.ok:
        return plan
    if parent is None:
        plan.refuse("IPoIB parent %s does not exist" % parent_name)
        return plan
    if parent.get("type") != ARPHRD_INFINIBAND:
        plan.refuse(
            "%s is not an IPoIB interface (type %s, expected %d): is ib_ipoib loaded?"
            % (parent_name, parent.get("type"), ARPHRD_INFINIBAND)
        )
        return plan

    pkey = None
    if want.get("pkey") is not None:
        pkey = _validate_pkey(want, plan, parent)
        if pkey is None:
            return plan
    elif state == "absent":
        plan.refuse("state=absent needs a pkey: the parent interface itself is not removed")
        return plan

    if want.get("mode") == "connected" and have.get("enhanced"):
        plan.refuse(
            "%s is mlx5 enhanced IPoIB (driver %s), which has no connected mode (the kernel answers EINVAL), "
            "nor have its P_Key children: use mode datagram, or load ib_ipoib with ipoib_enhanced=0 for "
            "classic IPoIB" % (parent_name, ENHANCED_DRIVER)
        )
        return plan

    target = parent
    target_name = parent_name
    if pkey is not None:
        name = _values.child_name(parent_name, pkey)
        plan.info.update({"name": name, "pkey": _values.format_pkey(pkey)})
        if not valid_ifname(name):
            plan.refuse("child name %s is longer than 15 characters: use a shorter parent name" % name)
            return plan
        child = have.get("child")
        if have.get("others"):
            plan.refuse(
                "P_Key %s already has a child on %s under another name: %s (made outside create_child)"
                % (_values.format_pkey(pkey), parent_name, ", ".join(have["others"]))
            )
            return plan
        if state == "absent":
            if child is not None:
                plan.add(
                    "delete_child",
                    "%s/delete_child" % parent_name,
                    name,
                    None,
                    parent=parent_name,
                    pkey=_values.format_pkey(pkey),
                    child=name,
                )
            return plan
        _check_pkey_table(have, want, plan, pkey)
        if plan.errors:
            return plan
        if child is None:
            if not parent.get("has_create_child"):
                plan.refuse("%s has no create_child attribute: not an IPoIB parent" % parent_name)
                return plan
            plan.add(
                "create_child",
                "%s/create_child" % parent_name,
                None,
                name,
                parent=parent_name,
                pkey=_values.format_pkey(pkey),
                child=name,
            )
        target, target_name = child, name
    else:
        plan.info.update({"name": parent_name, "pkey": parent.get("pkey")})

    _plan_attributes(have, want, plan, target, target_name)
    return plan


def _validate_pkey(want, plan, parent):
    fmt = _values.format_pkey
    try:
        pkey = _values.parse_pkey(want["pkey"])
    except ValueError as exc:
        plan.refuse(str(exc))
        return None
    base = _values.partition(pkey)
    if base == _values.PARTITION_MASK:
        plan.refuse(
            "pkey %s is the default partition, which the parent %s already uses: not a child"
            % (fmt(pkey), want["parent"])
        )
        return None
    membership = want.get("membership") or "full"
    if membership == "full":
        pkey = _values.full_member(pkey)
    elif pkey & _values.FULL_MEMBER:
        plan.refuse("pkey %s has the full-membership bit set but membership=limited" % fmt(pkey))
        return None
    parent_pkey = _values.pkey_or_none(parent.get("pkey"))
    if parent_pkey is not None and _values.partition(parent_pkey) == base:
        plan.refuse("pkey %s is the parent's own P_Key (%s): not a child" % (fmt(pkey), parent.get("pkey")))
        return None
    return pkey


def _check_pkey_table(have, want, plan, pkey):
    check = want.get("pkey_check") or "warn"
    if check == "ignore":
        return
    fmt = _values.format_pkey
    table = have.get("pkeys")
    if table is None:
        plan.warn(
            "cannot read the P_Key table of %s (ports/N/pkeys): P_Key %s not checked" % (want["parent"], fmt(pkey))
        )
        return
    bases = {_values.partition(entry): entry for entry in table}
    base = _values.partition(pkey)
    where = "%s port %s" % (have.get("rdma_device"), have.get("port"))
    message = None
    if base not in bases:
        message = (
            "P_Key %s is not in the P_Key table of %s (%s): the subnet manager has not given this "
            "partition to the port, the child will not pass traffic"
            % (fmt(pkey), where, ", ".join(fmt(v) for v in table))
        )
    elif pkey & _values.FULL_MEMBER and not bases[base] & _values.FULL_MEMBER:
        message = "P_Key %s: the port %s is only a limited member (%s) of this partition" % (
            fmt(pkey),
            where,
            fmt(bases[base]),
        )
    if message:
        if check == "refuse":
            plan.refuse(message)
        else:
            plan.warn(message)


def _plan_attributes(have, want, plan, iface, name):
    iface = iface or {}
    new = not iface
    mode = _effective_mode(want, iface)
    if want.get("mode") and (new or iface.get("mode") != want["mode"]):
        plan.add("set_mode", "%s/mode" % name, iface.get("mode"), want["mode"], ifname=name)
    limit = CONNECTED_MTU_MAX if mode == "connected" else datagram_mtu_limit(want.get("port_ib_mtu"))
    mtu = want.get("mtu")
    if mtu is not None:
        if mtu < MIN_MTU or mtu > limit:
            plan.refuse(
                "mtu %d is out of range for %s mode on %s: %d..%d%s"
                % (
                    mtu,
                    mode,
                    name,
                    MIN_MTU,
                    limit,
                    " (the IB MTU minus the 4-byte IPoIB header)" if mode == "datagram" else "",
                )
            )
            return
        if new or iface.get("mtu") != mtu:
            plan.add("set_mtu", "%s/mtu" % name, iface.get("mtu"), mtu, ifname=name)
        parent_mtu = (have.get("parent") or {}).get("mtu")
        if name != want["parent"] and parent_mtu and mtu > parent_mtu:
            plan.warn(
                "%s: MTU %d is above the parent %s's MTU %d; the kernel may refuse it: raise the parent's "
                "MTU (and mode) first" % (name, mtu, want["parent"], parent_mtu)
            )
    elif mode == "datagram" and iface.get("mtu") and iface["mtu"] > limit:
        plan.warn(
            "%s: MTU %d is above the datagram-mode limit %d; the kernel will lower it" % (name, iface["mtu"], limit)
        )
    if want.get("umcast") is not None:
        wanted = "1" if want["umcast"] else "0"
        if new or iface.get("umcast") != wanted:
            plan.add("set_umcast", "%s/umcast" % name, iface.get("umcast"), wanted, ifname=name)


# create_child/delete_child: whether the child netdev exists afterwards, and what went wrong if not.
_CHILD_ACTIONS = {"create_child": (True, "did not appear"), "delete_child": (False, "is still there")}


def apply_ipoib(host, plan, timeout=30):
    """Make the changes; returns {"applied": [...]}. On failure, deletes the children this run created
    and raises IpoibApplyError saying what was done and what was undone."""
    done = []
    created = []  # changes that made a child, newest last: rolled back when a later step fails
    for change in plan.changes:
        try:
            if change.action in _CHILD_ACTIONS:
                _child(host, change.detail, change.action, timeout, change.target)
                if change.action == "create_child":
                    created.append(change)
            elif change.action in ("set_mode", "set_mtu", "set_umcast"):
                attr = change.action[len("set_") :]
                rel = "class/net/%s/%s" % (change.detail["ifname"], attr)
                current = host.read(rel)
                if current != str(change.after):
                    host.write(rel, str(change.after), timeout)
                    current = host.read(rel)
                if current != str(change.after):
                    raise HostError("wrote %s to %s but it reads back %s" % (change.after, rel, current))
            done.append(change.describe())
        except HostError as exc:
            message = "%s failed: %s" % (change.describe(), exc)
            undone, gone = _roll_back(host, created, timeout)
            # What remains changed: steps on interfaces other than the children deleted again.
            kept = [c for c in plan.changes[: len(done)] if _ifname_of(c) not in gone]
            raise IpoibApplyError(message, done, undone, changed=bool(kept))
    return {"applied": done}


def _ifname_of(change):
    return change.detail.get("child") or change.detail.get("ifname")


def _child(host, detail, action, timeout, target):
    """Write the P_Key to create_child/delete_child and wait for the child netdev to (dis)appear."""
    # The kernel adds/removes the child netdev after the write returns: wait for it.
    present, failure = _CHILD_ACTIONS[action]
    host.write("class/net/%s/%s" % (detail["parent"], action), detail["pkey"], timeout)
    if not _wait_for(host, "class/net/%s" % detail["child"], present):
        raise HostError("wrote %s to %s but %s %s" % (detail["pkey"], target, detail["child"], failure))


def _roll_back(host, created, timeout):
    """Delete the children this run created (newest first); -> (what was undone or could not be,
    names of the children deleted)."""
    undone, gone = [], set()
    for change in reversed(created):
        detail = change.detail
        what = "delete_child %s/delete_child: %s" % (detail["parent"], detail["child"])
        try:
            _child(host, detail, "delete_child", timeout, "%s/delete_child" % detail["parent"])
            undone.append(what)
            gone.add(detail["child"])
        except HostError as exc:
            undone.append("%s FAILED (%s): %s is left behind" % (what, exc, detail["child"]))
    return undone, gone


def _wait_for(host, rel, present):
    # create_child registers the netdev before the write returns; a short bounded poll covers
    # sysfs views that update asynchronously.
    deadline = time.monotonic() + CHILD_WAIT_SECONDS
    while True:
        if host.exists(rel) == present:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)


class IpoibApplyError(Exception):
    """A failed apply: ``done`` (changes made), ``undone`` (roll-back steps), ``changed`` (anything left)."""

    def __init__(self, message, done, undone=(), changed=None):
        self.done = list(done)
        self.undone = list(undone)
        if self.done:
            message += "; done: %s" % "; ".join(self.done)
        if self.undone:
            message += "; rolled back: %s" % "; ".join(self.undone)
        super().__init__(message)
        self.changed = bool(self.done) if changed is None else changed


def _want_pkey(params):
    """The P_Key the child will carry (membership bit applied), or None when not given or not valid
    (the plan then refuses it, naming the value)."""
    pkey = _values.pkey_or_none(params.get("pkey"))
    if pkey is None:
        return None
    return _values.full_member(pkey) if (params.get("membership") or "full") == "full" else pkey


def prepare(host, params):
    """have + plan for the module: (plan, extra result). Raises IpoibError."""
    pkey = _want_pkey(params)
    read_table = (
        pkey is not None and (params.get("state") or "present") == "present"
        and (params.get("pkey_check") or "warn") != "ignore"
    )
    have = read_ipoib(host, params["parent"], pkey, read_table=read_table)
    plan = plan_ipoib(have, params)
    target = have.get("child") if pkey is not None else have.get("parent")
    table = have.get("pkeys")
    extra = {
        "interface": plan.info.get("name"),
        "pkey": plan.info.get("pkey"),
        "parent": params["parent"],
        "rdma_device": have.get("rdma_device"),
        "port": have.get("port"),
        "port_pkeys": None if table is None else [_values.format_pkey(v) for v in table],
        "before": {k: (target or {}).get(k) for k in ("mode", "mtu", "umcast", "pkey")} if target else None,
    }
    return plan, extra
