"""Verify roles sriov + ipoib on the lab: VF counts, GUIDs unique and non-zero, mlx4 options, children."""

import pytest

CX5_PF = "/sys/bus/pci/devices/0000:5e:00.0"
WANTED = {"node1": 8, "node2": 4}


def _guids(host):
    """Node and port GUIDs of every VF of the ConnectX-5 PF, read in one command."""
    out = host.check_output("cat %s/sriov/*/node %s/sriov/*/port 2>/dev/null || true" % (CX5_PF, CX5_PF))
    return [line.strip() for line in out.splitlines() if line.strip()]


@pytest.mark.parametrize("node", ["node1", "node2"])
def test_cx5_vf_count_and_no_kernel_name_udev_rule(host, node):
    if host.backend.get_hostname() != node:
        pytest.skip("checked on %s" % node)
    assert int(host.file(CX5_PF + "/sriov_numvfs").content_string) == WANTED[node]
    # Persistence is the boot service's (a KERNEL=="<name>" rule never fires on renamed interfaces).
    assert not host.file("/etc/udev/rules.d/70-hpcnet-sriov-0000-5e-00.0.rules").exists


def test_vfs_bound_to_their_driver_after_the_guids(host):
    if not host.file(CX5_PF + "/sriov_numvfs").exists:
        pytest.skip("no ConnectX-5 here")
    out = host.check_output("for vf in %s/virtfn*; do basename $(readlink $vf/driver); done" % CX5_PF)
    assert set(out.split()) == {"mlx5_core"}


def test_vf_guids_nonzero_and_unique_on_host(host):
    if not host.file(CX5_PF + "/sriov_numvfs").exists:
        pytest.skip("no ConnectX-5 here")
    guids = _guids(host)
    assert guids and "00:00:00:00:00:00:00:00" not in guids
    assert len(set(guids)) == len(guids)


def test_vf_guids_unique_across_nodes(host, request):
    import testinfra

    if host.backend.get_hostname() != "node1":
        pytest.skip("checked once, from node1")
    inventory = request.config.option.ansible_inventory
    seen = {}
    for node in WANTED:
        other = testinfra.get_host("ansible://%s?ansible_inventory=%s" % (node, inventory))
        for guid in _guids(other):
            assert guid not in seen, "%s on %s and %s" % (guid, node, seen.get(guid))
            seen[guid] = node
    assert len(seen) == 2 * sum(WANTED.values())


def test_cx3_plans_module_options_and_leaves_sysfs(host):
    if host.backend.get_hostname() != "node3":
        pytest.skip("checked on node3")
    conf = host.file("/etc/modprobe.d/hpcnet-sriov-mlx4.conf")
    assert conf.exists
    assert "options mlx4_core num_vfs=4" in conf.content_string
    assert "options mlx4_core probe_vf=1" in conf.content_string


def test_pkey_child(host):
    child = host.file("/sys/class/net/ib0.8002")
    assert child.exists
    assert host.file("/sys/class/net/ib0.8002/pkey").content_string.strip() == "0x8002"
    assert host.file("/sys/class/net/ib0.8002/mode").content_string.strip() == "datagram"
