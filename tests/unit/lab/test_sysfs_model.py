"""Kernel write semantics of the sysfs view (hw.sysfs.SysfsModel), without FUSE or root."""
import errno
import json
import os

import pytest

from hw import profile as P
from hw.sysfs import SysfsModel, parse_kstrtou, parse_scanf_i

PF = "class/net/ib0/device"


class FakeNetlink:
    def __init__(self):
        self.calls = []

    def add_child(self, parent, name, mtu):
        self.calls.append(("add", parent, name, mtu))

    def del_child(self, name):
        self.calls.append(("del", name))

    def set_mtu(self, name, mtu):
        self.calls.append(("mtu", name, mtu))


def make(name="cx5-ib-sriov", index=1, **kw):
    return SysfsModel(P.expand(P.load_profile(name), index, f"node{index}"), **kw)


def werr(m, path, value):
    with pytest.raises(OSError) as exc:
        m.write(path, value)
    return exc.value.errno


def test_sriov_numvfs_protocol():
    m = make()
    assert m.read(f"{PF}/sriov_totalvfs") == b"16\n"
    assert m.read(f"{PF}/sriov_numvfs") == b"0\n"
    m.write(f"{PF}/sriov_numvfs", b"8\n")
    assert m.read(f"{PF}/sriov_numvfs") == b"8\n"
    assert werr(m, f"{PF}/sriov_numvfs", b"4\n") == errno.EBUSY
    m.write(f"{PF}/sriov_numvfs", b"8\n")          # same value: accepted, nothing changes
    m.write(f"{PF}/sriov_numvfs", b"0\n")
    assert not [n for n in m.listdir(PF) if n.startswith("virtfn")]
    assert m.lookup("bus/pci/devices/0000:5e:00.1") is None
    m.write(f"{PF}/sriov_numvfs", b"4")
    assert werr(m, f"{PF}/sriov_numvfs", b"32\n") == errno.ERANGE
    assert werr(m, f"{PF}/sriov_numvfs", b"abc\n") == errno.EINVAL
    assert werr(m, f"{PF}/sriov_numvfs", b"-1\n") == errno.EINVAL
    assert werr(m, f"{PF}/sriov_numvfs", b"70000\n") == errno.ERANGE
    assert m.read(f"{PF}/sriov_numvfs") == b"4\n"


def test_vf_functions_and_links():
    m = make()
    m.write(f"{PF}/sriov_numvfs", b"3\n")
    assert sorted(n for n in m.listdir(PF) if n.startswith("virtfn")) == ["virtfn0", "virtfn1", "virtfn2"]
    assert m.readlink(f"{PF}/virtfn0") == "../0000:5e:00.1"
    assert m.readlink(f"{PF}/virtfn2/physfn") == "../0000:5e:00.0"
    assert m.read(f"{PF}/virtfn1/device") == b"0x1018\n"
    assert m.read(f"{PF}/virtfn1/vendor") == b"0x15b3\n"
    assert os.path.basename(m.readlink(f"{PF}/virtfn1/driver")) == "mlx5_core"
    assert m.read(f"{PF}/sriov/0/node") == b"00:00:00:00:00:00:00:00\n"
    assert m.readlink("bus/pci/devices/0000:5e:00.3").endswith("/0000:5e:00.3")
    assert SysfsModel.vf_address("0000:5e:00.0", 1, 1, 8) == "0000:5e:01.1"


def test_autoprobe_off_and_rebind():
    m = make()
    m.write(f"{PF}/sriov_drivers_autoprobe", b"0\n")
    m.write(f"{PF}/sriov_numvfs", b"2\n")
    assert m.lookup(f"{PF}/virtfn0/driver") is None
    m.write(f"{PF}/virtfn0/driver_override", b"vfio-pci\n")
    assert werr(m, "bus/pci/drivers/mlx5_core/bind", b"0000:5e:00.1") == errno.ENODEV
    m.write(f"{PF}/virtfn1/driver_override", b"\n")
    m.write("bus/pci/drivers/mlx5_core/bind", b"0000:5e:00.2")
    assert os.path.basename(m.readlink(f"{PF}/virtfn1/driver")) == "mlx5_core"
    assert werr(m, "bus/pci/drivers/mlx5_core/bind", b"0000:5e:00.2") == errno.EBUSY
    m.write("bus/pci/drivers/mlx5_core/unbind", b"0000:5e:00.2")
    assert m.lookup(f"{PF}/virtfn1/driver") is None
    assert werr(m, "bus/pci/drivers/mlx5_core/unbind", b"0000:5e:00.2") == errno.ENODEV


def test_create_and_delete_child(tmp_path):
    nl = FakeNetlink()
    table = tmp_path / "ethtool"
    m = make("cx3-ipoib", netlink=nl, ethtool_path=str(table))
    m.write("class/net/ib0/create_child", b"0x8002\n")
    assert "ib0.8002" in m.listdir("class/net")
    assert m.read("class/net/ib0.8002/pkey") == b"0x8002\n"
    assert m.read("class/net/ib0.8002/parent") == b"ib0\n"
    assert m.read("class/net/ib0.8002/type") == b"32\n"
    assert m.read("class/net/ib0.8002/mode") == b"datagram\n"
    assert m.read("class/net/ib0.8002/broadcast").decode().split(":")[8:10] == ["80", "02"]
    assert m.readlink("class/net/ib0.8002/device") == "../../../0000:82:00.0"
    assert m.lookup("class/net/ib0.8002/create_child") is None
    assert "ib0.8002\tib_ipoib" in table.read_text()
    assert nl.calls[0] == ("add", "ib0", "ib0.8002", 2044)
    assert werr(m, "class/net/ib0/create_child", b"0x8002\n") == errno.ENOTUNIQ
    assert werr(m, "class/net/ib0/create_child", b"0xffff\n") == errno.ENOTUNIQ   # the parent's own P_Key
    for bad in (b"0\n", b"0x8000\n", b"0x10000\n", b"-5\n", b"junk\n"):
        assert werr(m, "class/net/ib0/create_child", bad) == errno.EINVAL, bad
    m.write("class/net/ib0/create_child", b"32771\n")      # %i: decimal works too -> ib0.8003
    assert "ib0.8003" in m.listdir("class/net")
    assert werr(m, "class/net/ib0/delete_child", b"0x8005\n") == errno.ENODEV
    m.write("class/net/ib0/delete_child", b"0x8002\n")
    assert "ib0.8002" not in m.listdir("class/net")
    assert "ib0.8002" not in table.read_text()
    assert ("del", "ib0.8002") in nl.calls


def test_mode_writes_like_ipoib_set_mode():
    nl = FakeNetlink()
    m = make("cx3-ipoib", netlink=nl)
    assert m.read("class/net/ib0/mode") == b"connected\n"
    assert werr(m, "class/net/ib0/mode", b"datagram") == errno.EINVAL   # no newline: kernel strcmp fails
    m.write("class/net/ib0/mode", b"datagram\n")
    assert m.read("class/net/ib0/mode") == b"datagram\n"
    m.write("class/net/ib0/mode", b"connected\n")
    assert m.read("class/net/ib0/mtu") == b"65520\n"
    assert ("mtu", "ib0", 65520) in nl.calls
    assert werr(m, "class/net/ib0/mode", b"bogus\n") == errno.EINVAL
    m.write("class/net/ib0/create_child", b"0x8001\n")
    m.write("class/net/ib0.8001/mode", b"connected\n")
    # Enhanced IPoIB (mlx5) has no connected mode.
    m5 = make("cx5-ib-sriov")
    assert werr(m5, "class/net/ib0/mode", b"connected\n") == errno.EINVAL


def test_read_only_attributes_refuse_writes():
    m = make("cx3-ipoib")
    for path in ("class/net/ib0/type", "class/infiniband/mlx4_0/node_guid",
                 "class/infiniband/mlx4_0/ports/1/state", "class/net/ib0/address"):
        assert werr(m, path, b"1\n") == errno.EACCES
    with pytest.raises(OSError) as exc:
        m.read("class/net/ib0/create_child")
    assert exc.value.errno == errno.EACCES


def test_port_attributes_follow_fabric_state(tmp_path):
    m = make("cx3-ipoib", state_dir=str(tmp_path))
    base = "class/infiniband/mlx4_0/ports/1"
    assert m.read(f"{base}/state") == b"4: ACTIVE\n"          # profile default (the capture)
    (tmp_path / "fabric-state.json").write_text(json.dumps({"ports": {"mlx4_0/1": {
        "state": "2: INIT", "phys_state": "5: LinkUp", "lid": "0x0", "sm_lid": "0x0", "sm_sl": "0"}}}))
    assert m.read(f"{base}/state") == b"2: INIT\n"
    assert m.read(f"{base}/sm_lid") == b"0x0\n"
    (tmp_path / "fabric-state.json").write_text(json.dumps({"ports": {"mlx4_0/1": {
        "state": "4: ACTIVE", "phys_state": "5: LinkUp", "lid": "0x7", "sm_lid": "0x1", "sm_sl": "0"}}}))
    os.utime(tmp_path / "fabric-state.json", ns=(1, 2))
    assert m.read(f"{base}/lid") == b"0x7\n"


def _fake_realsys(tmp_path):
    """A tiny 'real' sysfs: lo, a veth named ib0 and a virtual eth9."""
    root = tmp_path / "realsys"
    for name, mtu in (("lo", 65536), ("ib0", 2044), ("eth9", 1500)):
        d = root / "devices" / "virtual" / "net" / name
        (d / "statistics").mkdir(parents=True)
        (d / "mtu").write_text(f"{mtu}\n")
        (d / "operstate").write_text("up\n")
        (d / "type").write_text("1\n")
        (d / "statistics" / "rx_bytes").write_text("42\n")
        (root / "class" / "net").mkdir(parents=True, exist_ok=True)
        os.symlink(f"../../devices/virtual/net/{name}", root / "class" / "net" / name)
    (root / "kernel").mkdir()
    (root / "kernel" / "knob").write_text("0\n")
    return root


def test_merge_over_real_sysfs(tmp_path):
    root = _fake_realsys(tmp_path)
    m = make("cx3-ipoib", realsys=str(root))
    assert m.listdir("class/net") == ["eth0", "eth9", "ib0", "lo"]
    assert m.readlink("class/net/lo") == "../../devices/virtual/net/lo"
    assert m.read("class/net/lo/mtu") == b"65536\n"
    assert m.read("class/net/ib0/type") == b"32\n"                   # the profile wins
    assert m.read("class/net/ib0/statistics/rx_bytes") == b"42\n"    # live counters of the veth
    assert m.read("class/net/ib0/operstate") == b"up\n"
    assert "ib0" not in m.listdir("devices/virtual/net")              # the veth's own dir is hidden
    (root / "devices/virtual/net/ib0/mtu").write_text("4092\n")
    assert m.read("class/net/ib0/mtu") == b"4092\n"                   # weak attribute: real wins
    m.write("class/net/ib0/mtu", b"2044\n")                          # per-netns: written through
    assert (root / "devices/virtual/net/ib0/mtu").read_text() == "2044\n"
    assert werr(m, "kernel/knob", b"1\n") == errno.EACCES             # global knobs stay read-only
    st = m.getattr("class/net/ib0/address")
    assert st["st_size"] == 4096 and st["st_mode"] & 0o777 == 0o444


def test_real_netdev_that_goes_and_comes_back_elsewhere_is_followed(tmp_path):
    # The model remembers where a real link leads (SysfsModel._real_rel) only while the target stays a
    # directory: a netdev that is deleted and created again under another parent is found where it is now.
    root = _fake_realsys(tmp_path)
    m = make("cx3-ipoib", realsys=str(root))
    assert m.read("class/net/ib0/statistics/rx_bytes") == b"42\n"
    for path in (root / "devices/virtual/net/ib0/statistics/rx_bytes", root / "devices/virtual/net/ib0/mtu",
                 root / "devices/virtual/net/ib0/operstate", root / "devices/virtual/net/ib0/type"):
        path.unlink()
    (root / "devices/virtual/net/ib0/statistics").rmdir()
    (root / "devices/virtual/net/ib0").rmdir()
    (root / "class/net/ib0").unlink()
    with pytest.raises(OSError) as exc:
        m.read("class/net/ib0/statistics/rx_bytes")
    assert exc.value.errno == errno.ENOENT
    moved = root / "devices" / "virtual" / "net2" / "ib0"
    (moved / "statistics").mkdir(parents=True)
    (moved / "statistics" / "rx_bytes").write_text("7\n")
    os.symlink("../../devices/virtual/net2/ib0", root / "class" / "net" / "ib0")
    assert m.read("class/net/ib0/statistics/rx_bytes") == b"7\n"
    assert m.getattr("class/net/ib0/statistics")["st_mode"] & 0o040000


def test_parsers():
    assert parse_kstrtou("0x10\n", 16) == 16
    assert parse_kstrtou("010", 16) == 8
    assert parse_scanf_i("  0x8002 trailing") == 0x8002
    with pytest.raises(OSError):
        parse_kstrtou("8 \n", 16)
