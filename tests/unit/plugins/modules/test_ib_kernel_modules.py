"""ib_kernel_modules and ib_ofed_info end to end on fixture trees: check mode, diff, idempotence,
refusals with nothing written, honest loading status."""

import json
import os

import pytest

from ansible_collections.hpcnet.infiniband.plugins.modules import ib_kernel_modules, ib_ofed_info
from ansible_collections.hpcnet.infiniband.plugins.module_utils._host import Host
from fakehost import snapshot
from ofedtree import FakeRunner, load_module_sysfs, make_card
from testlib import run_module


class Node:
    """A fixture host: sysfs and fs trees plus the fake runner the module's Host gets."""

    def __init__(self, tmp_path, available=(), ofed_version=None):
        self.sysfs = tmp_path / "sys"
        self.fs = tmp_path / "root"
        self.sysfs.mkdir()
        self.fs.mkdir()
        self.runner = FakeRunner(self.sysfs, available=available, ofed_version=ofed_version)

    def run(self, module, monkeypatch, capsys, check=False, diff=False, **args):
        runner = self.runner

        def from_module(_module, sysfs_root="/sys", fs_root="/"):
            return Host(sysfs_root=sysfs_root, fs_root=fs_root, runner=runner, live=False)

        monkeypatch.setattr(module.Host, "from_module", from_module)
        args = dict(args, sysfs_root=str(self.sysfs), fs_root=str(self.fs))
        return run_module(module, args, capsys, check=check, diff=diff)

    def file(self, path):
        with open(os.path.join(str(self.fs), path.lstrip("/"))) as handle:
            return handle.read()

    def exists(self, path):
        return os.path.exists(os.path.join(str(self.fs), path.lstrip("/")))


WANT = dict(
    modules=["mlx4_ib", "ib_ipoib", "ib_umad", "rdma_ucm"],
    options={"mlx4_core": {"port_type_array": ["ib", "ib"], "num_vfs": 8, "probe_vf": 0,
                           "log_num_mgm_entry_size": -1},
             "ib_ipoib": {"send_queue_size": 512, "recv_queue_size": 512}},
)


@pytest.fixture
def cx3(tmp_path):
    node = Node(tmp_path)
    make_card(node.sysfs)
    return node


def test_check_mode_changes_nothing_and_diff_shows_files(cx3, monkeypatch, capsys):
    before = snapshot(cx3.fs), snapshot(cx3.sysfs)
    result = cx3.run(ib_kernel_modules, monkeypatch, capsys, check=True, diff=True, **WANT)
    assert (snapshot(cx3.fs), snapshot(cx3.sysfs)) == before
    assert result["changed"] is True
    targets = [d["after_header"] for d in result["diff"]]
    assert targets == ["/etc/modprobe.d/hpcnet-ib_ipoib.conf", "/etc/modprobe.d/hpcnet-mlx4_core.conf",
                       "/etc/modules-load.d/hpcnet-infiniband.conf"]
    assert "options mlx4_core port_type_array=1,1\n" in result["diff"][1]["after"]
    assert result["diff"][1]["before"] == ""
    assert {m: e["status"] for m, e in result["modules"].items()} == {
        "mlx4_ib": "skipped_not_available", "ib_ipoib": "skipped_not_available",
        "ib_umad": "skipped_not_available", "rdma_ucm": "skipped_not_available", "mlx4_core": "options_only"}
    assert cx3.runner.loads() == []


def test_apply_renders_files_line_by_line_and_is_idempotent(cx3, monkeypatch, capsys):
    result = cx3.run(ib_kernel_modules, monkeypatch, capsys, **WANT)
    assert result["changed"] is True
    assert result["reboot_required"] is False and result["reload_required"] is False
    assert cx3.file("/etc/modprobe.d/hpcnet-mlx4_core.conf").splitlines() == [
        "# Managed by hpcnet.infiniband (ib_kernel_modules): local changes are overwritten.",
        "options mlx4_core num_vfs=8",
        "options mlx4_core probe_vf=0",
        "options mlx4_core port_type_array=1,1",
        "options mlx4_core log_num_mgm_entry_size=-1",
    ]
    assert cx3.file("/etc/modprobe.d/hpcnet-ib_ipoib.conf").splitlines()[1:] == [
        "options ib_ipoib send_queue_size=512", "options ib_ipoib recv_queue_size=512"]
    assert cx3.file("/etc/modules-load.d/hpcnet-infiniband.conf").splitlines()[1:] == [
        "mlx4_ib", "ib_ipoib", "ib_umad", "rdma_ucm"]
    mode = os.stat(os.path.join(str(cx3.fs), "etc/modprobe.d/hpcnet-mlx4_core.conf")).st_mode & 0o777
    assert mode == 0o644
    assert result["modules"]["ib_ipoib"]["status"] == "skipped_not_available"
    assert "not found" in result["modules"]["ib_ipoib"]["reason"]
    assert result["cards"][0]["model"] == "ConnectX-3" and result["cards"][0]["ports"] == 2
    again = cx3.run(ib_kernel_modules, monkeypatch, capsys, **WANT)
    assert again["changed"] is False and again["plan"] == []


def test_loading_is_real_and_reported(tmp_path, monkeypatch, capsys):
    node = Node(tmp_path, available=("ib_ipoib", "ib_umad"))
    make_card(node.sysfs)
    load_module_sysfs(node.sysfs, "ib_umad")
    result = node.run(ib_kernel_modules, monkeypatch, capsys, modules=["ib_ipoib", "ib_umad", "rdma_ucm"])
    assert {m: e["status"] for m, e in result["modules"].items()} == {
        "ib_ipoib": "loaded", "ib_umad": "already_loaded", "rdma_ucm": "skipped_not_available"}
    assert node.runner.loads() == [["modprobe", "ib_ipoib"]]
    again = node.run(ib_kernel_modules, monkeypatch, capsys, modules=["ib_ipoib", "ib_umad", "rdma_ucm"])
    assert again["changed"] is False
    assert again["modules"]["ib_ipoib"]["status"] == "already_loaded"


def test_check_mode_would_load(tmp_path, monkeypatch, capsys):
    node = Node(tmp_path, available=("ib_ipoib",))
    result = node.run(ib_kernel_modules, monkeypatch, capsys, check=True, modules=["ib_ipoib"], persist=False)
    assert result["changed"] is True and result["modules"]["ib_ipoib"]["status"] == "would_load"
    assert node.runner.loads() == []


def test_changed_options_of_loaded_modules(cx3, monkeypatch, capsys):
    load_module_sysfs(cx3.sysfs, "mlx4_core", parameters={"port_type_array": "1,1"})
    load_module_sysfs(cx3.sysfs, "ib_ipoib", parameters={"send_queue_size": "128"})
    result = cx3.run(ib_kernel_modules, monkeypatch, capsys, options={"mlx4_core": {"port_type_array": [1, 1]}})
    assert result["changed"] is True and result["reboot_required"] is False  # running value already 1,1
    result = cx3.run(ib_kernel_modules, monkeypatch, capsys, options={"mlx4_core": {"port_type_array": [2, 2]}})
    assert result["reboot_required"] is True and result["reload_required"] is False
    result = cx3.run(ib_kernel_modules, monkeypatch, capsys, options={"ib_ipoib": {"send_queue_size": 256}})
    assert result["reload_required"] is True and result["reboot_required"] is False


def test_empty_options_remove_our_file(cx3, monkeypatch, capsys):
    cx3.run(ib_kernel_modules, monkeypatch, capsys, options={"ib_ipoib": {"send_queue_size": 256}})
    assert cx3.exists("/etc/modprobe.d/hpcnet-ib_ipoib.conf")
    result = cx3.run(ib_kernel_modules, monkeypatch, capsys, options={"ib_ipoib": {}})
    assert result["plan"][0]["action"] == "remove_file"
    assert not cx3.exists("/etc/modprobe.d/hpcnet-ib_ipoib.conf")


def test_conflicting_foreign_options_warn(cx3, monkeypatch, capsys):
    os.makedirs(os.path.join(str(cx3.fs), "etc/modprobe.d"))
    with open(os.path.join(str(cx3.fs), "etc/modprobe.d/mlx4.conf"), "w") as handle:
        handle.write("options mlx4_core port_type_array=2,2\n")
    result = cx3.run(ib_kernel_modules, monkeypatch, capsys, options={"mlx4_core": {"port_type_array": [1, 1]}})
    assert "/etc/modprobe.d/mlx4.conf also sets mlx4_core port_type_array=2,2" in json.dumps(result["warnings"])


REFUSALS = [
    (dict(options={"mlx4_core": {"num_vf": 4}}), "mlx4_core has no option 'num_vf'"),
    (dict(options={"ib_ipoib": {"send_queue_size": "big"}}),
     "ib_ipoib option send_queue_size: expected an integer, got 'big'"),
    (dict(options={"mlx4_core": {"port_type_array": [1]}}),
     "mlx4_core port_type_array has 1 value (1) but ConnectX-3 0000:82:00.0 has 2 ports"),
    (dict(options={"mlx4_core": {"num_vfs": 32}}),
     "mlx4_core num_vfs=32 asks for 32 VFs but ConnectX-3 0000:82:00.0 allows at most 16 (ConnectX-3 limit)"),
    (dict(eipoib=True), "EIPoIB (eth_ipoib) needs MLNX_OFED; this host runs the inbox stack"),
    (dict(options={"ib_ipoib": {"ipoib_enhanced": False}}),
     "ib_ipoib option ipoib_enhanced exists only in MLNX_OFED's ib_ipoib"),
    (dict(openib_conf={"IPOIB_LOAD": True}), "/etc/infiniband/openib.conf is read by MLNX_OFED's openibd only"),
    (dict(stack="mlnx_ofed"), "the expected stack is mlnx_ofed but this host runs inbox"),
    (dict(modules=["ib_ipoib", "../evil"]), "'../evil' is not a kernel module name"),
]


@pytest.mark.parametrize("args, message", REFUSALS, ids=[m[:40] for _a, m in REFUSALS])
def test_refusals_write_nothing(cx3, monkeypatch, capsys, args, message):
    args = dict(WANT, **args) if "modules" not in args else args
    before = snapshot(cx3.fs), snapshot(cx3.sysfs)
    result = cx3.run(ib_kernel_modules, monkeypatch, capsys, **args)
    assert result["failed"] is True
    assert message in result["msg"], result["msg"]
    assert (snapshot(cx3.fs), snapshot(cx3.sysfs)) == before
    assert cx3.runner.loads() == []


def test_several_problems_in_one_message(cx3, monkeypatch, capsys):
    result = cx3.run(ib_kernel_modules, monkeypatch, capsys,
                     options={"mlx4_core": {"num_vfs": 32, "port_type_array": [1]}}, eipoib=True)
    assert result["msg"].startswith("3 problems, nothing was changed: ")
    assert len(result["errors"]) == 3


# ------------------------------------------------------------------ MLNX_OFED + EIPoIB
@pytest.fixture
def cx3_mlnx(tmp_path):
    node = Node(tmp_path, ofed_version="4.9-7.1.0.0")
    make_card(node.sysfs)
    os.makedirs(os.path.join(str(node.fs), "etc/infiniband"))
    with open(os.path.join(str(node.fs), "etc/infiniband/openib.conf"), "w") as handle:
        handle.write("# Start HCA driver upon boot\nONBOOT=yes\n# Load eIPoIB\nE_IPOIB_LOAD=no\nRUN_MLNX_TUNE=no\n")
    return node


def test_eipoib_on_mlnx_ofed(cx3_mlnx, monkeypatch, capsys):
    load_module_sysfs(cx3_mlnx.sysfs, "ib_core")  # a running stack: openibd must re-read openib.conf
    result = cx3_mlnx.run(ib_kernel_modules, monkeypatch, capsys, diff=True, modules=["ib_ipoib"], eipoib=True,
                          openib_conf={"SET_IPOIB_CM": "auto"})
    assert result["changed"] is True and result["reload_required"] is True
    assert cx3_mlnx.file("/etc/infiniband/openib.conf").splitlines() == [
        "# Start HCA driver upon boot", "ONBOOT=yes", "# Load eIPoIB", "E_IPOIB_LOAD=yes", "RUN_MLNX_TUNE=no",
        "SET_IPOIB_CM=auto"]
    assert cx3_mlnx.file("/etc/modules-load.d/hpcnet-infiniband.conf").splitlines()[1:] == ["ib_ipoib", "eth_ipoib"]
    assert result["stack"]["stack"] == "mlnx_ofed"
    again = cx3_mlnx.run(ib_kernel_modules, monkeypatch, capsys, modules=["ib_ipoib"], eipoib=True,
                         openib_conf={"SET_IPOIB_CM": "auto"})
    assert again["changed"] is False


def test_eipoib_refused_when_ports_become_ethernet(cx3_mlnx, monkeypatch, capsys):
    before = snapshot(cx3_mlnx.fs)
    result = cx3_mlnx.run(ib_kernel_modules, monkeypatch, capsys, eipoib=True,
                          options={"mlx4_core": {"port_type_array": ["eth", "eth"]}})
    assert result["msg"] == ("EIPoIB needs an InfiniBand port, but every port of ConnectX-3 0000:82:00.0 would be "
                             "Ethernet (port_type_array=2,2)")
    assert snapshot(cx3_mlnx.fs) == before


def test_eipoib_refused_on_connectx5(tmp_path, monkeypatch, capsys):
    node = Node(tmp_path, ofed_version="5.8-1.0.1.1")
    make_card(node.sysfs, pci="0000:3b:00.0", device="0x1017", driver="mlx5_core", ibdev="mlx5_0",
              link_layers=("InfiniBand",), totalvfs=8)
    result = node.run(ib_kernel_modules, monkeypatch, capsys, eipoib=True)
    assert result["msg"] == ("EIPoIB needs a ConnectX-3 or ConnectX-3 Pro (mlx4) card with an InfiniBand port; "
                             "found: ConnectX-5 0000:3b:00.0 (mlx5)")
    assert snapshot(node.fs) == {}


# ------------------------------------------------------------------ ib_ofed_info
def test_ofed_info_reports(cx3_mlnx, monkeypatch, capsys):
    load_module_sysfs(cx3_mlnx.sysfs, "mlx4_core", version="4.9-7.1.0", parameters={"port_type_array": "1,1"})
    load_module_sysfs(cx3_mlnx.sysfs, "ib_core", builtin=True)
    before = snapshot(cx3_mlnx.fs)
    result = cx3_mlnx.run(ib_ofed_info, monkeypatch, capsys)
    assert result["changed"] is False
    assert result["stack"]["stack"] == "mlnx_ofed" and result["stack"]["ofed_version"] == "4.9-7.1.0.0"
    assert result["loaded_modules"] == ["ib_core", "mlx4_core"]
    assert result["modules"]["mlx4_core"] == {"state": "loaded", "version": "4.9-7.1.0",
                                              "parameters": {"port_type_array": "1,1"}}
    assert result["openib_conf"] == {"ONBOOT": "yes", "E_IPOIB_LOAD": "no", "RUN_MLNX_TUNE": "no"}
    assert result["cards"][0]["vf_limit"] == 16
    assert snapshot(cx3_mlnx.fs) == before


def test_eipoib_false_never_creates_openib_conf(tmp_path, monkeypatch, capsys):
    node = Node(tmp_path, ofed_version="4.9-7.1.0.0")
    make_card(node.sysfs)
    result = node.run(ib_kernel_modules, monkeypatch, capsys, eipoib=False)
    assert result["changed"] is False and not node.exists("/etc/infiniband/openib.conf")


def test_eipoib_false_switches_existing_conf_off(cx3_mlnx, monkeypatch, capsys):
    cx3_mlnx.run(ib_kernel_modules, monkeypatch, capsys, eipoib=True)
    result = cx3_mlnx.run(ib_kernel_modules, monkeypatch, capsys, eipoib=False)
    assert result["changed"] is True and result["reload_required"] is False  # nothing of the stack is loaded
    assert "E_IPOIB_LOAD=no" in cx3_mlnx.file("/etc/infiniband/openib.conf").splitlines()


# ------------------------------------------------------------------ unknown module names (issue 10 item 17)
def test_misspelt_module_is_refused_naming_it(cx3, monkeypatch, capsys):
    before = snapshot(cx3.fs), snapshot(cx3.sysfs)
    result = cx3.run(ib_kernel_modules, monkeypatch, capsys, modules=["ib_ipiob", "ib_umad"])
    assert result["failed"] is True and result["changed"] is False
    assert "ib_ipiob" in result["msg"] and "allow_unknown" in result["msg"]
    assert "ib_umad" not in result["msg"]
    assert (snapshot(cx3.fs), snapshot(cx3.sysfs)) == before
    assert cx3.runner.loads() == []


def test_unknown_module_allowed_when_the_operator_expects_it(cx3, monkeypatch, capsys):
    result = cx3.run(ib_kernel_modules, monkeypatch, capsys, modules=["vendor_rdma"], allow_unknown=["vendor_rdma"])
    assert result.get("failed") is not True, result.get("msg")
    assert "vendor_rdma" in cx3.file("/etc/modules-load.d/hpcnet-infiniband.conf")


def _modules_dep(node, release, names):
    cx_dir = node.fs / "lib" / "modules" / release
    cx_dir.mkdir(parents=True)
    (cx_dir / "modules.dep").write_text("".join("kernel/drivers/x/%s.ko.zst: kernel/y.ko\n" % n for n in names))
    (cx_dir / "modules.builtin").write_text("kernel/drivers/z/builtin_rdma.ko\n")
    node.runner.answers["uname"] = (0, "%s\n" % release, "")


def test_module_known_to_the_host_is_accepted(cx3, monkeypatch, capsys):
    _modules_dep(cx3, "6.1.0-18-amd64", ["vendor-rdma", "other"])
    result = cx3.run(ib_kernel_modules, monkeypatch, capsys, modules=["vendor_rdma", "builtin_rdma"])
    assert result.get("failed") is not True, result.get("msg")
    result = cx3.run(ib_kernel_modules, monkeypatch, capsys, modules=["vendr_rdma"])
    assert result["failed"] is True and "vendr_rdma" in result["msg"] and "modules.dep" in result["msg"]


def test_loaded_or_findable_module_is_known(tmp_path, monkeypatch, capsys):
    node = Node(tmp_path, available=("vendor_rdma",))
    load_module_sysfs(node.sysfs, "vendor_loaded")
    result = node.run(ib_kernel_modules, monkeypatch, capsys, modules=["vendor_rdma", "vendor_loaded"])
    assert result.get("failed") is not True, result.get("msg")


def test_hca_modules_follow_the_cards(cx3, monkeypatch, capsys):
    result = cx3.run(ib_kernel_modules, monkeypatch, capsys, modules=["ib_umad"], hca_modules=True)
    assert set(result["modules"]) >= {"ib_umad", "mlx4_ib"}
    listed = cx3.file("/etc/modules-load.d/hpcnet-infiniband.conf").splitlines()[1:]
    assert listed[:2] == ["mlx4_ib", "ib_umad"]  # the HCA's driver loads before the modules above it


# ------------------------------------------------------------------ initramfs (issue 12 item 3)
class _ImageRunner(FakeRunner):
    """A Debian host whose initramfs lists ``image`` (module names), or cannot be listed (None)."""

    def __init__(self, sysfs, image):
        super().__init__(sysfs)
        self.image = image

    def answer(self, argv):
        if argv == ["uname", "-r"]:
            return 0, "6.1.0-18-amd64\n", ""
        if argv[0] == "lsinitramfs":
            if self.image is None:
                return 1, "", "lsinitramfs: /boot/initrd.img-6.1.0-18-amd64: No such file"
            return 0, "".join("usr/lib/modules/6.1.0-18-amd64/kernel/%s.ko\n" % m for m in self.image), ""
        return super().answer(argv)


def _imaged(tmp_path, image):
    node = Node(tmp_path)
    make_card(node.sysfs)
    node.runner = _ImageRunner(node.sysfs, image)
    (node.fs / "etc").mkdir()
    (node.fs / "etc/os-release").write_text("ID=debian\n")
    return node


def test_options_of_a_module_in_the_initramfs_ask_for_a_rebuild(tmp_path, monkeypatch, capsys):
    node = _imaged(tmp_path, ["drivers/net/ethernet/mellanox/mlx4/mlx4_core", "drivers/infiniband/ulp/ipoib/ib_ipoib"])
    before = snapshot(node.fs)
    checked = node.run(ib_kernel_modules, monkeypatch, capsys, check=True, diff=True, **WANT)
    assert snapshot(node.fs) == before
    assert checked["changed"] is True and checked["reboot_required"] is True
    assert checked["initramfs_rebuild"] is True
    assert checked["initramfs_rebuild_argv"] == ["update-initramfs", "-u", "-k", "all"]
    assert checked["initramfs_reason"] == (
        "ib_ipoib, mlx4_core are in the initramfs, which loads them at boot with the modprobe.d options copied "
        "into the image: /etc/modprobe.d/hpcnet-ib_ipoib.conf, /etc/modprobe.d/hpcnet-mlx4_core.conf changed, "
        "so the image must be rebuilt")
    assert [c for c in node.runner.calls if c[0] == "update-initramfs"] == []  # the role's handler rebuilds
    applied = node.run(ib_kernel_modules, monkeypatch, capsys, **WANT)
    assert applied["changed"] is True and applied["initramfs_rebuild"] is True
    node.runner.calls.clear()
    again = node.run(ib_kernel_modules, monkeypatch, capsys, **WANT)
    assert again["changed"] is False and again["initramfs_rebuild"] is False and again["reboot_required"] is False
    assert not [c for c in node.runner.calls if c[0] == "lsinitramfs"]  # nothing changed: the image is not listed


@pytest.mark.parametrize("image", [["drivers/ata/ahci"], None])
def test_options_of_modules_not_in_the_initramfs_need_no_rebuild(tmp_path, monkeypatch, capsys, image):
    node = _imaged(tmp_path, image)
    result = node.run(ib_kernel_modules, monkeypatch, capsys, check=True, **WANT)
    assert result["changed"] is True and result["reboot_required"] is False
    assert result["initramfs_rebuild"] is False and result["initramfs_reason"] is None
    # An image that cannot be listed is said, naming the files to rebuild it for.
    warned = [w for w in result.get("warnings", []) if "cannot tell whether the initramfs contains" in str(w)]
    assert bool(warned) is (image is None), result.get("warnings")


def test_refused_options_list_no_image(tmp_path, monkeypatch, capsys):
    node = _imaged(tmp_path, ["drivers/infiniband/ulp/ipoib/ib_ipoib"])
    result = node.run(ib_kernel_modules, monkeypatch, capsys, check=True,
                      options={"ib_ipoib": {"send_queue_size": 1000}})
    assert result["failed"] is True and result["changed"] is False and result["initramfs_rebuild"] is False
    assert not [c for c in node.runner.calls if c[0] == "lsinitramfs"]
