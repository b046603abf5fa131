# -*- coding: utf-8 -*-
# Copyright: contributors to vfio.passthrough
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The fleet index: one row per host with its device count per verdict, as Markdown or HTML."""

from __future__ import annotations

from urllib.parse import quote

from ansible_collections.vfio.passthrough.plugins.plugin_utils._report_html import badge, html_text, page
from ansible_collections.vfio.passthrough.plugins.plugin_utils._report_markdown import md_text
from ansible_collections.vfio.passthrough.plugins.plugin_utils._report_verdicts import KEYS, LABEL, VERDICTS, report_summary

__all__ = ['render_index_markdown', 'render_index_html']


def _host_entries(hosts):
    """[(host, summary or None)] from {host: facts | summary | None} or [(host, facts | summary | None)]."""
    if isinstance(hosts, dict):
        pairs = list(hosts.items())
    elif isinstance(hosts, (list, tuple)):
        pairs = []
        for item in hosts:
            if not isinstance(item, (list, tuple)) or len(item) != 2:
                raise ValueError('expected [host, facts] pairs, got %r' % (item,))
            pairs.append(tuple(item))
    else:
        raise ValueError('expected a dict of host -> iommu facts (or report summaries), got %r' % type(hosts).__name__)
    result = []
    for host, value in sorted(pairs, key=lambda pair: str(pair[0])):
        if value is None:
            result.append((str(host), None))
        elif isinstance(value, dict) and isinstance(value.get('counts'), dict):
            result.append((str(host), value))
        elif isinstance(value, dict) and isinstance(value.get('devices'), dict):
            result.append((str(host), report_summary(value)))
        else:
            raise ValueError('host %s: expected its iommu facts or report summary, got %r' % (host, type(value).__name__))
    return result


def _totals(entries):
    totals = {key: 0 for key in KEYS}
    for _host, summary in entries:
        for key in KEYS:
            totals[key] += summary['counts'].get(key, 0) if summary else 0
    return totals


def _host_href(host):
    return '%s/iommu.html' % quote(host, safe='')


def render_index_markdown(hosts):
    """The fleet index as Markdown: one row per host with its device count per verdict."""
    entries = _host_entries(hosts)
    out = ['# IOMMU readiness: %d hosts' % len(entries), '',
           '| host | IOMMU | vendor | kernel | devices | %s |' % ' | '.join(LABEL[k] for k in KEYS),
           '| --- | --- | --- | --- | --- | %s |' % ' | '.join('---:' for _k in KEYS)]
    for host, summary in entries:
        link = '[%s](%s)' % (md_text(host), _host_href(host).replace('(', '%28').replace(')', '%29'))
        if summary is None:
            out.append('| %s | no facts | | | | %s |' % (link, ' | '.join('' for _k in KEYS)))
            continue
        out.append('| %s | %s | %s | %s | %d | %s |' % (
            link, 'on' if summary['enabled'] else 'OFF', md_text(summary.get('vendor') or '-'),
            md_text(summary.get('kernel') or '-'), summary['devices'],
            ' | '.join(str(summary['counts'].get(k, 0)) for k in KEYS)))
    totals = _totals(entries)
    out.append('| **all** | | | | %d | %s |' % (sum(totals.values()), ' | '.join(str(totals[k]) for k in KEYS)))
    return '\n'.join(out) + '\n'


def render_index_html(hosts):
    """The fleet index page: one row per host, linking to <host>/iommu.html, with device counts per verdict."""
    entries = _host_entries(hosts)
    rows = []
    for host, summary in entries:
        link = '<a href="%s">%s</a>' % (html_text(_host_href(host)), html_text(host))
        if summary is None:
            rows.append('<tr><td>%s</td><td class="bad" colspan="%d">no facts gathered</td></tr>'
                        % (link, 4 + len(KEYS)))
            continue
        cells = ''.join('<td class="num">%s</td>' % (badge(k, str(summary['counts'].get(k, 0)))
                                                     if summary['counts'].get(k) else '0') for k in KEYS)
        rows.append('<tr><td>%s</td><td%s>%s</td><td>%s</td><td class="mono">%s</td><td class="num">%d</td>%s</tr>' % (
            link, '' if summary['enabled'] else ' class="bad"', 'on' if summary['enabled'] else 'OFF',
            html_text(summary.get('vendor') or '-'), html_text(summary.get('kernel') or '-'), summary['devices'], cells))
    totals = _totals(entries)
    rows.append('<tr><th>all</th><th></th><th></th><th></th><th class="num">%d</th>%s</tr>' % (
        sum(totals.values()), ''.join('<th class="num">%d</th>' % totals[k] for k in KEYS)))
    head = ''.join('<th title="%s">%s</th>' % (html_text(meaning), html_text(label)) for _k, label, _s, _f, meaning in VERDICTS)
    body = ['<header><h1>IOMMU readiness: %d hosts</h1>' % len(entries),
            '<p class="sub">Devices per verdict; each host links to its report.</p></header>',
            '<table><thead><tr><th>host</th><th>IOMMU</th><th>vendor</th><th>kernel</th><th>devices</th>%s</tr></thead>'
            '<tbody>%s</tbody></table>' % (head, '\n'.join(rows)),
            '<section><h2>Verdicts</h2><dl class="legend">%s</dl></section>' % ''.join(
                '<dt>%s</dt><dd>%s</dd>' % (badge(key), html_text(meaning)) for key, _l, _s, _f, meaning in VERDICTS)]
    return page('IOMMU readiness: %d hosts' % len(entries), '\n'.join(body))
