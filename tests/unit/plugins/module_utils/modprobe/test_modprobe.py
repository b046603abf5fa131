"""Text rules of _modprobe: parsing, owned files, shared-file blocks, validation."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ansible_collections.vfio.passthrough.plugins.module_utils.modprobe._modprobe import (
    Directive, block_markers, check_module_names, check_pci_ids, competing_vfio_ids, conf_read_order,
    dead_module_lines, header, initramfs_modules_keys, is_owned, modprobe_keys, modules_load_keys,
    outside_block, parse_modprobe, plan_file, render_owned, set_block, vfio_ids_settings,
)
from ansible_collections.vfio.passthrough.plugins.module_utils.pci._pci import normalise_module

FIXTURES = Path(__file__).resolve().parents[4] / 'fixtures' / 'modprobe'
OWNER = 'vfio_modules'
VFIO = ['vfio', 'vfio_iommu_type1', 'vfio_pci']
BEGIN, END = block_markers(OWNER)


def fixture(name):
    return (FIXTURES / name).read_bytes().decode('utf-8')


# --- validation -------------------------------------------------------------

@pytest.mark.parametrize('names, expected', [
    (['vfio-pci', 'vfio_pci', 'VFIO'], ['vfio_pci', 'VFIO']),
    (['snd-hda-intel'], ['snd_hda_intel']),
    ([], []),
    (['a' * 55], ['a' * 55]),
])
def test_check_module_names_normalises_and_dedups(names, expected):
    assert check_module_names(names) == expected


@pytest.mark.parametrize('bad', ['', 'vfio pci', 'vfio.pci', '../evil', 'nv;rm', 'ixgbe\n', 'a' * 56, 'é'])
def test_check_module_names_names_the_bad_one(bad):
    with pytest.raises(ValueError) as err:
        check_module_names(['vfio', bad])
    assert repr(bad) in str(err.value)


@pytest.mark.parametrize('ids, expected', [
    (['10DE:1B80', '10de:10f0', '10de:1b80'], ['10de:1b80', '10de:10f0']),
    (['8086:1533'], ['8086:1533']),
])
def test_check_pci_ids_lowercases_and_dedups(ids, expected):
    assert check_pci_ids(ids) == expected


@pytest.mark.parametrize('bad', ['10de1b80', '10de:1b8', '10de:1b800', 'g0de:1b80', '10de:1b80,10de:10f0',
                                 ' 10de:1b80', '10de:1b80:1462:3306', ''])
def test_check_pci_ids_names_the_bad_one(bad):
    with pytest.raises(ValueError) as err:
        check_pci_ids(['10de:10f0', bad])
    assert repr(bad) in str(err.value)


@given(st.text(min_size=1, max_size=20))
def test_property_module_names_outside_charset_refused(name):
    ok = all(c.isascii() and (c.isalnum() or c in '_-') for c in name) and len(name) <= 55
    if ok:
        assert check_module_names([name]) == [normalise_module(name)]
    else:
        with pytest.raises(ValueError):
            check_module_names([name])


# --- parsing ----------------------------------------------------------------

def test_parse_hand_edited_file():
    assert parse_modprobe(fixture('hand-edited.conf')) == [
        Directive('options', 'vfio_pci', ('ids=10de:1b80,10de:10f0',), 2),
        Directive('softdep', 'nouveau', ('pre:', 'vfio-pci', '#', 'keep', 'nouveau', 'off', 'the', 'card'), 4),
        Directive('blacklist', 'snd_hda_intel', (), 5),
        Directive('alias', 'pci:v000010DEd*sv*sd*bc03sc*i*', ('nvidia',), 6),
        Directive('install', 'ixgbe', ('/bin/false',), 7),
    ]


def test_parse_pve_blacklist():
    assert parse_modprobe(fixture('pve-blacklist.conf')) == [Directive('blacklist', 'nvidiafb', (), 4)]


@pytest.mark.parametrize('text, expected', [
    ('# comment \\\nblacklist swallowed\nblacklist kept\n', [('blacklist', 'kept', 3)]),
    ('blacklist a\\\n', [('blacklist', 'a', 1)]),
    ('blacklist a', [('blacklist', 'a', 1)]),
    ('\n\n   \n', []),
])
def test_parse_continuations_like_kmod(text, expected):
    assert [(d.kind, d.module, d.lineno) for d in parse_modprobe(text)] == expected


@pytest.mark.parametrize('a, b, same', [
    ('options vfio-pci ids=10de:1b80\n', 'options   vfio_pci ids=10de:1b80   # mine\n', True),
    ('options vfio-pci ids=10de:1b80\n', 'options vfio-pci ids=10de:1b81\n', False),
    ('softdep nouveau pre: vfio-pci\n', 'softdep nouveau pre: vfio_pci\n', True),
    ('blacklist nvidia-fb\n', 'blacklist nvidiafb\n', False),
    ('blacklist snd-hda-intel\n', 'blacklist snd_hda_intel extra words\n', True),
])
def test_modprobe_keys_ignore_spelling_variations(a, b, same):
    assert (modprobe_keys(a) == modprobe_keys(b)) is same


_SAMPLE = 'vfio_pci   # GPU\n  vfio-iommu-type1\n; vfio\n#vfio\nvfio_virqfd opt=1'


@pytest.mark.parametrize('keys, text, expected', [
    # initramfs-tools runs `modprobe $line`: first word the module, the rest its parameters
    (initramfs_modules_keys, fixture('initramfs-modules.debian12'), set()),
    (initramfs_modules_keys, _SAMPLE, {'vfio_pci', 'vfio_iommu_type1', 'vfio_virqfd'}),
    (initramfs_modules_keys, '; vfio\n  # vfio_pci\nvfio_pci#x\n', {'vfio_pci#x'}),
    # systemd-modules-load takes the whole stripped line: a trailing comment or a parameter names no module
    (modules_load_keys, fixture('modules.debian12'), set()),
    (modules_load_keys, _SAMPLE, {'vfio_iommu_type1'}),
    (modules_load_keys, 'vfio_pci  # GPU\n', set()),
    (modules_load_keys, '\tvfio-pci \r\n;vfio\n#vfio_iommu_type1\n', {'vfio_pci'}),
    (modules_load_keys, 'vfio_pci\tvfio\n', set()),
])
def test_module_list_keys(keys, text, expected):
    assert keys(text) == expected


@pytest.mark.parametrize('text, expected', [
    ('vfio_pci  # GPU\nvfio\n# vfio_pci x\n; y z\n', [(1, 'vfio_pci  # GPU')]),
    ('  kvm_intel nested=1 \n\n', [(1, 'kvm_intel nested=1')]),
    (fixture('modules.debian12'), []),
])
def test_dead_module_lines_are_the_ones_systemd_cannot_load(text, expected):
    assert dead_module_lines(text) == expected


def test_a_commented_line_in_etc_modules_does_not_count_so_the_module_is_written():
    before = 'vfio_pci  # GPU\n'
    after = plan_file(before, OWNER, ['vfio_pci'], modules_load_keys, path='/etc/modules')
    assert after == before + BEGIN + '\nvfio_pci\n' + END + '\n'
    assert modules_load_keys(after) == {'vfio_pci'}


# --- competing vfio-pci ids= -------------------------------------------------

@pytest.mark.parametrize('listings, expected', [
    # /etc hides /lib's file of the same name; the winners are read in file-name order
    ([('/etc/modprobe.d', ['vfio.conf', 'a.conf']), ('/lib/modprobe.d', ['vfio.conf', 'aliases.conf'])],
     ['/etc/modprobe.d/a.conf', '/lib/modprobe.d/aliases.conf', '/etc/modprobe.d/vfio.conf']),
    ([('/etc/modprobe.d', ['README', 'x.conf.dpkg-old']), ('/run/modprobe.d/', ['x.conf'])], ['/run/modprobe.d/x.conf']),
    # "-" sorts before ".": this collection's file is read before a wiki's vfio.conf, which then wins
    ([('/etc/modprobe.d', ['vfio.conf', 'vfio-passthrough.conf'])],
     ['/etc/modprobe.d/vfio-passthrough.conf', '/etc/modprobe.d/vfio.conf']),
    ([], []),
])
def test_conf_read_order_follows_kmod(listings, expected):
    assert conf_read_order(listings) == expected


@pytest.mark.parametrize('text, expected', [
    (fixture('wiki-vfio.conf'), [(2, ['10de:1b80', '10de:10f0'], 'options vfio-pci ids=10de:1b80,10de:10f0 disable_vga=1')]),
    ('options vfio_pci ids="10DE:1B80" # GPU\n', [(1, ['10de:1b80'], 'options vfio_pci ids="10DE:1B80" # GPU')]),
    ('options vfio-pci disable_vga=1\noptions vfio_iommu_type1 ids=1:2\n# options vfio-pci ids=1:2\n', []),
    ('options vfio-pci ids=1:2 ids=3:4\n', [(1, ['3:4'], 'options vfio-pci ids=1:2 ids=3:4')]),
    ('options vfio-pci \\\n  ids=10de:1b80\n', [(1, ['10de:1b80'], 'options vfio-pci   ids=10de:1b80')]),
])
def test_vfio_ids_settings(text, expected):
    assert vfio_ids_settings(text) == expected


@pytest.mark.parametrize('ids, refused', [
    (['10de:1b80', '10de:10f0'], False),
    (['10DE:10F0', '10de:1b80'], False),     # the same set, other order and case
    (['10de:1b80'], True),
    (['10de:1b80', '10de:10f0', '8086:1533'], True),
])
def test_competing_vfio_ids_refuses_any_other_list_naming_file_and_line(ids, refused):
    problems = competing_vfio_ids([('/etc/modprobe.d/pve-blacklist.conf', fixture('pve-blacklist.conf')),
                                   ('/etc/modprobe.d/vfio.conf', fixture('wiki-vfio.conf'))], ids)
    assert bool(problems) is refused
    if refused:
        assert problems == ["/etc/modprobe.d/vfio.conf line 2 sets 'options vfio-pci ids=10de:1b80,10de:10f0 "
                            "disable_vga=1', which competes with the ids=%s this run writes (modprobe joins the "
                            "options lines of all files in file-name order and the last ids= wins): remove that "
                            "line or make it list exactly these IDs" % ','.join(ids)]


# --- owned files ------------------------------------------------------------

def test_render_owned_matches_golden():
    assert render_owned(OWNER, VFIO) == fixture('modules-load.expected')
    assert is_owned(fixture('modules-load.expected'), OWNER)
    assert not is_owned(fixture('modules.debian12'), OWNER)
    assert not is_owned(render_owned('driver_blacklist', ['blacklist x']), OWNER)
    assert header(OWNER) + '\n' == render_owned(OWNER, [])


@pytest.mark.parametrize('current, lines, expected', [
    (None, VFIO, 'golden'),
    (None, [], None),
    ('golden', [], None),
    ('golden', VFIO, 'golden'),
    (render_owned(OWNER, ['vfio', 'edited-by-hand']), VFIO, 'golden'),
])
def test_plan_owned_file(current, lines, expected):
    golden = fixture('modules-load.expected')
    current = golden if current == 'golden' else current
    expected = golden if expected == 'golden' else expected
    assert plan_file(current, OWNER, lines, modules_load_keys) == expected


# --- shared files -----------------------------------------------------------

@pytest.mark.parametrize('name', ['initramfs-modules.debian12', 'modules.debian12'])
def test_plan_shared_debian_files_match_golden(name):
    before = fixture(name)
    after = plan_file(before, OWNER, VFIO, modules_load_keys, shared_only=True)
    assert after == fixture(name + '.expected')
    assert plan_file(after, OWNER, VFIO, modules_load_keys, shared_only=True) == after
    assert plan_file(after, OWNER, [], modules_load_keys, shared_only=True) == before


def test_existing_file_without_header_is_treated_as_shared():
    before = fixture('modules.debian12')
    after = plan_file(before, OWNER, VFIO, modules_load_keys, shared_only=False)
    assert after == fixture('modules.debian12.expected')


def test_line_already_present_is_not_added_twice():
    before = 'loop\nvfio-pci   # added by hand\n  vfio\n'
    after = plan_file(before, OWNER, VFIO, initramfs_modules_keys, shared_only=True)
    assert after == before + BEGIN + '\nvfio_iommu_type1\n' + END + '\n'


def test_all_present_means_no_block_and_an_old_block_goes():
    before = 'vfio\nvfio_iommu_type1\nvfio_pci\n'
    assert plan_file(before, OWNER, VFIO, modules_load_keys, shared_only=True) == before
    stale = before + BEGIN + '\nvfio_virqfd\n' + END + '\n'
    assert plan_file(stale, OWNER, VFIO, modules_load_keys, shared_only=True) == before


def test_unmarked_admin_line_survives_absent():
    before = 'vfio_pci\n' + BEGIN + '\nvfio\n' + END + '\nloop'
    assert plan_file(before, OWNER, [], modules_load_keys, shared_only=True) == 'vfio_pci\nloop'


def test_block_is_replaced_in_place_and_duplicates_collapse():
    text = 'a\n' + BEGIN + '\nold\n' + END + '\nb\n' + BEGIN + '\nold2\n' + END + '\nc'
    assert set_block(text, OWNER, ['new']) == 'a\n' + BEGIN + '\nnew\n' + END + '\nb\nc'


def test_missing_final_newline_gets_one_before_a_new_block():
    assert set_block('loop', OWNER, ['vfio']) == 'loop\n' + BEGIN + '\nvfio\n' + END + '\n'
    assert set_block('loop', OWNER, []) == 'loop'


def test_missing_file_shared_only_created_and_removed():
    created = plan_file(None, OWNER, ['vfio'], modules_load_keys, shared_only=True)
    assert created == BEGIN + '\nvfio\n' + END + '\n'
    assert plan_file(created, OWNER, [], modules_load_keys, shared_only=True) is None
    assert plan_file(None, OWNER, [], modules_load_keys, shared_only=True) is None
    assert plan_file('', OWNER, [], modules_load_keys, shared_only=True) == ''


def test_other_owners_block_is_left_alone():
    other_begin, other_end = block_markers('driver_blacklist')
    text = other_begin + '\nblacklist x\n' + other_end + '\n'
    assert outside_block(text, OWNER) == text
    assert set_block(text, OWNER, []) == text


@pytest.mark.parametrize('text, line', [
    (BEGIN + '\nvfio\n', 1),
    ('x\n' + END + '\n', 2),
    (BEGIN + '\n' + BEGIN + '\n' + END + '\n', 2),
])
def test_broken_markers_are_refused_with_line_number(text, line):
    with pytest.raises(ValueError) as err:
        plan_file(text, OWNER, VFIO, modules_load_keys, shared_only=True, path='/etc/modules')
    assert '/etc/modules: line %d' % line in str(err.value)


# --- properties -------------------------------------------------------------

_admin_line = st.one_of(
    st.sampled_from(['# comment', '', 'loop', 'vfio_pci # mine', 'raid1', '  ', '; old style', 'dm-crypt',
                     '# BEGIN something else', 'vfio_virqfd', 'options vfio-pci ids=10de:1b80']),
    st.text(alphabet=st.characters(blacklist_characters='\n', blacklist_categories=('Cs',)), max_size=30)
    .filter(lambda s: 'vfio.passthrough' not in s),
)
_admin_text = st.builds(
    lambda lines, final: '\n'.join(lines) + ('\n' if final and lines else ''),
    st.lists(_admin_line, max_size=8), st.booleans(),
)
_wanted = st.lists(st.sampled_from(VFIO + ['vfio_virqfd', 'loop', 'raid1']), unique=True, max_size=5)


@settings(max_examples=300)
@given(_admin_text, _wanted, st.sampled_from([modules_load_keys, modprobe_keys]))
def test_property_apply_twice_equals_once(text, wanted, keys):
    once = plan_file(text, OWNER, wanted, keys, shared_only=True)
    twice = plan_file(once, OWNER, wanted, keys, shared_only=True)
    assert twice == once


@settings(max_examples=300)
@given(_admin_text, _wanted)
def test_property_admin_lines_survive_and_wanted_present(text, wanted):
    after = plan_file(text, OWNER, wanted, modules_load_keys, shared_only=True) or ''
    # Everything the admin wrote is still there, in order, byte for byte.
    assert outside_block(after, OWNER).rstrip('\n') == text.rstrip('\n')
    assert after.startswith(text.rstrip('\n'))
    assert set(wanted) <= modules_load_keys(after)
    removed = plan_file(after, OWNER, [], modules_load_keys, shared_only=True)
    if after == text:
        assert removed == text  # nothing was added, so nothing is removed
    elif text.endswith('\n') or not text:
        assert removed == (text or None)  # exact round trip; a file that only held our block goes
    else:
        assert removed == text + '\n'  # the newline added to start the block on its own line stays
