"""The site_summary callback: unreachable nodes named, the SM check's finding noted, JSON written atomically."""

import json
import os

from ansible_collections.hpcnet.infiniband.plugins.callback import site_summary


class Named:
    def __init__(self, name, action=""):
        self.name = name
        self.action = action

    def get_name(self):
        return self.name


class Result:
    def __init__(self, host, task, result, action="ansible.builtin.debug"):
        self._host = Named(host)
        self._task = Named(task, action)
        self._result = result


class Play:
    def __init__(self, name):
        self.name = name

    def get_name(self):
        return self.name


def callback(tmp_path, monkeypatch):
    cb = site_summary.CallbackModule()
    options = {"output": str(tmp_path / "out" / "summary.json"), "show_skipped": True}
    monkeypatch.setattr(cb, "get_option", options.get)
    lines = []
    monkeypatch.setattr(cb._display, "display", lambda msg, *a, **k: lines.append(msg))
    monkeypatch.setattr(cb._display, "banner", lambda msg, *a, **k: lines.append(msg))
    return cb, lines


def test_unreachable_nodes_and_sm_notes(tmp_path, monkeypatch):
    cb, lines = callback(tmp_path, monkeypatch)
    cb.v2_playbook_on_play_start(Play("Stage 1: discovery"))
    cb.v2_runner_on_unreachable(Result("node9", "Gather InfiniBand facts from every node",
                                       {"unreachable": True, "msg": "ssh: connect to host 10.0.0.9 port 22: No route"}))
    cb.v2_playbook_on_play_start(Play("Stage 2: subnet manager"))
    cb.v2_runner_on_ok(Result("node5", "Check the SM", {
        "changed": False, "ports": [], "msg": "no InfiniBand port: nothing for a subnet manager to serve"},
        action="hpcnet.infiniband.ib_sm_check"))
    cb.v2_runner_on_ok(Result("node5", "Say hello", {"changed": False, "msg": "hello"}))
    cb.v2_playbook_on_stats(None)
    assert "node9: UNREACHABLE, 0 changed, 0 skipped, reboot not needed" in lines
    assert ("    UNREACHABLE Stage 1: discovery: Gather InfiniBand facts from every node: "
            "ssh: connect to host 10.0.0.9 port 22: No route") in lines
    assert ("    note     Stage 2: subnet manager: Check the SM: "
            "no InfiniBand port: nothing for a subnet manager to serve") in lines
    assert not [line for line in lines if "hello" in line]
    assert lines[-1] == "Unreachable: node9 (left out of the configuring stages; the other nodes went on)"
    path = tmp_path / "out" / "summary.json"
    data = json.loads(path.read_text())
    assert data["node9"]["unreachable"] is True and data["node5"]["notes"]
    assert oct(os.stat(str(path)).st_mode & 0o777) == "0o644"
    assert [p.name for p in path.parent.iterdir()] == ["summary.json"]  # no temporary file left behind


def test_documentation_is_yaml():
    import yaml

    doc = yaml.safe_load(site_summary.DOCUMENTATION)
    assert set(doc["options"]) == {"output", "show_skipped"}
