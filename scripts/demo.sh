#!/usr/bin/env bash
# README command 1: install everything, start the built-in lab (3 InfiniBand nodes as network
# namespaces with their own sshd, a simulated fabric with OpenSM, Open vSwitch), and run the main job
# against it: bootstrap discovery (ib_facts from every node, nodes model, report).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
export ANSIBLE_HOME="$here/.ansible"
export ANSIBLE_COLLECTIONS_PATH="$here/.collections"

bash scripts/setup.sh
lab/labctl up "$@"
eval "$(lab/labctl env)"
.venv/bin/ansible-playbook -i "$LAB_INVENTORY" playbooks/discover.yml
