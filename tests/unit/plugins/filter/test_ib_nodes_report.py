"""Filters hpcnet.infiniband.ib_nodes_report / ib_nodes_report_html."""

import pytest

from ansible.errors import AnsibleFilterError
from ansible_collections.hpcnet.infiniband.plugins.filter import ib_nodes_report as flt
from ansible_collections.hpcnet.infiniband.plugins.module_utils import _nodes_model as nm
import nodes_facts_fixtures as fx


def test_filters_registered_and_render():
    filters = flt.FilterModule().filters()
    model = nm.build_model(fx.lab_results(), generated_at="t")
    lines = filters["ib_nodes_report"](model)
    assert isinstance(lines, list) and lines[0].startswith("NODE")
    assert filters["ib_nodes_report"](model, "text") == "\n".join(lines)
    page = filters["ib_nodes_report_html"](model, "My cluster")
    assert "<title>My cluster</title>" in page and 'data-interface="ens2f0"' in page
    # RoCE ports have no LIDs: the table shows none rather than 0.
    roce = next(line for line in lines if " ens2f0 " in line)
    assert " 0 " not in roce


@pytest.mark.parametrize("bad", [None, [], {"nodes": "x"}])
def test_not_a_model(bad):
    with pytest.raises(AnsibleFilterError, match="expects the nodes model"):
        flt.ib_nodes_report(bad)


def test_bad_output():
    with pytest.raises(AnsibleFilterError, match="output must be"):
        flt.ib_nodes_report({"nodes": []}, "html")
