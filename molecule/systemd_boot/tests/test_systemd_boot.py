"""Exact state after converge + idempotence: AMD host, systemd-boot kept by proxmox-boot-tool."""

from __future__ import annotations

from vfio_testinfra import (
    KVER, assert_check_diff_is_real_diff, assert_file_bytes, assert_grub_default_is_debians,
    assert_one_esp_sync, assert_one_initramfs_rebuild, assert_vfio_modules_configured,
)

# AMD-Vi is on by default in the kernel: only iommu=pt is added.
CMDLINE = 'root=ZFS=rpool/ROOT/pve-1 boot=zfs iommu=pt'


def test_check_run_predicted_the_real_diff(host):
    assert_check_diff_is_real_diff(host, {
        '/etc/kernel/cmdline',
        '/etc/modules-load.d/vfio-passthrough.conf',
        '/etc/initramfs-tools/modules',
        '/etc/modprobe.d/vfio-passthrough.conf',
    })


def test_kernel_cmdline(host):
    assert_file_bytes(host, '/etc/kernel/cmdline', CMDLINE + '\n', mode=0o644)


def test_esp_loader_entry_carries_the_new_cmdline(host):
    # Written by the stub's refresh, as zz-proxmox-boot writes it on the ESP:
    # proof that the one refresh ran after /etc/kernel/cmdline was written.
    assert_file_bytes(
        host,
        '/var/lib/proxmox-boot-tool-stub/esp/loader/entries/proxmox-%s.conf' % KVER,
        'title    Proxmox Virtual Environment\n'
        'version  {k}\n'
        'options  {c}\n'
        'linux    /EFI/proxmox/{k}/vmlinuz-{k}\n'
        'initrd   /EFI/proxmox/{k}/initrd.img-{k}\n'.format(k=KVER, c=CMDLINE),
    )


def test_one_esp_sync_from_the_initramfs_hook(host):
    # The role skips its own refresh when an initramfs rebuild is owed: the
    # rebuild's post-update hook syncs the ESPs, so exactly one refresh.
    assert_one_esp_sync(host)


def test_one_initramfs_rebuild_in_two_runs(host):
    assert_one_initramfs_rebuild(host)


def test_grub_untouched_and_update_grub_never_ran(host):
    assert_grub_default_is_debians(host)
    # update-grub is real (no call log): grub.cfg is what it would leave behind.
    assert not host.file('/boot/grub/grub.cfg').exists


def test_vfio_pci_ids_and_softdeps(host):
    assert_file_bytes(
        host, '/etc/modprobe.d/vfio-passthrough.conf',
        '# Managed by Ansible (vfio.passthrough.vfio_modules): manual edits will be overwritten\n'
        'options vfio-pci ids=8086:1533\n'
        'softdep igb pre: vfio-pci\n',
        mode=0o644)


def test_vfio_modules_load_at_boot_and_from_the_initramfs(host):
    assert_vfio_modules_configured(host)
