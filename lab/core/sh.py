"""Process helpers: argv lists only, every wait bounded."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path


class LabError(RuntimeError):
    """A failure the CLI reports as one line (and exit code 1)."""


def run(argv: list[str], timeout: float = 30, check: bool = True, input: str | None = None,
        env: dict | None = None, cwd: str | Path | None = None) -> subprocess.CompletedProcess:
    try:
        cp = subprocess.run(argv, input=input, capture_output=True, text=True, timeout=timeout,
                            env=env, cwd=cwd, check=False)
    except subprocess.TimeoutExpired as exc:
        raise LabError(f"timed out after {timeout}s: {' '.join(argv)}") from exc
    if check and cp.returncode != 0:
        raise LabError(f"{' '.join(argv)} failed (rc {cp.returncode}): "
                       f"{(cp.stderr or cp.stdout).strip()}")
    return cp


def ip_batch(lines: list[str], netns: str | None = None, check: bool = True,
             force: bool = False) -> subprocess.CompletedProcess:
    """Run many `ip` commands in one process (`ip -batch -`); -force goes on after errors."""
    argv = ["ip"]
    if netns:
        argv += ["-n", netns]
    if force:
        argv.append("-force")
    argv += ["-batch", "-"]
    return run(argv, input="\n".join(lines) + "\n", check=check)


def link_names() -> list[str]:
    out = run(["ip", "-j", "link", "show"]).stdout
    return [link["ifname"] for link in json.loads(out or "[]")]


def netns_names() -> list[str]:
    out = run(["ip", "-j", "netns", "list"], check=False).stdout
    try:
        return [ns["name"] for ns in json.loads(out or "[]")]
    except ValueError:
        return []


def netns_pids(netns: str) -> list[int]:
    cp = run(["ip", "netns", "pids", netns], check=False, timeout=10)
    return [int(p) for p in cp.stdout.split() if p.isdigit()]


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie is not alive for our purposes.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def kill_pids(pids: list[int], grace: float = 2.0) -> None:
    """SIGTERM, wait up to `grace` s, then SIGKILL and wait a little for them to go."""
    pids = [p for p in pids if p > 1 and p != os.getpid()]
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 3.0)):
        for p in pids:
            try:
                os.kill(p, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            pids = [p for p in pids if pid_alive(p)]
            if not pids:
                return
            time.sleep(0.05)


def read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def write_atomic(path: Path, text: str, mode: int = 0o644) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(tmp, mode)
    os.replace(tmp, path)
