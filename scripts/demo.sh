#!/usr/bin/env bash
# README command 1: install everything, start the built-in lab (3 InfiniBand nodes as network
# namespaces with their own sshd, a simulated fabric with OpenSM, Open vSwitch), and run the main job
# against it: the whole deployment (playbooks/site.yml with the lab's site settings): discovery (facts,
# nodes model, addresses, report), subnet-manager check, OFED, firmware, SR-IOV, IPoIB, OVS bridges, the
# networks' addresses through ifupdown, the boot path, and the verification between every node pair.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
export ANSIBLE_HOME="$here/.ansible"
export ANSIBLE_COLLECTIONS_PATH="$here/.collections"

bash scripts/setup.sh
lab/labctl up "$@"
eval "$(lab/labctl env)"
ANSIBLE_CALLBACKS_ENABLED=hpcnet.infiniband.site_summary \
  .venv/bin/ansible-playbook -i "$LAB_INVENTORY" playbooks/site.yml -e @docs/examples/lab-site-vars.yml
