"""The cluster scenario's quorum judge, on watcher logs recorded from real corosync clusters.

molecule/cluster/cases.sh samples `corosync-quorumtool -s` on every member in turn while the real
playbook reboots them; molecule/cluster/tests/test_cluster.py's judge() says from those samples whether
the cluster ever lost quorum and whether each rebooted node was seen leaving. The golden logs
(tests/fixtures/cluster/watch/) are such runs. Under load one round of samples can outlast the seconds
a restarting container does not answer (stop 31's CI); the judge must then still pass a good run, and
still fail every run that did lose quorum.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
WATCH = ROOT / 'tests' / 'fixtures' / 'cluster' / 'watch'
_spec = importlib.util.spec_from_file_location('cluster_verdicts', ROOT / 'molecule' / 'cluster' / 'tests' / 'test_cluster.py')
cluster = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(cluster)

# golden log: the case it recorded (members, floor, rebooted from the scenario's own table)
GOLDEN = {
    'three_up_rolled': 'case1-three-up',
    'five_one_down_rolled': 'case3-five-one-down',
    'qdevice_up_rolled': 'case5a-qdevice-qnetd-up',
}


def _lines(name):
    return (WATCH / (name + '.watch.log')).read_text().splitlines()


def _judge(name, lines):
    _number, members, floor, rebooted = cluster.EXPECTED[GOLDEN[name]]
    bad, low, seen_down = cluster.judge(lines, floor, members)
    return bad, low, seen_down, floor, rebooted


def _without_departures(lines, rebooted):
    """The same run as a slower watcher saw it: no sample of a rebooted node while it did not answer."""
    return [line for line in lines if not re.match(r'^\S+ (%s) down$' % '|'.join(rebooted), line)]


@pytest.mark.parametrize('name', sorted(GOLDEN))
@pytest.mark.parametrize('slow', [False, True], ids=['as-recorded', 'no-down-sample-of-a-rebooted-node'])
def test_a_rolling_reboot_that_kept_quorum_passes(name, slow):
    lines = _lines(name)
    rebooted = cluster.EXPECTED[GOLDEN[name]][3]
    if slow:
        lines = _without_departures(lines, rebooted)
        assert len(lines) < len(_lines(name)), 'the golden log has no down sample to take out'
    bad, low, seen_down, floor, rebooted = _judge(name, lines)
    assert bad == []
    assert low == floor
    assert set(rebooted) <= seen_down


def _replace_first(lines, pattern, repl):
    for i, line in enumerate(lines):
        new = re.sub(pattern, repl, line)
        if new != line:
            return lines[:i] + [new] + lines[i + 1:]
    raise AssertionError('no sample matches %r' % pattern)


def _lost_quorum_while_pve1_was_away(lines):
    # While pve1 reboots, pve2 and pve3 would each see only themselves and no quorum: a split.
    lines = _replace_first(lines, r' pve2 total=2 quorate=Yes members=pve2,pve3$', ' pve2 total=1 quorate=No members=pve2')
    return _replace_first(lines, r' pve3 total=2 quorate=Yes members=pve2,pve3$', ' pve3 total=1 quorate=No members=pve3')


# Each turns the good three-node run into one the judge must fail, and what it must then say.
BROKEN = {
    'a-member-of-two-not-quorate': (
        lambda lines: _replace_first(lines, r' pve2 total=2 quorate=Yes members=pve2,pve3$',
                                     ' pve2 total=2 quorate=No members=pve2,pve3'),
        'quorate=No members=pve2,pve3'),
    'a-quorate-view-below-the-floor': (
        lambda lines: _replace_first(lines, r' pve3 total=2 quorate=Yes members=pve2,pve3$',
                                     ' pve3 total=1 quorate=Yes members=pve2,pve3'),
        'pve3 total=1 quorate=Yes'),
    'every-member-alone-without-quorum': (_lost_quorum_while_pve1_was_away, 'no member quorate with 2 votes'),
}


@pytest.mark.parametrize('slow', [False, True], ids=['as-recorded', 'no-down-sample-of-a-rebooted-node'])
@pytest.mark.parametrize('case', sorted(BROKEN))
def test_a_lost_quorum_fails(case, slow):
    lines = _lines('three_up_rolled')
    if slow:
        lines = _without_departures(lines, ['pve1', 'pve2', 'pve3'])
    breaks, says = BROKEN[case]
    bad, _low, _seen_down, _floor, _rebooted = _judge('three_up_rolled', breaks(lines))
    assert bad, 'the judge passed a run where %s' % case
    assert any(says in line for line in bad), bad


def test_a_node_never_seen_leaving_is_not_counted_as_rebooted():
    # pve3's departure taken out everywhere: its own samples and the others' views that lacked it.
    lines = [line for line in _lines('three_up_rolled')
             if not re.search(r' pve3 (down|total=1 quorate=No members=pve3)$', line)
             and not line.endswith('members=pve1,pve2')]
    _bad, _low, seen_down, _floor, _rebooted = _judge('three_up_rolled', lines)
    assert 'pve3' not in seen_down
    assert {'pve1', 'pve2'} <= seen_down


def test_a_partial_last_round_is_not_judged_but_a_complete_one_is():
    head = _lines('three_up_rolled')[:3]
    assert [line.split()[1] for line in head] == ['pve1', 'pve2', 'pve3'], head
    down = ['00:00:00.000 pve1 down']
    assert cluster.judge(head + down, 2, ['pve1', 'pve2', 'pve3'])[0] == []
    alone = ['00:00:00.000 pve1 down', '00:00:00.100 pve2 total=1 quorate=No members=pve2',
             '00:00:00.200 pve3 total=1 quorate=No members=pve3']
    assert cluster.judge(head + alone, 2, ['pve1', 'pve2', 'pve3'])[0]


def test_a_failed_plays_own_lines_reach_the_assertion(tmp_path, monkeypatch):
    monkeypatch.setattr(cluster, 'CASES', tmp_path)
    (tmp_path / 'case1-three-up.play.log').write_text(
        'TASK [Reboot into the new kernel command line and initramfs] ***\n'
        "fatal: [pve2]: FAILED! => changed=false\n  msg: 'Reboot command failed. Error was: , exit 137'\n"
        '[ERROR]: Task failed: Reboot command failed. Error was: , exit 137\n')
    why = cluster.why_the_play_failed('case1-three-up')
    assert why.startswith('fatal: [pve2]: FAILED!')
    assert '[ERROR]: Task failed: Reboot command failed' in why
    (tmp_path / 'case1-three-up.play.log').write_text('PLAY RECAP ***\npve1 : ok=38 failed=0\n')
    assert cluster.why_the_play_failed('case1-three-up') == 'no failed task in its output'
