"""ib_nodes_model: files written atomically, idempotent, check mode, bad input -> one clear error."""

import json
import os
import stat

import pytest
import yaml

from ansible_collections.hpcnet.infiniband.plugins.module_utils import _nodes_writer as writer
from ansible_collections.hpcnet.infiniband.plugins.modules import ib_nodes_model
import nodes_facts_fixtures as fx
from testlib import run_module


def _params(tmp_path, **extra):
    params = {"results": fx.lab_results(), "addresses": {"node1": "10.77.1.11"}, "output_dir": str(tmp_path / "out"),
              "basename": "nodes", "rules": None, "allow_mixed": False, "exclude_kinds": ["loopback", "virtual"],
              "html": True, "title": "InfiniBand discovery report", "mode": "0644"}
    params.update(extra)
    return params


def test_writes_json_yaml_html_then_idempotent(tmp_path):
    first = writer.write_outputs(_params(tmp_path))
    out = tmp_path / "out"
    assert first["changed"] is True
    assert sorted(os.listdir(out)) == ["nodes.html", "nodes.json", "nodes.yaml"]
    assert first["written"] == [str(out / "nodes.json"), str(out / "nodes.yaml"), str(out / "nodes.html")]
    for name in ("nodes.html", "nodes.json", "nodes.yaml"):
        assert stat.S_IMODE(os.stat(out / name).st_mode) == 0o644
    as_json = json.loads((out / "nodes.json").read_text())
    as_yaml = yaml.safe_load((out / "nodes.yaml").read_text())
    assert as_json == as_yaml
    assert first["node_status"]["node4"] == "unreachable"
    assert first["allocation"]["node2"]["storage"] == "eth1"
    assert first["report"][0].startswith("NODE")
    stamp = as_json["generated_at"]

    second = writer.write_outputs(_params(tmp_path))
    assert second["changed"] is False and second["written"] == []
    assert json.loads((out / "nodes.json").read_text())["generated_at"] == stamp


def test_yaml_is_the_pure_python_emitters_text(tmp_path):
    writer.write_outputs(_params(tmp_path))
    model = json.loads((tmp_path / "out" / "nodes.json").read_text())
    # libyaml's emitter (when PyYAML has it) writes what the pure-Python one wrote: a controller with or
    # without libyaml rewrites nothing.
    assert writer.dump_yaml(model) == "---\n" + yaml.dump(model, Dumper=yaml.SafeDumper, default_flow_style=False,
                                                          sort_keys=False, width=4096, allow_unicode=True)


@pytest.mark.skipif(not yaml.__with_libyaml__, reason="the pure-Python emitter folds a NEL into a space")
def test_yaml_keeps_every_character_of_text_read_from_a_host():
    odd = {"message": "a\x85b \u2028 \ufeff é: #x - 'q\"", "empty": "", "yes": "yes"}
    assert yaml.safe_load(writer.dump_yaml(odd)) == odd


def test_change_rewrites_and_check_mode_writes_nothing(tmp_path):
    writer.write_outputs(_params(tmp_path))
    before = (tmp_path / "out" / "nodes.json").read_text()
    results = fx.lab_results()
    results["node4"] = fx.registered(fx.cx3_ipoib())
    checked = writer.write_outputs(_params(tmp_path, results=results), check_mode=True)
    assert checked["changed"] is True and checked["written"] == []
    assert (tmp_path / "out" / "nodes.json").read_text() == before
    done = writer.write_outputs(_params(tmp_path, results=results))
    assert done["changed"] is True and done["node_status"]["node4"] == "discovered"
    assert not [n for n in os.listdir(tmp_path / "out") if n.startswith(".hpcnet-")]  # no temp files left


def test_mode_change_is_a_change(tmp_path):
    writer.write_outputs(_params(tmp_path))
    result = writer.write_outputs(_params(tmp_path, mode="0600", html=False))
    assert result["changed"] is True and result["html_path"] is None
    assert stat.S_IMODE(os.stat(tmp_path / "out" / "nodes.json").st_mode) == 0o600


def test_node_errors_for_refused_nodes(tmp_path):
    results = {"m": fx.registered(fx.mixed()), "b": fx.FAILED}
    result = writer.write_outputs(_params(tmp_path, results=results))
    assert set(result["node_errors"]) == {"m", "b"}
    assert "mismatching Mellanox drivers" in result["node_errors"]["m"]


@pytest.mark.parametrize("extra, message", [
    ({"basename": "../x"}, "basename must be a plain file name"),
    ({"mode": "rw-r--r--"}, "mode must be an octal string"),
    ({"rules": {"storage": [{"bogus": "x"}]}}, "unknown key(s) bogus"),
])
def test_bad_input_one_clear_error(tmp_path, extra, message, capsys):
    result = run_module(ib_nodes_model, _params(tmp_path, **extra), capsys)
    assert result["failed"] is True and message in result["msg"]
    assert not (tmp_path / "out").exists()


def test_module_main_success(tmp_path, capsys):
    result = run_module(ib_nodes_model, _params(tmp_path), capsys)
    assert result["changed"] is True and result["summary"]["nodes"] == 5
    assert result["model_path"] == str(tmp_path / "out" / "nodes.json")
