"""iommu_facts on synthetic sysfs trees of 0, 100, 1,000 and 5,000 devices -> bench/out/facts.json.

Each run is a fresh interpreter executing the module file with a JSON args
file, as on a managed host: interpreter start, imports, the gathering and the
JSON result all count. Wall time is measured around the child and peak memory
is the child's own ru_maxrss (os.wait4), so nothing of this process leaks in.
The empty tree (the same generated host without devices) measures the per-run
overhead; report.py subtracts its median from each size's median.

The child's CPU time (user + system, from the same rusage) is kept beside the
wall time and gathering is printed by both: on a loaded machine the wall
figure counts the time the child waited for a core, the CPU figure does not.

Sizes are interleaved run by run, so machine drift hits every size alike.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT / 'tests' / 'unit'))
sys.path.insert(0, str(HERE))

from sysfs_builder import generated_host  # noqa: E402
from _ansible import collection_link_parent  # noqa: E402
from facts_record import compare_all, gathering_ms, load_record  # noqa: E402

SIZES = (0, 100, 1000, 5000)
MODULE = 'ansible_collections.vfio.passthrough.plugins.modules.iommu_facts'
# Where a run's time goes, measured in a child too: reading the tree, then what
# the module does with the result on its way out (utf8_result's check, then
# AnsibleModule.exit_json's JSON encoder; its remove_values copy is skipped, as
# _exit.exit_uncopied skips it when nothing is no_log). The second part grows
# with the documented result's size. Wall (perf_counter) and CPU (process_time).
BREAKDOWN = '''
import json, sys, time
from ansible.module_utils.common import json as module_json
from ansible_collections.vfio.passthrough.plugins.module_utils.files._files import utf8_result
from ansible_collections.vfio.passthrough.plugins.module_utils.pci._iommu_facts import gather_iommu_facts
from ansible_collections.vfio.passthrough.plugins.module_utils.pci._net_interfaces import read_net_interfaces
from ansible_collections.vfio.passthrough.plugins.module_utils.pci._sysfs import SysfsTree
encoder = module_json.get_module_encoder('legacy', module_json.Direction.MODULE_TO_CONTROLLER)
best = {'read_ms': float('inf'), 'result_ms': float('inf'), 'read_cpu_ms': float('inf'), 'result_cpu_ms': float('inf')}
for _ in range(3):
    started, started_cpu = time.perf_counter(), time.process_time()
    tree = SysfsTree(sys.argv[1])
    facts = gather_iommu_facts(tree)
    read_net_interfaces(tree)
    read, read_cpu = time.perf_counter(), time.process_time()
    json.dumps(utf8_result({'changed': False, 'ansible_facts': {'iommu': facts}}), cls=encoder)
    done, done_cpu = time.perf_counter(), time.process_time()
    for key, value in (('read_ms', read - started), ('result_ms', done - read),
                       ('read_cpu_ms', read_cpu - started_cpu), ('result_cpu_ms', done_cpu - read_cpu)):
        best[key] = min(best[key], value)
print(json.dumps({key: round(value * 1000, 1) for key, value in best.items()}))
'''


def run_once(tree, work, pythonpath):
    """One module run on ``tree``: (wall ms, CPU ms, peak RSS KiB, device count in the result)."""
    args = work / 'args.json'
    args.write_text(json.dumps({'ANSIBLE_MODULE_ARGS': {'root': str(tree)}}))
    out_path = work / 'out.json'
    env = dict(os.environ, PYTHONPATH=pythonpath, LC_ALL='C')
    # The result of 5,000 devices is megabytes: a file, not a pipe, so the
    # child never blocks on a reader and the wait below sees its true end.
    with open(out_path, 'wb') as out:
        started = time.perf_counter()
        child = subprocess.Popen([sys.executable, '-m', MODULE, str(args)], stdout=out, stderr=subprocess.PIPE,
                                 env=env, cwd=work)
        _pid, status, usage = os.wait4(child.pid, 0)
        wall_ms = (time.perf_counter() - started) * 1000
    child.returncode = os.waitstatus_to_exitcode(status)
    stderr = child.stderr.read().decode(errors='replace')
    child.stderr.close()
    result = json.loads(out_path.read_text() or '{}')
    if child.returncode != 0 or result.get('failed'):
        raise RuntimeError('iommu_facts failed on %s (rc=%d): %s %s'
                           % (tree, child.returncode, result.get('msg', ''), stderr[-2000:]))
    cpu_ms = (usage.ru_utime + usage.ru_stime) * 1000
    return wall_ms, cpu_ms, usage.ru_maxrss, len(result['ansible_facts']['iommu']['devices'])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--runs', type=int, default=7, help='runs per size (default 7)')
    parser.add_argument('--quick', action='store_true', help='3 runs per size')
    parser.add_argument('--out', type=Path, default=HERE / 'out' / 'facts.json')
    args = parser.parse_args(argv)
    runs = 3 if args.quick else args.runs

    pythonpath = collection_link_parent()
    load = os.getloadavg()
    print('[facts] load average at the start: %.2f %.2f %.2f (%d CPUs)' % (load + (os.cpu_count() or 0,)), flush=True)
    work = Path(tempfile.mkdtemp(prefix='vfio-facts-bench-'))
    try:
        trees = {}
        for size in SIZES:
            started = time.monotonic()
            trees[size] = work / ('tree-%d' % size)
            generated_host(trees[size], size)
            print('[facts] built %d-device tree in %.1f s' % (size, time.monotonic() - started), flush=True)
        # One unmeasured run per size warms the page cache and the .pyc files.
        for size in SIZES:
            run_once(trees[size], work, pythonpath)
        # CPU time too: on a shared machine it is less disturbed by other work than wall time.
        sizes = {str(size): {'wall_ms': [], 'cpu_ms': [], 'peak_rss_kb': []} for size in SIZES}
        for n in range(runs):
            for size in SIZES:
                wall_ms, cpu_ms, rss, count = run_once(trees[size], work, pythonpath)
                if count != size + (size + 31) // 32:
                    # size functions plus one root port per 32 of them
                    raise RuntimeError('%d-device tree: the module reported %d PCI functions' % (size, count))
                sizes[str(size)]['wall_ms'].append(round(wall_ms, 2))
                sizes[str(size)]['cpu_ms'].append(round(cpu_ms, 2))
                sizes[str(size)]['peak_rss_kb'].append(rss)
            print('[facts] run %d/%d: %s' % (n + 1, runs, '  '.join(
                '%s=%.0f ms' % (s, v['wall_ms'][-1]) for s, v in sizes.items())), flush=True)
        breakdown = {}
        for size in SIZES:
            child = subprocess.run([sys.executable, '-c', BREAKDOWN, str(trees[size])], capture_output=True, text=True,
                                   env=dict(os.environ, PYTHONPATH=pythonpath), check=True)
            breakdown[str(size)] = json.loads(child.stdout)
        for key, label in (('', 'wall'), ('_cpu', 'CPU')):
            split = '  '.join('%s: read %.0f + result %.0f ms' % (s, b['read%s_ms' % key], b['result%s_ms' % key])
                              for s, b in breakdown.items())
            print('[facts] best of 3 in-process, %s: %s' % (label, split), flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    # Read before report.py replaces the record with this run's figures.
    date, record = load_record()
    print('[facts] gathering (median of a size - median of the empty tree), against the record of %s '
          '(bench/results.json as committed, wall time on a quiet machine):' % (date or 'no date'), flush=True)
    for key, label in (('wall_ms', 'wall'), ('cpu_ms', 'CPU')):
        for line in compare_all(gathering_ms(sizes, key), record):
            print('[facts]   %s %s' % (label, line), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({'runs': runs, 'python': sys.version.split()[0], 'load_at_start': load,
                                    'sizes': sizes, 'breakdown': breakdown}, indent=1) + '\n')
    print('[facts] wrote %s' % args.out, flush=True)
    return 0


if __name__ == '__main__':
    sys.exit(main())
