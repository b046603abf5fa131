"""The role's pre-flight plan, reboot decision and verification, on facts gathered from fake hosts."""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path

import pytest
import yaml

from ansible_collections.vfio.passthrough.plugins.plugin_utils._plan import (
    PassthroughRequest, plan_passthrough, reboot_reasons, verify_passthrough,
)
from ansible_collections.vfio.passthrough.plugins.modules import iommu_facts
from module_runner import run_module
import sysfs_builder

ROOT = Path(__file__).resolve().parents[4]


def plan_of(facts, **options):
    """The plan as the role keeps it: what the passthrough_plan filter returns for these options."""
    return plan_passthrough(facts, PassthroughRequest(**options)).as_dict()


def _facts(host):
    result = run_module(iommu_facts.main, {'root': str(host.root)})
    assert not result.get('failed'), result
    return result['ansible_facts']['iommu']


@pytest.fixture
def intel(tmp_path):
    return _facts(sysfs_builder.intel_gpu_host(tmp_path))


@pytest.fixture
def amd(tmp_path):
    return _facts(sysfs_builder.amd_twin_nic_host(tmp_path))


@pytest.fixture
def off(tmp_path):
    return _facts(sysfs_builder.iommu_off_host(tmp_path, dmar=False))


def test_intel_gpu_and_audio(intel):
    plan = plan_of(intel, devices=['0000:01:00.0', '0000:01:00.1'])
    assert plan['errors'] == []
    assert plan['vendor'] == 'intel'
    assert plan['kernel_present'] == ['intel_iommu=on', 'iommu=pt']
    assert plan['kernel_absent'] == ['intel_iommu=off', 'amd_iommu=off']
    assert plan['vfio_ids'] == ['10de:1b80', '10de:10f0']
    assert plan['by_address'] == []
    assert plan['softdeps'] == ['nouveau', 'snd_hda_intel']
    # the canned host's /proc/iomem (tests/fixtures/iomem/bootfb-intel-nvidia.txt) shows BOOTFB in the GPU's BAR 1
    assert any(w.startswith('0000:01:00.0 BAR 1 (0x6000000000-0x600fffffff) holds the boot framebuffer BOOTFB '
                            '0x6000000000-0x60007e8fff: ') and 'initcall_blacklist=sysfb_init' in w
               for w in plan['warnings']), plan['warnings']


def test_gpu_alone_takes_its_audio_function_along(intel):
    plan = plan_of(intel, devices=['0000:01:00.0'])
    assert plan['errors'] == []
    assert plan['bind'] == ['0000:01:00.0', '0000:01:00.1']
    assert any('another function of the same device' in n for n in plan['notes'])


def test_amd_adds_no_amd_iommu_on(amd):
    plan = plan_of(amd, devices=['0000:09:00.0'])
    assert plan['errors'] == []
    assert plan['vendor'] == 'amd'
    assert plan['kernel_present'] == ['iommu=pt']
    assert not any(a.startswith('amd_iommu=on') for a in plan['kernel_present'])


def test_group_shared_with_unrequested_nic_is_refused(amd):
    plan = plan_of(amd, devices=['0000:05:00.0'])
    [error] = plan['errors']
    assert 'shares IOMMU group 3 with 0000:06:00.0' in error
    assert 'Devices not isolated' in error and 'ACS' in error


def test_identical_twins_requested_together_go_by_id(amd):
    plan = plan_of(amd, devices=['0000:05:00.0', '0000:06:00.0'])
    assert plan['errors'] == []
    assert plan['vfio_ids'] == ['8086:1533'] and plan['by_address'] == []
    assert plan['softdeps'] == ['igb']


def test_twin_outside_the_request_forces_binding_by_address(tmp_path):
    host = sysfs_builder.iommu_off_host(tmp_path)
    host.add_device('0000:00:05.0', '8086', '10d3', '020000', driver='e1000e', netdev='ens5')
    facts = _facts(host)
    plan = plan_of(facts, devices=['0000:00:03.0'])
    assert plan['errors'] == []
    assert plan['vfio_ids'] == [] and plan['by_address'] == ['0000:00:03.0']
    assert plan['override_drivers'] == ['e1000e']
    # A softdep would make libkmod skip the install hook that binds by address.
    assert 'e1000e' not in plan['softdeps']
    assert any('0000:00:05.0 has the same ID 8086:10d3' in n for n in plan['notes'])


@pytest.mark.parametrize('request_', [
    {'devices': ['0000:07:00.0']},
    {'vfio_ids': ['10ec:8168']},
])
def test_host_critical_nic_is_refused_also_through_ids(amd, request_):
    plan = plan_of(amd, **request_)
    assert len(plan['errors']) == 1
    assert '0000:07:00.0' in plan['errors'][0] and 'host-critical' in plan['errors'][0]
    assert 'default route' in plan['errors'][0]
    forced = plan_of(amd, force_host_critical=True, **request_)
    assert forced['errors'] == [] and any('host-critical' in w for w in forced['warnings'])


def test_root_disk_controller_is_refused(intel):
    plan = plan_of(intel, devices=['0000:00:17.0'])
    assert any('host-critical' in e and 'storage controller' in e for e in plan['errors'])


def test_no_acpi_table_is_refused_unless_vendor_forced(off):
    plan = plan_of(off, devices=['0000:00:03.0'])
    assert any('enable VT-d / AMD-Vi (and disable CSM if needed)' in e for e in plan['errors'])
    forced = plan_of(off, devices=['0000:00:03.0'], vendor='intel')
    assert forced['errors'] == []


@pytest.mark.parametrize('request_, fragment', [
    ({'devices': ['0000:99:00.0']}, '0000:99:00.0 does not exist'),
    # lspci's spelling is accepted (issue 12, class 10): this host has no 03:00.0
    ({'devices': ['03:00.0']}, '0000:03:00.0 does not exist'),
    ({'devices': ['03:00.8']}, "pcie_passthrough_devices: '03:00.8' is not a PCI address"),
    ({'devices': ['0000:01:00.0 ']}, "pcie_passthrough_devices: '0000:01:00.0 ' is not a PCI address"),
    ({'devices': ['03:00']}, "'03:00' names the whole device 0000:03:00, which has no function on this host"),
    ({'vfio_ids': ['10DE-1B80']}, "'10de-1b80' is not a vendor:device ID"),
    ({'acs_override': 'downstream,multifunction'}, 'peer-to-peer DMA'),
])
def test_bad_requests_are_named(intel, request_, fragment):
    errors = plan_of(intel, **request_)['errors']
    assert any(fragment in e for e in errors), errors


def test_acs_override_with_accepted_risk(amd):
    plan = plan_of(amd, acs_override='downstream,multifunction', acs_accept_risk=True)
    assert plan['errors'] == []
    assert 'pcie_acs_override=downstream,multifunction' in plan['kernel_present']


def test_no_reboot_when_the_running_kernel_already_matches(intel):
    plan = plan_of(intel, devices=['0000:01:00.0', '0000:01:00.1'])
    live = copy.deepcopy(intel)
    for address in plan['bind']:
        live['devices'][address].update(driver='vfio-pci', vfio_driver='vfio-pci')
    live['vfio_bound'] = sorted(plan['bind'])
    assert reboot_reasons(live, plan, ['missing intel_iommu=on']) == []
    assert verify_passthrough(live, plan) == {
        'errors': [], 'warnings': [], 'bound': {'0000:01:00.0': 'vfio-pci', '0000:01:00.1': 'vfio-pci'}}
    assert reboot_reasons(live, plan, ['missing hugepages=16']) == [
        'the running kernel command line is not as configured: missing hugepages=16']


def test_reboot_reasons_name_what_lags(off):
    plan = plan_of(off, devices=['0000:00:03.0'], vendor='intel')
    reasons = reboot_reasons(off, plan)
    assert reasons == ['the IOMMU is off in the running kernel', 'not yet on vfio-pci: 0000:00:03.0']


def test_verify_points_at_the_firmware_row(off):
    plan = plan_of(off, devices=['0000:00:03.0'], vendor='intel')
    verdict = verify_passthrough(off, plan)
    assert any('firmware switch (VT-d / AMD-Vi) is off' in e and 'IOMMU not enabled' in e for e in verdict['errors'])
    assert any('0000:00:03.0 is on driver e1000e' in e and 'NIC still bound to host' in e for e in verdict['errors'])


@pytest.mark.parametrize('cmdline, firmware', [
    ('ro quiet intel_iommu=on iommu=pt', True),
    # intel_iommu=on followed by off is off: the arguments were not in force, so the boot loader is suspect.
    ('ro quiet intel_iommu=on intel_iommu=off', False),
    ('ro quiet intel_iommu=on,off', False),
    # After '--' they went to init, not to the kernel.
    ('ro quiet -- intel_iommu=on iommu=pt', False),
    ('ro iommu=pt iommu=soft', False),
])
def test_verify_reads_the_kernel_line_as_the_kernel_does(off, cmdline, firmware):
    plan = plan_of(off, vendor='intel')
    errors = verify_passthrough(dict(off, cmdline=cmdline), plan)['errors']
    assert any('firmware switch (VT-d / AMD-Vi) is off' in e for e in errors) is firmware
    assert any('Check that the boot loader really uses the edited file' in e for e in errors) is not firmware


def test_verify_fails_without_interrupt_remapping(intel):
    # The rule itself is tested in test_iommu_verdict.py; this proves verify applies it.
    plan = plan_of(intel)
    live = dict(intel, interrupt_remapping=False, evidence=dict(intel['evidence'], interrupt_remapping='X'))
    errors = verify_passthrough(live, plan)['errors']
    assert [e for e in errors if e.startswith('Interrupt remapping is off (X)')], errors
    assert verify_passthrough(intel, plan)['errors'] == []


def test_converged_host_keeps_its_softdeps_and_hooks(tmp_path):
    # After the reboot the devices sit on vfio-pci; the plan must still name their
    # native drivers (from modules.alias), or the next run would undo its own config.
    host = sysfs_builder.iommu_off_host(tmp_path)
    host.add_device('0000:00:05.0', '8086', '10d3', '020000', driver='e1000e', netdev='ens5')
    host.add_device('0000:00:06.0', '10de', '1b80', '030000', driver='vfio-pci')
    host.bind('0000:00:03.0', 'vfio-pci')
    host.modules_alias(('pci:v00008086d000010D3sv*sd*bc*sc*i*', 'e1000e'),
                       ('pci:v000010DEd*sv*sd*bc03sc*i*', 'nouveau'),
                       ('vfio_pci:v*d*sv*sd*bc*sc*i*', 'vfio_pci'))
    facts = _facts(host)
    assert facts['devices']['0000:00:03.0']['kernel_modules'] == ['e1000e']
    assert facts['devices']['0000:00:06.0']['kernel_modules'] == ['nouveau']
    plan = plan_of(facts, devices=['0000:00:03.0', '0000:00:06.0'], vendor='intel')
    assert plan['errors'] == []
    assert plan['by_address'] == ['0000:00:03.0'] and plan['override_drivers'] == ['e1000e']
    assert plan['vfio_ids'] == ['10de:1b80'] and plan['softdeps'] == ['nouveau']


@pytest.mark.parametrize('typed', [
    ['01:00'],                          # Proxmox hostpci: the whole device
    ['01:00.0', '01:00.1'],             # lspci
    ['0000:01:00.0', '01:00.1'],
    ['0000:01:00.0', '0000:01:00.1'],
])
def test_typed_addresses_plan_exactly_like_canonical_ones(intel, typed):
    canonical = plan_of(intel, devices=['0000:01:00.0', '0000:01:00.1'])
    plan = plan_of(intel, devices=typed)
    assert plan['errors'] == []
    for key in ('bind', 'vfio_ids', 'by_address', 'softdeps', 'kernel_present', 'warnings'):
        assert plan[key] == canonical[key]
    rewritten = [t for t in typed if not t.startswith('0000:')]
    assert sorted(plan['normalised']) == sorted(rewritten)
    for value in rewritten:
        assert any(n.startswith("pcie_passthrough_devices: '%s' means" % value) for n in plan['notes']), plan['notes']
    assert canonical['normalised'] == {}


def test_normalisations_are_returned_and_noted(intel):
    plan = plan_of(intel, devices=['01:00', '00:1F.6'])
    assert plan['normalised'] == {'01:00': ['0000:01:00.0', '0000:01:00.1'], '00:1F.6': ['0000:00:1f.6']}
    assert "pcie_passthrough_devices: '01:00' means every function of device 0000:01:00: 0000:01:00.0, 0000:01:00.1" \
        in plan['notes']
    assert "pcie_passthrough_devices: '00:1F.6' means 0000:00:1f.6" in plan['notes']
    # and the management NIC, however it was typed, is still refused
    assert any(e.startswith('0000:00:1f.6 [8086:15bb]') and 'host-critical' in e for e in plan['errors'])


@pytest.fixture
def variants(tmp_path):
    return _facts(sysfs_builder.vfio_variant_host(tmp_path))


def test_devices_on_vfio_pci_variants_need_no_reboot_and_pass_verify(variants):
    held = ['0000:41:00.1', '0000:42:00.0', '0000:43:00.0', '0000:46:00.0']
    plan = plan_of(variants, devices=held)
    assert plan['errors'] == []
    # softdeps name the host drivers (modules.alias), never the variant driver holding the device now
    assert plan['softdeps'] == ['mlx5_core', 'xe', 'acme', 'nouveau']
    assert reboot_reasons(variants, plan) == []
    assert verify_passthrough(variants, plan) == {'errors': [], 'warnings': [], 'bound': {
        '0000:41:00.1': 'mlx5_vfio_pci', '0000:42:00.0': 'xe-vfio-pci', '0000:43:00.0': 'acme_passthru',
        '0000:46:00.0': 'vfio-pci'}}


def test_a_driver_named_like_a_variant_is_still_a_host_driver(variants):
    plan = plan_of(variants, devices=['0000:44:00.0'])
    assert reboot_reasons(variants, plan) == ['not yet on vfio-pci: 0000:44:00.0']
    [error] = verify_passthrough(variants, plan)['errors']
    assert error.startswith('0000:44:00.0 is on driver fake_vfio_pci, not vfio-pci or a variant of it.')


def _sriov_facts(tmp_path, drivers=('vfio-pci', 'igbvf')):
    host = sysfs_builder.intel_gpu_host(tmp_path)
    host.add_bridge('0000:00:1c.4', group=20)
    host.add_device('0000:05:00.0', '8086', '10c9', '020000', driver='igb', group=21, parent_bridge='0000:00:1c.4',
                    netdev='enp5s0', sriov_totalvfs=7)
    host.add_vfs('0000:05:00.0', ['0000:05:10.0', '0000:05:10.2'], drivers=drivers, groups=(22, 23))
    return _facts(host)


def test_sriov_request_is_checked_in_the_plan(tmp_path):
    facts = _sriov_facts(tmp_path)
    plan = plan_of(facts, sriov=[{'pf': '05:00.0', 'vfs': 2, 'vfio': [0]}])
    assert plan['errors'] == [] and plan['sriov'] == [{'pf': '0000:05:00.0', 'vfs': 2, 'vfio': [0]}]
    assert "pcie_passthrough_sriov: '05:00.0' means 0000:05:00.0" in plan['notes']
    asked = [{'pf': '05:00', 'vfs': 2}, {'pf': '0000:05:00.0', 'vfs': 9}]
    refused = plan_of(facts, devices=['0000:05:00.0'], sriov=asked)
    assert any("'05:00' names the whole device 0000:05:00, not one function" in e for e in refused['errors'])
    assert any('vfs 9 is not a count from 0 to 7' in e for e in refused['errors'])
    assert plan_of(facts, devices=['0000:05:00.0'],
                   sriov=[{'pf': '0000:05:00.0', 'vfs': 2}])['errors'][-1].endswith(
        'Pass through its VFs (vfio) or the PF, not both')


def test_sriov_deferred_change_is_a_reboot_reason_and_verify_names_pf_and_vf(tmp_path):
    facts = _sriov_facts(tmp_path, drivers=('igbvf', 'igbvf'))
    plan = plan_of(facts, sriov=[{'pf': '0000:05:00.0', 'vfs': 2, 'vfio': [0]}])
    deferred = [{'pf': '0000:05:00.0', 'why': '0000:05:00.0 has 2 VFs, 4 asked; it is host-critical (x)'}]
    assert 'SR-IOV: 0000:05:00.0 has 2 VFs, 4 asked; it is host-critical (x)' in reboot_reasons(facts, plan, (), deferred)
    assert not any(r.startswith('SR-IOV') for r in reboot_reasons(facts, plan))
    assert ('SR-IOV: PF 0000:05:00.0: VF 0 (0000:05:10.0) is on driver igbvf, not vfio-pci'
            in verify_passthrough(facts, plan)['errors'])


def test_removing_the_sriov_request_changes_nothing_else_in_the_plan(tmp_path):
    # The VFs of the earlier request still exist (until the next boot), one on igbvf: without the
    # request they are no longer judged, and the rest of the plan is the same as with it.
    facts = _sriov_facts(tmp_path)
    asked = plan_of(facts, devices=['0000:01:00.0', '0000:01:00.1'], sriov=[{'pf': '0000:05:00.0', 'vfs': 2}])
    removed = plan_of(facts, devices=['0000:01:00.0', '0000:01:00.1'])
    assert asked['errors'] == [] and removed['sriov'] == []
    assert {k: v for k, v in asked.items() if k != 'sriov'} == {k: v for k, v in removed.items() if k != 'sriov'}
    assert reboot_reasons(facts, removed) == reboot_reasons(facts, asked)
    assert any('SR-IOV' in e for e in verify_passthrough(facts, asked)['errors'])
    assert not any('SR-IOV' in e for e in verify_passthrough(facts, removed)['errors'])


# --- devices vfio-pci cannot take (issue 21, class 8) ---------------------------

def _odd_devices_host(tmp_path):
    host = sysfs_builder.intel_gpu_host(tmp_path)
    # a bridge header behind an Ethernet class code: the header decides, not the class
    host.add_device('0000:06:00.0', '8086', '10d3', '020000', driver='e1000e', group=30, header_type=1)
    # a bridge class code over a normal header
    host.add_device('0000:07:00.0', '8086', '10d3', '060400', driver='e1000e', group=31, header_type=0)
    host.add_device('0000:08:00.0', '8086', '10c9', '020000', driver='igb', group=32, sriov_totalvfs=7)
    host.add_vfs('0000:08:00.0', ['0000:08:10.0'], drivers=('igbvf',), groups=(33,))
    host.add_device('0000:09:00.0', '8086', '10d3', '020000', driver='e1000e', group=34, header_type=False)
    return _facts(host)


def test_header_type_and_enabled_vfs_are_refused_naming_why(tmp_path):
    facts = _odd_devices_host(tmp_path)
    plan = plan_of(facts, devices=['0000:06:00.0', '0000:07:00.0', '0000:08:00.0', '0000:09:00.0'])
    assert plan['errors'] == [
        '0000:06:00.0 has config header type 1 (PCI-to-PCI bridge): vfio-pci refuses every header type but 0 '
        '(normal device), so it cannot be passed through; nothing was written.',
        "0000:08:00.0 is an SR-IOV physical function with 1 VF enabled (sriov_numvfs): vfio-pci refuses a PF "
        "whose VFs are enabled; set its VF count to 0 first (sriov_numvfs, the driver's max_vfs, or "
        "pcie_passthrough_sriov), so it cannot be passed through; nothing was written.",
    ]
    assert ('0000:09:00.0: config header type unknown (its sysfs config could not be read), so whether vfio-pci '
            'takes it shows only when it binds') in plan['notes']
    assert not any('0000:07:00.0' in e for e in plan['errors'])


def test_a_vf_of_an_enabled_pf_is_taken(tmp_path):
    facts = _odd_devices_host(tmp_path)
    plan = plan_of(facts, devices=['0000:08:10.0'])
    assert plan['errors'] == [] and plan['bind'] == ['0000:08:10.0']


def test_the_plan_refuses_a_count_or_a_passthrough_that_takes_the_hosts_vf_away(tmp_path):
    host = sysfs_builder.intel_gpu_host(tmp_path)
    host.add_bridge('0000:00:1c.4', group=20)
    host.add_device('0000:05:00.0', '8086', '10c9', '020000', driver='igb', group=21, parent_bridge='0000:00:1c.4',
                    netdev='enp5s0', sriov_totalvfs=7)
    host.add_vfs('0000:05:00.0', ['0000:05:10.0', '0000:05:10.2'], drivers=('igbvf', 'igbvf'), groups=(22, 23))
    host.add_netdev('enp5s0v1', host.device_dir('0000:05:10.2'))
    host.ipv6_default_route('enp5s0v1')
    facts = _facts(host)
    why = 'NIC enp5s0v1 carries the IPv6 default route'
    assert facts['devices']['0000:05:10.2']['host_critical'] == [why]
    refused = plan_of(facts, sriov=[{'pf': '0000:05:00.0', 'vfs': 1, 'vfio': []}])
    assert refused['errors'] == [
        'pcie_passthrough_sriov[0] (pf 0000:05:00.0): 0000:05:00.0 has 2 VFs, 1 asked, and the host runs on VF 1 '
        '(0000:05:10.2: %s), which a count of 1 leaves out: any count change removes every VF, and not even the next '
        'boot would bring it back. Ask for at least 2 VFs, or move the host off it first' % why]
    assert plan_of(facts, sriov=[{'pf': '0000:05:00.0', 'vfs': 4, 'vfio': [0]}])['errors'] == []
    whole = plan_of(facts, devices=['0000:05:00.0'])['errors']
    assert any('is host-critical: its virtual function 0000:05:10.2: %s' % why in e for e in whole), whole


def test_the_request_defaults_are_the_filter_documented_defaults():
    # The role calls the filter by keyword: a default here that the filter's documentation does not state (or
    # the other way round) would plan differently from what the documentation promises.
    doc = yaml.safe_load((ROOT / 'plugins' / 'filter' / 'passthrough_plan.yml').read_text())['DOCUMENTATION']
    documented = {name: spec.get('default') for name, spec in doc['options'].items() if name != '_input'}
    defaults = {item.name: item.default for item in dataclasses.fields(PassthroughRequest)}
    assert {name: list(value) if isinstance(value, tuple) else value for name, value in defaults.items()} == documented


@pytest.mark.parametrize('options, kinds', [
    # One refusal from each of five steps: the plan lists them in step order, whatever the dict order asked.
    ({'sriov': [{'pf': '0000:55:00.0', 'vfs': 1}], 'acs_override': 'downstream', 'vfio_ids': ['nope'],
      'devices': ['zz', '0000:99:00.0']},
     ['pcie_passthrough_devices: ', 'pcie_passthrough_vfio_ids: ', 'pcie_passthrough_acs_override=',
      'pcie_passthrough_devices: 0000:99:00.0 does not exist', 'pcie_passthrough_sriov[0]']),
    ({'devices': ['0000:99:00.0'], 'isolated_cpus': 'x', 'tuning': {}},
     ['pcie_passthrough_devices: 0000:99:00.0 does not exist', 'pcie_passthrough_isolated_cpus']),
])
def test_refusals_come_in_step_order(intel, options, kinds):
    errors = plan_passthrough(intel, PassthroughRequest(**options)).errors
    assert len(errors) == len(kinds), errors
    for error, kind in zip(errors, kinds):
        assert error.startswith(kind), (error, kind)


def test_the_plan_as_the_role_keeps_it_is_its_fields_in_order(intel):
    plan = plan_passthrough(intel, PassthroughRequest(devices=['0000:01:00.0']))
    kept = plan.as_dict()
    assert list(kept) == [item.name for item in dataclasses.fields(plan)]
    assert kept['bind'] is plan.bind and kept['bind'] == ['0000:01:00.0', '0000:01:00.1']
