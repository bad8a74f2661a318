# -*- coding: utf-8 -*-
# Copyright: hpcnet.infiniband contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Per-node summary at the end of a run (playbooks/site.yml): changed, skipped and why, reboot needed.

A callback because nothing else sees every task's result for every host: roles cannot register what
other roles did, and the play recap only counts.
"""

from __future__ import annotations

DOCUMENTATION = r"""
---
name: site_summary
type: aggregate
short_description: Per-node summary of a deployment run (changed, skipped and why, reboot needed)
version_added: 0.1.0
description:
  - At the end of the run prints, for every host, the tasks that changed something (grouped by play, which
    in C(playbooks/site.yml) is the stage), the tasks that were skipped with the reason (the condition that
    was false, or the module's own skip message), the results that asked for a reboot
    (C(reboot_required) true), the failures, where a host was unreachable, and what the subnet-manager
    check found (for example "no InfiniBand port, nothing for a subnet manager to serve").
  - Ends with the list of hosts that were unreachable; C(playbooks/site.yml) leaves them out of its
    configuring stages and the other hosts finish.
  - Also writes the summary as JSON when O(output) is set.
  - Enable it with C(ANSIBLE_CALLBACKS_ENABLED=hpcnet.infiniband.site_summary) or C(callbacks_enabled) in
    C(ansible.cfg); it prints beside the normal output.
options:
  output:
    description: Path of a JSON file to write the summary to.
    type: path
    env:
      - name: HPCNET_SITE_SUMMARY
    ini:
      - section: hpcnet_site_summary
        key: output
  show_skipped:
    description: List the skipped tasks of each host (they are always counted).
    type: bool
    default: true
    env:
      - name: HPCNET_SITE_SUMMARY_SKIPPED
    ini:
      - section: hpcnet_site_summary
        key: show_skipped
"""

import json
import os

from ansible.plugins.callback import CallbackBase

from ansible_collections.hpcnet.infiniband.plugins.module_utils._host import Host, HostError


def _reboot(result):
    if not isinstance(result, dict):
        return False
    if result.get("reboot_required") is True:
        return True
    return any(_reboot(item) for item in result.get("results") or [] if isinstance(item, dict))


def _skip_reason(result):
    if not isinstance(result, dict):
        return None
    for key in ("false_condition", "skip_reason", "msg"):
        value = result.get(key)
        if value:
            return str(value) if key != "false_condition" else "condition false: %s" % value
    reasons = [_skip_reason(item) for item in result.get("results") or [] if isinstance(item, dict)]
    reasons = sorted({r for r in reasons if r})
    return "; ".join(reasons) if reasons else None


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "hpcnet.infiniband.site_summary"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self):
        super().__init__()
        self.play = None
        self.hosts = {}

    def _host(self, name):
        return self.hosts.setdefault(name, {"changed": [], "skipped": [], "reboot": [], "failed": [],
                                            "unreachable": False, "unreachable_at": [], "notes": []})

    def _where(self, result):
        task = result._task.get_name().strip()
        return "%s: %s" % (self.play, task) if self.play else task

    def v2_playbook_on_play_start(self, play):
        self.play = play.get_name().strip()

    def v2_runner_on_ok(self, result):
        host = self._host(result._host.get_name())
        res = result._result
        if res.get("changed"):
            host["changed"].append(self._where(result))
        if _reboot(res):
            host["reboot"].append(self._where(result))
        if res.get("skipped"):  # a loop whose items were all skipped
            host["skipped"].append({"task": self._where(result), "reason": _skip_reason(res)})
        # What the subnet-manager check found is worth a line per node (which SM, or no IB port at all).
        if result._task.action.endswith("ib_sm_check") and res.get("msg"):
            host["notes"].append("%s: %s" % (self._where(result), res["msg"]))

    def v2_runner_on_skipped(self, result):
        host = self._host(result._host.get_name())
        host["skipped"].append({"task": self._where(result), "reason": _skip_reason(result._result)})

    def v2_runner_on_failed(self, result, ignore_errors=False):
        if ignore_errors:
            return
        host = self._host(result._host.get_name())
        host["failed"].append({"task": self._where(result), "msg": str(result._result.get("msg", ""))[:300]})

    def v2_runner_on_unreachable(self, result):
        host = self._host(result._host.get_name())
        host["unreachable"] = True
        host["unreachable_at"].append({"task": self._where(result), "msg": str(result._result.get("msg", ""))[:300]})

    def v2_playbook_on_stats(self, stats):
        if not self.hosts:
            return
        show_skipped = self.get_option("show_skipped")
        self._display.banner("SUMMARY PER NODE (hpcnet.infiniband.site_summary)")
        for name in sorted(self.hosts):
            host = self.hosts[name]
            state = "UNREACHABLE" if host["unreachable"] else ("FAILED" if host["failed"] else "ok")
            self._display.display("%s: %s, %d changed, %d skipped, reboot %s" % (
                name, state, len(host["changed"]), len(host["skipped"]),
                "NEEDED" if host["reboot"] else "not needed"))
            for task in host["changed"]:
                self._display.display("    changed  %s" % task)
            if show_skipped:
                for entry in host["skipped"]:
                    self._display.display("    skipped  %s%s" % (
                        entry["task"], " (%s)" % entry["reason"] if entry["reason"] else ""))
            for task in host["reboot"]:
                self._display.display("    reboot   %s" % task)
            for note in host["notes"]:
                self._display.display("    note     %s" % note)
            for entry in host["failed"]:
                self._display.display("    FAILED   %s: %s" % (entry["task"], entry["msg"]))
            for entry in host["unreachable_at"]:
                self._display.display("    UNREACHABLE %s: %s" % (entry["task"], entry["msg"]))
        unreachable = sorted(name for name, host in self.hosts.items() if host["unreachable"])
        if unreachable:
            self._display.display("Unreachable: %s (left out of the configuring stages; the other nodes went on)"
                                  % ", ".join(unreachable))
        output = self.get_option("output")
        if output:
            # The collection's one atomic writer (mkstemp in the target directory, then rename).
            try:
                Host().write_file(os.path.abspath(output), json.dumps(self.hosts, indent=2, sort_keys=True) + "\n", mode=0o644)
            except HostError as exc:
                self._display.warning("site_summary: %s" % exc)
