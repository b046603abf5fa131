"""Scenario 2: an AMD guest from amd_iommu=off; amd_iommu=on is never added."""

from __future__ import annotations

from conftest import E1000E, say


def test_2_amd_grub_converges_with_exactly_one_reboot(guest_factory, run_playbook):
    guest = guest_factory('amd')
    guest.enable_boot_count()
    guest.capture('amd-before')
    [nic] = guest.pci_by_id(E1000E)
    boot, boots = guest.boot_id(), guest.boots()
    run = run_playbook(guest, 'amd-converge', {'pcie_passthrough_devices': [nic]})
    assert run.rc == 0, run.tail()
    cmdline = guest.sh('cat /proc/cmdline').split()
    assert 'iommu=pt' in cmdline, cmdline
    assert not [a for a in cmdline if a.startswith('amd_iommu=')], cmdline
    assert guest.sh("grep -c 'amd_iommu=on' /etc/default/grub || true").strip() == '0'
    assert guest.boot_id() != boot and guest.boots() == boots + 1
    assert guest.sh('ls /sys/class/iommu').split()
    groups = guest.sh('ls /sys/kernel/iommu_groups').split()
    assert groups
    assert set(guest.sh('cat /sys/kernel/iommu_groups/*/type').split()) == {'identity'}
    assert 'AMD-Vi: Interrupt remapping enabled' in guest.kernel_log()
    assert guest.driver(nic) == 'vfio-pci'
    assert guest.driver(guest.nic_address(guest.default_route_dev())) == 'virtio-pci'
    guest.capture('amd-after')
    say('amd: %d groups, %s on vfio-pci, converge+reboot %.1f s' % (len(groups), nic, run.seconds))
