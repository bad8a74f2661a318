# -*- coding: utf-8 -*-
# Copyright: hpcnet.infiniband contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The host seam: the one way our modules see and change a host.

Everything a module reads from sysfs, every command it runs and every file it writes passes through
a ``Host``. Unit tests give it a fixture tree (``sysfs_root``/``fs_root``) and a fake command runner;
the lab gives it a node whose /sys is served by the lab. Modules never special-case either.

Paths given to ``read``/``listdir``/``write`` are relative to ``sysfs_root`` (``"class/net/ib0/type"``).
Symlinks are resolved by hand so that nothing is ever read outside ``sysfs_root`` (captured trees use
relative links; a hostile or broken tree may point anywhere or loop). One resolver (``_Resolver``) serves
the path-based methods and ``opendir``/``SysDir``; ``cached()`` lets readers of many attributes share it.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import signal
import stat
import tempfile

__all__ = [
    "ATTR_MAX_BYTES",
    "oversized",
    "Host",
    "HostError",
    "SysDir",
    "valid_ifname",
    "valid_pci_address",
    "IFNAME_RE",
    "PCI_ADDRESS_RE",
]

# Kernel rule (dev_valid_name): 1..15 bytes, not "." or "..", no "/", ":" or whitespace.
# We are a little stricter (printable ASCII only) because names end up in paths and argv.
IFNAME_RE = re.compile(r"^(?!\.{1,2}$)[A-Za-z0-9_.@+\-]{1,15}$")
# PCI address as the kernel prints it: domain:bus:slot.function, lower-case hex.
PCI_ADDRESS_RE = re.compile(r"^[0-9a-f]{4,8}:[0-9a-f]{2}:[0-1][0-9a-f]\.[0-7]$")
# RDMA device names (mlx5_0, qib0, rxe0, ibp59s0): same shape as netdev names, up to 63 bytes.
RDMADEV_RE = re.compile(r"^[A-Za-z0-9_.\-]{1,63}$")

MAX_LINK_DEPTH = 40
# A sysfs attribute fits one page (the kernel's show() buffer). Reads take one byte more, so that a
# larger file (a hostile or broken capture) is recognised and refused instead of being cut to a page.
ATTR_MAX_BYTES = 4096
MAX_READ_BYTES = ATTR_MAX_BYTES + 1


def oversized(data):
    """True when raw attribute bytes are larger than a sysfs attribute can be (refuse, do not cut)."""
    return isinstance(data, bytes) and len(data) > ATTR_MAX_BYTES


def valid_ifname(name):
    return isinstance(name, str) and bool(IFNAME_RE.match(name))


def valid_pci_address(address):
    return isinstance(address, str) and bool(PCI_ADDRESS_RE.match(address))


def valid_rdma_device(name):
    return isinstance(name, str) and bool(RDMADEV_RE.match(name)) and name not in (".", "..")


class HostError(Exception):
    """A read, write or command failed. ``errno`` is set for OS errors (EBUSY, ERANGE, ETIMEDOUT...)."""

    def __init__(self, message, errno_value=None, path=None):
        super().__init__(message)
        self.errno = errno_value
        self.path = path


class _Timeout(Exception):
    pass


def _on_alarm(signum, frame):
    raise _Timeout()


class Host:
    """Read and change one host through sysfs, commands and files.

    :param sysfs_root: where sysfs is (``/sys`` live, or the ``sys/`` folder of a capture).
    :param fs_root: prefix for ordinary files written or read with ``read_file``/``write_file``
        (``/`` live; a temporary directory in unit tests).
    :param runner: callable ``runner(argv, timeout) -> (rc, stdout, stderr)``; ``None`` means
        commands are not available (snapshots), and ``run`` raises ``HostError``.
    :param live: True when this is the running host (ioctls and commands are meaningful).
    """

    def __init__(self, sysfs_root="/sys", fs_root="/", runner=None, live=None, ethtool=None):
        self.sysfs_root = os.path.realpath(sysfs_root)
        self.fs_root = os.path.realpath(fs_root)
        self.runner = runner
        self.live = (self.sysfs_root == "/sys") if live is None else live
        # ethtool(ifname) -> dict(driver=..., bus_info=..., version=..., fw_version=...) or None.
        self._ethtool = ethtool if ethtool is not None else (_ethtool_drvinfo if self.live else None)
        self.warnings = []

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_module(cls, module, sysfs_root="/sys", fs_root="/"):
        """A Host whose commands run through ``module.run_command`` (argv lists only, never a shell)."""

        def runner(argv, timeout=30):
            if not isinstance(argv, (list, tuple)):
                raise HostError("internal error: commands are argv lists")
            exe = module.get_bin_path(argv[0]) if not os.path.isabs(argv[0]) else argv[0]
            if not exe:
                return 127, "", "%s: command not found" % argv[0]
            full = ["timeout", "--kill-after=5", str(int(timeout)), exe] + list(argv[1:])
            if not module.get_bin_path("timeout"):
                full = [exe] + list(argv[1:])
            return module.run_command(full, check_rc=False)

        return cls(sysfs_root=sysfs_root, fs_root=fs_root, runner=runner)

    def warn(self, message):
        if message not in self.warnings:
            self.warnings.append(message)

    # ------------------------------------------------------------------ path handling
    _memo = None  # the _Resolver shared inside ``cached()``

    @contextlib.contextmanager
    def cached(self):
        """Within this block every read shares one memo of the tree's shape (which paths are
        directories, files or links, and where links lead): for readers of many attributes (facts)
        that do not change the tree meanwhile. Attribute values are never cached. Nests."""
        if self._memo is not None:
            yield self
            return
        self._memo = _Resolver(self.sysfs_root)
        try:
            yield self
        finally:
            self._memo = None

    def _found(self, relpath, follow_last=True):
        """(resolver, link-free path relative to sysfs_root, is_dir) of ``relpath``, or None."""
        resolver = self._memo if self._memo is not None else _Resolver(self.sysfs_root)
        found = resolver.resolve(str(relpath), "", follow_last)
        return None if found is None else (resolver, found[0], found[1])

    def _resolve(self, relpath, follow_last=True):
        """Absolute path of ``relpath`` inside sysfs_root with links resolved by hand, or None.

        Returns None when the path leaves the root, loops, or does not exist.
        """
        found = self._found(relpath, follow_last)
        return None if found is None else found[0].full(found[1])

    def relpath(self, relpath):
        """Path of ``relpath`` relative to sysfs_root after resolving links, or None."""
        found = self._found(relpath)
        return None if found is None else found[1]

    def exists(self, relpath):
        return self._found(relpath) is not None

    def isdir(self, relpath):
        found = self._found(relpath)
        return found is not None and found[2]

    def _parent_dir(self, relpath):
        parent, _sep, name = str(relpath).rstrip("/").rpartition("/")
        sysdir = self.opendir(parent)
        return (sysdir, name) if sysdir is not None and name and SysDir.valid_name(name) else (None, None)

    def islink(self, relpath):
        sysdir, name = self._parent_dir(relpath)
        return sysdir is not None and sysdir.islink(name)

    def readlink_name(self, relpath):
        """Last component of a link's target (``device/driver`` -> ``mlx4_core``), or None."""
        sysdir, name = self._parent_dir(relpath)
        return sysdir.readlink_name(name) if sysdir is not None else None

    def opendir(self, relpath):
        """A ``SysDir`` for directory ``relpath`` (links resolved by hand, inside the root), or None
        when it is missing, not a directory, loops or leads outside ``sysfs_root``.

        Reading many attributes of one directory through it costs one open per attribute instead of
        a walk of every path component per attribute. The handle never caches attribute values; it
        and the handles opened from it share one memo of the tree's shape (``cached()``).
        """
        found = self._found(relpath)
        if found is None or not found[2]:
            return None
        return SysDir(found[0], found[1])

    # ------------------------------------------------------------------ reads
    def read(self, relpath):
        """Stripped text of a sysfs attribute, or None when missing, unreadable, empty or binary."""
        found = self._found(relpath)
        if found is None or found[2]:
            return None
        data = _read_attr(found[0].full(found[1]), None, MAX_READ_BYTES)
        if oversized(data):
            self.warn("%s: larger than a sysfs attribute (%d bytes); ignored" % (relpath, ATTR_MAX_BYTES))
            return None
        return _decode_attr(data)

    def read_int(self, relpath, base=0):
        """Integer value of an attribute (``0x1b``, ``42``, ``4: ACTIVE`` -> 4), or None."""
        return _int_token(self.read(relpath), base)

    def listdir(self, relpath):
        """Sorted names in a directory (links included, not followed), [] when missing."""
        sysdir = self.opendir(relpath)
        return sysdir.listdir() if sysdir is not None else []

    # ------------------------------------------------------------------ writes (sysfs)
    def write(self, relpath, value, timeout=30):
        """Write ``value`` to a sysfs attribute, bounded by ``timeout`` seconds.

        Raises HostError with ``errno`` set (EBUSY, ERANGE, EINVAL, ETIMEDOUT...) on failure.
        The attribute must already exist: sysfs never creates files.
        """
        full = self._resolve(relpath)
        if full is None or not os.path.isfile(full):
            raise HostError("%s does not exist" % relpath, errno.ENOENT, relpath)
        data = str(value)
        if not data.endswith("\n"):
            data += "\n"
        old_handler = None
        use_alarm = timeout and hasattr(signal, "SIGALRM")
        try:
            if use_alarm:
                old_handler = signal.signal(signal.SIGALRM, _on_alarm)
                signal.setitimer(signal.ITIMER_REAL, float(timeout))
            fd = os.open(full, os.O_WRONLY)
            try:
                os.write(fd, data.encode("ascii"))
            finally:
                os.close(fd)
        except _Timeout:
            raise HostError("writing %s timed out after %ss" % (relpath, timeout), errno.ETIMEDOUT, relpath)
        except OSError as exc:
            raise HostError(
                "writing %r to %s failed: %s" % (str(value), relpath, os.strerror(exc.errno or 0)),
                exc.errno,
                relpath,
            )
        finally:
            if use_alarm:
                signal.setitimer(signal.ITIMER_REAL, 0)
                signal.signal(signal.SIGALRM, old_handler or signal.SIG_DFL)

    # ------------------------------------------------------------------ ordinary files
    def file_path(self, path):
        """Absolute path of an ordinary file (``/etc/modprobe.d/x.conf``) under fs_root."""
        if not os.path.isabs(path) or "\x00" in path:
            raise HostError("file paths must be absolute: %r" % path)
        norm = os.path.normpath(path)
        return os.path.join(self.fs_root, norm.lstrip("/")) if self.fs_root != "/" else norm

    def read_file(self, path):
        """Whole text of an ordinary file, or None when it does not exist."""
        try:
            with open(self.file_path(path), "r", encoding="utf-8") as handle:
                return handle.read()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise HostError("cannot read %s: %s" % (path, exc.strerror), exc.errno, path)

    def write_file(self, path, content, mode=0o644):
        """Write a file atomically (temp file + rename) with an explicit mode; creates parents 0755."""
        target = self.file_path(path)
        directory = os.path.dirname(target)
        try:
            os.makedirs(directory, mode=0o755, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".hpcnet-", dir=directory)
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as handle:
                    handle.write(content)
                    handle.flush()
                    os.fsync(handle.fileno())
                os.chmod(tmp, mode)
                os.replace(tmp, target)
            except BaseException:
                if os.path.exists(tmp):
                    os.unlink(tmp)
                raise
        except OSError as exc:
            raise HostError("cannot write %s: %s" % (path, exc.strerror), exc.errno, path)

    def remove_file(self, path):
        try:
            os.unlink(self.file_path(path))
            return True
        except FileNotFoundError:
            return False
        except OSError as exc:
            raise HostError("cannot remove %s: %s" % (path, exc.strerror), exc.errno, path)

    # ------------------------------------------------------------------ commands
    def has_commands(self):
        return self.runner is not None

    def run(self, argv, timeout=30):
        """Run an argv list (never a shell string). Returns (rc, stdout, stderr)."""
        if self.runner is None:
            raise HostError("commands are not available on this host view (%s)" % argv[0])
        if not isinstance(argv, (list, tuple)) or not argv:
            raise HostError("internal error: commands are non-empty argv lists")
        return self.runner(list(argv), timeout)

    # ------------------------------------------------------------------ ethtool
    def ethtool_drvinfo(self, ifname):
        """What ``ethtool -i IFNAME`` says (driver, bus_info, version, fw_version), or None."""
        if self._ethtool is None or not valid_ifname(ifname):
            return None
        try:
            return self._ethtool(ifname)
        except Exception:  # pylint: disable=broad-except
            return None


# O_NOFOLLOW: an attribute that is a link is never followed by open(); it is resolved by hand (inside
# the root). O_NONBLOCK/O_NOCTTY: a FIFO or device node in a hostile capture neither blocks nor becomes
# our terminal; reading a directory fails (EISDIR). Real sysfs attributes are regular files.
_O_ATTR = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | getattr(os, "O_CLOEXEC", 0)
_O_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
# What a path below the root is (_Resolver.kind); a link is its target text instead.
_DIR, _FILE, _MISSING, _LINK = object(), object(), object(), object()
# What open(O_NOFOLLOW) fails with on a link (ELOOP; EMLINK on some BSDs).
_LINK_ERRNOS = (errno.ELOOP, errno.EMLINK)
_BAD_NAMES = frozenset(("", ".", ".."))


def _read_attr(path, dir_fd, limit):
    """Bytes of the attribute ``path`` (relative to ``dir_fd`` when given), None, or _LINK when it is
    a symlink (never followed here)."""
    try:
        fd = os.open(path, _O_ATTR, dir_fd=dir_fd)
    except OSError as exc:
        return _LINK if exc.errno in _LINK_ERRNOS else None
    except ValueError:
        return None
    try:
        return os.read(fd, limit)
    except OSError:
        return None
    finally:
        os.close(fd)


def _decode_attr(data):
    """Attribute bytes -> stripped text or None, exactly as ``Host.read`` decodes them."""
    if data is None or data is _LINK:
        return None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = data.decode("latin-1")
    if "\x00" in text:
        text = text.replace("\x00", "")
    text = text.strip()
    return text if text else None


def _int_token(text, base):
    if text is None:
        return None
    token = text.split(":", 1)[0].strip().split()[0] if text.strip() else ""
    try:
        return int(token, base)
    except ValueError:
        return None


class _Resolver:
    """Resolves paths below ``root`` by hand: links followed inside the root only, None on loops.

    Works on link-free paths relative to the root ("" is the root itself). Memoises what each path is
    (one ``lstat``/``readlink`` per path) and each resolution, so shared prefixes such as
    ``devices/pci0000:00`` are looked at once: a resolver lives for one call, one ``SysDir`` family
    or one ``Host.cached()`` block, while the tree's shape does not change.
    """

    __slots__ = ("root", "prefix", "kinds", "_resolved")

    def __init__(self, root):
        self.root = root
        self.prefix = root.rstrip("/") + "/"
        self.kinds = {}
        self._resolved = {}

    def full(self, real):
        return (self.prefix + real) if real else self.root

    def kind(self, path):
        """_DIR, _FILE, _MISSING, or a link's target text, of ``path`` (not empty, link-free parent)."""
        kind = self.kinds.get(path)
        if kind is None:
            full = self.prefix + path
            try:
                mode = os.lstat(full).st_mode
            except (OSError, ValueError):
                kind = _MISSING
            else:
                if stat.S_ISDIR(mode):
                    kind = _DIR
                elif stat.S_ISLNK(mode):
                    try:
                        kind = os.readlink(full) or _MISSING
                    except OSError:
                        kind = _MISSING
                else:
                    kind = _FILE
            self.kinds[path] = kind
        return kind

    def inside(self, target):
        """Absolute link target -> path relative to the root, or None when it points outside.

        An absolute link in a capture points into the capturing host's /sys."""
        if target == "/sys" or target.startswith("/sys/"):
            return target[4:]
        if self.root != "/" and (target == self.root or target.startswith(self.prefix)):
            return target[len(self.root):]
        return None

    def resolve(self, rel, base="", follow_last=True):
        """(link-free path relative to the root, is_dir) of ``base``/``rel``, or None (missing, loop,
        outside the root). ``base`` must be a link-free path below the root (a previous result)."""
        key = (base, rel, follow_last)
        try:
            return self._resolved[key]
        except KeyError:
            pass
        result = self._walk(base, rel, follow_last)
        self._resolved[key] = result
        return result

    def _walk(self, current, rel, follow_last):
        pending = [p for p in rel.split("/") if p not in ("", ".")]
        pending.reverse()  # a stack: next component last
        depth = 0
        is_dir = True
        kinds = self.kinds
        while pending:
            part = pending.pop()
            if part == "..":
                if not current:
                    return None  # escapes the root
                current = current.rpartition("/")[0]
                continue
            path = (current + "/" + part) if current else part
            kind = kinds.get(path)
            if kind is None:
                kind = self.kind(path)
            if kind is _DIR:
                current = path
            elif kind is _FILE:
                if pending:
                    return None
                current, is_dir = path, False
            elif kind is _MISSING:
                return None
            elif not pending and not follow_last:
                return path, False
            else:
                depth += 1
                if depth > MAX_LINK_DEPTH:
                    return None
                if kind.startswith("/"):
                    kind = self.inside(kind)
                    if kind is None:
                        return None
                    current = ""
                target = [p for p in kind.split("/") if p not in ("", ".")]
                target.reverse()
                pending.extend(target)
        return current, is_dir


class SysDir:
    """A sysfs directory resolved once (``Host.opendir``); its entries are read by single name.

    ``rel`` is the directory's link-free path relative to ``sysfs_root``, ``path`` the absolute one.
    Names must be single path components (no ``/``, not ``.``/``..``, no NUL): anything else raises
    ``HostError``, so a name read from a hostile tree cannot walk elsewhere. Attributes are opened
    with ``O_NOFOLLOW``: an attribute that is itself a symlink is resolved by hand, which refuses
    loops and targets outside ``sysfs_root`` (the read then gives None).
    Results agree with the Host's path-based methods (``read``, ``read_int``, ``listdir``,
    ``readlink_name``, ``exists``, ``islink``, ``isdir``) for ``rel + "/" + name``.
    """

    __slots__ = ("resolver", "rel", "path")

    def __init__(self, resolver, rel):
        self.resolver = resolver
        self.rel = rel
        self.path = resolver.full(rel)

    def __repr__(self):
        return "SysDir(%r)" % (self.rel or ".")

    @staticmethod
    def valid_name(name):
        return isinstance(name, str) and name not in ("", ".", "..") and "/" not in name and "\x00" not in name

    def _entry(self, name):
        """Path of entry ``name`` relative to the root (``name`` checked)."""
        if not self.valid_name(name):
            raise HostError("invalid sysfs entry name %r: one path component expected" % (name,))
        return (self.rel + "/" + name) if self.rel else name

    def read_bytes(self, names, limit=MAX_READ_BYTES):
        """{name: raw bytes or None} of attributes ``names``, read with one directory open. None when
        missing, unreadable, a directory, or a link that loops or leaves the root. At most ``limit``
        bytes each: with the default, ``oversized(data)`` tells a file larger than a page."""
        names = list(names)
        try:
            joined = "/".join(names)  # checks every name at once: this reads whole P_Key tables
        except TypeError:
            joined = None
        if joined is None or joined.count("/") != len(names) - 1 or "\x00" in joined or (
                not _BAD_NAMES.isdisjoint(names)):
            for name in names:
                self._entry(name)  # raises for the bad one
        if len(names) < 2:
            if not names:
                return {}
            data = _read_attr(self.path + "/" + names[0], None, limit)
            return {names[0]: self._read_link(names[0], limit) if data is _LINK else data}
        out = dict.fromkeys(names)
        try:
            dir_fd = os.open(self.path, _O_DIR)
        except (OSError, ValueError):
            return out
        opener, reader, closer = os.open, os.read, os.close
        try:
            for name in names:
                try:
                    fd = opener(name, _O_ATTR, dir_fd=dir_fd)
                except OSError as exc:
                    if exc.errno in _LINK_ERRNOS:
                        out[name] = self._read_link(name, limit)
                    continue
                try:
                    out[name] = reader(fd, limit)
                except OSError:
                    pass
                finally:
                    closer(fd)
        finally:
            os.close(dir_fd)
        return out

    def _read_link(self, name, limit):
        # A symlinked attribute: followed only by hand, inside the root.
        found = self.resolver.resolve(name, self.rel)
        if found is None or found[1]:
            return None
        data = _read_attr(self.resolver.full(found[0]), None, limit)
        return None if data is _LINK else data

    def read(self, name):
        """Stripped text of attribute ``name``, or None (missing, unreadable, not a regular file,
        empty, larger than a page, a link that loops or leaves the root)."""
        data = self.read_bytes((name,))[name]
        return None if oversized(data) else _decode_attr(data)

    def read_int(self, name, base=0):
        """Integer value of attribute ``name`` (``0x1b``, ``42``, ``4: ACTIVE`` -> 4), or None."""
        return _int_token(self.read(name), base)

    def listdir(self):
        """Sorted entry names (links included, not followed), [] when unreadable."""
        try:
            return sorted(os.listdir(self.path))
        except OSError:
            return []

    def exists(self, name):
        """True when entry ``name`` is there (a link counts only when it resolves inside the root)."""
        kind = self.resolver.kind(self._entry(name))
        if isinstance(kind, str):
            return self.resolver.resolve(name, self.rel) is not None
        return kind is not _MISSING

    def isdir(self, name):
        """True when entry ``name`` is a directory or a link to one (inside the root)."""
        self._entry(name)
        found = self.resolver.resolve(name, self.rel)
        return found is not None and found[1]

    def islink(self, name):
        return isinstance(self.resolver.kind(self._entry(name)), str)

    def readlink(self, name):
        """Target text of link ``name``, or None."""
        kind = self.resolver.kind(self._entry(name))
        return kind if isinstance(kind, str) else None

    def readlink_name(self, name):
        """Last component of link ``name``'s target (``driver`` -> ``mlx4_core``), or None."""
        target = self.readlink(name)
        return (os.path.basename(target.rstrip("/")) or None) if target else None

    def unresolved_reason(self, name):
        """Why link ``name`` does not resolve: 'escapes' (the root), 'loop', 'dangling', or None when
        it is not a link."""
        target = self.readlink(name)
        if target is None:
            return None
        if target.startswith("/"):
            lexical = self.resolver.inside(target)
            if lexical is None:
                return "escapes"
            lexical = os.path.normpath(lexical.lstrip("/") or ".")
        else:
            lexical = os.path.normpath(os.path.join(self.rel, target))
        if lexical == ".." or lexical.startswith("../"):
            return "escapes"
        return "loop" if os.path.lexists(self.resolver.full(lexical)) else "dangling"

    def opendir(self, name):
        """``SysDir`` of entry ``name`` (a directory or a link to one, resolved inside the root)."""
        entry = self._entry(name)
        if self.resolver.kind(entry) is _DIR:
            return SysDir(self.resolver, entry)
        found = self.resolver.resolve(name, self.rel)
        return SysDir(self.resolver, found[0]) if found is not None and found[1] else None


# ---------------------------------------------------------------------- live ethtool ioctl
SIOCETHTOOL = 0x8946
ETHTOOL_GDRVINFO = 0x00000003
# struct ethtool_drvinfo: cmd u32, driver[32], version[32], fw_version[32], bus_info[32],
# erom_version[32], reserved2[12], n_priv_flags, n_stats, testinfo_len, eedump_len, regdump_len (u32)
_DRVINFO_SIZE = 4 + 32 * 5 + 12 + 4 * 5


def _ethtool_drvinfo(ifname):
    import array
    import fcntl
    import socket
    import struct

    buf = array.array("B", struct.pack("I", ETHTOOL_GDRVINFO) + b"\x00" * (_DRVINFO_SIZE - 4))
    addr, _length = buf.buffer_info()
    ifreq = struct.pack("16sP", ifname.encode("ascii"), addr)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        fcntl.ioctl(sock.fileno(), SIOCETHTOOL, ifreq)
    except OSError:
        return None
    finally:
        sock.close()
    raw = buf.tobytes()

    def field(index):
        start = 4 + 32 * index
        return raw[start:start + 32].split(b"\x00", 1)[0].decode("ascii", "replace") or None

    return {"driver": field(0), "version": field(1), "fw_version": field(2), "bus_info": field(3)}
