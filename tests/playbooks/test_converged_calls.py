"""Remote calls a converged host no longer pays for, with the real ansible-playbook (issue 26).

The real sriov_vfs call (tasks/sriov.yml) runs only when its dry run left something owed, as preflight.yml
notes it through the passthrough_sriov_due filter (the same expression here); the cluster check
(tasks/cluster_batch.yml) reads corosync.conf only on a host that may reboot in this run. Each case
runs the role's own task files (include_role tasks_from) on localhost against a fake sysfs tree and
reads what the role's tasks registered (a skipped task registers ``skipped``), written out as JSON.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ansible_collections.vfio.passthrough.plugins.modules import sriov_vfs
from collection_link import collection_link
from module_runner import run_module
from sysfs_builder import FakeHost

ROOT = Path(__file__).resolve().parents[2]
PF = '0000:01:00.0'
SRIOV_PLAY = '''
- hosts: localhost
  gather_facts: false
  tasks:
    - name: Run the SR-IOV dry run, as preflight.yml does
      ansible.builtin.include_role: {name: vfio.passthrough.pcie_passthrough, tasks_from: sriov.yml}
      vars: {__pcie_passthrough_sriov_dry_run: true}
    - name: Note what it leaves owed, as preflight.yml does
      ansible.builtin.set_fact:
        __pcie_passthrough_due:
          sriov: "{{ (__pcie_passthrough_sriov_check | vfio.passthrough.passthrough_sriov_due)['write'] }}"
    - name: Run the real call, as configure.yml does
      ansible.builtin.include_role: {name: vfio.passthrough.pcie_passthrough, tasks_from: sriov.yml}
      vars: {__pcie_passthrough_sriov_dry_run: false}
    - name: Write what the two calls registered
      ansible.builtin.copy:
        dest: "{{ out }}"
        content: "{{ {'dry': __pcie_passthrough_sriov_check, 'real': __pcie_passthrough_sriov} | to_json }}"
        mode: '0600'
'''
CLUSTER_PLAY = '''
- hosts: localhost
  gather_facts: false
  tasks:
    - name: Run the cluster batch check, as preflight.yml does
      ansible.builtin.include_role: {name: vfio.passthrough.pcie_passthrough, tasks_from: cluster_batch.yml}
    - name: Write what the check registered
      ansible.builtin.copy:
        dest: "{{ out }}"
        content: "{{ {'stat': __pcie_passthrough_corosync, 'members': __pcie_passthrough_membership,
                      'peer': __pcie_passthrough_cluster_peer} | to_json }}"
        mode: '0600'
'''


def _play(tmp_path, text, extra):
    (tmp_path / 'play.yml').write_text(text)
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(collection_link(ROOT).parents[2]),
               ANSIBLE_COLLECTIONS_SCAN_SYS_PATH='false', ANSIBLE_NOCOLOR='1', ANSIBLE_RETRY_FILES_ENABLED='false',
               ANSIBLE_LOCAL_TEMP=str(tmp_path / 'tmp'),
               ANSIBLE_HOME=str(tmp_path / 'ansible-home'))
    argv = [str(Path(sys.executable).with_name('ansible-playbook')), '-i', 'localhost,', '-c', 'local',
            '-e', 'ansible_python_interpreter=%s' % sys.executable, '-e', json.dumps(dict(extra, out=str(tmp_path / 'out.json'))), str(tmp_path / 'play.yml')]
    result = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    return json.loads((tmp_path / 'out.json').read_text())


def _sriov_host(tmp_path):
    host = FakeHost(tmp_path / 'root')
    host.add_bridge('0000:00:02.0', group=1)
    host.add_device(PF, '8086', '10c9', '020000', driver='igb', group=2, parent_bridge='0000:00:02.0',
                    netdev='enp1s0', sriov_totalvfs=7)
    for directory in ('rules.d', 'sbin'):
        (tmp_path / directory).mkdir()
    return str(tmp_path / 'rules.d' / '70-sriov.rules'), str(tmp_path / 'sbin' / 'sriov')


def _sriov_extra(tmp_path, rules, script):
    return {'pcie_passthrough_root': str(tmp_path / 'root'), '__pcie_passthrough_plan': {'sriov': [], 'bind': []},
            '__pcie_passthrough_sriov_rules': rules, '__pcie_passthrough_sriov_script': script}


def test_no_request_and_no_files_skips_the_real_sriov_call(tmp_path):
    rules, script = _sriov_host(tmp_path)
    tasks = _play(tmp_path, SRIOV_PLAY, _sriov_extra(tmp_path, rules, script))
    assert tasks['dry']['files_changed'] == [] and not tasks['dry'].get('skipped'), tasks['dry']
    assert tasks['real'].get('skipped') is True, tasks['real']


def test_a_dropped_request_still_makes_the_real_call_that_removes_its_files(tmp_path):
    rules, script = _sriov_host(tmp_path)
    written = run_module(sriov_vfs.main, dict(pfs=[{'pf': PF, 'vfs': 2}], root=str(tmp_path / 'root'), rules=rules,
                                              script=script, lock_file=str(tmp_path / 'lock')))
    assert written['files_changed'] == [rules, script], written
    tasks = _play(tmp_path, SRIOV_PLAY, _sriov_extra(tmp_path, rules, script))
    assert tasks['dry']['files_changed'] == [rules, script], tasks['dry']
    assert not tasks['real'].get('skipped') and tasks['real']['changed'] is True, tasks['real']
    assert not os.path.lexists(rules) and not os.path.lexists(script)


@pytest.mark.parametrize('may_reboot, stat_runs', [(False, False), (True, True)])
def test_only_a_host_that_may_reboot_reads_corosync_conf(tmp_path, may_reboot, stat_runs):
    # No corosync.conf: a host outside any cluster, so the check itself never refuses.
    tasks = _play(tmp_path, CLUSTER_PLAY, {'__pcie_passthrough_may_reboot': may_reboot,
                                           '__pcie_passthrough_corosync_conf': str(tmp_path / 'corosync.conf')})
    stat = tasks['stat']
    assert bool(stat.get('skipped')) is not stat_runs, stat
    if stat_runs:
        assert stat['stat']['exists'] is False, stat
    assert tasks['members'].get('skipped') is True, tasks['members']
    assert tasks['peer']['may_reboot'] is False, tasks['peer']
