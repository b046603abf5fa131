"""bench/_remote_calls.py and its wrapper: remote calls counted from a run itself, per task (issue 26)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[3] / 'bench'
sys.path.insert(0, str(BENCH))

import _remote_calls  # noqa: E402

PIPELINED = "/bin/sh -c '/usr/bin/python3 && sleep 0'"


@pytest.mark.parametrize('program, command, expected', [
    ('ssh', PIPELINED, 'module (pipelined)'),
    ('ssh', "/bin/sh -c 'echo ~root && sleep 0'", 'home dir'),
    ('ssh', "/bin/sh -c '( umask 77 && mkdir -p \"` echo /root/.ansible/tmp `\"&& mkdir \"` echo "
            "/root/.ansible/tmp/ansible-tmp-1-2 `\" ) && sleep 0'", 'temp dir'),
    ('ssh', "/bin/sh -c 'chmod u+x /root/.ansible/tmp/ansible-tmp-1/ && sleep 0'", 'chmod'),
    ('ssh', "/bin/sh -c '/usr/bin/python3 /root/.ansible/tmp/ansible-tmp-1/AnsiballZ_copy.py && sleep 0'",
     'module (file)'),
    ('ssh', "/bin/sh -c 'rm -f -r /root/.ansible/tmp/ansible-tmp-1/ > /dev/null 2>&1 && sleep 0'", 'cleanup'),
    ('sftp', '[127.0.0.1]', 'transfer (sftp)'),
    ('ssh', 'uname -a', 'command: uname -a'),
    # ansible.builtin.reboot's boot id probe, unwrapped
    ('ssh', "/bin/sh -c 'cat /proc/sys/kernel/random/boot_id && sleep 0'", 'command: cat /proc/sys/kernel/random/boot_id'),
])
def test_kind(program, command, expected):
    assert _remote_calls.kind(program, command) == expected


def test_parse_attributes_calls_to_the_task_before_them_and_counts_control_apart():
    log = ('CALL\tssh\t\t%s\n'                    # before any mark
           'TASK\tGathering Facts\nCALL\tssh\t\t%s\n'
           'TASK\trole : Decide\n'                 # no call: left out
           'TASK\trole : Reboot the host once\nCALL\tssh\tcontrol\t127.0.0.1\nCALL\tssh\t\t%s\nCALL\tssh\t\t%s\n'
           % (PIPELINED, PIPELINED, PIPELINED, PIPELINED))
    assert _remote_calls.parse(log) == {
        'remote_calls': 4, 'control_calls': 1,
        'per_task': [['(before the first task)', 1, {'module (pipelined)': 1}],
                     ['Gathering Facts', 1, {'module (pipelined)': 1}],
                     ['role : Reboot the host once', 2, {'module (pipelined)': 2}]]}


def test_a_missing_log_is_not_zero_calls(tmp_path):
    assert _remote_calls.read(tmp_path / 'none.calls')['remote_calls'] is None


def test_the_wrapper_logs_each_run_and_runs_the_real_program(tmp_path):
    log = tmp_path / 'run.calls'
    env = dict(os.environ, **_remote_calls.env(log))
    version = subprocess.run([env['ANSIBLE_SSH_EXECUTABLE'], '-V'], env=env, capture_output=True, text=True,
                             check=False)
    assert version.returncode == 0 and 'OpenSSH' in version.stderr, version
    check = subprocess.run([env['ANSIBLE_SSH_EXECUTABLE'], '-O', 'check', '-o', 'ControlPath=%s' % (tmp_path / 'no'),
                            '127.0.0.1'], env=env, capture_output=True, text=True, check=False)
    assert check.returncode != 0   # no master: the real ssh answered
    assert log.read_text().splitlines() == ['CALL\tssh\t\t-V', 'CALL\tssh\tcontrol\t127.0.0.1']
    assert _remote_calls.read(log)['remote_calls'] == 1 and _remote_calls.read(log)['control_calls'] == 1


def test_the_callback_marks_every_task_in_order(tmp_path):
    log = tmp_path / 'run.calls'
    (tmp_path / 'play.yml').write_text('- hosts: localhost\n  gather_facts: false\n  tasks:\n'
                                       '    - name: First\n      ansible.builtin.debug: {msg: one}\n'
                                       '    - name: Second   task\n      ansible.builtin.set_fact: {x: 1}\n')
    env = dict(os.environ, **_remote_calls.env(log), ANSIBLE_CALLBACKS_ENABLED=_remote_calls.MARKS,
               ANSIBLE_HOME=str(tmp_path / 'home'), ANSIBLE_LOCAL_TEMP=str(tmp_path / 'tmp'))
    # The venv's own, else the one on PATH (Debian 13's apt-installed ansible-core lives in /usr/bin).
    beside = Path(sys.executable).with_name('ansible-playbook')
    playbook = str(beside) if beside.exists() else shutil.which('ansible-playbook')
    assert playbook, 'no ansible-playbook beside %s or on PATH' % sys.executable
    done = subprocess.run([playbook, '-i', 'localhost,', '-c', 'local',
                           str(tmp_path / 'play.yml')], env=env, capture_output=True, text=True, check=False,
                          timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert log.read_text().splitlines() == ['TASK\tFirst', 'TASK\tSecond task']
