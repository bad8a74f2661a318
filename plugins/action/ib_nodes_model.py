# -*- coding: utf-8 -*-
# Copyright: hpcnet.infiniband contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin of hpcnet.infiniband.ib_nodes_model: the model writer runs in the controller process.

The module always ran on the controller (``delegate_to: localhost``), with every node's facts as its
arguments. As a module that meant packing those arguments into a payload, starting a Python, importing
``module_utils.basic`` and walking the whole result for no_log values: a second or more of a discovery's
time at 16 nodes (docs/benchmarks.md). Here the same writer (``_nodes_writer.write_outputs``) is called
with the arguments validated against the module's own spec, so both paths behave alike.
"""

from __future__ import annotations

from ansible.plugins.action import ActionBase

from ansible_collections.hpcnet.infiniband.plugins.module_utils._host import HostError
from ansible_collections.hpcnet.infiniband.plugins.module_utils._nodes_writer import ARGUMENT_SPEC, write_outputs
from ansible_collections.hpcnet.infiniband.plugins.plugin_utils._action_args import module_params


class ActionModule(ActionBase):
    TRANSFERS_FILES = False

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        params, error = module_params(self, ARGUMENT_SPEC)
        if error:
            result.update(failed=True, changed=False, msg=error)
            return result
        try:
            outcome = write_outputs(params, check_mode=self._task.check_mode)
        except (HostError, TypeError, ValueError, OSError) as exc:
            result.update(failed=True, changed=False, msg=str(exc))
            return result
        warnings = outcome.pop("warnings")
        result.update(outcome)
        if warnings:
            result["warnings"] = warnings
        return result
