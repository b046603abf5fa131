# -*- coding: utf-8 -*-
# Copyright: contributors to vfio.passthrough
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The SR-IOV request an administrator wrote, checked against the devices and normalised.

One rule for the role's plan (preflight) and the sriov_vfs module: the PF
exists, is no VF itself, supports SR-IOV, the count is within its
``sriov_totalvfs``, the PF is not also passed through whole, no VF the host
runs on goes to vfio-pci or is removed for good (_sriov_change.vf_removal).

Pure functions: request and device facts in, ``(entries, errors, notes)`` out.
"""

from __future__ import annotations

from ansible_collections.vfio.passthrough.plugins.module_utils.pci._pci import normalise_address
from ansible_collections.vfio.passthrough.plugins.module_utils.sriov._sriov_change import REFUSED, vf_removal
from ansible_collections.vfio.passthrough.plugins.module_utils.sriov._sriov_state import vf_address

__all__ = ['check_request']

_KEYS = ('pf', 'vfs', 'vfio')


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _vfio_indexes(value, count, label, errors):
    """The VF indexes ``value`` sends to vfio-pci: ``all`` (the default), or a list of indexes."""
    if value is None or value == 'all':
        return list(range(count))
    if not isinstance(value, list):
        errors.append('%s: vfio must be "all" or a list of VF indexes, not %r' % (label, value))
        return []
    indexes = []
    for index in value:
        if not _is_int(index) or not 0 <= index < count:
            errors.append('%s: vfio index %r is no VF of the %d asked for (0 to %d)' % (label, index, count, count - 1))
        elif index not in indexes:
            indexes.append(index)
    return sorted(indexes)


def check_request(request, devices, passthrough=(), name='pcie_passthrough_sriov'):
    """Check and normalise the SR-IOV request against ``devices`` (iommu facts or read_pci_devices).

    ``request`` is a list of ``{pf, vfs, vfio}``; ``passthrough`` the addresses
    also going to vfio-pci whole. The host's verdict is each device's
    ``host_critical`` (as iommu_facts sets it): a VF the host runs on is
    neither sent to vfio-pci nor removed for good (``vf_removal``). Returns ``(entries, errors, notes)``: entries
    sorted by PF, ``{'pf': canonical address, 'vfs': count, 'vfio': [indexes]}``.
    Every error names the value and why; nothing is raised.
    """
    entries, errors, notes = [], [], []
    if not isinstance(request, list):
        return [], ['%s must be a list of {pf, vfs, vfio}, not %r' % (name, request)], []
    seen = {}
    for position, item in enumerate(request):
        label = '%s[%d]' % (name, position)
        if not isinstance(item, dict):
            errors.append('%s must be a dict with pf, vfs and optionally vfio, not %r' % (label, item))
            continue
        unknown = sorted(str(k) for k in item if k not in _KEYS)
        if unknown:
            errors.append('%s: unknown key %s (known: pf, vfs, vfio)' % (label, ', '.join(unknown)))
        try:
            addresses, note = normalise_address(item.get('pf'), devices, whole_device=False)
        except ValueError as exc:
            errors.append('%s: pf %s' % (label, exc))
            continue
        pf = addresses[0]
        label = '%s (pf %s)' % (label, pf)
        if note:
            notes.append('%s: %s' % (name, note))
        device = devices.get(pf)
        count = item.get('vfs')
        if device is None:
            errors.append('%s: %s does not exist on this host (see lspci -D)' % (label, pf))
            continue
        if device.get('physfn'):
            errors.append('%s: %s is itself a virtual function of %s; name the physical function'
                          % (label, pf, device['physfn']))
            continue
        total = device.get('sriov_totalvfs')
        if total is None:
            errors.append('%s: %s does not support SR-IOV (it has no sriov_totalvfs)' % (label, pf))
            continue
        if not _is_int(count) or not 0 <= count <= total:
            errors.append('%s: vfs %r is not a count from 0 to %d, the sriov_totalvfs of %s'
                          % (label, count, total, pf))
            continue
        if pf in seen:
            errors.append('%s: %s is already listed at %s[%d]' % (label, pf, name, seen[pf]))
            continue
        seen[pf] = position
        if pf in passthrough:
            errors.append('%s: %s is also in pcie_passthrough_devices; a PF passed through whole takes its VFs '
                          'with it. Pass through its VFs (vfio) or the PF, not both' % (label, pf))
            continue
        vfio = _vfio_indexes(item.get('vfio'), count, label, errors)
        for other in passthrough:
            if (devices.get(other) or {}).get('physfn') == pf:
                errors.append('%s: %s in pcie_passthrough_devices is a VF of %s, whose VFs this variable manages: '
                              'choose it by index in vfio instead' % (label, other, pf))
        for index in vfio:
            vf = vf_address(devices, pf, index)
            reasons = (devices.get(vf) or {}).get('host_critical') if vf else None
            if reasons:
                errors.append('%s: VF %d (%s) is host-critical (%s); keep it off vfio'
                              % (label, index, vf, '; '.join(reasons)))
        entry = {'pf': pf, 'vfs': count, 'vfio': vfio}
        removal = vf_removal(entry, devices)
        if removal and removal[0] == REFUSED:
            errors.append('%s: %s' % (label, removal[1]))
        entries.append(entry)
    return sorted(entries, key=lambda e: e['pf']), errors, notes
