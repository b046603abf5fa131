"""After check, converge and idempotence runs of three refused requests: nothing written."""

from __future__ import annotations

from vfio_testinfra import INITRAMFS_MODULES_DEBIAN, file_bytes


def test_etc_and_boot_match_the_snapshot_taken_before_any_run(host):
    # converge.yml wrote /root/after.sha256 at the end of its last run.
    before = file_bytes(host, '/root/before.sha256')
    assert before.count(b'\n') > 100, 'the snapshot lists too little to mean anything'
    assert file_bytes(host, '/root/after.sha256') == before


def test_no_file_of_the_role_exists(host):
    for path in ('/etc/modprobe.d/vfio-passthrough.conf',
                 '/etc/modprobe.d/vfio-passthrough-blacklist.conf',
                 '/etc/modprobe.d/vfio-passthrough-address.conf',
                 '/etc/modules-load.d/vfio-passthrough.conf',
                 '/etc/initramfs-tools/hooks/vfio-passthrough',
                 '/usr/local/sbin/vfio-passthrough-bind',
                 '/boot/grub/grub.cfg',
                 # driver_blacklist writes under its root: nothing there either.
                 '/opt/fake-root/etc'):
        assert not host.file(path).exists, path


def test_boot_configuration_is_debians(host):
    assert file_bytes(host, '/etc/default/grub') == file_bytes(host, '/usr/share/grub/default/grub')
    assert file_bytes(host, '/etc/initramfs-tools/modules') == INITRAMFS_MODULES_DEBIAN.encode()


def test_no_boot_tool_ran(host):
    assert not host.file('/var/log/update-initramfs.calls').exists
    assert not host.file('/var/log/proxmox-boot-tool.calls').exists
