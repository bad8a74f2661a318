# -*- coding: utf-8 -*-
# Copyright: hpcnet.infiniband contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the collection's action plugins share: a task's arguments as the module of the same name gets them.

The controller-side plugins (ib_nodes_model, ib_netcheck_report) run their module's logic in the controller
process instead of shipping it; they validate against the module's own argument spec and hand that logic
plain JSON data, so that both paths behave alike.
"""

from __future__ import annotations

import json

from ansible.errors import AnsibleActionFail


def module_params(action, argument_spec):
    """(params, None) with the arguments of ``action``'s task validated against ``argument_spec``, as plain
    JSON types; (None, message) when they are invalid, the message naming the argument or value."""
    try:
        _validation, params = action.validate_argument_spec(argument_spec=argument_spec)
        # Plain JSON types, as a module receives them: templated values are Ansible's tagged str/dict
        # subclasses, which a module never sees (the nodes model's YAML writer cannot represent them).
        return json.loads(json.dumps(params)), None
    except (AnsibleActionFail, TypeError, ValueError) as exc:  # invalid, or a templated value that is not JSON data
        return None, str(exc)
