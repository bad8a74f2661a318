"""SR-IOV and IPoIB children on the lab (issue 5, "Done means").

Lab `sriov`: node1/node2 are ConnectX-5 (cx5-ib-sriov: sriov_totalvfs 16, the lab's /sys answers
sriov_numvfs writes like the kernel: N->M EBUSY, >16 ERANGE; VF GUIDs through mlx5's per-VF sysfs),
node3 is a ConnectX-3 (cx3-ipoib: mlx4, module options only). Every refusal is checked to leave the
node exactly as it was (a snapshot of the PF's sysfs, the VF drivers and GUIDs, our files, and the
netdev list, before and after).
"""

from __future__ import annotations

import textwrap
import time

import pytest

from conftest import run_module  # tests/integration/conftest.py

LAB_NAME = "sriov"
PROFILES = ["cx5-ib-sriov", "cx5-ib-sriov", "cx3-ipoib"]
PF = "/sys/bus/pci/devices/0000:5e:00.0"

SNAPSHOT = textwrap.dedent("""
    pf=$(readlink -f /sys/class/net/ib0/device)
    echo "numvfs $(cat $pf/sriov_numvfs 2>/dev/null)"
    ls $pf
    for vf in $pf/virtfn*; do [ -e "$vf" ] && echo "$vf -> $(readlink $vf) driver $(readlink $vf/driver)"; done
    cat $pf/sriov/*/node $pf/sriov/*/port 2>/dev/null
    ls /sys/class/net
    for f in /etc/udev/rules.d/70-hpcnet-sriov-* /etc/modprobe.d/hpcnet-sriov-*; do
      [ -e "$f" ] && { echo "== $f"; cat "$f"; }
    done
    true
""")


@pytest.fixture(scope="module")
def lab(lab_factory):
    started = time.monotonic()
    lab = lab_factory(LAB_NAME, nodes=3, profiles=PROFILES)
    print("lab %s up in %.1fs" % (LAB_NAME, time.monotonic() - started))
    return lab


def snapshot(lab, node):
    cp = lab.exec(node, ["sh", "-c", SNAPSHOT], check=True)
    return cp.stdout


def sriov(lab, node, check=False, **args):
    return run_module(lab, "hpcnet.infiniband.ib_sriov", node, args, check=check)[node]


def ipoib(lab, node, check=False, **args):
    return run_module(lab, "hpcnet.infiniband.ib_ipoib", node, args, check=check)[node]


def numvfs(lab, node):
    return int(lab.exec(node, ["cat", PF + "/sriov_numvfs"], check=True).stdout)


def test_check_mode_changes_nothing(lab):
    before = snapshot(lab, "node1")
    result = sriov(lab, "node1", check=True, pf="ib0", num_vfs=8, guid_policy="derived", persist=True)
    assert result["changed"] and not result.get("failed"), result
    assert result["plan"][0]["before"] == 0 and result["plan"][0]["after"] == 8
    assert len(result["vf_guids"]) == 8
    assert snapshot(lab, "node1") == before


def test_zero_to_eight_to_four_then_no_change(lab):
    result = sriov(lab, "node1", pf="ib0", num_vfs=8, guid_policy="derived", persist=True)
    assert result["changed"] and result["numvfs"] == 8, result
    assert numvfs(lab, "node1") == 8
    again = sriov(lab, "node1", pf="ib0", num_vfs=8, guid_policy="derived", persist=True)
    assert not again["changed"], again["plan"]
    result = sriov(lab, "node1", pf="ib0", num_vfs=4, guid_policy="derived", persist=True)
    assert result["changed"] and result["plan"][0]["detail"]["steps"] == [0, 4], result
    assert result["applied"][:2] == ["0000:5e:00.0/sriov_numvfs: 0", "0000:5e:00.0/sriov_numvfs: 4"]
    assert numvfs(lab, "node1") == 4
    assert not sriov(lab, "node1", pf="ib0", num_vfs=4, guid_policy="derived", persist=True)["changed"]


def test_refuses_more_than_the_firmware_cap(lab):
    before = snapshot(lab, "node1")
    result = sriov(lab, "node1", pf="ib0", num_vfs=32)
    assert result.get("failed"), result
    assert "sriov_totalvfs=16" in result["msg"] and "mstconfig -d 0000:5e:00.0 set SRIOV_EN=1 NUM_OF_VFS=32" in result["msg"]
    assert snapshot(lab, "node1") == before


def _make_vf_busy(lab, node, vf_address):
    """Bind the VF to another driver, as a VM host does with vfio-pci.

    The lab emulates bind/unbind for its profile's drivers only; vfio-pci is used when the profile has
    it, else igb (the profile's management NIC driver) stands in as "a driver that is not mlx5_core".
    """
    drivers = lab.exec(node, ["ls", "/sys/bus/pci/drivers"], check=True).stdout.split()
    other = "vfio-pci" if "vfio-pci" in drivers else "igb"
    script = ("[ \"$(basename \"$(readlink /sys/bus/pci/devices/%(vf)s/driver)\")\" != mlx5_core ] || "
              "echo %(vf)s > /sys/bus/pci/drivers/mlx5_core/unbind; "
              "[ -e /sys/bus/pci/devices/%(vf)s/driver ] || { "
              "echo %(drv)s > /sys/bus/pci/devices/%(vf)s/driver_override && "
              "echo %(vf)s > /sys/bus/pci/drivers/%(drv)s/bind; }" % {"vf": vf_address, "drv": other})
    lab.exec(node, ["sh", "-c", script], check=True)
    return other


def test_in_use_vf_blocks_resize_until_force(lab):
    if numvfs(lab, "node1") != 4:
        sriov(lab, "node1", pf="ib0", num_vfs=4, force=True)
    vf1 = lab.exec("node1", ["readlink", "-f", PF + "/virtfn1"], check=True).stdout.strip().rsplit("/", 1)[-1]
    driver = _make_vf_busy(lab, "node1", vf1)
    before = snapshot(lab, "node1")
    result = sriov(lab, "node1", pf="ib0", num_vfs=2, guid_policy="derived", persist=True)
    assert result.get("failed"), result
    assert "VF 1 (%s)" % vf1 in result["msg"] and driver in result["msg"] and "force" in result["msg"]
    assert snapshot(lab, "node1") == before
    check = sriov(lab, "node1", check=True, pf="ib0", num_vfs=2, guid_policy="derived", persist=True, force=True)
    assert check["changed"] and snapshot(lab, "node1") == before
    result = sriov(lab, "node1", pf="ib0", num_vfs=2, guid_policy="derived", persist=True, force=True)
    assert result["changed"] and result["numvfs"] == 2, result
    assert not sriov(lab, "node1", pf="ib0", num_vfs=2, guid_policy="derived", persist=True)["changed"]


PLAYBOOK = """
- name: SR-IOV through the role
  hosts: node1,node2
  gather_facts: false
  roles:
    - role: hpcnet.infiniband.sriov
"""


def test_role_guids_unique_across_two_nodes(lab, tmp_path):
    playbook = tmp_path / "sriov.yml"
    playbook.write_text(PLAYBOOK)
    # One pool for both nodes: the role must refuse before changing anything.
    before = {n: snapshot(lab, n) for n in ("node1", "node2")}
    cp = lab.playbook(playbook, extra_vars={"sriov_pfs": [{"pf": "ib0", "num_vfs": 3, "guid_policy": "pool",
                                                           "guid_pool_start": "0200:0000:0000:1000"}],
                                            "sriov_force": True})
    assert cp.returncode != 0 and "planned more than once" in cp.stdout, cp.stdout[-3000:]
    assert {n: snapshot(lab, n) for n in ("node1", "node2")} == before
    cp = lab.playbook(playbook, extra_vars={"sriov_pfs": [{"pf": "ib0", "num_vfs": 3}], "sriov_force": True})
    assert cp.returncode == 0, cp.stdout[-3000:]
    guids = []
    for node in ("node1", "node2"):
        out = lab.exec(node, ["sh", "-c", "cat %s/sriov/*/node %s/sriov/*/port" % (PF, PF)], check=True).stdout
        guids += out.split()
    assert len(guids) == 12 and len(set(guids)) == 12
    assert "00:00:00:00:00:00:00:00" not in guids
    cp = lab.playbook(playbook, extra_vars={"sriov_pfs": [{"pf": "ib0", "num_vfs": 3}]})
    assert cp.returncode == 0 and "changed=0" in cp.stdout, cp.stdout[-3000:]


def test_cx3_plans_mlx4_options(lab):
    before = snapshot(lab, "node3")
    check = sriov(lab, "node3", check=True, pf="ib0", num_vfs=4, mlx4_probe_vf=1)
    assert check["changed"] and check["reboot_required"] and snapshot(lab, "node3") == before, check
    result = sriov(lab, "node3", pf="ib0", num_vfs=4, mlx4_probe_vf=1)
    assert result["changed"] and result["reboot_required"], result
    assert result["pf"]["family"] == "mlx4"
    assert [c["action"] for c in result["plan"]] == ["write_file"]
    conf = lab.exec("node3", ["cat", "/etc/modprobe.d/hpcnet-sriov-mlx4.conf"], check=True).stdout
    assert "options mlx4_core num_vfs=4" in conf and "options mlx4_core probe_vf=1" in conf
    again = sriov(lab, "node3", pf="ib0", num_vfs=4, mlx4_probe_vf=1)
    assert not again["changed"], again
    # The cx3 profile shows neither sriov_numvfs nor mlx4_core's parameters: the module says it cannot tell.
    assert again["reboot_required"] or any("cannot tell" in w for w in again.get("warnings", []))


def test_pkey_children(lab):
    before = snapshot(lab, "node1")
    for bad in (0x8000, 0, 0xFFFF):
        result = ipoib(lab, "node1", parent="ib0", pkey=bad)
        assert result.get("failed"), (bad, result)
    assert snapshot(lab, "node1") == before
    assert ipoib(lab, "node1", check=True, parent="ib0", pkey="0x8002")["changed"]
    assert snapshot(lab, "node1") == before
    result = ipoib(lab, "node1", parent="ib0", pkey="0x0002")
    assert result["changed"] and result["interface"] == "ib0.8002", result
    assert lab.exec("node1", ["cat", "/sys/class/net/ib0.8002/pkey"], check=True).stdout.strip() == "0x8002"
    assert not ipoib(lab, "node1", parent="ib0", pkey="0x8002")["changed"]
    limited = ipoib(lab, "node1", parent="ib0", pkey="0x0003", membership="limited")
    assert limited["interface"] == "ib0.0003"
    # ConnectX-5 enhanced IPoIB has no connected mode: the MTU check happens first, then the kernel says no.
    assert "out of range" in ipoib(lab, "node1", parent="ib0", pkey="0x8002", mtu=9000)["msg"]
    for pkey in ("0x8002", "0x0003"):
        gone = ipoib(lab, "node1", parent="ib0", pkey=pkey, state="absent",
                     membership="limited" if pkey == "0x0003" else "full")
        assert gone["changed"], gone
    assert "ib0.8002" not in lab.exec("node1", ["ls", "/sys/class/net"], check=True).stdout
    # A child's MTU cannot exceed its parent's: the parent goes connected/65520 first (cx3: connected mode).
    parent = ipoib(lab, "node3", parent="ib0", mode="connected", mtu=65520)
    assert not parent.get("failed"), parent
    node3 = ipoib(lab, "node3", parent="ib0", pkey="0x8004", mode="connected", mtu=65520)
    assert node3["changed"] and node3["interface"] == "ib0.8004", node3
    assert not ipoib(lab, "node3", parent="ib0", pkey="0x8004", mode="connected", mtu=65520)["changed"]


def _vf_drivers_and_guids(lab, node):
    script = ("for vf in %s/virtfn*; do basename \"$(readlink $vf/driver)\"; done; "
              "cat %s/sriov/*/node %s/sriov/*/port" % (PF, PF, PF))
    return lab.exec(node, ["sh", "-c", script], check=True).stdout.split()


def test_vf_guids_unbind_set_rebind_and_in_use_refusal(lab):
    """Issue 12 item 2: new GUIDs take effect through unbind/set/bind; a VF in use is refused first."""
    sriov(lab, "node2", pf="ib0", num_vfs=2, force=True)
    result = sriov(lab, "node2", pf="ib0", num_vfs=2, guid_policy="pool", guid_pool_start="0x0200000000002000")
    assert result["changed"] and not result.get("failed"), result
    assert [c["action"] for c in result["plan"]] == ["unbind_vf", "set_vf_guid", "bind_vf"] * 2
    assert any("unbound" in a for a in result["applied"]) and any("bound 0000:" in a for a in result["applied"])
    state = _vf_drivers_and_guids(lab, "node2")
    assert state[:2] == ["mlx5_core", "mlx5_core"]
    assert "02:00:00:00:00:00:20:00" in state and "02:00:00:00:00:00:20:03" in state
    assert not sriov(lab, "node2", pf="ib0", num_vfs=2, guid_policy="pool", guid_pool_start="0x0200000000002000")["changed"]
    vf1 = lab.exec("node2", ["readlink", "-f", PF + "/virtfn1"], check=True).stdout.strip().rsplit("/", 1)[-1]
    driver = _make_vf_busy(lab, "node2", vf1)
    before = snapshot(lab, "node2")
    refused = sriov(lab, "node2", pf="ib0", num_vfs=2, guid_policy="pool", guid_pool_start="0x0200000000003000")
    assert refused.get("failed") and refused["changed"] is False and refused["plan"] == [], refused
    assert "VF 1 (%s)" % vf1 in refused["msg"] and driver in refused["msg"] and "unbinds and rebinds" in refused["msg"]
    assert snapshot(lab, "node2") == before


def test_mlx4_options_path_and_operator_file_refused(lab):
    """Issue 10 item 2: /etc/hostname is never planned; an operator's modprobe.d file is neither replaced nor removed."""
    lab.exec("node3", ["sh", "-c", "printf 'options mlx4_core num_vfs=2\\n' > /etc/modprobe.d/mlx4.conf"], check=True)
    before = snapshot(lab, "node3") + lab.exec("node3", ["cat", "/etc/hostname", "/etc/modprobe.d/mlx4.conf"]).stdout
    for path in ("/etc/hostname", "/etc/modprobe.d/mlx4.conf"):
        for num_vfs in (4, 0):
            result = sriov(lab, "node3", pf="ib0", num_vfs=num_vfs, mlx4_options_path=path)
            assert result.get("failed") and result["changed"] is False and path in result["msg"], result
    after = snapshot(lab, "node3") + lab.exec("node3", ["cat", "/etc/hostname", "/etc/modprobe.d/mlx4.conf"]).stdout
    assert after == before
    lab.exec("node3", ["rm", "-f", "/etc/modprobe.d/mlx4.conf"], check=True)
