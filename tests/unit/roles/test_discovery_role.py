"""roles/discovery's controller-side tasks (issue 13 item 4: discovery near a bare setup).

Every task after the facts call runs once for the play (or is a meta task, decided in the controller's main
process), except the fail, which only the nodes that fail reach: a task per node costs a worker process per
node. The behaviour stays: a refused node fails alone with its message and stays in the model, an
unreachable one is recorded (and fails with discovery_fail_unreachable), every node gets discovery_reached
and discovery_host_networks.

The role runs through ansible-playbook on local hosts, its facts call replaced by an action that returns
the hand-written facts of nodes_facts_fixtures (no module call, no node).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

import nodes_facts_fixtures as fx

REPO = Path(__file__).resolve().parents[3]
ROLE = REPO / "roles" / "discovery"
PLAYBOOK = os.path.join(os.path.dirname(sys.executable), "ansible-playbook")
FACTS_MODULE = "hpcnet.infiniband.ib_facts:"

FAKE_FACTS = '''
import json
from ansible.plugins.action import ActionBase

class ActionModule(ActionBase):
    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        with open(%r, encoding="utf-8") as handle:
            result.update(json.load(handle)[task_vars["inventory_hostname"]])
        return result
'''


def _tasks():
    return yaml.safe_load((ROLE / "tasks" / "main.yml").read_text())


def test_only_the_facts_call_and_the_failing_nodes_run_a_task_per_node():
    tasks = _tasks()
    assert FACTS_MODULE[:-1] in tasks[0]
    for task in tasks[1:]:
        per_node = not task.get("run_once") and "ansible.builtin.meta" not in task
        if per_node:
            assert "ansible.builtin.fail" in task, task["name"]
    leave, fail = tasks[-2:]
    assert leave["ansible.builtin.meta"] == "end_role" and leave["when"] == "not __discovery_fail_node"
    assert fail["when"] == "__discovery_fail_node"
    facts = next(t for t in tasks if "ansible.builtin.set_fact" in t)
    assert facts["delegate_facts"] is True and facts["delegate_to"] == "{{ item }}"
    assert facts["loop"] == "{{ ansible_play_hosts }}"


def _playbook(tmp_path, results, plays):
    roles = tmp_path / "roles"
    shutil.copytree(ROLE, roles / "discovery")
    main = roles / "discovery" / "tasks" / "main.yml"
    text = main.read_text()
    assert text.count(FACTS_MODULE) == 1
    main.write_text(text.replace(FACTS_MODULE, "fake_ib_facts:"))
    (tmp_path / "results.json").write_text(json.dumps(results))
    (tmp_path / "action_plugins").mkdir()
    (tmp_path / "action_plugins" / "fake_ib_facts.py").write_text(FAKE_FACTS % str(tmp_path / "results.json"))
    (tmp_path / "inventory.yml").write_text(yaml.safe_dump({"all": {
        "hosts": {name: {} for name in results},
        "vars": {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}}}))
    (tmp_path / "play.yml").write_text(yaml.safe_dump(plays))
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(REPO / ".collections"), ANSIBLE_HOME=str(tmp_path / "home"),
               ANSIBLE_ROLES_PATH=str(roles), ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0")
    return subprocess.run([PLAYBOOK, "-i", str(tmp_path / "inventory.yml"), str(tmp_path / "play.yml")],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300, check=False)


def _recap(stdout):
    return {m.group(1): dict((k, int(v)) for k, v in re.findall(r"(\w+)=(\d+)", m.group(2)))
            for m in re.finditer(r"^(\S+)\s+:\s+(ok=.*)$", stdout.split("PLAY RECAP")[-1], re.M)}


def test_refused_node_fails_alone_unreachable_recorded_facts_set_on_every_node(tmp_path):
    results = {"n1": fx.registered(fx.cx3_ipoib()), "n2": fx.registered(fx.mixed()), "n3": fx.UNREACHABLE,
               "n4": fx.registered(fx.cx3_eipoib())}
    out = tmp_path / "out"
    role_vars = {"discovery_output_dir": str(out), "discovery_networks": fx.NETWORKS,
                 "discovery_network_rules": fx.RULES, "discovery_topology": False}
    keep = {"name": "Keep the facts", "delegate_to": "localhost", "ansible.builtin.copy": {
        "content": "{{ {'reached': discovery_reached, 'networks': discovery_host_networks} | to_json }}",
        "dest": str(tmp_path / "{{ inventory_hostname }}.json")}}
    first_model = {"name": "Keep the first play's model", "delegate_to": "localhost", "run_once": True,
                   "ansible.builtin.copy": {"src": str(out / "nodes.json"), "dest": str(tmp_path / "first.json")}}
    cp = _playbook(tmp_path, results, [
        {"name": "Discovery", "hosts": "all", "gather_facts": False, "vars": role_vars,
         "roles": [{"role": "discovery"}], "tasks": [keep, first_model]},
        {"name": "Discovery failing the unreachable", "hosts": "all", "gather_facts": False,
         "vars": dict(role_vars, discovery_fail_unreachable=True), "roles": [{"role": "discovery"}]}])
    recap = _recap(cp.stdout)
    assert cp.returncode != 0 and set(recap) == {"n1", "n2", "n3", "n4"}, cp.stdout[-4000:] + cp.stderr[-2000:]
    # n2 fails in the first play with its own message, n3 (unreachable) only in the second one.
    assert recap["n2"]["failed"] == 1 and recap["n3"]["failed"] == 1
    assert recap["n1"]["failed"] == recap["n4"]["failed"] == 0
    assert re.search(r"fatal: \[n2\]: FAILED! => .*\"msg\": \"node n2: mismatching Mellanox drivers", cp.stdout)
    assert "n3 was unreachable during discovery" in cp.stdout
    model = {n["name"]: n for n in json.loads((tmp_path / "first.json").read_text())["nodes"]}
    assert model["n2"]["status"] == "refused" and model["n2"]["interfaces"]
    # The second play: n2 failed in the first one, the model keeps its data.
    again = {n["name"]: n for n in json.loads((out / "nodes.json").read_text())["nodes"]}
    assert again["n2"]["status"] == "failed" and again["n2"]["interfaces"] == model["n2"]["interfaces"]
    assert model["n3"]["status"] == "unreachable" and model["n1"]["status"] == model["n4"]["status"] == "discovered"
    facts = {name: json.loads((tmp_path / ("%s.json" % name)).read_text()) for name in ("n1", "n3", "n4")}
    assert not (tmp_path / "n2.json").exists()  # failed: the play went on without it
    assert facts["n1"]["reached"] is True and facts["n4"]["reached"] is True and facts["n3"]["reached"] is False
    assert [m["network"] for m in facts["n1"]["networks"]] == ["rdma"]
    assert facts["n1"]["networks"][0]["address"] == model["n1"]["networks"]["rdma"]["address"]
    assert {m["network"] for m in facts["n4"]["networks"]} == {"storage", "rdma"} and facts["n3"]["networks"] == []
