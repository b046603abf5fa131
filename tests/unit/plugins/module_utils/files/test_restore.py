"""module_utils/files/_restore.py: what the host must look like before restore writes anything.

Each case builds one host state under tmp_path (a real file tree) and expects restore_problems to
name the entry and why; the good state yields no problem at all.
"""

from __future__ import annotations

import base64
import grp
import hashlib
import os
import pwd

import pytest

from ansible_collections.vfio.passthrough.plugins.module_utils.files._restore import restore_problems

CONTENT = b'GRUB_CMDLINE_LINUX_DEFAULT="quiet"\n'
OWNER = pwd.getpwuid(os.getuid()).pw_name
GROUP = grp.getgrgid(os.getgid()).gr_name


def saved(path, data=CONTENT, **fields):
    entry = {'path': str(path), 'state': 'file', 'rebuild': 'boot', 'sha256': hashlib.sha256(data).hexdigest(),
             'mode': '0644', 'owner': OWNER, 'group': GROUP, 'size': len(data),
             'content': base64.b64encode(data).decode()}
    entry.update(fields)
    return entry


def absent(path):
    return {'path': str(path), 'state': 'absent', 'rebuild': 'none'}


def _etc(tmp_path):
    (tmp_path / 'etc/default').mkdir(parents=True)
    return tmp_path / 'etc/default/grub'


def _setup(build):
    def make(tmp_path):
        target = _etc(tmp_path)
        return build(tmp_path, target)
    return make


def _link(target_of):
    def build(tmp_path, target):
        (tmp_path / 'passwd').write_text('root:x:0:0::/root:/bin/sh\n')
        os.symlink(target_of(tmp_path), target)
        return target
    return build


def _fifo(tmp_path, target):
    os.mkfifo(target)
    return target


def _directory(tmp_path, target):
    target.mkdir()
    (target / 'inside').write_text('kept')
    return target


def _linked_parent(tmp_path, target):
    (tmp_path / 'elsewhere').mkdir()
    (tmp_path / 'etc/default').rmdir()
    (tmp_path / 'etc/default').symlink_to(tmp_path / 'elsewhere')
    return target


def _file_parent(tmp_path, target):
    (tmp_path / 'etc/default').rmdir()
    (tmp_path / 'etc/default').write_text('a file')
    return target


def _missing_parent(tmp_path, target):
    (tmp_path / 'etc/default').rmdir()
    return target


def _regular(content):
    def build(tmp_path, target):
        target.write_bytes(content)
        return target
    return build


def _beside(tmp_path, target):
    (tmp_path / 'etc/default/grub.real').write_bytes(b'old\n')
    target.symlink_to('grub.real')
    return target


# (id, host state, entry kind, fields, expected reason or None)
CASES = [
    ('missing-file', _setup(lambda t, p: p), 'file', {}, None),
    ('regular-file', _setup(_regular(b'old\n')), 'file', {}, None),
    ('absent-and-missing', _setup(lambda t, p: p), 'absent', {}, None),
    ('absent-regular', _setup(_regular(b'created by the run\n')), 'absent', {}, None),
    ('link-beside', _setup(_beside), 'file', {}, None),
    ('numeric-owner', _setup(lambda t, p: p), 'file', {'owner': os.getuid(), 'group': os.getgid()}, None),
    ('directory', _setup(_directory), 'file', {}, 'is a directory on this host: restore never deletes or replaces a directory'),
    ('directory-absent', _setup(_directory), 'absent', {}, 'is a directory on this host: restore never deletes'),
    ('fifo', _setup(_fifo), 'file', {}, 'is a FIFO on this host, not a regular file'),
    ('link-out', _setup(_link(lambda t: t / 'passwd')), 'file', {},
     'out of {dir}: restore never follows a symlink out of the directory'),
    ('dangling-link', _setup(_link(lambda t: t / 'etc/default/nowhere')), 'file', {}, 'which does not exist'),
    ('link-to-directory', _setup(_link(lambda t: t / 'etc')), 'file', {}, 'which is a directory'),
    ('link-absent', _setup(_beside), 'absent', {}, 'restore removes only a file, never a link or what it points at'),
    ('parent-symlink', _setup(_linked_parent), 'file', {},
     'its directory {dir} is a symlink to {elsewhere}, not the directory the file was saved from'),
    ('parent-symlink-absent', _setup(_linked_parent), 'absent', {}, 'its directory {dir} is a symlink'),
    ('parent-file', _setup(_file_parent), 'file', {}, '{dir} is not a regular file, not a directory'),
    ('parent-missing', _setup(_missing_parent), 'file', {}, 'its directory {dir} does not exist'),
    ('unknown-owner', _setup(lambda t, p: p), 'file', {'owner': 'no-such-user-h21'},
     'owner no-such-user-h21 does not exist on this host'),
    ('unknown-group', _setup(lambda t, p: p), 'file', {'group': 'no-such-group-h21'},
     'group no-such-group-h21 does not exist on this host'),
    ('empty-owner', _setup(lambda t, p: p), 'file', {'owner': ''}, "owner '' names no owner"),
    ('altered-content', _setup(lambda t, p: p), 'file', {'content': base64.b64encode(b'other').decode()},
     'its content does not match its sha256'),
    ('not-base64', _setup(lambda t, p: p), 'file', {'content': '***'}, 'its content is not base64'),
    ('bad-mode', _setup(lambda t, p: p), 'file', {'mode': '644; rm'}, "mode '644; rm' is not an octal mode"),
]


@pytest.mark.parametrize('make, kind, fields, reason', [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_each_host_state_is_judged_before_any_write(tmp_path, make, kind, fields, reason):
    path = make(tmp_path)
    entry = saved(path, **fields) if kind == 'file' else absent(path)
    problems = restore_problems([entry])
    if reason is None:
        assert problems == []
    else:
        expected = reason.format(dir=tmp_path / 'etc/default', elsewhere=tmp_path / 'elsewhere')
        assert len(problems) == 1 and problems[0].startswith('%s: ' % path) and expected in problems[0], problems


def test_every_problem_is_named_at_once_and_good_entries_add_none(tmp_path):
    target = _etc(tmp_path)
    (tmp_path / 'etc/modprobe.d').mkdir()
    bad_dir = tmp_path / 'etc/modprobe.d/vfio.conf'
    bad_dir.mkdir()
    problems = restore_problems([saved(target), absent(bad_dir), saved(tmp_path / 'etc/x', owner='no-such-user-h21'),
                                 saved(tmp_path / 'nowhere/y')])
    assert [p.split(':')[0] for p in problems] == [str(bad_dir), str(tmp_path / 'etc/x'), str(tmp_path / 'nowhere/y')]


@pytest.mark.parametrize('path', ['relative/grub', '/etc/../etc/shadow', '/', '/etc/default/grub/', None])
def test_a_path_not_in_normal_form_is_refused_by_the_same_rule_as_the_bundle(path):
    problems = restore_problems([{'path': path, 'state': 'absent'}])
    assert len(problems) == 1 and ('not in normal form' in problems[0] or 'not an absolute path' in problems[0])
