"""Real-kernel scenarios: boot a QEMU guest, run the real playbook over SSH, verify with raw commands.

Nothing here asks the collection what happened: every check reads the guest
directly (/proc/cmdline, sysfs links, the kernel log, boot ids), so a bug in
iommu_facts cannot hide a failure of the role.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
sys.path.insert(0, str(HERE.parent))

import vmctl  # noqa: E402  (tests/vm is not a package)

OUTPUT = ROOT / 'tests' / 'output' / 'vm'
FIXTURES = ROOT / 'tests' / 'fixtures' / 'real'
CALLBACKS = HERE.parent / 'callback_plugins'
E1000E = '8086:10d3'
# A Debian 13 converge (update-initramfs, reboot, verify) took over 30 min on 2 cores at load 15,
# when the guest's kernel logged soft lockups and its sshd missed banner timeouts.
PLAYBOOK_TIMEOUT = 3600
_PCI_ADDRESS = re.compile(r'^[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]$')


def say(message):
    # make test-vm runs pytest with -s, so progress and timings show as they happen.
    sys.__stdout__.write('[vm-scenario] %s\n' % message)
    sys.__stdout__.flush()


class Guest:
    """A booted VM plus the raw checks the scenarios make on it."""

    def __init__(self, vm, boot_seconds):
        self.vm = vm
        self.boot_seconds = boot_seconds

    def sh(self, command, check=True):
        result = self.vm.ssh(command, check=False, timeout=600)
        if check and result.returncode != 0:
            raise AssertionError('guest command failed (rc=%d): %s\n%s%s'
                                 % (result.returncode, command, result.stdout, result.stderr))
        return result.stdout

    def boot_id(self):
        return self.sh('cat /proc/sys/kernel/random/boot_id').strip()

    def boots(self):
        """Boots the persistent journal has seen (enable_boot_count() must run first)."""
        return len(self.sh('journalctl --list-boots --no-pager -q').strip().splitlines())

    def enable_boot_count(self):
        # The image keeps the journal in /run; a persistent one lists every boot,
        # so "exactly one reboot" is counted by the guest itself.
        self.sh('mkdir -p /var/log/journal && systemd-tmpfiles --create --prefix /var/log/journal '
                '&& systemctl restart systemd-journald && journalctl --flush')

    def pci_by_id(self, pci_id):
        return self.sh('lspci -D -n -d %s | cut -d" " -f1' % pci_id).split()

    def driver(self, address):
        link = self.sh('readlink /sys/bus/pci/devices/%s/driver || true' % address).strip()
        return link.rsplit('/', 1)[-1] if link else None

    def default_route_dev(self):
        return re.search(r'\bdev (\S+)', self.sh('ip route show default')).group(1)

    def nic_address(self, ifname):
        # A virtio NIC's interface hangs below <pci>/virtioN/net: take the nearest PCI address.
        path = self.sh('readlink -f /sys/class/net/%s' % ifname).strip()
        return [part for part in path.split('/') if _PCI_ADDRESS.match(part)][-1]

    def etc_checksum(self):
        listing = self.sh('find /etc /boot -xdev -type f -print0 | sort -z | xargs -0 sha256sum')
        return hashlib.sha256(listing.encode()).hexdigest()

    def kernel_log(self):
        return self.sh('journalctl -k -b --no-pager -q')

    def capture(self, name):
        """Keep a real sysfs snapshot and lspci output as unit-test fixtures (VFIO_CAPTURE=1)."""
        if os.environ.get('VFIO_CAPTURE') != '1':
            return
        target = FIXTURES / name
        target.mkdir(parents=True, exist_ok=True)
        script = (HERE.parent / 'capture_sysfs.py').read_bytes()
        result = subprocess.run(self.vm.ssh_argv('python3 -'), input=script, capture_output=True, timeout=300,
                                check=True)
        (target / 'sysfs.tar.gz').write_bytes(result.stdout)
        (target / 'lspci-Dnnk.txt').write_text(self.sh('lspci -Dnnk'))
        say('captured %s (%d KiB)' % (target.relative_to(ROOT), len(result.stdout) // 1024))


class PlaybookRun:
    def __init__(self, rc, output, seconds, log, results=()):
        self.rc, self.output, self.seconds, self.log = rc, output, seconds, log
        # Every task's full result (tests/vm/callback_plugins/vfio_results.py), in the order they ran.
        self.results = list(results)
        recap = re.search(r'changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)', output)
        self.changed, self.unreachable, self.failed = (int(g) for g in recap.groups()) if recap else (None,) * 3

    def tail(self, lines=40):
        return '\n'.join(self.output.splitlines()[-lines:])

    def result_of(self, action):
        """The result of the one task that ran the module ``action`` (its FQCN)."""
        found = [entry['result'] for entry in self.results if entry['action'] == action]
        assert len(found) == 1, (action, [entry['action'] for entry in self.results], self.tail())
        return found[0]


@pytest.fixture(scope='session')
def collections_path():
    return subprocess.run([str(ROOT / 'tools' / 'collection-link.sh'), '--collections-path'], check=True,
                          capture_output=True, text=True).stdout.strip()


@pytest.fixture(scope='session')
def base_image():
    """ensure(suite, kernel=None): build a suite's images once per session, saying how long it took."""
    ready = {}

    def ensure(suite, kernel=None):
        if (suite, kernel) not in ready:
            started = time.monotonic()
            ready[suite, kernel] = vmctl.ensure_image(build=True, suite=suite, kernel=kernel)
            say('%s base images ready in %.1f s (%s)' % (suite, time.monotonic() - started, ready[suite, kernel]))
        return ready[suite, kernel]

    return ensure


@pytest.fixture(scope='session')
def run_playbook(collections_path):
    OUTPUT.mkdir(parents=True, exist_ok=True)

    def run(guest, name, variables, check=False, playbook='passthrough.yml'):
        inventory = OUTPUT / ('%s.ini' % guest.vm.name)
        inventory.write_text(vmctl.render_inventory([guest.vm]))
        extra = OUTPUT / ('%s.vars.json' % name)
        extra.write_text(json.dumps(dict(variables, pcie_passthrough_hosts='vfio_vms')))
        results = OUTPUT / ('%s.results.json' % name)
        results.unlink(missing_ok=True)
        argv = [str(Path(sys.executable).with_name('ansible-playbook')),
                '-i', str(inventory), str(ROOT / 'playbooks' / playbook), '-e', '@%s' % extra]
        if check:
            argv += ['--check', '--diff']
        env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=collections_path, ANSIBLE_NOCOLOR='1',
                   ANSIBLE_HOST_KEY_CHECKING='False', ANSIBLE_RETRY_FILES_ENABLED='False',
                   ANSIBLE_CALLBACK_PLUGINS=str(CALLBACKS), ANSIBLE_CALLBACKS_ENABLED='vfio_results',
                   VFIO_RESULTS_FILE=str(results))
        log = OUTPUT / ('%s.log' % name)
        say('%s: ansible-playbook playbooks/%s (log: %s)' % (name, playbook, log.relative_to(ROOT)))
        started = time.monotonic()
        try:
            result = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=PLAYBOOK_TIMEOUT,
                                    check=False)
            rc, output = result.returncode, result.stdout + result.stderr
        except subprocess.TimeoutExpired as exc:
            # Keep what it printed: the log must say which task hung (a starved guest's SSH, mostly).
            rc = -1
            output = ''.join(part.decode(errors='replace') if isinstance(part, bytes) else part or ''
                             for part in (exc.stdout, exc.stderr))
            output += '\n[vm-scenario] killed after %d s\n' % PLAYBOOK_TIMEOUT
        seconds = time.monotonic() - started
        log.write_text(output)
        run_ = PlaybookRun(rc, output, seconds, log, json.loads(results.read_text()) if results.is_file() else ())
        say('%s: rc=%d changed=%s failed=%s in %.1f s' % (name, run_.rc, run_.changed, run_.failed, seconds))
        return run_

    return run


def boot(flavour, suite, nics=1, name=None, igb=0, kernel=None):
    started = time.monotonic()
    vm = vmctl.start(flavour, nics=nics, name=name, suite=suite, igb=igb, kernel=kernel)
    seconds = time.monotonic() - started
    say('%s: Debian %s %s guest with %d e1000e%s up in %.1f s'
        % (vm.name, suite, flavour, nics, ' and %d igb (QEMU 10)' % igb if igb else '', seconds))
    return Guest(vm, seconds)


@pytest.fixture(scope='module')
def guest_factory(base_image):
    """make(flavour, suite, nics, igb=0, kernel=None): boot a guest; every guest of the module stops at its end.

    The machine has 2 cores and each TCG guest wants both: a module boots its guests
    one after the other, and fixtures that share a guest across tests ask for it once.
    """
    guests = []

    def make(flavour, suite, nics=1, name=None, igb=0, kernel=None):
        base_image(suite, kernel)
        guest = boot(flavour, suite, nics, name, igb, kernel)
        guests.append(guest)
        return guest

    yield make
    for guest in guests:
        guest.vm.stop(keep_logs=True)


# What each Debian release brings, as found in the guests (issue 13); the scenarios assert it
# so a base image that drifts to other versions shows up as a failure, not as a silent change.
RELEASES = {
    'trixie': {'kernel': r'^6\.12\.\d+\+deb13-amd64$', 'python': 'Python 3.13.', 'grub': '2.12',
               'initramfs_tools': '0.148', 'virqfd_module': False},
    'bookworm': {'kernel': r'^6\.1\.0-\d+-amd64$', 'python': 'Python 3.11.', 'grub': '2.06',
                 'initramfs_tools': '0.142', 'virqfd_module': True},
}
IOMMU_LOG = re.compile(r'DMAR|AMD-Vi|iommu|IOMMU')


def release_facts(guest):
    """The versions RELEASES pins, read from the guest itself."""
    return {
        'kernel': guest.sh('uname -r').strip(),
        'python': guest.sh('python3 --version').strip(),
        'grub': guest.sh("dpkg-query -W -f '${Version}' grub-pc").strip(),
        'initramfs_tools': guest.sh("dpkg-query -W -f '${Version}' initramfs-tools").strip(),
        'etc_modules': guest.sh('test -f /etc/modules && readlink /etc/modules-load.d/modules.conf || true').strip(),
    }


def assert_release(facts, suite):
    want = RELEASES[suite]
    assert re.match(want['kernel'], facts['kernel']), facts
    assert facts['python'].startswith(want['python']), facts
    assert facts['grub'].startswith(want['grub']), facts
    assert facts['initramfs_tools'].startswith(want['initramfs_tools']), facts


def iommu_log_lines(guest):
    return [line for line in guest.kernel_log().splitlines() if IOMMU_LOG.search(line)]


def assert_vfio_modules_load(guest, suite):
    """The modules-load.d file loads cleanly on this kernel, with vfio_virqfd as the kernel has it.

    vfio_virqfd is a module on 6.1 (vfio_pci pulls it in through modules.dep) and built into
    vfio from 6.2 (CONFIG_VFIO_VIRQFD=y on 6.12): listed, it makes systemd-modules-load log
    "Failed to find module" on Debian 13, so the role must never list it.
    """
    listed = guest.sh('cat /etc/modules-load.d/vfio-passthrough.conf')
    assert 'vfio_virqfd' not in listed and 'vfio-virqfd' not in listed, listed
    assert 'vfio_pci' in listed or 'vfio-pci' in listed, listed
    assert guest.sh('systemctl is-active systemd-modules-load.service', check=False).strip() == 'active'
    unit_log = guest.sh('journalctl -b -u systemd-modules-load.service --no-pager -q')
    assert 'Failed to find module' not in unit_log, unit_log
    for module in ('vfio', 'vfio_iommu_type1', 'vfio_pci'):
        assert guest.sh('test -d /sys/module/%s && echo loaded || true' % module).strip() == 'loaded', module
    virqfd = guest.sh('test -d /sys/module/vfio_virqfd && echo loaded || true').strip() == 'loaded'
    assert virqfd == RELEASES[suite]['virqfd_module'], (suite, virqfd)
    if not RELEASES[suite]['virqfd_module']:
        config = guest.sh('grep -h "^CONFIG_VFIO_VIRQFD=" /boot/config-$(uname -r) || true').strip()
        assert config == 'CONFIG_VFIO_VIRQFD=y', config


# The VM probe (playbooks/vm_probe.yml), read from the results the vfio_results callback keeps.
VM_PROBE = 'vfio.passthrough.vm_probe'


def probe_of(run, address):
    [probe] = [p for p in run.result_of(VM_PROBE)['probes'] if p['address'] == address]
    return probe


def inner_lines(guest):
    # Its /init's lines, udhcpc's and the kernel's about the passed device; the whole console is in the result.
    return [line for line in guest['lines'] if re.search(r'vm-probe:|udhcpc|Linux version|e1000e|igbvf|iPXE', line)]


def say_probe(name, run, probe):
    guest = probe['guest']
    say('%s: playbooks/vm_probe.yml rc=%d, step wall time %.1f s (the guest itself %.1f s under %s: %s)\n'
        '  QEMU command: %s\n  QEMU held: %s; reset_method %s\n  host kernel lines:\n    %s\n'
        '  inner guest lines:\n    %s\n  summary:\n    %s'
        % (name, run.rc, run.seconds, probe['seconds'], probe['accel'], probe['accel_note'],
           ' '.join(probe['qemu_command']), probe['vfio_fd'], probe['reset_method'],
           '\n    '.join(probe['host_kernel_lines']), '\n    '.join(inner_lines(guest)),
           '\n    '.join(probe['summary'])))


def assert_nic_probe(run, probe, address, group, kernel):
    """playbooks/vm_probe.yml booted a guest inside the guest with the e1000e ``address`` (IOMMU group ``group``):
    it ran the outer guest's kernel ``kernel``, bound e1000e, saw its link up and got a DHCP lease through it."""
    assert run.rc == 0 and run.failed == 0, run.tail()
    assert probe['refusal'] is None and probe['started'] and probe['seen'], probe['summary']
    assert probe['error'] is None, probe['error']
    assert probe['group'] == group and probe['group_devices'] == [address], probe
    guest = probe['guest']
    # The inner guest runs the outer guest's own kernel.
    assert guest['kernel_line'].startswith('Linux version %s ' % kernel), guest['kernel_line']
    [device] = [d for d in guest['devices'] if d['vendor_device'] == E1000E]
    assert device['driver'] == 'e1000e', device
    [ifname] = device['interfaces']
    assert guest['links'][ifname] == 'up', guest['links']
    # The lease came through the passed NIC from the outer QEMU's user network (its DHCP server 10.0.2.2).
    assert re.fullmatch(r'lease of 10\.0\.2\.\d+ obtained from 10\.0\.2\.2', guest['lease'] or ''), guest['lease']
    argv = probe['qemu_command']
    assert argv[argv.index('-nic') + 1] == 'none', argv
    assert 'vfio-pci,host=%s' % address in argv, argv
    assert re.fullmatch(r'/proc/\d+/fd/\d+ -> /dev/vfio/%s' % group, probe['vfio_fd'] or ''), probe['vfio_fd']
    # A clean start of this emulated e1000e (reset_method pm) makes the 6.12 kernel log nothing about it (measured
    # by hand: not a line between the unbind and QEMU's exit); what it logs must not be an IOMMU fault.
    assert isinstance(probe['host_kernel_lines'], list), probe
    faults = [line for line in probe['host_kernel_lines'] if re.search(r'DMAR.*fault|DMAR:.*\[DMA|PTE Read access|IO_PAGE_FAULT', line)]
    assert not faults, faults
    assert 0 < probe['seconds'] < run.seconds, (probe['seconds'], run.seconds)
