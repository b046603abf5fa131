# -*- coding: utf-8 -*-
# Copyright: contributors to vfio.passthrough
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Network interfaces from sys/class/net, and which module drives what right now."""

from __future__ import annotations

from ansible_collections.vfio.passthrough.plugins.module_utils.pci._kernel_names import name_fields, show_name
from ansible_collections.vfio.passthrough.plugins.module_utils.pci._pci import nearest_pci, normalise_module
from ansible_collections.vfio.passthrough.plugins.module_utils.pci._pci_devices import read_pci_devices
from ansible_collections.vfio.passthrough.plugins.module_utils.pci._sysfs import as_tree, link_name

__all__ = ['read_net_interfaces', 'module_usage']


def read_net_interfaces(root):
    """{ifname: facts} for every interface in sys/class/net.

    Facts: pci_address (nearest PCI device, None for virtual interfaces),
    driver_module (module of the interface's own driver: ``virtio_net`` for a
    virtio NIC, ``e1000e`` for an Intel one), lower (interfaces below it),
    ports (bridge ports), slaves (bond slaves), kind (bridge/bond/stacked/device/virtual).
    Names, keys and members alike, are ``_kernel_names.decode_name`` strings:
    show them with ``show_name`` in results and messages.
    """
    tree = as_tree(root)
    if tree.interfaces is not None:
        return tree.interfaces
    result = {}
    for name in tree.listdir('sys/class/net', resolved=True):
        rel = tree.resolve('sys/class/net/' + name)
        if rel is None:
            continue
        entries = tree.entries(rel)
        lower = sorted(e[6:] for e in entries if e.startswith('lower_'))
        ports = tree.listdir(rel + '/brif', resolved=True) if 'brif' in entries else []
        slaves = []
        if 'bonding' in entries:
            slaves = name_fields(tree.read_names(rel + '/bonding/slaves', resolved=True) or '')
        address = nearest_pci(rel) if 'device' in entries else None
        module = None
        if 'device' in entries:
            device = tree.resolve(rel + '/device')
            drv = tree.readlink(device + '/driver') if device else None
            if drv:
                drv_dir = tree.resolve(device + '/driver')
                mod = tree.readlink(drv_dir + '/module') if drv_dir else None
                module = normalise_module(link_name(mod))
        if 'bridge' in entries or 'brif' in entries:
            kind = 'bridge'
        elif 'bonding' in entries:
            kind = 'bond'
        elif lower:
            kind = 'stacked'
        elif address:
            kind = 'device'
        else:
            kind = 'virtual'
        result[name] = {
            'pci_address': address, 'driver_module': module, 'lower': lower,
            'ports': ports, 'slaves': slaves, 'kind': kind,
        }
    tree.interfaces = result
    return result


def module_usage(root, devices=None, interfaces=None):
    """{module: [{'address': pci, 'interface': ifname or None}]}: what each module drives now.

    A PCI device counts for its driver's module (``virtio_pci``, ``e1000e``;
    built-in drivers have no module and are left out). A network interface
    also counts for its own driver's module when that differs (``virtio_net``
    on top of ``virtio_pci``). Names use ``_``; interfaces are shown (``show_name``).
    """
    tree = as_tree(root)
    if devices is None:
        devices = read_pci_devices(tree)
    if interfaces is None:
        interfaces = read_net_interfaces(tree)
    by_address = {}
    for ifname, facts in interfaces.items():
        if facts['pci_address']:
            by_address.setdefault(facts['pci_address'], []).append((ifname, facts['driver_module']))
    usage = {}
    for address in sorted(devices):
        module = devices[address]['driver_module']
        nics = by_address.get(address, [])
        if module:
            for ifname in ([nic[0] for nic in nics] or [None]):
                usage.setdefault(module, []).append({'address': address, 'interface': _shown(ifname)})
        for ifname, nic_module in nics:
            if nic_module and nic_module != module:
                usage.setdefault(nic_module, []).append({'address': address, 'interface': show_name(ifname)})
    return usage


def _shown(ifname):
    return show_name(ifname) if ifname is not None else None
