"""VM part of the benchmark: reboots from a fresh guest, converged (no-op) runs, remote calls.

Two parts, every guest on the same image (tests/vm, Debian 13 by default) and the same QEMU (10,
tests/vm/qemu10.sh: every guest gets igb NICs, so vmctl runs it with QEMU 10, used or not):

- ``like``: the guide's feature set (IOMMU arguments, VFIO modules, the e1000e by ID, its driver
  blacklisted). For each tool (the role, guide_literal, guide_handlers) a FRESH guest with one
  e1000e and one igb, one at a time (2 cores: never two guests at once); its first run to the end
  state, then (role, guide_handlers) converged runs on the same guest.
- ``all``: every feature the role has, reported on its own: the e1000e by ID, one of two identical
  igb PFs by address, SR-IOV VFs on the other (one to vfio-pci, one kept by igbvf), 2 MiB hugepages
  and an isolated CPU, the blacklist; one fresh guest, its first run, then converged runs.

Reboots are counted by the guest: a oneshot unit appends /proc/sys/kernel/random/boot_id to a log at
every boot (distinct boot ids - 1), cross-checked with the persistent journal's `--list-boots`. The end
state is read raw from the guest afterwards. Every run keeps profile_tasks' per-task seconds and its
remote calls (bench/_remote_calls.py: ssh/sftp/scp runs logged by a wrapper, attributed to tasks), so
a slow figure comes with where it went. The load average is recorded at the start of every run.

    python bench/vm_bench.py [--quick] [--parts like,all] [--tools role,guide_handlers] [--out bench/out/vm.json]

Writes bench/out/vm.json (read by bench/report.py) and full playbook logs and call logs in
bench/out/logs/. Prints progress on stderr and exits non-zero when a guest could not be used or the
role failed; a peer that misses the end state is recorded, not an error.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT / 'tests' / 'vm'))

import _ansible  # noqa: E402  (bench/ is not a package)
import _remote_calls  # noqa: E402
import vmctl  # noqa: E402  (tests/vm is not a package)

FLAVOUR = 'intel'
DEVICE = '0000:00:03.0'
DEVICE_ID = '8086:10d3'
HOST_DRIVER = 'e1000e'
# The emulated 82576 (QEMU 10's igb): PF and VF IDs, as tests/vm/scenarios/test_intel_twins.py uses them.
PF_ID, VF_ID = '8086:10c9', '8086:10ca'
GROUP = 'vfio_vms'
PARTS = ('like', 'all')
TOOLS = ('role', 'guide_literal', 'guide_handlers')
NOOP_TOOLS = ('role', 'guide_handlers')
# Every guest has this many igb PFs, so every guest runs on QEMU 10 (vmctl picks it for igb): the like
# for like part's tools all run on the same QEMU as the every-feature part. The like part leaves its igb alone.
LIKE_IGB, ALL_IGB = 1, 2
# The every-feature request (2 vCPUs, 1536 MiB guest): 128 pages of 2 MiB leave it 1 GiB and more, so the
# memory guard is lowered from its 4 GiB floor to 768 MiB, as in the VM scenario.
ALL_VFS, ALL_VF_VFIO = 2, [0]
ALL_TUNING = {'pcie_passthrough_hugepages': {'size': '2M', 'count': 128}, 'pcie_passthrough_isolated_cpus': '1',
              'pcie_passthrough_hugepages_host_reserve_mib': 768}
PLAYBOOKS = {
    'role': ROOT / 'playbooks' / 'passthrough.yml',
    'guide_literal': HERE / 'peers' / 'guide_literal.yml',
    'guide_handlers': HERE / 'peers' / 'guide_handlers.yml',
}
PEER_VARS = HERE / 'peers' / 'vars' / 'vm_intel.yml'
# One setting for all three tools, so SSH costs them the same. ServerAlive: across a guest
# reboot QEMU's user network can keep the host side of an SSH master open with nobody
# behind it, and ansible.builtin.reboot's boot_id probe then hangs on it for good (seen
# with guide_literal's second reboot); Ansible's default ssh_args plus keepalives.
ANSIBLE_ENV = {
    'ANSIBLE_PIPELINING': 'True',
    'ANSIBLE_SSH_ARGS': '-C -o ControlMaster=auto -o ControlPersist=60s -o ServerAliveInterval=5 '
                        '-o ServerAliveCountMax=3',
}
# Per-task seconds for every run, both tools alike (a timestamp per task on the controller):
# where a tool spends its time is part of the result.
PROFILE_ENV = {'ANSIBLE_CALLBACKS_ENABLED': 'ansible.posix.profile_tasks',
               'PROFILE_TASKS_TASK_OUTPUT_LIMIT': '100', 'PROFILE_TASKS_SUMMARY_ONLY': 'True'}
# profile_tasks' summary: "Role : Task name ------------ 1.23s".
_PROFILE_LINE = re.compile(r'^(?P<task>\S.*?) -{3,} (?P<seconds>\d+\.\d+)s$')
BOOT_LOG = '/var/log/bench-boot-ids'
BOOT_UNIT = """[Unit]
Description=Bench: log the id of every boot
After=local-fs.target

[Service]
Type=oneshot
ExecStart=/bin/sh -c 'cat /proc/sys/kernel/random/boot_id >> %s'

[Install]
WantedBy=multi-user.target
""" % BOOT_LOG


def say(message):
    print('[vm-bench] %s' % message, file=sys.stderr, flush=True)


class Guest:
    """A fresh bench guest and the raw reads the figures come from."""

    def __init__(self, vm):
        self.vm = vm

    def sh(self, command):
        result = self.vm.ssh(command, check=False, timeout=600)
        if result.returncode != 0:
            raise vmctl.VMError('%s: `%s` exited %d: %s%s'
                                % (self.vm.name, command, result.returncode, result.stdout, result.stderr))
        return result.stdout

    def install_boot_log(self):
        """Log every boot's id from now on (this boot included) and keep the journal on disk."""
        self.sh("cat > /etc/systemd/system/bench-boot-id.service <<'EOF'\n%sEOF\n"
                'systemctl daemon-reload && systemctl enable --now -q bench-boot-id.service' % BOOT_UNIT)
        # The image keeps the journal in /run; on disk it lists every later boot too.
        self.sh('mkdir -p /var/log/journal && systemd-tmpfiles --create --prefix /var/log/journal '
                '&& systemctl restart systemd-journald && journalctl --flush')

    def boot_ids(self):
        """Distinct boot ids in the order the guest logged them."""
        seen = []
        for line in self.sh('cat %s' % BOOT_LOG).split():
            if line not in seen:
                seen.append(line)
        return seen

    def boot_id(self):
        return self.sh('cat /proc/sys/kernel/random/boot_id').strip()

    def journal_boots(self):
        return len(self.sh('journalctl --list-boots --no-pager -q').strip().splitlines())

    def settle(self):
        # A just-booted guest under TCG is still starting units: measure only once it is idle.
        self.vm.ssh('systemctl is-system-running --wait', check=False, timeout=600)

    def state(self):
        link = self.sh('readlink /sys/bus/pci/devices/%s/driver || true' % DEVICE).strip()
        return {
            'cmdline_after': self.sh('cat /proc/cmdline').strip(),
            'driver_after': link.rsplit('/', 1)[-1] if link else 'none',
            'iommu_groups_after': len(self.sh('ls /sys/kernel/iommu_groups').split()),
        }


def end_state_ok(state, flavour_arg='intel_iommu=on'):
    """IOMMU on (the argument in the live cmdline and groups exist) and the device off its host driver."""
    return (flavour_arg in state['cmdline_after'].split() and state['iommu_groups_after'] > 0
            and state['driver_after'] != HOST_DRIVER)


def all_state(guest, pfs):
    """The every-feature end state, read raw: both PFs, the VFs, hugepages and isolated CPUs."""
    def driver(address):
        link = guest.sh('readlink /sys/bus/pci/devices/%s/driver || true' % address).strip()
        return link.rsplit('/', 1)[-1] if link else 'none'
    sriov_pf, address_pf = pfs
    vfs = guest.sh('for v in /sys/bus/pci/devices/%s/virtfn*; do [ -e "$v" ] && basename "$(readlink -f "$v")"; '
                   'done; true' % sriov_pf).split()
    return {'pf_sriov': sriov_pf, 'pf_sriov_driver': driver(sriov_pf), 'pf_address': address_pf,
            'pf_address_driver': driver(address_pf), 'vf_drivers': [driver(vf) for vf in sorted(vfs)],
            'nr_hugepages': int(guest.sh('cat /sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages')),
            'isolated_cpus': guest.sh('cat /sys/devices/system/cpu/isolated').strip()}


def all_state_ok(state, extra):
    """Every feature live: the e1000e (by ID) and PF B (by address) on vfio-pci, PF A on igb with its VFs as asked."""
    wanted_vfs = ['vfio-pci' if i in ALL_VF_VFIO else 'igbvf' for i in range(ALL_VFS)]
    tokens = state['cmdline_after'].split()
    return (end_state_ok(state) and state['driver_after'] == 'vfio-pci' and extra['pf_address_driver'] == 'vfio-pci'
            and extra['pf_sriov_driver'] == 'igb' and extra['vf_drivers'] == wanted_vfs
            and extra['nr_hugepages'] == ALL_TUNING['pcie_passthrough_hugepages']['count']
            and extra['isolated_cpus'] == ALL_TUNING['pcie_passthrough_isolated_cpus'] and 'isolcpus=1' in tokens)


def load():
    return ' '.join('%.2f' % x for x in os.getloadavg())


def task_profile(output):
    """[[task, seconds], ...] from profile_tasks' summary, slowest first."""
    return [[m.group('task'), float(m.group('seconds'))]
            for m in map(_PROFILE_LINE.match, output.splitlines()) if m]


def verified(output):
    """The role judged the live state: its verify task ran (ok, not skipped) and no reboot is owed."""
    match = re.search(r'^TASK \[vfio\.passthrough\.pcie_passthrough : Judge the live state\].*\n(\w+):', output, re.M)
    return bool(match) and match.group(1) == 'ok' and 'REBOOT REQUIRED' not in output


def role_vars(part, pfs=None):
    if part == 'like':
        # The guide's set: a device whose ID nothing else has (the plan writes ids=8086:10d3) and its driver
        # blacklisted, as bench/peers/vars/vm_intel.yml asks the peers.
        return {'pcie_passthrough_devices': [DEVICE], 'pcie_passthrough_blacklist_drivers': [HOST_DRIVER]}
    sriov_pf, address_pf = pfs
    return dict(ALL_TUNING, pcie_passthrough_vfio_ids=[DEVICE_ID], pcie_passthrough_devices=[address_pf],
                pcie_passthrough_sriov=[{'pf': sriov_pf, 'vfs': ALL_VFS, 'vfio': ALL_VF_VFIO}],
                pcie_passthrough_blacklist_drivers=[HOST_DRIVER])


def run_tool(tool, guest, log, role_extra):
    """One timed ansible-playbook run; its remote calls logged beside ``log`` (same env for every tool)."""
    calls = Path(log).with_suffix('.calls')
    calls.unlink(missing_ok=True)
    extra = dict({'pcie_passthrough_hosts': GROUP}, **role_extra)
    args = ()
    if tool != 'role':
        extra = {'guide_hosts': GROUP}
        args = ('-e', '@%s' % PEER_VARS)
    environ = dict(ANSIBLE_ENV, **PROFILE_ENV, **_remote_calls.env(calls))
    environ['ANSIBLE_CALLBACKS_ENABLED'] += ',' + _remote_calls.MARKS
    load_at_start = load()
    run = _ansible.run_playbook(PLAYBOOKS[tool], guest.vm.inventory_path, extra_vars=extra, env=environ, args=args,
                                log=log, timeout=3600)
    run.load = load_at_start
    run.calls = _remote_calls.read(calls)
    return run


def fresh(tool, guest, logs, part='like', role_extra=None):
    """Converge a fresh guest with one tool; count its reboots from the guest's boot log."""
    guest.install_boot_log()
    before_ids, journal_before = guest.boot_ids(), guest.journal_boots()
    say('%s: fresh run of %s (boot %s, load %s)' % (guest.vm.name, PLAYBOOKS[tool].relative_to(ROOT), before_ids[-1],
                                                    load()))
    run = run_tool(tool, guest, logs / ('vm-%s-%s-fresh.log' % (part, tool)), role_extra or {})
    ids = guest.boot_ids()
    current = guest.boot_id()
    result = {
        'reboots': len(ids) - 1,
        'boot_ids': ids,
        'seconds': round(run.seconds, 2),
        **guest.state(),
        'rc': run.rc,
        'recap': run.recap,
        'tasks': run.host()['tasks'] if len(run.recap) == 1 else None,
        'load_at_start': run.load,
        'remote_calls': run.calls['remote_calls'],
        'calls_per_task': run.calls['per_task'],
        'reboots_journal': guest.journal_boots() - journal_before,
        'boot_log_current': ids[-1] == current,
        'profile': task_profile(run.output),
    }
    result['end_state_ok'] = end_state_ok(result)
    if result['reboots_journal'] != result['reboots'] or not result['boot_log_current']:
        say('%s: WARNING boot log (%d reboots, last logged %s) disagrees with the journal (%d) or the '
            'current boot %s' % (tool, result['reboots'], ids[-1], result['reboots_journal'], current))
    say('%s: rc=%d in %.1f s, %d reboot(s), %s remote calls, driver %s, %d IOMMU groups, end state %s'
        % (tool, run.rc, run.seconds, result['reboots'], result['remote_calls'], result['driver_after'],
           result['iommu_groups_after'], 'reached' if result['end_state_ok'] else 'NOT reached'))
    if run.rc != 0:
        say('%s: playbook failed, tail:\n%s' % (tool, run.tail(25)))
    return result


def noop(tool, guest, runs, logs, part='like', role_extra=None):
    """Converged runs on the guest the tool itself converged; a reboot in them is counted."""
    guest.settle()
    before = len(guest.boot_ids())
    out = {'seconds': [], 'tasks': [], 'changed': [], 'skipped': [], 'rc': [], 'verified': [], 'profile': [],
           'remote_calls': [], 'load_at_start': [], 'calls_per_task': []}
    for i in range(1, runs + 1):
        run = run_tool(tool, guest, logs / ('vm-%s-%s-noop-%d.log' % (part, tool, i)), role_extra or {})
        counts = run.host() if run.recap else dict.fromkeys(('tasks', 'changed', 'skipped'), None)
        out['seconds'].append(round(run.seconds, 2))
        for key in ('tasks', 'changed', 'skipped'):
            out[key].append(counts[key])
        out['rc'].append(run.rc)
        out['profile'].append(task_profile(run.output))
        out['verified'].append(tool == 'role' and verified(run.output))
        out['remote_calls'].append(run.calls['remote_calls'])
        out['load_at_start'].append(run.load)
        out['calls_per_task'] = run.calls['per_task']   # the same in every converged run; the last one is kept
        say('%s: no-op %d/%d rc=%d %.1f s, %s tasks, %s changed, %s skipped, %s remote calls (load %s)'
            % (tool, i, runs, run.rc, run.seconds, counts['tasks'], counts['changed'], counts['skipped'],
               run.calls['remote_calls'], run.load))
        if run.rc != 0:
            say('%s: no-op run failed, tail:\n%s' % (tool, run.tail(25)))
    out['reboots'] = len(guest.boot_ids()) - before
    return out


def start_guest(name, nics, igb):
    boot_started = time.monotonic()
    guest = Guest(vmctl.start(FLAVOUR, nics=nics, igb=igb, name=name))
    say('%s: booted in %.1f s on %s' % (name, time.monotonic() - boot_started, guest.vm.qemu))
    found = guest.sh('lspci -D -n -d %s | cut -d" " -f1' % DEVICE_ID).split()
    if found != [DEVICE]:
        raise vmctl.VMError('%s: expected %s at %s, lspci shows %s' % (name, DEVICE_ID, DEVICE, found))
    pfs = guest.sh('lspci -D -n -d %s | cut -d" " -f1' % PF_ID).split()
    if len(pfs) != igb:
        raise vmctl.VMError('%s: expected %d igb PF(s) %s, lspci shows %s' % (name, igb, PF_ID, pfs))
    return guest, sorted(pfs)


def stop_guest(guest, data, name):
    if guest is None:
        return
    try:
        guest.vm.stop(keep_logs=False)
    except (vmctl.VMError, OSError) as exc:
        data['errors']['stop-%s' % name] = str(exc)
        say('%s: could not stop: %s' % (name, exc))


def like_part(data, tools, runs, logs):
    for tool in tools:
        name = 'bench-%s-%s' % (tool.replace('_', '-'), secrets.token_hex(3))
        guest = None
        try:
            data['loads']['like %s guest start' % tool] = load()
            guest, _pfs = start_guest(name, 1, LIKE_IGB)
            data['kernel'] = data['kernel'] or guest.sh('uname -r').strip()
            data['fresh'][tool] = fresh(tool, guest, logs, 'like', role_vars('like'))
            if tool in NOOP_TOOLS:
                if data['fresh'][tool]['rc'] == 0:
                    data['noop'][tool] = noop(tool, guest, runs, logs, 'like', role_vars('like'))
                else:
                    data['notes'].append('%s: no converged runs, its fresh run failed (rc %d)'
                                         % (tool, data['fresh'][tool]['rc']))
                    say(data['notes'][-1])
        except (vmctl.VMError, subprocess.SubprocessError, OSError, ValueError, KeyError) as exc:
            data['errors'][tool] = str(exc)
            say('%s: ERROR %s' % (tool, exc))
        finally:
            stop_guest(guest, data, name)


def all_part(data, runs, logs):
    name = 'bench-all-%s' % secrets.token_hex(3)
    guest = None
    try:
        data['loads']['all guest start'] = load()
        guest, pfs = start_guest(name, 1, ALL_IGB)
        data['kernel'] = data['kernel'] or guest.sh('uname -r').strip()
        extra = role_vars('all', pfs)
        entry = {'request': extra}
        entry['fresh'] = fresh('role', guest, logs, 'all', extra)
        entry['fresh']['features'] = all_state(guest, pfs)
        entry['fresh']['end_state_ok'] = all_state_ok(entry['fresh'], entry['fresh']['features'])
        say('all: every feature %s: %s' % ('reached' if entry['fresh']['end_state_ok'] else 'NOT reached',
                                           entry['fresh']['features']))
        if entry['fresh']['rc'] == 0:
            entry['noop'] = noop('role', guest, runs, logs, 'all', extra)
        else:
            data['notes'].append('all: no converged runs, the fresh run failed (rc %d)' % entry['fresh']['rc'])
        data['all'] = entry
    except (vmctl.VMError, subprocess.SubprocessError, OSError, ValueError, KeyError) as exc:
        data['errors']['all'] = str(exc)
        say('all: ERROR %s' % exc)
    finally:
        stop_guest(guest, data, name)


def versions():
    """The QEMU every bench guest runs on (QEMU 10: every guest has igb), as `--version` prints it."""
    try:
        binary = vmctl.qemu10()
    except (subprocess.SubprocessError, OSError) as exc:
        return 'unknown (tests/vm/qemu10.sh: %s)' % exc
    qemu = subprocess.run([binary, '--version'], capture_output=True, text=True, check=False)
    return qemu.stdout.splitlines()[0].strip() if qemu.returncode == 0 and qemu.stdout else 'unknown'


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n', maxsplit=1)[0])
    parser.add_argument('--quick', action='store_true', help='one converged run per tool instead of three')
    parser.add_argument('--parts', default=','.join(PARTS), help='comma-separated subset of %s' % ','.join(PARTS))
    parser.add_argument('--tools', default=','.join(TOOLS),
                        help='like part: comma-separated subset of %s (default: all)' % ','.join(TOOLS))
    parser.add_argument('--out', type=Path, default=HERE / 'out' / 'vm.json')
    args = parser.parse_args(argv)
    tools = [t for t in args.tools.split(',') if t]
    parts = [p for p in args.parts.split(',') if p]
    unknown = sorted(set(tools) - set(TOOLS)) + sorted(set(parts) - set(PARTS))
    if unknown:
        parser.error('unknown tool(s) or part(s) %s: choose tools from %s, parts from %s'
                     % (', '.join(unknown), ', '.join(TOOLS), ', '.join(PARTS)))
    runs = 1 if args.quick else 3
    logs = args.out.parent / 'logs'
    logs.mkdir(parents=True, exist_ok=True)

    others = [vm.name for vm in vmctl.all_vms() if vm.running()]
    if others:
        say('NOTE: other guests are running (%s): timings will be slower' % ', '.join(others))
    started_at = time.strftime('%Y-%m-%d %H:%M', time.gmtime())
    load_at_start = load()
    data = {'flavour': FLAVOUR, 'kernel': None, 'qemu': None, 'accel': '%s (%s)' % vmctl.choose_accel(),
            'suite': vmctl.DEFAULT_SUITE, 'device': DEVICE, 'parts': parts,
            'ansible_env': dict(ANSIBLE_ENV, **PROFILE_ENV), 'noop_runs': runs, 'other_vms_running': others,
            'loads': {'start': load_at_start}, 'fresh': {}, 'noop': {}, 'errors': {}, 'notes': [],
            'remote_calls_method': _remote_calls.__doc__.strip()}
    # A SIGTERM (a timeout in the orchestrator) unwinds like Ctrl-C, so the finally below still
    # stops the guest instead of leaving QEMU on both cores.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    started = time.monotonic()
    vmctl.ensure_image(build=True)
    # profile_tasks (per-task seconds) is ansible.posix's: vendored as the containers part does it, so
    # `--parts vm` alone has it too; without it the runs still count, with no per-task seconds (said below).
    vendored = subprocess.run([str(ROOT / 'tests' / 'containers' / 'vendor-collections.sh')], capture_output=True,
                              text=True, check=False)
    if vendored.returncode != 0:
        data['notes'].append('no per-task seconds: tests/containers/vendor-collections.sh exited %d (%s)'
                             % (vendored.returncode, vendored.stderr.strip().splitlines()[-1:]))
        say(data['notes'][-1])
    data['qemu'] = versions()
    say('QEMU for every guest: %s; load at the start %s' % (data['qemu'], load_at_start))
    if 'like' in parts:
        like_part(data, tools, runs, logs)
    if 'all' in parts:
        all_part(data, runs, logs)
    data['seconds_total'] = round(time.monotonic() - started, 1)
    data['measured'] = '%s - %s UTC (load average at the start: %s)' % (
        started_at, time.strftime('%Y-%m-%d %H:%M', time.gmtime()), load_at_start)

    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix('.tmp')
    tmp.write_text(json.dumps(data, indent=2) + '\n')
    tmp.replace(args.out)
    for label, noops in (('like', data['noop']), ('all', {'role': data.get('all', {}).get('noop')})):
        for tool, result in noops.items():
            if result:
                say('%s %s no-op: median %.1f s, tasks %s, changed %s, remote calls %s, reboots %d'
                    % (label, tool, statistics.median(result['seconds']), result['tasks'], result['changed'],
                       result['remote_calls'], result['reboots']))
    say('wrote %s in %.0f s' % (args.out, data['seconds_total']))
    role = data['fresh'].get('role')
    every = data.get('all', {}).get('fresh')
    failed = data['errors'] or (role is not None and role['rc'] != 0) or (every is not None and every['rc'] != 0)
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
