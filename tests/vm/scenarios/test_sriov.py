"""SR-IOV on a real kernel: one Debian 13 Intel guest on QEMU 10 with two igb PFs (82576) behind root ports.

From fresh (intel_iommu=off) the role creates the VFs, persists them in a udev rule, binds the chosen
ones to vfio-pci by address, with the single reboot the IOMMU needs; after it the VFs exist again in
the asked number, the chosen ones on vfio-pci and the others on igbvf, on both PFs. A rerun changes
nothing. A count change on a PF whose VFs nobody uses is made live (same boot); one on a PF whose VF
group a process holds open is deferred to a reboot the role makes, and verified after it.
Every check reads the guest directly (sysfs, lspci, boot ids).
"""

from __future__ import annotations

import time

import pytest

import vmctl
from conftest import Guest, say

PF_ID, VF_ID = '8086:10c9', '8086:10ca'


def sriov_vars(a_vfs, b_vfs, b_vfio=None):
    # PF A keeps VF 1 (and 3) for the host; PF B keeps VF 0 at first, then (b_vfio None) gives every VF
    # to vfio-pci, the default.
    b = {'pf': 'PF_B', 'vfs': b_vfs}
    if b_vfio is not None:
        b['vfio'] = b_vfio
    return {'pcie_passthrough_sriov': [{'pf': 'PF_A', 'vfs': a_vfs, 'vfio': [0, 2]}, b]}


def state(guest, pf):
    """(sriov_numvfs, [(vf, driver, iommu group)]) read from sysfs."""
    numvfs = int(guest.sh('cat /sys/bus/pci/devices/%s/sriov_numvfs' % pf))
    out = guest.sh('name() { l=$(readlink "$1") && basename "$l" || echo none; }; '
                   'for v in /sys/bus/pci/devices/%s/virtfn*; do [ -e "$v" ] || continue; '
                   'echo "${v##*virtfn} $(basename $(readlink -f $v)) $(name $v/driver) $(name $v/iommu_group)"; '
                   'done' % pf)
    rows = sorted(line.split() for line in out.strip().splitlines())
    return numvfs, [(vf, driver, group) for _index, vf, driver, group in sorted(rows, key=lambda r: int(r[0]))]


def lspci(guest):
    return guest.sh('lspci -Dnnk -d %s; lspci -Dnnk -d %s' % (PF_ID, VF_ID))


@pytest.fixture(scope='module')
def sriov(base_image, run_playbook):
    base_image('trixie')
    started = time.monotonic()
    vm = vmctl.start('intel', nics=0, suite='trixie', igb=2)
    guest = Guest(vm, time.monotonic() - started)
    say('%s: Debian 13 intel guest, QEMU 10, 2 igb up in %.1f s' % (vm.name, guest.boot_seconds))
    runs, notes = {}, {}
    try:
        guest.enable_boot_count()
        pf_a, pf_b = guest.pci_by_id(PF_ID)

        def play(name, a_vfs, b_vfs, b_vfio=None):
            variables = sriov_vars(a_vfs, b_vfs, b_vfio)
            for entry, pf in zip(variables['pcie_passthrough_sriov'], (pf_a, pf_b)):
                entry['pf'] = pf
            notes[name + '_boot_before'] = guest.boot_id()
            notes[name + '_boots_before'] = guest.boots()
            runs[name] = run_playbook(guest, 'trixie-sriov-%s' % name, variables)
            notes[name + '_boot_after'] = guest.boot_id()
            notes[name + '_boots_after'] = guest.boots()
            notes[name + '_lspci'] = lspci(guest)
            notes[name + '_state'] = (state(guest, pf_a), state(guest, pf_b))

        notes['lspci_before'] = lspci(guest)
        notes['state_before'] = (state(guest, pf_a), state(guest, pf_b))
        play('converge', 3, 2, [1])
        play('rerun', 3, 2, [1])
        play('live', 3, 3)
        # A VM stand-in: a process holding PF A's VF 0 group open. A count change destroys every VF,
        # so the role must not make it now.
        group = notes['live_state'][0][1][0][2]
        pid = guest.sh('setsid nohup sleep 100000 3<>/dev/vfio/%s >/dev/null 2>&1 </dev/null & echo $!' % group).strip()
        notes['held_group'] = group
        notes['holder'] = guest.sh('sleep 1; ls -l /proc/%s/fd/3' % pid).strip()
        play('deferred', 4, 3)
        yield {'guest': guest, 'runs': runs, 'notes': notes, 'pfs': (pf_a, pf_b)}
    finally:
        vm.stop(keep_logs=True)


def _drivers(rows):
    return [driver for _vf, driver, _group in rows]


def test_fresh_host_gets_vfs_persisted_and_bound_with_one_reboot(sriov):
    run, notes = sriov['runs']['converge'], sriov['notes']
    assert run.rc == 0, run.tail()
    assert notes['state_before'] == ((0, []), (0, [])), notes['state_before']
    assert notes['converge_boot_after'] != notes['converge_boot_before']
    assert notes['converge_boots_after'] == notes['converge_boots_before'] + 1, 'the role must reboot exactly once'
    (a_count, a_rows), (b_count, b_rows) = notes['converge_state']
    assert (a_count, b_count) == (3, 2)
    assert _drivers(a_rows) == ['vfio-pci', 'igbvf', 'vfio-pci'], a_rows
    assert _drivers(b_rows) == ['igbvf', 'vfio-pci'], b_rows
    groups = [group for _vf, _driver, group in a_rows + b_rows]
    assert len(set(groups)) == len(groups), 'each VF behind the root port has its own IOMMU group: %s' % groups
    guest = sriov['guest']
    assert guest.sh('grep -rh "ids=" /etc/modprobe.d || true').strip() == '', 'VFs are bound by address only'
    rule = guest.sh('cat /etc/udev/rules.d/70-vfio-passthrough-sriov.rules')
    assert 'KERNEL=="%s"' % sriov['pfs'][0] in rule and 'KERNEL=="%s"' % sriov['pfs'][1] in rule, rule
    say('sriov converge (%.1f s): lspci -Dnnk before:\n%s\n  after:\n%s\n  sriov_numvfs %d / %d; VFs (address, driver, '
        'IOMMU group): %s / %s\n  boot ids %s -> %s'
        % (run.seconds, notes['lspci_before'], notes['converge_lspci'], a_count, b_count, a_rows, b_rows,
           notes['converge_boot_before'], notes['converge_boot_after']))


def test_rerun_changes_nothing(sriov):
    run, notes = sriov['runs']['rerun'], sriov['notes']
    assert run.rc == 0, run.tail()
    assert run.changed == 0, run.tail()
    assert notes['rerun_boot_after'] == notes['rerun_boot_before']
    assert notes['rerun_state'] == notes['converge_state']
    say('sriov rerun (%.1f s): %s' % (run.seconds, [line for line in run.output.splitlines() if 'changed=' in line]))


def test_count_change_without_users_is_live(sriov):
    run, notes = sriov['runs']['live'], sriov['notes']
    assert run.rc == 0, run.tail()
    assert run.changed > 0
    assert notes['live_boot_after'] == notes['live_boot_before'], 'a live change must not reboot'
    (a_count, a_rows), (b_count, b_rows) = notes['live_state']
    assert a_rows == notes['converge_state'][0][1], 'PF A was not asked to change'
    assert b_count == 3 and _drivers(b_rows) == ['vfio-pci'] * 3, b_rows
    say('sriov live change PF B 2 -> 3, all VFs to vfio-pci (%.1f s), boot id %s unchanged: %s'
        % (run.seconds, notes['live_boot_after'], b_rows))


def test_count_change_on_a_held_vf_waits_for_the_reboot(sriov):
    run, notes = sriov['runs']['deferred'], sriov['notes']
    assert run.rc == 0, run.tail()
    # The role says why it reboots: the module deferred PF A's change because of the held group.
    reason = [line for line in run.output.splitlines() if 'Reboot needed on' in line]
    assert reason and 'SR-IOV: %s has 3 VFs, 4 asked' % sriov['pfs'][0] in reason[0], run.tail()
    assert '/dev/vfio/%s is open' % notes['held_group'] in reason[0], reason
    assert notes['deferred_boot_after'] != notes['deferred_boot_before']
    assert notes['deferred_boots_after'] == notes['deferred_boots_before'] + 1
    (a_count, a_rows), (b_count, b_rows) = notes['deferred_state']
    assert a_count == 4 and _drivers(a_rows) == ['vfio-pci', 'igbvf', 'vfio-pci', 'igbvf'], a_rows
    assert b_count == 3 and _drivers(b_rows) == ['vfio-pci'] * 3, b_rows
    say('sriov deferred change PF A 3 -> 4 (%.1f s) while %s\n  %s\n  boot ids %s -> %s\n  sriov_numvfs %d / %d; '
        'VFs (address, driver, IOMMU group): %s / %s\n  after:\n%s'
        % (run.seconds, notes['holder'], reason[0].strip(), notes['deferred_boot_before'], notes['deferred_boot_after'],
           a_count, b_count, a_rows, b_rows, notes['deferred_lspci']))
