"""Fabric topology (plugins/module_utils/_topology.py) on recorded ibnetdiscover/iblinkinfo outputs.

Fixtures (tests/unit/fixtures/tool_outputs/, see README there): the lab's ibsim fabric (one switch, the
ibsim defaults: every link 4X SDR "could be" 12X QDR; two switches with node2's switch port narrowed to 4X)
and real iblinkinfo lines from an EDR fabric (Mellanox SB7700) with an FDR10 link.
"""
import os
import xml.etree.ElementTree as ET

from ansible_collections.hpcnet.infiniband.plugins.module_utils import _topology as T

FIXTURES = os.path.join(os.path.dirname(__file__), "..", "..", "fixtures", "tool_outputs")


def fixture(name):
    with open(os.path.join(FIXTURES, name), encoding="utf-8") as handle:
        return handle.read()


def two_switches():
    return T.build(fixture("ibnetdiscover-ibsim-2switch-degraded.txt"), fixture("iblinkinfo-ibsim-2switch-degraded.txt"))


def test_ibnetdiscover_switches_hcas_links():
    topo = T.parse_ibnetdiscover(fixture("ibnetdiscover-ibsim-2switch-degraded.txt"))
    assert sorted(s["name"] for s in topo["switches"].values()) == ["lab switch", "lab switch 2"]
    assert topo["switches"]["0x0000fab000000001"]["ports"] == 8
    assert {h["host"] for h in topo["hcas"].values()} == {"node1", "node2", "smhost"}
    # Every link once (seen from both ends in the file): 3 HCA links + the inter-switch link.
    assert len(topo["links"]) == 4
    isl = [l for l in topo["links"] if l["a"]["type"] == l["b"]["type"] == "switch"][0]
    assert (isl["a"]["port"], isl["b"]["port"], isl["width"], isl["speed"], isl["rate_gbps"]) == (8, 8, "12X", "HDR", 600.0)


def test_every_hca_port_maps_to_its_switch_port():
    rows = {r["host"]: r for r in two_switches()["hca_ports"]}
    assert (rows["node1"]["switch"], rows["node1"]["switch_port"], rows["node1"]["port_guid"]) == (
        "lab switch", 2, "0x98039b0300456c11")
    assert (rows["node2"]["switch"], rows["node2"]["switch_port"]) == ("lab switch 2", 2)
    assert T.port_link(two_switches(), "9803:9b03:0045:6c11")["switch_port"] == 2   # kernel GUID spelling
    assert T.port_link(two_switches(), "0x1") is None


def test_degraded_link_below_what_both_ends_support():
    topo = two_switches()
    rows = {r["host"]: r for r in topo["hca_ports"]}
    assert topo["expected"] == {"width": "12X", "speed": "HDR"}
    assert rows["node2"]["degraded"] and rows["node2"]["width"] == "4X"
    assert rows["node2"]["reasons"] == ["both ends support 12X, it runs 4X HDR", "width 4X below the expected 12X"]
    assert (rows["node2"]["expected"], rows["node1"]["expected"]) == ("12X HDR", "12X HDR")
    assert not rows["node1"]["degraded"] and not rows["smhost"]["degraded"]


def test_could_be_speed_named_and_state_merged():
    topo = T.build(fixture("ibnetdiscover-ibsim-1switch.txt"), fixture("iblinkinfo-ibsim-1switch.txt"))
    link = topo["links"][0]
    assert link["state"] == "Active" and link["phys_state"] == "LinkUp"
    assert link["could_be"] == "12X QDR" and link["degraded"]   # ibsim's defaults: 4X SDR on 12X QDR ports
    # Every link runs 4X SDR (so that is the fabric's usual), yet each should run what both ends support.
    assert topo["expected"] == {"width": "4X", "speed": "SDR"}
    assert {(r["width"], r["speed"], r["expected"]) for r in topo["hca_ports"]} == {("4X", "SDR", "12X QDR")}
    assert {r["host"] for r in topo["hca_ports"]} == {"node1", "node2", "smhost"}


def test_iblinkinfo_real_edr_and_fdr10_lines():
    records = T.parse_iblinkinfo(fixture("iblinkinfo-real-edr.txt"))
    cas = [r for r in records if r["node_type"] == "hca"]
    assert [(r["node_name"], r["port_guid"], r["width"], r["speed"], r["remote_port"]) for r in cas] == [
        ("n02 HCA-1", "0xec0d9a03003d62be", "4X", "EDR", 17), ("mgt mlx5_0", "0x248a070300928186", "4X", "EDR", 36)]
    switch = [r for r in records if r["node_type"] == "switch"]
    assert switch[0]["node_guid"] == "0x506b4b0300820910" and switch[0]["state"] == "Down"
    fdr10 = [r for r in records if r["speed"] == "FDR10"]
    assert fdr10 and fdr10[0]["width"] == "4X" and fdr10[0]["remote_name"] == "gpfs-a4-005-p HCA-1"


def test_expected_speed_given():
    topo = T.build(fixture("ibnetdiscover-ibsim-2switch-degraded.txt"), None, expect_width="4X", expect_speed="NDR")
    assert all(r["degraded"] for r in topo["hca_ports"])  # HDR is below NDR everywhere
    assert all("speed HDR below the expected NDR" in r["reasons"] for r in topo["hca_ports"])


def test_kernel_rate():
    assert T.parse_kernel_rate("100 Gb/sec (4X EDR)") == {"rate_gbps": 100.0, "width": "4X", "speed": "EDR"}
    assert T.parse_kernel_rate("10 Gb/sec (4X)") == {"rate_gbps": 10.0, "width": "4X", "speed": None}
    assert T.parse_kernel_rate("garbage")["rate_gbps"] is None
    assert T.rate_gbps("4X", "FDR") == 56.0 and T.rate_gbps("1X", "EDR") == 25.0 and T.rate_gbps(None, "EDR") is None


def test_garbage_is_no_topology():
    assert T.build("nonsense\n[1] \"x\"[2]\n", "CA: x\n junk")["links"] == []
    assert T.topology_svg(None) == "" and T.topology_svg({}) == ""


def test_svg_draws_switches_hosts_and_red_degraded_links():
    svg = T.topology_svg(two_switches())
    root = ET.fromstring(svg)                      # well-formed XML
    ns = "{http://www.w3.org/2000/svg}"
    groups = {g.get("class"): [] for g in root.iter(ns + "g")}
    for g in root.iter(ns + "g"):
        groups[g.get("class")].append(g)
    assert len(groups["switch"]) == 2 and len(groups["hca"]) == 3
    assert len(groups["link"]) == 3 and len(groups["link degraded"]) == 1
    bad = groups["link degraded"][0]
    assert bad.find(ns + "line").get("stroke") == "#d0021b"
    assert "4X HDR" in "".join(bad.itertext())
    assert "12X HDR" in "".join(groups["link"][0].itertext())


def test_svg_escapes_names():
    topo = two_switches()
    next(iter(topo["hcas"].values()))["name"] = '<script>alert(1)</script> HCA-1'
    svg = T.topology_svg(topo)
    assert "<script>" not in svg and "&lt;script&gt;" in svg


def test_ib_topology_module(monkeypatch, capsys):
    from ansible_collections.hpcnet.infiniband.plugins.module_utils._host import Host  # noqa: PLC0415
    from ansible_collections.hpcnet.infiniband.plugins.modules import ib_topology  # noqa: PLC0415
    from fakehost import FakeRunner  # noqa: PLC0415
    from testlib import run_module  # noqa: PLC0415

    outputs = {"ibnetdiscover": fixture("ibnetdiscover-ibsim-2switch-degraded.txt"),
               "iblinkinfo": fixture("iblinkinfo-ibsim-2switch-degraded.txt")}
    runner = FakeRunner({name: (0, text, "") for name, text in outputs.items()})
    monkeypatch.setattr(Host, "from_module", classmethod(lambda cls, module, sysfs_root="/sys", fs_root="/": Host(
        runner=runner)))
    monkeypatch.setattr(ib_topology.AnsibleModule, "get_bin_path", lambda self, name, required=False, opt_dirs=None: name)
    result = run_module(ib_topology, {"device": "mlx5_0", "port": 1}, capsys)
    assert not result["changed"] and [r["host"] for r in result["degraded"]] == ["node2"]
    assert runner.calls == [["ibnetdiscover", "-C", "mlx5_0", "-P", "1"], ["iblinkinfo", "-C", "mlx5_0", "-P", "1"]]
    assert "timeout must be a positive" in run_module(ib_topology, {"timeout": 0}, capsys)["msg"]
    runner.answers["ibnetdiscover"] = (1, "", "ibwarn: mad_rpc_open_port: can't open UMAD port")
    assert "can't open UMAD port" in run_module(ib_topology, {}, capsys)["msg"]
