"""The cases of issue 22 as cases.sh recorded them against real corosync clusters of containers.

Every case leaves, in tests/output/molecule-cluster/: NAME.before.txt (corosync-quorumtool -s before),
NAME.watch.log (every member's view twice a second: "HH:MM:SS.mmm pveN total=T quorate=Yes|No
members=pve1,pve2,..." or "... pveN down"), NAME.play.log and NAME.rc (the playbook), NAME.boots-before/after.pveN (each node's
/var/log/container-boots) and NAME.pve4-grub.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

CASES = Path(os.environ.get('MOLECULE_PROJECT_DIRECTORY', '/nonexistent')) / 'tests' / 'output' / 'molecule-cluster'
PREFIX = os.environ.get('VFIO_MOLECULE_PREFIX', 'vfio') + '-cluster-'
# cases.sh writes the cases it ran (CLUSTER_CASES, or its default for make test / make test-full).
CHOSEN = ((CASES / 'CHOSEN').read_text() if (CASES / 'CHOSEN').is_file()
          else os.environ.get('CLUSTER_CASES', '1 2 3 4 5')).split()
SAMPLE = re.compile(r'^(\S+) (pve\d) (?:down|total=(\d+) quorate=(\w+) members=(pve\d(?:,pve\d)*))$')

# case: (number, members, the floor of total votes every quorate view keeps, the nodes rebooted in order)
EXPECTED = {
    'case1-three-up': ('1', ['pve1', 'pve2', 'pve3'], 2, ['pve1', 'pve2', 'pve3']),
    'case2-three-one-down': ('2', ['pve1', 'pve2', 'pve3'], 2, []),
    'case3-five-one-down': ('3', ['pve1', 'pve2', 'pve3', 'pve4', 'pve5'], 3, ['pve1', 'pve2']),
    'case4-batch': ('4', ['pve1', 'pve2', 'pve3', 'pve4', 'pve5'], 4, []),
    'case5a-qdevice-qnetd-up': ('5', ['pve1', 'pve2'], 2, ['pve1', 'pve2']),
    'case5b-qdevice-qnetd-down': ('5', ['pve1', 'pve2'], 2, []),
}

# What each play must say, verbatim from the role and cluster_leave_info.
MUST_SAY = {
    'case1-three-up': ['Cluster: pve%d: 2 of 3 votes would remain, quorum needs 2: may leave' % i for i in (1, 2, 3)],
    'case2-three-one-down': [
        'pve%d: 1 of 3 votes would remain, quorum needs 2 (2 of 3 votes present now): not rebooting' % i
        for i in (1, 2)] + ['REBOOT REQUIRED on %spve%d' % (PREFIX, i) for i in (1, 2)],
    'case3-five-one-down': [
        'Cluster: pve%d: 3 of 5 votes would remain, quorum needs 3 (4 of 5 votes present now): may leave' % i
        for i in (1, 2)],
    'case4-batch': ['Not running: %s are members of one Proxmox cluster, in the same batch'
                    % ', '.join(PREFIX + 'pve%d' % i for i in (1, 2, 3, 4)), 'pcie_passthrough_serial'],
    'case5a-qdevice-qnetd-up': [
        'Cluster: pve%d: 2 of 3 votes would remain, quorum needs 2: may leave; the quorum device votes (1)' % i
        for i in (1, 2)],
    'case5b-qdevice-qnetd-down': [
        'pve1: 1 of 3 votes would remain, quorum needs 2 (2 of 3 votes present now) (the quorum device does'
        ' not vote: is its qnetd reachable?): not rebooting', 'REBOOT REQUIRED on %spve1' % PREFIX],
}


def _case(name):
    if EXPECTED[name][0] not in CHOSEN:
        pytest.skip('%s not chosen: CLUSTER_CASES=%s' % (name, ' '.join(CHOSEN)))
    assert (CASES / (name + '.rc')).is_file(), 'cases.sh left no result for %s in %s' % (name, CASES)
    # The yaml callback folds long messages over lines: compare with whitespace runs as one space.
    log = re.sub(r'\s+', ' ', (CASES / (name + '.play.log')).read_text())
    return int((CASES / (name + '.rc')).read_text()), log


def why_the_play_failed(name):
    """The play's own failure lines (ansible-core's [ERROR], fatal: [host]): a failed assertion carries them
    to the end of the CI log, where the play's log file is out of reach."""
    lines = (CASES / (name + '.play.log')).read_text(errors='replace').splitlines()
    found = [line[:300] for line in lines if line.startswith(('[ERROR]: ', 'fatal: ['))]
    return '; '.join(found[-3:]) or 'no failed task in its output'


def judge(lines, floor, members):
    """Samples that break the floor or show lost quorum, the lowest total among quorate views, and the
    nodes seen down: by their own view (no answer, or a view of itself alone without quorum) or by the
    cluster's (a quorate view of another member that lacks them: a restart quicker than one round of
    samples is still a departure the others saw).

    A node outside the cluster -- not answering, or restarted and not yet rejoined, seeing only itself --
    does not speak for the cluster: its unquorate view is not a lost quorum, however the samples fell
    (under load one round can outlast the seconds a restarting container does not answer). What does
    speak for it is every round of samples: each complete round must hold a quorate view at or above
    the floor, so a cluster whose every member sees only itself fails."""
    starting, bad, low, seen_down = set(), [], None, set()
    round_nodes, round_lines, round_quorate = set(), [], False

    def close_round(complete):
        if round_lines and complete and not round_quorate:
            bad.append('no member quorate with %d votes in the round: %s' % (floor, ' | '.join(round_lines)))

    for line in lines:
        m = SAMPLE.match(line)
        assert m, 'unreadable watcher sample %r' % line
        _when, node, total, quorate, seen = m.groups()
        if node in round_nodes:  # the watcher samples every member in turn: a node again starts a round
            close_round(True)
            round_nodes, round_lines, round_quorate = set(), [], False
        round_nodes.add(node)
        round_lines.append(line)
        if total is None or (quorate != 'Yes' and (node in starting or seen == node)):
            starting.add(node)
            seen_down.add(node)
            continue
        starting.discard(node)
        if quorate != 'Yes' or int(total) < floor:
            bad.append(line)
        else:
            round_quorate = True
            low = int(total) if low is None else min(low, int(total))
            seen_down |= set(members) - set(seen.split(','))
    # The watcher is killed at any point of a round: a partial last round proves nothing either way.
    close_round(round_nodes == set(members))
    return bad, low, seen_down


def new_boots(name, members):
    boots = []
    for node in members:
        before = set((CASES / ('%s.boots-before.%s' % (name, node))).read_text().splitlines())
        for line in (CASES / ('%s.boots-after.%s' % (name, node))).read_text().splitlines():
            if line not in before:
                boots.append((line.split()[0], node))
    return sorted(boots)


@pytest.mark.parametrize('case', sorted(EXPECTED))
def test_case_says_its_decision(case):
    rc, log = _case(case)
    for text in MUST_SAY[case]:
        assert text in log, '%s: %r not in the play output; it failed with: %s' % (case, text, why_the_play_failed(case))
    if case == 'case4-batch':
        assert rc != 0, 'the batch guard did not fail the play'
    else:
        assert rc == 0, '%s: ansible-playbook exited %d: %s' % (case, rc, why_the_play_failed(case))


@pytest.mark.parametrize('case', sorted(EXPECTED))
def test_quorum_never_dropped(case):
    _case(case)
    _number, members, floor, rebooted = EXPECTED[case]
    bad, low, seen_down = judge((CASES / (case + '.watch.log')).read_text().splitlines(), floor, members)
    assert not bad, '%s: views below %d votes or not quorate: %s' % (case, floor, bad[:10])
    assert low is not None, '%s: the watcher saw no quorate view' % case
    if rebooted:
        # The watcher saw each departure: the floor was reached, not merely never tested.
        assert low == floor, '%s: lowest total %d, never %d: no node was seen leaving' % (case, low, floor)
        assert set(rebooted) <= seen_down, '%s: the watcher never saw %s down' % (case, set(rebooted) - seen_down)


@pytest.mark.parametrize('case', sorted(EXPECTED))
def test_reboot_order(case):
    _case(case)
    _number, members, _floor, rebooted = EXPECTED[case]
    boots = new_boots(case, members)
    assert [node for _when, node in boots] == rebooted, '%s: boots %s' % (case, boots)


def test_batch_refused_before_any_write():
    _case('case4-batch')
    # pve4 was in no earlier play: its GRUB defaults are still the package's.
    grub = (CASES / 'case4-batch.pve4-grub').read_text()
    assert 'intel_iommu=on' not in grub, grub
