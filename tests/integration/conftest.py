"""Integration tests on the lab (root only).

Every test here is skipped, with the reason, when not root or when a lab dependency is missing.
Use `lab_factory(name, nodes=3, profiles=None, sm=True)` to get a running lab; each lab brought up
through it is torn down at the end of the test module that made it. Give each test module its own lab name.

    def test_something(lab_factory):
        lab = lab_factory("sriov-it", nodes=2, profiles=["cx5-ib-sriov"])
        cp = lab.exec("node1", ["cat", "/sys/class/net/ib0/type"])
        cp = lab.playbook("playbooks/discover.yml", extra_vars={"x": 1}, limit="node1")

Helpers for the test modules: `run_module(lab, "hpcnet.infiniband.ib_sriov", "node1", {...})` runs one
module ad hoc and returns {host: result}; `fabric(lab, "unlink", "node2")` drives the simulated fabric;
`wait_for(fn, seconds)` polls until fn() is truthy. `tests/` is on sys.path for `testlib` (the real
sysfs captures, `plain()` for ansible-inventory output).
"""

from __future__ import annotations

import collections
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
LABCTL = REPO / "lab" / "labctl"
VENV_BIN = REPO / ".venv" / "bin"
STATE_ROOT = Path("/run/hpcnet-lab")
HERE = Path(__file__).resolve().parent

if str(REPO / "tests") not in sys.path:
    sys.path.append(str(REPO / "tests"))  # testlib
if str(REPO / "lab") not in sys.path:
    sys.path.append(str(REPO / "lab"))  # the lab's own code (lab/core), as labctl imports it

from core import lab as lab_core  # noqa: E402  # lab/core/lab.py

REQUIRED_COMMANDS = ["ip", "unshare", "nsenter", "chroot", "sshd", "ssh", "ssh-keygen",
                     "ovsdb-server", "ovsdb-tool", "ovs-vswitchd", "ovs-vsctl", "ping"]
HW_COMMANDS = ["ibsim", "opensm", "sminfo", "fusermount3"]


def lab_skip_reason() -> str | None:
    if os.geteuid() != 0:
        return "lab integration tests need root (network namespaces, mounts)"
    missing = [c for c in REQUIRED_COMMANDS
               if not shutil.which(c, path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin")]
    if missing:
        return "lab dependencies missing: " + ", ".join(missing) + " (run scripts/setup.sh)"
    if not (VENV_BIN / "python").exists() or not (VENV_BIN / "ansible-playbook").exists():
        return f"{VENV_BIN} has no python/ansible-playbook (run scripts/setup.sh)"
    if (REPO / "lab" / "hw" / "__init__.py").exists():
        # With lab-hw present, `labctl up` uses the profiles (FUSE) and the fabric (ibsim, opensm).
        missing = [c for c in HW_COMMANDS
                   if not shutil.which(c, path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin")]
        if missing:
            return "lab hardware dependencies missing: " + ", ".join(missing)
        if not Path("/dev/fuse").exists():
            return "no /dev/fuse: the lab's sysfs profiles need FUSE"
    return None


def pytest_collection_modifyitems(config, items):
    reason = lab_skip_reason()
    if reason is None:
        return
    marker = pytest.mark.skip(reason=reason)
    for item in items:
        if HERE in Path(str(item.path)).resolve().parents:
            item.add_marker(marker)


# Seconds per test module (setup, call and teardown of its tests, its lab's bring-up and tear-down
# included): scripts/test.sh splits the modules over its two lanes by these figures.
MODULE_SECONDS: dict = {}
# What the helpers below started, by kind: most of the suite's CPU is Ansible's (a few hundred ms per command
# start, per task and host, per module call), so these counts say where its cost comes from.
COMMANDS: collections.Counter = collections.Counter()


def pytest_runtest_logreport(report):
    module = report.nodeid.split("::", 1)[0]
    MODULE_SECONDS[module] = MODULE_SECONDS.get(module, 0.0) + report.duration


def pytest_terminal_summary(terminalreporter):
    if not MODULE_SECONDS:
        return
    terminalreporter.write_line("seconds per test module (slowest first):")
    for module, seconds in sorted(MODULE_SECONDS.items(), key=lambda item: -item[1]):
        terminalreporter.write_line("%7.1f  %s" % (seconds, module))
    terminalreporter.write_line("commands started by the helpers: " + ", ".join(
        "%s %d" % (kind, count) for kind, count in COMMANDS.most_common()))


def ansible_env() -> dict:
    env = dict(os.environ)
    env["PATH"] = f"{VENV_BIN}:{env.get('PATH', '/usr/sbin:/usr/bin:/sbin:/bin')}"
    env["ANSIBLE_HOME"] = str(REPO / ".ansible")
    env.setdefault("ANSIBLE_FORCE_COLOR", "0")
    env.setdefault("ANSIBLE_NOCOLOR", "1")
    return env


def run_labctl(*args: str, timeout: float = 600, check: bool = False) -> subprocess.CompletedProcess:
    COMMANDS["labctl " + args[2 if args[:1] == ("--name",) else 0]] += 1
    cp = subprocess.run([str(LABCTL), *args], capture_output=True, text=True, timeout=timeout,
                        cwd=REPO, check=False)
    if check and cp.returncode != 0:
        raise AssertionError(f"labctl {' '.join(args)} failed rc={cp.returncode}:\n"
                             f"{cp.stdout}\n{cp.stderr}")
    return cp


class Lab:
    """A running lab: paths, nodes (from lab.json) and ways to act on it."""

    def __init__(self, name: str, up_output: str = ""):
        self.name = name
        self.dir = STATE_ROOT / name
        self.inventory = self.dir / "inventory.yml"
        self.ssh_config = self.dir / "ssh_config"
        self.up_output = up_output

    @property
    def info(self) -> dict:
        return json.loads((self.dir / "lab.json").read_text())

    @property
    def nodes(self) -> list[dict]:
        return self.info["nodes"]

    @property
    def node_names(self) -> list[str]:
        return [n["name"] for n in self.nodes]

    def node(self, name: str) -> dict:
        return next(n for n in self.nodes if n["name"] == name)

    def labctl(self, *args: str, timeout: float = 600, check: bool = False):
        """labctl --name <this lab> ARGS... (e.g. lab.labctl("fabric", "unlink", "node2"))."""
        return run_labctl("--name", self.name, *args, timeout=timeout, check=check)

    def exec(self, node: str, argv: list[str], timeout: float = 60, input: str | None = None,
             check: bool = False) -> subprocess.CompletedProcess:
        """Run argv inside the node's namespaces and root (no ssh involved): what `labctl exec` runs, with the
        lab's own functions, without starting labctl's Python for each command (0.12 s of CPU each, and the
        tests run hundreds, many in polls). lab.json is read each time: a reboot gives a node a new holder."""
        COMMANDS["node exec"] += 1
        found = lab_core.find_node(lab_core.require(self.name), node)
        cp = subprocess.run(lab_core.exec_argv(found, argv), env=lab_core.node_env(), capture_output=True,
                            text=True, timeout=timeout, input=input, check=False)
        if check and cp.returncode != 0:
            raise AssertionError(f"{node}: {argv} rc={cp.returncode}: {cp.stderr}")
        return cp

    def ssh(self, node: str, command: str, timeout: float = 60) -> subprocess.CompletedProcess:
        """Run a shell command on the node over the lab's real ssh."""
        COMMANDS["ssh"] += 1
        return subprocess.run(["ssh", "-F", str(self.ssh_config), "-o", "BatchMode=yes",
                               "-o", "ConnectTimeout=10", node, command],
                              capture_output=True, text=True, timeout=timeout, check=False)

    def playbook(self, path, extra_vars: dict | None = None, check: bool = False,
                 limit: str | None = None, timeout: float = 900,
                 args: list[str] | None = None) -> subprocess.CompletedProcess:
        """ansible-playbook from the repo root (ansible.cfg applies) with this lab's inventory."""
        COMMANDS["ansible-playbook"] += 1
        argv = [str(VENV_BIN / "ansible-playbook"), "-i", str(self.inventory), str(path)]
        if extra_vars:
            argv += ["-e", json.dumps(extra_vars)]
        if check:
            argv.append("--check")
        if limit:
            argv += ["--limit", limit]
        argv += args or []
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, cwd=REPO,
                              env=ansible_env(), check=False)

    def __repr__(self) -> str:
        return f"Lab({self.name!r}, nodes={len(self.nodes)})"


@pytest.fixture(scope="module")
def lab_factory():
    """lab_factory(name, nodes=3, profiles=None, sm=True, ovs=True, data_addresses=True) -> Lab, up until the
    end of the test module that asked for it: one module's labs at a time keep the suite within 2 cores and
    bounded memory. data_addresses=True pre-assigns the data-plane addresses (`labctl up --data-addresses`)
    for the tests that need an address and do not configure one; False leaves that to the network role."""
    labs: dict[str, Lab] = {}

    def make(name: str, nodes: int | None = 3, profiles=None, sm: bool = True,
             ovs: bool = True, data_addresses: bool = True) -> Lab:
        if name in labs:
            return labs[name]
        args = ["up", "--name", name]
        if isinstance(profiles, (list, tuple)):
            profiles = ",".join(profiles)
        if profiles:
            args += ["--profiles", profiles]
        if nodes is not None and profiles != "all":
            args += ["--nodes", str(nodes)]
        if not sm:
            args.append("--no-sm")
        if not ovs:
            args.append("--no-ovs")
        if data_addresses:
            args.append("--data-addresses")
        cp = run_labctl(*args)
        if cp.returncode != 0 and "labctl down" in cp.stderr:
            # A lab of that name is up with other nodes: start afresh.
            run_labctl("down", "--name", name, check=True)
            cp = run_labctl(*args)
        if cp.returncode != 0:
            pytest.fail(f"labctl {' '.join(args)} failed:\n{cp.stdout}\n{cp.stderr}")
        print(cp.stdout.strip())
        labs[name] = Lab(name, up_output=cp.stdout)
        return labs[name]

    yield make
    for name in labs:
        run_labctl("down", "--name", name)


def site_output_vars(out: Path) -> dict:
    """Where site.yml's roles write on the controller, all under ``out``: the nodes model (discovery writes
    it, eipoib_ovs and netcheck read it) and the verification's result. The lab inventory itself says what
    the lab's nodes are like (userspace OVS datapath, no package installs)."""
    model = str(out / "discovery" / "nodes.json")
    return {"discovery_output_dir": str(out / "discovery"), "eipoib_ovs_nodes_model": model,
            "netcheck_nodes_model": model, "netcheck_result_file": str(out / "netcheck.json")}


def run_module(lab: Lab, module: str, hosts: str, args: dict | None = None, check: bool = False,
               diff: bool = False, timeout: float = 240) -> dict:
    """Run one module ad hoc on the lab (`ansible HOSTS -m MODULE -a ARGS`, from the repo root) through
    the JSON callback; return {host: result dict}."""
    env = ansible_env()
    env.update(ANSIBLE_LOAD_CALLBACK_PLUGINS="1", ANSIBLE_STDOUT_CALLBACK="ansible.posix.json",
               ANSIBLE_CALLBACK_RESULT_FORMAT="json")
    COMMANDS["ansible"] += 1
    argv = [str(VENV_BIN / "ansible"), "-i", str(lab.inventory), hosts, "-m", module]
    if args:
        argv += ["-a", json.dumps(args)]
    if check:
        argv.append("--check")
    if diff:
        argv.append("--diff")
    cp = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, cwd=REPO, env=env, check=False)
    try:
        data = json.loads(cp.stdout)
    except ValueError:
        raise AssertionError(f"ansible output is not JSON (rc={cp.returncode}):\n{cp.stdout}\n{cp.stderr}") from None
    results = {}
    for play in data["plays"]:
        for task in play["tasks"]:
            results.update(task["hosts"])
    return results


def fabric(lab: Lab, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """The lab's simulated fabric control, `python -m hw.fabric ARGS --lab-dir <lab>` (contracts.md §5):
    status, reset, sm-start, sm-stop, unlink NODE, relink NODE..."""
    COMMANDS["hw.fabric " + args[0]] += 1
    return subprocess.run([str(VENV_BIN / "python"), "-m", "hw.fabric", *args, "--lab-dir", str(lab.dir)],
                          capture_output=True, text=True, timeout=timeout, cwd=REPO,
                          env=dict(os.environ, PYTHONPATH=str(REPO / "lab")), check=False)


def wait_for(fn, seconds: float, step: float = 0.5):
    """Call fn() until it returns something truthy or ``seconds`` have passed; its last value."""
    deadline = time.monotonic() + seconds
    value = fn()
    while not value and time.monotonic() < deadline:
        time.sleep(step)
        value = fn()
    return value
