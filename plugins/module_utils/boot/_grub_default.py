# -*- coding: utf-8 -*-
# Copyright: contributors to vfio.passthrough
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Edit GRUB_CMDLINE_* in /etc/default/grub without disturbing anything else.

/etc/default/grub is a shell script that grub-mkconfig sources, followed by
/etc/default/grub.d/*.cfg. We never execute it: a small scanner finds the
assignments and a small evaluator computes what grub-mkconfig would see,
expanding only plain ``$VAR`` / ``${VAR}`` references. Anything it cannot
evaluate (command substitution, backticks) is refused rather than guessed.
"""

from __future__ import annotations

import re

from ansible_collections.vfio.passthrough.plugins.module_utils.boot._cmdline import (
    CmdlineError, check_balanced_quotes, edit_args, unmet_args, untouched_args,
)

__all__ = ['GrubError', 'CMDLINE_VARIABLES', 'find_assignments', 'edit_grub_default', 'effective_cmdline',
           'judge_evaluation', 'check_evaluable']

CMDLINE_VARIABLES = ('GRUB_CMDLINE_LINUX', 'GRUB_CMDLINE_LINUX_DEFAULT')

_ASSIGN = re.compile(r'(?:export[ \t]+)?([A-Za-z_][A-Za-z0-9_]*)=')
_REF = re.compile(r'\$(?:\{([A-Za-z_][A-Za-z0-9_]*)\}|([A-Za-z_][A-Za-z0-9_]*))')


class GrubError(ValueError):
    """The file cannot be edited safely; the message names the file and line."""


class Assignment:
    __slots__ = ('name', 'start', 'end', 'line')

    def __init__(self, name, start, end, line):
        self.name, self.start, self.end, self.line = name, start, end, line


def _scan_word(text, pos):
    """End of the shell word starting at ``pos`` (quotes may span lines)."""
    n = len(text)
    while pos < n:
        char = text[pos]
        if char == '\\':
            pos += 2
        elif char == "'":
            close = text.find("'", pos + 1)
            if close < 0:
                raise GrubError('unterminated single quote')
            pos = close + 1
        elif char == '"':
            pos += 1
            while pos < n and text[pos] != '"':
                pos += 2 if text[pos] == '\\' else 1
            if pos >= n:
                raise GrubError('unterminated double quote')
            pos += 1
        elif char == '`':
            close = text.find('`', pos + 1)
            if close < 0:
                raise GrubError('unterminated backquote')
            pos = close + 1
        elif text.startswith('$(', pos):
            depth, pos = 1, pos + 2
            while pos < n and depth:
                depth += {'(': 1, ')': -1}.get(text[pos], 0)
                pos += 1
            if depth:
                raise GrubError('unterminated $(')
        elif char.isspace() or char in ';&|()':
            return pos
        else:
            pos += 1
    return pos


# Words after which the shell expects a command again, so an assignment may follow.
_COMMAND_KEYWORDS = frozenset(('then', 'else', 'elif', 'do', 'if', 'while', 'until', '!', '{', 'in'))


def find_assignments(text, names=None):
    """Every ``NAME=value`` at the start of a simple command, in order (comments skipped).

    Also after ``;``, ``&&``, ``||``, ``then``, ``do``... and several on one line
    (``A=1 B=2``). Whether the shell runs one (an ``if`` branch, an ``&&`` list)
    is not decided here: the module lets /bin/sh judge the edited files.
    """
    found = []
    pos, n = 0, len(text)
    command_start = True
    while pos < n:
        char = text[pos]
        if char in ' \t':
            pos += 1
        elif char in '\n;&|()':
            command_start = True
            pos += 1
        elif text.startswith('\\\n', pos):
            pos += 2
        elif char == '#' and (pos == 0 or text[pos - 1] in ' \t\n;&|()'):
            newline = text.find('\n', pos)
            pos = n if newline < 0 else newline
        else:
            line_no = text.count('\n', 0, pos) + 1
            match = _ASSIGN.match(text, pos) if command_start else None
            try:
                end = _scan_word(text, match.end() if match else pos)
            except GrubError as exc:
                raise GrubError('line %d: %s' % (line_no, exc))
            if match:
                if names is None or match.group(1) in names:
                    found.append(Assignment(match.group(1), match.end(), end, line_no))
            else:
                command_start = command_start and text[pos:end] in _COMMAND_KEYWORDS
            pos = max(end, pos + 1)
    return found


def _unquote_for_edit(raw, where):
    """(style, inner text) of a value we can edit in place."""
    if len(raw) >= 2 and raw[0] == raw[-1] == '"' and re.fullmatch(r'"(?:[^"\\]|\\.)*"', raw, re.S):
        return 'double', raw[1:-1]
    if len(raw) >= 2 and raw[0] == raw[-1] == "'" and "'" not in raw[1:-1]:
        return 'single', raw[1:-1]
    if not re.search(r'[\'"\\`$]', raw):
        return 'bare', raw
    raise GrubError('%s: value %s mixes quoting styles; edit it by hand into one quoted string' % (where, raw))


def _requote(style, inner):
    if style == 'bare' and not re.search(r'\s', inner):
        return inner
    if style == 'single':
        return "'%s'" % inner
    return '"%s"' % inner


def _evaluate(raw, env, where):
    """The value sh would assign for ``raw`` (a single shell word)."""
    out, pos, n = [], 0, len(raw)
    while pos < n:
        char = raw[pos]
        if char == "'":
            close = raw.index("'", pos + 1)
            out.append(raw[pos + 1:close])
            pos = close + 1
        elif char == '"':
            pos += 1
            while raw[pos] != '"':
                if raw[pos] == '\\' and raw[pos + 1] in '"\\$`\n':
                    if raw[pos + 1] != '\n':
                        out.append(raw[pos + 1])
                    pos += 2
                    continue
                pos = _expand_at(raw, pos, env, out, where)
            pos += 1
        elif char == '\\':
            out.append(raw[pos + 1:pos + 2])
            pos += 2
        else:
            pos = _expand_at(raw, pos, env, out, where)
    return ''.join(out)


def _expand_at(raw, pos, env, out, where):
    if raw[pos] == '`' or raw.startswith('$(', pos):
        raise GrubError('%s: command substitution in %s cannot be evaluated safely' % (where, raw))
    if raw[pos] == '$':
        match = _REF.match(raw, pos)
        if match is None:
            raise GrubError('%s: cannot evaluate %s' % (where, raw))
        out.append(env.get(match.group(1) or match.group(2), ''))
        return match.end()
    out.append(raw[pos])
    return pos + 1


def effective_cmdline(sources):
    """What grub-mkconfig puts on the default entry's linux line.

    ``sources`` is a list of (label, text): the default file, then its
    drop-ins in glob order. Returns (cmdline, {variable: [labels assigning it]}).
    """
    env, assigned = {}, {}
    for label, text in sources:
        for item in find_assignments(text):
            where = '%s line %d' % (label, item.line)
            try:
                value = _evaluate(text[item.start:item.end], env, where)
            except GrubError:
                if item.name in CMDLINE_VARIABLES:
                    raise
                continue
            env[item.name] = value
            assigned.setdefault(item.name, []).append(label)
    line = ' '.join(v for v in (env.get('GRUB_CMDLINE_LINUX', ''), env.get('GRUB_CMDLINE_LINUX_DEFAULT', '')) if v)
    return line, assigned


def _strict_env(known, tainted):
    """An env for _evaluate in which a variable these files do not set, or set from what cannot be
    evaluated (``tainted``: name -> where), is no empty string but an error."""
    class _Env(dict):
        def get(self, name, default=None):
            if name in tainted:
                raise GrubError('$%s takes its value from %s, which cannot be evaluated before it runs'
                                % (name, tainted[name]))
            if name not in self:
                raise GrubError('$%s is not set by these files, so the environment update-grub runs in decides it'
                                % name)
            return self[name]
    return _Env(known)


def check_evaluable(sources, request):
    """Refuse a GRUB_CMDLINE_* value the collection cannot evaluate, when ``request`` asks an argument absent.

    ``sources``: (label, text) of the default file, then its drop-ins in glob order, as grub-mkconfig
    sources them. /bin/sh computes the line from them in a clean environment, once; a command
    substitution, or a variable these files do not set (grub-mkconfig sets GRUB_DEVICE and more, root's
    environment the rest), can give update-grub another value, and an argument asked absent could come
    back in it unseen. Raises GrubError naming the file, line and the construct.
    """
    if not request.absent:
        return
    known, tainted = {}, {}
    for label, text in sources:
        for item in find_assignments(text):
            raw = text[item.start:item.end]
            where = '%s line %d' % (label, item.line)
            try:
                known[item.name] = _evaluate(raw, _strict_env(known, tainted), where)
                tainted.pop(item.name, None)
            except (ValueError, IndexError) as exc:  # GrubError is a ValueError
                known.pop(item.name, None)
                tainted[item.name] = '%s (%s=%s)' % (where, item.name, raw)
                if item.name in CMDLINE_VARIABLES:
                    raise GrubError('%s: %s=%s cannot be evaluated before it runs (%s): an argument asked absent (%s) '
                                    'could survive in what update-grub computes; write the value out or edit the '
                                    'file by hand' % (where, item.name, raw, str(exc).split(': ', 1)[-1]
                                                      if str(exc).startswith(where) else exc,
                                                      ' '.join(request.absent)))


def _only_absent(request):
    return request.only_absent()


def edit_grub_default(text, request, variable='GRUB_CMDLINE_LINUX_DEFAULT', label='/etc/default/grub', dropins=()):
    """Apply ``request`` to a default-file text.

    Present arguments go into the last assignment of ``variable`` (the one sh
    keeps); absent ones are removed from every assignment of both
    GRUB_CMDLINE_* variables, since the kernel sees both. Returns a dict with
    the new ``text``, ``before``/``after`` (the edited value) and the
    ``effective`` kernel line after ``dropins`` (a list of (label, text)).
    Raises GrubError when the result could not hold, naming the culprit.
    """
    if variable not in CMDLINE_VARIABLES:
        raise GrubError('grub_variable %r is not one of %s' % (variable, ', '.join(CMDLINE_VARIABLES)))
    assignments = find_assignments(text, CMDLINE_VARIABLES)
    target = [a for a in assignments if a.name == variable]
    edits = []
    for item in assignments:
        where = '%s line %d' % (label, item.line)
        raw = text[item.start:item.end]
        style, inner = _unquote_for_edit(raw, where)
        try:
            check_balanced_quotes(inner, '%s (%s)' % (where, _line_of(text, item.line)))
        except CmdlineError as exc:
            raise GrubError(str(exc))
        wanted = request if (target and item is target[-1]) else _only_absent(request)
        try:
            new_inner = edit_args(inner, wanted)
        except CmdlineError as exc:
            raise GrubError('%s: %s' % (where, exc))
        if new_inner != inner:
            edits.append((item.start, item.end, _requote(style, new_inner)))

    new_text = text
    for start, end, replacement in sorted(edits, reverse=True):
        new_text = new_text[:start] + replacement + new_text[end:]

    if target:
        before = _unquote_for_edit(text[target[-1].start:target[-1].end], label)[1]
        after = _unquote_for_edit(new_text[find_assignments(new_text, (variable,))[-1].start:
                                           find_assignments(new_text, (variable,))[-1].end], label)[1]
    else:
        before = None
        after = edit_args('', request)
        if after:
            sep = '' if not new_text or new_text.endswith('\n') else '\n'
            new_text = '%s%s%s="%s"\n' % (new_text, sep, variable, after)

    own_line, _assigned = effective_cmdline([(label, new_text)])
    own_unmet = unmet_args(own_line, request)
    if own_unmet:
        edited = target[-1].line if target else new_text.count('\n')
        raise GrubError('%s line %d: after editing, the kernel line would still be wrong (%s): an earlier '
                        'assignment, a reference in it or a bare -- before it (the rest goes to init) cannot '
                        'be edited safely' % (label, edited, '; '.join(own_unmet)))
    effective, assigned = effective_cmdline([(label, new_text)] + list(dropins))
    unmet = unmet_args(effective, request)
    if unmet:
        culprits = sorted({src for var in CMDLINE_VARIABLES for src in assigned.get(var, []) if src != label})
        raise GrubError('drop-in %s overrides %s: the kernel line would be "%s" (%s); fix or remove the drop-in'
                        % (', '.join(culprits) or '(unknown)', variable, effective, '; '.join(unmet)))
    line = target[-1].line if target else new_text.count('\n')
    return {'text': new_text, 'before': before, 'after': after, 'effective': effective, 'line': line}


def _line_of(text, number):
    lines = text.split('\n')
    return lines[number - 1] if 0 < number <= len(lines) else ''


_MENTION = re.compile(r'\bGRUB_CMDLINE_LINUX(?:_DEFAULT)?\b')


def _mentions(text, skip_line=None):
    """Line numbers that name a GRUB_CMDLINE_* variable outside a comment."""
    return [number for number, line in enumerate((text or '').split('\n'), 1)
            if number != skip_line and not line.lstrip().startswith('#') and _MENTION.search(line)]


def _joined(linux, default):
    return ' '.join(v for v in (linux, default) if v)


def _check_complete(evaluation, errors, what):
    if evaluation['syntax_error']:
        raise GrubError('%s: /bin/sh -n finds a syntax error%s, so grub-mkconfig would fail there: %s'
                        % (evaluation['syntax_error'], what, (errors or '').strip() or 'see sh -n'))
    if not evaluation['complete']:
        culprit = evaluation['stopped_in'] or '(before the first file)'
        raise GrubError('%s: sourcing it as grub-mkconfig does (set -e) ends the shell early%s, so update-grub '
                        'would fail: %s' % (culprit, what, (errors or '').strip() or 'no message'))


def _last_changer(files):
    """The file that set the final GRUB_CMDLINE_* values (the last one that changed them)."""
    previous, changer = ('', ''), None
    for path, linux, default in files:
        if (linux, default) != previous:
            changer = path
        previous = (linux, default)
    return changer


def judge_evaluation(request, before, after, label, text, line, variable='GRUB_CMDLINE_LINUX_DEFAULT',
                     dropins=(), errors_before='', errors_after=''):
    """Decide from what /bin/sh computed whether the edited files do what was asked.

    ``before``/``after`` are parse_eval_output() results for the files as they
    are and with the candidate ``text`` in place of ``label``; ``line`` is the
    line the edit went into. Returns the effective line (both variables, as
    10_linux joins them). Raises GrubError naming the file and line when the
    shell would not give the kernel the requested arguments, or would lose an
    argument the request does not name.
    """
    _check_complete(before, errors_before, '')
    _check_complete(after, errors_after, ' after the edit')
    final = after['files'][-1][1:] if after['files'] else ('', '')
    changer = _last_changer(after['files']) or label
    for name, value in zip(CMDLINE_VARIABLES, final):
        try:
            check_balanced_quotes(value, '%s as /bin/sh computes it after %s' % (name, changer))
        except CmdlineError as exc:
            raise GrubError(str(exc))
    effective = _joined(*final)
    sources = dict(dropins)
    unmet = unmet_args(effective, request)
    if unmet:
        if changer != label:
            where = _mentions(sources.get(changer))
            raise GrubError('drop-in %s%s overrides %s: /bin/sh computes the kernel line "%s" (%s); fix or remove '
                            'the drop-in' % (changer, ' line %s' % ', '.join(map(str, where)) if where else '',
                                             variable, effective, '; '.join(unmet)))
        others = _mentions(text, skip_line=line)
        raise GrubError('%s line %d: the edit of %s there does not reach the kernel: /bin/sh computes "%s" (%s)%s; '
                        'an if/case branch, unset, && or || list, a later assignment, a computed value or a bare -- '
                        'before it (the rest goes to init) decides it: edit the file by hand'
                        % (label, line, variable, effective, '; '.join(unmet),
                           '; line %s also set or use GRUB_CMDLINE_*' % ', '.join(map(str, others)) if others else ''))
    before_line = _joined(*(before['files'][-1][1:] if before['files'] else ('', '')))
    lost = untouched_args(before_line, request)
    kept = untouched_args(effective, request)
    if lost != kept:
        raise GrubError('%s line %d: after the edit /bin/sh computes "%s" from "%s": arguments the request does not '
                        'name would change (%s -> %s); edit the file by hand'
                        % (label, line, effective, before_line, ' '.join(lost) or '(none)', ' '.join(kept) or '(none)'))
    return effective
