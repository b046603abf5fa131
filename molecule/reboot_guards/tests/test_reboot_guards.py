"""After check, converge and idempotence with reboots allowed: configured, but never rebooted."""

from __future__ import annotations

from vfio_testinfra import file_bytes


def test_container_was_never_rebooted(host):
    assert file_bytes(host, '/run/vfio-boot-marker') == b'prepared\n'


def test_configuration_was_written_although_the_reboot_was_held(host):
    grub = file_bytes(host, '/etc/default/grub').decode()
    assert 'GRUB_CMDLINE_LINUX_DEFAULT="quiet intel_iommu=on iommu=pt"\n' in grub
    assert b'options vfio-pci ids=10de:1b80,10de:10f0\n' in file_bytes(host, '/etc/modprobe.d/vfio-passthrough.conf')


def test_votes_were_counted_in_every_run(host):
    # check, converge and idempotence each run the role twice; each run asks in the
    # pre-flight (batch guard) and again before the node leaves.
    assert file_bytes(host, '/run/vfio-stubs/corosync-quorumtool.calls') == b'-s -H\n' * 12
