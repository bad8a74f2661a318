"""Firmware settings (plugins/module_utils/_firmware.py) on recorded mstconfig outputs (real formats, see
tests/unit/fixtures/tool_outputs/README.md), and the ib_firmware module end to end against the lab's
mstconfig stand-in (lab/hw/mstconfig_shim.py): plan, check mode, apply, second run, reboot semantics."""
import importlib.util
import json
import os

import pytest

from ansible_collections.hpcnet.infiniband.plugins.module_utils import _firmware as F
from ansible_collections.hpcnet.infiniband.plugins.module_utils._host import Host
from ansible_collections.hpcnet.infiniband.plugins.modules import ib_firmware
from fakehost import FakeRunner, link, write_attr
from testlib import run_module

HERE = os.path.dirname(__file__)
FIXTURES = os.path.join(HERE, "..", "..", "fixtures", "tool_outputs")
SHIM_PATH = os.path.join(HERE, "..", "..", "..", "..", "lab", "hw", "mstconfig_shim.py")
PCI = "0000:5e:00.0"


def fixture(name):
    with open(os.path.join(FIXTURES, name), encoding="utf-8") as handle:
        return handle.read()


def load_shim():
    spec = importlib.util.spec_from_file_location("hpcnet_mstconfig_shim", SHIM_PATH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


shim = load_shim()


# --------------------------------------------------------------------------- parser
def test_parse_query_three_columns_stars_and_read_only():
    q = F.parse_query(fixture("mstconfig-cx5-e-q.txt"))
    assert (q["device_type"], q["name"], q["device"]) == ("ConnectX5", "MCX555A-ECA_Ax", PCI)
    assert q["columns"] == ["default", "current", "next_boot"]
    sriov = q["settings"]["SRIOV_EN"]
    assert (sriov["default"]["value"], sriov["current"]["value"], sriov["next_boot"]["value"]) == (0, 1, 1)
    assert sriov["modified"] and sriov["next_boot"]["text"] == "True(1)"
    assert q["settings"]["NUM_OF_VFS"]["next_boot"]["value"] == 16
    assert q["settings"]["LINK_TYPE_P1"]["current"] == {"text": "IB(1)", "value": 1, "label": "IB"}
    assert q["settings"]["PCI_DOWNSTREAM_PORT_OWNER"]["read_only"]
    assert q["settings"]["HOST_CHAINING_DESCRIPTORS"]["next_boot"]["value"] is None   # Array[0..7]
    assert "The" not in q["settings"]


def test_parse_query_next_boot_only_and_old_layout():
    q = F.parse_query(fixture("mstconfig-cx7-nextboot-q.txt"))
    assert q["columns"] == ["next_boot"] and q["device_type"] == "ConnectX7"
    assert q["settings"]["SRIOV_EN"] == {"modified": False, "read_only": False,
                                         "next_boot": {"text": "False(0)", "value": 0, "label": "False"}}
    assert q["settings"]["PCI_ATOMIC_MODE"]["next_boot"]["value"] == 0
    q = F.parse_query(fixture("mstconfig-cx3-e-q.txt"))
    assert q["settings"]["LINK_TYPE_P2"]["next_boot"]["value"] == 3 and q["name"] is None


def test_parse_value_forms():
    assert F.parse_value("ETH")["value"] == 2          # values printed without their number
    assert F.parse_value("N/A")["value"] is None
    assert F.parse_value("_256KB(1)") == {"text": "_256KB(1)", "value": 1, "label": "_256KB"}


def test_the_shim_prints_what_the_parser_reads(tmp_path):
    """The lab's stand-in and the real tool's recorded output parse the same way."""
    state = tmp_path / "state.json"
    shim.save(str(state), {"devices": {PCI: {"device_type": "ConnectX5", "name": "MCX555A-ECA_Ax",
                                             "description": "d", "max_vfs": 127, "link_types": [1, 2],
                                             "params": {"SRIOV_EN": {"default": 0, "current": 1, "next": 1},
                                                        "NUM_OF_VFS": {"default": 0, "current": 16, "next": 16},
                                                        "LINK_TYPE_P1": {"default": 1, "current": 1, "next": 1}}}}})
    rc, out, _err = shim.run(["-e", "-d", PCI, "q"], str(state))
    ours = F.summary(F.parse_query(out))
    real = F.summary(F.parse_query(fixture("mstconfig-cx5-e-q.txt")))
    assert rc == 0 and ours == real


# --------------------------------------------------------------------------- plan
def have_from(name, vendor="0x15b3", device="0x1017", vf=False):
    return {"card": {"pci_address": PCI, "vendor_id": vendor, "device_id": device, "model": "ConnectX-5", "vf": vf},
            "firmware": F.parse_query(fixture(name)), "tool": "mstconfig"}


def test_plan_only_what_differs_and_reboot_reason():
    plan = F.plan_firmware(have_from("mstconfig-cx5-e-q.txt"), {"SRIOV_EN": True, "num_of_vfs": 8, "LINK_TYPE_P1": "IB"})
    assert plan.ok and [c.as_dict() for c in plan.changes] == [
        {"action": "set_firmware", "target": "NUM_OF_VFS", "before": "16", "after": "8",
         "detail": {"pci": PCI, "value": 8}}]
    assert plan.reboot_required and "NUM_OF_VFS 16 -> 8" in plan.info["reboot_reason"]
    assert F.set_argv("mstconfig", PCI, plan) == ["mstconfig", "-y", "-d", PCI, "set", "NUM_OF_VFS=8"]
    plan = F.plan_firmware(have_from("mstconfig-cx5-e-q.txt"), {"SRIOV_EN": 1, "NUM_OF_VFS": "16"})
    assert plan.ok and not plan.changes and not plan.reboot_required


def test_pending_change_still_needs_the_reboot():
    plan = F.plan_firmware(have_from("mstconfig-cx5-pending-q.txt"), {"NUM_OF_VFS": 8, "LINK_TYPE_P1": "ETH"})
    assert plan.ok and not plan.changes and plan.reboot_required
    assert "NUM_OF_VFS is 16 now and 8 after the next boot" in plan.info["reboot_reason"]
    assert "LINK_TYPE_P1 is IB(1) now and ETH(2) after the next boot" in plan.info["reboot_reason"]


@pytest.mark.parametrize("settings, words", [
    ({"SRIOV_ENABLE": 1}, "unknown firmware setting 'SRIOV_ENABLE'"),
    ({"LINK_TYPE_P2": "IB"}, "has no LINK_TYPE_P2"),
    ({"LINK_TYPE_P1": "VPI"}, "LINK_TYPE_P1='VPI' is not a port type of this card (IB (1), ETH (2))"),
    ({"LINK_TYPE_P1": 7}, "not a port type"),
    ({"NUM_OF_VFS": 128}, "NUM_OF_VFS=128 is above the card's maximum of 127 VFs"),
    ({"NUM_OF_VFS": -1}, "NUM_OF_VFS=-1 is not a number of VFs"),
    ({"SRIOV_EN": "maybe"}, "SRIOV_EN='maybe' is not a boolean"),
    ({"SRIOV_EN": False, "NUM_OF_VFS": 4}, "NUM_OF_VFS=4 needs SR-IOV enabled"),
])
def test_refusals(settings, words):
    plan = F.plan_firmware(have_from("mstconfig-cx5-e-q.txt"), settings)
    assert not plan.ok and not plan.changes
    assert words in plan.error_message()


def test_refusals_of_the_card():
    assert "not a Mellanox/NVIDIA card (PCI vendor 0x8086" in F.plan_firmware(
        have_from("mstconfig-cx5-e-q.txt", vendor="0x8086", device="0x1521"), {"SRIOV_EN": 1}).error_message()
    assert "virtual function" in F.plan_firmware(have_from("mstconfig-cx5-e-q.txt", vf=True), {}).error_message()
    no_tool = dict(have_from("mstconfig-cx5-e-q.txt"), firmware=None)
    assert "mstflint" in F.plan_firmware(no_tool, {"SRIOV_EN": 1}).error_message()
    plan = F.plan_firmware(have_from("mstconfig-cx5-e-q.txt"), {"NUM_OF_VFS": 32}, max_vfs=16)
    assert "above the card's maximum of 16 VFs" in plan.error_message()
    wanted = {"LINK_TYPE_P1": "VPI", "NUM_OF_VFS": 127, "SRIOV_EN": True}
    cx3 = F.plan_firmware(have_from("mstconfig-cx3-e-q.txt", device="0x1003"), wanted)
    assert "maximum of 126 VFs" in cx3.error_message()


# --------------------------------------------------------------------------- module, against the lab's stand-in
def make_sysfs(root, vendor="0x15b3", device="0x1017"):
    pdir = os.path.join(str(root), "devices", "pci0000:5d", PCI)
    write_attr(os.path.join(pdir, "vendor"), vendor)
    write_attr(os.path.join(pdir, "device"), device)
    link(os.path.join(str(root), "bus", "pci", "devices", PCI), pdir)
    link(os.path.join(str(root), "class", "net", "ib0", "device"), pdir)


class ShimRunner(FakeRunner):
    def __init__(self, state):
        super().__init__()
        self.state = state

    def answer(self, argv):
        if os.path.basename(argv[0]) in ("mstconfig", "mlxconfig"):  # MFT's mlxconfig: the same command line
            return shim.run(argv[1:], self.state)
        return super().answer(argv)


@pytest.fixture
def card(tmp_path, monkeypatch):
    root = tmp_path / "sys"
    make_sysfs(root)
    state = str(tmp_path / "mstconfig.json")
    profile = {"pci_devices": [{"address": PCI, "firmware": {
        "device_type": "ConnectX5", "name": "MCX555A-ECA_Ax", "description": "d", "max_vfs": 127,
        "link_types": [1, 2], "settings": {"SRIOV_EN": 0, "NUM_OF_VFS": 0, "LINK_TYPE_P1": 1}}}]}
    shim.save(state, shim.initial_state(profile))
    runner = ShimRunner(state)
    monkeypatch.setattr(Host, "from_module", classmethod(
        lambda cls, module, sysfs_root="/sys", fs_root="/": Host(sysfs_root=str(root), runner=runner, live=True)))
    monkeypatch.setattr(ib_firmware.AnsibleModule, "get_bin_path",
                        lambda self, name, required=False, opt_dirs=None: "/usr/bin/mstconfig" if name == "mstconfig" else None)
    return {"root": root, "state": state, "runner": runner, "profile": profile}


def test_module_plan_check_apply_second_run_reboot(card, capsys):
    args = {"device": "ib0", "settings": {"SRIOV_EN": True, "NUM_OF_VFS": 8}}
    checked = run_module(ib_firmware, args, capsys, check=True, diff=True)
    assert checked["changed"] and [c["target"] for c in checked["plan"]] == ["SRIOV_EN", "NUM_OF_VFS"]
    assert checked["diff"][0]["before"] == "False(0)\n" and checked["diff"][0]["after"] == "True(1)\n"
    assert not [c for c in card["runner"].calls if "set" in c]                  # check mode sets nothing
    first = run_module(ib_firmware, args, capsys)
    assert first["changed"] and first["reboot_required"]
    assert ["/usr/bin/mstconfig", "-y", "-d", PCI, "set", "SRIOV_EN=1", "NUM_OF_VFS=8"] in card["runner"].calls
    assert first["firmware"]["settings"]["NUM_OF_VFS"] == {"default": "0", "current": "0", "next_boot": "8"}
    second = run_module(ib_firmware, args, capsys)
    assert not second["changed"] and second["reboot_required"]                # still waiting for the boot
    assert "NUM_OF_VFS is 0 now and 8 after the next boot" in second["reboot_reason"]
    booted = shim.boot(card["profile"], card["state"])                        # the node reboots
    assert booted["pci_devices"][0].get("sriov") is None                      # no template in this profile
    third = run_module(ib_firmware, args, capsys)
    assert not third["changed"] and not third["reboot_required"] and third["reboot_reason"] == ""


def test_module_refuses_before_any_write(card, capsys):
    before = json.loads(open(card["state"]).read())
    result = run_module(ib_firmware, {"device": PCI, "settings": {"NUM_OF_VFS": 500, "FOO": 1}}, capsys)
    assert result["failed"] and not result["changed"]
    assert "unknown firmware setting 'FOO'" in result["msg"] and "NUM_OF_VFS=500" in result["msg"]
    assert not [c for c in card["runner"].calls if "set" in c]
    assert json.loads(open(card["state"]).read()) == before


@pytest.mark.parametrize("settings, words", [
    ({"FOO": 1}, "unknown firmware setting 'FOO'"),
    ({"NUM_OF_VFS": 128}, "NUM_OF_VFS=128 is above the card's maximum of 127 VFs"),
    ({"LINK_TYPE_P1": "VPI"}, "LINK_TYPE_P1='VPI' is not a port type of this card (IB (1), ETH (2))"),
    ({"LINK_TYPE_P1": 4}, "LINK_TYPE_P1=4 is not a port type"),
    ({"LINK_TYPE_P2": "IB"}, "has no LINK_TYPE_P2"),
])
@pytest.mark.parametrize("check", [False, True])
def test_module_each_refusal_changes_nothing(card, capsys, settings, words, check):
    """Each refusal is decided from the query alone: changed false, no set, the card's state as it was."""
    before = json.loads(open(card["state"]).read())
    result = run_module(ib_firmware, {"device": "ib0", "settings": dict(settings, SRIOV_EN=True)}, capsys, check=check)
    assert result["failed"] and result["changed"] is False and words in result["msg"], result
    assert [c[1:] for c in card["runner"].calls] == [["-e", "-d", PCI, "q"]]   # the query only
    assert json.loads(open(card["state"]).read()) == before


def test_module_refuses_a_card_of_another_vendor_without_querying(card, capsys):
    write_attr(os.path.join(str(card["root"]), "devices", "pci0000:5d", PCI, "vendor"), "0x8086")
    result = run_module(ib_firmware, {"device": PCI, "settings": {"SRIOV_EN": 1}}, capsys)
    assert result["failed"] and result["changed"] is False and "PCI vendor 0x8086" in result["msg"]
    assert card["runner"].calls == []


def tools_present(monkeypatch, paths):
    monkeypatch.setattr(ib_firmware.AnsibleModule, "get_bin_path",
                        lambda self, name, required=False, opt_dirs=None: paths.get(name))


def test_module_uses_mlxconfig_when_mstconfig_is_missing(card, capsys, monkeypatch):
    tools_present(monkeypatch, {"mlxconfig": "/usr/bin/mlxconfig"})
    result = run_module(ib_firmware, {"device": "ib0", "settings": {"SRIOV_EN": True, "NUM_OF_VFS": 4}}, capsys)
    assert result["changed"] and result["firmware"]["tool"] == "/usr/bin/mlxconfig"
    assert card["runner"].calls == [["/usr/bin/mlxconfig", "-e", "-d", PCI, "q"],
                                    ["/usr/bin/mlxconfig", "-y", "-d", PCI, "set", "SRIOV_EN=1", "NUM_OF_VFS=4"],
                                    ["/usr/bin/mlxconfig", "-e", "-d", PCI, "q"]]


def test_module_tool_choice(card, capsys, monkeypatch):
    both = {"mstconfig": "/usr/bin/mstconfig", "mlxconfig": "/usr/bin/mlxconfig"}
    tools_present(monkeypatch, both)
    assert run_module(ib_firmware, {"device": "ib0"}, capsys)["firmware"]["tool"] == "/usr/bin/mstconfig"
    assert run_module(ib_firmware, {"device": "ib0", "tool": "mlxconfig"}, capsys)["firmware"]["tool"] == \
        "/usr/bin/mlxconfig"
    tools_present(monkeypatch, {})
    result = run_module(ib_firmware, {"device": "ib0", "settings": {"SRIOV_EN": True}}, capsys)
    assert result["failed"] and result["changed"] is False
    assert "neither mstconfig (Debian/EL package mstflint) nor mlxconfig (MFT) is installed" in result["msg"]


def test_module_bad_inputs(card, capsys):
    assert "timeout must be a positive" in run_module(ib_firmware, {"device": PCI, "timeout": -1}, capsys)["msg"]
    assert "neither a PCI address" in run_module(ib_firmware, {"device": "nope0"}, capsys)["msg"]


def test_boot_drives_totalvfs_and_link_layer(tmp_path):
    prof = {"pci_devices": [{"address": PCI, "sriov": {"totalvfs": 16, "vf_device": "1018"}, "firmware": {
        "device_type": "ConnectX5", "settings": {"SRIOV_EN": 1, "NUM_OF_VFS": 16, "LINK_TYPE_P1": 1}}}],
        "rdma_devices": [{"name": "mlx5_0", "pci": PCI, "ports": [{"port": 1, "link_layer": "InfiniBand"}]}]}
    state = str(tmp_path / "s.json")
    shim.save(state, shim.initial_state(prof))
    assert shim.run(["-y", "-d", PCI, "set", "NUM_OF_VFS=4", "LINK_TYPE_P1=ETH"], state)[0] == 0
    assert shim.boot(prof, state) is not prof
    booted = shim.boot(prof, state)
    assert booted["pci_devices"][0]["sriov"]["totalvfs"] == 4
    assert booted["rdma_devices"][0]["ports"][0]["link_layer"] == "Ethernet"
    assert prof["pci_devices"][0]["sriov"]["totalvfs"] == 16                   # the profile itself is untouched
    assert shim.run(["-y", "-d", PCI, "set", "SRIOV_EN=0"], state)[0] == 0
    assert "sriov" not in shim.boot(prof, state)["pci_devices"][0]
    assert shim.run(["-y", "-d", PCI, "set", "NUM_OF_VFS=999"], state)[0] == shim.EXIT_ERR
    assert shim.run(["-d", "0000:00:00.0", "q"], state)[0] == shim.EXIT_ERR


@pytest.mark.parametrize("profile, pci, device_type, sriov_files", [
    ("cx5-ib-sriov", PCI, "ConnectX5", True), ("cx5-roce", PCI, "ConnectX5", True),
    ("cx3-ipoib", "0000:82:00.0", "ConnectX3", False), ("cx3-eipoib", "0000:04:00.0", "ConnectX3", False),
    ("cx3-mixed", "0000:05:00.0", "ConnectX3", False)])
def test_lab_profiles_have_firmware(profile, pci, device_type, sriov_files, tmp_path):
    import yaml  # noqa: PLC0415 (the lab's profiles are YAML)
    with open(os.path.join(HERE, "..", "..", "..", "..", "lab", "profiles", profile + ".yml"), encoding="utf-8") as fh:
        prof = yaml.safe_load(fh)
    state = shim.initial_state(prof)
    assert state["devices"][pci]["device_type"] == device_type
    path = str(tmp_path / "s.json")
    shim.save(path, state)
    q = F.parse_query(shim.run(["-e", "-d", pci, "q"], path)[1])
    assert q["device_type"] == device_type and {"SRIOV_EN", "NUM_OF_VFS", "LINK_TYPE_P1"} <= set(q["settings"])
    # The first boot shows the profile as it is (firmware settings match the profile's sysfs).
    assert ("sriov" in shim.boot(prof, path)["pci_devices"][0]) == sriov_files
