"""Names, addresses and the lab index: everything a lab owns is derived from its name and index.

A lab index (1..250) is allocated per running lab; it keeps subnets, bridges and host-side veth
names of labs that run at the same time apart. Interface names stay within the kernel's 15 chars.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
from contextlib import contextmanager
from pathlib import Path

STATE_ROOT = Path(os.environ.get("HPCNET_LAB_STATE_ROOT", "/run/hpcnet-lab"))
DEFAULT_NAME = "lab"
# Short enough that D/cp/<ip> plus ssh's temporary suffix stays below the 108-byte socket path limit.
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,31}$")
MAX_INDEX = 250
MAX_NODES = 200
MGMT_NET = 231          # 10.231.<idx>.0/24: management (ssh) network
DATA_NET_FIRST = 232    # 10.232+k.<idx>.0/24: data-plane link name slot k
DATA_NET_SLOTS = 8      # 10.232 .. 10.239
NODE_HOST_OFFSET = 10   # node i has host part 10 + i
FABRIC_HOST = 254
GATEWAY_HOST = 1        # the root namespace's address on the management bridge


def default_name() -> str:
    return os.environ.get("HPCNET_LAB_NAME") or DEFAULT_NAME


def check_name(name: str) -> str:
    if not NAME_RE.match(name):
        raise ValueError(
            f"invalid lab name {name!r}: lower-case letters, digits and '-', at most 32 chars")
    return name


def lab_dir(name: str) -> Path:
    return STATE_ROOT / name


def node_name(i: int) -> str:
    return f"node{i}"


def node_netns(name: str, node: str) -> str:
    return f"hpcl-{name}-{node}"


def fabric_netns(name: str) -> str:
    return f"hpcl-{name}-fabric"


NETNS_RE_TMPL = r"^hpcl-{name}-(node[0-9]+|fabric)$"


def netns_pattern(name: str) -> re.Pattern:
    return re.compile(NETNS_RE_TMPL.format(name=re.escape(name)))


def if_prefix(index: int) -> str:
    """Prefix of every root-namespace link of lab index `index` (bridges and host-side veths)."""
    return f"hpl{index:03d}"


def mgmt_bridge(index: int) -> str:
    return f"{if_prefix(index)}-mgmt"


def data_bridge(index: int) -> str:
    return f"{if_prefix(index)}-ib"


def host_veth(index: int, node_index: int, slot: int | None) -> str:
    """Host side of a node's veth: `hpl001n12m` (management) or `hpl001n12d3` (data link 3)."""
    suffix = "m" if slot is None else f"d{slot}"
    return f"{if_prefix(index)}n{node_index}{suffix}"


def fabric_veth(index: int) -> str:
    return f"{if_prefix(index)}-fab"


def mgmt_address(index: int, host: int) -> str:
    return f"10.{MGMT_NET}.{index}.{host}"


def node_mgmt_address(index: int, node_index: int) -> str:
    return mgmt_address(index, NODE_HOST_OFFSET + node_index)


def data_address(index: int, slot: int, node_index: int) -> str | None:
    if slot >= DATA_NET_SLOTS:
        return None
    return f"10.{DATA_NET_FIRST + slot}.{index}.{NODE_HOST_OFFSET + node_index}"


def mac(kind: int, index: int, a: int, b: int) -> str:
    """Locally administered, fixed MACs: a recreated lab reuses them, so no stale ARP entries."""
    return f"02:48:{kind:02x}:{index:02x}:{a:02x}:{b:02x}"


def node_mgmt_mac(index: int, node_index: int) -> str:
    return mac(0x4C, index, node_index, 0)


def node_data_mac(index: int, node_index: int, slot: int) -> str:
    return mac(0x4C, index, node_index, slot + 1)


def fabric_mac(index: int) -> str:
    return mac(0x46, index, 0xFF, 0xFE)


def bridge_mac(index: int, which: int) -> str:
    return mac(0x42, index, 0, which)


@contextmanager
def locked(path: Path):
    """An exclusive flock on `path` (created if missing) for the duration of the block."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def used_indexes(existing_links: list[str]) -> set[int]:
    used: set[int] = set()
    if STATE_ROOT.is_dir():
        for state in STATE_ROOT.glob("*/lab.json"):
            try:
                used.add(int(json.loads(state.read_text())["index"]))
            except (OSError, ValueError, KeyError, TypeError):
                continue
    for link in existing_links:
        m = re.match(r"^hpl(\d{3})", link)
        if m:
            used.add(int(m.group(1)))
    return used


def free_index(existing_links: list[str]) -> int:
    used = used_indexes(existing_links)
    for i in range(1, MAX_INDEX + 1):
        if i not in used:
            return i
    raise RuntimeError(f"no free lab index: {MAX_INDEX} labs are running")
