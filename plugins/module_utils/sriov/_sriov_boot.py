# -*- coding: utf-8 -*-
# Copyright: contributors to vfio.passthrough
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The files that give each SR-IOV PF its VFs at every boot: the udev rule, and the script it runs.

The rule runs ``SCRIPT`` with the PF, the count and the vfio-pci indexes when
the PF's driver binds; sriov_vfs runs the same command (``script_argv``) for a
live change, so boot and run make the same state. ``managed_pfs`` reads back
which PFs a rules file written here gives VFs.

Pure functions: entries in, ``[(path, text or None, mode)]`` out.
"""

from __future__ import annotations

import re

from ansible_collections.vfio.passthrough.plugins.module_utils.modprobe._modprobe import header
from ansible_collections.vfio.passthrough.plugins.module_utils.sriov._sriov_script import script_text

__all__ = ['OWNER', 'SCRIPT', 'RULES', 'script_argv', 'managed_pfs', 'render']

OWNER = 'sriov_vfs'
SCRIPT = '/usr/local/sbin/vfio-passthrough-sriov'
RULES = '/etc/udev/rules.d/70-vfio-passthrough-sriov.rules'
_RULE = ('ACTION=="add|bind", SUBSYSTEM=="pci", KERNEL=="{pf}", DRIVER=="?*", '
         'RUN+="{argv}"\n')
_RULE_PF = re.compile(r'KERNEL=="([0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7])"')


def _vfio_word(entry):
    return ','.join(str(i) for i in entry['vfio']) or '-'


def script_argv(entry, script=SCRIPT):
    """The command that makes ``entry`` true now: the same script, with the same arguments, as at boot."""
    return ['/bin/sh', script, entry['pf'], str(entry['vfs']), _vfio_word(entry)]


def managed_pfs(rules_text):
    """The PFs a rules file ``render`` wrote gives VFs at every boot, in file order."""
    found = []
    for line in (rules_text or '').splitlines():
        match = _RULE_PF.search(line) if not line.lstrip().startswith('#') else None
        if match and match.group(1) not in found:
            found.append(match.group(1))
    return found


def render(entries, script=SCRIPT, rules=RULES):
    """``[(path, text or None, mode)]``: the udev rule and the script; both None without entries."""
    if not entries:
        return [(rules, None, 0o644), (script, None, 0o755)]
    mark = header(OWNER)
    lines = [mark, '# vfio.passthrough: SR-IOV virtual functions, made once each physical function\'s driver has '
                   'bound (a udev "bind" event; "add" covers the PFs bound before udev started).']
    for entry in entries:
        chosen = ', '.join(str(i) for i in entry['vfio']) or 'none'
        lines.append('# %s: %d VFs, vfio-pci: %s' % (entry['pf'], entry['vfs'], chosen))
        lines.append(_RULE.format(pf=entry['pf'], argv=' '.join(script_argv(entry, script))).rstrip('\n'))
    return [
        (rules, '\n'.join(lines) + '\n', 0o644),
        (script, script_text(mark, script, rules), 0o755),
    ]
