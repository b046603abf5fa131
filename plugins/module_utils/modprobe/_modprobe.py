# -*- coding: utf-8 -*-
# Copyright: contributors to vfio.passthrough
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Text rules for modprobe.d, modules-load.d and initramfs-tools module lists.

Pure functions, no I/O. Two kinds of file:

* An *owned* file starts with ``header(owner)`` and is rendered whole; it is
  deleted when nothing is left to put in it.
* A *shared* file belongs to the administrator (``/etc/initramfs-tools/modules``,
  ``/etc/modules``, an existing file without our header). We touch only one
  block, from ``# BEGIN vfio.passthrough.<owner>`` to ``# END vfio.passthrough.<owner>``;
  every byte outside it is kept.

Why a block and not a trailing ``# vfio.passthrough`` comment on each line:
neither consumer of these files strips trailing comments. initramfs-tools
passes every word after the module name to ``modprobe`` as module parameters,
and systemd-modules-load takes the whole line as the module name, so a
marker comment would break the very line it marks.
"""

from __future__ import annotations

import collections
import re

from ansible_collections.vfio.passthrough.plugins.module_utils.pci._pci import PCI_ID, normalise_module

__all__ = [
    'Directive', 'header', 'check_module_names', 'check_pci_ids',
    'parse_modprobe', 'modprobe_keys', 'modules_load_keys', 'dead_module_lines', 'initramfs_modules_keys',
    'render_owned', 'is_owned', 'MODPROBE_DIRS', 'conf_read_order', 'vfio_ids_settings', 'competing_vfio_ids',
    'block_markers', 'outside_block', 'set_block', 'plan_file',
]

# The kernel's MODULE_NAME_LEN is 64 - sizeof(unsigned long), NUL included.
_MAX_MODULE_NAME = 55
_MODULE_RE = re.compile(r'[A-Za-z0-9_-]+\Z')

Directive = collections.namedtuple('Directive', 'kind module args lineno')


def header(owner):
    """The first line of a file the collection owns, written by module ``owner``."""
    return '# Managed by Ansible (vfio.passthrough.%s): manual edits will be overwritten' % owner


def check_module_names(names, what='module name'):
    """Validate and normalise kernel module names; drop repeats, keep order.

    Raises ValueError naming the first bad value.
    """
    result = []
    for name in names:
        if not isinstance(name, str) or not _MODULE_RE.match(name):
            raise ValueError('invalid %s %r: only letters, digits, "_" and "-" are allowed' % (what, name))
        if len(name) > _MAX_MODULE_NAME:
            raise ValueError('invalid %s %r: longer than the kernel limit of %d characters'
                             % (what, name, _MAX_MODULE_NAME))
        norm = normalise_module(name)
        if norm not in result:
            result.append(norm)
    return result


def check_pci_ids(ids):
    """Validate ``vvvv:dddd`` PCI vendor:device IDs; lowercase them, drop repeats, keep order."""
    result = []
    for pci_id in ids:
        if not isinstance(pci_id, str) or not PCI_ID.match(pci_id.lower()):
            raise ValueError('invalid PCI ID %r: expected vendor:device as two 4-digit hex numbers, '
                             'for example 10de:1b80' % (pci_id,))
        low = pci_id.lower()
        if low not in result:
            result.append(low)
    return result


def _lines(text):
    """Split on newline only, keeping it, so that ''.join() gives the text back exactly."""
    parts = text.split('\n')
    lines = [part + '\n' for part in parts[:-1]]
    if parts[-1]:
        lines.append(parts[-1])
    return lines


def _logical_lines(text):
    """Join continuation lines the way kmod does: a trailing backslash glues on the next line.

    kmod joins before it looks for ``#``, so a comment ending in a backslash
    swallows the next line too; we mirror that.
    """
    buf = None
    start = 0
    for number, line in enumerate(_lines(text), 1):
        body = line[:-1] if line.endswith('\n') else line
        if buf is None:
            buf, start = '', number
        if body.endswith('\\'):
            buf += body[:-1]
            continue
        yield start, buf + body
        buf = None
    if buf is not None:
        yield start, buf


def parse_modprobe(text):
    """Parse modprobe.d text into Directives, skipping blanks and comments.

    ``module`` is normalised (``-`` -> ``_``) except for ``alias``, whose first
    word is a wildcard pattern. ``args`` are the remaining words as written.
    """
    result = []
    for lineno, line in _logical_lines(text):
        words = line.split()
        if not words or words[0].startswith('#'):
            continue
        kind = words[0]
        module = words[1] if len(words) > 1 else ''
        if kind != 'alias':
            module = normalise_module(module)
        result.append(Directive(kind, module, tuple(words[2:]), lineno))
    return result


def _directive_key(directive):
    """What makes two directives the same, ignoring spacing and trailing comments."""
    args = []
    for word in directive.args:
        if word.startswith('#'):
            break
        args.append(word)
    if directive.kind == 'blacklist':
        # kmod reads only the module name of a blacklist line.
        args = []
    elif directive.kind == 'softdep':
        args = [word if word.endswith(':') else normalise_module(word) for word in args]
    return (directive.kind, directive.module, tuple(args))


def modprobe_keys(text):
    """The set of directive keys present in modprobe.d ``text``."""
    return {_directive_key(d) for d in parse_modprobe(text)}


def modules_load_keys(text):
    """The set of module names systemd-modules-load loads from ``text`` (modules-load.d, /etc/modules).

    systemd strips a line's surrounding whitespace, skips it when it is empty
    or starts with ``#`` or ``;``, and takes the WHOLE rest as the module name:
    ``vfio_pci   # GPU`` asks for a module of that name, which does not exist,
    so it loads nothing and does not count.
    """
    keys = set()
    for line in _lines(text):
        name = line.strip(' \t\r\n')
        if name and name[0] not in '#;' and _MODULE_RE.match(name):
            keys.add(normalise_module(name))
    return keys


def dead_module_lines(text):
    """[(line number, line)] of modules-load.d ``text`` that systemd-modules-load cannot load.

    A line holding more than one word (a trailing comment, module parameters)
    is taken whole as one module name that no module has.
    """
    result = []
    for number, line in enumerate(_lines(text), 1):
        name = line.strip(' \t\r\n')
        if name and name[0] not in '#;' and not _MODULE_RE.match(name):
            result.append((number, name))
    return result


def initramfs_modules_keys(text):
    """The set of module names initramfs-tools loads from ``/etc/initramfs-tools/modules`` text.

    Its boot script runs ``modprobe $line``: the first word is the module and
    the rest are parameters (the kernel ignores ones it does not know, so
    ``vfio_pci   # GPU`` loads vfio_pci). Lines whose first word starts with
    ``#`` are skipped; a ``;`` line makes modprobe fail.
    """
    keys = set()
    for line in _lines(text):
        words = line.split()
        if words and not words[0].startswith(('#', ';')):
            keys.add(normalise_module(words[0]))
    return keys


def render_owned(owner, lines):
    """An owned file: header, then one line each, every line newline-terminated."""
    return ''.join(line + '\n' for line in [header(owner)] + list(lines))


def is_owned(text, owner):
    """True when ``text`` was rendered by ``render_owned`` for this owner."""
    first = text.split('\n', 1)[0]
    return first == header(owner)


def block_markers(owner):
    """The BEGIN and END lines (without newline) of ``owner``'s block in a shared file."""
    return ('# BEGIN vfio.passthrough.%s: lines up to END are managed by Ansible' % owner,
            '# END vfio.passthrough.%s' % owner)


def _is_marker(line, word, owner):
    return re.match(r'# %s vfio\.passthrough\.%s(?:[:\s]|\Z)' % (word, re.escape(owner)), line) is not None


def _find_blocks(lines, owner, path):
    """Return ``[(begin_index, end_index)]`` of complete blocks; raise on a dangling marker."""
    blocks = []
    begin = None
    for index, line in enumerate(lines):
        if _is_marker(line, 'BEGIN', owner):
            if begin is not None:
                raise ValueError('%s: line %d opens a vfio.passthrough.%s block inside another one '
                                 '(line %d); fix the markers by hand' % (path, index + 1, owner, begin + 1))
            begin = index
        elif _is_marker(line, 'END', owner):
            if begin is None:
                raise ValueError('%s: line %d closes a vfio.passthrough.%s block that was never opened; '
                                 'fix the markers by hand' % (path, index + 1, owner))
            blocks.append((begin, index))
            begin = None
    if begin is not None:
        raise ValueError('%s: line %d opens a vfio.passthrough.%s block with no END marker; '
                         'fix the markers by hand' % (path, begin + 1, owner))
    return blocks


def outside_block(text, owner, path='<text>'):
    """``text`` with every block of ``owner`` cut out: what the administrator wrote."""
    lines = _lines(text)
    blocks = _find_blocks(lines, owner, path)
    keep = [line for index, line in enumerate(lines)
            if not any(begin <= index <= end for begin, end in blocks)]
    return ''.join(keep)


def set_block(text, owner, lines, path='<text>'):
    """Make ``owner``'s block in shared ``text`` hold exactly ``lines`` (none: no block).

    The block stays where it was (the first one, if an edit left several); a
    new one goes at the end. A final line without a newline gets one before
    a new block, the only way to start the block on a line of its own.
    """
    old = _lines(text)
    blocks = _find_blocks(old, owner, path)
    begin_line, end_line = block_markers(owner)
    block = [begin_line + '\n'] + [line + '\n' for line in lines] + [end_line + '\n'] if lines else []
    if blocks:
        at = blocks[0][0]
        kept = [line for index, line in enumerate(old)
                if not any(begin <= index <= end for begin, end in blocks)]
        return ''.join(kept[:at] + block + kept[at:])
    if not block:
        return text
    prefix = text if not text or text.endswith('\n') else text + '\n'
    return prefix + ''.join(block)


def plan_file(current, owner, lines, keys, shared_only=False, path='<text>'):
    """The text a file should hold, or None for "no file".

    ``current``: the file's text now (None when missing). ``lines``: the
    directive lines wanted (empty for state=absent). ``keys``: ``modprobe_keys``
    or ``modules_load_keys``, used to skip lines the administrator already has
    outside our block. ``shared_only``: never take the file over, even when it
    does not exist yet (``/etc/initramfs-tools/modules``).
    Raises ValueError (naming ``path``) when the block markers are broken.
    """
    lines = list(lines)
    if current is None and not shared_only:
        return render_owned(owner, lines) if lines else None
    if current is not None and not shared_only and is_owned(current, owner):
        return render_owned(owner, lines) if lines else None
    text = current if current is not None else ''
    present = keys(outside_block(text, owner, path))
    missing = [line for line in lines if not (keys(line + '\n') & present)]
    new = set_block(text, owner, missing, path)
    if new == '' and (current is None or current != ''):
        # Nothing but our block was ever in it: leave no empty file behind.
        return None
    return new


# kmod reads *.conf from these directories; a file name found in an earlier one
# hides the same name in the later ones (Debian's /lib is /usr/lib, which this rule covers too).
MODPROBE_DIRS = ('/etc/modprobe.d', '/run/modprobe.d', '/usr/local/lib/modprobe.d',
                 '/usr/lib/modprobe.d', '/lib/modprobe.d')


def conf_read_order(listings):
    """The paths modprobe reads, in its order, from ``[(directory, [file names])]`` in precedence order.

    Only names ending in ``.conf`` count; the first directory holding a name
    wins it; the winners are read sorted by file name, whatever their directory.
    """
    chosen = {}
    for directory, names in listings:
        for name in names:
            if name.endswith('.conf') and name not in chosen:
                chosen[name] = directory.rstrip('/') + '/' + name
    return [chosen[name] for name in sorted(chosen)]


def vfio_ids_settings(text):
    """[(line number, [ids], line)] for each ``options vfio-pci ... ids=...`` line of modprobe.d ``text``.

    ``vfio-pci`` and ``vfio_pci`` are one module; a line's last ``ids=`` is
    the one the kernel keeps.
    """
    result = []
    logical = dict(_logical_lines(text))
    for directive in parse_modprobe(text):
        if directive.kind != 'options' or directive.module != 'vfio_pci':
            continue
        ids = None
        for word in directive.args:
            if word.startswith('#'):
                break
            if word.startswith('ids='):
                ids = [i for i in word[4:].strip('"\'').lower().split(',') if i]
        if ids is not None:
            result.append((directive.lineno, ids, logical[directive.lineno].strip()))
    return result


def competing_vfio_ids(sources, ids):
    """Why other modprobe files' ``ids=`` compete with the ``ids`` this run writes; empty when none do.

    ``sources`` holds (path, text) of the files modprobe reads besides ours
    (the administrator's part of a shared file included). modprobe joins all
    ``options vfio-pci`` lines in file-name order and the kernel keeps the
    last ``ids=``, so any other list than exactly ours overrides ours or is
    overridden by it.
    """
    wanted = {i.lower() for i in ids}
    problems = []
    for path, text in sources:
        for lineno, found, line in vfio_ids_settings(text or ''):
            if set(found) != wanted:
                problems.append('%s line %d sets %r, which competes with the ids=%s this run writes '
                                '(modprobe joins the options lines of all files in file-name order and the '
                                'last ids= wins): remove that line or make it list exactly these IDs'
                                % (path, lineno, line, ','.join(ids)))
    return problems
