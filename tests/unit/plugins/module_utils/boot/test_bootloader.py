"""Boot-loader detection as proxmox-boot-tool decides it."""

from __future__ import annotations

from pathlib import Path

import pytest

from ansible_collections.vfio.passthrough.plugins.module_utils.boot._bootloader import (
    SYSTEMD_BOOT_GUID, BootloaderError, booted_loader, detect_bootloader, parse_boot_tool_status,
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

# Printed by Proxmox VE 9.2's helper (9.2.0) in the Debian 13 UEFI guest (tests/vm), whose ESP also holds
# the memtest86+ image and loader entry that 9.x adds: the versions name the kernel alone.
REAL_92_STATUS = """Re-executing '/usr/sbin/proxmox-boot-tool' in new private mount namespace..
System currently booted with uefi
2172-AA5A is configured with: uefi (versions: 6.12.117+deb13-amd64)
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
    (REAL_92_STATUS, 0, ['systemd-boot'], 'configured with uefi (2172-AA5A: uefi)'),
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


@pytest.mark.parametrize('tree', ['proxmox-kernel-helper', 'proxmox-kernel-helper-9.2.0'])
def test_vendored_status_text_matches_the_parser(tree):
    """The fixtures above follow the text the real tool prints (Proxmox VE 8's 8.1.0, VE 9.2's 9.2.0); fail if
    that text changes."""
    tool = Path(__file__).resolve().parents[6] / 'shared/vendor' / tree / 'src/bin/proxmox-boot-tool'
    if not tool.exists():
        pytest.skip('no vendored proxmox-boot-tool at %s' % tool)
    source = tool.read_text()
    assert 'echo "$curr_uuid is configured with: $result"' in source
    assert 'result="uefi (versions: ${versions_uefi})"' in source
    assert 'result="${result}, grub (versions: ${versions_grub})"' in source
    assert 'echo "System currently booted with uefi"' in source
    assert 'warn "E: $ESP_LIST does not exist."' in source and 'exit 2' in source
    # The versions come from the kernels' folders (uefi) and vmlinuz-* (grub) alone: 9.x's memtest86+
    # image (EFI/memtest86+x64.efi, or the ESP's root for GRUB) and loader entry never show up as a kernel.
    assert 'versions_uefi=$(ls -1 ${mountpoint}/$PMX_ESP_DIR |' in source
    assert 'versions_grub=$(ls -1 ${mountpoint}/vmlinuz-* |' in source


# -- which loader started the running kernel -------------------------------------

SD_INFO = 'LoaderInfo-' + SYSTEMD_BOOT_GUID
SD_SELECTED = 'LoaderEntrySelected-' + SYSTEMD_BOOT_GUID
# Written to NVRAM by bootctl install: survives into boots that GRUB makes.
SD_TOKEN = 'LoaderSystemToken-' + SYSTEMD_BOOT_GUID
SD_BOOT_LINE = 'initrd=\\EFI\\proxmox\\6.1.0-50-amd64\\initrd.img-6.1.0-50-amd64 root=UUID=0b1c ro iommu=pt'
GRUB_LINE = 'BOOT_IMAGE=/vmlinuz-6.1.0-50-amd64 root=UUID=0b1c ro console=ttyS0,115200n8 iommu=pt'
BOOT_ORDER = 'BootOrder-8be4df61-93ca-11d2-aa0d-00e098032b8c'


@pytest.mark.parametrize('efi, names, cmdline, firmware, loader, reason', [
    (True, [BOOT_ORDER, SD_INFO, SD_SELECTED, SD_TOKEN], SD_BOOT_LINE, 'uefi', 'systemd-boot',
     'systemd-boot set the EFI variables LoaderInfo and LoaderEntrySelected'),
    (True, [SD_SELECTED], SD_BOOT_LINE, 'uefi', 'systemd-boot', 'the EFI variable LoaderEntrySelected'),
    # The variables win over the line: systemd-boot can start a kernel whose options hold BOOT_IMAGE=.
    (True, [SD_INFO], 'BOOT_IMAGE=/vmlinuz root=/dev/sda1', 'uefi', 'systemd-boot', 'LoaderInfo'),
    (True, [BOOT_ORDER], GRUB_LINE, 'uefi', 'grub', 'and BOOT_IMAGE=/vmlinuz-6.1.0-50-amd64 on /proc/cmdline'),
    # bootctl install left its token in NVRAM; GRUB booted this time.
    (True, [BOOT_ORDER, SD_TOKEN], GRUB_LINE, 'uefi', 'grub', 'no systemd-boot EFI variable'),
    # Another vendor's LoaderInfo is not systemd-boot's.
    (True, ['LoaderInfo-00000000-0000-0000-0000-000000000000'], 'root=/dev/sda1', 'uefi', None, 'neither'),
    (True, [], 'root=/dev/sda1 ro', 'uefi', None, 'neither systemd-boot EFI variables nor BOOT_IMAGE='),
    (False, [], 'BOOT_IMAGE=/boot/vmlinuz-6.8.12-4-pve root=ZFS=rpool/ROOT/pve-1', 'bios', 'grub',
     'legacy BIOS boot) and BOOT_IMAGE=/boot/vmlinuz-6.8.12-4-pve'),
    (False, [], '', 'bios', None, 'no BOOT_IMAGE='),
])
def test_booted_loader(efi, names, cmdline, firmware, loader, reason):
    result = booted_loader(efi, names, cmdline)
    assert (result['firmware'], result['loader']) == (firmware, loader)
    assert reason in result['reason']


def efi_text(text):
    """An efivarfs UTF-16 string variable as the facts read it: 4 attribute bytes, then UTF-16LE with a NUL."""
    return (b'\x06\x00\x00\x00' + (text + '\0').encode('utf-16-le')).decode('latin-1')


# GRUB 2.12's bli module (Debian 13's grub-efi) sets LoaderInfo and LoaderDevicePartUUID under systemd's
# vendor GUID, to its own name: a LoaderInfo alone is not systemd-boot's.
@pytest.mark.parametrize('names, info, cmdline, loader, reason', [
    ([SD_INFO, 'LoaderDevicePartUUID-' + SYSTEMD_BOOT_GUID], 'GRUB 2.12', GRUB_LINE, 'grub',
     'UEFI boot; GRUB set the EFI variable LoaderInfo (GRUB 2.12) and BOOT_IMAGE=/vmlinuz-6.1.0-50-amd64 on'),
    ([SD_INFO], 'GRUB 2.12', 'root=/dev/sda1', 'grub', 'GRUB set the EFI variable LoaderInfo (GRUB 2.12)'),
    # systemd-boot chain-loaded GRUB: GRUB wrote LoaderInfo last and started the kernel.
    ([SD_INFO, SD_SELECTED], 'GRUB 2.12', GRUB_LINE, 'grub', 'LoaderInfo (GRUB 2.12)'),
    ([SD_INFO, SD_SELECTED], 'systemd-boot 257.9-1~deb13u1', SD_BOOT_LINE, 'systemd-boot',
     'LoaderInfo and LoaderEntrySelected (systemd-boot 257.9-1~deb13u1)'),
])
def test_booted_loader_reads_who_set_loader_info(names, info, cmdline, loader, reason):
    result = booted_loader(True, names, cmdline, efi_text(info))
    assert (result['firmware'], result['loader']) == ('uefi', loader)
    assert reason in result['reason'], result['reason']


def test_booted_loader_names_the_systemd_boot_version():
    raw = '\x06\x00\x00\x00' + 'systemd-boot 252.39-1~deb12u1'.encode('utf-16-le').decode('utf-8') + '\x00'
    result = booted_loader(True, [SD_INFO], SD_BOOT_LINE, raw)
    assert result['reason'].endswith('LoaderInfo (systemd-boot 252.39-1~deb12u1)')
