"""_sriov_change: the live-or-deferred rule, the refusals that keep the host's VFs, and what holds a VF."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from ansible_collections.vfio.passthrough.plugins.module_utils.pci._pci_devices import read_pci_devices
from ansible_collections.vfio.passthrough.plugins.module_utils.proxmox._pve_guests import read_guest_references
from ansible_collections.vfio.passthrough.plugins.module_utils.sriov._sriov_boot import managed_pfs, render
from ansible_collections.vfio.passthrough.plugins.module_utils.sriov._sriov_change import (
    DEFERRED, LIVE, NONE, REFUSED, decide, dropped_host_vfs, now_and_at_boot, vf_removal, vfs_in_use,
)
from ansible_collections.vfio.passthrough.plugins.module_utils.sriov._sriov_request import check_request
from ansible_collections.vfio.passthrough.plugins.module_utils.sriov._sriov_state import host_vfs
from ansible_collections.vfio.passthrough.plugins.module_utils.pci._vfio_open import read_vfio_openers, vfio_users

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
from sriov_hosts import HOST_VF, PF0, PF1, VFS0, host_on_vf, judged_devices, sriov_host  # noqa: E402


@pytest.fixture
def devices(tmp_path):
    sriov_host(tmp_path)
    return read_pci_devices(str(tmp_path))


@pytest.mark.parametrize('how', sorted(HOST_VF))
@pytest.mark.parametrize('vfs, action, fragment', [
    (2, None, None),
    (3, DEFERRED, '0000:01:00.0 has 2 VFs, 3 asked; the host runs on VF 1 (0000:01:10.2: {why}) and any count '
                  'change removes every VF first, so the change waits for the next boot'),
    (1, REFUSED, '0000:01:00.0 has 2 VFs, 1 asked, and the host runs on VF 1 (0000:01:10.2: {why}), which a count of '
                 '1 leaves out: any count change removes every VF, and not even the next boot would bring it back. '
                 'Ask for at least 2 VFs, or move the host off it first'),
    (0, REFUSED, 'which a count of 0 leaves out'),
])
def test_a_count_change_waits_or_is_refused_when_the_host_runs_on_a_vf(tmp_path, how, vfs, action, fragment):
    host_on_vf(tmp_path, how)
    found = judged_devices(tmp_path)
    assert host_vfs(PF0, found) == [(1, VFS0[1], [HOST_VF[how]])]
    entry = {'pf': PF0, 'vfs': vfs, 'vfio': [0] if vfs else []}   # VF 0 stays on vfio-pci, VF 1 on igbvf
    removal = vf_removal(entry, found)
    _entries, errors, _notes = check_request([dict(entry)], found)
    decision = decide(entry, found)
    if action is None:
        assert removal is None and errors == [] and decision['action'] == NONE
        return
    assert removal[0] == action and fragment.format(why=HOST_VF[how]) in removal[1], removal
    # One rule: the plan (check_request) refuses what it refuses, the module (decide) defers what it defers.
    assert decision['action'] == action and decision['why'] == removal[1]
    if action == REFUSED:
        assert errors == ['pcie_passthrough_sriov[0] (pf 0000:01:00.0): ' + removal[1]]
    else:
        assert errors == []


def test_growing_from_zero_removes_nothing_and_a_host_free_pf_changes_live(tmp_path):
    host_on_vf(tmp_path, 'bridge')
    found = judged_devices(tmp_path)
    assert vf_removal({'pf': PF1, 'vfs': 3, 'vfio': []}, found) is None
    assert decide({'pf': PF1, 'vfs': 3, 'vfio': []}, found)['action'] == LIVE
    # A VF the host does not run on (VF 0 here) does not hold its PF back.
    del found[VFS0[1]]['host_critical']
    assert vf_removal({'pf': PF0, 'vfs': 0, 'vfio': []}, found) is None
    assert decide({'pf': PF0, 'vfs': 0, 'vfio': []}, found)['action'] == LIVE


def test_rules_name_their_pfs_and_dropping_one_the_host_runs_on_is_refused(tmp_path):
    host_on_vf(tmp_path, 'bridge')
    found = judged_devices(tmp_path)
    rules = render([{'pf': PF0, 'vfs': 2, 'vfio': [0]}, {'pf': PF1, 'vfs': 1, 'vfio': []}], '/s', '/r')[0][1]
    assert managed_pfs(rules) == [PF0, PF1]
    assert managed_pfs('# KERNEL=="0000:01:00.0"\n') == [] and managed_pfs(None) == []
    assert dropped_host_vfs([{'pf': PF0, 'vfs': 2, 'vfio': [0]}], found, rules) == []
    assert dropped_host_vfs([], found, rules) == [
        '0000:01:00.0 is no longer listed, so the next boot makes none of its VFs, and the host runs on VF 1 '
        '(0000:01:10.2: %s). Keep it listed with at least 2 VFs, or move the host off it first' % HOST_VF['bridge']]


@pytest.mark.parametrize('entry, critical, busy, action, why', [
    ({'pf': PF0, 'vfs': 2, 'vfio': [0]}, (), {}, NONE, ''),
    ({'pf': PF0, 'vfs': 4, 'vfio': [0]}, (), {}, LIVE, '0000:01:00.0 has 2 VFs, 4 asked'),
    ({'pf': PF0, 'vfs': 4, 'vfio': [0]}, ('NIC enp1s0 carries the default route',), {}, DEFERRED,
     'it is host-critical (NIC enp1s0 carries the default route) and changing the count resets it'),
    ({'pf': PF0, 'vfs': 0, 'vfio': []}, (), {VFS0[0]: ['/dev/vfio/5 is open (pid 42)']}, DEFERRED,
     'VF 0000:01:10.0 is in use: /dev/vfio/5 is open (pid 42), so the change waits for the next boot'),
    ({'pf': PF0, 'vfs': 2, 'vfio': [0, 1]}, (), {}, LIVE, 'VF 1 (0000:01:10.2) not on vfio-pci'),
    ({'pf': PF0, 'vfs': 2, 'vfio': []}, (), {}, LIVE, 'VF 0 (0000:01:10.0) on vfio-pci, asked for the host'),
    ({'pf': PF0, 'vfs': 2, 'vfio': []}, (), {VFS0[0]: ['named by guest 101 (hostpci)']}, DEFERRED,
     'VF 0000:01:10.0 is in use: named by guest 101 (hostpci), so the rebinding waits'),
    ({'pf': PF1, 'vfs': 3, 'vfio': [0]}, ('storage',), {}, DEFERRED, '0000:02:00.0 has 0 VFs, 3 asked; it is host-critical'),
])
def test_decide(devices, entry, critical, busy, action, why):
    decision = decide(entry, devices, critical, busy)
    assert decision['action'] == action and why in decision['why'], decision


def test_in_use_from_open_groups_and_pve_files(tmp_path):
    host = sriov_host(tmp_path)
    host.open_file(42, 7, '/dev/vfio/6')
    host.open_file(42, 0, '/dev/null')
    host.mkdir('proc/self')
    host.write('etc/pve/qemu-server/101.conf', 'boot: order=scsi0\nhostpci0: 0000:01:10.0,pcie=1\n')
    host.write('etc/pve/qemu-server/102.conf', 'hostpci1: mapping=vf1\n')
    # pci.cfg as PVE::Mapping::PCI writes it: the bare mapping ID as the section header
    host.write('etc/pve/mapping/pci.cfg', 'vf1\n\tmap id=8086:10ca,node=pve1,path=0000:01:10.2\n'
                                          '\tmap id=8086:10ca,node=pve2,path=0000:01:10.0\n')
    devices = read_pci_devices(str(tmp_path))
    assert read_vfio_openers(str(tmp_path)) == {'/dev/vfio/6': [42]}
    holders = vfio_users(str(tmp_path), devices)
    assert holders == {VFS0[1]: ['/dev/vfio/6 is open (pid 42)']}
    refs = read_guest_references(str(tmp_path), devices, node='pve1')
    assert refs == {VFS0[0]: ['guest 101 (hostpci0)'],
                    VFS0[1]: ['guest 102 (hostpci1, mapping vf1)', 'resource mapping vf1']}
    assert vfs_in_use(PF0, devices, holders, refs) == {
        VFS0[0]: ['named by guest 101 (hostpci0)'],
        VFS0[1]: ['/dev/vfio/6 is open (pid 42)', 'named by guest 102 (hostpci1, mapping vf1)',
                  'named by resource mapping vf1'],
    }
    assert vfs_in_use(PF1, devices, holders, refs) == {}


DECISIONS = [{'pf': PF0, 'action': LIVE, 'why': 'a'}, {'pf': PF1, 'action': DEFERRED, 'why': 'b'},
             {'pf': '0000:03:00.0', 'action': NONE, 'why': ''}]


@pytest.mark.parametrize('held_back, live, deferred', [
    (None, [{'pf': PF0, 'why': 'a'}], [{'pf': PF1, 'why': 'b'}]),
    ('apply is false', [], [{'pf': PF0, 'why': 'a; not changed now: apply is false'}, {'pf': PF1, 'why': 'b'}]),
])
def test_now_and_at_boot_defers_a_live_change_the_run_may_not_make(held_back, live, deferred):
    assert now_and_at_boot(DECISIONS, held_back) == (live, deferred)
