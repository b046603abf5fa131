"""Scenarios 1, 3 and 4 on one Intel guest: convert from intel_iommu=off, re-run, refuse unsafe requests."""

from __future__ import annotations

import time

import pytest

from conftest import E1000E, say


@pytest.fixture(scope='module')
def intel(guest_factory, run_playbook):
    guest = guest_factory('intel')
    guest.enable_boot_count()
    guest.capture('intel-before')
    [nic] = guest.pci_by_id(E1000E)
    state = {'guest': guest, 'nic': nic, 'boot_before': guest.boot_id(), 'boots_before': guest.boots()}
    state['run'] = run_playbook(guest, 'intel-converge', {'pcie_passthrough_devices': [nic]})
    return state


def test_1_intel_grub_converges_with_exactly_one_reboot(intel):
    guest, run = intel['guest'], intel['run']
    assert run.rc == 0, run.tail()
    started = time.monotonic()
    cmdline = guest.sh('cat /proc/cmdline').split()
    assert 'intel_iommu=on' in cmdline and 'iommu=pt' in cmdline, cmdline
    assert 'intel_iommu=off' not in cmdline, cmdline
    assert guest.boot_id() != intel['boot_before']
    assert guest.boots() == intel['boots_before'] + 1, 'the role must reboot exactly once'
    assert guest.sh('ls /sys/class/iommu').split(), 'no IOMMU unit registered'
    groups = guest.sh('ls /sys/kernel/iommu_groups').split()
    assert groups, 'no IOMMU groups'
    assert set(guest.sh('cat /sys/kernel/iommu_groups/*/type').split()) == {'identity'}
    log = guest.kernel_log()
    for line in ('DMAR: IOMMU enabled', 'Default domain type: Passthrough', 'DMAR-IR: Enabled IRQ remapping'):
        assert line in log, line
    assert guest.driver(intel['nic']) == 'vfio-pci'
    # We are talking to the guest over its management NIC: it kept its driver and the default route.
    mgmt = guest.default_route_dev()
    assert guest.driver(guest.nic_address(mgmt)) == 'virtio-pci'
    guest.capture('intel-after')
    say('intel: %d groups, %s on vfio-pci, converge+reboot %.1f s, verify %.1f s'
        % (len(groups), intel['nic'], run.seconds, time.monotonic() - started))


def test_3_second_run_changes_nothing_and_does_not_reboot(intel, run_playbook):
    guest = intel['guest']
    boot = guest.boot_id()
    run = run_playbook(guest, 'intel-rerun', {'pcie_passthrough_devices': [intel['nic']]})
    assert run.rc == 0, run.tail()
    assert run.changed == 0, run.tail()
    assert guest.boot_id() == boot


@pytest.mark.parametrize('case, extra, fragments', [
    ('blacklist-virtio_net', {'pcie_passthrough_blacklist_drivers': ['virtio_net']}, ['virtio_net', 'default route']),
    ('blacklist-virtio_pci', {'pcie_passthrough_blacklist_drivers': ['virtio_pci']}, ['virtio_pci', 'default route']),
    ('pass-management-nic', 'management', ['host-critical', 'default route']),
])
def test_4_unsafe_requests_are_refused_and_write_nothing(intel, run_playbook, case, extra, fragments):
    guest = intel['guest']
    before = guest.etc_checksum()
    if extra == 'management':
        extra = {'pcie_passthrough_devices': [guest.nic_address(guest.default_route_dev())]}
    variables = dict({'pcie_passthrough_devices': [intel['nic']]}, **extra)
    run = run_playbook(guest, 'intel-safety-' + case, variables)
    assert run.rc != 0 and run.failed == 1, run.tail()
    for fragment in fragments:
        assert fragment in run.output, (fragment, run.tail())
    assert guest.etc_checksum() == before, '/etc or /boot changed although the request was refused'
    assert guest.sh('echo alive').strip() == 'alive'
