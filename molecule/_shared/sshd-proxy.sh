#!/bin/sh
# ssh ProxyCommand of the podman scenarios (systemd_sm, boot_state, network_backends): start sshd in inetd
# mode inside the container <name> (podman exec, through the private podman.sh) and speak ssh over its
# stdin/stdout. The containers have no network (--network=none); with ControlPersist this runs once per ssh
# master, and every task after that is one multiplexed ssh session with pipelining (the podman connection
# has no pipelining and costs 3-4 podman runs per task; testinfra would run one ansible per check).
#   usage (ssh -o ProxyCommand): sshd-proxy.sh <container name>
set -eu
here=$(CDPATH='' cd -- "$(dirname -- "$0")" && pwd)
# sshd wants its privilege separation directory (ssh.service, masked in the image, would make it).
exec "$here/../systemd_sm/podman.sh" exec -i "$1" /bin/sh -c 'mkdir -p -m 0755 /run/sshd && exec /usr/sbin/sshd -i'
