# -*- coding: utf-8 -*-
# Copyright: contributors to vfio.passthrough
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Which module of this collection manages which part of a file, read from its markers.

The markers are those of ``_modprobe``: an owned file's header line and a shared
file's BEGIN/END block. Two modules pointed at one file would undo each other on
every run (the owner rewrites the file whole, dropping the other's block), so
``check_claim`` refuses before anything is written. Pure functions, no I/O.
"""

from __future__ import annotations

import re

from ansible_collections.vfio.passthrough.plugins.module_utils.modprobe._modprobe import block_markers, header

__all__ = ['owners', 'check_claim', 'managed_lines']

_NAME = r'([A-Za-z0-9_]+)'
_PLACEHOLDER = 'OWNERPLACEHOLDER'
_HEADER_RE = re.compile(r'\A' + re.escape(header(_PLACEHOLDER)).replace(_PLACEHOLDER, _NAME) + r'$', re.M)
_BEGIN_RE = re.compile(
    '^' + re.escape(block_markers(_PLACEHOLDER)[0].split(':')[0]).replace(_PLACEHOLDER, _NAME) + r'(?:[:\s]|$)', re.M)


def owners(text):
    """(owner of the whole file or None, [owners of blocks]) named by the markers in ``text``."""
    if not text:
        return None, []
    match = _HEADER_RE.match(text)
    blocks = []
    for found in _BEGIN_RE.finditer(text):
        if found.group(1) not in blocks:
            blocks.append(found.group(1))
    return (match.group(1) if match else None), blocks


def check_claim(text, owner, path):
    """Raise ValueError when ``text`` at ``path`` is managed by another module of this collection.

    Another module's owned file must not get our block (its next run drops it),
    and our owned file must not carry another's block (our run drops it).
    Blocks of several modules in an administrator's shared file are fine.
    """
    whole, blocks = owners(text)
    if whole is not None and whole != owner:
        raise ValueError('%s is managed by vfio.passthrough.%s (line 1); vfio.passthrough.%s would undo it on '
                         'every run: point them at different files' % (path, whole, owner))
    others = [name for name in blocks if name != owner]
    if whole == owner and others:
        raise ValueError('%s also holds a block of vfio.passthrough.%s; vfio.passthrough.%s rewrites the file whole '
                         'and would drop it: point them at different files' % (path, others[0], owner))


def managed_lines(text, owner):
    """The lines ``owner`` manages in ``text``: after its header, or inside its blocks."""
    if not text:
        return []
    lines = text.split('\n')
    whole, _blocks = owners(text)
    if whole == owner:
        return [line for line in lines[1:] if line.strip()]
    begin, end = block_markers(owner)
    begin_word = begin.split(':')[0]
    result, inside = [], False
    for line in lines:
        if line == end or line.startswith(end + ' '):
            inside = False
        elif line.startswith(begin_word) and (line == begin_word or line[len(begin_word)] in ': \t'):
            inside = True
        elif inside and line.strip():
            result.append(line)
    return result
