"""plugins/filter/backup.py: the filters hand their input to plugin_utils/_backup.py and turn its
refusals into filter errors that name the bad value (no traceback reaches the user)."""

from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.vfio.passthrough.plugins.filter.backup import FilterModule

FILTERS = FilterModule().filters()


def test_files_accepts_a_lazy_sequence_of_found_dropins():
    found = (p for p in ['/etc/default/grub.d/50-local.cfg'])
    assert FILTERS['passthrough_backup_files'](['/etc/default/grub'], found_dropins=found) == [
        {'path': '/etc/default/grub', 'rebuild': 'boot'},
        {'path': '/etc/default/grub.d/50-local.cfg', 'rebuild': 'boot'},
    ]


@pytest.mark.parametrize('name, args, message', [
    ('passthrough_backup_files', ('/etc/default/grub',), 'boot_files must be a list, got \'str\''),
    ('passthrough_backup_manifest', ([{'item': {'path': '/etc', 'rebuild': 'none'}, 'stat': {'exists': True, 'isreg': False}}],
                                     'pve1', '2026-01-24T10:15:00Z', {}, '/nonexistent'),
     'cannot save /etc: it is not a regular file'),
    ('passthrough_backup_manifest', ([], 'pve1', 'yesterday', {}, '/nonexistent'), "backup time 'yesterday' is not a UTC time"),
    ('passthrough_restore_regeneration', ([], {'path': '/etc/default/grub'}), 'expects the result of vfio.passthrough.kernel_cmdline'),
    ('passthrough_restore_regeneration', ([{'path': '/f', 'rebuild': 'boot'}], {'bootloader': 'lilo', 'managed_by': None}),
     "unknown boot loader 'lilo'"),
], ids=['files-str', 'manifest-directory', 'manifest-time', 'regeneration-input', 'regeneration-bootloader'])
def test_bad_input_is_a_filter_error_naming_it(name, args, message):
    with pytest.raises(AnsibleFilterError) as raised:
        FILTERS[name](*args)
    assert message in str(raised.value)


def test_bundle_returns_the_refusal_for_the_playbook_to_fail_with(tmp_path):
    opened = FILTERS['passthrough_backup_bundle'](str(tmp_path), 'pve1')
    assert opened['error'].startswith('No backup bundle for pve1: %s/pve1/latest/manifest.yml does not exist' % tmp_path)
