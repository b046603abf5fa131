"""kernel_cmdline end to end in-process: real files under tmp_path, stub boot tools on PATH."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

import pytest

from ansible_collections.vfio.passthrough.plugins.module_utils.boot import _cmdline_plan
from ansible_collections.vfio.passthrough.plugins.modules import kernel_cmdline
from module_runner import run_module
from tree_snapshot import tree_snapshot

FIXTURES = Path(__file__).resolve().parents[3] / 'fixtures' / 'grub'
INTEL = {'present': ['intel_iommu=on', 'iommu=pt'], 'absent': ['intel_iommu=off', 'amd_iommu=off']}
UEFI_STATUS = ('System currently booted with uefi\n'
               '5A1B-2C3D is configured with: uefi (versions: 6.8.12-4-pve)\n')


class Host:
    """A fake host: its files under tmp_path, and stub tools that log their calls."""

    def __init__(self, tmp_path, monkeypatch):
        self.root = tmp_path
        self.bin = tmp_path / 'bin'
        self.bin.mkdir()
        self.log = tmp_path / 'calls.log'
        self.grub = tmp_path / 'etc/default/grub'
        self.grub.parent.mkdir(parents=True)
        self.grub_cfg = tmp_path / 'boot/grub/grub.cfg'
        self.cmdline = tmp_path / 'etc/kernel/cmdline'
        self.uuids = tmp_path / 'etc/kernel/proxmox-boot-uuids'
        self.proc = tmp_path / 'proc/cmdline'
        self.proc.parent.mkdir(parents=True)
        self.proc.write_text('BOOT_IMAGE=/boot/vmlinuz-6.1.0-27-amd64 root=UUID=1234 ro quiet intel_iommu=off\n')
        self.stub('update-grub', 'mkdir -p "%s" && echo generated > "%s"' % (self.grub_cfg.parent, self.grub_cfg))
        monkeypatch.setenv('PATH', '%s:%s' % (self.bin, os.environ['PATH']))

    def stub(self, name, body, rc=0):
        path = self.bin / name
        path.write_text('#!/bin/sh\necho "%s $*" >> "%s"\n%s\nexit %d\n' % (name, self.log, body, rc))
        path.chmod(0o755)

    def proxmox_boot_tool(self, status):
        self.uuids.parent.mkdir(parents=True, exist_ok=True)
        self.uuids.write_text('5A1B-2C3D\n')
        self.stub('proxmox-boot-tool', 'if [ "$1" = status ]; then cat <<"EOS"\n%sEOS\nfi' % status)

    def calls(self):
        return self.log.read_text().splitlines() if self.log.exists() else []

    def args(self, **extra):
        args = dict(INTEL, grub_file=str(self.grub), grub_cfg=str(self.grub_cfg), cmdline_file=str(self.cmdline),
                    proc_cmdline=str(self.proc), uuids_file=str(self.uuids),
                    numa_nodes=str(self.root / 'sys/devices/system/node/online'))
        args.update(extra)
        return args

    def snapshot(self):
        return tree_snapshot(self.root, skip=[self.bin])


@pytest.fixture
def host(tmp_path, monkeypatch):
    return Host(tmp_path, monkeypatch)


def test_grub_first_run_writes_exact_bytes_and_regenerates(host):
    host.grub.write_text((FIXTURES / 'debian12.default').read_text())
    result = run_module(kernel_cmdline.main, host.args())
    assert result['changed'] is True
    assert host.grub.read_text() == (FIXTURES / 'debian12.intel.expected').read_text()
    assert host.calls() == ['update-grub ']
    assert result['bootloader'] == 'grub' and result['managed_by'] is None
    assert (result['before'], result['after']) == ('quiet', 'quiet intel_iommu=on iommu=pt')
    assert result['reboot_required'] is True
    assert result['unmet'] == ['missing intel_iommu=on', 'missing iommu=pt', 'still has intel_iommu=off']
    assert result['command'][0].endswith('/update-grub')
    assert 'diff' not in result


def test_grub_second_run_changes_and_touches_nothing(host):
    host.grub.write_text((FIXTURES / 'debian12.default').read_text())
    run_module(kernel_cmdline.main, host.args())
    before = host.snapshot()
    result = run_module(kernel_cmdline.main, host.args())
    assert result['changed'] is False
    assert result['command'] is None
    assert host.snapshot() == before
    assert host.calls() == ['update-grub ']
    # The file is right but the kernel was never rebooted: still owed.
    assert result['reboot_required'] is True


def test_reboot_not_required_once_the_kernel_runs_the_args(host):
    host.grub.write_text('GRUB_CMDLINE_LINUX_DEFAULT="quiet intel_iommu=on iommu=pt"\n')
    host.proc.write_text('BOOT_IMAGE=/vmlinuz ro quiet intel_iommu=on iommu=pt\n')
    result = run_module(kernel_cmdline.main, host.args())
    assert (result['changed'], result['reboot_required'], result['unmet']) == (False, False, [])


def test_check_mode_reports_the_diff_the_real_run_applies(host):
    host.grub.write_text((FIXTURES / 'debian12.default').read_text())
    before = host.snapshot()
    checked = run_module(kernel_cmdline.main, host.args(), check_mode=True, diff=True)
    assert host.snapshot() == before
    assert host.calls() == []
    assert checked['changed'] is True
    real = run_module(kernel_cmdline.main, host.args(), diff=True)
    assert checked['diff'] == real['diff']
    assert real['diff'] == [{'before_header': str(host.grub), 'after_header': str(host.grub),
                             'before': (FIXTURES / 'debian12.default').read_text(),
                             'after': (FIXTURES / 'debian12.intel.expected').read_text()}]


def test_failed_update_grub_restores_the_file(host):
    original = (FIXTURES / 'debian12.default').read_bytes()
    host.grub.write_bytes(original)
    host.grub.chmod(0o600)
    host.stub('update-grub', 'echo "grub-probe: error: failed" >&2', rc=1)
    result = run_module(kernel_cmdline.main, host.args())
    assert result['failed'] is True
    assert result['rc'] == 1 and 'grub-probe: error' in result['stderr']
    assert 'restored' in result['msg']
    assert host.grub.read_bytes() == original
    assert stat.S_IMODE(host.grub.stat().st_mode) == 0o600


@pytest.mark.parametrize('args, fragment', [
    ({'present': ['intel_iommu=on"; reboot; "']}, 'intel_iommu=on"; reboot; "'),
    ({'present': ['iommu=pt', 'iommu=soft']}, 'name the same argument'),
    ({'absent': ['$(rm -rf /)']}, '$(rm -rf /)'),
    ({'present': ['iommu=pt'], 'absent': ['iommu']}, "'iommu' would remove 'iommu=pt'"),
])
def test_bad_input_fails_and_leaves_files_untouched(host, args, fragment):
    host.grub.write_text((FIXTURES / 'debian12.default').read_text())
    before = host.snapshot()
    result = run_module(kernel_cmdline.main, host.args(**args))
    assert result['failed'] is True
    assert fragment in result['msg']
    assert host.snapshot() == before and host.calls() == []


def test_dropin_undoing_the_request_is_refused(host):
    host.grub.write_text('GRUB_CMDLINE_LINUX_DEFAULT="quiet"\n')
    dropin = Path(str(host.grub) + '.d') / 'zz-cloud.cfg'
    dropin.parent.mkdir()
    dropin.write_text('GRUB_CMDLINE_LINUX_DEFAULT="quiet intel_iommu=off"\n')
    before = host.snapshot()
    result = run_module(kernel_cmdline.main, host.args())
    assert result['failed'] is True and str(dropin) in result['msg']
    assert host.snapshot() == before and host.calls() == []


def test_stale_grub_cfg_is_regenerated_without_a_file_change(host):
    host.grub.write_text('GRUB_CMDLINE_LINUX_DEFAULT="quiet intel_iommu=on iommu=pt"\n')
    host.grub_cfg.parent.mkdir(parents=True)
    host.grub_cfg.write_text('old\n')
    os.utime(host.grub_cfg, (1_000_000, 1_000_000))
    checked = run_module(kernel_cmdline.main, host.args(), check_mode=True)
    assert (checked['changed'], checked['stale_boot_config'], host.calls()) == (True, True, [])
    result = run_module(kernel_cmdline.main, host.args())
    assert (result['changed'], result['stale_boot_config']) == (True, True)
    assert host.calls() == ['update-grub ']
    assert run_module(kernel_cmdline.main, host.args())['changed'] is False


def test_systemd_boot_detected_and_refreshed(host):
    host.proxmox_boot_tool(UEFI_STATUS)
    host.cmdline.write_text('root=ZFS=rpool/ROOT/pve-1 boot=zfs quiet\n')
    result = run_module(kernel_cmdline.main, host.args(present=['iommu=pt'], absent=['amd_iommu=off']))
    assert result['bootloader'] == 'systemd-boot' and result['managed_by'] == 'proxmox-boot-tool'
    assert 'uefi' in result['bootloader_reason']
    assert host.cmdline.read_text() == 'root=ZFS=rpool/ROOT/pve-1 boot=zfs quiet iommu=pt\n'
    assert host.calls() == ['proxmox-boot-tool status', 'proxmox-boot-tool refresh']
    again = run_module(kernel_cmdline.main, host.args(present=['iommu=pt'], absent=['amd_iommu=off']))
    assert again['changed'] is False
    assert host.calls() == ['proxmox-boot-tool status', 'proxmox-boot-tool refresh', 'proxmox-boot-tool status']


def test_missing_systemd_boot_cmdline_is_seeded_from_proc(host):
    host.proxmox_boot_tool(UEFI_STATUS)
    host.proc.write_text('initrd=\\EFI\\proxmox\\6.8.12-4-pve\\initrd.img root=ZFS=rpool/ROOT/pve-1 boot=zfs quiet\n')
    result = run_module(kernel_cmdline.main, host.args(present=['iommu=pt'], absent=[]), diff=True)
    assert result['changed'] is True and result['before'] is None
    assert host.cmdline.read_text() == 'root=ZFS=rpool/ROOT/pve-1 boot=zfs quiet iommu=pt\n'
    assert stat.S_IMODE(host.cmdline.stat().st_mode) == 0o644
    assert result['diff'][0]['before_header'].endswith('(absent)')


def test_grub_managed_by_proxmox_boot_tool_refreshes_instead_of_update_grub(host):
    host.proxmox_boot_tool('5A1B-2C3D is configured with: grub (versions: 6.8.12-4-pve)\n')
    host.grub.write_text('GRUB_CMDLINE_LINUX_DEFAULT="quiet"\n')
    result = run_module(kernel_cmdline.main, host.args())
    assert (result['bootloader'], result['managed_by']) == ('grub', 'proxmox-boot-tool')
    assert host.calls() == ['proxmox-boot-tool status', 'proxmox-boot-tool refresh']


def test_backup_keeps_the_old_bytes(host):
    host.grub.write_text('GRUB_CMDLINE_LINUX_DEFAULT="quiet"\n')
    result = run_module(kernel_cmdline.main, host.args(backup=True))
    assert Path(result['backup_file']).read_text() == 'GRUB_CMDLINE_LINUX_DEFAULT="quiet"\n'


def test_apply_false_writes_but_runs_nothing(host):
    host.grub.write_text('GRUB_CMDLINE_LINUX_DEFAULT="quiet"\n')
    result = run_module(kernel_cmdline.main, host.args(apply=False))
    assert result['changed'] is True and result['command'] is None and host.calls() == []


def test_missing_grub_file_is_a_clear_error(host):
    result = run_module(kernel_cmdline.main, host.args())
    assert result['failed'] is True and str(host.grub) in result['msg']


def test_diff_only_when_asked(host):
    host.grub.write_text('GRUB_CMDLINE_LINUX_DEFAULT="quiet"\n')
    assert 'diff' not in run_module(kernel_cmdline.main, host.args(), check_mode=True)
    assert hashlib.sha256(host.grub.read_bytes()).hexdigest() == hashlib.sha256(
        b'GRUB_CMDLINE_LINUX_DEFAULT="quiet"\n').hexdigest()


BOTH_STATUS = ('System currently booted with uefi\n'
               '5A1B-2C3D is configured with: uefi (versions: 6.14.8-2-pve), grub (versions: 6.14.8-2-pve)\n')


def test_esps_with_grub_and_systemd_boot_get_both_files_edited(host):
    host.proxmox_boot_tool(BOTH_STATUS)
    host.grub.write_text('GRUB_CMDLINE_LINUX_DEFAULT="quiet"\n')
    host.cmdline.write_text('root=ZFS=rpool/ROOT/pve-1 boot=zfs\n')
    result = run_module(kernel_cmdline.main, host.args(), diff=True)
    assert result['bootloaders'] == ['grub', 'systemd-boot']
    assert result['esps'] == {'5A1B-2C3D': ['uefi', 'grub']}
    assert 'both are edited' in result['bootloader_reason']
    assert result['files_changed'] == [str(host.grub), str(host.cmdline)]
    assert host.grub.read_text() == 'GRUB_CMDLINE_LINUX_DEFAULT="quiet intel_iommu=on iommu=pt"\n'
    assert host.cmdline.read_text() == 'root=ZFS=rpool/ROOT/pve-1 boot=zfs intel_iommu=on iommu=pt\n'
    assert [d['after_header'] for d in result['diff']] == [str(host.grub), str(host.cmdline)]
    assert host.calls() == ['proxmox-boot-tool status', 'proxmox-boot-tool refresh']
    assert run_module(kernel_cmdline.main, host.args())['changed'] is False


def test_failed_refresh_restores_both_files(host):
    host.proxmox_boot_tool(BOTH_STATUS)
    host.stub('proxmox-boot-tool', 'if [ "$1" = status ]; then cat <<"EOS"\n%sEOS\nexit 0\nfi' % BOTH_STATUS, rc=1)
    host.grub.write_text('GRUB_CMDLINE_LINUX_DEFAULT="quiet"\n')
    host.cmdline.write_text('root=ZFS=rpool/ROOT/pve-1 boot=zfs\n')
    before = {k: (v[0], v[3]) for k, v in host.snapshot().items() if k != 'calls.log'}
    result = run_module(kernel_cmdline.main, host.args())
    assert result['failed'] is True and 'restored' in result['msg']
    assert {k: (v[0], v[3]) for k, v in host.snapshot().items() if k != 'calls.log'} == before


@pytest.mark.parametrize('status, rc, bootloader', [
    # Exit 2 "does not exist": plain GRUB, whatever /etc/kernel/cmdline says (root=ZFS is no signal).
    ('E: /etc/kernel/proxmox-boot-uuids does not exist.\n', 2, 'grub'),
    (UEFI_STATUS, 0, 'systemd-boot'),
])
def test_cmdline_file_and_root_zfs_are_no_signal(host, status, rc, bootloader):
    host.uuids.parent.mkdir(parents=True, exist_ok=True)
    host.uuids.write_text('5A1B-2C3D\n')
    host.stub('proxmox-boot-tool', 'if [ "$1" = status ]; then cat >&2 <<"EOS"\n%sEOS\nexit %d\nfi' % (status, rc))
    host.grub.write_text('GRUB_CMDLINE_LINUX_DEFAULT="quiet"\n')
    host.cmdline.write_text('root=ZFS=rpool/ROOT/pve-1 boot=zfs\n')
    result = run_module(kernel_cmdline.main, host.args(), check_mode=True)
    assert result['bootloader'] == bootloader, result
    assert result['path'] == str(host.grub if bootloader == 'grub' else host.cmdline)


@pytest.mark.parametrize('text', ['root=ZFS=rpool/ROOT/pve-1 acpi_osi="Windows 2020\n',
                                  'root=/dev/sda1 "\n'])
def test_unbalanced_quote_in_kernel_cmdline_is_refused_with_the_line(host, text):
    host.proxmox_boot_tool(UEFI_STATUS)
    host.cmdline.write_text(text)
    before = {k: v for k, v in host.snapshot().items() if k != 'calls.log'}
    result = run_module(kernel_cmdline.main, host.args())
    assert result['failed'] is True
    assert result['msg'].startswith('%s line 1: unbalanced double quote in %r' % (host.cmdline, text.rstrip('\n')))
    assert {k: v for k, v in host.snapshot().items() if k != 'calls.log'} == before


@pytest.mark.parametrize('line, expected', [
    ('root=ZFS=rpool/ROOT/pve-1 boot=zfs -- single\n', 'root=ZFS=rpool/ROOT/pve-1 boot=zfs intel_iommu=on iommu=pt -- single\n'),
    ('root=/dev/sda1 -- intel_iommu=on iommu=pt\n', 'root=/dev/sda1 intel_iommu=on iommu=pt -- intel_iommu=on iommu=pt\n'),
])
def test_systemd_boot_args_go_before_init_separator(host, line, expected):
    host.proxmox_boot_tool(UEFI_STATUS)
    host.cmdline.write_text(line)
    host.proc.write_text('initrd=\\EFI\\proxmox\\6.8\\initrd.img-6.8 ' + expected.replace('intel_iommu=on iommu=pt --', '--'))
    result = run_module(kernel_cmdline.main, host.args())
    assert host.cmdline.read_text() == expected
    assert 'missing intel_iommu=on' in result['unmet'] and result['reboot_required'] is True


def _kernel(boot, version, cmdline_size):
    """A /boot/vmlinuz-<version> whose setup header says cmdline_size (protocol 2.15)."""
    boot.mkdir(parents=True, exist_ok=True)
    data = bytearray(0x400)
    data[0x202:0x206] = b'HdrS'
    data[0x206:0x208] = (0x020F).to_bytes(2, 'little')
    data[0x238:0x23C] = cmdline_size.to_bytes(4, 'little')
    (boot / ('vmlinuz-' + version)).write_bytes(bytes(data))


@pytest.mark.parametrize('bootloader', ['grub', 'systemd-boot'])
def test_line_longer_than_a_kernel_accepts_is_refused(host, bootloader):
    boot = host.root / 'boot'
    _kernel(boot, '6.8.12-4-pve', 2047)
    _kernel(boot, '6.14.8-2-pve', 100)   # the smallest limit of every installed kernel counts
    if bootloader == 'grub':
        host.grub.write_text('GRUB_CMDLINE_LINUX="console=ttyS0,115200n8"\nGRUB_CMDLINE_LINUX_DEFAULT="quiet splash"\n')
    else:
        host.proxmox_boot_tool(UEFI_STATUS)
        host.cmdline.write_text('root=ZFS=rpool/ROOT/pve-1 boot=zfs quiet splash\n')
    before = {k: v for k, v in host.snapshot().items() if k != 'calls.log'}
    result = run_module(kernel_cmdline.main, host.args(bootloader=bootloader, boot_dir=str(boot)))
    assert result['failed'] is True
    path = host.grub if bootloader == 'grub' else host.cmdline
    assert result['msg'].startswith('%s: the kernel command line would be ' % path)
    assert '%s/vmlinuz-6.14.8-2-pve accepts 100' % boot in result['msg']
    assert 'intel_iommu=on iommu=pt' in result['msg']
    assert {k: v for k, v in host.snapshot().items() if k != 'calls.log'} == before
    assert host.calls() in ([], ['proxmox-boot-tool status'])


def test_line_within_every_kernels_limit_is_measured_and_reported(host):
    boot = host.root / 'boot'
    _kernel(boot, '6.8.12-4-pve', 2047)
    host.grub.write_text('GRUB_CMDLINE_LINUX_DEFAULT="quiet"\n')
    result = run_module(kernel_cmdline.main, host.args(boot_dir=str(boot)))
    line = 'BOOT_IMAGE=/boot/vmlinuz-6.8.12-4-pve root=UUID=1234 ro quiet intel_iommu=on iommu=pt'
    assert result['kernel_lines'] == [{'image': str(boot / 'vmlinuz-6.8.12-4-pve'), 'bootloader': 'grub',
                                       'length': len(line), 'cmdline_size': 2047}]
    assert result['changed'] is True


@pytest.mark.parametrize('grub_line, proc, vfio_ids, where', [
    # In the edited file, other IDs than this run writes: refused naming the file.
    ('quiet vfio-pci.ids=10de:1b80', 'ro quiet', ['10de:1b80', '10de:10f0'], 'grub'),
    ('quiet vfio_pci.ids=8086:1533', 'ro quiet', ['10de:1b80'], 'grub'),
    # No IDs written by this run (binding by address only, as vfio_modules): nothing competes.
    ('quiet vfio_pci.ids=8086:1533', 'ro quiet vfio-pci.ids=8086:1533', [], None),
    # Only in the running kernel's line: refused naming /proc/cmdline.
    ('quiet', 'ro quiet vfio-pci.ids=8086:1533', ['10de:1b80'], 'proc'),
    # Exactly the IDs this run writes (any order, any case): fine.
    ('quiet vfio-pci.ids=10DE:10F0,10de:1b80', 'ro quiet vfio-pci.ids=10de:1b80,10de:10f0', ['10de:1b80', '10de:10f0'], None),
    # After '--' it goes to init: not vfio-pci's.
    ('quiet -- vfio-pci.ids=8086:1533', 'ro -- vfio-pci.ids=8086:1533', ['10de:1b80'], None),
    ('quiet', 'ro quiet', ['10de:1b80'], None),
])
def test_vfio_pci_ids_on_the_kernel_line_competing_is_refused(host, grub_line, proc, vfio_ids, where):
    host.grub.write_text('GRUB_CMDLINE_LINUX_DEFAULT="%s"\n' % grub_line)
    host.proc.write_text(proc + '\n')
    before = {k: v for k, v in host.snapshot().items() if k != 'calls.log'}
    result = run_module(kernel_cmdline.main, host.args(vfio_ids=vfio_ids))
    if where is None:
        assert result.get('failed') is not True, result.get('msg')
        return
    assert result['failed'] is True
    named = str(host.grub) if where == 'grub' else '%s (the running kernel)' % host.proc
    assert result['msg'].startswith('%s: the kernel command line has vfio-pci.ids=' % named)
    assert 'competes with the vfio-pci ids=%s' % ','.join(sorted(vfio_ids)) in result['msg']
    assert {k: v for k, v in host.snapshot().items() if k != 'calls.log'} == before


def test_removing_vfio_pci_ids_is_allowed_while_the_running_kernel_still_has_it(host):
    host.grub.write_text('GRUB_CMDLINE_LINUX_DEFAULT="quiet vfio-pci.ids=8086:1533"\n')
    host.proc.write_text('ro quiet vfio-pci.ids=8086:1533\n')
    result = run_module(kernel_cmdline.main, host.args(vfio_ids=['10de:1b80'],
                                                       absent=INTEL['absent'] + ['vfio-pci.ids']))
    assert result['changed'] is True
    assert host.grub.read_text() == 'GRUB_CMDLINE_LINUX_DEFAULT="quiet intel_iommu=on iommu=pt"\n'


HUGEPAGES_2M = ['default_hugepagesz=2M', 'hugepagesz=2M', 'hugepages=128']


def _meminfo(host, mib):
    path = host.root / 'proc/meminfo'
    path.write_text('MemTotal:       %d kB\nMemFree:        1000 kB\n' % (mib * 1024))
    return str(path)


def test_hugepage_group_is_written_in_order_reported_unmet_then_met(host):
    host.grub.write_text('GRUB_CMDLINE_LINUX_DEFAULT="quiet hugepages=64"\nGRUB_CMDLINE_LINUX=""\n')
    args = host.args(group=HUGEPAGES_2M, meminfo=_meminfo(host, 1536), hugepages_host_reserve_mib=1024)
    result = run_module(kernel_cmdline.main, args)
    assert result['changed'] is True, result
    assert host.grub.read_text().startswith('GRUB_CMDLINE_LINUX_DEFAULT="quiet %s intel_iommu=on iommu=pt"\n'
                                            % ' '.join(HUGEPAGES_2M))
    assert 'missing %s' % ' '.join(HUGEPAGES_2M) in result['unmet']
    host.proc.write_text('BOOT_IMAGE=/boot/vmlinuz-6.1.0-27-amd64 root=UUID=1234 ro quiet %s intel_iommu=on iommu=pt\n'
                         % ' '.join(HUGEPAGES_2M))
    again = run_module(kernel_cmdline.main, args)
    assert again['changed'] is False and again['unmet'] == [] and again['reboot_required'] is False


@pytest.mark.parametrize('mib, reserve, fragment', [
    (1200, 1024, 'reserve 256 MiB of the 1200 MiB RAM (MemTotal), leaving the host 944 MiB, less than the 1024 MiB'),
    (1536, None, 'less than the 4096 MiB it keeps (25% of RAM and at least 4096 MiB)'),
    (65536, None, 'less than the 16384 MiB it keeps'),
])
def test_hugepage_memory_guard_refuses_before_writing(host, mib, reserve, fragment):
    host.grub.write_text('GRUB_CMDLINE_LINUX_DEFAULT="quiet"\n')
    group = HUGEPAGES_2M if mib < 65536 else ['default_hugepagesz=1G', 'hugepagesz=1G', 'hugepages=50']
    args = host.args(group=group, meminfo=_meminfo(host, mib))
    if reserve is not None:
        args['hugepages_host_reserve_mib'] = reserve
    before = host.snapshot()
    result = run_module(kernel_cmdline.main, args)
    assert result['failed'] is True and fragment in result['msg'], result
    assert host.snapshot() == before and host.calls() == []


@pytest.mark.parametrize('mib, ok', [(1279, False), (1280, True)])
def test_hugepage_memory_guard_boundary(host, mib, ok):
    host.grub.write_text('GRUB_CMDLINE_LINUX_DEFAULT="quiet"\n')
    args = host.args(group=HUGEPAGES_2M, meminfo=_meminfo(host, mib), hugepages_host_reserve_mib=1024)
    result = run_module(kernel_cmdline.main, args, check_mode=True)
    assert result.get('failed', False) is not ok, result
    if not ok:
        assert 'hugepagesz=2M hugepages=128 = 256 MiB' in result['msg']
        assert 'leaving the host 1023 MiB, less than the 1024 MiB it keeps' in result['msg']


def test_hugepage_memory_guard_sums_a_dropin_pool(host):
    host.grub.write_text('GRUB_CMDLINE_LINUX_DEFAULT="quiet"\n')
    dropins = host.grub.parent / 'grub.d'
    dropins.mkdir()
    (dropins / 'pool.cfg').write_text('GRUB_CMDLINE_LINUX="$GRUB_CMDLINE_LINUX hugepages=300"\n')
    args = host.args(group=HUGEPAGES_2M, meminfo=_meminfo(host, 2048), hugepages_host_reserve_mib=1024)
    before = host.snapshot()
    result = run_module(kernel_cmdline.main, args)
    assert result['failed'] is True and host.snapshot() == before
    assert 'hugepages=300' in result['msg'] or 'drop-in' in result['msg']


def test_hugepage_pool_of_another_size_is_refused_naming_it(host):
    host.proxmox_boot_tool(UEFI_STATUS)
    host.cmdline.write_text('root=ZFS=rpool/ROOT/pve-1 boot=zfs hugepagesz=1G hugepages=4\n')
    args = host.args(group=HUGEPAGES_2M, meminfo=_meminfo(host, 65536))
    before = host.snapshot()
    result = run_module(kernel_cmdline.main, args)
    assert result['failed'] is True
    assert {k: v for k, v in host.snapshot().items() if k != 'calls.log'} == before
    assert 'line 1: the command line' in result['msg'] and 'holds hugepagesz=1G hugepages=4' in result['msg']


def _nodes(host, text):
    path = host.root / 'sys/devices/system/node/online'
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text + '\n')


@pytest.mark.parametrize('line, fragment', [
    # 32 + 32 pages of 1 GiB are the 64 asked, so the line keeps them: the guard sums both nodes
    ('hugepages=0:32,1:32', 'hugepagesz=1G hugepages=0:32,1:32 = 65536 MiB'),
    # node 2 does not exist: the kernel would drop the whole argument
    ('hugepages=0:1,2:63', 'hugepages=0:1,2:63: names NUMA node 2, which this host does not have (online nodes: 0-1)'),
])
def test_hugepage_memory_guard_reads_the_per_node_form(host, line, fragment):
    """A per-node pool with the asked total stays on the line: the guard sums its nodes and knows which exist."""
    _nodes(host, '0-1')
    host.grub.write_text('GRUB_CMDLINE_LINUX_DEFAULT="quiet default_hugepagesz=1G hugepagesz=1G %s"\n' % line)
    group = ['default_hugepagesz=1G', 'hugepagesz=1G', 'hugepages=64']
    args = host.args(group=group, meminfo=_meminfo(host, 65536))
    before = host.snapshot()
    result = run_module(kernel_cmdline.main, args)
    assert result['failed'] is True and fragment in result['msg'], result
    assert host.snapshot() == before and host.calls() == []


def test_hugepage_group_met_by_the_per_node_form_with_the_asked_total(host):
    """hugepages=0:64,1:64 is the 128 pages asked: no edit and no reboot; another total replaces it."""
    _nodes(host, '0-1')
    line = 'default_hugepagesz=2M hugepagesz=2M hugepages=0:64,1:64'
    host.grub.write_text('GRUB_CMDLINE_LINUX_DEFAULT="quiet %s intel_iommu=on iommu=pt"\nGRUB_CMDLINE_LINUX=""\n'
                         % line)
    host.proc.write_text('BOOT_IMAGE=/boot/vmlinuz-6.1.0-27-amd64 root=UUID=1234 ro quiet %s intel_iommu=on iommu=pt\n'
                         % line)
    args = host.args(group=HUGEPAGES_2M, meminfo=_meminfo(host, 8192))
    before = host.snapshot()
    result = run_module(kernel_cmdline.main, args)
    assert result['changed'] is False and result['unmet'] == [] and result['reboot_required'] is False, result
    assert host.snapshot() == before
    more = run_module(kernel_cmdline.main, host.args(group=['default_hugepagesz=2M', 'hugepagesz=2M', 'hugepages=256'],
                                                     meminfo=_meminfo(host, 8192)))
    assert more['changed'] is True and more['reboot_required'] is True, more
    assert host.grub.read_text().startswith('GRUB_CMDLINE_LINUX_DEFAULT="quiet default_hugepagesz=2M hugepagesz=2M '
                                            'hugepages=256 intel_iommu=on iommu=pt"\n')


def test_hugepages_without_meminfo_are_refused(host):
    host.grub.write_text('GRUB_CMDLINE_LINUX_DEFAULT="quiet"\n')
    result = run_module(kernel_cmdline.main, host.args(group=HUGEPAGES_2M, meminfo=str(host.root / 'proc/nothing')))
    assert result['failed'] is True and 'has no MemTotal' in result['msg']


def test_no_hugepage_request_skips_the_memory_guard_on_a_hand_set_pool(host):
    host.grub.write_text('GRUB_CMDLINE_LINUX_DEFAULT="quiet hugepagesz=1G hugepages=60"\n')
    result = run_module(kernel_cmdline.main, host.args(meminfo=_meminfo(host, 1024)))
    assert result['changed'] is True and 'hugepages=60' in host.grub.read_text()


@pytest.mark.parametrize('text, message', [
    ('\nroot=ZFS=rpool/ROOT/pve-1 boot=zfs\n', 'line 1 is blank, and proxmox-boot-tool reads only line 1'),
    ('root=ZFS=rpool/ROOT/pve-1\nboot=zfs\n', "line 2 'boot=zfs' is never read"),
    ('boot=zfs quiet\n', "line 1 'boot=zfs quiet' has no root= argument"),
    ('', 'is empty'),
    ('root=ZFS=rpool/ROOT/pve-1 boot=zfs\r\n', 'holds a carriage return'),
    ('root=ZFS=rpool/ROOT/pve-1 boot=\0zfs\n', 'holds a NUL byte'),
], ids=['leading-blank', 'args-on-line-2', 'no-root', 'empty', 'crlf', 'nul'])
def test_a_kernel_cmdline_the_boot_hook_cannot_use_is_refused_before_any_write(host, text, message):
    host.proxmox_boot_tool(UEFI_STATUS)
    host.cmdline.parent.mkdir(parents=True, exist_ok=True)
    host.cmdline.write_text(text)
    before = {k: v for k, v in host.snapshot().items() if k != 'calls.log'}
    for check_mode in (True, False):
        result = run_module(kernel_cmdline.main, host.args(), check_mode=check_mode)
        assert result['failed'] is True
        assert result['msg'].startswith('%s ' % host.cmdline) and message in result['msg'], result['msg']
        assert result['msg'].endswith('; nothing was written')
    assert {k: v for k, v in host.snapshot().items() if k != 'calls.log'} == before
    assert [call for call in host.calls() if 'refresh' in call] == []


def test_a_kernel_cmdline_seeded_from_a_running_line_without_root_is_refused(host):
    host.proxmox_boot_tool(UEFI_STATUS)
    host.proc.write_text('initrd=\\EFI\\proxmox\\6.8\\initrd.img-6.8 boot=zfs quiet\n')
    result = run_module(kernel_cmdline.main, host.args())
    assert result['failed'] is True
    assert result['msg'].startswith("after the edit: %s line 1 'boot=zfs quiet intel_iommu=on iommu=pt' has no root= "
                                    'argument' % host.cmdline), result['msg']
    assert not host.cmdline.exists()


def test_a_kernel_cmdline_that_needs_no_edit_is_only_warned_about(host):
    host.proxmox_boot_tool(UEFI_STATUS)
    host.cmdline.parent.mkdir(parents=True, exist_ok=True)
    host.cmdline.write_text('root=ZFS=rpool/ROOT/pve-1 intel_iommu=on iommu=pt\nquiet\n')
    result = run_module(kernel_cmdline.main, host.args())
    assert result.get('failed') is not True and result['changed'] is False
    assert any("line 2 'quiet' is never read" in str(warning) for warning in result['warnings']), result['warnings']


@pytest.mark.parametrize('bootloader', ['grub', 'systemd-boot'])
def test_success_is_never_reported_while_an_absent_argument_remains(host, monkeypatch, bootloader):
    # Break the editor so that it keeps every argument: the last check before any write must still refuse.
    monkeypatch.setattr(_cmdline_plan, 'edit_args', lambda text, request: text)
    monkeypatch.setattr(_cmdline_plan, 'judge_evaluation', lambda request, before, after, *a, **k: ' '.join(after['files'][-1][1:]))
    if bootloader == 'grub':
        host.grub.write_text('GRUB_CMDLINE_LINUX_DEFAULT="quiet intel_iommu=off"\n')
        monkeypatch.setattr(_cmdline_plan, 'edit_grub_default', lambda text, request, *a, **k: {
            'text': text, 'before': 'quiet intel_iommu=off', 'after': 'quiet intel_iommu=off', 'line': 1})
    else:
        host.proxmox_boot_tool(UEFI_STATUS)
        host.cmdline.parent.mkdir(parents=True, exist_ok=True)
        host.cmdline.write_text('root=/dev/sda1 quiet intel_iommu=off\n')
    path = host.grub if bootloader == 'grub' else host.cmdline
    before = path.read_bytes()
    result = run_module(kernel_cmdline.main, host.args(present=[], bootloader=bootloader))
    assert result['failed'] is True
    assert result['msg'].startswith('%s: the kernel line would still have intel_iommu=off, asked absent' % path), result['msg']
    assert path.read_bytes() == before
