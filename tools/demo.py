"""`make demo`: the collection's main job on a local VM with an emulated Intel IOMMU.

A newcomer has no spare Proxmox host, so this boots a Debian 12 guest (real
kernel, real GRUB) whose IOMMU is switched off by `intel_iommu=off`, shows the
"before" report, runs playbooks/passthrough.yml to pass its e1000e NIC through
(the role edits GRUB, the VFIO modules and the initramfs, reboots the guest
once and verifies), shows the "after" report, and stops the guest.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / 'tests' / 'vm'))

import vmctl  # noqa: E402

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


def main():
    step('Building or reusing the Debian 12 VM images (first time: about 2-4 minutes)')
    vmctl.ensure_image(build=True)
    step('Booting a guest with an emulated Intel IOMMU (q35, intel-iommu) and one e1000e NIC '
         '(about 30-60 s under TCG)')
    vm = vmctl.start('intel', nics=1, name='demo-%d' % os.getpid())
    try:
        inventory = ROOT / 'tests' / 'output' / 'demo.ini'
        inventory.parent.mkdir(parents=True, exist_ok=True)
        inventory.write_text(vmctl.render_inventory([vm]))
        nic = vm.ssh('lspci -D -n -d 8086:10d3 | cut -d" " -f1').stdout.split()[0]
        print('guest kernel command line: %s' % vm.ssh('cat /proc/cmdline').stdout.strip())
        print('passthrough candidate: %s (e1000e), management NIC: virtio-net' % nic)

        step('BEFORE: the report playbook (read-only)')
        if playbook('report.yml', inventory, '-e', 'pcie_passthrough_report_dir=%s' % (REPORTS / 'before')) != 0:
            raise SystemExit('the report playbook failed')

        step('Running the role: kernel args in GRUB, VFIO modules, initramfs, one reboot, verify '
             '(about 3-5 minutes under TCG)')
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
    finally:
        step('Stopping the guest')
        vm.stop()
    step('Done: the e1000e is on vfio-pci, ready to be given to a VM.')


if __name__ == '__main__':
    main()
