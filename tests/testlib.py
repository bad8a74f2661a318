"""Helpers shared by the unit tests, the integration tests and the ib_facts benchmark.

- the real sysfs captures (hwloc-gather-topology tarballs, BSD-3-Clause) kept in the test fixtures,
  ``tests/unit/fixtures/realdata/hwloc`` (see its README.md): where they are and how to unpack them;
- the hand-made sysfs tree builder, ``tests/unit/fixtures/sysfs/builder.py``;
- ``run_module()``: an Ansible module's ``main()`` in-process, as ansible runs it (unit tests);
- ``plain()``: values of ``ansible-inventory`` output without their unsafe markers.

tests/unit/conftest.py and tests/integration/conftest.py put this folder on ``sys.path``.
"""

from __future__ import annotations

import importlib.util
import json
import re
import sys
import tarfile
from pathlib import Path

import pytest
from ansible.module_utils.testing import patch_module_args

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
REALDATA = TESTS / "unit" / "fixtures" / "realdata" / "hwloc"


# ------------------------------------------------------------------------------------------ real captures
def capture_archives():
    """Every capture tarball, sorted."""
    return sorted(REALDATA.glob("*.tar.bz2"))


def capture_archive(prefix):
    """The capture whose file name starts with ``prefix``; fails the calling test when there is none
    (the captures are part of the repository: a missing one is a broken checkout, not a reason to skip)."""
    matches = sorted(REALDATA.glob(prefix + "*.tar.bz2"))
    if not matches:
        pytest.fail("real capture %s* missing from %s" % (prefix, REALDATA))
    return matches[0]


# The parts of a capture ib_facts (and the SM check, OFED card detection) read: the network and RDMA
# classes, the PCI bus and device trees; not the per-port counters and the like, which are most of its
# ~10,000 files and slow to write on a busy machine. ib_facts gathers the same facts from this subset as
# from the whole capture.
_NETWORK_PARTS = re.compile(
    r"^[^/]+(/sys)?(/(class(/(net|infiniband)(/.*)?)?|bus(/pci(/.*)?)?|devices(/(pci[^/]*|virtual)(/.*)?)?))?$")
_NETWORK_NOISE = re.compile(
    r"/(msi_irqs|power|statistics|queues|counters|cm_[a-z_]+|infiniband_mad|infiniband_verbs)(/|$)")


def network_parts(name):
    """True for the tarball member names ``unpack_capture(..., keep=network_parts)`` writes."""
    return bool(_NETWORK_PARTS.match(name)) and not _NETWORK_NOISE.search(name)


def unpack_capture(archive, dest, keep=None):
    """Unpack ``archive`` under ``dest`` (only the members whose name ``keep`` accepts, when given);
    return the captured sysfs root, ``<dest>/<top folder>/sys``, as a string.

    Regular files, directories and symlinks with safe names only: no device nodes, no absolute or ``..``
    names (Python 3.11.2's tarfile has no extraction filter). The captures' symlinks are relative, as in /sys.
    """
    # Where tarfile has filters (3.11.4+), "tar" keeps the captures' links as they are (not "data").
    extract_filter = {"filter": "tar"} if hasattr(tarfile, "tar_filter") else {}
    with tarfile.open(str(archive), "r:bz2") as tar:
        members = [m for m in tar.getmembers()
                   if (m.isfile() or m.isdir() or m.issym())
                   and not m.name.startswith("/") and ".." not in m.name.split("/")
                   and (keep is None or keep(m.name))]
        tar.extractall(str(dest), members=members, **extract_filter)  # noqa: S202 (members checked above)
    (sysfs,) = Path(dest).glob("*/sys")
    return str(sysfs)


# ------------------------------------------------------------------------------------------ sysfs builder
def _load_sysfs_builder():
    # tests/unit/fixtures is not a package (and "fixtures" is a PyPI name): load the file by path, once.
    name = "hpcnet_sysfs_builder"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, TESTS / "unit" / "fixtures" / "sysfs" / "builder.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


sysfs_builder = _load_sysfs_builder()


# ------------------------------------------------------------------------------------------ ansible
def run_module(module, args, capsys, check=False, diff=False):
    """Run ``module.main()`` with ``args`` (plus check/diff mode); return its JSON result, with the exit
    code added as ``result["_rc"]``. ``capsys`` is the test's pytest fixture."""
    args = dict(args)
    if check:
        args["_ansible_check_mode"] = True
    if diff:
        args["_ansible_diff"] = True
    with patch_module_args(args):
        with pytest.raises(SystemExit) as exit_info:
            module.main()
    result = json.loads(capsys.readouterr().out)
    result["_rc"] = exit_info.value.code
    return result


def plain(value):
    """ansible-inventory marks values that came from hosts unsafe (never templated); unwrap them."""
    if isinstance(value, dict):
        if set(value) == {"__ansible_unsafe"}:
            return value["__ansible_unsafe"]
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


def count_opens(monkeypatch, call):
    """(call(), how many files the host seam opened during it): linear cost, counted rather than timed."""
    # Imported here: the integration tests import this module without the collection on sys.path.
    from ansible_collections.hpcnet.infiniband.plugins.module_utils import _host  # pylint: disable=import-outside-toplevel

    calls = {"open": 0}
    real_open = _host.os.open

    def counting_open(*args, **kw):
        calls["open"] += 1
        return real_open(*args, **kw)

    monkeypatch.setattr(_host.os, "open", counting_open)
    try:
        result = call()
    finally:
        monkeypatch.setattr(_host.os, "open", real_open)
    return result, calls["open"]
