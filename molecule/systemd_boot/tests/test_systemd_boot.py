"""Exact state after converge + idempotence: AMD host, systemd-boot kept by proxmox-boot-tool, one
of two identical NICs bound by address, SR-IOV VFs on the other."""

from __future__ import annotations

from vfio_testinfra import (
    BLACKLIST_FILE, BY_ADDRESS_FILES, KVER, SRIOV_FILES, assert_absent, assert_check_diff_is_real_diff,
    assert_file_bytes, assert_grub_default_is_debians, assert_one_esp_sync, assert_one_initramfs_rebuild,
    assert_vfio_modules_configured, file_bytes,
)

# AMD-Vi is on by default in the kernel: only iommu=pt is added.
CMDLINE = 'root=ZFS=rpool/ROOT/pve-1 boot=zfs iommu=pt'


def test_check_run_predicted_the_real_diff(host):
    # Four of the five writers write here; driver_blacklist has no driver to list.
    assert_check_diff_is_real_diff(host, {
        'kernel_cmdline': {'/etc/kernel/cmdline'},
        'vfio_modules': {'/etc/modules-load.d/vfio-passthrough.conf', '/etc/initramfs-tools/modules'},
        'vfio_address_binding': set(BY_ADDRESS_FILES),
        'sriov_vfs': set(SRIOV_FILES),
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


def test_no_vfio_pci_ids_and_no_blacklist(host):
    # The only device requested has a twin the host keeps: no ids=, and no softdep for igb,
    # whose install rule loads vfio-pci itself.
    assert_absent(host, ('/etc/modprobe.d/vfio-passthrough.conf', BLACKLIST_FILE))


def test_first_twin_bound_by_address(host):
    assert_file_bytes(
        host, '/etc/modprobe.d/vfio-passthrough-address.conf',
        '# Managed by Ansible (vfio.passthrough.vfio_address_binding): manual edits will be overwritten\n'
        '# vfio.passthrough: bind 0000:05:00.0 to vfio-pci by address\n'
        '# before these drivers load (their IDs are shared with devices that stay on the host).\n'
        'install igb /usr/local/sbin/vfio-passthrough-bind; /sbin/modprobe --ignore-install igb $CMDLINE_OPTS\n',
        mode=0o644)
    for path in ('/usr/local/sbin/vfio-passthrough-bind', '/etc/initramfs-tools/hooks/vfio-passthrough'):
        assert host.file(path).mode == 0o755, path


def test_second_twin_makes_two_vfs_at_every_boot(host):
    assert_file_bytes(
        host, '/etc/udev/rules.d/70-vfio-passthrough-sriov.rules',
        '# Managed by Ansible (vfio.passthrough.sriov_vfs): manual edits will be overwritten\n'
        '# vfio.passthrough: SR-IOV virtual functions, made once each physical function\'s driver has bound'
        ' (a udev "bind" event; "add" covers the PFs bound before udev started).\n'
        '# 0000:06:00.0: 2 VFs, vfio-pci: 0\n'
        'ACTION=="add|bind", SUBSYSTEM=="pci", KERNEL=="0000:06:00.0", DRIVER=="?*",'
        ' RUN+="/bin/sh /usr/local/sbin/vfio-passthrough-sriov 0000:06:00.0 2 0"\n',
        mode=0o644)
    assert host.file('/usr/local/sbin/vfio-passthrough-sriov').mode == 0o755
    # The fake root is not the running system: the VFs wait for the next boot.
    assert file_bytes(host, '/opt/fake-root/sys/bus/pci/devices/0000:06:00.0/sriov_numvfs') == b'0\n'


def test_vfio_modules_load_at_boot_and_from_the_initramfs(host):
    assert_vfio_modules_configured(host)
