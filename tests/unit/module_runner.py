"""Run a module's ``main()`` in-process exactly as Ansible would, and return its JSON result."""

from __future__ import annotations

import contextlib
import io
import json

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
    full = dict(args)
    full['_ansible_check_mode'] = check_mode
    full['_ansible_diff'] = diff
    out = io.StringIO()
    with patch_module_args(full), contextlib.redirect_stdout(out):
        try:
            main()
        except SystemExit:
            pass
    text = out.getvalue()
    try:
        return json.loads(text)
    except ValueError:
        raise AssertionError('module printed no JSON result:\n' + text)
