"""ib_opensm_config: check mode, diff, idempotence and refusals on a files tree under tmp_path."""

import os

import pytest
import yaml

from ansible_collections.hpcnet.infiniband.plugins.module_utils._host import Host
from ansible_collections.hpcnet.infiniband.plugins.modules import ib_opensm_config
from testlib import run_module

ARGS = {
    "guid": "0002:c903:00a1:b2c1",
    "priority": 14,
    "virt_enabled": 2,
    "service_defaults_path": "/etc/default/opensm",
    "partitions": [{"name": "storage", "pkey": "0x8001", "mtu": 4,
                    "members": ["ALL_CAS", {"guid": "0x0002c90300a1b2c2", "membership": "limited"}]}],
}


def run_opensm_config(monkeypatch, capsys, tmp_path, args, check=False, diff=False):
    """ib_opensm_config.main() on a host whose root is ``tmp_path``; the result."""
    host = Host(sysfs_root=str(tmp_path), fs_root=str(tmp_path), live=False)
    monkeypatch.setattr(ib_opensm_config.Host, "from_module", classmethod(lambda cls, module, **kw: host))
    return run_module(ib_opensm_config, args, capsys, check=check, diff=diff)


def tree(root):
    found = {}
    for base, _dirs, files in os.walk(str(root)):
        for name in files:
            path = os.path.join(base, name)
            with open(path) as handle:
                found[os.path.relpath(path, str(root))] = (handle.read(), oct(os.stat(path).st_mode & 0o777))
    return found


def test_check_mode_changes_nothing_then_apply_then_idempotent(tmp_path, monkeypatch, capsys):
    before = tree(tmp_path)
    result = run_opensm_config(monkeypatch, capsys, tmp_path, ARGS, check=True, diff=True)
    assert result["changed"] is True
    assert tree(tmp_path) == before
    assert [c["target"] for c in result["plan"]] == [
        "/etc/opensm/opensm.conf", "/etc/opensm/partitions.conf", "/etc/default/opensm"]
    assert result["diff"][0]["before"] == "" and "guid 0x0002c90300a1b2c1\n" in result["diff"][0]["after"]

    result = run_opensm_config(monkeypatch, capsys, tmp_path, ARGS)
    assert result["changed"] is True and result["reload_required"] is True
    files = tree(tmp_path)
    conf, mode = files["etc/opensm/opensm.conf"]
    assert mode == "0o644"
    assert conf.splitlines()[2:] == [
        "guid 0x0002c90300a1b2c1",
        "sm_priority 14",
        "virt_enabled 2",
        "partition_config_file /etc/opensm/partitions.conf",
    ]
    assert files["etc/opensm/partitions.conf"][0].splitlines()[1:] == [
        "Default=0x7fff, ipoib, defmember=full : ALL, ALL_SWITCHES=full, SELF=full ;",
        "storage=0x0001, ipoib, mtu=4 : ALL_CAS, 0x0002c90300a1b2c2=limited ;",
    ]
    assert files["etc/default/opensm"][0].splitlines()[-1] == 'PORTS="0x0002c90300a1b2c1"'

    result = run_opensm_config(monkeypatch, capsys, tmp_path, ARGS)
    assert result["changed"] is False and result["reload_required"] is False and result["plan"] == []


def test_diff_shows_the_priority_change(tmp_path, monkeypatch, capsys):
    run_opensm_config(monkeypatch, capsys, tmp_path, ARGS)
    result = run_opensm_config(monkeypatch, capsys, tmp_path, dict(ARGS, priority=3), check=True, diff=True)
    assert [c["target"] for c in result["plan"]] == ["/etc/opensm/opensm.conf"]
    assert "sm_priority 14\n" in result["diff"][0]["before"] and "sm_priority 3\n" in result["diff"][0]["after"]


@pytest.mark.parametrize("override,message", [
    ({"priority": 16}, "priority 16 must be 0 (lowest) to 15 (highest)"),
    ({"guid": "0xnothex"}, "guid '0xnothex' is not a port GUID"),
    ({"partitions": [{"name": "a", "pkey": "0x8000"}]}, "partition a: P_Key 0x8000 is invalid"),
    ({"partitions": [{"name": "a", "pkey": 2}, {"name": "b", "pkey": "0x8002"}]},
     "partition b: P_Key 0x0002 is already used by partition a"),
    ({"options": {"sm_priority": 3}}, "option sm_priority is set by its own parameter, not through options"),
])
def test_bad_input_refused_nothing_written(tmp_path, monkeypatch, capsys, override, message):
    run_opensm_config(monkeypatch, capsys, tmp_path, ARGS)
    before = tree(tmp_path)
    result = run_opensm_config(monkeypatch, capsys, tmp_path, dict(ARGS, **override))
    assert result["failed"] is True
    assert message in result["msg"]
    assert tree(tmp_path) == before


def test_documentation_matches_argument_spec():
    doc = yaml.safe_load(ib_opensm_config.DOCUMENTATION)["options"]
    spec = ib_opensm_config.ARGUMENT_SPEC
    assert set(doc) == set(spec)
    for name, option in spec.items():
        for key in ("type", "default", "choices", "elements"):
            assert doc[name].get(key) == option.get(key), (name, key)
    subdoc = doc["partitions"]["suboptions"]
    for name, option in spec["partitions"]["options"].items():
        for key in ("type", "default", "choices", "elements", "required"):
            assert subdoc[name].get(key) == option.get(key), (name, key)
    yaml.safe_load(ib_opensm_config.EXAMPLES)
    yaml.safe_load(ib_opensm_config.RETURN)


# ------------------------------------------------------------------------------------------ files it does not own
OPERATOR_CONF = """# opensm.conf of the operator (or the one the RHEL package ships)
sm_priority 0
log_flags 0x83
# guid 0x0
sm_key 0x0000000000000001
"""
OPERATOR_PARTITIONS = "Default=0x7fff, ipoib : ALL=full ;\nlab=0x0005 : ALL ;\n"


def put(root, path, text):
    target = root / path.lstrip("/")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text)


def backups_of(root, path):
    """{backup file name: (content, mode)} of ``path`` (named path.<pid>.<date>@<time>~)."""
    target = root / path.lstrip("/")
    return {p.name: (p.read_text(), oct(p.stat().st_mode & 0o777))
            for p in target.parent.iterdir() if p.name.startswith(target.name + ".") and p.name.endswith("~")}


def test_unmanaged_opensm_conf_keeps_every_other_line_and_a_backup(tmp_path, monkeypatch, capsys):
    """An operator's opensm.conf was replaced whole, with no copy (issue 10 item 3)."""
    put(tmp_path, "/etc/opensm/opensm.conf", OPERATOR_CONF)
    args = {"guid": "0x0002c90300a1b2c1", "priority": 14, "options": {"log_flags": "0x03"}}
    result = run_opensm_config(monkeypatch, capsys, tmp_path, args)
    assert result["changed"] is True, result
    conf = (tmp_path / "etc/opensm/opensm.conf").read_text()
    assert conf.splitlines() == [
        "# opensm.conf of the operator (or the one the RHEL package ships)",
        "sm_priority 14",
        "log_flags 0x03",
        "# guid 0x0",
        "sm_key 0x0000000000000001",
        "# Set by hpcnet.infiniband (ib_opensm_config):",
        "guid 0x0002c90300a1b2c1",
        "partition_config_file /etc/opensm/partitions.conf",
    ]
    [(name, (content, mode))] = backups_of(tmp_path, "/etc/opensm/opensm.conf").items()
    assert content == OPERATOR_CONF and mode == "0o600"
    assert result["backup_file"] == "/etc/opensm/" + name
    assert result["backup_files"] == {"/etc/opensm/opensm.conf": result["backup_file"]}
    assert "was not written by hpcnet.infiniband" in str(result["warnings"])
    # Second run: the merged keys hold; nothing changes, no second backup.
    result = run_opensm_config(monkeypatch, capsys, tmp_path, args)
    assert result["changed"] is False and result["plan"] == [], result["plan"]
    assert len(backups_of(tmp_path, "/etc/opensm/opensm.conf")) == 1


def test_unmanaged_partitions_replaced_only_with_a_backup(tmp_path, monkeypatch, capsys):
    put(tmp_path, "/etc/opensm/partitions.conf", OPERATOR_PARTITIONS)
    before = tree(tmp_path)
    result = run_opensm_config(monkeypatch, capsys, tmp_path, dict(ARGS, backup=False))
    assert result["failed"] is True and result["changed"] is False and result["plan"] == []
    assert result["msg"].startswith("/etc/opensm/partitions.conf exists and was not written by hpcnet.infiniband")
    assert tree(tmp_path) == before
    result = run_opensm_config(monkeypatch, capsys, tmp_path, ARGS)
    assert result["changed"] is True
    assert (tmp_path / "etc/opensm/partitions.conf").read_text().startswith("# Managed by hpcnet.infiniband")
    [(content, mode)] = backups_of(tmp_path, "/etc/opensm/partitions.conf").values()
    assert content == OPERATOR_PARTITIONS and mode == "0o600"
    assert "/etc/opensm/partitions.conf" in result["backup_files"]


def test_unmanaged_files_without_backup_merge_keys_only(tmp_path, monkeypatch, capsys):
    put(tmp_path, "/etc/opensm/opensm.conf", OPERATOR_CONF)
    put(tmp_path, "/etc/default/opensm", "# Debian's\nPORTS=\"ALL\"\nexport DEBUG=1\n")
    result = run_opensm_config(monkeypatch, capsys, tmp_path, {
        "priority": 3, "guid": "0002:c903:00a1:b2c1", "service_defaults_path": "/etc/default/opensm",
        "backup": False})
    assert result["changed"] is True and "backup_files" not in result
    assert (tmp_path / "etc/default/opensm").read_text() == "# Debian's\nPORTS=\"0x0002c90300a1b2c1\"\nexport DEBUG=1\n"
    assert "sm_priority 3\n" in (tmp_path / "etc/opensm/opensm.conf").read_text()
    assert backups_of(tmp_path, "/etc/opensm/opensm.conf") == {}


def test_managed_files_are_rewritten_whole_without_backup(tmp_path, monkeypatch, capsys):
    run_opensm_config(monkeypatch, capsys, tmp_path, ARGS)
    conf = tmp_path / "etc/opensm/opensm.conf"
    conf.write_text(conf.read_text() + "local_edit 1\n")
    result = run_opensm_config(monkeypatch, capsys, tmp_path, ARGS)
    assert [c["target"] for c in result["plan"]] == ["/etc/opensm/opensm.conf"]
    assert "local_edit" not in conf.read_text()
    assert "backup_files" not in result and backups_of(tmp_path, "/etc/opensm/opensm.conf") == {}


def test_check_mode_on_unmanaged_files_changes_nothing(tmp_path, monkeypatch, capsys):
    put(tmp_path, "/etc/opensm/opensm.conf", OPERATOR_CONF)
    put(tmp_path, "/etc/opensm/partitions.conf", OPERATOR_PARTITIONS)
    before = tree(tmp_path)
    result = run_opensm_config(monkeypatch, capsys, tmp_path, ARGS, check=True, diff=True)
    assert result["changed"] is True and tree(tmp_path) == before
    assert all(c["detail"]["backup"].endswith("~") for c in result["plan"] if c["before"])


def test_pkey_text_is_hex_and_guid_takes_any_spelling(tmp_path, monkeypatch, capsys):
    """"8002" was read as decimal (partition 0x1f42); a P_Key is hex as every IB tool prints it."""
    result = run_opensm_config(monkeypatch, capsys, tmp_path, {
        "guid": "00:02:c9:03:00:a1:b2:c1", "partitions": [
            {"name": "a", "pkey": "8002"}, {"name": "b", "pkey": 0x8003}, {"name": "c", "pkey": "0x0004"}]})
    assert result["changed"] is True, result
    lines = (tmp_path / "etc/opensm/partitions.conf").read_text().splitlines()
    assert lines[2:] == ["a=0x0002, ipoib : ;", "b=0x0003, ipoib : ;", "c=0x0004, ipoib : ;"]
    assert "guid 0x0002c90300a1b2c1\n" in (tmp_path / "etc/opensm/opensm.conf").read_text()
