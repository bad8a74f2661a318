# -*- coding: utf-8 -*-
"""The ib_facts module: argument handling, errors and the result shape (main() called in-process)."""

from __future__ import annotations

import json
import os

import pytest

from ansible_collections.hpcnet.infiniband.plugins.modules import ib_facts
from ansible_collections.hpcnet.infiniband.plugins.module_utils import _facts
from testlib import run_module
from testlib import sysfs_builder as builder


@pytest.fixture
def mixed_tree(tmp_path):
    builder.cx3_dual_port_mixed(tmp_path / "sys")
    return str(tmp_path / "sys")


def test_facts_returned(mixed_tree, capsys):
    result = run_module(ib_facts, {"sysfs_root": mixed_tree}, capsys)
    assert result["_rc"] == 0
    assert result["changed"] is False
    facts = result["ansible_facts"]["ib_facts"]
    assert facts["schema"] == 1
    assert facts["source"] == "snapshot"
    assert facts["network_mode"] == "mixed"
    assert set(facts["nics"]) == {"eth0", "eth2", "ib0", "lo"}
    assert facts["nics"]["ib0"]["driver"] == "ib_ipoib"


def test_check_mode(mixed_tree, capsys):
    result = run_module(ib_facts, {"sysfs_root": mixed_tree}, capsys, check=True)
    assert result["_rc"] == 0 and result["changed"] is False
    assert "ib_facts" in result["ansible_facts"]


def test_interfaces_filter(mixed_tree, capsys):
    result = run_module(ib_facts, {"sysfs_root": mixed_tree, "interfaces": ["eth2"]}, capsys)
    assert result["_rc"] == 0
    facts = result["ansible_facts"]["ib_facts"]
    assert list(facts["nics"]) == ["eth2"]
    assert facts["network_mode"] == "ethernet"


def test_unknown_interface(mixed_tree, capsys):
    result = run_module(ib_facts, {"sysfs_root": mixed_tree, "interfaces": ["ib0", "ib7"]}, capsys)
    assert result["_rc"] == 1
    assert result["failed"] is True
    assert "ib7" in result["msg"]
    assert "known interfaces: eth0, eth2, ib0, lo" in result["msg"]
    assert "Traceback" not in json.dumps(result)


def test_invalid_interface_name(mixed_tree, capsys):
    result = run_module(ib_facts, {"sysfs_root": mixed_tree, "interfaces": ["../../etc"]}, capsys)
    assert result["_rc"] == 1
    assert "unknown interface" in result["msg"]


def test_missing_sysfs_root(tmp_path, capsys):
    result = run_module(ib_facts, {"sysfs_root": str(tmp_path / "missing")}, capsys)
    assert result["_rc"] == 1
    assert result["msg"] == "sysfs_root %s does not exist or is not a directory" % (tmp_path / "missing")


def test_not_a_sysfs_tree(tmp_path, capsys):
    (tmp_path / "capture" / "sys").mkdir(parents=True)
    result = run_module(ib_facts, {"sysfs_root": str(tmp_path / "capture")}, capsys)
    assert result["_rc"] == 1
    assert "is not a sysfs tree (no class/net directory)" in result["msg"]


def test_capture_top_folder_gets_a_hint(tmp_path, capsys):
    builder.cx3_dual_port_mixed(tmp_path / "capture" / "sys")
    result = run_module(ib_facts, {"sysfs_root": str(tmp_path / "capture")}, capsys)
    assert result["_rc"] == 1
    assert result["msg"].endswith("did you mean %s?" % (tmp_path / "capture" / "sys"))


def test_unknown_option(mixed_tree, capsys):
    result = run_module(ib_facts, {"sysfs_root": mixed_tree, "gather_subset": ["all"]}, capsys)
    assert result["_rc"] == 1
    assert "Unsupported parameters" in result["msg"]


def test_bad_interfaces_type(mixed_tree, capsys):
    result = run_module(ib_facts, {"sysfs_root": mixed_tree, "interfaces": {"a": 1}}, capsys)
    assert result["_rc"] == 1
    assert "interfaces" in result["msg"]


def test_tree_with_loops_does_not_fail(tmp_path, capsys):
    root = tmp_path / "sys"
    builder.cx3_dual_port_mixed(root)
    os.symlink("loopb", root / "class" / "net" / "loopa")
    os.symlink("loopa", root / "class" / "net" / "loopb")
    result = run_module(ib_facts, {"sysfs_root": str(root)}, capsys)
    assert result["_rc"] == 0
    facts = result["ansible_facts"]["ib_facts"]
    assert any("symlink loop" in w for w in facts["warnings"])


def test_documentation_matches_argument_spec():
    import yaml

    doc = yaml.safe_load(ib_facts.DOCUMENTATION)
    assert set(doc["options"]) == {"sysfs_root", "interfaces", "pkeys", "lean", "topology"}
    assert doc["options"]["lean"]["type"] == "bool" and doc["options"]["lean"]["default"] is True
    assert doc["options"]["topology"]["type"] == "bool" and doc["options"]["topology"]["default"] is False
    assert doc["options"]["pkeys"]["type"] == "str"
    assert doc["options"]["pkeys"]["default"] == "physical"
    assert doc["options"]["pkeys"]["choices"] == list(_facts.PKEYS_CHOICES)
    assert doc["options"]["sysfs_root"]["type"] == "path"
    assert doc["options"]["sysfs_root"]["default"] == "/sys"
    assert doc["options"]["interfaces"]["type"] == "list"
    assert doc["options"]["interfaces"]["elements"] == "str"
    yaml.safe_load(ib_facts.EXAMPLES)
    ret = yaml.safe_load(ib_facts.RETURN)
    assert "ib_facts" in ret["ansible_facts"]["contains"] and "topology" in ret


# ----------------------------------------------------------------------------- lean results (issue 13 item 3)
def test_lean_by_default_refers_to_devices(mixed_tree, capsys):
    facts = run_module(ib_facts, {"sysfs_root": mixed_tree}, capsys)["ansible_facts"]["ib_facts"]
    assert facts["lean"] is True
    ib = facts["nics"]["ib0"]["ib"]
    assert ib == {"device": "mlx4_0", "port": 1} and tuple(ib) == _facts.LEAN_IB_FIELDS
    port = _facts.port_of(facts, facts["nics"]["ib0"])
    assert port is facts["devices"]["mlx4_0"]["ports"]["1"] and port["pkeys"] == ["0xffff", "0x8002"]
    assert (port["state"], port["link_layer"]) == ("ACTIVE", "InfiniBand")
    # records do not repeat their key, nor the netdevs that nics[].ib name
    assert not {"name", "netdevs"} & set(facts["devices"]["mlx4_0"])
    assert not {"device", "port", "netdevs"} & set(port)
    # subnet_manager: what no port record says
    assert facts["subnet_manager"]["mlx4_0/1"] == {"sm_present": True, "sm_local": False}
    # loopback: a short record; physical netdevs keep every field
    assert tuple(facts["nics"]["lo"]) == _facts.SHORT_NIC_FIELDS
    assert facts["nics"]["lo"]["kind"] == "loopback"
    assert "sriov" in facts["nics"]["eth0"] and facts["nics"]["eth0"]["ib"] is None


def test_lean_false_gives_the_full_copy(mixed_tree, capsys):
    lean = run_module(ib_facts, {"sysfs_root": mixed_tree}, capsys)["ansible_facts"]["ib_facts"]
    full = run_module(ib_facts, {"sysfs_root": mixed_tree, "lean": False}, capsys)["ansible_facts"]["ib_facts"]
    assert full["lean"] is False
    assert full["nics"]["ib0"]["ib"]["pkeys"] == ["0xffff", "0x8002"] and "gid0" in full["nics"]["ib0"]["ib"]
    assert full["subnet_manager"]["mlx4_0/1"]["state"] == "ACTIVE"
    for name, nic in full["nics"].items():
        if nic["ib"]:
            assert lean["nics"][name]["ib"] == {"device": nic["ib"]["device"], "port": nic["ib"]["port"]}
    # expand() gives back the full form, short records aside
    expanded = _facts.expand(lean)
    short = [n for n, nic in lean["nics"].items() if tuple(nic) == _facts.SHORT_NIC_FIELDS]
    assert short and all(n in expanded["nics"] for n in short)
    for name in short:
        del expanded["nics"][name], full["nics"][name]
    assert expanded == full


def test_lean_result_is_smaller_on_many_netdevs(tmp_path, capsys):
    builder.many_netdevs(tmp_path / "sys", 64, vfs_per_pf=15, pkey_table_size=4)
    lean = run_module(ib_facts, {"sysfs_root": str(tmp_path / "sys")}, capsys)["ansible_facts"]["ib_facts"]
    full = run_module(ib_facts, {"sysfs_root": str(tmp_path / "sys"), "lean": False}, capsys)["ansible_facts"]["ib_facts"]

    def values(node):  # what a result's handling costs scales with (module and controller walk every value)
        if isinstance(node, dict):
            return 1 + sum(values(v) for v in node.values())
        if isinstance(node, list):
            return 1 + sum(values(v) for v in node)
        return 1

    assert values(lean) < 0.75 * values(full)
    assert values(lean["subnet_manager"]) < 0.3 * values(full["subnet_manager"])
    # one grouped sentence instead of 64
    assert lean["network_mode_reasons"] == ["ib0, ib0v0, ib0v1, ib0v10 and 60 more: mlx5_core[ib_ipoib] (IPoIB) -> infiniband"]
    assert len(full["network_mode_reasons"]) == 64
    assert _facts.expand(lean) == full


# ------------------------------------------------------------------ topology: the fabric in the facts call
def _with_tools(monkeypatch, answers, tools=("ibnetdiscover", "iblinkinfo")):
    """ib_facts' Host gets a runner with ``answers``; get_bin_path finds only ``tools``."""
    from ansible_collections.hpcnet.infiniband.plugins.module_utils._host import Host  # noqa: PLC0415
    from fakehost import FakeRunner  # noqa: PLC0415

    runner = FakeRunner(answers)
    monkeypatch.setattr(ib_facts.Host, "from_module", classmethod(
        lambda cls, module, sysfs_root="/sys", fs_root="/": Host(sysfs_root=sysfs_root, runner=runner, live=False)))
    monkeypatch.setattr(ib_facts.AnsibleModule, "get_bin_path",
                        lambda self, name, required=False, opt_dirs=None: name if name in tools else None)
    return runner


TOOL_OUTPUTS = os.path.join(os.path.dirname(__file__), "..", "..", "fixtures", "tool_outputs")


def _tool_output(name):
    with open(os.path.join(TOOL_OUTPUTS, name)) as handle:
        return handle.read()


def test_topology_mapped_in_the_facts_call_when_asked(mixed_tree, monkeypatch, capsys):
    runner = _with_tools(monkeypatch, {
        "ibnetdiscover": (0, _tool_output("ibnetdiscover-ibsim-2switch-degraded.txt"), ""),
        "iblinkinfo": (0, _tool_output("iblinkinfo-ibsim-2switch-degraded.txt"), "")})
    plain = run_module(ib_facts, {"sysfs_root": mixed_tree}, capsys)
    assert plain["topology"] is None and runner.calls == []  # not asked: no tool runs
    asked = run_module(ib_facts, {"sysfs_root": mixed_tree, "topology": True}, capsys)
    assert [call[0] for call in runner.calls] == ["ibnetdiscover", "iblinkinfo"]
    assert len(asked["topology"]["switches"]) == 2
    assert [row["host"] for row in asked["topology"]["hca_ports"] if row["degraded"]] == ["node2"]
    assert asked["ansible_facts"] == plain["ansible_facts"]  # the facts are the same either way


def test_topology_without_an_active_port_or_tools_is_null(tmp_path, mixed_tree, monkeypatch, capsys):
    runner = _with_tools(monkeypatch, {"ibnetdiscover": (1, "", "ibwarn: can't open UMAD port")})
    failed = run_module(ib_facts, {"sysfs_root": mixed_tree, "topology": True}, capsys)
    assert failed["_rc"] == 0 and failed["topology"] is None
    assert any("the fabric was not mapped from this node: ibnetdiscover failed (rc 1)" in str(w)
               for w in failed["warnings"]), failed["warnings"]
    _with_tools(monkeypatch, {}, tools=())
    missing = run_module(ib_facts, {"sysfs_root": mixed_tree, "topology": True}, capsys)
    assert missing["topology"] is None and any("ibnetdiscover not found" in str(w) for w in missing["warnings"])


def test_topology_from_a_node_without_an_active_infiniband_port_is_null_quietly(tmp_path, monkeypatch, capsys):
    # A node without an ACTIVE InfiniBand port (here: RoCE only) asks no tool and warns nothing.
    builder.sriov_pf_with_vfs(tmp_path / "roce", link_layer="Ethernet")
    runner = _with_tools(monkeypatch, {})
    quiet = run_module(ib_facts, {"sysfs_root": str(tmp_path / "roce"), "topology": True}, capsys)
    assert quiet["topology"] is None and runner.calls == [] and not quiet.get("warnings")
