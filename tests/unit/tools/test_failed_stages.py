"""tools/timed.sh keeps each stage's output and failure; tools/failed-stages.sh says at the end why each failed.

CI keeps only the end of a long log: stops 30 and 31 failed with their reasons cut off. Both scripts are run
for real from a copy of tools/ in a temporary checkout (they find tests/output/stages from their own place).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

TOOLS = Path(__file__).resolve().parents[3] / 'tools'


@pytest.fixture()
def checkout(tmp_path):
    (tmp_path / 'tools').mkdir()
    for name in ('timed.sh', 'failed-stages.sh'):
        shutil.copy2(TOOLS / name, tmp_path / 'tools' / name)
    return tmp_path


def timed(checkout, label, script):
    return subprocess.run([str(checkout / 'tools' / 'timed.sh'), label, 'bash', '-c', script],
                          capture_output=True, text=True, check=False)


def failed_stages(checkout):
    return subprocess.run([str(checkout / 'tools' / 'failed-stages.sh')], capture_output=True, text=True,
                          check=True).stdout


def test_a_stage_keeps_its_output_and_exit_code_and_a_failure_leaves_a_marker(checkout):
    stages = checkout / 'tests' / 'output' / 'stages'
    run = timed(checkout, 'units', 'echo out; echo err >&2; exit 3')
    assert run.returncode == 3
    assert '== units: FAILED (exit 3) in ' in run.stdout
    assert (stages / 'units.log').read_text().splitlines() == ['out', 'err']
    assert (stages / 'units.failed').read_text().startswith('== units: FAILED (exit 3)')
    # The same stage passing again takes its marker away.
    assert timed(checkout, 'units', 'true').returncode == 0
    assert not (stages / 'units.failed').exists()
    assert failed_stages(checkout).startswith('failed-stages: no stage recorded a failure')


# A failed stage's log, what must be shown, what must not.
LOGS = {
    'a-tools-own-account-from-its-first-line': (
        '[cluster] FAILED - RETRYING: wait\n[molecule.sh] summary (total 414 s)\n  FAIL cluster (194 s)\n\n'
        '[molecule.sh] why cluster failed (from tests/output/molecule/cluster.log):\n'
        '  FAILED tests/test_cluster.py::test_q[case1] - AssertionError: views below 2\n'
        '[molecule.sh] ERROR: failed scenarios: cluster\n',
        ['[molecule.sh] why cluster failed', 'AssertionError: views below 2', 'ERROR: failed scenarios: cluster'],
        ['FAILED - RETRYING', 'summary (total']),
    'the-failure-lines-of-pytest-and-ansible-test': (
        'Running sanity test "pep8"\nERROR: Found 1 pylint issue(s)\nRunning sanity test "shebang"\n'
        'FAILED tests/unit/test_x.py::test_y - assert 1 == 2\nsome other line\n',
        ['ERROR: Found 1 pylint issue(s)', 'FAILED tests/unit/test_x.py::test_y'],
        ['Running sanity test', 'some other line']),
    'else-the-last-lines': (
        ''.join('line %d\n' % i for i in range(40)),
        ['line 39', 'line 20'], ['line 19\n']),
}


@pytest.mark.parametrize('case', sorted(LOGS))
def test_the_account_of_a_failed_stage(checkout, case):
    log, shown, hidden = LOGS[case]
    (checkout / 'log.txt').write_text(log)
    timed(checkout, 'stage', 'cat "%s"; exit 1' % (checkout / 'log.txt'))
    out = failed_stages(checkout)
    assert out.startswith('\n== why stage failed (')
    for text in shown:
        assert text in out
    for text in hidden:
        assert text not in out


def test_failed_stages_are_told_in_the_order_they_failed(checkout):
    for label in ('sanity', 'molecule', 'vm'):
        timed(checkout, label, 'echo "FAILED %s"; exit 1' % label)
    timed(checkout, 'units', 'true')
    out = failed_stages(checkout)
    heads = [line for line in out.splitlines() if line.startswith('== why ')]
    assert [head.split()[2] for head in heads] == ['sanity', 'molecule', 'vm']
