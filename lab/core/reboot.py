"""labctl reboot NODE|--all: a node back to its power-on state, then its own boot sequence.

Power-on state, as a Debian host after a power cycle:
- every process of the node stops (its sshd and sessions, Open vSwitch, anything Ansible started);
  the lab's own processes that only share the node's network namespace (an opensm run by
  `labctl sm start --on NODE`) are lab infrastructure and stay;
- the FUSE sysfs restarts from the profile: sriov_numvfs 0, no VFs and so zero VF GUIDs, no P_Key
  children, the profile's IPoIB mode and MTU (the hardware overrides of `labctl hw set` stay: they are
  the hardware); the real links it mirrored (P_Key children) go, the node's links get the lab's MTU;
- global addresses flushed; the addresses `labctl up` assigned (lab.json) come back, as the node's
  pre-existing configuration; /run and /tmp (tmpfs on Debian) are emptied; /etc is the disk and stays.

Boot sequence, read from the node's own files only (the lab knows nothing of what wrote them):
1. sshd and Open vSwitch start (OVS from its database in /etc/openvswitch, as after a reboot);
2. every oneshot service enabled under the node's /etc/systemd/system/*.target.wants whose unit file
   is in /etc/systemd/system runs its ExecStart lines in order (ConditionPathExists honoured): those
   ordered Before=network-pre.target first, as systemd would;
3. `ifup -a` when /etc/network/interfaces exists (Debian's networking.service, ifupdown);
4. the remaining enabled oneshot services of step 2.
Other enabled units (daemons) are listed as not started: the nodes have no service manager.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import time
from pathlib import Path

from . import hwiface, lab
from .sh import LabError, ip_batch, kill_pids, pid_alive, run

BOOT_TIMEOUT = 300
UNIT_DIR = "/etc/systemd/system"
NODE_RUN = lab.NODE_RUN


def _in_node(node: dict, argv: list[str], timeout: float = 60, check: bool = True,
             root: bool = True) -> subprocess.CompletedProcess:
    """argv inside the node: its namespaces, and its root unless ``root`` is False (then the node's
    mount namespace with the host's paths, where NODE_DIR/root is the node's /)."""
    if root:
        full = lab.exec_argv(node, argv)
    else:
        full = ["nsenter", "-t", str(node["holder_pid"]), "-n", "-m", "-u", "--", *argv]
    return run(full, timeout=timeout, check=check, env=lab.node_env())


def _node_pids(node: dict) -> list[int]:
    """The node's processes: its network and mount namespaces, except the holder."""
    holder = node["holder_pid"]
    try:
        mnt = os.stat(f"/proc/{holder}/ns/mnt").st_ino
    except OSError as exc:
        raise LabError(f"{node['name']}: node namespaces are gone") from exc
    pids = []
    for pid in lab.pids_in_netns([node["netns"]]):
        try:
            if pid != holder and os.stat(f"/proc/{pid}/ns/mnt").st_ino == mnt:
                pids.append(pid)
        except OSError:
            continue
    return pids


def _kill_control_master(info: dict, node: dict) -> None:
    """Ansible's ssh ControlPersist master for this node (a reboot drops the connection)."""
    path = f"{info['ssh']['control_dir']}/{node['mgmt_address']}".encode()
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if path in (proc / "cmdline").read_bytes():
                    pids.append(int(proc.name))
            except OSError:
                continue
    kill_pids(pids, grace=1.0)


def power_off(info: dict, node: dict) -> None:
    kill_pids(_node_pids(node))
    _kill_control_master(info, node)
    if info.get("hw"):
        # The FUSE mount without its daemon answers ENOTCONN: unmount it, so setup mounts a fresh one.
        _in_node(node, ["umount", "-l", str(Path(node["dir"]) / "root" / "sys")], check=False, root=False)
    # tmpfs on a Debian host: empty after a power cycle (the lab's sshd files in NODE_RUN are the
    # machine's own, kept); the directories the packages' tmpfiles.d make at boot are made again.
    _in_node(node, ["sh", "-ec", 'find /tmp -mindepth 1 -maxdepth 1 -exec rm -rf {} +\n'
                    f'find /run -mindepth 1 -maxdepth 1 ! -name {NODE_RUN.rsplit("/", 1)[1]} '
                    '-exec rm -rf {} +\nmkdir -p /run/sshd /run/lock /run/network && chmod 0755 /run/sshd'])


def reset_links(node: dict) -> None:
    """Links and addresses of a powered-on node: only lab.json's links, with their MTU and addresses."""
    links = json.loads(run(["ip", "-n", node["netns"], "-j", "link", "show"]).stdout or "[]")
    extra = [link["ifname"] for link in links if link["ifname"] != "lo" and link["ifname"] not in node["links"]]
    lines = [f"link del {name}" for name in extra]
    for name, link in node["links"].items():
        if link["kind"] == "mgmt":
            continue
        lines += [f"addr flush dev {name} scope global", f"link set {name} mtu {link['mtu']} up"]
        if link.get("address"):
            lines.append(f"addr add {link['address']}/{link['prefix']} dev {name}")
    if lines:
        ip_batch(lines, netns=node["netns"], force=True)


def start_hardware(info: dict, node: dict) -> None:
    """The node's sysfs view from its profile, as `labctl up` starts it (hw.node setup)."""
    d = Path(node["dir"])
    _in_node(node, ["env", f"PYTHONPATH={hwiface.LAB_SRC}", "PYTHONDONTWRITEBYTECODE=1", hwiface.PYTHON,
                    "-m", "hw.node", "setup", "--lab-dir", info["dir"], "--node", node["name"],
                    "--profile", node["profile"], "--node-index", str(node["index"]),
                    "--root", str(d / "root"), "--realsys", str(d / "realsys")], timeout=90, root=False)


def start_services(info: dict, node: dict) -> None:
    _in_node(node, ["/usr/sbin/sshd", "-f", f"{NODE_RUN}/sshd_config", "-E", f"{NODE_RUN}/sshd.log"])
    if info.get("ovs"):
        # The database survives the reboot (it is on the node's disk); the daemons rebuild the bridges.
        _in_node(node, ["sh", "-ec", """
            mkdir -p /run/openvswitch /var/log/openvswitch
            ovsdb-server /etc/openvswitch/conf.db --remote=punix:/run/openvswitch/db.sock \
                --remote=db:Open_vSwitch,Open_vSwitch,manager_options --pidfile --log-file --detach --no-chdir
            ovs-vswitchd --pidfile --log-file --detach --no-chdir
        """])


def parse_unit(text: str) -> dict[str, dict[str, list[str]]]:
    """{section: {key: [values in order]}} of a unit file (keys repeat: ExecStart=, After=); an empty
    assignment resets the list, as in systemd; backslash continuations are joined."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] = {}
    for line in text.replace("\\\n", " ").splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
        elif "=" in line:
            key, value = (part.strip() for part in line.split("=", 1))
            current[key] = current.get(key, []) + [value] if value else []
    return sections


def enabled_units(node_root: Path) -> list[dict]:
    """Enabled units of the node whose file is the admin's (/etc/systemd/system): name, file, oneshot,
    early (Before=network-pre.target), ExecStart lines, ConditionPathExists paths."""
    etc = node_root / UNIT_DIR.lstrip("/")
    units = {}
    for wants in sorted(etc.glob("*.target.wants")):
        for entry in sorted(wants.iterdir()):
            target = os.readlink(entry) if entry.is_symlink() else None
            if not target or not entry.name.endswith(".service"):
                continue
            path = target if target.startswith("/") else os.path.normpath(f"{UNIT_DIR}/{wants.name}/{target}")
            units.setdefault(entry.name, path)
    result = []
    for name, path in sorted(units.items()):
        file = node_root / path.lstrip("/")
        if not path.startswith(UNIT_DIR + "/") or not file.is_file():
            result.append({"name": name, "file": path, "skip": "not an admin unit in " + UNIT_DIR})
            continue
        unit = parse_unit(file.read_text())
        service, head = unit.get("Service", {}), unit.get("Unit", {})
        kind = (service.get("Type") or ["simple"])[-1]
        result.append({"name": name, "file": path, "skip": None if kind == "oneshot" else f"Type={kind}",
                       "early": "network-pre.target" in " ".join(head.get("Before", [])).split(),
                       "exec": service.get("ExecStart", []), "conditions": head.get("ConditionPathExists", [])})
    return result


def _run_unit(node: dict, unit: dict, node_root: Path, out) -> bool:
    for path in unit["conditions"]:
        negate = path.startswith("!")
        exists = (node_root / path.lstrip("!").lstrip("/")).exists()
        if exists == negate:
            out(f"{node['name']}: {unit['name']}: condition ConditionPathExists={path} not met, skipped")
            return True
    for line in unit["exec"]:
        # Prefixes -, @, +, ! change how systemd runs a command; "-" also ignores its failure.
        ignore = line.startswith("-")
        argv = shlex.split(line.lstrip("-@+!"))
        cp = _in_node(node, argv, timeout=BOOT_TIMEOUT, check=False)
        for text in (cp.stdout, cp.stderr):
            for row in text.strip().splitlines():
                out(f"{node['name']}: {unit['name']}: {row}")
        if cp.returncode != 0 and not ignore:
            out(f"{node['name']}: {unit['name']}: {line} exited {cp.returncode}: unit failed")
            return False
    return True


def boot(info: dict, node: dict, out=print) -> list[str]:
    """The node's boot sequence; returns the failures."""
    node_root = Path(f"/proc/{node['holder_pid']}/root")
    failures = []
    units = enabled_units(node_root)
    skipped = [u["name"] for u in units if u["skip"]]
    if skipped:
        out(f"{node['name']}: {len(skipped)} enabled package or non-oneshot units not started (no service "
            f"manager in the lab's nodes; networking.service is the `ifup -a` below)")
    runnable = [u for u in units if not u["skip"]]
    for unit in [u for u in runnable if u["early"]]:
        if not _run_unit(node, unit, node_root, out):
            failures.append(f"{node['name']}: {unit['name']} failed")
    if (node_root / "etc/network/interfaces").is_file():
        cp = _in_node(node, ["ifup", "-a"], timeout=BOOT_TIMEOUT, check=False)
        for row in (cp.stdout + cp.stderr).strip().splitlines():
            out(f"{node['name']}: ifup -a: {row}")
        if cp.returncode != 0:
            failures.append(f"{node['name']}: ifup -a exited {cp.returncode}")
    for unit in [u for u in runnable if not u["early"]]:
        if not _run_unit(node, unit, node_root, out):
            failures.append(f"{node['name']}: {unit['name']} failed")
    return failures


def reboot_node(info: dict, node: dict, out=print) -> list[str]:
    t0 = time.monotonic()
    if not pid_alive(node.get("holder_pid") or 0):
        raise LabError(f"{node['name']}: node namespaces are gone (labctl up --name {info['name']})")
    power_off(info, node)
    reset_links(node)
    if info.get("hw"):
        start_hardware(info, node)
    start_services(info, node)
    failures = boot(info, node, out)
    out(f"{node['name']}: rebooted in {time.monotonic() - t0:.1f} s"
        + (f", {len(failures)} boot failure(s)" if failures else ""))
    return failures


def reboot(name: str, nodes: list[str] | None, out=print) -> int:
    """Reboot the named nodes (all when None), one after the other; rc 1 when a boot step failed."""
    info = lab.require(name)
    chosen = info["nodes"] if not nodes else [lab.find_node(info, n) for n in nodes]
    failures = []
    with lab.lab_lock(name):
        for node in chosen:
            failures += reboot_node(info, node, out)
        lab.wait_sshd({"nodes": chosen})
    for failure in failures:
        out(f"FAILED: {failure}")
    return 1 if failures else 0
