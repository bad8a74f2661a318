"""In-memory sysfs tree: what a hardware profile expands into.

Paths are relative to the sysfs root ("class/net/ib0"), without a leading slash.
An entry is a directory, a file (text value, mode) or a symlink (relative target, like real sysfs).

File flags:
- ``weak``: the node's real sysfs wins when it has the same attribute (e.g. ``mtu``/``operstate`` of a
  netdev that is a real veth inside the node); the profile value is only the fallback.
- ``attr``: name of a dynamic attribute; reads/writes go through the model (sysfs.SysfsModel) instead of
  the stored value (port state from the fabric, sriov_numvfs, create_child, mode...).
Directory flag ``real``: a path in the real sysfs whose children are merged into this directory
(profile children win, except weak ones).
"""
import os
import posixpath
from dataclasses import dataclass, field


@dataclass
class Entry:
    kind: str  # "dir" | "file" | "link"
    value: str = ""
    mode: int = 0o444
    weak: bool = False
    attr: str | None = None
    ctx: dict = field(default_factory=dict)
    real: str | None = None


def kernfs_relpath(link, target):
    """Relative link text the way kernfs writes it: climb to the deepest common ancestor of the link's
    directory and the target's *parent* (so ../../../0000:82:00.0, never ../..), then descend."""
    link_dir = [p for p in posixpath.dirname(link).split("/") if p]
    tparts = [p for p in target.split("/") if p]
    tparent = tparts[:-1]
    common = 0
    while common < min(len(link_dir), len(tparent)) and link_dir[common] == tparent[common]:
        common += 1
    return "/".join([".."] * (len(link_dir) - common) + tparts[common:]) or "."


class Tree:
    def __init__(self):
        self.entries: dict[str, Entry] = {"": Entry("dir", mode=0o755)}
        self.children: dict[str, set] = {"": set()}
        # Real-sysfs paths that the view hides (e.g. the veth's devices/virtual/net/ib0).
        self.hidden: set[str] = set()

    @staticmethod
    def norm(path):
        path = posixpath.normpath("/" + path).lstrip("/")
        return "" if path == "." else path

    def _ensure_dir(self, path):
        path = self.norm(path)
        if path in self.entries:
            if self.entries[path].kind != "dir":
                raise ValueError(f"{path} exists and is not a directory")
            return
        parent, name = posixpath.split(path)
        self._ensure_dir(parent)
        self.entries[path] = Entry("dir", mode=0o755)
        self.children[path] = set()
        self.children[parent].add(name)

    def _put(self, path, entry):
        path = self.norm(path)
        parent, name = posixpath.split(path)
        self._ensure_dir(parent)
        old = self.entries.get(path)
        if old is not None and old.kind == "dir" and entry.kind != "dir":
            self.remove(path)
        self.entries[path] = entry
        self.children[parent].add(name)
        if entry.kind == "dir":
            self.children.setdefault(path, set())
        return entry

    def mkdir(self, path, real=None):
        self._ensure_dir(path)
        if real:
            self.entries[self.norm(path)].real = real
        return self.entries[self.norm(path)]

    def file(self, path, value, mode=0o444, weak=False, attr=None, **ctx):
        if value is None and attr is None:
            return None
        text = "" if value is None else str(value)
        if text and not text.endswith("\n"):
            text += "\n"
        return self._put(path, Entry("file", text, mode, weak, attr, ctx))

    def link(self, path, target_abs):
        """Symlink at ``path`` to the tree path ``target_abs``, stored relative like sysfs does."""
        path = self.norm(path)
        return self._put(path, Entry("link", kernfs_relpath(path, self.norm(target_abs)), 0o777))

    def remove(self, path):
        path = self.norm(path)
        if path not in self.entries:
            return
        for child in list(self.children.get(path, ())):
            self.remove(posixpath.join(path, child))
        self.children.pop(path, None)
        del self.entries[path]
        parent, name = posixpath.split(path)
        self.children.get(parent, set()).discard(name)

    def get(self, path):
        return self.entries.get(self.norm(path))

    def listdir(self, path):
        return sorted(self.children.get(self.norm(path), ()))

    def resolve(self, path, depth=0):
        """Follow profile symlinks in every component; returns the tree path or None."""
        path = self.norm(path)
        if depth > 20:
            return None
        cur = ""
        parts = path.split("/") if path else []
        for i, part in enumerate(parts):
            nxt = posixpath.join(cur, part) if cur else part
            ent = self.entries.get(nxt)
            if ent is None:
                return None
            if ent.kind == "link":
                tgt = self.norm(posixpath.join(posixpath.dirname(nxt), ent.value))
                rest = "/".join(parts[i + 1:])
                return self.resolve(posixpath.join(tgt, rest) if rest else tgt, depth + 1)
            cur = nxt
        return cur

    def write_out(self, root):
        """Materialise the static tree under ``root`` (for inspection and for tests without FUSE)."""
        for path in sorted(self.entries):
            ent = self.entries[path]
            dest = os.path.join(root, path)
            if ent.kind == "dir":
                os.makedirs(dest, exist_ok=True)
            elif ent.kind == "link":
                os.makedirs(os.path.dirname(dest), exist_ok=True)
                if os.path.lexists(dest):
                    os.unlink(dest)
                os.symlink(ent.value, dest)
            else:
                os.makedirs(os.path.dirname(dest), exist_ok=True)
                with open(dest, "w", encoding="utf-8") as fh:
                    fh.write(ent.value)
