"""The boot path: state file, unit and script renderers, ownership, plan, and the boot-time apply
through the same _sriov/_ipoib code as the modules (on the kernel-like fixture tree)."""

import json
import os
import subprocess
import sys

import pytest

from ansible_collections.hpcnet.infiniband.plugins.module_utils import _boot
from fakekernel import FakeRunner, KernelHost, make_tree

SRIOV = {"pf": "ib0", "num_vfs": 4, "force": False, "guid_policy": "derived", "guid_pool_start": None, "guids": None,
         "persist": True, "mlx4_num_vfs_per_port": None, "mlx4_probe_vf": None,
         "mlx4_options_path": "/etc/modprobe.d/hpcnet-mlx4-sriov.conf", "firmware_info": True, "timeout": 120,
         "sysfs_root": "/sys", "fs_root": "/"}
IPOIB = {"parent": "ib0", "pkey": "0x8002", "membership": "full", "state": "present", "mode": "connected",
         "mtu": 65520, "umcast": None, "pkey_check": "warn", "port_ib_mtu": 4096, "timeout": 30, "sysfs_root": "/sys"}


def test_state_round_trip_marker_and_stable_text():
    text = _boot.render_state([SRIOV], [IPOIB])
    assert _boot.owned(text) and text == _boot.render_state([dict(SRIOV)], [dict(IPOIB)])
    state = _boot.parse_state(text)
    assert state["sriov"][0]["num_vfs"] == 4 and "guids" not in state["sriov"][0]
    assert state["ipoib"][0]["pkey"] == "0x8002"


@pytest.mark.parametrize("text, needle", [
    ("{not json", "not JSON"),
    (json.dumps({"schema": 1, "sriov": []}), "marker"),
    (_boot.render_state([], []).replace('"schema": 1', '"schema": 9'), "schema 9"),
    (_boot.render_state([], []).replace('"ipoib": []', '"ipoib": [{"parent": "../x"}]'), "'../x'"),
])
def test_parse_state_refuses(text, needle):
    with pytest.raises(_boot.BootError, match=needle.replace("(", ".").replace(")", ".")):
        _boot.parse_state(text)


def test_render_refuses_bad_names():
    with pytest.raises(_boot.BootError, match="no pf"):
        _boot.render_state([{"num_vfs": 2}], [])
    with pytest.raises(_boot.BootError, match="not a valid"):
        _boot.render_state([], [{"parent": "ib0/../x"}])


def test_unit_orders_before_network_pre_and_runs_the_script():
    unit = _boot.render_unit()
    lines = unit.splitlines()
    assert _boot.owned(unit)
    assert "Before=network-pre.target shutdown.target" in lines and "Wants=network-pre.target" in lines
    assert "DefaultDependencies=no" in lines and "Type=oneshot" in lines
    assert "ConditionPathExists=%s" % _boot.STATE_PATH in lines
    assert "ExecStart=%s --state %s" % (_boot.SCRIPT_PATH, _boot.STATE_PATH) in lines
    assert any(line.startswith("After=") and "systemd-modules-load.service" in line for line in lines)


def test_library_is_the_import_closure_and_runs_from_a_copy(tmp_path):
    sources = _boot.library_sources()
    assert {"_boot.py", "_sriov.py", "_ipoib.py", "_host.py", "_plan.py", "_values.py"} <= set(sources)
    assert "_nodes_model.py" not in sources
    assert all(_boot.owned(text) for text in sources.values())
    # The copies alone (no collection, no Ansible on sys.path) import and run the boot entry point.
    lib = tmp_path / "lib"
    pkg = lib / _boot.PACKAGE.replace(".", "/")
    pkg.mkdir(parents=True)
    for name, text in sources.items():
        (pkg / name).write_text(text)
    script = tmp_path / "hpcnet-ib-boot"
    script.write_text(_boot.render_script(sys.executable, str(lib)))
    proc = subprocess.run([sys.executable, "-I", str(script), "--state", str(tmp_path / "none.json")],
                          capture_output=True, text=True, timeout=60, check=False, cwd=str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert "does not exist: nothing to apply" in proc.stdout


def _have(files=None, systemd=False, enabled=False, systemctl=True):
    return {"files": dict(files or {}), "systemd": systemd, "systemctl": systemctl, "enabled": enabled}


def test_plan_writes_then_nothing_and_refuses_foreign_files():
    want = {_boot.STATE_PATH: _boot.render_state([SRIOV], []), _boot.UNIT_PATH: _boot.render_unit(),
            _boot.SCRIPT_PATH: _boot.render_script()}
    plan = _boot.plan_boot(_have({p: None for p in want}, systemctl=False), want)
    assert [c.action for c in plan.changes] == ["write_file"] * 3 and plan.info["enabled"] is None
    assert {c.target: c.detail["mode"] for c in plan.changes}[_boot.SCRIPT_PATH] == "0755"
    assert not _boot.plan_boot(_have(want, enabled=True), want).changes
    # systemctl without systemd running (chroot, container, lab node): enable, no daemon-reload.
    assert [c.target for c in _boot.plan_boot(_have(want), want).changes] == ["enable " + _boot.UNIT_NAME]
    foreign = dict(want, **{_boot.UNIT_PATH: "[Unit]\nDescription=mine\n"})
    plan = _boot.plan_boot(_have(foreign), want)
    assert not plan.ok and not plan.changes and _boot.UNIT_PATH in plan.error_message()
    stale = dict(want, **{_boot.LIB_PACKAGE_DIR + "/_old.py": "# Managed by hpcnet.infiniband (ib_boot_state)\n"})
    assert [(c.action, c.target) for c in _boot.plan_boot(_have(stale, enabled=True), want).changes] == [
        ("remove_file", _boot.LIB_PACKAGE_DIR + "/_old.py")]
    plan = _boot.plan_boot(_have(want, enabled=True), want, state="absent")
    assert [c.action for c in plan.changes] == ["systemctl"] + ["remove_file"] * 3


def test_plan_under_systemd_reloads_only_for_the_unit_and_enables_once():
    want = {_boot.STATE_PATH: _boot.render_state([], [IPOIB]), _boot.UNIT_PATH: _boot.render_unit()}
    plan = _boot.plan_boot(_have({p: None for p in want}, systemd=True, enabled=False), want)
    assert [c.target for c in plan.changes][-2:] == ["daemon-reload", "enable " + _boot.UNIT_NAME]
    changed_state = dict(want, **{_boot.STATE_PATH: _boot.render_state([], [])})
    plan = _boot.plan_boot(_have(changed_state, systemd=True, enabled=True), want)
    assert [c.target for c in plan.changes] == [_boot.STATE_PATH]
    assert not _boot.plan_boot(_have(want, systemd=True, enabled=True), want).changes
    plan = _boot.plan_boot(_have(want, systemd=True, enabled=True), want, state="absent")
    assert plan.changes[0].target == "disable " + _boot.UNIT_NAME


@pytest.fixture
def kernel(tmp_path):
    sysfs = tmp_path / "sys"
    make_tree(sysfs)
    root = tmp_path / "root"
    root.mkdir()
    return KernelHost(sysfs, fs_root=root, runner=FakeRunner(), vf_sysfs_guids=True), tmp_path


def test_apply_state_power_on_to_wanted_then_nothing(kernel):
    host, tmp_path = kernel
    # The fixture is an mlx5 PF (enhanced IPoIB: datagram only); VF GUIDs (unbind, set, rebind) are
    # _sriov's and proven on the lab (tests/integration/test_reboot.py).
    state = _boot.parse_state(_boot.render_state([dict(SRIOV, guid_policy="none")],
                                                 [dict(IPOIB, mode="datagram", mtu=2044)]))
    messages = []
    changes, problems = _boot.apply_state(host, state, messages.append)
    assert problems == [] and changes > 0, messages
    assert host.numvfs("ib0") == 4
    assert host.read("class/net/ib0.8002/mode") == "datagram" and host.read("class/net/ib0.8002/mtu") == "2044"
    # persist=True in the state file, but the boot path never writes files.
    assert not any(os.scandir(str(tmp_path / "root")))
    messages = []
    assert _boot.apply_state(host, state, messages.append) == (0, [])
    assert all("already as wanted" in m for m in messages), messages


def test_apply_state_absent_hardware_is_skipped_and_refusals_reported(kernel):
    host, _tmp = kernel
    state = _boot.parse_state(_boot.render_state(
        [dict(SRIOV, pf="0000:99:00.0"), dict(SRIOV, num_vfs=64)], [dict(IPOIB, parent="ib7")]))
    messages = []
    changes, problems = _boot.apply_state(host, state, messages.append)
    assert changes == 0 and len(problems) == 1 and "refused" in problems[0] and "64" in problems[0]
    assert sum("not present on this host: skipped" in m for m in messages) == 2


def test_main_exit_codes(tmp_path, capsys):
    sysfs = tmp_path / "sys"
    (sysfs / "class/net").mkdir(parents=True)
    state = tmp_path / "etc/hpcnet-infiniband/boot-state.json"
    state.parent.mkdir(parents=True)
    argv = ["--sysfs-root", str(sysfs), "--fs-root", str(tmp_path)]
    assert _boot.main(argv) == 0 and "nothing to apply" in capsys.readouterr().out
    state.write_text(_boot.render_state([SRIOV], [IPOIB]))
    assert _boot.main(argv) == 0
    out = capsys.readouterr().out
    assert out.count("not present on this host") == 2 and "0 problem(s)" in out
    state.write_text("{}")
    assert _boot.main(argv) == 2 and "marker" in capsys.readouterr().out


def test_boot_never_writes_files(tmp_path):
    # ConnectX-3: the VF count is an mlx4_core option, a file the sriov role owns; at boot it is reported.
    sysfs = tmp_path / "sys"
    make_tree(sysfs, device="0x1003", driver="mlx4_core", ibdev="mlx4_0")
    root = tmp_path / "root"
    root.mkdir()
    host = KernelHost(sysfs, fs_root=root, runner=FakeRunner())
    messages = []
    changes, problems = _boot.apply_state(host, {"sriov": [dict(SRIOV, guid_policy="none")]}, messages.append)
    assert changes == 0 and problems == [] and not any(os.scandir(str(root)))
    assert any("not written at boot" in m for m in messages), messages
