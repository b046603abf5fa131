# -*- coding: utf-8 -*-
# Copyright: contributors to vfio.passthrough
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""vm_probe's decisions: what may start, the QEMU command, what the host and the guest said.

One rule each:

* ``plan_device``: the device's group as QEMU gets it (bridges excepted, as
  vfio's viability check does) and every reason not to start: not on a VFIO
  driver, a group that is not viable, a group or device file open in another
  process, a Proxmox reservation, a guest that starts on boot or under HA
  naming it.
* ``parse_reservations`` / ``active_reservations``: qemu-server's
  ``/run/qemu-server/pci-id-reservations`` (``src/PVE/QemuServer/PCI.pm``:
  ``<id> <vmid> pid:<pid>`` for a running VM, ``<id> <vmid> time:<epoch>``
  for the window before its QEMU runs), read the way ``reserve_pci_usage``
  judges it.
* ``boot_references``: the guests that start on boot (``onboot: 1``) or are
  HA resources, with the devices they name (``_pve_config``'s parsing).
* ``qemu_argv``: the command, ``-nic none`` always.
* ``kernel_release``, ``elf_interpreter``, ``parse_show_depends``: the guest
  kernel's release from its bzImage header, whether busybox is static, the
  modules ``modprobe --show-depends`` loads.
* ``kernel_messages`` / ``device_kernel_lines``: /dev/kmsg records, and the
  ones about the passed devices or IOMMU faults.
* ``summary`` / ``failure``: what the playbook prints, and the module's
  message when a device is refused or was not seen.

Pure functions: text and dicts in, data out.
"""

from __future__ import annotations

import re
import struct

from ansible_collections.vfio.passthrough.plugins.module_utils.proxmox._ha_status import parse_ha_resources
from ansible_collections.vfio.passthrough.plugins.module_utils.host_safety._module_deps import module_name
from ansible_collections.vfio.passthrough.plugins.module_utils.pci._pci import (
    BRIDGE_CLASS, PCI_STUB, vfio_driver,
)
from ansible_collections.vfio.passthrough.plugins.module_utils.proxmox._pve_config import (
    guest_pci_references, hostpci_id_addresses, starts_on_boot,
)

__all__ = [
    'RESERVATIONS', 'plan_device', 'parse_reservations', 'active_reservations', 'boot_references',
    'qemu_argv', 'choose_accel', 'kernel_release', 'elf_interpreter', 'parse_show_depends',
    'firmware_plan', 'firmware_names', 'vendor_device_of', 'vfio_fd_entry', 'kernel_messages', 'device_kernel_lines', 'summary', 'failure',
]

RESERVATIONS = 'run/qemu-server/pci-id-reservations'
# qemu-server's $PCIRE and its reservation line
_RESERVATION = re.compile(r'((?:[a-f0-9]{4,}:)?[a-f0-9]{2}:[a-f0-9]{2}(?:\.[a-f0-9])?)\s(\d+)\s(time|pid):(\d+)\Z')
_VFIO_TARGET = re.compile(r'/dev/vfio/(?:(\d+)|devices/(vfio\d+))\Z')
_ADDRESS_IN_TEXT = re.compile(r'(?<![0-9a-f:])(?:([0-9a-f]{4}):)?([0-9a-f]{2}:[0-9a-f]{2}\.[0-7])(?![0-9a-f])')
# Host kernel lines that matter even without an address: IOMMU faults and vfio's own complaints.
_FAULT = re.compile(r'DMAR|AMD-Vi|IOMMU|iommu|vfio|VFIO')
# bzImage setup header (Documentation/arch/x86/boot.rst): "HdrS" at 0x202, kernel_version at 0x20E
# is an offset from 0x200 of the version string, "6.12.57+deb13-amd64 (debian-kernel@...) #1 ...".
_BZ_MAGIC_AT, _BZ_VERSION_AT, _BZ_BASE = 0x202, 0x20E, 0x200
_PT_INTERP = 3


# -- which devices go, and why not -----------------------------------------

def _members(group, devices):
    return sorted(a for a, d in devices.items() if d.get('iommu_group') == group)


def _is_bridge(device):
    return (device.get('class') or '').startswith(BRIDGE_CLASS)


def plan_device(address, devices, holders=None, reservations=None, boot_refs=None, cdevs=None):
    """``{address, group, group_devices, reasons, notes}`` for one asked device.

    ``devices`` as read_pci_devices returns them; ``holders`` {``/dev/vfio/...`` path: [pid]} of the
    files processes hold open; ``reservations`` active reservations {id: {vmid, ...}};
    ``boot_refs`` {address: [why]} from boot_references; ``cdevs`` {address: [``vfioN``]} the
    device files of kernels with CONFIG_VFIO_DEVICE_CDEV. ``group_devices`` are the members QEMU
    gets (every one on a VFIO driver); a member on pci-stub or without a driver keeps the group
    viable but stays on the host, as vfio allows. ``reasons`` empty means it may start.
    """
    holders, reservations, boot_refs, cdevs = holders or {}, reservations or {}, boot_refs or {}, cdevs or {}
    device = devices.get(address)
    plan = {'address': address, 'group': None, 'group_devices': [], 'reasons': [], 'notes': []}
    if device is None:
        plan['reasons'].append('%s is no PCI device on this host (see lspci -D)' % address)
        return plan
    group = device.get('iommu_group')
    if group is None:
        plan['reasons'].append('%s has no IOMMU group: the IOMMU is off or does not cover it' % address)
        return plan
    plan['group'] = str(group)
    if not vfio_driver(device):
        plan['reasons'].append('%s is on %s, not vfio-pci: the role binds it first'
                               % (address, 'no driver' if not device.get('driver') else device['driver']))
    members = _members(group, devices)
    for member in members:
        facts = devices[member]
        if _is_bridge(facts):
            continue
        if vfio_driver(facts):
            plan['group_devices'].append(member)
        elif member == address:
            continue
        elif facts.get('driver') in (None, PCI_STUB):
            plan['notes'].append('%s of group %s is on %s and stays on the host (vfio allows it in a viable group)'
                                 % (member, group, facts.get('driver') or 'no driver'))
        else:
            plan['reasons'].append('group %s is not viable: %s is on %s (not vfio-pci, pci-stub or a bridge)'
                                   % (group, member, facts['driver']))
    paths = ['/dev/vfio/%d' % group] + ['/dev/vfio/devices/%s' % c for m in members for c in cdevs.get(m, [])]
    for path in paths:
        if holders.get(path):
            plan['reasons'].append('%s is open in process %s (a VM or another user of the group)'
                                   % (path, ', '.join(str(p) for p in sorted(holders[path]))))
    for ident in sorted(reservations):
        hit = [m for m in members if m in hostpci_id_addresses(ident, members)]
        if hit:
            entry = reservations[ident]
            how = 'while its QEMU runs (pid %s)' % entry['pid'] if 'pid' in entry else \
                'until %s (epoch seconds, its start window)' % entry.get('time')
            plan['reasons'].append('Proxmox reserved %s for VM %s %s (%s)'
                                   % (', '.join(hit), entry['vmid'], how, '/' + RESERVATIONS))
    for member in members:
        for why in boot_refs.get(member, []):
            plan['reasons'].append('%s is named by %s' % (member, why))
    return plan


def parse_reservations(text):
    """``{id: {'vmid': str, 'pid'|'time': int}}`` from pci-id-reservations, as qemu-server parses it."""
    found = {}
    for line in (text or '').split('\n'):
        match = _RESERVATION.match(line.strip())
        if match:
            ident, vmid, kind, value = match.groups()
            found[ident] = {'vmid': vmid, kind: int(value)}
    return found


def active_reservations(reservations, now, running):
    """The reservations qemu-server would still honour: a start window not yet over, or a pid that
    runs (``running``: the pids alive). A leftover is one qemu-server itself takes over."""
    return {ident: entry for ident, entry in reservations.items()
            if ('time' in entry and entry['time'] > now) or ('pid' in entry and entry['pid'] in running)}


def boot_references(configs, ha_resources_text, mapping_text, existing, node=None):
    """{address: [why]} for the devices a guest names that starts by itself: ``onboot: 1`` in its
    config, or an HA resource ``vm:<vmid>`` (HA starts it wherever the cluster wants).

    ``configs`` {vmid: config text}; the devices a guest names are read as _pve_config reads
    ``hostpciN`` and resource mappings.
    """
    ha = parse_ha_resources(ha_resources_text)
    refs = {}
    for vmid in sorted(configs, key=lambda v: (len(str(v)), str(v))):
        text = configs[vmid]
        starts = []
        if starts_on_boot(text):
            starts.append('onboot: 1')
        resource = ha.get('vm:%s' % vmid)
        if resource is not None:
            starts.append('HA resource vm:%s, state %s' % (vmid, resource.get('state') or 'started'))
        if not starts:
            continue
        for address, whys in guest_pci_references({vmid: text}, mapping_text, existing, node).items():
            for why in whys:
                if why.startswith('guest '):
                    refs.setdefault(address, []).append('%s, which starts by itself (%s)' % (why, '; '.join(starts)))
    return refs


# -- the command -----------------------------------------------------------

def choose_accel(requested, kvm_error):
    """``(accel, note)``: KVM where asked or where it works (``kvm_error`` None), else TCG and why."""
    if requested == 'tcg':
        return 'tcg', 'accel tcg was asked'
    if kvm_error is None:
        return 'kvm', ''
    if requested == 'kvm':
        raise ValueError('accel kvm was asked, but %s' % kvm_error)
    return 'tcg', 'KVM does not work here (%s): TCG emulates the guest CPU, many times slower' % kvm_error


def qemu_argv(qemu, accel, memory_mib, kernel, initrd, console, addresses):
    """The throwaway guest: q35, no NIC but the passed devices, no disk, the console in a file."""
    if accel not in ('kvm', 'tcg'):
        raise ValueError('%r is no accelerator (kvm or tcg)' % (accel,))
    argv = [qemu, '-M', 'q35', '-m', str(memory_mib), '-accel', accel, '-cpu', 'host' if accel == 'kvm' else 'max',
            '-smp', '1', '-nodefaults', '-no-user-config', '-nographic', '-no-reboot',
            '-serial', 'file:%s' % console,
            '-kernel', kernel, '-initrd', initrd,
            '-append', 'console=ttyS0 panic=-1 rdinit=/init',
            '-nic', 'none']
    for address in addresses:
        argv += ['-device', 'vfio-pci,host=%s' % address]
    return argv


# -- what the host has -----------------------------------------------------

def kernel_release(image):
    """The release of a bzImage (its first KiB or more): ``6.12.57+deb13-amd64``, or None when it is no bzImage."""
    if not isinstance(image, (bytes, bytearray)) or len(image) < _BZ_VERSION_AT + 2 or \
            image[_BZ_MAGIC_AT:_BZ_MAGIC_AT + 4] != b'HdrS':
        return None
    offset = struct.unpack_from('<H', image, _BZ_VERSION_AT)[0]
    if not offset:
        return None
    start = _BZ_BASE + offset
    text = bytes(image[start:start + 256]).split(b'\0', 1)[0].decode('ascii', 'replace')
    words = text.split()
    return words[0] if words else None


def elf_interpreter(data):
    """The program interpreter an ELF file names (``/lib64/ld-linux-x86-64.so.2``), None for a static one.

    Raises ValueError when ``data`` is no ELF file.
    """
    if not isinstance(data, (bytes, bytearray)) or data[:4] != b'\x7fELF' or len(data) < 64:
        raise ValueError('not an ELF executable')
    wide, little = data[4] == 2, data[5] == 1
    order = '<' if little else '>'
    if wide:
        phoff, = struct.unpack_from(order + 'Q', data, 0x20)
        phentsize, phnum = struct.unpack_from(order + 'HH', data, 0x36)
    else:
        phoff, = struct.unpack_from(order + 'I', data, 0x1C)
        phentsize, phnum = struct.unpack_from(order + 'HH', data, 0x2A)
    for index in range(phnum):
        at = phoff + index * phentsize
        if at + phentsize > len(data):
            raise ValueError('its program headers are cut off')
        kind, = struct.unpack_from(order + 'I', data, at)
        if kind != _PT_INTERP:
            continue
        if wide:
            offset, = struct.unpack_from(order + 'Q', data, at + 8)
            size, = struct.unpack_from(order + 'Q', data, at + 32)
        else:
            offset, = struct.unpack_from(order + 'I', data, at + 4)
            size, = struct.unpack_from(order + 'I', data, at + 16)
        return bytes(data[offset:offset + size]).rstrip(b'\0').decode('utf-8', 'replace')
    return None


def parse_show_depends(text):
    """``modprobe --show-depends`` output as ``[{'name', 'path' or None (built in)}]`` in load order."""
    found = []
    for line in (text or '').split('\n'):
        words = line.split()
        if len(words) >= 2 and words[0] == 'insmod':
            entry = {'name': module_name(words[1]), 'path': words[1]}
        elif len(words) >= 2 and words[0] == 'builtin':
            entry = {'name': module_name(words[1]), 'path': None}
        else:
            continue
        if all(e['name'] != entry['name'] for e in found):
            found.append(entry)
    return found


def firmware_plan(module, listed, present):
    """``(files, refusal or None, notes)`` for one module's firmware: ``listed`` by ``modinfo -F firmware``,
    ``present`` {name: host path} of those found under /lib/firmware.

    A module lists every file any of its chips may load (i915 names dozens of platforms), so a
    missing one is a note; a module that lists firmware and finds none of it cannot come up, and
    its guest would only show that.
    """
    files = {name: present[name] for name in listed if name in present}
    missing = [name for name in listed if name not in present]
    if listed and not files:
        return {}, ('%s needs firmware and none of it is under /lib/firmware (%s%s): install its firmware package'
                    % (module, ', '.join(missing[:5]), ', ...' if len(missing) > 5 else '')), []
    notes = ['%s: %d of its %d firmware files are not under /lib/firmware (%s%s); the guest gets the others'
             % (module, len(missing), len(listed), ', '.join(missing[:3]), ', ...' if len(missing) > 3 else '')
             ] if missing else []
    return files, None, notes


def firmware_names(text):
    """``modinfo -F firmware`` output: relative firmware names, none that could leave /lib/firmware."""
    names = []
    for line in (text or '').split('\n'):
        name = line.strip()
        if name and not name.startswith('/') and '..' not in name.split('/') and name not in names:
            names.append(name)
    return names


# -- what happened ---------------------------------------------------------

def vfio_fd_entry(pid, fds, group, cdevs=()):
    """``/proc/<pid>/fd/<n> -> /dev/vfio/<group>`` (or a device file of ``cdevs``) from {fd: target}, or None."""
    wanted = {'/dev/vfio/%s' % group} | {'/dev/vfio/devices/%s' % c for c in cdevs}
    for fd in sorted(fds, key=lambda f: (len(str(f)), str(f))):
        if fds[fd] in wanted:
            return '/proc/%s/fd/%s -> %s' % (pid, fd, fds[fd])
    return None


def kernel_messages(text):
    """The messages of /dev/kmsg records (``pri,seq,ts,flags;message`` plus `` KEY=value`` lines)."""
    messages = []
    for line in (text or '').split('\n'):
        if not line or line.startswith(' '):
            continue
        head, sep, message = line.partition(';')
        if sep and head.count(',') >= 2:
            messages.append(message)
    return messages


def device_kernel_lines(messages, addresses):
    """The host kernel's lines about ``addresses`` (full or without domain, as DMAR faults print them),
    and address-less IOMMU and vfio lines; lines about other devices only are left out."""
    ours = set(addresses)
    kept = []
    for message in messages:
        found = ['%s:%s' % (domain or '0000', rest) for domain, rest in _ADDRESS_IN_TEXT.findall(message.lower())]
        if (found and ours.intersection(found)) or (not found and _FAULT.search(message)):
            kept.append(message)
    return kept


def vendor_device_of(device):
    """``8086:10d3`` for a device's facts, as the guest's list prints it."""
    return '%s:%s' % (device.get('vendor_id'), device.get('device_id'))


def summary(probe):
    """The lines the playbook prints for one probe."""
    group = 'IOMMU group %s' % probe['group'] if probe.get('group') is not None else 'no IOMMU group'
    head = '%s (%s, passed: %s)' % (probe['address'], group, ', '.join(probe.get('group_devices') or []) or 'nothing')
    if probe.get('refusal'):
        return [head, '  refused: %s' % probe['refusal']]
    lines = [head]
    if not probe.get('started'):
        lines.append('  check mode: would run %s' % ' '.join(probe.get('qemu_command') or []))
        return lines
    guest = probe.get('guest') or {}
    lines.append('  guest kernel: %s' % (guest.get('kernel_line') or 'no kernel line (the guest printed nothing)'))
    wanted = set(probe.get('vendor_devices') or [])
    for device in guest.get('devices') or []:
        if device['vendor_device'] not in wanted:
            continue
        links = ', '.join('%s %s' % (i, (guest.get('links') or {}).get(i, '?')) for i in device.get('interfaces') or [])
        lines.append('  guest device %s %s class %s, driver %s%s' % (
            device['address'], device['vendor_device'], device['class'], device.get('driver') or 'none',
            ', link ' + links if links else ''))
    if not probe.get('seen'):
        lines.append('  NOT SEEN: the guest listed no %s' % ', '.join(sorted(wanted)))
    if probe.get('dhcp'):
        lines.append('  dhcp: %s' % (guest.get('lease') or 'no lease'))
    lines.append('  host: %s; reset_method %s; %.1f s under %s%s' % (
        'QEMU held ' + probe['vfio_fd'] if probe.get('vfio_fd') else 'no /dev/vfio file seen open',
        probe.get('reset_method') or 'none', probe.get('seconds') or 0.0, probe.get('accel'),
        ' (%s)' % probe['accel_note'] if probe.get('accel_note') else ''))
    if probe.get('error'):
        lines.append('  error: %s' % probe['error'])
    for line in probe.get('host_kernel_lines') or []:
        lines.append('  host kernel: %s' % line)
    return lines


def failure(probes):
    """The module's message when any device was refused or not seen in its guest, else None."""
    refused = ['%s: %s' % (p['address'], p['refusal']) for p in probes if p.get('refusal')]
    if refused:
        return 'vm_probe refused, nothing was started: ' + '; '.join(refused)
    unseen = ['%s: %s' % (p['address'], p.get('error') or 'the guest listed no %s'
                          % ', '.join(p.get('vendor_devices') or []))
              for p in probes if (p.get('started') and not p.get('seen')) or (p.get('error') and not p.get('started'))]
    if unseen:
        return 'vm_probe: not seen in the guest: ' + '; '.join(unseen)
    return None
