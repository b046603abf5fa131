# -*- coding: utf-8 -*-
# Copyright: contributors to vfio.passthrough
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""PCI functions from sys/bus/pci/devices, and the modules modules.alias offers for them."""

from __future__ import annotations

import fnmatch
import re

from ansible_collections.vfio.passthrough.plugins.module_utils.host_safety._module_deps import parse_modules_dep
from ansible_collections.vfio.passthrough.plugins.module_utils.pci._pci import (
    CONFIG_HEADER_BYTES, PCI_ADDRESS, VFIO_HOLDER_MODULES, VFIO_PCI, VFIO_PCI_CORE, class_name, config_header_type,
    is_vfio_driver, normalise_module,
)
from ansible_collections.vfio.passthrough.plugins.module_utils.pci._sysfs import as_tree, link_name

__all__ = ['read_pci_devices', 'vfio_core_users', 'parse_pci_aliases', 'modules_for_modalias']

# The kernel prints modalias from the same fields as the vendor, device,
# subsystem_* and class files: one read instead of five.
_MODALIAS = re.compile(r'^pci:v0000([0-9A-Fa-f]{4})d0000([0-9A-Fa-f]{4})sv0000([0-9A-Fa-f]{4})'
                       r'sd0000([0-9A-Fa-f]{4})bc([0-9A-Fa-f]{2})sc([0-9A-Fa-f]{2})i([0-9A-Fa-f]{2})$')

_VGA_CLASS = '0300'


def _hex_id(text):
    """``0x8086`` -> ``8086``; None stays None."""
    if text is None:
        return None
    text = text.lower()
    return text[2:] if text.startswith('0x') else text


def _int_or_none(text):
    if text is None:  # most devices lack the attribute: no TypeError raised and caught for each
        return None
    try:
        return int(text)
    except (TypeError, ValueError):
        return None


def _driver_modules(tree, bus):
    """driver name -> module name for every driver registered on ``bus`` (None = built in)."""
    base = 'sys/bus/%s/drivers' % bus
    result = {}
    for name in tree.listdir(base, resolved=True):
        target = tree.readlink('%s/%s/module' % (base, name))
        result[name] = normalise_module(link_name(target))
    return result


def vfio_core_users(tree):
    """The modules built on vfio_pci_core, as the tree shows them.

    A loaded variant driver's module holds vfio_pci_core, so on a live host its
    ``holders`` answer. Without vfio_pci_core in sys/module no variant driver
    is loaded either. Only a tree with no sys/module at all (a partial copy)
    falls back to depmod's modules.dep of its running kernel.
    """
    core = 'sys/module/' + VFIO_PCI_CORE
    if tree.exists(core):
        return {normalise_module(name) for name in tree.listdir(core + '/holders')}
    if tree.exists('sys/module'):
        return set()
    kernel = tree.read('proc/sys/kernel/osrelease')
    deps = parse_modules_dep(tree.read('lib/modules/%s/modules.dep' % kernel) if kernel else None)
    return {module for module, needs in deps.items() if VFIO_PCI_CORE in needs}


def read_pci_devices(root):
    """{address: raw facts} for every PCI function in sys/bus/pci/devices.

    Each device's group comes from its own ``iommu_group`` link: one readlink
    instead of a listing of every group's devices/ directory.

    Raw facts: vendor_id, device_id, subsystem_vendor_id, subsystem_device_id,
    class, class_name, driver, driver_module, vfio_driver (the driver when it
    holds the device for a VM: vfio-pci or a variant), iommu_group,
    reset_methods, sriov_totalvfs, sriov_numvfs, virtfns (an SR-IOV physical
    function's VFs by index, from its ``virtfnN`` links), physfn (a VF's
    physical function), boot_vga, header_type (config space byte 0x0E without
    its multi-function bit; None when ``config`` cannot be read), path
    (physical path below root).
    """
    tree = as_tree(root)
    modules = _driver_modules(tree, 'pci')
    core_users = None  # read once, and only when a driver other than vfio-pci needs judging
    vfio_drivers = {}
    devices = {}
    for address in tree.listdir('sys/bus/pci/devices', resolved=True):
        if not PCI_ADDRESS.match(address):
            continue
        rel = tree.resolve('sys/bus/pci/devices/' + address)
        if rel is None:
            continue

        # No listing of the device directory (dozens of entries on a real
        # host): a missing attribute or link costs one failed syscall instead.
        def attr(name, rel=rel):
            return tree.read(rel + '/' + name, resolved=True)

        target = tree.readlink(rel + '/driver')
        driver = link_name(target)
        module = modules.get(driver) if driver else None
        if driver and driver not in vfio_drivers:
            if core_users is None and module and driver != VFIO_PCI:
                core_users = vfio_core_users(tree)
            vfio_drivers[driver] = is_vfio_driver(driver, module, core_users or ())
        group = _int_or_none(link_name(tree.readlink(rel + '/iommu_group')))
        modalias = attr('modalias')
        match = _MODALIAS.match(modalias) if modalias else None
        if match:
            ids = ''.join(match.groups()).lower()
            vendor, device, sub_vendor, sub_device, class_ = ids[:4], ids[4:8], ids[8:12], ids[12:16], ids[16:]
        else:
            vendor, device = _hex_id(attr('vendor')), _hex_id(attr('device'))
            sub_vendor, sub_device = _hex_id(attr('subsystem_vendor')), _hex_id(attr('subsystem_device'))
            class_ = (_hex_id(attr('class')) or '').rjust(6, '0')
        reset = attr('reset_method')
        # The kernel shows sriov_numvfs only beside sriov_totalvfs (an SR-IOV
        # physical function) and boot_vga only on VGA devices: no failed open
        # for the thousands of devices without them.
        total_vfs = _int_or_none(attr('sriov_totalvfs'))
        num_vfs = _int_or_none(attr('sriov_numvfs')) if total_vfs is not None else None
        # virtfnN are the PF's links to its VFs, numbered from 0; a VF's own physfn
        # link is set from them below, so devices without SR-IOV cost no readlink.
        virtfns = [link_name(tree.readlink('%s/virtfn%d' % (rel, index))) for index in range(num_vfs or 0)]
        devices[address] = {
            'vendor_id': vendor,
            'device_id': device,
            'subsystem_vendor_id': sub_vendor,
            'subsystem_device_id': sub_device,
            'class': class_,
            'class_name': class_name(class_),
            'driver': driver,
            'driver_module': module,
            'vfio_driver': driver if driver and vfio_drivers[driver] else None,
            'iommu_group': group,
            'reset_methods': reset.split() if reset else [],
            'sriov_totalvfs': total_vfs,
            'sriov_numvfs': num_vfs,
            'virtfns': virtfns,
            'physfn': None,
            'boot_vga': class_.startswith(_VGA_CLASS) and attr('boot_vga') == '1',
            'header_type': config_header_type(tree.read_bytes(rel + '/config', CONFIG_HEADER_BYTES, resolved=True)),
            'path': rel,
        }
    for address, device in devices.items():
        for vf in device['virtfns']:
            if vf in devices:
                devices[vf]['physfn'] = address
    return devices


def parse_pci_aliases(text):
    """{vendor field or '*': [(pattern, module)]} from modules.alias, PCI lines only.

    Indexed by the literal vendor part (``v00008086``) so a lookup compares a
    device with its vendor's patterns only, not with every PCI alias.
    """
    index = {}
    for line in (text or '').splitlines():
        if not line.startswith('alias pci:'):
            continue
        parts = line.split()
        if len(parts) != 3:
            continue
        pattern, module = parts[1], normalise_module(parts[2])
        vendor = pattern[4:13]
        key = vendor if len(vendor) == 9 and not any(c in vendor for c in '*?[') else '*'
        index.setdefault(key, []).append((pattern, module))
    return index


def modules_for_modalias(modalias, aliases):
    """Modules whose PCI alias matches ``modalias`` (like lspci -k's "Kernel modules")."""
    if not modalias:
        return []
    found = []
    for pattern, module in aliases.get(modalias[4:13], []) + aliases.get('*', []):
        if module not in found and module not in VFIO_HOLDER_MODULES and fnmatch.fnmatchcase(modalias, pattern):
            found.append(module)
    return found
