"""The report from sysfs captured on real Debian 12 and 13 kernels in QEMU guests (tests/fixtures/real,
tests/unit/real_captures.py).

The Markdown is compared with golden files (tests/fixtures/report/<capture>.md);
after an intended change, rewrite them with REPORT_GOLDEN_UPDATE=1 and review the diff.
"""

from __future__ import annotations

import os
import tarfile

import pytest

from ansible_collections.vfio.passthrough.plugins.plugin_utils._report_html import render_html
from ansible_collections.vfio.passthrough.plugins.plugin_utils._report_index import render_index_html
from ansible_collections.vfio.passthrough.plugins.plugin_utils._report_markdown import render_markdown
from ansible_collections.vfio.passthrough.plugins.plugin_utils._report_verdicts import device_verdicts
from real_captures import REAL, captures, parse
from report_pages import STROKE, check_page, facts_of, group_boxes, parse_page

GOLDEN = REAL.parent / 'report'
CAPTURES = captures()
_E1000E = ('8086', '10d3')


@pytest.fixture(scope='module')
def real_facts(tmp_path_factory):
    facts = {}
    for name in CAPTURES:
        root = tmp_path_factory.mktemp(name)
        with tarfile.open(REAL / name / 'sysfs.tar.gz') as tar:
            tar.extractall(root, filter='tar')
        facts[name] = facts_of(root)
    return facts


@pytest.mark.parametrize('name', CAPTURES)
def test_markdown_matches_golden(real_facts, name):
    text = render_markdown(real_facts[name], name)
    golden = GOLDEN / (name + '.md')
    if os.environ.get('REPORT_GOLDEN_UPDATE') == '1':
        golden.parent.mkdir(parents=True, exist_ok=True)
        golden.write_text(text, encoding='utf-8')
    assert golden.is_file(), 'no golden %s: run with REPORT_GOLDEN_UPDATE=1 and review it' % golden
    assert text == golden.read_text(encoding='utf-8')


def test_every_golden_has_its_capture():
    # After test_markdown_matches_golden, which writes the goldens under REPORT_GOLDEN_UPDATE=1.
    # The list comes from the directory, so a refresh needs no edit; a golden left without its
    # capture (one renamed or lost) would mean a check silently dropped.
    assert CAPTURES, 'no capture under %s' % REAL
    for name in CAPTURES:
        parse(name)
    assert sorted(p.stem for p in GOLDEN.glob('*.md')) == CAPTURES


@pytest.mark.parametrize('name', CAPTURES)
def test_page_of_a_real_guest(real_facts, name):
    facts = real_facts[name]
    _page, svg = check_page(render_html(facts, name), facts)
    verdicts = {a: v['verdict'] for a, v in device_verdicts(facts).items()}
    e1000e = sorted(a for a, d in facts['devices'].items() if (d['vendor_id'], d['device_id']) == _E1000E)
    management = [a for a, d in facts['devices'].items()
                  if any(r.endswith('carries the default route') for r in d['host_critical'])]
    root_disk = [a for a, d in facts['devices'].items() if any('storage controller of /' in r for r in d['host_critical'])]
    # the virtio NIC of the default route and the virtio disk under / stay with the host in every boot
    assert len(management) == 1 and verdicts[management[0]] == 'host-critical'
    assert len(root_disk) == 1 and verdicts[root_disk[0]] == 'host-critical'
    boxes = group_boxes(svg)
    if name.endswith('-before'):
        # booted with the IOMMU off: no groups, one box for the ungrouped devices
        assert list(boxes) == ['group-none'] and boxes['group-none'][0] == STROKE['iommu-off']
        assert [verdicts[a] for a in e1000e] == ['iommu-off']
    else:
        # after the role: the requested e1000e is on vfio-pci in its own group
        passed = [a for a in e1000e if facts['devices'][a]['driver'] == 'vfio-pci']
        assert len(passed) == 1 and verdicts[passed[0]] == 'vfio'
        assert boxes['group-%d' % facts['devices'][passed[0]]['iommu_group']] == (STROKE['vfio'], passed)
    if parse(name)['variant'] == 'twins':
        # the identical twin kept by the host carries an IPv6 default route in this capture
        kept = [a for a in e1000e if facts['devices'][a]['driver'] == 'e1000e']
        assert [verdicts[a] for a in kept] == ['host-critical']


def test_index_of_the_real_guests(real_facts):
    text = render_index_html(real_facts)
    page = parse_page(text)
    assert [a['href'] for t, a in page.elements if t == 'a'] == ['%s/iommu.html' % n for n in CAPTURES]
    rows = [r for r in text.split('<tr>') if r.startswith('<td><a href=')]
    off = [r for r in rows if '>OFF<' in r]
    # the IOMMU is off exactly in the captures taken before the role
    before = [n for n in CAPTURES if parse(n)['phase'] == 'before']
    assert before and [r.split('"', 2)[1] for r in off] == ['%s/iommu.html' % n for n in before]
