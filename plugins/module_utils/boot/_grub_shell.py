# -*- coding: utf-8 -*-
# Copyright: contributors to vfio.passthrough
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Let /bin/sh compute GRUB_CMDLINE_* exactly as grub-mkconfig does.

/etc/default/grub and /etc/default/grub.d/*.cfg are shell scripts: conditions,
``unset``, ``&&`` lists, continuations and command substitutions decide what
reaches the kernel, and only a shell knows. grub-mkconfig (Debian 12 and 13)
runs under ``set -e`` and does::

    if test -f ${sysconfdir}/default/grub ; then
      . ${sysconfdir}/default/grub
    fi
    for x in ${sysconfdir}/default/grub.d/*.cfg ; do
      if [ -e "${x}" ]; then
        . "${x}"
      fi
    done

The script built here does the same in a clean environment (the caller runs it
under ``env -i``), after ``sh -n`` of every file, and reports the two variables
after each file on fd 3, NUL-separated: a value cannot hold a NUL. What the
sourced files print goes to stderr. The default file may be a temporary copy
of a candidate text; ``label`` is the name reported for it.
"""

from __future__ import annotations

import shlex

__all__ = ['SH', 'ENV', 'build_eval_script', 'parse_eval_output']

SH = '/bin/sh'
# update-grub runs with root's PATH; a clean environment needs one to find commands.
ENV = ('PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',)

_REPORT = 'printf "V\\0%s\\0%s\\0" "${GRUB_CMDLINE_LINUX-}" "${GRUB_CMDLINE_LINUX_DEFAULT-}" >&3'


def build_eval_script(default_file, dropin_dir, label=None):
    """The sh script that evaluates ``default_file`` then ``dropin_dir``/*.cfg as grub-mkconfig does."""
    default_q = shlex.quote(default_file)
    label_q = shlex.quote(label or default_file)
    glob = '%s/*.cfg' % shlex.quote(dropin_dir)
    return '\n'.join([
        'exec 3>&1 1>&2 </dev/null',
        # A syntax error aborts the whole shell at the '.'; find it first and name its file.
        'if test -f %s && ! %s -n %s; then printf "E\\0%%s\\0" %s >&3; exit 0; fi' % (default_q, SH, default_q, label_q),
        'for x in %s ; do' % glob,
        '  if [ -e "${x}" ] && ! %s -n "${x}"; then printf "E\\0%%s\\0" "${x}" >&3; exit 0; fi' % SH,
        'done',
        'set -e',
        'if test -f %s ; then' % default_q,
        '  printf "S\\0%%s\\0" %s >&3' % label_q,
        '  . %s' % default_q,
        '  ' + _REPORT,
        'fi',
        'for x in %s ; do' % glob,
        '  if [ -e "${x}" ]; then',
        '    printf "S\\0%s\\0" "${x}" >&3',
        '    . "${x}"',
        '    ' + _REPORT,
        '  fi',
        'done',
        'printf "END\\0" >&3',
        '',
    ])


def parse_eval_output(out):
    """Read the script's fd-3 stream.

    Returns dict(files=[(file, linux, default)] in sourcing order,
    syntax_error=file or None, stopped_in=file or None, complete=bool).
    ``stopped_in`` is the file whose sourcing ended the shell (set -e, exit).
    """
    fields = (out or '').split('\0')
    files, syntax_error, current, complete = [], None, None, False
    index = 0
    while index < len(fields):
        kind = fields[index]
        if kind == 'E' and index + 1 < len(fields):
            syntax_error = fields[index + 1]
            index += 2
        elif kind == 'S' and index + 1 < len(fields):
            current = fields[index + 1]
            index += 2
        elif kind == 'V' and index + 2 < len(fields):
            files.append((current, fields[index + 1], fields[index + 2]))
            current = None
            index += 3
        elif kind == 'END':
            complete = True
            index += 1
        else:
            index += 1
    return {'files': files, 'syntax_error': syntax_error, 'stopped_in': current, 'complete': complete}
