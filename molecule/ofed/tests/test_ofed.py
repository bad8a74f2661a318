"""Verifier of the ofed scenario: on every lab profile, the files the role rendered (line by line),
the module's honest loading status, check mode changing nothing, and every kind of invalid input
refused by a real (not check mode) run with no file changed.

Every check's data comes from one ansible-playbook run (../verify_probe.yml) over all nodes: an ad hoc
Ansible run per check took ten minutes on the shared machine.
"""

import json
import os
import subprocess
import tempfile

import pytest
import testinfra.utils.ansible_runner

testinfra_hosts = testinfra.utils.ansible_runner.AnsibleRunner(
    os.environ["MOLECULE_INVENTORY_FILE"]).get_hosts("lab_nodes")

SCENARIO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HEADER = "# Managed by hpcnet.infiniband (ib_kernel_modules): local changes are overwritten."
IPOIB_512 = {"send_queue_size": 512, "recv_queue_size": 512}

# What the role must have written on each node (molecule.yml host_vars + role defaults).
EXPECTED = {
    "node1": {  # cx3-eipoib, MLNX_OFED 4.9 modules in the profile, EIPoIB
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

# The arguments the role gave ib_kernel_modules (molecule.yml host_vars + role defaults).
ARGS = {
    "node1": {"modules": ["mlx4_ib", "ib_umad", "rdma_ucm", "ib_ipoib"], "eipoib": True,
              "openib_conf": {"SET_IPOIB_CM": "no"},
              "options": {"mlx4_core": {"port_type_array": ["ib", "ib"], "num_vfs": 4, "probe_vf": 0,
                                        "log_num_mgm_entry_size": -1}, "ib_ipoib": IPOIB_512}},
    "node2": {"modules": ["mlx4_ib", "ib_umad", "rdma_ucm", "ib_ipoib"], "eipoib": False,
              "options": {"mlx4_core": {"port_type_array": [1], "num_vfs": 8, "enable_64b_cqe_eqe": True},
                          "ib_ipoib": {"send_queue_size": 256, "recv_queue_size": 1024}}},
    "node3": {"modules": ["mlx5_ib", "ib_umad", "rdma_ucm", "ib_ipoib"], "eipoib": False,
              "options": {"mlx5_core": {"prof_sel": 2}, "ib_ipoib": IPOIB_512}},
    "node4": {"modules": ["mlx5_ib", "ib_umad", "rdma_ucm"], "eipoib": False, "options": {}},
    "node5": {"modules": ["ib_umad", "rdma_ucm", "ib_ipoib"], "eipoib": False, "options": {"ib_ipoib": IPOIB_512}},
    "node6": {"modules": ["ib_umad"], "eipoib": False, "options": {}},
}

# Invalid inputs, each merged over the node's arguments and run for real: refused, nothing written.
REFUSALS = {
    "node1": [
        ({"options": {"mlx4_core": {"port_type_array": ["eth", "eth"]}}},
         "EIPoIB needs an InfiniBand port, but every port of ConnectX-3 0000:04:00.0 would be Ethernet"),
        ({"eipoib": False, "options": {"mlx4_core": {"port_type_array": [1, 1], "num_vfs": [2, 2, 0]}}},
         "which mlx4_core accepts only when every port of the card is Ethernet"),
        ({"options": {"mlx4_core": {"num_vfs": 20}}}, "allows at most 16 (ConnectX-3 limit)"),
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
        ({"openib_conf": {"IPOIB_LOAD": "yes"}}, "is read by MLNX_OFED's openibd only"),
        ({"stack": "mlnx_ofed"}, "the expected stack is mlnx_ofed but this host runs inbox"),
    ],
    "node3": [
        ({"options": {"mlx4_core": {"num_vfs": 4}}}, "no mlx4 (ConnectX-3 class) card was found; found: ConnectX-5"),
        ({"eipoib": True}, "EIPoIB needs a ConnectX-3 or ConnectX-3 Pro (mlx4) card with an InfiniBand port"),
    ],
}


@pytest.fixture(scope="session")
def probe():
    """Run verify_probe.yml once over every node; {node: results}."""
    out = tempfile.mkdtemp(prefix="ofed-verify-")
    cases = {node: {"args": ARGS[node],
                    "refusals": [{"extra": extra, "message": message} for extra, message in REFUSALS.get(node, [])]}
             for node in ARGS}
    extra_vars = os.path.join(out, "cases.json")
    with open(extra_vars, "w") as handle:
        json.dump({"probe_cases": cases, "probe_out": out}, handle)
    run = subprocess.run(
        ["ansible-playbook", "-i", os.environ["MOLECULE_INVENTORY_FILE"], "-e", "@" + extra_vars,
         os.path.join(SCENARIO, "verify_probe.yml")],
        capture_output=True, text=True, timeout=900, check=False)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    results = {}
    for node in ARGS:
        with open(os.path.join(out, node + ".json")) as handle:
            results[node] = json.load(handle)
    return results


def me(host):
    return host.backend.host


def test_files_line_by_line(host, probe):
    files = probe[me(host)]["before"]["files"]
    for path, lines in EXPECTED[me(host)].items():
        if lines is None:
            assert path not in files, path
            continue
        assert path in files, path
        assert files[path]["mode"] == "0o644", path
        assert files[path]["content"].splitlines() == lines, path


def test_module_reports_loading_skipped(host, probe):
    result = probe[me(host)]["same"]
    assert not result.get("failed"), result.get("msg")
    assert result["changed"] is False
    assert result["reboot_required"] is False and result["reload_required"] is False
    loaded = {m: e for m, e in result["modules"].items() if e["status"] != "options_only"}
    assert set(loaded) == set(EXPECTED[me(host)]["/etc/modules-load.d/hpcnet-infiniband.conf"][1:])
    live = probe[me(host)]["before"]["live_modules"]
    for module, entry in loaded.items():
        # the lab kernel has no loadable modules: a module the node's /sys/module shows (the profile's
        # running stack) is already_loaded, any other is skipped with modprobe's reason, never "loaded"
        if module in live:
            assert entry["status"] == "already_loaded", (module, entry)
        else:
            assert entry["status"] == "skipped_not_available", (module, entry)
            assert "not found" in entry["reason"], entry["reason"]


def test_stack_detected(host, probe):
    stack = probe[me(host)]["same"]["stack"]
    assert stack["stack"] == ("mlnx_ofed" if me(host) == "node1" else "inbox"), stack


def test_check_mode_with_new_options_changes_nothing(host, probe):
    result = probe[me(host)]["new"]
    assert result["changed"] is True
    assert [c["target"] for c in result["plan"]] == ["/etc/modprobe.d/hpcnet-ib_ipoib.conf"]
    assert result["diff"][0]["after"].splitlines()[1:] == [
        "options ib_ipoib send_queue_size=2048", "options ib_ipoib recv_queue_size=2048"]
    # a running ib_ipoib would need a reload for the new queue sizes
    assert result["reload_required"] is ("ib_ipoib" in probe[me(host)]["before"]["live_modules"])
    before, after = probe[me(host)]["before"], probe[me(host)]["after"]
    assert after == before  # also proves that no refusal below wrote anything (mtime, content, mode)


def test_invalid_input_refused_nothing_changed(host, probe):
    refused = probe[me(host)]["refused"]
    cases = REFUSALS.get(me(host), [])
    if not cases:
        pytest.skip("refusals are exercised on node1-node3")
    assert len(refused) == len(cases)
    for result, (extra, message) in zip(refused, cases):
        assert result.get("failed") is True, (extra, result.get("msg"))
        assert message in result["msg"], (extra, result["msg"])
        assert result["plan"] == [] and result["changed"] is False
    assert probe[me(host)]["after"] == probe[me(host)]["before"]
