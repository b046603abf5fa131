"""restore_files: a bundle's entries go back all together or not at all, through the one transaction."""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

import pytest

from ansible_collections.vfio.passthrough.plugins.modules import restore_files

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / 'plugins' / 'module_utils' / 'files'))
from module_runner import run_module  # noqa: E402
from test_restore import absent, saved  # noqa: E402

GRUB = b'GRUB_CMDLINE_LINUX_DEFAULT="quiet"\n'
MODULES = b'vfio\n\xff not UTF-8 survives\n'


@pytest.fixture
def host(tmp_path):
    for directory in ('etc/default', 'etc/initramfs-tools', 'etc/modprobe.d'):
        (tmp_path / directory).mkdir(parents=True)
    (tmp_path / 'etc/default/grub').write_bytes(b'GRUB_CMDLINE_LINUX_DEFAULT="quiet intel_iommu=on"\n')
    (tmp_path / 'etc/default/grub').chmod(0o600)
    (tmp_path / 'etc/modprobe.d/vfio.conf').write_bytes(b'options vfio-pci ids=10de:1b80\n')
    return tmp_path


def _entries(host):
    return [saved(host / 'etc/default/grub', GRUB), saved(host / 'etc/initramfs-tools/modules', MODULES, mode='0640'),
            absent(host / 'etc/modprobe.d/vfio.conf')]


def _tree(host):
    return sorted((str(p), p.is_symlink(), p.read_bytes() if p.is_file() else None,
                   stat.S_IMODE(p.lstat().st_mode)) for p in host.rglob('*') if p.name != 'lock')


def _run(host, entries, check_mode=False, diff=False):
    return run_module(restore_files.main, dict(files=entries, lock_file=str(host / 'lock')), check_mode=check_mode,
                      diff=diff)


def test_every_entry_is_put_back_with_its_bytes_and_mode(host):
    result = _run(host, _entries(host))
    assert not result.get('failed'), result
    assert result['changed'] is True
    assert result['files_changed'] == [str(host / 'etc/default/grub'), str(host / 'etc/initramfs-tools/modules'),
                                       str(host / 'etc/modprobe.d/vfio.conf')]
    assert (host / 'etc/default/grub').read_bytes() == GRUB
    assert stat.S_IMODE((host / 'etc/default/grub').stat().st_mode) == 0o644
    assert (host / 'etc/initramfs-tools/modules').read_bytes() == MODULES
    assert stat.S_IMODE((host / 'etc/initramfs-tools/modules').stat().st_mode) == 0o640
    assert not (host / 'etc/modprobe.d/vfio.conf').exists()
    again = _run(host, _entries(host))
    assert again['changed'] is False and again['files_changed'] == []


def test_a_mode_alone_is_put_back(host):
    (host / 'etc/default/grub').write_bytes(GRUB)
    result = _run(host, [saved(host / 'etc/default/grub', GRUB)])
    assert result['files_changed'] == [str(host / 'etc/default/grub')]
    assert stat.S_IMODE((host / 'etc/default/grub').stat().st_mode) == 0o644


def test_check_mode_and_diff_write_nothing_and_say_what_would_change(host):
    before = _tree(host)
    result = _run(host, _entries(host), check_mode=True, diff=True)
    assert result['changed'] is True and len(result['files_changed']) == 3
    assert 'intel_iommu=on' in result['diff'][0]['before'] and 'intel_iommu=on' not in result['diff'][0]['after']
    assert _tree(host) == before


def _directory(host):
    (host / 'etc/modprobe.d/vfio.conf').unlink()
    (host / 'etc/modprobe.d/vfio.conf').mkdir()
    (host / 'etc/modprobe.d/vfio.conf/keep').write_text('x')


def _parent_link(host):
    (host / 'elsewhere').mkdir()
    os.rename(host / 'etc/initramfs-tools', host / 'elsewhere/initramfs-tools')
    (host / 'etc/initramfs-tools').symlink_to(host / 'elsewhere/initramfs-tools')


def _link_out(host):
    (host / 'shadow').write_text('secret\n')
    (host / 'etc/default/grub').unlink()
    (host / 'etc/default/grub').symlink_to(host / 'shadow')


# Each breaks one entry of three; the other two are fine and must stay untouched too.
BROKEN = [
    ('absent-is-a-directory', _directory, lambda e: e, 'etc/modprobe.d/vfio.conf: is a directory on this host'),
    ('parent-is-a-symlink', _parent_link, lambda e: e, 'etc/initramfs-tools is a symlink to'),
    ('link-out', _link_out, lambda e: e, 'restore never follows a symlink out of the directory'),
    ('unknown-owner', lambda h: None, lambda e: [dict(e[0], owner='no-such-user-h21')] + e[1:],
     'owner no-such-user-h21 does not exist on this host'),
    ('unknown-group', lambda h: None, lambda e: e + [dict(e[1], path=e[1]['path'] + '.x', group='no-such-group-h21')],
     'group no-such-group-h21 does not exist on this host'),
]


@pytest.mark.parametrize('breaking, edit, message', [b[1:] for b in BROKEN], ids=[b[0] for b in BROKEN])
@pytest.mark.parametrize('check_mode', [False, True], ids=['real', 'check'])
def test_one_bad_entry_writes_nothing_at_all(host, breaking, edit, message, check_mode):
    breaking(host)
    before = _tree(host)
    result = _run(host, edit(_entries(host)), check_mode=check_mode)
    assert result.get('failed') is True
    assert result['msg'].startswith('Nothing restored: 1 entry cannot be put back on this host: ')
    assert message in result['msg']
    assert result['files_changed'] == []
    assert _tree(host) == before


def test_a_failed_write_puts_back_what_was_written(host, monkeypatch):
    before = _tree(host)
    real_chmod = os.chmod

    def failing_chmod(path, mode, *args, **kwargs):
        if str(path).endswith('modules'):
            raise PermissionError(1, 'Operation not permitted')
        return real_chmod(path, mode, *args, **kwargs)

    monkeypatch.setattr(os, 'chmod', failing_chmod)
    result = _run(host, _entries(host))
    monkeypatch.undo()
    assert result.get('failed') is True
    assert 'writing %s failed' % (host / 'etc/initramfs-tools/modules') in result['msg']
    assert _tree(host) == before
