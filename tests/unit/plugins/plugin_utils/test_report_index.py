"""The fleet index (plugin_utils/_report_index.py): one row per host, links that stay inside the report."""

from __future__ import annotations

import re

import pytest

from ansible.errors import AnsibleFilterError

from ansible_collections.vfio.passthrough.plugins.filter import report as report_filter
from ansible_collections.vfio.passthrough.plugins.plugin_utils._report_index import render_index_html, render_index_markdown
from ansible_collections.vfio.passthrough.plugins.plugin_utils._report_verdicts import VERDICTS, report_summary
from report_pages import assert_self_contained, cells, facts_of, parse_page
from sysfs_builder import amd_twin_nic_host, intel_gpu_host


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
        labels = [c.strip() for c in cells(md.splitlines()[2])]
        for row, facts in zip(rows, (a, b)):
            counts = dict(zip(labels[5:], (int(c) for c in cells(row)[5:])))
            expected = report_summary(facts)['counts']
            assert counts == {label: expected[key] for key, label, _s, _f, _m in VERDICTS}
            assert int(cells(row)[4]) == len(facts['devices'])
        total = [r for r in md.splitlines() if r.startswith('| **all**')][0]
        assert int(cells(total)[4]) == len(a['devices']) + len(b['devices'])


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
