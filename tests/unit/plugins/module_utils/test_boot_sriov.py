"""The boot path on a host that renames its interfaces (issue 12 items 1, 2 and 4): the state file as the
sriov role records it (PF by PCI address, the planned GUIDs), IPoIB entries on the renamed parent; at
power-on the boot path sets the VF count, gives each VF its GUIDs by unbind/set/rebind (the code of
ib_sriov), creates the P_Key child with its mode and MTU, then finds nothing to do; a VF in use is
refused before any write, at boot as at run time."""

import os

import pytest

from ansible_collections.hpcnet.infiniband.plugins.module_utils import _boot, _sriov
from fakehost import snapshot
from fakekernel import PF_PCI, FakeRunner, bind_vf, make_tree
from fakesriov import SriovKernelHost

RENAMED = "ibp94s0"
GUIDS = [{"node_guid": "0200:0000:0000:%04x" % (2 * i + 1), "port_guid": "0200:0000:0000:%04x" % (2 * i + 2)}
         for i in range(2)]
# sriov_boot_state's entry (roles/sriov) as roles/boot_state resolves it through ib_sriov's argument spec.
SRIOV = {"pf": PF_PCI, "num_vfs": 2, "force": False, "guid_policy": "explicit", "guids": GUIDS, "persist": False,
         "mlx4_options_path": "/etc/modprobe.d/hpcnet-sriov-mlx4.conf", "firmware_info": False, "timeout": 120,
         "sysfs_root": "/sys", "fs_root": "/"}
IPOIB = {"parent": RENAMED, "pkey": "0x8002", "membership": "full", "state": "present", "mode": "datagram",
         "mtu": 2044, "pkey_check": "warn", "timeout": 30, "sysfs_root": "/sys"}


@pytest.fixture
def renamed(tmp_path):
    """An mlx5 PF whose IPoIB netdev udev renamed to ibp94s0 (the kernel called it ib0 at its add event)."""
    sysfs = tmp_path / "sys"
    make_tree(sysfs, pf=RENAMED)
    root = tmp_path / "root"
    root.mkdir()
    runner = FakeRunner()
    return SriovKernelHost(sysfs, fs_root=root, runner=runner), runner, sysfs, root


def state():
    return _boot.parse_state(_boot.render_state([SRIOV], [IPOIB]))


def test_power_on_renamed_pf_vfs_guids_by_rebind_and_child_then_nothing(renamed):
    host, runner, _sysfs, root = renamed
    assert host.numvfs(RENAMED) == 0
    messages = []
    changes, problems = _boot.apply_state(host, state(), messages.append)
    assert problems == [] and changes > 0, messages
    assert host.numvfs(RENAMED) == 2
    # Each VF: unbound from mlx5_core, GUIDs set, bound again (the driver reads them at probe).
    vfs = sorted({address for _op, _driver, address in host.ops})
    assert len(vfs) == 2
    assert host.ops == [(op, "mlx5_core", vf) for vf in vfs for op in ("unbind", "bind")]
    set_guid = [c for c in runner.calls if c[:3] == ["ip", "link", "set"] and "vf" in c]
    assert [c[c.index("dev") + 1] for c in set_guid] == [RENAMED, RENAMED]
    assert runner.vf_guids[(RENAMED, 1)] == ("02:00:00:00:00:00:00:03", "02:00:00:00:00:00:00:04")
    for index in range(2):
        assert host.readlink_name("bus/pci/devices/%s/virtfn%d/driver" % (PF_PCI, index)) == "mlx5_core"
    # The P_Key child of the renamed parent, with its mode and MTU.
    assert host.read("class/net/%s.8002/mode" % RENAMED) == "datagram"
    assert host.read("class/net/%s.8002/mtu" % RENAMED) == "2044"
    assert any(m.startswith("sriov %s: " % PF_PCI) and "set_vf_guid" in m for m in messages), messages
    assert not any("not present" in m for m in messages), messages
    assert not any(os.scandir(str(root)))  # the boot path writes no file
    # The next boot (or a second run) finds everything as wanted: no unbind, no write.
    host.ops.clear()
    messages = []
    assert _boot.apply_state(host, state(), messages.append) == (0, [])
    assert host.ops == [] and all("already as wanted" in m for m in messages), messages


@pytest.mark.parametrize("holder", ["addresses", "vfio"])
def test_vf_in_use_is_refused_at_boot_before_any_write(renamed, holder):
    """VFs that exist with other GUIDs (the unit started again by hand, or a VF count that survived) and one
    in use: the boot path refuses that PF, as ib_sriov does, and writes nothing; the IPoIB entry still runs."""
    host, runner, sysfs, _root = renamed
    _sriov.apply_sriov(host, _sriov.plan_sriov(_sriov.read_pf(host, PF_PCI),
                                               dict(_sriov.PARAM_DEFAULTS, pf=PF_PCI, num_vfs=2)))
    if holder == "addresses":
        netdev = os.path.join(str(sysfs), "class/net/%s_vf1" % RENAMED)
        with open(os.path.join(netdev, "flags"), "w") as handle:
            handle.write("0x1003\n")
        runner.addresses["%s_vf1" % RENAMED] = ["192.0.2.9/24"]
    else:
        bind_vf(sysfs, PF_PCI, 1, "vfio-pci")
    before = snapshot(sysfs)
    host.ops.clear()
    messages = []
    changes, problems = _boot.apply_state(host, _boot.parse_state(_boot.render_state([SRIOV], [])), messages.append)
    assert changes == 0 and len(problems) == 1, messages
    assert problems[0].startswith("sriov %s: refused: " % PF_PCI) and "VF 1 (" in problems[0]
    assert {"addresses": "192.0.2.9/24", "vfio": "vfio-pci"}[holder] in problems[0]
    assert host.ops == [] and not [c for c in runner.calls if c[:3] == ["ip", "link", "set"] and "vf" in c]
    assert snapshot(sysfs) == before
