#!/usr/bin/env bash
# Starts one lab node. Run by lab/core/node.py as
#   ip netns exec NETNS unshare --mount --uts --propagation private bash node_init.sh
# so it already sits in the node's network namespace and in a fresh, private mount + UTS namespace.
# Everything it mounts is visible only to the node's processes and disappears with them.
#
# Environment (set by node.py): LAB_DIR NODE NODE_DIR NODE_INDEX PROFILE MGMT_ADDR
#   LAB_HW (1: call hw.node setup for /sys, 0: plain sysfs) LAB_OVS (1/0) LAB_PYTHON LAB_SRC
set -euo pipefail

R="$NODE_DIR/root"          # the node's root: overlay of the host's / with a tmpfs upper
S="$NODE_DIR/realsys"       # a fresh sysfs of this netns, outside R (the FUSE view merges over it)
RW="$NODE_DIR/rw"           # tmpfs holding the overlay's upper and work dirs
NODE_RUN=/run/hpcnet-lab-node   # inside the node: sshd config, host key, logs

hostname "$NODE"

# ARP in this netns: a node's data links (ib0, ib1, EIPoIB ethN, P_Key children) all sit on one lab L2
# bridge, so by default every link answers ARP for every address of the node and replies land on a link
# that `ping -I ib0` is not bound to (ARP flux). Multi-homed hosts on one segment are set up like this:
# answer only for the receiving link's own addresses, announce with the outgoing link's address.
sysctl -q -w net.ipv4.conf.all.arp_ignore=1 net.ipv4.conf.all.arp_announce=2

# This mount namespace was copied from the host and holds references to every netns bind mount of
# /run/netns (other labs' nodes too); drop them so other labs' namespaces are freed when deleted.
umount -l /run/netns 2>/dev/null || true

mount -t tmpfs -o mode=0755,size=1g "hpcnet-$NODE-rw" "$RW"
mkdir -p "$RW/upper" "$RW/work"
mount -t overlay "hpcnet-$NODE-root" -o "lowerdir=/,upperdir=$RW/upper,workdir=$RW/work" "$R"

mount -t proc proc "$R/proc"
mount -t sysfs sysfs "$S"
mount --rbind /dev "$R/dev"
mount -t tmpfs -o mode=0755,size=256m "hpcnet-$NODE-run" "$R/run"
mkdir -p "$R/run/sshd" "$R/run/lock" "$R$NODE_RUN"
chmod 0755 "$R/run/sshd"
mount -t tmpfs -o mode=1777,size=512m "hpcnet-$NODE-tmp" "$R/tmp"

# The node's own identity files (written into the overlay upper, never into the host's /etc).
echo "$NODE" > "$R/etc/hostname"
cp "$LAB_DIR/hosts" "$R/etc/hosts"
rm -f "$R/etc/resolv.conf"
# DNS to loopback: nothing answers, so lookups fail at once and never leave the lab.
printf 'nameserver 127.0.0.1\noptions timeout:1 attempts:1\n' > "$R/etc/resolv.conf"
tr -d '-' < /proc/sys/kernel/random/uuid > "$R/etc/machine-id"
# Root's shell startup files as Debian installs them (base-files), not the host's: sshd runs every command
# through root's bash, which reads ~/.bashrc, and a developer's host may start tools there (pyenv init: a
# dozen processes, ~10 % of the machine's CPU in a lab test) that a cluster node does not have.
for dotfile in bashrc profile; do
    if [ -f "/usr/share/base-files/dot.$dotfile" ]; then
        install -m 0644 "/usr/share/base-files/dot.$dotfile" "$R/root/.$dotfile"
    else
        rm -f "$R/root/.$dotfile"
    fi
done
mkdir -p "$R/root/.ssh"
chmod 0700 "$R/root/.ssh"
install -m 0600 "$LAB_DIR/id_ed25519.pub" "$R/root/.ssh/authorized_keys"

if [ "$LAB_HW" = 1 ]; then
    # lab-hw: expands the profile, mounts the FUSE sysfs view on $R/sys, installs the ethtool shim
    # and the infiniband-diags wrappers. Returns when the mount answers.
    PYTHONPATH="$LAB_SRC" "$LAB_PYTHON" -m hw.node setup --lab-dir "$LAB_DIR" --node "$NODE" \
        --profile "$PROFILE" --node-index "$NODE_INDEX" --root "$R" --realsys "$S"
else
    mount -t sysfs sysfs "$R/sys"
fi

install -m 0600 "$NODE_DIR/ssh_host_ed25519_key" "$R$NODE_RUN/ssh_host_ed25519_key"
install -m 0644 "$NODE_DIR/sshd_config" "$R$NODE_RUN/sshd_config"
chroot "$R" /usr/sbin/sshd -f "$NODE_RUN/sshd_config" -E "$NODE_RUN/sshd.log"

if [ "$LAB_OVS" = 1 ]; then
    # Open vSwitch in userspace with its default paths, so plain ovs-vsctl works on the node.
    # A fresh database: the host's /etc/openvswitch/conf.db shows through the overlay otherwise.
    # The script is meant literally: $1 (the node name) expands inside the chroot's shell.
    # shellcheck disable=SC2016
    chroot "$R" /bin/sh -ec '
        mkdir -p /etc/openvswitch /run/openvswitch /var/log/openvswitch
        rm -f /etc/openvswitch/conf.db /etc/openvswitch/.conf.db.~lock~
        ovsdb-tool create /etc/openvswitch/conf.db /usr/share/openvswitch/vswitch.ovsschema
        ovsdb-server /etc/openvswitch/conf.db --remote=punix:/run/openvswitch/db.sock \
            --remote=db:Open_vSwitch,Open_vSwitch,manager_options \
            --pidfile --log-file --detach --no-chdir
        ovs-vsctl --no-wait init
        ovs-vsctl --no-wait set Open_vSwitch . "external-ids:hostname=$1" \
            "external-ids:system-id=$1"
        ovs-vswitchd --pidfile --log-file --detach --no-chdir
    ' ovs-start "$NODE"
fi

# A process that only holds the node's namespaces and root, so that `labctl exec` has a stable
# target for nsenter whatever happens to sshd.
setsid chroot "$R" /bin/sleep infinity </dev/null >/dev/null 2>&1 &
echo $! > "$NODE_DIR/holder.pid"
