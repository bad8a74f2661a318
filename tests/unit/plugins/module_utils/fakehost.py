"""What the unit tests' fake hosts share: sysfs attribute files and relative links written as the kernel
shows them, RDMA ports, a command runner that records every argv and answers from a table, and a
snapshot of a tree to compare before/after.

fakekernel.py (SR-IOV, IPoIB) and ofedtree.py (OFED cards, modprobe) build on these; test_sm.py and
test_ib_sm_check.py use them directly. tests/unit/conftest.py puts this folder on ``sys.path``.
"""

import os

STATES = {"DOWN": "1: DOWN", "INIT": "2: INIT", "ARMED": "3: ARMED", "ACTIVE": "4: ACTIVE"}
PHYS = {"Polling": "2: Polling", "Disabled": "3: Disabled", "LinkUp": "5: LinkUp"}


def write_attr(path, text):
    """A sysfs attribute file: ``text`` and a newline, parents created."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as handle:
        handle.write(text + "\n")


def link(path, target):
    """``path`` -> ``target`` as a relative symlink (sysfs links are relative), replacing one already there."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if os.path.lexists(path):
        os.unlink(path)
    os.symlink(os.path.relpath(target, os.path.dirname(path)), path)


def make_port(root, device, port, state="ACTIVE", phys="LinkUp", lid=3, sm_lid=1, link_layer="InfiniBand",
              guid="0002:c903:0001:0001"):
    """``class/infiniband/<device>/ports/<port>`` under ``root`` as the kernel shows it (state "4: ACTIVE",
    lid "0x3", gids/0); returns the port directory."""
    pdir = os.path.join(str(root), "class", "infiniband", device, "ports", str(port))
    values = {
        "state": STATES.get(state, state),
        "phys_state": PHYS.get(phys, phys),
        "lid": "0x%x" % lid,
        "sm_lid": "0x%x" % sm_lid,
        "sm_sl": "0",
        "link_layer": link_layer,
        "rate": "56 Gb/sec (4X FDR)",
        "gids/0": "fe80:0000:0000:0000:" + guid,
    }
    for name, value in values.items():
        write_attr(os.path.join(pdir, name), value)
    return pdir


class FakeRunner:
    """The Host's command runner, faked: records every argv in ``calls``; answers from ``answers``
    ({command: (rc, stdout, stderr), or a function of argv returning that}); a command not there is not
    installed (rc 127). Subclasses answer more commands by overriding ``answer``."""

    def __init__(self, answers=None):
        self.answers = answers or {}
        self.calls = []

    def __call__(self, argv, timeout=30):
        self.calls.append(list(argv))
        return self.answer(argv)

    def answer(self, argv):
        answer = self.answers.get(argv[0], (127, "", "%s: command not found" % argv[0]))
        return answer(argv) if callable(answer) else answer


def snapshot(root):
    """Every path under ``root``: directories, links (as their targets), files (mode and content); compare
    before/after to prove nothing changed."""
    result = {}
    for directory, dirs, files in os.walk(str(root)):
        for name in dirs + files:
            path = os.path.join(directory, name)
            rel = os.path.relpath(path, str(root))
            if os.path.islink(path):
                result[rel] = "-> " + os.readlink(path)
            elif os.path.isfile(path):
                with open(path, "rb") as handle:
                    result[rel] = (os.stat(path).st_mode, handle.read())
            else:
                result[rel] = "<dir>"
    return result
