"""playbooks/site.yml: stage 10 hears every change of the stages that change what discovery describes.

Stage 10 (the nodes model's refresh) runs only when a node changed in one of those stages: their include
applies `notify: site changed`, and a handler listening on that topic remembers the stage. A role task with
a `notify` of its own does not take the include's, so the handler must listen to the role's topics too:
a new `notify` in one of these roles that the handler does not hear would leave the model out of date.
"""

from __future__ import annotations

from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[3]
SITE = REPO / "playbooks" / "site.yml"


def plays():
    return yaml.safe_load(SITE.read_text())


def include_of(play):
    """The include_role task of a stage play (inside the block of stage 2)."""
    for task in play["tasks"]:
        for candidate in [task] + list(task.get("block") or []):
            if "ansible.builtin.include_role" in candidate:
                return candidate
    return None


def role_notifies(role):
    """Every notify topic of a role's tasks (all task files, nested blocks)."""
    found = set()

    def walk(node):
        if isinstance(node, dict):
            notify = node.get("notify")
            if notify:
                found.update([notify] if isinstance(notify, str) else notify)
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    for path in sorted((REPO / "roles" / role / "tasks").glob("*.yml")):
        walk(yaml.safe_load(path.read_text()))
    return found


def notifying_stages():
    stages = []
    for play in plays():
        include = include_of(play)
        if include and (include["ansible.builtin.include_role"].get("apply") or {}).get("notify"):
            stages.append((play, include))
    return stages


def test_the_handler_hears_every_change_of_the_notifying_stages():
    stages = notifying_stages()
    assert [play["name"].split(":")[0] for play, _include in stages] == ["Stage %d" % n for n in range(2, 9)]
    for play, include in stages:
        apply = include["ansible.builtin.include_role"]["apply"]
        assert apply["notify"] == "site changed", play["name"]
        listen = set()
        for handler in play.get("handlers") or []:
            if handler.get("ansible.builtin.set_fact", {}).get("site_changed_stages"):
                listen.update(handler["listen"])
        role = include["ansible.builtin.include_role"]["name"].split(".")[-1]
        missing = role_notifies(role) - listen
        assert "site changed" in listen, play["name"]
        assert not missing, "%s: the site_changed_stages handler does not listen to %s" % (play["name"], sorted(missing))


def test_stage_10_carries_the_tags_of_the_notifying_stages_and_is_skipped_without_a_change():
    stage10 = [play for play in plays() if play["name"].startswith("Stage 10:")][0]
    include = include_of(stage10)
    tags = set(include["tags"])
    assert set(include["ansible.builtin.include_role"]["apply"]["tags"]) == tags
    for _play, stage in notifying_stages():
        stage_tags = set(stage["ansible.builtin.include_role"]["apply"]["tags"])
        assert stage_tags <= tags, stage_tags
    assert "discovery" in tags and "verify" not in tags
    assert "__site_refresh" in include["when"]
    assert "not ansible_check_mode" in stage10["vars"]["__site_refresh"]
    # The play says why it is skipped (or why it refreshes), under the same tags.
    say = stage10["tasks"][0]
    assert "ansible.builtin.debug" in say and set(say["tags"]) == tags
