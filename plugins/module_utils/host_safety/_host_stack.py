# -*- coding: utf-8 -*-
# Copyright: contributors to vfio.passthrough
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The kernel modules that the root, /boot and ESP filesystems and the management path run on, read from sysfs.

Not a list of names: each module comes from what the running system shows.

* the driver of every device above a block device, read upwards from
  ``sys/class/block/<dev>`` (``virtio_blk`` and ``virtio_pci``, ``sd_mod`` and
  ``ahci``, ``nvme``), for the devices under a mount and their ``slaves``;
* the device-mapper target of a ``dm-N`` (``dm/uuid`` prefix, LVM sub-volume
  names) and the md personality of an ``mdN`` (``md/level``);
* the filesystem of the mount (``fs-<type>`` alias, in ``_module_deps``);
* the bridge, bond and VLAN devices on the management path and the drivers
  of its NICs.

Each root is a ``(module name, what it serves)`` pair for
``_module_deps.needed_modules``, which adds what those modules depend on.
"""

from __future__ import annotations

import re

from ansible_collections.vfio.passthrough.plugins.module_utils.pci._kernel_names import show_name
from ansible_collections.vfio.passthrough.plugins.module_utils.pci._pci import normalise_module

__all__ = ['block_roots', 'filesystem_roots', 'network_roots', 'device_driver_modules']

# dm/uuid prefixes that name their target (cryptsetup, multipathd, LVM's internal volumes).
_DM_UUID_TARGETS = (
    ('CRYPT-VERITY-', 'dm_verity'), ('CRYPT-INTEGRITY-', 'dm_integrity'), ('CRYPT-', 'dm_crypt'),
    ('mpath-', 'dm_multipath'),
)
# LVM names the hidden sub-volumes of a segment type after it: <vg>-<lv>_rimage_0 is a dm-raid leg.
_LVM_SUBVOLUMES = (
    ('_rimage_', 'dm_raid'), ('_rmeta_', 'dm_raid'), ('_mimage_', 'dm_mirror'), ('_mlog', 'dm_mirror'),
    ('_tdata', 'dm_thin_pool'), ('_tmeta', 'dm_thin_pool'), ('_cdata', 'dm_cache'), ('_cmeta', 'dm_cache'),
    ('_corig', 'dm_cache'), ('_vdata', 'dm_vdo'), ('-real', 'dm_snapshot'), ('-cow', 'dm_snapshot'),
)
# md/level -> personality module
_MD_LEVELS = {'raid0': 'raid0', 'raid1': 'raid1', 'raid4': 'raid456', 'raid5': 'raid456', 'raid6': 'raid456',
              'raid10': 'raid10', 'linear': 'linear', 'multipath': 'multipath'}
_MAX_DEPTH = 16


def device_driver_modules(tree, rel):
    """The driver modules of ``rel`` (a physical sysfs path) and every device above it, nearest first.

    A driver's ``module`` link names its module (``sd`` -> ``sd_mod``); a
    driver without one is built in and cannot be blacklisted.
    """
    found = []
    parts = rel.split('/')
    while len(parts) > 2:   # stop at sys/devices
        here = '/'.join(parts)
        driver = tree.resolve(here + '/driver') if tree.readlink(here + '/driver') else None
        target = tree.readlink(driver + '/module') if driver else None
        name = normalise_module(target.rstrip('/').rsplit('/', 1)[-1]) if target else None
        if name and name not in found:
            found.append(name)
        parts.pop()
    return found


def _dm_targets(tree, rel, name):
    targets = ['dm_mod']
    uuid = tree.read(rel + '/dm/uuid', resolved=True) or ''
    for prefix, module in _DM_UUID_TARGETS:
        if uuid.startswith(prefix):
            targets.append(module)
            break
    for slave in tree.listdir(rel + '/slaves', resolved=True):
        slave_name = tree.read_names('sys/class/block/%s/dm/name' % slave) or ''
        for marker, module in _LVM_SUBVOLUMES:
            if marker in slave_name and module not in targets:
                targets.append(module)
    return targets


def block_roots(tree, name, where, _seen=None, _depth=0):
    """[(module, what)] for block device ``name`` (``sda2``, ``dm-0``, ``md0``) and everything under it."""
    seen = _seen if _seen is not None else set()
    if name in seen or _depth > _MAX_DEPTH:
        return []
    seen.add(name)
    rel = tree.resolve('sys/class/block/' + name)
    if rel is None or not tree.exists('sys/class/block/' + name):
        return []
    disk, disk_name = rel, name
    if tree.read(rel + '/partition', resolved=True) is not None:
        disk = rel.rsplit('/', 1)[0]
        disk_name = disk.rsplit('/', 1)[-1]
    roots = []

    def add(module, what):
        if (module, what) not in roots:
            roots.append((module, what))

    if tree.read(disk + '/dm/name', resolved=True) is not None or tree.exists(disk + '/dm'):
        for module in _dm_targets(tree, disk, disk_name):
            add(module, 'device-mapper target of %s under %s' % (show_name(disk_name), where))
    level = tree.read(disk + '/md/level', resolved=True)
    if level is not None:
        add('md_mod', 'md RAID %s under %s' % (show_name(disk_name), where))
        if level in _MD_LEVELS:
            add(_MD_LEVELS[level], 'md RAID %s (%s) under %s' % (show_name(disk_name), level, where))
    controllers = [disk]
    parts = disk.split('/')
    if 'nvme-subsystem' in parts:
        # an NVMe multipath head: its controllers carry the drivers
        subsys = '/'.join(parts[:parts.index('nvme-subsystem') + 2])
        controllers += [tree.resolve(subsys + '/' + entry) for entry in tree.listdir(subsys, resolved=True)
                        if re.match(r'^nvme\d+$', entry)]
    for controller in controllers:
        for module in device_driver_modules(tree, controller) if controller else []:
            add(module, 'driver of %s under %s' % (show_name(disk_name), where))
    for slave in tree.listdir(disk + '/slaves', resolved=True):
        for root in block_roots(tree, slave, where, seen, _depth + 1):
            add(*root)
    return roots


def filesystem_roots(mountpoint, fstype):
    """[(module, what)] for the filesystem ``fstype`` on ``mountpoint``: the kernel's ``fs-<type>`` alias.

    ``_module_deps.Kernel.resolve`` maps the alias per kernel (``fs-ext3`` is
    ``ext4`` on Debian), or falls back to the module named like the type (``zfs``).
    """
    return [('fs-' + fstype, 'filesystem of %s' % mountpoint)] if fstype else []


def network_roots(tree, interfaces, reasons):
    """[(module, what)] for the interfaces of the management path.

    ``reasons`` is ``interface_reasons`` output ({ifname: [why]}); each
    bridge needs ``bridge``, each bond ``bonding``, each 802.1Q VLAN ``8021q``,
    and each NIC the drivers of its device and every device above it.
    """
    roots = []
    for name in sorted(reasons):
        facts = interfaces.get(name)
        if not facts:
            continue
        why = reasons[name][0]
        modules = []
        if facts['kind'] == 'bridge':
            modules.append('bridge')
        elif facts['kind'] == 'bond':
            modules.append('bonding')
        elif facts['kind'] == 'stacked' and tree.exists('proc/net/vlan/' + name):
            modules.append('8021q')
        if facts['pci_address'] or facts.get('driver_module'):
            rel = tree.resolve('sys/class/net/%s/device' % name)
            modules += device_driver_modules(tree, rel) if rel else []
            if facts.get('driver_module') and facts['driver_module'] not in modules:
                modules.append(facts['driver_module'])
        for module in modules:
            root = (module, 'runs %s, which %s' % (show_name(name), why))
            if root not in roots:
                roots.append(root)
    return roots
