"""vm_probe's decisions: each refusal on a fake host, the reservations and boot references, the QEMU argv,
the kernel and busybox checks, the host kernel's lines and the summary."""

from __future__ import annotations

import os
import struct
import sys
from pathlib import Path

import pytest

from ansible_collections.vfio.passthrough.plugins.module_utils.pci._pci_devices import read_pci_devices
from ansible_collections.vfio.passthrough.plugins.module_utils.vm_probe._vm_probe import (
    active_reservations, boot_references, choose_accel, device_kernel_lines, elf_interpreter, failure,
    firmware_names, firmware_plan, kernel_messages, kernel_release, parse_reservations, parse_show_depends,
    plan_device, qemu_argv, summary, vfio_fd_entry,
)
from ansible_collections.vfio.passthrough.plugins.module_utils.pci._vfio_open import read_vfio_openers, vfio_device_files

sys.path.insert(0, str(Path(__file__).resolve().parents[4] / 'unit'))
from sysfs_builder import FakeHost  # noqa: E402

NIC = '0000:03:00.0'       # on vfio-pci, group 3 with its bridge
TWIN = '0000:04:00.0'      # the twin that stayed with the host (e1000e), group 4
AUDIO = '0000:05:00.1'     # a GPU's audio function, group 5 with the GPU on vfio-pci
GPU = '0000:05:00.0'
SHARED = '0000:06:00.0'    # on vfio-pci, but group 6 holds a host NIC of another card
STUBBED = '0000:07:00.0'   # on vfio-pci, group 7 also holds a pci-stub function


def _host(root):
    host = FakeHost(root)
    host.add_bridge('0000:00:1c.0', group=3)
    host.add_device(NIC, '8086', '10d3', '020000', driver='vfio-pci', group=3, parent_bridge='0000:00:1c.0')
    host.add_device(TWIN, '8086', '10d3', '020000', driver='e1000e', group=4, netdev='eno2')
    host.add_device(GPU, '10de', '1b80', '030000', driver='vfio-pci', group=5)
    host.add_device(AUDIO, '10de', '10f0', '040300', driver='vfio-pci', group=5, reset_methods=())
    host.add_device(SHARED, '8086', '1533', '020000', driver='vfio-pci', group=6)
    host.add_device('0000:06:00.1', '8086', '1533', '020000', driver='igb', group=6, netdev='eno3')
    host.add_device(STUBBED, '1b21', '2142', '0c0330', driver='vfio-pci', group=7)
    host.add_device('0000:07:00.1', '1b21', '2142', '0c0330', driver='pci-stub', group=7)
    host.add_device('0000:08:00.0', '1af4', '1000', '020000', driver='virtio-pci')  # no IOMMU group
    return host


@pytest.fixture
def devices(tmp_path):
    _host(tmp_path)
    return read_pci_devices(str(tmp_path))


@pytest.mark.parametrize('address, group, passed, reason', [
    (NIC, '3', [NIC], None),
    (GPU, '5', [GPU, AUDIO], None),
    (TWIN, '4', [], '0000:04:00.0 is on e1000e, not vfio-pci'),
    (SHARED, '6', [SHARED], 'group 6 is not viable: 0000:06:00.1 is on igb (not vfio-pci, pci-stub or a bridge)'),
    (STUBBED, '7', [STUBBED], None),
    ('0000:08:00.0', None, [], '0000:08:00.0 has no IOMMU group'),
    ('0000:09:00.0', None, [], '0000:09:00.0 is no PCI device on this host'),
])
def test_plan_device_group_and_viability(devices, address, group, passed, reason):
    plan = plan_device(address, devices)
    assert (plan['group'], plan['group_devices']) == (group, passed)
    if reason is None:
        assert plan['reasons'] == []
    else:
        assert len(plan['reasons']) == 1 and plan['reasons'][0].startswith(reason)


def test_a_pci_stub_member_stays_on_the_host_with_a_note(devices):
    assert plan_device(STUBBED, devices)['notes'] == [
        '0000:07:00.1 of group 7 is on pci-stub and stays on the host (vfio allows it in a viable group)']


def test_open_group_and_device_files_are_refusals(tmp_path):
    host = _host(tmp_path)
    host.open_file(4242, 17, '/dev/vfio/3')
    host.open_file(4242, 0, '/dev/null')
    host.open_file(77, 5, '/dev/vfio/devices/vfio0')
    host.mkdir(host.device_dir(GPU) + '/vfio-dev/vfio0')
    devices = read_pci_devices(str(tmp_path))
    # The readers every "in use" check shares (module_utils/pci/_vfio_open.py), as plugins/modules/vm_probe.py calls them.
    holders = read_vfio_openers(str(tmp_path))
    assert holders == {'/dev/vfio/3': [4242], '/dev/vfio/devices/vfio0': [77]}
    assert vfio_device_files(str(tmp_path), [GPU, AUDIO]) == {'vfio0': GPU}
    cdevs = {GPU: ['vfio0']}
    assert plan_device(NIC, devices, holders)['reasons'] == [
        '/dev/vfio/3 is open in process 4242 (a VM or another user of the group)']
    assert plan_device(GPU, devices, holders, cdevs=cdevs)['reasons'] == [
        '/dev/vfio/devices/vfio0 is open in process 77 (a VM or another user of the group)']
    assert plan_device(SHARED, devices, holders, cdevs=cdevs)['reasons'][1:] == []


RESERVATIONS = """\
0000:03:00.0 101 pid:4242
0000:05:00 102 time:2000000100
0000:06:00.0 103 pid:999
07:00.0 104 time:1000
garbage line
"""


def test_reservations_as_qemu_server_judges_them(devices):
    parsed = parse_reservations(RESERVATIONS)
    assert parsed == {'0000:03:00.0': {'vmid': '101', 'pid': 4242}, '0000:05:00': {'vmid': '102', 'time': 2000000100},
                      '0000:06:00.0': {'vmid': '103', 'pid': 999}, '07:00.0': {'vmid': '104', 'time': 1000}}
    active = active_reservations(parsed, now=2000000000, running={4242, 1})
    # a dead pid and a start window long over are leftovers qemu-server itself takes over
    assert sorted(active) == ['0000:03:00.0', '0000:05:00']
    assert plan_device(NIC, devices, reservations=active)['reasons'] == [
        'Proxmox reserved 0000:03:00.0 for VM 101 while its QEMU runs (pid 4242) (/run/qemu-server/pci-id-reservations)']
    # a whole-device id reserves every function of the card
    assert plan_device(AUDIO, devices, reservations=active)['reasons'] == [
        'Proxmox reserved 0000:05:00.0, 0000:05:00.1 for VM 102 until 2000000100 (epoch seconds, its start window) '
        '(/run/qemu-server/pci-id-reservations)']
    assert plan_device(STUBBED, devices, reservations=active)['reasons'] == []


CONFIGS = {
    '100': 'onboot: 1\nhostpci0: 0000:03:00.0,pcie=1\n',
    '101': 'hostpci0: mapping=gpu\n',
    '102': 'onboot: 0\nhostpci0: 06:00.0\n',
    '103': 'hostpci0: 07:00.0\n[snap1]\nonboot: 1\n',
}
HA = 'vm: 101\n\tstate started\n\tgroup prefer-pve1\n\nct: 200\n\tstate stopped\n'
MAPPING = 'gpu\n\tmap id=10de:1b80,node=pve1,path=0000:05:00\n'


def test_boot_references_name_guests_that_start_by_themselves(devices):
    refs = boot_references(CONFIGS, HA, MAPPING, list(devices), 'pve1')
    assert refs == {
        NIC: ['guest 100 (hostpci0), which starts by itself (onboot: 1)'],
        GPU: ['guest 101 (hostpci0, mapping gpu), which starts by itself (HA resource vm:101, state started)'],
        AUDIO: ['guest 101 (hostpci0, mapping gpu), which starts by itself (HA resource vm:101, state started)'],
    }
    assert plan_device(AUDIO, devices, boot_refs=refs)['reasons'] == [
        '0000:05:00.0 is named by guest 101 (hostpci0, mapping gpu), which starts by itself (HA resource vm:101, '
        'state started)',
        '0000:05:00.1 is named by guest 101 (hostpci0, mapping gpu), which starts by itself (HA resource vm:101, '
        'state started)']


def test_qemu_argv_passes_the_group_and_no_nic():
    argv = qemu_argv('/usr/bin/kvm', 'tcg', 384, '/boot/vmlinuz-6.12', '/tmp/x/initramfs.cpio', '/tmp/x/console.log',
                     [GPU, AUDIO])
    assert argv[:8] == ['/usr/bin/kvm', '-M', 'q35', '-m', '384', '-accel', 'tcg', '-cpu']
    assert argv[8] == 'max'
    assert argv[argv.index('-nic') + 1] == 'none'
    assert argv[-4:] == ['-device', 'vfio-pci,host=0000:05:00.0', '-device', 'vfio-pci,host=0000:05:00.1']
    assert argv[argv.index('-serial') + 1] == 'file:/tmp/x/console.log'
    assert argv[argv.index('-append') + 1] == 'console=ttyS0 panic=-1 rdinit=/init'
    assert {'-nodefaults', '-no-reboot', '-nographic'} <= set(argv)
    assert qemu_argv('q', 'kvm', 512, 'k', 'i', 'c', [])[8] == 'host'
    with pytest.raises(ValueError, match="'hvf' is no accelerator"):
        qemu_argv('q', 'hvf', 512, 'k', 'i', 'c', [])


@pytest.mark.parametrize('requested, error, expected', [
    ('auto', None, ('kvm', '')),
    ('kvm', None, ('kvm', '')),
    ('tcg', None, ('tcg', 'accel tcg was asked')),
    ('auto', 'cannot open /dev/kvm: No such file or directory',
     ('tcg', 'KVM does not work here (cannot open /dev/kvm: No such file or directory): TCG emulates the guest '
             'CPU, many times slower')),
])
def test_choose_accel(requested, error, expected):
    assert choose_accel(requested, error) == expected


def test_kvm_asked_where_it_does_not_work_is_an_error():
    with pytest.raises(ValueError, match='accel kvm was asked, but cannot open'):
        choose_accel('kvm', 'cannot open /dev/kvm: Permission denied')


def bzimage(version):
    """The first bytes of a bzImage: HdrS at 0x202, kernel_version at 0x20E pointing at the string."""
    image = bytearray(0x600)
    image[0x202:0x206] = b'HdrS'
    struct.pack_into('<H', image, 0x20E, 0x300)
    text = version.encode() + b'\0'
    image[0x500:0x500 + len(text)] = text
    return bytes(image)


def test_kernel_release_from_the_bzimage_header():
    assert kernel_release(bzimage('6.12.117+deb13-amd64 (debian-kernel@lists.debian.org) #1 SMP')) == \
        '6.12.117+deb13-amd64'
    assert kernel_release(b'\x7fELF' + bytes(0x600)) is None
    assert kernel_release(b'') is None


def elf(interpreter=None):
    """A minimal 64-bit little-endian ELF header with one program header (PT_INTERP or PT_LOAD)."""
    data = bytearray(0x100)
    data[:6] = b'\x7fELF\x02\x01'
    struct.pack_into('<Q', data, 0x20, 0x40)           # e_phoff
    struct.pack_into('<HH', data, 0x36, 0x38, 1)       # e_phentsize, e_phnum
    kind = 3 if interpreter else 1
    struct.pack_into('<I', data, 0x40, kind)
    if interpreter:
        text = interpreter.encode() + b'\0'
        struct.pack_into('<Q', data, 0x48, 0xC0)
        struct.pack_into('<Q', data, 0x60, len(text))
        data[0xC0:0xC0 + len(text)] = text
    return bytes(data)


def test_elf_interpreter_tells_static_from_dynamic():
    assert elf_interpreter(elf()) is None
    assert elf_interpreter(elf('/lib64/ld-linux-x86-64.so.2')) == '/lib64/ld-linux-x86-64.so.2'
    with pytest.raises(ValueError, match='not an ELF'):
        elf_interpreter(b'#!/bin/sh\n' + bytes(80))


@pytest.mark.skipif(not os.path.exists('/bin/sh'), reason='no /bin/sh on this machine to read as a real ELF file')
def test_elf_interpreter_reads_a_real_binary():
    real = os.path.realpath('/bin/sh')
    with open(real, 'rb') as handle:
        data = handle.read()
    assert data[:4] == b'\x7fELF'
    interpreter = elf_interpreter(data)
    assert interpreter is None or interpreter.startswith('/lib')


def test_parse_show_depends_in_load_order():
    text = ('insmod /lib/modules/6.12/kernel/lib/crc-itu-t.ko.xz \n'
            'builtin ptp\n'
            'insmod /lib/modules/6.12/kernel/drivers/net/ethernet/intel/e1000e/e1000e.ko.zst debug=1\n'
            'insmod /lib/modules/6.12/kernel/lib/crc-itu-t.ko.xz \n')
    assert parse_show_depends(text) == [
        {'name': 'crc_itu_t', 'path': '/lib/modules/6.12/kernel/lib/crc-itu-t.ko.xz'},
        {'name': 'ptp', 'path': None},
        {'name': 'e1000e', 'path': '/lib/modules/6.12/kernel/drivers/net/ethernet/intel/e1000e/e1000e.ko.zst'},
    ]


def test_firmware_names_stay_below_lib_firmware():
    assert firmware_names('i915/tgl_dmc.bin\n/etc/shadow\n../x\ni915/tgl_dmc.bin\n\n') == ['i915/tgl_dmc.bin']


@pytest.mark.parametrize('listed, present, files, refusal, notes', [
    ([], {}, {}, None, []),
    (['a.bin'], {'a.bin': '/lib/firmware/a.bin'}, {'a.bin': '/lib/firmware/a.bin'}, None, []),
    (['a.bin', 'b.bin'], {'b.bin': '/lib/firmware/b.bin.zst'}, {'b.bin': '/lib/firmware/b.bin.zst'}, None,
     ['mod: 1 of its 2 firmware files are not under /lib/firmware (a.bin); the guest gets the others']),
    (['a.bin'], {}, {}, 'mod needs firmware and none of it is under /lib/firmware (a.bin): install its firmware '
                        'package', []),
])
def test_firmware_plan(listed, present, files, refusal, notes):
    assert firmware_plan('mod', listed, present) == (files, refusal, notes)


def test_vfio_fd_entry():
    fds = {'0': '/dev/null', '17': '/dev/vfio/3', '16': '/dev/vfio/vfio'}
    assert vfio_fd_entry(1234, fds, '3') == '/proc/1234/fd/17 -> /dev/vfio/3'
    assert vfio_fd_entry(1234, {'9': '/dev/vfio/devices/vfio0'}, '3', ['vfio0']) == \
        '/proc/1234/fd/9 -> /dev/vfio/devices/vfio0'
    assert vfio_fd_entry(1234, fds, '4') is None


KMSG = """\
6,2001,812345678,-;vfio-pci 0000:03:00.0: resetting
 SUBSYSTEM=pci
 DEVICE=+pci:0000:03:00.0
6,2002,812345700,-;vfio-pci 0000:03:00.0: reset done
4,2003,812345800,-;pci 0000:03:00.0: BAR 6: can't reserve [mem 0xfe000000-0xfe01ffff pref]
3,2004,812345900,-;DMAR: [DMA Read NO_PASID] Request device [03:00.0] fault addr 0x1000 [fault reason 0x06] PTE Read access is not set
6,2005,812346000,-;e1000e 0000:04:00.0 eno2: NIC Link is Up 1000 Mbps Full Duplex
6,2006,812346100,-;kvm: emulating exit
4,2007,812346200,-;vfio_iommu_type1: pinned more pages than the limit
"""


def test_host_kernel_lines_about_the_passed_devices():
    messages = kernel_messages(KMSG)
    assert len(messages) == 7 and messages[0] == 'vfio-pci 0000:03:00.0: resetting'
    assert device_kernel_lines(messages, [NIC]) == [
        'vfio-pci 0000:03:00.0: resetting',
        'vfio-pci 0000:03:00.0: reset done',
        "pci 0000:03:00.0: BAR 6: can't reserve [mem 0xfe000000-0xfe01ffff pref]",
        'DMAR: [DMA Read NO_PASID] Request device [03:00.0] fault addr 0x1000 [fault reason 0x06] PTE Read access '
        'is not set',
        'vfio_iommu_type1: pinned more pages than the limit',
    ]


def _probe(**extra):
    probe = {'address': NIC, 'group': '3', 'group_devices': [NIC], 'refusal': None, 'started': True, 'accel': 'tcg',
             'accel_note': 'accel tcg was asked', 'qemu_command': ['kvm', '-nic', 'none'],
             'vfio_fd': '/proc/1234/fd/17 -> /dev/vfio/3', 'reset_method': 'flr bus',
             'host_kernel_lines': ['vfio-pci 0000:03:00.0: resetting'], 'seconds': 181.5, 'seen': True,
             'vendor_devices': ['8086:10d3'], 'dhcp': True, 'error': None, 'notes': [],
             'guest': {'kernel_line': 'Linux version 6.12.117+deb13-amd64', 'links': {'eth0': 'up'},
                       'lease': 'lease of 10.0.2.15 obtained from 10.0.2.2',
                       'devices': [{'address': '0000:00:00.0', 'vendor_device': '8086:29c0', 'class': '060000',
                                    'driver': None, 'interfaces': []},
                                   {'address': '0000:00:02.0', 'vendor_device': '8086:10d3', 'class': '020000',
                                    'driver': 'e1000e', 'interfaces': ['eth0']}]}}
    probe.update(extra)
    return probe


def test_summary_of_a_probe_that_saw_the_nic():
    assert summary(_probe()) == [
        '0000:03:00.0 (IOMMU group 3, passed: 0000:03:00.0)',
        '  guest kernel: Linux version 6.12.117+deb13-amd64',
        '  guest device 0000:00:02.0 8086:10d3 class 020000, driver e1000e, link eth0 up',
        '  dhcp: lease of 10.0.2.15 obtained from 10.0.2.2',
        '  host: QEMU held /proc/1234/fd/17 -> /dev/vfio/3; reset_method flr bus; 181.5 s under tcg '
        '(accel tcg was asked)',
        '  host kernel: vfio-pci 0000:03:00.0: resetting',
    ]
    assert failure([_probe()]) is None


def test_refusals_and_unseen_devices_fail_naming_each():
    refused = _probe(address=TWIN, refusal='0000:04:00.0 is on e1000e, not vfio-pci: the role binds it first',
                     started=False)
    assert summary(_probe(group=None, refusal='x'))[0] == '0000:03:00.0 (no IOMMU group, passed: 0000:03:00.0)'
    assert summary(refused)[1] == '  refused: 0000:04:00.0 is on e1000e, not vfio-pci: the role binds it first'
    assert failure([_probe(), refused]) == ('vm_probe refused, nothing was started: 0000:04:00.0: 0000:04:00.0 is '
                                            'on e1000e, not vfio-pci: the role binds it first')
    unseen = _probe(seen=False, guest={'kernel_line': None, 'devices': [], 'links': {}, 'lease': None})
    assert '  NOT SEEN: the guest listed no 8086:10d3' in summary(unseen)
    assert failure([unseen]) == 'vm_probe: not seen in the guest: 0000:03:00.0: the guest listed no 8086:10d3'
    killed = _probe(seen=False, error='the guest did not power off within 900 s: QEMU was killed')
    assert failure([killed]).endswith('QEMU was killed')


def test_check_mode_summary_shows_the_command():
    assert summary(_probe(started=False))[1] == '  check mode: would run kvm -nic none'
