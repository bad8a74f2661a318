"""The LD_PRELOAD ethtool shim answers GDRVINFO from its table and passes everything else through."""
import os
import shutil
import subprocess
import sys

import pytest

SRC = os.path.join(os.path.dirname(__file__), "..", "..", "..", "lab", "hw", "ethtool_shim.c")

PROBE = r"""
import array, errno, fcntl, socket, struct, sys
def drvinfo(name):
    buf = array.array("B", struct.pack("I", 3) + b"\0" * (4 + 32 * 5 + 12 + 20 - 4))
    ifreq = struct.pack("16sP", name.encode(), buf.buffer_info()[0])
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        fcntl.ioctl(s.fileno(), 0x8946, ifreq)
    except OSError as exc:
        return "errno %d" % exc.errno
    raw = buf.tobytes()
    return [raw[4 + 32 * i:36 + 32 * i].split(b"\0")[0].decode() for i in range(4)]
print(drvinfo("lo"))
print(drvinfo("nosuch0"))
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
print(struct.unpack("16si", fcntl.ioctl(s.fileno(), 0x8933, struct.pack("16si", b"lo", 0)))[1])  # SIOCGIFINDEX
"""


@pytest.mark.skipif(not shutil.which("gcc"), reason="gcc not installed")
def test_shim_answers_and_passes_through(tmp_path):
    table = tmp_path / "table"
    table.write_text("eth7\tigb\t-\t-\t0000:02:00.0\nlo\tib_ipoib\t-\t2.11.500\t0000:82:00.0\n")
    lib = tmp_path / "shim.so"
    subprocess.run(["gcc", "-O2", "-Wall", "-Werror", "-shared", "-fPIC",
                    f'-DHPCNET_ETHTOOL_TABLE="{table}"', "-o", str(lib), SRC], check=True)
    out = subprocess.run([sys.executable, "-c", PROBE], env=dict(os.environ, LD_PRELOAD=str(lib)),
                         capture_output=True, text=True, check=True).stdout.splitlines()
    driver, version, fw, bus = eval(out[0])  # noqa: S307 (our own probe's repr)
    assert (driver, fw, bus) == ("ib_ipoib", "2.11.500", "0000:82:00.0")
    assert version == os.uname().release          # empty version: the kernel release, like ethtool core
    assert out[1] == "errno 19"                   # unlisted, non-existent: the kernel's ENODEV
    assert out[2] == "1"                          # other ioctls untouched (lo has ifindex 1)
    table.unlink()                                # table gone: everything passes through
    out = subprocess.run([sys.executable, "-c", PROBE], env=dict(os.environ, LD_PRELOAD=str(lib)),
                         capture_output=True, text=True, check=True).stdout.splitlines()
    assert "ib_ipoib" not in out[0]
