"""`make demo`: the collection's main job on a local VM with an emulated Intel IOMMU.

A newcomer has no spare Proxmox host, so this boots a Debian 13 guest (Proxmox
VE 9's base; `--suite bookworm`, or `make demo DEMO_SUITE=bookworm`, boots
Debian 12, VE 8's) with a real kernel and real GRUB, whose IOMMU is switched
off by `intel_iommu=off`, shows the
"before" report, runs playbooks/passthrough.yml to pass its e1000e NIC through
(the role edits GRUB, the VFIO modules and the initramfs, reboots the guest
once and verifies), shows the "after" report, then hands the NIC to a throwaway
guest inside the guest with playbooks/vm_probe.yml (Debian 13: its image carries
QEMU and busybox) and shows what that inner guest saw, and stops the guest.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(HERE))

import vmctl  # noqa: E402  (tests/vm is not a package)

STARTED = time.monotonic()
# Pages to open in a browser afterwards (ignored by git and by the galaxy build).
REPORTS = ROOT / 'reports' / 'demo'


def step(message):
    print('\n==> [%4.0f s] %s' % (time.monotonic() - STARTED, message), flush=True)


def playbook(name, inventory, *extra):
    collections = subprocess.run([str(ROOT / 'tools' / 'collection-link.sh'), '--collections-path'],
                                 check=True, capture_output=True, text=True).stdout.strip()
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=collections, ANSIBLE_HOST_KEY_CHECKING='False',
               ANSIBLE_RETRY_FILES_ENABLED='False')
    argv = [str(Path(sys.executable).with_name('ansible-playbook')), '-i', str(inventory),
            str(ROOT / 'playbooks' / name), '-e', 'pcie_passthrough_hosts=vfio_vms', *extra]
    print('$ ansible-playbook ' + ' '.join(argv[1:]), flush=True)
    return subprocess.run(argv, env=env, check=False).returncode


RELEASES = {'trixie': 'Debian 13 (Proxmox VE 9)', 'bookworm': 'Debian 12 (Proxmox VE 8)'}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n', maxsplit=1)[0])
    parser.add_argument('--suite', choices=vmctl.SUITES, default=vmctl.DEFAULT_SUITE,
                        help='Debian release of the guest (default: %(default)s)')
    suite = parser.parse_args(argv).suite
    release = RELEASES[suite]
    step('Building or reusing the %s VM images (first time: about 3-6 minutes)' % release)
    vmctl.ensure_image(build=True, suite=suite)
    step('Booting a %s guest with an emulated Intel IOMMU (q35, intel-iommu) and one e1000e NIC '
         '(about 1-4 minutes under TCG)' % release)
    vm = vmctl.start('intel', nics=1, name='demo-%d' % os.getpid(), suite=suite)
    try:
        inventory = ROOT / 'tests' / 'output' / 'demo.ini'
        inventory.parent.mkdir(parents=True, exist_ok=True)
        inventory.write_text(vmctl.render_inventory([vm]))
        nic = vm.ssh('lspci -D -n -d 8086:10d3 | cut -d" " -f1').stdout.split()[0]
        print('guest kernel: %s' % vm.ssh('uname -r').stdout.strip())
        print('guest kernel command line: %s' % vm.ssh('cat /proc/cmdline').stdout.strip())
        print('passthrough candidate: %s (e1000e), management NIC: virtio-net' % nic)

        step('BEFORE: the report playbook (read-only)')
        if playbook('report.yml', inventory, '-e', 'pcie_passthrough_report_dir=%s' % (REPORTS / 'before')) != 0:
            raise SystemExit('the report playbook failed')

        step('Running the role: kernel args in GRUB, VFIO modules, initramfs, one reboot, verify '
             '(about 5-12 minutes under TCG)')
        before = vm.boot_id()
        rc = playbook('passthrough.yml', inventory, '-e', '{"pcie_passthrough_devices": ["%s"]}' % nic)
        if rc != 0:
            raise SystemExit('the passthrough playbook failed (rc=%d)' % rc)

        step('AFTER: the report playbook (read-only)')
        playbook('report.yml', inventory, '-e', 'pcie_passthrough_report_dir=%s' % (REPORTS / 'after'))
        for page in sorted(REPORTS.glob('*/*/iommu.html')):
            print('report page: %s' % page.relative_to(ROOT))

        step('Raw proof from the guest')
        print(vm.ssh('echo "cmdline:  $(cat /proc/cmdline)"; '
                     'echo "groups:   $(ls /sys/kernel/iommu_groups | wc -l)"; '
                     'echo "%s driver: $(basename $(readlink /sys/bus/pci/devices/%s/driver))"; '
                     'journalctl -k -b --no-pager -q | grep -E "DMAR: IOMMU enabled|Default domain type|DMAR-IR"'
                     % (nic, nic)).stdout)
        print('rebooted: %s (boot id %s -> %s)' % (before != vm.boot_id(), before[:8], vm.boot_id()[:8]))

        if suite == 'trixie':
            step('The device in a VM: playbooks/vm_probe.yml boots a throwaway guest inside this guest with the '
                 'e1000e only (-nic none) and asks for a DHCP lease through it (TCG inside TCG: about 3-20 minutes)')
            # The summary it prints is what the inner guest saw: its kernel, the device, its driver and link,
            # the lease; and the host side: the /dev/vfio file QEMU held, the reset method, kernel lines.
            rc = playbook('vm_probe.yml', inventory, '-e', '{"vm_probe_devices": ["%s"], "vm_probe_dhcp": true}' % nic)
            if rc != 0:
                raise SystemExit('the vm_probe playbook failed (rc=%d)' % rc)
    finally:
        step('Stopping the guest')
        vm.stop()
    step('Done: the e1000e is on vfio-pci, ready to be given to a VM%s.'
         % (', and a VM booted with it saw it' if suite == 'trixie' else ''))


if __name__ == '__main__':
    main()
