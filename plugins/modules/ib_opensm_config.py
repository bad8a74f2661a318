#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: hpcnet.infiniband contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: ib_opensm_config
short_description: Render the OpenSM configuration (opensm.conf, partitions.conf) from a typed model
version_added: "0.1.0"
description:
  - Writes C(opensm.conf) with the port GUID opensm binds to, its priority, C(virt_enabled) (SR-IOV
    virtualization support) and the partitions file; and C(partitions.conf) with the P_Keys and
    their members. opensm keeps its built-in default for every key that is not written.
  - Optionally writes the distribution's service defaults file (Debian C(/etc/default/opensm),
    C(PORTS=)), which the Debian service uses to choose the port opensm binds to.
  - Every input is validated before anything is written; a refused run changes nothing. Check mode
    and diff mode show the exact file changes; a second run changes nothing.
  - B(Files it does not own.) A file whose first line is the C(# Managed by hpcnet.infiniband) header
    was written by this module and is rewritten whole. An existing file without that header (an
    operator's, or the one the opensm package ships) is never overwritten blindly. In O(conf_path) and
    O(service_defaults_path) only the keys this module sets are changed, in place, and missing ones are
    appended; every other line is kept (a key set by an earlier run and no longer wanted stays as it is
    in such a file). O(partitions_path) is a list of definitions, not keys; an unmanaged one is replaced
    only when O(backup) keeps its original, and refused otherwise, naming it.
  - With O(backup) (the default) the original of every unmanaged file that changes is kept next to it,
    named as M(ansible.builtin.template) names its backups, mode 0600 (opensm.conf may hold SM keys).
    Nothing is ever deleted.
  - The module does not start or restart opensm; it returns C(reload_required=true) when a file
    changed, so that the caller (the C(hpcnet.infiniband.subnet_manager) role) restarts it.
author:
  - hpcnet.infiniband developers (@hpcnet)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  platform:
    platforms: posix
  check_mode:
    support: full
  diff_mode:
    support: full
options:
  conf_path:
    description: Path of the opensm configuration file.
    type: path
    default: /etc/opensm/opensm.conf
  partitions_path:
    description: Path of the partitions file; also written to C(partition_config_file) in O(conf_path).
    type: path
    default: /etc/opensm/partitions.conf
  service_defaults_path:
    description:
      - Path of the service defaults file to write (C(/etc/default/opensm) on Debian/Ubuntu), with
        C(PORTS) set to O(guid), or C(ALL) when no GUID is given. Not written when omitted.
    type: path
  backup:
    description:
      - Keep the original of an existing file this module did not write, before changing it (see
        above). V(false) merges into opensm.conf and the service defaults without a copy, and refuses an
        unmanaged O(partitions_path).
    type: bool
    default: true
  guid:
    description:
      - Port GUID opensm binds to, in any spelling the tools print (C(0x0002c90300a1b2c1), kernel
        format C(0002:c903:00a1:b2c1), C(00:02:c9:03:00:a1:b2:c1)) or an integer.
      - Omitted, opensm binds to the first active port.
    type: raw
  priority:
    description: SM priority, 0 (lowest) to 15 (highest); the highest priority becomes master.
    type: int
  virt_enabled:
    description:
      - Virtualization support for SR-IOV VFs (0 disabled, 1 ignore virtual ports, 2 enabled).
      - Honoured by MLNX OpenSM; the inbox opensm 3.3.23 logs C(Unrecognized token) and ignores it.
    type: int
    choices: [0, 1, 2]
  sweep_interval:
    description: Seconds between subnet sweeps (0 disables periodic sweeps).
    type: int
  options:
    description: Further opensm.conf keys and values (lower-case keys; booleans are written TRUE/FALSE).
    type: dict
    default: {}
  partitions:
    description:
      - Partitions (P_Keys) and their members. The default partition C(0x7fff) (C(ALL) full members)
        is added when the list does not define it.
    type: list
    elements: dict
    default: []
    suboptions:
      name:
        description: Partition name (letters, digits, C(_), C(.), C(-)).
        type: str
        required: true
      pkey:
        description:
          - P_Key in hex as every InfiniBand tool prints it, C(0x) optional (V(8002) is 0x8002), or an
            integer taken as its value (unquoted YAML C(0x8002)). The membership bit 0x8000 may be given
            (C(0x8001) and C(0x0001) are partition 1); opensm sets it per member.
        type: raw
        required: true
      ipoib:
        description: Create the IPoIB broadcast group for this partition.
        type: bool
        default: true
      mtu:
        description: IPoIB broadcast-group MTU as IB MTU code (1=256, 2=512, 3=1024, 4=2048, 5=4096).
        type: int
      rate:
        description: IPoIB broadcast-group rate code (IBA rate encoding, 2-22).
        type: int
      sl:
        description: Service level (0-15).
        type: int
      defmember:
        description: Membership of members listed without one.
        type: str
        choices: [full, limited, both]
      members:
        description:
          - Port GUIDs or keywords (C(ALL), C(ALL_CAS), C(ALL_SWITCHES), C(ALL_ROUTERS), C(SELF)), as
            strings or as dicts C({guid, membership}) with membership C(full), C(limited) or C(both).
        type: list
        elements: raw
        default: []
seealso:
  - module: hpcnet.infiniband.ib_sm_check
  - name: opensm partition configuration
    description: The partitions.conf format (opensm man page, PARTITION CONFIGURATION).
    link: https://github.com/linux-rdma/opensm/blob/master/man/opensm.8.in
"""

EXAMPLES = r"""
- name: Configure opensm as master on this host's first port, with a storage partition
  hpcnet.infiniband.ib_opensm_config:
    guid: "0x0002c90300a1b2c1"
    priority: 15
    virt_enabled: 2
    service_defaults_path: /etc/default/opensm
    partitions:
      - name: storage
        pkey: "0x8001"
        mtu: 4
        members:
          - ALL_CAS
          - {guid: "0x0002c90300a1b2c2", membership: limited}
  register: opensm_config
"""

RETURN = r"""
changed:
  description: True when a file was (or in check mode would be) written.
  returned: always
  type: bool
plan:
  description: The file changes (action C(write_file), target path, before, after).
  returned: always
  type: list
  elements: dict
reload_required:
  description: True when a file changed; opensm must be restarted to use it.
  returned: always
  type: bool
reboot_required:
  description: Always false.
  returned: always
  type: bool
files:
  description: The files the module manages, path -> wanted content (for an unmanaged file, with this
    module's keys merged in).
  returned: always
  type: dict
backup_files:
  description: Path of each changed unmanaged file -> path of the copy of its original.
  returned: when a backup was made
  type: dict
  sample: {"/etc/rdma/opensm.conf": "/etc/rdma/opensm.conf.4242.2026-12-07@05:10:00~"}
backup_file:
  description: The copy of the original O(conf_path), as M(ansible.builtin.template) returns it.
  returned: when a backup of O(conf_path) was made
  type: str
  sample: /etc/rdma/opensm.conf.4242.2026-12-07@05:10:00~
diff:
  description: Before/after of every changed file (diff mode).
  returned: when diff mode is on
  type: list
  elements: dict
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.hpcnet.infiniband.plugins.module_utils._host import Host, HostError
from ansible_collections.hpcnet.infiniband.plugins.module_utils._plan import run_plan
from ansible_collections.hpcnet.infiniband.plugins.module_utils._sm import apply_opensm_config, plan_opensm_config

ARGUMENT_SPEC = dict(
    conf_path=dict(type="path", default="/etc/opensm/opensm.conf"),
    partitions_path=dict(type="path", default="/etc/opensm/partitions.conf"),
    service_defaults_path=dict(type="path"),
    backup=dict(type="bool", default=True),
    guid=dict(type="raw"),
    priority=dict(type="int"),
    virt_enabled=dict(type="int", choices=[0, 1, 2]),
    sweep_interval=dict(type="int"),
    options=dict(type="dict", default={}),
    partitions=dict(
        type="list",
        elements="dict",
        default=[],
        options=dict(
            name=dict(type="str", required=True),
            pkey=dict(type="raw", required=True, no_log=False),
            ipoib=dict(type="bool", default=True),
            mtu=dict(type="int"),
            rate=dict(type="int"),
            sl=dict(type="int"),
            defmember=dict(type="str", choices=["full", "limited", "both"]),
            members=dict(type="list", elements="raw", default=[]),
        ),
    ),
)


def main():
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    host = Host.from_module(module)
    plan, files = plan_opensm_config(host, module.params)

    def apply(plan_to_apply):
        try:
            backups = apply_opensm_config(host, plan_to_apply)
        except HostError as exc:
            module.fail_json(msg=str(exc), files=files, **plan_to_apply.result())
        applied = {"backup_files": backups} if backups else {}
        if module.params["conf_path"] in backups:
            applied["backup_file"] = backups[module.params["conf_path"]]
        return applied

    run_plan(module, plan, apply, extra={"files": files})


if __name__ == "__main__":
    main()
