# -*- coding: utf-8 -*-
# Copyright: hpcnet.infiniband contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Benchmark of the ad-hoc facts call (issue 13, 5a): a benchmark, not a test (prints, asserts nothing).

For 128, 512 and 1,024 netdevs, in one run and interleaved (so that load changes hit every command alike):

- ``ansible localhost -m ansible.builtin.ping`` (the fixed cost of an ad-hoc call);
- ``ansible localhost -m hpcnet.infiniband.ib_facts -a sysfs_root=<tree>`` on a generated sysfs tree with
  that many netdevs (``testlib.sysfs_builder.many_netdevs``, IPoIB on ConnectX-5 PFs and VFs, the tree
  ``bench_ib_facts.py`` uses), with the default lean result and with ``lean=false``;
- ``ansible localhost -m ansible.builtin.setup -a gather_subset=network`` on a host with that many
  interfaces: as root, inside a network namespace with that many veth interfaces (``ip netns exec``
  remounts /sys, so setup sees only them); without root, on this host (said so in the output).

CPU is user+system of the whole command (controller and module), from ``RUSAGE_CHILDREN``; wall is
elapsed time; medians of ``--repeats`` runs. The last line prints the ratios the issue's targets use:
ib_facts (lean) over setup at 512, ib_facts CPU over ping CPU at 512, and 128 -> 1,024 growth.

Run from the repository root:  .venv/bin/python tests/benchmarks/bench_facts_adhoc.py [--sizes 128,512,1024]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(REPO, "tests"))

from testlib import sysfs_builder  # noqa: E402

VENV_PY = os.path.join(REPO, ".venv", "bin", "python")
ANSIBLE = os.path.join(REPO, ".venv", "bin", "ansible")
COMMAND_TIMEOUT = 900


def ansible_env():
    env = dict(os.environ)
    env.update(ANSIBLE_HOME=os.path.join(REPO, ".ansible"), ANSIBLE_COLLECTIONS_PATH=os.path.join(REPO, ".collections"),
               ANSIBLE_LOCALHOST_WARNING="False", ANSIBLE_INVENTORY_UNPARSED_WARNING="False")
    return env


def timed(argv):
    """(wall s, cpu s, ok, stdout) of one command; cpu = user+sys of the command and its children."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(argv, cwd=REPO, env=ansible_env(), capture_output=True, text=True,
                          timeout=COMMAND_TIMEOUT, check=False)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    ok = proc.returncode == 0 and "SUCCESS" in proc.stdout
    if not ok:
        print("    ! %s failed (rc %d): %s" % (" ".join(argv[-6:]), proc.returncode, (proc.stdout + proc.stderr)[-300:]))
    return wall, cpu, ok, proc.stdout


def ansible_argv(module, args=None, prefix=()):
    argv = list(prefix) + [ANSIBLE, "localhost", "-i", "localhost,", "-c", "local", "-m", module,
                           "-e", "ansible_python_interpreter=%s" % VENV_PY, "-o"]
    return argv + (["-a", args] if args else [])


class Netns:
    """A network namespace with ``count`` veth interfaces (root only); deleted on exit, whatever happens."""

    def __init__(self, count):
        self.count = count
        self.name = "hpcnet-adhoc-%d-%d" % (os.getpid(), count)
        self.prefix = ()

    def __enter__(self):
        if os.geteuid() != 0:
            return self
        subprocess.run(["ip", "netns", "add", self.name], check=True, timeout=60)
        pairs = max(1, self.count // 2)
        batch = "".join("link add a%d type veth peer name b%d\nlink set a%d up\nlink set b%d up\n" % (i, i, i, i)
                        for i in range(pairs))
        with tempfile.NamedTemporaryFile("w", suffix=".batch", delete=False) as handle:
            handle.write(batch)
        try:
            subprocess.run(["ip", "-n", self.name, "-batch", handle.name], check=True, timeout=600,
                           capture_output=True)
        finally:
            os.unlink(handle.name)
        self.prefix = ("ip", "netns", "exec", self.name)
        return self

    def __exit__(self, *exc):
        if self.prefix:
            subprocess.run(["ip", "netns", "del", self.name], capture_output=True, timeout=120, check=False)


def result_values(stdout):
    """How many values (scalars, lists, dicts) the printed result holds: what its handling costs scales with
    (exit_json's no_log walk, the controller's decoding, fact cleaning, copies and callback output)."""
    try:
        data = json.loads(stdout[stdout.index("{"):])
    except ValueError:
        return 0
    pending, count = [data], 0
    while pending:
        value = pending.pop()
        count += 1
        if isinstance(value, dict):
            pending.extend(value.values())
        elif isinstance(value, list):
            pending.extend(value)
    return count


def median_of(commands, repeats):
    """{label: (median wall, median cpu)}: every command once per round, ``repeats`` rounds."""
    walls = {label: [] for label in commands}
    cpus = {label: [] for label in commands}
    for _round in range(repeats):
        for label, argv in commands.items():
            wall, cpu, _ok, _out = timed(argv)
            walls[label].append(wall)
            cpus[label].append(cpu)
    return {label: (statistics.median(walls[label]), statistics.median(cpus[label])) for label in commands}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--sizes", default="128,512,1024")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    with open("/proc/loadavg", encoding="ascii") as handle:
        load = handle.read().split()[:3]
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True,
                            check=False).stdout.strip() or "unknown"
    print("machine: %d CPUs, load %s; python %s; commit %s; setup %s" % (
        os.cpu_count() or 0, " ".join(load), sys.version.split()[0], commit,
        "in a netns with N veth interfaces" if os.geteuid() == 0 else "on this host (not root: no netns)"))
    rows = {}
    base = "/dev/shm" if os.path.isdir("/dev/shm") else None
    for size in sizes:
        tmp = tempfile.mkdtemp(prefix="hpcnet-adhoc-", dir=base)
        try:
            root = os.path.join(tmp, "sys")
            sysfs_builder.many_netdevs(root, size)
            with Netns(size) as netns:
                commands = {
                    "ping": ansible_argv("ansible.builtin.ping"),
                    "ib_facts": ansible_argv("hpcnet.infiniband.ib_facts", "sysfs_root=%s" % root),
                    "ib_facts_full": ansible_argv("hpcnet.infiniband.ib_facts", "sysfs_root=%s lean=false" % root),
                    "setup_network": ansible_argv("ansible.builtin.setup", "gather_subset=network", netns.prefix),
                }
                timed(commands["ib_facts"])  # untimed: the freshly written tree settles
                rows[size] = median_of(commands, args.repeats)
            out = timed(commands["ib_facts"])[3]
            row = rows[size]
            print("%5d netdevs: ping %.2f s (cpu %.2f); ib_facts %.2f s (cpu %.2f, %+.2f over ping, result %d KB,"
                  " %d values); lean=false %.2f s (cpu %.2f); setup gather_subset=network %.2f s (cpu %.2f)" % (
                      size, row["ping"][0], row["ping"][1], row["ib_facts"][0], row["ib_facts"][1],
                      row["ib_facts"][1] - row["ping"][1], len(out) // 1024, result_values(out), row["ib_facts_full"][0],
                      row["ib_facts_full"][1], row["setup_network"][0], row["setup_network"][1]))
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    mid = 512 if 512 in rows else sizes[len(sizes) // 2]
    row = rows[mid]

    def extra(r, key):  # CPU over the ad-hoc floor (ping)
        return max(r[key][1] - r["ping"][1], 1e-3)

    growth = (extra(rows[sizes[-1]], "ib_facts") / extra(rows[sizes[0]], "ib_facts")) if len(sizes) > 1 else 1.0
    print("RATIO at %d netdevs: ib_facts/setup_network wall %.2f, cpu %.2f; ib_facts cpu over ping +%.2f s;"
          " lean/full cpu over ping %.2f; growth %d->%d (cpu over ping) %.1fx" % (
              mid, row["ib_facts"][0] / row["setup_network"][0], row["ib_facts"][1] / row["setup_network"][1],
              row["ib_facts"][1] - row["ping"][1], extra(row, "ib_facts") / extra(row, "ib_facts_full"),
              sizes[0], sizes[-1], growth))


if __name__ == "__main__":
    main()
