"""Hugepage and cpulist parsing and the guards: table-driven, boundary values, properties."""

from __future__ import annotations

import pytest
from hypothesis import given, strategies as st

from ansible_collections.vfio.passthrough.plugins.module_utils.tuning._tuning import (
    GIB, MIB, TuningError, cpu_flags, cpu_guard, foreign_reservations, format_cpulist, hugepage_group,
    same_hugepage_tokens,
    hugepage_reservations, memory_guard, page_size_guard, page_size_name, parse_cpulist, parse_meminfo, parse_size,
)


@pytest.mark.parametrize('text, cpus', [
    ('', []),
    ('  ', []),
    ('1', [1]),
    (3, [3]),
    ('0-3', [0, 1, 2, 3]),
    ('2-7,10-15', [2, 3, 4, 5, 6, 7, 10, 11, 12, 13, 14, 15]),
    ('5,1,3-4', [1, 3, 4, 5]),
    ('1,1', [1]),
    ('4-4', [4]),
    ('0-7:2/4', [0, 1, 4, 5]),
    ('0-15:1/8', [0, 8]),
    ('8191', [8191]),
])
def test_cpulist_parses_the_kernel_syntax(text, cpus):
    assert parse_cpulist(text) == cpus


@pytest.mark.parametrize('text, why', [
    ('7-3', 'runs backwards'),
    ('1,,2', "item ''"),
    ('1,', "item ''"),
    ('a', "item 'a'"),
    ('1 2', "item '1 2'"),
    ('-1', "item '-1'"),
    ('1-', "item '1-'"),
    ('2-7;rm', "item '2-7;rm'"),
    ('8192', 'beyond the largest CPU number'),
    ('0-7:0/4', 'stride'),
    ('0-7:5/4', 'stride'),
    ('0-7:1/0', 'stride'),
    ('domain,2-3', "item 'domain'"),
    (None, 'not a cpulist'),
    (True, 'not a cpulist'),
    ([1], 'not a cpulist'),
])
def test_cpulist_garbage_is_refused_naming_the_value(text, why):
    with pytest.raises(TuningError, match='^isolated: ') as caught:
        parse_cpulist(text, 'isolated')
    assert why in str(caught.value)


@pytest.mark.parametrize('cpus, text', [
    ([], ''), ([1], '1'), ([0, 1, 2], '0-2'), ([1, 3], '1,3'), ([3, 1, 2, 7, 8], '1-3,7-8'),
])
def test_cpulist_is_written_as_the_kernel_prints_it(cpus, text):
    assert format_cpulist(cpus) == text


@given(st.sets(st.integers(min_value=0, max_value=300)))
def test_cpulist_round_trips(cpus):
    assert parse_cpulist(format_cpulist(cpus)) == sorted(cpus)


@pytest.mark.parametrize('text, size', [
    ('2M', 2 * MIB), ('2m', 2 * MIB), ('2048k', 2 * MIB), ('2048K', 2 * MIB), ('2048kB', 2 * MIB),
    ('2097152', 2 * MIB), ('1G', GIB), ('1g', GIB), ('1024M', GIB), (4096, 4096),
])
def test_sizes_parse_as_memparse_does(text, size):
    assert parse_size(text) == size


@pytest.mark.parametrize('text', ['', '2 M', '2T', 'M', '-2M', '2MiB', None, True, '1.5G'])
def test_bad_sizes_are_refused_naming_them(text):
    with pytest.raises(TuningError, match='not a size'):
        parse_size(text)


@pytest.mark.parametrize('text, name', [('2M', '2M'), ('2048k', '2M'), ('1G', '1G'), ('1048576K', '1G')])
def test_page_sizes_have_one_name(text, name):
    assert page_size_name(text) == name


@pytest.mark.parametrize('text', ['4k', '4M', '512M', '2G', '16G'])
def test_other_page_sizes_are_refused(text):
    with pytest.raises(TuningError, match="%r is not a hugepage size" % text):
        page_size_name(text)


def test_hugepage_group_is_in_the_kernel_order():
    assert hugepage_group('1G', 16) == ['default_hugepagesz=1G', 'hugepagesz=1G', 'hugepages=16']


@pytest.mark.parametrize('tokens, pools', [
    ([], []),
    (['quiet'], []),
    (['hugepages=64'], [(2 * MIB, 64, 'hugepages=64')]),
    (['hugepages=64', 'default_hugepagesz=1G'], [(GIB, 64, 'hugepages=64')]),
    (['default_hugepagesz=2M', 'hugepagesz=2M', 'hugepages=128'], [(2 * MIB, 128, 'hugepagesz=2M hugepages=128')]),
    (['hugepagesz=1G', 'hugepages=4', 'hugepagesz=2M', 'hugepages=512'],
     [(GIB, 4, 'hugepagesz=1G hugepages=4'), (2 * MIB, 512, 'hugepagesz=2M hugepages=512')]),
    (['hugepagesz=1G'], []),
    (['hugepages=0'], [(2 * MIB, 0, 'hugepages=0')]),
    # the per-node form (mm/hugetlb.c, Linux 5.14+): the pool is the sum over its nodes
    (['hugepagesz=2M', 'hugepages=0:2,1:2'], [(2 * MIB, 4, 'hugepagesz=2M hugepages=0:2,1:2')]),
    (['hugepages=1:512'], [(2 * MIB, 512, 'hugepages=1:512')]),
    (['hugepagesz=1G', 'hugepages=0:4,'], [(GIB, 4, 'hugepagesz=1G hugepages=0:4,')]),
])
def test_reservations_are_read_as_the_kernel_reads_them(tokens, pools):
    assert [(p['size'], p['count'], p['text']) for p in hugepage_reservations(tokens)] == pools


@pytest.mark.parametrize('tokens, bad', [
    (['hugepages=many'], "'many'"), (['hugepagesz=huge'], "'huge'"), (['default_hugepagesz='], "''"),
    # the kernel refuses a plain count after node counts, and a node without its count
    (['hugepages=0:2,4'], "'0:2,4' is not a page count"), (['hugepages=0:'], "'0:' is not a page count"),
    (['hugepages=:4'], "':4'"), (['hugepages=0:2,,1:2'], "'0:2,,1:2'"),
    (['hugepages=0:2,0:4'], 'names NUMA node 0 twice'),
])
def test_unreadable_hugepage_values_are_refused(tokens, bad):
    with pytest.raises(TuningError, match=bad):
        hugepage_reservations(tokens)


def test_per_node_reservations_keep_the_split_and_refuse_a_missing_node():
    [pool] = hugepage_reservations(['hugepagesz=2M', 'hugepages=0:2,1:6'], nodes=[0, 1])
    assert (pool['count'], pool['nodes']) == (8, {0: 2, 1: 6})
    assert hugepage_reservations(['hugepages=64'], nodes=[0])[0]['nodes'] is None
    with pytest.raises(TuningError) as caught:
        hugepage_reservations(['hugepagesz=2M', 'hugepages=0:2,3:2,5:1'], nodes=[0, 1])
    assert str(caught.value) == ('hugepages=0:2,3:2,5:1: names NUMA nodes 3,5, which this host does not have '
                                 '(online nodes: 0-1); the kernel would ignore the whole argument')


def test_memory_guard_sums_the_pages_of_every_node():
    pools = hugepage_reservations(['hugepagesz=1G', 'hugepages=0:7,1:6'])
    refusal = memory_guard(pools, 16 * GIB // 1024)
    assert 'hugepagesz=1G hugepages=0:7,1:6 = 13312 MiB' in refusal and 'reserve 13312 MiB of the 16384 MiB' in refusal
    assert memory_guard(hugepage_reservations(['hugepagesz=1G', 'hugepages=0:6,1:6']), 16 * GIB // 1024) is None


@pytest.mark.parametrize('have, want, same', [
    (['hugepages=0:64,1:64'], ['hugepages=128'], True),
    (['hugepages=0:64,1:63'], ['hugepages=128'], False),
    (['default-hugepagesz=2048k', 'hugepagesz=2M', 'hugepages=128'],
     ['default_hugepagesz=2M', 'hugepagesz=2M', 'hugepages=128'], True),
    (['hugepagesz=2M', 'hugepages=128'], ['default_hugepagesz=2M', 'hugepagesz=2M', 'hugepages=128'], False),
    (['hugepages=lots'], ['hugepages=128'], False),
])
def test_same_hugepage_tokens_compares_totals(have, want, same):
    assert same_hugepage_tokens(have, want) is same


@pytest.mark.parametrize('tokens, foreign', [
    (['hugepagesz=2M', 'hugepages=64'], []),
    (['hugepages=64'], []),
    (['hugepagesz=1G', 'hugepages=4'], ['hugepagesz=1G hugepages=4']),
    (['hugepagesz=1G'], ['hugepagesz=1G']),
    (['default_hugepagesz=1G', 'hugepages=4'], ['hugepages=4']),
    (['hugepagesz=1G', 'hugepages=4', 'hugepagesz=2M', 'hugepages=8'], ['hugepagesz=1G hugepages=4']),
])
def test_foreign_reservations_name_the_other_size(tokens, foreign):
    assert foreign_reservations(tokens, 2 * MIB) == foreign


def _pool(size, count):
    return {'size': size, 'count': count, 'text': 'hugepagesz=%d hugepages=%d' % (size, count)}


# 16 GiB host: the default keeps 4 GiB (the floor beats 25%); 64 GiB host: it keeps 16 GiB (25%).
@pytest.mark.parametrize('mem_gib, pages_1g, reserve_mib, ok', [
    (16, 12, None, True),
    (16, 13, None, False),
    (64, 48, None, True),
    (64, 49, None, False),
    (8, 4, None, True),
    (8, 5, None, False),
    (4, 1, None, False),
    (4, 3, 1024, True),
    (4, 4, 1024, False),
    (4, 4, 0, True),
    (4, 0, None, True),
])
def test_memory_guard_boundaries(mem_gib, pages_1g, reserve_mib, ok):
    refusal = memory_guard([_pool(GIB, pages_1g)], mem_gib * GIB // 1024, reserve_mib)
    assert (refusal is None) is ok
    if not ok:
        assert 'reserve %d MiB of the %d MiB RAM' % (pages_1g * 1024, mem_gib * 1024) in refusal
        assert ('pcie_passthrough_hugepages_host_reserve_mib' in refusal)


def test_memory_guard_sums_every_pool_on_the_line():
    # 1536 MiB guest keeping 1024 MiB: 256 MiB of 2M pages fit, with 1G more they do not.
    assert memory_guard([_pool(2 * MIB, 128)], 1536 * 1024, 1024) is None
    refusal = memory_guard([_pool(2 * MIB, 128), _pool(GIB, 1)], 1536 * 1024, 1024)
    assert 'reserve 1280 MiB' in refusal and 'leaving the host 256 MiB, less than the 1024 MiB' in refusal


@pytest.mark.parametrize('size, flags, refused', [
    ('2M', [], False), ('1G', ['fpu', 'pdpe1gb'], False), ('1G', ['fpu', 'pse'], True),
])
def test_page_size_guard(size, flags, refused):
    refusal = page_size_guard(size, flags)
    assert (refusal is not None) is refused
    if refused:
        assert 'pdpe1gb' in refusal


@pytest.mark.parametrize('cpus, present, online, force, fragments', [
    ([1], [0, 1], [0, 1], False, []),
    ([2, 3], [0, 1, 2, 3], [0, 1, 2, 3], False, []),
    ([3, 4], [0, 1, 2, 3], [0, 1, 2, 3], False,
     ['3-4 names CPU 4 that is not present (present: 0-3, online: 0-3)']),
    ([4, 5, 6], [0, 1, 2, 3], [0, 1, 2, 3], False, ['4-6 names CPUs 4-6 that are not present']),
    ([1, 2, 3], [0, 1, 2, 3], [0, 1, 2, 3], False, []),
    ([0, 1, 2, 3], [0, 1, 2, 3], [0, 1, 2, 3], True, ['isolates every present and online CPU']),
    ([0], [0, 1], [0, 1], False, ['isolates CPU 0, which takes interrupts and timers the kernel cannot move; leave '
                                  'it out, or set pcie_passthrough_isolated_cpus_force_cpu0: true']),
    ([0, 1], [0, 1], [0, 1], False, ['isolates every present and online CPU', 'isolates CPU 0']),
    ([0], [0, 1], [0, 1], True, []),
    ([1], [1], [1], False, ['isolates every present and online CPU']),
    # a present CPU taken offline is no CPU for the guest, nor for the host
    ([2, 3], [0, 1, 2, 3], [0, 1, 2], False,
     ['2-3 names CPU 3 that is present but offline (present: 0-3, online: 0-2): bring it online or leave it out']),
    # CPU 0 and 1 online, 2-3 offline: isolating 1 leaves only CPU 0, the host keeps it
    ([1], [0, 1, 2, 3], [0, 1], False, []),
    # isolating the one online CPU left for the host is refused although others are present
    ([1, 2], [0, 1, 2], [1, 2], True, ['isolates every present and online CPU of this host (present: 0-2, online: 1-2)']),
])
def test_cpu_guard(cpus, present, online, force, fragments):
    errors = cpu_guard(cpus, present, online, force)
    assert len(errors) == len(fragments), errors
    for error, fragment in zip(errors, fragments):
        assert fragment in error and error.startswith('pcie_passthrough_isolated_cpus: ')


def test_cpu_guard_judges_present_cpus_not_hot_plug_slots():
    """possible 0-7 on a host with 6 CPUs: isolcpus=4-7 names 6-7, which do not exist."""
    errors = cpu_guard([4, 5, 6, 7], present=list(range(6)), online=list(range(6)), asked='isolcpus=4-7')
    assert errors == ['pcie_passthrough_isolated_cpus: isolcpus=4-7 names CPUs 6-7 that are not present '
                      '(present: 0-5, online: 0-5)']


def test_meminfo_and_cpu_flags_parse():
    info = parse_meminfo('MemTotal:        1495500 kB\nHugePages_Total:     128\nHugepagesize:       2048 kB\nbad\n')
    assert info == {'MemTotal': 1495500, 'HugePages_Total': 128, 'Hugepagesize': 2048}
    assert cpu_flags('processor\t: 0\nflags\t\t: fpu pse pdpe1gb\n\nprocessor\t: 1\nflags\t\t: fpu\n') == \
        ['fpu', 'pse', 'pdpe1gb']
    assert cpu_flags('') == []
