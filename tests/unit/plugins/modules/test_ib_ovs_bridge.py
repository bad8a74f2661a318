"""ib_ovs_bridge end to end on a kernel-like fixture tree and a fake ovsdb whose ovs-vswitchd can be down."""

import json

import pytest

from ansible_collections.hpcnet.infiniband.plugins.module_utils._host import Host
from ansible_collections.hpcnet.infiniband.plugins.modules import ib_ipoib, ib_ovs_bridge
from fakehost import FakeRunner
from fakekernel import KernelHost, add_netdev, make_tree
from testlib import run_module


class FakeOvs(FakeRunner):
    """ovs-vsctl over an in-memory ovsdb. Like the real one, a transaction is committed (next_cfg + 1)
    before ovs-vsctl waits for ovs-vswitchd; with vswitchd down the wait times out (SIGALRM), cur_cfg
    stays behind and no interface gets an OpenFlow port."""

    def __init__(self):
        super().__init__()
        self.vswitchd = True
        self.bridges, self.ports, self.ifaces = {}, {}, {}
        self.next_cfg = self.cur_cfg = 1
        self.transactions = 0

    def up(self):
        self.vswitchd = True
        self.cur_cfg = self.next_cfg
        for number, iface in enumerate(self.ifaces.values(), 1):
            iface["ofport"] = iface["ofport"] or number

    def answer(self, argv):
        assert argv[0] == "ovs-vsctl"
        if "list" in argv:
            return 0, self._tables(), ""
        self.transactions += 1
        command = None
        for word in argv[1:]:
            if word == "--":
                if command:
                    self._do(command)
                command = []
            elif command is not None:
                command.append(word)
        self._do(command)
        self.next_cfg += 1
        if not self.vswitchd:
            return -14, "", ""  # killed by its own --timeout alarm, after the commit
        self.up()
        return 0, "", ""

    def _add_iface(self, bridge, name, tag=None):
        self.bridges[bridge]["ports"].append(name)
        self.ports[name] = {"bridge": bridge, "tag": tag}
        self.ifaces[name] = {"ofport": None, "mtu_request": None}

    def _do(self, words):
        if words[0] == "add-br":
            self.bridges[words[1]] = {"datapath_type": "", "ports": [], "other_config": {}}
            self._add_iface(words[1], words[1])
        elif words[0] == "set" and words[1] == "Bridge":
            column, value = words[3].split("=", 1)
            if column.startswith("other_config:"):
                assert value.startswith('"') and value.endswith('"'), value  # ovs-vsctl's string syntax
                self.bridges[words[2]]["other_config"][column.split(":", 1)[1]] = value.strip('"')
            else:
                self.bridges[words[2]][column] = value
        elif words[0] == "add-port":
            tag = int(words[3].split("=")[1]) if len(words) > 3 else None
            self._add_iface(words[1], words[2], tag)
        elif words[:2] == ["--if-exists", "del-br"]:
            for name in self.bridges.pop(words[2], {"ports": []})["ports"]:
                self.ports.pop(name)
                self.ifaces.pop(name)
        else:
            raise AssertionError("not faked: %s" % words)

    def _tables(self):
        def opt(value):
            return ["set", []] if value is None else value

        docs = [
            {"headings": ["name", "datapath_type", "ports", "other_config"],
             "data": [[b, d["datapath_type"], ["set", [["uuid", "p-" + p] for p in d["ports"]]],
                       ["map", sorted(d["other_config"].items())]] for b, d in self.bridges.items()]},
            {"headings": ["_uuid", "name", "tag", "interfaces"],
             "data": [[["uuid", "p-" + n], n, opt(p["tag"]), ["uuid", "i-" + n]] for n, p in self.ports.items()]},
            {"headings": ["_uuid", "name", "type", "error", "ofport", "mtu", "mtu_request"],
             "data": [[["uuid", "i-" + n], n, "internal" if n in self.bridges else "", ["set", []], opt(i["ofport"]),
                       1500, opt(i["mtu_request"])] for n, i in self.ifaces.items()]},
            {"headings": ["next_cfg", "cur_cfg"], "data": [[self.next_cfg, self.cur_cfg]]},
        ]
        return "\n".join(json.dumps(d) for d in docs) + "\n"


@pytest.fixture
def ovs(tmp_path, monkeypatch):
    dev = make_tree(tmp_path, driver="mlx4_core", ibdev="mlx4_0", device="0x1003")
    add_netdev(str(tmp_path), "eth2", dev, type_=1, ipoib=False, mtu=1500)
    fake = FakeOvs()
    host = KernelHost(tmp_path, runner=fake)
    monkeypatch.setattr(Host, "from_module", classmethod(lambda cls, module, sysfs_root="/sys", fs_root="/": host))
    return fake


def bridge(capsys, check=False, **args):
    base = {"bridge": "br-storage", "datapath_type": "netdev", "ports": [{"name": "eth2"}]}
    base.update(args)
    return run_module(ib_ovs_bridge, base, capsys, check=check)


@pytest.mark.parametrize("given", ["8002", "0x8002", "0X8002", 32770])
def test_same_pkey_inputs_same_child_and_vlan_in_both_modules(ovs, capsys, given):
    # Regression: "8002" made ib0.9f42 in ib_ipoib (decimal) but VLAN 2 here; 32770 was refused here.
    result = bridge(capsys, check=True, ports=[{"name": "eth2", "pkey": given}])
    assert result["plan"][1]["after"] == {"bridge": "br-storage", "vlan": 2}, result
    assert result["bridge"]["ports"][0]["pkey"] == "0x8002"
    child = run_module(ib_ipoib, {"parent": "ib0", "pkey": given}, capsys, check=True)
    assert child["interface"] == "ib0.8002" and child["pkey"] == "0x8002", child


def test_vswitchd_down_reports_the_write_and_fails_until_it_is_up(ovs, capsys):
    ovs.vswitchd = False
    first = bridge(capsys)
    # Regression: changed was false although ovsdb had been written.
    assert first["failed"] and first["changed"] is True
    assert "after writing ovsdb" in first["msg"] and "ovs-vswitchd has not applied the database" in first["msg"]
    assert "br-storage" in ovs.bridges
    # Regression: the second run said ok for a bridge vswitchd never set up.
    second = bridge(capsys)
    assert second["failed"] and second["changed"] is False and second["plan"] == []
    assert "br-storage is in ovsdb but ovs-vswitchd has not set it up" in second["msg"]
    assert ovs.transactions == 1
    ovs.up()
    third = bridge(capsys)
    assert not third.get("failed") and not third["changed"] and third["ovs_status"] == []


def test_healthy_apply_then_idempotent(ovs, capsys):
    first = bridge(capsys, ports=[{"name": "eth2", "pkey": 0x8002}])
    assert first["changed"] and not first.get("failed") and ovs.ports["eth2"]["tag"] == 2
    assert not bridge(capsys, ports=[{"name": "eth2", "pkey": "8002"}])["changed"]


def test_bridge_takes_the_eipoib_ports_mac(ovs, capsys, tmp_path):
    # An EIPoIB interface receives only for its own MAC: the bridge's address must use it.
    (tmp_path / "class/net/eth2/address").write_text("00:02:C9:0A:0B:0C\n")
    mac = "00:02:c9:0a:0b:0c"
    first = bridge(capsys)
    assert {"action": "set_hwaddr", "target": "br-storage", "before": None, "after": mac} in \
        [{k: c[k] for k in ("action", "target", "before", "after")} for c in first["plan"]]
    assert ovs.bridges["br-storage"]["other_config"] == {"hwaddr": mac}
    assert ovs.bridges["br-storage"]["datapath_type"] == "netdev"
    assert not bridge(capsys)["changed"]
    # An explicit MAC, or none managed at all.
    assert bridge(capsys, hwaddr="02:AA:00:00:00:01")["changed"]
    assert ovs.bridges["br-storage"]["other_config"] == {"hwaddr": "02:aa:00:00:00:01"}
    assert not bridge(capsys, hwaddr="ovs")["changed"]


@pytest.mark.parametrize("args,words", [
    ({"mtu": 100000}, "mtu 100000 is out of range 68..65520"),
    ({"timeout": -1}, "timeout -1 is not a positive number of seconds"),
    ({"timeout": 0}, "timeout 0 is not a positive number of seconds"),
    ({"hwaddr": "01:00:5e:00:00:01"}, "hwaddr '01:00:5e:00:00:01' is neither port nor ovs nor a unicast Ethernet MAC"),
    ({"hwaddr": "eth2"}, "hwaddr 'eth2' is neither port nor ovs nor a unicast Ethernet MAC"),
    ({"state": "absent", "mtu": 2044, "ports": []}, "state=absent removes bridge br-storage with its ports; mtu"),
    ({"state": "absent"}, "state=absent removes bridge br-storage with its ports; ports cannot be set"),
])
def test_bad_arguments_refused_before_anything(ovs, capsys, args, words):
    result = bridge(capsys, **args)
    assert result["failed"] and result["changed"] is False and words in result["msg"], result
    assert ovs.calls == []


def test_wrong_sysfs_root_named(ovs, capsys, tmp_path, monkeypatch):
    root = tmp_path / "capture"
    root.mkdir()
    host = KernelHost(str(root), runner=ovs)
    monkeypatch.setattr(Host, "from_module", classmethod(lambda cls, module, sysfs_root="/sys", fs_root="/": host))
    result = bridge(capsys)
    assert result["failed"] and "sysfs_root %s is not a sysfs tree" % root in result["msg"]
