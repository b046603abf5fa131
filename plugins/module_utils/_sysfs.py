# -*- coding: utf-8 -*-
# Copyright: contributors to vfio.passthrough
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Read sysfs and procfs under a root directory: PCI devices, IOMMU groups, NICs, disks.

Everything here reads a tree below ``root`` (``/`` on a live host, a chroot or a
fake tree in tests). Symlinks are resolved TEXTUALLY against ``root``: absolute
targets are re-rooted and ``..`` stops at ``root``, so a tree under ``/mnt``
can never make us read the live ``/sys``. Files inside resolved directories are
opened with O_NOFOLLOW for the same reason.

Public functions accept the root as a string or a ``SysfsTree``; passing one
tree to several readers shares its link cache, so each link is read once.
"""

from __future__ import annotations

import fnmatch
import os
import re

__all__ = [
    'SysfsTree', 'PCI_ADDRESS', 'class_name', 'read_pci_devices', 'read_iommu_groups',
    'read_net_interfaces', 'module_usage', 'block_pci_addresses', 'block_devices_by_dm_name',
    'parse_interrupt_remapping', 'parse_cpu_vendor', 'parse_cmdline', 'kernel_log_facts',
    'gather_iommu_facts', 'normalise_module',
]

PCI_ADDRESS = re.compile(r'^[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]$')
_MAX_LINK_HOPS = 40  # the kernel's own limit (MAXSYMLINKS)

_O_READ = os.O_RDONLY | getattr(os, 'O_NOFOLLOW', 0) | getattr(os, 'O_CLOEXEC', 0)

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

# The kernel prints modalias from the same fields as the vendor, device,
# subsystem_* and class files: one read instead of five.
_MODALIAS = re.compile(r'^pci:v0000([0-9A-Fa-f]{4})d0000([0-9A-Fa-f]{4})sv0000([0-9A-Fa-f]{4})'
                       r'sd0000([0-9A-Fa-f]{4})bc([0-9A-Fa-f]{2})sc([0-9A-Fa-f]{2})i([0-9A-Fa-f]{2})$')
_IR_CHIP = re.compile(r'\sIR-[A-Z]')
_PLAIN_CHIP = re.compile(r'\s(?:IO-APIC|PCI-MSI|PCI-MSIX)\b')
_CPU_VENDORS = {'GenuineIntel': 'intel', 'AuthenticAMD': 'amd', 'HygonGenuine': 'amd'}
_BRIDGE_CLASS = '0604'


def normalise_module(name):
    """Module names as modprobe treats them: ``-`` and ``_`` are the same character."""
    return name.replace('-', '_')


def class_name(class_):
    """Human name for a 6-hex-digit PCI class code such as ``020000``."""
    return (_CLASS_NAMES.get(class_[:4]) or _BASE_CLASS_NAMES.get(class_[:2])
            or 'Unknown class %s' % class_[:4])


class SysfsTree:
    """Textual symlink resolution and cached reads below one root directory."""

    def __init__(self, root='/'):
        self.root = os.path.abspath(root or '/')
        self.live = self.root == '/'
        self._prefix = '' if self.live else self.root
        self._links = {}     # relative path -> link target text, or None for "not a link"
        self._resolved = {}  # relative path -> physical relative path (None: link loop)
        self._entries = {}   # physical directory -> frozenset of names
        self._symlinks = {}  # physical directory -> frozenset of the names that are symlinks
        self.interfaces = None  # read_net_interfaces() of this tree, read once

    def path(self, rel):
        return self._prefix + '/' + rel if rel else self.root

    def entries(self, rel):
        """Names in the physical directory ``rel``, listed once; empty when absent."""
        try:
            return self._entries[rel]
        except KeyError:
            pass
        names, links = [], []
        try:
            # scandir tells links from the rest without a syscall per name (d_type),
            # so readlink() need not ask the kernel about plain files and directories.
            with os.scandir(self.path(rel)) as listing:
                for entry in listing:
                    names.append(entry.name)
                    if _maybe_link(entry):
                        links.append(entry.name)
        except OSError:
            names, links = [], []
        found = frozenset(names)
        self._entries[rel] = found
        self._symlinks[rel] = frozenset(links)
        return found

    def readlink(self, rel):
        """The target text of the symlink ``rel`` (its directory part must be physical), or None."""
        try:
            return self._links[rel]
        except KeyError:
            pass
        head, _sep, tail = rel.rpartition('/')
        links = self._symlinks.get(head)
        target = None
        # a directory already listed tells which names are links: no syscall for the others
        if links is None or tail in links:
            try:
                target = os.readlink(self.path(rel))
            except OSError:
                target = None
        self._links[rel] = target
        return target

    def resolve(self, rel):
        """Resolve every symlink in ``rel`` inside root; return the physical relative path.

        Returns None for a link loop. A missing component resolves to itself,
        so the caller's later read of it fails normally. Results are cached:
        thousands of devices share the same few parent directories.
        """
        try:
            return self._resolved[rel]
        except KeyError:
            pass
        head, _sep, tail = rel.strip('/').rpartition('/')
        base = self.resolve(head) if head else ''
        result = None if base is None else self._step(base, tail, [0])
        self._resolved[rel] = result
        return result

    def _step(self, base, name, hops):
        """The physical path of ``name`` in the physical directory ``base`` (None: link loop)."""
        if name in ('', '.'):
            return base
        if name == '..':
            return base.rpartition('/')[0]
        here = base + '/' + name if base else name
        target = self.readlink(here)
        if target is None:
            return here
        return self._follow(base, target, hops)

    def _follow(self, base, target, hops):
        """Walk link ``target`` from the link's physical directory ``base`` (from root when absolute).

        Components are taken one by one, as the kernel does: a symlink before
        a ``..`` is followed first, and ``..`` of a physical path is its parent,
        stopping at root. ``hops`` counts the links one lookup follows, against
        the kernel's own limit. Nothing is cached per target text: thousands of
        devices have distinct ``../../..`` targets, each walked in a few steps.
        """
        hops[0] += 1
        if hops[0] > _MAX_LINK_HOPS:
            return None
        if target.startswith('/'):
            base = ''
        links = self._links
        for part in target.split('/'):
            if part in ('', '.'):
                continue
            if part == '..':
                base = base.rpartition('/')[0]
                continue
            here = base + '/' + part if base else part
            nested = links[here] if here in links else self.readlink(here)
            if nested is None:
                base = here
                continue
            base = self._follow(base, nested, hops)
            if base is None:
                return None
        return base

    def read(self, rel, resolved=False):
        """The stripped text of a file, or None when it is missing or unreadable.

        ``resolved`` says the directory part of ``rel`` contains no symlinks;
        otherwise it is resolved first. The last component is never followed.
        """
        if not resolved:
            head, _sep, tail = rel.rpartition('/')
            head = self.resolve(head)
            if head is None:
                return None
            rel = head + '/' + tail if head else tail
        try:
            fd = os.open(self.path(rel), _O_READ)
        except OSError:
            return None
        try:
            # sysfs attributes fit one page and arrive in one read; proc files may not
            chunks = [os.read(fd, 8192)]
            while len(chunks[-1]) == 8192 or (len(chunks) > 1 and chunks[-1]):
                chunks.append(os.read(fd, 65536))
        except OSError:
            return None
        finally:
            os.close(fd)
        return b''.join(chunks).decode('utf-8', 'replace').strip()

    def listdir(self, rel, resolved=False):
        """Entry names of a directory (sorted), empty when it does not exist."""
        if not resolved:
            rel = self.resolve(rel)
            if rel is None:
                return []
        return sorted(self.entries(rel))

    def exists(self, rel):
        resolved = self.resolve(rel)
        return resolved is not None and os.path.lexists(self.path(resolved))


def _maybe_link(entry):
    """False only when the directory entry is known not to be a symlink."""
    try:
        return entry.is_symlink()
    except OSError:
        return True


def _tree(root):
    return root if isinstance(root, SysfsTree) else SysfsTree(root)


def _hex_id(text):
    """``0x8086`` -> ``8086``; None stays None."""
    if text is None:
        return None
    text = text.lower()
    return text[2:] if text.startswith('0x') else text


def _int_or_none(text):
    try:
        return int(text)
    except (TypeError, ValueError):
        return None


def nearest_pci(resolved):
    """The last PCI address among the components of a physical sysfs path, or None."""
    for part in reversed(resolved.split('/')):
        if PCI_ADDRESS.match(part):
            return part
    return None


def _driver_modules(tree, bus):
    """driver name -> module name for every driver registered on ``bus`` (None = built in)."""
    base = 'sys/bus/%s/drivers' % bus
    result = {}
    for name in tree.listdir(base, resolved=True):
        target = tree.readlink('%s/%s/module' % (base, name))
        result[name] = normalise_module(target.rstrip('/').rsplit('/', 1)[-1]) if target else None
    return result


def read_iommu_groups(root):
    """{group number: {'devices': [addresses], 'type': 'DMA-FQ' | 'identity' | ... | None}}."""
    tree = _tree(root)
    groups = {}
    for name in tree.listdir('sys/kernel/iommu_groups'):
        if not name.isdigit():
            continue
        base = tree.resolve('sys/kernel/iommu_groups/' + name)
        groups[int(name)] = {
            'devices': [a for a in tree.listdir(base + '/devices', resolved=True) if PCI_ADDRESS.match(a)],
            'type': tree.read(base + '/type', resolved=True),
        }
    return groups


def _group_types(tree):
    """{group number: default domain type or None} for every IOMMU group."""
    types = {}
    for name in tree.listdir('sys/kernel/iommu_groups'):
        if name.isdigit():
            base = tree.resolve('sys/kernel/iommu_groups/' + name)
            types[int(name)] = tree.read(base + '/type', resolved=True) if base is not None else None
    return types


def read_pci_devices(root, groups=None):
    """{address: raw facts} for every PCI function in sys/bus/pci/devices.

    ``groups`` is read_iommu_groups() output; without it, each device's group
    comes from its own ``iommu_group`` link (the kernel makes both links).

    Raw facts: vendor_id, device_id, subsystem_vendor_id, subsystem_device_id,
    class, class_name, driver, driver_module, iommu_group, reset_methods,
    sriov_totalvfs, sriov_numvfs, boot_vga, path (physical path below root).
    """
    tree = _tree(root)
    group_of = {addr: number for number, group in (groups or {}).items() for addr in group['devices']}
    modules = _driver_modules(tree, 'pci')
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
        driver = target.rstrip('/').rsplit('/', 1)[-1] if target else None
        group = group_of.get(address)
        if group is None:
            target = tree.readlink(rel + '/iommu_group')
            group = _int_or_none(target.rstrip('/').rsplit('/', 1)[-1]) if target else None
        modalias = attr('modalias')
        match = _MODALIAS.match(modalias) if modalias else None
        if match:
            vendor, device, sub_vendor, sub_device = (g.lower() for g in match.group(1, 2, 3, 4))
            class_ = ''.join(match.group(5, 6, 7)).lower()
        else:
            vendor, device = _hex_id(attr('vendor')), _hex_id(attr('device'))
            sub_vendor, sub_device = _hex_id(attr('subsystem_vendor')), _hex_id(attr('subsystem_device'))
            class_ = (_hex_id(attr('class')) or '').rjust(6, '0')
        reset = attr('reset_method')
        devices[address] = {
            'vendor_id': vendor,
            'device_id': device,
            'subsystem_vendor_id': sub_vendor,
            'subsystem_device_id': sub_device,
            'class': class_,
            'class_name': class_name(class_),
            'driver': driver,
            'driver_module': modules.get(driver) if driver else None,
            'iommu_group': group,
            'reset_methods': reset.split() if reset else [],
            'sriov_totalvfs': _int_or_none(attr('sriov_totalvfs')),
            'sriov_numvfs': _int_or_none(attr('sriov_numvfs')),
            'boot_vga': attr('boot_vga') == '1',
            'path': rel,
        }
    return devices


_HOLDERS = ('vfio-pci', 'pci-stub')


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
        if module not in found and module not in ('vfio_pci', 'pci_stub') and fnmatch.fnmatchcase(modalias, pattern):
            found.append(module)
    return found


def read_net_interfaces(root):
    """{ifname: facts} for every interface in sys/class/net.

    Facts: pci_address (nearest PCI device, None for virtual interfaces),
    driver_module (module of the interface's own driver: ``virtio_net`` for a
    virtio NIC, ``e1000e`` for an Intel one), lower (interfaces below it),
    ports (bridge ports), slaves (bond slaves), kind (bridge/bond/stacked/device/virtual).
    """
    tree = _tree(root)
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
            slaves = (tree.read(rel + '/bonding/slaves', resolved=True) or '').split()
        address = nearest_pci(rel) if 'device' in entries else None
        module = None
        if 'device' in entries:
            device = tree.resolve(rel + '/device')
            drv = tree.readlink(device + '/driver') if device else None
            if drv:
                drv_dir = tree.resolve(device + '/driver')
                mod = tree.readlink(drv_dir + '/module') if drv_dir else None
                module = normalise_module(mod.rstrip('/').rsplit('/', 1)[-1]) if mod else None
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
    on top of ``virtio_pci``). Names use ``_``.
    """
    tree = _tree(root)
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
                usage.setdefault(module, []).append({'address': address, 'interface': ifname})
        for ifname, nic_module in nics:
            if nic_module and nic_module != module:
                usage.setdefault(nic_module, []).append({'address': address, 'interface': ifname})
    return usage


def block_devices_by_dm_name(root):
    """{dm name (as in /dev/mapper): dm-N} from sys/class/block/dm-*/dm/name."""
    tree = _tree(root)
    result = {}
    for name in tree.listdir('sys/class/block', resolved=True):
        if name.startswith('dm-'):
            dm_name = tree.read('sys/class/block/%s/dm/name' % name)
            if dm_name:
                result[dm_name] = name
    return result


def block_pci_addresses(root, name, _seen=None):
    """PCI addresses of the controllers under block device ``name`` (``sda2``, ``dm-0``, ``md0p1``).

    Follows dm/md ``slaves`` recursively; for a partition of a stacked device
    the slaves sit on the parent. An NVMe multipath head lives under
    nvme-subsystem: its controllers lead to the PCI devices.
    """
    tree = _tree(root)
    seen = _seen if _seen is not None else set()
    if name in seen:
        return []
    seen.add(name)
    rel = tree.resolve('sys/class/block/' + name)
    if rel is None or not os.path.lexists(tree.path(rel)):
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
    if not os.path.isdir(tree.path(slaves_dir)) and os.path.exists(tree.path(rel + '/partition')):
        slaves_dir = rel.rsplit('/', 1)[0] + '/slaves'
    for slave in tree.listdir(slaves_dir, resolved=True):
        found.extend(block_pci_addresses(tree, slave, seen))
    return sorted(set(found))


# -- pure parsers ------------------------------------------------------------

def parse_interrupt_remapping(text):
    """True when /proc/interrupts shows IR- chips, False when it shows plain ones, else None."""
    if not text:
        return None
    if _IR_CHIP.search(text):
        return True
    if _PLAIN_CHIP.search(text):
        return False
    return None


def parse_cpu_vendor(text):
    """``intel``/``amd`` from /proc/cpuinfo's vendor_id, the raw id for others, None if absent."""
    for line in (text or '').splitlines():
        key, sep, value = line.partition(':')
        if sep and key.strip() == 'vendor_id':
            value = value.strip()
            return _CPU_VENDORS.get(value, value.lower() or None)
    return None


def parse_cmdline(text):
    """The kernel command line as a list of (key, value-or-None), in order."""
    args = []
    for word in (text or '').split():
        key, sep, value = word.partition('=')
        args.append((key, value if sep else None))
    return args


def kernel_log_facts(text):
    """What the kernel log says where sysfs and procfs are silent.

    Returns {'interrupt_remapping': bool|None, 'tables': set of ACPI table
    names seen}. "DMAR: IOMMU enabled" is deliberately ignored: a machine
    without an IOMMU prints it too when booted with intel_iommu=on.
    """
    remapping = None
    tables = set()
    for line in (text or '').splitlines():
        if ('DMAR-IR: Enabled IRQ remapping' in line or 'AMD-Vi: Interrupt remapping enabled' in line):
            remapping = True
        elif remapping is None and ('IRQ remapping was disabled' in line
                                    or 'Failed to enable irq remapping' in line
                                    or 'Not enabling interrupt remapping' in line):
            remapping = False
        match = re.search(r'ACPI: (DMAR|IVRS) 0x', line)
        if match:
            tables.add(match.group(1))
    return {'interrupt_remapping': remapping, 'tables': tables}


def _isolated(address, peers, devices):
    if not address or devices[address]['iommu_group'] is None:
        return False
    slot = address.rsplit('.', 1)[0]
    for peer in peers:
        if peer.rsplit('.', 1)[0] == slot:
            continue
        facts = devices.get(peer)
        if facts is None or not facts['class'].startswith(_BRIDGE_CLASS):
            return False
    return True


def _passthrough_mode(groups, cmdline_args, enabled):
    """True when DMA passes through untranslated (iommu=pt), False when translated, None when unknown.

    The default domain type most groups carry decides: a few groups may be
    forced to DMA (untrusted devices) while the host default is identity.
    """
    if not enabled:
        return None
    counts = {}
    for group in groups.values():
        if group['type']:
            counts[group['type']] = counts.get(group['type'], 0) + 1
    if counts:
        most = max(counts, key=lambda t: (counts[t], t == 'identity'))
        return most == 'identity'
    iommu = [v for k, v in cmdline_args if k == 'iommu']
    if iommu:
        return iommu[-1] == 'pt'
    return None


def gather_iommu_facts(root, kernel_log=None, interfaces=None):
    """Build ``ansible_facts.iommu`` (without host_critical, which the caller adds).

    ``kernel_log`` is a callable returning the kernel log text; it is called
    at most once and only when sysfs/procfs cannot answer. Pass None for a
    non-live root, whose log we cannot see. ``interfaces`` (from
    read_net_interfaces) saves reading sys/class/net twice.
    """
    tree = _tree(root)
    log_cache = []

    def log():
        if kernel_log is None:
            return None
        if not log_cache:
            log_cache.append(kernel_log_facts(kernel_log()))
        return log_cache[0]

    cmdline = tree.read('proc/cmdline') or ''
    args = parse_cmdline(cmdline)
    # Members from each device's iommu_group link rather than a listing of
    # every group's devices/ directory: one readlink instead of a directory read.
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

    remapping = parse_interrupt_remapping(tree.read('proc/interrupts'))
    if remapping is None:
        facts = log()
        remapping = facts['interrupt_remapping'] if facts else None

    netdevs = {}
    for ifname, facts in interfaces.items():
        if facts['pci_address']:
            netdevs.setdefault(facts['pci_address'], []).append(ifname)

    # A device on vfio-pci (or with no driver) no longer shows which driver the
    # host would give it; modules.alias does, as for lspci -k.
    aliases = None
    kernel = tree.read('proc/sys/kernel/osrelease')
    members = {number: sorted(group['devices']) for number, group in groups.items()}
    out_devices = {}
    for address in sorted(devices):
        raw = devices[address]
        group = raw['iommu_group']
        peers = [a for a in members.get(group, []) if a != address] if group is not None else []
        entry = {k: v for k, v in raw.items() if k != 'path'}
        if raw['driver'] is None or raw['driver'] in _HOLDERS:
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
        })
        out_devices[address] = entry

    acs = [v for k, v in args if k == 'pcie_acs_override']
    return {
        'enabled': enabled,
        'vendor': vendor,
        'cpu_vendor': cpu_vendor,
        'firmware_support': bool(tables) if tables is not None else None,
        'interrupt_remapping': remapping,
        'passthrough_mode': _passthrough_mode(groups, args, enabled),
        'acs_override': (acs[-1] or '') if acs else None,
        'cmdline': cmdline,
        'kernel': kernel,
        'iommu_units': units,
        'groups': {str(n): {'devices': members[n], 'type': groups[n]['type']} for n in sorted(groups)},
        'devices': out_devices,
        'vfio_bound': [a for a in sorted(devices) if devices[a]['driver'] == 'vfio-pci'],
    }
