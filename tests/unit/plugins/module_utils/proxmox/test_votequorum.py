"""corosync-quorumtool output, captured from real corosync 3.1.7 clusters (tests/fixtures/cluster/README.md)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ansible_collections.vfio.passthrough.plugins.module_utils.proxmox._votequorum import QuorumtoolError, parse_quorumtool

FIXTURES = Path(__file__).resolve().parents[4] / 'fixtures' / 'cluster'


def load(name):
    return parse_quorumtool((FIXTURES / name).read_text())


@pytest.mark.parametrize('name, expected, total, quorum, quorate, flags, members, local', [
    ('three_up.siH.txt', 3, 3, 2, True, ['Quorate'], ['10.222.0.1', '10.222.0.2', '10.222.0.3'], '10.222.0.1'),
    ('three_up.s.txt', 3, 3, 2, True, ['Quorate'], ['pve1', 'pve2', 'pve3'], 'pve1'),
    ('three_up_pve2.sH.txt', 3, 3, 2, True, ['Quorate'], ['pve1', 'pve2', 'pve3'], 'pve2'),
    ('three_one_down.siH.txt', 3, 2, 2, True, ['Quorate'], ['10.222.0.1', '10.222.0.2'], '10.222.0.1'),
    ('three_one_down_pve2.sH.txt', 3, 2, 2, True, ['Quorate'], ['pve1', 'pve2'], 'pve2'),
    ('three_two_down.siH.txt', 3, 1, 2, False, [], ['10.222.0.1'], '10.222.0.1'),
    ('three_two_down.s.txt', 3, 1, 2, False, [], ['pve1'], 'pve1'),
    ('five_one_down.s.txt', 5, 4, 3, True, ['Quorate'], ['pve1', 'pve2', 'pve3', 'pve4'], 'pve1'),
    ('five_two_down.siH.txt', 5, 3, 3, True, ['Quorate'], ['10.222.0.1', '10.222.0.2', '10.222.0.3'], '10.222.0.1'),
    ('two_node_up.siH.txt', 2, 2, 1, True, ['2Node', 'Quorate', 'WaitForAll'], ['10.222.0.1', '10.222.0.2'], '10.222.0.1'),
    ('two_node_one_down.siH.txt', 2, 1, 1, True, ['2Node', 'Quorate', 'WaitForAll'], ['10.222.0.1'], '10.222.0.1'),
    ('qdevice_up.siH.txt', 3, 3, 2, True, ['Quorate', 'Qdevice'], ['10.222.0.1', '10.222.0.2'], '10.222.0.1'),
    ('qdevice_up.s.txt', 3, 3, 2, True, ['Quorate', 'Qdevice'], ['pve1', 'pve2'], 'pve1'),
    ('qdevice_qnetd_down.siH.txt', 3, 2, 2, True, ['Quorate', 'Qdevice'], ['10.222.0.1', '10.222.0.2'], '10.222.0.1'),
    ('qdevice_peer_down.siH.txt', 3, 2, 2, True, ['Quorate', 'Qdevice'], ['10.222.0.1'], '10.222.0.1'),
])
def test_golden_files(name, expected, total, quorum, quorate, flags, members, local):
    parsed = load(name)
    assert (parsed['expected_votes'], parsed['total_votes'], parsed['quorum']) == (expected, total, quorum)
    assert parsed['quorate'] is quorate
    assert parsed['flags'] == flags
    assert [m['name'] for m in parsed['members']] == members
    assert parsed['local']['name'] == local and parsed['local']['votes'] == 1
    # The vote columns add up to Total votes: the qdevice's share is in the total only when it votes.
    qdevice = parsed['qdevice']['votes'] if parsed['qdevice'] else 0
    assert sum(m['votes'] for m in parsed['members']) + qdevice == total


def test_activity_blocked_and_not_quorate():
    parsed = load('three_two_down.siH.txt')
    assert parsed['activity_blocked'] is True and parsed['quorate'] is False


@pytest.mark.parametrize('name, votes, configured, voting, states', [
    ('qdevice_up.siH.txt', 1, 1, True, ['A', 'V', 'NMW']),
    ('qdevice_qnetd_down.siH.txt', 0, 1, False, ['A', 'NV', 'NMW']),
    ('qdevice_peer_down.siH.txt', 1, 1, True, ['A', 'V', 'NMW']),
])
def test_qdevice_row(name, votes, configured, voting, states):
    parsed = load(name)
    assert parsed['qdevice'] == {'votes': votes, 'configured_votes': configured, 'voting': voting}
    assert parsed['qdevice_flag'] is True
    assert parsed['members'][0]['qdevice_state'] == states
    assert all(m['nodeid'] != 0 for m in parsed['members'])


def test_hex_and_decimal_node_ids_agree():
    assert [m['nodeid'] for m in load('three_up.siH.txt')['members']] == [1, 2, 3]
    assert [m['nodeid'] for m in load('three_up.s.txt')['members']] == [1, 2, 3]


@pytest.mark.parametrize('text', [
    (FIXTURES / 'not_running.siH.txt').read_text(),   # corosync down: "Cannot initialize CMAP service"
    '',
    'Quorum information\n------------------\nQuorate: Yes\n',
])
def test_refuses_output_without_numbers(text):
    with pytest.raises(QuorumtoolError, match='printed no'):
        parse_quorumtool(text)


def test_names_the_bad_number():
    text = (FIXTURES / 'three_up.s.txt').read_text().replace('Total votes:      3', 'Total votes:      many')
    with pytest.raises(QuorumtoolError, match="Total votes is 'many'"):
        parse_quorumtool(text)
