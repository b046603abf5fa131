# -*- coding: utf-8 -*-
# Copyright: contributors to vfio.passthrough
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A PF's SR-IOV state as the device facts hold it: its running count, its VFs, the VFs the host runs on.

``devices`` is read_pci_devices (or iommu facts): each PF carries
``sriov_numvfs`` and ``virtfns`` (its ``virtfnN`` links, in index order), each
device the host depends on its ``host_critical`` reasons. Pure lookups.
"""

from __future__ import annotations

__all__ = ['running_vfs', 'vf_address', 'host_vfs']


def running_vfs(devices, pf):
    """How many VFs ``pf`` has now (``sriov_numvfs``; 0 for a PF that is gone or has none)."""
    return (devices.get(pf) or {}).get('sriov_numvfs') or 0


def vf_address(devices, pf, index):
    """The address of VF ``index`` of ``pf`` now (its ``virtfnN`` link), or None."""
    virtfns = (devices.get(pf) or {}).get('virtfns') or []
    return virtfns[index] if index < len(virtfns) else None


def host_vfs(pf, devices):
    """``[(index, vf, reasons)]``: the VFs of ``pf`` now that the host runs on (their ``host_critical``)."""
    used = []
    for index, vf in enumerate((devices.get(pf) or {}).get('virtfns') or []):
        reasons = (devices.get(vf) or {}).get('host_critical') if vf else None
        if reasons:
            used.append((index, vf, list(reasons)))
    return used
