"""Profiles expand into kernel-formatted sysfs trees; captured profiles equal their real capture."""
import json
import os
import re
from pathlib import Path

import pytest
import testlib

from hw import fabric as F
from hw import profile as P
from hw.sysfs import SysfsModel

ALL = ["cx3-eipoib", "cx3-ipoib", "cx3-mixed", "cx5-ib-sriov", "cx5-roce", "plain-ethernet", "qib-ipoib"]

GUID_RE = re.compile(r"^[0-9a-f]{4}(:[0-9a-f]{4}){3}$")
GID_RE = re.compile(r"^[0-9a-f]{4}(:[0-9a-f]{4}){7}$")
STATE_RE = re.compile(r"^[1-5]: (DOWN|INIT|ARMED|ACTIVE|ACTIVE_DEFER)$")
RATE_RE = re.compile(r"^\d+(\.\d+)? Gb/sec \(\d+X [A-Z]+\)$")


def model(name, index=1, realsys=None):
    return SysfsModel(P.expand(P.load_profile(name), index, f"node{index}"), realsys=realsys)


def test_profile_list_is_complete():
    assert P.list_profiles() == ALL


@pytest.mark.parametrize("name", ALL)
def test_links_contract(name):
    out = P.links(P.load_profile(name), 1)
    assert out["management_interface"] == "eth0"
    kinds = {link["kind"] for link in out["links"]}
    assert kinds <= {"ib", "mgmt", "eth", "roce", "eipoib"}
    for link in out["links"]:
        assert len(link["name"]) <= 15 and isinstance(link["mtu"], int)
        if link["kind"] == "eipoib":
            assert link["parent"] in {x["name"] for x in out["links"] if x["kind"] == "ib"}
    for hca in out["hcas"]:
        assert GUID_RE.match(hca["node_guid"])
        for port in hca["ports"]:
            assert port["link_layer"] in ("InfiniBand", "Ethernet") and port["netdev"]


@pytest.mark.parametrize("name", ALL)
def test_per_node_values_are_unique(name):
    prof = P.load_profile(name)
    seen_guid, seen_mac = set(), set()
    for index in range(1, 65):
        out = P.links(prof, index)
        for hca in out["hcas"]:
            assert hca["node_guid"] not in seen_guid
            seen_guid.add(hca["node_guid"])
        for link in out["links"]:
            if link["mac"]:
                assert link["mac"] not in seen_mac
                seen_mac.add(link["mac"])


@pytest.mark.parametrize("name", ALL)
def test_kernel_formats(name):
    m = model(name, 3)

    def rd(path):
        return m.read(path).decode()
    for dev in m.listdir("class/infiniband") if m.lookup("class/infiniband") else []:
        base = f"class/infiniband/{dev}"
        assert GUID_RE.match(rd(f"{base}/node_guid").strip())
        assert rd(f"{base}/node_type") == "1: CA\n"
        for port in m.listdir(f"{base}/ports"):
            pdir = f"{base}/ports/{port}"
            assert STATE_RE.match(rd(f"{pdir}/state").strip())
            assert rd(f"{pdir}/phys_state").strip() in ("5: LinkUp", "2: Polling")
            assert RATE_RE.match(rd(f"{pdir}/rate").strip())
            assert re.match(r"^0x[0-9a-f]+$", rd(f"{pdir}/lid").strip())
            assert GID_RE.match(rd(f"{pdir}/gids/0").strip())
            if rd(f"{pdir}/link_layer").strip() == "InfiniBand":
                assert rd(f"{pdir}/pkeys/0") == "0xffff\n"
        assert m.readlink(f"{base}/device").startswith("../../../")
    for nd in m.listdir("class/net"):
        if nd == "eth_ipoib_interfaces":
            continue
        ndir = f"class/net/{nd}"
        typ = rd(f"{ndir}/type").strip()
        if typ == "32":
            assert rd(f"{ndir}/addr_len") == "20\n"
            addr = rd(f"{ndir}/address").strip().split(":")
            assert len(addr) == 20 and addr[4:6] == ["fe", "80"]
            assert rd(f"{ndir}/pkey") == "0xffff\n"
            assert rd(f"{ndir}/mode").strip() in ("datagram", "connected")
        else:
            assert typ == "1" and rd(f"{ndir}/addr_len") == "6\n"
        if nd.startswith("eth") and "eipoib" in name and nd != "eth0":
            continue
        dev = m.readlink(f"{ndir}/device")
        assert dev.startswith("../../../")
        assert re.match(r"^0x[0-9a-f]{4}$", rd(f"{ndir}/device/vendor").strip())
        assert os.path.basename(m.readlink(f"{ndir}/device/driver"))


WANTED = ("sys/class/net", "sys/class/infiniband", "/0000:82:00.0", "/0000:02:00.0", "/0000:43:00.0")


def _capture(tmp_path, prefix):
    # Only the members the comparison needs: extracting all ~11k entries takes a minute on 2 busy cores.
    def wanted(name):
        return any(w in name for w in WANTED) and "/counters" not in name and "/msi_irqs" not in name
    return Path(testlib.unpack_capture(testlib.capture_archive(prefix), tmp_path, keep=wanted))


CAPTURES = [
    ("cx3-ipoib", "32em64t", "mlx4_0", "ib0"),
    ("qib-ipoib", "40intel64", "qib0", "ib0"),
]


@pytest.mark.parametrize("name,prefix,ibdev,netdev", CAPTURES)
def test_node1_equals_real_capture(tmp_path, name, prefix, ibdev, netdev):
    sysdir = _capture(tmp_path, prefix)
    m = model(name, 1)
    netdev_attrs = ("type", "addr_len", "address", "broadcast", "mode", "pkey", "umcast", "mtu", "dev_id",
                    "features")
    ibdev_attrs = ("node_guid", "sys_image_guid", "hca_type", "board_id", "hw_rev", "node_type")
    port_attrs = ("link_layer", "rate", "cap_mask", "lid", "sm_lid", "sm_sl", "state", "phys_state", "gids/0",
                  "pkeys/0", "pkeys/1")
    pci_attrs = ("vendor", "device", "subsystem_vendor", "subsystem_device", "class", "numa_node",
                 "local_cpulist")
    same = [f"class/net/{netdev}/{a}" for a in netdev_attrs]
    same += [f"class/infiniband/{ibdev}/{a}" for a in ibdev_attrs]
    same += [f"class/infiniband/{ibdev}/ports/1/{a}" for a in port_attrs]
    same += [f"class/infiniband/{ibdev}/device/{a}" for a in pci_attrs]
    same += ["class/net/eth0/device/vendor", "class/net/eth0/device/device", "class/net/eth0/address"]
    for rel in same:
        assert m.read(rel).decode() == (sysdir / rel).read_text(), rel
    for rel in (f"class/net/{netdev}", f"class/infiniband/{ibdev}", "class/net/eth0", f"class/net/{netdev}/device"):
        assert m.readlink(rel) == os.readlink(sysdir / rel), rel
    assert os.path.basename(m.readlink(f"class/infiniband/{ibdev}/device/driver")) == \
        os.path.basename(os.readlink(sysdir / f"class/infiniband/{ibdev}/device/driver"))
    real_pkeys = len(os.listdir(sysdir / f"class/infiniband/{ibdev}/ports/1/pkeys"))
    real_gids = len(os.listdir(sysdir / f"class/infiniband/{ibdev}/ports/1/gids"))
    assert len(m.listdir(f"class/infiniband/{ibdev}/ports/1/pkeys")) == real_pkeys
    assert len(m.listdir(f"class/infiniband/{ibdev}/ports/1/gids")) == real_gids
    if fw := (sysdir / f"class/infiniband/{ibdev}/fw_ver"):
        if fw.exists():
            assert m.read(f"class/infiniband/{ibdev}/fw_ver").decode() == fw.read_text()


def test_eipoib_interfaces_file_and_ethtool():
    hw = P.expand(P.load_profile("cx3-eipoib"), 1, "node1")
    m = SysfsModel(hw)
    assert m.read("class/net/eth_ipoib_interfaces").decode() == \
        "eth1 over IB port: ib0\neth2 over IB port: ib1\n"
    assert hw.ethtool["eth1"]["driver"] == "eth_ipoib" and hw.ethtool["eth1"]["bus_info"] == "ib0"
    assert hw.ethtool["ib1"]["bus_info"] == "0000:04:00.0"
    assert m.read("class/net/ib1/dev_port") == b"1\n"


def test_cx5_ethtool_driver_is_mlx5_ipoib():
    hw = P.expand(P.load_profile("cx5-ib-sriov"), 1, "node1")
    assert hw.ethtool["ib0"]["driver"] == "mlx5_core[ib_ipoib]"
    table = P.ethtool_table(hw.ethtool)
    assert "ib0\tmlx5_core[ib_ipoib]\t-\t16.35.2000 (MT_0000000008)\t0000:5e:00.0\n" in table


def test_roce_gids_follow_mac():
    m = model("cx5-roce", 1)
    base = "class/infiniband/mlx5_0/ports/1"
    assert m.read(f"{base}/link_layer") == b"Ethernet\n"
    assert m.read(f"{base}/gids/0") == b"fe80:0000:0000:0000:0e42:a1ff:fe12:3450\n"
    assert m.read(f"{base}/gid_attrs/types/1") == b"RoCE v2\n"
    assert m.read(f"{base}/gid_attrs/ndevs/0") == b"enp94s0f0np0\n"
    with pytest.raises(OSError):
        m.read(f"{base}/gid_attrs/types/5")


def test_plain_ethernet_has_no_rdma():
    m = model("plain-ethernet", 1)
    assert m.lookup("class/infiniband") is None
    assert m.read("class/net/eth0/device/device") == b"0x0001\n"
    assert os.path.basename(m.readlink("class/net/eth0/device/driver")) == "virtio_net"


def test_loaded_modules():
    ofed = model("cx3-eipoib", 1)
    assert ofed.read("module/mlx4_core/version") == b"4.9-7.1.0\n"       # MLNX_OFED: version file
    assert ofed.read("module/eth_ipoib/initstate") == b"live\n"
    assert ofed.readlink("class/net/ib0/device/driver/module") == "../../../../module/mlx4_core"
    inbox = model("cx5-ib-sriov", 1)
    assert inbox.lookup("module/mlx5_core/version") is None               # inbox driver: no version file
    assert inbox.read("module/ib_ipoib/initstate") == b"live\n"
    assert model("cx5-roce", 1).lookup("module/ib_ipoib") is None


# ---------------------------------------------------------------- cx3-mixed: one IB port, one Ethernet port
def test_cx3_mixed_ports_as_mlx4_shows_them():
    """mlx4_core port_type_array=1,2: port 1 InfiniBand (ib0), port 2 Ethernet (mlx4_en, RoCE v1)."""
    m = model("cx3-mixed", 1)
    pci = "bus/pci/devices/0000:05:00.0"
    assert (m.read(f"{pci}/mlx4_port1"), m.read(f"{pci}/mlx4_port2")) == (b"ib\n", b"eth\n")
    assert m.read("module/mlx4_core/parameters/port_type_array") == b"1,2\n"
    assert m.read("module/mlx4_en/initstate") == b"live\n"
    base = "class/infiniband/mlx4_0/ports"
    assert m.read(f"{base}/1/link_layer") == b"InfiniBand\n"
    assert m.read(f"{base}/1/gids/0") == b"fe80:0000:0000:0000:0002:c903:00c5:d6e1\n"
    assert m.read(f"{base}/2/link_layer") == b"Ethernet\n"
    assert m.read(f"{base}/2/rate") == b"40 Gb/sec (4X QDR)\n"
    assert (m.read(f"{base}/2/lid"), m.read(f"{base}/2/sm_lid")) == (b"0x0\n", b"0x0\n")
    assert m.read(f"{base}/2/cap_mask") == b"0x00010000\n"
    assert m.listdir(f"{base}/2/pkeys") == ["0"] and m.read(f"{base}/2/pkeys/0") == b"0xffff\n"
    # RoCE GID 0 = fe80::EUI-64 of the mlx4_en netdev's MAC; a ConnectX-3 (not Pro) has RoCE v1 only.
    assert m.read("class/net/enp5s0d1/address") == b"00:02:c9:c5:d6:e2\n"
    assert m.read(f"{base}/2/gids/0") == b"fe80:0000:0000:0000:0202:c9ff:fec5:d6e2\n"
    assert m.read(f"{base}/2/gid_attrs/types/0") == b"IB/RoCE v1\n"
    assert m.read(f"{base}/2/gid_attrs/ndevs/0") == b"enp5s0d1\n"
    assert m.read(f"{base}/2/gids/1") == b"0000:0000:0000:0000:0000:0000:0000:0000\n"
    with pytest.raises(OSError):
        m.read(f"{base}/2/gid_attrs/types/1")
    # Both netdevs hang on the one PCI function; dev_port says which port (mlx4_en: port - 1).
    for netdev, dev_port in (("ib0", b"0\n"), ("enp5s0d1", b"1\n")):
        assert m.readlink(f"class/net/{netdev}/device") == "../../../0000:05:00.0"
        assert m.read(f"class/net/{netdev}/dev_port") == dev_port
    assert m.read("class/net/enp5s0d1/type") == b"1\n" and m.read("class/net/ib0/type") == b"32\n"


def test_cx3_mixed_ethtool_drivers():
    hw = P.expand(P.load_profile("cx3-mixed"), 1, "node1")
    table = P.ethtool_table(hw.ethtool)
    assert "ib0\tib_ipoib\t-\t2.42.5000\t0000:05:00.0\n" in table
    assert "enp5s0d1\tmlx4_en\t4.0-0\t2.42.5000\t0000:05:00.0\n" in table


def test_cx3_mixed_only_ib_port_on_fabric(tmp_path):
    """Port 1 goes on the ibsim fabric; the Ethernet port 2 does not (the HCA has one fabric port)."""
    hw = P.expand(P.load_profile("cx3-mixed"), 2, "node2")
    assert F.fabric_hcas(hw) == ["mlx4_0"]
    nodes = [{"name": f"node{i}", "index": i, "profile": p, "netns": f"ns{i}"}
             for i, p in enumerate(["cx3-ipoib", "cx3-mixed"], start=1)]
    (tmp_path / "lab.json").write_text(json.dumps({"name": "t", "fabric": {"netns": "fab", "address": "10.0.0.254"},
                                                   "nodes": nodes}))
    lab = F.Lab(str(tmp_path))
    ports = F.fabric_ports(lab)
    assert [(p["node"], p["hca"], p["port"], p["netdev"]) for p in ports] == [
        ("node1", "mlx4_0", 1, "ib0"), ("node2", "mlx4_0", 1, "ib0")]
    text = F.netfile(lab, ports)
    assert 'Hca 1 "node2-mlx4_0" # "node2 HCA-1"' in text
    assert '[3] "node2-mlx4_0"[1]' in text and '"node2-mlx4_0"[2]' not in text
    assert "caguid=0x0002c90300c5d7e0" in text
    links = P.links(P.load_profile("cx3-mixed"), 2)
    assert links["hcas"][0]["ports"] == [{"port": 1, "link_layer": "InfiniBand", "netdev": "ib0"},
                                         {"port": 2, "link_layer": "Ethernet", "netdev": "enp5s0d1"}]
    assert {link["name"]: link["kind"] for link in links["links"]} == {"ib0": "ib", "enp5s0d1": "roce",
                                                                       "eth0": "mgmt"}


def test_cx3_mixed_facts_say_mixed(tmp_path):
    """ib_facts' logic on the built tree: Fuel's rule says the node is mixed, naming both interfaces."""
    from ansible_collections.hpcnet.infiniband.plugins.module_utils import _facts  # noqa: PLC0415
    from ansible_collections.hpcnet.infiniband.plugins.module_utils._host import Host  # noqa: PLC0415
    hw = P.expand(P.load_profile("cx3-mixed"), 1, "node1")
    hw.tree.write_out(str(tmp_path / "sys"))
    for live in (False, True):
        host = Host(sysfs_root=str(tmp_path / "sys"), live=live, ethtool=hw.ethtool.get) if live else \
            Host(sysfs_root=str(tmp_path / "sys"), live=False)
        facts = _facts.gather(host)
        assert facts["warnings"] == []
        assert facts["network_mode"] == "mixed", facts["network_mode_reasons"]
        assert facts["network_mode_interfaces"] == {"infiniband": ["ib0"], "ethernet": ["enp5s0d1"]}
        reasons = "\n".join(facts["network_mode_reasons"])
        assert "ib0: ib_ipoib (IPoIB on mlx4_0 port 1) -> infiniband" in reasons
        assert "enp5s0d1: mlx4_en on mlx4_0 port 2 with Ethernet link layer (RoCE) -> ethernet" in reasons
        ib0, roce = facts["nics"]["ib0"], facts["nics"]["enp5s0d1"]
        assert (ib0["kind"], ib0["driver"], ib0["network_mode"]) == ("ipoib", "ib_ipoib", "infiniband")
        assert (ib0["ib"]["device"], ib0["ib"]["port"], ib0["ib"]["link_layer"]) == ("mlx4_0", 1, "InfiniBand")
        assert (roce["kind"], roce["driver"], roce["network_mode"]) == ("roce", "mlx4_en", "ethernet")
        assert (roce["ib"]["device"], roce["ib"]["port"], roce["ib"]["link_layer"]) == ("mlx4_0", 2, "Ethernet")
        assert roce["bus_info"] == ib0["bus_info"] == "0000:05:00.0"
        assert roce["driver_source"] == ("ethtool" if live else "inferred")
        assert facts["nics"]["eth0"]["network_mode"] is None
        # Only the InfiniBand port is a subnet-manager concern.
        assert list(facts["subnet_manager"]) == ["mlx4_0/1"]
        assert facts["subnet_manager"]["mlx4_0/1"]["netdevs"] == ["ib0"]
