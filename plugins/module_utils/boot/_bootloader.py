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

__all__ = ['BootloaderError', 'parse_boot_tool_status', 'detect_bootloader', 'booted_loader', 'SYSTEMD_BOOT_GUID']

_ESP_LINE = re.compile(r'^(\S+) is configured with: (.*)$')
_MODE = re.compile(r'\b(uefi|grub)\b(?= \(versions:|\s*$|,)')
_BOOTED = re.compile(r'^System currently booted with (uefi|legacy bios)\s*$')
_LOADER = {'uefi': 'systemd-boot', 'grub': 'grub'}
# The vendor GUID of the Boot Loader Interface variables systemd-boot sets on every boot.
SYSTEMD_BOOT_GUID = '4a67b082-0a4c-41cf-b6c7-440b29bb8c4f'
# Volatile variables systemd-boot sets while it starts a kernel. Not LoaderSystemToken or
# LoaderEntryDefault: bootctl install and bootctl set-default write those to NVRAM, so they
# survive into a later boot that GRUB started.
_BOOTED_BY_SYSTEMD_BOOT = ('LoaderInfo', 'LoaderEntrySelected')


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


def _efi_string(text):
    """An efivarfs UTF-16 string value as read as text: the attribute bytes and NULs dropped."""
    return ''.join(char for char in (text or '')[4:] if char.isprintable()).strip()


def booted_loader(efi, efivars, cmdline, loader_info=None):
    """Which path the firmware took to the running kernel: dict(firmware, loader, reason).

    ``efi``: /sys/firmware/efi exists. ``efivars``: the names in
    /sys/firmware/efi/efivars. ``cmdline``: /proc/cmdline. ``loader_info``: the
    text of the LoaderInfo variable, when there is one (it names the loader's
    version). ``firmware`` is 'uefi' or 'bios'; ``loader`` 'systemd-boot',
    'grub' or None (not recognised). systemd-boot announces itself through
    EFI variables; GRUB 2.12 (Debian 13) sets LoaderInfo to its own name, older
    GRUB sets none, and its linux command puts BOOT_IMAGE= first on the command
    line (systemd-boot puts initrd= there instead).
    """
    args = (cmdline or '').split()
    grub_image = next((arg for arg in args if arg.startswith('BOOT_IMAGE=')), None)
    if not efi:
        if grub_image:
            return {'firmware': 'bios', 'loader': 'grub',
                    'reason': 'no /sys/firmware/efi (legacy BIOS boot) and %s on /proc/cmdline' % grub_image}
        return {'firmware': 'bios', 'loader': None,
                'reason': 'no /sys/firmware/efi (legacy BIOS boot) and no BOOT_IMAGE= on /proc/cmdline'}
    names = set(efivars or ())
    version = _efi_string(loader_info)
    if version.upper().startswith('GRUB'):
        # GRUB 2.12's bli module (Debian 13) sets LoaderInfo too, to its own name; the last loader to
        # write it started the kernel, even one that systemd-boot chain-loaded.
        return {'firmware': 'uefi', 'loader': 'grub',
                'reason': 'UEFI boot; GRUB set the EFI variable LoaderInfo (%s)%s' % (
                    version, ' and %s on /proc/cmdline' % grub_image if grub_image else '')}
    seen = ['%s-%s' % (name, SYSTEMD_BOOT_GUID) for name in _BOOTED_BY_SYSTEMD_BOOT
            if '%s-%s' % (name, SYSTEMD_BOOT_GUID) in names]
    if seen:
        return {'firmware': 'uefi', 'loader': 'systemd-boot',
                'reason': 'UEFI boot; systemd-boot set the EFI variable%s %s%s' % (
                    's' if len(seen) > 1 else '', ' and '.join(name.split('-', 1)[0] for name in seen),
                    ' (%s)' % version if version else '')}
    if grub_image:
        return {'firmware': 'uefi', 'loader': 'grub',
                'reason': 'UEFI boot; no systemd-boot EFI variable (LoaderInfo, LoaderEntrySelected) and %s on '
                          '/proc/cmdline' % grub_image}
    return {'firmware': 'uefi', 'loader': None,
            'reason': 'UEFI boot, but neither systemd-boot EFI variables nor BOOT_IMAGE= on /proc/cmdline'}
