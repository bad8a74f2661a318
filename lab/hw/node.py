"""Per-node hardware setup, run by lab-core inside the node's network + mount namespace.

    python -m hw.node setup --lab-dir D --node NODE --profile P --node-index I --root R --realsys S

1. starts the FUSE sysfs daemon (hw.fusefs) serving profile P merged over the real sysfs at S, mounted
   on R/sys; returns only when the mount answers;
2. installs the ethtool LD_PRELOAD shim (compiled once per lab into D/hw-cache) in R/etc/ld.so.preload,
   answering ETHTOOL_GDRVINFO from R/etc/hpcnet-lab/ethtool-drvinfo (kept up to date by the daemon);
3. installs infiniband-diags wrappers in R/usr/local/sbin that reach the simulated fabric as this node's HCA.
"""
import argparse
import fcntl
import json
import os
import shutil
import subprocess
import sys
import time

from hw import mstconfig_shim
from hw import profile as hwprofile
from hw.fabric import UMAD2SIM, sim_host, fabric_hcas

LAB_SRC = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHIM_SRC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "ethtool_shim.c")
SHIM_NAME = "libhpcnet-ethtool.so"
SHIM_IN_NODE = "/usr/local/lib/hpcnet-lab/" + SHIM_NAME
TABLE_IN_NODE = "/etc/hpcnet-lab/ethtool-drvinfo"
DIAG_TOOLS = ("sminfo", "ibstat", "smpquery", "ibnetdiscover", "saquery", "perfquery", "iblinkinfo",
              "ibaddr", "ibroute", "ibtracert", "smpdump", "ibportstate", "ibswitches", "ibhosts")


class SetupError(Exception):
    pass


def _write(path, text, mode=0o644):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def build_shim(lab_dir):
    """Compile the shim once per lab (cached, rebuilt when the source is newer)."""
    cache = os.path.join(lab_dir, "hw-cache")
    os.makedirs(cache, exist_ok=True)
    out = os.path.join(cache, SHIM_NAME)
    with open(os.path.join(cache, ".lock"), "w", encoding="utf-8") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if os.path.exists(out) and os.path.getmtime(out) >= os.path.getmtime(SHIM_SRC):
            return out
        gcc = shutil.which("gcc") or shutil.which("cc")
        if not gcc:
            raise SetupError("gcc not found: install the Debian package gcc (needed for the ethtool shim)")
        tmp = out + f".{os.getpid()}.tmp"
        res = subprocess.run([gcc, "-O2", "-Wall", "-shared", "-fPIC", f'-DHPCNET_ETHTOOL_TABLE="{TABLE_IN_NODE}"',
                              "-o", tmp, SHIM_SRC], capture_output=True, text=True, timeout=60, check=False)
        if res.returncode:
            raise SetupError(f"compiling the ethtool shim failed: {res.stderr.strip()}")
        os.replace(tmp, out)
    return out


def fuse_mounted(mountpoint):
    target = os.path.realpath(mountpoint)
    try:
        with open("/proc/self/mountinfo", encoding="utf-8") as fh:
            for line in fh:
                parts = line.split()
                sep = parts.index("-")
                if parts[4] == target and parts[sep + 1].startswith("fuse"):
                    return True
    except (OSError, ValueError):
        pass
    return False


def start_sysfs(args, hw_dir):
    mountpoint = os.path.join(args.root, "sys")
    if fuse_mounted(mountpoint):
        return None
    os.makedirs(mountpoint, exist_ok=True)
    env = dict(os.environ, PYTHONPATH=LAB_SRC, PYTHONDONTWRITEBYTECODE="1")
    argv = [sys.executable, "-m", "hw.fusefs", "--profile", args.profile, "--node-index", str(args.node_index),
            "--node", args.node, "--realsys", args.realsys, "--state-dir", hw_dir,
            "--ethtool-table", os.path.join(args.root, TABLE_IN_NODE.lstrip("/")),
            "--mountpoint", mountpoint, "--mirror-links"]
    log = open(os.path.join(hw_dir, "fusefs.log"), "ab")  # pylint: disable=consider-using-with
    proc = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True, close_fds=True, cwd="/")
    log.close()
    _write(os.path.join(hw_dir, "fusefs.pid"), f"{proc.pid}\n")
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SetupError(f"FUSE sysfs daemon exited with {proc.returncode}; see {hw_dir}/fusefs.log")
        if fuse_mounted(mountpoint):
            try:
                os.listdir(os.path.join(mountpoint, "class", "net"))
                return proc.pid
            except OSError:
                pass
        time.sleep(0.05)
    proc.kill()
    raise SetupError(f"FUSE sysfs on {mountpoint} did not answer within 20 s")


def install_shim(args, shim, first_netdev, expected_driver):
    root = args.root
    dest = os.path.join(root, SHIM_IN_NODE.lstrip("/"))
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    shutil.copyfile(shim, dest + ".tmp")
    os.chmod(dest + ".tmp", 0o755)
    os.replace(dest + ".tmp", dest)
    preload = os.path.join(root, "etc/ld.so.preload")
    lines = []
    if os.path.exists(preload):
        with open(preload, encoding="utf-8") as fh:
            lines = [ln.rstrip("\n") for ln in fh if ln.strip() and SHIM_NAME not in ln]
    _write(preload, "\n".join(lines + [SHIM_IN_NODE]) + "\n")
    # A broken preload would break every process in the node: prove it works, else take it out.
    ok, detail = True, ""
    try:
        res = subprocess.run(["chroot", root, "/bin/true"], capture_output=True, text=True, timeout=20,
                             check=False)
        ok, detail = res.returncode == 0, res.stderr
        if ok and first_netdev and shutil.which("ethtool"):
            res = subprocess.run(["chroot", root, "ethtool", "-i", first_netdev], capture_output=True,
                                 text=True, timeout=20, check=False)
            ok = res.returncode == 0 and f"driver: {expected_driver}" in res.stdout
            detail = res.stdout + res.stderr
    except (OSError, subprocess.TimeoutExpired) as exc:
        ok, detail = False, str(exc)
    if not ok:
        _write(preload, "\n".join(lines) + "\n" if lines else "")
        raise SetupError(f"ethtool shim check failed, preload removed: {detail.strip()[:400]}")


def fabric_address(lab_dir):
    try:
        with open(os.path.join(lab_dir, "lab.json"), encoding="utf-8") as fh:
            return (json.load(fh).get("fabric") or {}).get("address")
    except (OSError, ValueError):
        return None


def install_wrappers(args, hw):
    hcas = fabric_hcas(hw)
    sbin = os.path.join(args.root, "usr/local/sbin")
    os.makedirs(sbin, exist_ok=True)
    if not hcas:
        for tool in DIAG_TOOLS:
            path = os.path.join(sbin, tool)
            if os.path.exists(path):
                os.unlink(path)
        return None
    host = sim_host(args.node, hcas[0])
    server = fabric_address(args.lab_dir) or ""
    _write(os.path.join(args.root, "etc/hpcnet-lab/fabric.env"),
           f"IBSIM_SERVER_NAME={server}\nSIM_HOST={host}\n")
    for tool in DIAG_TOOLS:
        real = shutil.which(tool, path="/usr/sbin:/usr/bin:/sbin:/bin")
        if not real:
            continue
        _write(os.path.join(sbin, tool), f"""#!/bin/sh
# hpcnet lab: {tool} against the simulated fabric (ibsim + OpenSM) as this node's HCA {hcas[0]}.
# umad2sim replaces /dev/umad*; it writes a scratch tree ./sys-<pid> into the working directory,
# so the tool runs in a private temporary directory (relative file arguments are relative to it).
. /etc/hpcnet-lab/fabric.env
export IBSIM_SERVER_NAME SIM_HOST
# The node's HCA is {hcas[0]} in its sysfs and ibsim0 to umad2sim: -C takes either name.
n=$#
for arg in "$@"; do
    [ "$arg" = "{hcas[0]}" ] && arg=ibsim0
    set -- "$@" "$arg"
done
shift "$n"
preload="{UMAD2SIM}${{LD_PRELOAD:+ $LD_PRELOAD}}"
scratch=$(mktemp -d /tmp/umad2sim.XXXXXX) || exit 1
cd "$scratch" || exit 1
# ibsim serves 10 clients at a time; a client without a slot dies with "sim_init: connect failed".
for attempt in 1 2 3 4 5; do
    LD_PRELOAD="$preload" "{real}" "$@" 2>"$scratch/stderr"
    rc=$?
    if [ $rc -ne 0 ] && grep -q "connect failed" "$scratch/stderr" && [ $attempt -lt 5 ]; then
        sleep 0.5
        continue
    fi
    cat "$scratch/stderr" >&2
    break
done
cd / && rm -rf "$scratch"
exit $rc
""", mode=0o755)
    return host


def setup(args):
    t0 = time.monotonic()
    hw_dir = os.path.join(args.lab_dir, "nodes", args.node, "hw")
    os.makedirs(hw_dir, exist_ok=True)
    hw = hwprofile.expand(hwprofile.load_profile(args.profile), args.node_index, args.node)
    table = os.path.join(args.root, TABLE_IN_NODE.lstrip("/"))
    _write(table, hwprofile.ethtool_table(hw.ethtool))
    shim = build_shim(args.lab_dir)
    # The card's firmware settings (mstconfig stand-in); kept across reboots like real firmware.
    mstconfig_shim.install(args.root, hwprofile.resolve(hwprofile.load_profile(args.profile), args.node_index))
    pid = start_sysfs(args, hw_dir)
    first = next(iter(sorted(n for n in hw.ethtool if hw.netdevs[n]["kind"] != "mgmt")), None) or \
        next(iter(hw.ethtool), None)
    install_shim(args, shim, first, hw.ethtool[first]["driver"] if first else None)
    host = install_wrappers(args, hw)
    info = {"node": args.node, "profile": args.profile, "node_index": args.node_index, "root": args.root,
            "realsys": args.realsys, "fusefs_pid": pid, "sim_host": host,
            "hcas": hwprofile.links(hwprofile.load_profile(args.profile), args.node_index)["hcas"],
            "setup_seconds": round(time.monotonic() - t0, 2)}
    _write(os.path.join(hw_dir, "node.json"), json.dumps(info, indent=1) + "\n")
    print(f"hw.node: {args.node} profile {args.profile} ready in {info['setup_seconds']} s")


def main(argv=None):
    ap = argparse.ArgumentParser(prog="hw.node")
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("setup")
    s.add_argument("--lab-dir", required=True)
    s.add_argument("--node", required=True)
    s.add_argument("--profile", required=True)
    s.add_argument("--node-index", type=int, required=True)
    s.add_argument("--root", required=True)
    s.add_argument("--realsys", required=True)
    args = ap.parse_args(argv)
    try:
        setup(args)
    except (SetupError, hwprofile.ProfileError, OSError, subprocess.SubprocessError) as exc:
        print(f"hw.node setup {args.node}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
