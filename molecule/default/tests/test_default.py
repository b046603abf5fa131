"""Exact state after converge + idempotence: Intel host, plain GRUB, GPU + HDMI audio."""

from __future__ import annotations

from vfio_testinfra import (
    INITRAMFS_MODULES_DEBIAN, VFIO_MODULES_BLOCK, VFIO_MODULES_LOAD,
    assert_check_diff_is_real_diff, assert_file_bytes, call_log, file_bytes,
)

KVER = '6.8.12-4-pve'
ARGS = 'quiet intel_iommu=on iommu=pt'


def test_check_run_predicted_the_real_diff(host):
    assert_check_diff_is_real_diff(host, {
        '/etc/default/grub',
        '/etc/modules-load.d/vfio-passthrough.conf',
        '/etc/initramfs-tools/modules',
        '/etc/modprobe.d/vfio-passthrough.conf',
    })


def test_default_grub_changes_only_the_default_cmdline(host):
    debian = file_bytes(host, '/usr/share/grub/default/grub').decode()
    old = 'GRUB_CMDLINE_LINUX_DEFAULT="quiet"\n'
    assert debian.count(old) == 1
    assert_file_bytes(host, '/etc/default/grub',
                      debian.replace(old, 'GRUB_CMDLINE_LINUX_DEFAULT="%s"\n' % ARGS), mode=0o644)


def test_grub_cfg_regenerated_with_the_arguments(host):
    cfg = file_bytes(host, '/boot/grub/grub.cfg').decode()
    linux_lines = [line.strip() for line in cfg.splitlines() if line.strip().startswith('linux\t')]
    # Normal entries carry GRUB_CMDLINE_LINUX_DEFAULT; the recovery entry does not.
    assert linux_lines == [
        'linux\t/boot/vmlinuz-%s root=/dev/sda1 ro  %s' % (KVER, ARGS),
        'linux\t/boot/vmlinuz-%s root=/dev/sda1 ro  %s' % (KVER, ARGS),
        'linux\t/boot/vmlinuz-%s root=/dev/sda1 ro single' % KVER,
    ]


def test_vfio_pci_ids_and_softdeps(host):
    assert_file_bytes(
        host, '/etc/modprobe.d/vfio-passthrough.conf',
        '# Managed by Ansible (vfio.passthrough.vfio_modules): manual edits will be overwritten\n'
        'options vfio-pci ids=10de:1b80,10de:10f0\n'
        'softdep nouveau pre: vfio-pci\n'
        'softdep snd_hda_intel pre: vfio-pci\n',
        mode=0o644)


def test_vfio_modules_load_at_boot(host):
    assert_file_bytes(host, '/etc/modules-load.d/vfio-passthrough.conf', VFIO_MODULES_LOAD, mode=0o644)


def test_vfio_modules_in_initramfs(host):
    assert_file_bytes(host, '/etc/initramfs-tools/modules',
                      INITRAMFS_MODULES_DEBIAN + VFIO_MODULES_BLOCK, mode=0o644)


def test_nothing_blacklisted_or_bound_by_address(host):
    for path in ('/etc/modprobe.d/vfio-passthrough-blacklist.conf',
                 '/etc/modprobe.d/vfio-passthrough-address.conf',
                 '/etc/initramfs-tools/hooks/vfio-passthrough',
                 '/usr/local/sbin/vfio-passthrough-bind'):
        assert not host.file(path).exists, path


def test_one_initramfs_rebuild_in_two_runs(host):
    assert call_log(host, '/var/log/update-initramfs.calls') == [['-u', '-k', 'all']]


def test_rebuild_ran_proxmox_post_update_hook_once(host):
    # No ESP registered (plain GRUB): the hook's refresh finds nothing to sync,
    # but it ran, as on a real Proxmox VE host.
    assert call_log(host, '/var/log/proxmox-boot-tool.calls') == [['refresh', '--hook', 'zz-proxmox-boot']]
    assert not host.file('/var/lib/proxmox-boot-tool-stub/esp').exists
