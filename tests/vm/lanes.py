"""Run the VM scenarios in parallel lanes: `make test-vm` (and CI) call this.

A TCG guest mostly runs one busy thread at a time (a Python module, a shell-heavy
update-initramfs, a boot), so two guests side by side on this 2-core machine kind finish
in about 60 % of the time they take one after the other. Each lane is a sequence of pytest
runs, one guest module at a time; lanes run at once, their output prefixed with the lane.

    python tests/vm/lanes.py [--lanes N] [--list] [--held] [pytest args...]

Scenario files that no lane names still run (in the lane that is shortest by the table's
estimates), and the run says so: a new scenario is never silently left out. A file in HELD is
not run by default, and every run prints why.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
SCENARIOS = HERE / 'scenarios'

# (scenario file, pytest -k expression or None, estimated minutes on a quiet machine with a
# second lane busy). The longest items start first so the lanes end close together.
# Measured with two guests at once (session 5): Debian 13 Intel with SR-IOV 30, each
# proxmox-boot-tool guest 27, Debian 13 AMD 13, Debian 12 Intel 9.
PLAN = [
    ('test_intel_twins.py', 'trixie', 30),
    ('test_proxmox_boot_tool.py', 'TestSystemdBoot', 27),
    ('test_proxmox_boot_tool.py', 'TestGrubOnTheEsp', 27),
    ('test_amd_grub.py', None, 13),
    ('test_intel_twins.py', 'bookworm', 9),
]
DEFAULT_ESTIMATE = 15
# Scenario files that make test does not run yet, each with the reason printed on every run.
# `--held` runs them too (or run the file with pytest directly).
HELD = {}
_print_lock = threading.Lock()


def say(lane, message):
    with _print_lock:
        sys.stdout.write('[lane %s] %s\n' % (lane, message))
        sys.stdout.flush()


def plan_lanes(lanes, present):
    """Greedy longest-first: each item goes to the lane with the least estimated work so far."""
    items = [item for item in PLAN if item[0] in present]
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


def run_lane(lane, queue, pytest_args, results):
    for item in queue:
        argv = [sys.executable, '-m', 'pytest', '-s', '-p', 'no:cacheprovider',
                str(SCENARIOS / item[0]), *(['-k', item[1]] if item[1] else []), *pytest_args]
        say(lane, 'start %s' % item_label(item))
        started = time.monotonic()
        with subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              errors='replace') as proc:
            for line in proc.stdout:
                say(lane, line.rstrip('\n'))
        seconds = time.monotonic() - started
        results.append((lane, item_label(item), proc.returncode, seconds))
        verdict = 'PASS' if proc.returncode == 0 else 'FAIL (rc=%d)' % proc.returncode
        say(lane, '%s %s in %.0f s' % (verdict, item_label(item), seconds))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--lanes', type=int, default=2, help='guests at once (default 2: one per core)')
    parser.add_argument('--list', action='store_true', help='print the lanes and exit')
    parser.add_argument('--held', action='store_true', help='also run the scenarios HELD names')
    args, pytest_args = parser.parse_known_args(argv)
    if args.lanes < 1:
        parser.error('--lanes must be at least 1, not %d' % args.lanes)
    present = every = {path.name for path in SCENARIOS.glob('test_*.py')}
    if not args.held:
        for name in sorted(present & set(HELD)):
            print('[lanes] not run by make test: %s (%s); --held runs it' % (name, HELD[name]))
        present = present - set(HELD)
    queues, unlisted = plan_lanes(args.lanes, present)
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
    for lane, label, rc, seconds in sorted(results):
        print('  lane %d  %-40s %s  %6.0f s' % (lane, label, 'PASS' if rc == 0 else 'FAIL', seconds))
    # pytest exits 5 when -k selects nothing: that is a lane plan error, not a pass.
    return 0 if results and all(result[2] == 0 for result in results) else 1


if __name__ == '__main__':
    sys.exit(main())
