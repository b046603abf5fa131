"""iommu_facts end to end: canned hosts against golden facts, read-only, no kernel log off the live root."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from ansible.module_utils.basic import AnsibleModule

from ansible_collections.vfio.passthrough.plugins.modules import iommu_facts

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from module_runner import run_module  # noqa: E402
from sysfs_builder import amd_twin_nic_host, intel_gpu_host, iommu_off_host, vfio_variant_host  # noqa: E402

FIXTURES = Path(__file__).resolve().parents[3] / 'fixtures' / 'sysfs'
HOSTS = {'intel_gpu_host': intel_gpu_host, 'amd_twin_nic_host': amd_twin_nic_host, 'iommu_off_host': iommu_off_host}


@pytest.fixture
def no_commands(monkeypatch):
    """Any command or binary lookup fails the test: nothing may be run for a non-live root."""
    def refuse(self, *args, **kwargs):
        raise AssertionError('iommu_facts ran a command for a non-live root: %r' % (args,))
    monkeypatch.setattr(AnsibleModule, 'run_command', refuse)
    monkeypatch.setattr(AnsibleModule, 'get_bin_path', refuse)
    monkeypatch.setenv('SSH_CONNECTION', '198.51.100.9 52114 192.0.2.10 22')


def _snapshot(root):
    """Every path under root with its type, mode, mtime and content (or link target)."""
    state = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            if os.path.islink(path):
                body = os.readlink(path)
            elif os.path.isfile(path):
                body = hashlib.sha256(Path(path).read_bytes()).hexdigest()
            else:
                body = None
            state[os.path.relpath(path, root)] = (st.st_mode, st.st_mtime_ns, body)
    return state


@pytest.mark.parametrize('name', sorted(HOSTS))
def test_canned_hosts_match_golden_facts(tmp_path, no_commands, name):
    HOSTS[name](tmp_path)
    result = run_module(iommu_facts.main, {'root': str(tmp_path), 'protect_addresses': ['192.0.2.10']})
    assert result['changed'] is False and not result.get('failed'), result
    golden = FIXTURES / ('facts-%s.json' % name)
    if os.environ.get('UPDATE_GOLDEN') == '1':
        golden.write_text(json.dumps(result['ansible_facts'], indent=1, sort_keys=True) + '\n')
    assert result['ansible_facts'] == json.loads(golden.read_text())


def test_intel_gpu_host_key_facts(tmp_path, no_commands):
    """The facts a playbook decides on, spelled out (the golden file holds the rest)."""
    intel_gpu_host(tmp_path)
    iommu = run_module(iommu_facts.main, {'root': str(tmp_path)})['ansible_facts']['iommu']
    assert {k: iommu[k] for k in ('enabled', 'vendor', 'cpu_vendor', 'firmware_support', 'interrupt_remapping',
                                  'passthrough_mode', 'acs_override', 'kernel', 'vfio_bound')} == {
        'enabled': True, 'vendor': 'intel', 'cpu_vendor': 'intel', 'firmware_support': True,
        'interrupt_remapping': True, 'passthrough_mode': True, 'acs_override': None,
        'kernel': '6.8.12-4-pve', 'vfio_bound': []}
    assert iommu['groups']['1'] == {'devices': ['0000:00:01.0', '0000:01:00.0', '0000:01:00.1'], 'type': 'identity'}
    gpu = iommu['devices']['0000:01:00.0']
    assert (gpu['class'], gpu['boot_vga'], gpu['isolated'], gpu['host_critical']) == ('030000', True, True, [])
    assert iommu['devices']['0000:00:1f.6']['host_critical'] == [
        'NIC eno1 is a port of vmbr0, which carries the default route']
    assert iommu['devices']['0000:00:1f.6']['netdevs'] == ['eno1']


def test_formats(tmp_path, no_commands):
    amd_twin_nic_host(tmp_path)
    iommu = run_module(iommu_facts.main, {'root': str(tmp_path)})['ansible_facts']['iommu']
    for address, device in iommu['devices'].items():
        assert re.match(r'^[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]$', address)
        for key in ('vendor_id', 'device_id', 'subsystem_vendor_id', 'subsystem_device_id'):
            assert re.match(r'^[0-9a-f]{4}$', device[key]), (address, key, device[key])
        assert re.match(r'^[0-9a-f]{6}$', device['class'])
        assert device['iommu_group'] is None or isinstance(device['iommu_group'], int)
        assert str(device['iommu_group']) in iommu['groups']
    assert all(key.isdigit() for key in iommu['groups'])
    assert iommu['vfio_bound'] == ['0000:09:00.0']
    assert iommu['acs_override'] == 'downstream,multifunction'
    assert iommu['passthrough_mode'] is False


@pytest.mark.parametrize('check_mode', [False, True])
def test_nothing_on_disk_changes(tmp_path, no_commands, check_mode):
    intel_gpu_host(tmp_path)
    before = _snapshot(tmp_path)
    result = run_module(iommu_facts.main, {'root': str(tmp_path)}, check_mode=check_mode, diff=True)
    assert result['changed'] is False and 'diff' not in result
    assert _snapshot(tmp_path) == before


def test_check_mode_reports_the_same_facts(tmp_path, no_commands):
    amd_twin_nic_host(tmp_path)
    args = {'root': str(tmp_path)}
    assert run_module(iommu_facts.main, args, check_mode=True) == run_module(iommu_facts.main, args)


def test_silent_tree_off_the_live_root_answers_null_instead_of_reading_the_log(tmp_path, no_commands):
    """No interrupts file, no ACPI tables: the live log could answer, but it is not this root's."""
    iommu_off_host(tmp_path)
    os.unlink(tmp_path / 'proc/interrupts')
    for name in os.listdir(tmp_path / 'sys/firmware/acpi/tables'):
        os.unlink(tmp_path / 'sys/firmware/acpi/tables' / name)
    iommu = run_module(iommu_facts.main, {'root': str(tmp_path)})['ansible_facts']['iommu']
    assert (iommu['interrupt_remapping'], iommu['firmware_support'], iommu['vendor']) == (None, None, 'intel')


@pytest.mark.parametrize('args, message', [
    ({'protect_addresses': ['192.0.2.10', 'not an address!']},
     "protect_addresses: 'not an address!' is neither an IP address nor a host name"),
    ({'root': '/nonexistent/vfio-root'}, 'root /nonexistent/vfio-root is not a directory'),
])
def test_bad_input_is_refused_by_name(tmp_path, no_commands, args, message):
    intel_gpu_host(tmp_path)
    result = run_module(iommu_facts.main, dict({'root': str(tmp_path)}, **args))
    assert result['failed'] is True and result['msg'] == message


def test_root_without_sys_is_refused(tmp_path, no_commands):
    result = run_module(iommu_facts.main, {'root': str(tmp_path)})
    assert result['failed'] is True and result['msg'] == 'root %s has no sys/ directory to read' % tmp_path


class _LogModule:
    def __init__(self, journal_rc):
        self.journal_rc = journal_rc
        self.calls = []

    def get_bin_path(self, name):
        return '/usr/bin/' + name

    def run_command(self, args, environ_update=None):
        self.calls.append((args, environ_update))
        if args[0].endswith('journalctl'):
            return self.journal_rc, '' if self.journal_rc else 'journal text\n', 'No journal files were found.'
        return 0, 'dmesg text\n', ''


@pytest.mark.parametrize('journal_rc, text, commands', [
    (0, 'journal text\n', ['/usr/bin/journalctl']),
    (1, 'dmesg text\n', ['/usr/bin/journalctl', '/usr/bin/dmesg']),   # no persistent journal: dmesg
])
def test_kernel_log_prefers_the_journal_then_dmesg(journal_rc, text, commands):
    module = _LogModule(journal_rc)
    assert iommu_facts._kernel_log(module) == text
    assert [args[0] for args, _env in module.calls] == commands
    assert module.calls[0][0] == ['/usr/bin/journalctl', '-k', '-b', '--no-pager', '-o', 'cat']
    assert all(env == {'LC_ALL': 'C'} for _args, env in module.calls)


def _listdir(path):
    return os.listdir(path) if os.path.isdir(path) else []


def test_live_root_agrees_with_the_running_kernel():
    """On this machine's real /sys: every device, driver and group the kernel shows, via realpath.

    Runs everywhere: a machine (or container) without PCI devices must yield none.
    """
    result = run_module(iommu_facts.main, {'root': '/'})
    assert result['changed'] is False and not result.get('failed'), result
    iommu = result['ansible_facts']['iommu']
    base = '/sys/bus/pci/devices'
    assert sorted(iommu['devices']) == sorted(_listdir(base))
    for address, device in iommu['devices'].items():
        driver = os.path.join(base, address, 'driver')
        expected = os.path.basename(os.path.realpath(driver)) if os.path.exists(driver) else None
        assert device['driver'] == expected, address
        assert device['class'] == Path(base, address, 'class').read_text().strip()[2:]
    assert iommu['enabled'] is bool(_listdir('/sys/kernel/iommu_groups') or _listdir('/sys/class/iommu'))
    for ifname in _listdir('/sys/class/net'):
        real = os.path.realpath(os.path.join('/sys/class/net', ifname))
        pci = [p for p in real.split('/') if re.match(r'^[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]$', p)]
        if pci:
            assert ifname in iommu['devices'][pci[-1]]['netdevs']
    assert iommu['cmdline'] == Path('/proc/cmdline').read_text().strip()


def test_devices_on_vfio_pci_variant_drivers_count_as_held_for_a_vm(tmp_path, no_commands):
    vfio_variant_host(tmp_path)
    result = run_module(iommu_facts.main, {'root': str(tmp_path)})
    facts = result['ansible_facts']['iommu']
    assert facts['vfio_bound'] == ['0000:41:00.1', '0000:42:00.0', '0000:43:00.0', '0000:46:00.0']
    devices = facts['devices']
    assert {a: d['vfio_driver'] for a, d in devices.items()} == {
        '0000:41:00.1': 'mlx5_vfio_pci', '0000:42:00.0': 'xe-vfio-pci', '0000:43:00.0': 'acme_passthru',
        '0000:44:00.0': None, '0000:45:00.0': None, '0000:46:00.0': 'vfio-pci'}
    # held devices show the host driver they would get (modules.alias, the variants' vfio_pci: aliases
    # left out); a device on a host driver, even one named like a variant, shows that driver
    assert {a: d['kernel_modules'] for a, d in devices.items()} == {
        '0000:41:00.1': ['mlx5_core'], '0000:42:00.0': ['xe'], '0000:43:00.0': ['acme'],
        '0000:44:00.0': ['fake_vfio_pci'], '0000:45:00.0': ['e1000e'], '0000:46:00.0': ['nouveau']}


def test_start_up_imports_only_what_every_run_needs():
    """AnsiballZ compiles each imported module_util anew on every run: the guest configuration readers
    (needed only beside a vfio-pci variant driver) and the write transaction are not imported up front."""
    code = ('import sys, ansible_collections.vfio.passthrough.plugins.modules.iommu_facts; '
            'print(" ".join(sorted(m.rsplit(".", 1)[1] for m in sys.modules '
            'if m.startswith("ansible_collections.vfio.passthrough.plugins.module_utils."))))')
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    loaded = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, env=env, check=True)
    names = set(loaded.stdout.split())
    assert {'_iommu_facts', '_sysfs', '_files'} <= names, loaded.stdout
    assert not names & {'_pve_config', '_pve_guests', '_transaction'}, loaded.stdout
    assert not [name for name in names if name.startswith('_sriov')], loaded.stdout
