"""plugins/filter/backup.py: the filters hand their input to plugin_utils/_backup.py and turn its
refusals into filter errors that name the bad value (no traceback reaches the user)."""

from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.vfio.passthrough.plugins.filter.backup import FilterModule
from ansible_collections.vfio.passthrough.plugins.filter.regeneration import FilterModule as RegenerationFilters

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
    assert opened['error'] == 'No backup bundle for pve1: no bundle directory %s/pve1/latest.' % tmp_path


def test_bundle_hands_over_warnings_and_entries(tmp_path):
    opened = FILTERS['passthrough_backup_bundle'](str(tmp_path), 'pve1')
    assert opened['warnings'] == [] and opened['entries'] == []


FLAG_INPUTS = [True, False, 'True', 'False', 'false', 'no', 'yes', 'off', '', None, 0, 1, '0', '1']
DETECTION = {'bootloader': 'grub', 'managed_by': None}


@pytest.mark.parametrize('value', FLAG_INPUTS, ids=[repr(v) for v in FLAG_INPUTS])
def test_both_regeneration_filters_read_a_flag_by_one_rule(value):
    # initramfs_stale of restore and initramfs_changed of the role's filter are the same question.
    restore = FILTERS['passthrough_restore_regeneration']([], DETECTION, value)
    role = RegenerationFilters().filters()['regeneration'](DETECTION, initramfs_changed=value)
    assert restore['commands'] == role['commands']
    expected = value in (True, 'True', 'yes', 1, '1')
    assert (restore['commands'] == [['update-initramfs', '-u', '-k', 'all']]) is expected


@pytest.mark.parametrize('value', ['maybe', [True], 2, 'Flase'], ids=['maybe', 'list', 'two', 'typo'])
def test_both_regeneration_filters_refuse_what_is_no_yes_or_no(value):
    with pytest.raises(AnsibleFilterError, match='initramfs_stale'):
        FILTERS['passthrough_restore_regeneration']([], DETECTION, value)
    with pytest.raises(AnsibleFilterError, match='initramfs_changed'):
        RegenerationFilters().filters()['regeneration'](DETECTION, initramfs_changed=value)
