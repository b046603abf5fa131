"""How the one write path (_transaction.Transaction) puts a single file on disk: mode, owner,
rename, backups, non-UTF-8 bytes, a failed move. Real files, a real AnsibleModule."""

from __future__ import annotations

import os
import stat
import tempfile

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.testing import patch_module_args

from ansible_collections.vfio.passthrough.plugins.module_utils.files._transaction import Transaction


class Failed(Exception):
    """fail_json, raised instead of exiting, so a test can read what the module would have said."""


def make_module():
    with patch_module_args({}):
        module = AnsibleModule(argument_spec={}, supports_check_mode=True)

    def fail_json(**kwargs):
        raise Failed(kwargs)

    module.fail_json = fail_json
    return module


def write(tmp_path, path, after, mode=0o644, backup=False, module=None):
    """One transaction that changes ``path`` to ``after``; returns what commit returned."""
    with Transaction(module or make_module(), lock_file=str(tmp_path / 'lock')) as tx:
        tx.change(str(path), tx.read(str(path)), after, mode=mode)
        return tx.commit(backup=backup)


def leftovers(directory):
    return sorted(name for name in os.listdir(directory) if name.endswith('.tmp') or 'ansible_tmp' in name)


def test_an_existing_file_keeps_mode_and_owner_and_is_replaced_by_rename(tmp_path):
    path = tmp_path / 'modules'
    path.write_text('old\n')
    path.chmod(0o600)
    if os.geteuid() == 0:
        os.chown(path, 1234, 5678)
    inode = path.stat().st_ino
    write(tmp_path, path, 'new\n', mode=0o755)
    info = path.stat()
    assert path.read_text() == 'new\n'
    assert stat.S_IMODE(info.st_mode) == 0o600  # mode= is for new files only
    if os.geteuid() == 0:
        assert (info.st_uid, info.st_gid) == (1234, 5678)
    else:
        print('not root: owner preservation not checked, only mode')
    assert info.st_ino != inode  # replaced by rename, never rewritten in place
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize('mode', [0o644, 0o600, 0o640])
def test_a_new_file_gets_the_requested_mode(tmp_path, mode):
    path = tmp_path / 'new.conf'
    write(tmp_path, path, 'x\n', mode=mode)
    assert stat.S_IMODE(path.stat().st_mode) == mode


def test_a_backup_keeps_the_old_bytes_and_a_new_file_gets_none(tmp_path):
    path = tmp_path / 'blacklist.conf'
    path.write_text('blacklist radeon\n')
    done = write(tmp_path, path, 'blacklist nouveau\n', backup=True)
    backup = done['backup_files'][str(path)]
    assert backup != str(path) and open(backup).read() == 'blacklist radeon\n'
    assert path.read_text() == 'blacklist nouveau\n'
    assert write(tmp_path, tmp_path / 'n', 'x', backup=True)['backup_files'] == {}


def test_bytes_that_are_not_utf8_round_trip(tmp_path):
    data = b'# caf\xe9 (latin-1)\nblacklist nouveau\n\xff\xfe\x80 tail'
    path = tmp_path / 'legacy.conf'
    path.write_bytes(data)
    with Transaction(make_module(), lock_file=str(tmp_path / 'lock')) as tx:
        text = tx.read(str(path))
        tx.change(str(path), text, text + '\nblacklist radeon\n')
        tx.commit()
    assert path.read_bytes() == data + b'\nblacklist radeon\n'


def test_a_failed_move_leaves_the_original_and_no_temp_file(tmp_path):
    module = make_module()
    path = tmp_path / 'modules'
    path.write_bytes(b'loop\n')

    def broken_move(src, dest, **kwargs):
        raise OSError('disk full')

    module.atomic_move = broken_move
    with pytest.raises(Failed) as failed:
        write(tmp_path, path, 'vfio\n', module=module)
    assert 'disk full' in failed.value.args[0]['msg'] and str(path) in failed.value.args[0]['msg']
    assert path.read_bytes() == b'loop\n'
    assert leftovers(tmp_path) == []


@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=200))
def test_property_any_bytes_survive_read_then_write(data):
    """Read as text, written back unchanged plus a line: every byte before the line is the file's own."""
    with tempfile.TemporaryDirectory() as directory:
        path = os.path.join(directory, 'f')
        with open(path, 'wb') as handle:
            handle.write(data)
        with Transaction(make_module(), lock_file=os.path.join(directory, 'lock')) as tx:
            text = tx.read(path)
            tx.change(path, text, text + 'vfio\n')
            tx.commit()
        with open(path, 'rb') as handle:
            assert handle.read() == data + b'vfio\n'
