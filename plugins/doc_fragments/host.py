# -*- coding: utf-8 -*-
# Copyright: hpcnet.infiniband contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Options of the host seam (plugins/module_utils/_host.py) shared by the modules that read or change a host."""

from __future__ import annotations


class ModuleDocFragment:
    # Every module that reads the host through sysfs.
    DOCUMENTATION = r"""
options:
  sysfs_root:
    description:
      - Where sysfs is. Leave the default on a host; another path points the module at a captured
        or test tree (links inside it are never followed outside this path).
    type: path
    default: /sys
"""

    # Modules that also read or write ordinary files (/etc/...).
    FS_ROOT = r"""
options:
  fs_root:
    description:
      - Prefix of every ordinary file the module reads or writes (C(/etc/...)). Leave the default on a
        host; another path points the module at a test tree.
    type: path
    default: /
"""
