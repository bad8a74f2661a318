# -*- coding: utf-8 -*-
# Copyright: hpcnet.infiniband contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Benchmarks of the playbooks on lab nodes (a benchmark, not a test: it prints figures, asserts nothing).

``reconverge``  site.yml's second run (changed=0) on N nodes against a floor play that makes the same
                number of node-side module calls, each doing nothing (``ansible.builtin.command: true``).
                The floor play is generated from the second run itself (``floor_play``): every task result
                that ran on a node (not delegated to the controller, not a controller-only action) is one
                call. Ratio = second run / floor (target <= 1.2).
``discovery``   playbooks/discover.yml against ``ansible -m setup -a gather_subset=min`` on N nodes
                (target <= 1.15).
``verify``      playbooks/verify_network.yml on N nodes against ``ansible -m ping`` (its fixed cost).

Each benchmark pairs its two runs in the same minute on the same lab (this shared machine's speed drifts)
and takes the median of ``--repeats`` pairs; each pair prints the load average before it. The last line
printed is the ratio. ``--profile`` adds one more run of the playbook with the ansible.posix.profile_tasks
callback and prints its slowest tasks (before the ratio). ``--workers`` adds one more run of the playbook (and
of the floor play) with every task worker profiled, and prints per action where the controller's time goes
(worker_profile.py: waiting for the node, building the module payload, templating, the rest).

Labs: ``bench-<benchmark>-<N>`` (no test or Molecule scenario uses a ``bench`` name), started and torn
down by the benchmark. reconverge and verify use the profiles of tests/integration/test_site_reboot.py cycled over
the nodes (cx3-eipoib, cx5-ib-sriov, cx3-ipoib: site.yml converges and verifies on them), discovery the
lab's default profile mix. site.yml gets ``docs/examples/lab-site-vars.yml`` plus the lab's own settings
(``LAB_SITE_VARS``: userspace OVS datapath, no package installs, verification of the rdma network); every
output file (nodes model, netcheck result) goes to a temporary directory, never to out/ in the work tree.

Run as root from the repository root, e.g.:
  .venv/bin/python tests/benchmarks/bench_site.py reconverge --nodes 3
  .venv/bin/python tests/benchmarks/bench_site.py discovery --nodes 16
  .venv/bin/python tests/benchmarks/bench_site.py verify --nodes 3,8,16
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import worker_profile

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
VENV_BIN = os.path.join(REPO, ".venv", "bin")
LABCTL = os.path.join(REPO, "lab", "labctl")
WORKER_PROFILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "worker_profile.py")
SITE_VARS = os.path.join(REPO, "docs", "examples", "lab-site-vars.yml")
TIMEOUT = 1800  # seconds, any single ansible call
SITE_PROFILES = "cx3-eipoib,cx5-ib-sriov,cx3-ipoib"
# The lab's own settings on top of lab-site-vars.yml (docs/site.md "On the lab"): its Open vSwitch has the
# userspace datapath only, its nodes share this machine's packages; the EIPoIB storage network is not
# reachable between lab nodes (docs/site.md, known limits), so the verification checks rdma.
LAB_SITE_VARS = {
    "eipoib_ovs_datapath_type": "netdev",
    "ofed_install_packages": False,
    "netcheck_networks": [{"name": "rdma"}],
}

# Actions that run on the controller even when a task targets a node.
CONTROLLER_ACTIONS = {
    "ansible.builtin.set_fact", "set_fact", "ansible.builtin.debug", "debug", "ansible.builtin.assert",
    "assert", "ansible.builtin.fail", "fail", "ansible.builtin.include_role", "include_role",
    "ansible.builtin.import_role", "ansible.builtin.include_tasks", "include_tasks", "ansible.builtin.meta",
    "meta", "ansible.builtin.group_by", "group_by", "ansible.builtin.add_host", "ansible.builtin.validate_argument_spec",
    "validate_argument_spec", "ansible.builtin.include_vars", "include_vars",
}


def env(json_output=False, profile=False):
    result = dict(os.environ)
    result["PATH"] = "%s:%s" % (VENV_BIN, result.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"))
    result["ANSIBLE_HOME"] = os.path.join(REPO, ".ansible")
    result["ANSIBLE_NOCOLOR"] = "1"
    if json_output:
        result.update(ANSIBLE_LOAD_CALLBACK_PLUGINS="1", ANSIBLE_STDOUT_CALLBACK="ansible.posix.json",
                      ANSIBLE_CALLBACK_RESULT_FORMAT="json")
    if profile:
        result.update(ANSIBLE_CALLBACKS_ENABLED="ansible.posix.profile_tasks", PROFILE_TASKS_SUMMARY_ONLY="true",
                      PROFILE_TASKS_TASK_OUTPUT_LIMIT="15")
    return result


def timed(argv, json_output=False, profile=False):
    """(seconds, stdout) of one command from the repository root; exits on failure."""
    start = time.monotonic()
    proc = subprocess.run(argv, cwd=REPO, env=env(json_output, profile), capture_output=True, text=True,
                          timeout=TIMEOUT, check=False)
    took = time.monotonic() - start
    if proc.returncode != 0:
        sys.exit("failed (rc %d): %s\n%s" % (proc.returncode, " ".join(argv), (proc.stdout + proc.stderr)[-3000:]))
    return took, proc.stdout


def lab_up(benchmark, nodes, profiles=None):
    """(name, inventory) of a fresh lab of this benchmark; a stale lab of that name is replaced."""
    name = "bench-%s-%d" % (benchmark, nodes)
    argv = [LABCTL, "up", "--name", name, "--nodes", str(nodes)] + (["--profiles", profiles] if profiles else [])
    lab_down(name)
    proc = subprocess.run(argv, check=False, timeout=900, capture_output=True, text=True)
    if proc.returncode != 0:
        lab_down(name)
        sys.exit("labctl up failed (rc %d):\n%s" % (proc.returncode, (proc.stdout + proc.stderr)[-3000:]))
    return name, "/run/hpcnet-lab/%s/inventory.yml" % name


def lab_down(name):
    subprocess.run([LABCTL, "down", "--name", name], check=False, timeout=300, capture_output=True)


def site_vars(out):
    """-e arguments of a site.yml or verify_network.yml run writing its files under ``out``."""
    own = dict(LAB_SITE_VARS, discovery_output_dir=os.path.join(out, "discovery"),
               eipoib_ovs_nodes_model=os.path.join(out, "discovery", "nodes.json"),
               netcheck_nodes_model=os.path.join(out, "discovery", "nodes.json"),
               netcheck_result_file=os.path.join(out, "netcheck", "netcheck.json"))
    return ["-e", "@" + SITE_VARS, "-e", json.dumps(own)]


def print_profile(label, argv):
    """One more run with the profile_tasks callback; prints its slowest tasks (--profile)."""
    took, out = timed(argv, profile=True)
    print("%s: profiled run %.1f s (%s), slowest tasks:" % (label, took, load()))
    for line in out.splitlines():
        match = re.match(r"^(.*?\S) -{2,} (\d+\.\d+)s$", line.strip())
        if match:
            print("    %7ss  %s" % (match.group(2), match.group(1)))


def print_workers(label, argv):
    """One more run with every task worker profiled (worker_profile.py); prints the per-action table."""
    out = tempfile.mkdtemp(prefix="bench-workers-")
    try:
        took, _stdout = timed([os.path.join(VENV_BIN, "python"), WORKER_PROFILE, out] + argv[1:])
        print("%s: run with profiled workers %.1f s (%s); per action, mean ms per worker:" % (label, took, load()))
        for line in worker_profile.table(out):
            print("    " + line)
    finally:
        shutil.rmtree(out, ignore_errors=True)


def code_version():
    """The commit measured, and whether the code the playbooks run differs from it (a shared work tree)."""
    def git(*args):
        return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, check=False).stdout
    dirty = [line[3:] for line in git("status", "--porcelain", "--", "playbooks", "roles", "plugins").splitlines()]
    return "commit %s%s" % (git("rev-parse", "--short", "HEAD").strip() or "unknown",
                            " + uncommitted changes (%s)" % ", ".join(dirty) if dirty else "")


def load():
    return "load %.2f %.2f %.2f" % os.getloadavg()


def playbook(inventory, path, *extra):
    return [os.path.join(VENV_BIN, "ansible-playbook"), "-i", inventory, path, *extra]


def adhoc(inventory, module, args=None):
    argv = [os.path.join(VENV_BIN, "ansible"), "-i", inventory, "all", "-m", module]
    return argv + (["-a", args] if args else [])


def on_controller(result):
    """True when a task result did not run a module on its node (controller action or delegated here)."""
    if (result.get("action") or "") in CONTROLLER_ACTIONS:
        return True
    delegated = result.get("_ansible_delegated_vars") or {}
    return (delegated.get("ansible_connection") == "local"
            or delegated.get("ansible_host") in ("localhost", "127.0.0.1", "::1"))


def node_calls(json_stdout):
    """({host: number of module calls that ran on the node}, {host: {action: calls}}) from an
    ansible.posix.json run (a loop counts each item that was not skipped)."""
    calls, actions = {}, {}
    for play in json.loads(json_stdout)["plays"]:
        for task in play["tasks"]:
            for host, result in task["hosts"].items():
                if result.get("skipped") or on_controller(result):
                    continue
                items = result.get("results")
                count = sum(1 for item in items if isinstance(item, dict) and not item.get("skipped")) \
                    if isinstance(items, list) else 1
                if count:
                    calls[host] = calls.get(host, 0) + count
                    per_host = actions.setdefault(host, {})
                    per_host[result["action"]] = per_host.get(result["action"], 0) + count
    return calls, actions


def floor_play(calls):
    """A play with the given number of do-nothing node-side module calls per host."""
    most = max(calls.values()) if calls else 0
    lines = ["---", "# Generated by tests/benchmarks/bench_site.py: the node-side floor of a site.yml run.",
             "- name: Floor", "  hosts: all", "  gather_facts: false", "  tasks:"]
    for index in range(most):
        lines += ["    - name: Call %d" % (index + 1),
                  "      ansible.builtin.command: /bin/true",
                  "      changed_when: false",
                  "      when: __floor_calls[inventory_hostname] | default(0) > %d" % index]
    lines += ["  vars:", "    __floor_calls: %s" % json.dumps(calls, sort_keys=True)]
    return "\n".join(lines) + "\n"


def machine_busy():
    """CPU seconds the whole machine has been busy (every process: controller, lab nodes, their sysfs
    daemons, and anybody else's jobs): a pair's CPU figure is steadier than its wall clock when the
    machine is loaded, and meaningful when nobody else runs."""
    with open("/proc/stat", encoding="ascii") as handle:
        fields = [int(v) for v in handle.readline().split()[1:]]
    return (sum(fields[:3]) + sum(fields[5:8])) / os.sysconf("SC_CLK_TCK")


def pairs(label, repeats, first, second):
    """Medians of (first, second, first/second) over ``repeats`` pairs run back to back; each pair also
    prints the machine's busy CPU seconds during each run."""
    ratios, a_times, b_times = [], [], []
    for repeat in range(repeats):
        before = load()
        cpu0 = machine_busy()
        a = first()
        cpu1 = machine_busy()
        b = second()
        cpu2 = machine_busy()
        print("  %s pair %d: %.1f s / %.1f s = %.2f; machine CPU %.1f s / %.1f s = %.2f (%s before, %s after)"
              % (label, repeat + 1, a, b, a / b, cpu1 - cpu0, cpu2 - cpu1, (cpu1 - cpu0) / max(cpu2 - cpu1, 0.01),
                 before, load()), flush=True)
        a_times.append(a)
        b_times.append(b)
        ratios.append(a / b)
    return statistics.median(a_times), statistics.median(b_times), statistics.median(ratios)


def recap_changed(stdout):
    """{host: changed} of the hosts a run changed something on, from the default callback's PLAY RECAP."""
    recap = stdout.split("PLAY RECAP")[-1]
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\S+)\s+:\s+ok=\d+\s+changed=(\d+)", recap, re.M)
            if int(m.group(2))}


def bench_reconverge(nodes, repeats, profile=False, workers=False):
    name, inventory = lab_up("reconverge", nodes, SITE_PROFILES)
    out = tempfile.mkdtemp(prefix="bench-site-")
    try:
        site = playbook(inventory, "playbooks/site.yml", *site_vars(out))
        first = timed(site)[0]  # converge
        second, json_out = timed(site, json_output=True)
        print("reconverge %d nodes: first run %.1f s, second run (JSON callback) %.1f s, %s"
              % (nodes, first, second, load()), flush=True)
        stats = json.loads(json_out)["stats"]
        changed = {host: s.get("changed", 0) for host, s in stats.items() if s.get("changed")}
        if changed:
            print("reconverge %d nodes: the second run changed something: %s" % (nodes, changed))
        calls, actions = node_calls(json_out)
        floor = os.path.join(out, "floor.yml")
        with open(floor, "w", encoding="utf-8") as handle:
            handle.write(floor_play(calls))
        print("reconverge %d nodes: node-side calls per host %s" % (nodes, sorted(set(calls.values()))))
        for host in sorted(actions, key=lambda h: -calls[h])[:1]:
            print("reconverge %d nodes: %s's calls: %s" % (nodes, host, ", ".join(
                "%s x%d" % (action.rsplit(".", 1)[-1], n) for action, n in sorted(actions[host].items()))))

        def second_run():
            took, stdout = timed(site)
            if recap_changed(stdout):  # then it was not a re-converge: say so next to its time
                print("  site.yml changed: %s" % recap_changed(stdout))
            return took

        site_s, floor_s, ratio = pairs("reconverge %d nodes site/floor" % nodes, repeats,
                                       second_run, lambda: timed(playbook(inventory, floor))[0])
        print("reconverge %d nodes: site.yml second run %.1f s, floor play %.1f s (medians of %d)"
              % (nodes, site_s, floor_s, repeats))
        if profile:
            print_profile("reconverge %d nodes site.yml" % nodes, site)
        if workers:
            print_workers("reconverge %d nodes site.yml" % nodes, site)
            print_workers("reconverge %d nodes floor" % nodes, playbook(inventory, floor))
        return ratio
    finally:
        lab_down(name)
        shutil.rmtree(out, ignore_errors=True)


def bench_discovery(nodes, repeats, profile=False, workers=False):
    name, inventory = lab_up("discovery", nodes)
    out = tempfile.mkdtemp(prefix="bench-discovery-")
    try:
        discover = playbook(inventory, "playbooks/discover.yml", "-e", "discovery_output_dir=%s" % out)
        timed(discover)  # the first model write
        disc_s, setup_s, ratio = pairs("discovery %d nodes discover/setup" % nodes, repeats,
                                       lambda: timed(discover)[0],
                                       lambda: timed(adhoc(inventory, "ansible.builtin.setup", "gather_subset=min"))[0])
        print("discovery %d nodes: discover.yml %.1f s, setup gather_subset=min %.1f s (medians of %d)"
              % (nodes, disc_s, setup_s, repeats))
        if profile:
            print_profile("discovery %d nodes discover.yml" % nodes, discover)
        if workers:
            print_workers("discovery %d nodes discover.yml" % nodes, discover)
        return ratio
    finally:
        lab_down(name)
        shutil.rmtree(out, ignore_errors=True)


def bench_verify(nodes, repeats, profile=False, workers=False):
    name, inventory = lab_up("verify", nodes, SITE_PROFILES)
    out = tempfile.mkdtemp(prefix="bench-verify-")
    try:
        timed(playbook(inventory, "playbooks/site.yml", *site_vars(out)))  # converge: model and addresses
        verify = playbook(inventory, "playbooks/verify_network.yml", *site_vars(out))
        verify_s, ping_s, ratio = pairs("verify %d nodes verify/ping" % nodes, repeats, lambda: timed(verify)[0],
                                        lambda: timed(adhoc(inventory, "ansible.builtin.ping"))[0])
        print("verify %d nodes: verify_network.yml %.1f s, ansible -m ping %.1f s (medians of %d)"
              % (nodes, verify_s, ping_s, repeats))
        if profile:
            print_profile("verify %d nodes verify_network.yml" % nodes, verify)
        if workers:
            print_workers("verify %d nodes verify_network.yml" % nodes, verify)
        return ratio
    finally:
        lab_down(name)
        shutil.rmtree(out, ignore_errors=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n", maxsplit=1)[0])
    parser.add_argument("benchmark", choices=["reconverge", "discovery", "verify"])
    parser.add_argument("--nodes", default="3", help="comma-separated node counts (default 3)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--profile", action="store_true",
                        help="after the pairs, one more run of the playbook with ansible.posix.profile_tasks (slowest tasks)")
    parser.add_argument("--workers", action="store_true",
                        help="after the pairs, one more run with every task worker profiled: per action, where the "
                             "controller's time goes (worker_profile.py)")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("needs root (the lab)")
    run = {"reconverge": bench_reconverge, "discovery": bench_discovery, "verify": bench_verify}[args.benchmark]
    print("%s benchmark: %s; %d CPUs, %s" % (args.benchmark, code_version(), os.cpu_count(), load()), flush=True)
    ratios = []
    for count in [int(n) for n in args.nodes.split(",")]:
        ratio = run(count, args.repeats, args.profile, args.workers)
        ratios.append("%d nodes %.2f" % (count, ratio))
    print("%s ratio: %s" % (args.benchmark, "; ".join(ratios)))


if __name__ == "__main__":
    main()
