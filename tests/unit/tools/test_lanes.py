"""tests/vm/lanes.py: which test set runs which guest, and how a lane item's verdict is decided.

The verdicts are decided from the JUnit report of a real pytest run on tiny scenario files, so
the exit codes and report shapes are pytest's own, not written here.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
_spec = importlib.util.spec_from_file_location('lanes', ROOT / 'tests' / 'vm' / 'lanes.py')
lanes = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(lanes)

# Child-run scenario sources (tests/fixtures/lanes/README.md): their skips are the input whose verdict is judged.
SCENARIOS = ROOT / 'tests' / 'fixtures' / 'lanes'
MODULE_SKIP, PASSES, FAILS, SKIPS_ITSELF, HALF_SKIPPED = (
    (SCENARIOS / name).read_text() for name in
    ('module_skip.py.txt', 'passes.py.txt', 'fails.py.txt', 'skips_itself.py.txt', 'half_skipped.py.txt'))


def run_pytest(tmp_path, source, *args):
    scenario = tmp_path / 'test_scenario.py'
    scenario.write_text(source)
    junit = tmp_path / 'report.xml'
    proc = subprocess.run([sys.executable, '-m', 'pytest', '-q', '-p', 'no:cacheprovider', '--junitxml', str(junit),
                           str(scenario), *args], cwd=tmp_path, capture_output=True, text=True, check=False)
    return proc.returncode, junit


@pytest.mark.parametrize('source, args, verdict, reasons', [
    pytest.param(MODULE_SKIP, ['-k', 'TestGuest'], 'SKIPPED', ["the tool is absent (set TOOL_DIR)"], id='module-skip-exits-5'),
    pytest.param(MODULE_SKIP, [], 'SKIPPED', ["the tool is absent (set TOOL_DIR)"], id='module-skip'),
    pytest.param(SKIPS_ITSELF, [], 'SKIPPED', ['no guest today'], id='test-skips-itself'),
    pytest.param(PASSES, [], 'PASS', [], id='passes'),
    pytest.param(HALF_SKIPPED, [], 'PASS', [], id='some-skipped-some-passed'),
    pytest.param(FAILS, [], 'FAIL', ['test_boot: assert False'], id='fails-with-its-reason'),
    pytest.param(PASSES, ['-k', 'NoSuchClass'], 'FAIL', ['pytest exited 5 with no failed test in its report'],
                 id='k-selects-nothing-exits-5'),
])
def test_verdict_from_a_real_pytest_run(tmp_path, source, args, verdict, reasons):
    returncode, junit = run_pytest(tmp_path, source, *args)
    assert lanes.verdict_of(returncode, junit) == (verdict, reasons)


def test_a_crash_without_a_report_fails(tmp_path):
    for returncode in (2, 5):
        assert lanes.verdict_of(returncode, tmp_path / 'missing.xml') == (
            'FAIL', ['pytest exited %d with no failed test in its report' % returncode])


def test_a_long_failure_message_is_cut_to_one_short_line(tmp_path):
    returncode, junit = run_pytest(tmp_path, 'def test_boot():\n    raise RuntimeError("x" * 400 + "\\nserial tail")\n')
    verdict, [reason] = lanes.verdict_of(returncode, junit)
    assert verdict == 'FAIL' and reason.startswith('test_boot: RuntimeError: xxx') and reason.endswith('...')
    assert len(reason) == len('test_boot: ') + 300 and 'serial tail' not in reason


def test_make_test_set_is_the_primary_target_and_full_holds_everything():
    present = {item[0] for item in lanes.PLAN}
    queues, _unlisted = lanes.plan_lanes(2, present, lanes.MAKE_TEST)
    chosen = {lanes.item_label(item) for queue in queues for item in queue}
    assert chosen == {'test_intel_twins.py[trixie]', 'test_amd_grub.py', 'test_proxmox_boot_tool.py[TestTrixieSystemdBoot]',
                      'test_image_kernels.py'}
    queues, _unlisted = lanes.plan_lanes(2, present, lanes.FULL)
    assert {lanes.item_label(item) for queue in queues for item in queue} == {
        lanes.item_label(item) for item in lanes.PLAN}


def test_a_scenario_no_plan_names_runs_in_both_sets():
    present = {item[0] for item in lanes.PLAN} | {'test_new_guest.py'}
    for test_set in lanes.SETS:
        queues, unlisted = lanes.plan_lanes(2, present, test_set)
        assert unlisted == ['test_new_guest.py']
        assert 'test_new_guest.py' in {item[0] for queue in queues for item in queue}


def test_a_message_that_starts_on_its_second_line_names_the_plays_failure(tmp_path):
    # What restore_once's `assert ..., run.tail()` reported in make test-full: "AssertionError: " and then the
    # playbook's tail, whose [ERROR] line is why.
    returncode, junit = run_pytest(tmp_path, (
        'def test_restore():\n'
        '    assert False, "\\n  PLAY [Restore] ***\\n  TASK [Refuse] ***\\n'
        '  [ERROR]: Task failed: Action failed: No backup bundle for h: x does not exist.\\n  PLAY RECAP ***"\n'))
    verdict, [reason] = lanes.verdict_of(returncode, junit)
    assert verdict == 'FAIL'
    assert reason == 'test_restore: AssertionError: [ERROR]: Task failed: Action failed: No backup bundle for h: x does not exist.'
