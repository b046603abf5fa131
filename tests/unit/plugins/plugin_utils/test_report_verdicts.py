"""The report's verdicts (plugin_utils/_report_verdicts.py): per device, table-driven, and per group."""

from __future__ import annotations

import pytest

from ansible_collections.vfio.passthrough.plugins.plugin_utils._report_text import vfio_state
from ansible_collections.vfio.passthrough.plugins.plugin_utils._report_verdicts import VERDICTS, device_verdict, device_verdicts, group_verdict
from report_pages import facts_of
from sysfs_builder import vfio_variant_host


def _dev(cls='020000', driver='e1000e', group=1, peers=(), resets=('flr', 'bus'), critical=(), boot_vga=False):
    return {'class': cls, 'class_name': 'Class %s' % cls, 'driver': driver, 'iommu_group': group,
            'group_peers': list(peers), 'reset_methods': list(resets), 'host_critical': list(critical),
            'boot_vga': boot_vga, 'vendor_id': '8086', 'device_id': '10d3'}


A, A1, B, BR = '0000:03:00.0', '0000:03:00.1', '0000:04:00.0', '0000:00:01.0'


@pytest.mark.parametrize('name, devices, enabled, verdict, reason_has, notes_have', [
    ('ready: alone, FLR', {A: _dev()}, True, 'ready', ['group 1'], []),
    ('ready: AF FLR counts as FLR', {A: _dev(resets=('af',))}, True, 'ready', [], []),
    ('ready: only a PCI bridge beside it', {A: _dev(peers=[BR]), BR: _dev(cls='060400', driver='pcieport', peers=[A])},
     True, 'ready', [], []),
    ('no FLR: pm only', {A: _dev(resets=('pm',))}, True, 'no-flr', ['resets only by pm'], []),
    ('no FLR: no reset at all', {A: _dev(resets=())}, True, 'no-flr', ['no reset method'], []),
    ('shares group with its other function', {A: _dev(peers=[A1]), A1: _dev(peers=[A])}, True, 'shares-group',
     [A1, 'pass them together'], []),
    ('needs ACS: another card in the group', {A: _dev(peers=[B]), B: _dev(peers=[A])}, True, 'needs-acs',
     [B, 'pcie_acs_override', 'peer-to-peer'], []),
    ('needs ACS names only the foreign peer', {A: _dev(peers=[A1, B]), A1: _dev(peers=[A, B]), B: _dev(peers=[A, A1])},
     True, 'needs-acs', [B], []),
    ('needs ACS: a peer the facts do not list', {A: _dev(peers=[B])}, True, 'needs-acs', [B], []),
    ('needs ACS: a host bridge is not a PCI bridge', {A: _dev(peers=['0000:00:00.0']),
                                                      '0000:00:00.0': _dev(cls='060000', driver=None, peers=[A])},
     True, 'needs-acs', ['0000:00:00.0'], []),
    ('host-critical names why', {A: _dev(critical=['NIC eno1 carries the default route'])}, True, 'host-critical',
     ['NIC eno1 carries the default route'], []),
    ('host-critical before IOMMU off', {A: _dev(group=None, critical=['storage controller of /'])}, False,
     'host-critical', ['storage controller of /'], []),
    ('on vfio-pci', {A: _dev(driver='vfio-pci')}, True, 'vfio', ['vfio-pci'], []),
    ('on vfio-pci, a peer still on the host', {A: _dev(driver='vfio-pci', peers=[B]), B: _dev(peers=[A])}, True,
     'vfio', [], [B, 'does not start']),
    ('on vfio-pci, peers without a driver or on pci-stub are fine',
     {A: _dev(driver='vfio-pci', peers=[B, A1]), B: _dev(driver=None, peers=[A, A1]),
      A1: _dev(driver='pci-stub', peers=[A, B])}, True, 'vfio', [], []),
    ('a peer without a class is not a bridge', {A: _dev(peers=[B]), B: {'iommu_group': 1}}, True, 'needs-acs', [B], []),
    ('on vfio-pci without FLR', {A: _dev(driver='vfio-pci', resets=('pm',))}, True, 'vfio', [], ['pm']),
    ('PCI bridge is platform', {BR: _dev(cls='060400', driver='pcieport')}, True, 'platform', ['platform'], []),
    ('the IOMMU itself, in no group', {A: _dev(cls='080600', driver=None, group=None)}, True, 'platform', [], []),
    ('IOMMU off', {A: _dev(group=None)}, False, 'iommu-off', ['IOMMU is off'], []),
    ('no group although the IOMMU is on', {A: _dev(group=None)}, True, 'iommu-off', ['no IOMMU group'], []),
    # facts without iomem (gathered before it existed): no evidence, so no argument
    ('boot VGA noted', {A: _dev(cls='030000', boot_vga=True)}, True, 'ready', [],
     ['is the boot VGA device', 'no kernel argument is suggested']),
    ('a host-critical peer blocks the group', {A: _dev(peers=[A1]), A1: _dev(peers=[A], critical=['NIC x'])}, True,
     'shares-group', [], [A1 + ' in the same IOMMU group is host-critical']),
])
def test_device_verdict(name, devices, enabled, verdict, reason_has, notes_have):
    result = device_verdict(A if A in devices else next(iter(devices)), devices, enabled)
    assert result['verdict'] == verdict, (name, result)
    assert result['label'] == dict((v[0], v[1]) for v in VERDICTS)[verdict]
    for text in reason_has:
        assert text in result['reason'], (name, result)
    notes = ' | '.join(result['notes'])
    for text in notes_have:
        assert text in notes, (name, result)
    if not notes_have:
        assert [n for n in result['notes'] if 'reset' not in n] == [], (name, result)


@pytest.mark.parametrize('members, expected', [
    ([], 'platform'),
    (['platform'], 'platform'),
    (['platform', 'ready'], 'ready'),
    (['ready', 'no-flr'], 'no-flr'),
    (['vfio', 'ready'], 'ready'),
    (['vfio', 'platform'], 'vfio'),
    (['shares-group', 'host-critical', 'ready'], 'host-critical'),
    (['shares-group', 'needs-acs'], 'needs-acs'),
    (['iommu-off', 'needs-acs'], 'iommu-off'),
])
def test_group_verdict_is_the_worst_member(members, expected):
    assert group_verdict(members) == expected


def test_canned_host_verdicts(canned):
    _name, facts, expected, _groups = canned
    assert {a: v['verdict'] for a, v in device_verdicts(facts).items()} == expected


def test_vfio_pci_variants_are_on_vfio_pci_and_named(tmp_path):
    vfio_variant_host(tmp_path)
    facts = facts_of(tmp_path)
    verdicts = device_verdicts(facts)
    assert {a: v['verdict'] for a, v in verdicts.items()} == {
        '0000:41:00.1': 'vfio', '0000:42:00.0': 'vfio', '0000:43:00.0': 'vfio',
        '0000:44:00.0': 'ready', '0000:45:00.0': 'ready', '0000:46:00.0': 'vfio'}
    assert verdicts['0000:41:00.1']['reason'] == 'bound to mlx5_vfio_pci, a vfio-pci variant driver, held for a VM'
    assert verdicts['0000:46:00.0']['reason'] == 'bound to vfio-pci, held for a VM'
    assert vfio_state(facts['devices']['0000:42:00.0']) == 'bound (xe-vfio-pci)'
    assert vfio_state(facts['devices']['0000:46:00.0']) == 'bound'
    assert vfio_state(facts['devices']['0000:44:00.0']) == 'host (fake_vfio_pci)'


def test_a_peer_on_a_variant_driver_does_not_hold_the_group_back():
    devices = {A: _dev(driver='vfio-pci', peers=[A1]), A1: _dev(driver='mlx5_vfio_pci', peers=[A])}
    devices[A]['vfio_driver'], devices[A1]['vfio_driver'] = 'vfio-pci', 'mlx5_vfio_pci'
    assert device_verdict(A, devices)['notes'] == []
    devices[A1].update(driver='mlx5_core', vfio_driver=None)
    assert device_verdict(A, devices)['notes'] == [
        '0000:03:00.1 (Class 020000, mlx5_core) in IOMMU group 1 is still on the host: '
        'the VM does not start until it is on vfio-pci too']


@pytest.mark.parametrize('extra, note', [
    ({'header_type': 1}, '0000:03:00.0 has config header type 1 (PCI-to-PCI bridge): vfio-pci refuses'),
    ({'header_type': 0, 'sriov_numvfs': 2}, 'SR-IOV physical function with 2 VFs enabled'),
])
def test_the_report_notes_what_the_plan_refuses(extra, note):
    devices = {A: dict(_dev(), **extra)}
    assert any(note in n for n in device_verdict(A, devices)['notes'])
    devices[A].update(header_type=0, sriov_numvfs=0)
    assert device_verdict(A, devices)['notes'] == []


def test_a_pf_whose_vf_carries_the_host_is_reported_host_critical(tmp_path):
    # The report follows the verdict the plan and sriov_vfs use: the PF is needed for what its VF carries.
    host = vfio_variant_host(tmp_path)
    host.add_device('0000:05:00.0', '8086', '10c9', '020000', driver='igb', group=21, sriov_totalvfs=7)
    host.add_vfs('0000:05:00.0', ['0000:05:10.0'], drivers=('igbvf',), groups=(22,))
    host.add_netdev('enp5s0v0', host.device_dir('0000:05:10.0'))
    host.default_route('enp5s0v0')
    verdicts = device_verdicts(facts_of(tmp_path))
    assert verdicts['0000:05:10.0']['reason'] == 'the host needs it: NIC enp5s0v0 carries the default route'
    assert verdicts['0000:05:00.0']['verdict'] == 'host-critical'
    assert verdicts['0000:05:00.0']['reason'] == ('the host needs it: its virtual function 0000:05:10.0: '
                                                  'NIC enp5s0v0 carries the default route')


BOOTFB = {'name': 'BOOTFB', 'start': '0xe0000000', 'end': '0xe07fffff', 'bar': 1, 'bar_start': '0xe0000000',
          'bar_end': '0xefffffff'}


@pytest.mark.parametrize('device, iomem, notes', [
    (_dev(cls='030000', boot_vga=True), 'readable',
     ['0000:03:00.0 is the boot VGA device, but /proc/iomem shows no boot framebuffer in its BARs: the host console '
      'does not hold it, so no kernel argument is needed for it']),
    (_dev(cls='030000', boot_vga=True), 'hidden',
     ['0000:03:00.0 is the boot VGA device; whether the host console holds one of its BARs is unknown: /proc/iomem '
      'shows only zero addresses (read without root). Gather the facts as root to see it; no kernel argument is '
      'suggested without that evidence']),
    (dict(_dev(cls='030000', boot_vga=True), boot_framebuffer=BOOTFB), 'readable',
     ['0000:03:00.0 BAR 1 (0xe0000000-0xefffffff) holds the boot framebuffer BOOTFB 0xe0000000-0xe07fffff: while the '
      'host console claims that memory vfio-pci may fail to reserve the BAR ("can\'t reserve") and the VM show no '
      'picture. Add initcall_blacklist=sysfb_init to pcie_passthrough_kernel_args (it keeps sysfb_init from '
      'registering the firmware framebuffer that simpledrm, simplefb, efifb and vesafb bind to)']),
    (_dev(cls='030000', boot_vga=False), 'hidden', []),
])
def test_boot_framebuffer_notes(device, iomem, notes):
    assert device_verdict(A, {A: device}, True, iomem)['notes'] == notes


@pytest.mark.parametrize('guests, note', [
    (None, 'on mlx5_vfio_pci, a vfio-pci variant driver: Proxmox VE 9.1 and later rebinds it to plain vfio-pci when a '
           "VM starts unless the VM's hostpci line for it has driver=keep (then Proxmox skips its own reset of the "
           'device)'),
    ([{'where': 'guest 101 (hostpci0)', 'driver': 'keep'}],
     'guest 101 (hostpci0) keeps it on mlx5_vfio_pci (driver=keep: Proxmox VE leaves the driver and skips its own '
     'reset of the device)'),
    ([{'where': 'guest 101 (hostpci0)', 'driver': 'keep'}, {'where': 'guest 102 (hostpci3)', 'driver': None}],
     'guest 101 (hostpci0) keeps it on mlx5_vfio_pci (driver=keep: Proxmox VE leaves the driver and skips its own '
     'reset of the device); guest 102 (hostpci3) names it without driver=keep: Proxmox VE 9.1 and later rebinds it '
     'to plain vfio-pci when that VM starts; add ,driver=keep to keep mlx5_vfio_pci'),
])
def test_variant_driver_says_what_proxmox_does_at_vm_start(guests, note):
    devices = {A: dict(_dev(driver='mlx5_vfio_pci'), vfio_driver='mlx5_vfio_pci')}
    verdict = device_verdict(A, devices, True, 'readable', {A: guests} if guests is not None else {A: []})
    assert verdict['verdict'] == 'vfio' and verdict['notes'] == [note], verdict
    # plain vfio-pci has nothing to keep
    plain = device_verdict(A, {A: dict(_dev(driver='vfio-pci'), vfio_driver='vfio-pci')}, True, 'readable', {A: []})
    assert plain['notes'] == []
