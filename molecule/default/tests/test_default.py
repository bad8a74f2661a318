"""Verifier of the default scenario: log into each lab node over ssh (the Ansible connection of the
Molecule inventory) and check it sees its hardware profile's interfaces and IB devices in /sys.

What to expect comes from the lab's own description (/run/hpcnet-lab/<lab_name>/lab.json, written
by `labctl up` from the profiles), so the test follows the profiles instead of copying them.
"""

import json
import os
from pathlib import Path

import pytest
import testinfra.utils.ansible_runner

testinfra_hosts = testinfra.utils.ansible_runner.AnsibleRunner(
    os.environ["MOLECULE_INVENTORY_FILE"]).get_hosts("lab_nodes")


@pytest.fixture(scope="module")
def lab(host):
    name = host.ansible.get_variables().get("lab_name", "mol-default")
    return json.loads(Path(f"/run/hpcnet-lab/{name}/lab.json").read_text())


@pytest.fixture(scope="module")
def node(host, lab):
    me = host.ansible.get_variables()["inventory_hostname"]
    return next(n for n in lab["nodes"] if n["name"] == me)


# One remote call per node (each testinfra command is an Ansible round trip): what the node sees.
_PROBE = r"""
import json, os, socket, subprocess
def rd(p):
    try:
        return open(p).read().strip()
    except OSError:
        return None
ib = {}
for dev in sorted(os.listdir("/sys/class/infiniband")) if os.path.isdir("/sys/class/infiniband") else []:
    base = "/sys/class/infiniband/" + dev
    ports = sorted(os.listdir(base + "/ports")) if os.path.isdir(base + "/ports") else []
    ib[dev] = {"node_guid": rd(base + "/node_guid"),
               "ports": {p: rd(base + "/ports/" + p + "/link_layer") for p in ports}}
net = {n: rd("/sys/class/net/" + n + "/type") for n in sorted(os.listdir("/sys/class/net"))}
addrs = json.loads(subprocess.run(["ip", "-j", "addr"], capture_output=True, text=True).stdout)
check = "/etc/hpcnet-lab-check"
print(json.dumps({
    "hostname": socket.gethostname(), "uid": os.getuid(), "ib": ib, "net": net,
    "addresses": {a["ifname"]: [i["local"] for i in a.get("addr_info", [])] for a in addrs},
    "check": rd(check), "check_mode": oct(os.stat(check).st_mode & 0o7777) if os.path.exists(check) else None,
}))
"""


@pytest.fixture(scope="module")
def seen(host):
    return json.loads(host.check_output("/usr/bin/python3 -c %s", _PROBE))


def test_logged_into_the_right_node(seen, node):
    assert seen["hostname"] == node["name"]
    assert seen["uid"] == 0


def test_converge_wrote_the_check_file(seen, node):
    assert seen["check_mode"] == "0o644"
    assert f"hpcnet lab check: {node['name']}" in seen["check"]


def test_profile_interfaces_exist(seen, node):
    for name, link in node["links"].items():
        assert name in seen["net"], f"{name} missing in /sys/class/net"
        if link.get("address"):
            assert link["address"] in seen["addresses"].get(name, []), name


def test_ipoib_links_look_like_ipoib(seen, lab, node):
    if not lab.get("hw"):
        pytest.skip("lab runs without hardware profiles (--no-hw)")
    for name, link in node["links"].items():
        if link["kind"] == "ib":
            # ARPHRD_INFINIBAND, from the profile's sysfs view over the veth.
            assert seen["net"][name] == "32", name


def test_profile_ib_devices_in_sys(seen, lab, node):
    if not lab.get("hw"):
        pytest.skip("lab runs without hardware profiles (--no-hw)")
    assert sorted(seen["ib"]) == sorted(h["name"] for h in node["hcas"])
    for hca in node["hcas"]:
        dev = seen["ib"][hca["name"]]
        if hca.get("node_guid"):
            assert dev["node_guid"] == hca["node_guid"]
        for port in hca.get("ports", []):
            assert dev["ports"].get(str(port["port"])) == port["link_layer"], (hca["name"], port)
