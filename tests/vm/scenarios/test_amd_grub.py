"""An AMD guest on Debian 13 (Proxmox VE 9's base) from amd_iommu=off; amd_iommu=on is never added.

Last, the VM probe on AMD: QEMU's amd-iommu lets the guest hand its e1000e to a guest of its own, as
intel-iommu does (found by hand in session 7: 0000:00:04.0 on vfio-pci, group 3, a lease through it). TCG's
AMD CPU model also emulates SVM, so kvm_amd loads in this guest and the inner guest may run under KVM
(21.7 s against 123 s under TCG in the Intel guest); the probe says which it used.
"""

from __future__ import annotations

import pytest

from conftest import (E1000E, assert_nic_probe, assert_release, assert_vfio_modules_load, iommu_log_lines, probe_of,
                      release_facts, say, say_probe)


@pytest.mark.parametrize('suite', ['trixie'])
def test_amd_grub_converges_with_exactly_one_reboot(guest_factory, run_playbook, suite):
    guest = guest_factory('amd', suite)
    guest.enable_boot_count()
    guest.capture('%s-amd-before' % suite)
    facts = release_facts(guest)
    assert_release(facts, suite)
    [nic] = guest.pci_by_id(E1000E)
    boot, boots = guest.boot_id(), guest.boots()
    cmdline_before = guest.sh('cat /proc/cmdline').strip()
    assert 'amd_iommu=off' in cmdline_before.split()
    run = run_playbook(guest, '%s-amd-converge' % suite, {'pcie_passthrough_devices': [nic]})
    assert run.rc == 0, run.tail()
    cmdline = guest.sh('cat /proc/cmdline').strip()
    assert 'iommu=pt' in cmdline.split(), cmdline
    assert not [a for a in cmdline.split() if a.startswith('amd_iommu=')], cmdline
    assert guest.sh("grep -c 'amd_iommu=on' /etc/default/grub || true").strip() == '0'
    boot_after = guest.boot_id()
    assert boot_after != boot and guest.boots() == boots + 1
    assert guest.sh('ls /sys/class/iommu').split()
    groups = guest.sh('ls /sys/kernel/iommu_groups').split()
    assert groups
    assert set(guest.sh('cat /sys/kernel/iommu_groups/*/type').split()) == {'identity'}
    log = '\n'.join(iommu_log_lines(guest))
    assert 'AMD-Vi: Interrupt remapping enabled' in log
    link = guest.sh('readlink /sys/bus/pci/devices/%s/driver' % nic).strip()
    assert link.endswith('/vfio-pci'), link
    assert guest.driver(guest.nic_address(guest.default_route_dev())) == 'virtio-pci'
    assert_vfio_modules_load(guest, suite)
    guest.capture('%s-amd-after' % suite)
    say('%s amd: uname -r %s\n  /proc/cmdline before: %s\n  /proc/cmdline after:  %s\n'
        '  IOMMU kernel lines:\n    %s\n  %d IOMMU groups; %s driver -> %s\n  boot ids %s -> %s\n'
        '  converge+reboot %.1f s'
        % (suite, facts['kernel'], cmdline_before, cmdline, log.replace('\n', '\n    '), len(groups), nic,
           link, boot, boot_after, run.seconds))
    rerun = run_playbook(guest, '%s-amd-rerun' % suite, {'pcie_passthrough_devices': [nic]})
    assert rerun.rc == 0 and rerun.changed == 0, rerun.tail()
    assert guest.boot_id() == boot_after

    group = guest.sh('basename $(readlink /sys/bus/pci/devices/%s/iommu_group)' % nic).strip()
    probe_run = run_playbook(guest, '%s-amd-vm-probe' % suite,
                             {'vm_probe_devices': [nic], 'vm_probe_dhcp': True, 'vm_probe_timeout': 2400},
                             playbook='vm_probe.yml')
    probe = probe_of(probe_run, nic)
    say_probe('%s amd: vm probe of %s' % (suite, nic), probe_run, probe)
    assert_nic_probe(probe_run, probe, nic, group, facts['kernel'])
    assert guest.driver(nic) == 'vfio-pci', 'the probe must leave the device where it was'
