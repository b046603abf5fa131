"""The regeneration filter hands the role's and restore.yml's inputs to _regeneration unchanged."""

from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.vfio.passthrough.plugins.filter.regeneration import FilterModule

regeneration = FilterModule().filters()['regeneration']


@pytest.mark.parametrize('detection, boot, initramfs, commands', [
    ({'bootloader': 'grub', 'managed_by': None}, True, False, [['update-grub']]),
    ({'bootloader': 'systemd-boot', 'managed_by': 'proxmox-boot-tool'}, True, True,
     [['update-initramfs', '-u', '-k', 'all']]),
    # Jinja hands over strings from a folded set_fact; an empty one is false.
    ({'bootloader': 'grub', 'managed_by': 'proxmox-boot-tool'}, 'True', '', [['proxmox-boot-tool', 'refresh']]),
    ({'bootloader': 'grub', 'managed_by': None}, 'False', 'false', []),
])
def test_filter(detection, boot, initramfs, commands):
    assert regeneration(detection, boot_changed=boot, initramfs_changed=initramfs)['commands'] == commands


@pytest.mark.parametrize('detection, word', [
    ('grub', 'str'),
    ({'bootloader': 'lilo', 'managed_by': None}, 'lilo'),
    ({'bootloader': 'grub', 'managed_by': None, 'flag': 'maybe'}, 'maybe'),
])
def test_filter_refuses(detection, word):
    with pytest.raises(AnsibleFilterError, match=word):
        regeneration(detection, boot_changed=detection.get('flag', True) if isinstance(detection, dict) else True)
