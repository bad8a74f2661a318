"""playbooks/site.yml on the default 8-node lab mix, where not every node is an InfiniBand node, and
with a node that cannot be reached (issue 10 items 5 and 6).

Lab `site-mixed`: `labctl up --nodes 8` with the default profiles (cx3-eipoib, cx5-ib-sriov, cx3-ipoib,
qib-ipoib, cx5-roce, plain-ethernet, cx3-eipoib, cx5-ib-sriov) and the site settings of
docs/examples/lab-site-vars.yml, given as an operator gives them to a mixed cluster: group_vars of the
nodes' group, the IPoIB settings scoped to the nodes that have ib0 (as extra vars they would name ib0 on
the RoCE-only and Ethernet-only nodes too, which have none).

- A subnet-manager verdict on a reachable node still stops every node (stage 2 is a prerequisite).
- One unreachable node (an inventory host nobody answers for) no longer stops the others after stage
  2: every real node finishes, the summary names the unreachable one. The RoCE-only and Ethernet-only
  nodes pass stage 2 at once ("no InfiniBand port: nothing for a subnet manager to serve").
- The second run changes nothing on any node, and the verification passes over the addresses the
  collection configured (rdma and storage on the InfiniBand fabric, roce on the RoCE ports).
"""

from __future__ import annotations

import json
import re
import time

import pytest
import yaml

from conftest import REPO, site_output_vars  # tests/integration/conftest.py

LAB_NAME = "site-mixed"
NON_IB_PROFILES = ("cx5-roce", "plain-ethernet")


@pytest.fixture(scope="module")
def lab(lab_factory):
    return lab_factory(LAB_NAME, nodes=8)


@pytest.fixture(scope="module")
def out(tmp_path_factory):
    return tmp_path_factory.mktemp("site-mixed")


@pytest.fixture(scope="module")
def site_vars(out):
    return site_output_vars(out)


def group_vars(out, hosts=None):
    """An inventory adding docs/examples/lab-site-vars.yml as the lab nodes' group_vars (no IPoIB on the
    nodes without ib0), and ``hosts`` to the group."""
    settings = yaml.safe_load((REPO / "docs" / "examples" / "lab-site-vars.yml").read_text())
    no_ib = {"profile_" + p.replace("-", "_"): {"vars": {"ipoib_interfaces": []}} for p in NON_IB_PROFILES}
    group = {"vars": settings, "children": no_ib}
    if hosts:
        group["hosts"] = hosts
    path = out / ("site-vars%s.yml" % ("-" + "-".join(sorted(hosts)) if hosts else ""))
    path.write_text(json.dumps({"all": {"children": {"lab_nodes": group}}}))
    return path


def site(lab, site_vars, out, monkeypatch, name, args=(), hosts=None):
    """site.yml with the site settings and the per-node summary; (process, summary JSON)."""
    summary = out / ("summary-%s.json" % name)
    monkeypatch.setenv("ANSIBLE_CALLBACKS_ENABLED", "hpcnet.infiniband.site_summary")
    monkeypatch.setenv("HPCNET_SITE_SUMMARY", str(summary))
    started = time.monotonic()
    cp = lab.playbook("playbooks/site.yml", extra_vars=site_vars, timeout=1800,
                      args=["-i", str(group_vars(out, hosts)), *args])
    print("site.yml %s on %d nodes: %.1f s, rc %s" % (name, len(lab.node_names), time.monotonic() - started,
                                                      cp.returncode))
    data = json.loads(summary.read_text()) if summary.exists() else {}
    return cp, data


def recap(stdout):
    text = stdout.split("PLAY RECAP")[-1]
    return {m.group(1): {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", m.group(2))}
            for m in re.finditer(r"^(\S+)\s+:\s+(ok=.*)$", text, re.M)}


def non_ib_nodes(lab):
    return [n["name"] for n in lab.nodes if n["profile"] in NON_IB_PROFILES]


def test_sm_verdict_on_a_reachable_node_stops_everybody(lab, site_vars, out, monkeypatch):
    # min_sms=5: the lab's fabric has one SM, so every IB node's check fails; the non-IB nodes pass, and
    # are stopped all the same. Stage 2 only (--tags sm): nothing else runs.
    cp, summary = site(lab, site_vars, out, monkeypatch, "verdict", [
        "--tags", "sm", "-e", "subnet_manager_check_min_sms=5", "-e", "subnet_manager_check_wait_timeout=2"])
    assert cp.returncode != 0
    assert "stopping every node: without a subnet manager no InfiniBand port becomes ACTIVE" in cp.stdout
    assert set(recap(cp.stdout)) == set(lab.node_names)
    # Nobody, not even the nodes whose own check passed, started stage 3.
    assert "PLAY [Stage 3" not in cp.stdout
    for node in non_ib_nodes(lab):
        assert any("no InfiniBand port: nothing for a subnet manager to serve" in n for n in summary[node]["notes"])


def test_unreachable_node_is_reported_and_the_others_finish(lab, site_vars, out, monkeypatch):
    # One more node that nobody answers for (port 1 on loopback: refused at once).
    ghost = {"ghost": {"ansible_host": "127.0.0.1", "ansible_port": 1, "ansible_user": "root"}}
    cp, summary = site(lab, site_vars, out, monkeypatch, "ghost", hosts=ghost)
    counts = recap(cp.stdout)
    # Discovery ignores an unreachable node (the model lists it): the recap counts it "ignored".
    assert counts["ghost"]["ignored"] >= 1 and counts["ghost"]["failed"] == 0, counts
    assert summary["ghost"]["unreachable"] is True
    assert "Unreachable: ghost (left out of the configuring stages; the other nodes went on)" in cp.stdout
    # Every real node went on after stage 2, through the configuring stages and the model's refresh (what
    # the verification finds is its own matter: its stage fails the play when the network is not right).
    for node in lab.node_names:
        assert counts[node]["unreachable"] == 0, (node, cp.stdout[-6000:])
        stages = [entry["task"] for entry in summary[node]["failed"]]
        assert not [t for t in stages if not t.startswith("Stage 11")], (node, summary[node]["failed"])
    ovs_stage = cp.stdout.split("PLAY [Stage 7")[1].split("PLAY [Stage 8")[0]
    assert all(re.search(r"\[%s\]" % node, ovs_stage) for node in lab.node_names), ovs_stage[-3000:]
    assert "[ghost]" not in cp.stdout.split("PLAY [Stage 2")[1].split("PLAY [Stage 10")[0]
    for node in non_ib_nodes(lab):
        assert any("no InfiniBand port: nothing for a subnet manager to serve" in n for n in summary[node]["notes"])


def test_second_run_changes_nothing(lab, site_vars, out, monkeypatch):
    cp, summary = site(lab, site_vars, out, monkeypatch, "second")
    print(cp.stdout.split("SUMMARY PER NODE")[-1])
    counts = recap(cp.stdout)
    assert set(counts) == set(lab.node_names)
    assert {node: c["changed"] for node, c in counts.items()} == {node: 0 for node in lab.node_names}
    assert {node: entry["changed"] for node, entry in summary.items()} == {node: [] for node in lab.node_names}
    assert not [node for node in lab.node_names if summary[node]["unreachable"]]
    # The networks of lab-site-vars (one per fabric) work on the mixed lab: IPoIB, EIPoIB bridges, RoCE.
    assert cp.returncode == 0, cp.stdout[-6000:]
    # (one cx5-roce node among the 8: its roce network has no pair to verify)
    assert "all networks verified: management, rdma, storage" in cp.stdout
