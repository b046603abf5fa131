# -*- coding: utf-8 -*-
# Copyright: contributors to vfio.passthrough
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Kernel command-line arguments as tokens: validate, split, edit, check.

Edits keep every byte they do not have to change: an argument list is held as
(leading whitespace, token) pairs, so removing or replacing one token leaves
the spacing, order and spelling of all others as the administrator wrote them.

Arguments are a set, except for one ordered group (the hugepage arguments:
``hugepages=N`` counts pages of the ``hugepagesz=`` before it), which is
written adjacent and in order, in place of every token bearing one of its names.
"""

from __future__ import annotations

import re

from ansible_collections.vfio.passthrough.plugins.module_utils.pci._pci import normalise_module
from ansible_collections.vfio.passthrough.plugins.module_utils.tuning._tuning import (
    TuningError, foreign_reservations, parse_size, same_hugepage_tokens,
)

__all__ = [
    'CmdlineError', 'DEFAULT_MERGE', 'ArgRequest', 'validate_request', 'split_args',
    'arg_name', 'arg_value', 'same_name', 'edit_args', 'unmet_args', 'strip_boot_args',
    'kernel_tokens', 'kernel_args', 'last_value', 'effective_items', 'cmdline_vfio_ids',
    'check_balanced_quotes', 'untouched_args', 'INIT_SEPARATOR', 'proxmox_cmdline_problem', 'remaining_absent',
]

# Everything a kernel argument for IOMMU/VFIO work needs, and nothing a shell
# gives meaning to: /etc/default/grub is sourced as root by grub-mkconfig.
# Always fullmatch: '$' would let a trailing newline through.
_SAFE_ARG = re.compile(r'[A-Za-z0-9_.,:/=+@%-]+')
_PARAM_NAME = re.compile(r'[A-Za-z0-9_-]+')
_CONTROL = re.compile(r'[\x00-\x1f\x7f]')

# The kernel's parse_args() stops at the first bare '--': what follows goes to init.
INIT_SEPARATOR = '--'

DEFAULT_MERGE = ('intel_iommu', 'pcie_acs_override')


class CmdlineError(ValueError):
    """A request that must not be applied; the message names the bad value."""


def arg_name(token):
    return token.split('=', 1)[0]


def arg_value(token):
    """The value after the first '=', or None for a bare flag."""
    return token.split('=', 1)[1] if '=' in token else None


def same_name(token, name):
    return normalise_module(arg_name(token)) == normalise_module(name)


def _items(value):
    return [item for item in (value or '').split(',') if item]


class ArgRequest:
    """A validated present/absent request; build it with validate_request().

    ``group`` is the ordered group; with ``insert_group`` false its names are
    only cleared (another GRUB variable than the one the group goes into).
    """

    def __init__(self, present, absent, merge, group=(), insert_group=True):
        self.present = list(present)
        self.absent = list(absent)
        self.merge = frozenset(normalise_module(n) for n in merge)
        self.group = list(group)
        self.insert_group = insert_group
        self.group_names = frozenset(normalise_module(arg_name(t)) for t in self.group)

    def only_absent(self):
        """The part of the request for a line that receives no present argument."""
        return ArgRequest([], self.absent, self.merge, self.group, insert_group=False)

    def is_merge(self, name):
        return normalise_module(name) in self.merge


def _check_arg(arg, option):
    if not isinstance(arg, str) or not arg:
        raise CmdlineError('%s: empty kernel argument %r' % (option, arg))
    if _CONTROL.search(arg):
        raise CmdlineError('%s: kernel argument %r contains a character that is a control character '
                           '(newline, tab, ...); a command line is one line of printable text' % (option, arg))
    if arg == INIT_SEPARATOR:
        raise CmdlineError('%s: %r is not a kernel argument: everything after it goes to init' % (option, arg))
    if not _SAFE_ARG.fullmatch(arg):
        raise CmdlineError(
            '%s: kernel argument %r contains a character outside [A-Za-z0-9_.,:/=+@%%-]; '
            'quotes, $, backticks, ;, whitespace and newlines are refused because '
            '/etc/default/grub is a shell script run as root' % (option, arg))
    if arg.startswith('='):
        raise CmdlineError('%s: kernel argument %r has an empty name' % (option, arg))


def _check_group(group, present, absent):
    names = [normalise_module(arg_name(t)) for t in group]
    if len(set(names)) != len(names):
        raise CmdlineError('group: %s names an argument twice' % ' '.join(group))
    for option, args in (('present', present), ('absent', absent)):
        for arg in args:
            if normalise_module(arg_name(arg)) in names:
                raise CmdlineError('%s: %r names an argument of the ordered group %s' % (option, arg, ' '.join(group)))
    size = [arg_value(t) for t in group if normalise_module(arg_name(t)) == 'hugepagesz']
    try:
        if size:
            parse_size(size[0], 'group: hugepagesz=%s' % size[0])
        foreign = foreign_reservations(group, parse_size(size[0])) if size else []
    except TuningError as exc:
        raise CmdlineError(str(exc))
    if foreign:
        raise CmdlineError('group: %s reserves pages of more than one size (%s)' % (' '.join(group), ', '.join(foreign)))


def validate_request(present, absent, merge=DEFAULT_MERGE, group=()):
    """Check every argument before anything is read or written; return an ArgRequest."""
    for option, args in (('present', present), ('absent', absent), ('group', group)):
        for arg in args:
            _check_arg(arg, option)
    for name in merge:
        if not isinstance(name, str) or not _PARAM_NAME.fullmatch(name):
            raise CmdlineError('merge: %r is not a kernel parameter name' % (name,))
    _check_group(group, present, absent)
    request = ArgRequest(present, absent, merge, group)

    seen = {}
    for arg in present:
        key = normalise_module(arg_name(arg))
        if key in seen:
            raise CmdlineError('present: %r and %r name the same argument' % (seen[key], arg))
        seen[key] = arg

    for gone in absent:
        key = normalise_module(arg_name(gone))
        wanted = seen.get(key)
        if wanted is None:
            continue
        gone_value = arg_value(gone)
        if gone_value is None:
            raise CmdlineError('absent: %r would remove %r, which is also in present' % (gone, wanted))
        if request.is_merge(key):
            clash = set(_items(gone_value)) & set(_items(arg_value(wanted)))
            if clash:
                raise CmdlineError('absent: %r removes %s, which present %r adds'
                                   % (gone, ','.join(sorted(clash)), wanted))
        elif arg_value(wanted) == gone_value:
            raise CmdlineError('%r is in both present and absent' % (gone,))
    return request


def _blank_at(text, i):
    """Length of the separator at ``i``: whitespace, or a shell line continuation
    (backslash-newline, which sh removes inside a double-quoted GRUB value)."""
    if text[i].isspace():
        return 1
    if text.startswith('\\\n', i):
        return 2
    return 0


def split_args(text):
    """Split like the kernel's next_arg(): whitespace separates, double quotes group.

    Returns (pairs, trailing) where pairs is a list of [leading_ws, token].
    """
    pairs = []
    i, n = 0, len(text)
    while True:
        start = i
        while i < n and _blank_at(text, i):
            i += _blank_at(text, i)
        if i >= n:
            return pairs, text[start:]
        lead = text[start:i]
        tok_start = i
        in_quote = False
        while i < n and (in_quote or not _blank_at(text, i)):
            if text[i] == '"':
                in_quote = not in_quote
            i += 1
        pairs.append([lead, text[tok_start:i]])


def check_balanced_quotes(text, where):
    """Refuse a command line with an odd number of double quotes.

    The kernel would read everything after the lone quote, including any
    argument appended to the line, as one quoted value.
    """
    if text.count('"') % 2:
        raise CmdlineError('%s: unbalanced double quote in %r: an argument appended to it would become part '
                           'of a quoted value; fix the quoting by hand first' % (where, text))


def _kernel_end(pairs):
    """Index of the first bare '--' (the start of init's arguments), else len(pairs)."""
    for index, (_lead, token) in enumerate(pairs):
        if token == INIT_SEPARATOR:
            return index
    return len(pairs)


def kernel_tokens(text):
    """The tokens the kernel itself parses: everything before the first bare '--'."""
    pairs, _trailing = split_args(text or '')
    return [token for _lead, token in pairs[:_kernel_end(pairs)]]


def kernel_args(text):
    """The kernel part of a command line as a list of (name, value-or-None), in order."""
    return [(arg_name(token), arg_value(token)) for token in kernel_tokens(text)]


def last_value(text, name):
    """The value the kernel keeps for ``name`` (its last occurrence), '' for a bare
    flag, None when the kernel part does not name it."""
    same = [token for token in kernel_tokens(text) if same_name(token, name)]
    if not same:
        return None
    value = arg_value(same[-1])
    return '' if value is None else value


def _exclusive_key(item):
    # on/off, sm_on/sm_off: the later of a pair undoes the earlier one, while
    # other items of a list-valued parameter accumulate (intel_iommu_setup()
    # runs for every occurrence and each item sets its own flag).
    for suffix in ('on', 'off'):
        if item == suffix:
            return ''
        if item.endswith('_' + suffix):
            return item[:-len(suffix) - 1]
    return None


def _effective(items):
    """The items in force after applying ``items`` in order (later on/off wins)."""
    kept = []
    for item in items:
        key = _exclusive_key(item)
        if key is not None:
            kept = [k for k in kept if _exclusive_key(k) != key]
        if item not in kept:
            kept.append(item)
    return kept


def effective_items(text, name):
    """The items of a list-valued parameter (intel_iommu) in force after every
    occurrence in the kernel part: ``intel_iommu=on intel_iommu=off`` is off."""
    return _effective([item for token in kernel_tokens(text) if same_name(token, name)
                       for item in _items(arg_value(token))])


def cmdline_vfio_ids(text):
    """The IDs ``vfio-pci.ids=`` on a command line hands to vfio-pci (its last
    occurrence, as for any module parameter), lowercased; None when absent."""
    value = last_value(text, 'vfio_pci.ids')
    if value is None:
        return None
    return [item.strip('"').lower() for item in _items(value.strip('"'))]


def untouched_args(line, request):
    """What of ``line`` a request must leave alone, as a list: the kernel-part tokens
    it does not name, the items of list-valued ones it neither names nor
    contradicts (an admin's igfx_off), and init's part after '--'."""
    names = {normalise_module(arg_name(arg)) for arg in request.present + request.absent} | request.group_names
    pairs, _trailing = split_args(line)
    end = _kernel_end(pairs)
    kept = [tok for _lead, tok in pairs[:end] if normalise_module(arg_name(tok)) not in names]
    for name in sorted(names):
        if request.is_merge(name):
            asked = {item for arg in request.present + request.absent
                     if normalise_module(arg_name(arg)) == name for item in _items(arg_value(arg))}
            exclusive = {_exclusive_key(item) for item in asked} - {None}
            kept += ['%s:%s' % (name, item) for item in effective_items(line, name)
                     if item not in asked and _exclusive_key(item) not in exclusive]
    return kept + [tok for _lead, tok in pairs[end:]]


def _render(pairs, trailing, separator=' '):
    out = []
    for index, (lead, token) in enumerate(pairs):
        if index and not lead:
            lead = separator
        out.append(lead + token)
    return ''.join(out) + trailing


def _drop(pairs, index):
    # The first remaining token inherits the removed token's leading text, so
    # a value never gains or loses a leading space because a token went away.
    lead = pairs[index][0]
    del pairs[index]
    if index == 0 and pairs:
        pairs[0][0] = lead


def _positions(pairs, name, with_value=False):
    """Indexes of the kernel-part tokens named ``name``."""
    return [i for i, (_lead, tok) in enumerate(pairs[:_kernel_end(pairs)])
            if same_name(tok, name) and (not with_value or arg_value(tok) is not None)]


def _append(pairs, token):
    # Before '--', so the kernel and not init receives it.
    pairs.insert(_kernel_end(pairs), ['', token])


def _edit_merge(pairs, name, add_items, remove_items):
    positions = _positions(pairs, name, with_value=True)
    if not positions:
        if add_items:
            _append(pairs, '%s=%s' % (name, ','.join(add_items)))
        return
    # An added 'on' takes out every 'off' (and sm_on every sm_off): the last one
    # would win otherwise.
    add_keys = {_exclusive_key(item) for item in add_items} - {None}
    remove = set(remove_items) | {item for i in positions for item in _items(arg_value(pairs[i][1]))
                                  if _exclusive_key(item) in add_keys and item not in add_items}
    have = [item for i in positions for item in _items(arg_value(pairs[i][1])) if item not in remove]
    missing = [item for item in add_items if item not in have and item not in remove_items]
    for count, index in enumerate(positions):
        token = pairs[index][1]
        items = _items(arg_value(token))
        kept = [item for item in items if item not in remove]
        if count == 0:
            kept += [item for item in missing if item not in kept]
        if kept != items:
            pairs[index][1] = '%s=%s' % (arg_name(token), ','.join(kept))
    for index in reversed(positions):
        if not _items(arg_value(pairs[index][1])):
            _drop(pairs, index)


def _group_positions(pairs, request):
    return [i for i, (_lead, tok) in enumerate(pairs[:_kernel_end(pairs)])
            if normalise_module(arg_name(tok)) in request.group_names]


def _refuse_foreign(pairs, request):
    """A line reserving hugepages of another size than the group's is refused, naming the tokens:
    replacing them would drop an administrator's pool, keeping them would change what the group means."""
    size = [arg_value(t) for t in request.group if normalise_module(arg_name(t)) == 'hugepagesz']
    if not size:
        return
    tokens = [tok for _lead, tok in pairs[:_kernel_end(pairs)]]
    try:
        foreign = foreign_reservations(tokens, parse_size(size[0]))
    except TuningError as exc:
        raise CmdlineError('the command line "%s" holds a hugepage argument the kernel cannot read: %s'
                           % (' '.join(tokens), exc))
    if foreign:
        raise CmdlineError('the command line "%s" holds %s, hugepages of another size than hugepagesz=%s: remove it '
                           '(pcie_passthrough_kernel_args_absent) or ask for that size'
                           % (' '.join(tokens), ' and '.join(foreign), size[0]))


def _edit_group(pairs, request):
    """Write the group adjacent and in order where its first token was (else at the end)."""
    if not request.group_names:
        return
    _refuse_foreign(pairs, request)
    positions = _group_positions(pairs, request)
    if not request.insert_group:
        for index in reversed(positions):
            _drop(pairs, index)
        return
    # Already right, and adjacent: not a byte moves (hugepages= per NUMA node with the asked total is right too).
    if same_hugepage_tokens([pairs[i][1] for i in positions], request.group) and \
            positions == list(range(positions[0], positions[0] + len(positions))):
        return
    if not positions:
        for token in request.group:
            _append(pairs, token)
        return
    first = positions[0]
    for index in reversed(positions[1:]):
        _drop(pairs, index)
    pairs[first][1] = request.group[0]
    for offset, token in enumerate(request.group[1:], 1):
        pairs.insert(first + offset, ['', token])


def edit_args(text, request):
    """Apply ``request`` to a command-line string; return the new string.

    Only the kernel part (before a bare '--') is edited; init's arguments after
    it stay as they are. Text that needs no change comes back identical, so
    callers can compare.
    """
    pairs, trailing = split_args(text)

    merge_names = {}
    for arg in request.present:
        if arg_value(arg) is not None and request.is_merge(arg_name(arg)):
            merge_names.setdefault(normalise_module(arg_name(arg)), [arg_name(arg), [], []])[1].extend(_items(arg_value(arg)))
    for arg in request.absent:
        if arg_value(arg) is not None and request.is_merge(arg_name(arg)):
            merge_names.setdefault(normalise_module(arg_name(arg)), [arg_name(arg), [], []])[2].extend(_items(arg_value(arg)))

    for gone in request.absent:
        name, value = arg_name(gone), arg_value(gone)
        if value is not None and request.is_merge(name):
            continue
        for index in reversed(_positions(pairs, name)):
            if value is None or arg_value(pairs[index][1]) == value:
                _drop(pairs, index)

    for _key, (name, add_items, remove_items) in merge_names.items():
        _edit_merge(pairs, name, add_items, remove_items)

    _edit_group(pairs, request)

    for arg in request.present:
        name, value = arg_name(arg), arg_value(arg)
        if value is None:
            if not any(arg_value(pairs[i][1]) is None for i in _positions(pairs, name)):
                _append(pairs, arg)
            continue
        if request.is_merge(name):
            continue
        positions = _positions(pairs, name)
        if not positions:
            _append(pairs, arg)
            continue
        first = positions[0]
        if arg_value(pairs[first][1]) != value:
            pairs[first][1] = arg
        for index in reversed(positions[1:]):
            _drop(pairs, index)

    return _render(pairs, trailing)


def _holds(tokens, text, request, arg, absent):
    """Whether the kernel tokens hold ``arg``: for an argument asked present, as the kernel would read
    it (the last occurrence wins, a merge list holds every item); for one asked absent, any trace of it."""
    name, value = arg_name(arg), arg_value(arg)
    same = [tok for tok in tokens if same_name(tok, name)]
    if value is None:
        return bool(same) if absent else any(arg_value(tok) is None for tok in same)
    if request.is_merge(name):
        asked, have = set(_items(value)), set(effective_items(text, name))
        return bool(asked & have) if absent else asked <= have
    if absent:
        return any(arg_value(tok) == value for tok in same)
    return bool(same) and arg_value(same[-1]) == value


def remaining_absent(text, request):
    """The arguments ``request`` asks absent that the kernel part of ``text`` still has, in request order."""
    tokens = kernel_tokens(text)
    return [arg for arg in request.absent if _holds(tokens, text, request, arg, absent=True)]


def unmet_args(text, request):
    """What a command line still lacks or still has: a list of human-readable strings.

    Only the kernel part counts: an argument after '--' goes to init.
    """
    tokens = kernel_tokens(text)
    unmet = ['missing %s' % arg for arg in request.present if not _holds(tokens, text, request, arg, absent=False)]
    unmet.extend('still has %s' % arg for arg in remaining_absent(text, request))
    if request.group and request.insert_group:
        # The same tokens in the same order mean the same pools, adjacent or not; the edit keeps the same set.
        have = [tok for tok in tokens if normalise_module(arg_name(tok)) in request.group_names]
        if not same_hugepage_tokens(have, request.group):
            unmet.append('missing %s' % ' '.join(request.group))
    return unmet


def strip_boot_args(text):
    """Drop what the boot loader adds itself (BOOT_IMAGE=, initrd=) from a /proc/cmdline."""
    pairs, _trailing = split_args(text)
    end = _kernel_end(pairs)
    kept = [tok for index, (_lead, tok) in enumerate(pairs)
            if index >= end or arg_name(tok) not in ('BOOT_IMAGE', 'initrd')]
    return ' '.join(kept)


def _shown_line(line):
    return repr(line[:200] + ('...' if len(line) > 200 else ''))


def proxmox_cmdline_problem(text, path='/etc/kernel/cmdline'):
    """Why proxmox-boot-tool would reject or misread ``text`` as /etc/kernel/cmdline; None when it reads it whole.

    Its kernel hook zz-proxmox-boot (proxmox-kernel-helper, src/proxmox-boot/zz-proxmox-boot, update_esps) does::

        CMDLINE=$(get_first_line /etc/kernel/cmdline)   # 'while IFS= read -r line ... break': line 1 only
        echo ${CMDLINE} | grep -q 'root=' || { warn "No root= parameter in /etc/kernel/cmdline found!"; exit 1; }

    and writes ``options  ${CMDLINE}`` into every systemd-boot loader entry. So only line 1 counts; it
    must carry ``root=``, and every byte of it reaches the entry, a carriage return too, while a NUL
    is dropped by the shell. The message names the line.
    """
    lines = text.split('\n')
    for number, line in enumerate(lines, 1):
        if '\0' in line:
            return ('%s line %d %s holds a NUL byte: the boot hook\'s shell drops it, so the kernel would get '
                    'other arguments than the file shows' % (path, number, _shown_line(line)))
    first = lines[0]
    later = [(number, line) for number, line in enumerate(lines[1:], 2) if line.strip()]
    if not first.strip():
        if later:
            return ('%s line 1 is blank, and proxmox-boot-tool reads only line 1: the arguments on line %d %s are '
                    'never read, and the boot hook refuses a first line without root=; put them on line 1'
                    % (path, later[0][0], _shown_line(later[0][1])))
        return ('%s is empty: the boot hook (zz-proxmox-boot) needs the whole command line, root= included, on its '
                'first line, or proxmox-boot-tool refresh fails' % path)
    if '\r' in first:
        return ('%s line 1 %s holds a carriage return (a CRLF line end?): the boot hook copies it into every boot '
                'entry as part of an argument; save the file with plain LF line ends' % (path, _shown_line(first)))
    control = _CONTROL.search(first.replace('\t', ' '))
    if control:
        return ('%s line 1 %s holds the control character %r, which the boot hook copies into every boot entry'
                % (path, _shown_line(first), control.group()))
    if later:
        return ('%s line %d %s is never read: proxmox-boot-tool reads only line 1 of %s; move its arguments onto '
                'line 1' % (path, later[0][0], _shown_line(later[0][1]), path))
    if not any(same_name(token, 'root') and arg_value(token) for token in kernel_tokens(first)):
        return ('%s line 1 %s has no root= argument (before any bare --): the boot hook refuses it ("No root= '
                'parameter in /etc/kernel/cmdline found!") and proxmox-boot-tool refresh fails'
                % (path, _shown_line(first)))
    return None
