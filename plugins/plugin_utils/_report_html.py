# -*- coding: utf-8 -*-
# Copyright: contributors to vfio.passthrough
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The host report as one self-contained HTML page with an SVG map of the IOMMU groups.

The HTML fetches nothing: CSS and SVG are inline and a Content-Security-Policy
forbids scripts and every network request, so the page is safe to open from a
file share or a mail attachment.
"""

from __future__ import annotations

import html

from ansible_collections.vfio.passthrough.plugins.plugin_utils._report_text import (
    address_text, clean, device_order, host_rows, isolation_text, pci_id_text, sriov_text, verdict_text, vfio_state,
)
from ansible_collections.vfio.passthrough.plugins.plugin_utils._report_verdicts import (
    FILL, KEYS, LABEL, STROKE, VERDICTS, device_verdicts, facts_devices, report_groups, report_summary,
)

__all__ = ['html_text', 'badge', 'page', 'render_html']


def html_text(value):
    return html.escape(clean(value), quote=True)


def _truncate(text, limit):
    text = clean(text)
    return text if len(text) <= limit else text[:max(limit - 1, 0)] + '\u2026'


_CSS = """
:root { color-scheme: light; }
* { box-sizing: border-box; }
body { margin: 0; padding: 20px 28px 40px; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", "DejaVu Sans",
       sans-serif; color: #1d2430; background: #f6f7f9; }
h1 { font-size: 22px; margin: 0 0 4px; }
h2 { font-size: 17px; margin: 28px 0 10px; }
.sub { color: #5a6472; margin: 0 0 14px; }
.facts { display: grid; grid-template-columns: repeat(auto-fill, minmax(180px, 1fr)); gap: 8px; margin: 0; }
.facts div { background: #fff; border: 1px solid #dde1e6; border-radius: 6px; padding: 6px 10px; }
.facts dt { font-size: 12px; color: #5a6472; }
.facts dd { margin: 0; font-weight: 600; overflow-wrap: anywhere; }
.facts .wide { grid-column: 1 / -1; }
.facts .wide dd, .facts dd.code { font: 12px/1.4 ui-monospace, "DejaVu Sans Mono", monospace; font-weight: 400; }
.bad { color: #c0392b; }
.counts { display: flex; flex-wrap: wrap; gap: 6px; margin: 12px 0 0; padding: 0; list-style: none; }
.badge { display: inline-block; border-radius: 10px; padding: 1px 9px; font-size: 12px; font-weight: 600;
         border: 1px solid; white-space: nowrap; }
.map { background: #fff; border: 1px solid #dde1e6; border-radius: 6px; padding: 8px; overflow-x: auto; }
.map svg { display: block; max-width: 100%; height: auto; }
table { border-collapse: collapse; width: 100%; background: #fff; font-size: 13px; }
th, td { border: 1px solid #dde1e6; padding: 4px 7px; text-align: left; vertical-align: top; }
th { background: #eef0f3; position: sticky; top: 0; }
td.mono, .mono { font-family: ui-monospace, "DejaVu Sans Mono", monospace; font-size: 12px; white-space: nowrap; }
td.why { min-width: 320px; }
td.why ul { margin: 4px 0 0 18px; padding: 0; color: #5a6472; }
tr:target { outline: 2px solid #1f5fbf; }
dl.legend dt { margin-top: 6px; }
dl.legend dd { margin: 2px 0 0 0; color: #3d4653; }
footer { margin-top: 28px; color: #5a6472; font-size: 12px; }
a { color: #1f5fbf; }
.num { text-align: right; }
"""

# The page may load nothing at all: no script, no font, no image from anywhere.
_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'"


def badge(key, text=None):
    return '<span class="badge" style="color:%s;background:%s;border-color:%s">%s</span>' % (
        STROKE[key], FILL[key], STROKE[key], html_text(text if text is not None else LABEL[key]))


def page(title, body):
    return ('<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            '<meta http-equiv="Content-Security-Policy" content="%s">\n'
            '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            '<title>%s</title>\n<style>%s</style>\n</head>\n<body>\n%s\n'
            '<footer>Written by vfio.passthrough (playbooks/report.yml), which only reads the hosts.</footer>\n'
            '</body>\n</html>\n') % (html_text(_CSP), html_text(title), _CSS, body)


# SVG geometry, in CSS pixels. Monospace text makes the width of a string its
# length times one advance, so truncation needs no font metrics.
_SVG_WIDTH = 1200
_COLUMNS = 4
_GAP = 12
_PAD = 8
_HEADER = 26
_ROW = 36
_ROW_GAP = 4
_LEGEND = 30
_CHAR = 6.7            # advance of an 11 px monospace glyph (DejaVu Sans Mono 0.602 em), rounded up
_FONT = 'ui-monospace, DejaVu Sans Mono, Menlo, Consolas, monospace'


def _box_height(members):
    return _HEADER + max(len(members), 1) * (_ROW + _ROW_GAP) + _PAD - _ROW_GAP + 2


def _svg_text(x, y, text, limit, attrs=''):
    """A text element truncated to ``limit`` characters, with the whole text as its tooltip when cut."""
    shown = _truncate(text, limit)
    title = '<title>%s</title>' % html_text(text) if shown != clean(text) else ''
    return '<text x="%.1f" y="%.1f"%s>%s%s</text>' % (x, y, attrs, title, html_text(shown))


def _render_svg(facts, verdicts, host):
    devices = facts_devices(facts)
    groups = report_groups(facts, verdicts)
    col_width = (_SVG_WIDTH - (_COLUMNS - 1) * _GAP) / _COLUMNS
    chars = int((col_width - 2 * _PAD - 14) // _CHAR)
    # Masonry: each box goes to the currently shortest column (leftmost on ties),
    # in group order, so the picture is the same for the same facts.
    heights = [_LEGEND + _GAP] * _COLUMNS
    boxes = []
    for name, members, type_, verdict in groups:
        column = heights.index(min(heights))
        x, y = column * (col_width + _GAP), heights[column]
        height = _box_height(members)
        heights[column] = y + height + _GAP
        boxes.append((x, y, height, name, members, type_, verdict))
    total = max(heights) if boxes else _LEGEND + _GAP + 40

    out = ['<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" role="img" '
           'font-family="%s" font-size="11">' % (_SVG_WIDTH, total, _SVG_WIDTH, total, html_text(_FONT)),
           '<title>IOMMU groups of %s</title>' % html_text(host or 'the host')]
    # legend
    x = 0.0
    out.append('<g class="legend">')
    for key, label, stroke, fill, meaning in VERDICTS:
        out.append('<g><title>%s</title><rect x="%.1f" y="6" width="14" height="14" rx="3" fill="%s" stroke="%s" '
                   'stroke-width="3"/>' % (html_text(meaning), x, fill, stroke))
        out.append('<text x="%.1f" y="17.5" font-size="12">%s</text></g>' % (x + 19, html_text(label)))
        x += 19 + len(label) * 7.4 + 20
    out.append('</g>')
    if not boxes:
        out.append('<text x="0" y="%d" font-size="13">No PCI devices found.</text>' % (_LEGEND + _GAP + 20))
    elif not facts.get('enabled'):
        out.append('<text x="%d" y="%d" font-size="13" font-weight="700" fill="%s">The IOMMU is off: no device '
                   'can be passed through until it is on.</text>'
                   % (col_width + _GAP, _LEGEND + _GAP + 17, STROKE['iommu-off']))
    for x, y, height, name, members, type_, verdict in boxes:
        gid = 'none' if name is None else name
        out.append('<g class="group" id="group-%s">' % html_text(gid))
        out.append('<rect x="%.1f" y="%.1f" width="%.1f" height="%d" rx="6" fill="%s" fill-opacity="0.55" '
                   'stroke="%s" stroke-width="2"/>' % (x, y, col_width, height, FILL[verdict], STROKE[verdict]))
        title = 'No IOMMU group' if name is None else 'Group %s%s' % (name, ' \u00b7 %s' % type_ if type_ else '')
        label = LABEL[verdict]
        out.append(_svg_text(x + _PAD, y + 17, title, chars - len(label) - 1,
                             ' font-weight="700" font-size="12"'))
        out.append('<text x="%.1f" y="%.1f" text-anchor="end" font-weight="700" fill="%s">%s</text>'
                   % (x + col_width - _PAD, y + 17, STROKE[verdict], html_text(label)))
        for n, address in enumerate(members):
            device, dv = devices[address], verdicts[address]
            ry = y + _HEADER + n * (_ROW + _ROW_GAP)
            key = dv['verdict']
            tip = '%s [%s] %s, driver %s: %s \u2014 %s' % (
                address, pci_id_text(device), device.get('class_name') or '', device.get('driver') or 'none',
                dv['label'], verdict_text(dv))
            out.append('<a href="#dev-%s"><g class="device">' % html_text(address))
            out.append('<title>%s</title>' % html_text(tip))
            out.append('<rect x="%.1f" y="%.1f" width="%.1f" height="%d" rx="4" fill="#ffffff" stroke="%s"/>'
                       % (x + _PAD, ry, col_width - 2 * _PAD, _ROW, STROKE[key]))
            out.append('<rect x="%.1f" y="%.1f" width="6" height="%d" rx="2" fill="%s"/>'
                       % (x + _PAD, ry, _ROW, STROKE[key]))
            text_x = x + _PAD + 12
            driver = device.get('driver') or 'no driver'
            out.append(_svg_text(text_x, ry + 14, '%s %s %s' % (address, pci_id_text(device), driver), chars,
                                 ' font-weight="700"'))
            out.append(_svg_text(text_x, ry + 29, device.get('class_name') or '', chars - len(dv['label']) - 1,
                                 ' fill="#3d4653"'))
            out.append('<text x="%.1f" y="%.1f" text-anchor="end" fill="%s">%s</text>'
                       % (x + col_width - _PAD - 6, ry + 29, STROKE[key], html_text(dv['label'])))
            out.append('</g></a>')
        out.append('</g>')
    out.append('</svg>')
    return '\n'.join(out)


def render_html(facts, host='', tuning=None):
    """One self-contained page: host summary, the SVG map of the IOMMU groups, groups and devices tables."""
    devices = facts_devices(facts)
    verdicts = device_verdicts(facts)
    summary = report_summary(facts)
    name = host or 'host'
    body = ['<header><h1>IOMMU report: %s</h1>' % html_text(name),
            '<p class="sub">%d PCI devices in %d IOMMU groups</p>' % (summary['devices'], summary['groups'])]
    body.append('<dl class="facts">')
    for label, value in host_rows(facts, tuning):
        bad = ((label == 'IOMMU' and not facts.get('enabled'))
               or (label.startswith('Firmware') and facts.get('firmware_support') is False)
               or (label == 'Interrupt remapping' and facts.get('interrupt_remapping') is False))
        classes = ' '.join(c for c, on in (('bad', bad), ('code', label == 'ACS override' and value != 'none')) if on)
        body.append('<div%s><dt>%s</dt><dd%s>%s</dd></div>' % (
            ' class="wide"' if label == 'Command line' else '', html_text(label), ' class="%s"' % classes if classes else '',
            html_text(value) or '&nbsp;'))
    body.append('</dl>')
    body.append('<ul class="counts">%s</ul></header>' % ''.join(
        '<li>%s</li>' % badge(key, '%d %s' % (summary['counts'][key], LABEL[key]))
        for key in KEYS if summary['counts'][key]))

    body.append('<section><h2>IOMMU groups</h2><div class="map">%s</div></section>'
                % _render_svg(facts, verdicts, host))

    body.append('<section><h2>Groups</h2><table><thead><tr><th>group</th><th>type</th><th>verdict</th>'
                '<th>devices</th></tr></thead><tbody>')
    for gname, members, type_, verdict in report_groups(facts, verdicts):
        listed = '<br>'.join('<a class="mono" href="#dev-%s">%s</a> %s' % (html_text(a), html_text(a), html_text(devices[a].get('class_name')))
                             for a in members)
        body.append('<tr><td class="mono">%s</td><td>%s</td><td>%s</td><td>%s</td></tr>' % (
            '-' if gname is None else html_text(gname), html_text(type_ or '-'), badge(verdict), listed))
    body.append('</tbody></table></section>')

    body.append('<section><h2>Devices</h2><table><thead><tr><th>address</th><th>vendor:device</th><th>class</th>'
                '<th>driver</th><th>group</th><th>reset methods</th><th>SR-IOV</th><th>isolation</th>'
                '<th>vfio</th><th>verdict</th></tr></thead><tbody>')
    for address in device_order(devices):
        device, verdict = devices[address], verdicts[address]
        group = device.get('iommu_group')
        notes = ''.join('<li>%s</li>' % html_text(note) for note in verdict['notes'])
        body.append(
            '<tr id="dev-%s"><td class="mono">%s</td><td class="mono">%s</td><td>%s</td><td class="mono">%s</td>'
            '<td class="mono">%s</td><td class="mono">%s</td><td>%s</td><td>%s</td><td>%s</td>'
            '<td class="why">%s %s%s</td></tr>' % (
                html_text(address), html_text(address_text(address, device)), html_text(pci_id_text(device)), html_text(device.get('class_name')),
                html_text(device.get('driver') or '-'),
                '-' if group is None else html_text(group), html_text(' '.join(device.get('reset_methods') or []) or '-'),
                html_text(sriov_text(device, devices)), html_text(isolation_text(device)), html_text(vfio_state(device)),
                badge(verdict['verdict']), html_text(verdict['reason']), '<ul>%s</ul>' % notes if notes else ''))
    body.append('</tbody></table></section>')

    body.append('<section><h2>Verdicts</h2><dl class="legend">')
    for key, _label, _s, _f, meaning in VERDICTS:
        body.append('<dt>%s</dt><dd>%s</dd>' % (badge(key), html_text(meaning)))
    body.append('</dl></section>')
    return page('IOMMU report: %s' % name, '\n'.join(body))
