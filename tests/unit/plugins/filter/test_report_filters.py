"""The report filters (filter/report.py): registered, thin over plugin_utils, and refusing what is not facts."""

from __future__ import annotations

from pathlib import Path

import pytest

from ansible.errors import AnsibleFilterError

from ansible_collections.vfio.passthrough.plugins.filter import report as report_filter
from ansible_collections.vfio.passthrough.plugins.plugin_utils._report_html import render_html
from ansible_collections.vfio.passthrough.plugins.plugin_utils._report_index import render_index_markdown
from ansible_collections.vfio.passthrough.plugins.plugin_utils._report_markdown import render_markdown
from ansible_collections.vfio.passthrough.plugins.plugin_utils._report_text import count_line, host_rows
from ansible_collections.vfio.passthrough.plugins.plugin_utils._report_verdicts import device_verdicts, report_summary
from report_pages import facts_of
from sysfs_builder import intel_gpu_host


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


def test_summary_filter_prints_the_pages_host_rows(tmp_path):
    # report.yml prints these lines: the same rows as the Markdown page's host table, from one function
    intel_gpu_host(tmp_path)
    facts = facts_of(tmp_path)
    summary = report_filter.passthrough_report_summary(facts)
    assert {k: v for k, v in summary.items() if k != 'lines'} == report_summary(facts)
    assert summary['lines'][:2] == ['IOMMU: on (intel)', 'Firmware table (DMAR/IVRS): present']
    assert summary['lines'][-1] == 'Devices: %s' % count_line(report_summary(facts)['counts'])
    markdown = render_markdown(facts, 'pve1')
    for label, value in host_rows(facts):
        assert '%s: %s' % (label, value) in summary['lines']
        assert label in markdown


def test_report_playbook_prints_the_summary_filter():
    # One place: the playbook shows the filter's lines, it does not format the facts itself
    playbook = (Path(__file__).resolve().parents[4] / 'playbooks' / 'report.yml').read_text()
    assert "passthrough_report_summary)['lines']" in playbook
    assert "ansible_facts['iommu']['interrupt_remapping']" not in playbook


@pytest.mark.parametrize('name', ['passthrough_report_html', 'passthrough_report_markdown',
                                  'passthrough_report_verdicts', 'passthrough_report_summary'])
@pytest.mark.parametrize('bad', [None, 'text', {'enabled': True}])
def test_filters_refuse_what_is_not_facts(name, bad):
    with pytest.raises(AnsibleFilterError, match='expected the iommu facts'):
        report_filter.FilterModule().filters()[name](bad)


def test_index_filter_refuses_an_unknown_format():
    with pytest.raises(AnsibleFilterError, match="format must be html or markdown, not 'pdf'"):
        report_filter.passthrough_report_index({}, format='pdf')
