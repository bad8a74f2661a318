"""Verifier of the boot_state scenario: hpcnet-ib-boot.service under real systemd, after a reboot."""

import os

import testinfra.utils.ansible_runner

testinfra_hosts = testinfra.utils.ansible_runner.AnsibleRunner(
    os.environ["MOLECULE_INVENTORY_FILE"]).get_hosts("all")

UNIT = "hpcnet-ib-boot.service"


def _show(host, *props):
    out = host.check_output("systemctl show %s -p %s", UNIT, ",".join(props))
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def test_installed_and_enabled(host):
    assert host.file("/etc/systemd/system/" + UNIT).contains("Managed by hpcnet.infiniband")
    assert host.file("/usr/local/sbin/hpcnet-ib-boot").mode == 0o755
    assert host.file("/etc/hpcnet-infiniband/boot-state.json").mode == 0o644
    assert host.run("systemctl is-enabled %s", UNIT).stdout.strip() == "enabled"


def test_ordered_before_network_pre(host):
    show = _show(host, "Before", "After", "Wants", "WantedBy")
    assert "network-pre.target" in show["Before"].split()
    assert "network-pre.target" in show["Wants"].split()
    assert "systemd-modules-load.service" in show["After"].split()
    assert "sysinit.target" in show["WantedBy"].split()


def test_ran_at_boot_and_exited_0_without_hardware(host):
    show = _show(host, "ActiveState", "Result", "ExecMainStatus", "ExecMainStartTimestampMonotonic")
    assert show["ActiveState"] == "active" and show["Result"] == "success" and show["ExecMainStatus"] == "0"
    assert int(show["ExecMainStartTimestampMonotonic"]) > 0
    log = host.check_output("journalctl -b -u %s --no-pager -o cat", UNIT)
    assert "sriov 0000:82:00.0: 0000:82:00.0 is not present on this host: skipped" in log
    assert "ipoib ib0 pkey 0x8002: ib0 is not present on this host: skipped" in log
    assert "0 problem(s)" in log
