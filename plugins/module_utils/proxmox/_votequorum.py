# -*- coding: utf-8 -*-
# Copyright: contributors to vfio.passthrough
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What ``corosync-quorumtool -s`` says about votes, quorum and members.

Reads every spelling the tool prints: ``-s``, ``-sH`` (hex node ids), ``-si``
and ``-siH`` (addresses instead of names; what ``pvecm status`` shows). The
golden files under tests/fixtures/cluster/ were captured from Debian 12's
corosync 3.1.7 and corosync-qdevice 3.0.3. With a quorum device the member
table gains a ``Qdevice`` column and a node id 0 row; when the device does not
vote that row reads ``0 ... Qdevice (votes 1)`` and ``Total votes`` leaves the
device's vote out.
"""

from __future__ import annotations

import re

__all__ = ['QuorumtoolError', 'parse_quorumtool']


class QuorumtoolError(ValueError):
    """The text is not ``corosync-quorumtool -s`` output."""


_FIELD = re.compile(r'^([A-Za-z][A-Za-z ]*?):\s*(.*?)\s*$')
# Node id (decimal or 0x hex), votes, optional qdevice state column, name or address, optional (local).
_MEMBER = re.compile(
    r'^\s*(?P<id>0x[0-9a-fA-F]+|\d+)\s+(?P<votes>\d+)\s+'
    r'(?:(?P<qstate>[A-Z]+(?:,[A-Z]+)+)\s+)?(?P<name>\S.*?)\s*$')
_QDEVICE_ROW = re.compile(r'^Qdevice(?:\s+\(votes\s+(?P<configured>\d+)\))?$')
_INTEGERS = ('Expected votes', 'Highest expected', 'Total votes', 'Quorum', 'Nodes')


def _int(value, field):
    match = re.match(r'\d+', value)
    if not match:
        raise QuorumtoolError('corosync-quorumtool: %s is %r, not a number' % (field, value))
    return int(match.group(0))


def _node_id(text):
    return int(text, 16) if text.lower().startswith('0x') else int(text)


def parse_quorumtool(text):
    """Votes, quorum, flags and members from ``corosync-quorumtool -s[i][H]`` output.

    Raises QuorumtoolError when a number the decision needs is missing (the tool
    printed an error such as ``Cannot initialize CMAP service`` instead).
    """
    fields, members, qdevice = {}, [], None
    in_members = False
    for raw in (text or '').splitlines():
        line = raw.rstrip()
        if not line.strip() or set(line.strip()) == {'-'}:
            continue
        if line.strip().startswith('Nodeid'):
            in_members = True
            continue
        if in_members:
            match = _MEMBER.match(line)
            if not match:
                continue
            name = match.group('name')
            local = name.endswith('(local)')
            if local:
                name = name[:-len('(local)')].rstrip()
            row = _QDEVICE_ROW.match(name)
            if row and _node_id(match.group('id')) == 0:
                votes = int(match.group('votes'))
                configured = int(row.group('configured')) if row.group('configured') else votes
                qdevice = {'votes': votes, 'configured_votes': configured, 'voting': votes > 0}
                continue
            members.append({
                'nodeid': _node_id(match.group('id')), 'votes': int(match.group('votes')),
                'name': name, 'local': local,
                'qdevice_state': (match.group('qstate') or '').split(',') if match.group('qstate') else [],
            })
            continue
        match = _FIELD.match(line)
        if match:
            fields.setdefault(match.group(1), match.group(2))
    missing = [f for f in ('Expected votes', 'Total votes', 'Quorum') if f not in fields]
    if missing:
        first = next((line.strip() for line in (text or '').splitlines() if line.strip()), '(no output)')
        raise QuorumtoolError('corosync-quorumtool printed no %s: %s' % (', '.join(missing), first))
    numbers = {f: _int(fields[f], f) for f in _INTEGERS if f in fields}
    flags = fields.get('Flags', '').split()
    local = [m for m in members if m['local']]
    quorum_text = fields['Quorum']
    return {
        'expected_votes': numbers['Expected votes'],
        'highest_expected': numbers.get('Highest expected'),
        'total_votes': numbers['Total votes'],
        'quorum': numbers['Quorum'],
        'nodes': numbers.get('Nodes'),
        'quorate': fields.get('Quorate', '').lower() == 'yes' or 'Quorate' in flags,
        'activity_blocked': 'Activity blocked' in quorum_text,
        'flags': flags,
        'two_node': '2Node' in flags,
        'wait_for_all': 'WaitForAll' in flags,
        'qdevice_flag': 'Qdevice' in flags,
        'qdevice': qdevice,
        'members': members,
        'local': local[0] if local else None,
        'node_id': fields.get('Node ID'),
    }
