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
