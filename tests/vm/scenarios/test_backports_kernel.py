"""Debian 13 with two kernels: Debian's 6.12 and a trixie-backports line that GRUB boots by default.

A Proxmox VE 9.2 host boots a 7.0 kernel and keeps older ones installed. This guest has Debian's 6.12
and the backports kernel of LINE (build-image.sh --kernel): the Intel converge from intel_iommu=off with
exactly one reboot, the rerun with 0 changed, and verify. Everything the collection judges per kernel
is shown for both kernels, read from the guest itself: each initramfs holds the vfio modules and the
role's modprobe.d files; initramfs_info lists both images; kernel_cmdline measures the line against
each kernel's cmdline_size; the host-stack closure (iommu_facts' host_critical_modules) names both.
What the newer line changes for the collection (vfio modules built in or not, CONFIG_VFIO_DEVICE_CDEV,
CONFIG_IOMMUFD, /dev/vfio/devices) is printed for both kernels.

LINE is 7.3, not 7.0: on 2026-12-06 trixie-backports (Release of 2026-12-04) lists
linux-image-7.0.4..7.0.13+deb13-amd64 but none of their linux-base-7.0.x and linux-modules-7.0.x, so
no 7.0 kernel installs (build-image.sh --kernel 7.0 fails saying so); 7.3.4 is the newest line it
carries whole. Set LINE = '7.0' once the archive has it again.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import E1000E, OUTPUT, assert_vfio_modules_load, iommu_log_lines, say

LINE = '7.3'
SUITE = 'trixie'
DEBIAN_KERNEL = re.compile(r'^6\.12\.\d+\+deb13-amd64$')
BACKPORTS_KERNEL = re.compile(r'^%s\.\d+\+deb13-amd64$' % re.escape(LINE))
# The modules vfio passthrough involves; each kernel has them as a .ko, built in, or not at all.
VFIO_MODULES = ('vfio', 'vfio_iommu_type1', 'vfio_pci_core', 'vfio_pci', 'vfio_virqfd', 'iommufd')
CONFIG = re.compile(r'^(# )?CONFIG_(VFIO|IOMMUFD)[A-Z0-9_]*( is not set|=.*)$')
ROLE_MODPROBE_FILES = ('etc/modprobe.d/vfio-passthrough.conf', 'etc/modprobe.d/vfio-passthrough-address.conf')


def kernel_inventory(guest, release):
    """{module: 'module'|'builtin'|'absent'} and the vfio/iommufd config lines of one installed kernel."""
    base = '/lib/modules/%s' % release
    dep = guest.sh("cut -d: -f1 %s/modules.dep" % base).split()
    builtin = guest.sh('cat %s/modules.builtin' % base).split()

    def names(paths):
        return {re.sub(r'\.ko(\.[a-z]+)?$', '', path.rsplit('/', 1)[-1]).replace('-', '_') for path in paths}

    loadable, built_in = names(dep), names(builtin)
    modules = {name: 'builtin' if name in built_in else 'module' if name in loadable else 'absent'
               for name in VFIO_MODULES}
    config = [line for line in guest.sh('cat /boot/config-%s' % release).splitlines() if CONFIG.match(line)]
    return {'modules': modules, 'config': config}


def config_value(config, name):
    for line in config:
        if line.startswith(name + '='):
            return line.split('=', 1)[1]
        if line == '# %s is not set' % name:
            return 'n'
    return None


def ansible_module(guest, collections_path, module, args, check=False):
    """Run one collection module ad hoc against the guest; its result as a dict.

    ``--tree`` writes the result as JSON per host with a callback of ansible-core itself (its ``json``
    stdout callback moved to ansible.posix in 2.19, which the test venv need not have).
    """
    tree = OUTPUT / ('%s-linux%s-%s' % (SUITE, LINE, module))
    shutil.rmtree(tree, ignore_errors=True)
    argv = [str(Path(sys.executable).with_name('ansible')), 'vfio_vms', '-i', str(guest.vm.inventory_path),
            '-m', 'vfio.passthrough.%s' % module, '--tree', str(tree)]
    # An empty JSON object is taken for raw parameters ("does not support raw params"): no -a at all then.
    argv += ['-a', json.dumps(args)] if args else []
    argv += ['--check'] if check else []
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=collections_path, ANSIBLE_HOST_KEY_CHECKING='False',
               ANSIBLE_NOCOLOR='1')
    result = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=900, check=False)
    try:
        host = json.loads((tree / guest.vm.name).read_text())
    except (OSError, ValueError) as exc:
        raise AssertionError('ansible %s gave no result (%s):\n%s%s' % (module, exc, result.stdout, result.stderr))
    assert result.returncode == 0 and not host.get('failed'), (result.returncode, host)
    return host


@pytest.fixture(scope='module')
def twin_kernels(guest_factory, run_playbook, collections_path):
    guest = guest_factory('intel', SUITE, nics=1, kernel=LINE)
    guest.enable_boot_count()
    releases = guest.sh('ls /lib/modules | sort -V').split()
    state = {
        'guest': guest, 'releases': releases, 'nic': guest.pci_by_id(E1000E)[0],
        'uname_before': guest.sh('uname -r').strip(), 'cmdline_before': guest.sh('cat /proc/cmdline').strip(),
        'packages': guest.sh("dpkg-query -W -f '${Package} ${Version} ${Status}\\n' 'linux-image-*'"),
        'sources': guest.sh('cat /etc/apt/sources.list.d/trixie-backports.sources'),
        'grub_entries': guest.sh("grep -E \"^\\s*(menuentry|submenu|linux)\\s\" /boot/grub/grub.cfg | cut -c1-140"),
        'inventory': {release: kernel_inventory(guest, release) for release in releases},
    }
    say('%s linux %s guest before: uname -r %s; /proc/cmdline: %s\n  kernels: %s\n  packages:\n%s'
        % (SUITE, LINE, state['uname_before'], state['cmdline_before'], releases, state['packages']))
    state['boot_before'], state['boots_before'] = guest.boot_id(), guest.boots()
    state['run'] = run_playbook(guest, '%s-linux%s-converge' % (SUITE, LINE),
                                {'pcie_passthrough_devices': [state['nic']]})
    state['boot_after'] = guest.boot_id()
    if state['run'].rc == 0:
        inputs = ['/etc/modprobe.d/vfio-passthrough.conf', '/etc/modprobe.d/vfio-passthrough-address.conf',
                  '/etc/initramfs-tools/modules', '/etc/initramfs-tools/hooks/vfio-passthrough',
                  '/usr/local/sbin/vfio-passthrough-bind']
        state['initramfs_info'] = ansible_module(guest, collections_path, 'initramfs_info', {'paths': inputs})
        state['kernel_cmdline'] = ansible_module(guest, collections_path, 'kernel_cmdline',
                                                 {'present': ['intel_iommu=on', 'iommu=pt']}, check=True)
        state['iommu_facts'] = ansible_module(guest, collections_path, 'iommu_facts', {})
    yield state
    guest.vm.stop(keep_logs=True)


def test_both_kernels_are_installed_and_grub_boots_the_backports_one(twin_kernels):
    releases, uname = twin_kernels['releases'], twin_kernels['uname_before']
    assert len(releases) == 2 and DEBIAN_KERNEL.match(releases[0]) and BACKPORTS_KERNEL.match(releases[1]), releases
    assert uname == releases[1], (uname, releases)
    # Debian's 10_linux puts the newest version first: the default entry.
    linux_lines = [line for line in twin_kernels['grub_entries'].splitlines() if line.strip().startswith('linux')]
    assert '/vmlinuz-%s ' % releases[1] in linux_lines[0], linux_lines
    assert any('/vmlinuz-%s ' % releases[0] in line for line in linux_lines), linux_lines
    installed = [line.split()[:2] for line in twin_kernels['packages'].splitlines() if line.endswith('installed')]
    assert ['linux-image-%s' % releases[1]] in [row[:1] for row in installed], installed
    assert ['linux-image-%s' % releases[0]] in [row[:1] for row in installed], installed
    assert 'Suites: trixie-backports' in twin_kernels['sources'], twin_kernels['sources']
    say('linux %s guest: installed kernel packages:\n%s  GRUB entries:\n%s'
        % (LINE, twin_kernels['packages'], twin_kernels['grub_entries']))


def test_converges_with_exactly_one_reboot_and_stays_on_the_backports_kernel(twin_kernels):
    guest, run = twin_kernels['guest'], twin_kernels['run']
    assert run.rc == 0, run.tail()
    assert 'intel_iommu=off' in twin_kernels['cmdline_before'].split()
    cmdline = guest.sh('cat /proc/cmdline').strip()
    assert {'intel_iommu=on', 'iommu=pt'} <= set(cmdline.split()) and 'intel_iommu=off' not in cmdline.split(), cmdline
    uname = guest.sh('uname -r').strip()
    assert uname == twin_kernels['uname_before'] == twin_kernels['releases'][1], uname
    assert twin_kernels['boot_after'] != twin_kernels['boot_before']
    assert guest.boots() == twin_kernels['boots_before'] + 1, 'the role must reboot exactly once'
    assert set(guest.sh('cat /sys/kernel/iommu_groups/*/type').split()) == {'identity'}
    log = '\n'.join(iommu_log_lines(guest))
    for line in ('DMAR: IOMMU enabled', 'Default domain type: Passthrough', 'DMAR-IR: Enabled IRQ remapping'):
        assert line in log, line
    assert guest.driver(twin_kernels['nic']) == 'vfio-pci'
    assert guest.driver(guest.nic_address(guest.default_route_dev())) == 'virtio-pci'
    guest.capture('%s-linux%s-intel-after' % (SUITE, LINE))
    say('linux %s converge (%.1f s): uname -r before %s, after %s\n  /proc/cmdline before: %s\n'
        '  /proc/cmdline after:  %s\n  IOMMU kernel lines:\n    %s\n  %s -> %s\n  boot ids %s -> %s'
        % (LINE, run.seconds, twin_kernels['uname_before'], uname, twin_kernels['cmdline_before'], cmdline,
           log.replace('\n', '\n    '), twin_kernels['nic'], guest.driver(twin_kernels['nic']),
           twin_kernels['boot_before'], twin_kernels['boot_after']))


def test_every_installed_kernel_has_an_initramfs_with_the_vfio_setup(twin_kernels):
    guest = twin_kernels['guest']
    assert twin_kernels['run'].rc == 0, twin_kernels['run'].tail()
    shown = []
    for release in twin_kernels['releases']:
        listing = guest.sh('lsinitramfs /boot/initrd.img-%s' % release).split()
        modules = twin_kernels['inventory'][release]['modules']
        for module in ('vfio', 'vfio_iommu_type1', 'vfio_pci_core', 'vfio_pci'):
            if modules[module] == 'module':
                assert any(re.search(r'/%s\.ko' % module.replace('_', '[-_]'), path) for path in listing), \
                    (release, module)
            else:
                assert modules[module] == 'builtin', (release, module, modules)
        # The by-address file exists only when a device is bound by address (this guest's single e1000e goes by ID).
        written = [path for path in ROLE_MODPROBE_FILES if guest.sh('test -e /%s && echo yes || true' % path).strip()]
        assert ROLE_MODPROBE_FILES[0] in written, written
        for path in written:
            assert path in listing or 'usr/' + path in listing, (release, path)
        shown.append('%s: %s' % (release, ' '.join(sorted(p for p in listing if 'vfio' in p))))
    # The same answer from the collection: both images found, none older than what goes into them.
    info = twin_kernels['initramfs_info']
    assert sorted(info['images']) == sorted('/boot/initrd.img-%s' % r for r in twin_kernels['releases']), info
    assert info['stale'] is False and info['newer'] == [], info
    say('initramfs per kernel (vfio entries):\n  %s\n  initramfs_info: images %s, stale %s'
        % ('\n  '.join(shown), info['images'], info['stale']))


def test_kernel_line_is_measured_against_every_installed_kernel(twin_kernels):
    assert twin_kernels['run'].rc == 0, twin_kernels['run'].tail()
    result = twin_kernels['kernel_cmdline']
    assert result['changed'] is False, result
    lines = result['kernel_lines']
    assert sorted(entry['image'] for entry in lines) == sorted(
        '/boot/vmlinuz-%s' % release for release in twin_kernels['releases']), lines
    for entry in lines:
        assert entry['bootloader'] == 'grub' and isinstance(entry['cmdline_size'], int), entry
        assert 0 < entry['length'] <= entry['cmdline_size'], entry
    say('kernel_cmdline kernel_lines: %s' % lines)


def test_host_stack_closure_covers_every_installed_kernel(twin_kernels):
    assert twin_kernels['run'].rc == 0, twin_kernels['run'].tail()
    needs = twin_kernels['iommu_facts']['ansible_facts']['iommu']['host_critical_modules']
    text = '\n'.join(sentence for sentences in needs.values() for sentence in sentences)
    for release in twin_kernels['releases']:
        assert release in text, (release, text)
    assert 'virtio_net' in needs, sorted(needs)
    say('host_critical_modules (%d modules):\n  %s' % (len(needs), text.replace('\n', '\n  ')))


def test_modules_load_file_suits_every_installed_kernel(twin_kernels):
    guest = twin_kernels['guest']
    assert twin_kernels['run'].rc == 0, twin_kernels['run'].tail()
    assert_vfio_modules_load(guest, SUITE)
    listed = [line.split()[0] for line in guest.sh('cat /etc/modules-load.d/vfio-passthrough.conf').splitlines()
              if line.strip() and not line.startswith('#')]
    for release in twin_kernels['releases']:
        for module in listed:
            # modprobe resolves it for that kernel (a .ko, or built in): nothing listed is missing there.
            guest.sh('modprobe -S %s --show-depends %s' % (release, module))


def test_what_the_backports_line_changes_for_the_collection(twin_kernels):
    guest = twin_kernels['guest']
    old, new = twin_kernels['releases']
    inventory = twin_kernels['inventory']
    rows = ['%-18s %-12s %-12s' % ('module', old.split('+')[0], new.split('+')[0])]
    rows += ['%-18s %-12s %-12s' % (m, inventory[old]['modules'][m], inventory[new]['modules'][m])
             for m in VFIO_MODULES]
    only_old = sorted(set(inventory[old]['config']) - set(inventory[new]['config']))
    only_new = sorted(set(inventory[new]['config']) - set(inventory[old]['config']))
    cdev = {r: config_value(inventory[r]['config'], 'CONFIG_VFIO_DEVICE_CDEV') for r in (old, new)}
    iommufd = {r: config_value(inventory[r]['config'], 'CONFIG_IOMMUFD') for r in (old, new)}
    devices = guest.sh('ls -l /dev/vfio/ /dev/vfio/devices/ 2>&1 || true')
    attrs = guest.sh('cd /sys/bus/pci/devices/%s && ls -d reset_method driver_override iommu_group '
                     'iommu_group/type vfio-dev vfio-dev/* 2>&1; cat reset_method; readlink driver'
                     % twin_kernels['nic'], check=False)
    say('what %s changes vs %s:\n  %s\n  config only in %s:\n    %s\n  config only in %s:\n    %s\n'
        '  CONFIG_VFIO_DEVICE_CDEV: %s\n  CONFIG_IOMMUFD: %s\n  /dev/vfio (running %s):\n%s\n  %s sysfs:\n%s\n'
        '  all vfio/iommufd config lines of %s:\n    %s\n  of %s:\n    %s'
        % (new, old, '\n  '.join(rows), old, '\n    '.join(only_old) or '-', new, '\n    '.join(only_new) or '-',
           cdev, iommufd, new, devices, twin_kernels['nic'], attrs, old, '\n    '.join(inventory[old]['config']),
           new, '\n    '.join(inventory[new]['config'])))
    for release in (old, new):
        modules = inventory[release]['modules']
        # What the collection relies on in every kernel it supports: vfio-pci is loadable or built in,
        # and vfio_virqfd is never a module to list (built into vfio since 6.2).
        assert modules['vfio_pci'] != 'absent' and modules['vfio'] != 'absent', (release, modules)
        assert modules['vfio_virqfd'] != 'module', (release, modules)
    # A per-device character device exists for the vfio-bound NIC exactly where the running kernel has CDEV.
    has_cdev_node = 'vfio0' in devices
    assert has_cdev_node == (cdev[new] == 'y'), (cdev, devices)


def test_second_run_changes_nothing_and_rebuilds_no_initramfs(twin_kernels, run_playbook):
    guest = twin_kernels['guest']
    assert twin_kernels['run'].rc == 0, twin_kernels['run'].tail()
    boot, images = guest.boot_id(), guest.sh('stat -c "%n %Y" /boot/initrd.img-*')
    run = run_playbook(guest, '%s-linux%s-rerun' % (SUITE, LINE), {'pcie_passthrough_devices': [twin_kernels['nic']]})
    assert run.rc == 0 and run.changed == 0, run.tail()
    assert guest.boot_id() == boot
    # Neither kernel's initramfs was rebuilt: both were already as configured.
    assert guest.sh('stat -c "%n %Y" /boot/initrd.img-*') == images
    say('linux %s rerun (%.1f s): %s; boot id %s unchanged; initramfs mtimes unchanged:\n  %s'
        % (LINE, run.seconds, [line.strip() for line in run.output.splitlines() if 'changed=' in line], boot,
           images.strip().replace('\n', '\n  ')))
