#!/bin/sh
# Build (once) the Debian 12 systemd image of the network_backends scenario and print its name.
# The image is a debootstrap rootfs with everything the test needs already installed (no apt inside the
# container later); its tag is a hash of the package list and of this script, so a changed list builds
# a new image and an unchanged one is reused from the private store of podman.sh.
#   HPCNET_SYSTEMD_SM_MIRROR  Debian mirror (default http://deb.debian.org/debian)
set -eu
here=$(CDPATH='' cd -- "$(dirname -- "$0")" && pwd)
cache=${HPCNET_SYSTEMD_SM_CACHE:-/var/cache/hpcnet-infiniband/systemd_sm}/network_backends
mirror=${HPCNET_SYSTEMD_SM_MIRROR:-http://deb.debian.org/debian}
suite=bookworm
# systemd as PID 1 (with systemd-networkd), dbus, python3 for Ansible, and the three network managers the
# role writes for: NetworkManager (its daemon, nmcli), ifupdown (ifquery), and iproute2; sshd, which Ansible
# and testinfra reach through ../_shared/sshd-proxy.sh (sshd -i, no network needed).
packages=systemd,systemd-sysv,dbus,python3,ifupdown,iproute2,adduser,ca-certificates,openssh-server
# NetworkManager is installed by apt inside the configured rootfs: as a debootstrap --include its
# polkitd dependency fails to configure (measured on Debian 12: "Failure while configuring base packages").
later=network-manager
key=$( (printf '%s %s %s %s\n' "$suite" "$mirror" "$packages" "$later"; cat "$0") | sha256sum | cut -c1-12)
image=localhost/hpcnet-network-backends:$key
podman="$here/../systemd_sm/podman.sh"

if "$podman" image exists "$image"; then
  echo "$image"
  exit 0
fi

command -v debootstrap >/dev/null || { echo "image.sh: debootstrap is not installed" >&2; exit 1; }
mkdir -p "$cache"
# One build at a time; whoever waited finds the image built.
exec 9>"$cache/build.lock"
flock 9
if "$podman" image exists "$image"; then
  echo "$image"
  exit 0
fi
rootfs=$(mktemp -d "$cache/rootfs.XXXXXX")
trap 'rm -rf "$rootfs"' EXIT INT TERM
started=$(date +%s)
debootstrap --variant=minbase --include="$packages" "$suite" "$rootfs" "$mirror" >"$cache/debootstrap.log" 2>&1 ||
  { tail -n 20 "$cache/debootstrap.log" >&2; exit 1; }
# policy-rc.d: the packages' scripts start no service in the chroot; /proc for their maintainer scripts.
printf '#!/bin/sh\nexit 101\n' >"$rootfs/usr/sbin/policy-rc.d"
chmod 0755 "$rootfs/usr/sbin/policy-rc.d"
mount -t proc proc "$rootfs/proc"
trap 'umount "$rootfs/proc" 2>/dev/null; rm -rf "$rootfs"' EXIT INT TERM
cp /etc/resolv.conf "$rootfs/etc/resolv.conf"
{ chroot "$rootfs" apt-get update -qq && DEBIAN_FRONTEND=noninteractive chroot "$rootfs" \
    apt-get install -y -qq --no-install-recommends $later; } >>"$cache/debootstrap.log" 2>&1 ||
  { tail -n 20 "$cache/debootstrap.log" >&2; exit 1; }
umount "$rootfs/proc"
rm -f "$rootfs/usr/sbin/policy-rc.d" "$rootfs/etc/resolv.conf"

# A container needs no getty on a console, no udev and no listening sshd (sshd-proxy.sh runs sshd -i);
# the machine id is made at first boot.
rm -f "$rootfs/etc/machine-id" "$rootfs/var/lib/dbus/machine-id"
: >"$rootfs/etc/machine-id"
for unit in getty@tty1.service console-getty.service systemd-udevd.service systemd-udev-trigger.service \
  systemd-networkd-wait-online.service ssh.service ssh.socket; do
  ln -sf /dev/null "$rootfs/etc/systemd/system/$unit"
done
echo "$image" >"$rootfs/etc/hpcnet-network-backends-image"
rm -rf "$rootfs/var/cache/apt/archives"/*.deb "$rootfs/var/lib/apt/lists"/*_Packages

# podman import always keeps a blob-info cache in /var/lib/containers/cache (no option moves it): if this
# build made that directory, remove it again so that nothing outside the private store is left.
[ -e /var/lib/containers ] && system_store=kept || system_store=made
tar -C "$rootfs" --numeric-owner -cf - . |
  "$podman" import --change 'CMD ["/sbin/init"]' --change 'STOPSIGNAL=SIGRTMIN+3' - "$image" >/dev/null
[ "$system_store" = kept ] || rm -rf /var/lib/containers
echo "image.sh: built $image in $(($(date +%s) - started)) s" >&2
# Images of older package lists (or of an older image.sh) are not used any more; one still in use by a
# container stays.
"$podman" images --format '{{.Repository}}:{{.Tag}}' | grep '^localhost/hpcnet-network-backends:' |
  grep -v -x -F "$image" | xargs -r "$podman" rmi >/dev/null 2>&1 || true
echo "$image"
