# -*- coding: utf-8 -*-
"""Host.opendir / SysDir: a directory resolved once, its attributes read by single name."""

from __future__ import annotations

import os

import pytest

from ansible_collections.hpcnet.infiniband.plugins.module_utils._host import Host, HostError, SysDir


def _write(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(text)


@pytest.fixture
def tree(tmp_path):
    """root/sys with a netdev behind a relative class/net link, plus a secret file outside the root."""
    root = tmp_path / "sys"
    dev = root / "devices" / "pci0000:00" / "0000:82:00.0"
    net = dev / "net" / "ib0"
    _write(str(net / "type"), "32\n")
    _write(str(net / "mtu"), "2044\n")
    _write(str(net / "empty"), "\n")
    _write(str(net / "state"), "4: ACTIVE\n")
    _write(str(dev / "vendor"), "0x15b3\n")
    _write(str(tmp_path / "secret"), "outside\n")
    os.makedirs(str(dev / "driver_target" / "mlx4_core"))
    os.symlink("../../devices/pci0000:00/0000:82:00.0/net/ib0", str(_mkdir(root / "class" / "net") / "ib0"))
    os.symlink("../../../0000:82:00.0", str(net / "device"))
    os.symlink("driver_target/mlx4_core", str(dev / "driver"))
    # Links planted as attributes: inside the root, outside it (relative and absolute), loops.
    os.symlink("mtu", str(net / "mtu_alias"))
    os.symlink("../../../../../../secret", str(net / "escape_rel"))
    os.symlink(str(tmp_path / "secret"), str(net / "escape_abs"))
    os.symlink("loop_b", str(net / "loop_a"))
    os.symlink("loop_a", str(net / "loop_b"))
    os.symlink("self", str(net / "self"))
    os.mkfifo(str(net / "fifo"))
    os.makedirs(str(net / "subdir"))
    return root


def _mkdir(path):
    os.makedirs(str(path), exist_ok=True)
    return path


def test_opendir_resolves_links_once_and_reads(tree):
    host = Host(sysfs_root=str(tree), live=False)
    ndir = host.opendir("class/net/ib0")
    assert isinstance(ndir, SysDir)
    assert ndir.rel == "devices/pci0000:00/0000:82:00.0/net/ib0"
    assert ndir.read("type") == "32"
    assert ndir.read_int("type") == 32
    assert ndir.read_int("state") == 4
    assert ndir.read("empty") is None
    assert ndir.read("missing") is None
    assert ndir.read_int("missing") is None
    assert "type" in ndir.listdir() and ndir.listdir() == sorted(ndir.listdir())
    # Same answers as the path-based Host methods.
    for name in ("type", "mtu", "empty", "missing", "mtu_alias", "escape_rel", "escape_abs", "loop_a", "fifo",
                 "subdir"):
        assert ndir.read(name) == host.read("class/net/ib0/" + name), name


def test_opendir_missing_or_not_a_directory(tree):
    host = Host(sysfs_root=str(tree), live=False)
    assert host.opendir("class/net/ib7") is None
    assert host.opendir("class/net/ib0/type") is None
    assert host.opendir("../..") is None
    assert host.opendir("").rel == ""


def test_symlinked_attribute_inside_root_is_followed(tree):
    ndir = Host(sysfs_root=str(tree), live=False).opendir("class/net/ib0")
    assert ndir.read("mtu_alias") == "2044"
    assert ndir.exists("mtu_alias")


@pytest.mark.parametrize("name", ["escape_rel", "escape_abs"])
def test_symlinked_attribute_escaping_root_is_refused(tree, name):
    ndir = Host(sysfs_root=str(tree), live=False).opendir("class/net/ib0")
    assert ndir.read(name) is None
    assert ndir.read_int(name) is None
    assert not ndir.exists(name)
    assert ndir.islink(name)


@pytest.mark.parametrize("name", ["loop_a", "loop_b", "self"])
def test_symlink_loops_give_none(tree, name):
    ndir = Host(sysfs_root=str(tree), live=False).opendir("class/net/ib0")
    assert ndir.read(name) is None
    assert not ndir.exists(name)
    assert ndir.opendir(name) is None


def test_fifo_and_directory_read_as_none_without_blocking(tree):
    ndir = Host(sysfs_root=str(tree), live=False).opendir("class/net/ib0")
    assert ndir.read("fifo") is None
    assert ndir.read("subdir") is None
    assert ndir.opendir("subdir").rel.endswith("net/ib0/subdir")


@pytest.mark.parametrize("name", ["../type", "device/vendor", "/etc/passwd", ".", "..", "", "a\x00b", None, 3])
def test_names_must_be_one_component(tree, name):
    ndir = Host(sysfs_root=str(tree), live=False).opendir("class/net/ib0")
    for method in (ndir.read, ndir.read_int, ndir.exists, ndir.islink, ndir.readlink_name, ndir.opendir):
        with pytest.raises(HostError):
            method(name)


def test_links_to_directories(tree):
    host = Host(sysfs_root=str(tree), live=False)
    ndir = host.opendir("class/net/ib0")
    pci = ndir.opendir("device")
    assert pci.rel == "devices/pci0000:00/0000:82:00.0"
    assert pci.read("vendor") == "0x15b3"
    assert pci.readlink_name("driver") == "mlx4_core"
    assert pci.readlink_name("vendor") is None
    assert pci.readlink_name("missing") is None
    assert ndir.opendir("escape_rel") is None


def test_absolute_sys_links_of_captures(tmp_path):
    # Captures made with absolute links point into the capturing host's /sys: mapped into the root.
    root = tmp_path / "sys"
    _write(str(root / "devices" / "virtual" / "net" / "lo" / "mtu"), "65536\n")
    os.makedirs(str(root / "class" / "net"))
    os.symlink("/sys/devices/virtual/net/lo", str(root / "class" / "net" / "lo"))
    ndir = Host(sysfs_root=str(root), live=False).opendir("class/net/lo")
    assert ndir.rel == "devices/virtual/net/lo"
    assert ndir.read_int("mtu") == 65536


def test_read_bytes_reads_many_raw(tree):
    ndir = Host(sysfs_root=str(tree), live=False).opendir("class/net/ib0")
    assert ndir.read_bytes(["type", "missing", "mtu_alias", "escape_rel", "loop_a", "subdir"]) == {
        "type": b"32\n", "missing": None, "mtu_alias": b"2044\n", "escape_rel": None, "loop_a": None,
        "subdir": None}
    assert ndir.read_bytes([]) == {}
    for bad in (["type", "../type"], ["type", ""], ["a\x00b"], ["type", None]):
        with pytest.raises(HostError):
            ndir.read_bytes(bad)


def test_links_are_described(tree):
    ndir = Host(sysfs_root=str(tree), live=False).opendir("class/net/ib0")
    assert ndir.readlink("mtu_alias") == "mtu" and ndir.readlink("type") is None
    assert ndir.isdir("device") and ndir.isdir("subdir") and not ndir.isdir("type")
    assert [ndir.unresolved_reason(n) for n in ("escape_rel", "escape_abs", "loop_a", "type")] == [
        "escapes", "escapes", "loop", None]
    os.symlink("nowhere", str(tree / "devices/pci0000:00/0000:82:00.0/net/ib0/dangling"))
    assert Host(sysfs_root=str(tree), live=False).opendir("class/net/ib0").unresolved_reason("dangling") == "dangling"


def test_cached_shares_the_tree_shape_only_inside_the_block(tree):
    host = Host(sysfs_root=str(tree), live=False)
    dev = tree / "devices" / "pci0000:00" / "0000:82:00.0"
    with host.cached():
        assert host.read("class/net/ib0/mtu") == "2044"
        assert host.opendir("class/net/ib9") is None
        _write(str(dev / "net" / "ib0" / "mtu"), "4092\n")
        os.symlink("../../devices/pci0000:00/0000:82:00.0/net/ib0", str(tree / "class" / "net" / "ib9"))
        assert host.read("class/net/ib0/mtu") == "4092"  # values are never cached
        assert host.opendir("class/net/ib9") is None  # the shape is, within the block
    assert host.opendir("class/net/ib9").read("mtu") == "4092"


def test_facts_read_only_through_the_host():
    import inspect
    from ansible_collections.hpcnet.infiniband.plugins.module_utils import _facts
    source = inspect.getsource(_facts)
    for call in ("os.open", "os.lstat", "os.readlink", "os.listdir", "open("):
        assert call not in source, call
