"""cluster_leave_info runs the cluster's tools (argument lists, LC_ALL=C) and returns inputs, verdict and reasons."""

from __future__ import annotations

from pathlib import Path

import pytest
from ansible.module_utils.basic import AnsibleModule

from ansible_collections.vfio.passthrough.plugins.modules import cluster_leave_info
from module_runner import run_module

FIXTURES = Path(__file__).resolve().parents[3] / 'fixtures' / 'cluster'


def text(name):
    return (FIXTURES / name).read_text()


class FakeTools:
    """Answers by argument list; records every call and its environment."""

    def __init__(self, answers, missing=()):
        self.answers, self.missing, self.calls = answers, set(missing), []

    def install(self, monkeypatch):
        tools = self

        def get_bin_path(module, name, *args, **kwargs):
            return None if name in tools.missing else '/usr/bin/' + name

        def run_command(module, args, environ_update=None, **kwargs):
            assert isinstance(args, list), 'tools run from argument lists, never a shell string'
            tools.calls.append((args, environ_update))
            key = tuple(a.rsplit('/', 1)[-1] if i == 0 else a for i, a in enumerate(args))
            if key not in tools.answers:
                raise AssertionError('unexpected command %r' % (key,))
            return tools.answers[key]

        monkeypatch.setattr(AnsibleModule, 'get_bin_path', get_bin_path)
        monkeypatch.setattr(AnsibleModule, 'run_command', run_command)
        return self


QT = ('corosync-quorumtool', '-s', '-H')


@pytest.mark.parametrize('capture, rc, verdict, reason', [
    ('three_up_pve2.sH.txt', 0, 'ok', None),
    ('three_one_down_pve2.sH.txt', 0, 'refuse',
     'pve2: 1 of 3 votes would remain, quorum needs 2 (2 of 3 votes present now): not rebooting'),
    ('three_two_down.s.txt', 2, 'refuse', 'the cluster is not quorate now'),
    ('not_running.siH.txt', 1, 'refuse', 'corosync-quorumtool -sH (exit 1): Cannot initialize CMAP service'),
])
def test_quorum(monkeypatch, capture, rc, verdict, reason):
    # corosync-quorumtool prints its errors on stderr (the capture took both streams).
    answer = (rc, '', text(capture)) if rc == 1 else (rc, text(capture), '')
    tools = FakeTools({QT: answer}).install(monkeypatch)
    result = run_module(cluster_leave_info.main, {'node': 'pve2', 'checks': ['quorum']}, check_mode=True)
    assert result['changed'] is False and not result.get('failed')
    assert result['verdict'] == verdict
    if reason:
        assert any(reason in r for r in result['reasons'])
        assert reason in result['message']
    else:
        assert result['members'] == ['pve1', 'pve2', 'pve3']
        assert result['votequorum']['local']['name'] == 'pve2'
    assert tools.calls[0][1]['LC_ALL'] == 'C'


def test_rejoin_turns_a_dead_corosync_into_wait(monkeypatch):
    FakeTools({QT: (1, '', 'Cannot initialize CMAP service\n')}).install(monkeypatch)
    result = run_module(cluster_leave_info.main, {'node': 'pve2', 'checks': ['rejoin'], 'votes_before': 3})
    assert result['verdict'] == 'wait'


def test_rejoin_back(monkeypatch):
    FakeTools({QT: (0, text('three_up_pve2.sH.txt'), '')}).install(monkeypatch)
    result = run_module(cluster_leave_info.main, {'node': 'pve2', 'checks': ['rejoin'], 'votes_before': 3})
    assert result['verdict'] == 'ok' and result['notes'] == ['pve2: back, 3 of 3 votes, quorate']


@pytest.mark.parametrize('manager, lrm, status, verdict', [
    ('manager_status_online.json', 'lrm_status_active.json', 'ha_status_online.txt', 'wait'),
    ('manager_status_drained.json', 'lrm_status_maintenance.json', 'ha_status_drained.txt', 'ok'),
])
def test_ha(monkeypatch, manager, lrm, status, verdict):
    FakeTools({('ha-manager', 'status'): (0, text('ha/' + status), '')}).install(monkeypatch)
    result = run_module(cluster_leave_info.main, {
        'node': 'pve2', 'checks': ['ha'],
        'manager_status': str(FIXTURES / 'ha' / manager), 'lrm_status': str(FIXTURES / 'ha' / lrm)})
    assert result['verdict'] == verdict
    assert result['ha']['lrm']['mode'] == ('maintenance' if verdict == 'ok' else 'active')


def test_ha_not_in_use(monkeypatch, tmp_path):
    FakeTools({}, missing={'ha-manager'}).install(monkeypatch)
    result = run_module(cluster_leave_info.main, {
        'node': 'pve2', 'checks': ['ha'], 'manager_status': str(tmp_path / 'none'), 'lrm_status': str(tmp_path / 'none')})
    assert result['verdict'] == 'ok' and 'HA not in use' in result['message']


def test_ha_unreadable_file_waits_naming_it(monkeypatch, tmp_path):
    bad = tmp_path / 'manager_status'
    bad.write_text('{"master_node": ')
    FakeTools({}, missing={'ha-manager'}).install(monkeypatch)
    result = run_module(cluster_leave_info.main, {
        'node': 'pve2', 'checks': ['ha'], 'manager_status': str(bad), 'lrm_status': str(tmp_path / 'none')})
    assert result['verdict'] == 'wait' and '/etc/pve/ha/manager_status is not JSON' in result['message']


LS_TREE = ('ceph', 'osd', 'ls-tree', '--format', 'json', 'pve2')
STATUS = ('ceph', 'status', '--format', 'json')
OK_TO_STOP = ('ceph', 'osd', 'ok-to-stop', '3', '4', '--format', 'json')


@pytest.mark.parametrize('answer, rc, verdict, words', [
    ('ok_to_stop_ok', 0, 'ok', 'Ceph: ok-to-stop agrees for osd.3, osd.4'),
    ('ok_to_stop_busy', 16, 'refuse', 'Ceph: ok-to-stop says PGs 2.1f, 2.3a would become inactive: not rebooting pve2'),
])
def test_ceph(monkeypatch, answer, rc, verdict, words):
    tools = FakeTools({
        LS_TREE: (0, text('ceph/ls_tree_pve2.json'), ''),
        STATUS: (0, text('ceph/status_clean.json'), ''),
        OK_TO_STOP: (rc, text('ceph/%s.json' % answer), text('ceph/%s.stderr' % answer)),
    }).install(monkeypatch)
    result = run_module(cluster_leave_info.main, {'node': 'pve2', 'checks': ['ceph']})
    assert result['verdict'] == verdict and words in result['message']
    assert result['ceph']['osds'] == [3, 4]
    assert [c[0][1:3] for c in tools.calls] == [['osd', 'ls-tree'], ['status', '--format'], ['osd', 'ok-to-stop']]


def test_ceph_host_without_osds(monkeypatch):
    FakeTools({LS_TREE: (0, '[]', '')}).install(monkeypatch)
    result = run_module(cluster_leave_info.main, {'node': 'pve2', 'checks': ['ceph']})
    assert result['verdict'] == 'ok' and result['message'] == 'Ceph: no OSDs under host pve2'


def test_ceph_failure_refuses_naming_cephs_words(monkeypatch):
    FakeTools({LS_TREE: (2, '', 'Error ENOENT: node pve2 does not exist\n')}).install(monkeypatch)
    result = run_module(cluster_leave_info.main, {'node': 'pve2', 'checks': ['ceph']})
    assert result['verdict'] == 'refuse'
    assert 'ceph osd ls-tree pve2 (exit 2): Error ENOENT: node pve2 does not exist' in result['message']


@pytest.mark.parametrize('name, verdict', [('status_clean.json', 'ok'), ('status_recovering.json', 'wait')])
def test_ceph_clean(monkeypatch, name, verdict):
    FakeTools({STATUS: (0, text('ceph/' + name), '')}).install(monkeypatch)
    assert run_module(cluster_leave_info.main, {'node': 'pve2', 'checks': ['ceph_clean']})['verdict'] == verdict


def test_all_checks_combine_refuse_first(monkeypatch):
    FakeTools({
        QT: (0, text('three_one_down_pve2.sH.txt'), ''),
        ('ha-manager', 'status'): (0, text('ha/ha_status_online.txt'), ''),
        LS_TREE: (0, '[]', ''),
    }).install(monkeypatch)
    result = run_module(cluster_leave_info.main, {
        'node': 'pve2', 'checks': ['quorum', 'ha', 'ceph'],
        'manager_status': str(FIXTURES / 'ha' / 'manager_status_online.json'),
        'lrm_status': str(FIXTURES / 'ha' / 'lrm_status_active.json')})
    assert result['verdict'] == 'refuse'
    assert result['reasons'] == ['pve2: 1 of 3 votes would remain, quorum needs 2 (2 of 3 votes present now): not rebooting']


def test_bad_check_name_fails_cleanly(monkeypatch):
    FakeTools({}).install(monkeypatch)
    result = run_module(cluster_leave_info.main, {'checks': ['quorom']})
    assert result['failed'] and 'quorom' in result['msg']


def real(name):
    rc, out, err = [(FIXTURES / 'ceph' / 'real' / ('%s.%s' % (name, part))).read_text() for part in ('rc', 'stdout', 'stderr')]
    return int(rc), out, err


@pytest.mark.parametrize('answer, verdict', [('ok_to_stop_one', 'ok'), ('ok_to_stop_two_osd1_down', 'refuse')])
def test_ceph_real_answers(monkeypatch, answer, verdict):
    """Ceph 16.2.15's own answers (pve2 holds osd.1; the refusal is for a node whose OSDs would take PGs below min_size)."""
    FakeTools({
        ('ceph', 'osd', 'ls-tree', '--format', 'json', 'pve2'): real('ls_tree_pve2'),
        STATUS: real('status_clean'),
        ('ceph', 'osd', 'ok-to-stop', '1', '--format', 'json'): real(answer),
    }).install(monkeypatch)
    result = run_module(cluster_leave_info.main, {'node': 'pve2', 'checks': ['ceph']})
    assert result['verdict'] == verdict
    assert result['ceph']['ok_to_stop']['rc'] == (0 if verdict == 'ok' else 16)


def test_ceph_real_missing_host_bucket(monkeypatch):
    FakeTools({('ceph', 'osd', 'ls-tree', '--format', 'json', 'pve2'): real('ls_tree_missing')}).install(monkeypatch)
    result = run_module(cluster_leave_info.main, {'node': 'pve2', 'checks': ['ceph']})
    assert result['verdict'] == 'refuse'
    assert 'Error ENOENT: "pve9" does not exist' in result['message']
