"""Fixture sysfs/fs trees for the OFED tests: cards as the kernel shows them, a fake command runner.

``make_card`` writes a PCI function (vendor/device, driver link, sriov_totalvfs, mlx4_port<N>) and,
when the driver is bound, its RDMA device with ports; ``FakeRunner`` answers ``ofed_info -s``,
``modprobe --dry-run`` and ``modprobe`` the way a host without the modules (or with them) does.
"""

import os

from ansible_collections.hpcnet.infiniband.plugins.module_utils._host import Host

import fakehost
from fakehost import link, write_attr


def make_card(sysfs, pci="0000:82:00.0", device="0x1003", driver="mlx4_core", ibdev="mlx4_0",
              link_layers=("InfiniBand", "InfiniBand"), totalvfs=None, bound=True):
    sysfs = str(sysfs)
    dev = os.path.join(sysfs, "devices/pci0000:80/0000:80:02.0", pci)
    write_attr(os.path.join(dev, "vendor"), "0x15b3")
    write_attr(os.path.join(dev, "device"), device)
    write_attr(os.path.join(dev, "class"), "0x020700")
    if totalvfs is not None:
        write_attr(os.path.join(dev, "sriov_totalvfs"), str(totalvfs))
        write_attr(os.path.join(dev, "sriov_numvfs"), "0")
    link(os.path.join(sysfs, "bus/pci/devices", pci), dev)
    if not bound:
        return dev
    drv = os.path.join(sysfs, "bus/pci/drivers", driver)
    os.makedirs(drv, exist_ok=True)
    link(os.path.join(dev, "driver"), drv)
    if driver == "mlx4_core":
        for index, layer in enumerate(link_layers, start=1):
            write_attr(os.path.join(dev, "mlx4_port%d" % index), "ib" if layer == "InfiniBand" else "eth")
    ib = os.path.join(dev, "infiniband", ibdev)
    write_attr(os.path.join(ib, "node_guid"), "0002:c903:00a1:b2c0")
    link(os.path.join(ib, "device"), dev)
    for index, layer in enumerate(link_layers, start=1):
        port = os.path.join(ib, "ports", str(index))
        write_attr(os.path.join(port, "link_layer"), layer)
        write_attr(os.path.join(port, "state"), "4: ACTIVE")
    link(os.path.join(sysfs, "class/infiniband", ibdev), ib)
    return dev


def load_module_sysfs(sysfs, module, version=None, parameters=None, builtin=False):
    base = os.path.join(str(sysfs), "module", module)
    os.makedirs(base, exist_ok=True)
    if not builtin:
        write_attr(os.path.join(base, "initstate"), "live")
    if version:
        write_attr(os.path.join(base, "version"), version)
    for name, value in (parameters or {}).items():
        write_attr(os.path.join(base, "parameters", name), value)


class FakeRunner(fakehost.FakeRunner):
    """Commands of a host: ``available`` modules modprobe can find; ofed_info when MLNX_OFED."""

    def __init__(self, sysfs, available=(), ofed_version=None):
        super().__init__()
        self.sysfs = str(sysfs)
        self.available = set(available)
        self.ofed_version = ofed_version

    def answer(self, argv):
        if argv[0] == "ofed_info":
            if self.ofed_version is None:
                return 127, "", "ofed_info: command not found"
            return 0, "MLNX_OFED_LINUX-%s:\n" % self.ofed_version, ""
        if argv[0] == "modprobe":
            module = argv[-1]
            if module not in self.available:
                return 1, "", "modprobe: FATAL: Module %s not found in directory /lib/modules/6.18.0" % module
            if "--dry-run" not in argv:
                load_module_sysfs(self.sysfs, module)
            return 0, "", ""
        return super().answer(argv)

    def loads(self):
        return [call for call in self.calls if call[0] == "modprobe" and "--dry-run" not in call]


def host(tmp_path, runner=None):
    sysfs = tmp_path / "sys"
    fs = tmp_path / "root"
    sysfs.mkdir(exist_ok=True)
    fs.mkdir(exist_ok=True)
    return Host(sysfs_root=str(sysfs), fs_root=str(fs), runner=runner, live=False)
