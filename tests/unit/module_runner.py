"""Run a module's ``main()`` in-process exactly as Ansible would, and return its JSON result."""

from __future__ import annotations

import contextlib
import io
import json

from ansible.module_utils.testing import patch_module_args


def run_module(main, args, check_mode=False, diff=False):
    """Call ``main()`` with ``args``; return the result dict (``failed`` set on failure).

    Ansible's internal ``_ansible_*`` keys carry check and diff mode, the same
    way the controller passes them to a module on a managed host.
    """
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
