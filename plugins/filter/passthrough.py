# -*- coding: utf-8 -*-
# Copyright: contributors to vfio.passthrough
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters through which the pcie_passthrough role asks plugin_utils/_plan.py what to do."""

from __future__ import annotations

from ansible.errors import AnsibleFilterError

from ansible_collections.vfio.passthrough.plugins.plugin_utils._plan import (
    PassthroughRequest, plan_passthrough, reboot_reasons, verify_passthrough,
)


def _facts(value):
    if not isinstance(value, dict) or 'devices' not in value:
        raise AnsibleFilterError('expected the iommu facts from vfio.passthrough.iommu_facts, got %r' % type(value).__name__)
    return value


def passthrough_plan(facts, **options):
    return plan_passthrough(_facts(facts), PassthroughRequest(**options)).as_dict()


def passthrough_reboot_reasons(facts, plan, cmdline_unmet=(), sriov_deferred=()):
    return reboot_reasons(_facts(facts), plan, cmdline_unmet or (), sriov_deferred or ())


def passthrough_verify(facts, plan, tuning=None):
    return verify_passthrough(_facts(facts), plan, tuning)


class FilterModule:
    def filters(self):
        return {
            'passthrough_plan': passthrough_plan,
            'passthrough_reboot_reasons': passthrough_reboot_reasons,
            'passthrough_verify': passthrough_verify,
        }
