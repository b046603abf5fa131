"""One Intel guest per Debian release, with two identical e1000e NICs, shared by every Intel scenario.

Debian 13 (Proxmox VE 9's base) first refuses three unsafe requests, writing nothing, then
converts from intel_iommu=off with exactly one reboot, binding only the requested twin by
address; Debian 12 (VE 8's) converges the same way. Both rerun with 0 changed.
The Debian 13 converge also reserves 2 MiB hugepages and isolates CPU 1 in the same single reboot,
and creates SR-IOV VFs on two igb PFs (QEMU 10), persisted by the udev rule, the chosen ones on
vfio-pci by address. After the rerun, a VF count change on a PF whose VFs nobody uses is made live
(same boot); one on a PF whose VF group a process holds open is deferred to a reboot the role
makes, and verified after it. Last, on Debian 13, the VM probe (playbooks/vm_probe.yml) boots a guest inside
the guest with the twin on vfio-pci and with a VF, and refuses the twin that stayed with the host.
One guest for all of it: each boot and converge costs CI minutes.
"""

from __future__ import annotations

import re
import time

import pytest

from conftest import (E1000E, VM_PROBE, assert_nic_probe, assert_release, assert_vfio_modules_load, iommu_log_lines,
                      probe_of, release_facts, say, say_probe)

SUITES = ['trixie', 'bookworm']
# Only the Debian 13 guest runs the refusals (shared guests keep the VM stage in budget);
# the refusals decide from host state that both releases show alike.
REFUSAL_SUITES = ['trixie']
REFUSALS = {
    'blacklist-virtio_net': ({'pcie_passthrough_blacklist_drivers': ['virtio_net']}, ['virtio_net', 'default route']),
    'blacklist-virtio_pci': ({'pcie_passthrough_blacklist_drivers': ['virtio_pci']}, ['virtio_pci', 'default route']),
    'pass-management-nic': ('management', ['host-critical', 'default route']),
}
# The guest has 2 vCPUs and 1536 MiB: 128 pages of 2 MiB (256 MiB) leave it 1 GiB and more, so the
# memory guard is lowered from its 4 GiB floor to 768 MiB.
TUNING_SUITES = ['trixie']
TUNING = {'pcie_passthrough_hugepages': {'size': '2M', 'count': 128}, 'pcie_passthrough_isolated_cpus': '1',
          'pcie_passthrough_hugepages_host_reserve_mib': 768}
TUNING_ARGS = ['default_hugepagesz=2M', 'hugepagesz=2M', 'hugepages=128']
# Two emulated 82576 PFs (QEMU 10's igb) behind root ports, with the emulated Intel IOMMU.
SRIOV_SUITES = ['trixie']
PF_ID, VF_ID = '8086:10c9', '8086:10ca'


def sriov_vars(pfs, a_vfs, b_vfs, b_vfio=None):
    # PF A keeps VF 1 (and 3) for the host; PF B keeps VF 0 at first, then (b_vfio None) gives every VF
    # to vfio-pci, the default.
    b = {'pf': pfs[1], 'vfs': b_vfs}
    if b_vfio is not None:
        b['vfio'] = b_vfio
    return {'pcie_passthrough_sriov': [{'pf': pfs[0], 'vfs': a_vfs, 'vfio': [0, 2]}, b]}


def converge_vars(state, sriov=(3, 2, [1])):
    variables = {'pcie_passthrough_devices': [state['nic']]}
    if state['suite'] in TUNING_SUITES:
        variables.update(TUNING)
    if state['suite'] in SRIOV_SUITES:
        variables.update(sriov_vars(state['pfs'], *sriov))
    return variables


def sriov_state(guest, pf):
    """(sriov_numvfs, [(vf, driver, iommu group)]) read from sysfs."""
    numvfs = int(guest.sh('cat /sys/bus/pci/devices/%s/sriov_numvfs' % pf))
    out = guest.sh('name() { l=$(readlink "$1") && basename "$l" || echo none; }; '
                   'for v in /sys/bus/pci/devices/%s/virtfn*; do [ -e "$v" ] || continue; '
                   'echo "${v##*virtfn} $(basename $(readlink -f $v)) $(name $v/driver) $(name $v/iommu_group)"; '
                   'done' % pf)
    rows = sorted((line.split() for line in out.strip().splitlines()), key=lambda row: int(row[0]))
    return numvfs, [(vf, driver, group) for _index, vf, driver, group in rows]


def sriov_snapshot(guest, pfs):
    return {'lspci': guest.sh('lspci -Dnnk -d %s; lspci -Dnnk -d %s' % (PF_ID, VF_ID)),
            'state': tuple(sriov_state(guest, pf) for pf in pfs)}


def drivers(rows):
    return [driver for _vf, driver, _group in rows]


@pytest.fixture(scope='module')
def intel(suite, guest_factory, run_playbook):
    guest = guest_factory('intel', suite, nics=2, igb=2 if suite in SRIOV_SUITES else 0)
    guest.enable_boot_count()
    guest.capture('%s-intel-before' % suite)
    wanted, twin = guest.pci_by_id(E1000E)
    state = {'guest': guest, 'suite': suite, 'nic': wanted, 'twin': twin, 'refusals': {},
             'facts': release_facts(guest), 'cmdline_before': guest.sh('cat /proc/cmdline').strip(),
             'etc_modules_before': guest.sh('sha256sum /etc/modules 2>/dev/null || true')}
    if suite in SRIOV_SUITES:
        state['pfs'] = guest.pci_by_id(PF_ID)
        state['sriov_before'] = sriov_snapshot(guest, state['pfs'])
    say('%s intel before: uname -r %s; /proc/cmdline: %s' % (suite, state['facts']['kernel'], state['cmdline_before']))
    if suite in REFUSAL_SUITES:
        management = guest.nic_address(guest.default_route_dev())
        for case, (extra, _fragments) in REFUSALS.items():
            if extra == 'management':
                extra = {'pcie_passthrough_devices': [management]}
            before = guest.etc_checksum()
            run = run_playbook(guest, '%s-intel-safety-%s' % (suite, case),
                               dict({'pcie_passthrough_devices': [wanted]}, **extra))
            state['refusals'][case] = (run, before, guest.etc_checksum())
    state['boot_before'], state['boots_before'] = guest.boot_id(), guest.boots()
    state['run'] = run_playbook(guest, '%s-intel-converge' % suite, converge_vars(state))
    state['boot_after'] = guest.boot_id()
    if suite in SRIOV_SUITES:
        state['sriov_after'] = sriov_snapshot(guest, state['pfs'])
    yield state
    # Free both cores before the next release's guest boots.
    guest.vm.stop(keep_logs=True)


@pytest.mark.parametrize('suite', REFUSAL_SUITES, scope='module')
@pytest.mark.parametrize('case', sorted(REFUSALS))
def test_unsafe_requests_are_refused_and_write_nothing(intel, case):
    run, before, after = intel['refusals'][case]
    assert run.rc != 0 and run.failed == 1, run.tail()
    for fragment in REFUSALS[case][1]:
        assert fragment in run.output, (fragment, run.tail())
    assert after == before, 'a file under /etc or /boot changed although the request was refused'
    assert intel['guest'].sh('echo alive').strip() == 'alive'


@pytest.mark.parametrize('suite', SUITES, scope='module')
def test_release_is_what_the_collection_is_proven_on(intel):
    assert_release(intel['facts'], intel['suite'])
    # A fresh install has /etc/modules, linked from modules-load.d; the role leaves it alone.
    assert intel['facts']['etc_modules'] == '../modules', intel['facts']
    assert intel['guest'].sh('sha256sum /etc/modules') == intel['etc_modules_before']


@pytest.mark.parametrize('suite', SUITES, scope='module')
def test_intel_grub_converges_with_exactly_one_reboot(intel):
    guest, run, suite = intel['guest'], intel['run'], intel['suite']
    assert run.rc == 0, run.tail()
    started = time.monotonic()
    assert 'intel_iommu=off' in intel['cmdline_before'].split()
    cmdline = guest.sh('cat /proc/cmdline').strip()
    assert 'intel_iommu=on' in cmdline.split() and 'iommu=pt' in cmdline.split(), cmdline
    assert 'intel_iommu=off' not in cmdline.split(), cmdline
    boot_after = guest.boot_id()
    assert boot_after != intel['boot_before']
    assert guest.boots() == intel['boots_before'] + 1, 'the role must reboot exactly once'
    assert guest.sh('ls /sys/class/iommu').split(), 'no IOMMU unit registered'
    groups = guest.sh('ls /sys/kernel/iommu_groups').split()
    assert groups, 'no IOMMU groups'
    assert set(guest.sh('cat /sys/kernel/iommu_groups/*/type').split()) == {'identity'}
    log = '\n'.join(iommu_log_lines(guest))
    for line in ('DMAR: IOMMU enabled', 'Default domain type: Passthrough', 'DMAR-IR: Enabled IRQ remapping'):
        assert line in log, line
    link = guest.sh('readlink /sys/bus/pci/devices/%s/driver' % intel['nic']).strip()
    assert link.endswith('/vfio-pci'), link
    # We are talking to the guest over its management NIC: it kept its driver and the default route.
    assert guest.driver(guest.nic_address(guest.default_route_dev())) == 'virtio-pci'
    guest.capture('%s-intel-after' % suite)
    say('%s intel after: uname -r %s\n  /proc/cmdline before: %s\n  /proc/cmdline after:  %s\n'
        '  IOMMU kernel lines:\n    %s\n  %d IOMMU groups; %s driver -> %s\n  boot ids %s -> %s\n'
        '  converge+reboot %.1f s, verify %.1f s'
        % (suite, intel['facts']['kernel'], intel['cmdline_before'], cmdline, log.replace('\n', '\n    '),
           len(groups), intel['nic'], link, intel['boot_before'], boot_after, run.seconds,
           time.monotonic() - started))


@pytest.mark.parametrize('suite', SUITES, scope='module')
def test_only_the_requested_twin_goes_to_vfio_by_address(intel):
    guest = intel['guest']
    assert intel['run'].rc == 0, intel['run'].tail()
    assert guest.driver(intel['nic']) == 'vfio-pci'
    assert guest.driver(intel['twin']) == 'e1000e'
    # ids= would take both twins: nothing in modprobe.d may name the ID.
    assert guest.sh('grep -rh "ids=" /etc/modprobe.d || true').strip() == ''
    assert 'install e1000e' in guest.sh('cat /etc/modprobe.d/vfio-passthrough-address.conf')
    [ifname] = guest.sh('ls /sys/bus/pci/devices/%s/net' % intel['twin']).split()
    guest.sh('ip link set dev %s up' % ifname)
    flags = re.search(r'<([^>]*)>', guest.sh('ip -o link show dev %s' % ifname)).group(1).split(',')
    assert 'UP' in flags, flags


@pytest.mark.parametrize('suite', SUITES, scope='module')
def test_vfio_modules_load_cleanly_at_boot(intel):
    assert intel['run'].rc == 0, intel['run'].tail()
    assert_vfio_modules_load(intel['guest'], intel['suite'])


@pytest.mark.parametrize('suite', SUITES, scope='module')
def test_second_run_changes_nothing_and_does_not_reboot(intel, run_playbook):
    guest = intel['guest']
    boot = guest.boot_id()
    run = run_playbook(guest, '%s-intel-rerun' % intel['suite'], converge_vars(intel))
    assert run.rc == 0, run.tail()
    assert run.changed == 0, run.tail()
    assert guest.boot_id() == boot
    say('%s rerun (%.1f s): %s' % (intel['suite'], run.seconds,
                                   [line.strip() for line in run.output.splitlines() if 'changed=' in line]))


@pytest.mark.parametrize('suite', TUNING_SUITES, scope='module')
def test_hugepages_and_isolated_cpu_arrive_with_the_same_reboot(intel):
    guest = intel['guest']
    assert intel['run'].rc == 0, intel['run'].tail()
    assert guest.boots() == intel['boots_before'] + 1, 'the role must reboot exactly once'
    cmdline = guest.sh('cat /proc/cmdline').strip()
    meminfo = guest.sh('grep -E "^(MemTotal|HugePages_Total|HugePages_Free|Hugepagesize):" /proc/meminfo')
    nr = guest.sh('cat /sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages').strip()
    isolated = guest.sh('cat /sys/devices/system/cpu/isolated').strip()
    possible = guest.sh('cat /sys/devices/system/cpu/possible').strip()
    say('%s tuning after the reboot:\n  /proc/cmdline: %s\n  %s\n  hugepages-2048kB/nr_hugepages: %s\n'
        '  cpu/possible: %s, cpu/isolated: %s'
        % (intel['suite'], cmdline, meminfo.strip().replace('\n', '\n  '), nr, possible, isolated))
    tokens = cmdline.split()
    # adjacent and in this order: hugepages=N counts pages of the hugepagesz= before it
    start = tokens.index(TUNING_ARGS[0])
    assert tokens[start:start + 3] == TUNING_ARGS, cmdline
    assert 'isolcpus=1' in tokens, cmdline
    fields = dict(re.findall(r'^(\w+):\s+(\d+)', meminfo, re.M))
    assert int(fields['HugePages_Total']) == 128 and fields['Hugepagesize'] == '2048', meminfo
    assert nr == '128'
    assert (possible, isolated) == ('0-1', '1')


@pytest.mark.parametrize('suite', SRIOV_SUITES, scope='module')
def test_fresh_host_gets_vfs_persisted_and_bound_with_the_same_reboot(intel):
    guest, run = intel['guest'], intel['run']
    assert run.rc == 0, run.tail()
    assert intel['sriov_before']['state'] == ((0, []), (0, [])), intel['sriov_before']['state']
    assert guest.boots() == intel['boots_before'] + 1, 'the role must reboot exactly once'
    (a_count, a_rows), (b_count, b_rows) = intel['sriov_after']['state']
    assert (a_count, b_count) == (3, 2)
    assert drivers(a_rows) == ['vfio-pci', 'igbvf', 'vfio-pci'], a_rows
    assert drivers(b_rows) == ['igbvf', 'vfio-pci'], b_rows
    groups = [group for _vf, _driver, group in a_rows + b_rows]
    assert len(set(groups)) == len(groups), 'each VF behind the root port has its own IOMMU group: %s' % groups
    assert guest.sh('grep -rh "ids=" /etc/modprobe.d || true').strip() == '', 'VFs are bound by address only'
    rule = guest.sh('cat /etc/udev/rules.d/70-vfio-passthrough-sriov.rules')
    assert all('KERNEL=="%s"' % pf in rule for pf in intel['pfs']), rule
    say('sriov converge (%.1f s): lspci -Dnnk before:\n%s\n  after:\n%s\n  sriov_numvfs %d / %d; VFs (address, '
        'driver, IOMMU group): %s / %s\n  boot ids %s -> %s'
        % (run.seconds, intel['sriov_before']['lspci'], intel['sriov_after']['lspci'], a_count, b_count,
           a_rows, b_rows, intel['boot_before'], intel['boot_after']))


@pytest.fixture(scope='module')
def sriov_changes(intel, run_playbook):
    """After the converge and its rerun: a live count change, then one deferred by a held VF group."""
    guest, notes, runs = intel['guest'], {}, {}

    def play(name, sriov):
        notes[name + '_before'] = sriov_snapshot(guest, intel['pfs'])
        notes[name + '_boot_before'], notes[name + '_boots_before'] = guest.boot_id(), guest.boots()
        runs[name] = run_playbook(guest, '%s-sriov-%s' % (intel['suite'], name), converge_vars(intel, sriov))
        notes[name + '_boot_after'], notes[name + '_boots_after'] = guest.boot_id(), guest.boots()
        notes[name + '_after'] = sriov_snapshot(guest, intel['pfs'])

    play('live', (3, 3))
    # A VM stand-in: a process holding PF A's VF 0 group open. A count change destroys every VF,
    # so the role must not make it now.
    group = notes['live_after']['state'][0][1][0][2]
    pid = guest.sh('setsid nohup sleep 100000 3<>/dev/vfio/%s >/dev/null 2>&1 </dev/null & echo $!' % group).strip()
    notes['held_group'] = group
    notes['holder'] = guest.sh('sleep 1; ls -l /proc/%s/fd/3' % pid).strip()
    play('deferred', (4, 3))
    return {'runs': runs, 'notes': notes}


@pytest.mark.parametrize('suite', SRIOV_SUITES, scope='module')
def test_vf_count_change_without_users_is_live(intel, sriov_changes):
    run, notes = sriov_changes['runs']['live'], sriov_changes['notes']
    assert run.rc == 0, run.tail()
    assert run.changed > 0
    # The rerun before it left the VFs as the converge made them.
    assert notes['live_before']['state'] == intel['sriov_after']['state']
    assert notes['live_boot_after'] == notes['live_boot_before'], 'a live change must not reboot'
    (_a_count, a_rows), (b_count, b_rows) = notes['live_after']['state']
    assert a_rows == intel['sriov_after']['state'][0][1], 'PF A was not asked to change'
    assert b_count == 3 and drivers(b_rows) == ['vfio-pci'] * 3, b_rows
    say('sriov live change PF B 2 -> 3, all VFs to vfio-pci (%.1f s), boot id %s unchanged: %s'
        % (run.seconds, notes['live_boot_after'], b_rows))


@pytest.mark.parametrize('suite', SRIOV_SUITES, scope='module')
def test_vf_count_change_on_a_held_vf_waits_for_the_reboot(intel, sriov_changes):
    run, notes = sriov_changes['runs']['deferred'], sriov_changes['notes']
    assert run.rc == 0, run.tail()
    # The role says why it reboots: the module deferred PF A's change because of the held group.
    reason = [line for line in run.output.splitlines() if 'Reboot needed on' in line]
    assert reason and 'SR-IOV: %s has 3 VFs, 4 asked' % intel['pfs'][0] in reason[0], run.tail()
    assert '/dev/vfio/%s is open' % notes['held_group'] in reason[0], reason
    assert notes['deferred_boot_after'] != notes['deferred_boot_before']
    assert notes['deferred_boots_after'] == notes['deferred_boots_before'] + 1
    (a_count, a_rows), (b_count, b_rows) = notes['deferred_after']['state']
    assert a_count == 4 and drivers(a_rows) == ['vfio-pci', 'igbvf', 'vfio-pci', 'igbvf'], a_rows
    assert b_count == 3 and drivers(b_rows) == ['vfio-pci'] * 3, b_rows
    say('sriov deferred change PF A 3 -> 4 (%.1f s) while %s\n  %s\n  boot ids %s -> %s\n  sriov_numvfs %d / %d; '
        'VFs (address, driver, IOMMU group): %s / %s\n  after:\n%s'
        % (run.seconds, notes['holder'], reason[0].strip(), notes['deferred_boot_before'],
           notes['deferred_boot_after'], a_count, b_count, a_rows, b_rows, notes['deferred_after']['lspci']))


# The VM probe (playbooks/vm_probe.yml) last, on the guest as the converge and the SR-IOV changes left it (no
# boot of its own): the twin the role put on vfio-pci is handed to a guest inside this guest (nested
# assignment through QEMU's intel-iommu with caching-mode=on), which must list it, bind e1000e, see its
# link and get a DHCP lease through it from the outer QEMU's user network; the twin that stayed with the
# host is refused before any QEMU starts; a VF on vfio-pci is handed over too (igbvf binds it inside).
PROBE_SUITES = ['trixie']
# pgrep matches the 15-character process name: Debian's QEMU runs as kvm or qemu-system-x86.
QEMU_PROCESSES = "pgrep -c '^(kvm|qemu-system-x8)' || true"
# A guest inside this TCG guest is TCG inside TCG: about 3 minutes on a quiet machine, over 20 under a
# load of 12-18 (measured); the module's 900 s default is for hosts with KVM.
PROBE_TIMEOUT = 2400


@pytest.fixture(scope='module')
def vm_probes(intel, run_playbook):
    guest, suite = intel['guest'], intel['suite']
    runs, notes = {}, {}
    notes['group'] = guest.sh('basename $(readlink /sys/bus/pci/devices/%s/iommu_group)' % intel['nic']).strip()
    runs['nic'] = run_playbook(guest, '%s-vm-probe-nic' % suite,
                               {'vm_probe_devices': [intel['nic']], 'vm_probe_dhcp': True,
                                'vm_probe_timeout': PROBE_TIMEOUT}, playbook='vm_probe.yml')
    notes['qemu_before_refusal'] = int(guest.sh(QEMU_PROCESSES).strip())
    runs['twin'] = run_playbook(guest, '%s-vm-probe-host-twin' % suite,
                                {'vm_probe_devices': [intel['twin']], 'vm_probe_dhcp': True}, playbook='vm_probe.yml')
    notes['qemu_after_refusal'] = int(guest.sh(QEMU_PROCESSES).strip())
    vfs = [(vf, group) for _count, rows in sriov_snapshot(guest, intel['pfs'])['state']
           for vf, driver, group in rows if driver == 'vfio-pci']
    notes['vf'], notes['vf_group'] = vfs[0]
    runs['vf'] = run_playbook(guest, '%s-vm-probe-vf' % suite,
                              {'vm_probe_devices': [notes['vf']], 'vm_probe_timeout': PROBE_TIMEOUT},
                              playbook='vm_probe.yml')
    return {'runs': runs, 'notes': notes}


@pytest.mark.parametrize('suite', PROBE_SUITES, scope='module')
def test_vm_probe_boots_a_guest_with_the_vfio_twin(intel, vm_probes):
    run, group = vm_probes['runs']['nic'], vm_probes['notes']['group']
    probe = probe_of(run, intel['nic'])
    say_probe('vm probe of %s' % intel['nic'], run, probe)
    assert_nic_probe(run, probe, intel['nic'], group, intel['facts']['kernel'])
    assert intel['guest'].driver(intel['nic']) == 'vfio-pci', 'the probe must leave the device where it was'


@pytest.mark.parametrize('suite', PROBE_SUITES, scope='module')
def test_vm_probe_refuses_the_host_twin_before_starting_anything(intel, vm_probes):
    run, notes = vm_probes['runs']['twin'], vm_probes['notes']
    probe = probe_of(run, intel['twin'])
    say('vm probe of the host twin %s: rc=%d in %.1f s; QEMU processes before/after: %d/%d\n  refusal: %s\n'
        '  failure: %s' % (intel['twin'], run.rc, run.seconds, notes['qemu_before_refusal'],
                           notes['qemu_after_refusal'], probe['refusal'], run.result_of(VM_PROBE).get('msg')))
    assert run.rc != 0 and run.failed == 1, run.tail()
    assert probe['started'] is False and probe['vfio_fd'] is None, probe
    assert 'is on e1000e, not vfio-pci' in (probe['refusal'] or ''), probe['refusal']
    assert 'nothing was started' in run.output, run.tail()
    assert notes['qemu_before_refusal'] == notes['qemu_after_refusal'] == 0, notes
    assert intel['guest'].driver(intel['twin']) == 'e1000e'


@pytest.mark.parametrize('suite', PROBE_SUITES, scope='module')
def test_vm_probe_hands_a_vf_to_the_inner_guest(intel, vm_probes):
    run, notes = vm_probes['runs']['vf'], vm_probes['notes']
    probe = probe_of(run, notes['vf'])
    say_probe('vm probe of VF %s' % notes['vf'], run, probe)
    assert run.rc == 0 and run.failed == 0, run.tail()
    assert probe['started'] and probe['seen'] and probe['error'] is None, probe['summary']
    [device] = [d for d in probe['guest']['devices'] if d['vendor_device'] == VF_ID]
    assert device['driver'] == 'igbvf', device
    assert re.fullmatch(r'/proc/\d+/fd/\d+ -> /dev/vfio/%s' % notes['vf_group'], probe['vfio_fd'] or ''), probe
