"""The lab-hw half, called exactly as the lab interface says (python -m hw.profile/hw.node/hw.fabric).

When lab/hw is missing (or `--no-hw`), a fallback gives every profile plain veth links with the
profile's interface names and the node keeps its real sysfs: enough to develop the node/network part.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from .sh import LabError, run

LAB_SRC = Path(__file__).resolve().parents[1]      # .../lab
PYTHON = sys.executable

DEFAULT_PROFILES = ["cx3-eipoib", "cx5-ib-sriov", "cx3-ipoib", "qib-ipoib", "cx5-roce",
                    "plain-ethernet"]

# Link names per profile for the --no-hw fallback (no sysfs view, no HCAs, no fabric).
_FALLBACK_DATA_LINKS = {
    "cx3-eipoib": [{"name": "ib0", "kind": "ib", "mtu": 2044},
                   {"name": "eth2", "kind": "eipoib", "parent": "ib0", "mtu": 2044}],
    "cx5-ib-sriov": [{"name": "ib0", "kind": "ib", "mtu": 2044}],
    "cx3-ipoib": [{"name": "ib0", "kind": "ib", "mtu": 2044}],
    "qib-ipoib": [{"name": "ib0", "kind": "ib", "mtu": 2044}],
    "cx5-roce": [{"name": "eth1", "kind": "roce", "mtu": 1500}],
    "cx3-mixed": [{"name": "ib0", "kind": "ib", "mtu": 2044}, {"name": "enp5s0d1", "kind": "roce", "mtu": 1500}],
    "plain-ethernet": [{"name": "eth1", "kind": "eth", "mtu": 1500}],
}


def available() -> bool:
    hw = LAB_SRC / "hw"
    return (hw / "__init__.py").is_file() and all(
        (hw / f"{m}.py").is_file() or (hw / m / "__init__.py").is_file()
        or (hw / m / "__main__.py").is_file()
        for m in ("profile", "node", "fabric"))


def env() -> dict:
    e = dict(os.environ)
    e["PYTHONPATH"] = str(LAB_SRC) + (":" + e["PYTHONPATH"] if e.get("PYTHONPATH") else "")
    return e


def fallback_links(profile: str) -> dict:
    if profile not in _FALLBACK_DATA_LINKS:
        raise LabError(f"unknown profile {profile!r} (known: {', '.join(DEFAULT_PROFILES)})")
    links = [dict(link, mac=None) for link in _FALLBACK_DATA_LINKS[profile]]
    links.append({"name": "eth0", "kind": "mgmt", "mtu": 1500, "mac": None})
    return {"management_interface": "eth0", "links": links, "hcas": []}


def profile_links_many(requests: list[tuple[str, int]], use_hw: bool,
                       parallel: int = 6, timeout: float = 60) -> list[dict]:
    """`hw.profile links` for each (profile, node index), a few processes at a time."""
    if not use_hw:
        return [fallback_links(profile) for profile, _index in requests]
    try:
        return [_links_in_process(p, i) for p, i in requests]
    except LabError:
        raise
    except Exception:   # noqa: BLE001 - any trouble importing hw: use the CLI itself
        pass
    results: list[dict | None] = [None] * len(requests)
    pending = list(enumerate(requests))
    running: list[tuple[int, subprocess.Popen]] = []
    deadline = time.monotonic() + timeout
    e = env()
    try:
        while pending or running:
            while pending and len(running) < parallel:
                i, (profile, index) = pending.pop(0)
                p = subprocess.Popen(
                    [PYTHON, "-m", "hw.profile", "links", "--profile", profile,
                     "--node-index", str(index)],
                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=e,
                    cwd=LAB_SRC)
                running.append((i, p))
            i, p = running.pop(0)
            try:
                out, err = p.communicate(timeout=max(1.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired as exc:
                raise LabError("hw.profile links timed out") from exc
            profile = requests[i][0]
            if p.returncode != 0:
                raise LabError(f"hw.profile links --profile {profile} failed: {err.strip()}")
            try:
                results[i] = json.loads(out)
            except ValueError as exc:
                raise LabError(f"hw.profile links --profile {profile}: not JSON: {out[:200]}") \
                    from exc
    finally:
        for _request, proc in running:
            proc.kill()
            p.wait()
    return results  # type: ignore[return-value]


def _links_in_process(profile: str, index: int) -> dict:
    """`hw.profile links` through its own main(argv) without a new interpreter per node (a
    Python start costs ~0.3 s of CPU; 64 nodes add up). Same argv, same output."""
    import contextlib
    import io
    if str(LAB_SRC) not in sys.path:
        sys.path.insert(0, str(LAB_SRC))
    from hw import profile as hwprofile  # noqa: PLC0415 - optional, lab-hw's package
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = hwprofile.main(["links", "--profile", profile, "--node-index", str(index)])
    if rc:
        raise LabError(f"hw.profile links --profile {profile} failed: {err.getvalue().strip()}")
    return json.loads(out.getvalue())


def fabric(action: str, lab_dir: Path, *args: str, timeout: float = 90,
           check: bool = True) -> subprocess.CompletedProcess:
    return run([PYTHON, "-m", "hw.fabric", action, *args, "--lab-dir", str(lab_dir)], timeout=timeout,
               check=check, env=env(), cwd=LAB_SRC)
