"""Rules of the subnet-manager check: port verdicts, sminfo parsing, requirements, opensm config model."""

import os

import pytest

from ansible_collections.hpcnet.infiniband.plugins.module_utils import _sm
from ansible_collections.hpcnet.infiniband.plugins.module_utils._host import Host, SysDir
from fakehost import PHYS, STATES, FakeRunner, make_port, write_attr


def set_port(pdir, **values):
    for name, value in values.items():
        if name == "state":
            value = STATES[value]
        elif name == "phys_state":
            value = PHYS[value]
        elif name in ("lid", "sm_lid"):
            value = "0x%x" % value
        write_attr(os.path.join(pdir, name), value)


SMINFO_MASTER = (0, "sminfo: sm lid 1 sm guid 0x100003, activity count 65 priority 5 state 3 SMINFO_MASTER\n", "")
SMIR_TWO = (0, """SMInfoRecord dump:
\t\tRID
\t\tLID...................1
\t\tSMInfo dump:
\t\tGUID..................0x0000000000100003
\t\tSM_Key................0x0000000000000000
\t\tActCount..............103
\t\tPriority..............5
\t\tSMState...............3
SMInfoRecord dump:
\t\tRID
\t\tLID...................4
\t\tSMInfo dump:
\t\tGUID..................0x0000000000100005
\t\tSM_Key................0x0000000000000000
\t\tActCount..............38
\t\tPriority..............3
\t\tSMState...............2
""", "")


def host_for(root, runner=None):
    return Host(sysfs_root=str(root), fs_root=str(root), runner=runner, live=False)


# ------------------------------------------------------------------------------------------ verdicts
def test_active_port_passes(tmp_path):
    make_port(tmp_path, "mlx4_0", 1)
    result, failure = _sm.run_check(host_for(tmp_path), query="never")
    assert failure is None
    assert result["ports"][0]["state"] == "ACTIVE"
    assert result["ports"][0]["sm_lid"] == 1
    assert result["ports"][0]["ok"] is True
    assert result["failed_ports"] == []
    assert result["sm"] is None


def test_init_port_message_exact(tmp_path):
    make_port(tmp_path, "mlx4_0", 1, state="INIT", lid=0, sm_lid=0)
    result, failure = _sm.run_check(host_for(tmp_path), query="never")
    assert failure == (
        "mlx4_0 port 1 is INIT (LinkUp): no subnet manager has configured it; start opensm on a node or the switch"
    )
    assert result["failed_ports"][0]["state"] == "INIT"


def test_down_polling_message(tmp_path):
    make_port(tmp_path, "mlx4_0", 1, state="DOWN", phys="Polling", lid=0, sm_lid=0)
    _result, failure = _sm.run_check(host_for(tmp_path), query="never")
    assert failure == "mlx4_0 port 1 is DOWN (Polling): no link: check the cable and the switch port"


def test_down_disabled_and_armed_messages(tmp_path):
    assert "disabled" in _sm.port_problem({"device": "d", "port": 1, "state": "DOWN", "phys_state": "Disabled"})
    armed = _sm.port_problem({"device": "d", "port": 1, "state": "ARMED", "phys_state": "LinkUp"})
    assert armed.startswith("d port 1 is ARMED (LinkUp): the subnet manager has not finished")


def test_active_with_sm_lid_zero(tmp_path):
    make_port(tmp_path, "mlx5_0", 1, sm_lid=0)
    _result, failure = _sm.run_check(host_for(tmp_path), query="never")
    assert failure.startswith("mlx5_0 port 1 is ACTIVE (LinkUp) but its sm_lid is 0")


def test_ethernet_ports_are_ignored(tmp_path):
    make_port(tmp_path, "mlx5_0", 1)
    make_port(tmp_path, "mlx5_1", 1, state="DOWN", phys="Disabled", link_layer="Ethernet")
    result, failure = _sm.run_check(host_for(tmp_path), query="never")
    assert failure is None
    assert [(p["device"], p["port"]) for p in result["ports"]] == [("mlx5_0", 1)]


def test_host_without_infiniband_passes_at_once(tmp_path):
    """A RoCE-only or Ethernet-only node has nothing for an SM to serve: ok at once, never polled
    (it used to fail after polling for the whole wait_timeout, and site.yml then stopped every node)."""
    make_port(tmp_path, "mlx5_0", 1, link_layer="Ethernet")

    def sleep(_seconds):
        raise AssertionError("a host without an IB port must not be polled")

    result, failure = _sm.run_check(host_for(tmp_path), wait_timeout=60, sleep=sleep)
    assert failure is None and result["ports"] == [] and result["attempts"] == 1
    assert _sm.summary(result) == "no InfiniBand port: nothing for a subnet manager to serve"
    # No RDMA device at all (plain Ethernet): the same.
    result, failure = _sm.run_check(host_for(tmp_path / "empty"), wait_timeout=60, sleep=sleep)
    assert failure is None and result["ports"] == []
    # Asked to require a port, it fails at once, saying why.
    result, failure = _sm.run_check(host_for(tmp_path), wait_timeout=60, sleep=sleep, require_ports=True)
    assert failure == ("no InfiniBand port: nothing for a subnet manager to serve on this host "
                       "(require_ports is true)")


def test_all_failing_ports_in_one_message(tmp_path):
    make_port(tmp_path, "mlx4_0", 1, state="INIT", lid=0, sm_lid=0)
    make_port(tmp_path, "mlx4_0", 2, state="DOWN", phys="Polling", lid=0, sm_lid=0)
    make_port(tmp_path, "mlx5_0", 1)
    result, failure = _sm.run_check(host_for(tmp_path), query="never")
    assert failure == (
        "2 subnet-manager problems: "
        "mlx4_0 port 1 is INIT (LinkUp): no subnet manager has configured it; start opensm on a node or the switch; "
        "mlx4_0 port 2 is DOWN (Polling): no link: check the cable and the switch port"
    )
    assert [(p["device"], p["port"]) for p in result["failed_ports"]] == [("mlx4_0", 1), ("mlx4_0", 2)]


def test_local_sm_port(tmp_path):
    make_port(tmp_path, "mlx4_0", 1, lid=1, sm_lid=1)
    result, failure = _sm.run_check(host_for(tmp_path), query="never")
    assert failure is None
    assert result["ports"][0]["local_sm"] is True


# ------------------------------------------------------------------------------------------ selection
def test_select_devices_and_ports(tmp_path):
    make_port(tmp_path, "mlx4_0", 1)
    make_port(tmp_path, "mlx4_0", 2, state="INIT", sm_lid=0)
    make_port(tmp_path, "mlx5_0", 1, state="INIT", sm_lid=0)
    result, failure = _sm.run_check(host_for(tmp_path), devices=["mlx4_0"], ports=[1], query="never")
    assert failure is None
    assert [(p["device"], p["port"]) for p in result["ports"]] == [("mlx4_0", 1)]


def test_select_missing_device_and_port(tmp_path):
    make_port(tmp_path, "mlx4_0", 1)
    _result, failure = _sm.run_check(host_for(tmp_path), devices=["mlx5_9"], query="never")
    assert failure == "HCA mlx5_9 not found on this host (present: mlx4_0)"
    _result, failure = _sm.run_check(host_for(tmp_path), ports=[2], query="never")
    assert failure == "port 2 not found on mlx4_0 (ports: 1)"


def test_bad_arguments_are_refused_before_reading(tmp_path):
    _result, failure = _sm.run_check(host_for(tmp_path), devices=["../etc"], sm_guid="zz", poll_interval=0)
    assert "devices: '../etc' is not an RDMA device name" in failure
    assert "sm_guid: GUID 'zz' is not a GUID" in failure
    assert "poll_interval must be > 0" in failure


# ------------------------------------------------------------------------------------------ polling
def test_wait_timeout_polls_until_active(tmp_path):
    pdir = make_port(tmp_path, "mlx4_0", 1, state="INIT", lid=0, sm_lid=0)
    now = [0.0]
    sleeps = []

    def sleep(seconds):
        sleeps.append(seconds)
        now[0] += seconds
        if len(sleeps) == 2:  # the SM sweeps during the second wait
            set_port(pdir, state="ACTIVE", lid=3, sm_lid=1)

    result, failure = _sm.run_check(host_for(tmp_path), wait_timeout=30, poll_interval=2, query="never",
                                    sleep=sleep, clock=lambda: now[0])
    assert failure is None
    assert result["attempts"] == 3
    assert sleeps == [2.0, 2.0]
    assert result["waited"] == 4.0


def test_wait_timeout_gives_up_with_final_message(tmp_path):
    make_port(tmp_path, "mlx4_0", 1, state="INIT", lid=0, sm_lid=0)
    now = [0.0]

    def sleep(seconds):
        now[0] += seconds

    result, failure = _sm.run_check(host_for(tmp_path), wait_timeout=5, poll_interval=2, query="never",
                                    sleep=sleep, clock=lambda: now[0])
    assert failure.startswith("mlx4_0 port 1 is INIT (LinkUp)")
    assert result["attempts"] == 4  # t=0, 2, 4, 5 (the last wait is cut to the deadline)
    assert result["waited"] == 5.0


def test_no_wait_reads_once(tmp_path):
    make_port(tmp_path, "mlx4_0", 1, state="INIT", sm_lid=0)

    def sleep(_seconds):
        raise AssertionError("must not sleep without wait_timeout")

    result, _failure = _sm.run_check(host_for(tmp_path), query="never", sleep=sleep)
    assert result["attempts"] == 1


# ------------------------------------------------------------------------------------------ sminfo
def test_parse_sminfo():
    info = _sm.parse_sminfo(SMINFO_MASTER[1])
    assert info == {
        "lid": 1,
        "guid": "0000:0000:0010:0003",
        "guid_hex": "0x0000000000100003",
        "activity_count": 65,
        "priority": 5,
        "state_code": 3,
        "state": "MASTER",
    }
    standby = _sm.parse_sminfo("sminfo: sm lid 4 sm guid 0x2c90300a1b2c1, activity count 0 priority 3 state 2 SMINFO_STANDBY")
    assert standby["state"] == "STANDBY" and standby["guid"] == "0002:c903:00a1:b2c1"
    assert _sm.parse_sminfo("sminfo: iberror: failed: query") is None


def test_parse_smir_lists_master_and_standby():
    sms = _sm.parse_smir(SMIR_TWO[1])
    assert [(s["guid_hex"], s["lid"], s["priority"], s["state"]) for s in sms] == [
        ("0x0000000000100003", 1, 5, "MASTER"),
        ("0x0000000000100005", 4, 3, "STANDBY"),
    ]


def test_query_sm_reports_master(tmp_path):
    make_port(tmp_path, "mlx4_0", 1)
    make_port(tmp_path, "mlx4_0", 2, link_layer="Ethernet")
    runner = FakeRunner({"sminfo": SMINFO_MASTER, "saquery": SMIR_TWO})
    result, failure = _sm.run_check(host_for(tmp_path, runner), query="auto")
    assert failure is None
    sm = result["sm"]
    assert (sm["guid_hex"], sm["lid"], sm["priority"], sm["state"], sm["local"], sm["count"]) == (
        "0x0000000000100003", 1, 5, "MASTER", False, 2)
    # One IB port (the RoCE port does not count): the tools' default port is that port.
    assert runner.calls == [["sminfo"], ["saquery", "SMIR"]]
    assert "master SM 0x0000000000100003 (LID 1, priority 5, MASTER)" in _sm.summary(result)


def test_query_auto_without_infiniband_diags_is_no_failure(tmp_path):
    make_port(tmp_path, "mlx4_0", 1)
    result, failure = _sm.run_check(host_for(tmp_path, FakeRunner()), query="auto")
    assert failure is None
    assert result["sm"]["queried"] is False


def test_query_always_fails_when_no_sm_answers(tmp_path):
    make_port(tmp_path, "mlx4_0", 1)
    stderr = "ibwarn: [1] mad_rpc: _do_madrpc failed; dport (DR path slid 0)\nsminfo: iberror: failed: query\n"
    runner = FakeRunner({"sminfo": (255, "", stderr)})
    _result, failure = _sm.run_check(host_for(tmp_path, runner), query="always")
    assert failure == ("cannot verify the subnet manager (query_sm=always): sminfo found no subnet manager "
                       "(ibwarn: [1] mad_rpc: _do_madrpc failed; dport (DR path slid 0))")


def test_query_timeout_message(tmp_path):
    make_port(tmp_path, "mlx4_0", 1)
    runner = FakeRunner({"sminfo": (124, "", "")})
    _result, failure = _sm.run_check(host_for(tmp_path, runner), query="always", sm_query_timeout=3)
    assert "sminfo timed out after 3s: no subnet manager answers" in failure


def test_ports_failing_skip_the_sm_query(tmp_path):
    make_port(tmp_path, "mlx4_0", 1, state="INIT", sm_lid=0)
    runner = FakeRunner({"sminfo": SMINFO_MASTER})
    _result, failure = _sm.run_check(host_for(tmp_path, runner), query="always")
    assert failure.startswith("mlx4_0 port 1 is INIT")
    assert runner.calls == []


def test_requirements_min_sms_guid_local(tmp_path):
    # This host's port GUID is the master's: the SM runs here.
    make_port(tmp_path, "mlx4_0", 1, lid=1, sm_lid=1, guid="0000:0000:0010:0003")
    runner = FakeRunner({"sminfo": SMINFO_MASTER, "saquery": (1, "", "")})
    result, failure = _sm.run_check(host_for(tmp_path, runner), min_sms=2, sm_guid="0002:c903:00a1:b2c1",
                                    allow_local_sm=False)
    assert result["sm"]["local"] is True
    assert failure == (
        "3 subnet-manager problems: "
        "1 subnet manager(s) on the fabric (0x0000000000100003 MASTER), at least 2 required; start a standby opensm; "
        "the master subnet manager is 0x0000000000100003 (LID 1, priority 5), not the expected 0x0002c90300a1b2c1; "
        "the master subnet manager 0x0000000000100003 runs on this host, and allow_local_sm is false"
    )


def test_requirements_met(tmp_path):
    make_port(tmp_path, "mlx4_0", 1)
    runner = FakeRunner({"sminfo": SMINFO_MASTER, "saquery": SMIR_TWO})
    _result, failure = _sm.run_check(host_for(tmp_path, runner), min_sms=2, sm_guid="0x100003",
                                     allow_local_sm=False)
    assert failure is None


def test_requirement_without_tool_fails_in_auto(tmp_path):
    make_port(tmp_path, "mlx4_0", 1)
    _result, failure = _sm.run_check(host_for(tmp_path, FakeRunner()), min_sms=1)
    assert failure == ("cannot verify the subnet manager (min_sms=1): "
                       "sminfo not found (infiniband-diags is not installed)")


# ------------------------------------------------------------------------------------------ real capture
def test_real_connectx3_capture(mlx4_capture):
    result, failure = _sm.run_check(host_for(mlx4_capture), query="never")
    assert failure is None
    # scif0 (Xeon Phi) has no InfiniBand ports; mlx4_0 port 1 is ACTIVE with LID 0x3a4 and SM LID 1.
    port = [p for p in result["ports"] if p["device"] == "mlx4_0"][0]
    assert (port["state"], port["phys_state"], port["lid"], port["sm_lid"]) == ("ACTIVE", "LinkUp", 0x3A4, 1)


# ------------------------------------------------------------------------------------------ values
def test_no_parser_of_its_own():
    """P_Keys and GUIDs go through _values only (issue 10 items 9/10)."""
    for name in ("parse_pkey", "normalize_guid", "guid_hex", "GUID_RE", "KERNEL_GUID_RE"):
        assert getattr(_sm, name, None) is None or getattr(_sm, name).__module__.endswith("_values"), name


@pytest.mark.parametrize("pkey", ["8002", "0x8002", "0X8002", 0x8002, "0002", 2])
def test_partition_pkey_is_hex(pkey):
    """"8002" is 0x8002 as every IB tool prints it (it was read as decimal 8002 = 0x1f42)."""
    parts, errors = _sm.normalize_partitions([{"name": "p", "pkey": pkey}], add_default=False)
    assert errors == []
    assert _sm.render_partitions(parts).splitlines()[1] == "p=0x0002, ipoib : ;"


def test_guids_in_any_spelling():
    parts, errors = _sm.normalize_partitions([{"name": "p", "pkey": 2, "members": [
        "0002:c903:00a1:b2c1", "00:02:c9:03:00:a1:b2:c2", 0x2c90300a1b2c3]}], add_default=False)
    assert errors == []
    assert [m["guid"] for m in parts[0]["members"]] == [
        "0x0002c90300a1b2c1", "0x0002c90300a1b2c2", "0x0002c90300a1b2c3"]
    settings, errors = _sm.opensm_settings(guid="00:02:c9:03:00:a1:b2:c1")
    assert errors == [] and settings == [("guid", "0x0002c90300a1b2c1")]


# ------------------------------------------------------------------------------------------ opensm config
def test_render_partitions_adds_default_and_formats_members():
    parts, errors = _sm.normalize_partitions([
        {"name": "storage", "pkey": "0x8001", "mtu": 5, "sl": 1,
         "members": ["0002:c903:00a1:b2c1", {"guid": "ALL_CAS", "membership": "limited"}]},
    ])
    assert errors == []
    assert _sm.render_partitions(parts).splitlines() == [
        "# Managed by hpcnet.infiniband (ib_opensm_config); local changes are overwritten.",
        "Default=0x7fff, ipoib, defmember=full : ALL, ALL_SWITCHES=full, SELF=full ;",
        "storage=0x0001, ipoib, mtu=5, sl=1 : 0x0002c90300a1b2c1, ALL_CAS=limited ;",
    ]


def test_render_partitions_keeps_given_default():
    parts, errors = _sm.normalize_partitions([{"name": "Default", "pkey": "0x7fff", "ipoib": False,
                                               "members": ["ALL"]}])
    assert errors == []
    assert _sm.render_partitions(parts).splitlines()[1:] == ["Default=0x7fff : ALL ;"]


@pytest.mark.parametrize("partitions,message", [
    ([{"name": "a b", "pkey": 1}], "name 'a b' must be"),
    ([{"name": "a", "pkey": "0x8000"}], "partition a: P_Key 0x8000 is invalid"),
    ([{"name": "a", "pkey": "80020"}], "partition a: P_Key '80020' is not a hexadecimal P_Key"),
    ([{"name": "a", "pkey": 1}, {"name": "b", "pkey": "0x8001"}], "P_Key 0x0001 is already used by partition a"),
    ([{"name": "a", "pkey": 1}, {"name": "a", "pkey": 2}], "partition a: defined twice"),
    ([{"name": "a", "pkey": 1, "mtu": 6}], "mtu 6 must be an integer 1-5"),
    ([{"name": "a", "pkey": 1, "members": ["xyz"]}], "member 'xyz' is not a port GUID"),
    ([{"name": "a", "pkey": 1, "members": [{"guid": "ALL", "membership": "half"}]}], "membership 'half'"),
    ([{"name": "a", "pkey": 1, "defmember": "x"}], "defmember 'x' must be one of"),
])
def test_partition_validation(partitions, message):
    _parts, errors = _sm.normalize_partitions(partitions)
    assert any(message in e for e in errors), errors


def test_opensm_settings_render():
    settings, errors = _sm.opensm_settings(guid="0002:c903:00a1:b2c1", priority=14, virt_enabled=2,
                                           sweep_interval=5, partitions_path="/etc/opensm/partitions.conf",
                                           options={"log_max_size": 0, "babbling_port_policy": True})
    assert errors == []
    assert _sm.render_opensm_conf(settings).splitlines()[2:] == [
        "guid 0x0002c90300a1b2c1",
        "sm_priority 14",
        "virt_enabled 2",
        "sweep_interval 5",
        "partition_config_file /etc/opensm/partitions.conf",
        "babbling_port_policy TRUE",
        "log_max_size 0",
    ]


@pytest.mark.parametrize("kwargs,message", [
    ({"guid": "0xzz"}, "guid '0xzz' is not a port GUID"),
    ({"priority": 16}, "priority 16 must be 0 (lowest) to 15 (highest)"),
    ({"virt_enabled": 3}, "virt_enabled 3 must be 0"),
    ({"sweep_interval": -1}, "sweep_interval -1 must be"),
    ({"options": {"Bad Key": 1}}, "option name 'Bad Key'"),
    ({"options": {"sm_priority": 1}}, "option sm_priority is set by its own parameter"),
    ({"options": {"log_file": "a\nb"}}, "option log_file: value"),
])
def test_opensm_settings_validation(kwargs, message):
    _settings, errors = _sm.opensm_settings(**kwargs)
    assert any(message in e for e in errors), errors


def test_service_defaults():
    assert _sm.render_service_defaults("0x100003").splitlines()[-1] == 'PORTS="0x0000000000100003"'
    assert _sm.render_service_defaults(None).splitlines()[-1] == 'PORTS="ALL"'


def test_auto_query_failure_is_a_warning(tmp_path):
    make_port(tmp_path, "mlx4_0", 1)
    host = host_for(tmp_path, FakeRunner({"sminfo": (124, "", "")}))
    result, failure = _sm.run_check(host, query="auto")
    assert failure is None
    assert result["sm"]["error"].startswith("sminfo timed out")
    assert host.warnings == ["the ports are ACTIVE but sminfo timed out after 15s: no subnet manager answers; "
                             "the fabric may have lost its subnet manager"]


def test_requirements_need_the_query(tmp_path):
    make_port(tmp_path, "mlx4_0", 1)
    _result, failure = _sm.run_check(host_for(tmp_path), query="never", min_sms=2)
    assert failure == "min_sms, sm_guid and allow_local_sm=false need the SM query: set query_sm to auto or always"


# ------------------------------------------------------------------------------------------ every rail
SMINFO_OTHER = (0, "sminfo: sm lid 7 sm guid 0x200009, activity count 12 priority 3 state 3 SMINFO_MASTER\n", "")
NO_SM = (255, "", "ibwarn: [1] mad_rpc: _do_madrpc failed; dport (DR path slid 0)\nsminfo: iberror: failed: query\n")


def rails_runner(answers):
    """sminfo/saquery answering per port: ``answers`` {(device, port): sminfo answer}."""
    def sminfo(argv):
        return answers[(argv[argv.index("-C") + 1], int(argv[argv.index("-P") + 1]))]
    return FakeRunner({"sminfo": sminfo, "saquery": (1, "", "")})


def two_rails(tmp_path):
    make_port(tmp_path, "mlx5_0", 1, guid="0002:c903:0001:0001")
    make_port(tmp_path, "mlx5_1", 1, lid=5, sm_lid=7, guid="0002:c903:0001:0002")


def test_every_rail_is_asked_through_its_own_port(tmp_path):
    two_rails(tmp_path)
    runner = rails_runner({("mlx5_0", 1): SMINFO_MASTER, ("mlx5_1", 1): SMINFO_OTHER})
    result, failure = _sm.run_check(host_for(tmp_path, runner), query="always")
    assert failure is None
    assert runner.calls == [
        ["sminfo", "-C", "mlx5_0", "-P", "1"], ["saquery", "-C", "mlx5_0", "-P", "1", "SMIR"],
        ["sminfo", "-C", "mlx5_1", "-P", "1"], ["saquery", "-C", "mlx5_1", "-P", "1", "SMIR"]]
    assert [p["sm"]["guid_hex"] for p in result["ports"]] == ["0x0000000000100003", "0x0000000000200009"]
    assert result["sm"]["guid_hex"] == "0x0000000000100003"
    assert _sm.summary(result) == (
        "2 InfiniBand port(s) ACTIVE; master SM mlx5_0 port 1: 0x0000000000100003 (LID 1, priority 5, MASTER); "
        "mlx5_1 port 1: 0x0000000000200009 (LID 7, priority 3, MASTER)")


def test_a_rail_without_sm_fails_naming_the_port(tmp_path):
    """sminfo through the default port only saw the first fabric: the second rail's lost SM went unseen."""
    two_rails(tmp_path)
    runner = rails_runner({("mlx5_0", 1): SMINFO_MASTER, ("mlx5_1", 1): NO_SM})
    result, failure = _sm.run_check(host_for(tmp_path, runner), query="always")
    assert failure == ("mlx5_1 port 1: cannot verify the subnet manager (query_sm=always): sminfo found no "
                       "subnet manager (ibwarn: [1] mad_rpc: _do_madrpc failed; dport (DR path slid 0))")
    assert result["ports"][1]["sm"]["error"].startswith("sminfo found no subnet manager")
    # query_sm=auto: a warning naming the port (ports keep ACTIVE for a while after their SM died).
    host = host_for(tmp_path, runner)
    _result, failure = _sm.run_check(host, query="auto")
    assert failure is None
    assert host.warnings == ["mlx5_1 port 1: the port is ACTIVE but sminfo found no subnet manager (ibwarn: [1] "
                             "mad_rpc: _do_madrpc failed; dport (DR path slid 0)); the fabric may have lost its "
                             "subnet manager"]


def test_requirements_hold_on_every_rail(tmp_path):
    two_rails(tmp_path)
    runner = rails_runner({("mlx5_0", 1): SMINFO_MASTER, ("mlx5_1", 1): SMINFO_OTHER})
    _result, failure = _sm.run_check(host_for(tmp_path, runner), sm_guid="0x100003")
    assert failure == ("mlx5_1 port 1: the master subnet manager is 0x0000000000200009 (LID 7, priority 3), "
                       "not the expected 0x0000000000100003")


def test_one_rail_of_two_selected_is_asked_through_its_port(tmp_path):
    two_rails(tmp_path)
    runner = rails_runner({("mlx5_1", 1): SMINFO_OTHER})
    result, failure = _sm.run_check(host_for(tmp_path, runner), devices=["mlx5_1"], query="always")
    assert failure is None and result["sm"]["guid_hex"] == "0x0000000000200009"
    assert runner.calls[0] == ["sminfo", "-C", "mlx5_1", "-P", "1"]


def test_a_rail_that_is_down_is_named_and_not_queried(tmp_path):
    make_port(tmp_path, "mlx5_0", 1)
    make_port(tmp_path, "mlx5_0", 2, state="INIT", lid=0, sm_lid=0)
    runner = rails_runner({("mlx5_0", 1): SMINFO_MASTER})
    _result, failure = _sm.run_check(host_for(tmp_path, runner), query="always")
    assert failure == ("mlx5_0 port 2 is INIT (LinkUp): no subnet manager has configured it; "
                       "start opensm on a node or the switch")
    assert runner.calls == []


# ------------------------------------------------------------------------------------------ what is read
def test_reads_only_the_port_attributes_it_judges(tmp_path, monkeypatch):
    """No P_Key table is read (each entry is a firmware query on mlx4/mlx5), nor anything else."""
    pdir = make_port(tmp_path, "mlx4_0", 1)
    for index in range(4):
        write_attr(os.path.join(pdir, "pkeys", str(index)), "0xffff")
    write_attr(os.path.join(pdir, "cap_mask"), "0x02510868")
    opened = []
    real_opendir = Host.opendir

    def opendir(self, relpath):
        opened.append(relpath)
        return real_opendir(self, relpath)

    read = []
    real_read_bytes = SysDir.read_bytes

    def read_bytes(self, names, *args, **kwargs):
        read.extend("%s/%s" % (self.rel, name) for name in names)
        return real_read_bytes(self, names, *args, **kwargs)

    monkeypatch.setattr(Host, "opendir", opendir)
    monkeypatch.setattr(SysDir, "read_bytes", read_bytes)
    result, failure = _sm.run_check(host_for(tmp_path), query="never")
    assert failure is None and result["ports"][0]["port_guid"] == "0002:c903:0001:0001"
    assert result["ports"][0]["rate"] == "56 Gb/sec (4X FDR)"
    assert not [path for path in opened + read if "pkeys" in path or "cap_mask" in path], (opened, read)
    port = "class/infiniband/mlx4_0/ports/1/"
    assert sorted(read) == sorted([port + name for name in _sm.PORT_ATTRS] + [port + "gids/0"])


def test_oversized_attribute_is_not_a_value(tmp_path):
    pdir = make_port(tmp_path, "mlx4_0", 1)
    write_attr(os.path.join(pdir, "state"), "4: ACTIVE" + " " * 300 + "x")
    _result, failure = _sm.run_check(host_for(tmp_path), query="never")
    assert failure == "mlx4_0 port 1: the port state cannot be read (sysfs state missing)"


def test_vf_ports_are_checked_but_not_asked(tmp_path):
    """SR-IOV VF ports: virtual ports on the PF's fabric; sminfo (SMPs) is not sent through them."""
    make_port(tmp_path, "mlx5_0", 1)
    make_port(tmp_path, "mlx5_2", 1, guid="0002:c903:0001:0009")
    os.makedirs(os.path.join(str(tmp_path), "class", "infiniband", "mlx5_2", "device", "physfn"))
    runner = FakeRunner({"sminfo": SMINFO_MASTER, "saquery": SMIR_TWO})
    result, failure = _sm.run_check(host_for(tmp_path, runner), query="always")
    assert failure is None
    assert [(p["device"], p["virtual"], p["ok"]) for p in result["ports"]] == [("mlx5_0", False, True),
                                                                               ("mlx5_2", True, True)]
    assert runner.calls == [["sminfo"], ["saquery", "SMIR"]]  # one physical port: the default port
    assert result["ports"][1]["sm"] is None
