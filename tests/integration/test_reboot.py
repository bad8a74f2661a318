"""Survive a reboot (issue 12): converge, `labctl reboot --all`, and the nodes come back as they were
from their own boot files (the hpcnet-ib-boot oneshot the boot_state role installed), without re-running
the roles; a re-run afterwards changes nothing.

Lab `reboot`: node1 ConnectX-5 (4 VFs with derived GUIDs, P_Key child ib0.8002 with MTU 2000: mlx5
enhanced IPoIB is datagram only), node2 ConnectX-3 (parent and child ib0.8004 in connected mode, MTU
65520), node3 QLogic (nothing to restore: no boot path installed).
"""

from __future__ import annotations

import re
import textwrap

import pytest

from conftest import run_module  # tests/integration/conftest.py

LAB_NAME = "reboot"
PROFILES = ["cx5-ib-sriov", "cx3-ipoib", "qib-ipoib"]
PF = "/sys/bus/pci/devices/0000:5e:00.0"

PLAYBOOK = textwrap.dedent("""
    - name: SR-IOV, IPoIB and the boot path
      hosts: all
      gather_facts: false
      vars:
        sriov_pfs: "{{ [{'pf': 'ib0', 'num_vfs': 4}] if lab_profile == 'cx5-ib-sriov' else [] }}"
        ipoib_interfaces: >-
          {{ [{'parent': 'ib0', 'pkey': '0x8002', 'mtu': 2000}] if lab_profile == 'cx5-ib-sriov'
             else [{'parent': 'ib0', 'mode': 'connected', 'mtu': 65520},
                   {'parent': 'ib0', 'pkey': '0x8004', 'mode': 'connected', 'mtu': 65520}]
             if lab_profile == 'cx3-ipoib' else [] }}
      roles:
        - hpcnet.infiniband.sriov
        - hpcnet.infiniband.ipoib
        - hpcnet.infiniband.boot_state
""")

VF_GUIDS = f"for f in {PF}/sriov/*/node {PF}/sriov/*/port; do [ -e $f ] && echo $f $(cat $f); done; true"


@pytest.fixture(scope="module")
def lab(lab_factory):
    return lab_factory(LAB_NAME, nodes=3, profiles=PROFILES)


def recap(stdout):
    return {m.group(1): (int(m.group(2)), int(m.group(3)))
            for m in re.finditer(r"^(node\d+)\s*:\s*ok=(\d+)\s+changed=(\d+)", stdout, re.M)}


def state(lab):
    """What must survive: per node, from ib_facts (VF counts, IPoIB netdevs with mode, P_Key, parent,
    MTU) and, for the VF GUIDs that ib_facts does not report, the PF's per-VF sysfs."""
    facts = run_module(lab, "hpcnet.infiniband.ib_facts", "all")
    seen = {}
    for node, result in facts.items():
        nics = result["ansible_facts"]["ib_facts"]["nics"]
        seen[node] = {
            name: {"mtu": nic.get("mtu"), "ipoib": nic.get("ipoib"),
                   "numvfs": (nic.get("sriov") or {}).get("numvfs")}
            for name, nic in nics.items() if nic.get("ipoib") or nic.get("sriov")
        }
    seen["node1 VF GUIDs"] = lab.exec("node1", ["sh", "-c", VF_GUIDS], check=True).stdout
    return seen


def test_converged_state_comes_back_after_reboot(lab, tmp_path):
    playbook = tmp_path / "converge.yml"
    playbook.write_text(PLAYBOOK)
    cp = lab.playbook(playbook)
    assert cp.returncode == 0, cp.stdout[-4000:] + cp.stderr[-2000:]
    before = state(lab)
    assert before["node1"]["ib0"]["numvfs"] == 4 and before["node1"]["ib0.8002"]["mtu"] == 2000
    assert before["node2"]["ib0.8004"]["ipoib"]["mode"] == "connected" and before["node2"]["ib0.8004"]["mtu"] == 65520
    assert before["node1 VF GUIDs"].count("/port ") == 4 and "00:00:00:00:00:00:00:00" not in before["node1 VF GUIDs"]
    unit = lab.exec("node1", ["cat", "/etc/systemd/system/hpcnet-ib-boot.service"], check=True).stdout
    assert "Before=network-pre.target" in unit and "Type=oneshot" in unit
    # node3 has nothing to restore: no boot path at all.
    assert lab.exec("node3", ["test", "-e", "/etc/systemd/system/hpcnet-ib-boot.service"]).returncode == 1

    cp = lab.labctl("reboot", "--all", timeout=600)
    assert cp.returncode == 0, cp.stdout + cp.stderr
    assert "node1: hpcnet-ib-boot.service: hpcnet-ib-boot:" in cp.stdout
    assert "node3: hpcnet-ib-boot" not in cp.stdout
    # Power-on state really was the profile: the boot path had work to do on node1 and node2.
    assert re.search(r"node1: hpcnet-ib-boot.service: hpcnet-ib-boot: sriov 0000:5e:00.0: set_numvfs \S+: 0 -> 4;.* set_vf_guid ib0 vf 3", cp.stdout), cp.stdout
    assert re.search(r"node2: .* create_child .* -> ib0\.8004", cp.stdout), cp.stdout

    assert state(lab) == before

    cp = lab.playbook(playbook)
    assert cp.returncode == 0, cp.stdout[-4000:] + cp.stderr[-2000:]
    assert all(changed == 0 for _ok, changed in recap(cp.stdout).values()), cp.stdout[-4000:]
    assert set(recap(cp.stdout)) == {"node1", "node2", "node3"}


def test_reboot_without_boot_path_is_the_profile(lab):
    """A node whose boot path is removed comes back at the profile's power-on state."""
    result = run_module(lab, "hpcnet.infiniband.ib_boot_state", "node1", {"state": "absent"})["node1"]
    assert result["changed"] and not result.get("failed"), result
    cp = lab.labctl("reboot", "node1", timeout=300)
    assert cp.returncode == 0, cp.stdout + cp.stderr
    assert lab.exec("node1", ["cat", PF + "/sriov_numvfs"], check=True).stdout.strip() == "0"
    assert "ib0.8002" not in lab.exec("node1", ["ls", "/sys/class/net"], check=True).stdout
    assert lab.ssh("node1", "true").returncode == 0


# A node's image that holds a module, and an update-initramfs that records its calls: stand-ins in the
# node's /usr/local/sbin (the overlay root; first in PATH), as Debian's initramfs-tools would answer.
UPDATE_INITRAMFS_LOG = "/var/tmp/update-initramfs.log"


def initramfs_stubs(module_path):
    """{path: script}: lsinitramfs lists ``kernel/<module_path>.ko``, update-initramfs logs its arguments."""
    return {
        "/usr/local/sbin/lsinitramfs": '#!/bin/sh\necho "usr/lib/modules/$(uname -r)/kernel/%s.ko"\n' % module_path,
        "/usr/local/sbin/update-initramfs": '#!/bin/sh\necho "$*" >> %s\n' % UPDATE_INITRAMFS_LOG,
    }


# Issue 12 item 3, for both roles that write module options: (node, module in the image, playbook with
# SETTING, the setting that changes the options, the one that puts them back, the file, its new line,
# the role's handler).
SRIOV_MLX4_PLAYBOOK = textwrap.dedent("""
    - name: ConnectX-3 VFs through mlx4_core options
      hosts: node2
      gather_facts: false
      vars:
        sriov_pfs: [{pf: ib0, num_vfs: SETTING}]
      roles:
        - hpcnet.infiniband.sriov
""")
OFED_IPOIB_PLAYBOOK = textwrap.dedent("""
    - name: ConnectX-5 node with ib_ipoib options
      hosts: node1
      gather_facts: false
      vars:
        ofed_install_packages: false
        ofed_module_options: SETTING
      roles:
        - hpcnet.infiniband.ofed
""")
INITRAMFS_CASES = {
    "sriov-mlx4_core": ("node2", "drivers/net/ethernet/mellanox/mlx4/mlx4_core", SRIOV_MLX4_PLAYBOOK, "4", "0",
                        "/etc/modprobe.d/hpcnet-sriov-mlx4.conf", "options mlx4_core num_vfs=4",
                        "hpcnet.infiniband.sriov : Rebuild the initramfs (sriov)"),
    "ofed-ib_ipoib": ("node1", "drivers/infiniband/ulp/ipoib/ib_ipoib", OFED_IPOIB_PLAYBOOK,
                      "{ib_ipoib: {send_queue_size: 512}}", "{}", "/etc/modprobe.d/hpcnet-ib_ipoib.conf",
                      "options ib_ipoib send_queue_size=512", "hpcnet.infiniband.ofed : Rebuild the initramfs (ofed)"),
}


@pytest.mark.parametrize("case", sorted(INITRAMFS_CASES))
def test_module_options_rebuild_the_initramfs_in_the_handler(lab, tmp_path, case):
    """Options of a module the node's image holds: check mode with --diff shows the modprobe.d file and
    rebuilds nothing; the run writes the file and the role's handler runs update-initramfs once, saying
    why; the second run changes nothing and rebuilds nothing."""
    node, module_path, text, setting, undo, conf, line, handler = INITRAMFS_CASES[case]
    module = module_path.rsplit("/", 1)[-1]
    stubs = initramfs_stubs(module_path)
    for path, script in stubs.items():
        lab.exec(node, ["sh", "-ec", 'cat > "$1" && chmod 0755 "$1"', "sh", path], input=script, check=True)
    log = ["sh", "-c", "cat %s 2>/dev/null; true" % UPDATE_INITRAMFS_LOG]
    playbook = tmp_path / "initramfs.yml"
    playbook.write_text(text.replace("SETTING", setting))
    try:
        check = lab.playbook(playbook, check=True, args=["--diff"])
        assert check.returncode == 0, check.stdout[-4000:] + check.stderr[-2000:]
        assert conf in check.stdout and line in check.stdout, check.stdout[-4000:]
        assert lab.exec(node, ["test", "-e", conf]).returncode == 1
        assert lab.exec(node, log).stdout == ""
        assert "%s is in the initramfs" % module in check.stdout, check.stdout[-4000:]

        first = lab.playbook(playbook)
        assert first.returncode == 0, first.stdout[-4000:] + first.stderr[-2000:]
        assert "RUNNING HANDLER [%s]" % handler in first.stdout, first.stdout[-4000:]
        assert "%s is in the initramfs" % module in first.stdout and "reboot" in first.stdout
        assert line in lab.exec(node, ["cat", conf], check=True).stdout
        assert lab.exec(node, log).stdout == "-u -k all\n"

        again = lab.playbook(playbook)
        assert again.returncode == 0, again.stdout[-4000:]
        assert recap(again.stdout)[node][1] == 0, again.stdout[-4000:]
        assert lab.exec(node, log).stdout == "-u -k all\n"
    finally:
        playbook.write_text(text.replace("SETTING", undo))
        lab.playbook(playbook)
        lab.exec(node, ["rm", "-f", UPDATE_INITRAMFS_LOG, *stubs])
