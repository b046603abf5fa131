"""Shared checks for the report's pages: real parsers (html.parser with a nesting check, xml.etree for the SVG).

Used by the report tests under plugins/plugin_utils and plugins/filter, and by
tests/playbooks/test_report.py. ``CANNED`` holds the canned hosts
and the verdicts each of their devices and groups must get.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from html.parser import HTMLParser

from ansible_collections.vfio.passthrough.plugins.modules import iommu_facts
from ansible_collections.vfio.passthrough.plugins.plugin_utils._report_verdicts import VERDICTS
from module_runner import run_module
from sysfs_builder import amd_twin_nic_host, igb_mgmt_host, intel_gpu_host, iommu_off_host

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


def md_rows(text, heading):
    section = text.split('## %s\n' % heading, 1)[1].split('\n## ', 1)[0]
    return [line for line in section.splitlines() if line.startswith('| ')][2:]


def cells(row):
    return re.split(r'(?<!\\)\|', row.strip())[1:-1]


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
