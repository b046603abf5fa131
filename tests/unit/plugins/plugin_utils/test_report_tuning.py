"""The report's summary shows hugepages and isolated CPUs from host_tuning_facts."""

from __future__ import annotations

from ansible_collections.vfio.passthrough.plugins.modules import host_tuning_facts
from ansible_collections.vfio.passthrough.plugins.plugin_utils._report_html import render_html
from ansible_collections.vfio.passthrough.plugins.plugin_utils._report_markdown import render_markdown
from ansible_collections.vfio.passthrough.plugins.plugin_utils._report_text import tuning_rows
from module_runner import run_module
from report_pages import facts_of
import sysfs_builder

ROWS = [
    ('Memory', '1460 MiB'),
    ('Hugepages now', '128 x 2M, 0 x 1G (default size 2048 kB; 1G pages not supported)'),
    ('Hugepages at boot', 'hugepagesz=2M hugepages=128'),
    ('CPUs', '2 (0-1)'),
    ('Isolated CPUs', '1'),
]


def _host(tmp_path):
    host = sysfs_builder.intel_gpu_host(tmp_path)
    host.cmdline('ro quiet default_hugepagesz=2M hugepagesz=2M hugepages=128 isolcpus=1')
    host.tuning(mem_kb=1460 * 1024, possible='0-1', isolated='1', pools={2048: 128, 1048576: 0})
    return host, run_module(host_tuning_facts.main, {'root': str(tmp_path)})['ansible_facts']['host_tuning']


def test_tuning_rows(tmp_path):
    _host_, tuning = _host(tmp_path)
    assert tuning_rows(tuning) == ROWS
    assert tuning_rows(None) == []


def test_markdown_and_html_summaries_show_the_rows(tmp_path):
    _host_, tuning = _host(tmp_path)
    facts = facts_of(tmp_path)
    markdown = render_markdown(facts, 'pve1', tuning)
    page = render_html(facts, 'pve1', tuning)
    for name, value in ROWS:
        assert '| %s | %s |' % (name, value) in markdown
        assert '<dt>%s</dt><dd>%s</dd>' % (name, value) in page
    assert 'Hugepages now' not in render_markdown(facts, 'pve1')


def test_nohz_and_an_unreadable_boot_value_are_shown(tmp_path):
    host = sysfs_builder.FakeHost(tmp_path)
    host.cmdline('ro hugepages=lots').tuning(possible='0-3', isolated='2-3', nohz_full='2-3')
    rows = dict(tuning_rows(run_module(host_tuning_facts.main, {'root': str(tmp_path)})['ansible_facts']['host_tuning']))
    assert rows['Isolated CPUs'] == '2-3; nohz_full 2-3'
    assert "'lots' is not a page count" in rows['Hugepages at boot']
