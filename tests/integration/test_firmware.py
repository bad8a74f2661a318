"""Adapter firmware on the lab (issue 14): ib_firmware against the node's mstconfig stand-in, then a reboot.

Lab `h6fw` (HPCNET_FIRMWARE_LAB): one cx5-ib-sriov node (firmware SRIOV_EN=1, NUM_OF_VFS=16, LINK_TYPE_P1=IB;
sriov_totalvfs 16). The plan -> check mode -> apply -> second run (0 changed, reboot still pending) run on any
lab; the reboot part (Next Boot becomes Current, sriov_totalvfs follows NUM_OF_VFS, link_layer follows
LINK_TYPE_P1) needs the lab's boot hooks (docs/firmware.md "The lab"): it is skipped, saying so, without them.
"""

from __future__ import annotations

import json
import os
import sys

import pytest
from conftest import REPO, run_module, wait_for

LAB_NAME = os.environ.get("HPCNET_FIRMWARE_LAB", "h6fw")
PCI = "0000:5e:00.0"
SYSFS = f"/sys/bus/pci/devices/{PCI}"
sys.path.insert(0, str(REPO / "lab"))
from hw import mstconfig_shim, profile as hwprofile  # noqa: E402  pylint: disable=wrong-import-position


def hooks_present():
    return all("mstconfig_shim" in (REPO / "lab" / "hw" / name).read_text() for name in ("node.py", "fusefs.py"))


@pytest.fixture(scope="module")
def lab(lab_factory):
    lab = lab_factory(LAB_NAME, nodes=1, profiles=["cx5-ib-sriov"])
    if lab.exec("node1", ["mstconfig", "-v"]).stdout.find("hpcnet lab") < 0:
        # Without the node-setup hook the stand-in is not on the node yet: put it there as hw.node would.
        text = (REPO / "lab" / "hw" / "mstconfig_shim.py").read_text()
        lab.exec("node1", ["sh", "-c", f"cat > {mstconfig_shim.SHIM_IN_NODE} && chmod 755 {mstconfig_shim.SHIM_IN_NODE}"],
                 input=text, check=True)
        state = mstconfig_shim.initial_state(hwprofile.resolve(hwprofile.load_profile("cx5-ib-sriov"), 1))
        lab.exec("node1", ["sh", "-c", f"mkdir -p /etc/hpcnet-lab && cat > {mstconfig_shim.STATE_IN_NODE}"],
                 input=json.dumps(state), check=True)
    return lab


def firmware(lab, settings, check=False, diff=False):
    return run_module(lab, "hpcnet.infiniband.ib_firmware", "node1", {"device": "ib0", "settings": settings},
                      check=check, diff=diff)["node1"]


def read(lab, path):
    return lab.exec("node1", ["cat", path], check=True).stdout.strip()


def test_real_output_format_on_the_node(lab):
    cp = lab.exec("node1", ["mstconfig", "-e", "-d", PCI, "q"], check=True)
    assert "Device type:        ConnectX5" in cp.stdout
    assert "Configurations:" in cp.stdout and "Next Boot" in cp.stdout
    assert lab.exec("node1", ["mstconfig", "-d", "0000:99:00.0", "q"]).returncode != 0


def test_plan_apply_second_run_then_reboot(lab):
    assert read(lab, f"{SYSFS}/sriov_totalvfs") == "16"
    wanted = {"SRIOV_EN": True, "NUM_OF_VFS": 8, "LINK_TYPE_P1": "IB"}
    checked = firmware(lab, wanted, check=True, diff=True)
    assert checked["changed"] and [c["target"] for c in checked["plan"]] == ["NUM_OF_VFS"], checked
    assert "NUM_OF_VFS 16 -> 8" in checked["reboot_reason"]
    assert "8" not in lab.exec("node1", ["mstconfig", "-d", PCI, "q", "NUM_OF_VFS"]).stdout.split()  # unchanged
    first = firmware(lab, wanted)
    assert first["changed"] and first["reboot_required"], first
    assert first["firmware"]["settings"]["NUM_OF_VFS"]["next_boot"] == "8"
    second = firmware(lab, wanted)
    assert not second["changed"] and second["reboot_required"], second
    assert "NUM_OF_VFS is 16 now and 8 after the next boot" in second["reboot_reason"]
    assert read(lab, f"{SYSFS}/sriov_totalvfs") == "16"                 # nothing changes before the boot
    refused = firmware(lab, {"NUM_OF_VFS": 500, "BOGUS": 1})
    assert refused.get("failed") and not refused["changed"] and "BOGUS" in refused["msg"]
    if not hooks_present():
        pytest.skip("the lab's boot hooks (hw.node install, hw.fusefs boot; docs/firmware.md) are not in: "
                    "reboot part not run")
    cp = lab.labctl("reboot", "node1", timeout=300)
    assert cp.returncode == 0, cp.stdout + cp.stderr
    assert wait_for(lambda: lab.exec("node1", ["cat", f"{SYSFS}/sriov_totalvfs"]).stdout.strip() == "8", 60)
    after = firmware(lab, wanted)
    assert not after["changed"] and not after["reboot_required"], after
    # Port type: ETH after the next boot makes the port's link layer Ethernet.
    assert firmware(lab, {"LINK_TYPE_P1": "ETH"})["changed"]
    assert read(lab, "/sys/class/infiniband/mlx5_0/ports/1/link_layer") == "InfiniBand"
    assert lab.labctl("reboot", "node1", timeout=300).returncode == 0
    assert wait_for(lambda: lab.exec("node1", ["cat", "/sys/class/infiniband/mlx5_0/ports/1/link_layer"])
                    .stdout.strip() == "Ethernet", 60)
    firmware(lab, {"LINK_TYPE_P1": "IB", "NUM_OF_VFS": 16})
    lab.labctl("reboot", "node1", timeout=300)


def test_role_sets_and_reports_the_reboot(lab, tmp_path):
    """The firmware role: first run changes Next Boot and says which host waits for a boot; second run 0 changed."""
    playbook = tmp_path / "firmware.yml"
    playbook.write_text(
        "- hosts: lab_nodes\n  gather_facts: false\n  roles:\n    - role: hpcnet.infiniband.firmware\n"
        "      vars:\n        firmware_devices: [{device: ib0, settings: {SRIOV_EN: true, NUM_OF_VFS: 4}}]\n")
    first = lab.playbook(playbook)
    assert first.returncode == 0, first.stdout[-3000:]
    assert "changed=1" in first.stdout and "NUM_OF_VFS" in first.stdout and "-> 4" in first.stdout
    second = lab.playbook(playbook)
    assert second.returncode == 0 and "changed=0" in second.stdout, second.stdout[-3000:]
    assert "after the next boot" in " ".join(second.stdout.split())
    bad = lab.playbook(playbook, extra_vars={"firmware_devices": [{"device": "ib0", "settings": {"LINK_TYPE_P1": "VPI"}}]})
    assert bad.returncode != 0 and "not a port type of this card" in bad.stdout
