#!/usr/bin/env bash
# Install everything this checkout needs on a Debian 12 machine (run as root):
#   Debian packages (sshd, Open vSwitch, ibsim + opensm + infiniband-diags, FUSE, chromium, gcc),
#   a Python venv in .venv with the pinned requirements, and a local collections path in .collections
#   (hpcnet.infiniband linked to this checkout).
# Idempotent: a second run only checks.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"

DEBIAN_PACKAGES=(
  python3 python3-venv python3-dev gcc libc6-dev linux-libc-dev git bzip2 procps psmisc iproute2 iputils-ping util-linux
  openssh-server openssh-client
  openvswitch-switch
  ibsim-utils opensm infiniband-diags rdma-core ibverbs-utils ibverbs-providers mstflint
  fuse3 libfuse3-3 libfuse2 ethtool
  chromium shellcheck dpkg-dev
  podman runc debootstrap
  ifupdown
)

log() { printf '[setup] %s\n' "$*"; }

if [ "$(id -u)" != 0 ]; then
  echo "setup.sh must run as root (the lab makes network namespaces and mounts)" >&2
  exit 1
fi

missing=()
for pkg in "${DEBIAN_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  log "installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # policy-rc.d keeps package scripts from starting services (the lab starts its own, without systemd).
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod 0755 /usr/sbin/policy-rc.d
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  rm -f /usr/sbin/policy-rc.d
fi

PY=/usr/bin/python3
if [ ! -x .venv/bin/python ] || ! cmp -s requirements.txt .venv/.requirements.txt; then
  log "creating .venv with requirements.txt"
  [ -x .venv/bin/python ] || "$PY" -m venv .venv
  # pip would byte-compile all 18,500 files, 15,000 of them the ~100 collections of the `ansible` package that
  # this project never imports (50 s of the 78 s install). Compiled here instead, on both cores: everything but
  # those collections, and of the three the project uses, what the controller imports (not the modules and
  # module_utils, which reach the nodes as source). What is left compiles on first import, if ever.
  .venv/bin/pip install -q --no-compile --disable-pip-version-check -r requirements.txt 2>&1 | grep -v '^WARNING: Location' || true
  .venv/bin/python -m compileall -q -j 0 \
    -x '/ansible_collections/((?!ansible/posix/|community/general/|openvswitch/openvswitch/)|[^/]+/[^/]+/(plugins/modules|plugins/module_utils|tests)/)' \
    .venv/lib/python3*/site-packages >/dev/null || true
  .venv/bin/python -c 'import ansible, molecule, testinfra, netaddr, yaml, mfusepy' 
  cp requirements.txt .venv/.requirements.txt
fi

# NetworkManager's nmcli, unpacked and never installed (the daemon would take over this machine's
# interfaces): the unit tests compare our keyfiles with what `nmcli --offline` writes.
if [ ! -x .cache/nm/root/usr/bin/nmcli ]; then
  log "unpacking nmcli (network-manager, libnm0) into .cache/nm"
  rm -rf .cache/nm && mkdir -p .cache/nm/debs
  (cd .cache/nm/debs && apt-get download -q network-manager libnm0 >/dev/null)
  for deb in .cache/nm/debs/*.deb; do dpkg-deb -x "$deb" .cache/nm/root; done
  rm -rf .cache/nm/debs
fi

# Local collections path: our collection linked to the checkout (community.general, which the roles
# use, comes with the `ansible` package in the venv).
mkdir -p .collections/ansible_collections/hpcnet
ln -sfn ../../.. .collections/ansible_collections/hpcnet/infiniband
# Capture first: "ansible --version | head -n1" ends in a BrokenPipe traceback when head exits early.
version=$(.venv/bin/ansible --version 2>/dev/null)
log "ready: ${version%%$'\n'*}, collections in .collections"
