"""Runtime hardware changes (labctl hw set/get/reset): hw.overrides + the sysfs view re-reading them."""
import errno
import os

import pytest

from hw import overrides as O
from hw import profile as P
from hw.sysfs import SysfsModel

PORT = "class/infiniband/mlx4_0/ports/1"


def make(tmp_path, name="cx3-ipoib", index=1):
    return SysfsModel(P.expand(P.load_profile(name), index, f"node{index}"), state_dir=str(tmp_path))


def test_norm_path_and_value():
    assert O.norm_path("/sys/class/net/ib0/mtu") == "class/net/ib0/mtu"
    assert O.norm_path("class//net/ib0/mtu/") == "class/net/ib0/mtu"
    for bad in ("", "/sys/", "class/../kernel", "a\0b"):
        with pytest.raises(O.OverrideError):
            O.norm_path(bad)
    assert O.sysfs_value("0x0000") == "0x0000\n"
    assert O.sysfs_value("0x0000\n\n") == "0x0000\n"


def test_update_returns_previous_and_clear(tmp_path):
    assert O.update(str(tmp_path), {"/sys/a/b": "1"}) == {"a/b": None}
    assert O.update(str(tmp_path), {"a/b": "2\n", "c": "3\n"}) == {"a/b": "1\n", "c": None}
    assert O.load(str(tmp_path)) == {"a/b": "2\n", "c": "3\n"}
    O.update(str(tmp_path), {"a/b": None})
    assert O.load(str(tmp_path)) == {"c": "3\n"}
    O.clear(str(tmp_path))
    assert O.load(str(tmp_path)) == {}


def test_pkey_override_through_symlinks_and_reset(tmp_path):
    m = make(tmp_path)
    assert m.read(f"{PORT}/pkeys/0") == b"0xffff\n"
    O.update(str(tmp_path), {f"{PORT}/pkeys/0": "0x0000\n"})
    assert m.read(f"{PORT}/pkeys/0") == b"0x0000\n"           # no restart: re-read on mtime change
    canonical = m.realpath(f"{PORT}/pkeys/0")
    assert canonical.startswith("devices/") and m.read(canonical) == b"0x0000\n"
    assert m.read(f"{PORT}/pkeys/1") == b"0x0000\n"           # other attributes untouched
    O.update(str(tmp_path), {f"{PORT}/pkeys/0": None})
    assert m.read(f"{PORT}/pkeys/0") == b"0xffff\n"


def test_override_wins_over_fabric_state_and_keeps_errnos(tmp_path):
    m = make(tmp_path)
    (tmp_path / "fabric-state.json").write_text('{"ports": {"mlx4_0/1": {"state": "4: ACTIVE"}}}')
    O.update(str(tmp_path), {f"{PORT}/state": "1: DOWN"})
    assert m.read(f"{PORT}/state") == b"1: DOWN\n"
    with pytest.raises(OSError) as exc:
        m.read("class/net/ib0/create_child")                 # write-only stays write-only
    assert exc.value.errno == errno.EACCES


def test_gid0_override_derives_ipoib_address(tmp_path):
    m = make(tmp_path)
    before = m.read("class/net/ib0/address").decode()
    assert before.endswith("02:c9:03:00:f9:bf:a1\n")
    O.update(str(tmp_path), {f"{PORT}/gids/0": "fe80:0000:0000:0000:0002:c903:00a1:b4c1"})
    assert m.read(f"{PORT}/gids/0") == b"fe80:0000:0000:0000:0002:c903:00a1:b4c1\n"
    after = m.read("class/net/ib0/address").decode()
    assert after[:12] == before[:12] and after.endswith("02:c9:03:00:a1:b4:c1\n")
    m.write("class/net/ib0/create_child", b"0x8002\n")       # a child made later follows too
    assert m.read("class/net/ib0.8002/address").decode().endswith("02:c9:03:00:a1:b4:c1\n")
    O.update(str(tmp_path), {"class/net/ib0/address": "00:11\n"})   # explicit beats derived
    assert m.read("class/net/ib0/address") == b"00:11\n"
    assert m.read("class/infiniband/mlx4_0/node_guid") == b"0002:c903:00f9:bfa0\n"  # not derived


def test_node_guid_override_only_changes_node_guid(tmp_path):
    m = make(tmp_path, "cx5-ib-sriov", 2)
    image = m.read("class/infiniband/mlx5_0/sys_image_guid")
    gid0 = m.read("class/infiniband/mlx5_0/ports/1/gids/0")
    O.update(str(tmp_path), {"class/infiniband/mlx5_0/node_guid": "9803:9b03:0045:6d10"})
    assert m.read("class/infiniband/mlx5_0/node_guid") == b"9803:9b03:0045:6d10\n"
    assert m.read("class/infiniband/mlx5_0/sys_image_guid") == image
    assert m.read("class/infiniband/mlx5_0/ports/1/gids/0") == gid0


def test_broken_overrides_file_keeps_last_good(tmp_path):
    m = make(tmp_path)
    O.update(str(tmp_path), {f"{PORT}/pkeys/0": "0x7fff\n"})
    assert m.read(f"{PORT}/pkeys/0") == b"0x7fff\n"
    path = tmp_path / O.FILE
    path.write_text("{not json")
    os.utime(path, ns=(1, 1))
    assert m.read(f"{PORT}/pkeys/0") == b"0x7fff\n"


def test_ipoib_address_with_gid():
    addr = "80:00:00:48:fe:80:00:00:00:00:00:00:00:02:c9:03:00:f9:bf:a1"
    assert O.ipoib_address_with_gid(addr, "fe80:0000:0000:0000:0000:0000:0000:0001") == \
        "80:00:00:48:fe:80:00:00:00:00:00:00:00:00:00:00:00:00:00:01\n"
    assert O.ipoib_address_with_gid(addr, "nonsense") is None


def test_override_of_real_link_attribute(tmp_path):
    from test_sysfs_model import _fake_realsys  # pylint: disable=import-outside-toplevel
    root = _fake_realsys(tmp_path)
    m = SysfsModel(P.expand(P.load_profile("cx3-ipoib"), 1, "node1"), realsys=str(root), state_dir=str(tmp_path))
    assert m.read("class/net/ib0/mtu") == b"2044\n"
    O.update(str(tmp_path), {"class/net/ib0/mtu": "1500", "class/net/lo/mtu": "9000"})
    assert m.read("class/net/ib0/mtu") == b"1500\n" and m.read("class/net/lo/mtu") == b"9000\n"
    assert (root / "devices/virtual/net/ib0/mtu").read_text() == "2044\n"    # the real link is untouched
