"""The IOMMU readiness report (module_utils/_report.py, filter/report.py): verdicts, Markdown, HTML with SVG, index.

Pages are checked with real parsers: html.parser with a nesting check for the
page, xml.etree for the SVG. ``check_page`` and ``facts_of`` are shared with
test_report_real.py and test_report_playbook.py.
"""

from __future__ import annotations

import re
import tempfile
import xml.etree.ElementTree as ET
from html.parser import HTMLParser

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ansible.errors import AnsibleFilterError

from ansible_collections.vfio.passthrough.plugins.filter import report as report_filter
from ansible_collections.vfio.passthrough.plugins.module_utils._report import (
    VERDICTS, device_verdict, device_verdicts, group_verdict, render_html, render_index_html,
    render_index_markdown, render_markdown, report_summary,
)
from ansible_collections.vfio.passthrough.plugins.modules import iommu_facts
from module_runner import run_module
from sysfs_builder import (
    FakeHost, amd_twin_nic_host, generated_host, igb_mgmt_host, intel_gpu_host, iommu_off_host,
)

SVG_NS = '{http://www.w3.org/2000/svg}'
STROKE = {key: stroke for key, _label, stroke, _fill, _meaning in VERDICTS}
_VOID = {'area', 'base', 'br', 'col', 'embed', 'hr', 'img', 'input', 'link', 'meta', 'source', 'track', 'wbr'}
# Elements that fetch or run something; a report page has none of them.
_FORBIDDEN = {'script', 'link', 'img', 'iframe', 'object', 'embed', 'image', 'use', 'foreignobject', 'audio',
              'video', 'source', 'form', 'base'}
_URL_ATTRS = {'src', 'href', 'xlink:href', 'action', 'formaction', 'srcset', 'poster', 'data', 'background'}


def facts_of(root):
    """ansible_facts['iommu'] of the tree under ``root``, from the real module."""
    result = run_module(iommu_facts.main, {'root': str(root)})
    assert not result.get('failed'), result
    return result['ansible_facts']['iommu']


class _Page(HTMLParser):
    """Parses a whole page, failing on any element closed out of order or left open."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.stack, self.elements, self.text, self.errors = [], [], [], []

    def handle_starttag(self, tag, attrs):
        self.elements.append((tag, dict(attrs)))
        if tag not in _VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag, attrs):
        # <rect .../> inside inline SVG: self-closing is legal there.
        self.elements.append((tag, dict(attrs)))

    def handle_endtag(self, tag):
        if not self.stack or self.stack[-1] != tag:
            self.errors.append('</%s> closes %s' % (tag, self.stack[-1] if self.stack else 'nothing'))
        else:
            self.stack.pop()

    def handle_data(self, data):
        self.text.append(data)


def parse_page(text):
    page = _Page()
    page.feed(text)
    page.close()
    assert not page.errors, page.errors[:5]
    assert page.stack == [], 'elements left open: %s' % page.stack
    return page


def svg_of(text):
    """The inline SVG of a page, parsed as XML (so it must be well-formed on its own)."""
    start, end = text.index('<svg'), text.index('</svg>') + len('</svg>')
    assert text.count('<svg') == 1
    root = ET.fromstring(text[start:end])
    assert root.tag == SVG_NS + 'svg'
    return root


def assert_self_contained(page, text, local_links=('#',)):
    assert text.startswith('<!DOCTYPE html>')
    for tag, attrs in page.elements:
        assert tag not in _FORBIDDEN, (tag, attrs)
        assert not any(name.startswith('on') for name in attrs), (tag, attrs)
        for name, value in attrs.items():
            if name in _URL_ATTRS:
                assert not re.match(r'\s*([a-z][a-z0-9+.-]*:|//)', value or '', re.I), (tag, name, value)
                assert (value or '').startswith(local_links), (tag, name, value)
    styles = ''.join(re.findall(r'<style>(.*?)</style>', text, re.S))
    assert styles and 'url(' not in styles and '@import' not in styles
    csp = [a for t, a in page.elements if t == 'meta' and a.get('http-equiv') == 'Content-Security-Policy']
    assert csp and "default-src 'none'" in csp[0]['content'] and 'script-src' not in csp[0]['content']


def check_page(text, facts):
    """Everything a host page must satisfy for these facts; returns the parsed page and SVG."""
    page = parse_page(text)
    assert_self_contained(page, text)
    svg = svg_of(text)
    devices = facts['devices']
    ids = {attrs.get('id') for _tag, attrs in page.elements}
    # every device: a row in the devices table and a box in the picture
    assert {'dev-' + a for a in devices} <= ids
    tips = [t.text for g in svg.iter(SVG_NS + 'g') if g.get('class') == 'device' for t in g.findall(SVG_NS + 'title')]
    assert sorted(tip.split(' ', 1)[0] for tip in tips) == sorted(devices)
    # every group: one box
    boxes = {g.get('id') for g in svg.iter(SVG_NS + 'g') if g.get('class') == 'group'}
    expected = {'group-%s' % n for n in facts['groups']}
    if any(d['iommu_group'] is None for d in devices.values()):
        expected.add('group-none')
    assert boxes == expected
    return page, svg


def group_boxes(svg):
    """{group id: (stroke of its box, [device addresses in it])}."""
    result = {}
    for g in svg.iter(SVG_NS + 'g'):
        if g.get('class') == 'group':
            members = [t.text.split(' ', 1)[0] for d in g.iter(SVG_NS + 'g') if d.get('class') == 'device'
                       for t in d.findall(SVG_NS + 'title')]
            result[g.get('id')] = (g.find(SVG_NS + 'rect').get('stroke'), members)
    return result


def _md_rows(text, heading):
    section = text.split('## %s\n' % heading, 1)[1].split('\n## ', 1)[0]
    return [line for line in section.splitlines() if line.startswith('| ')][2:]


def _cells(row):
    return re.split(r'(?<!\\)\|', row.strip())[1:-1]


# -- verdicts, table-driven -----------------------------------------------------------

def _dev(cls='020000', driver='e1000e', group=1, peers=(), resets=('flr', 'bus'), critical=(), boot_vga=False):
    return {'class': cls, 'class_name': 'Class %s' % cls, 'driver': driver, 'iommu_group': group,
            'group_peers': list(peers), 'reset_methods': list(resets), 'host_critical': list(critical),
            'boot_vga': boot_vga, 'vendor_id': '8086', 'device_id': '10d3'}


A, A1, B, BR = '0000:03:00.0', '0000:03:00.1', '0000:04:00.0', '0000:00:01.0'


@pytest.mark.parametrize('name, devices, enabled, verdict, reason_has, notes_have', [
    ('ready: alone, FLR', {A: _dev()}, True, 'ready', ['group 1'], []),
    ('ready: AF FLR counts as FLR', {A: _dev(resets=('af',))}, True, 'ready', [], []),
    ('ready: only a PCI bridge beside it', {A: _dev(peers=[BR]), BR: _dev(cls='060400', driver='pcieport', peers=[A])},
     True, 'ready', [], []),
    ('no FLR: pm only', {A: _dev(resets=('pm',))}, True, 'no-flr', ['resets only by pm'], []),
    ('no FLR: no reset at all', {A: _dev(resets=())}, True, 'no-flr', ['no reset method'], []),
    ('shares group with its other function', {A: _dev(peers=[A1]), A1: _dev(peers=[A])}, True, 'shares-group',
     [A1, 'pass them together'], []),
    ('needs ACS: another card in the group', {A: _dev(peers=[B]), B: _dev(peers=[A])}, True, 'needs-acs',
     [B, 'pcie_acs_override', 'peer-to-peer'], []),
    ('needs ACS names only the foreign peer', {A: _dev(peers=[A1, B]), A1: _dev(peers=[A, B]), B: _dev(peers=[A, A1])},
     True, 'needs-acs', [B], []),
    ('needs ACS: a peer the facts do not list', {A: _dev(peers=[B])}, True, 'needs-acs', [B], []),
    ('needs ACS: a host bridge is not a PCI bridge', {A: _dev(peers=['0000:00:00.0']),
                                                      '0000:00:00.0': _dev(cls='060000', driver=None, peers=[A])},
     True, 'needs-acs', ['0000:00:00.0'], []),
    ('host-critical names why', {A: _dev(critical=['NIC eno1 carries the default route'])}, True, 'host-critical',
     ['NIC eno1 carries the default route'], []),
    ('host-critical before IOMMU off', {A: _dev(group=None, critical=['storage controller of /'])}, False,
     'host-critical', ['storage controller of /'], []),
    ('on vfio-pci', {A: _dev(driver='vfio-pci')}, True, 'vfio', ['vfio-pci'], []),
    ('on vfio-pci, a peer still on the host', {A: _dev(driver='vfio-pci', peers=[B]), B: _dev(peers=[A])}, True,
     'vfio', [], [B, 'does not start']),
    ('on vfio-pci, peers without a driver or on pci-stub are fine',
     {A: _dev(driver='vfio-pci', peers=[B, A1]), B: _dev(driver=None, peers=[A, A1]),
      A1: _dev(driver='pci-stub', peers=[A, B])}, True, 'vfio', [], []),
    ('a peer without a class is not a bridge', {A: _dev(peers=[B]), B: {'iommu_group': 1}}, True, 'needs-acs', [B], []),
    ('on vfio-pci without FLR', {A: _dev(driver='vfio-pci', resets=('pm',))}, True, 'vfio', [], ['pm']),
    ('PCI bridge is platform', {BR: _dev(cls='060400', driver='pcieport')}, True, 'platform', ['platform'], []),
    ('the IOMMU itself, in no group', {A: _dev(cls='080600', driver=None, group=None)}, True, 'platform', [], []),
    ('IOMMU off', {A: _dev(group=None)}, False, 'iommu-off', ['IOMMU is off'], []),
    ('no group although the IOMMU is on', {A: _dev(group=None)}, True, 'iommu-off', ['no IOMMU group'], []),
    ('boot VGA noted', {A: _dev(cls='030000', boot_vga=True)}, True, 'ready', [], ['boot VGA', 'sysfb_init']),
    ('a host-critical peer blocks the group', {A: _dev(peers=[A1]), A1: _dev(peers=[A], critical=['NIC x'])}, True,
     'shares-group', [], [A1 + ' in the same IOMMU group is host-critical']),
])
def test_device_verdict(name, devices, enabled, verdict, reason_has, notes_have):
    result = device_verdict(A if A in devices else next(iter(devices)), devices, enabled)
    assert result['verdict'] == verdict, (name, result)
    assert result['label'] == dict((v[0], v[1]) for v in VERDICTS)[verdict]
    for text in reason_has:
        assert text in result['reason'], (name, result)
    notes = ' | '.join(result['notes'])
    for text in notes_have:
        assert text in notes, (name, result)
    if not notes_have:
        assert [n for n in result['notes'] if 'reset' not in n] == [], (name, result)


@pytest.mark.parametrize('members, expected', [
    ([], 'platform'),
    (['platform'], 'platform'),
    (['platform', 'ready'], 'ready'),
    (['ready', 'no-flr'], 'no-flr'),
    (['vfio', 'ready'], 'ready'),
    (['vfio', 'platform'], 'vfio'),
    (['shares-group', 'host-critical', 'ready'], 'host-critical'),
    (['shares-group', 'needs-acs'], 'needs-acs'),
    (['iommu-off', 'needs-acs'], 'iommu-off'),
])
def test_group_verdict_is_the_worst_member(members, expected):
    assert group_verdict(members) == expected


# -- canned hosts ---------------------------------------------------------------------------

_PLATFORM = 'platform'
CANNED = {
    'intel_gpu_host': (intel_gpu_host, {
        '0000:00:00.0': _PLATFORM, '0000:00:01.0': _PLATFORM, '0000:00:14.0': 'ready', '0000:00:17.0': 'host-critical',
        '0000:00:1f.0': _PLATFORM, '0000:00:1f.4': 'shares-group', '0000:00:1f.6': 'host-critical',
        '0000:01:00.0': 'shares-group', '0000:01:00.1': 'shares-group',
    }, {'0': _PLATFORM, '1': 'shares-group', '2': 'ready', '3': 'host-critical', '4': 'host-critical'}),
    'amd_twin_nic_host': (amd_twin_nic_host, {
        '0000:00:00.0': _PLATFORM, '0000:00:00.2': _PLATFORM, '0000:00:02.1': _PLATFORM, '0000:00:03.1': _PLATFORM,
        '0000:00:03.2': _PLATFORM, '0000:05:00.0': 'needs-acs', '0000:06:00.0': 'needs-acs',
        '0000:07:00.0': 'host-critical', '0000:08:00.0': 'host-critical', '0000:09:00.0': 'vfio',
    }, {'0': _PLATFORM, '1': _PLATFORM, '3': 'needs-acs', '4': 'host-critical', '5': 'host-critical', '6': 'vfio'}),
    'igb_mgmt_host': (igb_mgmt_host, {
        '0000:00:00.0': _PLATFORM, '0000:00:00.2': _PLATFORM, '0000:00:02.1': _PLATFORM, '0000:00:02.2': _PLATFORM,
        '0000:00:03.1': _PLATFORM, '0000:00:03.2': _PLATFORM, '0000:05:00.0': 'needs-acs', '0000:06:00.0': 'needs-acs',
        '0000:07:00.0': 'host-critical', '0000:08:00.0': 'host-critical',
    }, {'0': _PLATFORM, '1': _PLATFORM, '3': 'needs-acs', '4': 'host-critical', '5': 'host-critical'}),
    'iommu_off_host': (iommu_off_host, {
        '0000:00:00.0': _PLATFORM, '0000:00:01.0': 'iommu-off', '0000:00:02.0': 'host-critical',
        '0000:00:03.0': 'iommu-off', '0000:00:04.0': 'host-critical',
    }, {'none': 'iommu-off'}),
}


@pytest.fixture(params=sorted(CANNED))
def canned(request, tmp_path):
    build, devices, groups = CANNED[request.param]
    build(tmp_path)
    return request.param, facts_of(tmp_path), devices, groups


def test_canned_host_verdicts(canned):
    _name, facts, expected, _groups = canned
    assert {a: v['verdict'] for a, v in device_verdicts(facts).items()} == expected


def test_canned_host_page(canned):
    name, facts, expected, groups = canned
    text = render_html(facts, name)
    page, svg = check_page(text, facts)
    boxes = group_boxes(svg)
    # each group box is coloured by its verdict and holds exactly the group's devices
    assert {g[len('group-'):]: stroke for g, (stroke, _m) in boxes.items()} == {g: STROKE[v] for g, v in groups.items()}
    for number, group in facts['groups'].items():
        assert boxes['group-' + number][1] == sorted(group['devices'])
    text_nodes = ' '.join(page.text)
    assert 'IOMMU report: %s' % name in text_nodes
    for address, verdict in expected.items():
        row = re.search(r'<tr id="dev-%s">(.*?)</tr>' % re.escape(address), text).group(1)
        assert '>%s<' % dict((v[0], v[1]) for v in VERDICTS)[verdict] in row, (address, row)


def test_canned_host_markdown(canned):
    name, facts, expected, groups = canned
    text = render_markdown(facts, name)
    assert text.startswith('# IOMMU report: %s\n' % name)
    rows = _md_rows(text, 'Devices')
    assert [_cells(r)[0].strip() for r in rows] == sorted(facts['devices'])
    assert all(len(_cells(r)) == 10 for r in rows)
    labels = dict((v[0], v[1]) for v in VERDICTS)
    for row in rows:
        cells = _cells(row)
        address, device = cells[0].strip(), facts['devices'][cells[0].strip()]
        assert cells[1].strip() == '%s:%s' % (device['vendor_id'], device['device_id'])
        assert cells[9].strip().startswith('**%s**' % labels[expected[address]])
    group_rows = _md_rows(text, 'IOMMU groups')
    assert [_cells(r)[0].strip() for r in group_rows] == [('-' if g == 'none' else g) for g in groups]
    assert [_cells(r)[2].strip() for r in group_rows] == [labels[v] for v in groups.values()]


def test_iommu_off_host_shows_the_state(tmp_path):
    iommu_off_host(tmp_path)
    facts = facts_of(tmp_path)
    text = render_html(facts, 'vm')
    assert '<dd class="bad">OFF (intel)</dd>' in text
    assert 'The IOMMU is off' in text
    assert '| IOMMU | OFF (intel) |' in render_markdown(facts, 'vm')


def test_generated_host_summary_and_page(tmp_path):
    generated_host(tmp_path, 200)
    facts = facts_of(tmp_path)
    summary = report_summary(facts)
    # eth0 carries the default route; every other NIC sits alone in its group; 7 root ports.
    assert summary['devices'] == 207 and summary['groups'] == 207
    assert {k: v for k, v in summary['counts'].items() if v} == {'ready': 199, 'host-critical': 1, 'platform': 7}
    _page, svg = check_page(render_html(facts, 'big'), facts)
    boxes = group_boxes(svg)
    assert boxes['group-0'][0] == STROKE['host-critical'] and boxes['group-199'][0] == STROKE['ready']
    # groups 2 and 10 sort as numbers, not as text
    order = [g.get('id') for g in svg.iter(SVG_NS + 'g') if g.get('class') == 'group']
    assert order.index('group-2') < order.index('group-10') < order.index('group-100000')


def test_rendering_is_deterministic(tmp_path):
    amd_twin_nic_host(tmp_path)
    facts = facts_of(tmp_path)
    shuffled = dict(facts, devices=dict(reversed(list(facts['devices'].items()))),
                    groups=dict(reversed(list(facts['groups'].items()))))
    assert render_html(facts, 'h') == render_html(shuffled, 'h')
    assert render_markdown(facts, 'h') == render_markdown(shuffled, 'h')


def test_long_names_are_truncated_with_a_tooltip(tmp_path):
    intel_gpu_host(tmp_path)
    facts = facts_of(tmp_path)
    facts['devices']['0000:00:14.0']['driver'] = 'a_driver_with_a_really_remarkably_long_name_indeed'
    _page, svg = check_page(render_html(facts, 'h'), facts)
    texts = [t for t in svg.iter(SVG_NS + 'text') if t.find(SVG_NS + 'title') is not None]
    cut = [t for t in texts if 'remarkably' in t.find(SVG_NS + 'title').text]
    assert len(cut) == 1
    shown = ''.join(cut[0].itertext()).replace(cut[0].find(SVG_NS + 'title').text, '')
    assert shown.endswith('\u2026') and len(shown) < len(cut[0].find(SVG_NS + 'title').text)


# -- hostile strings ----------------------------------------------------------------------------

_XSS = '<script>alert("x")</script>'


def test_hostile_strings_from_the_host_are_escaped(tmp_path):
    host = FakeHost(tmp_path)
    host.cmdline('root=/dev/sda1 quiet x="%s" y=a|b `z`' % _XSS)
    host.interrupts(remapped=True).cpu_vendor('GenuineIntel').osrelease('6.8.12-4-pve')
    host.acpi_tables('DMAR').iommu_unit('dmar0')
    # a driver directory name carrying markup: sysfs link names are the kernel's, but nothing stops a module name
    host.add_device('0000:01:00.0', '8086', '10d3', '020000', driver='evil<img src=x onerror=alert(1)>', group=1)
    host.add_device('0000:02:00.0', '8086', '10d3', '020000', driver='e1000e', group=2)
    facts = facts_of(tmp_path)
    facts['devices']['0000:02:00.0']['class_name'] = _XSS + ' | pipe \x00 nul'
    name = '<b>pve&1</b>'
    text = render_html(facts, name)
    page, _svg = check_page(text, facts)
    assert _XSS not in text and '<img' not in text and '<b>' not in text
    # shown as text, not lost: the parser gives back the original characters
    joined = ''.join(page.text)
    assert _XSS in joined and 'evil<img src=x onerror=alert(1)>' in joined and name in joined
    assert '&lt;script&gt;' in text

    md = render_markdown(facts, name)
    # The command line is a code span, which Markdown shows verbatim (markup inert); its fence is
    # longer than any backtick run inside, so the text cannot close it early.
    span = re.search(r'^\| Command line \| (`+)(.*)\1 \|$', md, re.M)
    assert span and len(span.group(1)) > max(len(r) for r in re.findall('`+', span.group(2)))
    assert _XSS in span.group(2) and 'y=a\\|b' in span.group(2)
    outside = md.replace(span.group(0), '')
    assert '<script>' not in outside and '<img' not in outside and '<b>' not in outside
    assert '&lt;script&gt;' in outside and 'evil&lt;img' in outside
    rows = _md_rows(md, 'Devices')
    assert all(len(_cells(r)) == 10 for r in rows), rows


def test_index_escapes_host_names_and_links_inside():
    facts = {'enabled': True, 'vendor': 'intel', 'kernel': '<k>', 'groups': {}, 'devices': {}}
    hosts = {'pve1': facts, '"><script>x</script>': facts, 'a b/c': None}
    text = render_index_html(hosts)
    page = parse_page(text)
    assert_self_contained(page, text, local_links=('pve1/', '%22%3E%3Cscript', 'a%20b%2Fc/'))
    assert '<script>' not in text and '<k>' not in text
    hrefs = [a['href'] for t, a in page.elements if t == 'a']
    assert hrefs == ['%22%3E%3Cscript%3Ex%3C%2Fscript%3E/iommu.html', 'a%20b%2Fc/iommu.html', 'pve1/iommu.html']
    assert 'no facts gathered' in ''.join(page.text)


# -- fleet index ---------------------------------------------------------------------------------

def test_index_lists_hosts_with_counts(tmp_path):
    intel_gpu_host(tmp_path / 'a')
    amd_twin_nic_host(tmp_path / 'b')
    a, b = facts_of(tmp_path / 'a'), facts_of(tmp_path / 'b')
    for hosts in ({'pve2': b, 'pve1': a}, [['pve1', a], ['pve2', report_summary(b)]]):
        text = render_index_html(hosts)
        page = parse_page(text)
        assert_self_contained(page, text, local_links=('pve1/', 'pve2/'))
        assert [x['href'] for t, x in page.elements if t == 'a'] == ['pve1/iommu.html', 'pve2/iommu.html']
        md = render_index_markdown(hosts)
        rows = [line for line in md.splitlines() if line.startswith('| [')]
        assert [r.split(']', 1)[0] for r in rows] == ['| [pve1', '| [pve2']
        labels = [c.strip() for c in _cells(md.splitlines()[2])]
        for row, facts in zip(rows, (a, b)):
            counts = dict(zip(labels[5:], (int(c) for c in _cells(row)[5:])))
            expected = report_summary(facts)['counts']
            assert counts == {label: expected[key] for key, label, _s, _f, _m in VERDICTS}
            assert int(_cells(row)[4]) == len(facts['devices'])
        total = [r for r in md.splitlines() if r.startswith('| **all**')][0]
        assert int(_cells(total)[4]) == len(a['devices']) + len(b['devices'])


@pytest.mark.parametrize('bad, message', [
    ('not facts', 'expected a dict of host'),
    ({'h': {'no': 'devices'}}, 'host h: expected its iommu facts'),
    ([['h']], 'expected [host, facts] pairs'),
])
def test_index_refuses_bad_input(bad, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        render_index_html(bad)
    with pytest.raises(AnsibleFilterError, match=re.escape(message)):
        report_filter.passthrough_report_index(bad)


# -- filters -------------------------------------------------------------------------------------

def test_filters_are_registered_and_thin(tmp_path):
    intel_gpu_host(tmp_path)
    facts = facts_of(tmp_path)
    filters = report_filter.FilterModule().filters()
    assert set(filters) == {'passthrough_report_verdicts', 'passthrough_report_summary', 'passthrough_report_markdown',
                            'passthrough_report_html', 'passthrough_report_index'}
    assert filters['passthrough_report_html'](facts, host='pve1') == render_html(facts, 'pve1')
    assert filters['passthrough_report_markdown'](facts, host='pve1') == render_markdown(facts, 'pve1')
    assert filters['passthrough_report_verdicts'](facts) == device_verdicts(facts)
    assert filters['passthrough_report_index']({'pve1': facts}, format='markdown') == render_index_markdown({'pve1': facts})


@pytest.mark.parametrize('name', ['passthrough_report_html', 'passthrough_report_markdown',
                                  'passthrough_report_verdicts', 'passthrough_report_summary'])
@pytest.mark.parametrize('bad', [None, 'text', {'enabled': True}])
def test_filters_refuse_what_is_not_facts(name, bad):
    with pytest.raises(AnsibleFilterError, match='expected the iommu facts'):
        report_filter.FilterModule().filters()[name](bad)


def test_index_filter_refuses_an_unknown_format():
    with pytest.raises(AnsibleFilterError, match="format must be html or markdown, not 'pdf'"):
        report_filter.passthrough_report_index({}, format='pdf')


# -- property: any generated machine renders to a valid page -------------------------------------

_CLASSES = ['020000', '030000', '040300', '010802', '0c0330', '060400', '060000', '080600', '120000']
_DRIVERS = [None, 'vfio-pci', 'e1000e', 'nouveau', 'pcieport', 'x<&>"\'y']
_device = st.fixed_dictionaries({
    'cls': st.sampled_from(_CLASSES), 'driver': st.sampled_from(_DRIVERS), 'group': st.integers(0, 4),
    'resets': st.lists(st.sampled_from(['flr', 'pm', 'bus', 'af']), unique=True, max_size=3),
    'nic': st.booleans(), 'sriov': st.none() | st.integers(1, 8),
})


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(slots=st.dictionaries(st.tuples(st.integers(1, 4), st.integers(0, 2), st.integers(0, 2)), _device, max_size=9),
       enabled=st.booleans(), cmdline=st.text(max_size=40), route=st.booleans())
def test_property_generated_machines_render_valid_pages(slots, enabled, cmdline, route):
    with tempfile.TemporaryDirectory() as tmp:
        host = FakeHost(tmp)
        host.cmdline(cmdline.replace('\n', ' ')).interrupts(remapped=enabled).osrelease('6.8.12-4-pve')
        host.acpi_tables('DMAR')
        if enabled:
            host.iommu_unit('dmar0')
        first_nic = None
        for (bus, slot, function), spec in sorted(slots.items()):
            address = '0000:%02x:%02x.%d' % (bus, slot, function)
            nic = 'n%d%d%d' % (bus, slot, function) if spec['nic'] and spec['driver'] not in (None, 'vfio-pci') else None
            first_nic = first_nic or nic
            host.add_device(address, '8086', '10d3', spec['cls'], driver=spec['driver'],
                            group=spec['group'] if enabled else None, netdev=nic, reset_methods=spec['resets'],
                            sriov_totalvfs=spec['sriov'], sriov_numvfs=1 if spec['sriov'] else None)
        if route and first_nic:
            host.default_route(first_nic)
        facts = facts_of(tmp)
    text = render_html(facts, 'gen')
    check_page(text, facts)
    verdicts = device_verdicts(facts)
    assert sum(report_summary(facts)['counts'].values()) == len(facts['devices'])
    for number, group in facts['groups'].items():
        members = [verdicts[a]['verdict'] for a in group['devices']]
        assert group_verdict(members) in members or (not members and group_verdict(members) == 'platform')
    md = render_markdown(facts, 'gen')
    rows = _md_rows(md, 'Devices')
    assert [_cells(r)[0].strip() for r in rows] == sorted(facts['devices'])
    assert all(len(_cells(r)) == 10 for r in rows)
    assert render_html(facts, 'gen') == text
