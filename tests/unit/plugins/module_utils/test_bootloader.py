"""Boot-loader detection as proxmox-boot-tool decides it."""

from __future__ import annotations

from pathlib import Path

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
    ('E: /etc/kernel/proxmox-boot-uuids is unreadable', 1, 'rc=1'),
])
def test_detect_refuses_contradictions(output, rc, fragment):
    with pytest.raises(BootloaderError, match=fragment):
        detect_bootloader(True, output, rc)


def test_parse_status_ignores_the_boot_mode_line():
    assert parse_boot_tool_status('System currently booted with uefi\n')['esps'] == {}
    assert parse_boot_tool_status(UEFI_STATUS)['esps'] == {'5A1B-2C3D': ['uefi'], '5A1B-2C3E': ['uefi']}


# What the real proxmox-boot-tool prints (../shared/vendor/proxmox-kernel-helper/src/bin/proxmox-boot-tool,
# status() and _status_detail()): warn() goes to stderr, the ESP lines to stdout.
BOTH_ON_ONE_ESP = """Re-executing '/usr/sbin/proxmox-boot-tool' in new private mount namespace..
System currently booted with uefi
5A1B-2C3D is configured with: uefi (versions: 6.8.12-4-pve, 6.14.8-2-pve), grub (versions: 6.8.12-4-pve)
"""
ONE_OF_EACH = """System currently booted with legacy bios
5A1B-2C3D is configured with: grub (versions: 6.14.8-2-pve)
5A1B-2C3E is configured with: uefi (versions: 6.14.8-2-pve)
WARN: /dev/disk/by-uuid/5A1B-2C3F does not exist - clean '/etc/kernel/proxmox-boot-uuids'! - skipping
"""


@pytest.mark.parametrize('output, rc, bootloaders, reason', [
    # Exit code 2: the ESP list is missing, so plain GRUB (status() in proxmox-boot-tool).
    ('E: /etc/kernel/proxmox-boot-uuids does not exist.\n', 2, ['grub'], 'exits 2'),
    (UEFI_STATUS, 0, ['systemd-boot'], 'configured with uefi (5A1B-2C3D: uefi; 5A1B-2C3E: uefi)'),
    (GRUB_STATUS, 0, ['grub'], 'configured with grub (5A1B-2C3D: grub)'),
    # Both kinds: both are returned, not refused.
    (BOTH_ON_ONE_ESP, 0, ['grub', 'systemd-boot'], '5A1B-2C3D: uefi and grub), booted with uefi'),
    (ONE_OF_EACH, 0, ['grub', 'systemd-boot'], 'booted with legacy bios'),
    (UEFI_STATUS + GRUB_STATUS, 0, ['grub', 'systemd-boot'], 'both are edited'),
])
def test_detect_real_status_outputs(output, rc, bootloaders, reason):
    result = detect_bootloader(True, output, rc)
    assert result['bootloaders'] == bootloaders
    assert result['bootloader'] == bootloaders[0]
    assert reason in result['reason']
    assert result['managed_by'] == (None if rc == 2 else 'proxmox-boot-tool')


def test_parse_status_per_esp():
    assert parse_boot_tool_status(BOTH_ON_ONE_ESP) == {'esps': {'5A1B-2C3D': ['uefi', 'grub']}, 'booted': 'uefi'}
    assert parse_boot_tool_status(ONE_OF_EACH) == {
        'esps': {'5A1B-2C3D': ['grub'], '5A1B-2C3E': ['uefi']}, 'booted': 'legacy bios'}


def test_vendored_status_text_matches_the_parser():
    """The fixtures above follow the text the real tool prints; fail if that text changes."""
    tool = Path(__file__).resolve().parents[5] / 'shared/vendor/proxmox-kernel-helper/src/bin/proxmox-boot-tool'
    if not tool.exists():
        pytest.skip('no vendored proxmox-boot-tool at %s' % tool)
    source = tool.read_text()
    assert 'echo "$curr_uuid is configured with: $result"' in source
    assert 'result="uefi (versions: ${versions_uefi})"' in source
    assert 'result="${result}, grub (versions: ${versions_grub})"' in source
    assert 'echo "System currently booted with uefi"' in source
    assert 'warn "E: $ESP_LIST does not exist."' in source and 'exit 2' in source
