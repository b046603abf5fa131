# -*- coding: utf-8 -*-
# Copyright: contributors to vfio.passthrough
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters through which playbooks/report.yml renders the IOMMU readiness report (plugins/plugin_utils/_report_*.py)."""

from __future__ import annotations

from ansible.errors import AnsibleFilterError

from ansible_collections.vfio.passthrough.plugins.plugin_utils._report_html import render_html
from ansible_collections.vfio.passthrough.plugins.plugin_utils._report_index import render_index_html, render_index_markdown
from ansible_collections.vfio.passthrough.plugins.plugin_utils._report_markdown import render_markdown
from ansible_collections.vfio.passthrough.plugins.plugin_utils._report_text import console_summary
from ansible_collections.vfio.passthrough.plugins.plugin_utils._report_verdicts import device_verdicts


def _call(function, *args):
    try:
        return function(*args)
    except ValueError as exc:
        raise AnsibleFilterError(str(exc)) from exc


def passthrough_report_verdicts(facts):
    return _call(device_verdicts, facts)


def passthrough_report_summary(facts):
    return _call(console_summary, facts)


def passthrough_report_markdown(facts, host='', tuning=None):
    return _call(render_markdown, facts, str(host), tuning)


def passthrough_report_html(facts, host='', tuning=None):
    return _call(render_html, facts, str(host), tuning)


def passthrough_report_index(hosts, format='html'):  # pylint: disable=redefined-builtin
    renderers = {'html': render_index_html, 'markdown': render_index_markdown}
    if format not in renderers:
        raise AnsibleFilterError('format must be html or markdown, not %r' % (format,))
    return _call(renderers[format], hosts)


class FilterModule:
    def filters(self):
        return {
            'passthrough_report_verdicts': passthrough_report_verdicts,
            'passthrough_report_summary': passthrough_report_summary,
            'passthrough_report_markdown': passthrough_report_markdown,
            'passthrough_report_html': passthrough_report_html,
            'passthrough_report_index': passthrough_report_index,
        }
