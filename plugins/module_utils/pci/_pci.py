# -*- coding: utf-8 -*-
# Copyright: contributors to vfio.passthrough
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The PCI vocabulary every other file speaks: addresses, classes, VFIO drivers, module names.

Each rule here is used by the facts, the plan and the report alike, so the
three can never disagree about what a bridge is, which functions form one
card, or whether a device is held for a VM.
"""

from __future__ import annotations

import re

__all__ = [
    'PCI_ADDRESS', 'PCI_ID', 'BRIDGE_CLASS', 'VFIO_PCI', 'PCI_STUB', 'VFIO_HOLDER_MODULES',
    'VFIO_PCI_CORE', 'C_LOCALE', 'SAME_CARD', 'OTHER_CARD', 'BRIDGE', 'slot', 'nearest_pci', 'normalise_module',
    'class_name', 'group_relation', 'is_vfio_driver', 'vfio_driver', 'off_host', 'normalise_address',
    'HEADER_NORMAL', 'HEADER_TYPE_NAMES', 'CONFIG_HEADER_BYTES', 'config_header_type', 'vfio_pci_refusal',
]

# domain:bus:slot.function, lowercase, as sysfs names devices
PCI_ADDRESS = re.compile(r'[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]\Z')
# vendor:device, lowercase (as sysfs, lspci -n and vfio-pci ids= write them)
PCI_ID = re.compile(r'[0-9a-f]{4}:[0-9a-f]{4}\Z')
# PCI-to-PCI bridges (class 0604xx) sit in the groups of the devices behind them;
# vfio ignores them when it checks that a group is viable.
BRIDGE_CLASS = '0604'
VFIO_PCI = 'vfio-pci'
PCI_STUB = 'pci-stub'
# The modules of the drivers that keep a device away from the host without
# driving it (off_host): never the device's own host driver.
VFIO_HOLDER_MODULES = ('vfio_pci', 'pci_stub')
# The library of vfio-pci and of its variant drivers (mlx5_vfio_pci, hisi_acc_vfio_pci,
# nvgrace_gpu_vfio_pci, xe_vfio_pci, ...): a driver built on it hands devices to VMs.
VFIO_PCI_CORE = 'vfio_pci_core'
# Config space header types (byte 0x0E, bit 7 is the multi-function flag): vfio-pci's probe
# (vfio_pci_core_register_device) takes a normal device only.
HEADER_NORMAL = 0
HEADER_TYPE_NAMES = {0: 'normal device', 1: 'PCI-to-PCI bridge', 2: 'CardBus bridge'}
# Unprivileged readers of sysfs config get this much; the header type lies within.
CONFIG_HEADER_BYTES = 64
# environ_update for every module.run_command: tool output parsed in one language.
C_LOCALE = {'LC_ALL': 'C'}

# How a member of a device's IOMMU group relates to the device (group_relation).
SAME_CARD = 'same card'
OTHER_CARD = 'another card'
BRIDGE = 'bridge'

# Keyed by class+subclass (4 hex digits); the programming interface does not
# change what the device is for our purposes (all USB host controllers alike).
_CLASS_NAMES = {
    '0000': 'Non-VGA unclassified device', '0001': 'VGA compatible unclassified device',
    '0100': 'SCSI storage controller', '0101': 'IDE interface', '0104': 'RAID bus controller',
    '0105': 'ATA controller', '0106': 'SATA controller', '0107': 'Serial Attached SCSI controller',
    '0108': 'Non-Volatile memory controller', '0180': 'Mass storage controller',
    '0200': 'Ethernet controller', '0207': 'InfiniBand controller', '0280': 'Network controller',
    '0300': 'VGA compatible controller', '0301': 'XGA compatible controller', '0302': '3D controller',
    '0380': 'Display controller',
    '0400': 'Multimedia video controller', '0401': 'Multimedia audio controller',
    '0403': 'Audio device', '0480': 'Multimedia controller',
    '0500': 'RAM memory', '0580': 'Memory controller',
    '0600': 'Host bridge', '0601': 'ISA bridge', '0604': 'PCI bridge', '0680': 'Bridge',
    '0700': 'Serial controller', '0780': 'Communication controller',
    '0800': 'PIC', '0805': 'SD Host controller', '0806': 'IOMMU', '0880': 'System peripheral',
    '0c03': 'USB controller', '0c05': 'SMBus', '0c80': 'Serial bus controller',
    '0d00': 'IRDA controller', '0d11': 'Bluetooth', '0d80': 'Wireless controller',
    '1080': 'Encryption controller', '1101': 'Performance counters', '1180': 'Signal processing controller',
    '1200': 'Processing accelerators',
}
_BASE_CLASS_NAMES = {
    '01': 'Mass storage controller', '02': 'Network controller', '03': 'Display controller',
    '04': 'Multimedia controller', '05': 'Memory controller', '06': 'Bridge',
    '07': 'Communication controller', '08': 'Generic system peripheral', '09': 'Input device controller',
    '0a': 'Docking station', '0b': 'Processor', '0c': 'Serial bus controller', '0d': 'Wireless controller',
    '0e': 'Intelligent controller', '0f': 'Satellite communications controller',
    '10': 'Encryption controller', '11': 'Signal processing controller', '12': 'Processing accelerators',
    '13': 'Non-Essential Instrumentation', '40': 'Coprocessor', 'ff': 'Unassigned class',
}


def slot(address):
    """``0000:03:00.1`` -> ``0000:03:00``: the functions of one card share it."""
    return address.rpartition('.')[0]


def nearest_pci(path):
    """The last PCI address among the components of a physical sysfs path, or None."""
    for part in reversed(path.split('/')):
        if PCI_ADDRESS.match(part):
            return part
    return None


def normalise_module(name):
    """A kernel module or parameter name as the kernel compares it: ``-`` and ``_`` are one character."""
    return name.replace('-', '_') if name else name


def class_name(class_):
    """Human name for a 6-hex-digit PCI class code such as ``020000``."""
    return (_CLASS_NAMES.get(class_[:4]) or _BASE_CLASS_NAMES.get(class_[:2])
            or 'Unknown class %s' % class_[:4])


def group_relation(address, peer, devices):
    """How ``peer``, a member of ``address``'s IOMMU group, relates to it: SAME_CARD, OTHER_CARD or BRIDGE.

    ``devices`` maps addresses to facts with a ``class``. A PCI bridge never
    stops its group from going to a VM; another function of the same card
    goes along with the device; anything else (also a peer the facts do not
    know) belongs to another card, so the group is not isolated.
    """
    facts = devices.get(peer)
    if facts is None:
        return OTHER_CARD
    if (facts.get('class') or '').startswith(BRIDGE_CLASS):
        return BRIDGE
    return SAME_CARD if slot(peer) == slot(address) else OTHER_CARD


def is_vfio_driver(driver, module, core_users):
    """Whether PCI driver ``driver`` (its module ``module`` or None) holds devices for VMs.

    ``core_users`` are the modules that depend on vfio_pci_core (its holders in
    sysfs, or modules.dep): the variant drivers, decided by what they are built
    on rather than by a list of names that every kernel release outgrows.
    vfio-pci counts by name as well, since it may be built in.
    """
    return driver == VFIO_PCI or (module is not None and normalise_module(module) in core_users)


def vfio_driver(device):
    """The VFIO driver holding ``device`` for a VM (vfio-pci or one of its variants), or None.

    Facts of M(vfio.passthrough.iommu_facts) carry ``vfio_driver``; facts
    gathered before it existed only know vfio-pci by name.
    """
    if 'vfio_driver' in device:
        return device['vfio_driver']
    return VFIO_PCI if device.get('driver') == VFIO_PCI else None


def off_host(device):
    """True when no host driver drives ``device`` (no driver, pci-stub or a VFIO driver): vfio accepts such a peer."""
    driver = device.get('driver')
    return driver is None or driver == PCI_STUB or bool(vfio_driver(device))


# Addresses as administrators type them: lspci drops the domain (01:00.0), Proxmox's
# hostpci names a whole device (01:00) for every function; both mean something exact on one host.
# [domain:]bus:slot[.function]; a slot is 5 bits, a function 3.
_TYPED = re.compile(r'(?:([0-9A-Fa-f]{4}):)?([0-9A-Fa-f]{2}):([01][0-9A-Fa-f])(?:\.([0-7]))?\Z')


def normalise_address(value, existing, whole_device=True):
    """The canonical addresses ``value`` stands for, and a note when it was not written canonically.

    ``existing`` holds the host's addresses (``0000:01:00.0``, lowercase):
    a whole device (``01:00``) stands for every one of its functions found
    there, unless ``whole_device`` is false (a request for exactly one
    function). Returns ``(addresses, note or None)``; raises ValueError naming
    the value when it is no PCI address, or a whole device without functions
    or where one function is asked for.
    """
    text = value if isinstance(value, str) else ''
    match = _TYPED.match(text)
    if match is None:
        hint = ''
        if (isinstance(value, (int, float)) and not isinstance(value, bool)) or re.match(r'\d+(\.\d+)?\Z', text):
            # YAML 1.1 reads unquoted 10:00.0 as the base-60 number 600.0
            hint = '; quote addresses in YAML, which reads an unquoted 10:00.0 as a number'
        raise ValueError('%r is not a PCI address: expected domain:bus:slot.function like 0000:01:00.0, '
                         'bus:slot.function like 01:00.0 (lspci) or bus:slot like 01:00 for every function '
                         'of a device (Proxmox hostpci)%s' % (value, hint))
    domain, bus, device_number, function = match.groups()
    device = ('%s:%s:%s' % (domain or '0000', bus, device_number)).lower()
    if function is not None:
        address = '%s.%s' % (device, function)
        return [address], None if address == value else '%r means %s' % (value, address)
    if not whole_device:
        raise ValueError('%r names the whole device %s, not one function: write its function too, like %s.0 '
                         '(a multi-port card has one function per port)' % (value, device, device))
    functions = sorted(a for a in existing if slot(a) == device)
    if not functions:
        raise ValueError('%r names the whole device %s, which has no function on this host (see lspci -D)'
                         % (value, device))
    return functions, '%r means every function of device %s: %s' % (value, device, ', '.join(functions))


def config_header_type(config):
    """The header type in a function's config space (the bytes of sysfs ``config``), or None when unknown.

    Byte 0x0E without its multi-function bit 7, as the kernel keeps it in
    ``pdev->hdr_type``. Unknown: no bytes, too few, or 0xff there, which is
    what a function that does not answer reads as (a VF's vendor ID reads
    0xffff by design, so that is no sign of trouble).
    """
    if not isinstance(config, (bytes, bytearray)) or len(config) <= 0x0E or config[0x0E] == 0xFF:
        return None
    return config[0x0E] & 0x7F


def vfio_pci_refusal(address, device):
    """Why vfio-pci's probe refuses ``device`` (its facts), or None when it would take it.

    The probe refuses every config header type but a normal one (bridges, CardBus)
    and a physical function whose VFs are enabled (``pci_num_vf``). Judged by the
    header type read from config space, not by the class code, and by
    ``sriov_numvfs``. An unknown header type is no refusal: header_type_unknown says so.
    """
    header = device.get('header_type')
    if header is not None and header != HEADER_NORMAL:
        return ('%s has config header type %d (%s): vfio-pci refuses every header type but 0 (normal device)'
                % (address, header, HEADER_TYPE_NAMES.get(header, 'undefined')))
    vfs = device.get('sriov_numvfs') or 0
    if vfs > 0:
        return ('%s is an SR-IOV physical function with %d VF%s enabled (sriov_numvfs): vfio-pci refuses a PF whose '
                'VFs are enabled; set its VF count to 0 first (sriov_numvfs, the driver\'s max_vfs, '
                'or pcie_passthrough_sriov)' % (address, vfs, '' if vfs == 1 else 's'))
    return None
