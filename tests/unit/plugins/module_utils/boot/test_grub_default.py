"""Editing /etc/default/grub: golden real-world files, quoting, drop-ins, refusals."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ansible_collections.vfio.passthrough.plugins.module_utils.boot._cmdline import validate_request
from ansible_collections.vfio.passthrough.plugins.module_utils.boot._grub_default import (
    GrubError, edit_grub_default, effective_cmdline, find_assignments,
)

FIXTURES = Path(__file__).resolve().parents[4] / 'fixtures' / 'grub'
INTEL = validate_request(['intel_iommu=on', 'iommu=pt'], ['intel_iommu=off', 'amd_iommu=off'])
AMD = validate_request(['iommu=pt', 'pcie_acs_override=downstream,multifunction'], ['intel_iommu=off', 'amd_iommu=off'])


@pytest.mark.parametrize('source, request_, expected', [
    ('debian12.default', INTEL, 'debian12.intel.expected'),
    ('pve8-admin-edited.default', AMD, 'pve8-admin-edited.amd.expected'),
])
def test_golden_files(source, request_, expected):
    text = (FIXTURES / source).read_text()
    result = edit_grub_default(text, request_)
    assert result['text'] == (FIXTURES / expected).read_text()
    assert edit_grub_default(result['text'], request_)['text'] == result['text']


@pytest.mark.parametrize('line, expected', [
    ('GRUB_CMDLINE_LINUX_DEFAULT="quiet"', 'GRUB_CMDLINE_LINUX_DEFAULT="quiet intel_iommu=on iommu=pt"'),
    ("GRUB_CMDLINE_LINUX_DEFAULT='quiet'", "GRUB_CMDLINE_LINUX_DEFAULT='quiet intel_iommu=on iommu=pt'"),
    # An unquoted value stays unquoted only while it is one word.
    ('GRUB_CMDLINE_LINUX_DEFAULT=quiet', 'GRUB_CMDLINE_LINUX_DEFAULT="quiet intel_iommu=on iommu=pt"'),
    ('GRUB_CMDLINE_LINUX_DEFAULT=', 'GRUB_CMDLINE_LINUX_DEFAULT="intel_iommu=on iommu=pt"'),
    ('export GRUB_CMDLINE_LINUX_DEFAULT="quiet"', 'export GRUB_CMDLINE_LINUX_DEFAULT="quiet intel_iommu=on iommu=pt"'),
    ('  GRUB_CMDLINE_LINUX_DEFAULT="quiet"  # the admin\'s note',
     '  GRUB_CMDLINE_LINUX_DEFAULT="quiet intel_iommu=on iommu=pt"  # the admin\'s note'),
    # References to other variables are kept as they are.
    ('GRUB_CMDLINE_LINUX_DEFAULT="$GRUB_CMDLINE_LINUX_DEFAULT intel_iommu=off"',
     'GRUB_CMDLINE_LINUX_DEFAULT="$GRUB_CMDLINE_LINUX_DEFAULT intel_iommu=on iommu=pt"'),
    # A value continued over lines inside its quotes.
    ('GRUB_CMDLINE_LINUX_DEFAULT="quiet\n  intel_iommu=off splash"',
     'GRUB_CMDLINE_LINUX_DEFAULT="quiet\n  intel_iommu=on splash iommu=pt"'),
])
def test_quoting_kept(line, expected):
    assert edit_grub_default(line + '\n', INTEL)['text'] == expected + '\n'


def test_last_assignment_wins_and_earlier_absents_go():
    text = ('GRUB_CMDLINE_LINUX_DEFAULT="quiet intel_iommu=off"\n'
            '#GRUB_CMDLINE_LINUX_DEFAULT="commented intel_iommu=off"\n'
            'GRUB_CMDLINE_LINUX_DEFAULT="splash"\n')
    result = edit_grub_default(text, INTEL)
    assert result['text'] == ('GRUB_CMDLINE_LINUX_DEFAULT="quiet"\n'
                              '#GRUB_CMDLINE_LINUX_DEFAULT="commented intel_iommu=off"\n'
                              'GRUB_CMDLINE_LINUX_DEFAULT="splash intel_iommu=on iommu=pt"\n')
    assert (result['before'], result['after']) == ('splash', 'splash intel_iommu=on iommu=pt')


def test_absent_args_leave_grub_cmdline_linux_too():
    text = 'GRUB_CMDLINE_LINUX="console=ttyS0 intel_iommu=off"\nGRUB_CMDLINE_LINUX_DEFAULT="quiet"\n'
    result = edit_grub_default(text, INTEL)
    assert result['text'] == ('GRUB_CMDLINE_LINUX="console=ttyS0"\n'
                              'GRUB_CMDLINE_LINUX_DEFAULT="quiet intel_iommu=on iommu=pt"\n')
    assert result['effective'] == 'console=ttyS0 quiet intel_iommu=on iommu=pt'


def test_grub_cmdline_linux_as_target():
    text = 'GRUB_CMDLINE_LINUX=""\nGRUB_CMDLINE_LINUX_DEFAULT="quiet"\n'
    result = edit_grub_default(text, INTEL, variable='GRUB_CMDLINE_LINUX')
    assert result['text'] == 'GRUB_CMDLINE_LINUX="intel_iommu=on iommu=pt"\nGRUB_CMDLINE_LINUX_DEFAULT="quiet"\n'


@pytest.mark.parametrize('text, expected', [
    ('GRUB_TIMEOUT=5\n', 'GRUB_TIMEOUT=5\nGRUB_CMDLINE_LINUX_DEFAULT="intel_iommu=on iommu=pt"\n'),
    ('GRUB_TIMEOUT=5', 'GRUB_TIMEOUT=5\nGRUB_CMDLINE_LINUX_DEFAULT="intel_iommu=on iommu=pt"\n'),
    ('', 'GRUB_CMDLINE_LINUX_DEFAULT="intel_iommu=on iommu=pt"\n'),
])
def test_missing_variable_is_appended(text, expected):
    result = edit_grub_default(text, INTEL)
    assert result['text'] == expected
    assert result['before'] is None


def test_nothing_to_do_returns_identical_text():
    text = 'GRUB_CMDLINE_LINUX_DEFAULT="quiet  intel_iommu=on iommu=pt"\n'
    assert edit_grub_default(text, INTEL)['text'] == text


def test_dropin_that_appends_other_args_is_fine():
    dropin = ('/etc/default/grub.d/hugepages.cfg',
              'GRUB_CMDLINE_LINUX_DEFAULT="${GRUB_CMDLINE_LINUX_DEFAULT} hugepagesz=1G hugepages=16"\n')
    result = edit_grub_default('GRUB_CMDLINE_LINUX_DEFAULT="quiet"\n', INTEL, dropins=[dropin])
    assert result['effective'] == 'quiet intel_iommu=on iommu=pt hugepagesz=1G hugepages=16'


@pytest.mark.parametrize('dropin_text', [
    'GRUB_CMDLINE_LINUX_DEFAULT="quiet"\n',
    'GRUB_CMDLINE_LINUX_DEFAULT="$GRUB_CMDLINE_LINUX_DEFAULT intel_iommu=off"\n',
    'GRUB_CMDLINE_LINUX="iommu=soft"\nGRUB_CMDLINE_LINUX_DEFAULT=""\n',
])
def test_dropin_that_undoes_the_request_is_named(dropin_text):
    dropin = ('/etc/default/grub.d/50-cloud.cfg', dropin_text)
    with pytest.raises(GrubError) as exc:
        edit_grub_default('GRUB_CMDLINE_LINUX_DEFAULT="quiet"\n', INTEL, dropins=[dropin])
    assert '/etc/default/grub.d/50-cloud.cfg' in str(exc.value)


@pytest.mark.parametrize('text, fragment', [
    ('GRUB_CMDLINE_LINUX_DEFAULT="quiet $(cat /etc/extra)"\n', 'command substitution'),
    ('GRUB_CMDLINE_LINUX_DEFAULT="quiet `cat /etc/extra`"\n', 'command substitution'),
    ('GRUB_CMDLINE_LINUX_DEFAULT="quiet\n', 'unterminated double quote'),
    ('GRUB_CMDLINE_LINUX_DEFAULT="quiet"splash\n', 'mixes quoting styles'),
])
def test_unsafe_files_are_refused(text, fragment):
    with pytest.raises(GrubError) as exc:
        edit_grub_default(text, INTEL)
    assert fragment in str(exc.value)
    assert 'line 1' in str(exc.value)


def test_bad_variable_is_refused():
    with pytest.raises(GrubError, match='GRUB_TIMEOUT'):
        edit_grub_default('', INTEL, variable='GRUB_TIMEOUT')


def test_effective_cmdline_follows_shell_order():
    main = 'GRUB_CMDLINE_LINUX="a"\nGRUB_CMDLINE_LINUX_DEFAULT=\'b $NOT_EXPANDED\'\n'
    line, assigned = effective_cmdline([('main', main), ('d.cfg', 'GRUB_CMDLINE_LINUX="$GRUB_CMDLINE_LINUX c"\n')])
    assert line == 'a c b $NOT_EXPANDED'
    assert assigned['GRUB_CMDLINE_LINUX'] == ['main', 'd.cfg']


def test_find_assignments_skips_comments_and_strings():
    text = ('# GRUB_CMDLINE_LINUX_DEFAULT="x"\n'
            'echo "GRUB_CMDLINE_LINUX_DEFAULT=y\nstill in string"\n'
            'GRUB_CMDLINE_LINUX_DEFAULT="z"\n')
    found = find_assignments(text, ('GRUB_CMDLINE_LINUX_DEFAULT',))
    assert [(a.line, text[a.start:a.end]) for a in found] == [(4, '"z"')]


# --- properties ------------------------------------------------------------

_OTHER_LINES = st.sampled_from([
    '# comment with GRUB_CMDLINE_LINUX_DEFAULT="not me"', 'GRUB_TIMEOUT=5', 'GRUB_DEFAULT=saved',
    'GRUB_DISTRIBUTOR=`lsb_release -i -s 2> /dev/null || echo Debian`', '', '#GRUB_TERMINAL=console',
    'GRUB_GFXMODE="640x480"', 'GRUB_DISABLE_OS_PROBER=true   ', 'export GRUB_COLOR_NORMAL="light-blue/black"',
])
_VALUE = st.lists(st.sampled_from(['quiet', 'splash', 'intel_iommu=off', 'intel_iommu=on,igfx_off', 'iommu=soft',
                                   'hugepages=8', 'amd_iommu=off']), max_size=5).map(' '.join)


@settings(max_examples=200, deadline=None)
@given(st.lists(_OTHER_LINES, max_size=6), _VALUE, st.lists(_OTHER_LINES, max_size=6), st.booleans())
def test_unrelated_lines_survive_and_twice_equals_once(head, value, tail, final_newline):
    line = 'GRUB_CMDLINE_LINUX_DEFAULT="%s"' % value
    text = '\n'.join(head + [line] + tail) + ('\n' if final_newline else '')
    once = edit_grub_default(text, INTEL)['text']
    assert edit_grub_default(once, INTEL)['text'] == once
    old_lines, new_lines = text.split('\n'), once.split('\n')
    assert len(old_lines) == len(new_lines)
    changed = [i for i, (a, b) in enumerate(zip(old_lines, new_lines)) if a != b]
    assert changed in ([], [len(head)])
