"""ib_boot_state end to end in a test root: check mode, diff, idempotence, foreign files, systemd."""

import os

import pytest

from ansible_collections.hpcnet.infiniband.plugins.module_utils import _boot
from ansible_collections.hpcnet.infiniband.plugins.module_utils._host import Host
from ansible_collections.hpcnet.infiniband.plugins.modules import ib_boot_state
from fakehost import FakeRunner, snapshot
from testlib import run_module

SRIOV = [{"pf": "ib0", "num_vfs": 4, "guid_policy": "derived", "timeout": 120}]
IPOIB = [{"parent": "ib0", "pkey": "0x8002", "mode": "datagram", "mtu": 2044, "timeout": 30}]


class SystemctlRunner(FakeRunner):
    def __init__(self):
        super().__init__()
        self.enabled = False
        self.installed = True

    def answer(self, argv):
        if not self.installed:
            return 127, "", "systemctl: command not found"
        if argv[:2] == ["systemctl", "is-enabled"]:
            return (0, "enabled\n", "") if self.enabled else (1, "disabled\n", "")
        if argv[:2] == ["systemctl", "enable"]:
            self.enabled = True
        return 0, "", ""


@pytest.fixture
def root(tmp_path, monkeypatch):
    runner = SystemctlRunner()
    monkeypatch.setattr(Host, "from_module", classmethod(
        lambda cls, module, sysfs_root="/sys", fs_root="/": Host(fs_root=fs_root, runner=runner, live=False)))
    return tmp_path, runner


def test_check_diff_apply_idempotent_without_systemd(root, capsys):
    tmp_path, runner = root
    runner.installed = False
    args = {"sriov": SRIOV, "ipoib": IPOIB, "fs_root": str(tmp_path)}
    result = run_module(ib_boot_state, args, capsys, check=True, diff=True)
    assert result["changed"] and result["diff"] and not result["systemd"] and result["enabled"] is None
    assert not os.listdir(str(tmp_path))
    result = run_module(ib_boot_state, args, capsys)
    assert result["changed"] and _boot.STATE_PATH in result["files"]
    state = tmp_path / _boot.STATE_PATH.lstrip("/")
    assert _boot.parse_state(state.read_text())["ipoib"][0]["mtu"] == 2044
    assert oct(os.stat(str(tmp_path / _boot.SCRIPT_PATH.lstrip("/"))).st_mode & 0o777) == "0o755"
    assert oct(state.stat().st_mode & 0o777) == "0o644"
    assert [c[1] for c in runner.calls] == ["is-enabled", "is-enabled"]
    before = snapshot(tmp_path)
    result = run_module(ib_boot_state, args, capsys)
    assert not result["changed"] and snapshot(tmp_path) == before
    result = run_module(ib_boot_state, dict(args, ipoib=[]), capsys, diff=True)
    assert [p["target"] for p in result["plan"]] == [_boot.STATE_PATH]
    result = run_module(ib_boot_state, {"state": "absent", "fs_root": str(tmp_path)}, capsys)
    assert result["changed"] and not os.path.exists(str(state))


def test_refuses_a_foreign_unit_and_changes_nothing(root, capsys):
    tmp_path, _runner = root
    unit = tmp_path / _boot.UNIT_PATH.lstrip("/")
    unit.parent.mkdir(parents=True)
    unit.write_text("[Unit]\nDescription=the admin's own\n")
    before = snapshot(tmp_path)
    result = run_module(ib_boot_state, {"sriov": SRIOV, "fs_root": str(tmp_path)}, capsys)
    assert result["failed"] and _boot.UNIT_PATH in result["msg"] and not result["changed"]
    assert snapshot(tmp_path) == before


def test_bad_entry_is_one_clear_error(root, capsys):
    tmp_path, _runner = root
    result = run_module(ib_boot_state, {"ipoib": [{"pkey": "0x8002"}], "fs_root": str(tmp_path)}, capsys)
    assert result["failed"] and "has no parent" in result["msg"]


def test_enabled_without_systemd_running(root, capsys):
    tmp_path, runner = root
    result = run_module(ib_boot_state, {"sriov": SRIOV, "fs_root": str(tmp_path)}, capsys)
    assert result["changed"] and not result["systemd"] and result["enabled"]
    assert [c for c in runner.calls if c[1] != "is-enabled"] == [["systemctl", "enable", _boot.UNIT_NAME]]


def test_systemd_reload_and_enable_only_when_needed(root, capsys):
    tmp_path, runner = root
    (tmp_path / "run/systemd/system").mkdir(parents=True)
    args = {"sriov": SRIOV, "fs_root": str(tmp_path)}
    result = run_module(ib_boot_state, args, capsys)
    assert result["changed"] and result["systemd"] and result["enabled"]
    assert [c for c in runner.calls if c[1] != "is-enabled"] == [
        ["systemctl", "daemon-reload"], ["systemctl", "enable", _boot.UNIT_NAME]]
    runner.calls.clear()
    result = run_module(ib_boot_state, dict(args, sriov=[]), capsys)
    assert result["changed"] and [c for c in runner.calls if c[1] != "is-enabled"] == []
    result = run_module(ib_boot_state, dict(args, sriov=[]), capsys)
    assert not result["changed"]


def test_check_mode_diff_shows_every_file_the_run_writes_and_removes(root, capsys):
    """Done-when of issue 12: check mode and diff show every file the boot path would change, with its
    text, and the real run then writes exactly those (and removes exactly those with state absent)."""
    tmp_path, _runner = root
    args = {"sriov": SRIOV, "ipoib": IPOIB, "fs_root": str(tmp_path)}
    check = run_module(ib_boot_state, args, capsys, check=True, diff=True)
    files = {d["after_header"]: d["after"] for d in check["diff"] if d["after_header"].startswith("/")}
    assert set(files) == set(_boot.wanted_files(SRIOV, IPOIB))
    assert {_boot.STATE_PATH, _boot.UNIT_PATH, _boot.SCRIPT_PATH, _boot.LIB_PACKAGE_DIR + "/_sriov.py"} <= set(files)
    assert [d["after_header"] for d in check["diff"] if not d["after_header"].startswith("/")] == [
        "enable " + _boot.UNIT_NAME]
    assert not os.listdir(str(tmp_path))
    run_module(ib_boot_state, args, capsys)
    for path, text in files.items():
        assert (tmp_path / path.lstrip("/")).read_text() == text, path
    written = {"/" + os.path.relpath(os.path.join(d, f), str(tmp_path)) for d, _dirs, names in os.walk(str(tmp_path))
               for f in names}
    assert written == set(files)
    check = run_module(ib_boot_state, {"state": "absent", "fs_root": str(tmp_path)}, capsys, check=True, diff=True)
    assert {d["before_header"] for d in check["diff"] if d["after"] == ""} >= set(files)
    assert {d["before_header"]: d["before"] for d in check["diff"] if d["before_header"] in files} == files
