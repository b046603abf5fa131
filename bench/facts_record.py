"""The results of record, and iommu_facts against them: one rule, used by facts_bench.py and report.py.

The record is bench/results.json as committed (HEAD): a bench run rewrites the
file, so the working copy after a run (or after one part of it) is that run's
own figures, never the record to compare with.

Gathering is median(size) - median(empty tree) of one run, as report.py
computes it. Anything above the record is reported as SLOWER, with how much:
a figure that drifts up a few per cent at a time is still seen.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from statistics import median

HERE = Path(__file__).resolve().parent
RECORD = HERE / 'results.json'


def gathering_ms(sizes, key='wall_ms'):
    """{size: gathering ms} from facts.json's ``sizes``, the empty tree subtracted.

    ``key`` is ``wall_ms`` (the record's measure) or ``cpu_ms``: the child's own
    CPU time, which other work on a loaded machine disturbs far less than wall time.
    """
    base = median(sizes['0'][key])
    return {size: round(median(entry[key]) - base, 1) for size, entry in sizes.items() if int(size)}


def committed_text(path=RECORD):
    """``path`` as HEAD holds it, else (no git, not a checkout, not committed) the file as it is; None without either."""
    try:
        done = subprocess.run(['git', '-C', str(path.parent), 'show', 'HEAD:./%s' % path.name],
                              capture_output=True, text=True, check=False)
    except OSError:
        done = None
    if done is not None and done.returncode == 0:
        return done.stdout
    try:
        return path.read_text()
    except OSError:
        return None


def read_record(path=RECORD, text=None):
    """The results of record as a dict ({} when there is none): bench/results.json as committed."""
    text = committed_text(path) if text is None else text
    try:
        data = json.loads(text or '')
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def load_record(path=None):
    """(date, {size: ms}) of the record, or (None, {}) when there is none; ``path``: that file instead."""
    if path is None:
        data = read_record()
    else:
        try:
            data = read_record(text=Path(path).read_text())
        except OSError:
            data = {}
    return data.get('date'), {str(k): v for k, v in (data.get('facts_ms') or {}).items()}


def compare(size, now_ms, record_ms):
    """One plain line: ``SLOWER than the record by X%`` or ``within the record``, with both figures."""
    if record_ms is None:
        return '%s devices: %.0f ms, no record to compare with' % (size, now_ms)
    if now_ms < 0:
        return '%s devices: %.0f ms, below the empty tree: too noisy to compare (load the machine less)' % (size, now_ms)
    if record_ms <= 0:
        return '%s devices: %.0f ms, record %.1f ms cannot be compared' % (size, now_ms, record_ms)
    change = (now_ms - record_ms) / record_ms * 100
    if change > 0:
        return '%s devices: %.0f ms, SLOWER than the record (%.0f ms) by %.0f%%' % (size, now_ms, record_ms, change)
    return '%s devices: %.0f ms, within the record (%.0f ms; %.0f%% faster)' % (size, now_ms, record_ms, abs(change))


def compare_all(gathering, record):
    return [compare(size, gathering[size], record.get(size)) for size in sorted(gathering, key=int)]
