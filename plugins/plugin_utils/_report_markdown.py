# -*- coding: utf-8 -*-
# Copyright: contributors to vfio.passthrough
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The host report as Markdown: summary, groups table, devices table, verdict meanings."""

from __future__ import annotations

import html
import re

from ansible_collections.vfio.passthrough.plugins.plugin_utils._report_text import (
    address_text, clean, count_line, device_order, host_rows, isolation_text, pci_id_text, sriov_text, verdict_text,
    vfio_state,
)
from ansible_collections.vfio.passthrough.plugins.plugin_utils._report_verdicts import (
    LABEL, VERDICTS, device_verdicts, facts_devices, report_groups, report_summary,
)

__all__ = ['md_text', 'md_code', 'render_markdown']


def md_text(value):
    """Table-cell text: markup neutralised (entities render as the same characters), one line, pipes escaped."""
    text = html.escape(clean(value), quote=False)
    return re.sub(r'\s*[\r\n]+\s*', ' ', text).replace('\\', '\\\\').replace('|', '\\|') \
        .replace('`', '\\`').replace('*', '\\*').replace('[', '\\[').replace(']', '\\]')


def md_code(value):
    """A code span: shown verbatim (markup inert), fenced with more backticks than it contains."""
    text = re.sub(r'[\r\n]+', ' ', clean(value)).replace('|', '\\|')
    longest = max((len(run) for run in re.findall('`+', text)), default=0)
    fence = '`' * (longest + 1)
    pad = ' ' if text.startswith('`') or text.endswith('`') or not text.strip() else ''
    return '%s%s%s%s%s' % (fence, pad, text, pad, fence) if text else '-'


def render_markdown(facts, host='', tuning=None):
    """The host report as Markdown: summary, groups table, devices table, verdict meanings."""
    devices = facts_devices(facts)
    verdicts = device_verdicts(facts)
    summary = report_summary(facts)
    out = ['# IOMMU report: %s' % (md_text(host) or 'host'), '']
    out += ['| | |', '| --- | --- |']
    for name, value in host_rows(facts, tuning):
        out.append('| %s | %s |' % (name, md_code(value) if name == 'Command line' else md_text(value)))
    counts = md_text(count_line(summary['counts']))
    out += ['', '%d devices in %d IOMMU groups: %s.' % (summary['devices'], summary['groups'], counts), '']

    out += ['## IOMMU groups', '', '| group | type | verdict | devices |', '| --- | --- | --- | --- |']
    for name, members, type_, verdict in report_groups(facts, verdicts):
        listed = '<br>'.join('%s %s (%s)' % (md_text(a), md_text(devices[a].get('class_name')), md_text(LABEL[verdicts[a]['verdict']]))
                             for a in members)
        out.append('| %s | %s | %s | %s |' % ('-' if name is None else md_text(name), md_text(type_ or '-'),
                                              md_text(LABEL[verdict]), listed))
    out += ['']

    out += ['## Devices', '',
            '| address | vendor:device | class | driver | group | reset methods | SR-IOV | isolation | vfio | verdict |',
            '| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |']
    for address in device_order(devices):
        device, verdict = devices[address], verdicts[address]
        group = device.get('iommu_group')
        out.append('| %s |' % ' | '.join([
            md_text(address_text(address, device)), md_text(pci_id_text(device)), md_text(device.get('class_name')), md_text(device.get('driver') or '-'),
            '-' if group is None else md_text(group), md_text(' '.join(device.get('reset_methods') or []) or '-'),
            md_text(sriov_text(device, devices)), md_text(isolation_text(device)), md_text(vfio_state(device)),
            '**%s**: %s' % (md_text(verdict['label']), md_text(verdict_text(verdict))),
        ]))
    out += ['', '## Verdicts', '']
    out += ['- **%s**: %s' % (label, md_text(meaning)) for _key, label, _s, _f, meaning in VERDICTS]
    return '\n'.join(out) + '\n'
