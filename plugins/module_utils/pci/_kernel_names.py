# -*- coding: utf-8 -*-
# Copyright: contributors to vfio.passthrough
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Kernel names are bytes: one decoding for every reader, one lossless text form for results.

The kernel takes nearly any byte in a network interface name (``dev_valid_name``:
1 to 15 bytes, none of them NUL, ``/``, ``:`` or whitespace, and not ``.`` or
``..``), and block device names and mount sources are bytes too. The same name
reaches us as a directory entry (``sys/class/net``, ``brif/``, ``lower_*``), as
file text (``proc/net/route``, ``bonding/slaves``, ``proc/mounts``) and as
command output (``ip -o addr``). Each is decoded by ``decode_name`` alone, so
the name is the same string wherever it was read, whatever its bytes; that
string keeps undecodable bytes as surrogates (``surrogateescape``) and
``encode_name`` gives the bytes back.

A lone surrogate is not valid UTF-8, and the controller rejects a module
result holding one. Results and messages therefore show a name with
``show_name``: each byte that is not part of a printable UTF-8 character is
written ``\\xNN`` (two lowercase hex digits) and a backslash is written ``\\\\``;
every other character stands for itself. The form is lossless: ``unshow_name``
gives the name back.
"""

from __future__ import annotations

import re

__all__ = ['decode_name', 'encode_name', 'show_name', 'unshow_name', 'valid_interface_name', 'name_lines',
           'name_fields', 'strip_blanks']

IFNAMSIZ = 16   # include/uapi/linux/if.h: 15 bytes and the NUL
# The kernel's isspace() (lib/ctype.c) includes 0xA0, Latin-1's no-break space.
_KERNEL_SPACE = frozenset(b' \t\n\v\f\r\xa0')
_SHOWN = re.compile(r'\\(?:x([0-9a-f]{2})|(\\))')
# The separators kernel files put between names: ASCII blanks only. Python's split() and splitlines()
# also cut at \x1c-\x1f, \x85 and U+2028, which a name may hold.
_BLANKS = ' \t\n\v\f\r'
_FIELD_SEPARATOR = re.compile('[%s]+' % _BLANKS)


def decode_name(raw):
    """The text of a kernel name or name-bearing file, read from ``raw`` bytes: UTF-8, other bytes kept."""
    return raw.decode('utf-8', 'surrogateescape')


def encode_name(name):
    """The bytes of a name ``decode_name`` gave."""
    return name.encode('utf-8', 'surrogateescape')


def show_name(name):
    """``name`` as valid, printable UTF-8 text, losslessly (see the module docstring)."""
    # Nearly every name shows as itself: a surrogate (an undecodable byte) is never printable.
    if name.isprintable() and '\\' not in name:
        return name
    out = []
    for char in name:
        if char == '\\':
            out.append('\\\\')
        elif char.isprintable():
            out.append(char)
        else:
            try:
                raw = encode_name(char)
            except UnicodeEncodeError:   # a surrogate no bytes decoded to: show its code units
                raw = char.encode('utf-8', 'surrogatepass')
            out.extend('\\x%02x' % byte for byte in raw)
    return ''.join(out)


def unshow_name(text):
    """The name ``show_name`` showed as ``text``."""
    raw = bytearray()
    position = 0
    for match in _SHOWN.finditer(text):
        raw += encode_name(text[position:match.start()])
        raw += b'\\' if match.group(2) else bytes([int(match.group(1), 16)])
        position = match.end()
    raw += encode_name(text[position:])
    return decode_name(bytes(raw))


def strip_blanks(text):
    """``text`` without the ASCII blanks around it (``str.strip`` would also take a name's ``\\x1c``)."""
    return text.strip(_BLANKS)


def name_lines(text):
    """The lines of a file that carries names, cut at newlines only."""
    return (text or '').split('\n')


def name_fields(line):
    """The blank-separated fields of one such line (``str.split`` with the kernel's blanks)."""
    line = strip_blanks(line)
    return _FIELD_SEPARATOR.split(line) if line else []


def valid_interface_name(raw):
    """Whether the kernel would take ``raw`` (bytes) as a network interface name (net/core/dev.c)."""
    if not raw or len(raw) >= IFNAMSIZ or raw in (b'.', b'..'):
        return False
    return not any(byte in (0, ord('/'), ord(':')) or byte in _KERNEL_SPACE for byte in raw)
