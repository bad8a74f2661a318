"""The typed option model: coercion, every refusal with its message, render/parse line by line."""

import pytest

from ansible_collections.hpcnet.infiniband.plugins.module_utils import _modprobe as mp

CX3 = {"pci_address": "0000:82:00.0", "device_id": 0x1003, "model": "ConnectX-3", "family": "mlx4",
       "ports": 2, "link_layers": {"1": "InfiniBand", "2": "InfiniBand"}, "sriov_totalvfs": None}
CX3_1P = dict(CX3, ports=1, link_layers={"1": "InfiniBand"})
CX3_PRO_ETH = dict(CX3, device_id=0x1007, model="ConnectX-3 Pro",
                   link_layers={"1": "Ethernet", "2": "Ethernet"})
CX5 = {"pci_address": "0000:3b:00.0", "device_id": 0x1017, "model": "ConnectX-5", "family": "mlx5",
       "ports": 1, "link_layers": {"1": "InfiniBand"}, "sriov_totalvfs": 8}


def norm(options):
    canonical, errors = mp.normalize_options(options)
    assert errors == []
    return canonical


def errors_of(options, cards=(CX3,), stack="inbox", eipoib=False, modules=()):
    canonical, errors = mp.normalize_options(options)
    return errors + mp.validate(canonical, list(cards), stack, eipoib=eipoib, modules=list(modules))


# ------------------------------------------------------------------ coercion
def test_types_are_canonical():
    got = norm({"mlx4_core": {"port_type_array": ["ib", "eth"], "num_vfs": "4", "probe_vf": [1, 0, 2],
                              "enable_64b_cqe_eqe": "no", "log_num_mgm_entry_size": -1},
                "ib_ipoib": {"send_queue_size": 512, "recv_queue_size": "1024"}})
    assert got["mlx4_core"] == {"port_type_array": (1, 2), "num_vfs": (4,), "probe_vf": (1, 0, 2),
                                "enable_64b_cqe_eqe": False, "log_num_mgm_entry_size": -1}
    assert got["ib_ipoib"] == {"send_queue_size": 512, "recv_queue_size": 1024}


def test_string_arrays_as_mlx4_takes_them():
    got = norm({"mlx4_core": {"num_vfs": "2,2,4", "port_type_array": "1,2"}})
    assert got["mlx4_core"] == {"num_vfs": (2, 2, 4), "port_type_array": (1, 2)}


def test_dash_and_underscore_module_names_are_the_same():
    assert norm({"mlx4-core": {"msi_x": 1}}) == {"mlx4_core": {"msi_x": 1}}


@pytest.mark.parametrize("options, message", [
    ({"mlx4_core": {"num_vf": 4}},
     "mlx4_core has no option 'num_vf'; known options: debug_level, enable_4k_uar, enable_64b_cqe_eqe,"),
    ({"ib_umad": {"foo": 1}}, "ib_umad has no option 'foo'; known options: (none)"),
    ({"mlx9_core": {"x": 1}}, "no option model for kernel module mlx9_core; modules with options:"),
    ({"bad module": {}}, "'bad module' is not a kernel module name"),
    ({"mlx4_core": {"num_vfs": True}}, "mlx4_core option num_vfs: expected an integer, got a boolean (True)"),
    ({"mlx4_core": {"num_vfs": "four"}}, "mlx4_core option num_vfs: expected an integer, got 'four'"),
    ({"mlx4_core": {"num_vfs": [1, 2, 3, 4]}},
     "mlx4_core option num_vfs: expected N (VFs on both ports) or up to three numbers port1,port2,port1+2, got 4"),
    ({"mlx4_core": {"num_vfs": 300}}, "mlx4_core option num_vfs: 300 is above the maximum 255"),
    ({"mlx4_core": {"port_type_array": [1, 3]}},
     "mlx4_core option port_type_array: port 2 type 3 is not 1 (InfiniBand) or 2 (Ethernet)"),
    ({"mlx4_core": {"port_type_array": [1, 1, 1]}},
     "mlx4_core option port_type_array: mlx4 cards have 1 or 2 ports, got 3 values"),
    ({"mlx4_core": {"enable_64b_cqe_eqe": "maybe"}},
     "mlx4_core option enable_64b_cqe_eqe: expected a boolean (true/false, 1/0, Y/N), got 'maybe'"),
    ({"mlx4_core": {"log_num_mgm_entry_size": 13}}, "mlx4_core option log_num_mgm_entry_size: 13 is not allowed"),
    ({"mlx4_core": {"log_num_mgm_entry_size": 0}}, "mlx4_core option log_num_mgm_entry_size: 0 is not allowed"),
    ({"ib_ipoib": {"send_queue_size": 1000}},
     "ib_ipoib option send_queue_size: 1000 is not a power of two (the kernel would silently use 1024); write 1024"),
    ({"ib_ipoib": {"recv_queue_size": 16384}}, "ib_ipoib option recv_queue_size: 16384 is above the maximum 8192"),
    ({"ib_ipoib": {"recv_queue_size": 1}}, "ib_ipoib option recv_queue_size: 1 is below the minimum 2"),
    ({"mlx5_core": {"prof_sel": 3}}, "mlx5_core option prof_sel: 3 is above the maximum 2"),
    ({"mlx4_core": {"msi_x": None}}, "mlx4_core option msi_x: no value given"),
    ({"mlx4_core": "num_vfs=4"}, "options of mlx4_core must be a mapping of option: value"),
])
def test_type_refusals(options, message):
    canonical, errors = mp.normalize_options(options)
    assert len(errors) == 1, errors
    assert errors[0].startswith(message), errors[0]


def test_every_error_is_reported_not_just_the_first():
    _canonical, errors = mp.normalize_options({"mlx4_core": {"num_vf": 1, "msi_x": 5}, "ib_ipoib": {"x": 1}})
    assert len(errors) == 3


# ------------------------------------------------------------------ host checks
def test_valid_cx3_configuration_passes():
    assert errors_of({"mlx4_core": {"port_type_array": [1, 1], "num_vfs": 8, "probe_vf": 2}}) == []


def test_port_type_array_length_against_card():
    assert errors_of({"mlx4_core": {"port_type_array": [1, 2]}}, cards=[CX3_1P]) == [
        "mlx4_core port_type_array has 2 values (1,2) but ConnectX-3 0000:82:00.0 has 1 port"]
    assert errors_of({"mlx4_core": {"port_type_array": [1]}}) == [
        "mlx4_core port_type_array has 1 value (1) but ConnectX-3 0000:82:00.0 has 2 ports"]


def test_port_type_array_without_mlx4_card():
    assert errors_of({"mlx4_core": {"port_type_array": [1]}}, cards=[CX5]) == [
        "mlx4_core port_type_array is set but no mlx4 (ConnectX-3 class) card was found; "
        "found: ConnectX-5 0000:3b:00.0 (mlx5)"]


def test_unknown_port_count_is_accepted():
    assert errors_of({"mlx4_core": {"port_type_array": [1, 1]}}, cards=[dict(CX3, ports=None, link_layers={})]) == []


def test_num_vfs_above_connectx3_limit():
    assert errors_of({"mlx4_core": {"num_vfs": 17}}) == [
        "mlx4_core num_vfs=17 asks for 17 VFs but ConnectX-3 0000:82:00.0 allows at most 16 (ConnectX-3 limit)"]
    assert errors_of({"mlx4_core": {"num_vfs": 16}}) == []


def test_num_vfs_connectx3_pro_and_driver_limit():
    pro = dict(CX3, device_id=0x1007, model="ConnectX-3 Pro")
    assert errors_of({"mlx4_core": {"num_vfs": 126}}, cards=[pro]) == []
    assert errors_of({"mlx4_core": {"num_vfs": 127}}, cards=[pro]) == [
        "mlx4_core num_vfs=127 asks for 127 VFs; mlx4_core supports at most 126"]


def test_firmware_totalvfs_wins():
    card = dict(CX3, device_id=0x1007, model="ConnectX-3 Pro", sriov_totalvfs=8)
    assert errors_of({"mlx4_core": {"num_vfs": 9}}, cards=[card]) == [
        "mlx4_core num_vfs=9 asks for 9 VFs but ConnectX-3 Pro 0000:82:00.0 allows at most 8 (firmware sriov_totalvfs)"]


def test_single_port_vfs_need_ethernet_ports():
    msg = errors_of({"mlx4_core": {"num_vfs": [2, 2, 0]}})
    assert len(msg) == 1 and "only when every port of the card is Ethernet" in msg[0]
    assert errors_of({"mlx4_core": {"num_vfs": [2, 2, 0], "port_type_array": [2, 2]}}) == []
    assert errors_of({"mlx4_core": {"num_vfs": [2, 2, 4]}}, cards=[CX3_PRO_ETH]) == []
    assert errors_of({"mlx4_core": {"num_vfs": [0, 0, 4]}}) == []  # dual-port VFs on IB ports


def test_probe_vf_above_num_vfs():
    assert errors_of({"mlx4_core": {"num_vfs": 2, "probe_vf": 3}}) == [
        "mlx4_core probe_vf asks the PF driver to probe 3 VFs but num_vfs creates only 2"]


def test_num_vfs_without_mlx4():
    assert errors_of({"mlx4_core": {"num_vfs": 2}}, cards=[]) == [
        "mlx4_core num_vfs=2 is set but no mlx4 (ConnectX-3 class) card was found; no RDMA card was found on this host"]


def test_mlnx_ofed_only_options_and_modules():
    assert errors_of({"ib_ipoib": {"ipoib_enhanced": False}}, cards=[CX5]) == [
        "ib_ipoib option ipoib_enhanced exists only in MLNX_OFED's ib_ipoib; this host runs the inbox stack"]
    assert errors_of({"ib_ipoib": {"ipoib_enhanced": False}}, cards=[CX5], stack="mlnx_ofed") == []
    assert errors_of({}, modules=["eth_ipoib"]) == [
        "kernel module eth_ipoib exists only in MLNX_OFED; this host runs the inbox stack"]


def test_eipoib_refusals():
    assert errors_of({}, eipoib=True, stack="mlnx_ofed") == []
    assert errors_of({}, eipoib=True, stack="inbox") == [
        "EIPoIB (eth_ipoib) needs MLNX_OFED; this host runs the inbox stack (eth_ipoib is not part of the kernel "
        "or rdma-core)"]
    assert errors_of({}, cards=[CX5], eipoib=True, stack="mlnx_ofed") == [
        "EIPoIB needs a ConnectX-3 or ConnectX-3 Pro (mlx4) card with an InfiniBand port; "
        "found: ConnectX-5 0000:3b:00.0 (mlx5)"]
    assert errors_of({"mlx4_core": {"port_type_array": [2, 2]}}, eipoib=True, stack="mlnx_ofed") == [
        "EIPoIB needs an InfiniBand port, but every port of ConnectX-3 0000:82:00.0 would be Ethernet "
        "(port_type_array=2,2)"]
    assert errors_of({}, cards=[CX3_PRO_ETH], eipoib=True, stack="mlnx_ofed") == [
        "EIPoIB needs an InfiniBand port, but every port of ConnectX-3 Pro 0000:82:00.0 would be Ethernet"]


# ------------------------------------------------------------------ render / parse
def test_render_options_file_line_by_line():
    values = norm({"mlx4_core": {"log_num_mgm_entry_size": -1, "num_vfs": [0, 0, 4], "port_type_array": ["ib", "ib"],
                                 "enable_64b_cqe_eqe": True, "probe_vf": 0}})["mlx4_core"]
    assert mp.render_options_file("mlx4_core", values).splitlines() == [
        "# Managed by hpcnet.infiniband (ib_kernel_modules): local changes are overwritten.",
        "options mlx4_core num_vfs=0,0,4",
        "options mlx4_core probe_vf=0",
        "options mlx4_core port_type_array=1,1",
        "options mlx4_core log_num_mgm_entry_size=-1",
        "options mlx4_core enable_64b_cqe_eqe=1",
    ]


def test_parse_roundtrip_and_foreign_syntax():
    values = norm({"ib_ipoib": {"send_queue_size": 512, "recv_queue_size": 256}})["ib_ipoib"]
    text = mp.render_options_file("ib_ipoib", values)
    expected = [("ib_ipoib", "send_queue_size", "512"), ("ib_ipoib", "recv_queue_size", "256")]
    assert mp.parse_modprobe_conf(text) == expected
    foreign = ("# mlnx\noptions mlx4-core port_type_array=2,2 \\\n  num_vfs=4\nblacklist mlx4_en\n"
               "install ib_ipoib /sbin/x\noptions mlx4_core debug_level\n")
    expected = [("mlx4_core", "port_type_array", "2,2"), ("mlx4_core", "num_vfs", "4"), ("mlx4_core", "debug_level", "")]
    assert mp.parse_modprobe_conf(foreign) == expected


def test_modules_load_render_parse():
    text = mp.render_modules_load(["ib_ipoib", "rdma-ucm"])
    assert text.splitlines()[1:] == ["ib_ipoib", "rdma_ucm"]
    assert mp.parse_modules_load(text + "; comment\n\n") == ["ib_ipoib", "rdma_ucm"]


def test_running_value_comparison():
    opt = mp.MODULES["mlx4_core"]["port_type_array"]
    assert mp.running_value_matches(opt, (1, 1), "1,1") is True
    assert mp.running_value_matches(opt, (1,), "1,0") is True
    assert mp.running_value_matches(opt, (2, 2), "1,1") is False
    assert mp.running_value_matches(mp.MODULES["mlx4_core"]["enable_64b_cqe_eqe"], True, "Y") is True
    assert mp.running_value_matches(mp.MODULES["ib_ipoib"]["send_queue_size"], 512, "128") is False
    assert mp.running_value_matches(mp.MODULES["ib_ipoib"]["send_queue_size"], 512, None) is None


# ------------------------------------------------------------------ initramfs probes (issue 12 item 3)
LSINITRAMFS = """kernel
usr/lib/modules/6.1.0-18-amd64/kernel/drivers/net/ethernet/mellanox/mlx4/mlx4_core.ko
usr/lib/modules/6.1.0-18-amd64/kernel/drivers/net/ethernet/mellanox/mlx5/core/mlx5_core.ko.xz
etc/modprobe.d/hpcnet-sriov-mlx4.conf
"""
LSINITRD = """Image: /boot/initramfs-5.14.0-362.el9.x86_64.img: 32M
-rw-r--r--   1 root root 123456 Jan  1 00:00 usr/lib/modules/5.14.0-362.el9.x86_64/kernel/drivers/infiniband/ulp/ipoib/ib_ipoib.ko.xz
lrwxrwxrwx   1 root root      7 Jan  1 00:00 lib -> usr/lib
"""


def _probe_host(tmp_path, os_release, listing, rc=0):
    from ansible_collections.hpcnet.infiniband.plugins.module_utils._host import Host
    from fakehost import FakeRunner

    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    if os_release is not None:
        (root / "etc/os-release").write_text(os_release)
    runner = FakeRunner({"uname": (0, "6.1.0-18-amd64\n", ""), "lsinitramfs": (rc, listing, ""),
                         "lsinitrd": (rc, listing, "")})
    return Host(sysfs_root=str(tmp_path), fs_root=str(root), runner=runner, live=False), runner


def _rebuilds(host, module):
    """Whether a changed options file of ``module`` asks for a rebuild (None: the image cannot be told)."""
    result, warning = mp.initramfs_rebuild(host, {module: "/etc/modprobe.d/hpcnet-%s.conf" % module})
    return None if warning else result["initramfs_rebuild"]


def test_initramfs_contains_debian(tmp_path):
    host, runner = _probe_host(tmp_path, 'ID=debian\nVERSION_ID="12"\n', LSINITRAMFS)
    assert {"mlx4_core", "mlx5_core"} <= mp.initramfs_modules(host)
    assert _rebuilds(host, "mlx4_core") is True
    assert _rebuilds(host, "mlx4-core") is True
    assert _rebuilds(host, "mlx5_core") is True
    assert _rebuilds(host, "ib_ipoib") is False
    assert ["lsinitramfs", "/boot/initrd.img-6.1.0-18-amd64"] in runner.calls
    assert mp.initramfs_rebuild_argv(host) == ["update-initramfs", "-u", "-k", "all"]


def test_initramfs_contains_el_and_ubuntu_like(tmp_path):
    host, runner = _probe_host(tmp_path, 'ID="rocky"\nID_LIKE="rhel centos fedora"\n', LSINITRD)
    assert _rebuilds(host, "ib_ipoib") is True
    assert _rebuilds(host, "mlx4_core") is False
    assert runner.calls[-1] == ["lsinitrd", "/boot/initramfs-6.1.0-18-amd64.img"]
    assert mp.initramfs_rebuild_argv(host) == ["dracut", "-f"]


def test_initramfs_unknown_is_none(tmp_path):
    host, _runner = _probe_host(tmp_path, "ID=arch\n", LSINITRAMFS)
    assert mp.initramfs_modules(host) is None and _rebuilds(host, "mlx4_core") is None
    assert mp.initramfs_rebuild_argv(host) is None
    host, runner = _probe_host(tmp_path / "x", "ID=ubuntu\nID_LIKE=debian\n", "", rc=1)  # no image
    assert mp.initramfs_modules(host) is None and _rebuilds(host, "mlx4_core") is None
    # A name that is no module name is never looked up (nor listed for).
    runner.calls.clear()
    assert mp.initramfs_rebuild(host, {"../../x": "/etc/x"}) == (
        {"initramfs_rebuild": False, "initramfs_reason": None, "initramfs_rebuild_argv": None}, None)
    assert runner.calls == []
