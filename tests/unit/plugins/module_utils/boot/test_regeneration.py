"""What regenerates what: one table, every combination of change and boot loader."""

from __future__ import annotations

import pytest

from ansible_collections.vfio.passthrough.plugins.module_utils.boot._regeneration import regeneration

GRUB = ['update-grub']
REFRESH = ['proxmox-boot-tool', 'refresh']
INITRAMFS = ['update-initramfs', '-u', '-k', 'all']

PLAIN_GRUB = ('grub', None)
BOOT_TOOL_GRUB = ('grub', 'proxmox-boot-tool')
BOOT_TOOL_SYSTEMD = ('systemd-boot', 'proxmox-boot-tool')
BARE_SYSTEMD = ('systemd-boot', None)


@pytest.mark.parametrize('loader, boot, initramfs, commands, boot_by_initramfs, unrefreshed', [
    (PLAIN_GRUB, False, False, [], False, False),
    (PLAIN_GRUB, True, False, [GRUB], False, False),
    (PLAIN_GRUB, False, True, [INITRAMFS], False, False),
    # update-initramfs does not regenerate grub.cfg: both run, the rebuild first.
    (PLAIN_GRUB, True, True, [INITRAMFS, GRUB], False, False),
    (BOOT_TOOL_GRUB, False, False, [], False, False),
    (BOOT_TOOL_GRUB, True, False, [REFRESH], False, False),
    (BOOT_TOOL_GRUB, False, True, [INITRAMFS], False, False),
    # The rebuild's post-update hook refreshes the ESPs: never twice.
    (BOOT_TOOL_GRUB, True, True, [INITRAMFS], True, False),
    (BOOT_TOOL_SYSTEMD, False, False, [], False, False),
    (BOOT_TOOL_SYSTEMD, True, False, [REFRESH], False, False),
    (BOOT_TOOL_SYSTEMD, False, True, [INITRAMFS], False, False),
    (BOOT_TOOL_SYSTEMD, True, True, [INITRAMFS], True, False),
    (BARE_SYSTEMD, False, False, [], False, False),
    (BARE_SYSTEMD, True, False, [], False, True),
    (BARE_SYSTEMD, False, True, [INITRAMFS], False, False),
    (BARE_SYSTEMD, True, True, [INITRAMFS], False, True),
])
def test_regeneration(loader, boot, initramfs, commands, boot_by_initramfs, unrefreshed):
    result = regeneration(boot, initramfs, *loader)
    assert result == {'commands': commands, 'initramfs': initramfs,
                      'boot_by_initramfs': boot_by_initramfs, 'unrefreshed': unrefreshed}


def test_commands_are_fresh_lists():
    # A caller that appends to its list must not change the next caller's.
    first = regeneration(True, True, 'grub', None)
    first['commands'][0].append('--oops')
    assert regeneration(True, True, 'grub', None)['commands'] == [INITRAMFS, GRUB]


@pytest.mark.parametrize('bootloader, managed_by, word', [
    ('lilo', None, "'lilo'"),
    ('grub', 'grub-install', "'grub-install'"),
])
def test_unknown_loader_refused(bootloader, managed_by, word):
    with pytest.raises(ValueError, match=word):
        regeneration(True, False, bootloader, managed_by)
