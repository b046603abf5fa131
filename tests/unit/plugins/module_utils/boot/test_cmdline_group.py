"""The ordered hugepage group in command-line editing: written adjacent and in order, foreign pools refused."""

from __future__ import annotations

import pytest
from hypothesis import given, strategies as st

from ansible_collections.vfio.passthrough.plugins.module_utils.boot._cmdline import (
    CmdlineError, edit_args, unmet_args, untouched_args, validate_request,
)
from ansible_collections.vfio.passthrough.plugins.module_utils.boot._grub_default import GrubError, edit_grub_default

GROUP = ['default_hugepagesz=2M', 'hugepagesz=2M', 'hugepages=128']
GROUP_TEXT = ' '.join(GROUP)
HUGEPAGE_NAMES = ['default_hugepagesz', 'hugepagesz', 'hugepages']


def _edit(line, group=None, present=(), absent=()):
    return edit_args(line, validate_request(list(present), list(absent), group=GROUP if group is None else group))


@pytest.mark.parametrize('line, expected', [
    ('', GROUP_TEXT),
    ('quiet', 'quiet ' + GROUP_TEXT),
    ('quiet -- single', 'quiet ' + GROUP_TEXT + ' -- single'),
    # replaced where the first of its tokens was, the rest taken out
    ('quiet hugepages=64 iommu=pt', 'quiet ' + GROUP_TEXT + ' iommu=pt'),
    ('hugepagesz=2M  ro  hugepages=64 default_hugepagesz=2M', GROUP_TEXT + '  ro'),
    ('a  default-hugepagesz=2M b', 'a  ' + GROUP_TEXT + ' b'),
    # already right: not a byte moves
    ('quiet  ' + GROUP_TEXT + '  iommu=pt', 'quiet  ' + GROUP_TEXT + '  iommu=pt'),
    # the same tokens in another order are rewritten in order
    ('hugepages=128 hugepagesz=2M default_hugepagesz=2M', GROUP_TEXT),
    # after init's separator the tokens belong to init
    ('quiet -- hugepages=64', 'quiet ' + GROUP_TEXT + ' -- hugepages=64'),
    # per NUMA node with the asked total: already right; another total is replaced like the plain form
    ('quiet default_hugepagesz=2M hugepagesz=2M hugepages=0:64,1:64 ro',
     'quiet default_hugepagesz=2M hugepagesz=2M hugepages=0:64,1:64 ro'),
    ('quiet default_hugepagesz=2M hugepagesz=2M hugepages=0:64,1:32 ro', 'quiet ' + GROUP_TEXT + ' ro'),
    ('quiet hugepagesz=2M hugepages=0:2,1:2', 'quiet ' + GROUP_TEXT),
])
def test_group_is_written_adjacent_and_in_order(line, expected):
    assert _edit(line) == expected


@pytest.mark.parametrize('line, named', [
    ('hugepagesz=1G hugepages=4', 'hugepagesz=1G hugepages=4'),
    ('hugepagesz=1G hugepages=4 hugepagesz=2M hugepages=64', 'hugepagesz=1G hugepages=4'),
    ('quiet hugepagesz=1G', 'hugepagesz=1G'),
    ('default_hugepagesz=1G hugepages=16', 'hugepages=16'),
    ('hugepagesz=1G hugepages=0:2,1:2', 'hugepagesz=1G hugepages=0:2,1:2'),
])
def test_a_pool_of_another_size_is_refused_naming_it(line, named):
    with pytest.raises(CmdlineError, match='holds %s, hugepages of another size than hugepagesz=2M' % named):
        _edit(line)


def test_an_unreadable_hugepage_value_is_refused_naming_it():
    with pytest.raises(CmdlineError, match="'lots' is not a page count"):
        _edit('hugepages=lots')


def test_empty_value_removes_exactly_the_hugepage_arguments():
    line = 'quiet default_hugepagesz=1G hugepagesz=1G hugepages=16 iommu=pt hugepages=2'
    assert _edit(line, group=[], absent=HUGEPAGE_NAMES) == 'quiet iommu=pt'


def test_unmet_compares_the_group_with_the_running_line():
    request = validate_request([], [], group=GROUP)
    assert unmet_args('ro quiet ' + GROUP_TEXT, request) == []
    assert unmet_args('ro default_hugepagesz=2M quiet hugepagesz=2M x hugepages=128', request) == []
    assert unmet_args('ro quiet default_hugepagesz=2M hugepagesz=2M hugepages=64', request) == ['missing ' + GROUP_TEXT]
    assert unmet_args('ro quiet', request) == ['missing ' + GROUP_TEXT]
    assert unmet_args('ro -- ' + GROUP_TEXT, request) == ['missing ' + GROUP_TEXT]
    # the running kernel reserved 64 + 64 pages per node: the 128 asked, no reboot
    assert unmet_args('ro default_hugepagesz=2M hugepagesz=2M hugepages=0:64,1:64', request) == []
    assert unmet_args('ro default_hugepagesz=2M hugepagesz=2M hugepages=0:64', request) == ['missing ' + GROUP_TEXT]


def test_untouched_args_leave_out_the_group_names():
    request = validate_request(['iommu=pt'], [], group=GROUP)
    assert untouched_args('quiet hugepages=64 iommu=pt ro', request) == ['quiet', 'ro']


@pytest.mark.parametrize('present, absent, group, why', [
    (['hugepages=4'], [], GROUP, "present: 'hugepages=4' names an argument of the ordered group"),
    ([], ['hugepagesz'], GROUP, "absent: 'hugepagesz' names an argument of the ordered group"),
    ([], [], ['hugepages=1', 'hugepages=2'], 'names an argument twice'),
    ([], [], ['hugepagesz=1G', 'hugepages=1', 'hugepagesz=2M', 'hugepages=2'], 'names an argument twice'),
    ([], [], ['hugepages=2', 'hugepagesz=1G'], 'reserves pages of more than one size (hugepages=2)'),
    ([], [], ['hugepagesz=2M', 'hugepages=$(reboot)'], 'outside'),
])
def test_bad_groups_are_refused(present, absent, group, why):
    with pytest.raises(CmdlineError) as caught:
        validate_request(present, absent, group=group)
    assert why in str(caught.value)


def test_grub_group_goes_into_the_edited_variable_and_leaves_the_other():
    text = 'GRUB_CMDLINE_LINUX="hugepages=64 console=ttyS0"\nGRUB_CMDLINE_LINUX_DEFAULT="quiet"\n'
    result = edit_grub_default(text, validate_request([], [], group=GROUP))
    assert result['text'] == 'GRUB_CMDLINE_LINUX="console=ttyS0"\nGRUB_CMDLINE_LINUX_DEFAULT="quiet %s"\n' % GROUP_TEXT
    assert result['effective'] == 'console=ttyS0 quiet ' + GROUP_TEXT


def test_grub_foreign_pool_in_the_other_variable_is_refused_with_its_line():
    text = 'GRUB_CMDLINE_LINUX="hugepagesz=1G hugepages=4"\nGRUB_CMDLINE_LINUX_DEFAULT="quiet"\n'
    with pytest.raises(GrubError, match='line 1: .*holds hugepagesz=1G hugepages=4'):
        edit_grub_default(text, validate_request([], [], group=GROUP))


_TOKENS = st.sampled_from(['quiet', 'ro', 'iommu=pt', 'hugepages=64', 'hugepagesz=2M', 'default_hugepagesz=2M',
                           'isolcpus=1', 'hugepages=128', 'hugepages=0:64,1:64', 'hugepages=0:32'])


@given(st.lists(_TOKENS, max_size=8))
def test_the_group_edit_is_idempotent_keeps_others_and_is_met(tokens):
    request = validate_request([], [], group=GROUP)
    once = edit_args(' '.join(tokens), request)
    assert edit_args(once, request) == once
    assert once.split().count('hugepages=128') == 1 and GROUP_TEXT in once
    assert [t for t in once.split() if t.split('=')[0] not in HUGEPAGE_NAMES] == \
        [t for t in tokens if t.split('=')[0] not in HUGEPAGE_NAMES]
    assert unmet_args(once, request) == []
