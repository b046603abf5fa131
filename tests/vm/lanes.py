"""Run the VM scenarios in parallel lanes: `make test-vm` (and CI) call this.

A TCG guest mostly runs one busy thread at a time (a Python module, a shell-heavy
update-initramfs, a boot), so two guests side by side on this 2-core machine kind finish
in about 60 % of the time they take one after the other. Each lane is a sequence of pytest
runs, one guest module at a time; lanes run at once, their output prefixed with the lane.

    python tests/vm/lanes.py [--set make-test|full] [--lanes N] [--list] [--held] [pytest args...]

Two sets: `make-test` (what `make test` and CI run: the guests that carry each mission row at least
once on the primary target, Proxmox VE 9 / Debian 13) and `full` (`make test-vm-full`: every item of
PLAN). Scenario files that PLAN does not name still run, in both sets (in the lane that is shortest by
the table's estimates), and the run says so: a new scenario is never silently left out. A file in
HELD is not run by default, and every run prints why.

A scenario that skips as a whole (the third-party tool it boots is absent, and it says how to provide
it) is reported as SKIPPED with its reason in the summary and on the last line, and the run passes;
any other exit of pytest, 5 ("no tests ran") included, is a failure.
"""

from __future__ import annotations

import argparse
import ast
import subprocess
import sys
import tempfile
import threading
import time
import xml.etree.ElementTree as ET
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
SCENARIOS = HERE / 'scenarios'

MAKE_TEST, FULL = 'make-test', 'full'
# (scenario file, pytest -k expression or None, estimated minutes on a quiet machine with a
# second lane busy, the sets that run it). The longest items start first so the lanes end close
# together. The make-test items as measured in session 7's fresh-clone .ci/run (two guests at once):
# Debian 13 Intel with SR-IOV and the VM probe 984 s (its probe of the e1000e, a guest inside the guest
# under TCG inside TCG, 163 s), the Debian 13 systemd-boot guest with helper 9.2.0 676 s, Debian 13 AMD
# with the VM probe 334 s. The test-full items from session 5 scaled by session 6's ratio (0.58).
# make test keeps the Debian 13 guests, the systemd-boot one with Proxmox VE 9.2's helper 9.2.0;
# the Debian 12 (Proxmox VE 8, helper 8.1.0) guests, systemd-boot and GRUB on the ESP, are proven
# by test-full only.
PLAN = [
    ('test_intel_twins.py', 'trixie', 16, {MAKE_TEST, FULL}),
    ('test_proxmox_boot_tool.py', 'TestTrixieSystemdBoot', 11, {MAKE_TEST, FULL}),
    ('test_proxmox_boot_tool.py', 'TestTrixieGrubOnTheEsp', 11, {FULL}),
    ('test_proxmox_boot_tool.py', 'TestBookwormSystemdBoot', 11, {FULL}),
    ('test_proxmox_boot_tool.py', 'TestBookwormGrubOnTheEsp', 11, {FULL}),
    ('test_amd_grub.py', None, 6, {MAKE_TEST, FULL}),
    ('test_intel_twins.py', 'bookworm', 8, {FULL}),
    # Debian 13 with 6.12 and a trixie-backports kernel: one converge over two initramfs images. Its first
    # run at load 13-21: boot 221 s, converge with reboot 2021 s; on a quiet machine about a third of that.
    ('test_backports_kernel.py', None, 16, {FULL}),
    # No guest: the collection's cmdline_size reader on the kernel kept beside the Debian 13 image.
    ('test_image_kernels.py', None, 1, {MAKE_TEST, FULL}),
]
SETS = (MAKE_TEST, FULL)
DEFAULT_ESTIMATE = 15
# Scenario files that make test does not run yet, each with the reason printed on every run.
# `--held` runs them too (or run the file with pytest directly).
HELD = {}
_print_lock = threading.Lock()


def say(lane, message):
    with _print_lock:
        sys.stdout.write('[lane %s] %s\n' % (lane, message))
        sys.stdout.flush()


def plan_lanes(lanes, present, test_set=FULL):
    """Greedy longest-first: each item goes to the lane with the least estimated work so far."""
    items = [item[:3] for item in PLAN if item[0] in present and test_set in item[3]]
    listed = {item[0] for item in PLAN}
    items += [(name, None, DEFAULT_ESTIMATE) for name in sorted(present - listed)]
    queues, load = [[] for _lane in range(lanes)], [0] * lanes
    for item in sorted(items, key=lambda item: -item[2]):
        lane = load.index(min(load))
        queues[lane].append(item)
        load[lane] += item[2]
    return queues, sorted(present - listed)


def item_label(item):
    return item[0] + ('[%s]' % item[1] if item[1] else '')


def _collection_skip_reason(text):
    try:
        reason = ast.literal_eval(text.strip())[2]
    except (ValueError, SyntaxError, IndexError, TypeError):
        return text.strip()
    return reason.removeprefix('Skipped: ')


def _report(junit_xml, tag):
    """The report's elements of one tag, or None when pytest left no readable report."""
    try:
        return list(ET.parse(junit_xml).getroot().iter(tag))
    except (OSError, ET.ParseError):
        return None


def skip_reasons(junit_xml):
    """The reasons, when every test of a pytest run was skipped (a module-level skip included); else None.

    pytest exits 5 ("no tests ran") when a module-level skip leaves nothing to run, and 0 when each
    test skipped itself: the report, not the exit code, tells a skip from a plan error (a -k that
    selects nothing also exits 5, with no test and no skip in the report).
    """
    suites = _report(junit_xml, 'testsuite')
    if suites is None:
        return None
    reasons, total = [], 0
    for suite in suites:
        if int(suite.get('failures', 0)) or int(suite.get('errors', 0)):
            return None
        total += int(suite.get('tests', 0))
        for case in suite.iter('testcase'):
            skipped = case.find('skipped')
            if skipped is None:
                return None
            message = skipped.get('message') or ''
            if message == 'collection skipped':
                # A module-level skip carries "('file', line, 'Skipped: reason')" as its text.
                message = _collection_skip_reason(skipped.text or '')
            reasons.append(message)
    return sorted(set(reasons)) if total and reasons else None


def failure_reasons(junit_xml, width=300):
    """One line per failed or errored test: its name and the first line of its message (with the
    playbook's own failure line when that first line is only the exception's name).

    A failing guest prints its serial console last, and CI keeps only the tail of the log: the
    summary repeats why each test failed, so the reason survives the cut.
    """
    reasons = []
    for case in _report(junit_xml, 'testcase') or []:
        for outcome in ('failure', 'error'):
            found = case.find(outcome)
            if found is None:
                continue
            lines = [line.strip() for line in (found.get('message') or found.text or '').splitlines() if line.strip()]
            first = lines[0] if lines else '(no message)'
            # "AssertionError:" alone: the text (a playbook's tail) starts on the next line, where its own
            # failure line says more than its first line does.
            if first.endswith(':') and len(lines) > 1:
                first += ' ' + next((line for line in lines[1:] if line.startswith(('[ERROR]: ', 'fatal: ['))), lines[1])
            if len(first) > width:
                first = first[:width - 3] + '...'
            reasons.append('%s: %s' % (case.get('name', '?'), first))
    return reasons


def verdict_of(returncode, junit_xml):
    """PASS, SKIPPED or FAIL, with the reasons: a skip as a whole passes, any other non-zero exit fails."""
    reasons = skip_reasons(junit_xml) if returncode in (0, 5) else None
    if reasons:
        return 'SKIPPED', reasons
    if returncode == 0:
        return 'PASS', []
    return 'FAIL', failure_reasons(junit_xml) or ['pytest exited %d with no failed test in its report' % returncode]


def run_lane(lane, queue, pytest_args, results):
    for item in queue:
        with tempfile.TemporaryDirectory(prefix='vfio-lanes-') as tmp:
            junit = Path(tmp) / 'report.xml'
            argv = [sys.executable, '-m', 'pytest', '-s', '-p', 'no:cacheprovider', '--junitxml', str(junit),
                    str(SCENARIOS / item[0]), *(['-k', item[1]] if item[1] else []), *pytest_args]
            say(lane, 'start %s' % item_label(item))
            started = time.monotonic()
            with subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                  errors='replace') as proc:
                for line in proc.stdout:
                    say(lane, line.rstrip('\n'))
            seconds = time.monotonic() - started
            verdict, reasons = verdict_of(proc.returncode, junit)
        results.append((lane, item_label(item), verdict, seconds, reasons))
        shown = verdict if verdict != 'FAIL' else 'FAIL (rc=%d)' % proc.returncode
        because = ''.join(': ' + reason for reason in reasons)
        say(lane, '%s %s in %.0f s%s' % (shown, item_label(item), seconds, because))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--lanes', type=int, default=2, help='guests at once (default 2: one per core)')
    parser.add_argument('--list', action='store_true', help='print the lanes and exit')
    parser.add_argument('--held', action='store_true', help='also run the scenarios HELD names')
    parser.add_argument('--set', dest='test_set', choices=SETS, default=FULL,
                        help='make-test: the make test / CI set; full (default): every scenario')
    args, pytest_args = parser.parse_known_args(argv)
    if args.lanes < 1:
        parser.error('--lanes must be at least 1, not %d' % args.lanes)
    present = every = {path.name for path in SCENARIOS.glob('test_*.py')}
    if not args.held:
        for name in sorted(present & set(HELD)):
            print('[lanes] not run by make test: %s (%s); --held runs it' % (name, HELD[name]))
        present = present - set(HELD)
    queues, unlisted = plan_lanes(args.lanes, present, args.test_set)
    left_out = sorted({item_label(item) for item in PLAN if item[0] in present and args.test_set not in item[3]})
    if left_out:
        print('[lanes] set %s; run by make test-vm-full only: %s' % (args.test_set, ', '.join(left_out)))
    for name in unlisted:
        print('[lanes] %s is not in tests/vm/lanes.py PLAN: it runs with an estimate of %d min'
              % (name, DEFAULT_ESTIMATE))
    for name in sorted({item[0] for item in PLAN} - every):
        print('[lanes] %s is in PLAN but not in tests/vm/scenarios: nothing to run for it' % name)
    for lane, queue in enumerate(queues, 1):
        labels = ', '.join(item_label(item) for item in queue) or 'idle'
        print('[lanes] lane %d: %s (about %d min)' % (lane, labels, sum(item[2] for item in queue)))
    if args.list:
        return 0
    sys.stdout.flush()
    started = time.monotonic()
    results = []
    threads = [threading.Thread(target=run_lane, args=(lane, queue, pytest_args, results))
               for lane, queue in enumerate(queues, 1) if queue]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    print('[lanes] summary (wall %.0f s):' % (time.monotonic() - started))
    for lane, label, verdict, seconds, _reasons in sorted(results):
        print('  lane %d  %-40s %-7s  %6.0f s' % (lane, label, verdict, seconds))
    skipped = [(label, reasons) for _lane, label, verdict, _seconds, reasons in sorted(results) if verdict == 'SKIPPED']
    failures = [(label, reasons) for _lane, label, verdict, _seconds, reasons in sorted(results) if verdict == 'FAIL']
    failed = [label for label, _reasons in failures]
    for label, reasons in skipped:
        print('[lanes] SKIPPED %s: %s' % (label, '; '.join(reasons)))
    for label, reasons in failures:
        for reason in reasons:
            print('[lanes] FAILED %s %s' % (label, reason))
    print('[lanes] %d passed, %d skipped, %d failed%s' % (
        sum(result[2] == 'PASS' for result in results), len(skipped), len(failed),
        (': ' + ', '.join(failed)) if failed else ''))
    return 0 if results and not failed else 1


if __name__ == '__main__':
    sys.exit(main())
