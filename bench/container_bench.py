"""Container part of the benchmark -> bench/out/containers.json.

1. No-op: one podman container converged by the role, one by
   bench/peers/guide_handlers.yml (reboots off: a container cannot reboot), then
   both "rebooted" and the converged run timed N times each, interleaved.
2. Fleet: 8 containers converged by the role, then the converged run timed on
   the first 1, 4 and 8 of them with forks = serial = host count.

Containers are made the way the molecule scenarios make them (same image,
systemd as PID 1, molecule/shared/prepare.yml unpacks the canned
intel_gpu_host_unconfigured tree under /opt/fake-root and installs the
proxmox-boot-tool stub). A container cannot reboot, so a reboot is simulated
as the machine would come back: the fake root is rebuilt with the kernel line
the container's /etc/default/grub now holds, the requested devices on vfio-pci
and the groups in passthrough (identity) mode. Only then is the role's run
truly converged: no reboot owed, and it verifies the live state.

    python bench/container_bench.py [--quick] [--runs 5] [--fleet-runs 3]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT / 'tests' / 'unit'))

import _ansible  # noqa: E402  (bench/ is not a package)
from sysfs_builder import intel_gpu_host  # noqa: E402

OUT = HERE / 'out'
LOGS = OUT / 'logs'
FAKE_ROOT = '/opt/fake-root'
DEVICES = ['0000:01:00.0', '0000:01:00.1']
# What modules.alias says of the two functions once vfio-pci holds them (the
# kernel's own nouveau and snd-hda-intel aliases, narrowed to these devices).
ALIASES = [('pci:v000010DEd*sv*sd*bc03sc*i*', 'nouveau'), ('pci:v*d*sv*sd*bc04sc03i*', 'snd_hda_intel')]
FLEET = (1, 4, 8)
GROUP = 'bench'
PREFIX = 'vfio-bench-' + hashlib.sha1(str(ROOT).encode()).hexdigest()[:6]
HOST_VARS = {
    'ansible_connection': 'containers.podman.podman',
    'ansible_python_interpreter': '/usr/bin/python3',
    # molecule/shared/prepare.yml
    'vfio_fake_host': 'intel_gpu_host_unconfigured',
    'vfio_pbt_stub_mode': 'none',
    # the role, as in molecule/default
    'pcie_passthrough_root': FAKE_ROOT,
    'pcie_passthrough_devices': DEVICES,
    'pcie_passthrough_reboot': False,
}
PEER = HERE / 'peers' / 'guide_handlers.yml'
PEER_VARS = HERE / 'peers' / 'vars' / 'container_intel_gpu.yml'
ROLE = ROOT / 'playbooks' / 'passthrough.yml'
PREPARE = ROOT / 'molecule' / 'shared' / 'prepare.yml'


def say(message):
    print('[containers] %s' % message, file=sys.stderr, flush=True)


def podman(*args, check=True, data=None, timeout=300):
    result = subprocess.run(['podman', *args], input=data, capture_output=True, text=data is None,
                            timeout=timeout, check=False)
    if check and result.returncode != 0:
        raise RuntimeError('podman %s exited %d: %s' % (' '.join(args), result.returncode, result.stderr))
    return result


def image():
    """The molecule image (built once, cached by content hash), on a host set up for podman."""
    subprocess.run([str(ROOT / 'tests' / 'containers' / 'setup-host.sh')], check=True, capture_output=True)
    subprocess.run([str(ROOT / 'tests' / 'containers' / 'vendor-collections.sh')], check=True, capture_output=True)
    name = subprocess.run([str(ROOT / 'tests' / 'containers' / 'build-image.sh')], check=True,
                          capture_output=True, text=True).stdout.strip()
    if not name:
        raise RuntimeError('tests/containers/build-image.sh printed no image name')
    return name


def start(names, image_name):
    for name in names:
        podman('rm', '--force', '--time', '0', name, check=False)
        podman('run', '--detach', '--name', name, '--hostname', name, '--systemd=always', image_name, '/sbin/init')


def remove(names):
    for name in names:
        podman('rm', '--force', '--time', '0', name, check=False)


def write_inventory(path, names):
    # JSON is YAML: the yaml inventory plugin reads it.
    path.write_text(json.dumps({'all': {'children': {GROUP: {'hosts': {n: dict(HOST_VARS) for n in names}}}}},
                               indent=1))
    return path


def playbook(playbook_path, inventory, log, extra_vars=None, var_files=(), forks=1):
    args = [arg for f in var_files for arg in ('-e', '@%s' % f)]
    run = _ansible.run_playbook(playbook_path, inventory, extra_vars=extra_vars, args=args, log=log,
                                env={'ANSIBLE_FORKS': str(forks), 'MOLECULE_PROJECT_DIRECTORY': str(ROOT)})
    return run


def must(run, what):
    if not run.succeeded:
        raise RuntimeError('%s failed (rc=%d):\n%s' % (what, run.rc, run.tail(60)))
    return run


def role_vars(hosts):
    return {'pcie_passthrough_hosts': GROUP, 'pcie_passthrough_serial': hosts}


def simulate_reboot(name, work):
    """Give container ``name`` the fake root of its next boot (see the module docstring)."""
    # GRUB's 10_linux puts both variables on the kernel line, in this order.
    args = podman('exec', name, 'sh', '-c',
                  '. /etc/default/grub && echo "$GRUB_CMDLINE_LINUX $GRUB_CMDLINE_LINUX_DEFAULT"').stdout.split()
    tree = work / ('boot-' + name)
    shutil.rmtree(tree, ignore_errors=True)
    host = intel_gpu_host(tree, passthrough=True)
    host.cmdline(' '.join(['BOOT_IMAGE=/boot/vmlinuz-6.8.12-4-pve', 'root=/dev/mapper/pve-root', 'ro'] + args))
    for address in DEVICES:
        old = os.readlink(tree / host.device_dir(address) / 'driver').rsplit('/', 1)[-1]
        os.unlink(tree / 'sys/bus/pci/drivers' / old / address)
        host.bind(address, 'vfio-pci', 'vfio_pci')
    host.modules_alias(*ALIASES)
    packed = subprocess.run(['tar', '-C', str(tree), '-cz', '.'], capture_output=True, check=True).stdout
    podman('exec', name, 'sh', '-c', 'rm -rf %s && mkdir -p %s' % (FAKE_ROOT, FAKE_ROOT))
    podman('exec', '-i', name, 'tar', '-C', FAKE_ROOT, '-xz', data=packed)
    return ' '.join(args)


def reboot_due(tool, output):
    """Whether this run would have rebooted the host (the container cannot, so the output tells)."""
    if tool == 'role':
        return 'REBOOT REQUIRED' in output
    return bool(re.search(r'RUNNING HANDLER \[Reboot\]', output))


def verified(output):
    """The role judged the live state (it does so only when no reboot is owed)."""
    return bool(re.search(r'TASK \[vfio\.passthrough\.pcie_passthrough : Judge the live state\]', output)) \
        and 'REBOOT REQUIRED' not in output


def noop_run(tool, inventory, name, log):
    if tool == 'role':
        run = playbook(ROLE, inventory, log, extra_vars=role_vars(1))
    else:
        run = playbook(PEER, inventory, log, var_files=[PEER_VARS])
    must(run, '%s converged run' % tool)
    counts = run.host(name)
    return run, counts


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--quick', action='store_true', help='2 no-op runs per tool, 1 fleet run per size')
    parser.add_argument('--runs', type=int, default=5, help='no-op runs per tool (default 5)')
    parser.add_argument('--fleet-runs', type=int, default=3, help='converged fleet runs per size (default 3)')
    parser.add_argument('--profile-tasks', action='store_true',
                        help='one more run of each tool with ansible.posix.profile_tasks, logged')
    parser.add_argument('--no-fleet', action='store_true', help='only the no-op comparison (for profiling)')
    parser.add_argument('--keep', action='store_true',
                        help='leave the containers running (inventories in bench/out/keep/) to profile by hand')
    parser.add_argument('--out', type=Path, default=OUT / 'containers.json')
    args = parser.parse_args(argv)
    runs, fleet_runs = (2, 1) if args.quick else (args.runs, args.fleet_runs)
    if shutil.which('podman') is None and os.geteuid() != 0:
        raise SystemExit('podman is missing and only root can install it (tests/containers/setup-host.sh)')

    started = time.monotonic()
    image_name = image()
    work = OUT / 'keep' if args.keep else Path(tempfile.mkdtemp(prefix='vfio-container-bench-'))
    work.mkdir(parents=True, exist_ok=True)
    LOGS.mkdir(parents=True, exist_ok=True)
    role_host, peer_host = PREFIX + '-role', PREFIX + '-peer'
    fleet = [] if args.no_fleet else ['%s-fleet%d' % (PREFIX, n) for n in range(1, max(FLEET) + 1)]
    everyone = [role_host, peer_host] + fleet
    result = {'image': image_name, 'runs': runs, 'fleet_runs': fleet_runs, 'forks': max(FLEET)}
    try:
        say('starting %d containers from %s' % (len(everyone), image_name))
        start(everyone, image_name)
        inv_all = write_inventory(work / 'all.yml', everyone)
        must(playbook(PREPARE, inv_all, LOGS / 'containers-prepare.log', forks=len(everyone),
                      extra_vars={'molecule_ephemeral_directory': str(work)}), 'prepare')
        say('prepared in %.0f s' % (time.monotonic() - started))

        inv_role = write_inventory(work / 'role.yml', [role_host])
        inv_peer = write_inventory(work / 'peer.yml', [peer_host])
        converge_role = write_inventory(work / 'converge-role.yml', [role_host] + fleet)
        first = must(playbook(ROLE, converge_role, LOGS / 'containers-converge-role.log',
                              extra_vars=role_vars(len(fleet) + 1), forks=len(fleet) + 1), 'role converge')
        peer_first = must(playbook(PEER, inv_peer, LOGS / 'containers-converge-peer.log', var_files=[PEER_VARS]),
                          'guide_handlers converge')
        result['converge'] = {'role': first.host(role_host), 'guide_handlers': peer_first.host(peer_host),
                              'role_seconds': round(first.seconds, 2), 'role_hosts': len(fleet) + 1,
                              'guide_handlers_seconds': round(peer_first.seconds, 2)}
        cmdlines = {name: simulate_reboot(name, work) for name in everyone}
        result['cmdline_after_reboot'] = {'role': cmdlines[role_host], 'guide_handlers': cmdlines[peer_host]}
        say('converged and "rebooted" (role: %s; guide_handlers: %s)'
            % (cmdlines[role_host], cmdlines[peer_host]))

        hosts = {'role': (inv_role, role_host), 'guide_handlers': (inv_peer, peer_host)}
        # One untimed run each: the first after the "reboot" must already change nothing.
        for tool, (inventory, name) in hosts.items():
            run, counts = noop_run(tool, inventory, name, LOGS / ('containers-settle-%s.log' % tool))
            if counts['changed']:
                raise RuntimeError('%s is not converged: %d changed after the reboot\n%s'
                                   % (tool, counts['changed'], run.tail(60)))
            if tool == 'role' and not verified(run.output):
                raise RuntimeError('the role did not verify the live state after the reboot\n%s' % run.tail(60))
        noop = {tool: {'seconds': [], 'tasks': [], 'changed': [], 'skipped': [], 'reboots': 0, 'verified': []}
                for tool in hosts}
        for n in range(runs):
            for tool, (inventory, name) in hosts.items():
                run, counts = noop_run(tool, inventory, name, LOGS / ('containers-noop-%s-%d.log' % (tool, n + 1)))
                entry = noop[tool]
                entry['seconds'].append(round(run.seconds, 3))
                for key in ('tasks', 'changed', 'skipped'):
                    entry[key].append(counts[key])
                entry['reboots'] += reboot_due(tool, run.output)
                entry['verified'].append(verified(run.output) if tool == 'role' else False)
            say('no-op run %d/%d: role %.1f s (%d tasks), guide_handlers %.1f s (%d tasks)'
                % (n + 1, runs, noop['role']['seconds'][-1], noop['role']['tasks'][-1],
                   noop['guide_handlers']['seconds'][-1], noop['guide_handlers']['tasks'][-1]))
        result['noop'] = noop

        if args.profile_tasks:
            for tool, (inventory, name) in hosts.items():
                env_log = LOGS / ('containers-profile-%s.log' % tool)
                os.environ['ANSIBLE_CALLBACKS_ENABLED'] = 'ansible.posix.profile_tasks'
                try:
                    noop_run(tool, inventory, name, env_log)
                finally:
                    del os.environ['ANSIBLE_CALLBACKS_ENABLED']
                say('per-task timings of %s: %s' % (tool, env_log.relative_to(ROOT)))

        result['fleet'] = {str(size): {'seconds': [], 'changed': [], 'tasks': []} for size in FLEET}
        inventories = {size: write_inventory(work / ('fleet-%d.yml' % size), fleet[:size]) for size in FLEET}
        for n in range(fleet_runs if fleet else 0):
            for size in FLEET:
                run = must(playbook(ROLE, inventories[size], LOGS / ('containers-fleet-%d-%d.log' % (size, n + 1)),
                                    extra_vars=role_vars(size), forks=size), 'fleet of %d' % size)
                if len(run.recap) != size:
                    raise RuntimeError('fleet of %d: the recap lists %d hosts' % (size, len(run.recap)))
                entry = result['fleet'][str(size)]
                entry['seconds'].append(round(run.seconds, 3))
                entry['changed'].append(run.total('changed'))
                entry['tasks'].append(run.total('tasks'))
            say('fleet run %d/%d: %s' % (n + 1, fleet_runs, '  '.join(
                '%d hosts %.1f s' % (size, result['fleet'][str(size)]['seconds'][-1]) for size in FLEET)))
    finally:
        if args.keep:
            say('containers kept: %s; inventories in %s' % (' '.join(everyone), work))
        else:
            remove(everyone)
            shutil.rmtree(work, ignore_errors=True)
    result['seconds_total'] = round(time.monotonic() - started, 1)
    result['podman'] = podman('--version').stdout.split()[-1]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + '\n')
    say('wrote %s in %.0f s' % (args.out, result['seconds_total']))
    return 0


if __name__ == '__main__':
    sys.exit(main())
