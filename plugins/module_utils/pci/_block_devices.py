# -*- coding: utf-8 -*-
# Copyright: contributors to vfio.passthrough
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Block devices from sys/class/block: which PCI controllers a disk, partition or stacked device sits on."""

from __future__ import annotations

import os
import re

from ansible_collections.vfio.passthrough.plugins.module_utils.pci._pci import nearest_pci
from ansible_collections.vfio.passthrough.plugins.module_utils.pci._sysfs import as_tree

__all__ = ['block_devices_by_dm_name', 'block_pci_addresses']


def block_devices_by_dm_name(root):
    """{dm name (as in /dev/mapper): dm-N} from sys/class/block/dm-*/dm/name."""
    tree = as_tree(root)
    result = {}
    for name in tree.listdir('sys/class/block', resolved=True):
        if name.startswith('dm-'):
            dm_name = tree.read_names('sys/class/block/%s/dm/name' % name)
            if dm_name:
                result[dm_name] = name
    return result


def block_pci_addresses(root, name, _seen=None):
    """PCI addresses of the controllers under block device ``name`` (``sda2``, ``dm-0``, ``md0p1``).

    Follows dm/md ``slaves`` recursively; for a partition of a stacked device
    the slaves sit on the parent. An NVMe multipath head lives under
    nvme-subsystem: its controllers lead to the PCI devices.
    """
    tree = as_tree(root)
    seen = _seen if _seen is not None else set()
    if name in seen:
        return []
    seen.add(name)
    rel = tree.resolve('sys/class/block/' + name)
    if rel is None or not os.path.lexists(tree.os_path(rel)):
        return []
    address = nearest_pci(rel)
    if address:
        return [address]
    found = []
    parts = rel.split('/')
    if 'nvme-subsystem' in parts:
        subsys = '/'.join(parts[:parts.index('nvme-subsystem') + 2])
        for entry in tree.listdir(subsys, resolved=True):
            if re.match(r'^nvme\d+$', entry):
                ctrl = tree.resolve(subsys + '/' + entry)
                if ctrl and nearest_pci(ctrl):
                    found.append(nearest_pci(ctrl))
    slaves_dir = rel + '/slaves'
    if not os.path.isdir(tree.os_path(slaves_dir)) and os.path.exists(tree.os_path(rel + '/partition')):
        slaves_dir = rel.rsplit('/', 1)[0] + '/slaves'
    for slave in tree.listdir(slaves_dir, resolved=True):
        found.extend(block_pci_addresses(tree, slave, seen))
    return sorted(set(found))
