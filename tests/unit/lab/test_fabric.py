"""Fabric file generation and portinfo parsing (hw.fabric), without ibsim."""
import json

from hw import fabric as F
from hw import profile as P

PORTINFO = """# Port info: DR path slid 65535; dlid 65535; 0,1,3 port 0
Lid:.............................4
SMLid:...........................1
LinkState:.......................Active
PhysLinkState:...................LinkUp
SMSL:............................0
"""


def _lab(tmp_path, profiles):
    nodes = [{"name": f"node{i}", "index": i, "profile": p, "netns": f"ns{i}"}
             for i, p in enumerate(profiles, start=1)]
    (tmp_path / "lab.json").write_text(json.dumps({"name": "t", "fabric": {"netns": "fab", "address": "10.0.0.254"},
                                                   "nodes": nodes}))
    return F.Lab(str(tmp_path))


def test_netfile_guids_equal_profiles(tmp_path):
    lab = _lab(tmp_path, ["cx3-ipoib", "cx3-eipoib", "cx5-roce", "qib-ipoib", "plain-ethernet"])
    ports = F.fabric_ports(lab)
    assert [(p["node"], p["hca"], p["port"]) for p in ports] == [
        ("node1", "mlx4_0", 1), ("node2", "mlx4_0", 1), ("node2", "mlx4_0", 2), ("node4", "qib0", 1)]
    text = F.netfile(lab, ports)
    for node, prof in (("node1", "cx3-ipoib"), ("node4", "qib-ipoib")):
        idx = int(node[-1])
        guid = P.links(P.load_profile(prof), idx)["hcas"][0]["node_guid"]
        assert f"caguid=0x{guid.replace(':', '')}" in text
    assert 'Hca 2 "node2-mlx4_0" # "node2 HCA-1"' in text
    assert '[2] "labsw"[4]' in text and '[4] "node2-mlx4_0"[2]' in text
    assert '[1] "smhost"[1]' in text


def test_parse_portinfo():
    assert F.parse_portinfo(PORTINFO) == {"state": "4: ACTIVE", "phys_state": "5: LinkUp", "lid": "0x4",
                                          "sm_lid": "0x1", "sm_sl": "0"}
    assert F.parse_portinfo(PORTINFO.replace("Active", "Initialize"))["state"] == "2: INIT"
    assert F.parse_portinfo("garbage") is None


# iblinkinfo from smhost on a 3-node lab (cx3-ipoib, cx5-ib-sriov, cx3-eipoib), node1 unlinked.
LINKINFO = """CA: node3 HCA-1:
      0x0002c90300a1b4c1      5    1[  ] ==( 4X           2.5 Gbps Active/  LinkUp)==>       2    4[  ] "lab switch" (Could be 12X Could be 10.0 Gbps)
      0x0002c90300a1b4c2      0    2[  ] ==( 4X           2.5 Gbps Initialize/  LinkUp)==>       2    5[  ] "lab switch" ( )
CA: node2 HCA-1:
      0x98039b0300456d11      3    1[  ] ==( 4X           2.5 Gbps Active/  LinkUp)==>       2    3[  ] "lab switch" (Could be 12X Could be 10.0 Gbps)
Switch: 0x0000fab000000000 lab switch:
           2    1[  ] ==( 4X           2.5 Gbps Active/  LinkUp)==>       1    1[  ] "smhost HCA-1" ( )
           2    2[  ] ==(                Down/ Polling)==>             [  ] "" ( )
           2    3[  ] ==( 4X           2.5 Gbps Active/  LinkUp)==>       3    1[  ] "node2 HCA-1" ( )
CA: smhost HCA-1:
      0x0000fab000000101      1    1[  ] ==( 4X           2.5 Gbps Active/  LinkUp)==>       2    1[  ] "lab switch" ( )
"""


def test_parse_linkinfo_ca_ports_by_switch_port():
    got = F.parse_linkinfo(LINKINFO)
    assert sorted(got) == [1, 3, 4, 5]                       # node1 (switch port 2) is not discovered
    assert got[4] == {"guid": 0x0002C90300A1B4C1, "port": 1, "state": "4: ACTIVE", "phys_state": "5: LinkUp",
                      "lid": "0x5"}
    assert got[5]["state"] == "2: INIT" and got[5]["lid"] == "0x0" and got[5]["port"] == 2
    assert F.parse_linkinfo("") == {}


def _lab3(tmp_path):
    lab = _lab(tmp_path, ["cx3-ipoib", "cx5-ib-sriov", "cx3-eipoib"])
    for i, node in enumerate(lab.info["nodes"], start=1):
        node["links"] = {"ib0": {"host_veth": f"h{i}d0"}, "ib1": {"host_veth": f"h{i}d1"}}
    return lab


def test_sync_round_writes_states_and_carriers(tmp_path, monkeypatch):
    lab = _lab3(tmp_path)
    ports = F.fabric_ports(lab)
    assert [(p["node"], p["netdev"], p["host_veth"]) for p in ports] == [
        ("node1", "ib0", "h1d0"), ("node2", "ib0", "h2d0"), ("node3", "ib0", "h3d0"), ("node3", "ib1", "h3d1")]
    monkeypatch.setattr(F, "query_fabric", lambda lab: (F.parse_linkinfo(LINKINFO), {"sm_lid": "0x1", "sm_sl": "0"}))
    last, sm_last, applied = {}, {}, {}
    F.sync_round(lab, ports, last, sm_last)
    state = json.loads((tmp_path / "nodes/node3/hw/fabric-state.json").read_text())["ports"]
    assert state["mlx4_0/1"] == {"state": "4: ACTIVE", "phys_state": "5: LinkUp", "lid": "0x5", "sm_lid": "0x1",
                                 "sm_sl": "0"}
    assert state["mlx4_0/2"]["state"] == "2: INIT" and state["mlx4_0/2"]["sm_lid"] == "0x0"
    node1 = json.loads((tmp_path / "nodes/node1/hw/fabric-state.json").read_text())["ports"]["mlx4_0/1"]
    assert node1["state"] == "1: DOWN" and node1["phys_state"] == "2: Polling"
    lines = F.carrier_changes(ports, last, applied)
    assert lines == ["link set dev h1d0 down", "link set dev h2d0 up", "link set dev h3d0 up",
                     "link set dev h3d1 down"]
    assert F.carrier_changes(ports, last, applied) == []         # only changes are applied
    # ibsim had no free client slot: keep what we knew, change nothing.
    monkeypatch.setattr(F, "query_fabric", lambda lab: ("busy", "busy"))
    F.sync_round(lab, ports, last, sm_last)
    assert json.loads((tmp_path / "nodes/node3/hw/fabric-state.json").read_text())["ports"] == state
    assert F.carrier_changes(ports, last, applied) == []


def test_known_ports_reads_fabric_json(tmp_path):
    lab = _lab3(tmp_path)
    ports = F.fabric_ports(lab)
    (tmp_path / "hw-fabric" / "fabric.json").write_text(json.dumps({"ports": ports}))
    assert F.known_ports(lab) == ports
    (tmp_path / "hw-fabric" / "fabric.json").write_text(json.dumps({"ports": [{"node": "x"}]}))
    assert F.known_ports(lab) == ports                           # old format: recomputed


def test_two_switches_alternate_and_degrade(tmp_path):
    """Issue 14: the lab's fabric has two switches (HCA ports alternate, one inter-switch link), every port
    trains at 12X HDR; `degrade` narrows one node's switch ports."""
    lab = _lab3(tmp_path)
    ports = F.fabric_ports(lab)
    assert [(p["node"], p["switch"], p["switch_port"]) for p in ports] == [
        ("node1", "labsw", 2), ("node2", "labsw2", 3), ("node3", "labsw", 4), ("node3", "labsw2", 5)]
    text = F.netfile(lab, ports)
    assert "width=11\nspeed=7\nextspeed=7\n" in text
    assert 'Switch 8 "labsw" # "lab switch"' in text and 'Switch 8 "labsw2" # "lab switch 2"' in text
    assert '[8] "labsw2"[8]' in text and '[8] "labsw"[8]' in text
    assert '[1] "labsw2"[3]' in text and '[3] "node2-mlx5_0"[1]\n' in text
    F.set_degraded(lab, "node2", "4x")
    assert F.degraded(lab) == {"node2": "4x"}
    assert '[3] "node2-mlx5_0"[1] w=2' in F.netfile(lab, ports, F.degraded(lab))
    F.set_degraded(lab, "node2", None)
    assert F.degraded(lab) == {}


def test_degrade_cli_needs_an_ib_node(tmp_path):
    lab = _lab3(tmp_path)
    assert F.main(["degrade", "nodeX", "--lab-dir", lab.dir]) == 1
