"""An AMD guest on Debian 13 (Proxmox VE 9's base) from amd_iommu=off; amd_iommu=on is never added."""

from __future__ import annotations

import pytest

from conftest import E1000E, assert_release, assert_vfio_modules_load, iommu_log_lines, release_facts, say


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
