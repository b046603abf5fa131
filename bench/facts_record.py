"""iommu_facts against the record in bench/results.json: one rule, used by facts_bench.py and report.py.

Gathering is median(size) - median(empty tree) of one run, as report.py
computes it. Anything above the record is reported as SLOWER, with how much:
a figure that drifts up a few per cent at a time is still seen.
"""

from __future__ import annotations

import json
from pathlib import Path
from statistics import median

RECORD = Path(__file__).resolve().parent / 'results.json'


def gathering_ms(sizes, key='wall_ms'):
    """{size: gathering ms} from facts.json's ``sizes``, the empty tree subtracted.

    ``key`` is ``wall_ms`` (the record's measure) or ``cpu_ms``: the child's own
    CPU time, which other work on a loaded machine disturbs far less than wall time.
    """
    base = median(sizes['0'][key])
    return {size: round(median(entry[key]) - base, 1) for size, entry in sizes.items() if int(size)}


def load_record(path=RECORD):
    """(date, {size: ms}) of the record, or (None, {}) when there is none."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None, {}
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
