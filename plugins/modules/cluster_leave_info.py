#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: contributors to vfio.passthrough
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
---
module: cluster_leave_info
short_description: Decide whether a Proxmox node may leave its cluster now, and say why not
version_added: 0.2.0
description:
  - Reads the cluster's own state on the node and decides, with the numbers, whether the node may go down
    now. Never changes anything.
  - C(quorum) runs C(corosync-quorumtool -sH). The node may leave when the votes that remain without it
    (C(Total votes) minus its own) are at least C(Quorum). C(Total votes) holds a quorum device's vote only
    while the device votes, so a QDevice whose qnetd is out of reach counts for nothing. With C(two_node)
    (votequorum(5)) quorum is 1, so the survivor of a two-node cluster with both nodes up stays quorate.
  - C(ha) runs C(ha-manager status) and reads C(/etc/pve/ha/manager_status) and the node's C(lrm_status),
    and waits while the node is not yet in maintenance or an HA service is still on it (started, migrating,
    relocating, stopping, in recovery) and names the ones HA leaves alone (stopped, error, ignored).
  - C(ceph) asks C(ceph osd ok-to-stop) about the OSDs under the node's CRUSH host bucket
    (C(ceph osd ls-tree)) and reads C(ceph status --format json).
  - C(rejoin) waits until the node is the local member again, the cluster quorate and O(votes_before)
    votes counted; C(ceph_clean) waits until every PG is active+clean.
  - Runs every tool with C(LC_ALL=C) and argument lists, never through a shell.
author:
  - vfio.passthrough developers (!UNKNOWN)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
options:
  checks:
    description:
      - What to decide. The verdict is C(refuse) when any check refuses, else C(wait) when any waits,
        else C(ok).
    type: list
    elements: str
    choices: [quorum, ha, ceph, rejoin, ceph_clean]
    default: [quorum]
  node:
    description: The node's Proxmox and corosync name; defaults to the short host name.
    type: str
  votes_before:
    description: C(Total votes) before the node left, for the C(rejoin) check.
    type: int
  ceph_host:
    description: The node's CRUSH host bucket; defaults to O(node).
    type: str
  ha_maintenance:
    description: For the C(ha) check, also wait until the node is in HA maintenance.
    type: bool
    default: true
  manager_status:
    description: The HA manager's status file.
    type: path
    default: /etc/pve/ha/manager_status
  lrm_status:
    description: The node's LRM status file; defaults to C(/etc/pve/nodes/<node>/lrm_status).
    type: path
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
  platform:
    platforms: debian
notes:
  - A tool that fails or answers something unreadable refuses (C(quorum), C(ceph)) or waits (C(ha),
    C(rejoin), C(ceph_clean)), naming what it printed; the module itself fails only on bad options.
  - Two plays started at the same time against one cluster cannot see each other; this module decides for
    one node from the state it reads.
seealso:
  - name: votequorum(5)
    description: Votes, quorum, two_node and wait_for_all.
    link: https://manpages.debian.org/bookworm/corosync/votequorum.5.en.html
'''

EXAMPLES = r'''
- name: Decide whether this node may leave the cluster
  vfio.passthrough.cluster_leave_info:
    checks: [quorum]
  register: leave

- name: Wait until HA has moved every service off the node
  vfio.passthrough.cluster_leave_info:
    checks: [ha]
  register: drained
  until: drained.verdict != 'wait'
  retries: 60
  delay: 10

- name: Ask Ceph whether the node's OSDs may stop
  vfio.passthrough.cluster_leave_info:
    checks: [ceph]
  register: ceph_leave
'''

RETURN = r'''
verdict:
  description: C(ok), C(wait) (ask again later) or C(refuse).
  returned: always
  type: str
  sample: refuse
reasons:
  description: Why the verdict is not C(ok), with the numbers.
  returned: always
  type: list
  elements: str
  sample: ['pve2: 1 of 3 votes would remain, quorum needs 2 (2 of 3 votes present now): not rebooting']
notes:
  description: What else the checks found (the vote count when the node may leave, HA services left alone).
  returned: always
  type: list
  elements: str
  sample: ['pve1: 2 of 3 votes would remain, quorum needs 2: may leave']
message:
  description: The reasons, or else the notes, in one line.
  returned: always
  type: str
node:
  description: The node name decided for.
  returned: always
  type: str
  sample: pve2
members:
  description: The corosync member names, this node included (empty when C(quorum) and C(rejoin) did not run or failed).
  returned: always
  type: list
  elements: str
  sample: [pve1, pve2, pve3]
votequorum:
  description: What corosync-quorumtool said (expected_votes, total_votes, quorum, flags, qdevice, members, local).
  returned: when C(quorum) or C(rejoin) ran and the output was readable
  type: dict
ha:
  description: The parsed HA inputs (manager, lrm, text); each null when unreadable.
  returned: when C(ha) ran
  type: dict
ceph:
  description: The OSD ids, the parsed ok-to-stop answer and the parsed status.
  returned: when C(ceph) or C(ceph_clean) ran
  type: dict
'''

import os

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.vfio.passthrough.plugins.module_utils.proxmox._cluster_leave import (
    ceph_clean_verdict, ceph_stop_verdict, combine, ha_verdict, quorum_verdict, rejoin_verdict,
)
from ansible_collections.vfio.passthrough.plugins.module_utils.proxmox._votequorum import QuorumtoolError, parse_quorumtool
from ansible_collections.vfio.passthrough.plugins.module_utils.proxmox._ha_status import (
    HaStatusError, parse_ha_status_text, parse_lrm_status, parse_manager_status,
)
from ansible_collections.vfio.passthrough.plugins.module_utils.proxmox._ceph_status import (
    CephStatusError, parse_ceph_status, parse_ok_to_stop, parse_osd_ids,
)

_ENV = {'LC_ALL': 'C', 'LANG': 'C'}


def _run(module, argv):
    binary = module.get_bin_path(argv[0])
    if binary is None:
        return None, '', '%s not found' % argv[0]
    rc, out, err = module.run_command([binary] + argv[1:], environ_update=_ENV)
    return rc, out, err


def _problem(verdict, text):
    return {'verdict': verdict, 'reasons': [text], 'notes': []}


def _votequorum(module, on_error):
    rc, out, err = _run(module, ['corosync-quorumtool', '-s', '-H'])
    try:
        return parse_quorumtool(out), None
    except QuorumtoolError as exc:
        said = (err or '').strip() or str(exc)
        return None, _problem(on_error, 'corosync-quorumtool -sH (exit %s): %s' % (rc, said))


def _read(path):
    try:
        with open(path) as handle:
            return handle.read()
    except (IOError, OSError):
        return None


def _ha(module, node, result):
    manager = lrm = text = None
    problems = []
    raw = _read(module.params['manager_status'])
    if raw is not None:
        try:
            manager = parse_manager_status(raw)
        except HaStatusError as exc:
            problems.append(str(exc))
    raw = _read(module.params['lrm_status'] or os.path.join('/etc/pve/nodes', node, 'lrm_status'))
    if raw is not None:
        try:
            lrm = parse_lrm_status(raw)
        except HaStatusError as exc:
            problems.append(str(exc))
    if module.get_bin_path('ha-manager') is not None:
        rc, out, err = _run(module, ['ha-manager', 'status'])
        if rc == 0:
            text = parse_ha_status_text(out)
        else:
            problems.append('ha-manager status (exit %s): %s' % (rc, (err or out).strip()))
    result['ha'] = {'manager': manager, 'lrm': lrm, 'text': text}
    if problems:
        return _problem('wait', 'HA: ' + '; '.join(problems))
    return ha_verdict(node, manager, lrm, text, maintenance_expected=module.params['ha_maintenance'])


def _ceph_status(module):
    rc, out, err = _run(module, ['ceph', 'status', '--format', 'json'])
    if rc != 0:
        raise CephStatusError('ceph status (exit %s): %s' % (rc, (err or out).strip()))
    return parse_ceph_status(out)


def _ceph_stop(module, node, result):
    host = module.params['ceph_host'] or node
    ceph = result.setdefault('ceph', {})
    try:
        rc, out, err = _run(module, ['ceph', 'osd', 'ls-tree', '--format', 'json', host])
        if rc != 0:
            raise CephStatusError('ceph osd ls-tree %s (exit %s): %s' % (host, rc, (err or out).strip()))
        ceph['osds'] = parse_osd_ids(out)
        if not ceph['osds']:
            return {'verdict': 'ok', 'reasons': [], 'notes': ['Ceph: no OSDs under host %s' % host]}
        ceph['status'] = _ceph_status(module)
    except CephStatusError as exc:
        return _problem('refuse', 'Ceph: %s: not rebooting %s' % (exc, node))
    rc, out, err = _run(module, ['ceph', 'osd', 'ok-to-stop'] + [str(i) for i in ceph['osds']] + ['--format', 'json'])
    ceph['ok_to_stop'] = parse_ok_to_stop(rc, out, err)
    return ceph_stop_verdict(node, ceph['ok_to_stop'], ceph['status'])


def _ceph_clean(module, result):
    try:
        status = _ceph_status(module)
    except CephStatusError as exc:
        return _problem('wait', 'Ceph: %s' % exc)
    result.setdefault('ceph', {})['status'] = status
    return ceph_clean_verdict(status)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            checks=dict(type='list', elements='str', default=['quorum'],
                        choices=['quorum', 'ha', 'ceph', 'rejoin', 'ceph_clean']),
            node=dict(type='str'),
            votes_before=dict(type='int'),
            ceph_host=dict(type='str'),
            ha_maintenance=dict(type='bool', default=True),
            manager_status=dict(type='path', default='/etc/pve/ha/manager_status'),
            lrm_status=dict(type='path'),
        ),
        supports_check_mode=True,
    )
    node = module.params['node'] or os.uname()[1].split('.')[0]
    checks = module.params['checks']
    result = {'changed': False, 'node': node, 'members': []}
    verdicts = []
    if 'quorum' in checks or 'rejoin' in checks:
        quorum, problem = _votequorum(module, 'refuse' if 'quorum' in checks else 'wait')
        if problem:
            verdicts.append(problem)
        else:
            result['votequorum'] = quorum
            result['members'] = [m['name'] for m in quorum['members']]
            if 'quorum' in checks:
                verdicts.append(quorum_verdict(node, quorum))
            if 'rejoin' in checks:
                verdicts.append(rejoin_verdict(node, quorum, module.params['votes_before']))
    if 'ha' in checks:
        verdicts.append(_ha(module, node, result))
    if 'ceph' in checks:
        verdicts.append(_ceph_stop(module, node, result))
    if 'ceph_clean' in checks:
        verdicts.append(_ceph_clean(module, result))
    verdict = combine(verdicts)
    result.update(verdict)
    result['message'] = '; '.join(verdict['reasons'] or verdict['notes'])
    module.exit_json(**result)


if __name__ == '__main__':
    main()
