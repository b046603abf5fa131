# -*- coding: utf-8 -*-
# Copyright: contributors to vfio.passthrough
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""This node's Proxmox guests, read from the cluster files below a root: which PCI devices they name.

The one reader of ``/etc/pve`` guest configs: the SR-IOV in-use check, the
iommu facts (variant drivers) and vm_probe (guests that start on boot) see the
same guests. Parsing is _pve_config's, as Proxmox parses.
"""

from __future__ import annotations

from ansible_collections.vfio.passthrough.plugins.module_utils.proxmox._pve_config import guest_pci_references, vmid_of
from ansible_collections.vfio.passthrough.plugins.module_utils.pci._sysfs import as_tree

__all__ = ['read_guest_configs', 'read_guest_references']


def read_guest_configs(root, node=None):
    """({vmid: config text}, pci.cfg text) of this node's guests, from the Proxmox cluster files.

    The guests are this node's: ``etc/pve/qemu-server`` (pmxcfs links it to the
    local node) and ``etc/pve/nodes/<node>/qemu-server``; another node's guest
    names another machine's device at the same address. Without ``node`` every
    node's guests count.
    """
    tree = as_tree(root)
    dirs = ['etc/pve/qemu-server']
    nodes = [node] if node is not None else tree.listdir('etc/pve/nodes')
    dirs.extend('etc/pve/nodes/%s/qemu-server' % name for name in nodes if '/' not in name and name not in ('.', '..'))
    configs = {}
    for directory in dirs:
        for name in tree.listdir(directory):
            vmid = vmid_of(name)
            if vmid is not None and vmid not in configs:
                configs[vmid] = tree.read('%s/%s' % (directory, name)) or ''
    return configs, tree.read('etc/pve/mapping/pci.cfg')


def read_guest_references(root, existing, node=None):
    """{address: ["guest 101 (hostpci0)", "resource mapping nic1"]} from the Proxmox cluster files.

    The guests are read_guest_configs'; parsing is _pve_config's, as Proxmox parses.
    """
    configs, mapping_text = read_guest_configs(root, node)
    return guest_pci_references(configs, mapping_text, list(existing), node)
