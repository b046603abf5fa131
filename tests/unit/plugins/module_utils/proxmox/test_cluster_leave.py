"""The leave decision, driven through every branch by the captured corosync files and the built HA/Ceph ones."""

from __future__ import annotations

from pathlib import Path

import pytest

from ansible_collections.vfio.passthrough.plugins.module_utils.proxmox._ceph_status import parse_ceph_status, parse_ok_to_stop
from ansible_collections.vfio.passthrough.plugins.module_utils.proxmox._cluster_leave import (
    batch_conflicts, ceph_clean_verdict, ceph_stop_verdict, combine, ha_verdict, quorum_verdict, rejoin_verdict,
)
from ansible_collections.vfio.passthrough.plugins.module_utils.proxmox._ha_status import (
    parse_ha_status_text, parse_lrm_status, parse_manager_status,
)
from ansible_collections.vfio.passthrough.plugins.module_utils.proxmox._votequorum import parse_quorumtool

FIXTURES = Path(__file__).resolve().parents[4] / 'fixtures' / 'cluster'


def votequorum(name):
    return parse_quorumtool((FIXTURES / name).read_text())


# ---- votequorum --------------------------------------------------------------------------------

@pytest.mark.parametrize('name, node, verdict, message', [
    ('three_up.s.txt', 'pve1', 'ok',
     'pve1: 2 of 3 votes would remain, quorum needs 2: may leave'),
    ('three_one_down_pve2.sH.txt', 'pve2', 'refuse',
     'pve2: 1 of 3 votes would remain, quorum needs 2 (2 of 3 votes present now): not rebooting'),
    ('three_two_down.s.txt', 'pve1', 'refuse',
     'pve1: the cluster is not quorate now (1 of 3 votes, quorum needs 2): not rebooting'),
    # Five nodes, one down: another may leave ("refuse whenever a member is missing" would be wrong here).
    ('five_one_down.s.txt', 'pve1', 'ok',
     'pve1: 3 of 5 votes would remain, quorum needs 3 (4 of 5 votes present now): may leave'),
    ('five_two_down.siH.txt', 'pve1', 'refuse',
     'pve1: 2 of 5 votes would remain, quorum needs 3 (3 of 5 votes present now): not rebooting'),
    ('two_node_up.s.txt', 'pve1', 'ok', 'pve1: 1 of 2 votes would remain, quorum needs 1: may leave'),
    ('two_node_one_down.siH.txt', 'pve1', 'refuse',
     'pve1: 0 of 2 votes would remain, quorum needs 1 (1 of 2 votes present now): not rebooting'),
    ('qdevice_up.s.txt', 'pve1', 'ok', 'pve1: 2 of 3 votes would remain, quorum needs 2: may leave'),
    ('qdevice_qnetd_down.siH.txt', 'pve1', 'refuse',
     'pve1: 1 of 3 votes would remain, quorum needs 2 (2 of 3 votes present now)'
     ' (the quorum device does not vote: is its qnetd reachable?): not rebooting'),
    ('qdevice_peer_down.siH.txt', 'pve1', 'refuse',
     'pve1: 1 of 3 votes would remain, quorum needs 2 (2 of 3 votes present now): not rebooting'),
])
def test_quorum(name, node, verdict, message):
    result = quorum_verdict(node, votequorum(name))
    assert result['verdict'] == verdict
    assert message in (result['reasons'] if verdict == 'refuse' else result['notes'])


@pytest.mark.parametrize('name, note', [
    ('qdevice_up.siH.txt', 'the quorum device votes (1), counted in the 3 votes'),
    ('qdevice_qnetd_down.siH.txt', 'the quorum device does not vote now (qnetd out of reach?): its 1 vote is not counted'),
    ('two_node_up.siH.txt', 'two_node: quorum is 1 while both nodes are up'),
])
def test_quorum_notes_say_how_the_special_votes_count(name, note):
    assert any(n.startswith(note) for n in quorum_verdict('pve1', votequorum(name))['notes'])


def test_quorum_refuses_without_a_local_member():
    parsed = votequorum('three_up.s.txt')
    parsed['local'] = None
    result = quorum_verdict('pve1', parsed)
    assert result['verdict'] == 'refuse' and 'lists no local member' in result['reasons'][0]


def test_quorum_counts_this_nodes_own_votes():
    parsed = votequorum('five_one_down.s.txt')   # 4 of 5 present, quorum 3
    parsed['local']['votes'] = 2                  # a node with quorum_votes: 2
    assert quorum_verdict('pve1', parsed)['reasons'][0].startswith('pve1: 2 of 5 votes would remain')


# ---- rejoin ------------------------------------------------------------------------------------

@pytest.mark.parametrize('name, before, verdict, words', [
    ('three_up_pve2.sH.txt', 3, 'ok', 'pve2: back, 3 of 3 votes, quorate'),
    ('three_one_down_pve2.sH.txt', 3, 'wait', 'pve2: 2 votes, 3 before the reboot'),
    ('three_two_down.s.txt', 3, 'wait', 'the cluster is not quorate (1 of 3 votes, quorum needs 2)'),
    ('three_up_pve2.sH.txt', None, 'ok', 'back'),
])
def test_rejoin(name, before, verdict, words):
    result = rejoin_verdict('pve2', votequorum(name), before)
    assert result['verdict'] == verdict
    assert words in ' '.join(result['reasons'] + result['notes'])


def test_rejoin_waits_while_not_a_member():
    parsed = votequorum('three_up.s.txt')
    parsed['local'] = None
    assert 'pve2 is not yet a member' in rejoin_verdict('pve2', parsed, 3)['reasons'][0]


# ---- HA (fixtures built from pve-ha-manager's formats) -----------------------------------------

def ha(manager=None, lrm=None, text=None):
    return (parse_manager_status((FIXTURES / 'ha' / manager).read_text()) if manager else None,
            parse_lrm_status((FIXTURES / 'ha' / lrm).read_text()) if lrm else None,
            parse_ha_status_text((FIXTURES / 'ha' / text).read_text()) if text else None)


@pytest.mark.parametrize('files, verdict, words', [
    (('manager_status_online.json', 'lrm_status_active.json', 'ha_status_online.txt'), 'wait',
     ['HA: pve2 is not yet in maintenance (CRM: online, LRM mode: active)', 'vm:100 (started) still on pve2']),
    # Asked for, not yet taken up by the CRM: still waiting.
    (('manager_status_requested.json', 'lrm_status_active.json', None), 'wait', ['is not yet in maintenance']),
    (('manager_status_draining.json', 'lrm_status_active.json', None), 'wait',
     ['ct:201 (relocate pve1 -> pve2)', 'vm:100 (migrate pve2 -> pve3) still on pve2']),
    (('manager_status_drained.json', 'lrm_status_maintenance.json', 'ha_status_drained.txt'), 'ok', []),
    (('manager_status_empty.json', 'lrm_status_active.json', None), 'ok', []),
    ((None, None, None), 'ok', []),
])
def test_ha(files, verdict, words):
    result = ha_verdict('pve2', *ha(*files))
    assert result['verdict'] == verdict
    for word in words:
        assert word in ' '.join(result['reasons'])


def test_ha_names_what_it_leaves_on_the_node():
    result = ha_verdict('pve2', *ha('manager_status_drained.json', 'lrm_status_maintenance.json', 'ha_status_drained.txt'))
    assert result['notes'] == ['HA: ct:200 (stopped), vm:102 (error), vm:104 (ignored) stay on pve2'
                               ' and go down with it (HA does not move them)']


def test_ha_without_maintenance_still_waits_for_services():
    result = ha_verdict('pve2', *ha('manager_status_online.json', 'lrm_status_active.json'), maintenance_expected=False)
    assert result['verdict'] == 'wait'
    assert result['reasons'] == ['HA: vm:100 (started) still on pve2']


def test_ha_started_but_not_running_is_starting():
    manager, lrm = ha('manager_status_drained.json', 'lrm_status_maintenance.json')[:2]
    manager['service_status']['vm:105'] = {'node': 'pve2', 'state': 'started', 'target': None, 'running': 0}
    assert 'vm:105 (starting)' in ha_verdict('pve2', manager, lrm)['reasons'][0]


def test_ha_unknown_state_waits():
    manager, lrm = ha('manager_status_drained.json', 'lrm_status_maintenance.json')[:2]
    manager['service_status']['vm:106'] = {'node': 'pve2', 'state': 'some_new_state', 'target': None, 'running': None}
    assert ha_verdict('pve2', manager, lrm)['verdict'] == 'wait'


# ---- Ceph (fixtures built from Ceph's formats) -------------------------------------------------

def ok_to_stop(name, rc):
    ceph = FIXTURES / 'ceph'
    return parse_ok_to_stop(rc, (ceph / (name + '.json')).read_text(), (ceph / (name + '.stderr')).read_text())


def status(name):
    return parse_ceph_status((FIXTURES / 'ceph' / name).read_text())


@pytest.mark.parametrize('answer, rc, verdict, words', [
    ('ok_to_stop_ok', 0, 'ok', 'Ceph: ok-to-stop agrees for osd.3, osd.4'),
    ('ok_to_stop_busy', 16, 'refuse', 'Ceph: ok-to-stop says PGs 2.1f, 2.3a would become inactive: not rebooting pve2'),
    ('ok_to_stop_eagain', 11, 'refuse',
     'Ceph: ok-to-stop says Error EAGAIN: 12 PGs have unknown state; cannot draw any conclusions: not rebooting pve2'),
])
def test_ceph_stop(answer, rc, verdict, words):
    result = ceph_stop_verdict('pve2', ok_to_stop(answer, rc), status('status_clean.json'))
    assert result['verdict'] == verdict
    assert words in (result['reasons'] + result['notes'])


def test_ceph_stop_notes_unclean_pgs():
    result = ceph_stop_verdict('pve2', ok_to_stop('ok_to_stop_ok', 0), status('status_recovering.json'))
    assert 'Ceph: 2 active+recovering+degraded, 20 active+undersized+degraded, 2 peering' in result['notes']


def test_ceph_stop_shortens_long_pg_lists():
    answer = ok_to_stop('ok_to_stop_busy', 16)
    answer['bad_become_inactive'] = ['2.%x' % i for i in range(14)]
    assert 'PGs 2.0, 2.1, 2.2, 2.3, 2.4, 2.5, 2.6, 2.7, 2.8, 2.9 and 4 more would become inactive' in \
        ceph_stop_verdict('pve2', answer)['reasons'][0]


@pytest.mark.parametrize('name, verdict, words', [
    ('status_clean.json', 'ok', 'Ceph: all 65 PGs active+clean'),
    ('status_recovering.json', 'wait',
     'Ceph: 24 of 65 PGs not active+clean: 2 active+recovering+degraded, 20 active+undersized+degraded, 2 peering'),
])
def test_ceph_clean(name, verdict, words):
    result = ceph_clean_verdict(status(name))
    assert result['verdict'] == verdict
    assert words in result['reasons'] + result['notes']


def test_ceph_clean_waits_without_pg_states():
    result = ceph_clean_verdict({'pgs_by_state': {}, 'num_pgs': 65})
    assert result['verdict'] == 'wait' and '65 unknown' in result['reasons'][0]


# ---- combining and batches ---------------------------------------------------------------------

@pytest.mark.parametrize('verdicts, expected', [
    (['ok', 'ok'], 'ok'), (['ok', 'wait'], 'wait'), (['wait', 'refuse'], 'refuse'), ([], 'ok'),
])
def test_combine(verdicts, expected):
    parts = [{'verdict': v, 'reasons': [v + ' reason'] if v != 'ok' else [], 'notes': [v + ' note']} for v in verdicts]
    result = combine(parts)
    assert result['verdict'] == expected
    assert result['notes'] == [v + ' note' for v in verdicts]
    assert all(r.startswith(expected) for r in result['reasons'])


def host(node, members, may_reboot=True, names=()):
    return {'node': node, 'members': members, 'may_reboot': may_reboot, 'names': list(names) or [node]}


@pytest.mark.parametrize('hosts, groups', [
    ({'a': host('pve1', ['pve1', 'pve2', 'pve3']), 'b': host('pve2', ['pve1', 'pve2', 'pve3'])}, [['a', 'b']]),
    ({'a': host('pve1', ['pve1', 'pve2']), 'b': host('pve2', ['pve1', 'pve2'], may_reboot=False)}, []),
    ({'a': host('pve1', ['pve1', 'pve2']), 'b': host('other1', ['other1', 'other2'])}, []),
    # Matched by the host's own names when the member list spells it otherwise.
    ({'a': host('pve1', ['pve1', 'node2']), 'b': host('pve2', ['pve2', 'pve1'], names=['node2', 'pve2'])}, [['a', 'b']]),
    ({'a': host('pve1', ['pve1', 'pve2', 'pve3']), 'b': host('pve2', ['pve1', 'pve2', 'pve3']),
      'c': host('pve3', ['pve1', 'pve2', 'pve3']), 'd': host('x1', ['x1', 'x2']), 'e': host('x2', ['x1', 'x2'])},
     [['a', 'b', 'c'], ['d', 'e']]),
    ({'a': host('pve1', ['pve1'])}, []),
    ({'a': host(None, []), 'b': host(None, [])}, []),
])
def test_batch_conflicts(hosts, groups):
    assert batch_conflicts(hosts) == groups


# ---- Ceph 16.2.15, real answers ----------------------------------------------------------------

def real(name):
    return [(FIXTURES / 'ceph' / 'real' / ('%s.%s' % (name, part))).read_text() for part in ('rc', 'stdout', 'stderr')]


@pytest.mark.parametrize('answer, status_name, verdict, words', [
    ('ok_to_stop_one', 'status_clean', 'ok', 'Ceph: ok-to-stop agrees for osd.1'),
    # The next node while the previous one's PGs still recover: the second Ceph failure.
    ('ok_to_stop_two_osd1_down', 'status_osd1_down', 'refuse',
     'Ceph: ok-to-stop says PGs 1.0, 2.0, 2.1, 2.2, 2.3, 2.4, 2.5, 2.6, 2.7, 2.8 and 23 more would become inactive:'
     ' not rebooting pve3'),
])
def test_ceph_stop_real(answer, status_name, verdict, words):
    rc, out, err = real(answer)
    result = ceph_stop_verdict('pve3', parse_ok_to_stop(int(rc), out, err), parse_ceph_status(real(status_name)[1]))
    assert result['verdict'] == verdict
    assert words in result['reasons'] + result['notes']


@pytest.mark.parametrize('name, verdict, words', [
    ('status_clean', 'ok', 'Ceph: all 33 PGs active+clean'),
    ('status_noout_pve2', 'ok', 'Ceph: all 33 PGs active+clean'),
    ('status_osd1_down', 'wait', 'Ceph: 33 of 33 PGs not active+clean: 1 active+undersized, 32 active+undersized+degraded'),
    ('status_recovering', 'wait', 'Ceph: 20 of 33 PGs not active+clean: 1 active+recovering+undersized+degraded+remapped,'
                                  ' 19 active+recovery_wait+undersized+degraded+remapped'),
])
def test_ceph_clean_real(name, verdict, words):
    result = ceph_clean_verdict(parse_ceph_status(real(name)[1]))
    assert result['verdict'] == verdict
    assert words in result['reasons'] + result['notes']
