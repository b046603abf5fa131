"""Boot-loader detection as proxmox-boot-tool decides it."""

from __future__ import annotations

import pytest

from ansible_collections.vfio.passthrough.plugins.module_utils._bootloader import (
    BootloaderError, detect_bootloader, parse_boot_tool_status,
)

# Shaped like `proxmox-boot-tool status` on a Proxmox VE 8 ZFS install.
UEFI_STATUS = """Re-executing '/usr/sbin/proxmox-boot-tool' in new private mount namespace..
System currently booted with uefi
5A1B-2C3D is configured with: uefi (versions: 6.5.13-6-pve, 6.8.12-4-pve)
5A1B-2C3E is configured with: uefi (versions: 6.5.13-6-pve, 6.8.12-4-pve)
"""
GRUB_STATUS = """Re-executing '/usr/sbin/proxmox-boot-tool' in new private mount namespace..
System currently booted with legacy bios
5A1B-2C3D is configured with: grub (versions: 6.8.12-4-pve)
"""


@pytest.mark.parametrize('uuids, output, rc, bootloader, managed_by', [
    (False, None, None, 'grub', None),
    (True, UEFI_STATUS, 0, 'systemd-boot', 'proxmox-boot-tool'),
    (True, GRUB_STATUS, 0, 'grub', 'proxmox-boot-tool'),
])
def test_detect(uuids, output, rc, bootloader, managed_by):
    result = detect_bootloader(uuids, output, rc)
    assert (result['bootloader'], result['managed_by']) == (bootloader, managed_by)
    assert result['reason']


@pytest.mark.parametrize('output, rc, fragment', [
    (None, None, 'not installed'),
    ('E: no ESP', 2, 'rc=2'),
    ('System currently booted with uefi\n', 0, 'no configured ESP'),
    (UEFI_STATUS + GRUB_STATUS, 0, 'mixes uefi and grub'),
])
def test_detect_refuses_contradictions(output, rc, fragment):
    with pytest.raises(BootloaderError, match=fragment):
        detect_bootloader(True, output, rc)


def test_parse_status_ignores_the_boot_mode_line():
    assert parse_boot_tool_status('System currently booted with uefi\n') == set()
    assert parse_boot_tool_status(UEFI_STATUS) == {'uefi'}
