"""Run a module's ``main()`` in-process exactly as Ansible would, and return its JSON result."""

from __future__ import annotations

import contextlib
import io
import json

from ansible.module_utils import _internal as _module_internal
from ansible.module_utils.common import warnings as _warnings
from ansible.module_utils.testing import patch_module_args


def run_module(main, args, check_mode=False, diff=False):
    """Call ``main()`` with ``args``; return the result dict (``failed`` set on failure).

    Ansible's internal ``_ansible_*`` keys carry check and diff mode, the same
    way the controller passes them to a module on a managed host.
    """
    # Warnings live in module-level state for the life of the process: a run in
    # a real module process starts empty, so each in-process run must too.
    _warnings._global_warnings.clear()
    _warnings._global_deprecations.clear()
    # Importing any controller code (filters, the templar) flips this flag for the
    # whole process, and then module.warn() prints to the controller's display
    # instead of returning the warning: a module on a managed host never sees it set.
    was_controller = _module_internal.is_controller
    _module_internal.is_controller = False
    full = dict(args)
    full['_ansible_check_mode'] = check_mode
    full['_ansible_diff'] = diff
    out = io.StringIO()
    try:
        with patch_module_args(full), contextlib.redirect_stdout(out):
            try:
                main()
            except SystemExit:
                pass
    finally:
        _module_internal.is_controller = was_controller
    text = out.getvalue()
    try:
        return json.loads(text)
    except ValueError:
        raise AssertionError('module printed no JSON result:\n' + text)
