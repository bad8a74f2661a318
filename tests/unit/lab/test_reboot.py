"""labctl reboot's boot sequence: which of a node's own unit files it runs, in which order, and how
(unit parsing, enablement through the [Install] symlinks, ConditionPathExists, ExecStart prefixes)."""
import os

from core import reboot


UNIT = """# Managed by someone
[Unit]
Description=early oneshot
DefaultDependencies=no
Before=network-pre.target shutdown.target
ConditionPathExists=/etc/boot-state.json

[Service]
Type=oneshot
ExecStart=/usr/local/sbin/early --state /etc/boot-state.json
ExecStart=-/bin/false \\
  ignored-failure

[Install]
WantedBy=sysinit.target
"""


def _install(root, name, text, wants="sysinit.target.wants", etc=True):
    unit_dir = root / "etc/systemd/system" if etc else root / "lib/systemd/system"
    unit_dir.mkdir(parents=True, exist_ok=True)
    (unit_dir / name).write_text(text)
    (root / "etc/systemd/system" / wants).mkdir(parents=True, exist_ok=True)
    target = ("/etc/systemd/system/" if etc else "/lib/systemd/system/") + name
    os.symlink(target, str(root / "etc/systemd/system" / wants / name))


def test_parse_unit_repeats_resets_and_continuations():
    unit = reboot.parse_unit(UNIT + "[Service]\nExecStartPre=/bin/a\nExecStartPre=\nExecStartPre=/bin/b\n")
    assert [v.split() for v in unit["Service"]["ExecStart"]] == [
        ["/usr/local/sbin/early", "--state", "/etc/boot-state.json"], ["-/bin/false", "ignored-failure"]]
    assert unit["Service"]["ExecStartPre"] == ["/bin/b"]
    assert unit["Unit"]["Before"] == ["network-pre.target shutdown.target"]


def test_enabled_units_only_the_admins_oneshots(tmp_path):
    _install(tmp_path, "early.service", UNIT)
    _install(tmp_path, "late.service", UNIT.replace("Before=network-pre.target shutdown.target\n", ""),
             wants="multi-user.target.wants")
    _install(tmp_path, "daemon.service", UNIT.replace("Type=oneshot", "Type=simple"), wants="multi-user.target.wants")
    _install(tmp_path, "packaged.service", UNIT, wants="multi-user.target.wants", etc=False)
    # Installed but not enabled: not run, as systemd would not.
    (tmp_path / "etc/systemd/system/disabled.service").write_text(UNIT)
    units = {u["name"]: u for u in reboot.enabled_units(tmp_path)}
    assert sorted(units) == ["daemon.service", "early.service", "late.service", "packaged.service"]
    assert units["early.service"]["skip"] is None and units["early.service"]["early"]
    assert units["late.service"]["skip"] is None and not units["late.service"]["early"]
    assert units["daemon.service"]["skip"] == "Type=simple"
    assert units["packaged.service"]["skip"].startswith("not an admin unit")
    assert units["early.service"]["conditions"] == ["/etc/boot-state.json"]


def test_run_unit_conditions_and_prefixes(tmp_path, monkeypatch):
    ran = []

    class Done:
        def __init__(self, rc):
            self.returncode, self.stdout, self.stderr = rc, "said something\n", ""

    def fake_in_node(node, argv, timeout=60, check=True, root=True):
        ran.append(argv)
        return Done(1 if argv[0] == "/bin/false" else 0)

    monkeypatch.setattr(reboot, "_in_node", fake_in_node)
    _install(tmp_path, "early.service", UNIT)
    unit = reboot.enabled_units(tmp_path)[0]
    said = []
    assert reboot._run_unit({"name": "n1"}, unit, tmp_path, said.append)
    assert ran == [] and "not met" in said[0]
    (tmp_path / "etc/boot-state.json").write_text("{}")
    assert reboot._run_unit({"name": "n1"}, unit, tmp_path, said.append)
    assert ran == [["/usr/local/sbin/early", "--state", "/etc/boot-state.json"], ["/bin/false", "ignored-failure"]]
    assert "n1: early.service: said something" in said
    unit["exec"] = ["/bin/false"]
    assert not reboot._run_unit({"name": "n1"}, unit, tmp_path, said.append)
