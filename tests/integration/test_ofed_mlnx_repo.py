"""The ofed role installs MLNX_OFED from an operator's local repository (ofed_stack: mlnx_ofed).

NVIDIA's packages cannot be fetched here, so mlnx_ofed_stub.py builds stand-ins with MLNX_OFED's
names (mlnx-ofed-basic, ofed-scripts with ofed_info, mlnx-ofed-kernel-utils with openib.conf) in an
unpacked-tarball layout, MLNX_OFED_LINUX-<version>-<distro>-<machine>/DEBS, with its Packages index and a
Release signed with a throwaway key (its public key beside DEBS). The role verifies that signature
(ofed_mlnx_repo_key); without a key it refuses, since unsigned needs ofed_mlnx_allow_unsigned.
The test copies that tree into one lab node and runs the role there; dpkg and apt write only into the
node's overlay root, and the test checks that the host's package database and /etc stay as they were.

The node keeps the sources it got from the host, which it cannot reach (no route, resolver on
127.0.0.1), like an air-gapped cluster node that still lists the Debian mirrors: the role refreshes only
its own repository's index, so the install works anyway.

Run (root):  .venv/bin/python -m pytest -q tests/integration/test_ofed_mlnx_repo.py
One lab named "mlnxrepo" with one cx3-ipoib node, torn down at the end of the module.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from conftest import LABCTL, REPO, VENV_BIN, ansible_env, run_module
import mlnx_ofed_stub

LAB_NAME = "mlnxrepo"
PROFILE = "cx3-ipoib"
NODE = "node1"
VERSION = mlnx_ofed_stub.DEFAULT_VERSION
PACKAGES = ["mlnx-ofed-basic", "ofed-scripts", "mlnx-ofed-kernel-utils"]
NODE_PARENT = "/opt"  # the operator unpacked the tarball here on the node
APT_LIST = "/etc/apt/sources.list.d/hpcnet-mlnx-ofed.list"
OPENIB_CONF = "/etc/infiniband/openib.conf"

PLAYBOOK = """\
- name: Install MLNX_OFED from the operator's local repository
  hosts: lab_nodes
  gather_facts: false
  roles:
    - role: hpcnet.infiniband.ofed
"""
ROLE_VARS = {
    "ofed_stack": "mlnx_ofed",
    "ofed_install_packages": True,  # the lab inventory turns it off for the other tests
    "ofed_eipoib": True,  # cx3-ipoib is a ConnectX-3 with an IB port: E_IPOIB_LOAD=yes is allowed
    "ofed_openib_conf": {"SET_IPOIB_CM": "yes"},
    "ansible_python_interpreter": "/usr/bin/python3",
}


def _sha256(path: Path) -> str | None:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else None


def _listing(path: Path) -> list[str] | None:
    return sorted(p.name for p in path.iterdir()) if path.is_dir() else None


def _host_state() -> dict:
    """What the node must not change on the host: dpkg's database, apt's sources and lists, /etc."""
    return {
        "dpkg_status": _sha256(Path("/var/lib/dpkg/status")),
        "dpkg_info": _listing(Path("/var/lib/dpkg/info")),
        "apt_sources": _listing(Path("/etc/apt/sources.list.d")),
        "apt_lists": _listing(Path("/var/lib/apt/lists")),
        "etc_infiniband": _listing(Path("/etc/infiniband")),
        "ofed_info": Path("/usr/bin/ofed_info").exists(),
        "opt": _listing(Path(NODE_PARENT)),
    }


def _recap(cp) -> dict:
    match = re.search(r"^%s\s*:\s*ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)" % NODE,
                      cp.stdout, re.M)
    assert match, cp.stdout[-3000:] + cp.stderr[-2000:]
    return dict(zip(("ok", "changed", "unreachable", "failed"), map(int, match.groups())))


def _dpkg_installed(lab, package) -> str | None:
    """The package's version when dpkg has it installed in the node, else None."""
    cp = lab.exec(NODE, ["dpkg-query", "-W", "-f", "${db:Status-Abbrev} ${Version}", package])
    words = cp.stdout.split()
    return words[1] if cp.returncode == 0 and len(words) == 2 and words[0] == "ii" else None


@pytest.fixture(scope="module", name="host_before")
def _host_before():
    return _host_state()


@pytest.fixture(scope="module", name="lab")
def _lab(lab_factory, host_before):  # pylint: disable=unused-argument  # host state first
    return lab_factory(LAB_NAME, nodes=1, profiles=[PROFILE], sm=False, ovs=False)


@pytest.fixture(scope="module", name="node_repo")
def _node_repo(lab, tmp_path_factory):
    """Build the stand-in tree on the host and copy it into the node."""
    debs = mlnx_ofed_stub.build_tree(tmp_path_factory.mktemp("mlnx-ofed"))
    top = debs.parent
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w") as tar:
        tar.add(top, arcname=top.name)
    cp = subprocess.run([str(LABCTL), "exec", "--name", lab.name, NODE, "--", "tar", "-x", "-C", NODE_PARENT],
                        input=archive.getvalue(), capture_output=True, timeout=60, check=False)
    assert cp.returncode == 0, cp.stderr
    node_debs = "%s/%s/DEBS" % (NODE_PARENT, top.name)
    return {"host_debs": debs, "node_debs": node_debs,
            "node_key": "%s/%s/%s" % (NODE_PARENT, top.name, mlnx_ofed_stub.KEY_NAME)}


def _run_role(lab, tmp_path_factory, extra_vars: dict, check: bool = False):
    play_dir = tmp_path_factory.mktemp("mlnx-play")
    (play_dir / "site.yml").write_text(PLAYBOOK)
    argv = [str(VENV_BIN / "ansible-playbook"), "-i", str(lab.inventory), str(play_dir / "site.yml"),
            "-e", json.dumps(dict(ROLE_VARS, **extra_vars))] + (["--check"] if check else [])
    return subprocess.run(argv, capture_output=True, text=True, timeout=300, cwd=REPO, env=ansible_env(),
                          check=False)


@pytest.fixture(scope="module", name="refusal")
def _refusal(lab, node_repo, tmp_path_factory):  # pylint: disable=unused-argument  # repo in place
    """The role with an http:// repository, on the node before anything is installed."""
    stack = run_module(lab, "hpcnet.infiniband.ib_ofed_info", NODE)[NODE]["stack"]
    cp = _run_role(lab, tmp_path_factory, {"ofed_mlnx_repo": "http://mlnx-mirror.invalid/MLNX_OFED/DEBS"})
    return {"cp": cp, "stack_before": stack, "installed": {p: _dpkg_installed(lab, p) for p in PACKAGES},
            "apt_list": lab.exec(NODE, ["test", "-e", APT_LIST]).returncode == 0}


@pytest.fixture(scope="module", name="unsigned_refusal")
def _unsigned_refusal(lab, node_repo, refusal, tmp_path_factory):  # pylint: disable=unused-argument  # order
    """The role with the local repository but no key (and no unsigned switch): refused by default."""
    cp = _run_role(lab, tmp_path_factory, {"ofed_mlnx_repo": node_repo["node_debs"]})
    return {"cp": cp, "installed": {p: _dpkg_installed(lab, p) for p in PACKAGES},
            "apt_list": lab.exec(NODE, ["test", "-e", APT_LIST]).returncode == 0}


@pytest.fixture(scope="module", name="check_run")
def _check_run(lab, node_repo, unsigned_refusal, tmp_path_factory):  # pylint: disable=unused-argument  # order
    """The role in check mode on the node before MLNX_OFED is installed."""
    cp = _run_role(lab, tmp_path_factory, {"ofed_mlnx_repo": node_repo["node_debs"],
                                           "ofed_mlnx_repo_key": node_repo["node_key"]}, check=True)
    return {"cp": cp, "installed": {p: _dpkg_installed(lab, p) for p in PACKAGES},
            "apt_list": lab.exec(NODE, ["test", "-e", APT_LIST]).returncode == 0,
            "openib_conf": lab.exec(NODE, ["test", "-e", OPENIB_CONF]).returncode == 0}


@pytest.fixture(scope="module", name="converged")
def _converged(lab, node_repo, check_run, tmp_path_factory):  # pylint: disable=unused-argument  # check first
    key = {"ofed_mlnx_repo_key": node_repo["node_key"]}
    first = _run_role(lab, tmp_path_factory, dict(key, ofed_mlnx_repo=node_repo["node_debs"]))
    second = _run_role(lab, tmp_path_factory, dict(key, ofed_mlnx_repo="file://" + node_repo["node_debs"]))
    return {"first": first, "second": second}


# ---------------------------------------------------------------------- the stand-in repository
def test_stand_in_packages_are_shaped_like_mlnx_ofed(tmp_path):
    debs = mlnx_ofed_stub.build_tree(tmp_path)
    assert debs.parent.name.startswith("MLNX_OFED_LINUX-%s-" % VERSION) and debs.name == "DEBS"
    names = {}
    for deb in debs.glob("*.deb"):
        fields = subprocess.run(["dpkg-deb", "--field", str(deb), "Package", "Description"],
                                capture_output=True, text=True, check=True).stdout
        package = re.search(r"^Package: (\S+)", fields, re.M).group(1)
        assert "Test stand-in, not NVIDIA software" in fields, fields
        names[package] = subprocess.run(["dpkg-deb", "--contents", str(deb)],
                                        capture_output=True, text=True, check=True).stdout
    assert sorted(names) == sorted(PACKAGES)
    assert "./usr/bin/ofed_info" in names["ofed-scripts"]
    assert "./etc/infiniband/openib.conf" in names["mlnx-ofed-kernel-utils"]
    depends = subprocess.run(["dpkg-deb", "--field", str(next(debs.glob("mlnx-ofed-basic_*.deb"))), "Depends"],
                             capture_output=True, text=True, check=True).stdout
    assert "ofed-scripts" in depends and "mlnx-ofed-kernel-utils" in depends
    assert (debs / "Packages").exists() and (debs / "Packages.gz").exists()
    # signed: InRelease and Release.gpg verify with the public key beside DEBS
    key = debs.parent / mlnx_ofed_stub.KEY_NAME
    for argv in (["gpgv", "--keyring", str(key), str(debs / "InRelease")],
                 ["gpgv", "--keyring", str(key), str(debs / "Release.gpg"), str(debs / "Release")]):
        cp = subprocess.run(argv, capture_output=True, text=True, check=False)
        assert cp.returncode == 0, cp.stderr


@pytest.mark.skipif(not shutil.which("dpkg-scanpackages"), reason="dpkg-dev (dpkg-scanpackages) not installed")
def test_index_is_what_dpkg_scanpackages_writes(tmp_path):
    debs = mlnx_ofed_stub.build_tree(tmp_path, sign=False)
    scanned = subprocess.run(["dpkg-scanpackages", "."], cwd=debs, capture_output=True, text=True, check=True)
    assert (debs / "Packages").read_text() == scanned.stdout


# ---------------------------------------------------------------------- refusal
def test_http_repository_is_refused_and_nothing_installed(refusal):
    cp = refusal["cp"]
    assert cp.returncode != 0, cp.stdout[-3000:]
    assert _recap(cp)["failed"] == 1
    out = re.sub(r"\s+", " ", cp.stdout + cp.stderr)
    assert "(http://mlnx-mirror.invalid/MLNX_OFED/DEBS) is not a local repository" in out, out[-3000:]
    assert "Nothing is installed from the internet" in out
    assert refusal["installed"] == dict.fromkeys(PACKAGES), refusal["installed"]
    assert not refusal["apt_list"], "the refused repository was added to apt"


def test_unsigned_repository_is_refused_by_default(unsigned_refusal):
    cp = unsigned_refusal["cp"]
    assert cp.returncode != 0, cp.stdout[-3000:]
    assert _recap(cp)["failed"] == 1
    out = re.sub(r"\s+", " ", cp.stdout + cp.stderr)
    assert "ofed_mlnx_repo_key is empty" in out and "ofed_mlnx_allow_unsigned=true" in out, out[-3000:]
    assert unsigned_refusal["installed"] == dict.fromkeys(PACKAGES), unsigned_refusal["installed"]
    assert not unsigned_refusal["apt_list"], "the unsigned repository was added to apt"


def test_node_runs_the_inbox_stack_before(refusal):
    assert refusal["stack_before"]["stack"] == "inbox", refusal["stack_before"]
    assert refusal["stack_before"]["ofed_version"] is None


# ---------------------------------------------------------------------- check mode
def test_check_mode_before_install_changes_nothing(check_run):
    assert check_run["installed"] == dict.fromkeys(PACKAGES), check_run["installed"]
    assert not check_run["apt_list"] and not check_run["openib_conf"]


def test_check_mode_before_install_succeeds(check_run):
    cp = check_run["cp"]
    assert cp.returncode == 0, cp.stdout[-3000:]
    # It says what a real run would do instead of failing on packages it cannot look up yet.
    assert "Check mode: the repository" in cp.stdout, cp.stdout[-3000:]
    assert "not MLNX_OFED yet" in cp.stdout, cp.stdout[-3000:]


# ---------------------------------------------------------------------- install
def test_role_installs_the_packages_in_the_node(lab, converged):
    cp = converged["first"]
    assert cp.returncode == 0, cp.stdout[-4000:] + cp.stderr[-2000:]
    assert _recap(cp)["changed"] >= 3  # apt source, packages, openib.conf
    installed = {p: _dpkg_installed(lab, p) for p in PACKAGES}
    assert installed["mlnx-ofed-basic"] == VERSION, installed
    assert all(installed.values()), installed


def test_apt_source_points_at_the_local_directory(lab, node_repo, converged):
    assert converged["first"].returncode == 0
    text = lab.exec(NODE, ["cat", APT_LIST], check=True).stdout
    assert text.strip() == "deb [signed-by=%s] file:%s ./" % (node_repo["node_key"], node_repo["node_debs"]), text


def test_ofed_info_answers_like_mlnx_ofed(lab, converged):
    assert converged["first"].returncode == 0
    assert lab.exec(NODE, ["ofed_info", "-s"], check=True).stdout == "MLNX_OFED_LINUX-%s:\n" % VERSION
    assert lab.exec(NODE, ["ofed_info", "-n"], check=True).stdout == VERSION + "\n"
    header = lab.exec(NODE, ["ofed_info"], check=True).stdout.splitlines()[0]
    assert re.match(r"^MLNX_OFED_LINUX-%s \(OFED-[0-9.\-]+\):$" % re.escape(VERSION), header), header


def test_ib_ofed_info_reports_mlnx_ofed(lab, converged):
    assert converged["first"].returncode == 0
    result = run_module(lab, "hpcnet.infiniband.ib_ofed_info", NODE)[NODE]
    assert result["stack"]["stack"] == "mlnx_ofed", result["stack"]
    assert result["stack"]["ofed_version"] == VERSION
    assert "ofed_info -s: MLNX_OFED_LINUX-%s" % VERSION in result["stack"]["evidence"]
    assert result["packages"].get("mlnx-ofed-basic") == VERSION, result["packages"]
    assert {"ofed-scripts", "mlnx-ofed-kernel-utils"} <= set(result["packages"])
    assert result["openib_conf"]["E_IPOIB_LOAD"] == "yes", result["openib_conf"]
    assert result["openib_conf"]["SET_IPOIB_CM"] == "yes"


def test_openib_conf_from_the_package_is_edited_in_place(lab, converged):
    assert converged["first"].returncode == 0
    text = lab.exec(NODE, ["cat", OPENIB_CONF], check=True).stdout
    shipped = mlnx_ofed_stub.OPENIB_CONF
    expected = shipped.replace("E_IPOIB_LOAD=no", "E_IPOIB_LOAD=yes").replace("SET_IPOIB_CM=auto", "SET_IPOIB_CM=yes")
    assert text == expected, text  # every other line and comment of the packaged file kept
    # dpkg still owns the file as the package's conffile (the role edited it, did not replace the package's)
    owner = lab.exec(NODE, ["dpkg-query", "-S", OPENIB_CONF], check=True).stdout
    assert owner.startswith("mlnx-ofed-kernel-utils:"), owner


def test_second_run_changes_nothing(converged):
    cp = converged["second"]
    assert cp.returncode == 0, cp.stdout[-4000:] + cp.stderr[-2000:]
    assert _recap(cp)["changed"] == 0, cp.stdout[-4000:]


# ---------------------------------------------------------------------- the host
def test_host_package_database_and_etc_untouched(host_before, converged):
    assert converged["first"].returncode == 0
    cp = subprocess.run(["dpkg", "-s", "mlnx-ofed-basic"], capture_output=True, text=True, check=False)
    assert cp.returncode != 0, "mlnx-ofed-basic is installed on the host:\n" + cp.stdout
    assert _host_state() == host_before
