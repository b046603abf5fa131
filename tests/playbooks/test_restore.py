"""playbooks/restore.yml with the real ansible-playbook against localhost, every path under tmp_path.

A bundle is laid out as the role's backup step writes it (build_manifest, files under their absolute
paths, manifest.yml, latest); the "host" files live under tmp_path. Restore must put every entry back,
or, when one entry cannot be, write nothing at all and name it.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from ansible_collections.vfio.passthrough.plugins.plugin_utils._backup import build_manifest
from collection_link import collection_link

ROOT = Path(__file__).resolve().parents[2]
TIME = '2026-01-24T10:15:00Z'
ID = '20260124T101500Z'
SAVED = b'options vfio-pci ids=10de:1b80\n'
OWNER = {'pw_name': None, 'gr_name': None}


def _stat(path, content=None):
    if content is None:
        return {'item': {'path': str(path), 'rebuild': 'none'}, 'stat': {'exists': False}}
    info = os.stat(path.parent)
    return {'item': {'path': str(path), 'rebuild': 'none'},
            'stat': {'exists': True, 'isreg': True, 'checksum': hashlib.sha256(content).hexdigest(), 'mode': '0640',
                     'uid': info.st_uid, 'gid': info.st_gid, 'size': len(content)}}


def _host_and_bundle(tmp_path, backup_dir, legacy=False):
    """Host files: one saved file (now changed), one the run created; the bundle that undoes both."""
    etc = tmp_path / 'host' / 'etc'
    (etc / 'modprobe.d').mkdir(parents=True)
    saved, created = etc / 'modprobe.d' / 'vfio.conf', etc / 'modprobe.d' / 'created.conf'
    manifest = build_manifest([_stat(saved, SAVED), _stat(created)], 'localhost', TIME, {'vfio': True}, '0.2.0')
    if legacy:
        manifest['schema'] = 1
        del manifest['count'], manifest['digest']
    bundle = backup_dir / 'localhost' / ID
    (bundle / str(saved).lstrip('/')).parent.mkdir(parents=True)
    (bundle / str(saved).lstrip('/')).write_bytes(SAVED)
    (bundle / 'manifest.yml').write_text(yaml.safe_dump(manifest, sort_keys=False))
    (backup_dir / 'localhost' / 'latest').symlink_to(ID)
    saved.write_bytes(b'options vfio-pci ids=10de:1b80,10de:10f0\n')
    created.write_bytes(b'written by the run\n')
    (tmp_path / 'proc').mkdir()
    (tmp_path / 'proc' / 'cmdline').write_text('BOOT_IMAGE=/vmlinuz root=/dev/sda1 ro quiet\n')
    return saved, created


def _restore(tmp_path, backup_dir):
    extra = {
        'pcie_passthrough_hosts': 'localhost', 'pcie_passthrough_backup_dir': str(backup_dir),
        'pcie_passthrough_root': str(tmp_path), 'pcie_passthrough_bootloader': 'systemd-boot',
        'ansible_become': False, 'ansible_python_interpreter': sys.executable,
    }
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(collection_link(ROOT).parents[2]),
               ANSIBLE_COLLECTIONS_SCAN_SYS_PATH='false', ANSIBLE_NOCOLOR='1', ANSIBLE_RETRY_FILES_ENABLED='false',
               ANSIBLE_LOCAL_TEMP=str(tmp_path / 'tmp'), ANSIBLE_HOME=str(tmp_path / 'ansible-home'))
    argv = [str(Path(sys.executable).with_name('ansible-playbook')), '-i', 'localhost,', '-c', 'local',
            '-e', json.dumps(extra), str(ROOT / 'playbooks' / 'restore.yml')]
    result = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300, check=False)
    return result.returncode, result.stdout + result.stderr


@pytest.mark.parametrize('name', ['backups', 'with space', '-leading-dash', 'new\nline'],
                         ids=['plain', 'space', 'dash', 'newline'])
def test_restore_puts_back_every_entry(tmp_path, name):
    backup_dir = tmp_path / name
    saved, created = _host_and_bundle(tmp_path, backup_dir)
    rc, output = _restore(tmp_path, backup_dir)
    assert rc == 0, output
    assert saved.read_bytes() == SAVED and oct(saved.stat().st_mode & 0o777) == '0o640'
    assert not created.exists()
    assert 'Restored localhost from bundle %s' % ID in output, output
    assert 'WARNING: Bundle' not in output


def test_a_bundle_without_a_completeness_proof_restores_with_a_warning(tmp_path):
    saved, _created = _host_and_bundle(tmp_path, tmp_path / 'backups', legacy=True)
    rc, output = _restore(tmp_path, tmp_path / 'backups')
    assert rc == 0, output
    assert 'WARNING: Bundle' in output and 'its completeness cannot be checked' in output, output
    assert saved.read_bytes() == SAVED


def test_one_entry_that_cannot_be_restored_leaves_every_file_as_it_was(tmp_path):
    saved, created = _host_and_bundle(tmp_path, tmp_path / 'backups')
    # The run's file became a directory since: restore must not delete it, nor write the other entry.
    created.unlink()
    created.mkdir()
    (created / 'keep').write_text('kept\n')
    before = saved.read_bytes()
    rc, output = _restore(tmp_path, tmp_path / 'backups')
    assert rc != 0
    assert 'Nothing restored: 1 entry cannot be put back on this host: %s: is a directory on this host' % created in output
    assert saved.read_bytes() == before and (created / 'keep').read_text() == 'kept\n'


def test_a_manifest_that_lost_an_entry_is_refused_before_any_write(tmp_path):
    saved, created = _host_and_bundle(tmp_path, tmp_path / 'backups')
    manifest_path = tmp_path / 'backups' / 'localhost' / ID / 'manifest.yml'
    manifest = yaml.safe_load(manifest_path.read_text())
    manifest['files'].pop()
    manifest_path.write_text(yaml.safe_dump(manifest, sort_keys=False))
    before = saved.read_bytes()
    rc, output = _restore(tmp_path, tmp_path / 'backups')
    assert rc != 0
    assert 'it lists 1 entries but records 2: entries were lost or added after backup wrote it' in output, output
    assert saved.read_bytes() == before and created.exists()
