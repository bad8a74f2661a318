# -*- coding: utf-8 -*-
# Copyright: hpcnet.infiniband contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The host seam: the one way our modules see and change a host.

Everything a module reads from sysfs, every command it runs and every file it writes passes through
a ``Host``. Unit tests give it a fixture tree (``sysfs_root``/``fs_root``) and a fake command runner;
the lab gives it a node whose /sys is served by the lab. Modules never special-case either.

Paths given to ``read``/``listdir``/``write`` are relative to ``sysfs_root`` (``"class/net/ib0/type"``).
Symlinks are resolved by hand so that nothing is ever read outside ``sysfs_root`` (captured trees use
relative links; a hostile or broken tree may point anywhere or loop).
"""

from __future__ import annotations

import errno
import os
import re
import signal
import stat
import tempfile

__all__ = [
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
MAX_READ_BYTES = 64 * 1024


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
    def _resolve(self, relpath, follow_last=True):
        """Absolute path of ``relpath`` inside sysfs_root with links resolved by hand, or None.

        Returns None when the path leaves the root, loops, or does not exist.
        """
        parts = [p for p in str(relpath).split("/") if p not in ("", ".")]
        resolved = []  # components below the root, all real (non-link) directories/files
        depth = 0
        pending = list(parts)
        while pending:
            part = pending.pop(0)
            if part == "..":
                if not resolved:
                    return None  # escapes the root
                resolved.pop()
                continue
            candidate = os.path.join(self.sysfs_root, *(resolved + [part]))
            try:
                st = os.lstat(candidate)
            except OSError:
                return None
            if stat.S_ISLNK(st.st_mode) and (pending or follow_last):
                depth += 1
                if depth > MAX_LINK_DEPTH:
                    return None
                try:
                    target = os.readlink(candidate)
                except OSError:
                    return None
                if os.path.isabs(target):
                    # An absolute link in a capture points into the capturing host's /sys.
                    if target == "/sys" or target.startswith("/sys/"):
                        target_parts = [p for p in target[len("/sys"):].split("/") if p]
                        resolved = []
                    elif self.sysfs_root != "/" and (target + "/").startswith(self.sysfs_root + "/"):
                        target_parts = [p for p in target[len(self.sysfs_root):].split("/") if p]
                        resolved = []
                    else:
                        return None
                else:
                    target_parts = [p for p in target.split("/") if p not in ("", ".")]
                pending = target_parts + pending
                continue
            resolved.append(part)
        return os.path.join(self.sysfs_root, *resolved) if resolved else self.sysfs_root

    def relpath(self, relpath):
        """Path of ``relpath`` relative to sysfs_root after resolving links, or None."""
        full = self._resolve(relpath)
        if full is None:
            return None
        rel = os.path.relpath(full, self.sysfs_root)
        return "" if rel == "." else rel

    def exists(self, relpath):
        return self._resolve(relpath) is not None

    def isdir(self, relpath):
        full = self._resolve(relpath)
        return full is not None and os.path.isdir(full)

    def islink(self, relpath):
        full = self._resolve(os.path.dirname(relpath) or ".")
        if full is None:
            return False
        return os.path.islink(os.path.join(full, os.path.basename(relpath)))

    def readlink_name(self, relpath):
        """Last component of a link's target (``device/driver`` -> ``mlx4_core``), or None."""
        parent = self._resolve(os.path.dirname(relpath) or ".")
        if parent is None:
            return None
        try:
            target = os.readlink(os.path.join(parent, os.path.basename(relpath)))
        except OSError:
            return None
        name = os.path.basename(target.rstrip("/"))
        return name or None

    def opendir(self, relpath):
        """A ``SysDir`` for directory ``relpath`` (links resolved once, by hand, inside the root),
        or None when it is missing, not a directory, loops or leads outside ``sysfs_root``.

        Reading many attributes of one directory through it costs one open per attribute instead of
        a walk of every path component per attribute (what ``read`` does). The handle does not
        cache attribute values; the directory is resolved when ``opendir`` is called.
        """
        full = self._resolve(relpath)
        if full is None or not os.path.isdir(full):
            return None
        rel = os.path.relpath(full, self.sysfs_root)
        return SysDir(self, "" if rel == "." else rel, full)

    # ------------------------------------------------------------------ reads
    def read(self, relpath):
        """Stripped text of a sysfs attribute, or None when missing, unreadable, empty or binary."""
        full = self._resolve(relpath)
        if full is None or not os.path.isfile(full):
            return None
        try:
            with open(full, "rb") as handle:
                data = handle.read(MAX_READ_BYTES)
        except OSError:
            return None
        return _decode_attr(data)

    def read_int(self, relpath, base=0):
        """Integer value of an attribute (``0x1b``, ``42``, ``4: ACTIVE`` -> 4), or None."""
        return _int_token(self.read(relpath), base)

    def listdir(self, relpath):
        """Sorted names in a directory (links included, not followed), [] when missing."""
        full = self._resolve(relpath)
        if full is None or not os.path.isdir(full):
            return []
        try:
            return sorted(os.listdir(full))
        except OSError:
            return []

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


# O_NOFOLLOW: an attribute that is a link is never followed by open(); SysDir hands it to the Host's
# resolver (inside the root). O_NONBLOCK/O_NOCTTY: a FIFO or device node in a hostile capture neither
# blocks nor becomes our terminal.
_O_ATTR = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | getattr(os, "O_CLOEXEC", 0)


def _decode_attr(data):
    """Attribute bytes -> stripped text or None, exactly as ``Host.read`` decodes them."""
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


class SysDir:
    """A sysfs directory resolved once (``Host.opendir``); its entries are read by single name.

    ``rel`` is the directory's link-free path relative to ``sysfs_root``, ``path`` the absolute one.
    Names must be single path components (no ``/``, not ``.``/``..``, no NUL): anything else raises
    ``HostError``, so a name read from a hostile tree cannot walk elsewhere. Attributes are opened
    with ``O_NOFOLLOW``: an attribute that is itself a symlink is resolved by the Host's resolver,
    which refuses loops and targets outside ``sysfs_root`` (the read then gives None).
    Results agree with the Host's path-based methods (``read``, ``read_int``, ``listdir``,
    ``readlink_name``, ``exists``, ``islink``) for ``rel + "/" + name``.
    """

    __slots__ = ("host", "rel", "path")

    def __init__(self, host, rel, path):
        self.host = host
        self.rel = rel
        self.path = path

    def __repr__(self):
        return "SysDir(%r)" % (self.rel or ".")

    @staticmethod
    def _check(name):
        if not isinstance(name, str) or not name or name in (".", "..") or "/" in name or "\x00" in name:
            raise HostError("invalid sysfs entry name %r: one path component expected" % (name,))
        return name

    def _relname(self, name):
        return (self.rel + "/" + name) if self.rel else name

    def read(self, name):
        """Stripped text of attribute ``name``, or None (missing, unreadable, not a regular file,
        empty, a link that loops or leaves the root)."""
        full = self.path + "/" + self._check(name)
        try:
            fd = os.open(full, _O_ATTR)
        except OSError as exc:
            if exc.errno == errno.ELOOP or (exc.errno == errno.EMLINK and os.path.islink(full)):
                # A symlinked attribute: follow it only through the resolver (inside the root).
                return self.host.read(self._relname(name))
            return None
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                return None
            data = os.read(fd, MAX_READ_BYTES)
        except OSError:
            return None
        finally:
            os.close(fd)
        return _decode_attr(data)

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
        full = self.path + "/" + self._check(name)
        if os.path.islink(full):
            return self.host.exists(self._relname(name))
        return os.path.lexists(full)

    def islink(self, name):
        return os.path.islink(self.path + "/" + self._check(name))

    def readlink_name(self, name):
        """Last component of link ``name``'s target (``driver`` -> ``mlx4_core``), or None."""
        try:
            target = os.readlink(self.path + "/" + self._check(name))
        except OSError:
            return None
        return os.path.basename(target.rstrip("/")) or None

    def opendir(self, name):
        """``SysDir`` of entry ``name`` (a directory or a link to one, resolved inside the root)."""
        return self.host.opendir(self._relname(self._check(name)))


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
