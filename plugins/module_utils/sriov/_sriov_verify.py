# -*- coding: utf-8 -*-
# Copyright: contributors to vfio.passthrough
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The SR-IOV verdict after the run (or the boot): the running VFs against the checked entries.

Pure: entries (_sriov_request.check_request's) and device facts in, errors out.
"""

from __future__ import annotations

from ansible_collections.vfio.passthrough.plugins.module_utils.pci._pci import vfio_driver
from ansible_collections.vfio.passthrough.plugins.module_utils.sriov._sriov_state import running_vfs, vf_address

__all__ = ['verify']


def verify(entries, devices):
    """Errors of the running state against ``entries``; each names the PF and, where it is one, the VF."""
    errors = []
    for entry in entries:
        pf = entry['pf']
        if devices.get(pf) is None:
            errors.append('SR-IOV: PF %s is gone' % pf)
            continue
        running = running_vfs(devices, pf)
        if running != entry['vfs']:
            errors.append('SR-IOV: PF %s has %d VFs, %d asked' % (pf, running, entry['vfs']))
            continue
        for index in range(entry['vfs']):
            vf = vf_address(devices, pf, index)
            vf_facts = devices.get(vf) if vf else None
            if vf_facts is None:
                errors.append('SR-IOV: PF %s: VF %d does not exist (no virtfn%d)' % (pf, index, index))
                continue
            holder = vfio_driver(vf_facts)
            driver = vf_facts.get('driver') or 'none'
            if index in entry['vfio'] and not holder:
                errors.append('SR-IOV: PF %s: VF %d (%s) is on driver %s, not vfio-pci' % (pf, index, vf, driver))
            elif index not in entry['vfio'] and (holder or driver == 'none'):
                errors.append('SR-IOV: PF %s: VF %d (%s) is kept for the host but is on driver %s'
                              % (pf, index, vf, driver))
    return errors
