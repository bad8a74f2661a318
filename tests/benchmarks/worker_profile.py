# -*- coding: utf-8 -*-
# Copyright: hpcnet.infiniband contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Where a playbook's controller time goes, per action: ansible-playbook with every task worker profiled.

Ansible runs each task on each host in a forked worker process (``WorkerProcess``). This wrapper runs
``ansible-playbook`` with cProfile around each worker and writes one profile per worker to OUT_DIR
(``<action>-<pid>.prof``); ``table(OUT_DIR)`` then splits each action's mean worker time into:

- ``node``     waiting for the node: the module's run there (ssh, the payload's imports, the module itself);
- ``payload``  building the module's AnsiballZ payload on the controller: once per module per playbook run
               (the cache lives in the run's own temporary directory), while the other hosts' workers wait for
               it on a lock;
- ``args``     templating the task's arguments and conditionals (each worker compiles its Jinja templates
               anew: a forked worker's template cache dies with it);
- ``rest``     everything else (forking the worker, the action plugin, the result).

A benchmark aid, not a test. Usage (from the repository root, as bench_site.py --workers does):
  .venv/bin/python tests/benchmarks/worker_profile.py OUT_DIR -i INVENTORY playbooks/site.yml ...
"""

from __future__ import annotations

import collections
import cProfile
import glob
import os
import pstats
import sys


def _profile_workers(out_dir):
    from ansible.executor.process import worker  # pylint: disable=import-outside-toplevel

    run = worker.WorkerProcess._run  # pylint: disable=protected-access

    def profiled(self):
        prof = cProfile.Profile()
        prof.enable()
        try:
            return run(self)
        finally:
            prof.disable()
            action = (getattr(self._task, "action", None) or "unknown").rsplit(".", 1)[-1]  # pylint: disable=protected-access
            prof.dump_stats(os.path.join(out_dir, "%s-%d.prof" % (action, os.getpid())))

    worker.WorkerProcess._run = profiled  # pylint: disable=protected-access


def _cumulative(stats, function, path_part=""):
    return sum(v[3] for k, v in stats.stats.items() if k[2] == function and path_part in k[0])


def table(out_dir):
    """Lines of a table: per action, workers, mean worker ms and its split (see the module docstring)."""
    groups = collections.defaultdict(list)
    for path in glob.glob(os.path.join(out_dir, "*.prof")):
        try:
            pstats.Stats(path)
        except (EOFError, ValueError, TypeError):  # a worker killed while writing (e.g. at a host failure)
            continue
        groups[os.path.basename(path).rsplit("-", 1)[0]].append(path)
    rows = []
    for action, paths in groups.items():
        stats = pstats.Stats(*paths)
        node = _cumulative(stats, "_low_level_execute_command")
        payload = _cumulative(stats, "_configure_module")
        args = _cumulative(stats, "post_validate", "playbook/task.py") + _cumulative(stats, "_resolve_conditional")
        rows.append((stats.total_tt, len(paths), action, node, payload, args))
    lines = ["%-24s %7s %8s %7s %8s %7s %7s" % ("action", "workers", "mean ms", "node", "payload", "args", "rest")]
    for total, count, action, node, payload, args in sorted(rows, key=lambda r: -r[0]):
        lines.append("%-24s %7d %8.0f %7.0f %8.0f %7.0f %7.0f"
                     % (action, count, total / count * 1000, node / count * 1000, payload / count * 1000,
                        args / count * 1000, (total - node - payload - args) / count * 1000))
    lines.append("all workers: %.1f s in %d workers" % (sum(r[0] for r in rows), sum(r[1] for r in rows)))
    return lines


def main():
    out_dir = sys.argv[1]
    os.makedirs(out_dir, exist_ok=True)
    sys.argv = ["ansible-playbook"] + sys.argv[2:]
    from ansible.cli.playbook import main as playbook_main  # pylint: disable=import-outside-toplevel

    _profile_workers(out_dir)
    return playbook_main()


if __name__ == "__main__":
    sys.exit(main())
