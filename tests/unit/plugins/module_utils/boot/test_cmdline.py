"""The kernel command-line token model: edits, validation, what a running kernel still lacks."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ansible_collections.vfio.passthrough.plugins.module_utils.boot._cmdline import (
    CmdlineError, check_balanced_quotes, cmdline_vfio_ids, edit_args, effective_items, kernel_args, last_value,
    proxmox_cmdline_problem, split_args, strip_boot_args, unmet_args, validate_request,
)

INTEL = (['intel_iommu=on', 'iommu=pt'], ['intel_iommu=off', 'amd_iommu=off'])


@pytest.mark.parametrize('text, present, absent, expected', [
    # The role's Intel request on typical starting points.
    ('quiet', *INTEL, 'quiet intel_iommu=on iommu=pt'),
    ('quiet intel_iommu=off', *INTEL, 'quiet intel_iommu=on iommu=pt'),
    ('intel_iommu=off quiet', *INTEL, 'intel_iommu=on quiet iommu=pt'),
    ('quiet amd_iommu=off splash', *INTEL, 'quiet splash intel_iommu=on iommu=pt'),
    ('', *INTEL, 'intel_iommu=on iommu=pt'),
    # An admin's extra intel_iommu items survive (merge).
    ('quiet intel_iommu=on,igfx_off', *INTEL, 'quiet intel_iommu=on,igfx_off iommu=pt'),
    ('intel_iommu=relax_rmrr,off iommu=pt', *INTEL, 'intel_iommu=relax_rmrr,on iommu=pt'),
    ('intel_iommu=igfx_off intel_iommu=off', *INTEL, 'intel_iommu=igfx_off,on iommu=pt'),
    # Spacing and order of untouched tokens are kept exactly.
    ('  quiet   splash  ', *INTEL, '  quiet   splash intel_iommu=on iommu=pt  '),
    ('quiet\tsplash', ['iommu=pt'], [], 'quiet\tsplash iommu=pt'),
    # name=value replaces in place and leaves exactly one.
    ('iommu=soft quiet iommu=nopt', ['iommu=pt'], [], 'iommu=pt quiet'),
    ('iommu=pt', ['iommu=pt'], [], 'iommu=pt'),
    # - and _ are the same in names; the existing spelling is kept when nothing changes.
    ('intel-iommu=on', ['intel_iommu=on'], [], 'intel-iommu=on'),
    ('pcie-acs-override=downstream', ['pcie_acs_override=downstream,multifunction'], [],
     'pcie-acs-override=downstream,multifunction'),
    # Bare names: satisfied by a bare token, never touching name=value tokens.
    ('quiet', ['quiet'], [], 'quiet'),
    ('quiet=1', ['quiet'], [], 'quiet=1 quiet'),
    # absent by name removes every token of that name; by name=value exactly that one.
    ('a=1 b a=2 a', [], ['a'], 'b'),
    ('a=1 b a=2', [], ['a=2'], 'a=1 b'),
    ('iommu=pt', [], ['iommu=soft'], 'iommu=pt'),
    ('pcie_acs_override=downstream,multifunction', [], ['pcie_acs_override=downstream'],
     'pcie_acs_override=multifunction'),
    ('x pcie_acs_override=downstream y', [], ['pcie_acs_override=downstream'], 'x y'),
    # Quoted kernel values are one token and stay untouched.
    ('dyndbg="file vfio* +p" quiet', ['iommu=pt'], [], 'dyndbg="file vfio* +p" quiet iommu=pt'),
    # amd_iommu=on is tolerated (never added, never required to go).
    ('amd_iommu=on quiet', ['iommu=pt'], ['amd_iommu=off'], 'amd_iommu=on quiet iommu=pt'),
])
def test_edit_args(text, present, absent, expected):
    assert edit_args(text, validate_request(present, absent)) == expected


@pytest.mark.parametrize('present, absent, message', [
    (['a"b'], [], "'a\"b' contains a character"),
    (["it's"], [], "\"it's\" contains a character"),
    (['x;reboot'], [], "'x;reboot' contains a character"),
    (['$(id)'], [], "'$(id)' contains a character"),
    (['`id`'], [], "'`id`' contains a character"),
    (['a b'], [], "'a b' contains a character"),
    (['a\nb'], [], "'a\\nb' contains a character"),
    ([], ['x|y'], "absent: kernel argument 'x|y'"),
    (['=on'], [], "'=on' has an empty name"),
    ([''], [], 'empty kernel argument'),
    (['iommu=pt', 'iommu=soft'], [], "'iommu=pt' and 'iommu=soft' name the same argument"),
    (['intel-iommu=on', 'intel_iommu=off'], [], 'name the same argument'),
    (['iommu=pt'], ['iommu'], "'iommu' would remove 'iommu=pt'"),
    (['quiet'], ['quiet'], "'quiet' would remove 'quiet'"),
    (['iommu=pt'], ['iommu=pt'], "'iommu=pt' is in both present and absent"),
    (['intel_iommu=on,igfx_off'], ['intel_iommu=igfx_off'], 'removes igfx_off'),
])
def test_validate_refuses(present, absent, message):
    with pytest.raises(CmdlineError) as exc:
        validate_request(present, absent)
    assert message in str(exc.value)


def test_validate_refuses_bad_merge_name():
    with pytest.raises(CmdlineError, match="merge: 'a=b'"):
        validate_request([], [], merge=['a=b'])


# A whole-value match: '$' in a regex accepts 'x\n', fullmatch does not.
@pytest.mark.parametrize('present, absent, merge, message', [
    (['iommu=pt\n'], [], None, "present: kernel argument 'iommu=pt\\n' contains a character that is a control"),
    ([], ['intel_iommu=off\n'], None, "absent: kernel argument 'intel_iommu=off\\n' contains a character"),
    (['iommu=pt\r'], [], None, "'iommu=pt\\r' contains a character that is a control"),
    (['iommu=pt\x00'], [], None, "'iommu=pt\\x00' contains a character that is a control"),
    (['iommu=\tpt'], [], None, "'iommu=\\tpt' contains a character that is a control"),
    (['iommu=pt\x7f'], [], None, "'iommu=pt\\x7f' contains a character that is a control"),
    ([], [], ['intel_iommu\n'], "merge: 'intel_iommu\\n' is not a kernel parameter name"),
    ([], [], ['intel_iommu\x1b'], "merge: 'intel_iommu\\x1b' is not a kernel parameter name"),
    (['--'], [], None, "present: '--' is not a kernel argument: everything after it goes to init"),
    ([], ['--'], None, "absent: '--' is not a kernel argument"),
])
def test_validate_refuses_control_characters_everywhere(present, absent, merge, message):
    with pytest.raises(CmdlineError) as exc:
        validate_request(present, absent, *([merge] if merge is not None else []))
    assert message in str(exc.value)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.characters(max_codepoint=0x7f), max_size=6),
       st.sampled_from([chr(c) for c in list(range(0x20)) + [0x7f]]),
       st.text(alphabet=st.characters(max_codepoint=0x7f), max_size=6),
       st.sampled_from(['present', 'absent', 'merge']))
def test_any_control_character_is_refused_in_every_option(head, control, tail, option):
    value = 'iommu%s%s%s' % (head, control, tail)
    args = {'present': [], 'absent': [], 'merge': ['intel_iommu']}
    args[option] = args[option] + [value]
    with pytest.raises(CmdlineError) as exc:
        validate_request(args['present'], args['absent'], args['merge'])
    assert str(exc.value).startswith(option + ':')
    assert repr(value) in str(exc.value)


# Class 3: a bare '--' ends the kernel's arguments; init gets the rest.
@pytest.mark.parametrize('text, present, absent, expected', [
    ('quiet -- single', *INTEL, 'quiet intel_iommu=on iommu=pt -- single'),
    ('quiet  --  single', *INTEL, 'quiet intel_iommu=on iommu=pt  --  single'),
    ('-- single', *INTEL, 'intel_iommu=on iommu=pt -- single'),
    ('quiet --', ['iommu=pt'], [], 'quiet iommu=pt --'),
    # Only after '--': not set, so it is added before '--'; init's copy stays.
    ('quiet -- iommu=pt', ['iommu=pt'], [], 'quiet iommu=pt -- iommu=pt'),
    ('quiet -- intel_iommu=on', ['intel_iommu=on'], [], 'quiet intel_iommu=on -- intel_iommu=on'),
    ('quiet -- quiet', ['quiet'], [], 'quiet -- quiet'),
    ('ro -- quiet', ['quiet'], [], 'ro quiet -- quiet'),
    # absent removes from the kernel part only.
    ('intel_iommu=off -- intel_iommu=off', *INTEL, 'intel_iommu=on iommu=pt -- intel_iommu=off'),
    ('a=1 -- a=1', [], ['a'], '-- a=1'),
    ('x a=1 -- a=2 a', [], ['a'], 'x -- a=2 a'),
    ('iommu=soft -- iommu=soft', ['iommu=pt'], [], 'iommu=pt -- iommu=soft'),
    # A second '--' belongs to init.
    ('quiet -- a -- b', ['iommu=pt'], [], 'quiet iommu=pt -- a -- b'),
    # '--x' and 'x=--' are ordinary tokens.
    ('--x quiet', ['iommu=pt'], [], '--x quiet iommu=pt'),
])
def test_edit_args_before_init_separator(text, present, absent, expected):
    assert edit_args(text, validate_request(present, absent)) == expected


@pytest.mark.parametrize('text, present, absent, unmet', [
    ('ro -- intel_iommu=on iommu=pt', *INTEL, ['missing intel_iommu=on', 'missing iommu=pt']),
    ('ro intel_iommu=on iommu=pt -- intel_iommu=off', *INTEL, []),
    ('ro intel_iommu=on -- iommu=pt', *INTEL, ['missing iommu=pt']),
    ('ro -- quiet', ['quiet'], [], ['missing quiet']),
    ('ro -- quiet', [], ['quiet'], []),
    ('ro quiet -- quiet', [], ['quiet'], ['still has quiet']),
])
def test_unmet_counts_the_kernel_part_only(text, present, absent, unmet):
    assert unmet_args(text, validate_request(present, absent)) == unmet


# Class 8: intel_iommu=on followed by intel_iommu=off is off (intel_iommu_setup() runs for every
# occurrence; on/off undo each other, other items accumulate).
@pytest.mark.parametrize('text, present, absent, unmet', [
    ('intel_iommu=on intel_iommu=off', ['intel_iommu=on'], [], ['missing intel_iommu=on']),
    ('intel_iommu=on intel_iommu=off', [], ['intel_iommu=off'], ['still has intel_iommu=off']),
    ('intel_iommu=off intel_iommu=on', ['intel_iommu=on'], ['intel_iommu=off'], []),
    ('intel_iommu=on,off', ['intel_iommu=on'], [], ['missing intel_iommu=on']),
    ('intel_iommu=off,on', ['intel_iommu=on'], ['intel_iommu=off'], []),
    ('intel_iommu=on,igfx_off intel_iommu=sm_on', ['intel_iommu=on,igfx_off'], [], []),
    ('intel_iommu=sm_on intel_iommu=sm_off', ['intel_iommu=sm_on'], [], ['missing intel_iommu=sm_on']),
    ('intel_iommu=on -- intel_iommu=off', ['intel_iommu=on'], ['intel_iommu=off'], []),
])
def test_unmet_last_of_on_and_off_wins(text, present, absent, unmet):
    assert unmet_args(text, validate_request(present, absent)) == unmet


@pytest.mark.parametrize('text, present, expected', [
    # Without intel_iommu=off in absent the request still ends up on: the later off goes.
    ('quiet intel_iommu=on intel_iommu=off', ['intel_iommu=on'], 'quiet intel_iommu=on'),
    ('intel_iommu=on,igfx_off intel_iommu=off', ['intel_iommu=on'], 'intel_iommu=on,igfx_off'),
    ('intel_iommu=off,igfx_off', ['intel_iommu=on'], 'intel_iommu=igfx_off,on'),
    ('intel_iommu=sm_off', ['intel_iommu=on,sm_on'], 'intel_iommu=on,sm_on'),
])
def test_edit_merge_takes_out_the_opposite_item(text, present, expected):
    request = validate_request(present, [])
    assert edit_args(text, request) == expected
    assert unmet_args(expected, request) == []


@pytest.mark.parametrize('text, name, value, items', [
    ('intel_iommu=on intel_iommu=off', 'intel_iommu', 'off', ['off']),
    ('intel-iommu=off intel_iommu=on,igfx_off', 'intel_iommu', 'on,igfx_off', ['on', 'igfx_off']),
    ('pcie_acs_override=downstream pcie_acs_override=multifunction -- pcie_acs_override=id:1',
     'pcie_acs_override', 'multifunction', ['downstream', 'multifunction']),
    ('quiet -- intel_iommu=on', 'intel_iommu', None, []),
    ('quiet nomodeset', 'nomodeset', '', []),
])
def test_last_value_and_effective_items(text, name, value, items):
    assert last_value(text, name) == value
    assert effective_items(text, name) == items


def test_kernel_args_stop_at_init_separator():
    assert kernel_args('BOOT_IMAGE=/vmlinuz ro dyndbg="a b" quiet -- single x=1') == [
        ('BOOT_IMAGE', '/vmlinuz'), ('ro', None), ('dyndbg', '"a b"'), ('quiet', None)]


@pytest.mark.parametrize('text, ids', [
    ('quiet', None),
    ('quiet vfio-pci.ids=10DE:1B80,10de:10f0', ['10de:1b80', '10de:10f0']),
    ('vfio_pci.ids=8086:1533', ['8086:1533']),
    # Last occurrence wins, as for any module parameter.
    ('vfio-pci.ids=8086:1533 vfio-pci.ids=10de:1b80', ['10de:1b80']),
    ('vfio-pci.ids="10de:1b80,10de:10f0"', ['10de:1b80', '10de:10f0']),
    ('vfio-pci.ids=', []),
    # After '--' it goes to init, not to vfio-pci.
    ('quiet -- vfio-pci.ids=8086:1533', None),
    ('vfio-pci.disable_vga=1', None),
])
def test_cmdline_vfio_ids(text, ids):
    assert cmdline_vfio_ids(text) == ids


@pytest.mark.parametrize('text, ok', [
    ('quiet dyndbg="file vfio* +p"', True),
    ('', True),
    ('quiet acpi_osi="Windows 2020', False),
    ('"', False),
])
def test_check_balanced_quotes(text, ok):
    if ok:
        check_balanced_quotes(text, '/etc/kernel/cmdline line 1')
        return
    with pytest.raises(CmdlineError) as exc:
        check_balanced_quotes(text, '/etc/kernel/cmdline line 1')
    assert str(exc.value).startswith('/etc/kernel/cmdline line 1: unbalanced double quote in %r' % text)


def test_split_args_treats_a_line_continuation_as_space():
    pairs, trailing = split_args('quiet \\\nsplash')
    assert pairs == [['', 'quiet'], [' \\\n', 'splash']]
    assert trailing == ''


@pytest.mark.parametrize('present, absent', [
    (['intel_iommu=on'], ['intel_iommu=off']),
    (['iommu=pt'], ['iommu=soft']),
])
def test_validate_allows_other_value_absent(present, absent):
    validate_request(present, absent)


@pytest.mark.parametrize('running, present, absent, unmet', [
    ('BOOT_IMAGE=/vmlinuz ro quiet intel_iommu=off', *INTEL, ['missing intel_iommu=on', 'missing iommu=pt',
                                                              'still has intel_iommu=off']),
    ('ro quiet intel_iommu=on iommu=pt', *INTEL, []),
    ('ro intel_iommu=igfx_off,on iommu=pt', *INTEL, []),
    # The kernel keeps the last occurrence.
    ('iommu=pt iommu=soft intel_iommu=on', *INTEL, ['missing iommu=pt']),
    ('quiet', ['pcie_acs_override=downstream,multifunction'], [], ['missing pcie_acs_override=downstream,multifunction']),
    ('pcie_acs_override=downstream', ['pcie_acs_override=downstream,multifunction'], [],
     ['missing pcie_acs_override=downstream,multifunction']),
])
def test_unmet_args(running, present, absent, unmet):
    assert unmet_args(running, validate_request(present, absent)) == unmet


@pytest.mark.parametrize('proc, expected', [
    ('BOOT_IMAGE=/boot/vmlinuz-6.8.12-4-pve root=ZFS=rpool/ROOT/pve-1 boot=zfs quiet\n',
     'root=ZFS=rpool/ROOT/pve-1 boot=zfs quiet'),
    ('initrd=\\EFI\\proxmox\\6.8.12-4-pve\\initrd.img-6.8.12-4-pve root=ZFS=rpool/ROOT/pve-1 boot=zfs\n',
     'root=ZFS=rpool/ROOT/pve-1 boot=zfs'),
    ('quiet', 'quiet'),
])
def test_strip_boot_args(proc, expected):
    assert strip_boot_args(proc) == expected


def test_split_args_keeps_whitespace_and_quotes():
    pairs, trailing = split_args('  a  b="c d"\te ')
    assert pairs == [['  ', 'a'], ['  ', 'b="c d"'], ['\t', 'e']]
    assert trailing == ' '


# --- properties ------------------------------------------------------------

_NAMES = st.sampled_from(['quiet', 'splash', 'iommu', 'intel_iommu', 'intel-iommu', 'amd_iommu',
                          'pcie_acs_override', 'hugepages', 'nomodeset', 'root'])
_VALUES = st.sampled_from(['on', 'off', 'pt', 'soft', 'igfx_off', 'on,igfx_off', 'downstream',
                           'downstream,multifunction', '16', '/dev/sda1'])
_ARG = st.builds(lambda n, v: n if v is None else '%s=%s' % (n, v), _NAMES, st.none() | _VALUES)
_SPACE = st.sampled_from([' ', '  ', '\t'])
_LINE = st.lists(st.tuples(_SPACE, _ARG), max_size=8).map(lambda ps: ''.join(s + a for s, a in ps))


def _request_or_none(present, absent):
    try:
        return validate_request(present, absent)
    except CmdlineError:
        return None


_INIT = st.sampled_from(['', ' --', ' -- single', ' -- quiet iommu=pt', ' -- intel_iommu=off --'])


@settings(max_examples=300, deadline=None)
@given(_LINE, _INIT, st.lists(_ARG, max_size=4), st.lists(_ARG, max_size=3))
def test_init_arguments_survive_and_never_count(line, init, present, absent):
    request = _request_or_none(present, absent)
    if request is None:
        return
    after = edit_args(line + init, request)
    tokens = [tok for _lead, tok in split_args(after)[0]]
    init_tokens = init.split()
    assert tokens[len(tokens) - len(init_tokens):] == init_tokens
    assert after.rstrip().endswith(init.strip())
    assert edit_args(after, request) == after
    assert unmet_args(after, request) == []
    assert unmet_args(line + init, request) == unmet_args(line, request)


@settings(max_examples=300, deadline=None)
@given(_LINE, st.lists(_ARG, max_size=4), st.lists(_ARG, max_size=3))
def test_applying_twice_equals_applying_once(line, present, absent):
    request = _request_or_none(present, absent)
    if request is None:
        return
    once = edit_args(line, request)
    assert edit_args(once, request) == once
    assert unmet_args(once, request) == []


@settings(max_examples=200, deadline=None)
@given(_LINE, st.lists(st.sampled_from(['iommu=pt', 'intel_iommu=on', 'hugepages=16']), max_size=3, unique=True),
       st.lists(st.sampled_from(['intel_iommu=off', 'amd_iommu=off']), max_size=2, unique=True))
def test_unrelated_tokens_survive_in_order(line, present, absent):
    request = validate_request(present, absent)
    touched = {'iommu', 'intel_iommu', 'hugepages', 'amd_iommu'}
    keep = [tok for _lead, tok in split_args(line)[0] if tok.split('=')[0].replace('-', '_') not in touched]
    after = [tok for _lead, tok in split_args(edit_args(line, request))[0]
             if tok.split('=')[0].replace('-', '_') not in touched]
    assert after == keep


@settings(max_examples=300, deadline=None)
@given(st.text(min_size=1, max_size=12))
def test_any_forbidden_character_is_refused(arg):
    if re.fullmatch(r'[A-Za-z0-9_.,:/=+@%-]+', arg) and not arg.startswith('=') and arg != '--':
        validate_request([arg], [])
        return
    with pytest.raises(CmdlineError) as exc:
        validate_request([arg], [])
    assert repr(arg) in str(exc.value)


# What zz-proxmox-boot's get_first_line and `echo ${CMDLINE} | grep -q 'root='` make of each file.
PROXMOX_CMDLINE = [
    ('whole', 'root=ZFS=rpool/ROOT/pve-1 boot=zfs quiet\n', None),
    ('no-final-newline', 'root=/dev/mapper/pve-root ro quiet', None),
    ('trailing-blank-lines', 'root=/dev/sda1 quiet\n\n  \n', None),
    ('tab-separated', 'root=/dev/sda1\tquiet\n', None),
    ('empty', '', 'is empty: the boot hook (zz-proxmox-boot) needs the whole command line'),
    ('only-newline', '\n', 'is empty'),
    ('leading-blank-line', '\nroot=/dev/sda1 quiet\n',
     "line 1 is blank, and proxmox-boot-tool reads only line 1: the arguments on line 2 'root=/dev/sda1 quiet' are "
     'never read'),
    ('blank-then-args', '   \n\nroot=/dev/sda1\n', 'the arguments on line 3'),
    ('args-on-line-2', 'root=/dev/sda1 quiet\nintel_iommu=on\n',
     "line 2 'intel_iommu=on' is never read: proxmox-boot-tool reads only line 1"),
    ('no-root', 'boot=zfs quiet\n', "line 1 'boot=zfs quiet' has no root= argument (before any bare --): the boot "
                                    'hook refuses it ("No root= parameter in /etc/kernel/cmdline found!")'),
    ('root-only-for-init', 'quiet -- root=/dev/sda1\n', 'has no root= argument (before any bare --)'),
    ('root-as-substring', 'quiet myroot=/dev/sda1\n', 'has no root= argument'),
    ('empty-root', 'root= quiet\n', 'has no root= argument'),
    ('crlf', 'root=/dev/sda1 quiet\r\n', "line 1 'root=/dev/sda1 quiet\\r' holds a carriage return (a CRLF line end?)"),
    ('nul', 'root=/dev/sda1 qu\0iet\n', "line 1 'root=/dev/sda1 qu\\x00iet' holds a NUL byte"),
    ('nul-on-line-2', 'root=/dev/sda1\n\0\n', 'line 2 \'\\x00\' holds a NUL byte'),
    ('escape-char', 'root=/dev/sda1 \x1b[0m\n', "holds the control character '\\x1b'"),
    ('long-line-shown-short', 'x' * 5000 + '\n', "line 1 '" + 'x' * 200 + "...' has no root= argument"),
]


@pytest.mark.parametrize('text, message', [c[1:] for c in PROXMOX_CMDLINE], ids=[c[0] for c in PROXMOX_CMDLINE])
def test_proxmox_cmdline_problem_names_the_line_the_hook_rejects_or_misreads(text, message):
    problem = proxmox_cmdline_problem(text, '/etc/kernel/cmdline')
    if message is None:
        assert problem is None
    else:
        assert problem is not None and problem.startswith('/etc/kernel/cmdline ') and message in problem, problem
