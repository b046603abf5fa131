# -*- coding: utf-8 -*-
# Copyright: contributors to vfio.passthrough
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The collection's only file I/O: read a text file, write it atomically, diff it.

Every module edits files through here so that all of them share one behaviour:
a temp file beside the target (same filesystem, so the rename is atomic),
``module.atomic_move`` (keeps owner, mode and SELinux context of the old file),
an optional backup, and diffs with file headers.
"""

from __future__ import annotations

import glob
import os
import tempfile

__all__ = ['read_text', 'file_diff', 'atomic_write', 'restore', 'initramfs_lag']


def read_text(path):
    """Return the file's text, or None when it does not exist.

    Decoding is strict UTF-8 with surrogateescape, so bytes we do not
    understand still round-trip unchanged when the text is written back.
    """
    try:
        with open(path, 'rb') as handle:
            data = handle.read()
    except FileNotFoundError:
        return None
    return data.decode('utf-8', 'surrogateescape')


def file_diff(path, before, after):
    """A diff dict as Ansible's callback renders it; None stands for a missing file."""
    return {
        'before_header': path if before is not None else '%s (absent)' % path,
        'after_header': path if after is not None else '%s (absent)' % path,
        'before': before if before is not None else '',
        'after': after if after is not None else '',
    }


def atomic_write(module, path, text, mode=None, backup=False):
    """Replace ``path`` with ``text`` atomically; return the backup path or None.

    ``mode`` applies only to a file that did not exist: an existing file keeps
    its mode and owner, because an administrator may have chosen them. A
    symlink is followed and its target replaced; the link itself stays.
    """
    # Write through a symlink, not over it: os.rename onto the link would turn
    # e.g. Debian's /etc/modules-load.d/modules.conf -> ../modules into a plain file.
    path = os.path.realpath(path)
    existed = os.path.exists(path)
    backup_file = module.backup_local(path) if backup and existed else None
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=directory, prefix='.%s.' % os.path.basename(path), suffix='.tmp')
    try:
        with os.fdopen(fd, 'wb') as handle:
            handle.write(text.encode('utf-8', 'surrogateescape'))
            handle.flush()
            os.fsync(handle.fileno())
        module.atomic_move(tmp, path, unsafe_writes=False, keep_dest_attrs=existed)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    # atomic_move gives a new file the umask's mode; apply ours after it.
    if not existed and mode is not None:
        os.chmod(path, mode)
    return backup_file


def restore(module, path, previous):
    """Put ``path`` back as it was: the old text, or no file at all."""
    if previous is None:
        if os.path.exists(path):
            os.unlink(path)
        return
    atomic_write(module, path, previous)


def initramfs_lag(paths, images_glob):
    """How the initramfs images compare with the files that go into them.

    Returns dict(stale, newer, images, present): ``newer`` are the files in
    ``paths`` modified after the oldest image (a rebuild is owed, also when the
    run that wrote them died before rebuilding); ``present`` are the ``paths``
    that exist, a dangling symlink too, in their given order. Without any image
    (a container, a chroot before its first kernel) nothing is owed.
    """
    images = sorted(glob.glob(images_glob))
    present = [path for path in paths if os.path.lexists(path)]
    newer = []
    if images:
        oldest = min(os.path.getmtime(image) for image in images)
        newer = [path for path in present if os.path.exists(path) and os.path.getmtime(path) > oldest]
    return {'stale': bool(newer), 'newer': newer, 'images': images, 'present': present}
