# -*- coding: utf-8 -*-
# Copyright: contributors to vfio.passthrough
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Reading files as text (any bytes survive, via surrogateescape), diffs with file headers, and
results shown as valid UTF-8.

Writing is not here: every module writes through ``_transaction.Transaction``, the one write path
(a temp file beside the target, ``module.atomic_move``, undo on failure).
"""

from __future__ import annotations

import glob
import json
import os

__all__ = [
    'FileError', 'read_bytes', 'read_text', 'write_problem', 'display', 'utf8_result', 'utf8_results',
    'file_diff', 'modified_after', 'initramfs_lag', 'MTIME_MARGIN_NS',
]


class FileError(Exception):
    """A path that cannot be read or written as a plain file; ``str()`` names it and says why."""

    def __init__(self, path, reason):
        super().__init__('%s: %s' % (path, reason))
        self.path = path
        self.reason = reason


def _first_non_directory(path):
    """The first component of ``path`` that exists but is not a directory, or None."""
    parts = os.path.abspath(path).split(os.sep)
    for end in range(2, len(parts)):
        prefix = os.sep.join(parts[:end])
        if os.path.exists(prefix) and not os.path.isdir(prefix):
            return prefix
    return None


def read_bytes(path):
    """Return the file's bytes, or None when it does not exist.

    Raises FileError naming ``path`` and the reason when it is a directory,
    lies below a regular file, cannot be read, or is a dangling symlink (a
    write through it would create a file somewhere else).
    """
    try:
        with open(path, 'rb') as handle:
            return handle.read()
    except FileNotFoundError:
        if os.path.islink(path):
            raise FileError(path, 'is a symlink to %s, which does not exist' % os.readlink(path))
        return None
    except IsADirectoryError:
        raise FileError(path, 'is a directory, not a file')
    except NotADirectoryError:
        raise FileError(path, '%s is a file, not a directory' % (_first_non_directory(path) or 'a parent'))
    except PermissionError:
        raise FileError(path, 'cannot be read: permission denied')
    except OSError as exc:
        raise FileError(path, 'cannot be read: %s' % (exc.strerror or exc))


def read_text(path):
    """Return the file's text, or None when it does not exist (FileError as ``read_bytes``).

    Decoding is strict UTF-8 with surrogateescape, so bytes we do not
    understand still round-trip unchanged when the text is written back.
    """
    data = read_bytes(path)
    return None if data is None else data.decode('utf-8', 'surrogateescape')


def write_problem(path):
    """Why ``path`` cannot be replaced, created or removed by a rename in its directory; None if it can.

    A probe that writes nothing, so check mode predicts what a real run meets.
    A symlink is judged by its target, where the write goes.
    """
    target = os.path.realpath(path)
    if os.path.isdir(target):
        return 'is a directory, not a file'
    directory = os.path.dirname(target)
    blocker = _first_non_directory(target)
    if blocker is not None:
        return 'cannot be written: %s is a file, not a directory' % blocker
    if not os.path.isdir(directory):
        return 'cannot be written: directory %s does not exist' % directory
    try:
        flags = os.statvfs(directory).f_flag
    except OSError as exc:
        return 'cannot be written: %s' % (exc.strerror or exc)
    if flags & os.ST_RDONLY:
        return 'cannot be written: %s is on a read-only file system' % directory
    if not os.access(directory, os.W_OK | os.X_OK):
        return 'cannot be written: permission denied in %s' % directory
    return None


def display(text):
    """``text`` as valid UTF-8 for a module result: undecodable bytes shown as ``\\xNN``.

    The file keeps its bytes; only what the controller shows changes (a lone
    surrogate from surrogateescape makes the controller reject the whole result).
    """
    if not isinstance(text, str):
        return text
    return text.encode('utf-8', 'surrogateescape').decode('utf-8', 'backslashreplace')


def utf8_result(value):
    """``value`` (a module result: dicts, lists, strings) with every string made ``display``-safe."""
    # Nearly every result is valid UTF-8 already: one pass of the C JSON encoder
    # proves it (a lone surrogate fails the encode) at a fraction of the cost of
    # the walk below over tens of thousands of strings. The walk changes nothing
    # else a JSON result shows (a tuple becomes a list, as JSON makes it anyway).
    try:
        json.dumps(value, ensure_ascii=False, check_circular=False).encode('utf-8')
    except (TypeError, ValueError, UnicodeEncodeError, RecursionError):
        return _utf8_walk(value)
    return value


def utf8_results(module):
    """Make every result ``module`` reports valid UTF-8 (file bytes shown as ``\\xNN``).

    Wraps exit_json and fail_json once, so no message that quotes a line of
    a Latin-1 file can make the controller reject the result after a write.
    """
    if getattr(module, '_vfio_utf8', False):
        return
    exit_json, fail_json = module.exit_json, module.fail_json
    module.exit_json = lambda **kwargs: exit_json(**utf8_result(kwargs))
    module.fail_json = lambda msg, **kwargs: fail_json(msg=display(msg), **utf8_result(kwargs))
    module._vfio_utf8 = True


def _utf8_walk(value):
    if isinstance(value, str):
        return display(value)
    if isinstance(value, dict):
        return {display(key): _utf8_walk(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_utf8_walk(item) for item in value]
    return value


def file_diff(path, before, after):
    """A diff dict as Ansible's callback renders it; None stands for a missing file."""
    return {
        'before_header': path if before is not None else '%s (absent)' % path,
        'after_header': path if after is not None else '%s (absent)' % path,
        'before': display(before) if before is not None else '',
        'after': display(after) if after is not None else '',
    }


# Linux 6.13+ (Proxmox VE 9.2 boots 7.0) stamps files with multigrain timestamps: a file whose times were
# just read gets a fine-grained mtime, the next one written a coarse one that can be up to a jiffy (10 ms at
# HZ=100) earlier. Seen here in a Debian 13 root on 6.18: /etc/default/grub moved into place 0.67 ms "after"
# the grub.cfg update-grub wrote next. A generated file counts as behind its input only past that margin,
# or every converged run would regenerate it again.
MTIME_MARGIN_NS = 20 * 1000 * 1000


def modified_after(path, reference_ns):
    """Whether ``path`` was modified after a file whose mtime is ``reference_ns``, by more than the clock's grain."""
    return os.stat(path).st_mtime_ns > reference_ns + MTIME_MARGIN_NS


def initramfs_lag(paths, images_glob):
    """How the initramfs images compare with the files that go into them.

    Returns dict(stale, newer, images, present): ``newer`` are the files in
    ``paths`` modified after the oldest image (a rebuild is owed, also when the
    run that wrote them died before rebuilding); ``present`` are the ``paths``
    that exist, a dangling symlink too, in their given order. Without any image
    (a container, a chroot before its first kernel) nothing is owed.
    """
    # A dangling link (an image removed by hand, its link left) is no image: it has no time to compare.
    images = sorted(image for image in glob.glob(images_glob) if os.path.exists(image))
    present = [path for path in paths if os.path.lexists(path)]
    newer = []
    if images:
        oldest = min(os.stat(image).st_mtime_ns for image in images)
        newer = [path for path in present if os.path.exists(path) and modified_after(path, oldest)]
    return {'stale': bool(newer), 'newer': newer, 'images': images, 'present': present}
