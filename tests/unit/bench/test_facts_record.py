"""bench/facts_record.py: the facts bench says plainly when it is slower than the record."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / 'bench'))

from facts_record import compare, compare_all, gathering_ms, load_record, read_record  # noqa: E402


@pytest.mark.parametrize('now, record, expected', [
    (191.0, 142.7, '1000 devices: 191 ms, SLOWER than the record (143 ms) by 34%'),
    (143.0, 142.7, '1000 devices: 143 ms, SLOWER than the record (143 ms) by 0%'),   # any rise is said
    (142.7, 142.7, '1000 devices: 143 ms, within the record (143 ms; 0% faster)'),
    (120.0, 142.7, '1000 devices: 120 ms, within the record (143 ms; 16% faster)'),
    (120.0, None, '1000 devices: 120 ms, no record to compare with'),
    (-86.0, 10.7, '1000 devices: -86 ms, below the empty tree: too noisy to compare (load the machine less)'),
])
def test_compare(now, record, expected):
    assert compare('1000', now, record) == expected


def test_gathering_subtracts_the_empty_tree_median():
    sizes = {'0': {'wall_ms': [100, 130, 120]}, '1000': {'wall_ms': [300, 320, 310]}}
    assert gathering_ms(sizes) == {'1000': 190.0}


def test_against_the_committed_record():
    date, record = load_record()
    assert date and set(record) >= {'100', '1000', '5000'}
    lines = compare_all({'1000': record['1000'] * 1.2, '100': record['100']}, record)
    assert lines[0].startswith('100 devices:') and 'within the record' in lines[0]
    assert 'SLOWER than the record' in lines[1] and 'by 20%' in lines[1]


def test_no_record_file(tmp_path):
    assert load_record(tmp_path / 'missing.json') == (None, {})
    (tmp_path / 'r.json').write_text(json.dumps({'date': 'd', 'facts_ms': {'1000': 1}}))
    assert load_record(tmp_path / 'r.json') == ('d', {'1000': 1})


def test_gathering_by_cpu_time():
    """Under load the CPU figure is the one to trust: the same subtraction, on the child's own CPU time."""
    sizes = {'0': {'wall_ms': [100, 400, 120], 'cpu_ms': [90, 95, 92]},
             '1000': {'wall_ms': [300, 900, 310], 'cpu_ms': [180, 185, 190]}}
    assert gathering_ms(sizes, 'cpu_ms') == {'1000': 93.0}
    assert gathering_ms(sizes) == {'1000': 190.0}


def test_the_record_is_the_committed_file_not_a_runs_rewrite(tmp_path):
    """A bench run rewrites results.json; a later part (or rerun) must still compare with the commit."""
    record = tmp_path / 'results.json'
    record.write_text(json.dumps({'date': 'committed', 'facts_ms': {'1000': 143}}))
    for argv in (['init', '-q'], ['add', 'results.json'],
                 ['-c', 'user.name=t', '-c', 'user.email=t@t', 'commit', '-q', '-m', 'record']):
        subprocess.run(['git', '-C', str(tmp_path)] + argv, check=True)
    record.write_text(json.dumps({'date': 'this run', 'facts_ms': {'1000': 141}}))
    assert read_record(record)['date'] == 'committed'
    record.unlink()
    assert read_record(record)['date'] == 'committed'


def test_outside_a_checkout_the_file_is_the_record(tmp_path):
    record = tmp_path / 'results.json'
    assert read_record(record) == {}
    record.write_text(json.dumps({'date': 'file'}))
    assert read_record(record) == {'date': 'file'}
