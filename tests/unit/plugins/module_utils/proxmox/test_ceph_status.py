"""Ceph answer parsers. The fixtures are BUILT from Ceph's mgr source (offline_pg_report::dump) and the
Ceph 16.2 status layout, not captured (tests/fixtures/cluster/README.md)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ansible_collections.vfio.passthrough.plugins.module_utils.proxmox._ceph_status import (
    CephStatusError, parse_ceph_status, parse_ok_to_stop, parse_osd_ids,
)

CEPH = Path(__file__).resolve().parents[4] / 'fixtures' / 'cluster' / 'ceph'


def answer(name, rc):
    return parse_ok_to_stop(rc, (CEPH / (name + '.json')).read_text(), (CEPH / (name + '.stderr')).read_text())


@pytest.mark.parametrize('name, rc, ok, inactive, not_ok', [
    ('ok_to_stop_ok', 0, True, [], 0),
    ('ok_to_stop_busy', 16, False, ['2.1f', '2.3a'], 2),
    ('ok_to_stop_eagain', 11, False, [], None),
])
def test_ok_to_stop(name, rc, ok, inactive, not_ok):
    parsed = answer(name, rc)
    assert parsed['ok_to_stop'] is ok
    assert parsed['bad_become_inactive'] == inactive
    assert parsed['num_not_ok_pgs'] == not_ok


def test_ok_to_stop_message_is_cephs():
    assert answer('ok_to_stop_busy', 16)['message'].startswith('Error EBUSY: unsafe to stop osd(s)')


def test_nonzero_exit_is_never_ok_whatever_the_json_says():
    assert parse_ok_to_stop(1, (CEPH / 'ok_to_stop_ok.json').read_text(), '')['ok_to_stop'] is False


def test_json_after_a_line_of_prose():
    parsed = parse_ok_to_stop(16, 'warning: something\n' + (CEPH / 'ok_to_stop_busy.json').read_text(), '')
    assert parsed['osds'] == [3, 4] and parsed['bad_become_inactive'] == ['2.1f', '2.3a']


@pytest.mark.parametrize('name, health, states, flags_check', [
    ('status_clean.json', 'HEALTH_OK', {'active+clean': 65}, False),
    ('status_recovering.json', 'HEALTH_WARN',
     {'active+clean': 41, 'active+undersized+degraded': 20, 'active+recovering+degraded': 2, 'peering': 2}, True),
])
def test_status(name, health, states, flags_check):
    parsed = parse_ceph_status((CEPH / name).read_text())
    assert parsed['health'] == health
    assert parsed['pgs_by_state'] == states
    assert parsed['num_pgs'] == sum(states.values())
    assert ('OSD_FLAGS' in parsed['checks']) is flags_check


def test_status_without_json_is_named():
    with pytest.raises(CephStatusError, match='no JSON object: Error EACCES'):
        parse_ceph_status('Error EACCES: access denied')


@pytest.mark.parametrize('text, ids', [('[3,4]', [3, 4]), ('[]', []), ('[4, 3]', [3, 4])])
def test_osd_ids(text, ids):
    assert parse_osd_ids(text) == ids


@pytest.mark.parametrize('text', ['{"osd": 3}', '["osd.3"]', 'Error ENOENT', '[true]'])
def test_osd_ids_refuse(text):
    with pytest.raises(CephStatusError):
        parse_osd_ids(text)


# ---- real answers of Debian 12's Ceph 16.2.15 (1 mon, 1 mgr, 3 memstore OSDs in host buckets pve1..pve3,
# pool size 3 / min_size 2; tests/fixtures/cluster/README.md) ----------------------------------------------

REAL = CEPH / 'real'


def real(name):
    return [(REAL / ('%s.%s' % (name, part))).read_text() for part in ('rc', 'stdout', 'stderr')]


@pytest.mark.parametrize('name, ok, osds, inactive, not_ok, message', [
    ('ok_to_stop_one', True, [1], 0, 0, ''),
    ('ok_to_stop_two', False, [1, 2], 33, 33,
     'Error EBUSY: unsafe to stop osd(s) at this time (33 PGs are or would become offline)'),
    # osd.1 already down: stopping osd.2 too would leave the PGs below min_size.
    ('ok_to_stop_two_osd1_down', False, [2], 33, 33,
     'Error EBUSY: unsafe to stop osd(s) at this time (33 PGs are or would become offline)'),
])
def test_real_ok_to_stop(name, ok, osds, inactive, not_ok, message):
    rc, out, err = real(name)
    parsed = parse_ok_to_stop(int(rc), out, err)
    assert parsed['ok_to_stop'] is ok
    assert parsed['osds'] == osds
    assert len(parsed['bad_become_inactive']) == inactive and parsed['num_not_ok_pgs'] == not_ok
    assert parsed['message'] == message


@pytest.mark.parametrize('name, states, checks', [
    ('status_clean', {'active+clean': 33}, {'AUTH_INSECURE_GLOBAL_ID_RECLAIM_ALLOWED', 'MON_DISK_LOW'}),
    ('status_noout_pve2', {'active+clean': 33}, {'AUTH_INSECURE_GLOBAL_ID_RECLAIM_ALLOWED', 'MON_DISK_LOW', 'OSD_FLAGS'}),
    ('status_osd1_down', {'active+undersized+degraded': 32, 'active+undersized': 1},
     {'AUTH_INSECURE_GLOBAL_ID_RECLAIM_ALLOWED', 'MON_DISK_LOW', 'OSD_DOWN', 'OSD_HOST_DOWN', 'PG_DEGRADED',
      'POOL_APP_NOT_ENABLED'}),
    ('status_recovering', {'active+recovery_wait+undersized+degraded+remapped': 19, 'active+clean': 13,
                           'active+recovering+undersized+degraded+remapped': 1},
     {'AUTH_INSECURE_GLOBAL_ID_RECLAIM_ALLOWED', 'MON_DISK_LOW', 'PG_DEGRADED', 'POOL_APP_NOT_ENABLED'}),
])
def test_real_status(name, states, checks):
    parsed = parse_ceph_status(real(name)[1])
    assert parsed['pgs_by_state'] == states and parsed['num_pgs'] == 33
    assert set(parsed['checks']) == checks
    assert (parsed['num_osds'], parsed['num_in_osds']) == (3, 3)


def test_real_ls_tree():
    assert parse_osd_ids(real('ls_tree_pve2')[1]) == [1]
    rc, out, err = real('ls_tree_missing')
    assert int(rc) == 2 and err.strip() == 'Error ENOENT: "pve9" does not exist'
    with pytest.raises(CephStatusError):
        parse_osd_ids(out)
