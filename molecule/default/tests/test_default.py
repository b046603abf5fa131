"""Exact state after converge + idempotence: Intel host, plain GRUB, GPU + HDMI audio."""

from __future__ import annotations

from vfio_testinfra import (
    BLACKLIST_FILE, BY_ADDRESS_FILES, SRIOV_FILES, assert_absent, assert_check_diff_is_real_diff, assert_file_bytes,
    assert_grub_cfg_kernel_args, assert_one_esp_sync, assert_one_initramfs_rebuild, assert_vfio_modules_configured, file_bytes,
)

ARGS = 'quiet intel_iommu=on iommu=pt'


def test_check_run_predicted_the_real_diff(host):
    # No blacklist, no twin, no SR-IOV: driver_blacklist, vfio_address_binding and sriov_vfs report no diff.
    assert_check_diff_is_real_diff(host, {
        'kernel_cmdline': {'/etc/default/grub'},
        'vfio_modules': {
            '/etc/modules-load.d/vfio-passthrough.conf',
            '/etc/initramfs-tools/modules',
            '/etc/modprobe.d/vfio-passthrough.conf',
        },
    })


def test_default_grub_changes_only_the_default_cmdline(host):
    debian = file_bytes(host, '/usr/share/grub/default/grub').decode()
    old = 'GRUB_CMDLINE_LINUX_DEFAULT="quiet"\n'
    assert debian.count(old) == 1
    assert_file_bytes(host, '/etc/default/grub',
                      debian.replace(old, 'GRUB_CMDLINE_LINUX_DEFAULT="%s"\n' % ARGS), mode=0o644)


def test_grub_cfg_regenerated_with_the_arguments(host):
    assert_grub_cfg_kernel_args(host, ARGS)


def test_vfio_pci_ids_and_softdeps(host):
    assert_file_bytes(
        host, '/etc/modprobe.d/vfio-passthrough.conf',
        '# Managed by Ansible (vfio.passthrough.vfio_modules): manual edits will be overwritten\n'
        'options vfio-pci ids=10de:1b80,10de:10f0\n'
        'softdep nouveau pre: vfio-pci\n'
        'softdep snd_hda_intel pre: vfio-pci\n',
        mode=0o644)


def test_vfio_modules_load_at_boot_and_from_the_initramfs(host):
    assert_vfio_modules_configured(host)


def test_nothing_blacklisted_bound_by_address_or_split_into_vfs(host):
    assert_absent(host, (BLACKLIST_FILE,) + BY_ADDRESS_FILES + SRIOV_FILES)


def test_one_initramfs_rebuild_in_two_runs(host):
    assert_one_initramfs_rebuild(host)


def test_rebuild_ran_proxmox_post_update_hook_once(host):
    # No ESP registered (plain GRUB): the hook's refresh finds nothing to sync,
    # but it ran, as on a real Proxmox VE host.
    assert_one_esp_sync(host)
    assert not host.file('/var/lib/proxmox-boot-tool-stub/esp').exists
