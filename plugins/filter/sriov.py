# -*- coding: utf-8 -*-
# Copyright: contributors to vfio.passthrough
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The filter through which the role asks module_utils/sriov/_sriov_change.py what an SR-IOV dry run leaves owed."""

from __future__ import annotations

from ansible.errors import AnsibleFilterError

from ansible_collections.vfio.passthrough.plugins.module_utils.sriov._sriov_change import dry_run_due


def passthrough_sriov_due(result):
    try:
        return dry_run_due(result)
    except ValueError as exc:
        raise AnsibleFilterError('passthrough_sriov_due: %s' % exc)


class FilterModule:
    def filters(self):
        return {'passthrough_sriov_due': passthrough_sriov_due}
