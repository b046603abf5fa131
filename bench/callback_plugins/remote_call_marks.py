# Copyright: contributors to vfio.passthrough
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Bench only: mark each task's start in $BENCH_REMOTE_CALL_LOG, so the remote calls logged after it are its own.

bench/remote_calls/ssh appends one line per ssh/sftp/scp run; the linear strategy starts a task only
after every host finished the one before, so the calls between two marks belong to the first.
"""

from __future__ import annotations

import os

from ansible.plugins.callback import CallbackBase

DOCUMENTATION = '''
  name: remote_call_marks
  type: aggregate
  short_description: Mark task starts in the bench's remote call log
  description: Appends "TASK<tab>name" to the file named by BENCH_REMOTE_CALL_LOG at each task and handler start.
  requirements: [enabled in ANSIBLE_CALLBACKS_ENABLED]
'''


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = 'aggregate'
    CALLBACK_NAME = 'remote_call_marks'
    CALLBACK_NEEDS_ENABLED = True

    def _mark(self, task):
        path = os.environ.get('BENCH_REMOTE_CALL_LOG')
        if path:
            with open(path, 'a', encoding='utf-8') as stream:
                stream.write('TASK\t%s\n' % ' '.join(task.get_name().split()))

    def v2_playbook_on_task_start(self, task, is_conditional):
        self._mark(task)

    def v2_playbook_on_handler_task_start(self, task):
        self._mark(task)
