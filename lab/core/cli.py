"""labctl command line."""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import subprocess
import sys

from . import hwiface, lab, naming
from .sh import LabError


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--name", help="lab name (default: $HPCNET_LAB_NAME or 'lab')")
    p = argparse.ArgumentParser(prog="labctl", description="hpcnet lab: namespace nodes over ssh, "
                                "hardware profiles, simulated IB fabric, Open vSwitch.")
    p.add_argument("--name", dest="top_name", metavar="NAME", help="lab name (also after the command)")
    sub = p.add_subparsers(dest="cmd", required=True)

    s = sub.add_parser("up", parents=[common], help="start the lab (no-op when it is up)")
    s.add_argument("--nodes", type=int, help="number of nodes (default 3)")
    s.add_argument("--profiles", help="comma-separated profiles, cycled over the nodes, or 'all' "
                   f"(default: {','.join(hwiface.DEFAULT_PROFILES)})")
    s.add_argument("--no-sm", action="store_true", help="do not start opensm")
    s.add_argument("--no-ovs", action="store_true", help="no Open vSwitch in the nodes")
    s.add_argument("--data-addresses", action="store_true",
                   help="pre-assign the data-plane addresses (by default the collection's network role "
                        "configures them)")
    s.add_argument("--no-hw", action="store_true",
                   help="no hardware profiles/fabric: real sysfs, plain veths (development)")
    s.add_argument("--keep-on-failure", action="store_true",
                   help="leave a failed bring-up in place for debugging")

    sub.add_parser("down", parents=[common], help="stop the lab and remove everything it made")
    s = sub.add_parser("status", parents=[common], help="health of the lab (rc 0 healthy)")
    s.add_argument("--json", action="store_true", help="print lab.json")
    sub.add_parser("list", help="running labs")

    s = sub.add_parser("exec", parents=[common], help="run a command inside a node")
    s.add_argument("node")
    s.add_argument("argv", nargs=argparse.REMAINDER)
    s = sub.add_parser("ssh", parents=[common], help="ssh into a node (as Ansible does)")
    s.add_argument("node")
    s.add_argument("argv", nargs=argparse.REMAINDER)

    s = sub.add_parser("reboot", parents=[common], help="NODE|--all: power-on state, then the node's own "
                       "boot files (enabled oneshot units, ifup -a); see lab/core/reboot.py")
    s.add_argument("node", nargs="?")
    s.add_argument("--all", action="store_true", help="every node, one after the other")

    s = sub.add_parser("sm", parents=[common], help="start/stop opensm")
    s.add_argument("action", choices=["start", "stop"])
    s.add_argument("--on", metavar="NODE", help="run opensm as this node's HCA")
    s.add_argument("--reset", action="store_true",
                   help="stop: also restart the simulator (ports back to INIT, LID 0, no IPoIB carrier)")
    s = sub.add_parser("fabric", help="fabric faults and status")
    fsub = s.add_subparsers(dest="action", required=True)
    for action in ("unlink", "relink"):
        f = fsub.add_parser(action, parents=[common], help=f"{action} the node's HCA ports")
        f.add_argument("node")
    fsub.add_parser("status", parents=[common], help="ibsim, opensm, sync, port states")

    s = sub.add_parser("hw", help="change a node's hardware view at runtime (as if the hardware or "
                       "firmware changed)")
    hsub = s.add_subparsers(dest="action", required=True)
    f = hsub.add_parser("set", parents=[common], help="NODE PATH VALUE: the node's /sys/PATH reads VALUE")
    f.add_argument("node")
    f.add_argument("path", help="relative to the node's /sys, e.g. class/infiniband/mlx4_0/ports/1/pkeys/1")
    f.add_argument("value")
    f = hsub.add_parser("get", parents=[common],
                        help="NODE PATH: what the node reads; NODE alone: its overrides")
    f.add_argument("node")
    f.add_argument("path", nargs="?")
    f = hsub.add_parser("reset", parents=[common], help="NODE [PATH]: drop one override or all of them")
    f.add_argument("node")
    f.add_argument("path", nargs="?")

    sub.add_parser("env", parents=[common], help="print LAB_DIR=..., LAB_INVENTORY=... for eval")
    return p


def _terminate(signum, _frame):
    raise SystemExit(128 + signum)


def _strip_dashes(argv: list[str]) -> list[str]:
    return argv[1:] if argv and argv[0] == "--" else argv


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return _dispatch(args)
    except LabError as exc:
        print(f"labctl: {exc}", file=sys.stderr)
        return 1
    except ValueError as exc:
        print(f"labctl: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # Output cut short (labctl ... | head): not an error of ours.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


def _root_required() -> None:
    if os.geteuid() != 0:
        raise LabError("must run as root (network namespaces, mounts)")


def _dispatch(args) -> int:
    name = getattr(args, "name", None) or args.top_name or naming.default_name()
    if args.cmd == "up":
        _root_required()
        # A terminated bring-up (e.g. a test timeout) still removes what it made.
        signal.signal(signal.SIGTERM, _terminate)
        signal.signal(signal.SIGHUP, _terminate)
        lab.up(name, nodes=args.nodes, profiles=args.profiles, sm=not args.no_sm,
               ovs=not args.no_ovs, hw=False if args.no_hw else None,
               keep_on_failure=args.keep_on_failure, data_addresses=args.data_addresses)
        return 0
    if args.cmd == "down":
        _root_required()
        lab.down(name)
        return 0
    if args.cmd == "list":
        for n in lab.list_labs():
            info = lab.load(n) or {}
            print(f"{n}\t{info.get('state')}\t{len(info.get('nodes', []))} nodes\t{info.get('dir')}")
        return 0
    if args.cmd == "status":
        info = lab.load(name)
        if info is None:
            print(f"lab '{name}' is not running")
            return 3
        if args.json:
            print(json.dumps(info, indent=2))
        found = lab.problems(info) if info.get("state") == "up" else [f"state {info.get('state')}"]
        print(f"lab '{name}': {info.get('state')}, {len(info['nodes'])} nodes, dir {info['dir']}"
              f"{'' if info.get('hw') else ' [no-hw]'}")
        for node in info["nodes"]:
            print(f"  {node['name']:8} {node['profile']:15} mgmt {node['mgmt_address']:15} "
                  f"ib0 {node.get('ib_address') or '-'}")
        if info.get("hw") and info.get("state") == "up":
            cp = hwiface.fabric("status", lab.naming.lab_dir(name), check=False, timeout=30)
            print("fabric: " + (cp.stdout.strip() or cp.stderr.strip()).replace("\n", "\n  "))
            if cp.returncode != 0:
                found.append(f"fabric status rc {cp.returncode}")
        for problem in found:
            print(f"  PROBLEM: {problem}")
        return 1 if found else 0
    info = lab.require(name)
    if args.cmd == "exec":
        _root_required()
        node = lab.find_node(info, args.node)
        argv = _strip_dashes(args.argv) or ["/bin/bash", "-l"]
        os.execvpe("nsenter", lab.exec_argv(node, argv), lab.node_env())
    if args.cmd == "reboot":
        _root_required()
        if bool(args.node) == args.all:
            raise ValueError("reboot: give one NODE or --all")
        from . import reboot  # noqa: PLC0415 - only this command needs it
        return reboot.reboot(name, None if args.all else [args.node])
    if args.cmd == "ssh":
        lab.find_node(info, args.node)
        argv = ["ssh", "-F", info["ssh"]["config"], args.node, *_strip_dashes(args.argv)]
        os.execvp("ssh", argv)
    if args.cmd == "env":
        values = {"LAB_NAME": info["name"], "LAB_DIR": info["dir"],
                  "LAB_INVENTORY": info["inventory"], "LAB_SSH_CONFIG": info["ssh"]["config"],
                  "LAB_SSH_KEY": info["ssh"]["key"],
                  "LAB_NODES": " ".join(n["name"] for n in info["nodes"]),
                  "LAB_FABRIC_ADDRESS": info["fabric"]["address"]}
        for k, v in values.items():
            print(f"{k}={shlex.quote(str(v))}")
        return 0
    if not info.get("hw"):
        raise LabError(f"lab {name!r} runs without hardware profiles (--no-hw): no fabric, no hw view")
    if args.cmd == "hw":
        _root_required()
        return _hw(info, args)
    if args.cmd == "sm":
        extra = ["--reset"] if args.reset and args.action == "stop" else []
        if args.on:
            lab.find_node(info, args.on)
            extra += ["--sm-on", args.on]
        return _forward(hwiface.fabric(f"sm-{args.action}", lab.naming.lab_dir(name), *extra,
                                       check=False))
    if args.cmd == "fabric":
        if args.action == "status":
            return _forward(hwiface.fabric("status", lab.naming.lab_dir(name), check=False))
        lab.find_node(info, args.node)
        return _forward(hwiface.fabric(args.action, lab.naming.lab_dir(name), args.node,
                                       check=False))
    raise LabError(f"unknown command {args.cmd}")


def _read_in_node(node: dict, path: str) -> subprocess.CompletedProcess:
    """Read /sys/PATH inside the node (its FUSE view), as the node's own processes do."""
    return subprocess.run(lab.exec_argv(node, ["cat", "--", f"/sys/{path}"]), env=lab.node_env(),
                          capture_output=True, text=True, timeout=30, check=False)


def _hw(info: dict, args) -> int:
    """labctl hw set|get|reset: the overrides file the node's sysfs daemon re-reads (hw.overrides)."""
    from hw import overrides  # noqa: PLC0415 - lab-hw's package, present when the lab has hw
    node = lab.find_node(info, args.node)
    hw_dir = os.path.join(node["dir"], "hw")
    try:
        path = overrides.norm_path(args.path) if args.path else None
        if args.action == "get" and path is None:
            for key, value in overrides.load(hw_dir).items():
                print(f"{key}\t{value.rstrip(chr(10))}")
            return 0
        if args.action == "get":
            return _forward(_read_in_node(node, path))
        if args.action == "reset":
            if path is None:
                overrides.clear(hw_dir)
                print(f"{args.node}: every override removed")
            else:
                before = overrides.update(hw_dir, {path: None})
                print(f"{args.node}: /sys/{path} "
                      + ("back to the profile" if before[path] is not None else "had no override"))
            return 0
        value = overrides.sysfs_value(args.value)
    except overrides.OverrideError as exc:
        raise ValueError(str(exc)) from None
    cp = _read_in_node(node, path)
    if cp.returncode != 0:
        raise LabError(f"{args.node}: cannot read /sys/{path}: {cp.stderr.strip()} "
                       "(only existing, readable attributes can be overridden)")
    before = overrides.update(hw_dir, {path: value})
    seen = _read_in_node(node, path)
    if seen.returncode != 0 or seen.stdout != value:
        overrides.update(hw_dir, before)
        raise LabError(f"{args.node}: the view did not take /sys/{path} = {value.strip()!r} "
                       f"(reads {seen.stdout.strip()!r}{', ' + seen.stderr.strip() if seen.stderr else ''}); "
                       "override removed")
    print(f"{args.node}: /sys/{path} = {value.strip()} (was {cp.stdout.strip()})")
    return 0


def _forward(cp: subprocess.CompletedProcess) -> int:
    sys.stdout.write(cp.stdout)
    sys.stderr.write(cp.stderr)
    return cp.returncode
