"""vm_probe end to end in-process: a fake host, a fake QEMU that prints a real guest's console.

Check mode returns the command and starts nothing; a refusal of one device starts nothing for any; a run
builds the real initramfs (the module decompressed from .ko.xz), starts "QEMU" in the background, reads
its /dev/vfio file while it runs and parses what the guest printed.
"""

from __future__ import annotations

import lzma
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.vfio.passthrough.plugins.module_utils.vm_probe import _vm_probe_host
from ansible_collections.vfio.passthrough.plugins.module_utils.pci._pci_devices import read_pci_devices
from ansible_collections.vfio.passthrough.plugins.module_utils.pci._sysfs import SysfsTree
from ansible_collections.vfio.passthrough.plugins.modules import vm_probe

UNIT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(UNIT))
sys.path.insert(0, str(UNIT / 'plugins' / 'module_utils' / 'boot'))
sys.path.insert(0, str(UNIT / 'plugins' / 'module_utils' / 'vm_probe'))
from module_runner import run_module  # noqa: E402
from sysfs_builder import FakeHost  # noqa: E402
from test_newc_cpio import read_newc  # noqa: E402
from test_vm_probe import bzimage, elf  # noqa: E402

RELEASE = '6.12.117+deb13-amd64'
NIC, TWIN = '0000:00:03.0', '0000:00:04.0'
GOLDEN = UNIT.parent / 'fixtures' / 'vm_probe' / 'e1000e-dhcp.console'

# Prints the golden console into QEMU's -serial file, after checking the initramfs it was handed.
FAKE_QEMU = '''#!%(python)s
import sys, time
argv = sys.argv[1:]
console = argv[argv.index('-serial') + 1][len('file:'):]
initrd = open(argv[argv.index('-initrd') + 1], 'rb').read()
assert b'lib/modules/e1000e.ko' in initrd and b'TRAILER!!!' in initrd
open(console, 'w').write(open(%(golden)r).read())
time.sleep(0.6)
'''


@pytest.fixture
def host(tmp_path, monkeypatch):
    root = tmp_path / 'root'
    fake = FakeHost(root)
    fake.add_device(NIC, '8086', '10d3', '020000', driver='vfio-pci', group=3)
    fake.add_device(TWIN, '8086', '10d3', '020000', driver='e1000e', group=4, netdev='eno2')
    fake.write('lib/modules/%s/modules.alias' % RELEASE,
               'alias pci:v00008086d000010D3sv*sd*bc*sc*i* e1000e\nalias pci:v*d*sv*sd*bc02sc00i* vfio_pci\n')
    kernel = tmp_path / ('vmlinuz-' + RELEASE)
    kernel.write_bytes(bzimage(RELEASE + ' (debian-kernel@lists.debian.org) #1 SMP'))
    busybox = tmp_path / 'busybox'
    busybox.write_bytes(elf())
    module_file = tmp_path / 'e1000e.ko.xz'
    module_file.write_bytes(lzma.compress(b'\x7fELF e1000e module bytes'))
    qemu = tmp_path / 'qemu-system-x86_64'
    qemu.write_text(FAKE_QEMU % {'python': sys.executable, 'golden': str(GOLDEN)})
    qemu.chmod(0o755)
    commands = []

    def run_command(self, argv, **kwargs):
        commands.append(list(argv))
        assert kwargs.get('environ_update') == {'LC_ALL': 'C'}
        if argv[:4] == ['modprobe', '-C', '/dev/null', '--show-depends']:
            assert argv[4:6] == ['-S', RELEASE]
            return 0, 'insmod %s \n' % module_file, ''
        if argv[0] == 'modinfo':
            return 0, '', ''
        if argv[0] == 'dmesg':
            return 0, '', ''
        raise AssertionError('unexpected command %r' % (argv,))

    monkeypatch.setattr(AnsibleModule, 'run_command', run_command)
    monkeypatch.setattr(AnsibleModule, 'get_bin_path',
                        lambda self, name, *a, **k: str(busybox) if name == 'busybox' else None)
    monkeypatch.setattr(vm_probe, 'ROOT', str(root))
    monkeypatch.setattr(vm_probe, 'KVM', str(tmp_path / 'no-kvm'))
    # The fake QEMU cannot open /dev/vfio/3: its fd table says what the real one holds.
    monkeypatch.setattr(_vm_probe_host, 'read_fds', lambda pid: {'0': '/dev/null', '17': '/dev/vfio/3'})
    return {'root': root, 'kernel': str(kernel), 'qemu': str(qemu), 'commands': commands, 'tmp': tmp_path}


def _args(host, devices, **extra):
    args = dict(devices=devices, kernel=host['kernel'], qemu=host['qemu'])
    args.update(extra)
    return args


def test_check_mode_returns_the_command_and_starts_nothing(host, monkeypatch):
    def no_start(*args, **kwargs):
        raise AssertionError('check mode started %r' % (args,))
    monkeypatch.setattr(subprocess, 'Popen', no_start)
    result = run_module(vm_probe.main, _args(host, ['00:03.0']), check_mode=True)
    assert 'failed' not in result, result.get('msg')
    assert result['changed'] is False
    probe, = result['probes']
    assert (probe['address'], probe['group'], probe['group_devices']) == (NIC, '3', [NIC])
    assert probe['started'] is False and probe['refusal'] is None and probe['seen'] is False
    assert probe['accel'] == 'tcg' and probe['accel_note'].startswith('KVM does not work here (cannot open')
    command = probe['qemu_command']
    assert command[0] == host['qemu'] and command[command.index('-nic') + 1] == 'none'
    assert command[-2:] == ['-device', 'vfio-pci,host=0000:00:03.0']
    assert command[command.index('-kernel') + 1] == host['kernel']
    assert probe['reset_method'] == 'flr bus'
    assert result['summary'][1].startswith('  check mode: would run %s -M q35' % host['qemu'])
    assert [c[0] for c in host['commands']] == ['modprobe', 'modinfo']


def test_one_refused_device_starts_nothing_for_any(host, monkeypatch):
    def no_start(*args, **kwargs):
        raise AssertionError('a refused request started %r' % (args,))
    monkeypatch.setattr(subprocess, 'Popen', no_start)
    result = run_module(vm_probe.main, _args(host, [NIC, TWIN]))
    assert result['failed'] is True and result['changed'] is False
    assert result['msg'] == ('vm_probe refused, nothing was started: 0000:00:04.0: 0000:00:04.0 is on e1000e, '
                             'not vfio-pci: the role binds it first')
    assert [p['refusal'] for p in result['probes']][0] is None
    assert not any(p['started'] for p in result['probes'])
    assert 'Traceback' not in result['msg']


@pytest.mark.parametrize('extra, message', [
    (dict(qemu='/nonexistent/qemu'), 'QEMU was not found (/nonexistent/qemu)'),
    (dict(kernel='/nonexistent/vmlinuz'), 'the guest kernel /nonexistent/vmlinuz cannot be read'),
    (dict(accel='kvm'), 'accel kvm was asked, but cannot open'),
])
def test_missing_tools_are_refusals(host, extra, message):
    result = run_module(vm_probe.main, _args(host, [NIC], **extra))
    assert result['failed'] is True and message in result['msg'] and 'nothing was started' in result['msg']


def test_a_dynamic_busybox_is_refused_naming_its_interpreter(host, monkeypatch):
    dynamic = host['tmp'] / 'busybox-dyn'
    dynamic.write_bytes(elf('/lib64/ld-linux-x86-64.so.2'))
    monkeypatch.setattr(AnsibleModule, 'get_bin_path', lambda self, name, *a, **k: str(dynamic))
    result = run_module(vm_probe.main, _args(host, [NIC]), check_mode=True)
    assert result['failed'] is True
    assert 'is linked dynamically (it needs /lib64/ld-linux-x86-64.so.2' in result['msg']
    assert 'install busybox-static' in result['msg']


def test_bad_address_is_named(host):
    result = run_module(vm_probe.main, _args(host, ['10:00']))
    assert result['failed'] is True and "'10:00' names the whole device" in result['msg']


def test_a_run_reports_what_the_guest_and_the_host_saw(host, monkeypatch):
    made = []
    real_mkdtemp = vm_probe.tempfile.mkdtemp

    def mkdtemp(**kwargs):
        made.append(real_mkdtemp(dir=str(host['tmp']), **kwargs))
        return made[-1]
    monkeypatch.setattr(vm_probe.tempfile, 'mkdtemp', mkdtemp)
    result = run_module(vm_probe.main, _args(host, [NIC], dhcp=True))
    assert 'failed' not in result, result.get('msg')
    assert result['changed'] is True
    probe, = result['probes']
    assert probe['started'] is True and probe['seen'] is True and probe['error'] is None
    assert probe['vfio_fd'].endswith('/fd/17 -> /dev/vfio/3') and probe['vfio_fd'].startswith('/proc/')
    assert probe['seconds'] >= 0.5
    assert probe['guest']['lease'] == 'lease of 10.0.2.15 obtained from 10.0.2.2'
    assert probe['guest']['links'] == {'eth0': 'up'}
    assert probe['guest']['kernel_line'].startswith('Linux version 6.12.117+deb13-amd64')
    initrd = probe['qemu_command'][probe['qemu_command'].index('-initrd') + 1]
    assert initrd.startswith(made[0])
    # the temporary directory is gone, and nothing else was written beside it
    assert not os.path.exists(made[0])
    assert any(line.startswith('  guest device 0000:00:01.0 8086:10d3 class 020000, driver e1000e')
               for line in result['summary'])


def test_the_initramfs_holds_busybox_init_and_the_decompressed_module(host, tmp_path):
    class Module:
        pass
    directory = tmp_path / 'build'
    directory.mkdir()
    modules = [{'name': 'ptp', 'path': None}, {'name': 'e1000e', 'path': str(host['tmp'] / 'e1000e.ko.xz')}]
    firmware = tmp_path / 'fw.bin'
    firmware.write_bytes(b'FW')
    (tmp_path / 'fw.bin.zst').write_bytes(b'ZFW')
    path = _vm_probe_host.write_initramfs(Module(), str(directory), str(host['tmp'] / 'busybox'), modules,
                                          {'e1000e/fw.bin': str(firmware), 'e1000e/z.bin': str(firmware) + '.zst'},
                                          dhcp=False)
    entries = {e['name']: e for e in read_newc(Path(path).read_bytes())}
    assert entries['lib/modules/e1000e.ko']['data'] == b'\x7fELF e1000e module bytes'
    assert 'lib/modules/ptp.ko' not in entries
    assert entries['lib/firmware/e1000e/fw.bin']['data'] == b'FW'
    # compressed firmware keeps its suffix, for the kernel's loader to decompress
    assert entries['lib/firmware/e1000e/z.bin.zst']['data'] == b'ZFW' and 'lib/firmware/e1000e/z.bin' not in entries
    assert b'insmod /lib/modules/e1000e.ko' in entries['init']['data']
    assert b'udhcpc' not in entries['init']['data']
    assert (entries['dev/console']['rdevmajor'], entries['dev/console']['rdevminor']) == (5, 1)
    assert sorted(os.listdir(directory)) == ['initramfs.cpio']


def test_a_guest_that_cannot_be_built_is_an_error_not_a_traceback(host, monkeypatch):
    made = []
    real_mkdtemp = vm_probe.tempfile.mkdtemp

    def mkdtemp(**kwargs):
        made.append(real_mkdtemp(dir=str(host['tmp']), **kwargs))
        return made[-1]

    def no_space(*args, **kwargs):
        raise OSError(28, 'No space left on device')
    monkeypatch.setattr(vm_probe.tempfile, 'mkdtemp', mkdtemp)
    monkeypatch.setattr(vm_probe, 'write_initramfs', no_space)
    result = run_module(vm_probe.main, _args(host, [NIC]))
    assert result['failed'] is True and result['changed'] is False
    assert result['msg'] == ('vm_probe: not seen in the guest: 0000:00:03.0: the guest could not be started: '
                             '[Errno 28] No space left on device')
    assert result['probes'][0]['started'] is False and not os.path.exists(made[0])


def test_guest_modules_follow_show_depends_and_take_the_firmware_present(host, tmp_path):
    root = host['root']
    lib = tmp_path / 'mods'
    lib.mkdir()
    for name in ('crc-itu-t.ko.xz', 'e1000e.ko.zst'):
        (lib / name).write_bytes(b'x')
    (root / 'lib/firmware/e1000e').mkdir(parents=True)
    (root / 'lib/firmware/e1000e/a.bin.zst').write_bytes(b'A')

    class Module:
        def __init__(self, zstd):
            self.zstd = zstd

        def run_command(self, argv, environ_update=None):
            assert environ_update == {'LC_ALL': 'C'}
            if argv[0] == 'modprobe':
                return 0, 'insmod %s/crc-itu-t.ko.xz \nbuiltin ptp\ninsmod %s/e1000e.ko.zst \n' % (lib, lib), ''
            return 0, 'e1000e/a.bin\ne1000e/b.bin\n' if argv[-1] == 'e1000e' else '', ''

        def get_bin_path(self, name):
            return '/usr/bin/zstd' if self.zstd else None

    tree = SysfsTree(str(root))
    devices = read_pci_devices(tree)
    loaded, firmware, refusals, notes = _vm_probe_host.guest_modules(Module(True), tree, RELEASE, [NIC], devices)
    assert [m['name'] for m in loaded] == ['crc_itu_t', 'ptp', 'e1000e'] and refusals == []
    assert firmware == {'e1000e/a.bin': str(root / 'lib/firmware/e1000e/a.bin.zst')}
    assert notes == ['ptp is built into %s' % RELEASE,
                     'e1000e: 1 of its 2 firmware files are not under /lib/firmware (e1000e/b.bin); the guest gets '
                     'the others']
    _loaded, _firmware, refusals, _notes = _vm_probe_host.guest_modules(Module(False), tree, RELEASE, [NIC], devices)
    assert refusals == ['%s/e1000e.ko.zst is zstd-compressed and the zstd tool is missing: install zstd' % lib]


# What kmod 34 printed in a Debian 13 root holding the role's by-address install rule for e1000e
# (`modprobe --show-depends -S 6.12.117+deb13-amd64 e1000e`): the command, not the module file. The guest
# reads none of the host's modprobe.d, so the probe asks with -C /dev/null; if a listing still names no
# file for the driver, the probe refuses instead of booting a guest without it.
INSTALL_RULE_LISTING = ('install /usr/local/sbin/vfio-bind; /sbin/modprobe --ignore-install e1000e $CMDLINE_OPTS \n')


@pytest.mark.parametrize('listing, refused', [
    (INSTALL_RULE_LISTING, True),
    ('insmod {tmp}/e1000e.ko.xz \n', False),
])
def test_the_driver_module_comes_from_modules_dep_not_the_hosts_modprobe_rules(host, listing, refused):
    asked = []

    class Module:
        def run_command(self, argv, environ_update=None):
            asked.append(argv)
            return (0, listing.format(tmp=host['tmp']), '') if argv[0] == 'modprobe' else (0, '', '')

        def get_bin_path(self, name):
            return None

    tree = SysfsTree(str(host['root']))
    loaded, _firmware, refusals, _notes = _vm_probe_host.guest_modules(Module(), tree, RELEASE, [NIC],
                                                                       read_pci_devices(tree))
    assert asked[0][:4] == ['modprobe', '-C', '/dev/null', '--show-depends']
    if refused:
        assert loaded == [] and refusals == [
            'modprobe --show-depends names no file for the driver module e1000e of 0000:00:03.0 (%s): %s'
            % (RELEASE, INSTALL_RULE_LISTING.strip())]
    else:
        assert refusals == [] and [m['name'] for m in loaded] == ['e1000e']
