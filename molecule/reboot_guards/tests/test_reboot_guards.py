"""After check, converge and idempotence with reboots allowed: configured, but never rebooted."""

from __future__ import annotations

from vfio_testinfra import file_bytes


def test_container_was_never_rebooted(host):
    assert file_bytes(host, '/run/vfio-boot-marker') == b'prepared\n'


def test_configuration_was_written_although_the_reboot_was_held(host):
    grub = file_bytes(host, '/etc/default/grub').decode()
    assert 'GRUB_CMDLINE_LINUX_DEFAULT="quiet intel_iommu=on iommu=pt"\n' in grub
    assert b'options vfio-pci ids=10de:1b80,10de:10f0\n' in file_bytes(host, '/etc/modprobe.d/vfio-passthrough.conf')


def test_quorum_was_asked_in_every_run_that_reached_the_cluster_check(host):
    # check, converge and idempotence each reach it once (in the no-guest run).
    assert file_bytes(host, '/run/vfio-stubs/pvecm.calls') == b'status\n' * 3
