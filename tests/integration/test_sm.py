"""The subnet-manager check against a real OpenSM on the simulated fabric (ibsim), and the opensm
configuration rendered by ib_opensm_config loaded by a real opensm.

Lab `sm` (3 nodes: two IB nodes and one RoCE node, whose Ethernet port must be ignored) comes up
without a subnet manager: every IB port is INIT and the check must fail with the per-port message.
Then the lab starts opensm on ibsim and the check must pass with sminfo's data; stopping opensm must
make the check (query_sm=always) fail again because no SM answers; unlinking a node's cable must
give DOWN (Polling).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest

from conftest import REPO, VENV_BIN, ansible_env, fabric, run_module, wait_for  # tests/integration/conftest.py

LAB_NAME = "sm"
PROFILES = ["cx3-ipoib", "cx5-ib-sriov", "cx5-roce"]  # node3 has only an Ethernet (RoCE) port


def check(lab, nodes="lab_nodes", timeout=180, **args):
    """Run hpcnet.infiniband.ib_sm_check ad hoc on the lab nodes; {node: result dict}."""
    return run_module(lab, "hpcnet.infiniband.ib_sm_check", nodes, args, timeout=timeout)


@pytest.fixture(scope="module")
def lab(lab_factory):
    started = time.monotonic()
    lab = lab_factory(LAB_NAME, nodes=3, profiles=PROFILES, sm=False)
    print("lab %s up in %.1fs" % (LAB_NAME, time.monotonic() - started))
    return lab


def ib_nodes(lab):
    return [n["name"] for n in lab.nodes if n["profile"] != "cx5-roce"]


def reset_to_no_sm(lab):
    """Stop the SM and restart the simulated fabric, then wait (bounded) until every IB node's view shows
    its ports INIT (LinkUp): right after the reset a port briefly reads DOWN (Polling) while the link trains."""
    cp = fabric(lab, "sm-stop", "--reset")
    assert cp.returncode == 0, cp.stdout + cp.stderr

    def settled():
        for name in ib_nodes(lab):
            cp = lab.exec(name, ["sh", "-c", "cat /sys/class/infiniband/*/ports/*/state /sys/class/infiniband/*/ports/*/phys_state"])
            if cp.returncode != 0 or "DOWN" in cp.stdout or "Polling" in cp.stdout or "INIT" not in cp.stdout:
                return False
        return True

    assert wait_for(settled, 60, step=1), "ports did not settle to INIT (LinkUp) after the fabric reset"


def test_check_fails_while_no_subnet_manager(lab):
    reset_to_no_sm(lab)  # no SM, ports back to INIT whatever ran before
    results = check(lab, require_ports=False)
    for name in ib_nodes(lab):
        result = results[name]
        assert result.get("failed") is True, result
        assert "is INIT (LinkUp): no subnet manager has configured it; start opensm on a node or the switch" in \
            result["msg"], result["msg"]
        for port in result["failed_ports"]:
            assert port["state"] == "INIT" and port["phys_state"] == "LinkUp"
            assert ("%s port %s is INIT (LinkUp)" % (port["device"], port["port"])) in result["msg"]
    roce = results[[n["name"] for n in lab.nodes if n["profile"] == "cx5-roce"][0]]
    assert roce.get("failed") is not True and roce["ports"] == [], roce


def test_check_passes_after_opensm_starts(lab):
    lab.labctl("sm", "start", check=True)
    started = time.monotonic()
    results = check(lab, wait_timeout=60, poll_interval=1, query_sm="always", require_ports=False)
    elapsed = time.monotonic() - started
    print("check passed %.1fs after opensm was started" % elapsed)
    for name in ib_nodes(lab):
        result = results[name]
        assert result.get("failed") is not True, result
        for port in result["ports"]:
            assert port["state"] == "ACTIVE" and port["phys_state"] == "LinkUp"
            assert port["lid"] and port["sm_lid"]
        sm = result["sm"]
        assert sm["state"] == "MASTER"
        assert sm["guid_hex"].startswith("0x") and sm["guid"].count(":") == 3
        assert isinstance(sm["lid"], int) and sm["lid"] > 0
        assert 0 <= sm["priority"] <= 15
        assert sm["local"] is False  # the lab's SM runs on its own "smhost" HCA
        assert all(port["sm_lid"] == sm["lid"] for port in result["ports"])
        assert "master SM %s (LID %s, priority %s, MASTER)" % (sm["guid_hex"], sm["lid"], sm["priority"]) \
            in result["msg"]


def test_requirements_on_the_sm(lab):
    node = ib_nodes(lab)[0]
    result = check(lab, nodes=node, min_sms=2, sm_guid="0x0002c90300a1b2c1", query_sm="always")[node]
    assert result.get("failed") is True
    assert "at least 2 required" in result["msg"]
    assert "not the expected 0x0002c90300a1b2c1" in result["msg"]
    sm_guid = result["sm"]["guid_hex"]
    assert check(lab, nodes=node, sm_guid=sm_guid, allow_local_sm=False)[node].get("failed") is not True


def test_check_fails_when_a_cable_is_pulled(lab):
    lab.labctl("sm", "start", check=True)  # no-op when it runs
    node = ib_nodes(lab)[1]
    lab.labctl("fabric", "unlink", node, check=True)
    try:
        result = wait_for(lambda: _failed(check(lab, nodes=node)[node]), 20, step=1)
        assert result, "the port did not go down within 20 s of unlink"
        assert "is DOWN (Polling): no link: check the cable and the switch port" in result["msg"], result["msg"]
    finally:
        lab.labctl("fabric", "relink", node, check=True)
    result = check(lab, nodes=node, wait_timeout=60, poll_interval=1)[node]
    assert result.get("failed") is not True, result["msg"]


def test_local_sm(lab):
    """opensm on node1's own HCA: node1 sees a local SM (lid == sm_lid), the others a remote one."""
    reset_to_no_sm(lab)
    local, other = ib_nodes(lab)[:2]
    lab.labctl("sm", "start", "--on", local, check=True)
    results = check(lab, nodes=",".join([local, other]), wait_timeout=60, poll_interval=1, query_sm="always")
    assert results[local].get("failed") is not True, results[local]["msg"]
    assert results[local]["sm"]["local"] is True and results[local]["ports"][0]["local_sm"] is True
    assert results[local]["msg"].endswith(", on this host)")
    assert results[other]["sm"]["local"] is False and results[other]["ports"][0]["local_sm"] is False
    refused = check(lab, nodes=local, allow_local_sm=False)[local]
    assert refused.get("failed") is True
    assert refused["msg"] == ("the master subnet manager %s runs on this host, and allow_local_sm is false"
                              % results[local]["sm"]["guid_hex"])
    assert check(lab, nodes=other, allow_local_sm=False)[other].get("failed") is not True


def test_check_fails_when_opensm_stops(lab):
    lab.labctl("sm", "start", check=True)
    lab.labctl("sm", "stop", check=True)
    node = ib_nodes(lab)[0]
    # Ports keep their ACTIVE state when the SM dies (as on real IB); asking for the SM shows it is gone.
    result = check(lab, nodes=node, query_sm="always", sm_query_timeout=10)[node]
    assert result.get("failed") is True, result
    assert result["msg"].startswith("cannot verify the subnet manager (query_sm=always): sminfo"), result["msg"]


def _failed(result):
    return result if result.get("failed") else None


# ---------------------------------------------------------------------------------------------
# Real opensm reads what ib_opensm_config renders (no lab: ibsim + opensm in a private netns).
UMAD2SIM = "/usr/lib/x86_64-linux-gnu/umad2sim/libumad2sim.so"


@pytest.mark.skipif(not (shutil.which("ibsim") and shutil.which("opensm") and os.path.exists(UMAD2SIM)),
                    reason="ibsim-utils/opensm not installed")
def test_real_opensm_loads_rendered_config():
    sys.path.insert(0, str(REPO / ".collections"))
    from ansible_collections.hpcnet.infiniband.plugins.module_utils import _sm

    with tempfile.TemporaryDirectory(prefix="hpcnet-sm-") as tmp:
        work = Path(tmp)
        (work / "net").write_text(textwrap.dedent("""\
            Switch 8 "Switch1"
            [1] "Hca1"[1]
            [2] "smhost"[1]

            Hca 1 "Hca1"
            [1] "Switch1"[1]

            Hca 1 "smhost"
            [1] "Switch1"[2]
            """))
        # ibsim numbers GUIDs in creation order: Hca1 port 0x100001 ... smhost port 0x100003 (see net above)
        partitions, errors = _sm.normalize_partitions([
            {"name": "storage", "pkey": "0x8001", "members": [{"guid": "0x100001", "membership": "full"}]},
            {"name": "compute", "pkey": 2, "members": [{"guid": "0x100001", "membership": "limited"}]},
        ])
        assert errors == []
        (work / "partitions.conf").write_text(_sm.render_partitions(partitions))
        settings, errors = _sm.opensm_settings(guid="0x100003", priority=11, sweep_interval=2,
                                               partitions_path=str(work / "partitions.conf"))
        assert errors == []
        (work / "opensm.conf").write_text(_sm.render_opensm_conf(settings))
        script = textwrap.dedent("""\
            set -u
            cd "$1"
            ip link set lo up
            ibsim -s -n net > ibsim.log 2>&1 & sim=$!
            sleep 1
            OSM_TMP_DIR=$PWD OSM_CACHE_DIR=$PWD SIM_HOST=smhost LD_PRELOAD=%(u)s \\
                opensm -F opensm.conf -f $PWD/opensm.log > opensm.out 2>&1 & sm=$!
            for i in $(seq 1 20); do
                out=$(SIM_HOST=Hca1 LD_PRELOAD=%(u)s timeout 5 sminfo 2>/dev/null) && break
                sleep 0.5
            done
            echo "$out"
            SIM_HOST=Hca1 LD_PRELOAD=%(u)s timeout 5 smpquery -D pkeys 0 1 2>&1 | head -1
            kill -9 $sm; kill $sim; wait
            """) % {"u": UMAD2SIM}
        cp = subprocess.run(["unshare", "-n", "bash", "-c", script, "bash", str(work)],
                            capture_output=True, text=True, timeout=60, check=False)
        master = _sm.parse_sminfo(cp.stdout)
        assert master is not None, cp.stdout + cp.stderr
        assert (master["guid_hex"], master["priority"], master["state"]) == ("0x0000000000100003", 11, "MASTER")
        # Hca1's own P_Key table (direct route 0 = the local port): full member of 1, limited of 2.
        pkeys_line = [line for line in cp.stdout.splitlines() if line.strip().startswith("0:")]
        assert pkeys_line, cp.stdout
        assert pkeys_line[0].split()[1:4] == ["0xffff", "0x8001", "0x0002"], pkeys_line


# ---------------------------------------------------------------------------------------------
# The role refuses several SM hosts without distinct priorities before anything starts (no lab:
# two local hosts, check mode, files redirected to a temporary directory for safety).
def _role_play(tmp, priorities):
    inventory = {"ib_sm_hosts": {"hosts": {
        "sm%d" % index: {"ansible_connection": "local", "ansible_python_interpreter": str(VENV_BIN / "python"),
                         "subnet_manager_priority": priority}
        for index, priority in enumerate(priorities, 1)}}}
    (tmp / "inventory.json").write_text(json.dumps(inventory))
    (tmp / "play.yml").write_text(textwrap.dedent("""\
        - name: Subnet manager role
          hosts: ib_sm_hosts
          gather_facts: false
          roles:
            - role: hpcnet.infiniband.subnet_manager
              vars:
                subnet_manager_install: false
                subnet_manager_start: false
                subnet_manager_check: false
                subnet_manager_conf_path: %(tmp)s/opensm.conf
                subnet_manager_partitions_path: %(tmp)s/partitions.conf
                subnet_manager_service_defaults_path: %(tmp)s/opensm.default
        """ % {"tmp": tmp}))
    return subprocess.run([str(VENV_BIN / "ansible-playbook"), "-i", str(tmp / "inventory.json"), "--check",
                           str(tmp / "play.yml")], capture_output=True, text=True, timeout=120, cwd=REPO,
                          env=ansible_env(), check=False)


def test_role_refuses_equal_priorities(tmp_path):
    cp = _role_play(tmp_path, [5, 5])
    assert cp.returncode != 0
    assert "The subnet manager hosts (sm1=5, sm2=5) need distinct priorities from 0 to 15" in cp.stdout, cp.stdout
    assert "Render opensm.conf" not in cp.stdout
    cp = _role_play(tmp_path, [5, 16])
    assert cp.returncode != 0 and "(sm1=5, sm2=16)" in cp.stdout
    cp = _role_play(tmp_path, [14, 13])
    assert cp.returncode == 0, cp.stdout + cp.stderr
    assert "Render opensm.conf" in cp.stdout
    assert not (tmp_path / "opensm.conf").exists()  # check mode
