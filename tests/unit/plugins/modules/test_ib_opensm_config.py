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
    ({"partitions": [{"name": "a", "pkey": "0x8000"}]}, "partition a: pkey '0x8000' is not a P_Key"),
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
