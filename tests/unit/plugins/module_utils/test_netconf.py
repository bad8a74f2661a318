"""_netconf: members -> devices, the four backends' renderers, plan refusals; and the real programs'
reading of our files where they are on this machine (nmcli --offline, ifquery)."""

import configparser
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from ansible_collections.hpcnet.infiniband.plugins.module_utils import _netconf as N

REPO = Path(__file__).resolve().parents[4]
# NetworkManager's nmcli unpacked, never installed (docs/networks-deploy.md says how).
NM_ROOT = Path(os.environ.get("HPCNET_NM_ROOT", REPO / ".cache" / "nm" / "root"))

CHILD = {"network": "storage", "interface": "ib0", "device": "ib0.8002", "kind": "ipoib_child",
         "address": "10.20.0.11/24", "gateway": "10.20.0.1", "pkey": "0x8002", "vlan": None, "mtu": 65520,
         "mode": "connected"}
PARENT = {"network": "private", "interface": "ib0", "device": "ib0", "kind": "ipoib", "address": "10.21.0.11/24",
          "gateway": None, "pkey": None, "vlan": None, "mtu": 2044, "mode": "datagram"}
VLAN = {"network": "public", "interface": "eth1", "device": "eth1.12", "kind": "ethernet",
        "address": "10.22.0.11/24", "gateway": None, "pkey": "0x800c", "vlan": 12, "mtu": 9000, "mode": "connected"}
EIPOIB = {"network": "mgmt", "interface": "eth2", "device": "br-ib", "kind": "eipoib", "address": "10.23.0.11/24",
          "gateway": None, "pkey": None, "vlan": None, "mtu": None, "mode": None}


def files(backend, *members):
    return N.render_files(backend, N.devices_of(list(members)))


def ini(text):
    parser = configparser.ConfigParser(interpolation=None)
    parser.optionxform = str
    parser.read_string(text)
    return {s: dict(parser[s]) for s in parser.sections()}


# ------------------------------------------------------------------------------- members
def test_pkey_forms_are_one_value_and_child_name_is_the_kernels():
    for pkey in ("0x8002", "8002", 0x8002):
        dev = N.devices_of([dict(CHILD, pkey=pkey)])[0]
        assert dev["pkey"] == 0x8002
    with pytest.raises(N.MemberError, match="ib0.8003.*ib0.8002"):
        N.devices_of([dict(CHILD, device="ib0.8003")])


@pytest.mark.parametrize("change, message", [
    ({"address": "10.20.0.11"}, "must carry its prefix"),
    ({"address": "10.20.0.300/24"}, "not an IP address"),
    ({"gateway": "10.99.0.1"}, "gateway 10.99.0.1 is not in 10.20.0.0/24"),
    ({"pkey": "0x8000"}, "name no partition"),
    ({"pkey": None}, "needs its pkey"),
    ({"kind": "bond"}, "kind 'bond'"),
    ({"interface": "ib0;reboot"}, "interface 'ib0;reboot'"),
    ({"mtu": 70000}, "mtu 70000"),
    ({"mode": "datagram"}, "above 4092"),
    ({"network": "a\nb"}, "network name"),
])
def test_bad_members_are_refused_naming_the_value(change, message):
    with pytest.raises(N.MemberError, match=message):
        N.devices_of([dict(CHILD, **change)])


def test_two_networks_on_one_device_merge_and_conflicts_are_refused():
    second = dict(CHILD, network="v6", address="fd00::11/64", gateway=None, mtu=None, mode=None)
    dev = N.devices_of([CHILD, second])[0]
    assert [str(a) for a in dev["addresses"]] == ["10.20.0.11/24", "fd00::11/64"]
    assert dev["networks"] == ["storage", "v6"] and dev["mtu"] == 65520
    with pytest.raises(N.MemberError, match="disagree about mtu of ib0.8002"):
        N.devices_of([CHILD, dict(second, mtu=2044, mode="datagram")])
    with pytest.raises(N.MemberError, match="given twice"):
        N.devices_of([CHILD, dict(CHILD, network="again")])


def test_mode_applies_to_ipoib_only_and_parents_come_first():
    devices = N.devices_of([CHILD, VLAN, PARENT])
    assert [d["device"] for d in devices] == ["ib0", "eth1.12", "ib0.8002"]
    assert devices[1]["mode"] is None


# ------------------------------------------------------------------------------- renderers
def test_every_file_carries_the_marker():
    for backend in ("networkmanager", "systemd-networkd", "ifupdown"):
        for text in files(backend, CHILD, PARENT, VLAN).values():
            assert text.startswith(N.MARKER) and N.owned(text)
    assert not N.owned("[connection]\nid=mine\n")


def test_networkmanager_keyfile_of_a_pkey_child():
    [(path, text)] = list(files("networkmanager", CHILD).items())
    assert path == "/etc/NetworkManager/system-connections/hpcnet-ib0.8002.nmconnection"
    data = ini(text)
    assert data["connection"] == {"id": "hpcnet-ib0.8002", "uuid": N.connection_uuid("ib0.8002"),
                                  "type": "infiniband", "interface-name": "ib0.8002"}
    assert data["infiniband"] == {"mtu": "65520", "p-key": "32770", "parent": "ib0", "transport-mode": "connected"}
    assert data["ipv4"] == {"address1": "10.20.0.11/24,10.20.0.1", "method": "manual"}
    # Stable: the same device always gives the same UUID.
    assert N.connection_uuid("ib0.8002") == N.connection_uuid("ib0.8002") != N.connection_uuid("ib0")


def test_networkmanager_refuses_eipoib_and_renders_vlan():
    with pytest.raises(N.MemberError, match="OVS bridge it did not create"):
        files("networkmanager", EIPOIB)
    data = ini(files("networkmanager", VLAN)[N.nm_path("eth1.12")])
    assert data["vlan"] == {"flags": "1", "id": "12", "parent": "eth1"} and data["ethernet"] == {"mtu": "9000"}


def test_networkd_child_netdev_and_parent_network():
    out = files("systemd-networkd", CHILD)
    netdev = ini(out["/etc/systemd/network/10-hpcnet-ib0.8002.netdev"])
    assert netdev == {"NetDev": {"Name": "ib0.8002", "Kind": "ipoib", "MTUBytes": "65520"},
                      "IPoIB": {"PartitionKey": "32770", "Mode": "connected"}}
    network = ini(out["/etc/systemd/network/10-hpcnet-ib0.8002.network"])
    assert network["Network"]["Address"] == "10.20.0.11/24" and network["Network"]["Gateway"] == "10.20.0.1"
    parent = ini(out["/etc/systemd/network/10-hpcnet-ib0.network"])
    assert parent["Match"] == {"Name": "ib0"} and parent["Network"]["IPoIB"] == "ib0.8002"
    # With the parent a member itself, its one .network carries both.
    both = ini(files("systemd-networkd", CHILD, PARENT)["/etc/systemd/network/10-hpcnet-ib0.network"])
    assert both["Network"]["Address"] == "10.21.0.11/24" and both["Network"]["IPoIB"] == "ib0.8002"
    # systemd 252 rejects [IPoIB] in .network ("Unknown section"): the parent's mode is not written, a warning says so.
    assert "IPoIB" not in both and both["Link"] == {"MTUBytes": "2044"}
    plan, _info = N.plan_network([CHILD, PARENT], have_for("systemd-networkd"))
    assert any("cannot keep the transport mode of ib0" in w for w in plan.warnings)


def test_ifupdown_stanza_creates_the_child_in_pre_up():
    [(path, text)] = list(files("ifupdown", CHILD).items())
    assert path == "/etc/network/interfaces.d/hpcnet-ib0_8002"
    assert "auto ib0.8002\niface ib0.8002 inet static\n" in text
    assert "    pre-up [ -e /sys/class/net/ib0.8002 ] || echo 0x8002 > /sys/class/net/ib0/create_child\n" in text
    assert text.index("pre-up echo connected > /sys/class/net/ib0.8002/mode") > text.index("create_child")
    assert "    mtu 65520\n" in text and "    gateway 10.20.0.1\n" in text


def test_interfaces_sources_dir():
    assert N.interfaces_sources_dir("source /etc/network/interfaces.d/*\n")
    assert N.interfaces_sources_dir("source-directory interfaces.d\n")
    assert not N.interfaces_sources_dir("auto lo\niface lo inet loopback\n")


# ------------------------------------------------------------------------------- plan
def have_for(backend, present=None, **extra):
    have = {"backend": backend, "reason": "test", "files": dict(present or {}), "devices": {}}
    have.update(extra)
    return have


def test_plan_refuses_a_foreign_file_and_changes_nothing():
    path = N.nm_path("ib0.8002")
    plan, _info = N.plan_network([CHILD], have_for("networkmanager", {path: "[connection]\nid=theirs\n"}))
    assert not plan.ok and path in plan.errors[0] and not plan.changes


def test_plan_networkmanager_activates_only_changed_connections():
    wanted = files("networkmanager", CHILD, PARENT)
    plan, info = N.plan_network([CHILD, PARENT], have_for("networkmanager", {N.nm_path("ib0"): wanted[N.nm_path("ib0")]}))
    assert [(c.action, c.target) for c in plan.changes] == [
        ("write_file", N.nm_path("ib0.8002")), ("nm_reload", "nmcli connection reload"), ("nm_up", "hpcnet-ib0.8002")]
    assert plan.changes[0].detail["mode"] == 0o600 and info["persistent"]
    plan, _info = N.plan_network([CHILD, PARENT], have_for("networkmanager", wanted))
    assert not plan.changes


def test_plan_ifupdown_refuses_unsourced_dir_and_second_definition():
    plan, _info = N.plan_network([CHILD], have_for("ifupdown", interfaces="auto lo\n"))
    assert "does not source /etc/network/interfaces.d" in plan.errors[0]
    plan, _info = N.plan_network([CHILD], have_for("ifupdown", interfaces="source /etc/network/interfaces.d/*\n",
                                                   devices={"ib0.8002": {"defined_elsewhere": True}}))
    assert "already defined for ifupdown" in plan.errors[0]


def test_plan_ifupdown_restarts_only_the_changed_device():
    src = "source /etc/network/interfaces.d/*\n"
    old = {N.ifupdown_path("ib0.8002"): files("ifupdown", dict(CHILD, mtu=2044, mode="datagram"))[N.ifupdown_path("ib0.8002")],
           N.ifupdown_path("ib0"): files("ifupdown", PARENT)[N.ifupdown_path("ib0")]}
    plan, _info = N.plan_network([PARENT, CHILD], have_for("ifupdown", old, interfaces=src,
                                                           devices={"ib0": {"up": True}, "ib0.8002": {"up": True}}))
    assert [(c.action, c.target, c.detail.get("restart")) for c in plan.changes] == [
        ("write_file", N.ifupdown_path("ib0.8002"), None), ("ifup", "ib0.8002", True)]


def test_plan_runtime_says_nothing_persists():
    have = have_for("runtime", devices={"ib0.8002": {"exists": False}}, default_routes=["default via 10.1.0.1 dev eth0"])
    plan, info = N.plan_network([CHILD], have)
    assert not info["persistent"] and "nothing persists" in plan.warnings[0]
    assert "nothing persists" in N.summary(info)
    steps = [(c.action, c.target, c.after) for c in plan.changes]
    assert steps[0] == ("create_child", "class/net/ib0/create_child", "0x8002")
    assert ("run", "ib0.8002 address", "10.20.0.11/24") in steps
    assert not any(c.target == "default route" for c in plan.changes)  # never replaces a default route
    assert "not adding one via 10.20.0.1" in plan.warnings[1]


# ------------------------------------------------------------------------------- real programs
def nmcli_offline(*args):
    nmcli = NM_ROOT / "usr" / "bin" / "nmcli"
    env = dict(os.environ, LD_LIBRARY_PATH=str(NM_ROOT / "usr" / "lib" / "x86_64-linux-gnu"))
    cp = subprocess.run([str(nmcli), "--offline", "connection", "add", *args], capture_output=True, text=True,
                        env=env, timeout=30, check=False)
    assert cp.returncode == 0, cp.stderr
    return cp.stdout


@pytest.mark.skipif(not (NM_ROOT / "usr" / "bin" / "nmcli").exists(),
                    reason="nmcli not unpacked in .cache/nm/root (apt-get download network-manager libnm0; dpkg-deb -x)")
@pytest.mark.parametrize("member, args", [
    (CHILD, ["type", "infiniband", "infiniband.parent", "ib0", "infiniband.p-key", "0x8002",
             "infiniband.transport-mode", "connected", "infiniband.mtu", "65520",
             "ipv4.method", "manual", "ipv4.addresses", "10.20.0.11/24", "ipv4.gateway", "10.20.0.1"]),
    (PARENT, ["type", "infiniband", "infiniband.transport-mode", "datagram", "infiniband.mtu", "2044",
              "ipv4.method", "manual", "ipv4.addresses", "10.21.0.11/24"]),
    (VLAN, ["type", "vlan", "vlan.parent", "eth1", "vlan.id", "12", "ethernet.mtu", "9000",
            "ipv4.method", "manual", "ipv4.addresses", "10.22.0.11/24"]),
])
def test_keyfile_equals_what_nmcli_offline_writes(member, args):
    device = member["device"]
    ours = ini(files("networkmanager", member)[N.nm_path(device)])
    theirs = ini(nmcli_offline(*args, "con-name", N.nm_id(device), "ifname", device,
                               "connection.uuid", N.connection_uuid(device), "ipv6.method", "disabled"))
    assert ours == theirs


@pytest.mark.skipif(not shutil.which("ifquery", path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin"),
                    reason="ifupdown (ifquery) not installed")
def test_ifquery_parses_our_stanzas(tmp_path):
    interfaces = tmp_path / "interfaces"
    interfaces.write_text("".join(files("ifupdown", PARENT, CHILD, VLAN, EIPOIB).values()))
    ifquery = shutil.which("ifquery", path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin")
    listed = subprocess.run([ifquery, "-i", str(interfaces), "--list"], capture_output=True, text=True,
                            check=True).stdout.split()
    assert set(listed) - {"lo"} == {"ib0", "eth1.12", "ib0.8002", "br-ib"}
    out = subprocess.run([ifquery, "-i", str(interfaces), "ib0.8002"], capture_output=True, text=True,
                         check=True).stdout
    assert "address: 10.20.0.11\n" in out and "netmask: 255.255.255.0\n" in out and "mtu: 65520\n" in out
    assert "pre-up: [ -e /sys/class/net/ib0.8002 ] || echo 0x8002 > /sys/class/net/ib0/create_child\n" in out
