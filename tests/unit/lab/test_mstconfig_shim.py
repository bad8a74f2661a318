"""The lab's mstconfig stand-in (hw.mstconfig_shim) as the node hooks use it: install() puts it and the
firmware state into a node root, the installed copy runs as a command, boot() feeds the node's sysfs model
(what hw.fusefs serves) so that a reboot shows the new sriov_totalvfs and link_layer."""
import json
import os
import subprocess
import sys

from hw import mstconfig_shim as M
from hw import profile as P
from hw.sysfs import SysfsModel

PCI = "0000:5e:00.0"


def mstconfig(root, *args):
    env = dict(os.environ, HPCNET_MSTCONFIG_STATE=os.path.join(root, M.STATE_IN_NODE.lstrip("/")))
    return subprocess.run([sys.executable, os.path.join(root, M.SHIM_IN_NODE.lstrip("/")), *args],
                          capture_output=True, text=True, env=env, timeout=30, check=False)


def model(profile):
    return SysfsModel(P.expand(profile, 1, "node1"))


def test_install_set_reboot_cx5(tmp_path):
    root = str(tmp_path)
    state = M.install(root, P.resolve(P.load_profile("cx5-ib-sriov"), 1))
    assert os.access(os.path.join(root, M.SHIM_IN_NODE.lstrip("/")), os.X_OK)
    cp = mstconfig(root, "-e", "-d", PCI, "q")
    assert cp.returncode == 0 and "Device type:        ConnectX5" in cp.stdout and "Next Boot" in cp.stdout
    assert mstconfig(root, "-y", "-d", PCI, "set", "NUM_OF_VFS=8", "LINK_TYPE_P1=ETH").returncode == 0
    assert mstconfig(root, "-d", PCI, "set", "NUM_OF_VFS=4").returncode == M.EXIT_ERR     # no -y: aborted
    pdir = P.pci_path(P.load_profile("cx5-ib-sriov")["pci_devices"][0])
    # Before the reboot the sysfs is the profile's; install() again (a reboot's setup) keeps the state.
    M.install(root, P.resolve(P.load_profile("cx5-ib-sriov"), 1))
    assert json.load(open(state))["devices"][PCI]["params"]["NUM_OF_VFS"]["next"] == 8
    booted = model(M.boot(P.load_profile("cx5-ib-sriov"), state))
    assert booted.read(f"{pdir}/sriov_totalvfs") == b"8\n"
    assert booted.read("class/infiniband/mlx5_0/ports/1/link_layer") == b"Ethernet\n"
    assert "Current" in mstconfig(root, "-e", "-d", PCI, "q").stdout
    assert json.load(open(state))["devices"][PCI]["params"]["NUM_OF_VFS"]["current"] == 8


def test_sriov_enabled_on_a_connectx3(tmp_path):
    root = str(tmp_path)
    prof = P.load_profile("cx3-ipoib")
    state = M.install(root, P.resolve(prof, 1))
    pci = prof["pci_devices"][0]["address"]
    pdir = P.pci_path(prof["pci_devices"][0])
    assert "sriov" not in M.boot(prof, state)["pci_devices"][0]              # SR-IOV off in this card's firmware
    assert mstconfig(root, "-y", "-d", pci, "set", "SRIOV_EN=1", "NUM_OF_VFS=4").returncode == 0
    booted = M.boot(prof, state)
    assert booted["pci_devices"][0]["sriov"]["totalvfs"] == 4
    assert model(booted).read(f"{pdir}/sriov_totalvfs") == b"4\n"


def test_no_firmware_no_shim(tmp_path):
    assert M.install(str(tmp_path), P.resolve(P.load_profile("plain-ethernet"), 1)) is None
    assert not os.path.exists(os.path.join(str(tmp_path), M.SHIM_IN_NODE.lstrip("/")))
    assert M.boot({"pci_devices": []}, str(tmp_path / "missing.json")) == {"pci_devices": []}
