# Copyright: contributors to vfio.passthrough
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Test bed only: write each task's full result to the JSON file VFIO_RESULTS_FILE names.

The stdout callback stays the default one (its recap and lines are what the logs show and what the
scenarios grep); this one keeps the structured results, so a scenario asserts on the module's own
return values instead of parsing printed text. Enabled with ANSIBLE_CALLBACKS_ENABLED=vfio_results and
ANSIBLE_CALLBACK_PLUGINS pointing here.
"""

from __future__ import annotations

import json
import os

from ansible.plugins.callback import CallbackBase


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = 'aggregate'
    CALLBACK_NAME = 'vfio_results'
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._path = os.environ.get('VFIO_RESULTS_FILE')
        self._results = []

    def _keep(self, result, status):
        # 2.19 hands a CallbackTaskResult (.result); older lines a TaskResult (._result).
        data = getattr(result, 'result', None)
        if not isinstance(data, dict):
            data = result._result  # pylint: disable=protected-access
        self._results.append({'host': result._host.get_name(), 'task': result._task.get_name(),  # pylint: disable=protected-access
                              'action': result._task.action, 'status': status,  # pylint: disable=protected-access
                              'result': data})

    def v2_runner_on_ok(self, result):
        self._keep(result, 'ok')

    def v2_runner_on_failed(self, result, ignore_errors=False):
        self._keep(result, 'failed')

    def v2_playbook_on_stats(self, stats):
        if not self._path:
            return
        tmp = self._path + '.tmp'
        with open(tmp, 'w', encoding='utf-8') as handle:
            json.dump(self._results, handle, indent=1, default=str)
        os.replace(tmp, self._path)
