"""ib_nodes_model's action plugin: the writer in the controller process, with the module's argument spec.

Run through ansible-playbook on localhost (the plugin needs a real task and play context): the same
results as the module (tests/unit/plugins/modules/test_ib_nodes_model.py), check mode writes nothing,
a bad argument and a bad value fail naming them with nothing written.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

import nodes_facts_fixtures as fx

REPO = Path(__file__).resolve().parents[4]
PLAYBOOK = os.path.join(os.path.dirname(sys.executable), "ansible-playbook")


def play(tmp_path, args, check=False):
    args = dict({"output_dir": str(tmp_path / "out"), "networks": fx.NETWORKS, "rules": fx.RULES}, **args)
    (tmp_path / "vars.json").write_text(json.dumps({"model_args": args}))
    (tmp_path / "play.yml").write_text(yaml.safe_dump([{
        "hosts": "localhost", "gather_facts": False,
        "tasks": [{"hpcnet.infiniband.ib_nodes_model": "{{ model_args }}", "register": "model"},
                  {"ansible.builtin.copy": {"content": "{{ model | to_json }}", "dest": str(tmp_path / "result.json")},
                   "check_mode": False}]}]))
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(REPO / ".collections"), ANSIBLE_HOME=str(tmp_path / "home"))
    argv = [PLAYBOOK, "-i", "localhost,", "-c", "local", str(tmp_path / "play.yml"), "-e", "@" + str(tmp_path / "vars.json"),
            "-e", "ansible_python_interpreter=" + sys.executable]
    cp = subprocess.run(argv + (["--check"] if check else []), capture_output=True, text=True, env=env, timeout=120,
                        check=False)
    result = json.loads((tmp_path / "result.json").read_text()) if (tmp_path / "result.json").exists() else None
    return cp, result


def test_writes_the_model_in_the_controller_process(tmp_path):
    (tmp_path / "out").mkdir()
    cp, _result = play(tmp_path, {"results": fx.lab_results()}, check=True)
    assert cp.returncode == 0, cp.stdout + cp.stderr
    assert list((tmp_path / "out").iterdir()) == []  # check mode wrote nothing
    cp, result = play(tmp_path, {"results": fx.lab_results()})
    assert cp.returncode == 0, cp.stdout + cp.stderr
    assert result["changed"] is True and result["model_path"] == str(tmp_path / "out" / "nodes.json")
    fx.validate_model(json.loads((tmp_path / "out" / "nodes.json").read_text()))
    assert result["host_networks"]["node1"][0]["address"] == "10.20.0.11/24"
    cp, again = play(tmp_path, {"results": fx.lab_results()})
    assert cp.returncode == 0 and again["changed"] is False


def test_bad_argument_and_bad_value_fail_naming_them(tmp_path):
    cp, _result = play(tmp_path, {"results": {}, "colour": "red"})
    assert cp.returncode != 0 and "colour" in cp.stdout
    cp, _result = play(tmp_path, {"results": {}, "basename": "../x"})
    assert cp.returncode != 0 and "basename must be a plain file name" in cp.stdout
    assert not (tmp_path / "out").exists()
