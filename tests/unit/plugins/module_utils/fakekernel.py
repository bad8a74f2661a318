"""A fixture sysfs tree plus a Host whose writes follow the kernel's rules (SR-IOV, IPoIB).

Used by test_sriov.py, test_ipoib.py and the module tests. The tree is real files and relative links
under tmp_path, read through the real ``Host``; only ``write`` and the command runner are fakes:
- ``sriov_numvfs``: N>totalvfs -> ERANGE, N while non-zero -> EBUSY (drivers/pci/iov.c), 0 removes
  the VFs (virtfnN links + VF function directories), N creates them;
- ``create_child``/``delete_child``: ``<parent>.%04x`` netdevs (EINVAL for 0/0x8000, ENOTUNIQ twice);
- ``mode``/``umcast``/``mtu`` take the kernel's values;
- runner: ``ip -j addr show``, ``ip -j link show`` (vfinfo_list with GUIDs), ``ip link set .. vf``,
  ``mstconfig -d X q``.
"""

import errno
import json
import os

from ansible_collections.hpcnet.infiniband.plugins.module_utils._host import Host, HostError

import fakehost
from fakehost import link, write_attr

PF_PCI = "0000:82:00.0"
PCI_PARENT = "devices/pci0000:80/0000:80:02.0"
PORT_GUID = "0002:c903:00a1:b2c1"


def make_tree(
    root,
    pf="ib0",
    pci=PF_PCI,
    device="0x1017",
    totalvfs=16,
    numvfs=0,
    driver="mlx5_core",
    ibdev="mlx5_0",
    port_guid=PORT_GUID,
    pkeys=("0xffff", "0x8002", "0x0003"),
    sriov=True,
    link_layer="InfiniBand",
    ipoib=True,
):
    """Write a PF with an RDMA device and an IPoIB netdev under ``root`` (the sysfs root)."""
    sysfs = str(root)
    dev = os.path.join(sysfs, PCI_PARENT, pci)
    write_attr(os.path.join(dev, "vendor"), "0x15b3")
    write_attr(os.path.join(dev, "device"), device)
    if sriov:
        write_attr(os.path.join(dev, "sriov_totalvfs"), str(totalvfs))
        write_attr(os.path.join(dev, "sriov_numvfs"), "0")
    drv = os.path.join(sysfs, "bus/pci/drivers", driver)
    os.makedirs(drv, exist_ok=True)
    link(os.path.join(dev, "driver"), drv)
    link(os.path.join(sysfs, "bus/pci/devices", pci), dev)
    ib = os.path.join(dev, "infiniband", ibdev)
    write_attr(os.path.join(ib, "node_guid"), port_guid[:-1] + "0")
    port = os.path.join(ib, "ports/1")
    write_attr(os.path.join(port, "gids/0"), "fe80:0000:0000:0000:" + port_guid)
    write_attr(os.path.join(port, "link_layer"), link_layer)
    for index, value in enumerate(pkeys):
        write_attr(os.path.join(port, "pkeys", str(index)), value)
    link(os.path.join(sysfs, "class/infiniband", ibdev), ib)
    if ipoib:
        add_netdev(sysfs, pf, dev, type_=32 if link_layer == "InfiniBand" else 1, pkey="0xffff", ipoib=True)
    if numvfs:
        KernelHost(sysfs).write("bus/pci/devices/%s/sriov_numvfs" % pci, str(numvfs))
    return dev


def add_netdev(sysfs, name, device_dir, type_=32, pkey="0xffff", ipoib=True, up=False, mtu=2044):
    net = os.path.join(device_dir, "net", name)
    write_attr(os.path.join(net, "type"), str(type_))
    write_attr(os.path.join(net, "mtu"), str(mtu))
    write_attr(os.path.join(net, "operstate"), "up" if up else "down")
    write_attr(os.path.join(net, "flags"), "0x1003" if up else "0x1002")
    write_attr(os.path.join(net, "dev_port"), "0")
    link(os.path.join(net, "device"), device_dir)
    if ipoib:
        write_attr(os.path.join(net, "pkey"), pkey)
        write_attr(os.path.join(net, "mode"), "datagram")
        write_attr(os.path.join(net, "umcast"), "0")
        write_attr(os.path.join(net, "create_child"), "")
        write_attr(os.path.join(net, "delete_child"), "")
    link(os.path.join(sysfs, "class/net", name), net)
    return net


class FakeRunner(fakehost.FakeRunner):
    """Answers the commands the modules run (ip, mstconfig) from the fake kernel's state; records every argv."""

    def __init__(self, kernel=None, mstconfig=None, vf_guid_error=None):
        super().__init__()
        self.kernel = kernel
        self.mstconfig = mstconfig  # text, or None -> not installed (127)
        self.vf_guid_error = vf_guid_error  # stderr to fail ``ip link set .. vf`` with
        self.addresses = {}  # ifname -> ["10.0.0.1/24", ...]
        self.vf_guids = {}  # (pf, index) -> (node "xx:..", port "xx:..")

    def answer(self, argv):
        if argv[0] == "mstconfig":
            if self.mstconfig is None:
                return 127, "", "mstconfig: command not found"
            return 0, self.mstconfig, ""
        if argv[0] == "mlxconfig":
            return 127, "", "not found"
        if argv[:4] == ["ip", "-j", "addr", "show"]:
            name = argv[-1]
            info = [
                {
                    "family": "inet" if ":" not in a else "inet6",
                    "local": a.split("/")[0],
                    "prefixlen": int(a.split("/")[1]),
                    "scope": "global",
                }
                for a in self.addresses.get(name, [])
            ]
            info.append({"family": "inet6", "local": "fe80::1", "prefixlen": 64, "scope": "link"})
            return 0, json.dumps([{"ifname": name, "addr_info": info}]), ""
        if argv[:4] == ["ip", "-j", "link", "show"]:
            pf = argv[-1]
            numvfs = self.kernel.numvfs(pf) if self.kernel else 0
            vfs = []
            for index in range(numvfs):
                node, port = self.vf_guids.get((pf, index), ("00:00:00:00:00:00:00:00",) * 2)
                vfs.append({"vf": index, "link_type": "infiniband", "node guid": node, "port guid": port})
            return 0, json.dumps([{"ifname": pf, "vfinfo_list": vfs}]), ""
        if argv[:3] == ["ip", "link", "set"] and "vf" in argv:
            if self.vf_guid_error:
                return 2, "", self.vf_guid_error
            pf = argv[argv.index("dev") + 1]
            index = int(argv[argv.index("vf") + 1])
            if not self.kernel or index >= self.kernel.numvfs(pf):
                return 2, "", "RTNETLINK answers: Invalid argument"
            self.vf_guids[(pf, index)] = (argv[argv.index("node_guid") + 1], argv[argv.index("port_guid") + 1])
            return 0, "", ""
        return 127, "", "%s: not faked" % argv[0]


class KernelHost(Host):
    """Host over a fixture tree whose ``write`` behaves like the kernel's sysfs stores."""

    def __init__(
        self,
        sysfs_root,
        fs_root=None,
        runner=None,
        busy_on=None,
        fail_after=None,
        vf_netdevs=True,
        vf_sysfs_guids=False,
    ):
        super().__init__(sysfs_root=str(sysfs_root), fs_root=str(fs_root or sysfs_root), runner=runner, live=False)
        self.vf_sysfs_guids = vf_sysfs_guids  # mlx5 device/sriov/<N>/{node,port} (MLNX_OFED, the lab)
        self.vf_netdevs = vf_netdevs
        self.writes = []
        self.busy_on = busy_on  # a value whose write fails with EBUSY (a driver refusing)
        self.fail_after = fail_after  # (value, errno): that write fails once
        if runner is not None and getattr(runner, "kernel", None) is None:
            runner.kernel = self

    @staticmethod
    def pf_name(dev):
        names = os.listdir(os.path.join(dev, "net")) if os.path.isdir(os.path.join(dev, "net")) else []
        return sorted(names)[0] if names else "vf"

    def numvfs(self, pf):
        rel = "class/net/%s/device/sriov_numvfs" % pf
        return self.read_int(rel, 10) or 0

    def write(self, relpath, value, timeout=30):
        full = self._resolve(relpath)
        if full is None or not os.path.isfile(full):
            raise HostError("%s does not exist" % relpath, errno.ENOENT, relpath)
        self.writes.append((relpath, str(value)))
        attr = os.path.basename(full)
        text = str(value).strip()
        if self.fail_after and text == str(self.fail_after[0]):
            code = self.fail_after[1]
            self.fail_after = None
            raise HostError("writing %s failed: %s" % (relpath, os.strerror(code)), code, relpath)
        if attr == "sriov_numvfs":
            return self._numvfs(os.path.dirname(full), int(text), relpath)
        if attr == "create_child":
            return self._create_child(os.path.dirname(full), int(text, 0), relpath)
        if attr == "delete_child":
            return self._delete_child(os.path.dirname(full), int(text, 0), relpath)
        if attr == "mode" and text not in ("datagram", "connected"):
            raise HostError("EINVAL", errno.EINVAL, relpath)
        if attr == "umcast" and text not in ("0", "1"):
            raise HostError("EINVAL", errno.EINVAL, relpath)
        if attr == "mtu":
            mode = (
                open(os.path.join(os.path.dirname(full), "mode")).read().strip()
                if os.path.exists(os.path.join(os.path.dirname(full), "mode"))
                else "datagram"
            )
            if int(text) > (65520 if mode == "connected" else 4092):
                raise HostError("EINVAL", errno.EINVAL, relpath)
        with open(full, "w") as handle:
            handle.write(text + "\n")
        return None

    def _numvfs(self, dev, wanted, relpath):
        total = int(open(os.path.join(dev, "sriov_totalvfs")).read())
        current = int(open(os.path.join(dev, "sriov_numvfs")).read())
        if wanted > total:
            raise HostError("ERANGE", errno.ERANGE, relpath)
        if wanted == current:
            return None
        if current and wanted:
            raise HostError("Device or resource busy", errno.EBUSY, relpath)
        if self.busy_on is not None and wanted == self.busy_on:
            raise HostError("Device or resource busy", errno.EBUSY, relpath)
        parent = os.path.dirname(dev)
        domain_bus = os.path.basename(dev).rsplit(":", 1)[0]
        if wanted == 0:
            for entry in os.listdir(dev):
                if entry.startswith("virtfn"):
                    target = os.path.realpath(os.path.join(dev, entry))
                    for ifname in (
                        os.listdir(os.path.join(target, "net")) if os.path.isdir(os.path.join(target, "net")) else []
                    ):
                        class_link = os.path.join(self.sysfs_root, "class/net", ifname)
                        if os.path.lexists(class_link):
                            os.unlink(class_link)
                    os.unlink(os.path.join(dev, entry))
                    _rmtree(target)
            _rmtree(os.path.join(dev, "sriov"))
        else:
            driver = os.readlink(os.path.join(dev, "driver"))
            for index in range(wanted):
                address = "%s:%02x.%d" % (domain_bus, 1 + index // 8, index % 8)
                vf = os.path.join(parent, address)
                os.makedirs(vf, exist_ok=True)
                write_attr(os.path.join(vf, "vendor"), "0x15b3")
                write_attr(os.path.join(vf, "device"), "0x1018")
                link(os.path.join(vf, "physfn"), dev)
                link(os.path.join(vf, "driver"), os.path.normpath(os.path.join(dev, driver)))
                link(os.path.join(dev, "virtfn%d" % index), vf)
                if self.vf_sysfs_guids:
                    write_attr(os.path.join(dev, "sriov", str(index), "node"), "00:00:00:00:00:00:00:00")
                    write_attr(os.path.join(dev, "sriov", str(index), "port"), "00:00:00:00:00:00:00:00")
                if self.vf_netdevs:  # the VF driver registers a netdev (IPoIB: ib<n>) like mlx5_core does
                    add_netdev(self.sysfs_root, "%s_vf%d" % (self.pf_name(dev), index), vf)
        with open(os.path.join(dev, "sriov_numvfs"), "w") as handle:
            handle.write("%d\n" % wanted)
        return None

    def _create_child(self, netdir, pkey, relpath):
        if pkey <= 0 or pkey > 0xFFFF or pkey == 0x8000:
            raise HostError("Invalid argument", errno.EINVAL, relpath)
        parent = os.path.basename(netdir)
        name = "%s.%04x" % (parent, pkey)
        if os.path.lexists(os.path.join(self.sysfs_root, "class/net", name)):
            raise HostError("Name not unique on network", errno.ENOTUNIQ, relpath)
        device = os.path.realpath(os.path.join(netdir, "device"))
        add_netdev(self.sysfs_root, name, device, pkey="0x%04x" % pkey)
        return None

    def _delete_child(self, netdir, pkey, relpath):
        name = "%s.%04x" % (os.path.basename(netdir), pkey)
        class_link = os.path.join(self.sysfs_root, "class/net", name)
        if not os.path.lexists(class_link):
            raise HostError("No such device", errno.ENODEV, relpath)
        target = os.path.realpath(class_link)
        os.unlink(class_link)
        _rmtree(target)
        return None


def _rmtree(path):
    import shutil

    shutil.rmtree(path, ignore_errors=True)


def bind_vf(sysfs, pci, vf_index, driver):
    """Rebind VF ``vf_index`` of ``pci`` to ``driver`` (vfio-pci...)."""
    dev = os.path.join(str(sysfs), "bus/pci/devices", pci)
    vf = os.path.realpath(os.path.join(dev, "virtfn%d" % vf_index))
    drv = os.path.join(str(sysfs), "bus/pci/drivers", driver)
    os.makedirs(drv, exist_ok=True)
    link(os.path.join(vf, "driver"), drv)
    return vf
