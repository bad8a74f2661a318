"""The simulated InfiniBand fabric of a lab: ibsim + real OpenSM + a sync loop into the nodes' sysfs views.

    python -m hw.fabric up|down|status|sm-start|sm-stop|reset|unlink NODE|relink NODE --lab-dir D
                        [--sm-on NODE] [--no-sm] [--reset]

- ibsim runs in remote (UDP) mode inside the lab's fabric netns, its console on a FIFO (Unlink/ReLink).
- Two switches joined by one inter-switch link (the last port of each); the InfiniBand ports of the nodes'
  profiles alternate between them (switch port numbers are unique across both, 2, 3, ...); an extra HCA
  "smhost" on port 1 of the first switch where OpenSM runs by default (a dedicated SM node). Node GUIDs equal
  the profiles' sysfs node_guid. Every port enables 1X/4X/12X and SDR..HDR, so every link trains at 12X HDR
  and no link is "Could be" faster in iblinkinfo (ibsim reports 12X/HDR as supported on every port).
- `degrade NODE --width 1x|4x` lowers the width enabled on the switch ports of the node's HCAs (ibsim's
  `w=` port option) and restarts the simulator, so the node's links train narrower (a bad cable):
  iblinkinfo then says "Could be 12X"; `restore NODE` undoes it (hw-fabric/degraded.json).
- The sync process (in the fabric netns) runs one `iblinkinfo` (every CA port's state and LID) and one
  `smpquery portinfo` of smhost's port (SM LID/SL) about once a second and writes each node's
  D/nodes/NODE/hw/fabric-state.json (state, phys_state, lid, sm_lid, sm_sl); the node's FUSE sysfs reads it.
  It also makes each IPoIB netdev's data-plane veth follow its port (carrier only while ACTIVE). Once the
  ports have not changed for a while it polls every few seconds instead (its rounds were most of an idle
  lab's CPU); every action here (sm-start/stop, reset, unlink, relink, degrade, restore) wakes it with
  SIGUSR1 for a round at once and a second of polling again.
- sm-stop stops OpenSM only: like on real hardware the ports stay ACTIVE with their LIDs (SM queries such as
  sminfo time out). `sm-stop --reset` (or `reset --no-sm`) also restarts ibsim, so every port is back to
  INIT with LID 0 as in a fabric that never had an SM.
"""
import argparse
import concurrent.futures
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

from hw import profile as hwprofile

UMAD2SIM = "/usr/lib/x86_64-linux-gnu/umad2sim/libumad2sim.so"
SM_HOST = "smhost"
SWITCH = "labsw"
SWITCH_GUID = 0x0000FAB000000000
# (ibsim name, GUID, node description) of each switch; HCA ports alternate between them.
SWITCHES = ((SWITCH, SWITCH_GUID, "lab switch"), ("labsw2", SWITCH_GUID + 1, "lab switch 2"))
# ibsim port options: LinkWidthEnabled bits 1 = 1X, 2 = 4X, 8 = 12X (11: all three); LinkSpeedEnabled
# 7 = SDR|DDR|QDR; LinkSpeedExtEnabled 7 = FDR|EDR|HDR. Active = the best both ends enable.
WIDTH_ALL, SPEED_ALL, SPEED_EXT_ALL = 11, 7, 7
DEGRADED_WIDTHS = {"1x": 1, "4x": 2}
SM_HOST_GUID = 0x0000FAB000000100
SYNC_PERIOD = 1.0
# After SYNC_BUSY_ROUNDS rounds in which no port changed and no wake-up came (the lab's opensm sweeps every 2 s),
# one round per SYNC_IDLE_PERIOD: an SM that another process runs (the subnet_manager role on a node) is seen
# within that time.
SYNC_IDLE_PERIOD = 4.0
SYNC_BUSY_ROUNDS = 10
SYNC_WAKE = signal.SIGUSR1
# ibsim serves at most 10 clients at a time (IBSIM_MAX_CLIENTS); a client that cannot get a slot fails with
# "sim_init: connect failed". The sync loop uses 2 per round (iblinkinfo + smpquery), whatever the lab size.
NO_SLOT = ("connect failed", "ctl error", "sim_init")
# umad2sim (preloaded into every simulator client) builds a fake sysfs tree of ~60 directories and ~50 files in
# its working directory when the client starts and deletes it when it ends. On ext4 (this machine's /run) that
# inode churn was most of the CPU of the sync loop's iblinkinfo and smpquery (perf: ext4 inode allocation, 60
# CPU-s over the integration tests); the diagnostics run in a per-lab directory on tmpfs instead.
DIAG_SCRATCH_ROOT = "/dev/shm"

LINK_STATES = {"Down": "1: DOWN", "Initialize": "2: INIT", "Init": "2: INIT", "Armed": "3: ARMED",
               "Active": "4: ACTIVE", "ActDefer": "5: ACTIVE_DEFER"}
PHYS_STATES = {"Sleep": "1: Sleep", "Polling": "2: Polling", "Disabled": "3: Disabled",
               "PortConfigurationTraining": "4: PortConfigurationTraining", "LinkUp": "5: LinkUp",
               "LinkErrorRecovery": "6: LinkErrorRecovery", "PhyTest": "7: Phy Test"}


class FabricError(Exception):
    pass


def sim_host(node, hca):
    """The node's HCA as ibsim knows it (SIM_HOST); unique within a lab."""
    return f"{node}-{hca}"


def fabric_hcas(hw):
    """RDMA devices of an expanded profile with at least one InfiniBand port."""
    return sorted({key.split("/")[0] for key, port in hw.ports.items() if port["link_layer"] == "InfiniBand"})


# ------------------------------------------------------------------ lab files
class Lab:
    def __init__(self, lab_dir):
        self.dir = os.path.abspath(lab_dir)
        path = os.path.join(self.dir, "lab.json")
        try:
            with open(path, encoding="utf-8") as fh:
                self.info = json.load(fh)
        except (OSError, ValueError) as exc:
            raise FabricError(f"cannot read {path}: {exc}") from exc
        fab = self.info.get("fabric") or {}
        self.netns, self.address = fab.get("netns"), fab.get("address")
        self.fdir = os.path.join(self.dir, "hw-fabric")
        os.makedirs(self.fdir, exist_ok=True)
        # Working directory of the diagnostics clients: on tmpfs when there is one (DIAG_SCRATCH_ROOT), named after
        # the lab directory (a lab name alone could repeat under another HPCNET_LAB_STATE_ROOT); removed by down().
        if os.path.isdir(DIAG_SCRATCH_ROOT):
            tag = hashlib.sha256(self.dir.encode()).hexdigest()[:12]
            self.diag_dir = os.path.join(DIAG_SCRATCH_ROOT, f"hpcnet-lab-diag-{tag}")
        else:
            self.diag_dir = self.path("diag")
        self.inside = False  # True when the caller already runs in the fabric netns

    def path(self, name):
        return os.path.join(self.fdir, name)

    def nodes(self):
        return self.info.get("nodes") or []

    def node(self, name):
        for n in self.nodes():
            if n["name"] == name:
                return n
        raise FabricError(f"no node {name!r} in lab {self.info.get('name')}")

    def env(self, host):
        return dict(os.environ, IBSIM_SERVER_NAME=self.address or "", SIM_HOST=host, LD_PRELOAD=UMAD2SIM)

    def in_netns(self, argv, netns=None):
        return ["ip", "netns", "exec", netns or self.netns, *argv]


def fabric_ports(lab):
    """[(node, hca, port, node_guid, sim_host, switch_port)] for every InfiniBand port in the lab."""
    ports, swport = [], 2
    for node in lab.nodes():
        prof = hwprofile.load_profile(node["profile"])
        info = hwprofile.links(prof, int(node["index"]))
        for hca in info["hcas"]:
            for port in hca["ports"]:
                if port["link_layer"] != "InfiniBand":
                    continue
                ports.append({"node": node["name"], "hca": hca["name"], "port": port["port"],
                              "node_guid": hca["node_guid"], "sim_host": sim_host(node["name"], hca["name"]),
                              "switch": SWITCHES[len(ports) % len(SWITCHES)][0],
                              "switch_port": swport, "netdev": port.get("netdev"),
                              "host_veth": ((node.get("links") or {}).get(port.get("netdev")) or {})
                              .get("host_veth")})
                swport += 1
    return ports


def known_ports(lab):
    """fabric_ports() as written by start_ibsim into hw-fabric/fabric.json (no profile expansion: keeps
    `unlink`/`relink`/`status` quick on big labs); computed when the file is missing or old."""
    try:
        with open(lab.path("fabric.json"), encoding="utf-8") as fh:
            ports = json.load(fh)["ports"]
        if all("host_veth" in p and "switch" in p for p in ports):
            return ports
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return fabric_ports(lab)


def degraded(lab):
    """{node: width} of the nodes whose links `degrade` narrowed (hw-fabric/degraded.json)."""
    try:
        with open(lab.path("degraded.json"), encoding="utf-8") as fh:
            data = json.load(fh)
        return {str(k): str(v) for k, v in data.items() if str(v) in DEGRADED_WIDTHS}
    except (OSError, ValueError, AttributeError):
        return {}


def set_degraded(lab, node, width):
    """Record (width) or forget (None) a degraded node; applied at the simulator's next start."""
    data = degraded(lab)
    if width is None:
        data.pop(node, None)
    else:
        data[node] = width
    with open(lab.path("degraded.json.tmp"), "w", encoding="utf-8") as fh:
        json.dump(data, fh)
    os.replace(lab.path("degraded.json.tmp"), lab.path("degraded.json"))


def netfile(lab, ports, narrow=None):
    """ibsim's topology: two switches with an inter-switch link on their last port, smhost on the first
    switch's port 1, the HCA ports where fabric_ports() put them. ``narrow``: {node: "1x"|"4x"}."""
    narrow = narrow or {}
    nsw = max(8, len(ports) + 2)
    lines = [f"# hpcnet lab {lab.info.get('name')}: generated by hw.fabric from the nodes' profiles",
             f"width={WIDTH_ALL}", f"speed={SPEED_ALL}", f"extspeed={SPEED_EXT_ALL}"]
    for index, (name, guid, desc) in enumerate(SWITCHES):
        lines += ["" if index else None, f"switchguid=0x{guid:016x}", f'Switch {nsw} "{name}" # "{desc}"']
        if name == SWITCH:
            lines.append(f'[1] "{SM_HOST}"[1]')
        for p in ports:
            if p.get("switch", SWITCH) == name:
                option = f" w={DEGRADED_WIDTHS[narrow[p['node']]]}" if p["node"] in narrow else ""
                lines.append(f'[{p["switch_port"]}] "{p["sim_host"]}"[{p["port"]}]{option}')
        peer = SWITCHES[(index + 1) % len(SWITCHES)][0]
        lines.append(f'[{nsw}] "{peer}"[{nsw}]')
    lines += ["", f"caguid=0x{SM_HOST_GUID:016x}", f'Hca 1 "{SM_HOST}" # "{SM_HOST} HCA-1"', f'[1] "{SWITCH}"[1]']
    by_hca = {}
    for p in ports:
        by_hca.setdefault(p["sim_host"], []).append(p)
    for host, hps in by_hca.items():
        guid = hwprofile.guid_int(hps[0]["node_guid"])
        nports = max(p["port"] for p in hps)
        lines += ["", f"caguid=0x{guid:016x}", f'Hca {nports} "{host}" # "{hps[0]["node"]} HCA-1"']
        lines += [f'[{p["port"]}] "{p.get("switch", SWITCH)}"[{p["switch_port"]}]' for p in hps]
    return "\n".join(line for line in lines if line is not None) + "\n"


# ------------------------------------------------------------------ processes
def _pid(lab, name):
    try:
        with open(lab.path(f"{name}.pid"), encoding="utf-8") as fh:
            pid = int(fh.read().strip())
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            cmd = fh.read().replace(b"\0", b" ").decode(errors="replace")
        marker = {"ibsim": "ibsim", "opensm": "opensm", "sync": "hw.fabric sync"}[name]
        if marker in cmd and _alive(pid):
            return pid
    except (OSError, ValueError):
        pass
    return None


def _stop(lab, name, grace=3.0):
    pid = _pid(lab, name)
    if pid:
        for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 2.0)):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                break
            end = time.monotonic() + wait
            while time.monotonic() < end and _alive(pid):
                time.sleep(0.05)
            if not _alive(pid):
                break
    try:
        os.unlink(lab.path(f"{name}.pid"))
    except FileNotFoundError:
        pass


def _alive(pid):
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8") as fh:
            return fh.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def _spawn(lab, name, argv, env=None, stdin=None, cwd=None, preexec_fn=None):
    log = open(lab.path(f"{name}.log"), "ab")  # pylint: disable=consider-using-with
    proc = subprocess.Popen(argv, env=env, stdin=stdin if stdin is not None else subprocess.DEVNULL,
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=cwd or lab.fdir,
                            preexec_fn=preexec_fn)  # pylint: disable=subprocess-popen-preexec-fn
    log.close()
    with open(lab.path(f"{name}.pid"), "w", encoding="utf-8") as fh:
        fh.write(f"{proc.pid}\n")
    return proc


def start_ibsim(lab):
    if _pid(lab, "ibsim"):
        return
    ports = fabric_ports(lab)
    with open(lab.path("net"), "w", encoding="utf-8") as fh:
        fh.write(netfile(lab, ports, degraded(lab)))
    with open(lab.path("fabric.json"), "w", encoding="utf-8") as fh:
        json.dump({"sm_host": SM_HOST, "switch": SWITCH, "switches": [s[0] for s in SWITCHES], "ports": ports},
                  fh, indent=1)
    fifo = lab.path("console.fifo")
    if not os.path.exists(fifo):
        os.mkfifo(fifo, 0o600)
    # ibsim reads its console from the FIFO; opening it read-write means it never sees EOF
    # (EOF makes ibsim spin at 100% CPU), and `unlink` can write commands into it at any time.
    fd = os.open(fifo, os.O_RDWR)
    try:
        open(lab.path("ibsim.log"), "w", encoding="utf-8").close()
        proc = _spawn(lab, "ibsim", lab.in_netns(["ibsim", "-s", "-r", lab.path("net")]), stdin=fd)
    finally:
        os.close(fd)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        with open(lab.path("ibsim.log"), encoding="utf-8", errors="replace") as fh:
            text = fh.read()
        if "simulator ready" in text:
            return
        # poll(), not _pid(): right after the fork the child's cmdline is still Python's, not ibsim's.
        if proc.poll() is not None:
            raise FabricError(f"ibsim exited ({proc.returncode}): {text[-500:]}")
        time.sleep(0.05)
    raise FabricError("ibsim not ready within 15 s")


def sm_config(lab):
    try:
        with open(lab.path("sm.json"), encoding="utf-8") as fh:
            return json.load(fh)
    except (OSError, ValueError):
        return {"enabled": False, "on": None}


def start_opensm(lab, on_node=None):
    if _pid(lab, "opensm"):
        return
    host, netns = SM_HOST, lab.netns
    if on_node:
        node = lab.node(on_node)
        hcas = [p for p in fabric_ports(lab) if p["node"] == on_node]
        if not hcas:
            raise FabricError(f"node {on_node} has no InfiniBand port in the fabric")
        host, netns = hcas[0]["sim_host"], node["netns"]
    osm = lab.path("osm")
    os.makedirs(osm, exist_ok=True)
    env = lab.env(host)
    env.update(OSM_TMP_DIR=osm, OSM_CACHE_DIR=osm)
    for _attempt in range(5):
        proc = _spawn(lab, "opensm", lab.in_netns(["opensm", "-f", os.path.join(osm, "opensm.log"), "-s", "2"],
                                                  netns), env=env, cwd=osm)
        try:
            proc.wait(timeout=1.5)   # dies at once when ibsim has no free client slot: try again
        except subprocess.TimeoutExpired:
            break
        time.sleep(0.5)
    else:
        raise FabricError(f"opensm exits at start; see {lab.path('opensm.log')}")
    with open(lab.path("sm.json"), "w", encoding="utf-8") as fh:
        json.dump({"enabled": True, "on": on_node or SM_HOST, "sim_host": host}, fh)


def stop_opensm(lab):
    _stop(lab, "opensm", grace=2.0)
    with open(lab.path("sm.json"), "w", encoding="utf-8") as fh:
        json.dump({"enabled": False, "on": None}, fh)


def diag(lab, argv, host=SM_HOST, timeout=10):
    """Run an infiniband-diags tool in the fabric netns as `host`; (rc, stdout, stderr)."""
    os.makedirs(lab.diag_dir, exist_ok=True)
    try:
        res = subprocess.run(argv if lab.inside else lab.in_netns(argv), env=lab.env(host), capture_output=True, text=True,
                             timeout=timeout, cwd=lab.diag_dir, check=False)
        return res.returncode, res.stdout, res.stderr
    except subprocess.TimeoutExpired:
        return 124, "", f"{argv[0]} timed out after {timeout}s"


def sminfo(lab, timeout=10):
    rc, out, err = diag(lab, ["sminfo", "-t", "500"], timeout=timeout)
    return (out.strip() if rc == 0 else None), (err.strip() or out.strip())


def wait_master(lab, seconds=30):
    deadline = time.monotonic() + seconds
    last = ""
    while time.monotonic() < deadline:
        out, last = sminfo(lab, timeout=5)
        if out and "SMINFO_MASTER" in out:
            return out
        time.sleep(0.5)
    raise FabricError(f"opensm did not become MASTER within {seconds} s: {last}")


def start_sync(lab):
    if _pid(lab, "sync"):
        return
    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    # The sync runs in the lab's root namespace (where the host-side veths are, see apply_carrier); its
    # simulator clients run in the fabric netns through `ip netns exec`.
    # The wake-up signal is blocked from before exec (the mask survives it): one sent while the new
    # process is still starting stays pending instead of killing it.
    _spawn(lab, "sync", [sys.executable, "-m", "hw.fabric", "sync", "--lab-dir", lab.dir], env=env,
           preexec_fn=lambda: signal.pthread_sigmask(signal.SIG_BLOCK, {SYNC_WAKE}))


def wake_sync(lab):
    """Have the sync run a round now and poll every second again (after an action that changes ports)."""
    pid = _pid(lab, "sync")
    if pid:
        try:
            os.kill(pid, SYNC_WAKE)
        except ProcessLookupError:
            pass


def console(lab, command):
    if not _pid(lab, "ibsim"):
        raise FabricError("ibsim is not running")
    fd = os.open(lab.path("console.fifo"), os.O_WRONLY | os.O_NONBLOCK)
    try:
        os.write(fd, (command + "\n").encode())
    finally:
        os.close(fd)


# ------------------------------------------------------------------ sync
def parse_portinfo(text):
    fields = {}
    for line in text.splitlines():
        m = re.match(r"^(\w+):\.+(.*)$", line.strip())
        if m:
            fields[m.group(1)] = m.group(2).strip()
    try:
        return {"state": LINK_STATES.get(fields["LinkState"], "1: DOWN"),
                "phys_state": PHYS_STATES.get(fields["PhysLinkState"], "2: Polling"),
                "lid": f"0x{int(fields['Lid'], 0):x}", "sm_lid": f"0x{int(fields['SMLid'], 0):x}",
                "sm_sl": str(int(fields.get("SMSL", "0"), 0))}
    except (KeyError, ValueError):
        return None


# One round = two simulator clients, whatever the lab size: `iblinkinfo` (a directed-route discovery from
# smhost: every CA port's own LinkState/PhysLinkState and LID, keyed by the switch port it hangs on) and
# `smpquery portinfo` of smhost's own port (SMLid/SMSL: the SM programs the same values into every port).
# A CA that ibsim has unlinked is not discovered at all: its ports are DOWN/Polling.
_CA_PORT_LINE = re.compile(
    r"^\s*0x(?P<guid>[0-9a-fA-F]+)\s+(?P<lid>\d+)\s+(?P<port>\d+)\[[^]]*\]\s+==\((?P<link>[^)]*)\)==>"
    r"\s+(?P<rlid>\d+)\s+(?P<rport>\d+)\[")
_LINK_STATE = re.compile(r"(?P<state>\w+)/\s*(?P<phys>\w+)\s*$")
LINKINFO_STATES = dict(LINK_STATES, Initialize="2: INIT", Armed="3: ARMED")


def parse_linkinfo(text):
    """iblinkinfo output -> {(ca port guid, switch port): {"state", "phys_state", "lid"}} for every CA port
    line (`CA: ...` sections). Switch sections are ignored: their lines carry the switch port's state."""
    found = {}
    in_ca = False
    for line in text.splitlines():
        if line.startswith("CA:"):
            in_ca = True
            continue
        if line.startswith("Switch:"):
            in_ca = False
            continue
        m = _CA_PORT_LINE.match(line) if in_ca else None
        if not m:
            continue
        st = _LINK_STATE.search(m.group("link"))
        if not st:
            continue
        found[int(m.group("rport"))] = {
            "guid": int(m.group("guid"), 16), "port": int(m.group("port")),
            "state": LINKINFO_STATES.get(st.group("state"), "1: DOWN"),
            "phys_state": PHYS_STATES.get(st.group("phys"), "2: Polling"),
            "lid": f"0x{int(m.group('lid')):x}"}
    return found


def query_fabric(lab):
    """(ports by switch port, sm attributes) for one round; "busy" when ibsim had no free slot."""
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        links = pool.submit(diag, lab, ["iblinkinfo", "-t", "500"], SM_HOST, 20)
        local = pool.submit(diag, lab, ["smpquery", "-t", "300", "-D", "portinfo", "0", "1"], SM_HOST, 10)
        (rc, out, err), (lrc, lout, lerr) = links.result(), local.result()
    if rc != 0 and (rc == 124 or any(marker in err for marker in NO_SLOT)):
        return "busy", None
    by_swport = parse_linkinfo(out) if rc == 0 or out else {}
    sm = None
    if lrc == 0:
        info = parse_portinfo(lout)
        if info:
            sm = {"sm_lid": info["sm_lid"], "sm_sl": info["sm_sl"]}
    elif lrc == 124 or any(marker in lerr for marker in NO_SLOT):
        sm = "busy"
    return by_swport, sm


def sync_round(lab, ports, last, sm_last):
    """Query the fabric once and write every node's fabric-state.json; returns the ports' new states."""
    by_swport, sm = query_fabric(lab)
    if sm not in (None, "busy"):
        sm_last.update(sm)
    sm_now = dict(sm_last) or {"sm_lid": "0x0", "sm_sl": "0"}
    per_node = {}
    for p in ports:
        key = f"{p['hca']}/{p['port']}"
        prev = last.get((p["node"], key)) or {}
        if by_swport == "busy":   # no answer at all this round: keep what we knew
            if prev:
                per_node.setdefault(p["node"], {})[key] = prev
            continue
        seen = by_swport.get(p["switch_port"])
        if seen is None or seen["port"] != p["port"]:
            # Not discovered: unlinked, or the simulator is gone. LIDs stay as the SM left them.
            got = {"state": "1: DOWN", "phys_state": "2: Polling", "lid": prev.get("lid", "0x0"),
                   "sm_lid": prev.get("sm_lid", "0x0"), "sm_sl": prev.get("sm_sl", "0")}
        else:
            got = {"state": seen["state"], "phys_state": seen["phys_state"], "lid": seen["lid"],
                   "sm_lid": sm_now["sm_lid"], "sm_sl": sm_now["sm_sl"]}
            if seen["lid"] == "0x0" and seen["state"] == "2: INIT":
                # A port no SM has configured (after a reset) has no SM LID either.
                got["sm_lid"], got["sm_sl"] = "0x0", "0"
        last[(p["node"], key)] = got
        per_node.setdefault(p["node"], {})[key] = got
    for node, state in per_node.items():
        path = os.path.join(lab.dir, "nodes", node, "hw", "fabric-state.json")
        try:
            with open(path, encoding="utf-8") as fh:
                if json.load(fh).get("ports") == state:
                    continue
        except (OSError, ValueError):
            pass
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = path + ".tmp"
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump({"updated": time.time(), "ports": state}, fh, indent=1)
        os.replace(tmp, path)
    return per_node


def carrier_changes(ports, last, applied):
    """`ip` batch lines that make each IPoIB netdev's data-plane link follow its port, as the kernel's
    IPoIB driver does: carrier on only while the port is ACTIVE. The node-side veth (ib0) keeps its
    administrative state; its host-side peer goes down, so the node's ib0 loses carrier and no frame
    passes (and macvlans on it, EIPoIB and P_Key children, follow)."""
    lines = []
    for p in ports:
        veth = p.get("host_veth")
        state = last.get((p["node"], f"{p['hca']}/{p['port']}"))
        if not veth or state is None:
            continue
        want = "up" if state["state"] == "4: ACTIVE" else "down"
        if applied.get(veth) != want:
            lines.append(f"link set dev {veth} {want}")
            applied[veth] = want
    return lines


def apply_carrier(lines):
    """Run the batch in the sync's own network namespace: the lab's root one, where the host-side veths are."""
    if not lines:
        return True
    try:
        res = subprocess.run(["ip", "-force", "-batch", "-"],
                             input="\n".join(lines) + "\n", capture_output=True, text=True, timeout=10,
                             check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        print(f"carrier: {exc}", file=sys.stderr, flush=True)
        return False
    if res.returncode:
        print(f"carrier: ip -batch: {res.stderr.strip()}", file=sys.stderr, flush=True)
    return res.returncode == 0


def sync_loop(lab, rounds=None):
    signal.pthread_sigmask(signal.SIG_BLOCK, {SYNC_WAKE})   # taken by sigtimedwait below, never delivered
    ports = known_ports(lab)
    last, sm_last, applied = {}, {}, {}
    n = 0
    busy = SYNC_BUSY_ROUNDS
    while rounds is None or n < rounds:
        t0 = time.monotonic()
        before = dict(last)
        sync_round(lab, ports, last, sm_last)
        lines = carrier_changes(ports, last, applied)
        if not apply_carrier(lines):
            applied.clear()      # try the whole set again next round
        states = [last.get((p["node"], f"{p['hca']}/{p['port']}")) for p in ports]
        beat = {"round": n, "time": time.time(), "seconds": round(time.monotonic() - t0, 3),
                "ports": len(ports), "active": sum(1 for s in states if s and s["state"] == "4: ACTIVE"),
                "carrier": dict(sorted(applied.items()))}
        with open(lab.path("sync.json.tmp"), "w", encoding="utf-8") as fh:
            json.dump(beat, fh)
        os.replace(lab.path("sync.json.tmp"), lab.path("sync.json"))
        n += 1
        busy = SYNC_BUSY_ROUNDS if last != before or lines else busy - 1
        period = SYNC_PERIOD if busy > 0 else SYNC_IDLE_PERIOD
        if signal.sigtimedwait({SYNC_WAKE}, max(0.2, period - (time.monotonic() - t0))) is not None:
            busy = SYNC_BUSY_ROUNDS


def wait_synced(lab, seconds=30):
    """Wait until a sync round that started after now saw every IB port ACTIVE (and applied carriers)."""
    start = time.time()
    deadline = time.monotonic() + seconds
    beat = {}
    wake_sync(lab)
    while time.monotonic() < deadline:
        try:
            with open(lab.path("sync.json"), encoding="utf-8") as fh:
                beat = json.load(fh)
        except (OSError, ValueError):
            beat = {}
        if beat.get("time", 0) - beat.get("seconds", 0) >= start and beat.get("active") == beat.get("ports"):
            return True
        time.sleep(0.2)
    return False


# ------------------------------------------------------------------ actions
def up(lab, sm=True, sm_on=None):
    if not lab.netns or not lab.address:
        raise FabricError("lab.json has no fabric netns/address")
    start_ibsim(lab)
    if sm:
        start_opensm(lab, sm_on)
    else:
        stop_opensm(lab)
    start_sync(lab)
    if sm:
        out = wait_master(lab)
        # IPoIB links carry traffic only once their ports are ACTIVE (the sync applies the carrier).
        synced = wait_synced(lab)
        print(f"fabric up: {len(known_ports(lab))} IB ports; {out}"
              + ("" if synced else "; WARNING: not every port ACTIVE in the nodes yet"))
    else:
        print(f"fabric up: {len(known_ports(lab))} IB ports; no subnet manager (--no-sm)")


def down(lab):
    for name in ("sync", "opensm", "ibsim"):
        _stop(lab, name)
    for name in ("console.fifo",):
        try:
            os.unlink(lab.path(name))
        except FileNotFoundError:
            pass
    shutil.rmtree(lab.diag_dir, ignore_errors=True)
    print("fabric down")


def reset(lab, sm=True, sm_on=None):
    """Restart the simulator: every port goes back to INIT/LinkUp with LID 0 until an SM sweeps."""
    sm_was = sm_config(lab)
    stop_opensm(lab)
    _stop(lab, "ibsim")
    start_ibsim(lab)
    if sm:
        start_opensm(lab, sm_on or (sm_was.get("on") if sm_was.get("on") not in (None, SM_HOST) else None))
    print("fabric reset: ibsim restarted" + ("" if sm else "; no subnet manager"))


def status(lab):
    ok = True
    ib = _pid(lab, "ibsim")
    osm = _pid(lab, "opensm")
    sync = _pid(lab, "sync")
    cfg = sm_config(lab)
    print(f"ibsim: {'running pid %d' % ib if ib else 'NOT running'}")
    print(f"opensm: {'running pid %d on %s' % (osm, cfg.get('on')) if osm else 'stopped'}")
    try:
        with open(lab.path("sync.json"), encoding="utf-8") as fh:
            beat = json.load(fh)
        age = time.time() - beat["time"]
        print(f"sync: {'running' if sync else 'NOT running'}, last round {age:.1f} s ago "
              f"({beat['seconds']} s)")
        ok &= bool(sync) and age < 10
    except (OSError, ValueError, KeyError):
        print(f"sync: {'running' if sync else 'NOT running'}, no round yet")
        ok &= bool(sync)
    ok &= bool(ib)
    if ib:
        out, err = sminfo(lab, timeout=5)
        if out:
            print(f"sm: {'MASTER' if 'SMINFO_MASTER' in out else 'not MASTER'}: {out}")
            if cfg.get("enabled") and "SMINFO_MASTER" not in out:
                ok = False
        else:
            print(f"sm: no answer ({err.splitlines()[-1] if err else 'timeout'})")
            if cfg.get("enabled"):
                ok = False
    try:
        with open(lab.path("sync.json"), encoding="utf-8") as fh:
            carrier = json.load(fh).get("carrier") or {}
    except (OSError, ValueError):
        carrier = {}
    ports = known_ports(lab)
    for node in lab.nodes():
        off = [p["netdev"] for p in ports
               if p["node"] == node["name"] and carrier.get(p.get("host_veth")) == "down"]
        path = os.path.join(lab.dir, "nodes", node["name"], "hw", "fabric-state.json")
        try:
            with open(path, encoding="utf-8") as fh:
                node_ports = json.load(fh)["ports"]
            text = ", ".join(f"{k} {v['state'].split(': ')[1]} lid {v['lid']} sm_lid {v['sm_lid']}"
                             for k, v in sorted(node_ports.items()))
        except (OSError, ValueError, KeyError):
            text = "no IB ports" if not any(p["node"] == node["name"] for p in ports) else "no data"
        print(f"  {node['name']}: {text}" + (f"; no carrier: {', '.join(off)}" if off else ""))
    return 0 if ok else 1


def main(argv=None):
    ap = argparse.ArgumentParser(prog="hw.fabric")
    ap.add_argument("action", choices=["up", "down", "status", "sm-start", "sm-stop", "reset", "unlink",
                                       "relink", "sync", "netfile", "degrade", "restore"])
    ap.add_argument("node", nargs="?")
    ap.add_argument("--lab-dir", required=True)
    ap.add_argument("--sm-on", help="run opensm as this node's HCA (default: the dedicated smhost)")
    ap.add_argument("--no-sm", action="store_true", help="up/reset without opensm")
    ap.add_argument("--reset", action="store_true", help="sm-stop: also restart ibsim (ports back to INIT)")
    ap.add_argument("--on", dest="sm_on_alias", help=argparse.SUPPRESS)
    ap.add_argument("--width", choices=sorted(DEGRADED_WIDTHS), default="1x",
                    help="degrade: the width the node's links train at")
    args = ap.parse_args(argv)
    sm_on = args.sm_on or args.sm_on_alias
    try:
        lab = Lab(args.lab_dir)
        if args.action == "up":
            up(lab, sm=not args.no_sm, sm_on=sm_on)
        elif args.action == "down":
            down(lab)
        elif args.action == "status":
            return status(lab)
        elif args.action == "sm-start":
            start_opensm(lab, sm_on)
            print(wait_master(lab))
        elif args.action == "sm-stop":
            stop_opensm(lab)
            if args.reset:
                reset(lab, sm=False)
            print("opensm stopped" + (" and ports reset to INIT" if args.reset else
                                      " (ports keep their state until the fabric is reset)"))
        elif args.action == "reset":
            reset(lab, sm=not args.no_sm, sm_on=sm_on)
        elif args.action in ("unlink", "relink"):
            if not args.node:
                raise FabricError(f"{args.action} needs a NODE")
            hosts = sorted({p["sim_host"] for p in known_ports(lab) if p["node"] == args.node})
            if not hosts:
                raise FabricError(f"node {args.node} has no InfiniBand port in the fabric")
            for host in hosts:
                console(lab, f'{"Unlink" if args.action == "unlink" else "ReLink"} "{host}"')
            print(f"{args.action}: {', '.join(hosts)}")
        elif args.action in ("degrade", "restore"):
            if not args.node or not any(p["node"] == args.node for p in known_ports(lab)):
                raise FabricError(f"{args.action} needs a NODE with an InfiniBand port in the fabric")
            set_degraded(lab, args.node, args.width if args.action == "degrade" else None)
            # The simulator reads port widths at start only: restart it (ports retrain, the SM sweeps).
            reset(lab, sm=sm_config(lab).get("enabled", True), sm_on=sm_on)
            print(f"{args.action}: {args.node}" + (f" links train at {args.width}" if args.action == "degrade" else ""))
        elif args.action == "sync":
            sync_loop(lab)
        elif args.action == "netfile":
            print(netfile(lab, fabric_ports(lab)), end="")
        if args.action in ("sm-start", "sm-stop", "reset", "unlink", "relink", "degrade", "restore"):
            wake_sync(lab)
    except BrokenPipeError:
        return 0
    except (FabricError, hwprofile.ProfileError, OSError) as exc:
        print(f"hw.fabric {args.action}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
