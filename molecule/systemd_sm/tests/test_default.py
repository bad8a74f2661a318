"""Verifier of the systemd_sm scenario: opensm under real systemd on a simulated fabric.

Runs twice: after converge/idempotence, and after the side effect (reconfigure.yml), which changes the
priority and the partitions and leaves the pre-change PID of opensm in MARKER. Each test expects the
configuration of the phase it runs in; the restart test only runs after the side effect.
Every check is one command in the container (one ssh session through ../_shared/sshd-proxy.sh).
"""

import os

import pytest
import testinfra.utils.ansible_runner

testinfra_hosts = testinfra.utils.ansible_runner.AnsibleRunner(
    os.environ["MOLECULE_INVENTORY_FILE"]).get_hosts("ib_sm_hosts")

HEADER = "# Managed by hpcnet.infiniband (ib_opensm_config); local changes are overwritten."
SM_PORT_GUID = "0x0000000000100001"  # Hca1 of files/fabric.net, the port the role binds opensm to
INSTANCE = "opensm@%s.service" % SM_PORT_GUID  # Debian: opensm.service starts one of these per port
MARKER = "/root/opensm-before-reconfigure.txt"
# Commands that ask the simulated fabric, as the client HCA (Hca2).
SIM_ENV = ("cd /var/lib/umad2sim && SIM_HOST=Hca2 "
           "LD_PRELOAD=/usr/lib/x86_64-linux-gnu/umad2sim/libumad2sim.so ")

DEFAULT_PARTITION = "Default=0x7fff, ipoib, defmember=full : ALL, ALL_SWITCHES=full, SELF=full ;"
EXPECTED = {
    # molecule.yml
    "converge": {
        "priority": 14,
        "partitions": [DEFAULT_PARTITION, "storage=0x0001, ipoib, mtu=4 : ALL_CAS ;"],
        # P_Key table of a CA port: the default partition (full) and storage (ALL_CAS: limited member)
        "pkeys": {"0xffff", "0x0001"},
    },
    # reconfigure.yml
    "reconfigured": {
        "priority": 9,
        "partitions": [DEFAULT_PARTITION, "storage=0x0001, ipoib, mtu=5 : ALL_CAS ;",
                       "compute=0x0003, ipoib : ALL_CAS ;"],
        "pkeys": {"0xffff", "0x0001", "0x0003"},
    },
}


def properties(text):
    """``systemctl show`` output of several units -> one dict per unit (blank line between units)."""
    units = []
    for block in text.strip().split("\n\n"):
        units.append(dict(line.split("=", 1) for line in block.splitlines() if "=" in line))
    return units


@pytest.fixture(scope="module")
def before(host):
    """The opensm instance before the side effect (None before the side effect ran)."""
    result = host.run("cat %s" % MARKER)
    return properties(result.stdout)[0] if result.rc == 0 else None


@pytest.fixture(scope="module")
def expected(before):
    return EXPECTED["converge" if before is None else "reconfigured"]


def test_opensm_is_active_and_enabled(host):
    service, instance = properties(host.check_output(
        "systemctl show --property=Id,ActiveState,SubState,UnitFileState,MainPID opensm.service %s" % INSTANCE))
    # opensm.service is Debian's oneshot (RemainAfterExit) that started the instance for the GUID.
    assert (service["ActiveState"], service["SubState"], service["UnitFileState"]) == ("active", "exited", "enabled")
    assert (instance["ActiveState"], instance["SubState"]) == ("active", "running")
    assert int(instance["MainPID"]) > 0


def test_rendered_files(host, expected):
    """opensm.conf, partitions.conf and the service defaults are what the role rendered."""
    paths = ["/etc/opensm/opensm.conf", "/etc/opensm/partitions.conf", "/etc/default/opensm"]
    listing = host.check_output("for f in %s; do stat -c '=== %%n %%a %%U' \"$f\"; cat \"$f\"; done" % " ".join(paths))
    files = {}
    for chunk in listing.split("=== ")[1:]:
        head, _sep, content = chunk.partition("\n")
        path, mode, owner = head.split()
        files[path] = (mode, owner, content.splitlines())
    assert sorted(files) == sorted(paths)
    assert all(mode == "644" and owner == "root" for mode, owner, _lines in files.values())
    # Debian's opensm package ships /etc/default/opensm: only its PORTS= line is the role's (the original is
    # kept as a backup); the two opensm files are the collection's own.
    assert all(files[path][2][0] == HEADER for path in paths[:2])
    assert [line for line in files["/etc/default/opensm"][2] if line.startswith("PORTS=")] == [
        'PORTS="%s"' % SM_PORT_GUID]
    assert files["/etc/opensm/opensm.conf"][2][2:] == [
        "guid %s" % SM_PORT_GUID,
        "sm_priority %d" % expected["priority"],
        "sweep_interval 5",
        "partition_config_file /etc/opensm/partitions.conf",
    ]
    assert files["/etc/opensm/partitions.conf"][2][1:] == expected["partitions"]


def test_sminfo_reports_the_master_with_the_configured_priority(host, expected):
    # Bounded wait: right after a restart opensm needs a sweep to become master again.
    out = host.check_output(
        "for i in $(seq 30); do out=$(%s sminfo 2>&1) && case $out in *SMINFO_MASTER*) break;; esac; "
        "sleep 1; done; echo \"$out\"" % SIM_ENV)
    assert "SMINFO_MASTER" in out, out
    assert "sm guid 0x100001," in out, out  # the opensm of the role, on the bound port
    assert " priority %d " % expected["priority"] in out, out  # it read the role's opensm.conf


def test_partitions_are_programmed_on_the_fabric(host, expected):
    """opensm read the role's partitions.conf: the client port's P_Key table holds its P_Keys."""
    want = " ".join(sorted(expected["pkeys"]))
    out = host.check_output(
        "for i in $(seq 30); do keys=$(%s smpquery -D pkeys 0 1 | grep -o '0x[0-9a-f]*' | grep -v '^0x0000$' "
        "| sort -u | tr '\\n' ' '); [ \"$keys\" = '%s ' ] && break; sleep 1; done; echo \"$keys\""
        % (SIM_ENV, want))
    assert set(out.split()) == expected["pkeys"]


def test_handler_restarted_opensm(host, before):
    if before is None:
        pytest.skip("runs after the side effect (reconfigure.yml)")
    (instance,) = properties(host.check_output(
        "systemctl show --property=ActiveState,MainPID,ActiveEnterTimestampMonotonic %s" % INSTANCE))
    assert instance["ActiveState"] == "active"
    assert instance["MainPID"] != before["MainPID"]
    assert int(instance["ActiveEnterTimestampMonotonic"]) > int(before["ActiveEnterTimestampMonotonic"])
