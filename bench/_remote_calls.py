"""Remote calls of one ansible-playbook run, counted from the run itself.

bench/remote_calls/ssh stands in for ssh, sftp and scp (ANSIBLE_*_EXECUTABLE) and logs every run of
them; bench/callback_plugins/remote_call_marks.py marks each task's start in the same log. A remote
call is one run of ssh with a remote command, or of sftp/scp (a file transfer); `ssh -O check|stop`
(the ControlMaster's local control socket, e.g. around a reboot) is counted apart as control.
With pipelining, a module is one call; without it, or for a copied file, the temp dir, transfer,
chmod and cleanup are calls of their own, and the per-task list shows them.
"""

from __future__ import annotations

import re
from pathlib import Path

HERE = Path(__file__).resolve().parent
WRAPPER = HERE / 'remote_calls'
CALLBACKS = HERE / 'callback_plugins'
MARKS = 'remote_call_marks'


def env(log):
    """Environment for ansible-playbook that logs its remote calls to ``log`` (add to ANSIBLE_CALLBACKS_ENABLED)."""
    return {'ANSIBLE_SSH_EXECUTABLE': str(WRAPPER / 'ssh'), 'ANSIBLE_SFTP_EXECUTABLE': str(WRAPPER / 'sftp'),
            'ANSIBLE_SCP_EXECUTABLE': str(WRAPPER / 'scp'), 'ANSIBLE_CALLBACK_PLUGINS': str(CALLBACKS),
            'BENCH_REMOTE_CALL_LOG': str(log)}


def kind(program, command):
    """A short name for what one call did."""
    if program in ('sftp', 'scp'):
        return 'transfer (%s)' % program
    if re.search(r'python[0-9.]*\b.*&& sleep 0', command) and 'AnsiballZ' not in command:
        return 'module (pipelined)'
    if 'AnsiballZ' in command:
        return 'module (file)'
    if 'echo ~' in command:
        return 'home dir'
    if 'mkdir' in command and 'ansible-tmp' in command:
        return 'temp dir'
    if re.search(r'\bchmod\b', command):
        return 'chmod'
    if 'rm -f -r' in command:
        return 'cleanup'
    inner = re.match(r"^/bin/sh -c '(.*?)(?: && sleep 0)?'$", command.strip(), re.S)
    return 'command: %s' % ' '.join((inner.group(1) if inner else command).split())[:70]


def parse(text):
    """{'remote_calls', 'control_calls', 'per_task': [[task, calls, {kind: n}]...] in run order} from a log."""
    per_task, task, total, control = [], None, 0, 0
    for line in text.splitlines():
        fields = line.split('\t')
        if fields[0] == 'TASK' and len(fields) >= 2:
            task = [fields[1], 0, {}]
            per_task.append(task)
        elif fields[0] == 'CALL' and len(fields) >= 4:
            if fields[2] == 'control':
                control += 1
                continue
            total += 1
            if task is None:
                task = ['(before the first task)', 0, {}]
                per_task.append(task)
            task[1] += 1
            what = kind(fields[1], fields[3])
            task[2][what] = task[2].get(what, 0) + 1
    return {'remote_calls': total, 'control_calls': control, 'per_task': [t for t in per_task if t[1]]}


def read(log):
    path = Path(log)
    return parse(path.read_text()) if path.exists() else {'remote_calls': None, 'control_calls': None, 'per_task': []}
