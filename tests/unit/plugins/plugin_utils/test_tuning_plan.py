"""Hugepages and isolated CPUs in the role's plan, reboot decision and verification, on fake hosts."""

from __future__ import annotations

import pytest

from ansible_collections.vfio.passthrough.plugins.modules import host_tuning_facts, iommu_facts
from ansible_collections.vfio.passthrough.plugins.plugin_utils._plan import (
    PassthroughRequest, plan_passthrough, reboot_reasons, verify_passthrough,
)
from ansible_collections.vfio.passthrough.plugins.plugin_utils._tuning_plan import plan_tuning, verify_tuning
from module_runner import run_module
import sysfs_builder

GROUP_2M = ['default_hugepagesz=2M', 'hugepagesz=2M', 'hugepages=128']


def plan_of(facts, **options):
    """The plan as the role keeps it: what the passthrough_plan filter returns for these options."""
    return plan_passthrough(facts, PassthroughRequest(**options)).as_dict()


def _tuning(host):
    result = run_module(host_tuning_facts.main, {'root': str(host.root)})
    assert not result.get('failed') and result['changed'] is False, result
    return result['ansible_facts']['host_tuning']


@pytest.fixture
def host(tmp_path):
    return sysfs_builder.intel_gpu_host(tmp_path)


def test_facts_report_pools_cpus_memory_and_the_running_line(host):
    host.cmdline('BOOT_IMAGE=/vmlinuz ro quiet default_hugepagesz=1G hugepagesz=1G hugepages=16 isolcpus=2-3')
    host.tuning(mem_kb=65768432, possible='0-3', isolated='2-3', pools={2048: 0, 1048576: 16},
                flags='fpu pse pdpe1gb', default_kb=1048576)
    facts = _tuning(host)
    assert facts['mem_total_kb'] == 65768432 and facts['pdpe1gb'] is True
    assert (facts['hugepages_total'], facts['hugepage_size_kb']) == (16, 1048576)
    assert facts['pools'] == {'2048': {'nr_hugepages': 0, 'free_hugepages': 0, 'resv_hugepages': 0},
                              '1048576': {'nr_hugepages': 16, 'free_hugepages': 16, 'resv_hugepages': 0}}
    assert (facts['cpus_possible'], facts['cpu_count'], facts['isolated'], facts['nohz_full']) == ('0-3', 4, '2-3', '')
    assert (facts['cpus_present'], facts['cpus_online'], facts['numa_nodes']) == ('0-3', '0-3', '0')
    assert facts['cmdline']['isolcpus'] == '2-3' and facts['cmdline']['hugepages'] == '16'
    assert facts['cmdline']['rcu_nocbs'] is None
    assert facts['cmdline']['reservations'] == [{'size_kb': 1048576, 'count': 16, 'text': 'hugepagesz=1G hugepages=16',
                                                 'nodes': None}]


def test_facts_of_a_bare_tree_are_null_not_a_failure(tmp_path):
    facts = _tuning(sysfs_builder.FakeHost(tmp_path))
    assert facts['mem_total_kb'] is None and facts['pools'] == {} and facts['cpu_count'] is None
    assert facts['isolated'] is None and facts['pdpe1gb'] is False and facts['cmdline']['reservations'] == []


def test_facts_name_an_unreadable_hugepage_value(host):
    host.cmdline('ro hugepages=lots').tuning()
    assert "'lots' is not a page count" in _tuning(host)['cmdline']['error']


@pytest.mark.parametrize('nodes, reservations, error', [
    ('0-1', [{'size_kb': 2048, 'count': 4, 'text': 'hugepagesz=2M hugepages=0:2,1:2', 'nodes': {'0': 2, '1': 2}}],
     None),
    ('0', [], 'hugepages=0:2,1:2: names NUMA node 1, which this host does not have (online nodes: 0); the kernel '
              'would ignore the whole argument'),
])
def test_facts_read_hugepages_per_numa_node(host, nodes, reservations, error):
    host.cmdline('ro default_hugepagesz=2M hugepagesz=2M hugepages=0:2,1:2').tuning(nodes=nodes)
    facts = _tuning(host)
    assert facts['numa_nodes'] == nodes and facts['cmdline']['hugepages'] == '0:2,1:2'
    assert facts['cmdline']['reservations'] == reservations and facts['cmdline'].get('error') == error


TUNING = {'pdpe1gb': False, 'cpus_possible': '0-3', 'cpus_present': '0-3', 'cpus_online': '0-3'}


@pytest.mark.parametrize('options, present, absent, group', [
    ({}, [], [], []),
    ({'hugepages': {'size': '2M', 'count': 128}}, [], [], GROUP_2M),
    ({'hugepages': {'size': '2048k', 'count': '128'}}, [], [], GROUP_2M),
    ({'hugepages': {}}, [], ['default_hugepagesz', 'hugepagesz', 'hugepages'], []),
    ({'isolated_cpus': '3,2'}, ['isolcpus=2-3'], ['nohz_full', 'rcu_nocbs'], []),
    ({'isolated_cpus': 1}, ['isolcpus=1'], ['nohz_full', 'rcu_nocbs'], []),
    ({'isolated_cpus': '2-3', 'isolated_nohz': True}, ['isolcpus=2-3', 'nohz_full=2-3', 'rcu_nocbs=2-3'], [], []),
    ({'isolated_cpus': ''}, [], ['isolcpus', 'nohz_full', 'rcu_nocbs'], []),
    ({'isolated_cpus': '0-1', 'force_cpu0': True}, ['isolcpus=0-1'], ['nohz_full', 'rcu_nocbs'], []),
])
def test_plan_arguments(options, present, absent, group):
    plan = plan_tuning(TUNING, **options)
    assert plan['errors'] == []
    assert (plan['present'], plan['absent'], plan['group']) == (present, absent, group)


@pytest.mark.parametrize('options, fragment', [
    ({'hugepages': {'size': '4M', 'count': 1}}, "pcie_passthrough_hugepages.size: '4M' is not a hugepage size"),
    ({'hugepages': {'size': '1G', 'count': 1}}, '1G pages need the CPU flag pdpe1gb'),
    ({'hugepages': {'size': '2M', 'count': 0}}, 'pcie_passthrough_hugepages.count: 0 is not a number of pages'),
    ({'hugepages': {'size': '2M', 'count': True}}, 'pcie_passthrough_hugepages.count: True'),
    ({'hugepages': {'size': '2M', 'count': 'x'}}, "pcie_passthrough_hugepages.count: 'x'"),
    ({'hugepages': {'size': '2M'}}, "pcie_passthrough_hugepages: {'size': '2M'} is not {size: 2M or 1G, count: pages}"),
    ({'hugepages': '2M'}, "pcie_passthrough_hugepages: '2M' is not"),
    ({'hugepages': {'size': '2M', 'count': 8}, 'kernel_args': ['hugepages=4']},
     'pcie_passthrough_kernel_args names hugepages=4, which pcie_passthrough_hugepages sets'),
    ({'hugepages': {}, 'kernel_args_absent': ['hugepagesz']},
     'pcie_passthrough_kernel_args_absent names hugepagesz, which pcie_passthrough_hugepages sets'),
    ({'isolated_cpus': '2-3', 'kernel_args': ['nohz-full=2-3']}, 'names nohz-full=2-3, which pcie_passthrough_isolated_cpus'),
    ({'isolated_cpus': '2-9'}, 'isolcpus=2-9 names CPUs 4-9 that are not present (present: 0-3, online: 0-3)'),
    ({'isolated_cpus': '2-9', 'isolated_nohz': True},
     'isolcpus=2-9 nohz_full=2-9 rcu_nocbs=2-9 names CPUs 4-9 that are not present'),
    ({'isolated_cpus': '1-3,0'}, 'isolates every present and online CPU of this host (present: 0-3, online: 0-3)'),
    ({'isolated_cpus': '0,2'}, 'isolates CPU 0'),
    ({'isolated_cpus': '2-x'}, "pcie_passthrough_isolated_cpus: '2-x' is not a cpulist"),
])
def test_plan_refusals_name_the_value(options, fragment):
    errors = plan_tuning(TUNING, **options)['errors']
    assert any(fragment in e for e in errors), errors


# possible counts hot-plug slots: a VM host with 6 vCPUs and room for 8 reports possible 0-7.
@pytest.mark.parametrize('present, online, cpus, errors', [
    ('0-5', '0-5', '4-5', []),
    ('0-5', '0-5', '4-7', ['pcie_passthrough_isolated_cpus: isolcpus=4-7 names CPUs 6-7 that are not present '
                           '(present: 0-5, online: 0-5)']),
    ('0-5', '0,4-5', '4-5', []),
    # CPUs 0-3 offline: isolating 4-5 leaves the host nothing to run on
    ('0-5', '4-5', '4-5', ['pcie_passthrough_isolated_cpus: isolcpus=4-5 isolates every present and online CPU '
                           'of this host (present: 0-5, online: 4-5): at least one housekeeping CPU must stay '
                           'for the host, its interrupts and its timers']),
    ('0-5', '0-3', '3-5', ['pcie_passthrough_isolated_cpus: isolcpus=3-5 names CPUs 4-5 that are present but '
                           'offline (present: 0-5, online: 0-3): bring them online or leave them out']),
])
def test_plan_judges_isolation_against_present_and_online_cpus(tmp_path, present, online, cpus, errors):
    host = sysfs_builder.intel_gpu_host(tmp_path).tuning(possible='0-7', present=present, online=online)
    plan = plan_tuning(_tuning(host), isolated_cpus=cpus)
    assert plan['errors'] == errors


def test_plan_passes_one_gib_pages_with_pdpe1gb():
    plan = plan_tuning({'pdpe1gb': True, 'cpus_possible': '0-3'}, hugepages={'size': '1G', 'count': 4})
    assert plan['errors'] == [] and plan['group'] == ['default_hugepagesz=1G', 'hugepagesz=1G', 'hugepages=4']


def test_null_variables_leave_hand_set_arguments_to_kernel_args():
    plan = plan_tuning(None, kernel_args=['hugepagesz=1G', 'hugepages=4', 'isolcpus=2'])
    assert plan['errors'] == [] and plan['present'] == [] and plan['hugepages'] is None


def test_the_role_plan_carries_the_group_and_the_reboot_compares_proc_cmdline(tmp_path):
    host = sysfs_builder.intel_gpu_host(tmp_path).tuning(possible='0-1', mem_kb=1536 * 1024)
    facts = run_module(iommu_facts.main, {'root': str(host.root)})['ansible_facts']['iommu']
    plan = plan_of(facts, tuning=_tuning(host), hugepages={'size': '2M', 'count': 128}, isolated_cpus='1')
    assert plan['errors'] == []
    assert plan['kernel_group'] == GROUP_2M and 'isolcpus=1' in plan['kernel_present']
    assert plan['tuning'] == {'hugepages': {'size': '2M', 'count': 128}, 'isolated_cpus': '1', 'nohz': False}
    # kernel_cmdline's unmet, judged on /proc/cmdline, is what decides the reboot
    unmet = ['missing ' + ' '.join(GROUP_2M), 'missing isolcpus=1']
    reasons = reboot_reasons(facts, plan, unmet)
    assert reasons == ['the running kernel command line is not as configured: ' + u for u in unmet]
    assert reboot_reasons(facts, plan, []) == []


def test_the_role_plan_refuses_tuning_without_cpus(tmp_path):
    host = sysfs_builder.intel_gpu_host(tmp_path).tuning(possible='0-1')
    facts = run_module(iommu_facts.main, {'root': str(host.root)})['ansible_facts']['iommu']
    plan = plan_of(facts, tuning=_tuning(host), isolated_cpus='0-1', force_cpu0=True)
    assert plan['errors'] == ['pcie_passthrough_isolated_cpus: isolcpus=0-1 isolates every present and online CPU of '
                              'this host (present: 0-1, online: 0-1): at least one housekeeping CPU must stay for the '
                              'host, its interrupts and its timers']


PLANNED = {'hugepages': {'size': '2M', 'count': 128}, 'isolated_cpus': '1', 'nohz': False}


@pytest.mark.parametrize('pools, default_kb, isolated, fragments', [
    ({2048: 128}, 2048, '1', []),
    ({2048: 200}, 2048, '1', []),
    ({2048: 127}, 2048, '1', ['hugepages-2048kB/nr_hugepages is 127, fewer than the 128 pages of 2M',
                              'HugePages_Total 127 of Hugepagesize 2048 kB, not at least 128']),
    ({2048: 128, 1048576: 0}, 1048576, '1', ['Hugepagesize 1048576 kB, not at least 128 pages of 2048 kB']),
    ({}, 2048, '1', ['nr_hugepages is missing', 'HugePages_Total 0']),
    ({2048: 128}, 2048, '', ['/sys/devices/system/cpu/isolated is "", not "1"']),
    ({2048: 128}, 2048, '0-1', ['/sys/devices/system/cpu/isolated is "0-1", not "1"']),
])
def test_verify_names_what_is_missing(tmp_path, pools, default_kb, isolated, fragments):
    host = sysfs_builder.intel_gpu_host(tmp_path)
    host.tuning(possible='0-1', isolated=isolated, pools=pools, default_kb=default_kb)
    errors = verify_tuning(_tuning(host), PLANNED)
    assert len(errors) == len(fragments), errors
    for error, fragment in zip(errors, fragments):
        assert fragment in error


def test_verify_checks_nohz_full_when_asked(tmp_path):
    host = sysfs_builder.intel_gpu_host(tmp_path).tuning(possible='0-3', isolated='2-3')
    planned = {'hugepages': None, 'isolated_cpus': '2-3', 'nohz': True}
    assert ['/sys/devices/system/cpu/nohz_full is "", not "2-3"' in e for e in verify_tuning(_tuning(host), planned)] == [True]


def test_verify_passthrough_includes_the_tuning_verdict(tmp_path):
    host = sysfs_builder.intel_gpu_host(tmp_path).tuning(possible='0-1', isolated='')
    facts = run_module(iommu_facts.main, {'root': str(host.root)})['ansible_facts']['iommu']
    plan = plan_of(facts, tuning=_tuning(host), isolated_cpus='1')
    verdict = verify_passthrough(facts, plan, _tuning(host))
    assert verdict['errors'] == ['/sys/devices/system/cpu/isolated is "", not "1" (pcie_passthrough_isolated_cpus)']
    assert verify_passthrough(facts, plan_of(facts), None)['errors'] == []
