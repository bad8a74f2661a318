#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: hpcnet.infiniband contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Read-only: which OFED stack runs, its versions, the RDMA cards and the state of the IB modules."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: ib_ofed_info
short_description: Report the InfiniBand software stack (inbox rdma-core or MLNX_OFED)
version_added: 0.1.0
description:
  - Detects the stack from C(ofed_info -s) and the C(version) files of
    mlx4_core/mlx5_core/ib_core/ib_ipoib in C(/sys/module) (MLNX_OFED modules carry a release such as
    C(5.8-1.0.1)), and says which evidence it used.
  - Reports the RDMA cards (PCI scan, so also before their driver is loaded), the state of the IB kernel
    modules (C(loaded), C(builtin), C(absent)) with their current parameters, the packages of either stack
    that are installed, and the settings of C(/etc/infiniband/openib.conf).
  - Changes nothing.
author:
  - hpcnet.infiniband developers (@hpcnet)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - hpcnet.infiniband.host
  - hpcnet.infiniband.host.fs_root
options:
  packages:
    description: Ask the package manager (dpkg-query or rpm) which stack packages are installed.
    type: bool
    default: true
attributes:
  platform:
    platforms: posix
  check_mode:
    support: full
    details: Read-only; behaves the same in check mode.
  diff_mode:
    support: none
seealso:
  - module: hpcnet.infiniband.ib_kernel_modules
"""

EXAMPLES = r"""
- name: Which stack does this node run?
  hpcnet.infiniband.ib_ofed_info:
  register: ofed

- name: Show it
  ansible.builtin.debug:
    msg: "{{ ofed.stack.stack }} {{ ofed.stack.ofed_version | default('') }}"
"""

RETURN = r"""
stack:
  description: C(stack) (C(inbox) or C(mlnx_ofed)), C(ofed_version), C(module_versions), C(evidence).
  returned: always
  type: dict
  sample: {"stack": "mlnx_ofed", "ofed_version": "4.9-7.1.0.0", "module_versions": {"mlx4_core": "4.9-7.1.0"},
           "evidence": ["ofed_info -s: MLNX_OFED_LINUX-4.9-7.1.0.0"]}
cards:
  description: RDMA physical functions with model, family, driver, ports, link layers, VF limit.
  returned: always
  type: list
  elements: dict
modules:
  description: State (C(loaded), C(builtin), C(absent)) and readable parameters of each IB kernel module.
  returned: always
  type: dict
  sample: {"ib_ipoib": {"state": "loaded", "version": null, "parameters": {"send_queue_size": "128"}}}
loaded_modules:
  description: Names of the IB kernel modules that are loaded or built in.
  returned: always
  type: list
  elements: str
packages:
  description: Installed stack packages and their versions (empty when O(packages=false) or unknown).
  returned: always
  type: dict
  sample: {"rdma-core": "44.0-2", "infiniband-diags": "44.0-2"}
openib_conf:
  description: Active settings of /etc/infiniband/openib.conf, or null when the file does not exist.
  returned: always
  type: dict
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.hpcnet.infiniband.plugins.module_utils import _ofed
from ansible_collections.hpcnet.infiniband.plugins.module_utils._host import Host, HostError


def main():
    module = AnsibleModule(
        argument_spec=dict(
            packages=dict(type="bool", default=True),
            sysfs_root=dict(type="path", default="/sys"),
            fs_root=dict(type="path", default="/"),
        ),
        supports_check_mode=True,
    )
    host = Host.from_module(module, sysfs_root=module.params["sysfs_root"], fs_root=module.params["fs_root"])
    try:
        info = _ofed.gather_info(host, packages=module.params["packages"])
    except HostError as exc:
        module.fail_json(msg="cannot read the host: %s" % exc)
    module.exit_json(changed=False, **info)


if __name__ == "__main__":
    main()
