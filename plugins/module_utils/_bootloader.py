# -*- coding: utf-8 -*-
# Copyright: contributors to vfio.passthrough
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Which boot loader reads the kernel command line, decided the way proxmox-boot-tool does.

Proxmox VE installs on ZFS (and some UEFI installs) keep their ESPs in sync with
proxmox-boot-tool, listed in /etc/kernel/proxmox-boot-uuids. Each ESP is
"configured with: uefi" (systemd-boot, reads /etc/kernel/cmdline) or
"configured with: grub" (GRUB, reads /etc/default/grub). Without that file the
host boots plain GRUB from /boot.
"""

from __future__ import annotations

import re

__all__ = ['BootloaderError', 'parse_boot_tool_status', 'detect_bootloader']

_CONFIGURED = re.compile(r'configured with:\s*(uefi|grub)\b', re.I)


class BootloaderError(ValueError):
    """Detection found something contradictory; the message says what."""


def parse_boot_tool_status(output):
    """The set of 'configured with' modes in ``proxmox-boot-tool status`` output."""
    return {m.group(1).lower() for m in _CONFIGURED.finditer(output or '')}


def detect_bootloader(uuids_file_present, status_output=None, status_rc=None):
    """Return dict(bootloader, managed_by, reason).

    ``managed_by`` is 'proxmox-boot-tool' when the ESPs are kept in sync by it
    (its refresh must then replace update-grub), else None.
    """
    if not uuids_file_present:
        return {'bootloader': 'grub', 'managed_by': None,
                'reason': 'no /etc/kernel/proxmox-boot-uuids: plain GRUB from /boot'}
    if status_rc is None:
        raise BootloaderError('/etc/kernel/proxmox-boot-uuids exists but proxmox-boot-tool is not installed')
    if status_rc != 0:
        raise BootloaderError('proxmox-boot-tool status failed (rc=%s): %s' % (status_rc, (status_output or '').strip()))
    modes = parse_boot_tool_status(status_output)
    if modes == {'uefi'}:
        return {'bootloader': 'systemd-boot', 'managed_by': 'proxmox-boot-tool',
                'reason': 'proxmox-boot-tool status: ESPs configured with uefi (systemd-boot reads /etc/kernel/cmdline)'}
    if modes == {'grub'}:
        return {'bootloader': 'grub', 'managed_by': 'proxmox-boot-tool',
                'reason': 'proxmox-boot-tool status: ESPs configured with grub (kept in sync by proxmox-boot-tool)'}
    if not modes:
        raise BootloaderError('proxmox-boot-tool status lists no configured ESP: %s' % (status_output or '').strip())
    raise BootloaderError('proxmox-boot-tool status mixes uefi and grub ESPs; set bootloader explicitly')
