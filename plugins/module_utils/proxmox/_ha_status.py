# -*- coding: utf-8 -*-
# Copyright: contributors to vfio.passthrough
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What Proxmox's HA stack says about a node: ``ha-manager status`` and its two JSON files.

Formats as pve-ha-manager writes them (src/PVE/HA/Manager.pm flush_master_status,
src/PVE/HA/LRM.pm update_lrm_status, src/PVE/API2/HA/Status.pm and
src/PVE/CLI/ha_manager.pm for the text): ``/etc/pve/ha/manager_status`` holds
``master_node``, ``node_status`` ({node: online|maintenance|unknown|fence|gone}),
``service_status`` ({sid: {node, state, target?, uid, running?, ...}}),
``node_request`` and ``timestamp``; ``/etc/pve/nodes/<node>/lrm_status`` holds
``state``, ``mode`` (active|restart|shutdown|maintenance), ``results`` and
``timestamp``. ``ha-manager status`` prints one ``<type> <status>`` line per
entry, services as ``service vm:100 (pve1, started)`` -- the only place that
names services HA ignores (they are not in manager_status). Keys this code does
not know are kept out of the way, not refused: newer releases add some.
"""

from __future__ import annotations

import json
import re

__all__ = ['HaStatusError', 'parse_manager_status', 'parse_lrm_status', 'parse_ha_status_text', 'parse_ha_resources']


class HaStatusError(ValueError):
    """An HA status file or text that cannot be read as such."""


def _json_object(text, what):
    try:
        data = json.loads(text)
    except (TypeError, ValueError) as exc:
        raise HaStatusError('%s is not JSON: %s' % (what, exc))
    if not isinstance(data, dict):
        raise HaStatusError('%s is JSON %s, not an object' % (what, type(data).__name__))
    return data


def _dict(value):
    return value if isinstance(value, dict) else {}


def parse_manager_status(text):
    """The CRM's view: node states, services with their node, state and migration target."""
    data = _json_object(text, '/etc/pve/ha/manager_status')
    services = {}
    for sid, entry in _dict(data.get('service_status')).items():
        entry = _dict(entry)
        services[str(sid)] = {
            'node': entry.get('node'), 'state': entry.get('state'),
            'target': entry.get('target'), 'running': entry.get('running'),
        }
    requests = {str(node): sorted(k for k, v in _dict(req).items() if v)
                for node, req in _dict(data.get('node_request')).items()}
    return {
        'master_node': data.get('master_node'),
        'timestamp': data.get('timestamp'),
        'node_status': {str(k): v for k, v in _dict(data.get('node_status')).items()},
        'node_request': requests,
        'service_status': services,
    }


def parse_lrm_status(text):
    """The node's local resource manager: its state and mode (``maintenance`` once drained of work)."""
    data = _json_object(text, 'lrm_status')
    return {'state': data.get('state'), 'mode': data.get('mode'), 'timestamp': data.get('timestamp')}


_SERVICE = re.compile(r'^service\s+(?P<sid>\S+)\s+\((?P<node>[^,()]*),\s*(?P<state>[^()]*)\)\s*$')
_LRM = re.compile(r'^lrm\s+(?P<node>\S+)\s+\((?P<status>.*)\)\s*$')


def parse_ha_status_text(text):
    """``ha-manager status`` lines: quorum, master, lrm per node, services with node and verbose state."""
    result = {'quorum': None, 'master': None, 'lrm': {}, 'services': {}}
    for line in (text or '').splitlines():
        line = line.strip()
        if line.startswith('quorum '):
            result['quorum'] = line[len('quorum '):]
        elif line.startswith('master '):
            result['master'] = line[len('master '):]
        elif line.startswith('full cluster state:'):
            break  # --verbose appends the JSON files, read on their own
        else:
            match = _LRM.match(line)
            if match:
                result['lrm'][match.group('node')] = match.group('status').split(',')[0].strip()
                continue
            match = _SERVICE.match(line)
            if match:
                result['services'][match.group('sid')] = {
                    'node': match.group('node').strip(), 'state': match.group('state').strip()}
    return result


_SECTION_HEADER = re.compile(r'(\S+):\s*(\S+)\s*$')
_SECTION_PROPERTY = re.compile(r'\s+(\S+)(?:\s+(.*\S))?\s*$')


def parse_ha_resources(text):
    """``/etc/pve/ha/resources.cfg`` as ``{sid: {'type', 'name', 'state', ...}}`` (``vm:100`` -> its properties).

    A section config (pve-common SectionConfig, pve-ha-manager src/PVE/HA/Resources.pm): a header
    ``vm: 100`` or ``ct: 101`` in column 0, indented ``key value`` properties, an empty line ending
    the section. ``state`` is absent when it has its default, ``started``.
    """
    resources = {}
    current = None
    for line in (text or '').split('\n'):
        if not line.strip():
            current = None
            continue
        if line.lstrip().startswith('#'):
            continue
        header = _SECTION_HEADER.match(line)
        if header and not line[0].isspace():
            kind, name = header.groups()
            current = resources['%s:%s' % (kind, name)] = {'type': kind, 'name': name}
            continue
        prop = _SECTION_PROPERTY.match(line)
        if prop and current is not None:
            current[prop.group(1)] = prop.group(2) if prop.group(2) is not None else ''
    return resources
