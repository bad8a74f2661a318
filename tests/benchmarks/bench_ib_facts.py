# -*- coding: utf-8 -*-
# Copyright: hpcnet.infiniband contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Benchmark of ib_facts (a benchmark, not a test: it prints figures and asserts nothing).

1. Fake sysfs trees with 128, 512 and 1,024 netdevs (ConnectX-5 PFs with 31 VFs each, every PF and VF
   with its own RDMA device, as mlx5 does), in two flavours:
   - ``ib``:   IPoIB netdevs, 128-entry P_Key table on every port (the worst case: 128 files per port);
   - ``roce``: RoCE netdevs, one-entry P_Key tables.
   For each: gather() in-process (logic only; best and median of N runs, CPU and wall) with the default
   ``pkeys="physical"`` (VF ports' tables left out), with ``pkeys="all"`` and ``"none"``, and with
   ``interfaces=[one netdev]``; and a whole
   ``ansible localhost -m hpcnet.infiniband.ib_facts -a sysfs_root=...`` run (minus an
   ``ansible.builtin.ping`` run, the fixed cost of starting ansible).
2. When run as root: a network namespace with 512 veth interfaces, and in it
   ``ansible -m ansible.builtin.setup -a gather_subset=network`` vs ``ansible -m hpcnet.infiniband.ib_facts``
   (live, ethtool ioctl per interface). The namespace is deleted afterwards, whatever happens.

Run from the repository root:  .venv/bin/python tests/benchmarks/bench_ib_facts.py [--quick] [--skip-netns]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
COLLECTIONS = os.path.join(REPO, ".collections")
VENV_PY = os.path.join(REPO, ".venv", "bin", "python")
ANSIBLE = os.path.join(REPO, ".venv", "bin", "ansible")
sys.path.insert(0, COLLECTIONS)
sys.path.insert(0, os.path.join(REPO, "tests"))

from ansible_collections.hpcnet.infiniband.plugins.module_utils import _facts  # noqa: E402
from ansible_collections.hpcnet.infiniband.plugins.module_utils._host import Host  # noqa: E402
from testlib import sysfs_builder  # noqa: E402

COMMAND_TIMEOUT = 900  # seconds, any single ansible call
NETNS_VETH_PAIRS = 256  # 512 interfaces


def ansible_env():
    env = dict(os.environ)
    env["ANSIBLE_HOME"] = os.path.join(REPO, ".ansible")
    env["ANSIBLE_COLLECTIONS_PATH"] = COLLECTIONS
    env["ANSIBLE_LOCALHOST_WARNING"] = "False"
    env["ANSIBLE_INVENTORY_UNPARSED_WARNING"] = "False"
    return env


def run_ansible(module, args, prefix=()):
    argv = list(prefix) + [ANSIBLE, "localhost", "-i", "localhost,", "-c", "local", "-m", module,
                           "-e", "ansible_python_interpreter=%s" % VENV_PY, "-o"]
    if args:
        argv += ["-a", args]
    start = time.perf_counter()
    proc = subprocess.run(argv, cwd=REPO, env=ansible_env(), capture_output=True, text=True,
                          timeout=COMMAND_TIMEOUT, check=False)
    elapsed = time.perf_counter() - start
    ok = proc.returncode == 0 and "SUCCESS" in proc.stdout
    if not ok:
        print("    ! %s failed (rc %d): %s" % (module, proc.returncode, (proc.stdout + proc.stderr)[-400:]))
    return elapsed, proc.stdout


def time_gather(root, repeats, **kwargs):
    walls, cpus = [], []
    facts = None
    for _repeat in range(repeats):
        host = Host(sysfs_root=root, live=False)
        wall0, cpu0 = time.perf_counter(), time.process_time()
        facts = _facts.gather(host, **kwargs)
        walls.append(time.perf_counter() - wall0)
        cpus.append(time.process_time() - cpu0)
    return facts, walls, cpus


def bench_trees(builder, sizes, flavours, repeats, with_ansible):
    results = []
    base = "/dev/shm" if os.path.isdir("/dev/shm") else None
    ping = None
    if with_ansible:
        ping = min(run_ansible("ansible.builtin.ping", None)[0] for _repeat in range(2))
        print("ansible localhost -m ping (fixed cost of an ansible call): %.2f s" % ping)
    for flavour in flavours:
        for size in sizes:
            tmp = tempfile.mkdtemp(prefix="hpcnet-bench-", dir=base)
            try:
                root = os.path.join(tmp, "sys")
                start = time.perf_counter()
                builder.many_netdevs(root, size, link_layer="InfiniBand" if flavour == "ib" else "Ethernet")
                built = time.perf_counter() - start
                # One untimed gather first: right after writing ~100,000 files the kernel is still busy
                # with them, and the first timed variant would pay for it.
                _facts.gather(Host(sysfs_root=root, live=False))
                facts, walls, cpus = time_gather(root, repeats)  # the default: pkeys=physical
                ports = sum(len(d["ports"]) for d in facts["devices"].values())
                _every, _walls, all_cpus = time_gather(root, repeats, pkeys="all")
                _light, _walls, light_cpus = time_gather(root, repeats, pkeys="none")
                one = sorted(facts["nics"])[len(facts["nics"]) // 2]
                _one, _walls, one_cpus = time_gather(root, repeats, interfaces=[one])
                row = {
                    "flavour": flavour, "netdevs": len(facts["nics"]), "rdma_ports": ports,
                    "gather_best_s": min(walls), "gather_median_s": statistics.median(walls),
                    "gather_cpu_best_s": min(cpus), "gather_cpu_median_s": statistics.median(cpus),
                    "gather_pkeys_all_cpu_best_s": min(all_cpus),
                    "gather_nopkeys_cpu_best_s": min(light_cpus),
                    "gather_one_interface_cpu_best_s": min(one_cpus), "build_s": built,
                }
                if with_ansible:
                    whole, _out = run_ansible("hpcnet.infiniband.ib_facts", "sysfs_root=%s" % root)
                    row["ansible_s"] = whole
                    row["ansible_minus_ping_s"] = whole - ping
                results.append(row)
                ansible_text = ""
                if with_ansible:
                    ansible_text = "; ansible -m ib_facts %.2f s (%.2f s over ping)" % (
                        row["ansible_s"], row["ansible_minus_ping_s"])
                print("%-5s %5d netdevs %5d ports: gather cpu best %.3f s median %.3f s (%.0f us/netdev);"
                      " pkeys=all cpu %.3f s; pkeys=none cpu %.3f s; interfaces=[%s] cpu %.3f s;"
                      " wall best %.3f s median %.3f s%s"
                      % (flavour, row["netdevs"], ports, row["gather_cpu_best_s"], row["gather_cpu_median_s"],
                         1e6 * row["gather_cpu_best_s"] / row["netdevs"], row["gather_pkeys_all_cpu_best_s"],
                         row["gather_nopkeys_cpu_best_s"], one,
                         row["gather_one_interface_cpu_best_s"], row["gather_best_s"], row["gather_median_s"],
                         ansible_text))
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
    return results


def sh(argv, check=True, timeout=120):
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=check)


def bench_netns(pairs):
    """setup gather_subset=network vs ib_facts in a namespace with 2*pairs veth interfaces."""
    if os.geteuid() != 0:
        print("netns comparison skipped: needs root")
        return None
    ns = "hpcnet-bench-%d" % os.getpid()
    result = None
    try:
        sh(["ip", "netns", "add", ns])
        batch = "".join("link add bv%da type veth peer name bv%db\n" % (i, i) for i in range(pairs))
        batch += "".join("link set bv%da up\nlink set bv%db up\n" % (i, i) for i in range(pairs))
        with tempfile.NamedTemporaryFile("w", suffix=".batch", delete=False) as handle:
            handle.write(batch)
            batch_file = handle.name
        try:
            start = time.perf_counter()
            sh(["ip", "-n", ns, "-batch", batch_file], timeout=300)
            made = time.perf_counter() - start
        finally:
            os.unlink(batch_file)
        count = len(sh(["ip", "-n", ns, "-o", "link", "show"]).stdout.splitlines())
        print("netns %s: %d interfaces (incl. lo) made in %.1f s" % (ns, count, made))
        prefix = ["ip", "netns", "exec", ns]
        # `ip netns exec` remounts /sys for the namespace, so both modules see only its interfaces.
        ib_time, ib_out = run_ansible("hpcnet.infiniband.ib_facts", None, prefix)
        setup_time, setup_out = run_ansible("ansible.builtin.setup", "gather_subset=network", prefix)
        nics = None
        try:
            payload = json.loads(ib_out.split("=>", 1)[1])
            facts = payload["ansible_facts"]["ib_facts"]
            nics = len(facts["nics"])
            drivers = sorted({n["driver_source"] for n in facts["nics"].values()})
        except (IndexError, ValueError, KeyError):
            drivers = []
        ratio = ib_time / setup_time if setup_time else None
        print("setup gather_subset=network: %.2f s; ib_facts (live, %s netdevs, driver_source %s): %.2f s;"
              " ratio %.2f" % (setup_time, nics, "/".join(drivers) or "?", ib_time, ratio or 0))
        result = {"interfaces": count, "setup_s": setup_time, "ib_facts_s": ib_time, "ratio": ratio}
    except (subprocess.SubprocessError, OSError) as exc:
        print("netns comparison failed: %s" % exc)
    finally:
        subprocess.run(["ip", "netns", "pids", ns], capture_output=True, timeout=30, check=False)
        subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=60, check=False)
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n", maxsplit=1)[0])
    parser.add_argument("--quick", action="store_true", help="128 and 512 only, 3 repeats, no ansible calls")
    parser.add_argument("--sizes", default="128,512,1024")
    parser.add_argument("--flavours", default="ib,roce")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--skip-netns", action="store_true")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()
    sizes = [128, 512] if args.quick else [int(s) for s in args.sizes.split(",")]
    repeats = min(3, args.repeats) if args.quick else args.repeats
    with open("/proc/loadavg", encoding="ascii") as handle:
        load = handle.read().split()[:3]
    print("ib_facts benchmark: %d CPUs, load average %s, python %s" % (
        os.cpu_count(), " ".join(load), sys.version.split()[0]))
    figures = {"trees": bench_trees(sysfs_builder, sizes, args.flavours.split(","), repeats,
                                    with_ansible=not args.quick)}
    if not args.skip_netns and not args.quick:
        figures["netns"] = bench_netns(NETNS_VETH_PAIRS)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(figures, handle, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
