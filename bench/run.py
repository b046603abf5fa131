"""Run the benchmark parts, one subprocess each, then the report: what `make bench` runs.

    python bench/run.py [--parts facts,containers,vm] [--quick]

Parts run in the order facts, containers, vm (the VM part is the longest and
boots QEMU guests, so the shorter ones report first). Each part writes
bench/out/<part>.json; a selected part's old JSON is removed first, so the
report never shows figures from an earlier run as this one's. The load average
at the start of each part, its start time and exit go to bench/out/run.json. A part whose
prerequisites are absent is skipped with the reason printed; a part that fails
stops nothing else, and the exit status says so.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
OUT = HERE / 'out'
PARTS = ('facts', 'containers', 'vm')
SCRIPTS = {'facts': 'facts_bench.py', 'containers': 'container_bench.py', 'vm': 'vm_bench.py'}


def say(message):
    print('[bench] %s' % message, flush=True)


def missing_prerequisite(part):
    """Why ``part`` cannot run on this machine, or None. Installable tools do not count as missing for root."""
    root = os.geteuid() == 0
    if part == 'containers' and not shutil.which('podman') and not root:
        return 'podman is not installed and only root can install it (tests/containers/setup-host.sh)'
    if part == 'vm':
        if not shutil.which('qemu-system-x86_64') and not root:
            return 'qemu-system-x86_64 is not installed and only root can install it (tests/vm/build-image.sh)'
        if not (HERE / SCRIPTS['vm']).exists():
            return 'bench/vm_bench.py is missing'
    return None


def settle(limit_s=300, quiet=1.0, poll_s=10):
    """Wait until the one-minute load is below ``quiet`` (at most ``limit_s``): the parts are figures of
    record, and each one would otherwise start in the load the previous part left behind (the container
    fleet leaves it near 6). Returns the seconds waited; a machine loaded by something else stays loaded,
    and the part's recorded load says so."""
    waited = 0
    while os.getloadavg()[0] >= quiet and waited < limit_s:
        time.sleep(poll_s)
        waited += poll_s
    return waited


def record_part(part, entry):
    """Merge one part's start load, time and exit into bench/out/run.json (parts not run keep theirs)."""
    path = OUT / 'run.json'
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        data = {}
    data[part] = entry
    tmp = path.with_suffix('.tmp')
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + '\n')
    tmp.replace(path)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--parts', default=','.join(PARTS), help='comma-separated subset of %s' % ','.join(PARTS))
    parser.add_argument('--quick', action='store_true', help='smoke run: fewer repetitions in every part')
    args = parser.parse_args(argv)
    parts = [p for p in args.parts.split(',') if p]
    unknown = sorted(set(parts) - set(PARTS))
    if unknown:
        parser.error('unknown part(s) %s: choose from %s' % (', '.join(unknown), ', '.join(PARTS)))
    OUT.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    failed, summary = [], []
    for part in (p for p in PARTS if p in parts):
        stale = OUT / ('%s.json' % part)
        if stale.exists():
            stale.unlink()
        reason = missing_prerequisite(part)
        if reason:
            say('%s: SKIPPED: %s' % (part, reason))
            summary.append('%s skipped' % part)
            continue
        if summary and not args.quick:
            waited = settle()
            say('%s: waited %d s for the load the previous part left to settle' % (part, waited))
        argv_part = [sys.executable, str(HERE / SCRIPTS[part])] + (['--quick'] if args.quick else [])
        say('%s: %s' % (part, ' '.join(argv_part[1:])))
        part_started = time.monotonic()
        load = ' '.join('%.2f' % x for x in os.getloadavg())
        entry = {'started': time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime()), 'load_at_start': load,
                 'quick': args.quick}
        quiet = '' if os.getloadavg()[0] < 1 else ' (not a quiet machine: figures of record want it below 1)'
        say('%s: load average at the start %s%s' % (part, load, quiet))
        rc = subprocess.run(argv_part, cwd=ROOT, check=False).returncode
        seconds = time.monotonic() - part_started
        record_part(part, dict(entry, rc=rc, seconds=round(seconds)))
        say('%s: exit %d after %.0f s' % (part, rc, seconds))
        summary.append('%s %s in %.0f s' % (part, 'ok' if rc == 0 else 'FAILED (exit %d)' % rc, seconds))
        if rc != 0:
            failed.append(part)
    report_rc = subprocess.run([sys.executable, str(HERE / 'report.py')], cwd=ROOT, check=False).returncode
    if report_rc != 0:
        failed.append('report')
    say('%s; total %.0f s' % ('; '.join(summary), time.monotonic() - started))
    if failed:
        say('FAILED: %s' % ', '.join(failed))
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
