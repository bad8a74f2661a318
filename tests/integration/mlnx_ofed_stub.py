"""Stand-in MLNX_OFED Debian packages and their local repository, for tests only.

NVIDIA's MLNX_OFED packages cannot be downloaded on these machines, so this builds a small
directory shaped like an unpacked ``MLNX_OFED_LINUX-<version>-<distro>-<machine>/DEBS``: a flat
repository (``deb [signed-by=<key>] file:<dir> ./``) of .deb files plus its ``Packages`` and
``Packages.gz`` index, and (``sign=True``, the default) a ``Release`` signed with a throwaway gpg key
(``InRelease`` and ``Release.gpg``), whose public key is written beside ``DEBS`` as ``KEY_NAME``.
The packages carry the names MLNX_OFED uses and only what the role and ``ib_ofed_info`` look at:

- ``ofed-scripts``: ``/usr/bin/ofed_info`` answering ``-s`` (``MLNX_OFED_LINUX-<version>:``),
  ``-n`` (``<version>``) and no option (a header line, then the component list);
- ``mlnx-ofed-kernel-utils``: the default ``/etc/infiniband/openib.conf`` (a conffile);
- ``mlnx-ofed-basic``: the metapackage depending on both.

No kernel module, library or service is shipped; every Description says it is a test stand-in.
Packages are built with ``dpkg-deb --build --root-owner-group`` (from dpkg, always present on
Debian); the index is written here, so dpkg-dev (dpkg-scanpackages) is not needed.

    python3 tests/integration/mlnx_ofed_stub.py /tmp/out [--version 5.8-4.1.5.0] [--distro debian12.1]
    -> /tmp/out/MLNX_OFED_LINUX-5.8-4.1.5.0-debian12.1-x86_64/DEBS
"""

from __future__ import annotations

import argparse
import email.utils
import gzip
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
from pathlib import Path

DEFAULT_VERSION = "5.8-4.1.5.0"
KEY_NAME = "hpcnet-test-repo.gpg"  # the public key, beside DEBS (MLNX_OFED ships RPM-GPG-KEY-Mellanox there)
KEY_UID = "hpcnet.infiniband test repository (throwaway) <tests@hpcnet.invalid>"
DEFAULT_DISTRO = "debian12.1"
MAINTAINER = "hpcnet.infiniband tests <tests@hpcnet.invalid>"
STAND_IN = "Test stand-in, not NVIDIA software: built by hpcnet.infiniband's integration tests."

# What MLNX_OFED's mlnx-ofed-kernel-utils installs as /etc/infiniband/openib.conf (abridged: the
# keys the role and ib_kernel_modules read or edit, with their shipped defaults).
OPENIB_CONF = """\
# Start HCA driver upon boot
ONBOOT=yes

# Node description
NODE_DESC=$(hostname -s)

# Run /usr/sbin/mlnx_affinity
RUN_AFFINITY_TUNER=no

# Load IPoIB
IPOIB_LOAD=yes

# Load eIPoIB
E_IPOIB_LOAD=no

# Enable IPoIB Connected Mode
SET_IPOIB_CM=auto

# Load MLX4 modules
MLX4_LOAD=yes

# Load MLX5 modules
MLX5_LOAD=yes
"""

# ofed_info as MLNX_OFED's ofed-scripts ships it: -s the release tag, -n the bare version, nothing
# (or -l) a header line and the components with their sources.
OFED_INFO = """\
#!/bin/sh
# Test stand-in for MLNX_OFED's ofed_info (hpcnet.infiniband integration tests).
usage()
{{
    cat <<EOF
Usage: $0 [options]

Options:
    -s       Show package name and version number.
    -n       Show numerical version number only.
    -l       List installed packages details (Default option).
EOF
}}
if [ "X$1" = "X-s" ]; then echo MLNX_OFED_LINUX-{version}:; exit 0; fi
if [ "X$1" = "X-n" ]; then echo {version}; exit 0; fi
if [ "X$1" != "X-l" ] && [ "X$1" != "X" ]; then usage; exit 1; fi

cat <<EOF
MLNX_OFED_LINUX-{version} ({ofed}):

ofed-scripts:
stand-in {ofed_scripts_version}

mlnx-ofed-kernel:
stand-in {kernel_version}

EOF
"""


def _debian_arch() -> str:
    cp = subprocess.run(["dpkg", "--print-architecture"], capture_output=True, text=True, check=True)
    return cp.stdout.strip()


def package_specs(version: str = DEFAULT_VERSION, arch: str | None = None) -> list[dict]:
    """The stand-in packages: control fields plus the files each one ships ({path: (mode, text)})."""
    arch = arch or _debian_arch()
    major_minor, release = version.split("-", 1)  # 5.8 / 4.1.5.0
    release_parts = release.split(".")
    # MLNX_OFED's own Debian versions look like 5.8-OFED.5.8.4.1.5.1 (kernel) and 5.8-OFED.5.8.4.1.5
    ofed_tag = "OFED.%s.%s" % (major_minor, ".".join(release_parts[:3]))
    scripts_version = "%s-%s" % (major_minor, ofed_tag)
    kernel_version = "%s-%s.1" % (major_minor, ofed_tag)
    ofed_name = "OFED-%s-%s" % (major_minor, ".".join(release_parts[:3]))
    ofed_info = OFED_INFO.format(version=version, ofed=ofed_name, ofed_scripts_version=scripts_version,
                                 kernel_version=kernel_version)
    return [
        {
            "Package": "ofed-scripts",
            "Version": scripts_version,
            "Architecture": arch,
            "Section": "net",
            "Priority": "optional",
            "Description": "MLNX_OFED utilities (ofed_info)\n %s" % STAND_IN,
            "files": {"usr/bin/ofed_info": (0o755, ofed_info)},
        },
        {
            "Package": "mlnx-ofed-kernel-utils",
            "Version": kernel_version,
            "Architecture": arch,
            "Section": "kernel",
            "Priority": "optional",
            "Depends": "ofed-scripts",
            "Description": "MLNX_OFED kernel utilities (openib.conf)\n %s" % STAND_IN,
            "files": {"etc/infiniband/openib.conf": (0o644, OPENIB_CONF)},
            "conffiles": ["/etc/infiniband/openib.conf"],
        },
        {
            "Package": "mlnx-ofed-basic",
            "Version": version,
            "Architecture": "all",
            "Section": "net",
            "Priority": "optional",
            "Depends": "ofed-scripts (>= %s), mlnx-ofed-kernel-utils (>= %s)" % (scripts_version, kernel_version),
            "Description": "MLNX_OFED basic installation (metapackage)\n %s" % STAND_IN,
            "files": {},
        },
    ]


_CONTROL_ORDER = ("Package", "Version", "Architecture", "Maintainer", "Installed-Size", "Depends",
                  "Section", "Priority", "Description")
_INDEX_ORDER = ("Package", "Version", "Architecture", "Maintainer", "Installed-Size", "Depends",
                "Filename", "Size", "MD5sum", "SHA1", "SHA256", "Section", "Priority", "Description")


def _stanza(fields: dict, order) -> str:
    return "".join("%s: %s\n" % (key, fields[key]) for key in order if key in fields)


def build_deb(spec: dict, out_dir: Path) -> Path:
    """One .deb from a spec (dpkg-deb --build, files owned by root)."""
    with tempfile.TemporaryDirectory(prefix="mlnx-stub-") as tmp:
        root = Path(tmp) / "root"
        (root / "DEBIAN").mkdir(parents=True)
        size = 0
        for rel, (mode, text) in spec["files"].items():
            path = root / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            path.chmod(mode)
            size += len(text.encode())
        control = dict(spec, Maintainer=MAINTAINER, **{"Installed-Size": str(max(1, (size + 1023) // 1024))})
        (root / "DEBIAN" / "control").write_text(_stanza(control, _CONTROL_ORDER))
        if spec.get("conffiles"):
            (root / "DEBIAN" / "conffiles").write_text("".join(f + "\n" for f in spec["conffiles"]))
        for path in [root, *root.rglob("*")]:
            if path.is_dir():
                path.chmod(0o755)
        (root / "DEBIAN" / "control").chmod(0o644)
        deb = out_dir / ("%s_%s_%s.deb" % (spec["Package"], spec["Version"], spec["Architecture"]))
        subprocess.run(["dpkg-deb", "--root-owner-group", "--build", str(root), str(deb)],
                       capture_output=True, text=True, check=True)
    return deb


def write_index(repo: Path) -> Path:
    """``Packages`` (and ``Packages.gz``) for a flat repository, as ``dpkg-scanpackages . `` writes it."""
    stanzas = []
    for deb in sorted(repo.glob("*.deb")):
        cp = subprocess.run(["dpkg-deb", "--field", str(deb)], capture_output=True, text=True, check=True)
        fields, key = {}, None
        for line in cp.stdout.splitlines():
            if line[:1] in (" ", "\t") and key:
                fields[key] += "\n" + line
            elif ":" in line:
                key, value = line.split(":", 1)
                fields[key] = value.strip()
        data = deb.read_bytes()
        fields.update({
            "Filename": "./" + deb.name,
            "Size": str(len(data)),
            "MD5sum": hashlib.md5(data).hexdigest(),  # nosec - apt's index format, not security
            "SHA1": hashlib.sha1(data).hexdigest(),  # nosec
            "SHA256": hashlib.sha256(data).hexdigest(),
        })
        stanzas.append(_stanza(fields, _INDEX_ORDER))
    index = repo / "Packages"
    index.write_text("".join(stanza + "\n" for stanza in stanzas))
    with open(index, "rb") as plain, gzip.GzipFile(repo / "Packages.gz", "wb", mtime=0) as packed:
        shutil.copyfileobj(plain, packed)
    return index


def write_release(repo: Path) -> Path:
    """``Release`` of a flat repository: the hashes of its index files, as apt checks them."""
    lines = ["Origin: hpcnet-tests", "Label: MLNX_OFED stand-in", "Date: %s" % email.utils.formatdate(usegmt=True)]
    for field, algo in (("MD5Sum", hashlib.md5), ("SHA256", hashlib.sha256)):
        lines.append(field + ":")
        for name in ("Packages", "Packages.gz"):
            data = (repo / name).read_bytes()
            lines.append(" %s %d %s" % (algo(data).hexdigest(), len(data), name))
    release = repo / "Release"
    release.write_text("\n".join(lines) + "\n")
    return release


def sign_repo(repo: Path, key_path: Path) -> Path:
    """Sign ``repo``'s Release (InRelease + Release.gpg) with a new throwaway key; its public key goes to
    ``key_path`` (binary, usable as apt's signed-by). The private key is deleted with its home."""
    release = write_release(repo)
    with tempfile.TemporaryDirectory(prefix="hpcnet-gpg-") as home:
        gpg = ["gpg", "--batch", "--quiet", "--homedir", home, "--pinentry-mode", "loopback", "--passphrase", ""]
        try:
            subprocess.run(gpg + ["--quick-gen-key", KEY_UID, "ed25519", "sign", "1d"], check=True, timeout=60,
                           capture_output=True)
            for old in (repo / "InRelease", repo / "Release.gpg", key_path):
                if old.exists():
                    old.unlink()
            subprocess.run(gpg + ["--clearsign", "-o", str(repo / "InRelease"), str(release)], check=True,
                           timeout=60, capture_output=True)
            subprocess.run(gpg + ["--detach-sign", "-o", str(repo / "Release.gpg"), str(release)], check=True,
                           timeout=60, capture_output=True)
            subprocess.run(gpg + ["--export", "-o", str(key_path)], check=True, timeout=60, capture_output=True)
        finally:
            subprocess.run(["gpgconf", "--homedir", home, "--kill", "gpg-agent"], check=False, timeout=30,
                           capture_output=True)
    os.chmod(key_path, 0o644)
    return key_path


def build_tree(parent: Path, version: str = DEFAULT_VERSION, distro: str = DEFAULT_DISTRO,
               machine: str | None = None, arch: str | None = None, sign: bool = True) -> Path:
    """parent/MLNX_OFED_LINUX-<version>-<distro>-<machine>/DEBS with the stand-ins; returns DEBS.
    ``sign``: a signed Release and the public key at ``DEBS/../KEY_NAME``."""
    machine = machine or platform.machine()
    top = Path(parent) / ("MLNX_OFED_LINUX-%s-%s-%s" % (version, distro, machine))
    debs = top / "DEBS"
    debs.mkdir(parents=True, exist_ok=True)
    for old in debs.glob("*.deb"):
        old.unlink()
    for spec in package_specs(version, arch):
        build_deb(spec, debs)
    write_index(debs)
    if sign:
        sign_repo(debs, top / KEY_NAME)
    for path in (top, debs):
        os.chmod(path, 0o755)
    return debs


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("parent", help="directory to create MLNX_OFED_LINUX-*/DEBS in")
    parser.add_argument("--version", default=DEFAULT_VERSION)
    parser.add_argument("--distro", default=DEFAULT_DISTRO)
    parser.add_argument("--unsigned", action="store_true", help="no Release signature, no key")
    args = parser.parse_args(argv)
    print(build_tree(Path(args.parent), args.version, args.distro, sign=not args.unsigned))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
