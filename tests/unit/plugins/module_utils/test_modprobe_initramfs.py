"""_modprobe.initramfs_rebuild (issue 12 item 3): changed module options ask for an initramfs rebuild only
when the running kernel's image holds one of those modules (listed once), with the reason and this
host's command; when the image cannot be listed, a warning and no rebuild."""

from ansible_collections.hpcnet.infiniband.plugins.module_utils import _modprobe as mp
from ansible_collections.hpcnet.infiniband.plugins.module_utils._host import Host
from fakehost import FakeRunner

LSINITRAMFS = """kernel
usr/lib/modules/6.1.0-18-amd64/kernel/drivers/net/ethernet/mellanox/mlx4/mlx4_core.ko
usr/lib/modules/6.1.0-18-amd64/kernel/drivers/net/ethernet/mellanox/mlx5/core/mlx5_core.ko.xz
"""
LSINITRD = """Image: /boot/initramfs-5.14.0-362.el9.x86_64.img: 32M
-rw-r--r--   1 root root 123456 Jan  1 00:00 usr/lib/modules/5.14.0-362.el9.x86_64/kernel/drivers/infiniband/ulp/ipoib/ib_ipoib.ko.xz
"""


def _host(tmp_path, os_release, listing, rc=0, commands=True):
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "etc/os-release").write_text(os_release)
    runner = FakeRunner({"uname": (0, "6.1.0-18-amd64\n", ""), "lsinitramfs": (rc, listing, ""),
                         "lsinitrd": (rc, listing, "")})
    return Host(sysfs_root=str(tmp_path), fs_root=str(root), runner=runner if commands else None, live=False), runner


def test_rebuild_when_the_image_holds_a_changed_module_listed_once(tmp_path):
    host, runner = _host(tmp_path, "ID=debian\n", LSINITRAMFS)
    result, warning = mp.initramfs_rebuild(host, {"mlx5_core": "/etc/modprobe.d/hpcnet-mlx5_core.conf",
                                                  "ib_ipoib": "/etc/modprobe.d/hpcnet-ib_ipoib.conf"})
    assert warning is None and result["initramfs_rebuild"] is True
    assert result["initramfs_reason"].startswith("mlx5_core is in the initramfs")
    assert "/etc/modprobe.d/hpcnet-mlx5_core.conf changed" in result["initramfs_reason"]
    assert "ib_ipoib" not in result["initramfs_reason"]
    assert result["initramfs_rebuild_argv"] == ["update-initramfs", "-u", "-k", "all"]
    assert [c for c in runner.calls if c[0] == "lsinitramfs"] == [["lsinitramfs", "/boot/initrd.img-6.1.0-18-amd64"]]


def test_el_image_two_modules_and_none_inside(tmp_path):
    host, _runner = _host(tmp_path, 'ID="rocky"\nID_LIKE="rhel centos fedora"\n', LSINITRD + LSINITRAMFS)
    result, _warning = mp.initramfs_rebuild(host, {"mlx4-core": "/etc/modprobe.d/a.conf", "ib_ipoib": "/etc/modprobe.d/b.conf"})
    assert result["initramfs_reason"].startswith("ib_ipoib, mlx4_core are in the initramfs, which loads them")
    assert result["initramfs_rebuild_argv"] == ["dracut", "-f"]
    host, _runner = _host(tmp_path / "x", "ID=debian\n", LSINITRD)
    assert mp.initramfs_rebuild(host, {"mlx4_core": "/etc/modprobe.d/a.conf"}) == (
        {"initramfs_rebuild": False, "initramfs_reason": None, "initramfs_rebuild_argv": None}, None)


def test_nothing_changed_lists_nothing_and_unknown_image_warns(tmp_path):
    host, runner = _host(tmp_path, "ID=debian\n", LSINITRAMFS)
    assert mp.initramfs_rebuild(host, {})[0]["initramfs_rebuild"] is False
    assert runner.calls == []
    host, _runner = _host(tmp_path / "x", "ID=ubuntu\nID_LIKE=debian\n", "", rc=1)  # no image
    result, warning = mp.initramfs_rebuild(host, {"mlx4_core": "/etc/modprobe.d/a.conf"})
    assert result["initramfs_rebuild"] is False
    assert warning.startswith("cannot tell whether the initramfs contains mlx4_core (lsinitramfs /boot/initrd.img-")
    assert "rebuild it for /etc/modprobe.d/a.conf" in warning
    host, _runner = _host(tmp_path / "y", "ID=debian\n", LSINITRAMFS, commands=False)  # a test tree: no commands
    assert mp.initramfs_rebuild(host, {"mlx4_core": "/etc/modprobe.d/a.conf"})[1] is None
