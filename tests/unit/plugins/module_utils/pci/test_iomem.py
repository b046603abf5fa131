"""_iomem and its use in the facts: /proc/iomem texts of real layouts (tests/fixtures/iomem) against GPU BARs."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ansible_collections.vfio.passthrough.plugins.module_utils.pci._iomem import (
    HIDDEN, READABLE, UNREADABLE, find_framebuffers, framebuffer_hint, framebuffer_in_bars, iomem_state,
    parse_iomem, parse_resource,
)
from ansible_collections.vfio.passthrough.plugins.module_utils.pci._iommu_facts import gather_iommu_facts

sys.path.insert(0, str(Path(__file__).resolve().parents[4]))
from sysfs_builder import NVIDIA_BARS, FakeHost  # noqa: E402

IOMEM = Path(__file__).resolve().parents[4] / 'fixtures' / 'iomem'

# The GPUs of each layout: address, class, the BARs its sysfs resource file shows (by index; None unused).
RADEON_BARS = [(0xc0000000, 0xcfffffff, 0x14220c), None, (0xd0000000, 0xd01fffff, 0x14220c), None,
               (0xf000, 0xf0ff, 0x40101), (0xfc900000, 0xfc97ffff, 0x40200), None]
AST_BARS = [(0x90000000, 0x90ffffff, 0x40200), (0x91000000, 0x9103ffff, 0x40200), (0x3000, 0x307f, 0x40101)]
TESLA_BARS = [(0xc5000000, 0xc5ffffff, 0x40200), (0x38000000000, 0x387ffffffff, 0x14220c), None,
              (0x38800000000, 0x38801ffffff, 0x14220c), None, None, (0xc6000000, 0xc607ffff, 0x46200)]

LAYOUTS = {
    # name: (fixture, {address: (class, boot_vga, BARs)}, iomem state, {address: framebuffer facts})
    'bootfb under the GPU BAR (Proxmox VE 8/9, simpledrm)': (
        'bootfb-intel-nvidia.txt', {'0000:01:00.0': ('030000', True, NVIDIA_BARS)}, READABLE,
        {'0000:01:00.0': {'name': 'BOOTFB', 'start': '0x6000000000', 'end': '0x60007e8fff', 'bar': 1,
                          'bar_start': '0x6000000000', 'bar_end': '0x600fffffff'}}),
    'efifb (Proxmox VE 7, kernel 5.15)': (
        'efifb-amd-radeon.txt', {'0000:0a:00.0': ('030000', True, RADEON_BARS)}, READABLE,
        {'0000:0a:00.0': {'name': 'efifb', 'start': '0xc0000000', 'end': '0xc02fffff', 'bar': 0,
                          'bar_start': '0xc0000000', 'bar_end': '0xcfffffff'}}),
    'no framebuffer (booted with initcall_blacklist=sysfb_init)': (
        'none-intel-nvidia.txt', {'0000:01:00.0': ('030000', True, NVIDIA_BARS)}, READABLE, {}),
    'the BMC holds the console, not the GPU': (
        'bmc-simpledrm.txt', {'0000:03:00.0': ('030000', True, AST_BARS), '0000:18:00.0': ('030200', False, TESLA_BARS)},
        READABLE,
        {'0000:03:00.0': {'name': 'BOOTFB', 'start': '0x90000000', 'end': '0x902fffff', 'bar': 0,
                          'bar_start': '0x90000000', 'bar_end': '0x90ffffff'}}),
    'read as non-root: every address zero': (
        'nonroot-zeros.txt', {'0000:01:00.0': ('030000', True, NVIDIA_BARS)}, HIDDEN, {}),
}


def _framebuffers(name):
    return find_framebuffers(parse_iomem((IOMEM / name).read_text()))


@pytest.mark.parametrize('name, found', [
    ('bootfb-intel-nvidia.txt', [('BOOTFB', 0x6000000000, 0x60007e8fff)]),
    ('efifb-amd-radeon.txt', [('efifb', 0xc0000000, 0xc02fffff)]),
    ('none-intel-nvidia.txt', []),
    ('bmc-simpledrm.txt', [('BOOTFB', 0x90000000, 0x902fffff), ('simpledrm', 0x90000000, 0x902fffff)]),
    ('nonroot-zeros.txt', [('BOOTFB', 0, 0)]),
])
def test_framebuffers_in_real_layouts(name, found):
    assert _framebuffers(name) == found


def test_parse_iomem_nests_by_indentation():
    ranges = parse_iomem((IOMEM / 'bootfb-intel-nvidia.txt').read_text())
    top = [r for r in ranges if r['name'] == 'PCI Bus 0000:00' and r['start'] == 0x4000000000][0]
    bus = [c for c in top['children'] if c['name'] == 'PCI Bus 0000:01'][0]
    assert [(c['name'], hex(c['start']), hex(c['end'])) for c in bus['children']] == [
        ('0000:01:00.0', '0x6000000000', '0x600fffffff'), ('0000:01:00.0', '0x6010000000', '0x6011ffffff')]
    assert [(c['name'], c['children']) for c in bus['children'][0]['children']] == [('BOOTFB', [])]


@pytest.mark.parametrize('text, state', [
    ((IOMEM / 'bootfb-intel-nvidia.txt').read_text(), READABLE),
    ((IOMEM / 'nonroot-zeros.txt').read_text(), HIDDEN),
    ('', UNREADABLE),
    (None, UNREADABLE),
    ('garbage\n', UNREADABLE),
])
def test_iomem_state(text, state):
    assert iomem_state(text, parse_iomem(text)) == state


def test_resource_file_bars():
    host_text = '\n'.join('0x%016x 0x%016x 0x%016x' % (r or (0, 0, 0)) for r in NVIDIA_BARS + [None] * 6)
    # memory BARs only, ROM (line 6) and the I/O BAR left out
    assert parse_resource(host_text) == [(0, 0xd0000000, 0xd0ffffff), (1, 0x6000000000, 0x600fffffff),
                                         (3, 0x6010000000, 0x6011ffffff)]
    assert parse_resource(None) == [] and parse_resource('0x1 0x2\nnot hex at all\n') == []


@given(st.integers(0, 2 ** 40), st.integers(1, 2 ** 28), st.integers(0, 2 ** 28), st.integers(1, 2 ** 24))
def test_framebuffer_is_placed_only_inside_a_bar(bar_start, bar_size, offset, fb_size):
    region = (1, bar_start, bar_start + bar_size - 1)
    fb = ('BOOTFB', bar_start + offset, bar_start + offset + fb_size - 1)
    found = framebuffer_in_bars([region], [fb])
    assert (found is not None) == (offset + fb_size <= bar_size)


@pytest.mark.parametrize('layout', sorted(LAYOUTS))
def test_facts_name_the_bar_holding_the_framebuffer(tmp_path, layout):
    fixture, gpus, state, held = LAYOUTS[layout]
    host = FakeHost(tmp_path)
    for address, (class_, boot_vga, bars) in gpus.items():
        host.add_device(address, '10de', '1b80', class_, driver='vfio-pci', group=1, boot_vga=boot_vga)
        host.resource(address, bars)
    host.iomem((IOMEM / fixture).read_text())
    facts = gather_iommu_facts(str(tmp_path))
    assert facts['iomem'] == state
    assert {a: d['boot_framebuffer'] for a, d in facts['devices'].items() if d['boot_framebuffer']} == held


def test_facts_without_iomem(tmp_path):
    host = FakeHost(tmp_path)
    host.add_device('0000:01:00.0', '10de', '1b80', '030000', driver='nouveau', group=1, boot_vga=True)
    facts = gather_iommu_facts(str(tmp_path))
    assert facts['iomem'] == UNREADABLE and facts['devices']['0000:01:00.0']['boot_framebuffer'] is None


@pytest.mark.parametrize('layout, level, has, lacks', [
    ('bootfb under the GPU BAR (Proxmox VE 8/9, simpledrm)', 'warning',
     ['0000:01:00.0 BAR 1 (0x6000000000-0x600fffffff) holds the boot framebuffer BOOTFB 0x6000000000-0x60007e8fff',
      'initcall_blacklist=sysfb_init'], []),
    ('efifb (Proxmox VE 7, kernel 5.15)', 'warning',
     ['0000:0a:00.0 BAR 0 (0xc0000000-0xcfffffff) holds the boot framebuffer efifb 0xc0000000-0xc02fffff',
      'initcall_blacklist=sysfb_init'], []),
    ('no framebuffer (booted with initcall_blacklist=sysfb_init)', 'note',
     ['shows no boot framebuffer in its BARs', 'no kernel argument is needed'], ['initcall_blacklist']),
    ('read as non-root: every address zero', 'warning',
     ['shows only zero addresses (read without root)', 'no kernel argument is suggested'], ['initcall_blacklist']),
])
def test_hint_suggests_an_argument_only_with_evidence(tmp_path, layout, level, has, lacks):
    fixture, gpus, _state, _held = LAYOUTS[layout]
    host = FakeHost(tmp_path)
    address, (class_, boot_vga, bars) = next(iter(gpus.items()))
    host.add_device(address, '10de', '1b80', class_, driver='nouveau', group=1, boot_vga=boot_vga)
    host.resource(address, bars)
    host.iomem((IOMEM / fixture).read_text())
    facts = gather_iommu_facts(str(tmp_path))
    hint = framebuffer_hint(address, facts['devices'][address], facts['iomem'])
    assert hint[0] == level
    assert all(text in hint[1] for text in has) and not any(text in hint[1] for text in lacks), hint


def test_no_hint_for_a_gpu_that_neither_booted_nor_holds_a_framebuffer():
    """The data-centre GPU of the BMC layout: not boot VGA, no framebuffer in its BARs."""
    assert framebuffer_hint('0000:18:00.0', {'boot_vga': False, 'boot_framebuffer': None}, READABLE) is None
