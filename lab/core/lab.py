"""Bring a lab up, check it, tear it down.

A lab NAME is: a state dir /run/hpcnet-lab/NAME, a management bridge and an IB data bridge in the
root namespace, one network namespace per node (plus one for the simulated fabric), veth pairs, and
per node a private mount namespace with its own root, sshd and Open vSwitch. lab.json records all of
it; teardown works from lab.json plus what it finds by name, so a half-started lab is removed too.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import yaml

from . import hwiface, naming
from .sh import (LabError, ip_batch, kill_pids, link_names, netns_names, pid_alive,
                 read_pid, write_atomic)

NODE_INIT = Path(__file__).resolve().with_name("node_init.sh")
SSH_PORT = 22
NODE_RUN = "/run/hpcnet-lab-node"
DATA_KINDS = ("ib", "eth", "roce")      # veths on the data bridge
# EIPoIB links get no address: in the real setup they are ports of an OVS bridge the roles build.
ADDRESSED_KINDS = ("ib", "eth", "roce")
# Data-plane addresses are the collection's job (role network); `up --data-addresses` pre-assigns
# them (10.<slot>.<index>.<node>/24 of data.subnets) for tests of other parts that need an address.


# --------------------------------------------------------------------------------------- state

def load(name: str) -> dict | None:
    try:
        return json.loads((naming.lab_dir(name) / "lab.json").read_text())
    except (OSError, ValueError):
        return None


def save(info: dict) -> None:
    write_atomic(Path(info["dir"]) / "lab.json", json.dumps(info, indent=2) + "\n")


def lab_lock(name: str):
    return naming.locked(naming.STATE_ROOT / f".{name}.lock")


def list_labs() -> list[str]:
    if not naming.STATE_ROOT.is_dir():
        return []
    return sorted(p.parent.name for p in naming.STATE_ROOT.glob("*/lab.json"))


# ------------------------------------------------------------------------------------ planning

def profiles_for(nodes: int | None, profiles: str | None) -> list[str]:
    if profiles == "all":
        if nodes not in (None, len(hwiface.DEFAULT_PROFILES)):
            raise LabError("--profiles all means one node per profile "
                           f"({len(hwiface.DEFAULT_PROFILES)}); drop --nodes")
        return list(hwiface.DEFAULT_PROFILES)
    cycle = [p.strip() for p in profiles.split(",") if p.strip()] if profiles \
        else hwiface.DEFAULT_PROFILES
    count = nodes if nodes is not None else (len(cycle) if profiles else 3)
    if not 1 <= count <= naming.MAX_NODES:
        raise LabError(f"--nodes must be 1..{naming.MAX_NODES}")
    return [cycle[i % len(cycle)] for i in range(count)]


def plan(name: str, index: int, profiles: list[str], link_sets: list[dict], *, use_hw: bool,
         sm: bool, ovs: bool, data_addresses: bool = False) -> dict:
    d = naming.lab_dir(name)
    # Data-plane link names in order of first appearance; the position is the subnet slot.
    slots: list[str] = []
    for links in link_sets:
        for link in links["links"]:
            if link["kind"] in ADDRESSED_KINDS and link["name"] not in slots:
                slots.append(link["name"])
    macvlans: list[str] = []  # the same for EIPoIB links (fallback MACs only)
    for links in link_sets:
        for link in links["links"]:
            if link["kind"] == "eipoib" and link["name"] not in macvlans:
                macvlans.append(link["name"])
    nodes = []
    for i, (profile, links) in enumerate(zip(profiles, link_sets), start=1):
        node = naming.node_name(i)
        mgmt_if = links.get("management_interface", "eth0")
        mgmt = naming.node_mgmt_address(index, i)
        node_links: dict[str, dict] = {}
        for link in links["links"]:
            lname, kind = link["name"], link["kind"]
            entry = {"kind": kind, "mtu": int(link.get("mtu") or 1500)}
            # The profile's MAC when it has an Ethernet one (IPoIB's 20-byte address cannot be
            # a veth's), else a fixed one: a recreated lab never leaves stale ARP entries.
            given = link.get("mac")
            given = given if isinstance(given, str) and len(given) == 17 else None
            if kind == "mgmt":
                entry.update(address=mgmt, prefix=24, mac=given or naming.node_mgmt_mac(index, i),
                             host_veth=naming.host_veth(index, i, None),
                             bridge=naming.mgmt_bridge(index))
            elif kind == "eipoib":
                entry.update(parent=link["parent"], mac=given or naming.node_data_mac(
                    index, i, 16 + macvlans.index(lname)))
            else:
                slot = slots.index(lname)
                entry["mac"] = given or naming.node_data_mac(index, i, slot)
                address = naming.data_address(index, slot, i) if data_addresses else None
                if address:
                    entry.update(address=address, prefix=24)
                entry.update(host_veth=naming.host_veth(index, i, slot),
                             bridge=naming.data_bridge(index))
            node_links[lname] = entry
        if mgmt_if not in node_links:
            node_links[mgmt_if] = {"kind": "mgmt", "mtu": 1500, "address": mgmt, "prefix": 24,
                                   "mac": naming.node_mgmt_mac(index, i),
                                   "host_veth": naming.host_veth(index, i, None),
                                   "bridge": naming.mgmt_bridge(index)}
        ib = node_links.get("ib0", {}).get("address")
        nodes.append({
            "name": node, "index": i, "netns": naming.node_netns(name, node),
            "profile": profile, "mgmt_interface": mgmt_if, "mgmt_address": mgmt,
            "ib_address": ib, "links": node_links, "hcas": links.get("hcas", []),
            "dir": str(d / "nodes" / node),
        })
    return {
        "name": name, "index": index, "dir": str(d), "state": "starting", "pid": os.getpid(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "hw": use_hw, "sm": sm, "ovs": ovs, "data_addresses": data_addresses,
        "mgmt": {"bridge": naming.mgmt_bridge(index), "subnet": f"10.{naming.MGMT_NET}.{index}.0/24",
                 "gateway": naming.mgmt_address(index, naming.GATEWAY_HOST), "prefix": 24},
        "data": {"bridge": naming.data_bridge(index),
                 "subnets": {n: f"10.{naming.DATA_NET_FIRST + k}.{index}.0/24"
                             for k, n in enumerate(slots) if k < naming.DATA_NET_SLOTS}},
        "fabric": {"netns": naming.fabric_netns(name),
                   "address": naming.mgmt_address(index, naming.FABRIC_HOST),
                   "mac": naming.fabric_mac(index), "host_veth": naming.fabric_veth(index)},
        "ssh": {"key": str(d / "id_ed25519"), "config": str(d / "ssh_config"),
                "control_dir": str(d / "cp")},
        "inventory": str(d / "inventory.yml"),
        "nodes": nodes,
    }


# ------------------------------------------------------------------------------------- network

def create_network(info: dict) -> None:
    idx = info["index"]
    mb, db = info["mgmt"]["bridge"], info["data"]["bridge"]
    root = [f"netns add {n['netns']}" for n in info["nodes"]]
    root.append(f"netns add {info['fabric']['netns']}")
    root += [
        f"link add {mb} address {naming.bridge_mac(idx, 1)} type bridge forward_delay 0",
        f"addr add {info['mgmt']['gateway']}/24 dev {mb}",
        f"link set {mb} up",
        f"link add {db} address {naming.bridge_mac(idx, 2)} type bridge forward_delay 0",
        f"link set {db} up",
    ]
    fab = info["fabric"]
    root += [f"link add {fab['host_veth']} type veth peer name eth0 address {fab['mac']} "
             f"netns {fab['netns']}",
             f"link set {fab['host_veth']} master {mb} up"]
    per_ns: dict[str, list[str]] = {fab["netns"]: [
        "link set lo up", f"addr add {fab['address']}/24 dev eth0", "link set eth0 up"]}
    for node in info["nodes"]:
        lines = ["link set lo up"]
        later = []
        for lname, link in node["links"].items():
            if "host_veth" in link:
                hv, mtu = link["host_veth"], link["mtu"]
                root += [f"link add {hv} mtu {mtu} type veth peer name {lname} mtu {mtu} "
                         f"address {link['mac']} netns {node['netns']}",
                         f"link set {hv} master {link['bridge']} up"]
                target = lines
            else:   # eipoib: macvlan on its parent inside the node, after the parents exist
                later.append(f"link add {lname} link {link['parent']} address {link['mac']} "
                             f"mtu {link['mtu']} type macvlan mode bridge")
                target = later
            if link.get("address"):
                target.append(f"addr add {link['address']}/{link['prefix']} dev {lname}")
            target.append(f"link set {lname} up")
        per_ns[node["netns"]] = lines + later
    ip_batch(root)
    for ns, lines in per_ns.items():
        ip_batch(lines, netns=ns)


def write_node_files(info: dict) -> None:
    d = Path(info["dir"])
    hosts = ["127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback",
             f"{info['mgmt']['gateway']}\tlab-controller",
             f"{info['fabric']['address']}\tlab-fabric"]
    hosts += [f"{n['mgmt_address']}\t{n['name']}" for n in info["nodes"]]
    write_atomic(d / "hosts", "\n".join(hosts) + "\n")
    for node in info["nodes"]:
        nd = Path(node["dir"])
        for sub in ("root", "realsys", "rw"):
            (nd / sub).mkdir(parents=True, exist_ok=True)
        write_atomic(nd / "sshd_config", "\n".join([
            f"ListenAddress {node['mgmt_address']}",
            f"Port {SSH_PORT}",
            f"HostKey {NODE_RUN}/ssh_host_ed25519_key",
            "PidFile /run/sshd.pid",
            "PermitRootLogin prohibit-password",
            "PubkeyAuthentication yes",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "AuthorizedKeysFile .ssh/authorized_keys",
            "UsePAM no",
            "UseDNS no",
            "PrintMotd no",
            "AcceptEnv LANG LC_*",
            "MaxStartups 64:30:128",
            "MaxSessions 64",
            "Subsystem sftp internal-sftp",
        ]) + "\n")


def generate_keys(info: dict) -> None:
    d = Path(info["dir"])
    jobs = [(d / "id_ed25519", f"hpcnet-lab-{info['name']}")]
    jobs += [(Path(n["dir"]) / "ssh_host_ed25519_key", n["name"]) for n in info["nodes"]]
    procs = []
    for path, comment in jobs:
        for old in (path, path.with_name(path.name + ".pub")):
            old.unlink(missing_ok=True)
        procs.append(subprocess.Popen(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C",
                                       comment, "-f", str(path)],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.PIPE))
    for p in procs:
        if p.wait(timeout=30) != 0:
            raise LabError(f"ssh-keygen failed: {p.stderr.read().decode().strip()}")


# --------------------------------------------------------------------------------------- nodes

def start_nodes(info: dict, parallel: int = 16) -> None:
    base_env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "LANG": "C.UTF-8", "LAB_DIR": info["dir"], "LAB_HW": "1" if info["hw"] else "0",
                "LAB_OVS": "1" if info["ovs"] else "0", "LAB_PYTHON": hwiface.PYTHON,
                "LAB_SRC": str(hwiface.LAB_SRC)}
    pending = list(info["nodes"])
    running: list[tuple[dict, subprocess.Popen]] = []
    deadline = time.monotonic() + 60 + 2 * len(pending)
    failures = []
    while pending or running:
        while pending and len(running) < parallel:
            node = pending.pop(0)
            env = dict(base_env, NODE=node["name"], NODE_DIR=node["dir"],
                       NODE_INDEX=str(node["index"]), PROFILE=node["profile"],
                       MGMT_ADDR=node["mgmt_address"])
            with open(Path(node["dir"]) / "start.log", "wb") as log:
                # pylint: disable-next=consider-using-with  # waited for below, killed on timeout
                p = subprocess.Popen(["ip", "netns", "exec", node["netns"], "unshare", "--mount",
                                      "--uts", "--propagation", "private", "bash", str(NODE_INIT)],
                                     env=env, stdin=subprocess.DEVNULL, stdout=log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
            running.append((node, p))
        node, p = running.pop(0)
        try:
            rc = p.wait(timeout=max(0.5, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            rc = "timeout"
        if rc != 0:
            tail = (Path(node["dir"]) / "start.log").read_text(errors="replace")[-1500:]
            failures.append(f"{node['name']}: node start failed ({rc}):\n{tail}")
    if failures:
        raise LabError("\n".join(failures))
    for node in info["nodes"]:
        node["holder_pid"] = read_pid(Path(node["dir"]) / "holder.pid")


def tcp_open(address: str, port: int, timeout: float = 3.0) -> bool:
    try:
        with socket.create_connection((address, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_sshd(info: dict, timeout: float = 30) -> None:
    waiting = list(info["nodes"])
    deadline = time.monotonic() + timeout
    while waiting and time.monotonic() < deadline:
        waiting = [n for n in waiting if not tcp_open(n["mgmt_address"], SSH_PORT, 1.0)]
        if waiting:
            time.sleep(0.1)
    if waiting:
        raise LabError("sshd not answering on: " + ", ".join(n["name"] for n in waiting))


def same_netns(pid: int, netns: str) -> bool:
    try:
        return os.stat(f"/proc/{pid}/ns/net").st_ino == os.stat(f"/run/netns/{netns}").st_ino
    except OSError:
        return False


def node_problems(info: dict, node: dict) -> list[str]:
    holder = node.get("holder_pid")
    if not holder or not pid_alive(holder) or not same_netns(holder, node["netns"]):
        return [f"{node['name']}: node namespaces are gone"]
    problems = []
    if not tcp_open(node["mgmt_address"], SSH_PORT):
        problems.append(f"{node['name']}: sshd not answering on {node['mgmt_address']}")
    if info.get("ovs"):
        for daemon in ("ovsdb-server", "ovs-vswitchd"):
            pid = read_pid(Path(f"/proc/{holder}/root/run/openvswitch/{daemon}.pid"))
            if not pid or not pid_alive(pid):
                problems.append(f"{node['name']}: {daemon} not running")
    return problems


def problems(info: dict) -> list[str]:
    found = []
    for node in info["nodes"]:
        found += node_problems(info, node)
    if info["fabric"]["netns"] not in netns_names():
        found.append("fabric namespace is gone")
    return found


def stable_problems(info: dict) -> list[str]:
    """Problems seen twice, a second apart: a loaded machine must not get a working lab rebuilt."""
    first = problems(info)
    if not first:
        return []
    time.sleep(1.0)
    return [p for p in problems(info) if p in first]


# ---------------------------------------------------------------------------------- inventory

def ssh_common_args(info: dict) -> str:
    return (f"-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o IdentitiesOnly=yes "
            f"-o LogLevel=ERROR -o ControlPath={info['ssh']['control_dir']}/%h")


def write_access_files(info: dict) -> None:
    d = Path(info["dir"])
    Path(info["ssh"]["control_dir"]).mkdir(mode=0o700, exist_ok=True)
    hosts, groups = {}, {}
    for node in info["nodes"]:
        hosts[node["name"]] = {
            "ansible_host": node["mgmt_address"],
            "ansible_user": "root",
            "ansible_ssh_private_key_file": info["ssh"]["key"],
            "ansible_ssh_common_args": ssh_common_args(info),
            # Ansible's default ssh_args without -C: compressing every payload over a local veth only
            # costs CPU (zlib in ssh and sshd on every module call).
            "ansible_ssh_args": "-o ControlMaster=auto -o ControlPersist=60s",
            "ansible_python_interpreter": "/usr/bin/python3",
            "lab_profile": node["profile"],
            "lab_node_index": node["index"],
            "lab_ib_address": node["ib_address"],
            "lab_data_addresses": {k: v["address"] for k, v in node["links"].items()
                                   if v["kind"] != "mgmt" and v.get("address")},
        }
        groups.setdefault("profile_" + node["profile"].replace("-", "_"), {})[node["name"]] = None
    inventory = {"all": {"children": {
        "lab_nodes": {"hosts": hosts, "vars": {
            "lab_name": info["name"], "lab_dir": info["dir"],
            "lab_fabric_address": info["fabric"]["address"],
            "lab_mgmt_gateway": info["mgmt"]["gateway"],
            "lab_data_subnets": info["data"]["subnets"],
            # What this "site" is like, as an operator would write it in group_vars: the nodes' Open
            # vSwitch has the userspace datapath only, and the nodes share this machine's packages.
            "eipoib_ovs_datapath_type": "netdev",
            "ofed_install_packages": False}},
        **{g: {"hosts": h} for g, h in sorted(groups.items())},
    }}}
    write_atomic(d / "inventory.yml",
                 "# Written by lab/labctl up; regenerated at each bring-up.\n"
                 + yaml.safe_dump(inventory, sort_keys=False, default_flow_style=False))
    lines = []
    for node in info["nodes"]:
        lines += [f"Host {node['name']}", f"  HostName {node['mgmt_address']}", ""]
    lines += ["Host *", "  User root", f"  IdentityFile {info['ssh']['key']}",
              "  IdentitiesOnly yes", "  StrictHostKeyChecking no",
              "  UserKnownHostsFile /dev/null", "  LogLevel ERROR", "  ControlMaster auto",
              f"  ControlPath {info['ssh']['control_dir']}/%h", "  ControlPersist 60s"]
    write_atomic(d / "ssh_config", "\n".join(lines) + "\n")


# ------------------------------------------------------------------------------------ up / down

def up(name: str, nodes: int | None = None, profiles: str | None = None, sm: bool = True,
       ovs: bool = True, hw: bool | None = None, keep_on_failure: bool = False,
       data_addresses: bool = False, out=print) -> dict:
    naming.check_name(name)
    t0 = time.monotonic()
    wanted = profiles_for(nodes, profiles)
    use_hw = hwiface.available() if hw is None else hw
    if use_hw and not hwiface.available():
        raise LabError("lab/hw is not there; use --no-hw")
    with lab_lock(name):
        current = load(name)
        if current is not None:
            if current.get("state") == "up" and not stable_problems(current):
                have = [n["profile"] for n in current["nodes"]]
                if (nodes is not None or profiles is not None) and have != wanted:
                    raise LabError(f"lab {name!r} is up with other nodes/profiles ({len(have)}: "
                                   f"{','.join(have)}); run `labctl down --name {name}` first")
                out(f"lab '{name}' already up: {len(have)} nodes, healthy (nothing to do)")
                return current
            out(f"lab '{name}': found a half-started or broken lab, removing it first")
            _down_locked(name, out=lambda *_: None)
        steps: list[tuple[str, float]] = []
        fabric_out = ""

        def step(label: str, t: float) -> float:
            now = time.monotonic()
            steps.append((label, now - t))
            return now

        t = time.monotonic()
        with naming.locked(naming.STATE_ROOT / ".index.lock"):
            index = naming.free_index(link_names())
            d = naming.lab_dir(name)
            d.mkdir(parents=True, exist_ok=True)
            os.chmod(d, 0o700)
            # Reserve the index (and record what to clean) before anything is made.
            save({"name": name, "index": index, "dir": str(d), "state": "starting",
                  "pid": os.getpid(), "nodes": [], "hw": use_hw,
                  "fabric": {"netns": naming.fabric_netns(name)}})
        try:
            link_sets = hwiface.profile_links_many(
                [(p, i) for i, p in enumerate(wanted, start=1)], use_hw)
            t = step("profiles", t)
            info = plan(name, index, wanted, link_sets, use_hw=use_hw, sm=sm, ovs=ovs,
                        data_addresses=data_addresses)
            save(info)
            write_node_files(info)
            generate_keys(info)
            t = step("keys", t)
            create_network(info)
            t = step("network", t)
            start_nodes(info)
            save(info)
            t = step("nodes", t)
            if use_hw:
                fabric_out = hwiface.fabric("up", d, *([] if sm else ["--no-sm"])).stdout.strip()
                t = step("fabric", t)
            wait_sshd(info)
            write_access_files(info)
            t = step("sshd", t)
            info["state"] = "up"
            info["startup_seconds"] = round(time.monotonic() - t0, 2)
            save(info)
        except BaseException:
            if not keep_on_failure:
                _down_locked(name, out=lambda *_: None)
            raise
    if fabric_out:
        out(fabric_out.splitlines()[-1])
    detail = ", ".join(f"{label} {sec:.1f}" for label, sec in steps)
    extra = "" if use_hw else " [no-hw: real sysfs, no fabric]"
    count = f"{len(wanted)} node" + ("s" if len(wanted) != 1 else "")
    out(f"lab '{name}' up: {count} in {time.monotonic() - t0:.1f} s ({detail}){extra}")
    return info


def pids_in_netns(namespaces: list[str]) -> list[int]:
    """Every process whose network namespace is one of `namespaces` (one scan of /proc)."""
    inodes = set()
    for ns in namespaces:
        try:
            inodes.add(os.stat(f"/run/netns/{ns}").st_ino)
        except OSError:
            continue
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if os.stat(proc / "ns" / "net").st_ino in inodes:
                    pids.append(int(proc.name))
            except OSError:
                continue
    return pids


def kill_control_masters(d: Path) -> None:
    """ssh ControlPersist masters of this lab (their ControlPath is under D/cp)."""
    marker = f"{d}/cp/"
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        # A master renames itself "ssh: <ControlPath> [mux]".
        first = argv[0].decode(errors="replace") if argv else ""
        if (first.startswith("ssh") or os.path.basename(first).startswith("ssh")) \
                and any(marker.encode() in a for a in argv):
            pids.append(int(proc.name))
    kill_pids(pids, grace=1.0)


def _down_locked(name: str, out=print) -> bool:
    d = naming.lab_dir(name)
    info = load(name)
    pattern = naming.netns_pattern(name)
    namespaces = [ns for ns in netns_names() if pattern.match(ns)]
    if info is None and not namespaces and not d.exists():
        return False
    if info and info.get("hw") and info.get("nodes"):
        try:
            hwiface.fabric("down", d, timeout=30, check=False)
        except LabError as exc:
            out(f"warning: {exc}")
    kill_pids(pids_in_netns(namespaces))
    kill_control_masters(d)
    if info and "index" in info:
        prefix = naming.if_prefix(int(info["index"]))
        links = [n for n in link_names() if n.startswith(prefix)]
        bridges = [n for n in links if n.endswith(("-mgmt", "-ib"))]
        # Host-side veths go before their namespace, or they linger and the next bring-up skips them.
        veths = [f"link del {n}" for n in links if n not in bridges]
        if veths:
            ip_batch(veths, check=False, force=True)
        if bridges:
            ip_batch([f"link del {n}" for n in bridges], check=False, force=True)
    if namespaces:
        ip_batch([f"netns del {ns}" for ns in namespaces], check=False, force=True)
    shutil.rmtree(d, ignore_errors=True)
    return True


def down(name: str, out=print) -> None:
    naming.check_name(name)
    t0 = time.monotonic()
    with lab_lock(name):
        removed = _down_locked(name, out=out)
    if removed:
        out(f"lab '{name}' down in {time.monotonic() - t0:.1f} s")
    else:
        out(f"lab '{name}' is not running (nothing to do)")


def require(name: str) -> dict:
    info = load(name)
    if info is None or info.get("state") != "up":
        raise LabError(f"lab {name!r} is not up (labctl up --name {name})")
    return info


def find_node(info: dict, node: str) -> dict:
    for n in info["nodes"]:
        if n["name"] == node:
            return n
    raise LabError(f"no node {node!r} in lab {info['name']!r} "
                   f"(nodes: {', '.join(n['name'] for n in info['nodes'])})")


NODE_ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "HOME": "/root", "LANG": "C.UTF-8", "USER": "root", "LOGNAME": "root"}


def exec_argv(node: dict, argv: list[str]) -> list[str]:
    """nsenter into the node's net, mount and UTS namespaces and its root (sees its /sys, /etc)."""
    return ["nsenter", "-t", str(node["holder_pid"]), "-n", "-m", "-u", "-r", "-w", "--", *argv]


def node_env() -> dict:
    env = dict(NODE_ENV)
    if os.environ.get("TERM"):
        env["TERM"] = os.environ["TERM"]
    return env
