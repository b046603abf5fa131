# -*- coding: utf-8 -*-
# Copyright: contributors to vfio.passthrough
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters through which the role's backup.yml and playbooks/restore.yml ask plugin_utils/_backup.py."""

from __future__ import annotations

from ansible.errors import AnsibleFilterError

from ansible_collections.vfio.passthrough.plugins.plugin_utils._backup import (
    BackupError, backup_candidates, build_manifest, collection_version, open_bundle, restore_regeneration,
)
from ansible_collections.vfio.passthrough.plugins.plugin_utils._flags import flag


def _list(value, name):
    if value is None:
        return []
    if isinstance(value, (str, bytes, dict)) or not hasattr(value, '__iter__'):
        raise AnsibleFilterError('%s must be a list, got %r' % (name, type(value).__name__))
    return list(value)


def passthrough_backup_files(boot_files, grub_dropin_dir='/etc/default/grub.d', found_dropins=None,
                             initramfs_inputs=None, other_files=None, boot_written=None, initramfs_written=None,
                             plain_written=None):
    return backup_candidates(_list(boot_files, 'boot_files'), str(grub_dropin_dir),
                             [str(p) for p in _list(found_dropins, 'found_dropins')],
                             _list(initramfs_inputs, 'initramfs_inputs'), _list(other_files, 'other_files'),
                             _list(boot_written, 'boot_written'), _list(initramfs_written, 'initramfs_written'),
                             _list(plain_written, 'plain_written'))


def passthrough_backup_manifest(stat_results, host, time, due, collection_root):
    try:
        return build_manifest(_list(stat_results, 'stat results'), str(host), str(time), dict(due),
                              collection_version(str(collection_root)))
    except BackupError as exc:
        raise AnsibleFilterError(str(exc))


def passthrough_backup_bundle(backup_dir, host, backup_id=None):
    return open_bundle(backup_dir, host, backup_id)


def passthrough_restore_regeneration(changed, detection, initramfs_stale=False):
    if not isinstance(detection, dict) or 'bootloader' not in detection:
        raise AnsibleFilterError('passthrough_restore_regeneration expects the result of '
                                 'vfio.passthrough.kernel_cmdline, got %r' % type(detection).__name__)
    try:
        return restore_regeneration(_list(changed, 'changed'), detection, flag(initramfs_stale, 'initramfs_stale'))
    except (BackupError, ValueError) as exc:
        raise AnsibleFilterError('passthrough_restore_regeneration: %s' % exc)


class FilterModule:
    def filters(self):
        return {
            'passthrough_backup_files': passthrough_backup_files,
            'passthrough_backup_manifest': passthrough_backup_manifest,
            'passthrough_backup_bundle': passthrough_backup_bundle,
            'passthrough_restore_regeneration': passthrough_restore_regeneration,
        }
