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
"""

from __future__ import annotations

import time

from ansible_collections.hpcnet.infiniband.plugins.module_utils import _facts  # the shared facts model
from ansible_collections.hpcnet.infiniband.plugins.module_utils._host import (
    HostError,
    valid_ifname,
    valid_rdma_device,
)
from ansible_collections.hpcnet.infiniband.plugins.module_utils._plan import Plan


__all__ = [
    "IpoibError",
    "parse_pkey",
    "child_name",
    "read_ipoib",
    "plan_ipoib",
    "apply_ipoib",
    "datagram_mtu_limit",
    "CONNECTED_MTU_MAX",
]

ARPHRD_INFINIBAND = 32
FULL_MEMBER = 0x8000
CONNECTED_MTU_MAX = 65520
IPOIB_HEADER = 4
MIN_MTU = 68
CHILD_WAIT_SECONDS = 5.0


class IpoibError(Exception):
    pass


def parse_pkey(value):
    """``"0x8002"``, ``32770``, ``"32770"`` -> int (hex needs the 0x prefix, as sysfs prints it); else None."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return value
    text = str(value).strip().lower()
    try:
        return int(text, 16) if text.startswith("0x") else int(text, 10)
    except ValueError:
        return None


def child_name(parent, pkey):
    """Name the kernel gives a child made through create_child."""
    return "%s.%04x" % (parent, pkey)


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
                value = parse_pkey(host.read("%s/%s" % (base, entry)))
                if value:
                    table.append(value)
            return table
    return None


def _facts_of(host, ifname):
    try:
        return _facts.read_netdev(host, ifname)
    except Exception:  # pylint: disable=broad-except  # facts help here, never block
        return None


def read_ipoib(host, parent, pkey=None):
    """The parent IPoIB netdev, its port's P_Key table, and the child for ``pkey`` (full P_Key int)."""
    if not valid_ifname(parent):
        raise IpoibError("%r is not a valid interface name" % (parent,))
    have = {
        "parent": _read_iface(host, parent),
        "child": None,
        "others": [],
        "pkeys": None,
        "rdma_device": None,
        "port": None,
    }
    if have["parent"] is None:
        return have
    # The shared facts model places the netdev on its RDMA port the same way everywhere; prefer it, and
    # read the port and its P_Key table here only when it cannot.
    ib = (_facts_of(host, parent) or {}).get("ib") or {}
    if ib.get("device") and isinstance(ib.get("pkeys"), list):
        have["rdma_device"], have["port"] = ib["device"], str(ib.get("port"))
        have["pkeys"] = [v for v in (parse_pkey(p) for p in ib["pkeys"]) if v]
    else:
        ibdev, port = _port_of(host, parent)
        have["rdma_device"], have["port"] = ibdev, port
        have["pkeys"] = _pkey_table(host, parent, ibdev, port)
    if pkey is not None:
        name = child_name(parent, pkey)
        if valid_ifname(name):
            have["child"] = _read_iface(host, name)
        # Children made another way (ip link add ... type ipoib pkey X) under another name.
        prefix = parent + "."
        for ifname in host.listdir("class/net"):
            if ifname == name or not valid_ifname(ifname) or not ifname.startswith(prefix):
                continue
            other = _read_iface(host, ifname)
            if other and parse_pkey(other.get("pkey")) == pkey:
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

    target = parent
    target_name = parent_name
    if pkey is not None:
        name = child_name(parent_name, pkey)
        plan.info.update({"name": name, "pkey": "0x%04x" % pkey})
        if not valid_ifname(name):
            plan.refuse("child name %s is longer than 15 characters: use a shorter parent name" % name)
            return plan
        child = have.get("child")
        if have.get("others"):
            plan.refuse(
                "P_Key 0x%04x already has a child on %s under another name: %s (made outside create_child)"
                % (pkey, parent_name, ", ".join(have["others"]))
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
                    pkey="0x%04x" % pkey,
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
                pkey="0x%04x" % pkey,
                child=name,
            )
        target, target_name = child, name
    else:
        plan.info.update({"name": parent_name, "pkey": parent.get("pkey")})

    _plan_attributes(have, want, plan, target, target_name)
    return plan


def _validate_pkey(want, plan, parent):
    raw = want["pkey"]
    pkey = parse_pkey(raw)
    if pkey is None or pkey < 0 or pkey > 0xFFFF:
        plan.refuse("pkey %r is not a 16-bit P_Key (give it as 0x8002 or 32770)" % (raw,))
        return None
    base = pkey & 0x7FFF
    if base == 0:
        plan.refuse("pkey 0x%04x is invalid: 0x0000 and 0x8000 are reserved (no partition)" % pkey)
        return None
    if base == 0x7FFF:
        plan.refuse(
            "pkey 0x%04x is the default partition, which the parent %s already uses: not a child"
            % (pkey, want["parent"])
        )
        return None
    membership = want.get("membership") or "full"
    if membership == "full":
        pkey |= FULL_MEMBER
    elif pkey & FULL_MEMBER:
        plan.refuse("pkey 0x%04x has the full-membership bit set but membership=limited" % pkey)
        return None
    parent_pkey = parse_pkey(parent.get("pkey"))
    if parent_pkey is not None and parent_pkey & 0x7FFF == base:
        plan.refuse("pkey 0x%04x is the parent's own P_Key (%s): not a child" % (pkey, parent.get("pkey")))
        return None
    return pkey


def _check_pkey_table(have, want, plan, pkey):
    check = want.get("pkey_check") or "warn"
    if check == "ignore":
        return
    table = have.get("pkeys")
    if table is None:
        plan.warn(
            "cannot read the P_Key table of %s (ports/N/pkeys): P_Key 0x%04x not checked" % (want["parent"], pkey)
        )
        return
    bases = {entry & 0x7FFF: entry for entry in table}
    where = "%s port %s" % (have.get("rdma_device"), have.get("port"))
    message = None
    if pkey & 0x7FFF not in bases:
        message = (
            "P_Key 0x%04x is not in the P_Key table of %s (%s): the subnet manager has not given this "
            "partition to the port, the child will not pass traffic"
            % (pkey, where, ", ".join("0x%04x" % v for v in table))
        )
    elif pkey & FULL_MEMBER and not bases[pkey & 0x7FFF] & FULL_MEMBER:
        message = "P_Key 0x%04x: the port %s is only a limited member (0x%04x) of this partition" % (
            pkey,
            where,
            bases[pkey & 0x7FFF],
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
    """Make the changes; returns {"applied": [...]}. Raises IpoibApplyError saying what was done."""
    done = []
    for change in plan.changes:
        try:
            if change.action in _CHILD_ACTIONS:
                # The kernel adds/removes the child netdev after the write returns: wait for it.
                present, failure = _CHILD_ACTIONS[change.action]
                host.write("class/net/%s/%s" % (change.detail["parent"], change.action), change.detail["pkey"], timeout)
                if not _wait_for(host, "class/net/%s" % change.detail["child"], present):
                    raise IpoibApplyError("wrote %s to %s but %s %s" % (
                        change.detail["pkey"], change.target, change.detail["child"], failure), done)
            elif change.action in ("set_mode", "set_mtu", "set_umcast"):
                attr = change.action[len("set_") :]
                rel = "class/net/%s/%s" % (change.detail["ifname"], attr)
                current = host.read(rel)
                if current != str(change.after):
                    host.write(rel, str(change.after), timeout)
                    current = host.read(rel)
                if current != str(change.after):
                    raise IpoibApplyError("wrote %s to %s but it reads back %s" % (change.after, rel, current), done)
            done.append(change.describe())
        except HostError as exc:
            raise IpoibApplyError("%s failed: %s" % (change.describe(), exc), done)
    return {"applied": done}


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
    def __init__(self, message, done):
        super().__init__(message)
        self.done = list(done)


def pkey_text(value):
    pkey = parse_pkey(value)
    return None if pkey is None else "0x%04x" % pkey


def full_pkey(value, membership="full"):
    """The P_Key the child will carry (membership bit applied), or None when not a valid value."""
    pkey = parse_pkey(value)
    if pkey is None or pkey < 0 or pkey > 0xFFFF:
        return None
    return pkey | FULL_MEMBER if membership == "full" else pkey


def prepare(host, params):
    """have + plan for the module: (plan, extra result). Raises IpoibError."""
    pkey = full_pkey(params.get("pkey"), params.get("membership")) if params.get("pkey") is not None else None
    have = read_ipoib(host, params["parent"], pkey)
    plan = plan_ipoib(have, params)
    target = have.get("child") if pkey is not None else have.get("parent")
    extra = {
        "interface": plan.info.get("name"),
        "pkey": plan.info.get("pkey"),
        "parent": params["parent"],
        "rdma_device": have.get("rdma_device"),
        "port": have.get("port"),
        "port_pkeys": ["0x%04x" % v for v in have.get("pkeys") or []],
        "before": {k: (target or {}).get(k) for k in ("mode", "mtu", "umcast", "pkey")} if target else None,
    }
    return plan, extra
