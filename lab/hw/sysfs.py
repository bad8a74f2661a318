"""The node's sysfs view: an expanded profile merged over the node's real sysfs, with kernel write semantics.

Pure Python (no FUSE, no root): hw.fusefs is a thin layer over SysfsModel, and unit tests drive it directly.
Errors are raised as OSError(errno) exactly where the kernel returns them:
- sriov_numvfs (drivers/pci/iov.c): garbage -> EINVAL, > sriov_totalvfs -> ERANGE, N -> M with both
  non-zero -> EBUSY, same value -> no-op, 0 removes the VFs.
- create_child / delete_child (ipoib_main.c, ipoib_vlan.c): sscanf("%i"); pkey 0, 0x8000 or > 0xffff ->
  EINVAL; the parent's own P_Key or an existing child -> ENOTUNIQ; delete of an unknown child -> ENODEV.
- mode (ipoib_set_mode): exactly "connected\\n" or "datagram\\n" (what `echo` writes), anything else ->
  EINVAL; "connected" on an interface without connected-mode support (enhanced IPoIB) -> EINVAL.
- opening a read-only attribute for writing -> EACCES (kernfs_fop_open).
"""
import errno
import json
import os
import posixpath
import re
import stat
import threading
import time

from hw import overrides as hwoverrides
from hw import profile as hwprofile

# Real attributes the view may write through: only per-netns network state, never global kernel knobs.
REAL_WRITABLE_PREFIX = "devices/virtual/net/"
PORT_ATTRS = ("state", "phys_state", "lid", "sm_lid", "sm_sl")


def _err(code, msg=None):
    return OSError(code, msg or os.strerror(code))


def parse_kstrtou(text, bits):
    """kstrtou16/kstrtouint(buf, 0): optional '+', base by prefix, one trailing newline allowed."""
    s = text[:-1] if text.endswith("\n") else text
    if s.startswith("+"):
        s = s[1:]
    if not s:
        raise _err(errno.EINVAL)
    try:
        if re.fullmatch(r"0[xX][0-9a-fA-F]+", s):
            value = int(s, 16)
        elif re.fullmatch(r"0[0-7]*", s):
            value = int(s, 8)
        elif re.fullmatch(r"[1-9][0-9]*", s):
            value = int(s, 10)
        else:
            raise ValueError(s)
    except ValueError:
        raise _err(errno.EINVAL) from None
    if value >= 1 << bits:
        raise _err(errno.ERANGE)
    return value


def parse_scanf_i(text):
    """sscanf(buf, "%i"): leading blanks, sign, base by prefix, stops at the first non-digit."""
    m = re.match(r"\s*([+-]?)(0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*)", text)
    if not m:
        raise _err(errno.EINVAL)
    body = m.group(2)
    if body[:2].lower() == "0x":
        value = int(body, 16)
    elif body.startswith("0"):
        value = int(body, 8)
    else:
        value = int(body)
    return -value if m.group(1) == "-" else value


def parse_kstrtobool(text):
    s = text.strip()
    if s[:1] in ("1", "y", "Y") or s.lower() == "on":
        return True
    if s[:1] in ("0", "n", "N") or s.lower() == "off":
        return False
    raise _err(errno.EINVAL)


class Node:
    """What a view path resolves to: a profile entry and/or a real sysfs path."""

    __slots__ = ("kind", "entry", "tree_path", "real_path")

    def __init__(self, kind, entry=None, tree_path=None, real_path=None):
        self.kind, self.entry, self.tree_path, self.real_path = kind, entry, tree_path, real_path


class SysfsModel:
    def __init__(self, hw, realsys=None, state_dir=None, ethtool_path=None, netlink=None):
        """hw: profile.Hardware; realsys: the node's real sysfs mount (or None); state_dir: where
        fabric-state.json is read and state.json written; ethtool_path: table for the LD_PRELOAD shim;
        netlink: optional object with add_child(parent, name) / del_child(name) / set_mtu(name, mtu)
        that mirrors P_Key children and MTU changes onto real links in the node."""
        self.hw = hw
        self.tree = hw.tree
        self.realsys = os.path.realpath(realsys) if realsys else None
        self.state_dir = state_dir
        self.ethtool_path = ethtool_path
        self.netlink = netlink
        self.lock = threading.RLock()
        self.stored = {}          # tree path -> text written to a stored attribute
        self.numvfs = {addr: 0 for addr in hw.pfs}
        self.children = {}        # parent netdev -> {pkey: child name}
        self.mtime = time.time()
        self._fabric = (None, {})
        self._overrides = (None, {})
        self._override_names = set()
        self.generation = 0       # bumped when netdevs come and go (derived overrides follow)
        self._real_rel_cache = {}  # _real_rel: real link path -> its directory (relative to realsys)
        if self.ethtool_path:
            self._write_ethtool()

    # ------------------------------------------------------------ path resolution
    def _real(self, rel):
        return os.path.join(self.realsys, rel) if self.realsys and rel is not None else None

    def _real_rel(self, rel_link):
        """Resolve a real sysfs path (following its symlinks) to a path relative to realsys.

        Remembered per path while its target stays a directory: os.path.realpath costs an lstat per
        component, on the path of nearly every request (a netdev's target only moves by going away)."""
        if not self.realsys:
            return None
        known = self._real_rel_cache.get(rel_link)
        if known is not None and os.path.isdir(self._real(known)):
            return known
        full = os.path.realpath(os.path.join(self.realsys, rel_link))
        if full != self.realsys and not full.startswith(self.realsys + os.sep):
            return None
        if not os.path.isdir(full):
            return None
        rel = os.path.relpath(full, self.realsys) if full != self.realsys else ""
        self._real_rel_cache[rel_link] = rel
        return rel

    def _real_lstat_mode(self, rel):
        """st_mode of the real path (not following a last symlink), None when it does not exist."""
        try:
            return os.lstat(self._real(rel)).st_mode
        except OSError:
            return None

    def lookup(self, path, _depth=0):
        path = self.tree.norm(path)
        if _depth > 16:
            raise _err(errno.ELOOP)
        with self.lock:
            tree_cur, real_cur = "", ("" if self.realsys else None)
            if not path:
                return Node("dir", self.tree.get(""), "", real_cur)
            parts = path.split("/")
            view = ""
            for i, part in enumerate(parts):
                last = i == len(parts) - 1
                view = posixpath.join(view, part) if view else part
                ent = self.tree.get(posixpath.join(tree_cur, part) if tree_cur else part) \
                    if tree_cur is not None else None
                # One lstat per component: whether the real child exists, is a link or a directory.
                real_child = real_mode = None
                if real_cur is not None and view not in self.tree.hidden:
                    cand = posixpath.join(real_cur, part) if real_cur else part
                    real_mode = self._real_lstat_mode(cand)
                    if real_mode is not None:
                        real_child = cand
                if ent is not None and ent.weak and real_child is not None:
                    ent = None
                if ent is not None:
                    tpath = posixpath.join(tree_cur, part) if tree_cur else part
                    if ent.kind == "dir":
                        tree_cur = tpath
                        if ent.real:
                            real_cur = self._real_rel(ent.real)
                        elif real_child is not None and stat.S_ISDIR(real_mode):
                            real_cur = real_child
                        else:
                            real_cur = None
                        if last:
                            return Node("dir", ent, tpath, real_cur)
                        continue
                    if not last:
                        if ent.kind != "link":
                            return None
                        return self._follow(view, ent.value, parts[i + 1:], _depth)
                    return Node(ent.kind, ent, tpath, None)
                if real_child is None:
                    return None
                full = self._real(real_child)
                if stat.S_ISLNK(real_mode):
                    if last:
                        return Node("link", None, None, real_child)
                    return self._follow(view, os.readlink(full), parts[i + 1:], _depth)
                if stat.S_ISDIR(real_mode):
                    tree_cur, real_cur = None, real_child
                    if last:
                        return Node("dir", None, None, real_child)
                    continue
                return Node("file", None, None, real_child) if last else None
            return None

    def _follow(self, view, target, rest, depth):
        # Intermediate symlink (the kernel's path walk does this for FUSE; direct callers need it too).
        new = posixpath.join(posixpath.dirname(view), target, *rest)
        if posixpath.normpath("/" + new).startswith("/.."):
            return None
        return self.lookup(new, depth + 1)

    def realpath(self, path, _depth=0):
        """Canonical view path with every symlink resolved (None if it does not exist)."""
        if _depth > 16:
            return None
        cur = ""
        for part in [p for p in self.tree.norm(path).split("/") if p]:
            nxt = posixpath.join(cur, part) if cur else part
            node = self.lookup(nxt)
            if node is None:
                return None
            if node.kind == "link":
                target = node.entry.value if node.entry is not None else os.readlink(self._real(node.real_path))
                joined = posixpath.normpath("/" + posixpath.join(cur, target)).lstrip("/")
                cur = self.realpath(joined, _depth + 1)
                if cur is None:
                    return None
            else:
                cur = nxt
        return cur

    def lookup_follow(self, path):
        """lookup() following symlinks everywhere, the last component too (what open/opendir do)."""
        node = self.lookup(path)
        if node is None or node.kind != "link":
            return node
        real = self.realpath(path)
        return None if real is None else self.lookup(real)

    def listdir(self, path):
        node = self.lookup_follow(path)
        if node is None:
            raise _err(errno.ENOENT)
        if node.kind != "dir":
            raise _err(errno.ENOTDIR)
        names = set()
        if node.tree_path is not None:
            names.update(self.tree.listdir(node.tree_path))
        if node.real_path is not None:
            view = self.tree.norm(path)
            try:
                for name in os.listdir(self._real(node.real_path)):
                    if (posixpath.join(view, name) if view else name) not in self.tree.hidden:
                        names.add(name)
            except OSError:
                pass
        return sorted(names)

    def readlink(self, path):
        node = self.lookup(path)
        if node is None:
            raise _err(errno.ENOENT)
        if node.kind != "link":
            raise _err(errno.EINVAL)
        if node.entry is not None:
            return node.entry.value
        return os.readlink(self._real(node.real_path))

    def getattr(self, path):
        node = self.lookup(path)
        if node is None:
            raise _err(errno.ENOENT)
        if node.entry is None:
            st = os.lstat(self._real(node.real_path))
            return {"st_mode": st.st_mode, "st_nlink": st.st_nlink, "st_size": st.st_size, "st_uid": 0,
                    "st_gid": 0, "st_atime": st.st_atime, "st_mtime": st.st_mtime, "st_ctime": st.st_ctime}
        ent = node.entry
        if ent.kind == "dir":
            mode, size = stat.S_IFDIR | 0o755, 0
        elif ent.kind == "link":
            mode, size = stat.S_IFLNK | 0o777, len(ent.value)
        else:
            mode, size = stat.S_IFREG | ent.mode, 4096
        return {"st_mode": mode, "st_nlink": 2 if ent.kind == "dir" else 1, "st_size": size, "st_uid": 0,
                "st_gid": 0, "st_atime": self.mtime, "st_mtime": self.mtime, "st_ctime": self.mtime}

    # ------------------------------------------------------------ reads
    def check_open(self, path, write):
        node = self.lookup_follow(path)
        if node is None:
            raise _err(errno.ENOENT)
        if node.kind == "dir":
            raise _err(errno.EISDIR)
        if not write:
            if node.entry is not None and not node.entry.mode & 0o444:
                raise _err(errno.EACCES)
            return node
        if node.entry is not None:
            if not node.entry.mode & 0o222:
                raise _err(errno.EACCES)
            return node
        if not node.real_path.startswith(REAL_WRITABLE_PREFIX):
            raise _err(errno.EACCES)
        return node

    def read(self, path):
        node = self.check_open(path, write=False)
        overrides = self.overrides()
        # Resolving the path costs a lookup per component: only when an override has this file name.
        if overrides and posixpath.basename(self.tree.norm(path)) in self._override_names:
            value = overrides.get(self.realpath(path))
            if value is not None:
                return value.encode()
        if node.entry is None:
            with open(self._real(node.real_path), "rb") as fh:
                return fh.read()
        ent = node.entry
        if ent.attr is None:
            return ent.value.encode()
        return self._read_attr(node.tree_path, ent).encode()

    def _read_attr(self, tpath, ent):
        attr, ctx = ent.attr, ent.ctx
        with self.lock:
            if attr in ("stored", "bool01", "mtu"):
                return self.stored.get(tpath, ent.value)
            if attr == "port":
                port = self.fabric_state().get(f"{ctx['rdma_device']}/{ctx['port']}") or {}
                value = port.get(ctx["name"])
                return f"{value}\n" if value is not None else ent.value
            if attr == "mode":
                return self.hw.netdevs[ctx["netdev"]]["mode"] + "\n"
            if attr == "sriov_numvfs":
                return f"{self.numvfs[ctx['pci']]}\n"
            if attr == "einval":
                raise _err(errno.EINVAL)
            if attr in ("create_child", "delete_child", "driver_bind", "driver_unbind"):
                raise _err(errno.EACCES)
            return ent.value

    def fabric_state(self):
        """Port attributes written by hw.fabric's sync loop; re-read when the file changes."""
        if not self.state_dir:
            return {}
        path = os.path.join(self.state_dir, "fabric-state.json")
        try:
            mtime = os.stat(path).st_mtime_ns
        except OSError:
            return {}
        if self._fabric[0] != mtime:
            try:
                with open(path, encoding="utf-8") as fh:
                    data = json.load(fh)
                self._fabric = (mtime, data.get("ports") or {})
            except (OSError, ValueError):
                return self._fabric[1]
        return self._fabric[1]

    def overrides(self):
        """{canonical view path: value} from hw/overrides.json (labctl hw set), re-read when the file
        changes. Derived values: a port's gids/0 also changes the GID part of the `address` of the IPoIB
        netdevs on that port (unless that address is overridden itself)."""
        if not self.state_dir:
            return {}
        path = hwoverrides.path_for(self.state_dir)
        try:
            st = os.stat(path)
            key = (st.st_mtime_ns, st.st_ino, self.generation)
        except OSError:
            key = (None, None, self.generation)
        if self._overrides[0] == key:
            return self._overrides[1]
        try:
            raw = hwoverrides.load(self.state_dir) if key[0] is not None else {}
        except hwoverrides.OverrideError:
            return self._overrides[1]
        with self.lock:
            explicit = {}
            for given, value in raw.items():
                explicit[self.realpath(given) or self.tree.norm(given)] = value
            derived = {}
            for canon, value in explicit.items():
                m = hwoverrides.GID0.search(canon)
                if not m:
                    continue
                for nd in self.hw.netdevs.values():
                    ipo = nd.get("ipoib")
                    if not ipo or ipo.get("rdma_device") != m.group("dev") or \
                            int(ipo.get("port", 0)) != int(m.group("port")):
                        continue
                    ent = self.tree.get(f"{nd['dir']}/address")
                    new = hwoverrides.ipoib_address_with_gid(ent.value, value) if ent else None
                    if new:
                        derived[f"{nd['dir']}/address"] = new
            merged = dict(derived, **explicit)
            self._override_names = {posixpath.basename(k) for k in merged}
            self._overrides = (key, merged)
        return merged

    # ------------------------------------------------------------ writes
    def write(self, path, data):
        node = self.check_open(path, write=True)
        text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
        if node.entry is None:
            with open(self._real(node.real_path), "w", encoding="utf-8") as fh:
                fh.write(text)
            return len(data)
        ent = node.entry
        with self.lock:
            handler = getattr(self, f"_w_{ent.attr}", None) if ent.attr else None
            if handler is None:
                raise _err(errno.EACCES)
            handler(node.tree_path, ent, text)
            self._save_state()
        return len(data)

    def _w_stored(self, tpath, ent, text):
        value = text if text.endswith("\n") else text + "\n"
        if posixpath.basename(tpath) == "driver_override" and not text.strip():
            value = "(null)\n"
        self.stored[tpath] = value

    def _w_bool01(self, tpath, ent, text):
        if posixpath.basename(tpath) == "umcast":
            self.stored[tpath] = "1\n" if parse_scanf_i(text) else "0\n"
        else:
            self.stored[tpath] = "1\n" if parse_kstrtobool(text) else "0\n"

    def _w_mtu(self, tpath, ent, text):
        mtu = parse_kstrtou(text, 32)
        if mtu < 68 or mtu > 65520:
            raise _err(errno.EINVAL)
        self.stored[tpath] = f"{mtu}\n"

    def _w_mode(self, tpath, ent, text):
        name = ent.ctx["netdev"]
        nd = self.hw.netdevs[name]
        if text == nd["mode"] + "\n":
            return
        if text == "connected\n" and nd["ipoib"].get("connected_mode", True):
            nd["mode"] = "connected"
            self._set_mtu(name, 65520)
            return
        if text == "datagram\n":
            nd["mode"] = "datagram"
            self._set_mtu(name, min(self._ud_mtu(nd), self._current_mtu(name)))
            return
        raise _err(errno.EINVAL)

    @staticmethod
    def _ud_mtu(nd):
        # Datagram MTU = IB MTU - 4: the profile's initial MTU tells 2K (2044) or 4K (4092) IB MTU.
        return min(int(nd.get("mtu") or 2044), 4092)

    def _current_mtu(self, name):
        real = self._real(f"class/net/{name}/mtu")
        if real and os.path.exists(real):
            try:
                with open(real, encoding="utf-8") as fh:
                    return int(fh.read().strip())
            except (OSError, ValueError):
                pass
        tpath = f"{self.hw.netdevs[name]['dir']}/mtu"
        return int(self.stored.get(tpath, self.tree.get(tpath).value).strip())

    def _set_mtu(self, name, mtu):
        self.stored[f"{self.hw.netdevs[name]['dir']}/mtu"] = f"{mtu}\n"
        if self.netlink:
            self.netlink.set_mtu(name, mtu)

    def _w_create_child(self, tpath, ent, text):
        parent = ent.ctx["netdev"]
        pkey = parse_scanf_i(text)
        if pkey <= 0 or pkey > 0xFFFF or pkey == 0x8000:
            raise _err(errno.EINVAL)
        nd = self.hw.netdevs[parent]
        kids = self.children.setdefault(parent, {})
        if pkey == nd["pkey"] or pkey in kids:
            raise _err(errno.ENOTUNIQ)
        name = f"{parent}.{pkey:04x}"
        if len(name) > 15:
            raise _err(errno.EINVAL)
        ipo = dict(nd["ipoib"])
        ipo["qpn"] = int(ipo["qpn"]) + 1 + len(kids) + sum(len(v) for v in self.children.values())
        mtu = self._ud_mtu(nd)
        ndir = f"{nd['pci_dir']}/net/{name}"
        hwprofile.add_ipoib_netdev(self.tree, name, ndir, nd["pci_dir"], nd["port_guid"], ipo, mtu, pkey=pkey,
                                   parent=parent, ifindex=100 + len(kids), speed=nd.get("speed"))
        # Legacy children get mode/pkey/umcast/parent but no create_child/delete_child of their own.
        self.tree.remove(f"{ndir}/create_child")
        self.tree.remove(f"{ndir}/delete_child")
        self.tree.file(f"{ndir}/operstate", "down", weak=True)
        self.tree.file(f"{ndir}/carrier", None, weak=True, attr="einval")
        self.tree.file(f"{ndir}/flags", "0x1002", weak=True)
        self.hw.netdevs[name] = {"kind": "ib", "dir": ndir, "pci_dir": nd["pci_dir"], "ipoib": ipo,
                                 "port_guid": nd["port_guid"], "mode": "datagram", "mtu": mtu, "pkey": pkey,
                                 "parent": parent, "speed": nd.get("speed")}
        kids[pkey] = name
        self.generation += 1
        if parent in self.hw.ethtool:
            self.hw.ethtool[name] = dict(self.hw.ethtool[parent])
            self._write_ethtool()
        if self.netlink:
            self.netlink.add_child(parent, name, mtu)

    def _w_delete_child(self, tpath, ent, text):
        parent = ent.ctx["netdev"]
        pkey = parse_scanf_i(text)
        if pkey < 0 or pkey > 0xFFFF:
            raise _err(errno.EINVAL)
        kids = self.children.get(parent, {})
        name = kids.pop(pkey, None)
        if name is None:
            raise _err(errno.ENODEV)
        self.tree.remove(self.hw.netdevs[name]["dir"])
        self.tree.remove(f"class/net/{name}")
        self.tree.hidden.discard(f"devices/virtual/net/{name}")
        del self.hw.netdevs[name]
        self.generation += 1
        if self.hw.ethtool.pop(name, None) is not None:
            self._write_ethtool()
        if self.netlink:
            self.netlink.del_child(name)

    # SR-IOV ------------------------------------------------------------
    @staticmethod
    def vf_address(pf_address, offset, stride, index):
        dom, bus, devfn = pf_address.split(":")
        dev, fn = devfn.split(".")
        rid = (int(bus, 16) << 8) + (int(dev, 16) << 3) + int(fn) + offset + index * stride
        b, d, f = rid >> 8, (rid >> 3) & 0x1F, rid & 7
        return f"{dom}:{b:02x}:{d:02x}.{f}"

    def _w_sriov_numvfs(self, tpath, ent, text):
        addr = ent.ctx["pci"]
        pf = self.hw.pfs[addr]
        num = parse_kstrtou(text, 16)
        if num > int(pf["sriov"]["totalvfs"]):
            raise _err(errno.ERANGE)
        cur = self.numvfs[addr]
        if num == cur:
            return
        if num == 0:
            self._disable_vfs(addr)
            return
        if cur:
            raise _err(errno.EBUSY)
        self._enable_vfs(addr, num)

    def _vf_pci(self, pf):
        sr, pci = pf["sriov"], pf["pci"]
        return {"vendor": pci["vendor"], "device": "0x" + str(sr["vf_device"]).lower().replace("0x", ""),
                "subsystem_vendor": pci.get("subsystem_vendor", pci["vendor"]),
                "subsystem_device": sr.get("vf_subsystem_device", pci.get("subsystem_device", "0x0000")),
                "class": pci.get("class"), "numa_node": pci.get("numa_node", -1),
                "local_cpulist": pci.get("local_cpulist"), "local_cpus": pci.get("local_cpus")}

    def _enable_vfs(self, addr, num):
        pf = self.hw.pfs[addr]
        sr = pf["sriov"]
        autoprobe = self.stored.get(f"{pf['path']}/sriov_drivers_autoprobe", "1\n").strip() == "1"
        vpci = self._vf_pci(pf)
        for i in range(num):
            vaddr = self.vf_address(addr, int(sr.get("offset", 1)), int(sr.get("stride", 1)), i)
            vpath = f"devices/{pf['parent']}/{vaddr}"
            hwprofile.add_pci_function(self.tree, vpath, vaddr, vpci, sr.get("vf_driver") if autoprobe else None)
            self.tree.link(f"{vpath}/physfn", pf["path"])
            self.tree.link(f"{pf['path']}/virtfn{i}", vpath)
            # mlx5 per-VF IB settings (MLNX_OFED/mlx5 sysfs): GUIDs start zero, policy Down.
            sdir = f"{pf['path']}/sriov/{i}"
            self.tree.file(f"{sdir}/node", "00:00:00:00:00:00:00:00", mode=0o644, attr="stored")
            self.tree.file(f"{sdir}/port", "00:00:00:00:00:00:00:00", mode=0o644, attr="stored")
            self.tree.file(f"{sdir}/policy", "Down", mode=0o644, attr="stored")
        self.numvfs[addr] = num

    def _disable_vfs(self, addr):
        pf = self.hw.pfs[addr]
        sr = pf["sriov"]
        for i in range(self.numvfs[addr]):
            vaddr = self.vf_address(addr, int(sr.get("offset", 1)), int(sr.get("stride", 1)), i)
            vpath = f"devices/{pf['parent']}/{vaddr}"
            drv = self.tree.get(f"{vpath}/driver")
            if drv is not None:
                self.tree.remove(f"bus/pci/drivers/{posixpath.basename(drv.value)}/{vaddr}")
            self.tree.remove(vpath)
            self.tree.remove(f"bus/pci/devices/{vaddr}")
            self.tree.remove(f"{pf['path']}/virtfn{i}")
            for key in [k for k in self.stored if k.startswith(vpath + "/") or
                        k.startswith(f"{pf['path']}/sriov/{i}/")]:
                del self.stored[key]
        self.tree.remove(f"{pf['path']}/sriov")
        self.numvfs[addr] = 0

    # Driver binding (bus/pci/drivers/<drv>/bind|unbind) -------------------
    def _pci_function(self, addr):
        link = self.tree.get(f"bus/pci/devices/{addr}")
        if link is None:
            return None
        return self.tree.resolve(f"bus/pci/devices/{addr}")

    def _w_driver_unbind(self, tpath, ent, text):
        addr = text.strip()
        if self.tree.get(f"bus/pci/drivers/{ent.ctx['driver']}/{addr}") is None:
            raise _err(errno.ENODEV)
        path = self._pci_function(addr)
        pci = self._pci_attrs(path)
        hwprofile.set_pci_driver(self.tree, path, addr, None, pci)

    def _w_driver_bind(self, tpath, ent, text):
        addr = text.strip()
        path = self._pci_function(addr)
        if path is None:
            raise _err(errno.ENODEV)
        if self.tree.get(f"{path}/driver") is not None:
            raise _err(errno.EBUSY)
        override = self.stored.get(f"{path}/driver_override", "(null)\n").strip()
        driver = ent.ctx["driver"]
        if override != "(null)" and override != driver:
            raise _err(errno.ENODEV)
        hwprofile.set_pci_driver(self.tree, path, addr, driver, self._pci_attrs(path))

    def _pci_attrs(self, path):
        attrs = {}
        for name in ("vendor", "device", "subsystem_vendor", "subsystem_device", "class"):
            node = self.tree.get(f"{path}/{name}")
            attrs[name] = node.value.strip() if node else None
        return attrs

    # ------------------------------------------------------------ persistence for inspection
    def _write_ethtool(self):
        if not self.ethtool_path:
            return
        tmp = self.ethtool_path + ".tmp"
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(hwprofile.ethtool_table(self.hw.ethtool))
        os.chmod(tmp, 0o644)
        os.replace(tmp, self.ethtool_path)

    def _save_state(self):
        if not self.state_dir:
            return
        state = {"numvfs": self.numvfs, "children": {p: {f"0x{k:04x}": v for k, v in c.items()}
                                                     for p, c in self.children.items()},
                 "modes": {n: d["mode"] for n, d in self.hw.netdevs.items() if "mode" in d}}
        tmp = os.path.join(self.state_dir, "state.json.tmp")
        try:
            with open(tmp, "w", encoding="utf-8") as fh:
                json.dump(state, fh, indent=1)
            os.replace(tmp, os.path.join(self.state_dir, "state.json"))
        except OSError:
            pass
