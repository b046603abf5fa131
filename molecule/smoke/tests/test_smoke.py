"""Exact checks of what converge.yml left in the container."""

from __future__ import annotations

from vfio_testinfra import assert_file_bytes, call_log, file_bytes

KVER = '6.8.12-4-pve'


def test_systemd_is_pid_1(host):
    assert host.check_output('cat /proc/1/comm') == 'systemd'


def test_default_grub_is_the_debian_default(host):
    assert file_bytes(host, '/etc/default/grub') == file_bytes(host, '/usr/share/grub/default/grub')


def test_update_grub_wrote_a_menu_entry_for_the_fake_kernel(host):
    cfg = file_bytes(host, '/boot/grub/grub.cfg').decode()
    linux_lines = [line.strip() for line in cfg.splitlines() if line.strip().startswith('linux\t')]
    # The default entry, the same kernel under "Advanced options", and its
    # recovery entry; normal entries carry GRUB_CMDLINE_LINUX_DEFAULT ("quiet"
    # in Debian's default file), recovery ones "single" instead.
    assert linux_lines == [
        'linux\t/boot/vmlinuz-%s root=/dev/sda1 ro  quiet' % KVER,
        'linux\t/boot/vmlinuz-%s root=/dev/sda1 ro  quiet' % KVER,
        'linux\t/boot/vmlinuz-%s root=/dev/sda1 ro single' % KVER,
    ]


def test_update_initramfs_was_called_once(host):
    # converge ran twice (converge + idempotence); the second run must not rebuild.
    assert call_log(host, '/var/log/update-initramfs.calls') == [['-u', '-k', 'all']]


def test_proxmox_boot_tool_refreshed_once(host):
    assert call_log(host, '/var/log/proxmox-boot-tool.calls') == [['refresh']]


def test_proxmox_boot_tool_status_output(host):
    out = host.run('proxmox-boot-tool status')
    assert out.rc == 0
    assert out.stdout.splitlines() == [
        "Re-executing '/usr/sbin/proxmox-boot-tool' in new private mount namespace..",
        'System currently booted with uefi',
        '1234-ABCD is configured with: uefi (versions: %s)' % KVER,
    ]


def test_esp_list_exact_bytes(host):
    assert_file_bytes(host, '/etc/kernel/proxmox-boot-uuids', b'1234-ABCD\n', mode=0o644)


def test_systemd_boot_entry_carries_kernel_cmdline(host):
    assert_file_bytes(
        host,
        '/var/lib/proxmox-boot-tool-stub/esp/loader/entries/proxmox-%s.conf' % KVER,
        'title    Proxmox Virtual Environment\n'
        'version  {k}\n'
        'options  root=ZFS=rpool/ROOT/pve-1 boot=zfs\n'
        'linux    /EFI/proxmox/{k}/vmlinuz-{k}\n'
        'initrd   /EFI/proxmox/{k}/initrd.img-{k}\n'.format(k=KVER),
    )


def test_proxmox_boot_tool_not_configured_exits_2(host):
    # Pointing the stub at a missing ESP list, as on a host without proxmox-boot-tool.
    out = host.run('PBT_STUB_ESP_LIST=/nonexistent proxmox-boot-tool status')
    assert out.rc == 2
    assert out.stderr.strip() == 'E: /nonexistent does not exist.'
