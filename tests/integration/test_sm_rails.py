"""Every rail's subnet manager (issue 14 item 5), on the lab's simulated fabric.

Lab `sm-rails`: one ConnectX-3 node with two InfiniBand ports (profile cx3-eipoib). Port 1 is cabled to
the simulated fabric, where OpenSM runs; port 2 is not on that fabric: no subnet manager answers through
it (`sminfo -C mlx4_0 -P 2` fails), as on a second rail whose fabric has lost its SM while the port keeps
ACTIVE. The check asks each port's own fabric: with query_sm=always it refuses the host naming port 2,
and port 1's master SM is reported.
"""

from __future__ import annotations

import pytest

from conftest import run_module  # tests/integration/conftest.py

LAB_NAME = "sm-rails"


@pytest.fixture(scope="module")
def lab(lab_factory):
    return lab_factory(LAB_NAME, nodes=1, profiles=["cx3-eipoib"])


def test_a_rail_without_a_subnet_manager_is_refused_naming_its_port(lab):
    result = run_module(lab, "hpcnet.infiniband.ib_sm_check", "node1", {"query_sm": "always"})["node1"]
    assert result.get("failed"), result
    assert "mlx4_0 port 2" in result["msg"], result["msg"]
    assert "mlx4_0 port 1" not in result["msg"], result["msg"]
    ports = {str(p["port"]): p for p in result["ports"]}
    assert ports["1"]["sm"]["guid"] and ports["1"]["sm"]["error"] is None, ports["1"]  # port 1: its master SM


def test_without_a_required_answer_the_silent_rail_is_a_warning(lab):
    result = run_module(lab, "hpcnet.infiniband.ib_sm_check", "node1", {})["node1"]
    assert not result.get("failed"), result
    assert any("mlx4_0 port 2" in w for w in result.get("warnings", [])), result
