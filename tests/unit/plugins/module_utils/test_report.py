"""Terminal table and HTML page of the nodes model."""

from html.parser import HTMLParser

import nodes_facts_fixtures as fx
from ansible_collections.hpcnet.infiniband.plugins.module_utils import _nodes_model as nm
from ansible_collections.hpcnet.infiniband.plugins.module_utils import _report as rp


def _model():
    results = fx.lab_results()
    results["node6"] = fx.registered(fx.mixed())
    model = nm.build_model(results, addresses={"node1": "10.77.1.11"}, generated_at="2026-11-26T07:00:00Z",
                           networks=fx.NETWORKS, rules=fx.RULES)
    fx.validate_model(model)
    return model


def test_addresses_in_table_summary_and_html():
    model = _model()
    lines = rp.render_table(model)
    text = "\n".join(lines)
    ib0_row = next(line for line in lines if " ib0 " in line)
    assert ib0_row.rstrip().endswith("10.20.0.11/24")
    assert "  addresses: rdma 10.20.0.11/24 on ib0.8002 (ib0)" in text
    assert "storage 10.20.1.11/24 on br-storage (eth1)" in text  # node2's EIPoIB member: on the bridge
    page = rp.render_html(model)
    assert '<tr data-network="rdma"><td>rdma</td><td>ib0</td><td>ib0.8002</td><td>ipoib_child</td>' \
           '<td class="mono">10.20.0.11/24</td>' in page


def test_failed_node_with_kept_data_is_reported_as_failed():
    first = nm.build_model({"node1": fx.registered(fx.cx3_ipoib())}, generated_at="t1")
    again = nm.build_model({"node1": fx.UNREACHABLE}, generated_at="t2", previous=first)
    text = "\n".join(rp.render_table(again))
    assert "node1: UNREACHABLE: Failed to connect" in text and "data kept from t1" in text
    assert " ib0 " in text  # the kept interfaces are still listed


def test_format_speed():
    assert rp.format_speed(56000) == "56 Gb/s"
    assert rp.format_speed(1000) == "1 Gb/s"
    assert rp.format_speed(2500) == "2.5 Gb/s"
    assert rp.format_speed(100) == "100 Mb/s"
    assert rp.format_speed(None) == "-" and rp.format_speed(0) == "-" and rp.format_speed(True) == "-"


def test_table_columns_rows_and_summaries():
    lines = rp.render_table(_model())
    header = lines[0].split()
    assert header == ["NODE", "INTERFACE", "MAC", "DRIVER", "BUS_INFO", "SPEED", "STATE", "IB_STATE", "RATE",
                      "LID", "SM_LID", "MODE", "NETWORKS", "ADDRESSES"]
    ib0_row = next(line for line in lines if " ib0 " in line)  # node1's, the first node with an ib0
    for text in ("ib_ipoib", "0000:82:00.0", "56 Gb/s", "ACTIVE", "56 Gb/sec (4X FDR)", "932",
                 "infiniband/connected"):
        assert text in ib0_row
    roce = next(line for line in lines if " ens2f0 " in line)
    assert "mlx5_core" in roce and "100 Gb/s" in roce and "private,public,roce" in roce
    # Every column lines up: the MAC column starts at the same offset on every table row.
    offset = lines[0].index("MAC")
    table = lines[2:lines.index("")]
    assert all(line[offset - 2:offset] == "  " for line in table if len(line) > offset)
    text = "\n".join(lines)
    assert "node4: UNREACHABLE: Failed to connect" in text
    assert any(line.startswith("node4 ") and "(unreachable)" in line for line in table)
    assert "node1: discovered, network mode infiniband, address 10.77.1.11, subnet manager answers" in text
    assert "node2: discovered, network mode infiniband, subnet manager local" in text
    assert "networks: management=eth0 rdma=ib0; unassigned: storage, private, public" in text
    assert "storage 10.20.1.11/24 on br-storage (eth1)" in text
    assert "node6: refused" in text and "ERROR: node node6: mismatching Mellanox drivers" in text
    assert lines[-1] == "6 node(s): 4 discovered, 1 refused, 0 failed, 1 unreachable"


def test_table_of_empty_model():
    lines = rp.render_table({"nodes": []})
    assert lines[0].startswith("NODE")


class _Collector(HTMLParser):
    def __init__(self):
        super().__init__()
        self.stack = []
        self.rows = []
        self.sections = []
        self.text = []
        self.scripts = 0

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag not in ("meta", "br", "link"):
            self.stack.append(tag)
        if tag == "tr" and "data-interface" in attrs:
            self.rows.append((attrs["data-node"], attrs["data-interface"]))
        if tag == "section":
            self.sections.append(attrs["data-node"])
        if tag in ("script", "link", "img", "iframe"):
            self.scripts += 1

    def handle_endtag(self, tag):
        assert self.stack and self.stack[-1] == tag, "unbalanced </%s> after %s" % (tag, self.stack[-3:])
        self.stack.pop()

    def handle_data(self, data):
        self.text.append(data)


def test_html_has_every_node_and_interface_and_is_self_contained():
    model = _model()
    page = rp.render_html(model)
    parser = _Collector()
    parser.feed(page)
    parser.close()
    assert parser.stack == []
    assert parser.scripts == 0  # no scripts, no external resources
    assert parser.sections == [n["name"] for n in model["nodes"]]
    expected = [(n["name"], i["name"]) for n in model["nodes"] for i in n["interfaces"]]
    assert parser.rows == expected
    text = "".join(parser.text)
    assert "mismatching Mellanox drivers" in text and "Failed to connect" in text
    assert "ConnectX-5" in text and "unassigned" in text


def test_html_escapes_hostile_values():
    facts = fx.cx3_ipoib()
    facts["nics"]["ib0"]["driver"] = "<script>alert(1)</script>"
    page = rp.render_html(nm.build_model({"<b>x</b>": facts}))
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert 'data-node="&lt;b&gt;x&lt;/b&gt;"' in page


def _fabric():
    import os

    from ansible_collections.hpcnet.infiniband.plugins.module_utils import _topology

    fixtures = os.path.join(os.path.dirname(__file__), "..", "..", "fixtures", "tool_outputs")

    def read(name):
        with open(os.path.join(fixtures, name), encoding="utf-8") as handle:
            return handle.read()

    return _topology.build(read("ibnetdiscover-ibsim-2switch-degraded.txt"), read("iblinkinfo-ibsim-2switch-degraded.txt"))


def test_topology_is_kept_in_the_model_and_drawn_in_the_html():
    topology = _fabric()
    model = nm.build_model(fx.lab_results(), generated_at="t1", topology=topology)
    fx.validate_model(model)
    assert model["topology"] == topology
    # A later run that could not map the fabric keeps the last topology (the model never loses data).
    again = nm.build_model(fx.lab_results(), generated_at="t2", previous=model)
    assert again["topology"] == topology
    page = rp.render_html(again)
    assert '<section id="topology"><h2>Fabric</h2><svg' in page
    assert "<svg" not in rp.render_html(nm.build_model(fx.lab_results(), generated_at="t3"))
