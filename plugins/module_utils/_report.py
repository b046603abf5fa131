# -*- coding: utf-8 -*-
# Copyright: contributors to vfio.passthrough
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The IOMMU readiness report: a verdict per device, rendered as Markdown, HTML with an SVG map, and a fleet index.

Pure functions: the ``iommu`` facts of M(vfio.passthrough.iommu_facts) in, text
out; nothing here reads or writes a file. Every string that comes from a host
(class names, drivers, the kernel command line, host names) is escaped where it
is written, so a hostile or broken sysfs cannot inject markup into the page.
The HTML fetches nothing: CSS and SVG are inline and a Content-Security-Policy
forbids scripts and every network request, so the page is safe to open from a
file share or a mail attachment.
"""

from __future__ import annotations

import html
import re
from urllib.parse import quote

__all__ = [
    'VERDICTS', 'device_verdict', 'device_verdicts', 'group_verdict', 'report_summary',
    'render_markdown', 'render_html', 'render_index_markdown', 'render_index_html',
]

# (key, label, stroke colour, fill colour, meaning), ordered worst first: a group
# takes the first of these that any member has (platform devices last, since a
# bridge says nothing about what can be passed through).
VERDICTS = (
    ('host-critical', 'host-critical', '#c0392b', '#fbe3e0',
     'The host needs it: the NIC of the default route or of the address Ansible uses, a port of the '
     'bridge or bond carrying them, or the controller of /, /boot or /boot/efi. The role refuses it.'),
    ('iommu-off', 'IOMMU off', '#6d4bb8', '#ece6fa',
     'No IOMMU group: the IOMMU is off (firmware switch or kernel arguments), so nothing can be '
     'passed through yet. Run the role; it adds the arguments and says what firmware must enable.'),
    ('needs-acs', 'needs ACS', '#d35400', '#fde6d2',
     'Its IOMMU group holds devices of other cards, typically behind a bridge without ACS. Move the card '
     'to another slot, or accept pcie_acs_override, which lets the guest reach those devices by '
     'peer-to-peer DMA.'),
    ('shares-group', 'shares group', '#b7950b', '#fcf3cf',
     'Its group holds other functions of the same card (a GPU and its audio): pass them to the same VM '
     'together.'),
    ('no-flr', 'no FLR', '#5d8a1c', '#eaf4d3',
     'Isolated, but without a function-level reset: passthrough works, though the device may not come '
     'back cleanly when its VM restarts.'),
    ('ready', 'ready', '#1e8449', '#d5f5e3',
     'Alone in its IOMMU group (bridges aside) with a function-level reset: ready for passthrough.'),
    ('vfio', 'on vfio-pci', '#1f5fbf', '#dce8fa',
     'Bound to vfio-pci: held for a VM.'),
    ('platform', 'platform', '#7f8c8d', '#eef0f1',
     'A host bridge, PCI bridge, ISA bridge or the IOMMU itself: part of the platform, never passed '
     'through. Bridges in a group do not stop the devices behind them from being passed through.'),
)
_KEYS = tuple(v[0] for v in VERDICTS)
_LABEL = {v[0]: v[1] for v in VERDICTS}
_STROKE = {v[0]: v[2] for v in VERDICTS}
_FILL = {v[0]: v[3] for v in VERDICTS}
_RANK = {key: n for n, key in enumerate(_KEYS)}

_BRIDGE_CLASS = '0604'
_VFIO = 'vfio-pci'
# Bytes XML 1.0 cannot carry even escaped (and lone surrogates no encoder accepts):
# a sysfs read with errors='replace' cannot produce them, but facts may come from anywhere.
_UNSAFE_CHARS = re.compile('[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff\ufffe\uffff]')


# -- verdicts ------------------------------------------------------------------

def _slot(address):
    return address.rsplit('.', 1)[0]


def _is_platform(device):
    cls = device.get('class') or ''
    return cls.startswith('06') or cls.startswith('0806')


def _has_flr(device):
    # 'af' is the Advanced Features FLR of conventional PCI: the same reset under another capability.
    methods = device.get('reset_methods') or []
    return 'flr' in methods or 'af' in methods


def _describe(address, devices):
    device = devices.get(address)
    if not device:
        return address
    driver = device.get('driver')
    return '%s (%s%s)' % (address, device.get('class_name') or 'unknown class', ', ' + driver if driver else '')


def _reset_note(device):
    methods = device.get('reset_methods') or []
    if methods:
        return 'no function-level reset (resets only by %s): it may not come back cleanly after a VM restart' % \
            ', '.join(methods)
    return 'no reset method at all: it may not come back cleanly after a VM restart'


def device_verdict(address, devices, iommu_enabled=True):
    """The passthrough verdict of one device: {'verdict', 'label', 'reason', 'notes'}.

    ``devices`` is the facts' address -> device dict (peers are looked up in it),
    ``iommu_enabled`` the facts' ``enabled``. Precedence, first match wins:
    on vfio-pci, host-critical (names why), platform device (bridges, the IOMMU),
    no IOMMU group, a group shared with another card (needs ACS), a group shared
    with other functions of the same card (pass together), no FLR, ready.
    PCI bridges in a group are ignored, as vfio ignores them.
    """
    device = devices[address]
    group = device.get('iommu_group')
    endpoints = [p for p in device.get('group_peers') or []
                 if not ((devices.get(p) or {}).get('class') or '').startswith(_BRIDGE_CLASS)]
    same_card = [p for p in endpoints if p in devices and _slot(p) == _slot(address)]
    foreign = [p for p in endpoints if p not in same_card]
    notes = []
    if device.get('boot_vga'):
        notes.append('boot VGA device: the host console holds it (initcall_blacklist=sysfb_init or '
                     'video=efifb:off frees it)')

    if device.get('driver') == _VFIO:
        verdict = 'vfio'
        reason = 'bound to vfio-pci, held for a VM'
        # vfio accepts a group whose other endpoints have no driver, vfio-pci or pci-stub.
        held = [p for p in endpoints if (devices.get(p) or {}).get('driver') not in (None, _VFIO, 'pci-stub')]
        if held:
            notes.append('%s in IOMMU group %s %s still on the host: the VM does not start until %s on vfio-pci too'
                         % (', '.join(_describe(p, devices) for p in held), group,
                            'is' if len(held) == 1 else 'are', 'it is' if len(held) == 1 else 'they are'))
    elif device.get('host_critical'):
        verdict = 'host-critical'
        reason = 'the host needs it: %s' % '; '.join(device['host_critical'])
    elif _is_platform(device):
        verdict = 'platform'
        reason = '%s: part of the platform, not passed through' % (device.get('class_name') or 'bridge')
    elif group is None:
        verdict = 'iommu-off'
        reason = ('the IOMMU is off: no IOMMU groups exist' if not iommu_enabled else
                  'in no IOMMU group although the IOMMU is on: the kernel does not isolate it')
    elif foreign:
        verdict = 'needs-acs'
        reason = ('shares IOMMU group %s with %s, not of this card: move the card to another slot, or use '
                  'pcie_acs_override (risk: the guest can reach those devices by peer-to-peer DMA)'
                  % (group, ', '.join(_describe(p, devices) for p in foreign)))
    elif same_card:
        verdict = 'shares-group'
        reason = ('shares IOMMU group %s with %s, other functions of the same card: pass them together'
                  % (group, ', '.join(_describe(p, devices) for p in same_card)))
    elif not _has_flr(device):
        verdict = 'no-flr'
        reason = 'isolated in IOMMU group %s, but %s' % (group, _reset_note(device))
    else:
        verdict = 'ready'
        reason = 'isolated in IOMMU group %s, function-level reset' % group
    if verdict in ('needs-acs', 'shares-group'):
        # The whole group goes to the VM, so a peer the host needs blocks this device too.
        critical = [p for p in endpoints if (devices.get(p) or {}).get('host_critical')]
        if critical:
            notes.append('%s in the same IOMMU group %s host-critical: the group cannot go to a VM while the '
                         'host needs %s' % (', '.join(critical), 'is' if len(critical) == 1 else 'are',
                                            'it' if len(critical) == 1 else 'them'))
    if verdict in ('vfio', 'needs-acs', 'shares-group') and not _has_flr(device):
        notes.append(_reset_note(device))
    return {'verdict': verdict, 'label': _LABEL[verdict], 'reason': reason, 'notes': notes}


def device_verdicts(facts):
    """{address: device_verdict(...)} for every device, in address order."""
    devices = _devices(facts)
    enabled = bool(facts.get('enabled'))
    return {address: device_verdict(address, devices, enabled) for address in sorted(devices)}


def group_verdict(verdicts):
    """The worst of the members' verdict keys; platform devices count only when nothing else is there."""
    keys = [v for v in verdicts if v != 'platform'] or list(verdicts)
    return min(keys, key=_RANK.__getitem__) if keys else 'platform'


def _devices(facts):
    if not isinstance(facts, dict) or not isinstance(facts.get('devices'), dict):
        raise ValueError('expected the iommu facts of vfio.passthrough.iommu_facts (a dict with devices), got %r'
                         % type(facts).__name__)
    return facts['devices']


def _group_key(name):
    text = str(name)
    return (0, int(text), '') if text.isdigit() else (1, 0, text)


def _groups(facts, verdicts):
    """[(group name or None, [addresses], type, verdict key)], groups in numeric order, ungrouped devices last."""
    devices = _devices(facts)
    groups = facts.get('groups') or {}
    seen = set()
    result = []
    for name in sorted(groups, key=_group_key):
        members = sorted(a for a in (groups[name] or {}).get('devices') or [] if a in devices)
        seen.update(members)
        result.append((str(name), members, (groups[name] or {}).get('type'),
                       group_verdict([verdicts[a]['verdict'] for a in members])))
    # A device the group listing missed still carries its group number.
    strays = {}
    for address in sorted(devices):
        if address not in seen:
            strays.setdefault(devices[address].get('iommu_group'), []).append(address)
    for name in sorted((n for n in strays if n is not None), key=_group_key):
        result.append((str(name), strays[name], None, group_verdict([verdicts[a]['verdict'] for a in strays[name]])))
    if None in strays:
        # Not a group: the devices the IOMMU does not isolate, whatever each one's own verdict.
        result.append((None, strays[None], None, 'iommu-off'))
    return result


def report_summary(facts):
    """What the fleet index shows of one host: IOMMU state and the number of devices per verdict."""
    verdicts = device_verdicts(facts)
    counts = {key: 0 for key in _KEYS}
    for verdict in verdicts.values():
        counts[verdict['verdict']] += 1
    return {
        'enabled': bool(facts.get('enabled')),
        'vendor': facts.get('vendor'),
        'kernel': facts.get('kernel'),
        'interrupt_remapping': facts.get('interrupt_remapping'),
        'passthrough_mode': facts.get('passthrough_mode'),
        'devices': len(verdicts),
        'groups': len(facts.get('groups') or {}),
        'counts': counts,
    }


# -- shared text ----------------------------------------------------------------

def _clean(value):
    return _UNSAFE_CHARS.sub('\ufffd', '' if value is None else str(value))


def _yes_no(value, yes='yes', no='no'):
    return 'unknown' if value is None else (yes if value else no)


def _host_rows(facts):
    acs = facts.get('acs_override')
    return [
        ('IOMMU', '%s (%s)' % ('on' if facts.get('enabled') else 'OFF', facts.get('vendor') or 'vendor unknown')),
        ('Firmware table (DMAR/IVRS)', _yes_no(facts.get('firmware_support'), 'present', 'MISSING')),
        ('Interrupt remapping', _yes_no(facts.get('interrupt_remapping'))),
        ('Passthrough (iommu=pt)', _yes_no(facts.get('passthrough_mode'))),
        ('ACS override', 'pcie_acs_override=%s' % acs if acs is not None else 'none'),
        ('Kernel', facts.get('kernel') or 'unknown'),
        ('Command line', facts.get('cmdline') or ''),
    ]


def _sriov(device):
    total = device.get('sriov_totalvfs')
    if not total:
        return '-'
    return '%s of %s VFs' % (device.get('sriov_numvfs') or 0, total)


def _isolation(device):
    if device.get('iommu_group') is None:
        return 'no group'
    peers = device.get('group_peers') or []
    if not peers:
        return 'alone in group %s' % device['iommu_group']
    if device.get('isolated'):
        return 'isolated (group %s with %s)' % (device['iommu_group'], ', '.join(peers))
    return 'shared (group %s with %s)' % (device['iommu_group'], ', '.join(peers))


def _vfio_state(device):
    driver = device.get('driver')
    if driver == _VFIO:
        return 'bound'
    if driver == 'pci-stub':
        return 'held by pci-stub'
    return 'host (%s)' % driver if driver else 'no driver'


def _id(device):
    return '%s:%s' % (device.get('vendor_id') or '????', device.get('device_id') or '????')


def _verdict_text(verdict):
    return '; '.join([verdict['reason']] + verdict['notes'])


def _count_line(counts):
    parts = ['%d %s' % (counts[key], _LABEL[key]) for key in _KEYS if counts.get(key)]
    return ', '.join(parts) or 'no devices'


# -- Markdown ---------------------------------------------------------------------

def _md(value):
    """Table-cell text: markup neutralised (entities render as the same characters), one line, pipes escaped."""
    text = html.escape(_clean(value), quote=False)
    return re.sub(r'\s*[\r\n]+\s*', ' ', text).replace('\\', '\\\\').replace('|', '\\|') \
        .replace('`', '\\`').replace('*', '\\*').replace('[', '\\[').replace(']', '\\]')


def _md_code(value):
    """A code span: shown verbatim (markup inert), fenced with more backticks than it contains."""
    text = re.sub(r'[\r\n]+', ' ', _clean(value)).replace('|', '\\|')
    longest = max((len(run) for run in re.findall('`+', text)), default=0)
    fence = '`' * (longest + 1)
    pad = ' ' if text.startswith('`') or text.endswith('`') or not text.strip() else ''
    return '%s%s%s%s%s' % (fence, pad, text, pad, fence) if text else '-'


def render_markdown(facts, host=''):
    """The host report as Markdown: summary, groups table, devices table, verdict meanings."""
    devices = _devices(facts)
    verdicts = device_verdicts(facts)
    summary = report_summary(facts)
    out = ['# IOMMU report: %s' % (_md(host) or 'host'), '']
    out += ['| | |', '| --- | --- |']
    for name, value in _host_rows(facts):
        out.append('| %s | %s |' % (name, _md_code(value) if name == 'Command line' else _md(value)))
    counts = _md(_count_line(summary['counts']))
    out += ['', '%d devices in %d IOMMU groups: %s.' % (summary['devices'], summary['groups'], counts), '']

    out += ['## IOMMU groups', '', '| group | type | verdict | devices |', '| --- | --- | --- | --- |']
    for name, members, type_, verdict in _groups(facts, verdicts):
        listed = '<br>'.join('%s %s (%s)' % (_md(a), _md(devices[a].get('class_name')), _md(_LABEL[verdicts[a]['verdict']]))
                             for a in members)
        out.append('| %s | %s | %s | %s |' % ('-' if name is None else _md(name), _md(type_ or '-'),
                                              _md(_LABEL[verdict]), listed))
    out += ['']

    out += ['## Devices', '',
            '| address | vendor:device | class | driver | group | reset methods | SR-IOV | isolation | vfio | verdict |',
            '| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |']
    for address in sorted(devices):
        device, verdict = devices[address], verdicts[address]
        group = device.get('iommu_group')
        out.append('| %s |' % ' | '.join([
            _md(address), _md(_id(device)), _md(device.get('class_name')), _md(device.get('driver') or '-'),
            '-' if group is None else _md(group), _md(' '.join(device.get('reset_methods') or []) or '-'),
            _md(_sriov(device)), _md(_isolation(device)), _md(_vfio_state(device)),
            '**%s**: %s' % (_md(verdict['label']), _md(_verdict_text(verdict))),
        ]))
    out += ['', '## Verdicts', '']
    out += ['- **%s**: %s' % (label, _md(meaning)) for _key, label, _s, _f, meaning in VERDICTS]
    return '\n'.join(out) + '\n'


# -- HTML and SVG -------------------------------------------------------------------

def _h(value):
    return html.escape(_clean(value), quote=True)


def _truncate(text, limit):
    text = _clean(text)
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


def _badge(key, text=None):
    return '<span class="badge" style="color:%s;background:%s;border-color:%s">%s</span>' % (
        _STROKE[key], _FILL[key], _STROKE[key], _h(text if text is not None else _LABEL[key]))


def _page(title, body):
    return ('<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            '<meta http-equiv="Content-Security-Policy" content="%s">\n'
            '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            '<title>%s</title>\n<style>%s</style>\n</head>\n<body>\n%s\n'
            '<footer>Written by vfio.passthrough (playbooks/report.yml), which only reads the hosts.</footer>\n'
            '</body>\n</html>\n') % (_h(_CSP), _h(title), _CSS, body)


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
    title = '<title>%s</title>' % _h(text) if shown != _clean(text) else ''
    return '<text x="%.1f" y="%.1f"%s>%s%s</text>' % (x, y, attrs, title, _h(shown))


def _render_svg(facts, verdicts, host):
    devices = _devices(facts)
    groups = _groups(facts, verdicts)
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
           'font-family="%s" font-size="11">' % (_SVG_WIDTH, total, _SVG_WIDTH, total, _h(_FONT)),
           '<title>IOMMU groups of %s</title>' % _h(host or 'the host')]
    # legend
    x = 0.0
    out.append('<g class="legend">')
    for key, label, stroke, fill, meaning in VERDICTS:
        out.append('<g><title>%s</title><rect x="%.1f" y="6" width="14" height="14" rx="3" fill="%s" stroke="%s" '
                   'stroke-width="3"/>' % (_h(meaning), x, fill, stroke))
        out.append('<text x="%.1f" y="17.5" font-size="12">%s</text></g>' % (x + 19, _h(label)))
        x += 19 + len(label) * 7.4 + 20
    out.append('</g>')
    if not boxes:
        out.append('<text x="0" y="%d" font-size="13">No PCI devices found.</text>' % (_LEGEND + _GAP + 20))
    elif not facts.get('enabled'):
        out.append('<text x="%d" y="%d" font-size="13" font-weight="700" fill="%s">The IOMMU is off: no device '
                   'can be passed through until it is on.</text>'
                   % (col_width + _GAP, _LEGEND + _GAP + 17, _STROKE['iommu-off']))
    for x, y, height, name, members, type_, verdict in boxes:
        gid = 'none' if name is None else name
        out.append('<g class="group" id="group-%s">' % _h(gid))
        out.append('<rect x="%.1f" y="%.1f" width="%.1f" height="%d" rx="6" fill="%s" fill-opacity="0.55" '
                   'stroke="%s" stroke-width="2"/>' % (x, y, col_width, height, _FILL[verdict], _STROKE[verdict]))
        title = 'No IOMMU group' if name is None else 'Group %s%s' % (name, ' \u00b7 %s' % type_ if type_ else '')
        label = _LABEL[verdict]
        out.append(_svg_text(x + _PAD, y + 17, title, chars - len(label) - 1,
                             ' font-weight="700" font-size="12"'))
        out.append('<text x="%.1f" y="%.1f" text-anchor="end" font-weight="700" fill="%s">%s</text>'
                   % (x + col_width - _PAD, y + 17, _STROKE[verdict], _h(label)))
        for n, address in enumerate(members):
            device, dv = devices[address], verdicts[address]
            ry = y + _HEADER + n * (_ROW + _ROW_GAP)
            key = dv['verdict']
            tip = '%s [%s] %s, driver %s: %s \u2014 %s' % (
                address, _id(device), device.get('class_name') or '', device.get('driver') or 'none',
                dv['label'], _verdict_text(dv))
            out.append('<a href="#dev-%s"><g class="device">' % _h(address))
            out.append('<title>%s</title>' % _h(tip))
            out.append('<rect x="%.1f" y="%.1f" width="%.1f" height="%d" rx="4" fill="#ffffff" stroke="%s"/>'
                       % (x + _PAD, ry, col_width - 2 * _PAD, _ROW, _STROKE[key]))
            out.append('<rect x="%.1f" y="%.1f" width="6" height="%d" rx="2" fill="%s"/>'
                       % (x + _PAD, ry, _ROW, _STROKE[key]))
            text_x = x + _PAD + 12
            driver = device.get('driver') or 'no driver'
            out.append(_svg_text(text_x, ry + 14, '%s %s %s' % (address, _id(device), driver), chars,
                                 ' font-weight="700"'))
            out.append(_svg_text(text_x, ry + 29, device.get('class_name') or '', chars - len(dv['label']) - 1,
                                 ' fill="#3d4653"'))
            out.append('<text x="%.1f" y="%.1f" text-anchor="end" fill="%s">%s</text>'
                       % (x + col_width - _PAD - 6, ry + 29, _STROKE[key], _h(dv['label'])))
            out.append('</g></a>')
        out.append('</g>')
    out.append('</svg>')
    return '\n'.join(out)


def render_html(facts, host=''):
    """One self-contained page: host summary, the SVG map of the IOMMU groups, groups and devices tables."""
    devices = _devices(facts)
    verdicts = device_verdicts(facts)
    summary = report_summary(facts)
    name = host or 'host'
    body = ['<header><h1>IOMMU report: %s</h1>' % _h(name),
            '<p class="sub">%d PCI devices in %d IOMMU groups</p>' % (summary['devices'], summary['groups'])]
    body.append('<dl class="facts">')
    for label, value in _host_rows(facts):
        bad = ((label == 'IOMMU' and not facts.get('enabled'))
               or (label.startswith('Firmware') and facts.get('firmware_support') is False)
               or (label == 'Interrupt remapping' and facts.get('interrupt_remapping') is False))
        classes = ' '.join(c for c, on in (('bad', bad), ('code', label == 'ACS override' and value != 'none')) if on)
        body.append('<div%s><dt>%s</dt><dd%s>%s</dd></div>' % (
            ' class="wide"' if label == 'Command line' else '', _h(label), ' class="%s"' % classes if classes else '',
            _h(value) or '&nbsp;'))
    body.append('</dl>')
    body.append('<ul class="counts">%s</ul></header>' % ''.join(
        '<li>%s</li>' % _badge(key, '%d %s' % (summary['counts'][key], _LABEL[key]))
        for key in _KEYS if summary['counts'][key]))

    body.append('<section><h2>IOMMU groups</h2><div class="map">%s</div></section>'
                % _render_svg(facts, verdicts, host))

    body.append('<section><h2>Groups</h2><table><thead><tr><th>group</th><th>type</th><th>verdict</th>'
                '<th>devices</th></tr></thead><tbody>')
    for gname, members, type_, verdict in _groups(facts, verdicts):
        listed = '<br>'.join('<a class="mono" href="#dev-%s">%s</a> %s' % (_h(a), _h(a), _h(devices[a].get('class_name')))
                             for a in members)
        body.append('<tr><td class="mono">%s</td><td>%s</td><td>%s</td><td>%s</td></tr>' % (
            '-' if gname is None else _h(gname), _h(type_ or '-'), _badge(verdict), listed))
    body.append('</tbody></table></section>')

    body.append('<section><h2>Devices</h2><table><thead><tr><th>address</th><th>vendor:device</th><th>class</th>'
                '<th>driver</th><th>group</th><th>reset methods</th><th>SR-IOV</th><th>isolation</th>'
                '<th>vfio</th><th>verdict</th></tr></thead><tbody>')
    for address in sorted(devices):
        device, verdict = devices[address], verdicts[address]
        group = device.get('iommu_group')
        notes = ''.join('<li>%s</li>' % _h(note) for note in verdict['notes'])
        body.append(
            '<tr id="dev-%s"><td class="mono">%s</td><td class="mono">%s</td><td>%s</td><td class="mono">%s</td>'
            '<td class="mono">%s</td><td class="mono">%s</td><td>%s</td><td>%s</td><td>%s</td>'
            '<td class="why">%s %s%s</td></tr>' % (
                _h(address), _h(address), _h(_id(device)), _h(device.get('class_name')), _h(device.get('driver') or '-'),
                '-' if group is None else _h(group), _h(' '.join(device.get('reset_methods') or []) or '-'),
                _h(_sriov(device)), _h(_isolation(device)), _h(_vfio_state(device)),
                _badge(verdict['verdict']), _h(verdict['reason']), '<ul>%s</ul>' % notes if notes else ''))
    body.append('</tbody></table></section>')

    body.append('<section><h2>Verdicts</h2><dl class="legend">')
    for key, _label, _s, _f, meaning in VERDICTS:
        body.append('<dt>%s</dt><dd>%s</dd>' % (_badge(key), _h(meaning)))
    body.append('</dl></section>')
    return _page('IOMMU report: %s' % name, '\n'.join(body))


# -- fleet index ---------------------------------------------------------------------

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
    totals = {key: 0 for key in _KEYS}
    for _host, summary in entries:
        for key in _KEYS:
            totals[key] += summary['counts'].get(key, 0) if summary else 0
    return totals


def _host_href(host):
    return '%s/iommu.html' % quote(host, safe='')


def render_index_markdown(hosts):
    """The fleet index as Markdown: one row per host with its device count per verdict."""
    entries = _host_entries(hosts)
    out = ['# IOMMU readiness: %d hosts' % len(entries), '',
           '| host | IOMMU | vendor | kernel | devices | %s |' % ' | '.join(_LABEL[k] for k in _KEYS),
           '| --- | --- | --- | --- | --- | %s |' % ' | '.join('---:' for _k in _KEYS)]
    for host, summary in entries:
        link = '[%s](%s)' % (_md(host), _host_href(host).replace('(', '%28').replace(')', '%29'))
        if summary is None:
            out.append('| %s | no facts | | | | %s |' % (link, ' | '.join('' for _k in _KEYS)))
            continue
        out.append('| %s | %s | %s | %s | %d | %s |' % (
            link, 'on' if summary['enabled'] else 'OFF', _md(summary.get('vendor') or '-'),
            _md(summary.get('kernel') or '-'), summary['devices'],
            ' | '.join(str(summary['counts'].get(k, 0)) for k in _KEYS)))
    totals = _totals(entries)
    out.append('| **all** | | | | %d | %s |' % (sum(totals.values()), ' | '.join(str(totals[k]) for k in _KEYS)))
    return '\n'.join(out) + '\n'


def render_index_html(hosts):
    """The fleet index page: one row per host, linking to <host>/iommu.html, with device counts per verdict."""
    entries = _host_entries(hosts)
    rows = []
    for host, summary in entries:
        link = '<a href="%s">%s</a>' % (_h(_host_href(host)), _h(host))
        if summary is None:
            rows.append('<tr><td>%s</td><td class="bad" colspan="%d">no facts gathered</td></tr>'
                        % (link, 4 + len(_KEYS)))
            continue
        cells = ''.join('<td class="num">%s</td>' % (_badge(k, str(summary['counts'].get(k, 0)))
                                                     if summary['counts'].get(k) else '0') for k in _KEYS)
        rows.append('<tr><td>%s</td><td%s>%s</td><td>%s</td><td class="mono">%s</td><td class="num">%d</td>%s</tr>' % (
            link, '' if summary['enabled'] else ' class="bad"', 'on' if summary['enabled'] else 'OFF',
            _h(summary.get('vendor') or '-'), _h(summary.get('kernel') or '-'), summary['devices'], cells))
    totals = _totals(entries)
    rows.append('<tr><th>all</th><th></th><th></th><th></th><th class="num">%d</th>%s</tr>' % (
        sum(totals.values()), ''.join('<th class="num">%d</th>' % totals[k] for k in _KEYS)))
    head = ''.join('<th title="%s">%s</th>' % (_h(meaning), _h(label)) for _k, label, _s, _f, meaning in VERDICTS)
    body = ['<header><h1>IOMMU readiness: %d hosts</h1>' % len(entries),
            '<p class="sub">Devices per verdict; each host links to its report.</p></header>',
            '<table><thead><tr><th>host</th><th>IOMMU</th><th>vendor</th><th>kernel</th><th>devices</th>%s</tr></thead>'
            '<tbody>%s</tbody></table>' % (head, '\n'.join(rows)),
            '<section><h2>Verdicts</h2><dl class="legend">%s</dl></section>' % ''.join(
                '<dt>%s</dt><dd>%s</dd>' % (_badge(key), _h(meaning)) for key, _l, _s, _f, meaning in VERDICTS)]
    return _page('IOMMU readiness: %d hosts' % len(entries), '\n'.join(body))
