"""_files: the collection's only writer. Real files, a real AnsibleModule."""

from __future__ import annotations

import os
import stat
import tempfile

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.testing import patch_module_args

from ansible_collections.vfio.passthrough.plugins.module_utils._files import (
    FileError, atomic_write, display, file_diff, initramfs_lag, read_text, restore,
)


def make_module():
    with patch_module_args({}):
        return AnsibleModule(argument_spec={}, supports_check_mode=True)


@pytest.fixture(scope='module')
def module():
    return make_module()


def leftovers(directory):
    return sorted(name for name in os.listdir(directory) if name.endswith('.tmp') or 'ansible_tmp' in name)


def test_read_text_missing_is_none(tmp_path):
    assert read_text(str(tmp_path / 'nope')) is None


def test_existing_file_keeps_mode_and_owner(module, tmp_path):
    path = tmp_path / 'modules'
    path.write_text('old\n')
    path.chmod(0o600)
    if os.geteuid() == 0:
        os.chown(path, 1234, 5678)
    inode = path.stat().st_ino
    atomic_write(module, str(path), 'new\n', mode=0o755)
    info = path.stat()
    assert path.read_text() == 'new\n'
    assert stat.S_IMODE(info.st_mode) == 0o600  # mode= is for new files only
    if os.geteuid() == 0:
        assert (info.st_uid, info.st_gid) == (1234, 5678)
    else:
        print('not root: owner preservation not checked, only mode')
    assert info.st_ino != inode  # replaced by rename, never rewritten in place
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize('mode, expected', [(0o644, 0o644), (0o600, 0o600), (0o640, 0o640)])
def test_new_file_gets_requested_mode(module, tmp_path, mode, expected):
    path = tmp_path / 'new.conf'
    assert atomic_write(module, str(path), 'x\n', mode=mode) is None
    assert stat.S_IMODE(path.stat().st_mode) == expected


def test_new_file_without_mode_follows_umask(module, tmp_path):
    old = os.umask(0o027)
    try:
        atomic_write(module, str(tmp_path / 'f'), 'x')
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / 'f').stat().st_mode) == 0o640


def test_backup_of_existing_file(module, tmp_path):
    path = tmp_path / 'blacklist.conf'
    path.write_text('blacklist radeon\n')
    backup = atomic_write(module, str(path), 'blacklist nouveau\n', backup=True)
    assert backup is not None and backup != str(path)
    assert open(backup).read() == 'blacklist radeon\n'
    assert path.read_text() == 'blacklist nouveau\n'


def test_no_backup_for_new_file(module, tmp_path):
    assert atomic_write(module, str(tmp_path / 'n'), 'x', backup=True) is None
    assert os.listdir(tmp_path) == ['n']


def test_restore_old_text_keeps_mode(module, tmp_path):
    path = tmp_path / 'modules'
    path.write_bytes(b'loop\n')
    path.chmod(0o640)
    atomic_write(module, str(path), 'loop\nvfio\n')
    restore(module, str(path), 'loop\n')
    assert path.read_bytes() == b'loop\n'
    assert stat.S_IMODE(path.stat().st_mode) == 0o640


def test_restore_to_no_file(module, tmp_path):
    path = tmp_path / 'created'
    atomic_write(module, str(path), 'x\n')
    restore(module, str(path), None)
    assert not path.exists()
    restore(module, str(path), None)  # already gone: nothing to do, no error
    assert not path.exists()


def test_restore_recreates_a_deleted_file(module, tmp_path):
    path = tmp_path / 'owned.conf'
    restore(module, str(path), 'blacklist nouveau\n')
    assert path.read_text() == 'blacklist nouveau\n'


def test_symlink_is_written_through_not_replaced(module, tmp_path):
    target = tmp_path / 'modules'
    target.write_text('loop\n')
    target.chmod(0o600)
    link = tmp_path / 'modules.conf'
    link.symlink_to('modules')
    atomic_write(module, str(link), 'loop\nvfio\n')
    assert link.is_symlink() and os.readlink(link) == 'modules'
    assert target.read_text() == 'loop\nvfio\n'
    assert stat.S_IMODE(target.stat().st_mode) == 0o600


def test_failed_move_leaves_original_and_no_temp_file(tmp_path, monkeypatch):
    module = make_module()
    path = tmp_path / 'modules'
    path.write_bytes(b'loop\n')

    def broken_move(src, dest, **kwargs):
        raise OSError('disk full')

    monkeypatch.setattr(module, 'atomic_move', broken_move)
    with pytest.raises(OSError, match='disk full'):
        atomic_write(module, str(path), 'vfio\n')
    assert path.read_bytes() == b'loop\n'
    assert leftovers(tmp_path) == []


def test_non_utf8_bytes_round_trip(module, tmp_path):
    data = b'# caf\xe9 (latin-1)\nblacklist nouveau\n\xff\xfe\x80 tail'
    path = tmp_path / 'legacy.conf'
    path.write_bytes(data)
    text = read_text(str(path))
    atomic_write(module, str(path), text + '\nblacklist radeon\n')
    assert path.read_bytes() == data + b'\nblacklist radeon\n'


@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=200))
def test_property_any_bytes_survive_read_then_write(data):
    module = make_module()
    with tempfile.TemporaryDirectory() as directory:
        path = os.path.join(directory, 'f')
        with open(path, 'wb') as handle:
            handle.write(data)
        atomic_write(module, path, read_text(path))
        with open(path, 'rb') as handle:
            assert handle.read() == data


@pytest.mark.parametrize('before, after, headers, texts', [
    (None, 'x\n', ('/etc/f (absent)', '/etc/f'), ('', 'x\n')),
    ('x\n', None, ('/etc/f', '/etc/f (absent)'), ('x\n', '')),
    ('x\n', 'y\n', ('/etc/f', '/etc/f'), ('x\n', 'y\n')),
    ('', 'y', ('/etc/f', '/etc/f'), ('', 'y')),
])
def test_file_diff_headers(before, after, headers, texts):
    diff = file_diff('/etc/f', before, after)
    assert (diff['before_header'], diff['after_header']) == headers
    assert (diff['before'], diff['after']) == texts


def test_initramfs_lag_ignores_a_dangling_image_link(tmp_path):
    # An image removed by hand leaves its /boot/initrd.img-* link behind: no time to compare, no traceback.
    image = tmp_path / 'initrd.img-6.8.12-4-pve'
    image.write_bytes(b'image')
    os.utime(image, (100, 100))
    (tmp_path / 'initrd.img-6.5.13-6-pve').symlink_to('gone')
    conf = tmp_path / 'vfio.conf'
    conf.write_text('options vfio-pci ids=10de:1b80\n')
    os.utime(conf, (200, 200))
    lag = initramfs_lag([str(conf)], str(tmp_path / 'initrd.img-*'))
    assert lag == {'stale': True, 'newer': [str(conf)], 'images': [str(image)], 'present': [str(conf)]}


@pytest.mark.parametrize('make, reason', [
    (lambda p: p.mkdir(), 'is a directory, not a file'),
    (lambda p: p.symlink_to('missing.conf'), 'is a symlink to missing.conf, which does not exist'),
])
def test_read_text_names_a_path_that_is_no_plain_file(tmp_path, make, reason):
    path = tmp_path / 'x.conf'
    make(path)
    with pytest.raises(FileError, match=reason) as caught:
        read_text(str(path))
    assert caught.value.path == str(path)


@pytest.mark.parametrize('text, shown', [
    ('plain', 'plain'),
    (b'caf\xe9'.decode('utf-8', 'surrogateescape'), 'caf\\xe9'),
    ('café', 'café'),
])
def test_display_is_valid_utf8(text, shown):
    assert display(text) == shown
    display(text).encode('utf-8')
