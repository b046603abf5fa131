# -*- coding: utf-8 -*-
# Copyright: contributors to vfio.passthrough
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The filter through which the role and restore.yml ask module_utils/boot/_regeneration.py what to run."""

from __future__ import annotations

from ansible.errors import AnsibleFilterError

from ansible_collections.vfio.passthrough.plugins.module_utils.boot._regeneration import regeneration as _regeneration
from ansible_collections.vfio.passthrough.plugins.plugin_utils._flags import flag


def regeneration(detection, boot_changed=False, initramfs_changed=False):
    if not isinstance(detection, dict) or 'bootloader' not in detection:
        raise AnsibleFilterError('regeneration expects the result of vfio.passthrough.kernel_cmdline '
                                 '(bootloader, managed_by), got %r' % type(detection).__name__)
    try:
        return _regeneration(flag(boot_changed, 'boot_changed'), flag(initramfs_changed, 'initramfs_changed'),
                             detection['bootloader'], detection.get('managed_by'))
    except (TypeError, ValueError) as exc:
        raise AnsibleFilterError('regeneration: %s' % exc)


class FilterModule:
    def filters(self):
        return {'regeneration': regeneration}
