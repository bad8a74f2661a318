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


# A node's image that holds mlx4_core, and an update-initramfs that records its calls: stand-ins in the
# node's /usr/local/sbin (the overlay root; first in PATH), as Debian's initramfs-tools would answer.
INITRAMFS_STUBS = {
    "/usr/local/sbin/lsinitramfs":
        '#!/bin/sh\necho "usr/lib/modules/$(uname -r)/kernel/drivers/net/ethernet/mellanox/mlx4/mlx4_core.ko"\n',
    "/usr/local/sbin/update-initramfs": '#!/bin/sh\necho "$*" >> /var/tmp/update-initramfs.log\n',
}
MLX4_PLAYBOOK = textwrap.dedent("""
    - name: ConnectX-3 VFs through mlx4_core options
      hosts: node2
      gather_facts: false
      vars:
        sriov_pfs: [{pf: ib0, num_vfs: NUM_VFS}]
      roles:
        - hpcnet.infiniband.sriov
""")
MLX4_CONF = "/etc/modprobe.d/hpcnet-sriov-mlx4.conf"


def test_mlx4_options_rebuild_the_initramfs_in_the_handler(lab, tmp_path):
    """Issue 12 item 3 on the lab: check mode with --diff shows the modprobe.d file and why the image would be
    rebuilt, and rebuilds nothing; the run writes the file and the sriov role's handler runs update-initramfs
    once; the second run changes nothing and rebuilds nothing."""
    for path, text in INITRAMFS_STUBS.items():
        lab.exec("node2", ["sh", "-ec", 'cat > "$1" && chmod 0755 "$1"', "sh", path], input=text, check=True)
    log = ["sh", "-c", "cat /var/tmp/update-initramfs.log 2>/dev/null; true"]
    playbook = tmp_path / "mlx4.yml"
    playbook.write_text(MLX4_PLAYBOOK.replace("NUM_VFS", "4"))
    try:
        check = lab.playbook(playbook, check=True, args=["--diff"])
        assert check.returncode == 0, check.stdout[-4000:] + check.stderr[-2000:]
        assert MLX4_CONF in check.stdout and "options mlx4_core num_vfs=4" in check.stdout, check.stdout[-4000:]
        assert "mlx4_core is in the initramfs" in check.stdout, check.stdout[-4000:]
        assert lab.exec("node2", ["test", "-e", MLX4_CONF]).returncode == 1
        assert lab.exec("node2", log).stdout == ""

        first = lab.playbook(playbook)
        assert first.returncode == 0, first.stdout[-4000:] + first.stderr[-2000:]
        assert "RUNNING HANDLER [hpcnet.infiniband.sriov : Rebuild the initramfs (sriov)]" in first.stdout
        assert "reboot" in first.stdout and "mlx4_core is in the initramfs" in first.stdout
        assert "options mlx4_core num_vfs=4" in lab.exec("node2", ["cat", MLX4_CONF], check=True).stdout
        assert lab.exec("node2", log).stdout == "-u -k all\n"

        again = lab.playbook(playbook)
        assert again.returncode == 0, again.stdout[-4000:]
        assert recap(again.stdout)["node2"][1] == 0, again.stdout[-4000:]
        assert lab.exec("node2", log).stdout == "-u -k all\n"
    finally:
        playbook.write_text(MLX4_PLAYBOOK.replace("NUM_VFS", "0"))
        lab.playbook(playbook)
        lab.exec("node2", ["rm", "-f", *INITRAMFS_STUBS])


OFED_PLAYBOOK = textwrap.dedent("""
    - name: ConnectX-5 node with ib_ipoib options
      hosts: node1
      gather_facts: false
      vars:
        ofed_install_packages: false
        ofed_module_options: OPTIONS
      roles:
        - hpcnet.infiniband.ofed
""")
IPOIB_CONF = "/etc/modprobe.d/hpcnet-ib_ipoib.conf"


def test_ofed_module_options_rebuild_the_initramfs_in_the_handler(lab, tmp_path):
    """Issue 12 item 3 for the ofed role: ib_ipoib's options on a node whose image holds ib_ipoib; the ofed
    role's handler runs update-initramfs once, check mode rebuilds nothing, the second run nothing."""
    stubs = dict(INITRAMFS_STUBS)
    stubs["/usr/local/sbin/lsinitramfs"] = (
        '#!/bin/sh\necho "usr/lib/modules/$(uname -r)/kernel/drivers/infiniband/ulp/ipoib/ib_ipoib.ko"\n')
    for path, text in stubs.items():
        lab.exec("node1", ["sh", "-ec", 'cat > "$1" && chmod 0755 "$1"', "sh", path], input=text, check=True)
    log = ["sh", "-c", "cat /var/tmp/update-initramfs.log 2>/dev/null; true"]
    playbook = tmp_path / "ofed.yml"
    playbook.write_text(OFED_PLAYBOOK.replace("OPTIONS", "{ib_ipoib: {send_queue_size: 512}}"))
    try:
        check = lab.playbook(playbook, check=True, args=["--diff"])
        assert check.returncode == 0, check.stdout[-4000:] + check.stderr[-2000:]
        assert "options ib_ipoib send_queue_size=512" in check.stdout, check.stdout[-4000:]
        assert lab.exec("node1", ["test", "-e", IPOIB_CONF]).returncode == 1
        assert lab.exec("node1", log).stdout == ""

        first = lab.playbook(playbook)
        assert first.returncode == 0, first.stdout[-4000:] + first.stderr[-2000:]
        assert "RUNNING HANDLER [hpcnet.infiniband.ofed : Rebuild the initramfs (ofed)]" in first.stdout
        assert "options ib_ipoib send_queue_size=512" in lab.exec("node1", ["cat", IPOIB_CONF], check=True).stdout
        assert lab.exec("node1", log).stdout == "-u -k all\n"

        again = lab.playbook(playbook)
        assert again.returncode == 0, again.stdout[-4000:]
        assert recap(again.stdout)["node1"][1] == 0, again.stdout[-4000:]
        assert lab.exec("node1", log).stdout == "-u -k all\n"
    finally:
        playbook.write_text(OFED_PLAYBOOK.replace("OPTIONS", "{}"))
        lab.playbook(playbook)
        lab.exec("node1", ["rm", "-f", "/var/tmp/update-initramfs.log", *stubs])
