"""Runtime changes of a node's hardware view ("the firmware changed"): D/nodes/NODE/hw/overrides.json.

`labctl hw set|get|reset` writes the file; the node's FUSE sysfs daemon (hw.sysfs.SysfsModel) re-reads it
whenever its mtime changes, so a change shows at the node's next read of /sys, without a restart.

File format (version 1): {"version": 1, "attributes": {"<path relative to /sys>": "<value>\\n", ...}}.
Paths are stored as given (normalised, no leading slash); the daemon resolves their symlinks, so
`class/infiniband/mlx4_0/ports/1/pkeys/1` and the canonical `devices/.../infiniband/mlx4_0/ports/1/pkeys/1`
name the same attribute. Values are stored the way sysfs shows them: one trailing newline.
"""
import fcntl
import json
import os
import posixpath
import re

FILE = "overrides.json"
VERSION = 1
# Port GID 0 is the port GUID (with the link-local prefix); IPoIB's hardware address embeds it.
GID0 = re.compile(r"(^|/)infiniband/(?P<dev>[^/]+)/ports/(?P<port>\d+)/gids/0$")


class OverrideError(Exception):
    pass


def norm_path(path):
    """'/sys/class/net/ib0/mtu', 'class/net/ib0/mtu' -> 'class/net/ib0/mtu'; refuses escapes."""
    text = str(path).strip()
    if text.startswith("/sys/"):
        text = text[len("/sys/"):]
    if not text or "\0" in text or any(part == ".." for part in text.split("/")):
        raise OverrideError(f"bad sysfs path {path!r}: give a path relative to /sys, no '..'")
    norm = posixpath.normpath("/" + text).lstrip("/")
    if not norm or norm == ".":
        raise OverrideError(f"bad sysfs path {path!r}")
    return norm


def sysfs_value(value):
    """What a read of the attribute returns: the text plus exactly one newline (sysfs show style)."""
    text = str(value)
    if "\0" in text:
        raise OverrideError("a value cannot contain NUL")
    return text.rstrip("\n") + "\n"


def path_for(hw_dir):
    return os.path.join(hw_dir, FILE)


def load(hw_dir):
    """{path: value} from the node's overrides file ({} when there is none)."""
    try:
        with open(path_for(hw_dir), encoding="utf-8") as fh:
            data = json.load(fh)
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise OverrideError(f"cannot read {path_for(hw_dir)}: {exc}") from exc
    attrs = data.get("attributes") if isinstance(data, dict) else None
    return {str(k): str(v) for k, v in (attrs or {}).items()}


def _save(hw_dir, attrs):
    os.makedirs(hw_dir, exist_ok=True)
    target = path_for(hw_dir)
    tmp = target + f".{os.getpid()}.tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump({"version": VERSION, "attributes": dict(sorted(attrs.items()))}, fh, indent=1)
        fh.write("\n")
    os.chmod(tmp, 0o644)
    os.replace(tmp, target)   # a new inode and mtime: the daemon sees the change at its next read


def update(hw_dir, changes):
    """Apply {path: value or None (remove)} under a lock; returns the previous {path: value or None}.
    Paths and values are normalised (norm_path, sysfs_value)."""
    changes = {norm_path(p): (None if v is None else sysfs_value(v)) for p, v in changes.items()}
    os.makedirs(hw_dir, exist_ok=True)
    with open(os.path.join(hw_dir, ".overrides.lock"), "w", encoding="utf-8") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        attrs = load(hw_dir)
        before = {}
        for path, value in changes.items():
            before[path] = attrs.get(path)
            if value is None:
                attrs.pop(path, None)
            else:
                attrs[path] = value
        _save(hw_dir, attrs)
    return before


def clear(hw_dir):
    """Remove every override of the node (the view is the profile's again)."""
    update(hw_dir, {path: None for path in load(hw_dir)})


def gid_guid(gid_text):
    """The GUID half of a GID as written in sysfs ('fe80:0000:0000:0000:0002:c903:00f9:bfa1')."""
    groups = gid_text.strip().split(":")
    if len(groups) != 8 or not all(re.fullmatch(r"[0-9a-fA-F]{1,4}", g) for g in groups):
        return None
    return bytes.fromhex("".join(g.zfill(4) for g in groups))


def ipoib_address_with_gid(address_text, gid_text):
    """IPoIB hardware address (flags+QPN, then the 16-byte port GID) with its GID part replaced."""
    gid = gid_guid(gid_text)
    parts = address_text.strip().split(":")
    if gid is None or len(parts) != 20:
        return None
    return ":".join(parts[:4] + [f"{b:02x}" for b in gid]) + "\n"
