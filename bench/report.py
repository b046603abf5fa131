"""Read bench/out/*.json, print the tables, write bench/results.md, bench/results.json and bench/fleet.png.

    python bench/report.py

A part whose JSON is missing is reported as not measured; nothing here
measures anything, so the report can be rebuilt from the same outputs.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
from pathlib import Path

from facts_record import compare_all, load_record

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
OUT = HERE / 'out'
RESULTS_MD = HERE / 'results.md'
RESULTS_JSON = HERE / 'results.json'
FLEET_PNG = HERE / 'fleet.png'

NOOP_GOAL = 0.5          # role / guide_handlers wall time of a converged run
GOALS = {
    'reboots': 'VM, fresh to end state: the role reboots once, no more than either peer',
    'noop_vm': 'VM, converged run: role <= 0.5x guide_handlers, 0 changed, 0 reboots',
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
    qemu = (vm or {}).get('qemu') or _command('qemu-system-x86_64', '--version')
    podman = (containers or {}).get('podman') or _command('podman', '--version')
    return {'python': platform.python_version(), 'ansible-core': ansible_core, 'qemu': qemu, 'podman': podman}


# -- sections ------------------------------------------------------------------

def reboots_section(vm, stamp, results):
    lines = ['## 1. Reboots from a fresh VM to the end state', '']
    if not vm or not vm.get('fresh'):
        lines += ['Not measured (bench/out/vm.json missing or empty).', '']
        return lines
    lines += ['A fresh QEMU guest (flavour %s, kernel %s, %s) per tool, e1000e %s to free. A oneshot unit logs '
              '/proc/sys/kernel/random/boot_id at every boot; reboots = distinct boot ids - 1 (the guest\'s own '
              'record, cross-checked with `journalctl --list-boots`). End state read raw from the guest: '
              '/proc/cmdline, the device\'s driver link, /sys/kernel/iommu_groups. Measured %s.'
              % (vm.get('flavour'), vm.get('kernel'), vm.get('accel', ''), vm.get('device', ''), stamp), '']
    lines += ['Note: %s' % note for note in vm.get('notes', [])] + ([''] if vm.get('notes') else [])
    rows = []
    for tool in ('role', 'guide_literal', 'guide_handlers'):
        fresh = vm['fresh'].get(tool)
        if not fresh:
            rows.append([tool, '-', '-', '-', '-', vm.get('errors', {}).get(tool, 'not run')])
            continue
        rows.append([tool, fresh['reboots'], '%.0f' % fresh['seconds'], fresh['driver_after'],
                     fresh['iommu_groups_after'],
                     ('reached' if fresh.get('end_state_ok') else 'NOT reached') + ('' if fresh.get('rc', 0) == 0
                                                                                    else ' (rc %d)' % fresh['rc'])])
    lines += table(['tool', 'reboots', 'seconds', 'driver after', 'IOMMU groups', 'end state'], rows)
    role = vm['fresh'].get('role')
    peers = [vm['fresh'][t]['reboots'] for t in ('guide_literal', 'guide_handlers') if t in vm['fresh']]
    if role:
        ok = role.get('end_state_ok') and role['reboots'] == 1 and all(role['reboots'] <= p for p in peers)
        lines += ['', 'Goal: the role reaches the end state with one reboot, no more than either peer: **%s**.'
                  % verdict(ok)]
        results['goals']['reboots'] = bool(ok)
    lines.append('')
    results['reboots_role'] = (vm['fresh'].get('role') or {}).get('reboots')
    results['reboots_guide'] = (vm['fresh'].get('guide_literal') or {}).get('reboots')
    results['reboots_handlers'] = (vm['fresh'].get('guide_handlers') or {}).get('reboots')
    return lines


def _noop_rows(noop):
    rows = []
    for tool in ('role', 'guide_handlers'):
        entry = noop.get(tool)
        if not entry:
            rows.append([tool, '-', '-', '-', '-', '-', '-'])
            continue
        verified = entry.get('verified')
        rows.append([tool, spread(entry['seconds']), spread(entry['tasks'], '%d'), spread(entry['changed'], '%d'),
                     spread(entry['skipped'], '%d'), entry.get('reboots', '-'),
                     ('%d/%d' % (sum(verified), len(verified))) if verified else ('no' if tool != 'role' else '-')])
    return rows


def _noop_goal(noop, label, results, key):
    role, peer = noop.get('role'), noop.get('guide_handlers')
    if not role or not peer:
        return []
    ratio = median(role['seconds']) / median(peer['seconds'])
    ok = ratio <= NOOP_GOAL and not any(role['changed']) and not role.get('reboots')
    results['goals'][key] = bool(ok)
    return ['', 'Role / guide_handlers (medians, %s): **%.2fx**; goal <= %.1fx with 0 changed and 0 reboots: **%s**.'
            % (label, ratio, NOOP_GOAL, verdict(ok))]


def noop_section(vm, vm_stamp, containers, c_stamp, results):
    lines = ['## 2. A second, already-converged run', '',
             'The same target converged first, then the converged run repeated; wall time of the whole '
             '`ansible-playbook` process, tasks = ok + failed from the PLAY RECAP (skipped counted apart). '
             'The role also judges the live state (verify); guide_handlers checks nothing after its edits.', '']
    header = ['tool', 'seconds median (min-max)', 'tasks', 'changed', 'skipped', 'reboots', 'verified']
    if vm and vm.get('noop'):
        lines += ['### VM (%d runs each, measured %s)' % (vm.get('noop_runs', 0), vm_stamp), '']
        lines += table(header, _noop_rows(vm['noop']))
        lines += _noop_goal(vm['noop'], 'VM', results, 'noop_vm')
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
    # The headline figures: the VM when it was measured, else the containers.
    source = 'vm' if (vm or {}).get('noop', {}).get('role') else 'containers'
    results['noop_source'] = source
    for name in ('role', 'guide'):
        results['noop_seconds_%s' % name] = results.get('noop_%s_seconds_%s' % (source, name))
        results['noop_tasks_%s' % name] = results.get('noop_%s_tasks_%s' % (source, name))
    return lines


def facts_section(facts, stamp, results):
    lines = ['## 3. iommu_facts on synthetic sysfs trees', '']
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
    # results.json is still the previous record here: main() writes this run's after the sections.
    record_date, record = load_record()
    lines += ['', 'Against the record of %s (bench/results.json): %s.'
              % (record_date or 'no date', '; '.join(compare_all(gathering, record)))]
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


def fleet_plot(fleet, path):
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


def fleet_section(containers, stamp, results):
    lines = ['## 4. A fleet of container hosts', '']
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
    fleet_plot(fleet, FLEET_PNG)
    lines += ['', '![converged run time against fleet size](fleet.png)', '']
    return lines


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
    body = []
    body += reboots_section(vm, vm_stamp, results)
    body += noop_section(vm, vm_stamp, containers, c_stamp, results)
    body += facts_section(facts, f_stamp, results)
    body += fleet_section(containers, c_stamp, results)

    m, v = results['machine'], results['versions']
    head = ['# vfio.passthrough benchmark', '',
            'This role against what a Proxmox admin writes instead (bench/peers/: `guide_literal`, the guide\'s '
            'steps as typed; `guide_handlers`, the same edits as an idempotent playbook). `make bench` produced '
            'this file; the figures are medians with min-max.', '',
            '- Date: %s' % results['date'],
            '- Machine: %s, %s cores, %s GiB RAM, kernel %s%s' % (m['cpu'], m['cores'], m['ram_gib'], m['kernel'],
                                                                  ', %s' % m['os'] if m['os'] else ''),
            '- Versions: Python %s, ansible-core %s, %s, %s' % (v['python'], v['ansible-core'], v['qemu'] or 'qemu -',
                                                                v['podman'] or 'podman -'), '']
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
