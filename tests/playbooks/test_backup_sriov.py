"""The role's backup step (tasks/backup.yml) with the real ansible-playbook: SR-IOV files are in the bundle.

sriov_vfs writes its udev rule and script on every run (configure.yml), so backup.yml asks its dry run
(tasks/sriov.yml, which preflight.yml imports as one) which of them will change: a run whose only write is SR-IOV still takes a bundle, and the bundle holds
both files (absent ones recorded so restore deletes what the run created; existing ones saved byte for
byte, as when pcie_passthrough_sriov is removed). The other dry runs' results come in as extra vars, as
preflight.yml registers them; the host is a fake sysfs tree with one igb PF, the two files live under
tmp_path (the role's __pcie_passthrough_sriov_rules/_script, overridden).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

from ansible_collections.vfio.passthrough.plugins.modules import sriov_vfs
from collection_link import collection_link
from module_runner import run_module
from sysfs_builder import FakeHost

ROOT = Path(__file__).resolve().parents[2]
PF = '0000:01:00.0'
ASKED = [{'pf': PF, 'vfs': 2, 'vfio': [0, 1]}]
NOTHING_DUE = {'cmdline': False, 'vfio': False, 'blacklist': False, 'bind': False}
PLAYBOOK = '''
- hosts: localhost
  gather_facts: false
  tasks:
    - name: Run the role's SR-IOV dry run, as preflight.yml does
      ansible.builtin.include_role:
        name: vfio.passthrough.pcie_passthrough
        tasks_from: sriov.yml
      vars:
        __pcie_passthrough_sriov_dry_run: true
    - name: Run the role's backup step
      ansible.builtin.include_role:
        name: vfio.passthrough.pcie_passthrough
        tasks_from: backup.yml
'''


def _paths(tmp_path):
    return str(tmp_path / 'rules.d' / '70-sriov.rules'), str(tmp_path / 'sbin' / 'sriov')


def _host(tmp_path):
    """The fake PF's tree and the two files' paths (their directories exist, the files do not)."""
    host = FakeHost(tmp_path / 'root')
    host.add_bridge('0000:00:02.0', group=1)
    host.add_device(PF, '8086', '10c9', '020000', driver='igb', group=2, parent_bridge='0000:00:02.0',
                    netdev='enp1s0', sriov_totalvfs=7)
    for directory in ('grub.d', 'rules.d', 'sbin'):
        (tmp_path / directory).mkdir()
    return _paths(tmp_path)


def _backup(tmp_path, sriov):
    rules, script = _paths(tmp_path)
    (tmp_path / 'play.yml').write_text(PLAYBOOK)
    extra = {
        'pcie_passthrough_backup_dir': str(tmp_path / 'bundles'),
        'pcie_passthrough_root': str(tmp_path / 'root'),
        # Only what the SR-IOV dry run says: no file of this machine's /etc beside those two is read.
        '__pcie_passthrough_backup_boot_files': [], '__pcie_passthrough_backup_plain_files': [],
        '__pcie_passthrough_initramfs_inputs': [],
        '__pcie_passthrough_backup_grub_dropins': str(tmp_path / 'grub.d' / 'x'),
        '__pcie_passthrough_due': NOTHING_DUE,
        '__pcie_passthrough_plan': {'sriov': sriov, 'bind': []},
        '__pcie_passthrough_sriov_rules': rules, '__pcie_passthrough_sriov_script': script,
        '__pcie_passthrough_cmdline_check': {'files_changed': []},
        '__pcie_passthrough_vfio_check': {'files_changed': []},
        '__pcie_passthrough_blacklist_check': {'skipped': True},
        '__pcie_passthrough_bind_check': {'skipped': True},
    }
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(collection_link(ROOT).parents[2]),
               ANSIBLE_COLLECTIONS_SCAN_SYS_PATH='false', ANSIBLE_NOCOLOR='1', ANSIBLE_RETRY_FILES_ENABLED='false',
               ANSIBLE_LOCAL_TEMP=str(tmp_path / 'tmp'), ANSIBLE_HOME=str(tmp_path / 'ansible-home'))
    argv = [str(Path(sys.executable).with_name('ansible-playbook')), '-i', 'localhost,', '-c', 'local',
            '-e', 'ansible_python_interpreter=%s' % sys.executable, '-e', json.dumps(extra),
            str(tmp_path / 'play.yml')]
    result = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300, check=False)
    return result.returncode, result.stdout + result.stderr


def _manifest(tmp_path):
    return yaml.safe_load((tmp_path / 'bundles' / 'localhost' / 'latest' / 'manifest.yml').read_text())


def test_a_run_that_writes_only_sriov_files_takes_a_bundle_listing_them(tmp_path):
    rules, script = _host(tmp_path)
    rc, output = _backup(tmp_path, ASKED)
    assert rc == 0, output
    manifest = _manifest(tmp_path)
    assert manifest['due'] == dict(NOTHING_DUE, sriov=True), manifest
    assert manifest['files'] == [{'path': rules, 'state': 'absent', 'rebuild': 'none'},
                                 {'path': script, 'state': 'absent', 'rebuild': 'none'}], manifest
    assert not os.path.lexists(rules) and not os.path.lexists(script), 'the dry run wrote a file'


def test_removing_the_request_saves_both_files_byte_for_byte(tmp_path):
    rules, script = _host(tmp_path)
    written = run_module(sriov_vfs.main, dict(pfs=ASKED, root=str(tmp_path / 'root'), rules=rules, script=script,
                                              lock_file=str(tmp_path / 'lock')))
    assert written['files_changed'] == [rules, script], written
    rc, output = _backup(tmp_path, [])
    assert rc == 0, output
    manifest = _manifest(tmp_path)
    assert manifest['due'] == dict(NOTHING_DUE, sriov=True), manifest
    assert [(e['path'], e['state'], e['rebuild']) for e in manifest['files']] == [
        (rules, 'file', 'none'), (script, 'file', 'none')], manifest
    bundle = tmp_path / 'bundles' / 'localhost' / manifest['id']
    for path in (rules, script):
        assert (bundle / path.lstrip('/')).read_bytes() == Path(path).read_bytes()


def test_no_sriov_and_no_sriov_files_takes_no_bundle(tmp_path):
    _host(tmp_path)
    rc, output = _backup(tmp_path, [])
    assert rc == 0, output
    assert 'No backup bundle for localhost: nothing is due to be written.' in output, output
    assert not (tmp_path / 'bundles').exists()
