# -*- coding: utf-8 -*-
# Copyright: contributors to vfio.passthrough
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""One transaction for every module that writes: lock, read, plan, write, regenerate, or undo.

    with Transaction(module) as tx:          # exclusive host lock from here ...
        before = tx.read(path)               # FileError -> fail_json naming path and reason
        tx.change(path, before, after)       # refuses an unwritable path now, check mode too
        tx.finish(result, [UPDATE_GRUB])     # ... to the end of the regeneration, then exit_json

``finish`` (``finish_initramfs`` for the files that go into the initramfs) is how
every writing module ends: it adds the keys every writer reports (changed,
files_changed, diff, what ran) to the module's own, commits and exits.

``commit`` resolves every command before the first write (a missing one fails
with nothing written), saves each file's bytes, mode, owner and symlink, writes,
runs the commands in order, and when a write or a command fails puts every file
back as it was (created files removed) before failing with the same keys in
every module: msg, rc, stdout, stderr, cmd, command, files_changed=[], restored.

The lock is one file per host, not the edited files: a write replaces a file by
rename, so a lock on the file itself would lock an inode nobody reads again.
"""

from __future__ import annotations

import errno
import fcntl
import os
import tempfile
import time

from ansible_collections.vfio.passthrough.plugins.module_utils.files._files import (
    FileError, file_diff, read_text, utf8_results, write_problem,
)
from ansible_collections.vfio.passthrough.plugins.module_utils.files._ownership import check_claim
from ansible_collections.vfio.passthrough.plugins.module_utils.pci._pci import C_LOCALE
from ansible_collections.vfio.passthrough.plugins.module_utils.boot._regeneration import UPDATE_INITRAMFS

__all__ = ['LOCK_FILE', 'LOCK_WAIT', 'TRANSACTION_ARGS', 'Transaction', 'utf8_results']

LOCK_FILE = '/run/lock/vfio-passthrough.lock'
# update-initramfs for several kernels takes minutes on a slow host; another run waits that long.
LOCK_WAIT = 900
TRANSACTION_ARGS = {'lock_file': {'type': 'path', 'default': LOCK_FILE}}


class _WriteFailed(Exception):
    """module.atomic_move called fail_json; raised instead so the transaction can undo first."""


def _chown(path, uid, gid):
    try:
        os.chown(path, uid, gid)
    except PermissionError:
        if os.geteuid() == 0:
            raise
        # Not root: only our own ids are ours to give, and a file we write already has them.


def _attrs_differ(path, attrs):
    """Whether the file ``path`` (through a link) exists with another (mode, uid, gid) than ``attrs``."""
    try:
        info = os.stat(path)
    except OSError:
        return False
    return (info.st_mode & 0o7777, info.st_uid, info.st_gid) != tuple(attrs)


class _Saved:
    """How a path was before the write: its symlink (if any), and the target's bytes, mode, owner."""

    def __init__(self, path):
        self.path = path
        self.link = os.readlink(path) if os.path.islink(path) else None
        self.target = os.path.realpath(path)
        try:
            info = os.stat(self.target)
            with open(self.target, 'rb') as handle:
                self.data = handle.read()
            self.mode, self.uid, self.gid = info.st_mode & 0o7777, info.st_uid, info.st_gid
        except FileNotFoundError:
            self.data = None


class Transaction:
    """Context manager around one module run that writes files; see the module docstring."""

    def __init__(self, module, lock_file=None):
        self.module = module
        self.lock_file = lock_file or module.params.get('lock_file') or LOCK_FILE
        self.changes = []
        self._fd = None
        utf8_results(module)

    # -- the lock ---------------------------------------------------------
    def __enter__(self):
        try:
            directory = os.path.dirname(self.lock_file)
            if not os.path.isdir(directory):
                os.makedirs(directory, mode=0o755, exist_ok=True)
            self._fd = os.open(self.lock_file, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            if self.module.check_mode:
                # Nothing is written in check mode, so a host we may not lock on is still readable.
                self._fd = None
                return self
            self.module.fail_json(msg='cannot open the lock file %s: %s' % (self.lock_file, exc.strerror or exc))
        deadline = time.monotonic() + LOCK_WAIT
        while True:
            try:
                fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return self
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
            if time.monotonic() > deadline:
                self.module.fail_json(msg='another vfio.passthrough run holds %s for more than %d s; '
                                          'nothing was written' % (self.lock_file, LOCK_WAIT))
            time.sleep(0.05)

    def __exit__(self, exc_type, exc, _traceback):
        if self._fd is not None:
            os.close(self._fd)  # closing the last descriptor drops the flock
            self._fd = None
        if exc_type is not None and issubclass(exc_type, FileError):
            # Raised by a read, which comes before every write: say which path and why, no traceback.
            self.module.fail_json(msg='%s; nothing was written' % exc, path=exc.path)
        return False

    # -- reading and planning --------------------------------------------
    def read(self, path, owner=None):
        """The text of ``path`` (None when missing); a path that is no plain file fails the module.

        With ``owner`` (the module's marker name), a file another module of this
        collection manages is refused (``_ownership.check_claim``).
        """
        try:
            text = read_text(path)
            if owner is not None:
                check_claim(text, owner, path)
        except FileError as exc:
            self.module.fail_json(msg='%s; nothing was written' % exc, path=path)
        except ValueError as exc:
            self.module.fail_json(msg='%s; nothing was written' % exc, path=path)
        return text

    def change(self, path, before, after, mode=0o644, attrs=None):
        """Plan ``path`` to hold ``after`` (None: no file). Returns whether it changes.

        ``mode`` is a new file's; ``attrs`` (mode, uid, gid), when given, is what the file
        must have afterwards, existing or not, and a difference there alone is a change.
        Whether the path can be written is probed here, before any write and
        in check mode alike, so both fail the same way naming the path.
        """
        if after == before and not (after is not None and attrs is not None and _attrs_differ(path, attrs)):
            return False
        if any(change[0] == path for change in self.changes):
            raise ValueError('%s planned twice in one transaction' % path)
        problem = write_problem(path)
        if problem is not None:
            self.module.fail_json(msg='%s %s; nothing was written' % (path, problem), path=path)
        self.changes.append((path, before, after, mode if attrs is None else attrs))
        return True

    @property
    def files_changed(self):
        return [change[0] for change in self.changes]

    def diff(self):
        return [file_diff(path, before, after) for path, before, after, _mode in self.changes]

    # -- ending the module run --------------------------------------------
    def finish(self, result, commands=(), backup=False, warnings=(), ran='command'):
        """Report, commit and exit: the end of every module that writes (exit_json does not return).

        ``result`` holds the module's own keys. Added here: ``changed`` (true when a
        file changes, or when ``result`` says so for what the module does besides
        files), ``files_changed``, ``diff`` in diff mode, what ran as ``ran`` names
        it: ``'command'`` (the first argv, None when none ran), ``'commands'``
        (every argv, in order) or None (nothing), and with ``backup`` the first
        ``backup_file``. ``warnings`` are given only after a successful commit: a
        failure puts back the files they speak of. Check mode reports the same
        and commits nothing; a failure fails with commit's keys over ``result``.
        """
        self.module.exit_json(**self._close(result, commands, backup, warnings, ran))

    def finish_initramfs(self, result, update):
        """``finish`` for a module whose files go into the initramfs.

        Runs ``update-initramfs -u -k all`` after a file change when ``update``, and
        adds ``initramfs_updated`` (whether it ran) and ``reboot_required`` (whether a
        file changed: neither the running kernel nor the initramfs reflects it yet).
        """
        result.update(initramfs_updated=False, reboot_required=bool(self.changes))
        commands = [UPDATE_INITRAMFS] if self.changes and update else []
        closed = self._close(result, commands, False, (), 'command')
        closed['initramfs_updated'] = closed['command'] is not None
        self.module.exit_json(**closed)

    def _close(self, result, commands, backup, warnings, ran):
        if ran not in ('command', 'commands', None):
            raise ValueError('ran must be command, commands or None, not %r' % (ran,))
        result.update(changed=bool(self.changes) or bool(result.get('changed')), files_changed=self.files_changed)
        if ran is not None:
            # Present in a failure's result too, as every writer documents it.
            result[ran] = None if ran == 'command' else []
        if self.module._diff:
            result['diff'] = self.diff()
        done = self.commit(commands, backup=backup, result=result)
        if ran == 'command' and done['commands']:
            result['command'] = done['commands'][0]
        elif ran == 'commands':
            result['commands'] = done['commands']
        if done['backup_files']:
            result['backup_file'] = next(iter(done['backup_files'].values()))
        for warning in warnings:
            self.module.warn(warning)
        return result

    # -- writing and regenerating ----------------------------------------
    def commit(self, commands=(), backup=False, result=None):
        """Write the planned changes, then run ``commands`` (bare argv lists) in order.

        Returns dict(commands=[resolved argv run], backup_files={path: backup}).
        In check mode, or with nothing planned and nothing to run, does nothing.
        On failure every file is put back, then the module fails with the
        shared keys, plus ``result`` (the module's own keys).
        """
        done = {'commands': [], 'backup_files': {}}
        if self.module.check_mode or not (self.changes or commands):
            return done
        # Before the first write: a missing command must leave the host untouched.
        resolved = []
        for argv in commands:
            binary = self.module.get_bin_path(argv[0])
            if binary is None:
                self._fail('%s not found on PATH; nothing was written' % argv[0], [], result)
            resolved.append([binary] + list(argv[1:]))
        saved = [_Saved(path) for path, _b, _a, _m in self.changes]
        written = []
        try:
            for (path, _before, after, mode), before_state in zip(self.changes, saved):
                written.append(before_state)
                backup_file = self._write(path, after, mode, backup and before_state.data is not None)
                if backup_file:
                    done['backup_files'][path] = backup_file
        except (_WriteFailed, OSError) as exc:
            restored = self._undo(written)
            self._fail('writing %s failed: %s; %s' % (written[-1].path, exc, self._restored_words(restored)),
                       restored, result)
        for argv in resolved:
            rc, out, err = self.module.run_command(argv, environ_update=C_LOCALE)
            if rc != 0:
                restored = self._undo(written)
                self._fail('%s failed (rc=%d); %s' % (' '.join(argv), rc, self._restored_words(restored)),
                           restored, result, rc=rc, stdout=out, stderr=err, cmd=argv, command=argv)
            done['commands'].append(argv)
        return done

    def _write(self, path, text, mode, backup):
        """Write ``text`` (None: remove) through any symlink; atomic_move's own failure raises."""
        module = self.module
        fail_json = module.fail_json

        def raise_instead(msg, **_kwargs):
            raise _WriteFailed(msg)

        module.fail_json = raise_instead
        try:
            target = os.path.realpath(path)
            if text is None:
                # An owned file through a link: the target goes, and the link with it, so
                # neither a file at the target nor a dangling link stays behind.
                if os.path.lexists(target):
                    os.unlink(target)
                if os.path.islink(path):
                    os.unlink(path)
                return None
            existed = os.path.exists(target)
            backup_file = module.backup_local(target) if backup else None
            self._replace(target, text.encode('utf-8', 'surrogateescape'), keep=existed)
            if isinstance(mode, tuple):
                # Owner first: chown clears the setuid and setgid bits chmod sets.
                _chown(target, mode[1], mode[2])
                os.chmod(target, mode[0])
            elif not existed and mode is not None:
                os.chmod(target, mode)
            return backup_file
        finally:
            module.fail_json = fail_json

    def _replace(self, target, data, keep):
        """Temp file beside ``target`` (same file system), then module.atomic_move over it."""
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(target), prefix='.%s.' % os.path.basename(target), suffix='.tmp')
        try:
            with os.fdopen(fd, 'wb') as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            self.module.atomic_move(tmp, target, unsafe_writes=False, keep_dest_attrs=keep)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)

    def _undo(self, written):
        """Put back every saved path, last written first; return the paths restored."""
        fail_json = self.module.fail_json

        def raise_instead(msg, **_kwargs):
            raise _WriteFailed(msg)

        self.module.fail_json = raise_instead
        restored, broken = [], []
        try:
            for saved in reversed(written):
                try:
                    self._put_back(saved)
                    restored.append(saved.path)
                except (_WriteFailed, OSError) as exc:
                    broken.append('%s (%s)' % (saved.path, exc))
        finally:
            self.module.fail_json = fail_json
        if broken:
            fail_json(msg='restoring after a failure also failed for %s; restored %s. Check these files by hand.'
                          % (', '.join(broken), ', '.join(restored) or 'nothing'), restored=restored)
        return restored

    def _put_back(self, saved):
        if saved.data is None:
            if os.path.lexists(saved.target) and not os.path.islink(saved.target):
                os.unlink(saved.target)
            return
        if saved.link is not None and not (os.path.islink(saved.path) and os.readlink(saved.path) == saved.link):
            if os.path.lexists(saved.path):
                os.unlink(saved.path)
            os.symlink(saved.link, saved.path)
        self._replace(saved.target, saved.data, keep=False)
        _chown(saved.target, saved.uid, saved.gid)
        os.chmod(saved.target, saved.mode)

    @staticmethod
    def _restored_words(restored):
        if not restored:
            return 'nothing had been written'
        return 'restored %s to their previous content' % ', '.join(reversed(restored))

    def _fail(self, msg, restored, result, **keys):
        report = dict(result or {})
        report.update(keys)
        report.update(files_changed=[], restored=list(reversed(restored)))
        report.setdefault('command', None)
        self.module.fail_json(msg=msg, **report)
