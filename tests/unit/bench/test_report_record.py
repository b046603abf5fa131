"""bench/report.py: goals said plainly (MISSED), the record shown beside the new figures (issue 26)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / 'bench'))

import report  # noqa: E402

RECORD = {'date': '2026-11-25T04:36:12Z', 'noop_vm_seconds_role': 12.35, 'noop_vm_seconds_guide': 25.51,
          'noop_vm_tasks_role': 10, 'reboots_role': 1, 'facts_ms': {'1000': 142.7},
          'versions': {'qemu': 'QEMU emulator version 7.2.22 (Debian 1:7.2+dfsg-7+deb12u18+b3)'}}


def _noop(seconds, changed=0, calls=5):
    return {'seconds': [seconds] * 3, 'tasks': [8] * 3, 'changed': [changed] * 3, 'skipped': [10] * 3,
            'rc': [0] * 3, 'verified': [True] * 3, 'remote_calls': [calls] * 3, 'load_at_start': ['0.10 0.20 0.30'] * 3,
            'calls_per_task': [['role : Gather IOMMU facts', 1, {'module (pipelined)': 1}]], 'reboots': 0}


@pytest.mark.parametrize('role, guide, verdict', [(8.0, 25.0, 'met'), (9.0, 25.0, 'MISSED'), (12.35, 25.51, 'MISSED')])
def test_vm_converged_goal_is_035x_and_says_missed(role, guide, verdict):
    results = {'goals': {}}
    lines = report._noop_goal({'role': _noop(role), 'guide_handlers': _noop(guide)}, 'VM', results, 'noop_vm')
    assert lines[-1].endswith('goal <= 0.35x with 0 changed and 0 reboots: **%s**.' % verdict), lines
    assert results['goals']['noop_vm'] is (verdict == 'met')


@pytest.mark.parametrize('now, then, expected', [(9.0, 12.0, '-25%'), (150.0, 100.0, '+50%'), (None, 1.0, '-'),
                                                 (1.0, None, '-')])
def test_change(now, then, expected):
    assert report.change(now, then) == expected


def test_record_rows_put_the_record_beside_the_new_figure_and_keep_the_first_runs_from_its_results_md():
    rows = {row[0]: row[2:] for row in report.record_rows(
        {'noop_vm_seconds_role': 8.5, 'facts_ms': {'1000': 95.0}, 'first_run_seconds': {'role': 160.0}}, RECORD)}
    assert rows['VM converged run, role'] == [12.35, 8.5]
    assert rows['iommu_facts gathering, 1000 devices'] == [142.7, 95.0]
    assert rows['VM first run, role'] == [178, 160.0]
    assert rows['VM first run, guide_handlers'] == [168, None]


def test_qemu_short():
    assert report.qemu_short(RECORD['versions']['qemu']) == 'QEMU 7.2.22'
    assert report.qemu_short(None) == 'QEMU ?'


def _all(reboots, vf_drivers=('vfio-pci', 'igbvf')):
    fresh = {'reboots': reboots, 'seconds': 300.0, 'tasks': 40, 'remote_calls': 30, 'rc': 0, 'load_at_start': '0.1',
             'driver_after': 'vfio-pci', 'cmdline_after': 'intel_iommu=on isolcpus=1',
             'end_state_ok': list(vf_drivers) == ['vfio-pci', 'igbvf'],
             'features': {'pf_sriov': '0000:01:00.0', 'pf_sriov_driver': 'igb', 'pf_address': '0000:02:00.0',
                          'pf_address_driver': 'vfio-pci', 'vf_drivers': list(vf_drivers), 'nr_hugepages': 128,
                          'isolated_cpus': '1'}}
    return {'all': {'request': {'pcie_passthrough_sriov': [{'pf': '0000:01:00.0', 'vfs': 2, 'vfio': [0]}]},
                    'fresh': fresh, 'noop': _noop(11.0, calls=7)}}


@pytest.mark.parametrize('vm, verdict', [
    (_all(1), 'met'),
    (_all(2), 'MISSED'),                                   # SR-IOV or hugepages cost a second reboot
    (_all(1, ('igbvf', 'igbvf')), 'MISSED'),               # one reboot, but a VF not where it was asked
])
def test_every_feature_first_run_needs_one_reboot_and_every_feature_live(vm, verdict):
    results = {'goals': {}}
    text = '\n'.join(report.all_section(vm, 'today', results))
    assert 'Goal: exactly one reboot with every feature live: %d reboot(s): **%s**.' % (
        vm['all']['fresh']['reboots'], verdict) in text
    assert '| role | 11.00 (11.00-11.00) | 8 (8-8) | 0 (0-0) | 10 (10-10) | 0 | 3/3 | 7 (7-7) |' in text
    assert '| role : Gather IOMMU facts | 1 | module (pipelined) |' in text
    assert results['goals']['all_reboots'] is (verdict == 'met')


def test_every_feature_part_not_run_says_why():
    assert 'Not measured (error: guest did not boot).' in report.all_section(
        {'errors': {'all': 'guest did not boot'}}, 'today', {'goals': {}})


def test_facts_section_still_compares_with_the_facts_record():
    # report.py's own record reader must not shadow facts_record.load_record (it once did: a traceback).
    facts = {'runs': 3, 'sizes': {'0': {'wall_ms': [90, 92, 94], 'peak_rss_kb': [30000]},
                                  '1000': {'wall_ms': [200, 210, 220], 'peak_rss_kb': [36000]}}}
    text = '\n'.join(report.facts_section(facts, 'today', {'goals': {}}))
    assert 'Against the record of ' in text and '1000 devices: 118 ms' in text, text
