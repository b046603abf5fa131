"""_sriov: the SR-IOV request, the live-or-deferred rule, the boot files and the verdict."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ansible_collections.vfio.passthrough.plugins.module_utils._host_critical import host_critical
from ansible_collections.vfio.passthrough.plugins.module_utils._pci_devices import read_pci_devices
from ansible_collections.vfio.passthrough.plugins.module_utils._sriov import (
    DEFERRED, LIVE, NONE, REFUSED, check_request, decide, dropped_host_vfs, host_vfs, managed_pfs,
    read_guest_references, render, script_argv, verify, vf_removal, vfs_in_use,
)
from ansible_collections.vfio.passthrough.plugins.module_utils._vfio_open import read_vfio_openers, vfio_users
from ansible_collections.vfio.passthrough.plugins.module_utils._sysfs import SysfsTree

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
from sysfs_builder import FakeHost  # noqa: E402
from tree_snapshot import tree_snapshot  # noqa: E402

PF0, PF1 = '0000:01:00.0', '0000:02:00.0'
VFS0 = ['0000:01:10.0', '0000:01:10.2']


def sriov_host(root, drivers=('vfio-pci', 'igbvf')):
    """Two igb PFs (82576, 7 VFs each) behind their own root ports; PF0 has two VFs, PF1 none, a plain e1000e."""
    host = FakeHost(root)
    host.add_bridge('0000:00:02.0', group=1)
    host.add_device(PF0, '8086', '10c9', '020000', driver='igb', group=2, parent_bridge='0000:00:02.0',
                    netdev='enp1s0', sriov_totalvfs=7)
    host.add_vfs(PF0, VFS0, drivers=drivers, groups=(5, 6))
    host.add_bridge('0000:00:03.0', group=3)
    host.add_device(PF1, '8086', '10c9', '020000', driver='igb', group=4, parent_bridge='0000:00:03.0',
                    netdev='enp2s0', sriov_totalvfs=7)
    host.add_device('0000:00:04.0', '8086', '10d3', '020000', driver='e1000e', group=7)
    return host


# What the host runs on, through VF 1 of PF0, and the reason the host's verdict gives for it.
HOST_VF = {
    'bridge': 'NIC enp1s0v1 is a port of vmbr0, which carries the default route',
    'bond': 'NIC enp1s0v1 is a slave of bond0, which is a port of vmbr0, which carries the default route',
    'disk': 'storage controller of / (/dev/nvme0n1p2)',
}


def host_on_vf(root, how):
    """sriov_host whose VF 1 (igbvf) carries the host: its netdev in the bridge (or bond) of the default route, or the root disk."""
    host = sriov_host(root)
    if how == 'disk':
        host.nvme_disk(VFS0[1], 'nvme0')
        host.mount('/dev/nvme0n1p2', '/')
        return host
    host.add_netdev('enp1s0v1', host.device_dir(VFS0[1]))
    if how == 'bond':
        host.bond('bond0', ['enp1s0v1'])
    host.linux_bridge('vmbr0', ['bond0' if how == 'bond' else 'enp1s0v1'])
    host.default_route('vmbr0')
    return host


def judged_devices(root):
    """read_pci_devices with each device's host_critical, as iommu_facts gives them to the plan."""
    found = read_pci_devices(str(root))
    for address, reasons in host_critical(SysfsTree(str(root))).items():
        found[address]['host_critical'] = reasons
    return found


@pytest.fixture
def devices(tmp_path):
    sriov_host(tmp_path)
    return read_pci_devices(str(tmp_path))


def test_facts_link_pf_and_vfs(devices):
    assert devices[PF0]['virtfns'] == VFS0 and devices[PF0]['sriov_numvfs'] == 2
    assert [devices[vf]['physfn'] for vf in VFS0] == [PF0, PF0]
    assert devices[PF1]['virtfns'] == [] and devices[PF0]['physfn'] is None


@pytest.mark.parametrize('request_, entries, notes', [
    ([{'pf': PF0, 'vfs': 2}], [{'pf': PF0, 'vfs': 2, 'vfio': [0, 1]}], []),
    ([{'pf': '02:00.0', 'vfs': 4, 'vfio': [3, 1, 1]}], [{'pf': PF1, 'vfs': 4, 'vfio': [1, 3]}],
     ["pcie_passthrough_sriov: '02:00.0' means 0000:02:00.0"]),
    ([{'pf': PF1, 'vfs': 7, 'vfio': []}, {'pf': PF0, 'vfs': 0, 'vfio': 'all'}],
     [{'pf': PF0, 'vfs': 0, 'vfio': []}, {'pf': PF1, 'vfs': 7, 'vfio': []}], []),
])
def test_check_request_accepts(devices, request_, entries, notes):
    assert check_request(request_, devices) == (entries, [], notes)


@pytest.mark.parametrize('request_, passthrough, expected', [
    ([{'pf': '01:00', 'vfs': 2}], (), "'01:00' names the whole device 0000:01:00, not one function"),
    ([{'pf': '01:00.0.1', 'vfs': 2}], (), "'01:00.0.1' is not a PCI address"),
    ([{'pf': '05:00.0', 'vfs': 2}], (), '0000:05:00.0 does not exist on this host'),
    ([{'pf': '00:04.0', 'vfs': 2}], (), '0000:00:04.0 does not support SR-IOV (it has no sriov_totalvfs)'),
    ([{'pf': VFS0[1], 'vfs': 1}], (), '0000:01:10.2 is itself a virtual function of 0000:01:00.0'),
    ([{'pf': PF0, 'vfs': 8}], (), 'vfs 8 is not a count from 0 to 7, the sriov_totalvfs of 0000:01:00.0'),
    ([{'pf': PF0, 'vfs': True}], (), 'vfs True is not a count from 0 to 7'),
    ([{'pf': PF0, 'vfs': -1}], (), 'vfs -1 is not a count'),
    ([{'pf': PF0, 'vfs': 2, 'vfio': [2]}], (), 'vfio index 2 is no VF of the 2 asked for (0 to 1)'),
    ([{'pf': PF0, 'vfs': 2, 'vfio': 'some'}], (), "vfio must be \"all\" or a list of VF indexes, not 'some'"),
    ([{'pf': PF0, 'vfs': 2, 'vf': 1}], (), 'unknown key vf (known: pf, vfs, vfio)'),
    ([{'pf': PF0, 'vfs': 1}, {'pf': '01:00.0', 'vfs': 2}], (), '0000:01:00.0 is already listed at pcie_passthrough_sriov[0]'),
    ([{'pf': PF0, 'vfs': 2}], (PF0,), '0000:01:00.0 is also in pcie_passthrough_devices'),
    ([{'pf': PF0, 'vfs': 2}], (VFS0[0],), '0000:01:10.0 in pcie_passthrough_devices is a VF of 0000:01:00.0'),
    (['0000:01:00.0'], (), "must be a dict with pf, vfs and optionally vfio, not '0000:01:00.0'"),
    ({'pf': PF0}, (), 'pcie_passthrough_sriov must be a list'),
])
def test_check_request_refuses_naming_the_value(devices, request_, passthrough, expected):
    _entries, errors, _notes = check_request(request_, devices, passthrough)
    assert len(errors) == 1 and expected in errors[0], errors


def test_host_critical_vf_refused_for_vfio(devices):
    devices[VFS0[1]]['host_critical'] = ['NIC enp1s10f1 carries the default route']
    _entries, errors, _notes = check_request([{'pf': PF0, 'vfs': 2}], devices)
    assert errors == ['pcie_passthrough_sriov[0] (pf 0000:01:00.0): VF 1 (0000:01:10.2) is host-critical '
                      '(NIC enp1s10f1 carries the default route); keep it off vfio']
    assert check_request([{'pf': PF0, 'vfs': 2, 'vfio': [0]}], devices)[1] == []


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


@settings(max_examples=200, deadline=None)
@given(st.lists(st.dictionaries(st.sampled_from(['pf', 'vfs', 'vfio', 'x']),
                                st.one_of(st.none(), st.booleans(), st.integers(-3, 9), st.text(max_size=12),
                                          st.lists(st.integers(-2, 9), max_size=4)))))
def test_check_request_never_raises_and_entries_are_valid(request_):
    host_devices = {PF0: {'sriov_totalvfs': 7, 'sriov_numvfs': 0, 'virtfns': [], 'physfn': None}}
    entries, errors, _notes = check_request(request_, host_devices)
    for entry in entries:
        assert entry['pf'] == PF0 and 0 <= entry['vfs'] <= 7
        assert all(0 <= i < entry['vfs'] for i in entry['vfio'])
    assert len(entries) + len(errors) >= min(len(request_), 1)


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
    os.makedirs(tmp_path / 'proc/42/fd')
    os.symlink('/dev/vfio/6', tmp_path / 'proc/42/fd/7')
    os.symlink('/dev/null', tmp_path / 'proc/42/fd/0')
    os.makedirs(tmp_path / 'proc/self')
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


def test_in_use_reads_this_nodes_guests_only(tmp_path):
    """/etc/pve/nodes/<node>/qemu-server holds each node's guests; another node's 0000:01:10.0 is another card."""
    host = sriov_host(tmp_path)
    host.write('etc/pve/nodes/pve1/qemu-server/201.conf', 'hostpci0: pcie=1,host=01:10.2\n')
    host.write('etc/pve/nodes/pve2/qemu-server/301.conf', 'hostpci0: 0000:01:10.0\n')
    host.write('etc/pve/nodes/pve1/qemu-server/202.conf.tmp.77', 'hostpci0: 0000:01:10.0\n')
    devices = read_pci_devices(str(tmp_path))
    assert read_guest_references(str(tmp_path), devices, node='pve1') == {VFS0[1]: ['guest 201 (hostpci0)']}
    # node unknown: every node's guests count, the safe side
    assert read_guest_references(str(tmp_path), devices) == {
        VFS0[0]: ['guest 301 (hostpci0)'], VFS0[1]: ['guest 201 (hostpci0)']}


def test_render_rule_names_each_pf_and_no_ids():
    entries = [{'pf': PF0, 'vfs': 4, 'vfio': [0, 1]}, {'pf': PF1, 'vfs': 2, 'vfio': []}]
    (rules, rule_text, rule_mode), (script, script_text, script_mode) = render(entries, '/s', '/r')
    assert (rules, rule_mode, script, script_mode) == ('/r', 0o644, '/s', 0o755)
    assert rule_text.splitlines()[0] == '# Managed by Ansible (vfio.passthrough.sriov_vfs): manual edits will be overwritten'
    assert ('ACTION=="add|bind", SUBSYSTEM=="pci", KERNEL=="0000:01:00.0", DRIVER=="?*", '
            'RUN+="/bin/sh /s 0000:01:00.0 4 0,1"') in rule_text.splitlines()
    assert 'RUN+="/bin/sh /s 0000:02:00.0 2 -"' in rule_text
    assert 'ids=' not in rule_text and 'ids=' not in script_text.replace('(never by ids=', '')
    assert script_argv(entries[0], '/s') == ['/bin/sh', '/s', PF0, '4', '0,1']
    assert render([], '/s', '/r') == [('/r', None, 0o644), ('/s', None, 0o755)]


# -- the rendered script, on a fake kernel ------------------------------------------

# The script's one sysfs primitive, replaced by a kernel made of shell: sriov_numvfs refuses a non-zero
# count over another (EBUSY), removes every VF (driver and driver_override gone with it) and creates
# the VFs listed in fake-vfN, binding their fake-driver when sriov_drivers_autoprobe is 1; drivers_probe
# binds driver_override or fake-driver; unbind drops the driver. A file FILE.fail-VALUE makes writing
# VALUE to FILE fail. Every write is logged to kernel.log beside sys/.
PUT = 'put() {{ echo "$1" > "$2"; }}'
FAKE_KERNEL = r"""put() {
    echo "${2#"$sys"/} $1" >> "$sys/../kernel.log"
    [ ! -e "$2.fail-$1" ] || return 1
    case $2 in */sriov_numvfs) if [ "$1" != 0 ] && [ "$(cat "$2")" != 0 ]; then return 1; fi ;; esac
    echo "$1" > "$2" || return 1
    case $2 in
    */sriov_numvfs)
        d=${2%/*}
        for link in "$d"/virtfn*; do
            [ -L "$link" ] || continue
            rm -f "$link/driver" "$link/driver_override" "$link"
        done
        n=0
        while [ "$n" -lt "$1" ]; do
            if [ -e "$d/fake-vf$n" ]; then
                v=$(cat "$d/fake-vf$n")
                ln -s "$v" "$d/virtfn$n"
                [ "$(cat "$d/sriov_drivers_autoprobe")" = 0 ] || bind "$v" "$(cat "$v/fake-driver")"
            fi
            n=$((n + 1))
        done ;;
    */drivers_probe)
        v=$sys/bus/pci/devices/$1
        o=$(cat "$v/driver_override" 2>/dev/null) || o=
        [ -e "$v/driver" ] || bind "$v" "${o:-$(cat "$v/fake-driver")}" ;;
    */unbind) rm -f "$sys/bus/pci/devices/$1/driver" ;;
    esac
}
bind() { mkdir -p "$sys/bus/pci/drivers/$2"; ln -s "$sys/bus/pci/drivers/$2" "$1/driver"; }"""
VF2 = '0000:01:10.4'


def kernel_host(root, pool=(VFS0[0], VFS0[1], VF2)):
    """sriov_host on the fake kernel: PF0 can have the VFs of ``pool`` (igbvf by default), two made now."""
    host = sriov_host(root)
    host.add_device(VF2, '8086', '10ca', '020000', parent_bridge='0000:00:02.0')
    pf = Path(root) / host.device_dir(PF0)
    for index, vf in enumerate(pool):
        (pf / ('fake-vf%d' % index)).write_text(str(Path(root) / host.device_dir(vf)) + '\n')
    for vf in (VFS0[0], VFS0[1], VF2):
        (Path(root) / host.device_dir(vf) / 'fake-driver').write_text('igbvf\n')
    return host


def rendered_script(tmp_path, kernel=True, modprobe='true'):
    """The script as render() writes it, on the fake kernel (the put line replaced) and a fake modprobe."""
    text = render([{'pf': PF0, 'vfs': 1, 'vfio': []}])[1][1]
    assert text.count(PUT.format()) == 1 and text.count('modprobe=/sbin/modprobe\n') == 1
    if kernel:
        text = text.replace(PUT.format(), FAKE_KERNEL)
    fake = tmp_path / 'fake-modprobe'
    fake.write_text('#!/bin/sh\n%s\n' % modprobe)
    fake.chmod(0o755)
    path = tmp_path / 'sriov.sh'
    path.write_text(text.replace('modprobe=/sbin/modprobe\n', 'modprobe=%s\n' % fake))
    return path


def run_script(tmp_path, *args, **kwargs):
    env = dict(os.environ, VFIO_PASSTHROUGH_SYSFS=str(tmp_path / 'root/sys'))
    return subprocess.run(['sh', str(rendered_script(tmp_path, **kwargs))] + list(args), env=env,
                          capture_output=True, text=True, check=False)


def _state(root, host):
    """What the script may change: the PF's count and autoprobe, each VF's driver and override (index order)."""
    pf = root / host.device_dir(PF0)
    vfs = []
    for index in range(int((pf / 'sriov_numvfs').read_text())):
        link = pf / ('virtfn%d' % index)
        if not link.is_symlink():
            vfs.append(None)
            continue
        driver = link / 'driver'
        override = link / 'driver_override'
        vfs.append((link.resolve().name, os.path.basename(os.readlink(driver)) if driver.is_symlink() else None,
                    override.read_text().strip() if override.exists() else None))
    return {'numvfs': (pf / 'sriov_numvfs').read_text().strip(),
            'autoprobe': (pf / 'sriov_drivers_autoprobe').read_text().strip(), 'vfs': vfs}


BEFORE = {'numvfs': '2', 'autoprobe': '1', 'vfs': [(VFS0[0], 'vfio-pci', None), (VFS0[1], 'igbvf', None)]}


@pytest.mark.parametrize('args, fail, modprobe, rc, state, says', [
    # success: 2 -> 3 VFs, VF 0 for vfio-pci
    ((PF0, '3', '0'), (), 'true', 0,
     {'numvfs': '3', 'autoprobe': '1', 'vfs': [(VFS0[0], 'vfio-pci', 'vfio-pci'), (VFS0[1], 'igbvf', ''),
                                               (VF2, 'igbvf', '')]}, ''),
    # success without a count change: VF 1 to vfio-pci, VF 0 back to the host; autoprobe never written
    ((PF0, '2', '1'), (), 'true', 0,
     {'numvfs': '2', 'autoprobe': '1', 'vfs': [(VFS0[0], 'igbvf', ''), (VFS0[1], 'vfio-pci', 'vfio-pci')]}, ''),
    # bad arguments and a device without SR-IOV: nothing is written
    ((PF0, 'x', '-'), (), 'true', 2, BEFORE, "COUNT 'x' is no number"),
    ((PF0, '2', '0,,1'), (), 'true', 2, BEFORE, "VFIO '0,,1' is neither - nor a list of indexes"),
    ((PF0,), (), 'true', 2, BEFORE, "COUNT '' is no number"),
    (('../../x', '2', '-'), (), 'true', 2, BEFORE, "PF '../../x' is no PCI address"),
    (('0000:00:04.0', '2', '-'), (), 'true', 1, BEFORE, 'no such SR-IOV physical function'),
    # each write that can fail
    ((PF0, '3', '0'), ('PF:sriov_drivers_autoprobe.fail-0',), 'true', 1, BEFORE, 'cannot set sriov_drivers_autoprobe to 0'),
    ((PF0, '3', '0'), ('PF:sriov_numvfs.fail-0',), 'true', 1, BEFORE, 'cannot remove its 2 VFs'),
    ((PF0, '3', '0'), ('PF:sriov_numvfs.fail-3',), 'true', 1,
     {'numvfs': '2', 'autoprobe': '1', 'vfs': [(VFS0[0], 'igbvf', None), (VFS0[1], 'igbvf', None)]},
     'cannot create 3 VFs'),
    ((PF0, '3', '1'), ('VF1:driver_override.fail-vfio-pci',), 'true', 1,
     {'numvfs': '3', 'autoprobe': '1', 'vfs': [(VFS0[0], 'igbvf', ''), (VFS0[1], 'igbvf', None), (VF2, 'igbvf', None)]},
     'cannot set driver_override of VF 1 (0000:01:10.2)'),
    ((PF0, '2', '1'), ('BUS:drivers/igbvf/unbind.fail-' + VFS0[1],), 'true', 1,
     {'numvfs': '2', 'autoprobe': '1', 'vfs': [(VFS0[0], 'igbvf', ''), (VFS0[1], 'igbvf', 'vfio-pci')]},
     'cannot unbind VF 1 (0000:01:10.2) from igbvf'),
    # the kernel made fewer VFs than asked: the ones it made still get their drivers
    ((PF0, '4', '0,3'), (), 'true', 1,
     {'numvfs': '4', 'autoprobe': '1', 'vfs': [(VFS0[0], 'vfio-pci', 'vfio-pci'), (VFS0[1], 'igbvf', ''),
                                               (VF2, 'igbvf', ''), None]}, 'virtfn3 missing'),
    # interrupted (TERM) between the count change and the drivers
    ((PF0, '3', '0'), (), 'kill -TERM $PPID; sleep 1', 1,
     {'numvfs': '3', 'autoprobe': '1', 'vfs': [(VFS0[0], 'igbvf', None), (VFS0[1], 'igbvf', None),
                                               (VF2, 'igbvf', None)]}, ''),
], ids=['grow', 'rebind', 'bad-count', 'bad-vfio', 'no-args', 'bad-pf', 'no-sriov', 'autoprobe-fails',
        'remove-fails', 'create-fails', 'override-fails', 'unbind-fails', 'fewer-vfs', 'interrupted'])
def test_every_exit_of_the_script_restores_what_it_changed(tmp_path, args, fail, modprobe, rc, state, says):
    root = tmp_path / 'root'
    host = kernel_host(root)
    for marker in fail:
        where, _sep, name = marker.partition(':')
        base = {'PF': host.device_dir(PF0), 'VF1': host.device_dir(VFS0[1]), 'BUS': 'sys/bus/pci'}[where]
        (root / base / name).write_text('')
    before = tree_snapshot(root)
    done = run_script(tmp_path, *args, modprobe=modprobe)
    assert (done.returncode, _state(root, host)) == (rc, state), done.stderr
    assert says in done.stderr
    log = (tmp_path / 'root/kernel.log').read_text().splitlines() if (tmp_path / 'root/kernel.log').exists() else []
    if rc == 2 or 'no such' in says:
        assert log == [] and tree_snapshot(root) == before   # refused before any write: not a file touched
    elif state == BEFORE:
        # Failed before the count changed: every file holds what it held.
        assert {k: v[0] for k, v in tree_snapshot(root).items() if k != 'kernel.log'} == \
            {k: v[0] for k, v in before.items()}
    zeroed = [n for n, line in enumerate(log) if line.endswith('sriov_drivers_autoprobe 0')]
    if zeroed and 'fail-0' not in ''.join(fail):
        # Set to 0 once, and written back to what it was after.
        assert [line for line in log[zeroed[0] + 1:] if 'sriov_drivers_autoprobe' in line][-1].endswith(' 1'), log


def test_putting_back_the_old_count_comes_after_autoprobe_so_its_vfs_get_drivers(tmp_path):
    root = tmp_path / 'root'
    host = kernel_host(root)
    (root / host.device_dir(PF0) / 'sriov_numvfs.fail-3').write_text('')
    done = run_script(tmp_path, PF0, '3', '0')
    assert done.returncode == 1 and 'putting back the 2 VFs it had' in done.stderr
    writes = [line.rsplit('/', 1)[-1] for line in (root / 'kernel.log').read_text().splitlines()]
    assert writes == ['sriov_drivers_autoprobe 0', 'sriov_numvfs 0', 'sriov_numvfs 3', 'sriov_drivers_autoprobe 1',
                      'sriov_numvfs 2']


def test_the_rule_runs_the_script_with_arguments_it_accepts(tmp_path):
    root = tmp_path / 'root'
    host = kernel_host(root)
    entry = {'pf': PF0, 'vfs': 3, 'vfio': [0, 2]}
    done = run_script(tmp_path, *script_argv(entry)[2:])
    assert done.returncode == 0, done.stderr
    assert [vf[1] for vf in _state(root, host)['vfs']] == ['vfio-pci', 'igbvf', 'vfio-pci']
    assert verify([entry], read_pci_devices(str(root))) == []


@pytest.mark.parametrize('entry, drivers, expected', [
    ({'pf': PF0, 'vfs': 2, 'vfio': [0]}, ('vfio-pci', 'igbvf'), []),
    ({'pf': PF0, 'vfs': 3, 'vfio': [0]}, ('vfio-pci', 'igbvf'), ['SR-IOV: PF 0000:01:00.0 has 2 VFs, 3 asked']),
    ({'pf': PF0, 'vfs': 2, 'vfio': [0, 1]}, ('vfio-pci', 'igbvf'),
     ['SR-IOV: PF 0000:01:00.0: VF 1 (0000:01:10.2) is on driver igbvf, not vfio-pci']),
    ({'pf': PF0, 'vfs': 2, 'vfio': [0]}, ('vfio-pci', None),
     ['SR-IOV: PF 0000:01:00.0: VF 1 (0000:01:10.2) is kept for the host but is on driver none']),
    ({'pf': PF0, 'vfs': 2, 'vfio': []}, ('vfio-pci', 'igbvf'),
     ['SR-IOV: PF 0000:01:00.0: VF 0 (0000:01:10.0) is kept for the host but is on driver vfio-pci']),
    ({'pf': '0000:09:00.0', 'vfs': 2, 'vfio': []}, ('vfio-pci', 'igbvf'), ['SR-IOV: PF 0000:09:00.0 is gone']),
])
def test_verify_names_pf_and_vf(tmp_path, entry, drivers, expected):
    sriov_host(tmp_path, drivers=drivers)
    assert verify([entry], read_pci_devices(str(tmp_path))) == expected
