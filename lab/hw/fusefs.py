"""FUSE daemon serving a node's sysfs view (thin layer over hw.sysfs.SysfsModel).

    python -m hw.fusefs --profile P --node-index I --node NODE --realsys S --state-dir DIR \
        --ethtool-table FILE --mountpoint R/sys [--mirror-links]

Runs in the foreground inside the node's namespaces (hw.node starts it detached). Mounted with direct_io and
zero attribute and negative timeouts, so every read, stat, open and readlink reaches the model: a write takes
effect at once, a removed entry is gone at once (the model answers ENOENT), a new one appears at once. Only a
name's lookup is cached, for a second (entry_timeout): walking /sys/class/infiniband/mlx4_0/ports/1/pkeys/0
asked the model about every directory on the way, on every read. (A path that changed its type within that
second would read EIO: nothing in the model does that.)

Single-threaded (libfuse -s): the model serialises every request on its lock anyway, and libfuse's worker
threads are not Python threads, so each request on one of them created and destroyed a Python thread state
(an mmap and a munmap per request, TLB shootdowns across the threads): 2/3 of the daemon's CPU, in system
time (docs/benchmarks.md, "The lab's sysfs daemon").
"""
import argparse
import errno
import logging
import os
import subprocess
import sys

import mfusepy as fuse

from hw import mstconfig_shim
from hw import profile as hwprofile
from hw.sysfs import SysfsModel

log = logging.getLogger("hw.fusefs")


class NetlinkMirror:
    """Mirror P_Key children and MTU changes onto real links in the node's netns, so that IP configuration
    on ib0.8002 works (a macvlan on the ib0 veth: the kernel here has no IPoIB and no vlan links)."""

    def __init__(self, realsys):
        self.realsys = realsys

    @staticmethod
    def _ip(*argv):
        try:
            res = subprocess.run(["ip", *argv], capture_output=True, text=True, timeout=5, check=False)
            if res.returncode:
                log.warning("ip %s: %s", " ".join(argv), res.stderr.strip())
        except (OSError, subprocess.TimeoutExpired) as exc:
            log.warning("ip %s: %s", " ".join(argv), exc)

    def add_child(self, parent, name, mtu):
        if os.path.exists(os.path.join(self.realsys, "class/net", parent)):
            self._ip("link", "add", "link", parent, "name", name, "type", "macvlan", "mode", "bridge")
            self._ip("link", "set", "dev", name, "mtu", str(mtu))

    def del_child(self, name):
        if os.path.exists(os.path.join(self.realsys, "class/net", name)):
            self._ip("link", "del", "dev", name)

    def set_mtu(self, name, mtu):
        if os.path.exists(os.path.join(self.realsys, "class/net", name)):
            self._ip("link", "set", "dev", name, "mtu", str(mtu))


class SysfsOps(fuse.Operations):
    use_ns = False

    def __init__(self, model):
        self.model = model

    @staticmethod
    def _call(fn, *args):
        try:
            return fn(*args)
        except OSError as exc:
            raise fuse.FuseOSError(exc.errno or errno.EIO) from None
        except Exception:  # a bug in the model must not kill the node's /sys
            log.exception("internal error")
            raise fuse.FuseOSError(errno.EIO) from None

    def getattr(self, path, fh=None):
        return self._call(self.model.getattr, path)

    def readdir(self, path, fh):
        return [".", ".."] + self._call(self.model.listdir, path)

    def readlink(self, path):
        return self._call(self.model.readlink, path)

    def open(self, path, flags):
        write = (flags & os.O_ACCMODE) in (os.O_WRONLY, os.O_RDWR)
        self._call(self.model.check_open, path, write)
        return 0

    def read(self, path, size, offset, fh):
        data = self._call(self.model.read, path)
        return data[offset:offset + size]

    def write(self, path, data, offset, fh):
        return self._call(self.model.write, path, data)

    def truncate(self, path, length, fh=None):
        # sysfs ignores O_TRUNC; only refuse what cannot be written at all.
        self._call(self.model.check_open, path, True)
        return 0

    def statfs(self, path):
        return {"f_bsize": 4096, "f_frsize": 4096, "f_namemax": 255}


def main(argv=None):
    ap = argparse.ArgumentParser(prog="hw.fusefs")
    ap.add_argument("--profile", required=True)
    ap.add_argument("--node-index", type=int, required=True)
    ap.add_argument("--node", required=True)
    ap.add_argument("--realsys", required=True)
    ap.add_argument("--state-dir", required=True)
    ap.add_argument("--ethtool-table")
    ap.add_argument("--mountpoint", required=True)
    ap.add_argument("--mirror-links", action="store_true")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    # A (re)start of this server is the node's power-on: the firmware's Next Boot settings become current.
    state = os.path.join(os.path.dirname(args.mountpoint), mstconfig_shim.STATE_IN_NODE.lstrip("/"))
    hw = hwprofile.expand(mstconfig_shim.boot(hwprofile.load_profile(args.profile), state), args.node_index, args.node)
    model = SysfsModel(hw, realsys=args.realsys, state_dir=args.state_dir, ethtool_path=args.ethtool_table,
                       netlink=NetlinkMirror(args.realsys) if args.mirror_links else None)
    log.info("serving profile %s (node %s index %d) on %s", args.profile, args.node, args.node_index,
             args.mountpoint)
    fuse.FUSE(SysfsOps(model), args.mountpoint, foreground=True, nothreads=True, allow_other=True, direct_io=True,
              entry_timeout=1, attr_timeout=0, negative_timeout=0, fsname="hpcnet-sysfs", subtype="hpcnet")
    return 0


if __name__ == "__main__":
    sys.exit(main())
