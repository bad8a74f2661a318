"""playbooks/site.yml on `labctl up --profiles all` (one node of every lab profile, issue 10 item 6's
second outcome test): the RoCE-only and Ethernet-only nodes pass the subnet-manager stage at once, and the
second run changes nothing on any node.

Lab `site-all`: cx3-eipoib, cx5-ib-sriov, cx3-ipoib, qib-ipoib, cx5-roce, plain-ethernet; the site settings
of docs/examples/lab-site-vars.yml as group_vars, as test_site_mixed.py gives them to the 8-node mix.
"""

from __future__ import annotations

import pytest

from test_site_mixed import NON_IB_PROFILES, non_ib_nodes, recap, site  # tests/integration/test_site_mixed.py
from conftest import site_output_vars  # tests/integration/conftest.py

LAB_NAME = "site-all"


@pytest.fixture(scope="module")
def lab(lab_factory):
    return lab_factory(LAB_NAME, profiles="all")


@pytest.fixture(scope="module")
def out(tmp_path_factory):
    return tmp_path_factory.mktemp("site-all")


def test_one_node_of_every_profile_converges_and_the_second_run_changes_nothing(lab, out, monkeypatch):
    assert {n["profile"] for n in lab.nodes} >= set(NON_IB_PROFILES) and len(lab.nodes) == 6
    site_vars = site_output_vars(out)
    first, summary = site(lab, site_vars, out, monkeypatch, "first")
    counts = recap(first.stdout)
    assert set(counts) == set(lab.node_names), first.stdout[-6000:]
    assert all(c["unreachable"] == 0 for c in counts.values()), counts
    # Every node went through every configuring stage (what the verification finds is checked below).
    for node in lab.node_names:
        failed = [entry["task"] for entry in summary[node]["failed"]]
        assert not [t for t in failed if not t.startswith("Stage 11")], (node, summary[node]["failed"])
    for node in non_ib_nodes(lab):
        assert any("no InfiniBand port: nothing for a subnet manager to serve" in n for n in summary[node]["notes"])
    second, summary = site(lab, site_vars, out, monkeypatch, "second")
    counts = recap(second.stdout)
    assert {node: c["changed"] for node, c in counts.items()} == {node: 0 for node in lab.node_names}, \
        second.stdout.split("PLAY RECAP")[-1]
    assert {node: entry["changed"] for node, entry in summary.items()} == {node: [] for node in lab.node_names}
    assert second.returncode == 0, second.stdout[-6000:]
    # One node per fabric role: rdma has four IPoIB members; storage and roce have one each (no pair).
    assert "all networks verified: management, rdma" in second.stdout, second.stdout[-3000:]
