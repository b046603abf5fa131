"""VM part of the benchmark: reboots from a fresh guest, and converged (no-op) runs.

For each tool (the role, guide_literal, guide_handlers) a FRESH QEMU guest from the cached
base image (tests/vm) is booted, one at a time (2 cores: never two guests at once). Before
the run a oneshot unit appends /proc/sys/kernel/random/boot_id to a log at every boot, so
reboots are counted by the guest (distinct boot ids - 1), not from the playbook's tasks;
the persistent journal's `--list-boots` cross-checks it. After the run the live state is
read raw: /proc/cmdline, the driver of the e1000e, the number of IOMMU groups.
Then, on the same guest, converged runs of the role and of guide_handlers. Every run keeps
profile_tasks' per-task seconds ("profile"), so a slow figure comes with where it went.

    python bench/vm_bench.py [--quick] [--tools role,guide_handlers] [--out bench/out/vm.json]

Writes bench/out/vm.json (read by bench/report.py) and full playbook logs in
bench/out/logs/. Prints progress on stderr and exits non-zero when a guest could not be
used or the role failed; a peer that misses the end state is recorded, not an error.
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
import vmctl  # noqa: E402  (tests/vm is not a package)

FLAVOUR = 'intel'
DEVICE = '0000:00:03.0'
DEVICE_ID = '8086:10d3'
HOST_DRIVER = 'e1000e'
GROUP = 'vfio_vms'
TOOLS = ('role', 'guide_literal', 'guide_handlers')
NOOP_TOOLS = ('role', 'guide_handlers')
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


def task_profile(output):
    """[[task, seconds], ...] from profile_tasks' summary, slowest first."""
    return [[m.group('task'), float(m.group('seconds'))]
            for m in map(_PROFILE_LINE.match, output.splitlines()) if m]


def verified(output):
    """The role judged the live state: its verify task ran (ok, not skipped) and no reboot is owed."""
    match = re.search(r'^TASK \[vfio\.passthrough\.pcie_passthrough : Judge the live state\].*\n(\w+):', output, re.M)
    return bool(match) and match.group(1) == 'ok' and 'REBOOT REQUIRED' not in output


def run_tool(tool, guest, log):
    extra = {'pcie_passthrough_hosts': GROUP, 'pcie_passthrough_devices': [DEVICE]}
    args = ()
    if tool != 'role':
        extra = {'guide_hosts': GROUP}
        args = ('-e', '@%s' % PEER_VARS)
    return _ansible.run_playbook(PLAYBOOKS[tool], guest.vm.inventory_path, extra_vars=extra,
                                 env=dict(ANSIBLE_ENV, **PROFILE_ENV), args=args, log=log, timeout=3600)


def fresh(tool, guest, logs):
    """Converge a fresh guest with one tool; count its reboots from the guest's boot log."""
    guest.install_boot_log()
    before_ids, journal_before = guest.boot_ids(), guest.journal_boots()
    say('%s: fresh run of %s (boot %s)' % (guest.vm.name, PLAYBOOKS[tool].relative_to(ROOT), before_ids[-1]))
    run = run_tool(tool, guest, logs / ('vm-%s-fresh.log' % tool))
    ids = guest.boot_ids()
    current = guest.boot_id()
    result = {
        'reboots': len(ids) - 1,
        'boot_ids': ids,
        'seconds': round(run.seconds, 2),
        **guest.state(),
        'rc': run.rc,
        'recap': run.recap,
        'reboots_journal': guest.journal_boots() - journal_before,
        'boot_log_current': ids[-1] == current,
        'profile': task_profile(run.output),
    }
    result['end_state_ok'] = end_state_ok(result)
    if result['reboots_journal'] != result['reboots'] or not result['boot_log_current']:
        say('%s: WARNING boot log (%d reboots, last logged %s) disagrees with the journal (%d) or the '
            'current boot %s' % (tool, result['reboots'], ids[-1], result['reboots_journal'], current))
    say('%s: rc=%d in %.1f s, %d reboot(s), driver %s, %d IOMMU groups, end state %s'
        % (tool, run.rc, run.seconds, result['reboots'], result['driver_after'], result['iommu_groups_after'],
           'reached' if result['end_state_ok'] else 'NOT reached'))
    if run.rc != 0:
        say('%s: playbook failed, tail:\n%s' % (tool, run.tail(25)))
    return result


def noop(tool, guest, runs, logs):
    """Converged runs on the guest the tool itself converged; a reboot in them is counted."""
    guest.settle()
    before = len(guest.boot_ids())
    out = {'seconds': [], 'tasks': [], 'changed': [], 'skipped': [], 'rc': [], 'verified': [], 'profile': []}
    for i in range(1, runs + 1):
        run = run_tool(tool, guest, logs / ('vm-%s-noop-%d.log' % (tool, i)))
        counts = run.host() if run.recap else dict.fromkeys(('tasks', 'changed', 'skipped'), None)
        out['seconds'].append(round(run.seconds, 2))
        for key in ('tasks', 'changed', 'skipped'):
            out[key].append(counts[key])
        out['rc'].append(run.rc)
        out['profile'].append(task_profile(run.output))
        out['verified'].append(tool == 'role' and verified(run.output))
        say('%s: no-op %d/%d rc=%d %.1f s, %s tasks, %s changed, %s skipped'
            % (tool, i, runs, run.rc, run.seconds, counts['tasks'], counts['changed'], counts['skipped']))
        if run.rc != 0:
            say('%s: no-op run failed, tail:\n%s' % (tool, run.tail(25)))
    out['reboots'] = len(guest.boot_ids()) - before
    return out


def versions():
    qemu = subprocess.run(['qemu-system-x86_64', '--version'], capture_output=True, text=True, check=False)
    return qemu.stdout.splitlines()[0].strip() if qemu.returncode == 0 else 'unknown'


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n', maxsplit=1)[0])
    parser.add_argument('--quick', action='store_true', help='one converged run per tool instead of three')
    parser.add_argument('--tools', default=','.join(TOOLS),
                        help='comma-separated subset of %s (default: all)' % ','.join(TOOLS))
    parser.add_argument('--out', type=Path, default=HERE / 'out' / 'vm.json')
    args = parser.parse_args(argv)
    tools = [t for t in args.tools.split(',') if t]
    unknown = sorted(set(tools) - set(TOOLS))
    if unknown:
        parser.error('unknown tool(s) %s: choose from %s' % (', '.join(unknown), ', '.join(TOOLS)))
    runs = 1 if args.quick else 3
    logs = args.out.parent / 'logs'
    logs.mkdir(parents=True, exist_ok=True)

    others = [vm.name for vm in vmctl.all_vms() if vm.running()]
    if others:
        say('NOTE: other guests are running (%s): timings will be slower' % ', '.join(others))
    started_at = time.strftime('%Y-%m-%d %H:%M', time.gmtime())
    load_at_start = ' '.join('%.2f' % x for x in os.getloadavg())
    data = {'flavour': FLAVOUR, 'kernel': None, 'qemu': versions(), 'accel': '%s (%s)' % vmctl.choose_accel(),
            'device': DEVICE, 'ansible_env': dict(ANSIBLE_ENV, **PROFILE_ENV), 'noop_runs': runs,
            'other_vms_running': others, 'fresh': {}, 'noop': {}, 'errors': {}, 'notes': []}
    # A SIGTERM (a timeout in the orchestrator) unwinds like Ctrl-C, so the finally below still
    # stops the guest instead of leaving QEMU on both cores.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    started = time.monotonic()
    vmctl.ensure_image(build=True)
    for tool in tools:
        name = 'bench-%s-%s' % (tool.replace('_', '-'), secrets.token_hex(3))
        guest = None
        try:
            boot_started = time.monotonic()
            guest = Guest(vmctl.start(FLAVOUR, nics=1, name=name))
            say('%s: booted in %.1f s' % (name, time.monotonic() - boot_started))
            found = guest.sh('lspci -D -n -d %s | cut -d" " -f1' % DEVICE_ID).split()
            if found != [DEVICE]:
                raise vmctl.VMError('%s: expected %s at %s, lspci shows %s' % (name, DEVICE_ID, DEVICE, found))
            data['kernel'] = data['kernel'] or guest.sh('uname -r').strip()
            data['fresh'][tool] = fresh(tool, guest, logs)
            if tool in NOOP_TOOLS:
                if data['fresh'][tool]['rc'] == 0:
                    data['noop'][tool] = noop(tool, guest, runs, logs)
                else:
                    data['notes'].append('%s: no converged runs, its fresh run failed (rc %d)'
                                         % (tool, data['fresh'][tool]['rc']))
                    say(data['notes'][-1])
        except (vmctl.VMError, subprocess.SubprocessError, OSError, ValueError, KeyError) as exc:
            data['errors'][tool] = str(exc)
            say('%s: ERROR %s' % (tool, exc))
        finally:
            if guest is not None:
                try:
                    guest.vm.stop(keep_logs=False)
                except (vmctl.VMError, OSError) as exc:
                    data['errors']['stop-%s' % name] = str(exc)
                    say('%s: could not stop: %s' % (name, exc))
    data['seconds_total'] = round(time.monotonic() - started, 1)
    data['measured'] = '%s - %s UTC (load average at the start: %s)' % (
        started_at, time.strftime('%Y-%m-%d %H:%M', time.gmtime()), load_at_start)

    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix('.tmp')
    tmp.write_text(json.dumps(data, indent=2) + '\n')
    tmp.replace(args.out)
    for tool, result in data['noop'].items():
        say('%s no-op: median %.1f s, tasks %s, changed %s, reboots %d'
            % (tool, statistics.median(result['seconds']), result['tasks'], result['changed'], result['reboots']))
    say('wrote %s in %.0f s' % (args.out, data['seconds_total']))
    role = data['fresh'].get('role')
    failed = data['errors'] or (role is not None and role['rc'] != 0)
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
