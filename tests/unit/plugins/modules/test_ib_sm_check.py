"""The ib_sm_check module end to end on sysfs fixture trees (no real sminfo is ever run)."""

import os

from ansible_collections.hpcnet.infiniband.plugins.module_utils._host import Host
from ansible_collections.hpcnet.infiniband.plugins.modules import ib_sm_check
from fakehost import FakeRunner, make_port, write_attr
from testlib import run_module

SMINFO_MASTER = (0, "sminfo: sm lid 1 sm guid 0x100003, activity count 65 priority 5 state 3 SMINFO_MASTER\n", "")
SMIR_TWO = (0, "".join(
    "SMInfoRecord dump:\n\t\tRID\n\t\tLID...................%d\n\t\tSMInfo dump:\n"
    "\t\tGUID..................0x%016x\n\t\tActCount..............1\n"
    "\t\tPriority..............%d\n\t\tSMState...............%d\n" % rec
    for rec in ((1, 0x100003, 5, 3), (4, 0x100005, 3, 2))), "")


class FlippingHost(Host):
    """A host whose port goes INIT -> ACTIVE after a few readings, like a port during an SM sweep."""

    def __init__(self, root, pdir, flip_after, runner=None):
        super().__init__(sysfs_root=str(root), fs_root=str(root), runner=runner, live=False)
        self.pdir = pdir
        self.flip_after = flip_after
        self.readings = 0

    def listdir(self, relpath):
        # Every reading of the host starts by listing the RDMA devices.
        if relpath == "class/infiniband":
            self.readings += 1
            if self.readings > self.flip_after:
                for name, value in (("state", "4: ACTIVE"), ("lid", "0x3"), ("sm_lid", "0x1")):
                    write_attr(os.path.join(self.pdir, name), value)
        return super().listdir(relpath)


def run_sm_check(monkeypatch, capsys, args, host):
    """ib_sm_check.main() with ``args`` on ``host``; the result (exit code in ``_rc``)."""
    monkeypatch.setattr(ib_sm_check.Host, "from_module", classmethod(lambda cls, module, **kw: host))
    return run_module(ib_sm_check, args, capsys)


def test_passes_and_reports_sm(tmp_path, monkeypatch, capsys):
    make_port(tmp_path, "mlx4_0", 1)
    make_port(tmp_path, "mlx4_1", 1, link_layer="Ethernet", state="DOWN", phys="Disabled")
    runner = FakeRunner({"sminfo": SMINFO_MASTER, "saquery": SMIR_TWO})
    host = Host(sysfs_root=str(tmp_path), fs_root=str(tmp_path), runner=runner, live=False)
    result = run_sm_check(monkeypatch, capsys, {"query_sm": "always"}, host)
    assert result["_rc"] == 0, result
    assert result["changed"] is False
    assert [(p["device"], p["port"], p["state"]) for p in result["ports"]] == [("mlx4_0", 1, "ACTIVE")]
    assert result["sm"]["guid_hex"] == "0x0000000000100003"
    assert result["sm"]["state"] == "MASTER" and result["sm"]["priority"] == 5 and result["sm"]["lid"] == 1
    assert result["msg"] == ("1 InfiniBand port(s) ACTIVE; master SM 0x0000000000100003 (LID 1, priority 5, "
                             "MASTER), 2 SMs in total")


def test_fails_with_all_ports_in_one_message(tmp_path, monkeypatch, capsys):
    make_port(tmp_path, "mlx4_0", 1, state="INIT", lid=0, sm_lid=0)
    make_port(tmp_path, "mlx4_0", 2, state="DOWN", phys="Polling", lid=0, sm_lid=0)
    host = Host(sysfs_root=str(tmp_path), fs_root=str(tmp_path), runner=FakeRunner(), live=False)
    result = run_sm_check(monkeypatch, capsys, {}, host)
    assert result["failed"] is True
    assert result["msg"] == (
        "2 subnet-manager problems: "
        "mlx4_0 port 1 is INIT (LinkUp): no subnet manager has configured it; start opensm on a node or the switch; "
        "mlx4_0 port 2 is DOWN (Polling): no link: check the cable and the switch port"
    )
    assert len(result["failed_ports"]) == 2
    assert result["sm"] is None


def test_local_sm_refused(tmp_path, monkeypatch, capsys):
    make_port(tmp_path, "mlx4_0", 1, lid=1, sm_lid=1, guid="0000:0000:0010:0003")
    runner = FakeRunner({"sminfo": SMINFO_MASTER, "saquery": (1, "", "")})
    host = Host(sysfs_root=str(tmp_path), fs_root=str(tmp_path), runner=runner, live=False)
    result = run_sm_check(monkeypatch, capsys, {"allow_local_sm": False}, host)
    assert result["failed"] is True
    assert result["msg"] == ("the master subnet manager 0x0000000000100003 runs on this host, "
                             "and allow_local_sm is false")
    assert result["ports"][0]["local_sm"] is True and result["sm"]["local"] is True


def test_wait_timeout_polls_until_active(tmp_path, monkeypatch, capsys):
    pdir = make_port(tmp_path, "mlx4_0", 1, state="INIT", lid=0, sm_lid=0)
    host = FlippingHost(tmp_path, pdir, flip_after=2, runner=FakeRunner())
    result = run_sm_check(monkeypatch, capsys, {"wait_timeout": 10, "poll_interval": 0.05}, host)
    assert result["_rc"] == 0, result
    assert result["attempts"] == 3
    assert result["ports"][0]["state"] == "ACTIVE"


def test_wait_timeout_expires(tmp_path, monkeypatch, capsys):
    make_port(tmp_path, "mlx4_0", 1, state="INIT", lid=0, sm_lid=0)
    host = Host(sysfs_root=str(tmp_path), fs_root=str(tmp_path), runner=FakeRunner(), live=False)
    result = run_sm_check(monkeypatch, capsys, {"wait_timeout": 1, "poll_interval": 0.3}, host)
    assert result["failed"] is True
    assert result["msg"].startswith("mlx4_0 port 1 is INIT (LinkUp)")
    assert result["attempts"] >= 3 and 0.9 <= result["waited"] <= 2.0


def test_bad_input_one_message(tmp_path, monkeypatch, capsys):
    host = Host(sysfs_root=str(tmp_path), fs_root=str(tmp_path), runner=FakeRunner(), live=False)
    result = run_sm_check(monkeypatch, capsys, {"sm_guid": "not-a-guid"}, host)
    assert result["failed"] is True
    assert result["msg"].startswith("sm_guid: GUID 'not-a-guid' is not a GUID (0x0002c90300a1b2c1, ")


def test_choices_are_enforced(tmp_path, monkeypatch, capsys):
    host = Host(sysfs_root=str(tmp_path), fs_root=str(tmp_path), runner=FakeRunner(), live=False)
    result = run_sm_check(monkeypatch, capsys, {"query_sm": "sometimes"}, host)
    assert result["failed"] is True and "query_sm" in result["msg"]


def test_documentation_matches_argument_spec():
    import yaml

    from ansible_collections.hpcnet.infiniband.plugins.doc_fragments.host import ModuleDocFragment

    doc = yaml.safe_load(ib_sm_check.DOCUMENTATION)["options"]
    doc.update(yaml.safe_load(ModuleDocFragment.DOCUMENTATION)["options"])  # the host seam's options
    spec = ib_sm_check.ARGUMENT_SPEC
    assert set(doc) == set(spec)
    for name, option in spec.items():
        assert doc[name]["type"] == option["type"], name
        assert doc[name].get("default") == option.get("default"), name
        assert doc[name].get("choices") == option.get("choices"), name
        assert doc[name].get("elements") == option.get("elements"), name
    yaml.safe_load(ib_sm_check.EXAMPLES)
    yaml.safe_load(ib_sm_check.RETURN)


def test_second_rail_without_sm_fails_naming_the_port(tmp_path, monkeypatch, capsys):
    """Two ports on two fabrics: sminfo is asked through each (it used to ask the default port only)."""
    make_port(tmp_path, "mlx5_0", 1)
    make_port(tmp_path, "mlx5_1", 1, guid="0002:c903:0001:0002")

    def sminfo(argv):
        if argv[1:] == ["-C", "mlx5_0", "-P", "1"]:
            return SMINFO_MASTER
        return 124, "", ""

    runner = FakeRunner({"sminfo": sminfo, "saquery": SMIR_TWO})
    host = Host(sysfs_root=str(tmp_path), fs_root=str(tmp_path), runner=runner, live=False)
    result = run_sm_check(monkeypatch, capsys, {"query_sm": "always", "sm_query_timeout": 5}, host)
    assert result["failed"] is True
    assert result["msg"] == ("mlx5_1 port 1: cannot verify the subnet manager (query_sm=always): "
                             "sminfo timed out after 5s: no subnet manager answers")
    assert [p["sm"]["state"] for p in result["ports"]] == ["MASTER", None]
    assert ["sminfo", "-C", "mlx5_1", "-P", "1"] in runner.calls


def test_node_without_infiniband_is_ok_at_once(tmp_path, monkeypatch, capsys):
    """cx5-roce / plain-ethernet nodes: reported at once, not failed (they stopped site.yml after 60 s)."""
    make_port(tmp_path, "mlx5_0", 1, link_layer="Ethernet")
    host = Host(sysfs_root=str(tmp_path), fs_root=str(tmp_path), runner=FakeRunner(), live=False)
    result = run_sm_check(monkeypatch, capsys, {"wait_timeout": 60}, host)
    assert result["_rc"] == 0 and result.get("failed") is not True, result
    assert result["msg"] == "no InfiniBand port: nothing for a subnet manager to serve"
    assert result["ports"] == [] and result["attempts"] == 1 and result["waited"] < 5
