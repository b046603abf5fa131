# -*- coding: utf-8 -*-
# Copyright: contributors to vfio.passthrough
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Which PCI devices a process holds open through VFIO: the one "in use" rule.

A VMM opens a device either through its IOMMU group's file ``/dev/vfio/<group>``
(``/dev/vfio/noiommu-<group>`` without an IOMMU), which hands it every device
of the group, or, on kernels built with CONFIG_VFIO_DEVICE_CDEV (6.6 on),
through the device's own file ``/dev/vfio/devices/vfioN``; sysfs links that
file to its device as ``/sys/bus/pci/devices/<address>/vfio-dev/vfioN``.
``/dev/vfio/vfio``, the container, names no device.
"""

from __future__ import annotations

import re

from ansible_collections.vfio.passthrough.plugins.module_utils.pci._sysfs import as_tree

__all__ = ['vfio_open_target', 'read_vfio_openers', 'vfio_device_files', 'vfio_users']

_GROUP = re.compile(r'/dev/vfio/(?:noiommu-)?(\d+)\Z')
_DEVICE = re.compile(r'/dev/vfio/devices/(vfio\d+)\Z')


def vfio_open_target(target):
    """What a /proc/PID/fd link target opens: ``('group', 12)``, ``('device', 'vfio0')`` or None."""
    match = _GROUP.match(target or '')
    if match:
        return ('group', int(match.group(1)))
    match = _DEVICE.match(target or '')
    if match:
        return ('device', match.group(1))
    return None


def read_vfio_openers(root):
    """{'/dev/vfio/12': [pid]} for every VFIO group or device file a process holds open, from /proc/PID/fd."""
    tree = as_tree(root)
    held = {}
    for pid in tree.listdir('proc'):
        if not pid.isdigit():
            continue
        for fd in tree.listdir('proc/%s/fd' % pid, resolved=True):
            target = tree.readlink('proc/%s/fd/%s' % (pid, fd))
            if vfio_open_target(target) is not None and int(pid) not in held.setdefault(target, []):
                held[target].append(int(pid))
    return held


def vfio_device_files(root, addresses):
    """{'vfio0': address} for the VFIO device files of ``addresses`` (sys/bus/pci/devices/<address>/vfio-dev)."""
    tree = as_tree(root)
    files = {}
    for address in addresses:
        for name in tree.listdir('sys/bus/pci/devices/%s/vfio-dev' % address, resolved=True):
            files[name] = address
    return files


def vfio_users(root, devices, openers=None):
    """{address: ['/dev/vfio/6 is open (pid 42)', ...]} for every device of ``devices`` a process holds.

    ``devices`` maps addresses to facts with ``iommu_group``; an open group
    file holds each device of that group. ``openers`` (read_vfio_openers) saves
    reading /proc again.
    """
    if openers is None:
        openers = read_vfio_openers(root)
    if not openers:
        return {}
    by_group = {}
    for address in sorted(devices):
        group = (devices[address] or {}).get('iommu_group')
        if group is not None:
            by_group.setdefault(group, []).append(address)
    opened = {path: vfio_open_target(path) for path in openers}
    # Only a device on a VFIO driver has a device file (facts without vfio_driver: every device is asked).
    candidates = sorted(a for a, d in devices.items() if (d or {}).get('vfio_driver', True))
    cdevs = vfio_device_files(root, candidates) if any(kind == 'device' for kind, _key in opened.values()) else {}
    users = {}
    for path in sorted(openers):
        kind, key = opened[path]
        held = by_group.get(key, []) if kind == 'group' else [cdevs[key]] if key in cdevs else []
        why = '%s is open (pid %s)' % (path, ', '.join(str(p) for p in sorted(openers[path])))
        for address in held:
            users.setdefault(address, []).append(why)
    return users
