"""Verifier of the ofed scenario: on every lab profile, the files the role rendered (line by line),
the module's honest loading status, check mode changing nothing, and every kind of invalid input
refused by a real (not check mode) run with no file changed.

Each host.ansible call is a full ad hoc Ansible run against the node over ssh.
"""

import json
import os

import pytest
import testinfra.utils.ansible_runner
from testinfra.modules.ansible import AnsibleException

testinfra_hosts = testinfra.utils.ansible_runner.AnsibleRunner(
    os.environ["MOLECULE_INVENTORY_FILE"]).get_hosts("lab_nodes")

HEADER = "# Managed by hpcnet.infiniband (ib_kernel_modules): local changes are overwritten."
MODULE = "hpcnet.infiniband.ib_kernel_modules"

# What the role must have written on each node (molecule.yml host_vars + role defaults).
EXPECTED = {
    "node1": {  # cx3-eipoib, MLNX_OFED stand-in, EIPoIB
        "/etc/modprobe.d/hpcnet-mlx4_core.conf": [
            HEADER, "options mlx4_core num_vfs=4", "options mlx4_core probe_vf=0",
            "options mlx4_core port_type_array=1,1", "options mlx4_core log_num_mgm_entry_size=-1"],
        "/etc/modprobe.d/hpcnet-ib_ipoib.conf": [
            HEADER, "options ib_ipoib send_queue_size=512", "options ib_ipoib recv_queue_size=512"],
        "/etc/modules-load.d/hpcnet-infiniband.conf": [HEADER, "mlx4_ib", "ib_umad", "rdma_ucm", "ib_ipoib",
                                                       "eth_ipoib"],
        "/etc/infiniband/openib.conf": [
            "# Start HCA driver upon boot", "ONBOOT=yes", "", "# Node description", "NODE_DESC=$(hostname -s)", "",
            "# Load IPoIB", "IPOIB_LOAD=yes", "", "# Load eIPoIB", "E_IPOIB_LOAD=yes", "",
            "# Enable IPoIB Connected Mode", "SET_IPOIB_CM=no", "", "# Load MLX4 modules", "MLX4_LOAD=yes"],
    },
    "node2": {  # cx3-ipoib, one IB port, inbox
        "/etc/modprobe.d/hpcnet-mlx4_core.conf": [
            HEADER, "options mlx4_core num_vfs=8", "options mlx4_core port_type_array=1",
            "options mlx4_core enable_64b_cqe_eqe=1"],
        "/etc/modprobe.d/hpcnet-ib_ipoib.conf": [
            HEADER, "options ib_ipoib send_queue_size=256", "options ib_ipoib recv_queue_size=1024"],
        "/etc/modules-load.d/hpcnet-infiniband.conf": [HEADER, "mlx4_ib", "ib_umad", "rdma_ucm", "ib_ipoib"],
        "/etc/infiniband/openib.conf": None,
    },
    "node3": {  # cx5-ib-sriov
        "/etc/modprobe.d/hpcnet-mlx5_core.conf": [HEADER, "options mlx5_core prof_sel=2"],
        "/etc/modprobe.d/hpcnet-ib_ipoib.conf": [
            HEADER, "options ib_ipoib send_queue_size=512", "options ib_ipoib recv_queue_size=512"],
        "/etc/modules-load.d/hpcnet-infiniband.conf": [HEADER, "mlx5_ib", "ib_umad", "rdma_ucm", "ib_ipoib"],
    },
    "node4": {  # cx5-roce
        "/etc/modprobe.d/hpcnet-ib_ipoib.conf": None,
        "/etc/modules-load.d/hpcnet-infiniband.conf": [HEADER, "mlx5_ib", "ib_umad", "rdma_ucm"],
    },
    "node5": {  # qib-ipoib
        "/etc/modprobe.d/hpcnet-ib_ipoib.conf": [
            HEADER, "options ib_ipoib send_queue_size=512", "options ib_ipoib recv_queue_size=512"],
        "/etc/modules-load.d/hpcnet-infiniband.conf": [HEADER, "ib_umad", "rdma_ucm", "ib_ipoib"],
    },
    "node6": {  # plain-ethernet
        "/etc/modprobe.d/hpcnet-ib_ipoib.conf": None,
        "/etc/modules-load.d/hpcnet-infiniband.conf": [HEADER, "ib_umad"],
    },
}

_SNAPSHOT = r"""
import hashlib, json, os
out = {}
for top in ("/etc/modprobe.d", "/etc/modules-load.d", "/etc/infiniband"):
    for d, _dirs, files in os.walk(top):
        for f in files:
            p = os.path.join(d, f)
            st = os.stat(p)
            out[p] = [oct(st.st_mode), st.st_mtime_ns, hashlib.sha256(open(p, "rb").read()).hexdigest()]
print(json.dumps(out))
"""


def name(host):
    return host.ansible.get_variables()["inventory_hostname"]


def snapshot(host):
    return json.loads(host.check_output("/usr/bin/python3 -c %s", _SNAPSHOT))


def role_args(host):
    """The arguments the role gave ib_kernel_modules on this node."""
    variables = host.ansible.get_variables()
    me = variables["inventory_hostname"]
    modules = [line for line in EXPECTED[me]["/etc/modules-load.d/hpcnet-infiniband.conf"][1:] if line != "eth_ipoib"]
    return {"modules": modules, "options": variables.get("ofed_module_options", {}),
            "eipoib": variables.get("ofed_eipoib", False), "openib_conf": variables.get("ofed_openib_conf", {})}


def run_module(host, args, check):
    try:
        return host.ansible(MODULE, json.dumps(args), check=check)
    except AnsibleException as exc:
        return exc.result


def test_files_line_by_line(host):
    for path, lines in EXPECTED[name(host)].items():
        f = host.file(path)
        if lines is None:
            assert not f.exists, path
            continue
        assert f.exists, path
        assert f.mode == 0o644, path
        assert f.content_string.splitlines() == lines, path


def test_module_reports_loading_skipped_and_changes_nothing(host):
    before = snapshot(host)
    result = run_module(host, role_args(host), check=True)
    assert result.get("failed") is not True, result.get("msg")
    assert result["changed"] is False
    assert result["reboot_required"] is False and result["reload_required"] is False
    for module, entry in result["modules"].items():
        if entry["status"] == "options_only":
            continue
        # the lab kernel has no loadable modules: never reported as loaded
        assert entry["status"] == "skipped_not_available", (module, entry)
        assert "not found" in entry["reason"], entry["reason"]
    assert snapshot(host) == before


def test_check_mode_with_new_options_changes_nothing(host):
    before = snapshot(host)
    args = role_args(host)
    args["options"] = dict(args["options"], ib_ipoib={"send_queue_size": 2048, "recv_queue_size": 2048})
    result = run_module(host, args, check=True)
    assert result["changed"] is True
    assert [c["target"] for c in result["plan"]] == ["/etc/modprobe.d/hpcnet-ib_ipoib.conf"]
    assert "options ib_ipoib send_queue_size=2048\n" in result["plan"][0]["after"]
    assert snapshot(host) == before


REFUSALS = {
    "node1": [
        ({"eipoib": True, "options": {"mlx4_core": {"port_type_array": ["eth", "eth"]}}},
         "EIPoIB needs an InfiniBand port, but every port of ConnectX-3 0000:04:00.0 would be Ethernet"),
        ({"options": {"mlx4_core": {"port_type_array": [1, 1], "num_vfs": [2, 2, 0]}}},
         "which mlx4_core accepts only when every port of the card is Ethernet"),
    ],
    "node2": [
        ({"options": {"mlx4_core": {"num_vf": 4}}}, "mlx4_core has no option 'num_vf'"),
        ({"options": {"ib_ipoib": {"send_queue_size": "big"}}},
         "ib_ipoib option send_queue_size: expected an integer, got 'big'"),
        ({"options": {"ib_ipoib": {"send_queue_size": 1000}}}, "1000 is not a power of two"),
        ({"options": {"mlx4_core": {"port_type_array": [1, 1]}}},
         "mlx4_core port_type_array has 2 values (1,1) but ConnectX-3 0000:82:00.0 has 1 port"),
        ({"options": {"mlx4_core": {"num_vfs": 17}}}, "allows at most 16 (ConnectX-3 limit)"),
        ({"eipoib": True}, "EIPoIB (eth_ipoib) needs MLNX_OFED; this host runs the inbox stack"),
        ({"options": {"ib_ipoib": {"ipoib_enhanced": False}}}, "exists only in MLNX_OFED's ib_ipoib"),
        ({"stack": "mlnx_ofed"}, "the expected stack is mlnx_ofed but this host runs inbox"),
    ],
    "node3": [
        ({"options": {"mlx4_core": {"num_vfs": 4}}}, "no mlx4 (ConnectX-3 class) card was found; found: ConnectX-5"),
        ({"eipoib": True}, "EIPoIB needs a ConnectX-3 or ConnectX-3 Pro (mlx4) card with an InfiniBand port"),
    ],
}


def test_invalid_input_refused_nothing_changed(host):
    me = name(host)
    if me not in REFUSALS:
        pytest.skip("refusals are exercised on node1-node3")
    for extra, message in REFUSALS[me]:
        before = snapshot(host)
        args = dict(role_args(host), **extra)
        if "options" in extra:
            args["options"] = extra["options"]
        result = run_module(host, args, check=False)
        assert result.get("failed") is True, (extra, result.get("msg"))
        assert message in result["msg"], (extra, result["msg"])
        assert result["plan"] == [] or result["changed"] is False
        assert snapshot(host) == before, extra
