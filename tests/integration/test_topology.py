"""Fabric topology and degraded links on the lab (issue 14).

Lab `h6topo` (HPCNET_TOPOLOGY_LAB): 3 cx5-ib-sriov nodes on the two-switch ibsim
fabric. ib_topology maps every node's HCA port to its switch port; the picture (inline SVG) is rendered
by headless Chromium and looked at (red pixels only where a link is degraded). Then node2's links are
narrowed in the fabric (`hw.fabric degrade node2 --width 4x`) and its port's rate lowered in its sysfs
(`labctl hw set`): the verification names node2 ib0 with the switch port, actual and expected. Last,
discovery (playbooks/discover.yml) puts the degraded fabric into the nodes model and draws it in the
HTML report, whose screenshot shows the red link.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import zlib

import pytest
from conftest import REPO, fabric, run_module

LAB_NAME = os.environ.get("HPCNET_TOPOLOGY_LAB", "h6topo")
PROFILES = ["cx5-ib-sriov"] * 3
sys.path.insert(0, str(REPO / ".collections"))


@pytest.fixture(scope="module")
def lab(lab_factory):
    return lab_factory(LAB_NAME, nodes=3, profiles=PROFILES)


def topology(lab, node="node1", tries=20):
    result = {}
    for _attempt in range(tries):  # right after a fabric reset the SM is still sweeping
        result = run_module(lab, "hpcnet.infiniband.ib_topology", node)[node]
        hosts = {r["host"] for r in (result.get("topology") or {}).get("hca_ports", [])}
        if not result.get("failed") and {"node1", "node2", "node3"} <= hosts and all(
                l["state"] == "Active" for l in result["topology"]["links"]):
            return result["topology"]
        time.sleep(3)
    pytest.fail(f"no complete topology: {result}")


def png_pixels(path):
    """RGB rows of a PNG (8-bit RGB/RGBA, what Chromium writes), without Pillow."""
    data = path.read_bytes()
    pos, chunks, width = 8, [], 0
    while pos < len(data):
        length = int.from_bytes(data[pos:pos + 4], "big")
        kind = data[pos + 4:pos + 8]
        body = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            width, height, depth, color = int.from_bytes(body[:4], "big"), int.from_bytes(body[4:8], "big"), body[8], body[9]
        elif kind == b"IDAT":
            chunks.append(body)
        pos += 12 + length
    assert depth == 8 and color in (2, 6)
    bpp = 3 if color == 2 else 4
    raw = zlib.decompress(b"".join(chunks))
    rows, prev, stride = [], bytearray(width * bpp), width * bpp
    for y in range(height):
        ftype, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b = prev[i]
            c = prev[i - bpp] if i >= bpp else 0
            if ftype == 1:
                line[i] = (line[i] + a) & 255
            elif ftype == 2:
                line[i] = (line[i] + b) & 255
            elif ftype == 3:
                line[i] = (line[i] + (a + b) // 2) & 255
            elif ftype == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        rows.append([tuple(line[i:i + 3]) for i in range(0, stride, bpp)])
        prev = line
    return rows


def screenshot(topo, tmp_path, name):
    from ansible_collections.hpcnet.infiniband.plugins.module_utils import _topology  # noqa: PLC0415
    page = tmp_path / f"{name}.html"
    page.write_text("<!doctype html><html><body style='margin:0'>%s</body></html>" % _topology.topology_svg(topo))
    return shoot(page, tmp_path, name, "900,400")


def shoot(page, tmp_path, name, size):
    """Headless Chromium's screenshot of ``page``: (red pixels, dark pixels)."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if not chromium:
        pytest.skip("chromium not installed")
    png = tmp_path / f"{name}.png"
    cp = subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", f"--screenshot={png}",
                         f"--window-size={size}", page.as_uri()], capture_output=True, text=True, timeout=120,
                        check=False)
    assert png.exists(), cp.stderr[-2000:]
    rows = png_pixels(png)
    red = sum(1 for row in rows for (r, g, b) in row if r > 180 and g < 60 and b < 60)
    dark = sum(1 for row in rows for (r, g, b) in row if r < 100 and g < 100 and b < 100)
    print(f"{png}: {len(rows[0])}x{len(rows)}, {red} red pixels, {dark} dark pixels")
    if os.environ.get("HPCNET_SCREENSHOTS"):
        shutil.copy(png, os.path.join(os.environ["HPCNET_SCREENSHOTS"], png.name))
    return red, dark


def test_every_hca_port_is_on_a_switch_port_and_nothing_is_degraded(lab, tmp_path):
    topo = topology(lab)
    assert sorted(s["name"] for s in topo["switches"].values()) == ["lab switch", "lab switch 2"]
    rows = {r["host"]: r for r in topo["hca_ports"]}
    assert {rows[n]["switch"] for n in ("node1", "node2", "node3")} == {"lab switch", "lab switch 2"}
    assert all((r["width"], r["speed"], r["degraded"]) == ("12X", "HDR", False) for r in rows.values()), rows
    red, dark = screenshot(topo, tmp_path, "healthy")
    assert red == 0 and dark > 500


def test_degraded_link_is_found_and_drawn_red(lab, tmp_path):
    rate = "class/infiniband/mlx5_0/ports/1/rate"
    cp = fabric(lab, "degrade", "node2", "--width", "4x")
    assert cp.returncode == 0, cp.stdout + cp.stderr
    lab.labctl("hw", "set", "node2", rate, "25 Gb/sec (1X EDR)", check=True)
    try:
        topo = topology(lab, node="node1")
        bad = [r for r in topo["hca_ports"] if r["degraded"]]
        assert [(r["host"], r["width"]) for r in bad] == [("node2", "4X")], topo["hca_ports"]
        assert "both ends support 12X" in bad[0]["reasons"][0]
        red, _dark = screenshot(topo, tmp_path, "degraded")
        assert red > 50
        allocation = {n: {"rdma": "ib0"} for n in lab.node_names}
        result_file = tmp_path / "netcheck.json"
        cp = lab.playbook("playbooks/verify_network.yml", extra_vars={
            "netcheck_allocation": allocation, "netcheck_networks": [{"name": "rdma"}],
            "netcheck_result_file": str(result_file)})
        result = json.loads(result_file.read_text())
        assert cp.returncode != 0
        found = {(f["node"], f["interface"], f["field"]) for f in result["findings"]}
        assert found == {("node2", "ib0", "link"), ("node2", "ib0", "rate")}, result["findings"]
        link = next(f for f in result["findings"] if f["field"] == "link")
        assert (link["actual"], link["expected"]) == ("4X HDR", "12X HDR") and link["switch_port"] == 3
        rate_finding = next(f for f in result["findings"] if f["field"] == "rate")
        assert (rate_finding["actual"], rate_finding["expected"]) == (25.0, 100.0)   # the most common rate
        assert "1X EDR" in rate_finding["message"]
    finally:
        lab.labctl("hw", "reset", "node2", rate)
        fabric(lab, "restore", "node2")


def test_discovery_report_draws_the_fabric(lab, tmp_path):
    """Item 3: the nodes model carries the topology and the discovery report draws it (degraded link red)."""
    cp = fabric(lab, "degrade", "node2", "--width", "4x")
    assert cp.returncode == 0, cp.stdout + cp.stderr
    try:
        topology(lab)                                    # the SM has swept the changed fabric
        out = tmp_path / "discovery"
        cp = lab.playbook("playbooks/discover.yml", extra_vars={"discovery_output_dir": str(out)})
        assert cp.returncode == 0, cp.stdout[-3000:]
        # node1 (IB, first of the play) mapped the fabric in its facts call: the separate task was skipped.
        mapper = cp.stdout.split("TASK [hpcnet.infiniband.discovery : Map the InfiniBand fabric")[1].split("TASK [")[0]
        assert "skipping" in mapper, mapper
        model = json.loads((out / "nodes.json").read_text())
        topo = model["topology"]
        assert sorted(s["name"] for s in topo["switches"].values()) == ["lab switch", "lab switch 2"]
        rows = {r["host"]: r for r in topo["hca_ports"]}
        assert {"node1", "node2", "node3"} <= set(rows), rows
        assert [h for h, r in rows.items() if r["degraded"]] == ["node2"], rows
        assert (rows["node2"]["width"], rows["node2"]["expected"]) == ("4X", "12X HDR")
        page = out / "nodes.html"
        html = page.read_text()
        assert '<section id="topology"><h2>Fabric</h2><svg' in html
        assert html.count('<g class="link degraded">') == 1 and html.count('<g class="switch">') == 2
        red, dark = shoot(page, tmp_path, "report", "1600,1200")
        assert red > 50 and dark > 500
    finally:
        fabric(lab, "restore", "node2")


def test_discovery_maps_from_the_first_infiniband_node_when_the_first_node_has_none(lab_factory, tmp_path):
    """The first node of the play is RoCE-only: its facts call maps nothing, the separate task maps the
    fabric from the first node with an ACTIVE InfiniBand port (node2)."""
    roce_first = lab_factory(LAB_NAME + "-roce", nodes=2, profiles=["cx5-roce", "cx3-ipoib"])
    out = tmp_path / "discovery"
    cp = roce_first.playbook("playbooks/discover.yml", extra_vars={"discovery_output_dir": str(out)})
    assert cp.returncode == 0, cp.stdout[-3000:]
    mapper = cp.stdout.split("TASK [hpcnet.infiniband.discovery : Map the InfiniBand fabric")[1].split("TASK [")[0]
    assert "ok: [node1 -> node2" in mapper, mapper
    topo = json.loads((out / "nodes.json").read_text())["topology"]
    assert "node2" in {row["host"] for row in topo["hca_ports"]}, topo["hca_ports"]
