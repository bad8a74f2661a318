#!/usr/bin/env bash
# podman with this scenario's private storage, run directory and configuration: the machine's own
# podman setup (/etc/containers, /var/lib/containers, ~/.config/containers) is never read or changed.
#   HPCNET_SYSTEMD_SM_CACHE  image store (default /var/cache/hpcnet-infiniband/systemd_sm)
#   HPCNET_SYSTEMD_SM_RUN    run state, on tmpfs (default /run/hpcnet-infiniband/systemd_sm)
set -eu
here=$(CDPATH='' cd -- "$(dirname -- "$0")" && pwd)
cache=${HPCNET_SYSTEMD_SM_CACHE:-/var/cache/hpcnet-infiniband/systemd_sm}
run=${HPCNET_SYSTEMD_SM_RUN:-/run/hpcnet-infiniband/systemd_sm}
mkdir -p "$cache/storage" "$run/storage" "$run/tmp"

# containers/storage insists on both roots in its own file; they follow the two variables above.
cat >"$run/storage.conf.$$" <<CONF
[storage]
driver = "overlay"
graphroot = "$cache/storage"
runroot = "$run/storage"
CONF
mv "$run/storage.conf.$$" "$run/storage.conf"

# Measured on podman 4.3 (Debian 12): crun fails on RLIMIT_NOFILE, so runc; runc cannot raise a limit
# above the caller's hard limit (podman's defaults for nofile/nproc are higher, and the limits podman
# runs with vary by caller): nofile is the caller's hard limit, nproc a small fixed one (root in the
# initial user namespace is not held to it anyway). No systemd on the controller: cgroupfs, file events.
nofile=$(ulimit -Hn)
[ "$nofile" = unlimited ] && nofile=65536
cat >"$run/containers.conf.$$" <<CONF
[containers]
default_ulimits = ["nofile=$nofile:$nofile", "nproc=4096:4096"]
log_driver = "k8s-file"

[network]
# The containers run with --network=none; keep podman's network state out of /etc/cni too.
network_config_dir = "$run/networks"

[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
runtime = "runc"
CONF
mv "$run/containers.conf.$$" "$run/containers.conf"

# CONTAINERS_CONF replaces every other containers.conf.
export CONTAINERS_CONF="$run/containers.conf"
export CONTAINERS_STORAGE_CONF="$run/storage.conf"
export CONTAINERS_REGISTRIES_CONF="$here/registries.conf"
exec podman \
  --root "$cache/storage" \
  --runroot "$run/storage" \
  --tmpdir "$run/tmp" \
  --cgroup-manager cgroupfs \
  --events-backend file \
  --runtime runc \
  "$@"
