"""ib_netcheck_report's action plugin: the verdict in the controller process, with the module's argument spec.

Run through ansible-playbook on localhost (the plugin needs a real task and play context): the same result
as ``_netcheck.report`` (tests/unit/plugins/module_utils/test_netcheck.py), a finding fails the task with
the result file written, a bad argument fails naming it with nothing written.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

from test_netcheck import report_params  # the healthy four nodes of the verification rules' tests

REPO = Path(__file__).resolve().parents[4]
PLAYBOOK = os.path.join(os.path.dirname(sys.executable), "ansible-playbook")


def play(tmp_path, args):
    (tmp_path / "vars.json").write_text(json.dumps({"report_args": args}))
    (tmp_path / "play.yml").write_text(yaml.safe_dump([{
        "hosts": "localhost", "gather_facts": False,
        "tasks": [{"hpcnet.infiniband.ib_netcheck_report": "{{ report_args }}", "register": "verdict",
                   "ignore_errors": True},
                  {"ansible.builtin.copy": {"content": "{{ verdict | to_json }}", "dest": str(tmp_path / "result.json")}}]}]))
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(REPO / ".collections"), ANSIBLE_HOME=str(tmp_path / "home"))
    argv = [PLAYBOOK, "-i", "localhost,", "-c", "local", str(tmp_path / "play.yml"), "-e", "@" + str(tmp_path / "vars.json"),
            "-e", "ansible_python_interpreter=" + sys.executable]
    cp = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=120, check=False)
    assert cp.returncode == 0, cp.stdout + cp.stderr
    return json.loads((tmp_path / "result.json").read_text())


def test_verdict_and_result_file_in_the_controller_process(tmp_path):
    (tmp_path / "out").mkdir()
    params = report_params(tmp_path)
    result = play(tmp_path, {k: v for k, v in params.items() if v is not None})
    assert not result.get("failed") and result["ok"] is True and result["changed"] is False
    assert json.loads((tmp_path / "out" / "netcheck.json").read_text())["ok"] is True
    params["results"]["node2"]["interfaces"]["ib0"]["mtu"] = 1500
    result = play(tmp_path, {k: v for k, v in params.items() if v is not None})
    assert result["failed"] and "node2" in result["msg"] and result["problems"] >= 1
    assert json.loads((tmp_path / "out" / "netcheck.json").read_text())["ok"] is False


def test_bad_argument_fails_naming_it(tmp_path):
    result = play(tmp_path, {"results": {}, "colour": "red", "dest": str(tmp_path / "out" / "x.json")})
    assert result["failed"] and "colour" in result["msg"]
    assert not (tmp_path / "out").exists()
