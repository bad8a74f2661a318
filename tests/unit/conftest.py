"""Make ``ansible_collections.hpcnet.infiniband`` importable from a plain checkout.

The collection is reached through ``.collections/ansible_collections/hpcnet/infiniband``, a symlink to
this checkout that ``scripts/setup.sh`` creates (and that we create here if it is missing), so unit
tests import exactly what ansible would load. On ``sys.path`` too: ``tests/``, for ``testlib`` (the real
captures, the sysfs builder, ``run_module``), and ``tests/unit/plugins/module_utils``, for the fake hosts
(``fakehost``, ``fakekernel``, ``ofedtree``) and ``nodes_facts_fixtures``.

Fixtures: ``mlx4_capture`` and ``qib_capture``, the sysfs roots of the two real captures (the parts
ib_facts reads), unpacked once per session from ``REALDATA`` (``tests/unit/fixtures/realdata/hwloc``, in
the repository with its licence).
"""
import os
import sys

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
TESTS = os.path.join(REPO, "tests")
FAKES = os.path.join(TESTS, "unit", "plugins", "module_utils")


def _collection_path():
    # Under ansible-test the checkout already sits at .../ansible_collections/hpcnet/infiniband.
    parts = REPO.split(os.sep)
    if len(parts) >= 3 and parts[-3] == "ansible_collections":
        return os.sep.join(parts[:-3])
    root = os.path.join(REPO, ".collections")
    link = os.path.join(root, "ansible_collections", "hpcnet", "infiniband")
    if not os.path.lexists(link):
        os.makedirs(os.path.dirname(link), exist_ok=True)
        os.symlink(os.path.relpath(REPO, os.path.dirname(link)), link)
    return root


for _path in (_collection_path(), TESTS, FAKES):
    if _path not in sys.path:
        sys.path.insert(0, _path)


import pytest  # noqa: E402  (after the sys.path set-up above)

import testlib  # noqa: E402

REALDATA = testlib.REALDATA


@pytest.fixture(scope="session")
def mlx4_capture(tmp_path_factory):
    """sysfs root of the real ConnectX-3 capture (mlx4_0 at 0000:82:00.0, ib0; hwloc's 32em64t-2n8c)."""
    archive = testlib.capture_archive("32em64t")
    return testlib.unpack_capture(archive, tmp_path_factory.mktemp("mlx4"), keep=testlib.network_parts)


@pytest.fixture(scope="session")
def qib_capture(tmp_path_factory):
    """sysfs root of the real QLogic TrueScale capture (qib0 at 0000:43:00.0, ib0; hwloc's 40intel64)."""
    archive = testlib.capture_archive("40intel64")
    return testlib.unpack_capture(archive, tmp_path_factory.mktemp("qib"), keep=testlib.network_parts)


@pytest.fixture(autouse=True)
def _module_side_warnings(request, monkeypatch):
    """Run module code as it runs on a target host.

    ansible-core sends ``module.warn()`` to the controller's display instead of the module result once
    controller code (filters, inventory plugins) has been imported into the same process, and collects
    module warnings in a process-wide, de-duplicating registry. Module tests see a fresh registry and
    the target-side behaviour whatever ran before them.
    """
    from ansible.module_utils import _internal
    from ansible.module_utils.common import warnings as module_warnings

    if "/plugins/modules/" in str(request.node.fspath) or "/module_utils/" in str(request.node.fspath):
        monkeypatch.setattr(_internal, "is_controller", False)
    module_warnings._global_warnings.clear()  # pylint: disable=protected-access
    module_warnings._global_deprecations.clear()  # pylint: disable=protected-access
    yield
