"""SR-IOV additions to the fake kernel: PCI driver ``bind``/``unbind`` (drivers/base/bus.c) and the OS probes.

``SriovKernelHost`` is ``fakekernel.KernelHost`` plus writes to ``bus/pci/drivers/<drv>/unbind`` (the
function must be bound to <drv>, else ENODEV; the VF's netdev goes away with its driver) and
``bus/pci/drivers/<drv>/bind`` (EBUSY when already bound). ``fail_bind`` / ``fail_unbind`` make the
next such write fail. ``ops`` lists (op, driver, address) in order.
"""

import errno
import os
import re
import shutil

from ansible_collections.hpcnet.infiniband.plugins.module_utils._host import HostError

from fakehost import link
from fakekernel import KernelHost, add_netdev

_DRIVER_OP_RE = re.compile(r"^bus/pci/drivers/([^/]+)/(bind|unbind)$")


class SriovKernelHost(KernelHost):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.ops = []
        self.fail_bind = None  # errno of the next bind
        self.fail_unbind = None

    def _function(self, address):
        devices = os.path.join(self.sysfs_root, "bus/pci/devices")
        direct = os.path.join(devices, address)
        if os.path.exists(direct):
            return os.path.realpath(direct)
        for pf in os.listdir(devices):
            pf_dir = os.path.join(devices, pf)
            for entry in os.listdir(pf_dir):
                if entry.startswith("virtfn"):
                    target = os.path.realpath(os.path.join(pf_dir, entry))
                    if os.path.basename(target) == address:
                        return target
        return None

    def write(self, relpath, value, timeout=30):
        match = _DRIVER_OP_RE.match(relpath)
        if not match:
            return super().write(relpath, value, timeout)
        driver, op = match.groups()
        address = str(value).strip()
        self.writes.append((relpath, address))
        drv_dir = os.path.join(self.sysfs_root, "bus/pci/drivers", driver)
        if not os.path.isdir(drv_dir):
            raise HostError("%s does not exist" % relpath, errno.ENOENT, relpath)
        failure = self.fail_bind if op == "bind" else self.fail_unbind
        if failure:
            if op == "bind":
                self.fail_bind = None
            else:
                self.fail_unbind = None
            raise HostError("writing %s failed: %s" % (relpath, os.strerror(failure)), failure, relpath)
        function = self._function(address)
        if function is None:
            raise HostError("No such device", errno.ENODEV, relpath)
        current = os.path.join(function, "driver")
        bound = os.path.basename(os.readlink(current)) if os.path.islink(current) else None
        if op == "unbind":
            if bound != driver:
                raise HostError("No such device", errno.ENODEV, relpath)
            os.unlink(current)
            net = os.path.join(function, "net")
            for name in os.listdir(net) if os.path.isdir(net) else []:
                class_link = os.path.join(self.sysfs_root, "class/net", name)
                if os.path.lexists(class_link):
                    os.unlink(class_link)
                shutil.rmtree(os.path.join(net, name))
        else:
            if bound:
                raise HostError("Device or resource busy", errno.EBUSY, relpath)
            link(current, drv_dir)
            if driver == "mlx5_core" and self.vf_netdevs:
                index = [e for e in os.listdir(os.path.join(function, "physfn")) if e.startswith("virtfn")
                         and os.path.realpath(os.path.join(function, "physfn", e)) == function]
                if index:
                    pf = self.pf_name(os.path.realpath(os.path.join(function, "physfn")))
                    add_netdev(self.sysfs_root, "%s_vf%s" % (pf, index[0][len("virtfn"):]), function)
        self.ops.append((op, driver, address))
        return None
