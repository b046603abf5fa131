"""The one transaction of the writing modules, proved through all three of them.

Issue 12 class 5 (non-UTF-8 bytes), 6 (failed regeneration restores everything),
7 (paths that are not plain files) and 9 (one host lock, scope, ownership).
"""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ansible_collections.vfio.passthrough.plugins.module_utils.files import _transaction
from ansible_collections.vfio.passthrough.plugins.modules import driver_blacklist, kernel_cmdline, vfio_modules
import sys
sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
from module_runner import run_module  # noqa: E402
from sysfs_builder import intel_gpu_host  # noqa: E402

FIXTURES = Path(__file__).resolve().parents[4] / 'fixtures'
STUB = '#!/bin/sh\necho "$(basename "$0") $*" >> "{log}"\necho "{name} talks"\necho "{name} broke" >&2\nexit {rc}\n'


class Host:
    """One fake host for all three writers: /etc files, a sysfs tree, stub tools, its own lock."""

    def __init__(self, base):
        self.base = Path(base)
        self.root = self.base / 'root'
        intel_gpu_host(self.root)
        self.etc = self.root / 'etc'
        for sub in ('default', 'kernel', 'modprobe.d', 'modules-load.d', 'initramfs-tools'):
            (self.etc / sub).mkdir(parents=True, exist_ok=True)
        (self.root / 'lib/modules').mkdir(parents=True, exist_ok=True)
        (self.root / 'proc').mkdir(exist_ok=True)
        (self.root / 'proc/cmdline').write_text('BOOT_IMAGE=/boot/vmlinuz root=/dev/sda1 ro quiet\n')
        shutil.copy(FIXTURES / 'grub/debian12.default', self.etc / 'default/grub')
        shutil.copy(FIXTURES / 'modprobe/initramfs-modules.debian12', self.etc / 'initramfs-tools/modules')
        self.bin = self.base / 'bin'
        self.bin.mkdir()
        self.log = self.base / 'calls.log'
        for name in ('update-grub', 'update-initramfs'):
            self.stub(name, 0)
        self.lock = self.base / 'lock/vfio-passthrough.lock'

    def stub(self, name, rc):
        """rc None: no such command on PATH."""
        path = self.bin / name
        if rc is None:
            path.unlink(missing_ok=True)
            return
        path.write_text(STUB.format(log=self.log, name=name, rc=rc))
        path.chmod(0o755)

    def calls(self):
        return self.log.read_text().splitlines() if self.log.exists() else []

    def args(self, writer, **extra):
        etc = self.etc
        args = {
            'kernel_cmdline': dict(present=['iommu=pt'], bootloader='grub', grub_file=str(etc / 'default/grub'),
                                   grub_cfg=str(self.root / 'boot/grub/grub.cfg'), cmdline_file=str(etc / 'kernel/cmdline'),
                                   proc_cmdline=str(self.root / 'proc/cmdline'),
                                   uuids_file=str(etc / 'kernel/proxmox-boot-uuids')),
            'vfio_modules': dict(ids=['10de:1b80'], softdeps=['nouveau'],
                                 modules_file=str(etc / 'modules-load.d/vfio-passthrough.conf'),
                                 initramfs_modules_file=str(etc / 'initramfs-tools/modules'),
                                 modprobe_file=str(etc / 'modprobe.d/vfio-passthrough.conf'),
                                 modprobe_dirs=[str(etc / 'modprobe.d')], initramfs_images=str(self.base / 'none-*')),
            'driver_blacklist': dict(drivers=['nouveau'], root=str(self.root),
                                     path=str(etc / 'modprobe.d/vfio-passthrough-blacklist.conf'),
                                     modprobe_dir=str(etc / 'modprobe.d')),
        }[writer]
        args['lock_file'] = str(self.lock)
        args.update(extra)
        return args

    def run(self, writer, check_mode=False, diff=False, **extra):
        return run_module(MAINS[writer], self.args(writer, **extra), check_mode=check_mode, diff=diff)

    def state(self):
        """Every path below the root: link text, or bytes, mode, owner. Inodes may change on restore."""
        result = {}
        for path in sorted(self.root.rglob('*')):
            if 'sys' in path.relative_to(self.root).parts[:1]:
                continue
            info = path.lstat()
            if stat.S_ISLNK(info.st_mode):
                result[str(path)] = ('link', os.readlink(path))
            elif stat.S_ISREG(info.st_mode):
                result[str(path)] = (path.read_bytes(), stat.S_IMODE(info.st_mode), info.st_uid, info.st_gid)
            else:
                result[str(path)] = ('dir', stat.S_IMODE(info.st_mode))
        return result


MAINS = {'kernel_cmdline': kernel_cmdline.main, 'vfio_modules': vfio_modules.main,
         'driver_blacklist': driver_blacklist.main}
COMMAND = {'kernel_cmdline': 'update-grub', 'vfio_modules': 'update-initramfs', 'driver_blacklist': 'update-initramfs'}
# The file each writer edits that an administrator may have made a symlink.
EDITED = {'kernel_cmdline': 'default/grub', 'vfio_modules': 'initramfs-tools/modules',
          'driver_blacklist': 'modprobe.d/vfio-passthrough-blacklist.conf'}


@pytest.fixture
def host(tmp_path, monkeypatch):
    h = Host(tmp_path)
    monkeypatch.setenv('PATH', '%s:/usr/bin:/bin' % h.bin)
    return h


def all_strings(value):
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from all_strings(key)
            yield from all_strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from all_strings(item)


def assert_valid_utf8(result):
    """What the controller demands: every string encodes as strict UTF-8."""
    for text in all_strings(result):
        text.encode('utf-8')  # raises UnicodeEncodeError on a lone surrogate
    json.dumps(result, ensure_ascii=False).encode('utf-8')


def make_symlinked(host, writer, mode=0o640, owner=(1234, 5678)):
    """Move the edited file to etc/real/ and leave a relative symlink in its place."""
    edited = host.etc / EDITED[writer]
    real = host.etc / 'real' / edited.name
    real.parent.mkdir(exist_ok=True)
    if edited.exists():
        shutil.move(str(edited), str(real))
    else:
        real.write_bytes(b'# the administrator\'s own lines\nblacklist radeon\n')
    real.chmod(mode)
    os.chown(real, *owner)
    edited.symlink_to(os.path.relpath(real, edited.parent))
    return edited, real


# -- class 6: a failed or missing regeneration command restores everything ------------------

@pytest.mark.parametrize('writer', sorted(MAINS))
@pytest.mark.parametrize('rc', [1, None], ids=['fails', 'missing'])
@pytest.mark.parametrize('symlinked', [False, True], ids=['file', 'symlink'])
def test_failed_regeneration_restores_every_file(host, writer, rc, symlinked):
    if symlinked:
        make_symlinked(host, writer)
    else:
        edited = host.etc / EDITED[writer]
        if edited.exists():
            edited.chmod(0o604)
            os.chown(edited, 4321, 8765)
    before = host.state()
    host.stub(COMMAND[writer], rc)
    result = host.run(writer, diff=True)
    assert result['failed'] is True, result
    assert 'Traceback' not in result.get('module_stderr', '') and 'exception' not in result
    assert host.state() == before  # bytes, mode, owner, links; created files gone; no temp files
    assert result['files_changed'] == []
    if rc is None:
        assert '%s not found on PATH; nothing was written' % COMMAND[writer] in result['msg']
        assert host.calls() == [] and result['restored'] == []
    else:
        assert '%s failed (rc=1); restored ' % ' '.join([result['cmd'][0]] + result['cmd'][1:]) in result['msg']
        assert (result['rc'], result['stdout'].strip(), result['stderr'].strip()) == (
            1, '%s talks' % COMMAND[writer], '%s broke' % COMMAND[writer])
        assert result['cmd'] == result['command'] and result['cmd'][0].endswith(COMMAND[writer])
        assert str(host.etc / EDITED[writer]) in result['restored']


@pytest.mark.parametrize('writer', sorted(MAINS))
def test_symlink_is_written_through_and_stays_a_link(host, writer):
    edited, real = make_symlinked(host, writer)
    link = os.readlink(edited)
    result = host.run(writer)
    assert result['changed'] is True and not result.get('failed'), result
    assert edited.is_symlink() and os.readlink(edited) == link
    assert stat.S_IMODE(real.stat().st_mode) == 0o640 and (real.stat().st_uid, real.stat().st_gid) == (1234, 5678)
    assert [p.name for p in real.parent.iterdir()] == [real.name]  # nothing else left at the target


def test_absent_through_a_symlink_removes_link_and_target_and_undo_puts_both_back(host):
    edited, real = make_symlinked(host, 'driver_blacklist')
    real.write_bytes(b'# Managed by Ansible (vfio.passthrough.driver_blacklist): manual edits will be overwritten\n'
                     b'blacklist nouveau\n')
    before = host.state()
    host.stub('update-initramfs', 3)
    failed = host.run('driver_blacklist', state='absent')
    assert failed['failed'] is True and host.state() == before
    host.stub('update-initramfs', 0)
    done = host.run('driver_blacklist', state='absent')
    assert done['changed'] is True
    assert not os.path.lexists(edited) and not os.path.lexists(real)


def test_a_failed_write_restores_what_was_written_before_it(host, monkeypatch):
    before = host.state()
    real_replace = _transaction.Transaction._replace
    writes = []

    def third_write_fails(self, target, data, keep):
        writes.append(target)
        if len(writes) == 3:
            raise OSError(28, 'No space left on device')
        return real_replace(self, target, data, keep)

    monkeypatch.setattr(_transaction.Transaction, '_replace', third_write_fails)
    result = host.run('vfio_modules')
    assert result['failed'] is True
    assert 'No space left on device' in result['msg'] and 'restored' in result['msg']
    assert host.state() == before
    assert host.calls() == []


# -- class 7: paths that are not plain files ----------------------------------------------

def _directory(path):
    path.unlink(missing_ok=True)
    path.mkdir()
    return 'is a directory'


def _below_file(path):
    blocker = path.parent.parent / 'blocker'
    blocker.write_text('x\n')
    return path.parent.parent / 'blocker' / path.name, 'blocker is a file, not a directory'


def _missing_parent(path):
    return path.parent.parent / 'nowhere' / path.name, 'nowhere does not exist'


def _dangling(path):
    path.unlink(missing_ok=True)
    path.symlink_to('gone.conf')
    return 'is a symlink to gone.conf, which does not exist'


@pytest.mark.parametrize('writer, option', [
    ('kernel_cmdline', 'grub_file'),
    ('vfio_modules', 'modprobe_file'),
    ('vfio_modules', 'initramfs_modules_file'),
    ('driver_blacklist', 'path'),
])
@pytest.mark.parametrize('kind', ['directory', 'below_file', 'missing_parent', 'dangling'])
@pytest.mark.parametrize('check_mode', [False, True], ids=['real', 'check'])
def test_path_that_is_not_a_plain_file_fails_naming_it(host, writer, option, kind, check_mode):
    path = Path(host.args(writer)[option])
    outcome = {'directory': _directory, 'below_file': _below_file, 'missing_parent': _missing_parent,
               'dangling': _dangling}[kind](path)
    if isinstance(outcome, tuple):
        path, reason = outcome
    else:
        reason = outcome
    if kind == 'missing_parent' and option == 'grub_file':
        reason = 'does not exist'  # GRUB's own file missing is its own refusal
    before = host.state()
    result = host.run(writer, check_mode=check_mode, **{option: str(path)})
    assert result['failed'] is True, result
    assert str(path) in result['msg'] and reason in result['msg'], result['msg']
    assert 'exception' not in result and 'Traceback' not in result['msg']
    assert host.state() == before and host.calls() == []


def _as_nobody(queue, main, args, check_mode):
    os.setgroups([])
    os.setgid(65534)
    os.setuid(65534)
    queue.put(run_module(main, args, check_mode=check_mode))


@pytest.mark.parametrize('check_mode', [False, True], ids=['real', 'check'])
def test_unreadable_file_fails_naming_it(check_mode):
    base = Path(tempfile.mkdtemp(prefix='vfio-unreadable-'))
    try:
        base.chmod(0o755)
        host = Host(base)
        for path in [base, *base.rglob('*')]:
            if not path.is_symlink():
                path.chmod(0o777 if path.is_dir() else 0o644)
        blacklist = host.etc / 'modprobe.d/vfio-passthrough-blacklist.conf'
        blacklist.write_text('blacklist radeon\n')
        blacklist.chmod(0)
        args = host.args('driver_blacklist')
        if os.geteuid() == 0:
            # Root reads everything: drop to nobody in a child, as an unprivileged become would run.
            ctx = multiprocessing.get_context('fork')
            queue = ctx.Queue()
            child = ctx.Process(target=_as_nobody, args=(queue, driver_blacklist.main, args, check_mode))
            child.start()
            result = queue.get(timeout=60)
            child.join()
        else:
            result = run_module(driver_blacklist.main, args, check_mode=check_mode)
        assert result['failed'] is True, result
        assert '%s: cannot be read: permission denied' % blacklist in result['msg']
        assert blacklist.stat().st_mode & 0o777 == 0
    finally:
        shutil.rmtree(base)


@pytest.mark.parametrize('check_mode', [False, True], ids=['real', 'check'])
def test_read_only_file_system_fails_naming_it(host, check_mode):
    etc = host.etc / 'modprobe.d'
    probe = subprocess.run(['mount', '-t', 'tmpfs', '-o', 'size=1m', 'none', str(etc)], capture_output=True, text=True,
                           check=False)
    if probe.returncode != 0:
        pytest.skip('cannot mount a read-only tmpfs here (%s): not root or no CAP_SYS_ADMIN' % probe.stderr.strip())
    try:
        (etc / 'pve-blacklist.conf').write_text('blacklist nvidiafb\n')
        subprocess.run(['mount', '-o', 'remount,ro', str(etc)], check=True)
        before = host.state()
        result = host.run('driver_blacklist', check_mode=check_mode)
        assert result['failed'] is True, result
        assert '%s cannot be written: %s is on a read-only file system' % (
            etc / 'vfio-passthrough-blacklist.conf', etc) in result['msg']
        assert host.state() == before and host.calls() == []
    finally:
        subprocess.run(['umount', str(etc)], check=True)


# -- class 5: bytes that are not UTF-8 ------------------------------------------------------

# The golden files end in .bin: their non-UTF-8 bytes are the test, and ansible-test's text
# checks (no-smart-quotes) skip .bin files instead of needing an ignore entry.
LATIN1 = FIXTURES / 'latin1'


@pytest.mark.parametrize('writer, fixture', [
    ('kernel_cmdline', 'grub.default'),
    ('vfio_modules', 'initramfs-modules'),
    ('driver_blacklist', 'blacklist.conf'),
])
@pytest.mark.parametrize('check_mode', [False, True], ids=['real', 'check'])
def test_latin1_bytes_survive_and_results_are_utf8(host, writer, fixture, check_mode):
    edited = host.etc / EDITED[writer]
    golden = (LATIN1 / (fixture + '.bin')).read_bytes()
    edited.write_bytes(golden)
    result = host.run(writer, check_mode=check_mode, diff=True)
    assert result['changed'] is True and not result.get('failed'), result
    assert_valid_utf8(result)
    shown = result['diff'][0]['before'] if writer != 'vfio_modules' else [
        d for d in result['diff'] if d['before_header'] == str(edited)][0]['before']
    assert '\\xe' in shown  # the Latin-1 byte is shown, escaped, not dropped
    after = edited.read_bytes()
    if check_mode:
        assert after == golden
        return
    # Every Latin-1 line is still there, byte for byte.
    for line in golden.splitlines(keepends=True):
        if b'\xe9' in line or b'\xe0' in line or b'\xf4' in line:
            assert line in after


def test_a_message_quoting_a_latin1_line_is_utf8(host):
    path = host.etc / 'modprobe.d/vfio-passthrough-blacklist.conf'
    path.write_bytes(b'# BEGIN vfio.passthrough.driver_blacklist caf\xe9\nblacklist nouveau\n')
    result = host.run('driver_blacklist', drivers=['radeon'])
    assert result['failed'] is True
    assert_valid_utf8(result)
    assert path.read_bytes() == b'# BEGIN vfio.passthrough.driver_blacklist caf\xe9\nblacklist nouveau\n'


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=300).filter(lambda b: b'vfio.passthrough' not in b))
def test_property_any_bytes_outside_the_block_survive(host, data):
    path = host.etc / 'modprobe.d/blacklist.conf'
    path.write_bytes(data)
    result = host.run('driver_blacklist', path=str(path), diff=True, update_initramfs=False)
    assert_valid_utf8(result)
    after = path.read_bytes()
    prefix = data if not data or data.endswith(b'\n') else data + b'\n'
    assert after.startswith(prefix)
    host.run('driver_blacklist', path=str(path), state='absent', update_initramfs=False)
    assert path.read_bytes() == prefix if data else not path.exists()


# -- class 9: one lock per host, scope, ownership ------------------------------------------

def _edit_at_barrier(barrier, args, queue):
    real_commit = _transaction.Transaction.commit

    def commit_after_both_read(self, *a, **kw):
        try:
            barrier.wait(timeout=2)  # both runs have read the file, unless one waits for the lock
        except Exception:  # noqa: BLE001 - a broken barrier just means the other run is locked out
            pass
        return real_commit(self, *a, **kw)

    _transaction.Transaction.commit = commit_after_both_read
    queue.put(run_module(kernel_cmdline.main, args))


@pytest.mark.parametrize('locked', [True, False], ids=['locked', 'lock-disabled'])
def test_two_concurrent_runs_lose_no_edit(host, monkeypatch, locked):
    cmdline = host.etc / 'kernel/cmdline'
    cmdline.write_text('root=/dev/sda1 ro quiet\n')
    if not locked:
        # Proves the test can fail: without the lock one edit is lost.
        monkeypatch.setattr(_transaction.Transaction, '__enter__', lambda self: self)
    ctx = multiprocessing.get_context('fork')
    barrier, queue = ctx.Barrier(2), ctx.Queue()
    runs = [ctx.Process(target=_edit_at_barrier, args=(barrier, host.args(
        'kernel_cmdline', bootloader='systemd-boot', present=[arg]), queue)) for arg in ('iommu=pt', 'intel_iommu=on')]
    for run in runs:
        run.start()
    results = [queue.get(timeout=60) for _run in runs]
    for run in runs:
        run.join()
    assert all(r['changed'] for r in results)
    words = cmdline.read_text().split()
    if locked:
        assert 'iommu=pt' in words and 'intel_iommu=on' in words
    else:
        assert ('iommu=pt' in words) != ('intel_iommu=on' in words)


def test_a_run_waits_for_the_lock_another_holds(host, monkeypatch):
    import fcntl
    host.lock.parent.mkdir()
    monkeypatch.setattr(_transaction, 'LOCK_WAIT', 0.3)
    with open(host.lock, 'w') as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        before = host.state()
        result = host.run('driver_blacklist')
    assert result['failed'] is True
    assert 'another vfio.passthrough run holds %s' % host.lock in result['msg']
    assert host.state() == before
    assert host.run('driver_blacklist')['changed'] is True


@pytest.mark.parametrize('block, drivers, kept', [
    (['blacklist nouveau', 'blacklist radeon', 'install radeon /bin/false'], ['nouveau'],
     ['blacklist radeon', 'install radeon /bin/false']),
    (['blacklist nouveau', 'blacklist radeon', 'install radeon /bin/false'], ['radeon'], ['blacklist nouveau']),
    (['blacklist nouveau'], ['radeon'], ['blacklist nouveau']),
    (['blacklist nouveau', 'blacklist radeon'], ['nouveau', 'radeon'], None),
])
@pytest.mark.parametrize('shared', [False, True], ids=['owned', 'shared'])
def test_absent_removes_only_the_named_drivers(host, block, drivers, kept, shared):
    path = host.etc / 'modprobe.d/vfio-passthrough-blacklist.conf'
    admin = '# the administrator\'s line\nblacklist nvidiafb\n'
    if shared:
        body = admin + '# BEGIN vfio.passthrough.driver_blacklist\n' + ''.join(x + '\n' for x in block) + \
            '# END vfio.passthrough.driver_blacklist\n'
    else:
        body = '# Managed by Ansible (vfio.passthrough.driver_blacklist): manual edits will be overwritten\n' + \
            ''.join(x + '\n' for x in block)
    path.write_text(body)
    result = host.run('driver_blacklist', drivers=drivers, state='absent')
    assert not result.get('failed'), result
    text = path.read_text() if path.exists() else None
    if kept is None:
        assert text == (admin if shared else None)
        return
    lines = text.splitlines()
    for line in block:
        assert (line in lines) == (line in kept)
    if shared:
        assert text.startswith(admin)


@pytest.mark.parametrize('first, second', [('vfio_modules', 'driver_blacklist'), ('driver_blacklist', 'vfio_modules')])
def test_two_modules_on_one_file_refuse_instead_of_undoing_each_other(host, first, second):
    same = str(host.etc / 'modprobe.d/shared-by-mistake.conf')
    option = {'vfio_modules': 'modprobe_file', 'driver_blacklist': 'path'}
    assert host.run(first, **{option[first]: same})['changed'] is True
    written = Path(same).read_bytes()
    result = host.run(second, **{option[second]: same})
    assert result['failed'] is True
    assert '%s is managed by vfio.passthrough.%s' % (same, first) in result['msg']
    assert Path(same).read_bytes() == written
    assert host.run(first, **{option[first]: same})['changed'] is False


def test_an_owned_file_with_another_modules_block_is_refused(host):
    path = host.etc / 'modprobe.d/vfio-passthrough.conf'
    path.write_text('# Managed by Ansible (vfio.passthrough.vfio_modules): manual edits will be overwritten\n'
                    '# BEGIN vfio.passthrough.driver_blacklist\nblacklist nouveau\n# END vfio.passthrough.driver_blacklist\n')
    before = host.state()
    result = host.run('vfio_modules')
    assert result['failed'] is True
    assert 'also holds a block of vfio.passthrough.driver_blacklist' in result['msg']
    assert host.state() == before
