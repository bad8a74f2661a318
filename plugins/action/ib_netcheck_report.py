# -*- coding: utf-8 -*-
# Copyright: hpcnet.infiniband contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin of hpcnet.infiniband.ib_netcheck_report: the verdict is made in the controller process.

The module always ran on the controller (``delegate_to: localhost``, ``run_once``) with every node's
results as its arguments. As a module that meant building its payload and starting a Python for it: about
1 s on the critical path of every verification (docs/benchmarks.md, the worker profile). Here the same
code (``_netcheck.report``) runs with the arguments validated against the module's own spec, so both
paths behave alike.
"""

from __future__ import annotations

from ansible.plugins.action import ActionBase

from ansible_collections.hpcnet.infiniband.plugins.module_utils._host import Host
from ansible_collections.hpcnet.infiniband.plugins.module_utils._netcheck import REPORT_ARGUMENT_SPEC, report
from ansible_collections.hpcnet.infiniband.plugins.plugin_utils._action_args import module_params


class ActionModule(ActionBase):
    TRANSFERS_FILES = False

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        params, error = module_params(self, REPORT_ARGUMENT_SPEC)
        if error:
            result.update(failed=True, changed=False, msg=error)
            return result
        output, message = report(params, Host())
        result.update(output)
        if message:
            result.update(failed=True, msg=message)
        return result
