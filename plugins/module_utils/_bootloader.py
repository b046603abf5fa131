# -*- coding: utf-8 -*-
# Copyright: contributors to vfio.passthrough
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Which boot loader reads the kernel command line, decided the way proxmox-boot-tool does.

Proxmox VE installs on ZFS (and some UEFI installs) keep their ESPs in sync with
proxmox-boot-tool, listed in /etc/kernel/proxmox-boot-uuids. ``proxmox-boot-tool
status`` prints one line per ESP, "<UUID> is configured with: uefi (versions: ...)"
(a systemd-boot loader.conf: reads /etc/kernel/cmdline), "grub (versions: ...)"
(a grub directory: reads /etc/default/grub) or both, and exits 2 with
"E: /etc/kernel/proxmox-boot-uuids does not exist." on a plain GRUB host.

Not signals: whether a systemd-boot or systemd-boot-tools package is installed
(Proxmox VE 9 must not have the systemd-boot meta-package, and bootctl moved to
systemd-boot-tools on Debian 13), whether /etc/kernel/cmdline exists, and
whether it says root=ZFS.
"""

from __future__ import annotations

import re

__all__ = ['BootloaderError', 'parse_boot_tool_status', 'detect_bootloader']

_ESP_LINE = re.compile(r'^(\S+) is configured with: (.*)$')
_MODE = re.compile(r'\b(uefi|grub)\b(?= \(versions:|\s*$|,)')
_BOOTED = re.compile(r'^System currently booted with (uefi|legacy bios)\s*$')
_LOADER = {'uefi': 'systemd-boot', 'grub': 'grub'}


class BootloaderError(ValueError):
    """Detection found something contradictory; the message says what."""


def parse_boot_tool_status(output):
    """``proxmox-boot-tool status`` as dict(esps={uuid: [modes]}, booted='uefi'|'legacy bios'|None)."""
    esps, booted = {}, None
    for line in (output or '').splitlines():
        line = line.strip()
        match = _ESP_LINE.match(line)
        if match:
            modes = esps.setdefault(match.group(1), [])
            for mode in _MODE.findall(match.group(2)):
                if mode not in modes:
                    modes.append(mode)
            continue
        match = _BOOTED.match(line)
        if match:
            booted = match.group(1)
    return {'esps': esps, 'booted': booted}


def _result(bootloaders, managed_by, reason, status=None):
    return {'bootloader': bootloaders[0], 'bootloaders': bootloaders, 'managed_by': managed_by,
            'reason': reason, 'esps': (status or {}).get('esps', {}), 'booted': (status or {}).get('booted')}


def detect_bootloader(uuids_file_present, status_output=None, status_rc=None):
    """Return dict(bootloader, bootloaders, managed_by, reason, esps, booted).

    ``bootloaders`` lists every boot loader an ESP is configured for (GRUB
    first); ``bootloader`` is its first. ``managed_by`` is 'proxmox-boot-tool'
    when the ESPs are kept in sync by it (its refresh must then replace
    update-grub), else None.
    """
    plain = 'plain GRUB from /boot (update-grub)'
    if not uuids_file_present:
        return _result(['grub'], None, 'no /etc/kernel/proxmox-boot-uuids: %s' % plain)
    if status_rc is None:
        raise BootloaderError('/etc/kernel/proxmox-boot-uuids exists but proxmox-boot-tool is not installed')
    text = (status_output or '').strip()
    if status_rc == 2 and 'does not exist' in text:
        # The list vanished between our look and the tool's: the tool's own verdict.
        return _result(['grub'], None, 'proxmox-boot-tool status exits 2 (%s): %s' % (text, plain))
    if status_rc != 0:
        raise BootloaderError('proxmox-boot-tool status failed (rc=%s): %s' % (status_rc, text))
    status = parse_boot_tool_status(status_output)
    found = {mode for modes in status['esps'].values() for mode in modes}
    if not found:
        raise BootloaderError('proxmox-boot-tool status lists no configured ESP: %s' % text)
    described = '; '.join('%s: %s' % (uuid, ' and '.join(modes) or 'nothing')
                          for uuid, modes in sorted(status['esps'].items()))
    bootloaders = [_LOADER[mode] for mode in ('grub', 'uefi') if mode in found]
    if len(bootloaders) == 1:
        reads = '/etc/kernel/cmdline' if bootloaders == ['systemd-boot'] else '/etc/default/grub'
        reason = 'proxmox-boot-tool status: ESPs configured with %s (%s), so %s reads %s' % (
            ' and '.join(sorted(found)), described, bootloaders[0], reads)
    else:
        reason = ('proxmox-boot-tool status: ESPs configured with grub and uefi (%s), booted with %s: '
                  'GRUB reads /etc/default/grub and systemd-boot reads /etc/kernel/cmdline, so both are edited'
                  % (described, status['booted'] or 'an unknown mode'))
    return _result(bootloaders, 'proxmox-boot-tool', reason, status)
