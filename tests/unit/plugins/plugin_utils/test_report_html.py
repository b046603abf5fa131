"""The host report's HTML page with its SVG map (plugin_utils/_report_html.py), checked with real parsers."""

from __future__ import annotations

import re
import tempfile

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ansible_collections.vfio.passthrough.plugins.plugin_utils._report_html import render_html
from ansible_collections.vfio.passthrough.plugins.plugin_utils._report_markdown import render_markdown
from ansible_collections.vfio.passthrough.plugins.plugin_utils._report_verdicts import VERDICTS, device_verdicts, group_verdict, report_summary
from report_pages import SVG_NS, STROKE, cells, check_page, facts_of, group_boxes, md_rows
from sysfs_builder import FakeHost, amd_twin_nic_host, generated_host, intel_gpu_host, iommu_off_host


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
    rows = md_rows(md, 'Devices')
    assert all(len(cells(r)) == 10 for r in rows), rows


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
    rows = md_rows(md, 'Devices')
    assert [cells(r)[0].strip() for r in rows] == sorted(facts['devices'])
    assert all(len(cells(r)) == 10 for r in rows)
    assert render_html(facts, 'gen') == text
