# -*- coding: utf-8 -*-
# Copyright: hpcnet.infiniband contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Plan types shared by every configuring module: have -> plan (pure) -> apply (only writer).

A ``Plan`` is the list of ``Change`` objects a module would make plus the refusals (``errors``) found
while planning. Every refusal is decided in plan, so a refused run changes nothing. Check mode stops
after plan; diff mode shows ``before``/``after`` of every change.
"""

from __future__ import annotations


class Change:
    """One change to the host.

    :param action: short verb (``write_sysfs``, ``write_file``, ``remove_file``, ``create_child``...).
    :param target: what is changed (a sysfs path, a file path, an interface name).
    :param before: value now (``None`` when absent).
    :param after: value wanted (``None`` when it will be removed).
    :param detail: free-form dict the apply step needs (e.g. ``{"pf": "ib0"}``).
    """

    __slots__ = ("action", "target", "before", "after", "detail")

    def __init__(self, action, target, before=None, after=None, **detail):
        self.action = action
        self.target = target
        self.before = before
        self.after = after
        self.detail = detail

    def as_dict(self):
        result = {"action": self.action, "target": self.target, "before": self.before, "after": self.after}
        if self.detail:
            result["detail"] = dict(self.detail)
        return result

    def describe(self):
        return "%s %s: %s -> %s" % (self.action, self.target, _short(self.before), _short(self.after))

    def __repr__(self):
        return "Change(%s)" % self.describe()

    def __eq__(self, other):
        return isinstance(other, Change) and self.as_dict() == other.as_dict()


def _short(value):
    if value is None:
        return "(absent)"
    text = str(value)
    return text if len(text) <= 60 and "\n" not in text else "(%d bytes)" % len(text)


class Plan:
    """Changes to make, refusals, warnings and what the host needs afterwards."""

    def __init__(self):
        self.changes = []
        self.errors = []
        self.warnings = []
        self.reboot_required = False
        self.reload_required = False
        self.info = {}

    def add(self, action, target, before=None, after=None, **detail):
        change = Change(action, target, before, after, **detail)
        self.changes.append(change)
        return change

    def refuse(self, message):
        if message not in self.errors:
            self.errors.append(message)

    def warn(self, message):
        if message not in self.warnings:
            self.warnings.append(message)

    @property
    def changed(self):
        return bool(self.changes)

    @property
    def ok(self):
        return not self.errors

    def error_message(self):
        if len(self.errors) == 1:
            return self.errors[0]
        return "%d problems, nothing was changed: %s" % (len(self.errors), "; ".join(self.errors))

    def diff(self):
        """Ansible diff: one before/after pair per change (a list, as the callback plugins accept)."""
        diffs = []
        for change in self.changes:
            diffs.append(
                {
                    "before_header": change.target,
                    "after_header": change.target,
                    "before": _diff_text(change.before),
                    "after": _diff_text(change.after),
                }
            )
        return diffs

    def result(self):
        # A refused plan changed nothing, whatever it had planned before the refusal.
        return {
            "changed": self.changed and self.ok,
            "plan": [change.as_dict() for change in self.changes],
            "reboot_required": self.reboot_required,
            "reload_required": self.reload_required,
        }


def _diff_text(value):
    if value is None:
        return ""
    text = str(value)
    return text if text.endswith("\n") else text + "\n"


def run_plan(module, plan, apply_fn, extra=None):
    """Finish a configuring module: refuse, stop in check mode, or apply; then exit.

    ``apply_fn(plan)`` performs the changes and returns a dict merged into the result (it may raise
    ``HostError``; the module then fails with that message and what was already done).
    """
    result = plan.result()
    result.update(extra or {})
    for warning in plan.warnings:
        module.warn(warning)
    if not plan.ok:
        module.fail_json(msg=plan.error_message(), errors=plan.errors, **result)
    if module._diff:
        result["diff"] = plan.diff()
    if module.check_mode or not plan.changed:
        module.exit_json(**result)
    applied = apply_fn(plan) or {}
    result.update(applied)
    module.exit_json(**result)
