"""driver_blacklist end to end on kernel-shaped fake hosts (tests/unit/sysfs_builder.py)."""

from __future__ import annotations

import shutil
import stat
import sys
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ansible_collections.vfio.passthrough.plugins.modules import driver_blacklist
from ansible_collections.vfio.passthrough.plugins.module_utils.modprobe._modprobe import block_markers

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from module_runner import run_module  # noqa: E402
from tree_snapshot import tree_snapshot  # noqa: E402
from depmod_fixtures import DEB12, DEB13, install_kernels  # noqa: E402
from sysfs_builder import amd_twin_nic_host, intel_gpu_host, iommu_off_host  # noqa: E402

FIXTURES = Path(__file__).resolve().parents[3] / 'fixtures' / 'modprobe'
HEADER = b'# Managed by Ansible (vfio.passthrough.driver_blacklist): manual edits will be overwritten\n'
BEGIN, END = block_markers('driver_blacklist')
HOSTS = {'intel': intel_gpu_host, 'amd': amd_twin_nic_host, 'vm': iommu_off_host}

FAKE_UPDATE_INITRAMFS = """#!/bin/sh
echo "$@" >> "{log}"
echo "initramfs says hi"
echo "no space left on device" >&2
exit $(cat "{rc}")
"""


class Machine:
    """A fake host root (sysfs, procfs, etc/modprobe.d) and a fake update-initramfs."""

    def __init__(self, base, kind='intel'):
        self.base = Path(base)
        self.root = self.base / 'root'
        HOSTS[kind](self.root)
        self.modprobe_dir = self.root / 'etc/modprobe.d'
        self.modprobe_dir.mkdir(parents=True)
        self.path = self.modprobe_dir / 'vfio-passthrough-blacklist.conf'
        shutil.copy(FIXTURES / 'pve-blacklist.conf', self.modprobe_dir / 'pve-blacklist.conf')
        self.log = self.base / 'update-initramfs.log'
        self.rc = self.base / 'update-initramfs.rc'
        self.rc.write_text('0')
        (self.base / 'bin').mkdir()
        fake = self.base / 'bin/update-initramfs'
        fake.write_text(FAKE_UPDATE_INITRAMFS.format(log=self.log, rc=self.rc))
        fake.chmod(0o755)

    def run(self, drivers, check_mode=False, diff=False, **extra):
        # root moves only what is read (sys/, proc/); where to write is said explicitly.
        args = dict(drivers=drivers, root=str(self.root), path=str(self.path), modprobe_dir=str(self.modprobe_dir))
        args.update(extra)
        return run_module(driver_blacklist.main, args, check_mode=check_mode, diff=diff)

    def snapshot(self):
        return tree_snapshot(self.root / 'etc')

    def update_calls(self):
        return self.log.read_text().splitlines() if self.log.exists() else []


def warning_texts(result):
    """Warning messages, whether returned as strings or (ansible-core 2.19) as event dicts."""
    return [w if isinstance(w, str) else w['event']['msg'] for w in result.get('warnings', [])]


@pytest.fixture
def make(tmp_path, monkeypatch):
    # Our fake comes first on PATH; a real update-initramfs must never run from a test.
    monkeypatch.setenv('PATH', '%s:/usr/bin:/bin' % (tmp_path / 'bin'))
    return lambda kind='intel': Machine(tmp_path, kind)


@pytest.fixture
def intel(make):
    return make('intel')


def test_first_run_writes_golden_bytes(intel):
    result = intel.run(['ixgbe', 'nouveau'], hard=True)
    assert result['changed'] is True
    assert intel.path.read_bytes() == (FIXTURES / 'blacklist-hard.expected').read_bytes()
    assert stat.S_IMODE(intel.path.stat().st_mode) == 0o644
    assert result['drivers'] == ['ixgbe', 'nouveau']
    assert result['in_use'] == {'ixgbe': [], 'nouveau': [{'address': '0000:01:00.0', 'interface': None}]}
    assert result['already_blacklisted'] == {}
    assert result['files_changed'] == [str(intel.path)]
    assert result['initramfs_updated'] is True
    assert result['reboot_required'] is True
    assert result['command'] == [str(intel.base / 'bin/update-initramfs'), '-u', '-k', 'all']
    assert intel.update_calls() == ['-u -k all']
    assert 'diff' not in result


def test_second_run_changes_and_touches_nothing(intel):
    intel.run(['nouveau', 'snd-hda-intel'])
    before = intel.snapshot()
    result = intel.run(['snd_hda_intel', 'nouveau'], diff=True)
    assert result['changed'] is False
    assert result['diff'] == []
    assert result['command'] is None
    assert result['reboot_required'] is False
    assert intel.snapshot() == before
    assert intel.update_calls() == ['-u -k all']


def test_check_mode_writes_nothing_and_reports_the_real_diff(intel):
    before = intel.snapshot()
    checked = intel.run(['nouveau'], check_mode=True, diff=True)
    assert intel.snapshot() == before
    assert intel.update_calls() == []
    assert checked['changed'] is True and checked['command'] is None and checked['initramfs_updated'] is False
    real = intel.run(['nouveau'], diff=True)
    assert checked['diff'] == real['diff'] == [{
        'before_header': '%s (absent)' % intel.path, 'after_header': str(intel.path),
        'before': '', 'after': (HEADER + b'blacklist nouveau\n').decode()}]
    assert checked['files_changed'] == real['files_changed']


def test_already_blacklisted_elsewhere_is_reported_not_repeated(intel):
    (intel.modprobe_dir / 'snd.conf').write_text('blacklist snd-hda-intel # by hand\n')
    (intel.modprobe_dir / 'ignored.conf.dpkg-old').write_text('blacklist nouveau\n')
    result = intel.run(['nvidiafb', 'snd_hda_intel', 'nouveau'])
    assert result['already_blacklisted'] == {'nvidiafb': str(intel.modprobe_dir / 'pve-blacklist.conf'),
                                             'snd_hda_intel': str(intel.modprobe_dir / 'snd.conf')}
    assert intel.path.read_bytes() == HEADER + b'blacklist nouveau\n'


def test_all_already_blacklisted_writes_no_file(intel):
    result = intel.run(['nvidiafb'])
    assert result['changed'] is False
    assert not intel.path.exists()
    assert intel.update_calls() == []


def test_hard_still_adds_install_for_a_driver_blacklisted_elsewhere(intel):
    intel.run(['nvidiafb'], hard=True)
    assert intel.path.read_bytes() == HEADER + b'install nvidiafb /bin/false\n'


def test_absent_deletes_owned_file_only(intel):
    intel.run(['nouveau'])
    pve = (intel.modprobe_dir / 'pve-blacklist.conf').read_bytes()
    result = intel.run(['nouveau'], state='absent')
    assert result['changed'] is True
    assert not intel.path.exists()
    assert (intel.modprobe_dir / 'pve-blacklist.conf').read_bytes() == pve
    assert intel.run(['nouveau'], state='absent')['changed'] is False


def test_shared_file_keeps_admin_lines_byte_for_byte(intel):
    shared = intel.modprobe_dir / 'blacklist.conf'
    admin = b'# from the Proxmox wiki\nblacklist radeon\noptions kvm ignore_msrs=1'  # no final newline
    shared.write_bytes(admin)
    intel.run(['radeon', 'nouveau'], path=str(shared))
    assert shared.read_bytes() == admin + ('\n' + BEGIN + '\nblacklist nouveau\n' + END + '\n').encode()
    intel.run(['radeon', 'nouveau'], path=str(shared), state='absent')
    assert shared.read_bytes() == admin + b'\n'


@pytest.mark.parametrize('kind, driver, address, interface, why', [
    ('intel', 'e1000e', '0000:00:1f.6', 'eno1', 'NIC eno1 is a port of vmbr0, which carries the default route'),
    ('intel', 'ahci', '0000:00:17.0', 'none', 'storage controller of / (/dev/mapper/pve-root)'),
    ('amd', 'r8169', '0000:07:00.0', 'enp7s0', 'NIC enp7s0 carries the default route'),
    ('amd', 'nvme', '0000:08:00.0', 'none', 'storage controller of /boot/efi (/dev/nvme0n1p2)'),
    # the interface's own driver on top of virtio-pci, and virtio-pci itself
    ('vm', 'virtio_net', '0000:00:02.0', 'ens2', 'NIC ens2 carries the default route'),
    ('vm', 'virtio-pci', '0000:00:04.0', 'none', 'storage controller of / (/dev/vda1)'),
])
@pytest.mark.parametrize('check_mode', [False, True])
def test_host_critical_driver_is_refused_and_nothing_written(make, kind, driver, address, interface, why,
                                                             check_mode):
    machine = make(kind)
    before = machine.snapshot()
    result = machine.run([driver], check_mode=check_mode)
    assert result['failed'] is True
    name = driver.replace('-', '_')
    assert '%s drives %s (interface %s), which is host-critical: ' % (name, address, interface) in result['msg']
    assert why in result['msg']
    assert 'force=true' in result['msg']
    assert machine.snapshot() == before
    assert machine.update_calls() == []


def test_force_blacklists_anyway_with_a_warning(intel):
    result = intel.run(['e1000e'], force=True)
    assert result['changed'] is True
    assert intel.path.read_bytes() == HEADER + b'blacklist e1000e\n'
    assert warning_texts(result) == [
        'force=true: blacklisting anyway, although e1000e drives 0000:00:1f.6 (interface eno1), which is '
        'host-critical: NIC eno1 is a port of vmbr0, which carries the default route']


@pytest.mark.parametrize('kind, drivers, in_use', [
    ('amd', ['igb'], {'igb': [{'address': '0000:05:00.0', 'interface': 'enp5s0'},
                              {'address': '0000:06:00.0', 'interface': 'enp6s0'}]}),
    ('vm', ['e1000e'], {'e1000e': [{'address': '0000:00:03.0', 'interface': 'ens3'}]}),
    ('intel', ['nouveau', 'snd_hda_intel'], {'nouveau': [{'address': '0000:01:00.0', 'interface': None}],
                                             'snd_hda_intel': [{'address': '0000:01:00.1', 'interface': None}]}),
])
def test_passthrough_candidates_are_allowed_and_reported(make, kind, drivers, in_use):
    machine = make(kind)
    result = machine.run(drivers)
    assert result['changed'] is True
    assert result['in_use'] == in_use
    assert warning_texts(result) == []


def test_absent_is_never_refused(intel):
    intel.run(['e1000e'], force=True)
    result = intel.run(['e1000e'], state='absent')
    assert result['changed'] is True
    assert not intel.path.exists()


def test_protect_addresses_and_root_reach_the_host_critical_verdict(intel, monkeypatch):
    """On a live host the verdict uses protect_addresses; a fake root cannot run ``ip``,
    so this checks what the module hands over and how it reports the answer."""
    seen = []

    def verdict(module, root, protect_addresses, interfaces=None, kernels=None):
        seen.append((root.root, protect_addresses))
        return {'devices': {'0000:01:00.0': ['NIC x holds 192.0.2.10, a protected address']}, 'modules': {}}

    monkeypatch.setattr(driver_blacklist, 'collect_host_verdict', verdict)
    result = intel.run(['nouveau'], protect_addresses=['192.0.2.10', 'pve1.example.org'])
    assert seen == [(str(intel.root), ['192.0.2.10', 'pve1.example.org'])]
    assert result['failed'] is True
    assert 'nouveau drives 0000:01:00.0 (interface none), which is host-critical: NIC x holds 192.0.2.10' \
        in result['msg']


def test_failing_update_initramfs_restores_the_file(intel):
    intel.path.write_bytes(HEADER + b'blacklist nouveau\n')
    intel.path.chmod(0o640)
    before = intel.snapshot()
    intel.rc.write_text('1')
    result = intel.run(['nouveau', 'snd_hda_intel'])
    assert result['failed'] is True
    assert result['rc'] == 1
    assert result['stderr'].strip() == 'no space left on device'
    assert result['stdout'].strip() == 'initramfs says hi'
    assert {k: (v[0], v[3]) for k, v in intel.snapshot().items()} == {k: (v[0], v[3]) for k, v in before.items()}


def test_failing_update_initramfs_removes_a_new_file(intel):
    intel.rc.write_text('2')
    result = intel.run(['nouveau'])
    assert result['failed'] is True and result['rc'] == 2
    assert not intel.path.exists()


@pytest.mark.parametrize('args, needle', [
    (dict(drivers=['nouveau', 'nvidia drm']), "invalid driver name 'nvidia drm'"),
    (dict(drivers=['../../bin/sh']), "'../../bin/sh'"),
    (dict(drivers=['nouveau', '']), "''"),
    (dict(drivers=[]), 'drivers is empty'),
    (dict(drivers=['nouveau'], protect_addresses=['192.0.2.1', 'not an address!']), "'not an address!'"),
])
def test_bad_input_fails_and_touches_nothing(intel, args, needle):
    before = intel.snapshot()
    result = run_module(driver_blacklist.main, dict(args, root=str(intel.root)))
    assert result['failed'] is True
    assert needle in result['msg']
    assert intel.snapshot() == before


def test_broken_markers_in_shared_file_fail_before_writing(intel):
    shared = intel.modprobe_dir / 'blacklist.conf'
    shared.write_text('blacklist radeon\n' + BEGIN + '\nblacklist nouveau\n')
    before = intel.snapshot()
    result = intel.run(['nouveau'], path=str(shared))
    assert result['failed'] is True
    assert 'line 2 opens a vfio.passthrough.driver_blacklist block with no END marker' in result['msg']
    assert intel.snapshot() == before


_names = st.lists(st.sampled_from(['nouveau', 'snd-hda-intel', 'ixgbe', 'nvidiafb', 'radeon', 'i40e']),
                  min_size=1, max_size=4)
_admin = st.lists(st.sampled_from(['# note', '', 'blacklist radeon', 'options kvm ignore_msrs=1',
                                   'blacklist ixgbe  # x', 'install i40e /bin/true']), max_size=4)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(drivers=_names, admin=_admin, hard=st.booleans())
def test_property_twice_equals_once_and_admin_lines_survive(monkeypatch, drivers, admin, hard):
    with tempfile.TemporaryDirectory() as base:
        monkeypatch.setenv('PATH', '%s/bin:/usr/bin:/bin' % base)
        machine = Machine(base)
        shared = machine.modprobe_dir / 'blacklist.conf'
        admin_text = ''.join(line + '\n' for line in admin)
        shared.write_text(admin_text)
        first = machine.run(drivers, path=str(shared), hard=hard)
        assert 'failed' not in first
        snap = machine.snapshot()
        assert machine.run(drivers, path=str(shared), hard=hard)['changed'] is False
        assert machine.snapshot() == snap
        assert shared.read_text().startswith(admin_text)
        machine.run(drivers, path=str(shared), state='absent')
        if admin_text or not first['changed']:
            assert shared.read_text() == admin_text
        else:
            # An empty file that then held only our block is removed, not left empty.
            assert not shared.exists()


# --- the module stack under the root disk and the management NIC (issue 12, class 1) ---


def btrfs_vm(make):
    """The virtio guest with btrfs on / and Debian 12 and 13 installed."""
    vm = make('vm')
    vm.root.joinpath('proc/mounts').write_text('/dev/vda1 / btrfs rw,relatime 0 0\n')
    install_kernels(vm.root, DEB12, DEB13)
    return vm


@pytest.mark.parametrize('drivers, hard, fragment', [
    (['crc32c_generic'], True,
     'crc32c_generic is needed by the host: crc32c_generic: needed by btrfs (filesystem of /) via softdep of %s, %s'
     % (DEB12, DEB13)),
    (['libcrc32c'], True, 'libcrc32c: needed by btrfs (filesystem of /) via modules.dep of %s, %s' % (DEB12, DEB13)),
    (['virtio_ring'], True, 'virtio_ring: needed by virtio_blk (driver of vda under /) via modules.dep of %s' % DEB12),
    (['net_failover'], True, 'net_failover: needed by virtio_net (runs ens2, which carries the default route) via '
                             'modules.dep of %s, %s' % (DEB12, DEB13)),
    (['btrfs'], False, 'btrfs is needed by the host: btrfs: filesystem of / (in %s, %s)' % (DEB12, DEB13)),
    (['virtio_blk'], False, 'virtio_blk: driver of vda under / (in %s, %s)' % (DEB12, DEB13)),
])
def test_blacklisting_the_root_disks_module_stack_is_refused_and_writes_nothing(make, drivers, hard, fragment):
    vm = btrfs_vm(make)
    before = vm.snapshot()
    for check_mode in (True, False):      # the role's pre-flight dry run refuses exactly as the real run
        result = vm.run(drivers, hard=hard, check_mode=check_mode)
        assert result['failed'] is True
        assert fragment in result['msg'], result['msg']
        assert 'Set force=true to do it anyway' in result['msg']
    assert vm.snapshot() == before
    assert vm.update_calls() == []


def test_a_plain_blacklist_of_a_dependency_warns_instead(make):
    vm = btrfs_vm(make)
    result = vm.run(['crc32c_generic'])
    assert result['changed'] is True
    assert any(w.startswith('blacklist crc32c_generic does not stop it loading as a dependency, which the host '
                            'relies on: crc32c_generic: needed by btrfs') for w in warning_texts(result))


def test_a_builtin_module_is_said_to_be_unstoppable_but_not_refused(make):
    vm = btrfs_vm(make)
    result = vm.run(['virtio_ring'])       # modular in Debian 12 (a dependency there), built into Debian 13
    assert result['changed'] is True
    assert 'virtio_ring is built into %s: a blacklist cannot stop it there' % DEB13 in warning_texts(result)


def test_modules_off_the_hosts_paths_are_not_refused(make):
    vm = btrfs_vm(make)
    result = vm.run(['ext4', 'e1000e', 'crc16'], hard=True)
    assert result.get('failed') is not True, result.get('msg')
    assert result['changed'] is True


def test_force_turns_a_stack_refusal_into_a_warning(make):
    vm = btrfs_vm(make)
    result = vm.run(['libcrc32c'], hard=True, force=True)
    assert result['changed'] is True
    assert any(w.startswith('force=true: blacklisting anyway, although libcrc32c is needed by the host')
               for w in warning_texts(result))
