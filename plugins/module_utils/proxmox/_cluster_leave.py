# -*- coding: utf-8 -*-
# Copyright: contributors to vfio.passthrough
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Whether a Proxmox node may leave its cluster now, and why not: one decision, from the cluster's own state.

Each check returns ``{'verdict': 'ok'|'wait'|'refuse', 'reasons': [...], 'notes': [...]}``:
``refuse`` stops the reboot (nothing has been or will be done to the cluster),
``wait`` means the state is on its way (HA still moving services, a node still
rejoining, PGs still recovering) and the caller asks again until its timeout.

Votes: the cluster keeps quorum after this node leaves when the votes that
remain -- ``Total votes`` minus this node's votes -- are at least ``Quorum``.
``Total votes`` already holds a quorum device's vote exactly when the device
votes (corosync-quorumtool shows ``Qdevice (votes 1)`` with 0 votes when the
qnetd is out of reach), so a silent qdevice counts for nothing. votequorum(5)
``two_node``: quorum is 1, so with both nodes up the survivor stays quorate;
``wait_for_all`` (implied) only keeps a booting node unquorate until it has
seen its peer -- which is up. The rule is the same arithmetic: both up, 1 of 2
remains, quorum 1: may leave; the peer down, 0 remain: refused.
"""

from __future__ import annotations

__all__ = [
    'quorum_verdict', 'rejoin_verdict', 'ha_verdict', 'ceph_stop_verdict', 'ceph_clean_verdict',
    'combine', 'batch_conflicts', 'HA_WAIT_STATES', 'HA_LEFT_STATES',
]

# Service states (manager_status, and ha-manager status' verbose ones) HA is still working on:
# the node must not go down before they are gone from it.
HA_WAIT_STATES = frozenset((
    'started', 'starting', 'request_start', 'request_start_balance', 'migrate', 'relocate',
    'request_stop', 'stopping', 'recovery', 'freeze', 'fence', 'queued',
))
# States HA will not move: named so the operator knows they go down with the node.
HA_LEFT_STATES = frozenset(('stopped', 'disabled', 'error', 'ignored', 'deleting', 'not found',
                            'clearing error flag'))

_LIST_MAX = 10


def _names(items):
    items = list(items)
    shown = ', '.join(items[:_LIST_MAX])
    return shown + (' and %d more' % (len(items) - _LIST_MAX) if len(items) > _LIST_MAX else '')


def _verdict(reasons=(), waits=(), notes=()):
    if reasons:
        return {'verdict': 'refuse', 'reasons': list(reasons), 'notes': list(notes)}
    if waits:
        return {'verdict': 'wait', 'reasons': list(waits), 'notes': list(notes)}
    return {'verdict': 'ok', 'reasons': [], 'notes': list(notes)}


def quorum_verdict(node, quorum):
    """May ``node`` leave without the cluster losing quorum? ``quorum``: parse_quorumtool's result."""
    notes = []
    if not quorum['quorate']:
        return _verdict(['%s: the cluster is not quorate now (%d of %d votes, quorum needs %d): not rebooting'
                         % (node, quorum['total_votes'], quorum['expected_votes'], quorum['quorum'])])
    local = quorum.get('local')
    if local is None:
        return _verdict(['%s: corosync-quorumtool lists no local member: cannot tell this node\'s votes:'
                         ' not rebooting' % node])
    remaining = quorum['total_votes'] - local['votes']
    qdevice = quorum.get('qdevice')
    if quorum.get('qdevice_flag') or qdevice:
        if qdevice and qdevice['voting']:
            notes.append('the quorum device votes (%d), counted in the %d votes'
                         % (qdevice['votes'], quorum['total_votes']))
        else:
            notes.append('the quorum device does not vote now (qnetd out of reach?): its %s not counted'
                         % ('%d vote is' % qdevice['configured_votes'] if qdevice else 'vote is'))
    if quorum.get('two_node'):
        notes.append('two_node: quorum is 1 while both nodes are up; this node waits for its peer when it boots'
                     ' (wait_for_all)')
    numbers = '%d of %d votes would remain, quorum needs %d' % (remaining, quorum['expected_votes'], quorum['quorum'])
    if quorum['total_votes'] < quorum['expected_votes']:
        numbers += ' (%d of %d votes present now)' % (quorum['total_votes'], quorum['expected_votes'])
    if remaining < quorum['quorum']:
        silent = (quorum.get('qdevice_flag') or qdevice) and not (qdevice and qdevice['voting'])
        why = ' (the quorum device does not vote: is its qnetd reachable?)' if silent else ''
        return _verdict(['%s: %s%s: not rebooting' % (node, numbers, why)], notes=notes)
    return _verdict(notes=['%s: %s: may leave' % (node, numbers)] + notes)


def rejoin_verdict(node, quorum, votes_before):
    """Is ``node`` back: listed as the local member, its votes counted, the cluster quorate with them?"""
    local = quorum.get('local')
    waits = []
    if local is None:
        waits.append('%s is not yet a member' % node)
    if not quorum['quorate']:
        waits.append('the cluster is not quorate (%d of %d votes, quorum needs %d)'
                     % (quorum['total_votes'], quorum['expected_votes'], quorum['quorum']))
    if votes_before is not None and quorum['total_votes'] < votes_before:
        waits.append('%d votes, %d before the reboot' % (quorum['total_votes'], votes_before))
    if waits:
        return _verdict(waits=['%s: %s' % (node, '; '.join(waits))])
    return _verdict(notes=['%s: back, %d of %d votes, quorate' % (node, quorum['total_votes'], quorum['expected_votes'])])


def _ha_services_on(node, manager, text):
    """{sid: state} of every HA service on ``node`` or migrating onto it."""
    services = {}
    for sid, entry in (manager or {}).get('service_status', {}).items():
        if entry.get('node') == node or entry.get('target') == node:
            state = entry.get('state') or 'unknown'
            if state in ('migrate', 'relocate') and entry.get('target'):
                state = '%s %s -> %s' % (state, entry.get('node'), entry['target'])
            elif state == 'started' and entry.get('running') is not None and not entry.get('running'):
                state = 'starting'
            services[sid] = state
    for sid, entry in (text or {}).get('services', {}).items():
        if sid not in services and entry.get('node') == node:
            services[sid] = entry.get('state') or 'unknown'
    return services


def ha_verdict(node, manager=None, lrm=None, text=None, maintenance_expected=True):
    """Has HA drained ``node``: in maintenance, and no service left it still has to move or stop?

    ``manager``/``lrm``/``text``: parse_manager_status, parse_lrm_status, parse_ha_status_text
    (each may be None when unreadable or HA is not in use).
    """
    services = _ha_services_on(node, manager, text)
    if manager is None and text is None:
        return _verdict(notes=['HA: no HA status on %s (HA not in use)' % node])
    if not services and not (manager or {}).get('service_status') and not (text or {}).get('services'):
        return _verdict(notes=['HA: no HA services in the cluster'])
    waiting = {s: st for s, st in services.items() if st.split(' ')[0] not in HA_LEFT_STATES}
    left = {s: st for s, st in services.items() if st.split(' ')[0] in HA_LEFT_STATES}
    notes = []
    if left:
        notes.append('HA: %s stay on %s and go down with it (HA does not move them)'
                     % (_names('%s (%s)' % item for item in sorted(left.items())), node))
    waits = []
    if maintenance_expected:
        node_state = (manager or {}).get('node_status', {}).get(node)
        lrm_mode = (lrm or {}).get('mode')
        if node_state != 'maintenance' and lrm_mode != 'maintenance':
            waits.append('HA: %s is not yet in maintenance (CRM: %s, LRM mode: %s)'
                         % (node, node_state or 'unknown', lrm_mode or 'unknown'))
    if waiting:
        waits.append('HA: %s still on %s' % (_names('%s (%s)' % item for item in sorted(waiting.items())), node))
    return _verdict(waits=waits, notes=notes)


def ceph_stop_verdict(node, ok_to_stop, status=None):
    """May ``node``'s OSDs stop? ``ok_to_stop``: parse_ok_to_stop; ``status``: parse_ceph_status or None."""
    notes = []
    if status is not None:
        unclean = {s: n for s, n in status['pgs_by_state'].items() if s != 'active+clean'}
        if unclean:
            notes.append('Ceph: %s' % _names('%d %s' % (n, s) for s, n in sorted(unclean.items())))
    if ok_to_stop['ok_to_stop']:
        return _verdict(notes=['Ceph: ok-to-stop agrees for osd.%s' % ', osd.'.join(map(str, ok_to_stop['osds']))
                               if ok_to_stop['osds'] else 'Ceph: ok-to-stop agrees'] + notes)
    said = []
    for key, words in (('bad_become_inactive', 'would become inactive'),
                       ('bad_already_inactive', 'are already inactive'),
                       ('unknown_pgs', 'have an unknown state'),
                       ('bad_no_pool_pgs', 'belong to a pool being created or deleted')):
        if ok_to_stop[key]:
            said.append('PGs %s %s' % (_names(ok_to_stop[key]), words))
    why = '; '.join(said) or ok_to_stop['message'] or 'exit code %s' % ok_to_stop['rc']
    return _verdict(['Ceph: ok-to-stop says %s: not rebooting %s' % (why, node)], notes=notes)


def ceph_clean_verdict(status):
    """Is every PG active+clean again?"""
    unclean = {s: n for s, n in status['pgs_by_state'].items() if s != 'active+clean'}
    if not status['pgs_by_state'] and status.get('num_pgs'):
        unclean = {'unknown': status['num_pgs']}
    if unclean:
        return _verdict(waits=['Ceph: %d of %d PGs not active+clean: %s' % (
            sum(unclean.values()), status.get('num_pgs') or sum(status['pgs_by_state'].values()),
            _names('%d %s' % (n, s) for s, n in sorted(unclean.items())))])
    return _verdict(notes=['Ceph: all %s PGs active+clean' % (status.get('num_pgs') or 0)])


def combine(verdicts):
    """One verdict from several: any refuse refuses, else any wait waits; every reason and note kept."""
    verdicts = list(verdicts)
    reasons = [r for v in verdicts if v['verdict'] == 'refuse' for r in v['reasons']]
    waits = [r for v in verdicts if v['verdict'] == 'wait' for r in v['reasons']]
    notes = [n for v in verdicts for n in v['notes']]
    return _verdict(reasons, waits, notes)


def batch_conflicts(hosts):
    """Members of one cluster that would reboot in the same batch.

    ``hosts``: {inventory_hostname: {'names': [its own names: inventory name, hostname],
    'node': corosync name of itself, 'members': [corosync member names], 'may_reboot': bool}}.
    Returns [[inventory names of one cluster]] for every cluster with two or more such hosts.
    """
    candidates = {h: v for h, v in hosts.items() if v.get('may_reboot') and v.get('node')}
    groups, seen = [], set()
    for host in sorted(candidates):
        if host in seen:
            continue
        members = set(candidates[host].get('members') or []) | {candidates[host]['node']}
        group = sorted(h for h, v in candidates.items()
                       if v['node'] in members or set(v.get('names') or []) & members)
        seen.update(group)
        if len(group) > 1:
            groups.append(group)
    return groups
