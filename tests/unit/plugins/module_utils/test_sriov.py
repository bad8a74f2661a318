"""Unit tests of _sriov: have/plan/apply against a fixture tree whose writes follow the kernel."""

import errno
import os

import pytest

from ansible_collections.hpcnet.infiniband.plugins.module_utils import _sriov, _values
from fakehost import snapshot
from fakekernel import PF_PCI, FakeRunner, add_netdev, bind_vf, make_tree
from fakesriov import SriovKernelHost as KernelHost

MSTCONFIG_OLD = """
Device #1:
----------

Device type:    ConnectX5
Name:           MCX556A-ECA_Ax
Device:         0000:82:00.0

Configurations:                              Next Boot
         SRIOV_EN                            True(1)
         NUM_OF_VFS                          16
         LINK_TYPE_P1                        IB(1)
"""

MSTCONFIG_NEW = """
Device #1:
----------

Device type:        ConnectX5
Device:             0000:82:00.0

Configurations:                                          Default         Current         Next Boot
*        NUM_OF_VFS                                  0               16              16
         SRIOV_EN                                    False(0)        True(1)         True(1)
"""


@pytest.fixture
def node(tmp_path):
    sysfs = tmp_path / "sys"
    make_tree(sysfs)
    runner = FakeRunner()
    host = KernelHost(sysfs, fs_root=tmp_path / "root", runner=runner)
    os.makedirs(str(tmp_path / "root"), exist_ok=True)
    return host, runner, sysfs


def want(num_vfs, **kw):
    base = {"num_vfs": num_vfs, "force": False, "guid_policy": "none", "persist": False}
    base.update(kw)
    return base


def run(host, wanted, firmware=None, files=None):
    have = _sriov.read_pf(host, "ib0")
    plan = _sriov.plan_sriov(have, wanted, firmware=firmware, files=files)
    return have, plan


def test_guids_only_through_values(node):
    """Issue 10 item 10: one GUID parser; _sriov has none of its own, and takes every spelling _values does."""
    for name in ("parse_guid", "format_guid", "format_guid_ip"):
        assert name not in _sriov.__all__
    assert "GUID_RE" not in vars(_sriov) and "format_guid_ip" not in vars(_sriov)
    host = node[0]
    start = 0x0200000000000010
    for spelling in (start, "0x0200000000000010", "0200:0000:0000:0010", "02:00:00:00:00:00:00:10"):
        _have, plan = run(host, want(1, guid_policy="pool", guid_pool_start=spelling))
        assert plan.ok, (spelling, plan.errors)
        assert plan.info["vf_guids"][0]["node_guid"] == "0200:0000:0000:0010"
    _have, plan = run(host, want(1, guid_policy="pool", guid_pool_start="zz-not-a-guid"))
    assert "guid_pool_start" in plan.error_message() and "'zz-not-a-guid'" in plan.error_message()
    bad = [{"node_guid": "0200:0000:0000:0001", "port_guid": "xyz"}]
    _have, plan = run(host, want(1, guid_policy="explicit", guids=bad))
    assert "guids[0]" in plan.error_message() and "'xyz'" in plan.error_message()


def test_derived_guids_are_deterministic_unique_nonzero_local():
    base = 0x0002C90300A1B2C1
    seen = set()
    for pf in (base, base + 1, base + 0x100):
        for index in range(64):
            node, port = _sriov.derived_guids(pf, index)
            assert (node, port) == _sriov.derived_guids(pf, index)
            for guid in (node, port):
                assert guid != 0
                assert (guid >> 56) & 0x03 == 0x02  # locally administered, unicast
                assert guid not in seen
                seen.add(guid)


def test_read_pf(node):
    host, _runner, _sysfs = node
    have = _sriov.read_pf(host, "ib0")
    assert have["pci_address"] == PF_PCI
    assert have["family"] == "mlx5"
    assert have["model"] == "ConnectX-5"
    assert (have["totalvfs"], have["numvfs"]) == (16, 0)
    assert have["port_guid"] == "0002:c903:00a1:b2c1"
    assert have["vfs"] == []
    assert _sriov.read_pf(host, PF_PCI)["name"] == "ib0"


def test_read_pf_rejects_bad_names(node):
    host = node[0]
    with pytest.raises(_sriov.SriovError):
        _sriov.read_pf(host, "../../etc")
    with pytest.raises(_sriov.SriovError):
        _sriov.read_pf(host, "ib9")
    with pytest.raises(_sriov.SriovError):
        _sriov.read_pf(host, "0000:99:00.0")


def test_zero_to_eight_then_four_follows_zero_then_n(node):
    host, _runner, _sysfs = node
    _have, plan = run(host, want(8))
    assert [c.as_dict()["detail"]["steps"] for c in plan.changes] == [[8]]
    _sriov.apply_sriov(host, plan)
    assert host.numvfs("ib0") == 8
    have, plan = run(host, want(4))
    assert len(have["vfs"]) == 8
    assert plan.changes[0].before == 8 and plan.changes[0].after == 4
    assert plan.changes[0].detail["steps"] == [0, 4]
    host.writes.clear()
    _sriov.apply_sriov(host, plan)
    assert [v for _p, v in host.writes] == ["0", "4"]
    assert host.numvfs("ib0") == 4
    _have, plan = run(host, want(4))
    assert not plan.changed and plan.ok


def test_refuses_more_than_totalvfs_with_firmware_hint(node):
    host, _runner, sysfs = node
    before = snapshot(sysfs)
    firmware = {
        "available": True,
        "settings": {"NUM_OF_VFS": {"next_boot": "16"}, "SRIOV_EN": {"next_boot": "True(1)"}},
    }
    _have, plan = run(host, want(32), firmware=firmware)
    assert not plan.ok and not plan.changes
    message = plan.error_message()
    assert "sriov_totalvfs=16" in message and "mstconfig -d 0000:82:00.0 set SRIOV_EN=1 NUM_OF_VFS=32" in message
    assert "mstfwreset" in message and "NUM_OF_VFS=16" in message
    assert snapshot(sysfs) == before


def test_no_sriov_capability_is_refused(tmp_path):
    make_tree(tmp_path, sriov=False)
    host = KernelHost(tmp_path)
    _have, plan = run(host, want(2))
    assert "no SR-IOV capability" in plan.error_message()


def test_in_use_guard_driver_netdev_and_namespace(node):
    host, runner, sysfs = node
    _sriov.apply_sriov(host, run(host, want(4))[1])
    bind_vf(sysfs, PF_PCI, 1, "vfio-pci")
    vf_dir = os.path.join(str(sysfs), "bus/pci/devices", PF_PCI)
    for name, up in (("ib0_vf2", True), ("ib0_vf3", True)):
        for attr, value in (("flags", "0x1003" if up else "0x1002"), ("operstate", "up")):
            with open(os.path.join(str(sysfs), "class/net", name, attr), "w") as handle:
                handle.write(value + "\n")
    runner.addresses["ib0_vf2"] = ["192.0.2.5/24"]  # vf3: up but only link-local: not in use
    # VF 0's netdev moved to another netns: gone from this sysfs view while bound to mlx5_core.
    vf0 = os.path.realpath(os.path.join(vf_dir, "virtfn0"))
    os.unlink(os.path.join(str(sysfs), "class/net/ib0_vf0"))
    import shutil

    shutil.rmtree(os.path.join(vf0, "net"))
    # VF 0 has no netdev here although bound to mlx5_core, and the PF has one: another netns.
    before = snapshot(sysfs)
    have, plan = run(host, want(2))
    assert not plan.ok
    message = plan.error_message()
    assert "VF 1 (" in message and "vfio-pci" in message
    assert "ib0_vf2 is up with addresses 192.0.2.5/24" in message
    assert "VF 0 (" in message and "network namespace" in message
    assert "VF 3 (" not in message
    assert "force: true" in message
    assert snapshot(sysfs) == before
    _have, plan = run(host, want(2, force=True))
    assert plan.ok and plan.warnings
    _sriov.apply_sriov(host, plan)
    assert host.numvfs("ib0") == 2


def test_busy_write_restores_previous_count(tmp_path):
    make_tree(tmp_path, numvfs=8)
    host = KernelHost(tmp_path, busy_on=4)
    _have, plan = run(host, want(4, force=True))
    with pytest.raises(_sriov.SriovApplyError) as info:
        _sriov.apply_sriov(host, plan)
    assert "EBUSY" in str(info.value)
    assert "restored the previous count 8" in str(info.value)
    assert info.value.state["numvfs"] == 8
    assert host.numvfs("ib0") == 8


def test_timeout_on_zero_reports_state(tmp_path):
    make_tree(tmp_path, numvfs=8)
    host = KernelHost(tmp_path)
    host.fail_after = ("0", errno.ETIMEDOUT)
    _have, plan = run(host, want(4, force=True))
    with pytest.raises(_sriov.SriovApplyError) as info:
        _sriov.apply_sriov(host, plan)
    assert "timed out" in str(info.value) and "sriov_numvfs is now 8" in str(info.value)


def test_vf_guids_derived_applied_and_idempotent(node):
    host, runner, _sysfs = node
    have, plan = run(host, want(4, guid_policy="derived"))
    guid_changes = [c for c in plan.changes if c.action == "set_vf_guid"]
    assert len(guid_changes) == 4
    _sriov.apply_sriov(host, plan)
    sets = [c for c in runner.calls if c[:3] == ["ip", "link", "set"]]
    assert sets[0][:7] == ["ip", "link", "set", "dev", "ib0", "vf", "0"]
    assert sets[0][7] == "node_guid" and sets[0][9] == "port_guid"
    have, plan = run(host, want(4, guid_policy="derived"))
    assert have["vf_guids"][0]["node_guid"] == plan.info["vf_guids"][0]["node_guid"]
    assert not plan.changed
    guids = [g for e in plan.info["vf_guids"] for g in (e["node_guid"], e["port_guid"])]
    assert len(set(guids)) == 8 and "0000:0000:0000:0000" not in guids


def test_vf_guids_through_mlx5_sysfs_without_ip(tmp_path):
    make_tree(tmp_path, numvfs=0)
    runner = FakeRunner(vf_guid_error="RTNETLINK answers: Operation not supported")
    host = KernelHost(tmp_path, runner=runner, vf_sysfs_guids=True, vf_netdevs=False)
    _have, plan = run(host, want(3, guid_policy="derived"))
    _sriov.apply_sriov(host, plan)
    assert not [c for c in runner.calls if c[:3] == ["ip", "link", "set"]]
    node0 = host.read("bus/pci/devices/%s/sriov/0/node" % PF_PCI)
    assert _values.parse_guid(node0) == _values.parse_guid(plan.info["vf_guids"][0]["node_guid"])
    have, plan = run(host, want(3, guid_policy="derived"))
    assert not plan.changed and have["vf_guids"][2]["port_guid"] == plan.info["vf_guids"][2]["port_guid"]
    assert any("cannot be detected" in w for w in plan.warnings) is False  # no resize, no guard


def test_vf_guid_pool_and_explicit(node):
    host = node[0]
    _have, plan = run(host, want(2, guid_policy="pool", guid_pool_start="0200:0000:0000:0010"))
    assert plan.info["vf_guids"][1] == {
        "index": 1,
        "node_guid": "0200:0000:0000:0012",
        "port_guid": "0200:0000:0000:0013",
    }
    _have, plan = run(host, want(2, guid_policy="pool", guid_pool_start="0000:0000:0000:0000"))
    assert not plan.ok
    dup = [
        {"node_guid": "0200:0000:0000:0001", "port_guid": "0200:0000:0000:0002"},
        {"node_guid": "0200:0000:0000:0001", "port_guid": "0200:0000:0000:0003"},
    ]
    _have, plan = run(host, want(2, guid_policy="explicit", guids=dup))
    assert "used twice" in plan.error_message()
    zero = [{"node_guid": "0000:0000:0000:0000", "port_guid": "0200:0000:0000:0002"}]
    _have, plan = run(host, want(1, guid_policy="explicit", guids=zero))
    assert "not a usable GUID" in plan.error_message()


def test_vf_guid_failure_is_reported_honestly(node):
    host, runner, _sysfs = node
    runner.vf_guid_error = "RTNETLINK answers: Operation not supported"
    _have, plan = run(host, want(2, guid_policy="derived"))
    with pytest.raises(_sriov.SriovApplyError) as info:
        _sriov.apply_sriov(host, plan)
    assert "Operation not supported" in str(info.value) and "does not support VF GUIDs" in str(info.value)
    assert info.value.done[0].startswith("0000:82:00.0/sriov_numvfs")


LEGACY_RULE = (
    "# Managed by hpcnet.infiniband.ib_sriov: SR-IOV of PF 0000:82:00.0 (ib0)\n"
    'ACTION=="add", SUBSYSTEM=="net", KERNEL=="ib0", KERNELS=="0000:82:00.0", ATTR{device/sriov_numvfs}="2"\n'
)
RULE_PATH = "/etc/udev/rules.d/70-hpcnet-sriov-0000-82-00.0.rules"


@pytest.mark.parametrize("name", ["ibp94s0", "enp94s0f0"])
def test_persist_writes_no_kernel_name_udev_rule(tmp_path, name):
    """Issue 12 item 4: a KERNEL=="<name>" rule never fires on renamed interfaces; the boot service replaces it."""
    make_tree(tmp_path / "sys", pf=name)
    os.makedirs(str(tmp_path / "root"))
    host = KernelHost(tmp_path / "sys", fs_root=tmp_path / "root", runner=FakeRunner())
    plan, have, _extra = _sriov.prepare(host, {"pf": PF_PCI, "num_vfs": 2, "guid_policy": "derived", "persist": True})
    assert have["name"] == name and plan.ok
    assert [c.action for c in plan.changes if c.action in ("write_file", "remove_file")] == []
    assert not any("KERNEL==" in str(c.after) for c in plan.changes)
    assert "render_udev_rule" not in vars(_sriov)


def test_legacy_udev_rule_removed_only_when_ours(node, tmp_path):
    host = node[0]
    _have, plan = run(host, want(2, persist=True), files={RULE_PATH: LEGACY_RULE})
    assert [(c.action, c.target) for c in plan.changes][-1] == ("remove_file", RULE_PATH)
    operator = 'SUBSYSTEM=="net", KERNEL=="ib0", RUN+="/usr/local/bin/x"\n'
    _have, plan = run(host, want(2, persist=True), files={RULE_PATH: operator})
    assert "remove_file" not in [c.action for c in plan.changes]


def test_pf_by_pci_address_validates_the_netdev_name_read_from_sysfs(tmp_path):
    """Issue 10 item 11: a netdev name from sysfs with '"' never reaches a path, argv or file line."""
    dev = make_tree(tmp_path, ipoib=False)
    add_netdev(str(tmp_path), 'ib"0', dev)
    host = KernelHost(tmp_path)
    with pytest.raises(_sriov.SriovError) as info:
        _sriov.read_pf(host, PF_PCI)
    assert "'ib\"0'" in str(info.value) and "not a valid interface name" in str(info.value)


def test_vf_driver_name_from_sysfs_is_validated(node):
    host, _runner, sysfs = node
    _sriov.apply_sriov(host, run(host, want(2))[1])
    bind_vf(sysfs, PF_PCI, 1, "bad driver")
    with pytest.raises(_sriov.SriovError) as info:
        _sriov.read_pf(host, "ib0")
    assert "'bad driver'" in str(info.value) and "VF 1" in str(info.value)


def test_refusal_after_a_planned_change_drops_the_plan(node):
    """Issue 10 item 12: the VF count change was planned before the bad pool was found: nothing is planned."""
    host = node[0]
    _have, plan = run(host, want(4, guid_policy="pool", guid_pool_start="0000:0000:0000:0000"))
    assert not plan.ok and plan.changes == [] and not plan.changed
    _have, plan = run(host, want(4, guid_policy="pool", guid_pool_start="ffff:ffff:ffff:fffe"))
    assert not plan.ok and plan.changes == []


def _vfs_with_zero_guids(host):
    _sriov.apply_sriov(host, run(host, want(2))[1])
    assert host.numvfs("ib0") == 2


def test_vf_guids_unbind_set_rebind(node):
    """Issue 12 item 2: a VF takes new GUIDs when its driver probes it again: unbind, set, bind."""
    host, runner, _sysfs = node
    _vfs_with_zero_guids(host)
    have, plan = run(host, want(2, guid_policy="derived"))
    assert [c.action for c in plan.changes] == ["unbind_vf", "set_vf_guid", "bind_vf"] * 2
    vf0 = have["vfs"][0]["pci_address"]
    assert plan.changes[0].detail["vf_pci"] == vf0 and plan.changes[0].before == "mlx5_core"
    runner.calls.clear()
    host.ops.clear()
    result = _sriov.apply_sriov(host, plan)
    assert host.ops[:2] == [("unbind", "mlx5_core", vf0), ("bind", "mlx5_core", vf0)]
    order = [w[0] for w in host.writes if "/bind" in w[0] or "/unbind" in w[0]]
    assert order == ["bus/pci/drivers/mlx5_core/unbind", "bus/pci/drivers/mlx5_core/bind"] * 2
    assert [c for c in runner.calls if c[:3] == ["ip", "link", "set"]][0][6] == "0"
    assert "unbound %s from mlx5_core" % vf0 in result["applied"][0]
    assert host.readlink_name("bus/pci/devices/%s/virtfn0/driver" % PF_PCI) == "mlx5_core"
    _have, plan = run(host, want(2, guid_policy="derived"))
    assert not plan.changed


def test_vf_guids_after_a_resize_rebind_the_new_vfs(node):
    host = node[0]
    _have, plan = run(host, want(2, guid_policy="derived"))
    assert [c.action for c in plan.changes] == ["set_numvfs"] + ["unbind_vf", "set_vf_guid", "bind_vf"] * 2
    assert plan.changes[1].detail["vf_pci"] is None  # the VF does not exist yet
    _sriov.apply_sriov(host, plan)
    assert [op for op, _d, _a in host.ops] == ["unbind", "bind", "unbind", "bind"]


@pytest.mark.parametrize("holder", ["addresses", "up", "enslaved", "vfio"])
def test_vf_guids_refused_before_any_write_when_the_vf_is_in_use(node, holder):
    host, runner, sysfs = node
    _vfs_with_zero_guids(host)
    netdev = os.path.join(str(sysfs), "class/net/ib0_vf1")
    if holder in ("addresses", "up"):
        with open(os.path.join(netdev, "flags"), "w") as handle:
            handle.write("0x1003\n")
        if holder == "addresses":
            runner.addresses["ib0_vf1"] = ["192.0.2.9/24"]
    elif holder == "enslaved":
        os.makedirs(os.path.join(str(sysfs), "devices/virtual/net/bond0"))
        os.symlink(os.path.join(str(sysfs), "devices/virtual/net/bond0"), os.path.join(os.path.realpath(netdev), "master"))
    else:
        bind_vf(sysfs, PF_PCI, 1, "vfio-pci")
    before = snapshot(sysfs)
    _have, plan = run(host, want(2, guid_policy="derived"))
    assert not plan.ok and plan.changes == []
    message = plan.error_message()
    assert "VF 1 (" in message and "unbinds and rebinds" in message and "force: true" in message
    assert {"addresses": "192.0.2.9/24", "up": "ib0_vf1 is up", "enslaved": "enslaved to bond0",
            "vfio": "vfio-pci"}[holder] in message
    assert snapshot(sysfs) == before
    _have, plan = run(host, want(2, guid_policy="derived", force=True))
    assert plan.ok and any("force" in w for w in plan.warnings)


def test_vf_guid_failure_rebinds_the_vf(node):
    host, runner, _sysfs = node
    _vfs_with_zero_guids(host)
    _have, plan = run(host, want(2, guid_policy="derived"))
    runner.vf_guid_error = "RTNETLINK answers: Invalid argument"
    with pytest.raises(_sriov.SriovApplyError) as info:
        _sriov.apply_sriov(host, plan)
    assert "bound to mlx5_core again" in str(info.value)
    assert [op for op, _d, _a in host.ops] == ["unbind", "bind"]
    assert host.readlink_name("bus/pci/devices/%s/virtfn0/driver" % PF_PCI) == "mlx5_core"


def test_vf_rebind_failure_names_the_unbound_vf(node):
    host, _runner, _sysfs = node
    _vfs_with_zero_guids(host)
    _have, plan = run(host, want(2, guid_policy="derived"))
    host.fail_bind = errno.ENOMEM
    with pytest.raises(_sriov.SriovApplyError) as info:
        _sriov.apply_sriov(host, plan)
    assert "has its new GUIDs but binding it to mlx5_core failed" in str(info.value)
    assert info.value.state["driver"] is None and info.value.done


def test_read_firmware_both_layouts(node):
    # The one mstconfig parser (_firmware.parse_query) serves the SR-IOV hint too.
    host, runner, _sysfs = node
    runner.mstconfig = MSTCONFIG_OLD
    old = _sriov.read_firmware(host, PF_PCI)
    assert old["device_type"] == "ConnectX5"
    assert old["settings"]["NUM_OF_VFS"] == {"default": None, "current": None, "next_boot": "16"}
    runner.mstconfig = MSTCONFIG_NEW
    new = _sriov.read_firmware(host, PF_PCI)
    assert new["settings"]["NUM_OF_VFS"] == {"default": "0", "current": "16", "next_boot": "16"}
    assert new["settings"]["SRIOV_EN"]["current"] == "True(1)"


def test_read_firmware_absent_and_present(node):
    host, runner, _sysfs = node
    absent = _sriov.read_firmware(host, PF_PCI)
    assert absent["available"] is False and "mstflint" in absent["error"]
    runner.mstconfig = MSTCONFIG_OLD
    present = _sriov.read_firmware(host, PF_PCI)
    assert present["settings"]["SRIOV_EN"]["next_boot"] == "True(1)"
    assert ["mstconfig", "-d", PF_PCI, "q"] in runner.calls


@pytest.mark.parametrize("device", ["0x1003", "0x1007"])
def test_mlx4_plans_options_never_writes_numvfs(tmp_path, device):
    make_tree(tmp_path, device=device, driver="mlx4_core", ibdev="mlx4_0", totalvfs=16)
    host = KernelHost(tmp_path)
    have, plan = run(host, want(8, mlx4_probe_vf=2))
    assert have["family"] == "mlx4"
    assert [c.action for c in plan.changes] == ["write_file"]
    assert plan.changes[0].target == _sriov.MLX4_OPTIONS_PATH
    assert "options mlx4_core num_vfs=8\noptions mlx4_core probe_vf=2\n" in plan.changes[0].after
    assert plan.reboot_required
    _sriov.apply_sriov(host, plan)
    assert not [w for w in host.writes if w[0].endswith("sriov_numvfs")]
    files = {_sriov.MLX4_OPTIONS_PATH: host.read_file(_sriov.MLX4_OPTIONS_PATH)}
    _have, plan = run(host, want(8, mlx4_probe_vf=2), files=files)
    assert not plan.changed and plan.reboot_required  # still pending until mlx4_core reloads


def test_mlx4_refusals_through_the_option_model(tmp_path):
    make_tree(tmp_path, device="0x1003", driver="mlx4_core", ibdev="mlx4_0", totalvfs=16)
    host = KernelHost(tmp_path)
    _have, plan = run(host, want(6, mlx4_num_vfs_per_port=[2, 2, 2]))
    assert "InfiniBand ports" in plan.error_message()  # single-port VFs are Ethernet-only in mlx4
    _have, plan = run(host, want(5, mlx4_num_vfs_per_port=[2, 2, 2]))
    assert "add up" in plan.error_message()
    _have, plan = run(host, want(32))
    assert "sriov_totalvfs=16" in plan.error_message() and "mstconfig" in plan.error_message()
    _have, plan = run(host, want(4, mlx4_probe_vf=5))
    assert "probe" in plan.error_message()
    other = {"/etc/modprobe.d/hpcnet-mlx4_core.conf": "options mlx4_core num_vfs=4\n"}
    _have, plan = run(host, want(4), files=other)
    assert "one place only" in plan.error_message()


def test_mlx4_per_port_form_on_ethernet(tmp_path):
    make_tree(tmp_path, device="0x1007", driver="mlx4_core", ibdev="mlx4_0", totalvfs=64, link_layer="Ethernet")
    host = KernelHost(tmp_path)
    _have, plan = run(host, want(4, mlx4_num_vfs_per_port=[2, 0, 2]))
    assert plan.ok, plan.errors
    assert "num_vfs=2,0,2" in plan.changes[0].after
    _have, plan = run(host, want(6, mlx4_num_vfs_per_port=[2, 2, 2]))
    assert "has one port" in plan.error_message()


def test_vf_itself_is_refused(tmp_path):
    make_tree(tmp_path, device="0x1018")
    host = KernelHost(tmp_path)
    _have, plan = run(host, want(2))
    assert "itself a virtual function" in plan.error_message()


# ------------------------------------------------------------------ mlx4 file ownership (issue 10 item 2)
def _cx3(tmp_path, runner=None):
    make_tree(tmp_path / "sys", device="0x1003", driver="mlx4_core", ibdev="mlx4_0", totalvfs=16)
    root = tmp_path / "root"
    os.makedirs(str(root / "etc/modprobe.d"))
    return KernelHost(tmp_path / "sys", fs_root=root, runner=runner), root


@pytest.mark.parametrize(
    "path", ["/etc/hostname", "/etc/modprobe.d/../hostname.conf", "/etc/modprobe.d/x.txt", "/etc/modprobe.d/a/b.conf",
             "/tmp/x.conf", "/etc/modprobe.d/.conf"]
)
def test_mlx4_options_path_outside_modprobe_d_is_refused(tmp_path, path):
    host, root = _cx3(tmp_path)
    (root / "etc/hostname").write_text("node1\n")
    before = snapshot(tmp_path)
    for num_vfs in (4, 0):
        plan, _have, _extra = _sriov.prepare(host, {"pf": "ib0", "num_vfs": num_vfs, "mlx4_options_path": path})
        assert not plan.ok and plan.changes == []
        assert repr(path) in plan.error_message() and "/etc/modprobe.d/<name>.conf" in plan.error_message()
    assert snapshot(tmp_path) == before


def test_mlx4_operator_file_is_never_overwritten_nor_removed(tmp_path):
    host, root = _cx3(tmp_path)
    theirs = root / "etc/modprobe.d/mlx4.conf"
    theirs.write_text("# site tuning\noptions mlx4_core num_vfs=2 log_num_mgm_entry_size=-1\n")
    before = snapshot(tmp_path)
    for num_vfs in (8, 0):
        plan, _have, _extra = _sriov.prepare(
            host, {"pf": "ib0", "num_vfs": num_vfs, "mlx4_options_path": "/etc/modprobe.d/mlx4.conf"}
        )
        assert not plan.ok and plan.changes == []
        message = plan.error_message()
        assert "/etc/modprobe.d/mlx4.conf was not written by hpcnet.infiniband" in message and "num_vfs" in message
    assert snapshot(tmp_path) == before
    # A file of the operator's without mlx4 VF options and nothing wanted: left alone, nothing to do.
    theirs.write_text("options mlx4_core log_num_mgm_entry_size=-1\n")
    plan, _have, _extra = _sriov.prepare(host, {"pf": "ib0", "num_vfs": 0, "mlx4_options_path": "/etc/modprobe.d/mlx4.conf"})
    assert plan.ok and not plan.changes


def test_mlx4_own_file_written_with_marker_and_removed_at_zero(tmp_path):
    host, root = _cx3(tmp_path)
    plan, _have, _extra = _sriov.prepare(host, {"pf": "ib0", "num_vfs": 4})
    _sriov.apply_sriov(host, plan)
    ours = root / _sriov.MLX4_OPTIONS_PATH.lstrip("/")
    assert ours.read_text().startswith("# Managed by hpcnet.infiniband (ib_sriov)")
    plan, _have, _extra = _sriov.prepare(host, {"pf": "ib0", "num_vfs": 0})
    assert [(c.action, c.target) for c in plan.changes] == [("remove_file", _sriov.MLX4_OPTIONS_PATH)]
    _sriov.apply_sriov(host, plan)
    assert not ours.exists()
    plan, _have, _extra = _sriov.prepare(host, {"pf": "ib0", "num_vfs": 4, "mlx4_options_path": "/etc/modprobe.d/hpcnet-mlx4_core.conf"})
    assert "file of ib_kernel_modules" in plan.error_message()


# ------------------------------------------------------------------ initramfs (issue 12 item 3)
class _ListingRunner(FakeRunner):
    def __init__(self, listing):
        super().__init__()
        self.listing = listing

    def answer(self, argv):
        if argv == ["uname", "-r"]:
            return 0, "6.1.0-18-amd64\n", ""
        if argv[0] == "lsinitramfs":
            return (0, self.listing, "") if self.listing is not None else (1, "", "no such file")
        if argv[0] == "update-initramfs":
            return 0, "", ""
        return super().answer(argv)


@pytest.mark.parametrize("in_image", [True, False, None])
def test_mlx4_options_change_reports_initramfs_rebuild_only_when_the_image_holds_mlx4_core(tmp_path, in_image):
    listing = {True: "usr/lib/modules/6.1.0-18-amd64/kernel/drivers/net/ethernet/mellanox/mlx4/mlx4_core.ko\n",
               False: "usr/lib/modules/6.1.0-18-amd64/kernel/drivers/ata/ahci.ko\n", None: None}[in_image]
    runner = _ListingRunner(listing)
    host, root = _cx3(tmp_path, runner)
    (root / "etc/os-release").write_text("ID=debian\n")
    plan, _have, extra = _sriov.prepare(host, {"pf": "ib0", "num_vfs": 4})
    assert plan.changed and plan.reboot_required
    assert extra["initramfs_rebuild"] is bool(in_image)
    if in_image:
        assert "mlx4_core is in the initramfs" in extra["initramfs_reason"]
        assert extra["initramfs_rebuild_argv"] == ["update-initramfs", "-u", "-k", "all"]
    else:
        assert extra["initramfs_reason"] is None and extra["initramfs_rebuild_argv"] is None
    assert any("cannot tell whether the initramfs" in w for w in plan.warnings) is (in_image is None)
    assert ["lsinitramfs", "/boot/initrd.img-6.1.0-18-amd64"] in runner.calls
    # Nothing changes in the file: no rebuild asked, no image listed.
    _sriov.apply_sriov(host, plan)
    runner.calls.clear()
    plan, _have, extra = _sriov.prepare(host, {"pf": "ib0", "num_vfs": 4})
    assert not plan.changed and extra["initramfs_rebuild"] is False
    assert not [c for c in runner.calls if c[0] == "lsinitramfs"]
