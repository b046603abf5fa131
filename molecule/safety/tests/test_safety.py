"""After check, converge and idempotence runs of three refused requests: nothing written."""

from __future__ import annotations

from vfio_testinfra import INITRAMFS_MODULES_DEBIAN, ROLE_FILES, assert_absent, assert_grub_default_is_debians, file_bytes


def test_etc_and_boot_match_the_snapshot_taken_before_any_run(host):
    # converge.yml wrote /root/after.sha256 at the end of its last run.
    before = file_bytes(host, '/root/before.sha256')
    assert before.count(b'\n') > 100, 'the snapshot lists too little to mean anything'
    assert file_bytes(host, '/root/after.sha256') == before


def test_no_file_of_the_role_exists(host):
    # driver_blacklist writes under its root: nothing there either.
    assert_absent(host, ROLE_FILES + ('/boot/grub/grub.cfg', '/opt/fake-root/etc'))


def test_boot_configuration_is_debians(host):
    assert_grub_default_is_debians(host)
    assert file_bytes(host, '/etc/initramfs-tools/modules') == INITRAMFS_MODULES_DEBIAN.encode()


def test_no_boot_tool_ran(host):
    assert not host.file('/var/log/update-initramfs.calls').exists
    assert not host.file('/var/log/proxmox-boot-tool.calls').exists
