"""Stack detection, card detection (fixtures and a real ConnectX-3 capture), openib.conf, the plan."""

from ansible_collections.hpcnet.infiniband.plugins.module_utils import _ofed
from ansible_collections.hpcnet.infiniband.plugins.module_utils._host import Host
from ofedtree import FakeRunner, host, load_module_sysfs, make_card


# ------------------------------------------------------------------ stack
def test_inbox_when_nothing_says_mlnx(tmp_path):
    h = host(tmp_path, FakeRunner(tmp_path / "sys"))
    load_module_sysfs(tmp_path / "sys", "mlx5_core", version="5.0-0")
    stack = _ofed.detect_stack(h)
    assert stack["stack"] == "inbox"
    assert stack["module_versions"] == {"mlx5_core": "5.0-0"}


def test_mlnx_from_ofed_info(tmp_path):
    h = host(tmp_path, FakeRunner(tmp_path / "sys", ofed_version="5.8-1.0.1.1"))
    stack = _ofed.detect_stack(h)
    assert stack["stack"] == "mlnx_ofed"
    assert stack["ofed_version"] == "5.8-1.0.1.1"
    assert stack["evidence"] == ["ofed_info -s: MLNX_OFED_LINUX-5.8-1.0.1.1"]


def test_mlnx_from_module_version_without_commands(tmp_path):
    h = host(tmp_path)
    load_module_sysfs(tmp_path / "sys", "mlx4_core", version="4.9-7.1.0")
    stack = _ofed.detect_stack(h)
    assert stack["stack"] == "mlnx_ofed"
    assert stack["ofed_version"] is None
    assert "/sys/module/mlx4_core/version: 4.9-7.1.0 (MLNX_OFED release)" in stack["evidence"]


# ------------------------------------------------------------------ cards
def test_cards_from_fixture(tmp_path):
    make_card(tmp_path / "sys", link_layers=("InfiniBand", "Ethernet"))
    make_card(tmp_path / "sys", pci="0000:3b:00.0", device="0x1017", driver="mlx5_core", ibdev="mlx5_0",
              link_layers=("InfiniBand",), totalvfs=8)
    make_card(tmp_path / "sys", pci="0000:5e:00.0", device="0x1007", bound=False)
    cards = _ofed.detect_cards(host(tmp_path))
    assert [(c["pci_address"], c["model"], c["family"], c["ports"], c["driver"]) for c in cards] == [
        ("0000:3b:00.0", "ConnectX-5", "mlx5", 1, "mlx5_core"),
        ("0000:5e:00.0", "ConnectX-3 Pro", "mlx4", None, None),
        ("0000:82:00.0", "ConnectX-3", "mlx4", 2, "mlx4_core"),
    ]
    assert cards[2]["link_layers"] == {"1": "InfiniBand", "2": "Ethernet"}
    assert cards[0]["sriov_totalvfs"] == 8
    public = [_ofed.public_card(c) for c in cards]
    assert [(p["device_id"], p["vf_limit"], p["vf_limit_source"]) for p in public] == [
        ("0x1017", 8, "firmware sriov_totalvfs"), ("0x1007", 128, "ConnectX-3 Pro limit"),
        ("0x1003", 16, "ConnectX-3 limit")]


def test_cards_from_real_connectx3_capture(mlx4_capture, tmp_path):
    h = Host(sysfs_root=mlx4_capture, fs_root=str(tmp_path), live=False)
    cards = _ofed.detect_cards(h)
    assert len(cards) == 1
    card = cards[0]
    assert (card["pci_address"], card["model"], card["family"], card["ports"]) == ("0000:82:00.0", "ConnectX-3",
                                                                                   "mlx4", 1)
    assert card["link_layers"] == {"1": "InfiniBand"}
    assert card["rdma_devices"] == ["mlx4_0"]


def test_plan_on_real_capture_refuses_two_port_types(mlx4_capture, tmp_path):
    h = Host(sysfs_root=mlx4_capture, fs_root=str(tmp_path), live=False)
    have = _ofed.read_have(h, [], ["mlx4_core"])
    plan, _report = _ofed.plan_kernel_modules({"options": {"mlx4_core": {"port_type_array": [1, 1]}}}, have)
    assert plan.errors == ["mlx4_core port_type_array has 2 values (1,1) but ConnectX-3 0000:82:00.0 has 1 port"]
    plan, _report = _ofed.plan_kernel_modules({"options": {"mlx4_core": {"port_type_array": [1]}}}, have)
    assert plan.ok and [c.target for c in plan.changes] == ["/etc/modprobe.d/hpcnet-mlx4_core.conf"]


# ------------------------------------------------------------------ openib.conf
OPENIB = """# Start HCA driver upon boot
ONBOOT=yes

# Load IPoIB
IPOIB_LOAD=yes
# Load eIPoIB
E_IPOIB_LOAD=no
# E_IPOIB_LOAD=maybe (commented, stays)
SET_IPOIB_CM=auto"""


def test_openib_set_values_keeps_other_lines():
    text = _ofed.set_openib_values(OPENIB, {"E_IPOIB_LOAD": "yes", "RUN_SYSCTL": "no"})
    assert text.splitlines() == [
        "# Start HCA driver upon boot", "ONBOOT=yes", "", "# Load IPoIB", "IPOIB_LOAD=yes", "# Load eIPoIB",
        "E_IPOIB_LOAD=yes", "# E_IPOIB_LOAD=maybe (commented, stays)", "SET_IPOIB_CM=auto", "RUN_SYSCTL=no"]
    assert _ofed.parse_openib_conf(text)["E_IPOIB_LOAD"] == "yes"
    assert _ofed.set_openib_values(text, {"E_IPOIB_LOAD": "yes"}) == text


def test_openib_duplicates_all_rewritten():
    text = _ofed.set_openib_values("E_IPOIB_LOAD=no\nX=1\nE_IPOIB_LOAD=no\n", {"E_IPOIB_LOAD": "yes"})
    assert text == "E_IPOIB_LOAD=yes\nX=1\nE_IPOIB_LOAD=yes\n"


def test_openib_values():
    assert _ofed.openib_value(True) == "yes"
    assert _ofed.openib_value("auto") == "auto"
    assert _ofed.openib_value("a b") is None
    assert _ofed.openib_value("$(reboot)") is None
