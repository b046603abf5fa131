# -*- coding: utf-8 -*-
# Copyright: contributors to vfio.passthrough
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A newc ("070701") cpio archive, the format the kernel unpacks as an initramfs.

Written here rather than by the ``cpio`` tool, which a Proxmox host need not
have: the layout is the kernel's own (Documentation/driver-api/early-userspace/
buffer-format.rst, init/initramfs.c). Each entry is a 110-byte ASCII header of
13 eight-digit hex fields, the name with its NUL, padding to 4 bytes, the data,
padding to 4 bytes; the archive ends with the entry ``TRAILER!!!``.

Pure functions: entries in, bytes out.
"""

from __future__ import annotations

import stat

__all__ = ['DIRECTORY', 'FILE', 'SYMLINK', 'CHARDEV', 'TRAILER', 'newc_entry', 'newc_archive']

DIRECTORY, FILE, SYMLINK, CHARDEV = 'dir', 'file', 'symlink', 'char'
TRAILER = 'TRAILER!!!'
_MAGIC = b'070701'
_TYPES = {DIRECTORY: stat.S_IFDIR, FILE: stat.S_IFREG, SYMLINK: stat.S_IFLNK, CHARDEV: stat.S_IFCHR}


def _pad(length):
    return b'\0' * (-length % 4)


def newc_entry(ino, name, kind, mode, data=b''):
    """One entry's bytes: ``kind`` DIRECTORY, FILE, SYMLINK (``data`` is the link target) or CHARDEV
    (``data`` is ``(major, minor)``, the node carries no bytes), ``mode`` the
    permission bits; the trailer has no kind and mode 0, as GNU cpio writes it. Owner root, mtime 0, so
    one input always gives one archive."""
    if kind not in _TYPES and name != TRAILER:
        raise ValueError('%r is no cpio entry kind (one of %s)' % (kind, ', '.join(sorted(_TYPES))))
    rdev = (0, 0)
    if kind == CHARDEV:
        rdev, data = data, b''
    if isinstance(data, str):
        data = data.encode('utf-8')
    encoded = name.encode('utf-8') + b'\0'
    nlink = 2 if kind == DIRECTORY else 1
    file_mode = _TYPES[kind] | (mode & 0o7777) if kind in _TYPES else 0
    # ino mode uid gid nlink mtime filesize devmajor devminor rdevmajor rdevminor namesize check
    fields = (ino, file_mode, 0, 0, nlink, 0, len(data), 0, 0, rdev[0], rdev[1], len(encoded), 0)
    header = _MAGIC + b''.join(b'%08X' % value for value in fields)
    head = header + encoded
    return head + _pad(len(head)) + data + _pad(len(data))


def newc_archive(entries):
    """The archive of ``entries``, each ``(name, kind, mode, data)`` with a relative name (``bin/busybox``).

    A directory must come before what it holds, as the kernel creates them in
    order; a name twice is refused, since the kernel would silently keep the last.
    """
    seen = set()
    chunks = []
    for ino, (name, kind, mode, data) in enumerate(entries, start=1):
        if not name or name.startswith('/') or name == TRAILER or '\0' in name:
            raise ValueError('%r cannot name an initramfs entry: a relative path is needed' % (name,))
        if name in seen:
            raise ValueError('%s is in the initramfs twice' % name)
        parent = name.rpartition('/')[0]
        if parent and parent not in seen:
            raise ValueError('%s comes before its directory %s' % (name, parent))
        seen.add(name)
        chunks.append(newc_entry(ino, name, kind, mode, data))
    chunks.append(newc_entry(0, TRAILER, None, 0))
    return b''.join(chunks)
