# -*- coding: utf-8 -*-
# Copyright: contributors to vfio.passthrough
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""``ansible_facts.iommu``: the IOMMU state and every PCI device as iommu_facts reports them.

The assembly over _pci_devices and _net_interfaces, and pure parsers for the
procfs files and the kernel log lines it consults where sysfs is silent.
"""

from __future__ import annotations

import re

from ansible_collections.vfio.passthrough.plugins.module_utils.boot._bootloader import SYSTEMD_BOOT_GUID, booted_loader
from ansible_collections.vfio.passthrough.plugins.module_utils.boot._cmdline import kernel_args
from ansible_collections.vfio.passthrough.plugins.module_utils.pci._iomem import (
    READABLE, find_framebuffers, framebuffer_in_bars, iomem_state, parse_iomem, parse_resource,
)
from ansible_collections.vfio.passthrough.plugins.module_utils.pci._kconfig import kernel_options
from ansible_collections.vfio.passthrough.plugins.module_utils.pci._kernel_names import show_name
from ansible_collections.vfio.passthrough.plugins.module_utils.pci._net_interfaces import read_net_interfaces
from ansible_collections.vfio.passthrough.plugins.module_utils.pci._pci import (
    OTHER_CARD, VFIO_PCI, group_relation, normalise_module, off_host,
)
from ansible_collections.vfio.passthrough.plugins.module_utils.pci._pci_devices import (
    modules_for_modalias, parse_pci_aliases, read_pci_devices,
)
from ansible_collections.vfio.passthrough.plugins.module_utils.pci._sysfs import as_tree
from ansible_collections.vfio.passthrough.plugins.module_utils.pci._unsafe_interrupts import read_unsafe_interrupts

__all__ = [
    'parse_interrupt_remapping', 'interrupt_remapping_evidence', 'parse_cpu_vendor', 'parse_cmdline',
    'kernel_log_facts', 'gather_iommu_facts',
]

_IR_CHIP = re.compile(r'\sIR-[A-Z]')
_PLAIN_CHIP = re.compile(r'\s(?:IO-APIC|PCI-MSI|PCI-MSIX)\b')
_CPU_VENDORS = {'GenuineIntel': 'intel', 'AuthenticAMD': 'amd', 'HygonGenuine': 'amd'}


def _group_types(tree):
    """{group number: default domain type or None} for every IOMMU group."""
    types = {}
    for name in tree.listdir('sys/kernel/iommu_groups'):
        if name.isdigit():
            base = tree.resolve('sys/kernel/iommu_groups/' + name)
            types[int(name)] = tree.read(base + '/type', resolved=True) if base is not None else None
    return types


def interrupt_remapping_evidence(text):
    """(True, the first IR- chip line) or (False, the first plain chip line) of /proc/interrupts, else (None, None)."""
    plain = None
    for number, line in enumerate((text or '').splitlines(), 1):
        if _IR_CHIP.search(line):
            return True, '/proc/interrupts line %d: %s' % (number, ' '.join(line.split()))
        if plain is None and _PLAIN_CHIP.search(line):
            plain = '/proc/interrupts line %d: %s' % (number, ' '.join(line.split()))
    return (False, plain) if plain else (None, None)


def parse_interrupt_remapping(text):
    """True when /proc/interrupts shows IR- chips, False when it shows plain ones, else None."""
    return interrupt_remapping_evidence(text)[0]


def parse_cpu_vendor(text):
    """``intel``/``amd`` from /proc/cpuinfo's vendor_id, the raw id for others, None if absent."""
    for line in (text or '').splitlines():
        key, sep, value = line.partition(':')
        if sep and key.strip() == 'vendor_id':
            value = value.strip()
            return _CPU_VENDORS.get(value, value.lower() or None)
    return None


def parse_cmdline(text):
    """The kernel's part of a command line (before a bare '--') as a list of (key, value-or-None), in order."""
    return kernel_args(text)


def kernel_log_facts(text):
    """What the kernel log says where sysfs and procfs are silent.

    Returns {'interrupt_remapping': bool|None, 'interrupt_remapping_line': the
    line that decided it, 'default_domain': the line "iommu: Default domain
    type: ..." or None, 'tables': set of ACPI table names seen}. "DMAR: IOMMU
    enabled" is deliberately ignored: a machine without an IOMMU prints it too
    when booted with intel_iommu=on.
    """
    remapping, remapping_line, default_domain = None, None, None
    tables = set()
    for line in (text or '').splitlines():
        if ('DMAR-IR: Enabled IRQ remapping' in line or 'AMD-Vi: Interrupt remapping enabled' in line):
            remapping, remapping_line = True, line.strip()
        elif remapping is None and ('IRQ remapping was disabled' in line
                                    or 'Failed to enable irq remapping' in line
                                    or 'Not enabling interrupt remapping' in line):
            remapping, remapping_line = False, line.strip()
        elif 'iommu: Default domain type: ' in line:
            default_domain = line.strip()
        match = re.search(r'ACPI: (DMAR|IVRS) 0x', line)
        if match:
            tables.add(match.group(1))
    return {'interrupt_remapping': remapping, 'interrupt_remapping_line': remapping_line,
            'default_domain': default_domain, 'tables': tables}


def _isolated(address, peers, devices):
    """In an IOMMU group, and no member of it belongs to another card."""
    if not address or devices[address]['iommu_group'] is None:
        return False
    return all(group_relation(address, peer, devices) != OTHER_CARD for peer in peers)


def _passthrough_mode(groups, cmdline_args, enabled, log):
    """(True when DMA passes through untranslated (iommu=pt), False when translated, None when unknown; evidence).

    The default domain type most groups carry decides: a few groups may be
    forced to DMA (untrusted devices) while the host default is identity.
    Without group types (kernels before 5.11), the kernel log's "iommu:
    Default domain type:" line, then the command line's last iommu=.
    """
    if not enabled:
        return None, None
    counts = {}
    for group in groups.values():
        if group['type']:
            counts[group['type']] = counts.get(group['type'], 0) + 1
    if counts:
        most = max(counts, key=lambda t: (counts[t], t == 'identity'))
        return most == 'identity', '/sys/kernel/iommu_groups/*/type: %s' % ', '.join(
            '%s in %d of %d groups' % (t, counts[t], len(groups)) for t in sorted(counts, key=lambda t: -counts[t]))
    facts = log()
    if facts and facts['default_domain']:
        return 'Passthrough' in facts['default_domain'], 'kernel log: %s' % facts['default_domain']
    iommu = [v for k, v in cmdline_args if k == 'iommu']
    if iommu:
        return iommu[-1] == 'pt', '/proc/cmdline: iommu=%s' % iommu[-1]
    return None, None


def _boot_path(tree, cmdline):
    efivars = 'sys/firmware/efi/efivars'
    names = tree.listdir(efivars)
    info = 'LoaderInfo-' + SYSTEMD_BOOT_GUID
    return booted_loader(tree.exists('sys/firmware/efi'), names, cmdline,
                         tree.read(efivars + '/' + info) if info in names else None)


_DISPLAY_CLASS = '03'
# The per-device VFIO character devices (/dev/vfio/devices/vfioN) exist only where this is y.
VFIO_DEVICE_CDEV = 'CONFIG_VFIO_DEVICE_CDEV'


def _boot_framebuffers(tree, devices):
    """(iomem state, {address: framebuffer facts}) for the display devices whose BAR holds the boot framebuffer.

    The resource files are read only when /proc/iomem shows a framebuffer at all.
    """
    text = tree.read('proc/iomem')
    ranges = parse_iomem(text)
    state = iomem_state(text, ranges)
    framebuffers = find_framebuffers(ranges) if state == READABLE else []
    held = {}
    for address in sorted(devices) if framebuffers else ():
        if (devices[address]['class'] or '').startswith(_DISPLAY_CLASS):
            found = framebuffer_in_bars(parse_resource(tree.read(devices[address]['path'] + '/resource', resolved=True)),
                                        framebuffers)
            if found:
                held[address] = found
    return state, held


def _variant_driver_guests(tree, devices, node):
    """{address: [{'where', 'driver'}]} for each device on a vfio-pci variant driver: the guest settings naming it.

    /etc/pve is read only when such a device exists.
    """
    variants = [a for a in sorted(devices) if devices[a]['vfio_driver'] not in (None, VFIO_PCI)]
    if not variants:
        return {}
    # Imported here: the guest configuration readers are needed on few hosts, and every
    # run of the module would otherwise pay their import (compiled anew in each AnsiballZ run).
    from ansible_collections.vfio.passthrough.plugins.module_utils.proxmox._pve_config import guest_pci_settings
    from ansible_collections.vfio.passthrough.plugins.module_utils.proxmox._pve_guests import read_guest_configs
    configs, mapping_text = read_guest_configs(tree, node)
    settings = guest_pci_settings(configs, mapping_text, list(devices), node)
    return {address: [{'where': item['where'], 'driver': item['options'].get('driver')}
                      for item in settings.get(address, [])] for address in variants}


def gather_iommu_facts(root, kernel_log=None, interfaces=None, node=None):
    """Build ``ansible_facts.iommu`` (without host_critical, which the caller adds).

    ``kernel_log`` is a callable returning the kernel log text; it is called
    at most once and only when sysfs/procfs cannot answer. Pass None for a
    non-live root, whose log we cannot see. ``interfaces`` (from
    read_net_interfaces) saves reading sys/class/net twice. ``node`` is this
    Proxmox node's name, for its guests' hostpci settings (None: every node's).
    """
    tree = as_tree(root)
    log_cache = []

    def log():
        if kernel_log is None:
            return None
        if not log_cache:
            log_cache.append(kernel_log_facts(kernel_log()))
        return log_cache[0]

    cmdline = tree.read('proc/cmdline') or ''
    args = parse_cmdline(cmdline)
    devices = read_pci_devices(tree)
    groups = {number: {'devices': [], 'type': type_} for number, type_ in _group_types(tree).items()}
    for address in sorted(devices):
        if devices[address]['iommu_group'] in groups:
            groups[devices[address]['iommu_group']]['devices'].append(address)
    if interfaces is None:
        interfaces = read_net_interfaces(tree)
    units = tree.listdir('sys/class/iommu')
    enabled = bool(units) or any(g['devices'] for g in groups.values())

    tables_dir = 'sys/firmware/acpi/tables'
    table_names = set(tree.listdir(tables_dir))
    if table_names:
        tables = table_names & {'DMAR', 'IVRS'}
    else:
        # tables hidden (no ACPI dir, or not readable): the boot log lists them
        facts = log()
        tables = facts['tables'] if facts else None
    cpu_vendor = parse_cpu_vendor(tree.read('proc/cpuinfo'))
    if tables:
        vendor = 'intel' if 'DMAR' in tables else 'amd'
    elif any(u.startswith('dmar') for u in units):
        vendor = 'intel'
    elif any(u.startswith('ivhd') for u in units):
        vendor = 'amd'
    else:
        vendor = cpu_vendor if cpu_vendor in ('intel', 'amd') else None

    remapping, remapping_evidence = interrupt_remapping_evidence(tree.read('proc/interrupts'))
    if remapping is None:
        facts = log()
        if facts and facts['interrupt_remapping'] is not None:
            remapping, remapping_evidence = facts['interrupt_remapping'], 'kernel log: %s' % facts['interrupt_remapping_line']
    unsafe, unsafe_evidence = read_unsafe_interrupts(tree, args)
    passthrough, passthrough_evidence = _passthrough_mode(groups, args, enabled, log)

    netdevs = {}
    for ifname, facts in interfaces.items():
        if facts['pci_address']:
            netdevs.setdefault(facts['pci_address'], []).append(show_name(ifname))

    iomem, framebuffers = _boot_framebuffers(tree, devices)

    # A device on vfio-pci, a variant of it, pci-stub or no driver no longer shows
    # which driver the host would give it; modules.alias does, as for lspci -k.
    aliases = None
    kernel = tree.read('proc/sys/kernel/osrelease')
    members = {number: sorted(group['devices']) for number, group in groups.items()}
    out_devices = {}
    for address in sorted(devices):
        raw = devices[address]
        group = raw['iommu_group']
        peers = [a for a in members.get(group, []) if a != address] if group is not None else []
        entry = dict(raw)
        del entry['path']
        if off_host(raw):
            if aliases is None:
                aliases = parse_pci_aliases(tree.read('lib/modules/%s/modules.alias' % kernel) if kernel else None)
            entry['kernel_modules'] = modules_for_modalias(tree.read(raw['path'] + '/modalias', resolved=True), aliases)
        else:
            entry['kernel_modules'] = [raw['driver_module'] or normalise_module(raw['driver'])]
        entry.update({
            'group_peers': peers,
            'isolated': _isolated(address, peers, devices),
            'netdevs': netdevs.get(address, []),
            'host_critical': [],
            'boot_framebuffer': framebuffers.get(address),
        })
        out_devices[address] = entry

    acs = [v for k, v in args if k == 'pcie_acs_override']
    return {
        'enabled': enabled,
        'vendor': vendor,
        'cpu_vendor': cpu_vendor,
        'firmware_support': bool(tables) if tables is not None else None,
        'interrupt_remapping': remapping,
        'allow_unsafe_interrupts': unsafe,
        'passthrough_mode': passthrough,
        'evidence': {
            'interrupt_remapping': remapping_evidence,
            'allow_unsafe_interrupts': unsafe_evidence,
            'passthrough_mode': passthrough_evidence,
        },
        'acs_override': (acs[-1] or '') if acs else None,
        'cmdline': cmdline,
        'boot_path': _boot_path(tree, cmdline),
        'kernel': kernel,
        'iommu_units': units,
        'groups': {str(n): {'devices': members[n], 'type': groups[n]['type']} for n in sorted(groups)},
        'devices': out_devices,
        'vfio_bound': [a for a in sorted(devices) if devices[a]['vfio_driver']],
        'iomem': iomem,
        'variant_driver_guests': _variant_driver_guests(tree, devices, node),
        'vfio_device_cdev': kernel_options(tree, VFIO_DEVICE_CDEV),
    }
