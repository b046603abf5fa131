"""Read bench/out/*.json, print the tables, write bench/results.md, bench/results.json, bench/fleet.png, bench/record.png.

    python bench/report.py

A part whose JSON is missing is reported as not measured; nothing here
measures anything, so the report can be rebuilt from the same outputs. The
previous results of record (bench/results.json as committed, facts_record.read_record)
are shown beside this run's figures, in the tables and in bench/record.png.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import re
import statistics
import subprocess
import sys
from pathlib import Path

from facts_record import RECORD, compare_all, load_record, read_record

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
OUT = HERE / 'out'
RESULTS_MD = HERE / 'results.md'
RESULTS_JSON = HERE / 'results.json'
FLEET_PNG = HERE / 'fleet.png'
RECORD_PNG = HERE / 'record.png'
# The results of record this report is compared with: bench/results.json as 2026-11-25's `make bench`
# left it (QEMU 7.2, Debian 12 guests), kept under its date before this report overwrites results.json.
RECORD_NAME = '%s as committed' % RECORD.relative_to(ROOT)
RECORD_FIRST_RUN = {'role': 178, 'guide_literal': 405, 'guide_handlers': 168}

# role / guide_handlers wall time of a converged run: issue 26 asks 0.35x of the VM (the guide's feature
# set, like for like); the containers keep the earlier 0.5x.
NOOP_GOALS = {'noop_vm': 0.35, 'noop_containers': 0.5}
GOALS = {
    'reboots': 'VM, fresh to end state: the role reboots once, no more than either peer',
    'first_run': 'VM, fresh to the verified end state: the role no slower than guide_handlers',
    'noop_vm': 'VM, converged run, the guide\'s feature set: role <= 0.35x guide_handlers, 0 changed, 0 reboots',
    'all_reboots': 'VM, every feature (SR-IOV, hugepages, isolated CPUs, by ID and by address) in one first run: '
                   'exactly one reboot, every feature live',
    'all_noop': 'VM, converged run with every feature: 0 changed, 0 reboots, verified',
    'noop_containers': 'containers, converged run: role <= 0.5x guide_handlers, 0 changed, 0 reboots',
    'facts': 'iommu_facts: gathering <= 100 ms at 1,000 devices',
    'fleet_changed_0': 'fleet: converged runs change nothing',
}
FACTS_GOAL_MS = 100.0    # gathering cost at 1,000 devices
FACTS_GOAL_SIZE = '1000'


def load(name):
    path = OUT / ('%s.json' % name)
    if not path.exists():
        return None, None
    data = json.loads(path.read_text())
    # A part says when it ran; the file's mtime is only a fallback, since copying
    # a kept result back into bench/out/ resets it.
    if data.get('measured'):
        return data, data['measured']
    stamp = datetime.datetime.fromtimestamp(path.stat().st_mtime, datetime.timezone.utc)
    return data, stamp.strftime('%Y-%m-%d %H:%M UTC')


def part_loads():
    """{part: 'load at its start'} from bench/out/run.json (run.py writes it), {} without it."""
    try:
        data = json.loads((OUT / 'run.json').read_text())
    except (OSError, ValueError):
        return {}
    return {part: entry.get('load_at_start') for part, entry in data.items() if isinstance(entry, dict)}


def fmt(value, pattern='%.2f'):
    return '-' if value is None else pattern % value


def change(now, then):
    """'+12%' / '-30%' of now against then, or '-'."""
    if now is None or not then:
        return '-'
    return '%+.0f%%' % ((now - then) / then * 100)


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def spread(values, fmt='%.2f'):
    """'median (min-max)' of a list."""
    values = [v for v in values if v is not None]
    if not values:
        return '-'
    if len(values) == 1:
        return fmt % values[0]
    return '%s (%s-%s)' % (fmt % statistics.median(values), fmt % min(values), fmt % max(values))


def verdict(ok):
    return 'met' if ok else 'MISSED'


def table(header, rows):
    lines = ['| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header)]
    lines += ['| ' + ' | '.join(str(cell) for cell in row) + ' |' for row in rows]
    return lines


def _command(*argv):
    try:
        result = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    except OSError:
        return None
    return result.stdout.strip().splitlines()[0] if result.returncode == 0 and result.stdout.strip() else None


def machine():
    model = None
    try:
        for line in Path('/proc/cpuinfo').read_text().splitlines():
            if line.startswith('model name'):
                model = line.split(':', 1)[1].strip()
                break
    except OSError:
        pass
    ram_gib = None
    try:
        for line in Path('/proc/meminfo').read_text().splitlines():
            if line.startswith('MemTotal:'):
                ram_gib = round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    return {'cpu': model or platform.processor() or 'unknown', 'cores': os.cpu_count(), 'ram_gib': ram_gib,
            'kernel': platform.release(), 'os': _command('sh', '-c', '. /etc/os-release && echo "$PRETTY_NAME"')}


def versions(vm, containers):
    try:
        from ansible.release import __version__ as ansible_core
    except ImportError:
        ansible_core = None
    # The VM part's own label (the QEMU its guests ran on); the system's QEMU may be another one.
    qemu = (vm or {}).get('qemu')
    podman = (containers or {}).get('podman') or _command('podman', '--version')
    return {'python': platform.python_version(), 'ansible-core': ansible_core, 'qemu': qemu, 'podman': podman}


# -- sections ------------------------------------------------------------------

def reboots_section(vm, stamp, results, record):
    lines = ['## 1. Reboots and time from a fresh VM to the end state (the guide\'s feature set)', '']
    if not vm or not vm.get('fresh'):
        lines += ['Not measured (bench/out/vm.json missing or empty).', '']
        return lines
    lines += ['A fresh QEMU guest (flavour %s, Debian %s, kernel %s, %s, %s) per tool, e1000e %s to free by ID, its '
              'driver blacklisted; the role with `pcie_passthrough_devices: [%s]` and '
              '`pcie_passthrough_blacklist_drivers: [e1000e]`, the peers with bench/peers/vars/vm_intel.yml. '
              'A oneshot unit logs /proc/sys/kernel/random/boot_id at every boot; reboots = distinct boot ids - 1 '
              '(the guest\'s own record, cross-checked with `journalctl --list-boots`). End state read raw from the '
              'guest: /proc/cmdline, the device\'s driver link, /sys/kernel/iommu_groups. The role\'s seconds '
              'include its verification of the live state after the reboot; the peers verify nothing. Remote '
              'calls: see section 2. Measured %s.'
              % (vm.get('flavour'), vm.get('suite', '-'), vm.get('kernel'), vm.get('qemu') or 'QEMU -',
                 vm.get('accel', ''), vm.get('device', ''), vm.get('device', ''), stamp), '']
    lines += ['Note: %s' % note for note in vm.get('notes', [])] + ([''] if vm.get('notes') else [])
    rows = []
    old = {'role': (record.get('reboots_role'), None), 'guide_literal': (record.get('reboots_guide'), None),
           'guide_handlers': (record.get('reboots_handlers'), None)}
    # The record's results.json did not keep first-run seconds: these are its results.md's (section 1).
    old_seconds = record.get('first_run_seconds') or RECORD_FIRST_RUN
    for tool in ('role', 'guide_literal', 'guide_handlers'):
        fresh = vm['fresh'].get(tool)
        then = '%s / %s' % (fmt(old_seconds.get(tool), '%.0f'), fmt(old[tool][0], '%d'))
        if not fresh:
            rows.append([tool, '-', '-', '-', '-', '-', '-', '-', then, vm.get('errors', {}).get(tool, 'not run')])
            continue
        rows.append([tool, fresh['reboots'], '%.0f' % fresh['seconds'], fmt(fresh.get('tasks'), '%d'),
                     fmt(fresh.get('remote_calls'), '%d'), fresh['driver_after'], fresh['iommu_groups_after'],
                     fresh.get('load_at_start', '-'), then,
                     ('reached' if fresh.get('end_state_ok') else 'NOT reached') + ('' if fresh.get('rc', 0) == 0
                                                                                    else ' (rc %d)' % fresh['rc'])])
    lines += table(['tool', 'reboots', 'seconds', 'tasks', 'remote calls', 'driver after', 'IOMMU groups',
                    'load at start', 'record s / reboots (%s)' % record_label(record), 'end state'], rows)
    role = vm['fresh'].get('role')
    handlers = vm['fresh'].get('guide_handlers')
    peers = [vm['fresh'][t]['reboots'] for t in ('guide_literal', 'guide_handlers') if t in vm['fresh']]
    if role:
        ok = role.get('end_state_ok') and role['reboots'] == 1 and all(role['reboots'] <= p for p in peers)
        lines += ['', 'Goal: the role reaches the end state with one reboot, no more than either peer: **%s**.'
                  % verdict(ok)]
        results['goals']['reboots'] = bool(ok)
    if role and handlers and role.get('rc') == 0 and handlers.get('rc') == 0:
        ratio = role['seconds'] / handlers['seconds']
        ok = bool(role.get('end_state_ok')) and role['seconds'] <= handlers['seconds']
        lines += ['Goal: the role\'s first run, verified, no slower than guide_handlers\': %.0f s against %.0f s '
                  '(%.2fx): **%s**.' % (role['seconds'], handlers['seconds'], ratio, verdict(ok))]
        results['goals']['first_run'] = ok
    lines.append('')
    results['reboots_role'] = (vm['fresh'].get('role') or {}).get('reboots')
    results['reboots_guide'] = (vm['fresh'].get('guide_literal') or {}).get('reboots')
    results['reboots_handlers'] = (vm['fresh'].get('guide_handlers') or {}).get('reboots')
    results['first_run_seconds'] = {tool: entry['seconds'] for tool, entry in vm['fresh'].items()}
    results['first_run_calls'] = {tool: entry.get('remote_calls') for tool, entry in vm['fresh'].items()}
    return lines


def record_label(record):
    return (record.get('date') or 'no record')[:10]


def calls_table(per_task):
    """Per task: remote calls and what they were, in run order."""
    rows = [[task, calls, ', '.join('%s x%d' % (kind, n) if n > 1 else kind for kind, n in sorted(kinds.items()))]
            for task, calls, kinds in per_task]
    return table(['task', 'remote calls', 'what'], rows)


def _noop_rows(noop, calls=False, tools=('role', 'guide_handlers')):
    rows = []
    for tool in tools:
        entry = noop.get(tool)
        if not entry:
            rows.append([tool] + ['-'] * (8 if calls else 6))
            continue
        verified = entry.get('verified')
        row = [tool, spread(entry['seconds']), spread(entry['tasks'], '%d'), spread(entry['changed'], '%d'),
               spread(entry['skipped'], '%d'), entry.get('reboots', '-'),
               ('%d/%d' % (sum(verified), len(verified))) if verified else ('no' if tool != 'role' else '-')]
        if calls:
            row += [spread(entry.get('remote_calls') or [], '%d'), ' / '.join(entry.get('load_at_start') or []) or '-']
        rows.append(row)
    return rows


def _noop_goal(noop, label, results, key):
    role, peer = noop.get('role'), noop.get('guide_handlers')
    if not role or not peer:
        return []
    goal = NOOP_GOALS[key]
    # Rounded once: results.json and the record comparison print this same figure.
    ratio = round(median(role['seconds']) / median(peer['seconds']), 3)
    ok = ratio <= goal and not any(role['changed']) and not role.get('reboots')
    results['goals'][key] = bool(ok)
    results['%s_ratio' % key] = ratio
    return ['', 'Role / guide_handlers (medians, %s): **%.2fx**; goal <= %.2fx with 0 changed and 0 reboots: **%s**.'
            % (label, ratio, goal, verdict(ok))]


def noop_section(vm, vm_stamp, containers, c_stamp, results, record):
    lines = ['## 2. A second, already-converged run', '',
             'The same target converged first, then the converged run repeated; wall time of the whole '
             '`ansible-playbook` process, tasks = ok + failed from the PLAY RECAP (skipped counted apart). '
             'The role also judges the live state (verify); guide_handlers checks nothing after its edits.', '']
    header = ['tool', 'seconds median (min-max)', 'tasks', 'changed', 'skipped', 'reboots', 'verified']
    if vm and vm.get('noop'):
        lines += ['### VM, the guide\'s feature set (%d runs each, measured %s)' % (vm.get('noop_runs', 0), vm_stamp),
                  '', 'Each tool on the guest its own first run converged (section 1), same image, same QEMU (%s). '
                  'Remote calls: %s' % (vm.get('qemu') or '-', ' '.join((vm.get('remote_calls_method') or
                                                                         'not counted.').split())), '']
        lines += table(header + ['remote calls', 'load at start'], _noop_rows(vm['noop'], calls=True))
        lines += _noop_goal(vm['noop'], 'VM', results, 'noop_vm')
        old_role, old_peer = record.get('noop_vm_seconds_role'), record.get('noop_vm_seconds_guide')
        if old_role and old_peer:
            lines += ['The record (%s, QEMU 7.2, Debian 12 guest): role %.2f s, %s tasks; guide_handlers %.2f s, %s '
                      'tasks; %.2fx. Remote calls were not counted then.'
                      % (record_label(record), old_role, record.get('noop_vm_tasks_role'), old_peer,
                         record.get('noop_vm_tasks_guide'), old_role / old_peer)]
        for tool in ('role', 'guide_handlers'):
            per_task = (vm['noop'].get(tool) or {}).get('calls_per_task')
            if per_task:
                lines += ['', '%s, converged run, remote calls per task:' % tool, '']
                lines += calls_table(per_task)
        lines.append('')
    else:
        lines += ['### VM', '', 'Not measured (bench/out/vm.json missing or without converged runs).', '']
    if containers and containers.get('noop'):
        lines += ['### Containers (%d runs each, interleaved, measured %s)' % (containers.get('runs', 0), c_stamp), '',
                  'podman containers as the molecule scenarios make them (canned intel_gpu_host_unconfigured '
                  'fake root, GPU + HDMI audio to vfio-pci); the reboot is simulated by giving the fake root the '
                  'kernel line /etc/default/grub now holds and the devices on vfio-pci, so the role\'s run is '
                  'converged and verifies.', '']
        lines += table(header, _noop_rows(containers['noop']))
        lines += _noop_goal(containers['noop'], 'containers', results, 'noop_containers')
        lines.append('')
    else:
        lines += ['### Containers', '', 'Not measured (bench/out/containers.json missing).', '']
    for source, data in (('containers', containers), ('vm', vm)):
        noop = (data or {}).get('noop') or {}
        for tool, name in (('role', 'role'), ('guide_handlers', 'guide')):
            if tool in noop:
                results['noop_%s_seconds_%s' % (source, name)] = median(noop[tool]['seconds'])
                results['noop_%s_tasks_%s' % (source, name)] = median(noop[tool]['tasks'])
                if noop[tool].get('remote_calls'):
                    results['noop_%s_calls_%s' % (source, name)] = median(noop[tool]['remote_calls'])
    # The headline figures: the VM when it was measured, else the containers.
    source = 'vm' if (vm or {}).get('noop', {}).get('role') else 'containers'
    results['noop_source'] = source
    for name in ('role', 'guide'):
        results['noop_seconds_%s' % name] = results.get('noop_%s_seconds_%s' % (source, name))
        results['noop_tasks_%s' % name] = results.get('noop_%s_tasks_%s' % (source, name))
    return lines


# Remote calls of a converged run that facts already read could not decide: why each stays (issue 26).
CALL_NOTES = [
    'Cut: the real `sriov_vfs` call runs only when its dry run (preflight) left a file or a VF change owed '
    '(filter `passthrough_sriov_due`); a converged host skips it.',
    'Cut: `/etc/pve/corosync.conf` is read (stat, then cluster_leave_info) only on a host that may reboot in '
    'this run; a converged host cannot, and a host that cannot reboot never conflicts in a batch.',
    'Kept: the `sriov_vfs` dry run, also with no SR-IOV asked: it removes the role\'s rules file and script '
    'when the request is dropped, and whether they exist is in no fact read before (they are not initramfs '
    'inputs, so the VFIO dry run\'s `present` list does not see them); skipping it would leave a stale '
    'udev rule that creates VFs at every boot.',
    'Kept: `host_tuning_facts` (asked for hugepages or isolated CPUs only): the live hugepage pools and '
    'isolated CPUs are what verify judges; iommu_facts does not read them, and folding them into it '
    'changes its result (golden files) and its speed (issue 26\'s facts goal).',
    'Kept: the dry runs of `kernel_cmdline`, `vfio_modules`, `driver_blacklist` and `vfio_address_binding`: '
    'each reads the files it owns (/etc/default/grub or /etc/kernel/cmdline, modprobe.d, the initramfs '
    'inputs\' times) which no fact holds; they are the refusals before the first write and the source of '
    '"nothing to write". Merging them into one module call would save up to three calls but makes one module '
    'of four; not safe to do in this change.',
]


def all_section(vm, stamp, results):
    lines = ['## 3. Every feature on (VM)', '']
    entry = (vm or {}).get('all')
    if not entry or not entry.get('fresh'):
        error = ((vm or {}).get('errors') or {}).get('all')
        lines += ['Not measured (%s).' % ('error: %s' % error if error else 'no `all` part in bench/out/vm.json'), '']
        return lines
    fresh, request = entry['fresh'], entry.get('request', {})
    features = fresh.get('features', {})
    sriov = (request.get('pcie_passthrough_sriov') or [{}])[0]
    lines += ['One fresh guest (same image and QEMU as section 1) with one e1000e and two identical igb PFs. The role '
              'asks: the e1000e by ID (`pcie_passthrough_vfio_ids`), PF %s by address (`pcie_passthrough_devices`; '
              'its twin shares its ID), %s SR-IOV VFs on PF %s (VF %s to vfio-pci, the rest kept by igbvf), '
              '%s hugepages of %s and isolated CPU %s, e1000e blacklisted. Measured %s.'
              % (features.get('pf_address', '-'), sriov.get('vfs', '-'), features.get('pf_sriov', '-'),
                 ', '.join(str(i) for i in sriov.get('vfio', [])),
                 (request.get('pcie_passthrough_hugepages') or {}).get('count', '-'),
                 (request.get('pcie_passthrough_hugepages') or {}).get('size', '-'),
                 request.get('pcie_passthrough_isolated_cpus', '-'), stamp), '']
    lines += table(['first run', 'reboots', 'seconds', 'tasks', 'remote calls', 'load at start', 'end state'],
                   [['role', fresh['reboots'], '%.0f' % fresh['seconds'], fmt(fresh.get('tasks'), '%d'),
                     fmt(fresh.get('remote_calls'), '%d'), fresh.get('load_at_start', '-'),
                     ('every feature live' if fresh.get('end_state_ok') else 'NOT reached')
                     + ('' if fresh.get('rc', 0) == 0 else ' (rc %d)' % fresh['rc'])]])
    lines += ['', 'Read raw after the run: e1000e on %s; PF %s on %s; PF %s on %s with VFs on %s; nr_hugepages %s; '
              'isolated CPUs %s; /proc/cmdline `%s`.'
              % (fresh.get('driver_after'), features.get('pf_address'), features.get('pf_address_driver'),
                 features.get('pf_sriov'), features.get('pf_sriov_driver'), ', '.join(features.get('vf_drivers', [])),
                 features.get('nr_hugepages'), features.get('isolated_cpus') or '(none)', fresh.get('cmdline_after'))]
    ok = bool(fresh.get('end_state_ok')) and fresh['reboots'] == 1 and fresh.get('rc') == 0
    results['goals']['all_reboots'] = ok
    lines += ['Goal: exactly one reboot with every feature live: %d reboot(s): **%s**.' % (fresh['reboots'], verdict(ok))]
    results['all_first_run'] = {'seconds': fresh['seconds'], 'reboots': fresh['reboots'],
                                'remote_calls': fresh.get('remote_calls'), 'tasks': fresh.get('tasks')}
    noop = entry.get('noop')
    if noop:
        lines += ['', '### Converged runs with every feature (%d runs)' % len(noop['seconds']), '']
        lines += table(['tool', 'seconds median (min-max)', 'tasks', 'changed', 'skipped', 'reboots', 'verified',
                        'remote calls', 'load at start'], _noop_rows({'role': noop}, calls=True, tools=('role',)))
        ok = not any(noop['changed']) and not noop.get('reboots') and all(noop['verified']) and not any(noop['rc'])
        results['goals']['all_noop'] = ok
        lines += ['', 'Goal: 0 changed, 0 reboots, verified: **%s**.' % verdict(ok)]
        results['all_noop'] = {'seconds': median(noop['seconds']), 'tasks': median(noop['tasks']),
                               'remote_calls': median(noop.get('remote_calls') or [])}
        if noop.get('calls_per_task'):
            lines += ['', 'Remote calls per task, converged run:', ''] + calls_table(noop['calls_per_task'])
    lines += ['', 'Remote calls a converged host makes, feature by feature:', ''] + ['- %s' % n for n in CALL_NOTES]
    lines.append('')
    return lines


def facts_section(facts, stamp, results):
    lines = ['## 4. iommu_facts on synthetic sysfs trees', '']
    if not facts:
        lines += ['Not measured (bench/out/facts.json missing).', '']
        return lines
    lines += ['Trees from tests/unit/sysfs_builder.py `generated_host` laid out like the kernel\'s (devices under '
              '/sys/devices/pci0000:00/<root port>/, relative links in /sys/bus/pci/devices, iommu_group and driver '
              'links, a NIC per device). Each run is a fresh `python -m` of the module with a JSON args file; wall '
              'time around the child, peak RSS from its rusage (wait4); %d runs per size, sizes interleaved. '
              'Gathering = median(size) - median(empty tree, same run). Measured %s.' % (facts['runs'], stamp), '']
    sizes = facts['sizes']
    base = median(sizes['0']['wall_ms'])
    rows, gathering = [], {}
    for size in sorted(sizes, key=int):
        entry = sizes[size]
        cost = median(entry['wall_ms']) - base
        per_k = '%.0f' % (cost / int(size) * 1000) if int(size) else '-'
        cpu = spread(entry['cpu_ms'], '%.0f') if entry.get('cpu_ms') else '-'
        split = facts.get('breakdown', {}).get(size)
        rows.append([size, spread(entry['wall_ms'], '%.0f'), cpu, '%.0f' % cost if int(size) else '(baseline)',
                     per_k, '%.0f + %.0f' % (split['read_ms'], split['result_ms']) if split else '-',
                     spread([kb / 1024 for kb in entry['peak_rss_kb']], '%.1f')])
        if int(size):
            gathering[size] = round(cost, 1)
    lines += table(['devices', 'module wall ms', 'CPU ms', 'gathering ms', 'ms per 1,000 devices',
                    'read + result ms', 'peak RSS MiB'], rows)
    if facts.get('breakdown'):
        lines += ['', '"read + result": the same work in one process, best of 3: reading the tree '
                  '(gather_iommu_facts, read_net_interfaces), then what AnsibleModule.exit_json does with the result '
                  '(remove_values over all of it and the module JSON encoder), which grows with the result\'s size.']
    results['facts_ms'] = gathering
    record_date, record = load_record()
    lines += ['', 'Against the record of %s (%s): %s.'
              % (record_date or 'no date', RECORD_NAME, '; '.join(compare_all(gathering, record)))]
    if FACTS_GOAL_SIZE in gathering:
        ok = gathering[FACTS_GOAL_SIZE] <= FACTS_GOAL_MS
        results['goals']['facts'] = ok
        per_k = {s: gathering[s] / int(s) * 1000 for s in gathering}
        growth = max(per_k.values()) / min(per_k.values()) if min(per_k.values()) > 0 else None
        lines += ['', 'Goal: gathering <= %.0f ms at 1,000 devices: %.0f ms, **%s**.'
                  % (FACTS_GOAL_MS, gathering[FACTS_GOAL_SIZE], verdict(ok)),
                  'Growth: %s ms per 1,000 devices at %s devices%s.'
                  % (', '.join('%.0f' % per_k[s] for s in sorted(per_k, key=int)),
                     ', '.join(sorted(per_k, key=int)),
                     ' (largest / smallest %.2f: linear when close to 1)' % growth if growth else '')]
    lines.append('')
    return lines


def fleet_plot(fleet, path, record=None):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    sizes = sorted(fleet, key=int)
    hosts = [int(s) for s in sizes]
    medians = [median(fleet[s]['seconds']) for s in sizes]
    low = [m - min(fleet[s]['seconds']) for m, s in zip(medians, sizes)]
    high = [max(fleet[s]['seconds']) - m for m, s in zip(medians, sizes)]
    figure, axes = plt.subplots(figsize=(6, 3.6), dpi=110)
    axes.errorbar(hosts, medians, yerr=[low, high], marker='o', capsize=4, label='converged run (median, min-max)')
    axes.plot(hosts, [medians[0] * h for h in hosts], linestyle=':', color='grey', label='one host after another')
    old = (record or {}).get('fleet_seconds') or {}
    if old:
        sizes_old = sorted(old, key=int)
        axes.plot([int(x) for x in sizes_old], [old[x] for x in sizes_old], marker='s', linestyle='--', alpha=0.6,
                  label='record %s' % record_label(record))
    axes.set_xlabel('container hosts (forks = serial = hosts)')
    axes.set_ylabel('wall seconds')
    axes.set_xticks(hosts)
    axes.set_ylim(bottom=0)
    axes.set_title('vfio.passthrough: converged run across a fleet')
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


def fleet_section(containers, stamp, results, record):
    lines = ['## 5. A fleet of container hosts', '']
    fleet = (containers or {}).get('fleet') or {}
    if not any(entry.get('seconds') for entry in fleet.values()):
        lines += ['Not measured (no fleet runs in bench/out/containers.json).', '']
        return lines
    lines += ['1, 4 and 8 containers converged by the role, then the converged run timed with forks and '
              '`pcie_passthrough_serial` = host count (the playbook\'s default serial 1 would run them one after '
              'another); %d runs per size, sizes interleaved. Measured %s.' % (containers.get('fleet_runs', 0), stamp),
              '']
    rows = []
    one = median(fleet[min(fleet, key=int)]['seconds'])
    for size in sorted(fleet, key=int):
        entry = fleet[size]
        rows.append([size, spread(entry['seconds']), '%.2f' % (median(entry['seconds']) / one),
                     spread(entry['changed'], '%d')])
    lines += table(['hosts', 'seconds median (min-max)', 'x one host', 'changed'], rows)
    results['fleet_seconds'] = {size: median(entry['seconds']) for size, entry in fleet.items()}
    results['goals']['fleet_changed_0'] = not any(any(entry['changed']) for entry in fleet.values())
    fleet_plot(fleet, FLEET_PNG, record)
    lines += ['', '![converged run time against fleet size](fleet.png)', '']
    return lines


def record_rows(results, record):
    """[label, unit, record, now] for every figure both have."""
    rows = []
    first_now, first_then = results.get('first_run_seconds') or {}, record.get('first_run_seconds') or RECORD_FIRST_RUN
    for tool in ('role', 'guide_handlers', 'guide_literal'):
        rows.append(['VM first run, %s' % tool, 's', first_then.get(tool), first_now.get(tool)])
    for source in ('vm', 'containers'):
        for name, tool in (('role', 'role'), ('guide', 'guide_handlers')):
            key = 'noop_%s_seconds_%s' % (source, name)
            rows.append(['%s converged run, %s' % ('VM' if source == 'vm' else 'containers', tool), 's',
                         record.get(key), results.get(key)])
        key = 'noop_%s_tasks_role' % source
        rows.append(['%s converged run, role tasks' % ('VM' if source == 'vm' else 'containers'), 'tasks',
                     record.get(key), results.get(key)])
    rows.append(['VM converged run, role remote calls', 'calls', record.get('noop_vm_calls_role'),
                 results.get('noop_vm_calls_role')])
    for size in ('100', '1000', '5000'):
        rows.append(['iommu_facts gathering, %s devices' % size, 'ms', (record.get('facts_ms') or {}).get(size),
                     (results.get('facts_ms') or {}).get(size)])
    for size in ('1', '4', '8'):
        rows.append(['fleet of %s, converged run' % size, 's', (record.get('fleet_seconds') or {}).get(size),
                     (results.get('fleet_seconds') or {}).get(size)])
    return [row for row in rows if row[2] is not None or row[3] is not None]


def record_section(results, record):
    lines = ['## Against the results of record', '']
    if not record:
        return lines + ['No record (%s missing).' % RECORD_NAME, '']
    mv, rv = record.get('machine') or {}, record.get('versions') or {}
    lines += ['The record: %s, %s %s cores, Python %s, ansible-core %s, %s (VM guests Debian 12, kernel 6.1). '
              'Figures differ in more than the code: this run\'s VM guests are Debian 13 on QEMU 10 (see the '
              'header), so a VM change mixes the role\'s change with the guest\'s and QEMU\'s; the ratio to '
              'guide_handlers, measured on the same guest and QEMU, is the like-for-like comparison. '
              'Plot: record.png.' % (record.get('date'), mv.get('cpu'), mv.get('cores'), rv.get('python'),
                                     rv.get('ansible-core'), rv.get('qemu')), '']
    rows = [[label, unit, fmt(then, '%.2f' if unit == 's' else '%.0f'), fmt(now, '%.2f' if unit == 's' else '%.0f'),
             change(now, then)] for label, unit, then, now in record_rows(results, record)]
    lines += table(['figure', 'unit', 'record %s' % record_label(record), 'now', 'change'], rows)
    for key, label in (('noop_vm', 'VM converged, role / guide_handlers'),):
        old_ratio = (record.get('noop_vm_seconds_role') or 0) / (record.get('noop_vm_seconds_guide') or 1)
        if results.get('%s_ratio' % key) is not None:
            lines += ['', '%s: record %.2fx, now %.2fx.' % (label, old_ratio, results['%s_ratio' % key])]
    lines.append('')
    return lines


def qemu_short(label):
    """'QEMU 10.0.2' from `qemu-system-x86_64 --version`'s first line."""
    match = re.search(r'version (\S+)', label or '')
    return 'QEMU %s' % match.group(1) if match else 'QEMU ?'


def record_plot(results, record, path):
    """Bars, record against now, for every figure both have (one panel per unit)."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    rows = [row for row in record_rows(results, record) if row[2] is not None and row[3] is not None]
    units = [u for u in ('s', 'ms', 'tasks', 'calls') if any(row[1] == u for row in rows)]
    if not units:
        return False
    counts = [sum(1 for row in rows if row[1] == unit) for unit in units]
    figure, panels = plt.subplots(len(units), 1, figsize=(8, 1.6 + 0.6 * len(rows) + 0.5 * len(units)), dpi=100,
                                  squeeze=False, gridspec_kw={'height_ratios': counts})
    for axes, unit in zip(panels[:, 0], units):
        mine = [row for row in rows if row[1] == unit]
        ys = list(range(len(mine)))
        axes.barh([y + 0.2 for y in ys], [row[2] for row in mine], height=0.4, color='#bbbbbb',
                  label='record %s (%s)' % (record_label(record), qemu_short((record.get('versions') or {}).get('qemu'))))
        axes.barh([y - 0.2 for y in ys], [row[3] for row in mine], height=0.4, color='#3b75af',
                  label='now %s (%s)' % (results['date'][:10], qemu_short((results.get('versions') or {}).get('qemu'))))
        axes.set_yticks(ys)
        axes.set_yticklabels([row[0] for row in mine], fontsize=7)
        axes.invert_yaxis()
        axes.set_xlabel(unit)
        axes.grid(axis='x', alpha=0.3)
        axes.legend(fontsize=6, loc='lower right')
    panels[0, 0].set_title('vfio.passthrough bench: the record against this run')
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
    return True


def main():
    vm, vm_stamp = load('vm')
    containers, c_stamp = load('containers')
    facts, f_stamp = load('facts')
    now = datetime.datetime.now(datetime.timezone.utc)
    results = {'date': now.strftime('%Y-%m-%dT%H:%M:%SZ'), 'machine': machine(),
               'versions': versions(vm, containers), 'goals': {}}
    results.update({'reboots_role': None, 'reboots_guide': None, 'reboots_handlers': None,
                    'noop_seconds_role': None, 'noop_seconds_guide': None, 'noop_tasks_role': None,
                    'noop_tasks_guide': None, 'facts_ms': {}, 'fleet_seconds': {}})
    record = read_record()
    loads = part_loads()
    results['loads'] = dict(loads, **{'vm %s' % k: v for k, v in ((vm or {}).get('loads') or {}).items()})
    results['record'] = RECORD_NAME if record else None
    body = []
    body += reboots_section(vm, vm_stamp, results, record)
    body += noop_section(vm, vm_stamp, containers, c_stamp, results, record)
    body += all_section(vm, vm_stamp, results)
    body += facts_section(facts, f_stamp, results)
    body += fleet_section(containers, c_stamp, results, record)
    body += record_section(results, record)
    if record and record_plot(results, record, RECORD_PNG):
        body += ['![the record against this run](record.png)', '']

    m, v = results['machine'], results['versions']
    head = ['# vfio.passthrough benchmark', '',
            'This role against what a Proxmox admin writes instead (bench/peers/: `guide_literal`, the guide\'s '
            'steps as typed; `guide_handlers`, the same edits as an idempotent playbook). `make bench` produced '
            'this file; the figures are medians with min-max.', '',
            '- Date: %s' % results['date'],
            '- Machine: %s, %s cores, %s GiB RAM, kernel %s%s' % (m['cpu'], m['cores'], m['ram_gib'], m['kernel'],
                                                                  ', %s' % m['os'] if m['os'] else ''),
            '- Versions: Python %s, ansible-core %s, %s (every VM guest, role and guides alike), %s'
            % (v['python'], v['ansible-core'], v['qemu'] or 'QEMU - (VM part not run)', v['podman'] or 'podman -'),
            '- Load average (1, 5, 15 min) at the start of each part: %s'
            % ('; '.join('%s %s' % (part, loads[part]) for part in ('facts', 'containers', 'vm') if loads.get(part))
               or 'not recorded (run through bench/run.py)'),
            '- Record compared with: %s (%s)' % (RECORD_NAME if record else 'none',
                                                 record.get('date', '-') if record else '-'), '']
    goals = results['goals']
    if goals:
        head += table(['goal', 'result'], [[GOALS.get(name, name), verdict(ok)] for name, ok in goals.items()]) + ['']
    text = '\n'.join(head + body).rstrip() + '\n'
    RESULTS_MD.write_text(text)
    RESULTS_JSON.write_text(json.dumps(results, indent=1, sort_keys=True) + '\n')
    print(text)
    print('wrote %s, %s%s' % (RESULTS_MD.relative_to(ROOT), RESULTS_JSON.relative_to(ROOT),
                              ', %s' % FLEET_PNG.relative_to(ROOT) if results['fleet_seconds'] else ''))
    return 0


if __name__ == '__main__':
    sys.exit(main())
