"""vfio_modules end to end: real files under tmp_path, a fake update-initramfs on PATH."""

from __future__ import annotations

import os
import shutil
import stat
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ansible_collections.vfio.passthrough.plugins.modules import vfio_modules
from ansible_collections.vfio.passthrough.plugins.module_utils.modprobe._modprobe import block_markers

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from module_runner import run_module  # noqa: E402
from tree_snapshot import tree_snapshot  # noqa: E402

FIXTURES = Path(__file__).resolve().parents[3] / 'fixtures' / 'modprobe'
BEGIN, END = block_markers('vfio_modules')

FAKE_UPDATE_INITRAMFS = """#!/bin/sh
echo "$@" >> "{log}"
echo "LC_ALL=$LC_ALL" >> "{log}"
echo "building initramfs"
echo "boom" >&2
exit $(cat "{rc}")
"""


class Host:
    """A fake /etc, /lib/modules and update-initramfs for one test."""

    def __init__(self, tmp_path, monkeypatch):
        self.root = tmp_path
        for sub in ('etc/modules-load.d', 'etc/initramfs-tools', 'etc/modprobe.d', 'lib/modules', 'bin'):
            (tmp_path / sub).mkdir(parents=True)
        self.modules_file = tmp_path / 'etc/modules-load.d/vfio-passthrough.conf'
        self.initramfs_file = tmp_path / 'etc/initramfs-tools/modules'
        self.modprobe_file = tmp_path / 'etc/modprobe.d/vfio-passthrough.conf'
        shutil.copy(FIXTURES / 'initramfs-modules.debian12', self.initramfs_file)
        self.log = tmp_path / 'update-initramfs.log'
        self.rc = tmp_path / 'update-initramfs.rc'
        self.rc.write_text('0')
        fake = tmp_path / 'bin/update-initramfs'
        fake.write_text(FAKE_UPDATE_INITRAMFS.format(log=self.log, rc=self.rc))
        fake.chmod(0o755)
        # Our fake comes first; the real one (if any) in /usr/sbin must never run.
        monkeypatch.setenv('PATH', '%s:/usr/bin:/bin' % (tmp_path / 'bin'))

    def args(self, **extra):
        args = dict(modules_file=str(self.modules_file),
                    initramfs_modules_file=str(self.initramfs_file), modprobe_file=str(self.modprobe_file),
                    # never the test machine's own modprobe.d
                    modprobe_dirs=[str(self.root / d) for d in ('etc/modprobe.d', 'run/modprobe.d', 'lib/modprobe.d')])
        args.update(extra)
        return args

    def run(self, check_mode=False, diff=False, **extra):
        return run_module(vfio_modules.main, self.args(**extra), check_mode=check_mode, diff=diff)

    def snapshot(self):
        return tree_snapshot(self.root / 'etc')

    def update_calls(self):
        return self.log.read_text().splitlines() if self.log.exists() else []


@pytest.fixture
def host(tmp_path, monkeypatch):
    return Host(tmp_path, monkeypatch)


def golden(name):
    return (FIXTURES / name).read_bytes()


GPU = dict(ids=['10DE:1B80', '10de:10f0'], softdeps=['nouveau', 'snd-hda-intel'], disable_vga=True)


def test_first_run_writes_golden_bytes_and_rebuilds_initramfs(host):
    result = host.run(**GPU)
    assert result['changed'] is True
    assert host.modules_file.read_bytes() == golden('modules-load.expected')
    assert host.initramfs_file.read_bytes() == golden('initramfs-modules.debian12.expected')
    assert host.modprobe_file.read_bytes() == golden('modprobe-gpu.expected')
    assert stat.S_IMODE(host.modules_file.stat().st_mode) == 0o644
    assert stat.S_IMODE(host.modprobe_file.stat().st_mode) == 0o644
    assert result['files_changed'] == [str(host.modules_file), str(host.initramfs_file), str(host.modprobe_file)]
    assert result['modules'] == ['vfio', 'vfio_iommu_type1', 'vfio_pci']
    assert result['ids'] == ['10de:1b80', '10de:10f0']
    assert result['softdeps'] == ['nouveau', 'snd_hda_intel']
    assert result['initramfs_updated'] is True
    assert result['reboot_required'] is True
    assert result['command'] == [str(host.root / 'bin/update-initramfs'), '-u', '-k', 'all']
    assert host.update_calls() == ['-u -k all', 'LC_ALL=C']
    assert 'diff' not in result


def test_second_run_changes_nothing_and_touches_nothing(host):
    host.run(**GPU)
    before = host.snapshot()
    calls = host.update_calls()
    result = host.run(diff=True, **GPU)
    assert result['changed'] is False
    assert result['files_changed'] == []
    assert result['diff'] == []
    assert result['reboot_required'] is False
    assert result['initramfs_updated'] is False
    assert result['command'] is None
    assert host.snapshot() == before
    assert host.update_calls() == calls


def test_check_mode_writes_nothing_and_reports_the_real_diff(host):
    before = host.snapshot()
    checked = host.run(check_mode=True, diff=True, **GPU)
    assert host.snapshot() == before
    assert host.update_calls() == []
    assert checked['changed'] is True
    assert checked['initramfs_updated'] is False
    assert checked['command'] is None
    real = host.run(diff=True, **GPU)
    assert checked['diff'] == real['diff']
    assert checked['files_changed'] == real['files_changed']
    assert checked['reboot_required'] is True
    assert real['reboot_required'] is True


def test_diff_has_file_headers(host):
    result = host.run(diff=True, **GPU)
    by_header = {d['after_header']: d for d in result['diff']}
    modprobe = by_header[str(host.modprobe_file)]
    assert modprobe['before_header'] == '%s (absent)' % host.modprobe_file
    assert modprobe['before'] == ''
    assert modprobe['after'] == golden('modprobe-gpu.expected').decode()
    initramfs = by_header[str(host.initramfs_file)]
    assert initramfs['before'] == golden('initramfs-modules.debian12').decode()


def test_absent_removes_only_what_was_added(host):
    original = host.initramfs_file.read_bytes()
    host.initramfs_file.write_bytes(original + b'vfio_pci # my own line\n')
    host.run(**GPU)
    result = host.run(state='absent', diff=True)
    assert result['changed'] is True
    assert not host.modules_file.exists()
    assert not host.modprobe_file.exists()
    assert host.initramfs_file.read_bytes() == original + b'vfio_pci # my own line\n'
    assert result['modules'] == [] and result['ids'] == []
    assert host.run(state='absent')['changed'] is False


def test_shared_etc_modules_keeps_admin_lines(host):
    etc_modules = host.root / 'etc/modules'
    etc_modules.write_bytes(golden('modules.debian12') + b'loop\nvfio  \n')
    result = host.run(modules_file=str(etc_modules))
    assert result['changed'] is True
    assert etc_modules.read_bytes() == (golden('modules.debian12') + b'loop\nvfio  \n'
                                        + (BEGIN + '\nvfio_iommu_type1\nvfio_pci\n' + END + '\n').encode())
    host.run(modules_file=str(etc_modules), state='absent')
    assert etc_modules.read_bytes() == golden('modules.debian12') + b'loop\nvfio  \n'


def test_existing_file_keeps_its_mode(host):
    host.initramfs_file.chmod(0o600)
    host.run()
    assert stat.S_IMODE(host.initramfs_file.stat().st_mode) == 0o600


def test_symlinked_modules_file_stays_a_symlink(host):
    """/etc/modules-load.d/modules.conf is a symlink to ../modules on Debian."""
    target = host.root / 'etc/modules'
    target.write_bytes(golden('modules.debian12'))
    link = host.root / 'etc/modules-load.d/modules.conf'
    link.symlink_to('../modules')
    host.run(modules_file=str(link))
    assert link.is_symlink()
    assert target.read_bytes() == golden('modules.debian12.expected')


def test_no_options_means_no_modprobe_file(host):
    host.modprobe_file.write_bytes(golden('modprobe-gpu.expected'))
    result = host.run()
    assert not host.modprobe_file.exists()
    assert str(host.modprobe_file) in result['files_changed']


def test_hand_written_modprobe_file_is_shared_not_overwritten(host):
    text = golden('hand-edited.conf')
    host.modprobe_file.write_bytes(text)
    host.run(ids=['10de:1b80', '10de:10f0'], softdeps=['nouveau', 'amdgpu'])
    # The ids line (continued over two lines) and the nouveau softdep are already there.
    assert host.modprobe_file.read_bytes() == text + (BEGIN + '\nsoftdep amdgpu pre: vfio-pci\n' + END + '\n').encode()


def test_vfio_virqfd_is_never_listed_and_an_old_listing_is_dropped(host):
    # Listed, vfio_virqfd fails under kernels >= 6.2 (built into vfio) while 6.1's vfio_pci
    # loads it anyway: a file written by an older version of this module loses the line.
    host.modules_file.write_text(BEGIN + '\nvfio\nvfio_iommu_type1\nvfio_pci\nvfio_virqfd\n' + END + '\n')
    result = host.run()
    assert result['changed'] is True
    assert result['modules'] == ['vfio', 'vfio_iommu_type1', 'vfio_pci']
    assert 'virqfd' not in host.modules_file.read_text()


@pytest.mark.parametrize('etc_modules', ['absent', 'dangling-link', 'file'])
def test_etc_modules_is_neither_needed_nor_touched(host, etc_modules):
    # A fresh Debian 12 or 13 has /etc/modules with modules-load.d/modules.conf -> ../modules;
    # a trimmed one may lack either. The role writes its own file and leaves both alone.
    etc_modules_file = host.root / 'etc/modules'
    link = host.root / 'etc/modules-load.d/modules.conf'
    if etc_modules != 'absent':
        link.symlink_to('../modules')
    if etc_modules == 'file':
        etc_modules_file.write_bytes(b'# /etc/modules: kernel modules to load at boot time.\n\xff\n')

    def state():
        return [os.readlink(p) if p.is_symlink() else p.read_bytes() if p.exists() else None
                for p in (etc_modules_file, link)]

    before = state()
    result = host.run(**GPU)
    assert result['changed'] is True
    assert host.modules_file.read_bytes() == golden('modules-load.expected')
    assert state() == before
    assert etc_modules_file.exists() == (etc_modules == 'file')


def test_explicit_modules_are_normalised_and_not_extended(host):
    result = host.run(modules=['vfio-pci', 'vfio', 'vfio_pci'])
    assert result['modules'] == ['vfio_pci', 'vfio']


def test_failing_update_initramfs_restores_every_file(host):
    host.modprobe_file.write_bytes(golden('modprobe-gpu.expected'))
    before = {p: Path(p).read_bytes() for p in (host.initramfs_file, host.modprobe_file)}
    host.rc.write_text('3')
    result = host.run(ids=['8086:1533'])
    assert result['failed'] is True
    assert result['rc'] == 3
    assert result['stderr'].strip() == 'boom'
    assert result['stdout'].strip() == 'building initramfs'
    assert 'update-initramfs -u -k all failed (rc=3)' in result['msg']
    assert not host.modules_file.exists()
    for path, data in before.items():
        assert Path(path).read_bytes() == data


def test_update_initramfs_false_runs_nothing(host):
    result = host.run(update_initramfs=False)
    assert result['changed'] is True
    assert result['command'] is None
    assert result['initramfs_updated'] is False
    assert result['reboot_required'] is True
    assert host.update_calls() == []


@pytest.mark.parametrize('extra, needle', [
    (dict(ids=['10de:1b80', '10de-1b81']), "'10de-1b81'"),
    (dict(ids=['10de:1b8g']), "'10de:1b8g'"),
    (dict(softdeps=['nouveau', 'nvidia drm']), "'nvidia drm'"),
    (dict(modules=['vfio', 'vfio/pci']), "'vfio/pci'"),
    (dict(modules=[]), 'modules is empty'),
    (dict(state='present', modprobe_file='SAME'), 'must be three different files'),
])
def test_bad_input_fails_and_touches_nothing(host, extra, needle):
    if extra.get('modprobe_file') == 'SAME':
        extra['modprobe_file'] = str(host.modules_file)
    before = host.snapshot()
    result = host.run(diff=True, **extra)
    assert result['failed'] is True
    assert needle in result['msg']
    assert host.snapshot() == before
    assert host.update_calls() == []


def test_broken_block_markers_fail_before_any_write(host):
    host.initramfs_file.write_text(BEGIN + '\nvfio\n')
    before = host.snapshot()
    result = host.run(**GPU)
    assert result['failed'] is True
    assert '%s: line 1 opens a vfio.passthrough.vfio_modules block with no END marker' % host.initramfs_file \
        in result['msg']
    assert host.snapshot() == before


def test_missing_directory_fails_before_any_write(host):
    before = host.snapshot()
    result = host.run(modprobe_file=str(host.root / 'nowhere/vfio.conf'), ids=['10de:1b80'])
    assert result['failed'] is True
    assert 'nowhere does not exist' in result['msg']
    assert host.snapshot() == before


def test_non_utf8_bytes_in_shared_file_survive(host):
    data = b'# caf\xe9 latin-1 comment\nloop\n'
    host.initramfs_file.write_bytes(data)
    host.run()
    assert host.initramfs_file.read_bytes().startswith(data)
    host.run(state='absent')
    assert host.initramfs_file.read_bytes() == data


_admin = st.lists(st.sampled_from(['# note', '', 'loop', 'vfio', 'vfio-pci  # gpu', 'raid1', 'dm_crypt']),
                  max_size=6).map(lambda lines: ''.join(line + '\n' for line in lines))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(admin=_admin, ids=st.lists(st.sampled_from(['10de:1b80', '1002:67df', '8086:1533']), max_size=3))
def test_property_module_twice_equals_once_and_absent_restores(host, admin, ids):
    host.initramfs_file.write_text(admin)
    first = host.run(ids=ids)
    assert first.get('failed') is None
    snap = host.snapshot()
    assert host.run(ids=ids)['changed'] is False
    assert host.snapshot() == snap
    host.run(state='absent')
    if admin:
        assert host.initramfs_file.read_text() == admin
    else:
        # An empty file that then held only our block is removed, not left empty.
        assert not host.initramfs_file.exists()
    for path in (host.modules_file, host.modprobe_file):
        assert not path.exists()


@pytest.mark.parametrize('image_time, blacklist_time, stale_names', [
    (None, 300, []),                                            # no image (container): nothing owed
    (200, 100, ['modprobe.d/vfio-passthrough.conf']),           # own file newer than the image
    (400, 500, ['modprobe.d/blacklist.conf']),                  # only an extra input is newer
    (400, 100, []),                                             # everything older: the image is current
])
def test_initramfs_lag_is_reported_as_found_before_any_write(host, image_time, blacklist_time, stale_names):
    host.run(**GPU)                                             # converged: own files exist
    os.utime(host.initramfs_file, (100, 100))
    os.utime(host.modprobe_file, (300, 300))
    blacklist = host.root / 'etc/modprobe.d/blacklist.conf'
    blacklist.write_text('blacklist nouveau\n')
    os.utime(blacklist, (blacklist_time, blacklist_time))
    (host.root / 'boot').mkdir()
    if image_time is not None:
        image = host.root / 'boot/initrd.img-6.8.12-4-pve'
        image.write_bytes(b'')
        os.utime(image, (image_time, image_time))
    missing = host.root / 'etc/initramfs-tools/hooks/vfio-passthrough'
    before = host.snapshot()
    result = host.run(check_mode=True, initramfs_images=str(host.root / 'boot/initrd.img-*'),
                      initramfs_inputs=[str(blacklist), str(host.modprobe_file), str(missing)], **GPU)
    lag = result['initramfs']
    assert lag['stale'] is bool(stale_names)
    assert lag['newer'] == [str(host.root / 'etc' / name) for name in stale_names]
    # own files first, a duplicate input once, a missing input left out
    assert lag['present'] == [str(host.initramfs_file), str(host.modprobe_file), str(blacklist)]
    assert len(lag['images']) == (image_time is not None)
    assert result['changed'] is False and host.snapshot() == before


def test_initramfs_lag_predates_this_runs_writes(host):
    (host.root / 'boot').mkdir()
    (host.root / 'boot/initrd.img-6.8.12-4-pve').write_bytes(b'')
    os.utime(host.root / 'boot/initrd.img-6.8.12-4-pve', (100, 100))
    host.modprobe_file.unlink(missing_ok=True)
    result = host.run(initramfs_images=str(host.root / 'boot/initrd.img-*'), **GPU)
    assert result['changed'] is True                            # it wrote the modprobe file just now...
    assert str(host.modprobe_file) not in result['initramfs']['present']   # ...which did not exist before
    assert str(host.modprobe_file) not in result['initramfs']['newer']


# --- what the boot really reads (issue 12, class 8) ----------------------------

def test_a_trailing_comment_in_etc_modules_loads_nothing_so_the_module_writes_its_own_line(host):
    etc_modules = host.root / 'etc/modules'
    etc_modules.write_bytes(golden('modules.debian12') + b'vfio_pci  # GPU\nvfio\n')
    result = host.run(modules_file=str(etc_modules))
    assert etc_modules.read_bytes() == (golden('modules.debian12') + b'vfio_pci  # GPU\nvfio\n'
                                        + (BEGIN + '\nvfio_iommu_type1\nvfio_pci\n' + END + '\n').encode())
    warnings = [w if isinstance(w, str) else w['event']['msg'] for w in result.get('warnings', [])]
    assert warnings == ["%s line 7 'vfio_pci  # GPU' loads nothing: systemd-modules-load takes the whole line as "
                        "one module name (no trailing comments or parameters there)" % etc_modules]
    # initramfs-tools passes the rest of the line to modprobe as parameters: there it counts
    host.initramfs_file.write_bytes(b'vfio_pci  # GPU\nvfio\nvfio_iommu_type1\n')
    assert str(host.initramfs_file) not in host.run(modules_file=str(etc_modules))['files_changed']


def _place(host, rel, text):
    path = host.root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text)
    return path


@pytest.mark.parametrize('rel', ['etc/modprobe.d/vfio.conf', 'run/modprobe.d/vfio.conf', 'lib/modprobe.d/vfio.conf',
                                 'etc/modprobe.d/zz-gpu.conf'])
def test_another_files_vfio_pci_ids_are_refused_before_any_write(host, rel):
    path = _place(host, rel, golden('wiki-vfio.conf'))
    before = host.snapshot()
    result = host.run(ids=['10de:1b80'])
    assert result['failed'] is True
    assert "%s line 2 sets 'options vfio-pci ids=10de:1b80,10de:10f0 disable_vga=1'" % path in result['msg']
    assert 'ids=10de:1b80 this run writes' in result['msg']
    assert host.snapshot() == before
    assert host.update_calls() == []


@pytest.mark.parametrize('setup, ids', [
    ({'etc/modprobe.d/vfio.conf': b'options vfio_pci ids=10DE:10F0,10de:1b80\n'}, ['10de:1b80', '10de:10f0']),
    # /etc's file of the same name hides /lib's
    ({'lib/modprobe.d/vfio.conf': golden('wiki-vfio.conf'), 'etc/modprobe.d/vfio.conf': b'# emptied\n'},
     ['8086:1533']),
    ({'etc/modprobe.d/vfio.conf.disabled': golden('wiki-vfio.conf')}, ['8086:1533']),
    ({'etc/modprobe.d/vfio.conf': golden('wiki-vfio.conf')}, []),   # this run writes no ids= at all
])
def test_no_competition_is_not_refused(host, setup, ids):
    for rel, text in setup.items():
        _place(host, rel, text)
    result = host.run(ids=ids)
    assert not result.get('failed'), result.get('msg')


def test_own_old_ids_and_absent_are_not_competition_but_the_admins_part_of_a_shared_file_is(host):
    host.run(ids=['10de:1b80'])
    assert not host.run(ids=['8086:1533']).get('failed')
    _place(host, 'etc/modprobe.d/wiki-and-ours.conf', golden('wiki-vfio.conf'))
    assert not host.run(state='absent', modprobe_file=str(host.root / 'etc/modprobe.d/wiki-and-ours.conf')).get('failed')
    result = host.run(ids=['8086:1533'], modprobe_file=str(host.root / 'etc/modprobe.d/wiki-and-ours.conf'))
    assert result['failed'] is True
    assert 'wiki-and-ours.conf line 2' in result['msg']
