"""playbooks/site.yml end to end and a power cycle (issues 6, 11 and 12): `--check` on the unconverged lab
changes nothing; site.yml allocates and configures every network's addresses (the lab pre-assigns none),
verification passes over them, the nodes model is refreshed; after `labctl reboot --all` the nodes come
back from their own boot files (ifupdown stanzas, the hpcnet-ib-boot oneshot) and verify_network.yml
passes again without re-running site.yml; the second site.yml run, after the reboot, changes nothing and
says why stage 10 is skipped, and so does `--check` after it. Every run prints the site_summary
callback's per-node summary and its wall time.

Lab `site-reboot`: node1 ConnectX-5 (4 VFs with derived GUIDs), node2 ConnectX-3 (an extra P_Key child
ib0.8004 in connected mode, MTU 65520, through ipoib_interfaces and the boot path), node3 ConnectX-3 with
EIPoIB (storage on its OVS bridge). Every node carries the rdma network on the P_Key child ib0.8002
(datagram, MTU 2044), configured by the network stage (ifupdown: the lab nodes are Debian without
NetworkManager). The lab's fabric has no partitions: the P_Key tables that an SM would fill are set
with `labctl hw set`, as the hardware would show them.
"""

from __future__ import annotations

import json
import re
import time

import pytest

from conftest import run_module, site_output_vars  # tests/integration/conftest.py

LAB_NAME = "site-reboot"
PROFILES = ["cx5-ib-sriov", "cx3-ipoib", "cx3-eipoib"]
PKEY_TABLES = {"node1": ("mlx5_0", ["0x8002"]), "node2": ("mlx4_0", ["0x8002", "0x8004"]),
               "node3": ("mlx4_0", ["0x8002"])}
PF = "/sys/bus/pci/devices/0000:5e:00.0"
VF_GUIDS = f"for f in {PF}/sriov/*/node {PF}/sriov/*/port; do [ -e $f ] && echo $f $(cat $f); done; true"
# Everything the roles write under a node's /etc (compared before/after --check).
ETC_FILES = "find /etc/network /etc/hpcnet-infiniband /etc/systemd/system /etc/modprobe.d /etc/modules-load.d " \
            "-type f 2>/dev/null | sort | xargs -r sha256sum; true"


@pytest.fixture(scope="module")
def lab(lab_factory):
    lab = lab_factory(LAB_NAME, nodes=3, profiles=PROFILES, data_addresses=False)
    for node, (device, pkeys) in PKEY_TABLES.items():
        for index, pkey in enumerate(pkeys, start=1):
            lab.labctl("hw", "set", node, f"class/infiniband/{device}/ports/1/pkeys/{index}", pkey, check=True)
    return lab


@pytest.fixture(scope="module")
def site_vars(tmp_path_factory):
    out = tmp_path_factory.mktemp("site-reboot")
    return {
        **site_output_vars(out),
        "discovery_networks": [
            {"name": "rdma", "cidr": "10.20.0.0/24", "pkey": "0x8002", "mtu": 2044, "ipoib_mode": "datagram"},
            {"name": "storage", "cidr": "10.20.1.0/24"},
        ],
        "network_backend": "ifupdown",
        "sriov_pfs": "{{ [{'pf': 'ib0', 'num_vfs': 4, 'guid_policy': 'derived', 'persist': true}]"
                     " if lab_profile == 'cx5-ib-sriov' else [] }}",
        "ipoib_interfaces": "{{ [{'parent': 'ib0', 'mode': 'connected', 'mtu': 65520},"
                            " {'parent': 'ib0', 'pkey': '0x8004', 'mode': 'connected', 'mtu': 65520}]"
                            " if lab_profile == 'cx3-ipoib' else [] }}",
    }


@pytest.fixture
def summary_callback(tmp_path):
    """Where site() has the site_summary callback write its per-node summary (JSON)."""
    return tmp_path / "summary.json"


def site(lab, site_vars, name, summary, check=False):
    """site.yml with the site_summary callback (only there: the ad-hoc JSON calls must stay JSON)."""
    started = time.monotonic()
    with pytest.MonkeyPatch.context() as env:
        env.setenv("ANSIBLE_CALLBACKS_ENABLED", "hpcnet.infiniband.site_summary")
        env.setenv("HPCNET_SITE_SUMMARY", str(summary))
        cp = lab.playbook("playbooks/site.yml", extra_vars=site_vars, check=check, timeout=1800)
    print("site.yml %s on %d nodes: %.1f s, rc %s" % (name, len(lab.node_names), time.monotonic() - started,
                                                      cp.returncode))
    return cp


def recap(stdout):
    text = stdout.split("PLAY RECAP")[-1]
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(node\d+)\s*:\s*ok=\d+\s+changed=(\d+)", text, re.M)}


def snapshot(lab):
    """What the roles change on a node: files under /etc, sysfs values, OVS."""
    return {node: (lab.exec(node, ["sh", "-c", ETC_FILES]).stdout,
                   lab.exec(node, ["sh", "-c", "cat /sys/class/net/ib0/mode /sys/class/net/ib0/mtu; "
                                   "ls /sys/class/net; cat %s/sriov_numvfs 2>/dev/null; true" % PF]).stdout,
                   lab.exec(node, ["ovs-vsctl", "show"]).stdout)
            for node in lab.node_names}


def deployed(lab):
    """Per node: its IPoIB/SR-IOV netdevs (mode, MTU, VF count) from ib_facts, the addresses of every
    interface, and node1's VF GUIDs (ib_facts does not report them)."""
    facts = run_module(lab, "hpcnet.infiniband.ib_facts", "all")
    seen = {}
    for node, result in facts.items():
        nics = result["ansible_facts"]["ib_facts"]["nics"]
        addresses = json.loads(lab.exec(node, ["ip", "-j", "-4", "addr", "show"], check=True).stdout)
        seen[node] = {
            "netdevs": {name: {"mtu": nic.get("mtu"), "ipoib": nic.get("ipoib"),
                               "numvfs": (nic.get("sriov") or {}).get("numvfs")}
                        for name, nic in nics.items() if nic.get("ipoib") or nic.get("sriov")},
            "addresses": sorted("%s %s/%s" % (a["ifname"], i["local"], i["prefixlen"])
                                for a in addresses for i in a.get("addr_info", [])
                                if i["local"].startswith("10.20.")),
        }
    seen["node1 VF GUIDs"] = lab.exec("node1", ["sh", "-c", VF_GUIDS], check=True).stdout
    return seen


def test_check_mode_on_the_unconverged_lab_changes_nothing(lab, site_vars, summary_callback):
    before = snapshot(lab)
    cp = site(lab, site_vars, "--check (unconverged)", summary_callback, check=True)
    assert "Traceback" not in cp.stdout + cp.stderr
    assert snapshot(lab) == before


def members(site_vars):
    """Every (node, network) member with an address in the nodes model site.yml wrote (the networks of
    discovery_networks; the management network has none): ["<device> <address/prefix>", ...]."""
    with open(site_vars["netcheck_nodes_model"], encoding="utf-8") as handle:
        model = json.load(handle)
    return {node["name"]: sorted("%s %s" % (net["device"], net["address"]) for net in node["networks"].values()
                                 if net.get("address"))
            for node in model["nodes"]}


def test_site_deploys_the_networks_and_everything_survives_a_reboot(lab, site_vars, summary_callback):
    first = site(lab, site_vars, "first", summary_callback)
    assert first.returncode == 0, first.stdout[-8000:]
    assert "all networks verified" in first.stdout
    assert "SUMMARY PER NODE" in first.stdout
    # Stage 10 rewrote the nodes model after stages 2-8 changed the nodes: the second run finds it current.
    assert "refreshing the nodes model: changed node1 (" in first.stdout
    assert lab.exec("node3", ["ovs-vsctl", "list-br"]).stdout.split() == ["br-storage"]  # EIPoIB storage
    before = deployed(lab)
    # The collection configured the addresses: rdma on every node's P_Key child, storage on node3's bridge.
    assert [a for a in before["node1"]["addresses"] if a.startswith("ib0.8002 10.20.0.")], before["node1"]
    assert [a for a in before["node3"]["addresses"] if a.startswith("br-storage 10.20.1.")], before["node3"]
    assert before["node1"]["netdevs"]["ib0"]["numvfs"] == 4
    assert before["node2"]["netdevs"]["ib0.8004"]["ipoib"]["mode"] == "connected"
    assert before["node2"]["netdevs"]["ib0.8004"]["mtu"] == 65520
    assert before["node1 VF GUIDs"].count("/port ") == 4 and before["node1 VF GUIDs"].count("/node ") == 4
    assert "00:00:00:00:00:00:00:00" not in before["node1 VF GUIDs"], before["node1 VF GUIDs"]
    # Every network of every node carries its address: rdma on each node's P_Key child ib0.8002 (datagram,
    # MTU 2044, through the ifupdown stanzas), storage where discovery put it.
    wanted = members(site_vars)
    assert set(wanted) == {"node1", "node2", "node3"} and all(wanted.values()), wanted
    for node, addresses in wanted.items():
        assert set(addresses) <= set(before[node]["addresses"]), (node, addresses, before[node]["addresses"])
        assert [a for a in addresses if a.startswith("ib0.8002 10.20.0.")], (node, addresses)
        assert before[node]["netdevs"]["ib0.8002"]["ipoib"]["mode"] == "datagram", before[node]
        assert before[node]["netdevs"]["ib0.8002"]["mtu"] == 2044, before[node]
    cp = lab.labctl("reboot", "--all", timeout=900)
    assert cp.returncode == 0, cp.stdout + cp.stderr
    # The power-on state was the profile: the nodes' own boot files had the work to do (the boot path's
    # oneshot: node1's VFs and their GUIDs, node2's ib0.8004; ifup -a: the networks' stanzas).
    assert re.search(r"node1: hpcnet-ib-boot.service: hpcnet-ib-boot: sriov 0000:5e:00.0: set_numvfs \S+: 0 -> 4;"
                     r".* set_vf_guid ib0 vf 3", cp.stdout), cp.stdout
    assert re.search(r"node2: hpcnet-ib-boot.service: .* create_child .* -> ib0\.8004", cp.stdout), cp.stdout
    assert all(f"{node}: rebooted in" in cp.stdout for node in lab.node_names), cp.stdout
    # Without re-running site.yml: the same VFs, GUIDs, children, modes, MTUs and addresses ...
    assert deployed(lab) == before
    # ... and the verification passes over them.
    verify = lab.playbook("playbooks/verify_network.yml", extra_vars=site_vars, timeout=900)
    assert verify.returncode == 0, verify.stdout[-6000:]
    assert "all networks verified" in verify.stdout
    # The second run, after the reboot, finds nothing to do (it is also the re-converge run: stage 10 says
    # why it is skipped instead of discovering every node again) ...
    second = site(lab, site_vars, "second (after the reboot)", summary_callback)
    assert second.returncode == 0, second.stdout[-8000:]
    assert set(recap(second.stdout).values()) == {0}, second.stdout.split("PLAY RECAP")[-1]
    summary = json.loads(summary_callback.read_text())
    assert {host: entry["changed"] for host, entry in summary.items()} == {node: [] for node in lab.node_names}
    assert "stage 10 skipped: stages 2-8 changed nothing on any node" in second.stdout
    stage10 = second.stdout.split("PLAY [Stage 10")[1].split("PLAY [Stage 11")[0]
    assert "hpcnet.infiniband.discovery :" not in stage10, stage10
    # ... and so does --check on the converged lab, which changes nothing.
    converged = snapshot(lab)
    check = site(lab, site_vars, "--check (converged)", summary_callback, check=True)
    assert check.returncode == 0, check.stdout[-6000:]
    assert set(recap(check.stdout).values()) == {0}, check.stdout.split("PLAY RECAP")[-1]
    assert "stage 10 skipped: check mode changed nothing" in check.stdout
    assert snapshot(lab) == converged
