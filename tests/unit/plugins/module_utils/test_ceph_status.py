"""Ceph answer parsers. The fixtures are BUILT from Ceph's mgr source (offline_pg_report::dump) and the
Ceph 16.2 status layout, not captured (tests/fixtures/cluster/README.md)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ansible_collections.vfio.passthrough.plugins.module_utils._ceph_status import (
    CephStatusError, parse_ceph_status, parse_ok_to_stop, parse_osd_ids,
)

CEPH = Path(__file__).resolve().parents[3] / 'fixtures' / 'cluster' / 'ceph'


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
