"""Unit tests of _ipoib: P_Key children, mode, MTU, umcast against a kernel-like fixture tree."""

import os

import pytest

from ansible_collections.hpcnet.infiniband.plugins.module_utils import _ipoib
from fakehost import snapshot
from fakekernel import KernelHost, add_netdev, make_tree


# ConnectX-3 (mlx4): classic IPoIB with connected mode. mlx5 is enhanced IPoIB (datagram only).
MLX4 = {"driver": "mlx4_core", "ibdev": "mlx4_0", "device": "0x1003"}


@pytest.fixture
def host(tmp_path):
    make_tree(tmp_path, pkeys=("0xffff", "0x8002", "0x0003"), **MLX4)
    return KernelHost(tmp_path)


def want(**kw):
    base = {"parent": "ib0", "state": "present", "pkey_check": "warn", "membership": "full"}
    base.update(kw)
    return base


def plan_for(host, **kw):
    wanted = want(**kw)
    pkey = None
    if wanted.get("pkey") is not None:
        probe = _ipoib.plan_ipoib(_ipoib.read_ipoib(host, wanted["parent"]), wanted)
        pkey = int(probe.info["pkey"], 16) if probe.info.get("pkey") else None
    return _ipoib.plan_ipoib(_ipoib.read_ipoib(host, wanted["parent"], pkey), wanted)


def test_child_name_and_full_membership_bit(host):
    plan = plan_for(host, pkey=0x0002)
    assert plan.ok
    assert plan.info["name"] == "ib0.8002" and plan.info["pkey"] == "0x8002"
    assert [c.action for c in plan.changes] == ["create_child"]
    _ipoib.apply_ipoib(host, plan)
    assert host.exists("class/net/ib0.8002")
    assert host.read("class/net/ib0.8002/pkey") == "0x8002"
    assert not plan_for(host, pkey="0x8002").changed


@pytest.mark.parametrize("pkey", [0, 0x8000, "0x0000", 0x7FFF, 0xFFFF, 0x10000, "junk", -1])
def test_invalid_pkeys_are_refused(host, tmp_path, pkey):
    before = snapshot(tmp_path)
    plan = plan_for(host, pkey=pkey)
    assert not plan.ok and not plan.changes
    assert snapshot(tmp_path) == before


def test_limited_membership(host):
    plan = plan_for(host, pkey=0x0003, membership="limited")
    assert plan.info["name"] == "ib0.0003"
    plan = plan_for(host, pkey=0x8003, membership="limited")
    assert "full-membership bit" in plan.error_message()


def test_pkey_not_in_table_warns_or_refuses(host):
    plan = plan_for(host, pkey=0x8005)
    assert plan.ok and "not in the P_Key table" in plan.warnings[0]
    plan = plan_for(host, pkey=0x8005, pkey_check="refuse")
    assert not plan.ok and "not in the P_Key table" in plan.error_message()
    plan = plan_for(host, pkey=0x8003, pkey_check="refuse")  # table has 0x0003: limited only
    assert "limited member" in plan.error_message()
    plan = plan_for(host, pkey=0x8005, pkey_check="ignore")
    assert plan.ok and not plan.warnings


def test_mode_mtu_umcast_on_new_child_then_idempotent(host):
    plan = plan_for(host, pkey=0x8002, mode="connected", mtu=65520, umcast=True)
    assert [c.action for c in plan.changes] == ["create_child", "set_mode", "set_mtu", "set_umcast"]
    _ipoib.apply_ipoib(host, plan)
    assert host.read("class/net/ib0.8002/mode") == "connected"
    assert host.read("class/net/ib0.8002/mtu") == "65520"
    assert host.read("class/net/ib0.8002/umcast") == "1"
    assert not plan_for(host, pkey=0x8002, mode="connected", mtu=65520, umcast=True).changed


def test_mtu_checked_against_mode(host):
    assert "4092" in plan_for(host, mtu=4093).error_message()
    assert "2044" in plan_for(host, mtu=2045, port_ib_mtu=2048).error_message()
    assert plan_for(host, mtu=4092).ok
    assert "65520" in plan_for(host, mode="connected", mtu=65521).error_message()
    assert plan_for(host, mode="connected", mtu=65520).ok


def test_parent_attributes_without_pkey(host):
    plan = plan_for(host, mode="datagram", mtu=2044, umcast=False)
    assert not plan.changed  # fixture parent: datagram, 2044, umcast 0
    plan = plan_for(host, umcast=True)
    assert [c.target for c in plan.changes] == ["ib0/umcast"]


def test_absent_removes_child(host):
    _ipoib.apply_ipoib(host, plan_for(host, pkey=0x8002))
    plan = plan_for(host, pkey=0x8002, state="absent")
    assert [c.action for c in plan.changes] == ["delete_child"]
    _ipoib.apply_ipoib(host, plan)
    assert not host.exists("class/net/ib0.8002")
    assert not plan_for(host, pkey=0x8002, state="absent").changed
    assert "needs a pkey" in plan_for(host, state="absent").error_message()


def test_parent_checks(tmp_path):
    make_tree(tmp_path, link_layer="Ethernet", **MLX4)
    host = KernelHost(tmp_path)
    assert "not an IPoIB interface" in plan_for(host, pkey=0x8002).error_message()
    assert "does not exist" in plan_for(host, parent="ib7", pkey=0x8002).error_message()
    with pytest.raises(_ipoib.IpoibError):
        _ipoib.read_ipoib(host, "../x")


def test_child_made_under_another_name_is_refused(host, tmp_path):
    device = os.path.realpath(os.path.join(str(tmp_path), "class/net/ib0/device"))
    add_netdev(str(tmp_path), "ib0.p2", device, pkey="0x8002")
    plan = plan_for(host, pkey=0x8002)
    assert "another name: ib0.p2" in plan.error_message()


@pytest.mark.parametrize("given", ["8002", "0x8002", "0X8002", 32770, 0x8002, "0002", 2])
def test_pkey_text_is_hex_and_integers_are_values(host, given):
    # Regression: "8002" was read as decimal 8002 = 0x1f42 and made ib0.9f42.
    plan = plan_for(host, pkey=given)
    assert plan.ok, plan.errors
    assert plan.info["name"] == "ib0.8002" and plan.info["pkey"] == "0x8002"
    assert plan.changes[0].detail["pkey"] == "0x8002"


def test_old_parsers_are_gone():
    assert not hasattr(_ipoib, "parse_pkey") and not hasattr(_ipoib, "pkey_text")


def test_refused_plan_result_says_unchanged(host):
    # Regression: the MTU refusal came after create_child was planned and the result said changed: true.
    plan = plan_for(host, pkey=0x8002, mtu=9000)
    assert not plan.ok and plan.changes
    assert plan.result()["changed"] is False


@pytest.mark.parametrize("timeout", [0, -1])
def test_bad_timeout_refused_naming_it(host, timeout):
    plan = plan_for(host, pkey=0x8002, timeout=timeout)
    assert "timeout %d is not a positive number" % timeout in plan.error_message()
    assert plan_for(host, pkey=0x8002, timeout=5).ok


@pytest.mark.parametrize("setting", [{"mode": "datagram"}, {"mtu": 2044}, {"umcast": False}])
def test_absent_with_settings_refused(host, setting):
    plan = plan_for(host, pkey=0x8002, state="absent", **setting)
    assert "state=absent removes the child; %s cannot be set" % list(setting)[0] in plan.error_message()


def test_wrong_sysfs_root_is_named(tmp_path):
    root = tmp_path / "notsys"
    root.mkdir()
    with pytest.raises(_ipoib.IpoibError, match="sysfs_root %s is not a sysfs tree" % root):
        _ipoib.read_ipoib(KernelHost(str(root)), "ib0")


@pytest.fixture
def mlx5(tmp_path):
    make_tree(tmp_path, pkeys=("0xffff", "0x8002"))  # ConnectX-5, mlx5_core: enhanced IPoIB
    return KernelHost(tmp_path)


def test_connected_mode_refused_up_front_on_enhanced_ipoib(mlx5, tmp_path):
    # Regression: the child was created, then connected mode failed (EINVAL) and the child stayed.
    before = snapshot(tmp_path)
    for kw in ({"pkey": 0x8002, "mode": "connected"}, {"mode": "connected"}):
        plan = plan_for(mlx5, **kw)
        assert not plan.changes and "enhanced IPoIB" in plan.error_message()
        assert "no connected mode" in plan.error_message()
    assert snapshot(tmp_path) == before
    assert plan_for(mlx5, pkey=0x8002, mode="datagram").ok


def test_classic_ipoib_on_mlx5_keeps_connected_mode(mlx5, tmp_path):
    # ib_ipoib loaded with ipoib_enhanced=0: mlx5 runs classic IPoIB, which has connected mode.
    param = tmp_path / "module/ib_ipoib/parameters/ipoib_enhanced"
    param.parent.mkdir(parents=True)
    param.write_text("0\n")
    assert plan_for(mlx5, pkey=0x8002, mode="connected").ok


def test_failed_apply_rolls_back_the_created_child(host, monkeypatch):
    plan = plan_for(host, pkey=0x8002, mode="connected", mtu=65520)
    real_write = host.write

    def write(rel, value, timeout=30):
        if rel.endswith("ib0.8002/mtu"):
            raise _ipoib.HostError("Invalid argument", 22, rel)
        return real_write(rel, value, timeout)

    monkeypatch.setattr(host, "write", write)
    with pytest.raises(_ipoib.IpoibApplyError) as info:
        _ipoib.apply_ipoib(host, plan)
    assert not host.exists("class/net/ib0.8002")
    error = info.value
    assert [d.split(" ")[0] for d in error.done] == ["create_child", "set_mode"]
    assert error.undone == ["delete_child ib0/delete_child: ib0.8002"]
    assert "set_mtu ib0.8002/mtu" in str(error) and "rolled back: delete_child" in str(error)
    assert error.changed is False


def test_only_the_parents_port_table_is_read(host, monkeypatch):
    reads = []
    real_read = host.read

    def read(rel):
        reads.append(rel)
        return real_read(rel)

    monkeypatch.setattr(host, "read", read)
    _ipoib.read_ipoib(host, "ib0", 0x8002, read_table=False)
    assert not [r for r in reads if "/pkeys/" in r]
    have = _ipoib.read_ipoib(host, "ib0", 0x8002)
    assert have["pkeys"] == [0xFFFF, 0x8002, 0x0003] and have["port"] == "1"
