#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: contributors to vfio.passthrough
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
---
module: vm_probe
short_description: Boot a throwaway VM with each passed-through device and report what its guest saw
version_added: 0.2.0
description:
  - For each device in O(devices), starts a throwaway QEMU guest with that device's IOMMU group (every member
    on a VFIO driver; bridges stay, as vfio's viability check allows) and nothing else (C(-nic none), no disk),
    and reports what the guest kernel saw (the device's vendor:device, the driver it bound, a NIC's link, with
    O(dhcp) a lease through it) and what the host saw (the C(/dev/vfio) file QEMU held open, the device's
    C(reset_method), the host kernel's lines about the device during the start, the wall time).
  - The guest runs the host's own kernel (O(kernel)) with a tiny initramfs built on the spot in a temporary
    directory, removed on every exit - C(busybox) (static), the device's driver module for that kernel
    (C(modprobe --show-depends), C(.ko.xz) and C(.ko.zst) decompressed) and its firmware files
    (C(modinfo -F firmware)).
  - Not a read-only check - starting a VM resets the device and runs its option ROM, which can wedge a GPU
    without a working reset until the host's next power cycle. Run it on purpose, on a prepared host.
  - Refuses, before anything starts for any device, where a device is not on vfio-pci, its group is not viable,
    a process holds its C(/dev/vfio) group or device file open, Proxmox reserved it
    (C(/run/qemu-server/pci-id-reservations)), a guest that starts by itself (C(onboot 1) or an HA resource)
    names it, or QEMU, busybox, the kernel, the driver module or its firmware is missing. The module then
    fails naming each device and why.
  - Fails as well when a device was not seen in its guest (the guest listed no such vendor:device).
  - Writes nothing outside its temporary directory; never binds or unbinds a device.
author:
  - vfio.passthrough developers (!UNKNOWN)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
options:
  devices:
    description:
      - The PCI addresses to probe, C(0000:01:00.0) or C(01:00.0); one guest each, one after the other.
    type: list
    elements: str
    required: true
  dhcp:
    description:
      - Run C(udhcpc) in the guest on each interface of the passed devices and report the lease.
      - This sends DHCP traffic on that port's network.
    type: bool
    default: false
  timeout:
    description: Seconds one guest may take from start to poweroff before QEMU is killed.
    type: int
    default: 900
  qemu:
    description:
      - The QEMU binary. Default C(/usr/bin/kvm) (Proxmox VE, Debian's qemu-system-x86) when present, else
        C(qemu-system-x86_64) on the PATH.
    type: path
  kernel:
    description:
      - The guest kernel (a bzImage). Default C(/boot/vmlinuz-<running release>). Its modules are taken from
        C(/lib/modules/<its release>), the release read from the image's header.
    type: path
  memory_mib:
    description: The guest's memory in MiB. QEMU locks all of it while a device is assigned.
    type: int
    default: 384
  accel:
    description:
      - C(kvm), C(tcg), or C(auto) - KVM where C(/dev/kvm) opens and makes a VM, else TCG (RV(probes[].accel_note)
        says why).
    type: str
    choices: [auto, kvm, tcg]
    default: auto
attributes:
  check_mode:
    support: full
    details: Runs every refusal check and returns the QEMU command each probe would run; starts nothing, writes nothing.
  diff_mode:
    support: none
  platform:
    platforms: debian
    details: Debian 12/13 and Proxmox VE 8/9 on x86_64.
notes:
  - What a probe does not prove - a raw QEMU start is not C(qm start) - no Proxmox machine type, no OVMF (SeaBIOS
    boots), no hookscripts, no hugepages or CPU pinning, no C(hostpciN) options such as C(x-vga) or C(romfile).
seealso:
  - module: vfio.passthrough.iommu_facts
  - module: vfio.passthrough.vfio_address_binding
'''

EXAMPLES = r'''
- name: Boot a guest with the NIC on vfio-pci and ask for a DHCP lease through it
  vfio.passthrough.vm_probe:
    devices: ['0000:03:00.0']
    dhcp: true
  register: probe

- name: Show what each guest saw
  ansible.builtin.debug:
    msg: "{{ item.summary }}"
  loop: "{{ probe.probes }}"
  loop_control:
    label: "{{ item.address }}"

- name: Only the QEMU command it would run
  vfio.passthrough.vm_probe:
    devices: ['0000:03:00.0']
  check_mode: true
'''

RETURN = r'''
probes:
  description: One entry per asked device, in the order asked.
  returned: always
  type: list
  elements: dict
  contains:
    address:
      description: The device.
      type: str
      sample: '0000:00:03.0'
    group:
      description: Its IOMMU group number (null when it has none).
      type: str
      sample: '3'
    group_devices:
      description: The addresses passed to the guest - the device's group members on a VFIO driver.
      type: list
      elements: str
    refusal:
      description: Why the probe did not start (null when it could).
      type: str
    started:
      description: Whether QEMU was started.
      type: bool
    accel:
      description: C(kvm) or C(tcg).
      type: str
    accel_note:
      description: Why TCG, or an empty string.
      type: str
    qemu_command:
      description: The argv run (or, in check mode, that would run); contains C(-nic none).
      type: list
      elements: str
    vfio_fd:
      description: The VFIO file QEMU held while the guest ran, from C(/proc/<pid>/fd).
      type: str
      sample: '/proc/1234/fd/17 -> /dev/vfio/3'
    reset_method:
      description: The device's C(reset_method) in sysfs (empty when it has none).
      type: str
      sample: flr bus
    host_kernel_lines:
      description: What the host kernel logged during the start about the passed devices, and IOMMU or vfio lines.
      type: list
      elements: str
    seconds:
      description: Wall time from QEMU's start to its exit.
      type: float
    seen:
      description: Whether the guest listed the device's vendor:device.
      type: bool
    vendor_devices:
      description: The vendor:device IDs of the passed devices, as the guest lists them.
      type: list
      elements: str
    dhcp:
      description: Whether the guest was asked to get a lease.
      type: bool
    error:
      description: What went wrong after the start (QEMU's exit status and output, a timeout), or null.
      type: str
    notes:
      description: Group members that stay on the host, firmware files missing, modules built in.
      type: list
      elements: str
    summary:
      description: Readable lines about this probe.
      type: list
      elements: str
    guest:
      description: What the guest printed.
      type: dict
      contains:
        kernel_line:
          description: The guest's C(Linux version ...) line.
          type: str
        devices:
          description: Each PCI function the guest listed - address, vendor_device, class, driver, interfaces.
          type: list
          elements: dict
        links:
          description: Interface to C(up) (carrier) or C(down).
          type: dict
        link_details:
          description: Interface to its guest PCI device, carrier and operstate.
          type: dict
        modules:
          description: Each module the guest loaded, C(ok) or C(failed).
          type: dict
        lease:
          description: C(lease of <ip> obtained from <server>), or null.
          type: str
        finished:
          description: Whether the guest's /init reached its end.
          type: bool
        lines:
          description: The guest's console lines.
          type: list
          elements: str
summary:
  description: The summary lines of every probe.
  returned: always
  type: list
  elements: str
'''

import os
import shutil
import socket
import tempfile
import time

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.vfio.passthrough.plugins.module_utils.pci._pci import normalise_address
from ansible_collections.vfio.passthrough.plugins.module_utils.pci._pci_devices import read_pci_devices
from ansible_collections.vfio.passthrough.plugins.module_utils.proxmox._pve_guests import read_guest_configs
from ansible_collections.vfio.passthrough.plugins.module_utils.pci._sysfs import SysfsTree
from ansible_collections.vfio.passthrough.plugins.module_utils.pci._vfio_open import read_vfio_openers, vfio_device_files
from ansible_collections.vfio.passthrough.plugins.module_utils.vm_probe._vm_probe import (
    RESERVATIONS, active_reservations, boot_references, choose_accel, device_kernel_lines, failure, kernel_messages,
    parse_reservations, plan_device, qemu_argv, summary, vendor_device_of, vfio_fd_entry,
)
from ansible_collections.vfio.passthrough.plugins.module_utils.vm_probe._vm_probe_guest import parse_console
from ansible_collections.vfio.passthrough.plugins.module_utils.vm_probe._vm_probe_host import (
    KernelLog, find_busybox, find_qemu, guest_modules, kvm_error, read_kernel, run_guest, write_initramfs,
)

# The host's root: tests point it at a fake tree.
ROOT = '/'
KVM = '/dev/kvm'
_CHECK_DIR = '<temporary directory>'


def _empty_guest():
    return parse_console('')


def _plan(module, tree, devices, addresses):
    """Every probe as it would start, its refusal set: nothing starts until all are checked."""
    params = module.params
    # The same reader as every other "in use" check: group files and, on CONFIG_VFIO_DEVICE_CDEV kernels, device files.
    holders = read_vfio_openers(tree)
    running = {int(p) for p in tree.listdir('proc') if p.isdigit()}
    reservations = active_reservations(parse_reservations(tree.read(RESERVATIONS)), int(time.time()), running)
    node = socket.gethostname().split('.', 1)[0]
    configs, mapping_text = read_guest_configs(tree, node)
    boot_refs = boot_references(configs, tree.read('etc/pve/ha/resources.cfg'), mapping_text, list(devices), node)
    common = []
    qemu = find_qemu(module, tree, module.params['qemu'])
    if not qemu:
        common.append('QEMU was not found (%s): install qemu-system-x86, or pve-qemu-kvm on Proxmox VE'
                      % (params['qemu'] or '/usr/bin/kvm, qemu-system-x86_64'))
    kernel, release, refusal = read_kernel(tree, module.params['kernel'])
    if refusal:
        common.append(refusal)
    elif not tree.exists('lib/modules/%s/modules.alias' % release):
        common.append('the guest kernel %s is %s, and /lib/modules/%s has no modules.alias' % (kernel, release, release))
    busybox, refusal = find_busybox(module)
    if refusal:
        common.append(refusal)
    try:
        accel, accel_note = choose_accel(params['accel'], kvm_error(KVM) if params['accel'] != 'tcg' else None)
    except ValueError as exc:
        common.append(str(exc))
        accel, accel_note = params['accel'], ''
    probes = []
    for index, address in enumerate(addresses):
        group = (devices.get(address) or {}).get('iommu_group')
        members = [a for a in devices if group is not None and devices[a].get('iommu_group') == group]
        cdevs = {}
        for name, member in sorted(vfio_device_files(tree, members).items()):
            cdevs.setdefault(member, []).append(name)
        plan = plan_device(address, devices, holders, reservations, boot_refs, cdevs)
        reasons, notes = list(plan['reasons']), list(plan['notes'])
        modules, firmware = [], {}
        if not reasons and not common:
            modules, firmware, more, extra = guest_modules(module, tree, release, plan['group_devices'], devices)
            reasons += more
            notes += extra
        reasons += common
        directory = os.path.join(_CHECK_DIR, str(index))
        probes.append({
            'address': address, 'group': plan['group'], 'group_devices': plan['group_devices'],
            'refusal': '; '.join(reasons) or None, 'started': False, 'accel': accel, 'accel_note': accel_note,
            'qemu_command': qemu_argv(qemu or 'qemu-system-x86_64', accel if accel in ('kvm', 'tcg') else 'tcg',
                                      params['memory_mib'], kernel, os.path.join(directory, 'initramfs.cpio'),
                                      os.path.join(directory, 'console.log'), plan['group_devices']),
            'vfio_fd': None,
            'reset_method': ' '.join((devices.get(address) or {}).get('reset_methods') or []),
            'host_kernel_lines': [], 'seconds': 0.0, 'guest': _empty_guest(), 'seen': False,
            'vendor_devices': sorted({vendor_device_of(devices[a]) for a in plan['group_devices']}),
            'dhcp': params['dhcp'], 'error': None, 'notes': notes,
            '_run': {'modules': modules, 'firmware': firmware, 'busybox': busybox, 'cdevs': cdevs,
                     'kernel': kernel, 'qemu': qemu},
        })
    return probes


def _start(module, probe, base, index):
    """Build the initramfs, run the guest, read what it and the host said."""
    run = probe['_run']
    directory = os.path.join(base, str(index))
    os.mkdir(directory, 0o700)
    initrd = write_initramfs(module, directory, run['busybox'], run['modules'], run['firmware'], module.params['dhcp'])
    console = os.path.join(directory, 'console.log')
    argv = qemu_argv(run['qemu'], probe['accel'], module.params['memory_mib'], run['kernel'], initrd, console,
                     probe['group_devices'])
    probe['qemu_command'] = argv
    log = KernelLog(module)
    probe['started'] = True
    outcome = run_guest(argv, directory, module.params['timeout'], probe['group'],
                        [c for names in run['cdevs'].values() for c in names])
    probe['seconds'] = outcome['seconds']
    probe['host_kernel_lines'] = device_kernel_lines(kernel_messages(log.read()), probe['group_devices'])
    probe['vfio_fd'] = vfio_fd_entry(outcome['pid'], outcome['fds'], probe['group'],
                                     [c for names in run['cdevs'].values() for c in names])
    try:
        with open(console, 'rb') as handle:
            text = handle.read().decode('utf-8', 'replace')
    except OSError:
        text = ''
    probe['guest'] = parse_console(text)
    listed = {d['vendor_device'] for d in probe['guest']['devices']}
    probe['seen'] = bool(probe['vendor_devices']) and set(probe['vendor_devices']) <= listed
    if outcome['timed_out']:
        probe['error'] = 'the guest did not power off within %d s: QEMU was killed' % module.params['timeout']
    elif outcome['returncode'] != 0:
        probe['error'] = 'QEMU exited with status %s: %s' % (outcome['returncode'], outcome['stderr'].strip()[-2000:])


def main():
    module = AnsibleModule(
        argument_spec=dict(
            devices=dict(type='list', elements='str', required=True),
            dhcp=dict(type='bool', default=False),
            timeout=dict(type='int', default=900),
            qemu=dict(type='path'),
            kernel=dict(type='path'),
            memory_mib=dict(type='int', default=384),
            accel=dict(type='str', choices=['auto', 'kvm', 'tcg'], default='auto'),
        ),
        supports_check_mode=True,
    )
    params = module.params
    if not params['devices']:
        module.fail_json(msg='devices is empty: name at least one PCI address')
    if params['timeout'] < 1 or params['memory_mib'] < 64:
        module.fail_json(msg='timeout must be at least 1 second and memory_mib at least 64 (got %s and %s)'
                         % (params['timeout'], params['memory_mib']))
    tree = SysfsTree(ROOT)
    devices = read_pci_devices(tree)
    addresses, errors = [], []
    for value in params['devices']:
        try:
            found, _note = normalise_address(value, list(devices), whole_device=False)
        except ValueError as exc:
            errors.append(str(exc))
            continue
        addresses.extend(a for a in found if a not in addresses)
    if errors:
        module.fail_json(msg='devices: ' + '; '.join(errors))
    probes = _plan(module, tree, devices, addresses)
    refused = any(p['refusal'] for p in probes)
    if not refused and not module.check_mode:
        base = tempfile.mkdtemp(prefix='vm-probe-')
        try:
            for index, probe in enumerate(probes):
                try:
                    _start(module, probe, base, index)
                except (OSError, ValueError) as exc:
                    probe['error'] = 'the guest could not be started: %s' % exc
        finally:
            shutil.rmtree(base, ignore_errors=True)
    lines = []
    for probe in probes:
        probe.pop('_run')
        probe['summary'] = summary(probe)
        lines.extend(probe['summary'])
    result = dict(changed=any(p['started'] for p in probes), probes=probes, summary=lines)
    message = failure(probes)
    if message:
        module.fail_json(msg=message, **result)
    module.exit_json(**result)


if __name__ == '__main__':
    main()
