"""ib_network end to end on fixture trees with a fake ifupdown / NetworkManager / ip: check mode and diff,
idempotence, refusals with nothing written, only the changed device bounced."""

import os

import pytest

from ansible_collections.hpcnet.infiniband.plugins.modules import ib_network
from ansible_collections.hpcnet.infiniband.plugins.module_utils import _netconf as N
from ansible_collections.hpcnet.infiniband.plugins.module_utils._host import Host
from fakehost import FakeRunner, snapshot, write_attr
from testlib import run_module

CHILD = {"network": "storage", "interface": "ib0", "device": "ib0.8002", "kind": "ipoib_child",
         "address": "10.20.0.11/24", "gateway": None, "pkey": "0x8002", "vlan": None, "mtu": 65520,
         "mode": "connected"}
PARENT = {"network": "private", "interface": "ib0", "device": "ib0", "kind": "ipoib", "address": "10.21.0.11/24",
          "gateway": None, "pkey": None, "vlan": None, "mtu": None, "mode": None}


class Node:
    """Fixture host: sysfs with ib0, an fs tree, and commands that answer like the host's tools."""

    def __init__(self, tmp_path, nm=False, ifupdown=True):
        self.sysfs, self.fs = tmp_path / "sys", tmp_path / "root"
        write_attr(str(self.sysfs / "class/net/ib0/mtu"), "2044")
        write_attr(str(self.sysfs / "class/net/ib0/flags"), "0x1003")
        self.fs.mkdir()
        if ifupdown:
            self.write("/etc/network/interfaces", "source /etc/network/interfaces.d/*\n")
        self.up = set()
        self.runner = FakeRunner({
            "nmcli": lambda argv: (0, "running\n", "") if nm and argv[1] == "-t" else (0, "", "") if nm else (127, "", ""),
            "systemctl": (3, "inactive\n", ""),
            "ifup": self.ifup, "ifdown": self.ifdown, "ifquery": self.ifquery,
            "ip": (0, "", ""),
        })

    def write(self, path, text):
        full = self.fs / path.lstrip("/")
        full.parent.mkdir(parents=True, exist_ok=True)
        full.write_text(text)

    def read(self, path):
        full = self.fs / path.lstrip("/")
        return full.read_text() if full.exists() else None

    def ifup(self, argv):
        if argv[1] != "--version":
            self.up.add(argv[1])
        return 0, "", ""

    def ifdown(self, argv):
        self.up.discard(argv[1])
        return 0, "", ""

    def ifquery(self, argv):
        if argv[1] == "--state":
            return (0, "%s=%s\n" % (argv[2], argv[2]), "") if argv[2] in self.up else (1, "", "")
        return 1, "", "ifquery: unknown interface %s" % argv[1]

    def run(self, monkeypatch, capsys, check=False, diff=False, **args):
        runner = self.runner

        def from_module(_module, sysfs_root="/sys", fs_root="/"):
            return Host(sysfs_root=sysfs_root, fs_root=fs_root, runner=runner, live=False)

        monkeypatch.setattr(ib_network.Host, "from_module", from_module)
        return run_module(ib_network, dict(args, sysfs_root=str(self.sysfs), fs_root=str(self.fs)), capsys,
                          check=check, diff=diff)

    def commands(self):
        return [c for c in self.runner.calls if c[0] in ("ifup", "ifdown", "nmcli", "networkctl", "ip")
                and c[1:2] not in (["--version"], ["-t"], ["-o"])]


def test_ifupdown_check_diff_apply_and_second_run(tmp_path, monkeypatch, capsys):
    node = Node(tmp_path)
    before = snapshot(node.fs)
    result = node.run(monkeypatch, capsys, check=True, diff=True, members=[PARENT, CHILD])
    assert result["changed"] and result["backend"] == "ifupdown" and result["persistent"]
    assert snapshot(node.fs) == before and node.commands() == []
    assert [d["after_header"] for d in result["diff"]][:2] == [N.ifupdown_path("ib0"), N.ifupdown_path("ib0.8002")]
    assert "create_child" in result["diff"][1]["after"]

    result = node.run(monkeypatch, capsys, members=[PARENT, CHILD])
    assert result["changed"] and node.up == {"ib0", "ib0.8002"}
    assert node.read(N.ifupdown_path("ib0.8002")).startswith(N.MARKER)
    assert oct(os.stat(str(node.fs / N.ifupdown_path("ib0.8002").lstrip("/"))).st_mode & 0o777) == "0o644"

    node.runner.calls.clear()
    result = node.run(monkeypatch, capsys, members=[PARENT, CHILD])
    assert not result["changed"] and node.commands() == []


def test_ifupdown_bounces_only_the_changed_device(tmp_path, monkeypatch, capsys):
    node = Node(tmp_path)
    node.run(monkeypatch, capsys, members=[PARENT, CHILD])
    node.runner.calls.clear()
    result = node.run(monkeypatch, capsys, members=[PARENT, dict(CHILD, mtu=4092, mode="datagram")])
    assert result["changed"]
    assert node.commands() == [["ifdown", "ib0.8002"], ["ifup", "ib0.8002"]]


def test_foreign_file_is_refused_and_nothing_changes(tmp_path, monkeypatch, capsys):
    node = Node(tmp_path)
    node.write(N.ifupdown_path("ib0.8002"), "iface ib0.8002 inet dhcp\n")
    before = snapshot(node.fs)
    result = node.run(monkeypatch, capsys, members=[PARENT, CHILD])
    assert result["failed"] and not result["changed"]
    assert N.ifupdown_path("ib0.8002") in result["msg"] and "refusing to overwrite" in result["msg"]
    assert snapshot(node.fs) == before and node.commands() == []


def test_bad_member_is_one_clear_error(tmp_path, monkeypatch, capsys):
    node = Node(tmp_path)
    result = node.run(monkeypatch, capsys, members=[dict(CHILD, pkey="0xzz")])
    assert result["failed"] and "network storage" in result["msg"] and "'0xzz'" in result["msg"]


def test_networkmanager_detected_keyfile_0600_and_activation(tmp_path, monkeypatch, capsys):
    node = Node(tmp_path, nm=True)
    result = node.run(monkeypatch, capsys, members=[CHILD])
    assert result["backend"] == "networkmanager" and result["changed"]
    path = node.fs / N.nm_path("ib0.8002").lstrip("/")
    assert oct(path.stat().st_mode & 0o777) == "0o600" and "p-key=32770" in path.read_text()
    assert node.commands() == [["nmcli", "connection", "reload"], ["nmcli", "connection", "up", "id", "hpcnet-ib0.8002"]]
    node.runner.calls.clear()
    assert not node.run(monkeypatch, capsys, members=[CHILD])["changed"] and node.commands() == []


def test_runtime_when_nothing_manages_the_network(tmp_path, monkeypatch, capsys):
    node = Node(tmp_path, ifupdown=False)
    result = node.run(monkeypatch, capsys, check=True, members=[PARENT])
    assert result["backend"] == "runtime" and not result["persistent"]
    assert "nothing persists" in result["summary"] and result["changed"]
    assert [c["detail"]["argv"] for c in result["plan"]] == [["ip", "addr", "add", "10.21.0.11/24", "dev", "ib0"]]


@pytest.mark.parametrize("backend", ["systemd-networkd"])
def test_networkd_reloads_once_when_changed(tmp_path, monkeypatch, capsys, backend):
    node = Node(tmp_path)
    node.runner.answers["networkctl"] = (0, "", "")
    result = node.run(monkeypatch, capsys, backend=backend, members=[CHILD])
    assert result["changed"] and node.commands() == [["networkctl", "reload"]]
    assert sorted(result["files"]) == sorted(N.render_networkd(N.devices_of([CHILD])))
    node.runner.calls.clear()
    assert not node.run(monkeypatch, capsys, backend=backend, members=[CHILD])["changed"] and node.commands() == []


def test_activate_false_writes_files_only(tmp_path, monkeypatch, capsys):
    node = Node(tmp_path, nm=True)
    result = node.run(monkeypatch, capsys, activate=False, members=[CHILD])
    assert result["changed"] and [c["action"] for c in result["plan"]] == ["write_file"]
    assert node.commands() == [] and node.read(N.nm_path("ib0.8002")).startswith(N.MARKER)
    node = Node(tmp_path / "rt", ifupdown=False)
    result = node.run(monkeypatch, capsys, activate=False, backend="runtime", members=[CHILD])
    assert result["failed"] and "would do nothing" in result["msg"]
