# -*- coding: utf-8 -*-
# Copyright: contributors to vfio.passthrough
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Judge, on the host, whether a backup bundle's entries can be put back: all of them, or none.

The controller (plugin_utils/_backup.py) has already checked the bundle against its manifest;
what only the host can tell is judged here, before the first write: the kind of what each path
names now, every parent directory, the owners and groups, and that each file's bytes arrived
intact. :func:`restore_problems` names every problem at once, so one run shows them all.
"""

from __future__ import annotations

import base64
import binascii
import grp
import hashlib
import os
import posixpath
import pwd
import re
import stat

__all__ = ['MODE', 'path_problem', 'restore_problems', 'entry_bytes']

# A saved file's mode as the manifest records it (ansible.builtin.stat's 'mode').
MODE = re.compile(r'\A0[0-7]{3,4}\Z')

_KINDS = ((stat.S_ISDIR, 'a directory'), (stat.S_ISFIFO, 'a FIFO'), (stat.S_ISSOCK, 'a socket'),
          (stat.S_ISCHR, 'a character device'), (stat.S_ISBLK, 'a block device'))


def path_problem(path):
    """Why ``path`` is not an absolute, normal-form path of a file (None if it is); one rule for bundle and host."""
    if not isinstance(path, str) or '\0' in path or not path.startswith('/') or path == '/':
        return 'path %r is not an absolute path of a file' % (path,)
    # normpath folds '//', '/./' and '..': a path it changes could name another file than it reads.
    # (It keeps a leading '//', which POSIX leaves to the implementation.)
    if posixpath.normpath(path) != path or '//' in path or '/../' in path + '/':
        return 'path %r is not in normal form (no .., //, ./ or trailing /)' % path
    return None


def _kind(mode):
    for test, name in _KINDS:
        if test(mode):
            return name
    return 'not a regular file'


def _parent_problem(path):
    """The first parent of ``path`` that is missing, a symlink or no directory, said as a reason."""
    parts = path.split('/')[1:-1]
    current = ''
    for part in parts:
        current += '/' + part
        try:
            info = os.lstat(current)
        except FileNotFoundError:
            return 'its directory %s does not exist' % current
        except OSError as exc:
            return 'its directory %s cannot be read: %s' % (current, exc.strerror or exc)
        if stat.S_ISLNK(info.st_mode):
            # Written through, the file would land wherever the link points today, not where it was saved.
            return 'its directory %s is a symlink to %s, not the directory the file was saved from' % (
                current, os.readlink(current))
        if not stat.S_ISDIR(info.st_mode):
            return '%s is %s, not a directory' % (current, _kind(info.st_mode))
    return None


def _link_problem(path, state):
    """Why the symlink at ``path`` cannot be written through (or removed) by restore; None if it can."""
    target = os.readlink(path)
    if state == 'absent':
        return ('is a symlink to %s: the bundle says no file was there, and restore removes only a file, '
                'never a link or what it points at' % target)
    real = os.path.realpath(path)
    try:
        info = os.stat(real)
    except OSError:
        return 'is a symlink to %s, which does not exist: a write through it would create a file elsewhere' % target
    if not stat.S_ISREG(info.st_mode):
        return 'is a symlink to %s, which is %s' % (target, _kind(info.st_mode))
    # Backup read through the link, so writing back through it is symmetric, as long as the link
    # stays beside the file: one that leaves the directory could have been pointed at any file since.
    if posixpath.dirname(real) != posixpath.dirname(path):
        return 'is a symlink to %s, out of %s: restore never follows a symlink out of the directory' % (
            target, posixpath.dirname(path))
    return None


def entry_bytes(entry):
    """The saved file's bytes from ``entry['content']`` (base64); ValueError when they are not."""
    try:
        return base64.b64decode(entry.get('content') or '', validate=True)
    except (binascii.Error, TypeError, ValueError) as exc:
        raise ValueError('its content is not base64: %s' % exc)


def _saved_problems(entry):
    problems = []
    try:
        data = entry_bytes(entry)
    except ValueError as exc:
        return [str(exc)]
    if hashlib.sha256(data).hexdigest() != entry.get('sha256'):
        problems.append('its content does not match its sha256 %s' % entry.get('sha256'))
    mode = entry.get('mode')
    if not isinstance(mode, str) or not MODE.match(mode):
        problems.append('mode %r is not an octal mode like 0644' % (mode,))
    for field, lookup in (('owner', pwd.getpwnam), ('group', grp.getgrnam)):
        value = entry.get(field)
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            continue  # saved as a number because it had no name then: a number needs no entry
        if not isinstance(value, str) or not value:
            problems.append('%s %r names no %s' % (field, value, field))
            continue
        try:
            lookup(value)
        except KeyError:
            problems.append('%s %s does not exist on this host' % (field, value))
    return problems


def restore_problems(entries):
    """Every reason an entry of ``entries`` cannot be restored on this host, each naming its path.

    ``entries``: the manifest's entries (path, state file or absent), a saved one with
    ``content`` (base64), sha256, mode, owner and group. An empty list means every entry
    can be put back.
    """
    problems = []
    for entry in entries:
        path, state = entry.get('path'), entry.get('state')
        reasons = []
        bad_path = path_problem(path)
        if bad_path:
            problems.append(bad_path)
            continue
        if state not in ('file', 'absent'):
            problems.append('%s: state %r is neither file nor absent' % (path, state))
            continue
        parent = _parent_problem(path)
        if parent:
            reasons.append(parent)
        else:
            try:
                info = os.lstat(path)
            except FileNotFoundError:
                info = None
            except OSError as exc:
                reasons.append('cannot be read: %s' % (exc.strerror or exc))
                info = None
            if info is None:
                pass
            elif stat.S_ISLNK(info.st_mode):
                link = _link_problem(path, state)
                if link:
                    reasons.append(link)
            elif stat.S_ISDIR(info.st_mode):
                reasons.append('is a directory on this host: restore never deletes or replaces a directory')
            elif not stat.S_ISREG(info.st_mode):
                reasons.append('is %s on this host, not a regular file' % _kind(info.st_mode))
        if state == 'file':
            reasons.extend(_saved_problems(entry))
        problems.extend('%s: %s' % (path, reason) for reason in reasons)
    return problems
