# -*- coding: utf-8 -*-
# Copyright: contributors to vfio.passthrough
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What Ceph says about stopping a host's OSDs: ``ceph osd ok-to-stop``, ``ceph status``, ``ceph osd ls-tree``.

``ok-to-stop`` answers in JSON on stdout (the mgr's offline_pg_report:
``ok_to_stop``, ``osds``, ``num_ok_pgs``, ``num_not_ok_pgs`` and, only when
not empty, ``bad_become_inactive``, ``bad_already_inactive``, ``unknown_pgs``,
``bad_no_pool_pgs``, ``ok_become_degraded``, ``ok_become_more_degraded``) and
says why on stderr (``Error EBUSY: unsafe to stop osd(s) at this time (N PGs
are or would become offline)``, exit 16). Ceph 16.2 (Debian 12), 18.2
(Debian 13) and Proxmox's newer builds add keys; unknown keys are ignored.
"""

from __future__ import annotations

import json

__all__ = ['CephStatusError', 'parse_ok_to_stop', 'parse_ceph_status', 'parse_osd_ids']

_PG_LISTS = ('bad_become_inactive', 'bad_already_inactive', 'unknown_pgs', 'bad_no_pool_pgs',
             'ok_become_degraded', 'ok_become_more_degraded')


class CephStatusError(ValueError):
    """A Ceph answer that cannot be read as such."""


def _first_json_object(text):
    """The JSON object in ``text``, also when a line of prose precedes it."""
    text = text or ''
    start = text.find('{')
    while start != -1:
        try:
            value, _end = json.JSONDecoder().raw_decode(text[start:])
        except ValueError:
            start = text.find('{', start + 1)
            continue
        if isinstance(value, dict):
            return value
        start = text.find('{', start + 1)
    return None


def _strings(value):
    return [str(v) for v in value] if isinstance(value, list) else []


def parse_ok_to_stop(rc, stdout, stderr):
    """``ceph osd ok-to-stop <ids>``: whether Ceph agrees, and which PGs say no.

    A non-zero exit is never read as "ok", whatever the JSON says; no JSON at
    all (EAGAIN: PG states unknown, an old Ceph) is "not ok" with Ceph's words.
    """
    report = _first_json_object(stdout) or {}
    message = ' '.join(line.strip() for line in (stderr or '').splitlines() if line.strip())
    result = {
        'ok_to_stop': rc == 0 and report.get('ok_to_stop', True) is True,
        'osds': [o for o in report.get('osds', []) if isinstance(o, int)] if isinstance(report.get('osds'), list) else [],
        'num_ok_pgs': report.get('num_ok_pgs'),
        'num_not_ok_pgs': report.get('num_not_ok_pgs'),
        'message': message,
        'rc': rc,
    }
    for key in _PG_LISTS:
        result[key] = _strings(report.get(key))
    return result


def parse_ceph_status(text):
    """``ceph status --format json``: health, PG counts by state, OSD counts and the health checks."""
    data = _first_json_object(text)
    if data is None:
        raise CephStatusError('ceph status printed no JSON object: %s' % ((text or '').strip()[:200] or '(nothing)'))
    pgmap = data.get('pgmap') if isinstance(data.get('pgmap'), dict) else {}
    states = {}
    for entry in pgmap.get('pgs_by_state') or []:
        if isinstance(entry, dict) and isinstance(entry.get('count'), int):
            states[str(entry.get('state_name'))] = states.get(str(entry.get('state_name')), 0) + entry['count']
    health = data.get('health') if isinstance(data.get('health'), dict) else {}
    checks = {}
    for name, check in (health.get('checks') or {}).items():
        summary = check.get('summary') if isinstance(check, dict) else None
        checks[str(name)] = summary.get('message') if isinstance(summary, dict) else None
    osdmap = data.get('osdmap') if isinstance(data.get('osdmap'), dict) else {}
    # Ceph before 15 nests the counts one level deeper.
    if isinstance(osdmap.get('osdmap'), dict):
        osdmap = osdmap['osdmap']
    return {
        'health': health.get('status') or health.get('overall_status'),
        'checks': checks,
        'pgs_by_state': states,
        'num_pgs': pgmap.get('num_pgs', sum(states.values())),
        'num_osds': osdmap.get('num_osds'),
        'num_up_osds': osdmap.get('num_up_osds'),
        'num_in_osds': osdmap.get('num_in_osds'),
    }


def parse_osd_ids(text):
    """``ceph osd ls-tree --format json <host>``: the OSD ids under the host's CRUSH bucket."""
    try:
        data = json.loads(text)
    except (TypeError, ValueError) as exc:
        raise CephStatusError('ceph osd ls-tree printed no JSON list: %s' % exc)
    if not isinstance(data, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in data):
        raise CephStatusError('ceph osd ls-tree printed %r, not a list of OSD ids' % (data,))
    return sorted(data)
