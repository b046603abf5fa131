"""The sysfs/procfs reader against kernel-shaped fake trees (relative links, devices behind bridges)."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ansible_collections.vfio.passthrough.plugins.module_utils import _sysfs
from ansible_collections.vfio.passthrough.plugins.module_utils._sysfs import (
    SysfsTree, block_pci_addresses, class_name, gather_iommu_facts, kernel_log_facts, module_usage,
    parse_cmdline, parse_cpu_vendor, parse_interrupt_remapping, read_iommu_groups, read_net_interfaces,
    read_pci_devices,
)

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from sysfs_builder import (  # noqa: E402
    FakeHost, amd_twin_nic_host, generated_host, igb_mgmt_host, intel_gpu_host, iommu_off_host,
)


# -- link resolution inside root --------------------------------------------

@pytest.mark.parametrize('link, target, expected', [
    ('sys/a', 'b/c', 'sys/b/c'),                     # relative
    ('sys/a', '/etc', 'etc'),                        # absolute: re-rooted, never the host's /etc
    ('sys/a', '../../../../../../etc', 'etc'),       # .. stops at root
    ('sys/a', '../sys/./b', 'sys/b'),
    ('sys/x/a', '../../sys/b', 'sys/b'),
])
def test_resolve_stays_inside_root(tmp_path, link, target, expected):
    (tmp_path / link).parent.mkdir(parents=True, exist_ok=True)
    os.symlink(target, tmp_path / link)
    assert SysfsTree(str(tmp_path)).resolve(link) == expected


def test_reading_through_an_escaping_link_reads_the_tree_not_the_host(tmp_path):
    (tmp_path / 'sys').mkdir()
    os.symlink('/etc', tmp_path / 'sys' / 'evil')
    os.symlink('../../../../../etc/hostname', tmp_path / 'sys' / 'evil2')
    tree = SysfsTree(str(tmp_path))
    assert tree.read('sys/evil/hostname') is None
    assert tree.read('sys/evil2') is None  # a link as the last component is never followed
    (tmp_path / 'etc').mkdir()
    (tmp_path / 'etc' / 'hostname').write_text('inside\n')
    assert SysfsTree(str(tmp_path)).read('sys/evil/hostname') == 'inside'


def test_link_loop_resolves_to_none(tmp_path):
    os.symlink('b', tmp_path / 'a')
    os.symlink('a', tmp_path / 'b')
    tree = SysfsTree(str(tmp_path))
    assert tree.resolve('a/x') is None
    assert tree.read('a/x') is None
    assert tree.listdir('a') == []


def test_chained_links_and_missing_components(tmp_path):
    (tmp_path / 'real').mkdir()
    os.symlink('real', tmp_path / 'one')
    os.symlink('one', tmp_path / 'two')
    tree = SysfsTree(str(tmp_path))
    assert tree.resolve('two/missing/file') == 'real/missing/file'
    assert tree.read('two/missing/file') is None


_names = st.sampled_from(['a', 'b', 'c', 'd'])
_targets = st.lists(st.sampled_from(['a', 'b', 'c', 'd', '..', '.']), min_size=1, max_size=5).map('/'.join)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(links=st.dictionaries(st.tuples(_names, _names), _targets, max_size=6),
       query=st.lists(st.sampled_from(['a', 'b', 'c', 'd', '..']), min_size=1, max_size=4))
def test_resolve_matches_the_kernel_and_never_leaves_root(links, query):
    """Textual resolution equals realpath (the kernel's own answer) wherever the walk stays inside.

    The root sits below directories named only ``nest``/``root``, so a walk that
    climbs out can never find its way back in: realpath then lands outside,
    while ours must still land inside.
    """
    with tempfile.TemporaryDirectory() as tmp:
        root = os.path.join(os.path.realpath(tmp), 'nest', 'nest', 'root')
        for name in 'abcd':
            os.makedirs(os.path.join(root, name))
        for (parent, name), target in links.items():
            path = os.path.join(root, parent, name)
            if not os.path.lexists(path):
                os.symlink(target, path)
        rel = '/'.join(query)
        ours = SysfsTree(root).resolve(rel)
        if ours is None:   # a link loop
            with pytest.raises(OSError):
                os.path.realpath(os.path.join(root, rel), strict=True)
            return
        assert not ours.startswith('/') and '..' not in ours.split('/')
        real = os.path.realpath(os.path.join(root, rel))
        if real == root or real.startswith(root + '/'):
            assert (os.path.join(root, ours) if ours else root) == real


# -- PCI devices and groups ---------------------------------------------------

def test_read_pci_devices_intel_gpu(tmp_path):
    intel_gpu_host(tmp_path)
    devices = read_pci_devices(str(tmp_path))
    gpu = dict(devices['0000:01:00.0'])
    assert gpu.pop('path') == 'sys/devices/pci0000:00/0000:00:01.0/0000:01:00.0'
    assert gpu == {
        'vendor_id': '10de', 'device_id': '1b80', 'subsystem_vendor_id': '1043', 'subsystem_device_id': '85aa',
        'class': '030000', 'class_name': 'VGA compatible controller', 'driver': 'nouveau',
        'driver_module': 'nouveau', 'iommu_group': 1, 'reset_methods': ['flr', 'bus'],
        'sriov_totalvfs': None, 'sriov_numvfs': None, 'boot_vga': True,
    }


@pytest.mark.parametrize('address, driver, module, group, resets', [
    ('0000:00:01.0', 'pcieport', None, 1, []),            # built-in driver: no module link
    ('0000:00:00.0', None, None, 0, []),                  # no driver bound
    ('0000:00:14.0', 'xhci_hcd', 'xhci_pci', 2, ['flr', 'bus']),  # driver name != module name
    ('0000:00:1f.4', 'i801_smbus', 'i2c_i801', 4, ['flr', 'bus']),
    ('0000:00:17.0', 'ahci', 'ahci', 3, ['bus']),
])
def test_driver_module_and_group(tmp_path, address, driver, module, group, resets):
    intel_gpu_host(tmp_path)
    device = read_pci_devices(str(tmp_path))[address]
    assert (device['driver'], device['driver_module'], device['iommu_group'], device['reset_methods']) == \
        (driver, module, group, resets)


def test_sriov_counts_and_dash_module_names(tmp_path):
    amd_twin_nic_host(tmp_path)
    devices = read_pci_devices(str(tmp_path))
    assert (devices['0000:06:00.0']['sriov_totalvfs'], devices['0000:06:00.0']['sriov_numvfs']) == (7, 2)
    assert devices['0000:09:00.0']['driver'] == 'vfio-pci'
    assert devices['0000:09:00.0']['driver_module'] == 'vfio_pci'
    assert devices['0000:09:00.0']['boot_vga'] is False


def test_groups_without_iommu_are_empty_and_devices_have_no_group(tmp_path):
    iommu_off_host(tmp_path)
    assert read_iommu_groups(str(tmp_path)) == {}
    assert {d['iommu_group'] for d in read_pci_devices(str(tmp_path)).values()} == {None}


def test_read_iommu_groups_members_and_type(tmp_path):
    intel_gpu_host(tmp_path, passthrough=False)
    groups = read_iommu_groups(str(tmp_path))
    assert groups[1] == {'devices': ['0000:00:01.0', '0000:01:00.0', '0000:01:00.1'], 'type': 'DMA-FQ'}
    assert sorted(groups) == [0, 1, 2, 3, 4]


@pytest.mark.parametrize('build', [intel_gpu_host, amd_twin_nic_host, iommu_off_host, igb_mgmt_host])
def test_ids_from_modalias_equal_the_separate_files(tmp_path, build):
    """modalias is read instead of five files; without it the files still answer, identically."""
    build(tmp_path)
    with_modalias = read_pci_devices(str(tmp_path))
    for path in tmp_path.glob('sys/devices/**/modalias'):
        path.unlink()
    assert read_pci_devices(str(tmp_path)) == with_modalias


@pytest.mark.parametrize('build', [intel_gpu_host, amd_twin_nic_host, iommu_off_host, igb_mgmt_host])
def test_gathered_groups_equal_the_group_directories(tmp_path, build):
    """gather_iommu_facts takes members from each device's iommu_group link: same as listing the groups."""
    build(tmp_path)
    listed = read_iommu_groups(str(tmp_path))
    gathered = gather_iommu_facts(str(tmp_path))['groups']
    assert gathered == {str(n): {'devices': sorted(g['devices']), 'type': g['type']} for n, g in listed.items()}


@pytest.mark.parametrize('code, name', [
    ('030000', 'VGA compatible controller'), ('030200', '3D controller'), ('040300', 'Audio device'),
    ('020000', 'Ethernet controller'), ('028000', 'Network controller'),
    ('010802', 'Non-Volatile memory controller'), ('010601', 'SATA controller'),
    ('010400', 'RAID bus controller'), ('010700', 'Serial Attached SCSI controller'),
    ('0c0330', 'USB controller'), ('0c0320', 'USB controller'), ('060400', 'PCI bridge'),
    ('060000', 'Host bridge'), ('060100', 'ISA bridge'), ('0c0500', 'SMBus'),
    ('01ff00', 'Mass storage controller'),   # unknown subclass: the base class names it
    ('ee0000', 'Unknown class ee00'),
])
def test_class_name(code, name):
    assert class_name(code) == name


# -- network interfaces and module usage -------------------------------------

def test_virtio_nic_is_found_from_the_interface_side(tmp_path):
    iommu_off_host(tmp_path)
    nics = read_net_interfaces(str(tmp_path))
    assert nics['ens2'] == {'pci_address': '0000:00:02.0', 'driver_module': 'virtio_net', 'lower': [],
                            'ports': [], 'slaves': [], 'kind': 'device'}
    assert nics['ens3']['pci_address'] == '0000:00:03.0' and nics['ens3']['driver_module'] == 'e1000e'
    assert nics['lo']['pci_address'] is None and nics['lo']['kind'] == 'virtual'


def test_bridge_bond_vlan_members(tmp_path):
    host = FakeHost(tmp_path)
    host.add_device('0000:00:1f.6', '8086', '15bb', '020000', driver='e1000e', netdev='eno1')
    host.add_device('0000:02:00.0', '8086', '1533', '020000', driver='igb', netdev='enp2s0')
    host.bond('bond0', ['eno1', 'enp2s0']).linux_bridge('vmbr0', ['bond0']).vlan('vmbr0.10', 'vmbr0')
    nics = read_net_interfaces(str(tmp_path))
    assert (nics['bond0']['kind'], nics['bond0']['slaves'], nics['bond0']['lower']) == \
        ('bond', ['eno1', 'enp2s0'], ['eno1', 'enp2s0'])
    assert (nics['vmbr0']['kind'], nics['vmbr0']['ports']) == ('bridge', ['bond0'])
    assert (nics['vmbr0.10']['kind'], nics['vmbr0.10']['lower']) == ('stacked', ['vmbr0'])
    assert nics['bond0']['pci_address'] is None


def test_module_usage_follows_pci_driver_and_interface_driver(tmp_path):
    iommu_off_host(tmp_path)
    assert module_usage(str(tmp_path)) == {
        'bochs': [{'address': '0000:00:01.0', 'interface': None}],
        'virtio_pci': [{'address': '0000:00:02.0', 'interface': 'ens2'},
                       {'address': '0000:00:04.0', 'interface': None}],
        'virtio_net': [{'address': '0000:00:02.0', 'interface': 'ens2'}],
        'e1000e': [{'address': '0000:00:03.0', 'interface': 'ens3'}],
    }


def test_module_usage_leaves_out_builtin_and_unbound(tmp_path):
    intel_gpu_host(tmp_path)
    usage = module_usage(str(tmp_path))
    assert 'pcieport' not in usage
    assert usage['xhci_pci'] == [{'address': '0000:00:14.0', 'interface': None}]
    assert all('-' not in name for name in usage)


# -- block devices -> controllers ----------------------------------------------

def _storage_host(root):
    host = FakeHost(root)
    host.add_device('0000:00:17.0', '8086', 'a352', '010601', driver='ahci')
    host.add_bridge('0000:00:1d.0')
    host.add_device('0000:3d:00.0', '144d', 'a808', '010802', driver='nvme', parent_bridge='0000:00:1d.0')
    host.add_device('0000:00:05.0', '1af4', '1001', '010000', driver='virtio-pci', virtio_block=('vda', (1, 2)))
    host.sata_disk('0000:00:17.0', 'sda').sata_disk('0000:00:17.0', 'sdb', port=1)
    host.nvme_disk('0000:3d:00.0', 'nvme0')
    host.stacked_block('md0', ['sda1', 'nvme0n1p1'])
    host.write('sys/devices/virtual/block/md0/md0p1/partition', '1\n')
    host.link('sys/class/block/md0p1', 'sys/devices/virtual/block/md0/md0p1')
    host.stacked_block('dm-0', ['sdb2'], dm_name='pve-root')
    host.stacked_block('dm-1', ['dm-0'], dm_name='crypt')
    # an NVMe multipath head: not under the PCI device, its controller is
    host.mkdir('sys/devices/virtual/nvme-subsystem/nvme-subsys0/nvme0n2')
    host.link('sys/devices/virtual/nvme-subsystem/nvme-subsys0/nvme0',
              host.device_dir('0000:3d:00.0') + '/nvme/nvme0')
    host.link('sys/class/block/nvme0n2', 'sys/devices/virtual/nvme-subsystem/nvme-subsys0/nvme0n2')
    return host


@pytest.mark.parametrize('name, expected', [
    ('sda2', ['0000:00:17.0']),
    ('nvme0n1p3', ['0000:3d:00.0']),
    ('vda1', ['0000:00:05.0']),
    ('md0', ['0000:00:17.0', '0000:3d:00.0']),
    ('md0p1', ['0000:00:17.0', '0000:3d:00.0']),   # a partition of md: slaves sit on md0
    ('dm-1', ['0000:00:17.0']),                     # dm on dm on a partition
    ('nvme0n2', ['0000:3d:00.0']),
    ('sdz', []),
])
def test_block_pci_addresses(tmp_path, name, expected):
    _storage_host(tmp_path)
    assert block_pci_addresses(str(tmp_path), name) == expected


# -- pure parsers --------------------------------------------------------------

@pytest.mark.parametrize('text, expected', [
    (' 0:  36  0  IR-IO-APIC    2-edge      timer\n', True),
    (' 25: 0 0  IR-PCI-MSIX-0000:01:00.0    0-edge      nvme0q0\n', True),
    (' 0:  36  0   IO-APIC    2-edge      timer\n 24: 1 0 PCI-MSI 49152-edge  virtio0\n', False),
    ('NMI:  0  0   Non-maskable interrupts\n', None),
    ('', None),
    (None, None),
])
def test_parse_interrupt_remapping(text, expected):
    assert parse_interrupt_remapping(text) is expected


@pytest.mark.parametrize('text, expected', [
    ('processor\t: 0\nvendor_id\t: GenuineIntel\n', 'intel'),
    ('vendor_id\t: AuthenticAMD\n', 'amd'),
    ('vendor_id\t: HygonGenuine\n', 'amd'),
    ('vendor_id\t: CentaurHauls\n', 'centaurhauls'),
    ('processor\t: 0\n', None),
    (None, None),
])
def test_parse_cpu_vendor(text, expected):
    assert parse_cpu_vendor(text) == expected


def test_parse_cmdline_keeps_order_and_bare_flags():
    assert parse_cmdline('ro quiet iommu=pt pcie_acs_override=downstream,multifunction x=') == [
        ('ro', None), ('quiet', None), ('iommu', 'pt'),
        ('pcie_acs_override', 'downstream,multifunction'), ('x', '')]


@pytest.mark.parametrize('text, remapping, tables', [
    ('DMAR-IR: Enabled IRQ remapping in xapic mode\nACPI: DMAR 0x000000007FFE1F1A 000050 (v01 BOCHS)', True, {'DMAR'}),
    ('AMD-Vi: Interrupt remapping enabled\nACPI: IVRS 0x0000000 0000D0 (v02 AMD)', True, {'IVRS'}),
    ('DMAR: IOMMU enabled\n', None, set()),   # proves nothing: printed without an IOMMU too
    ('AMD-Vi: AMD IOMMUv2 functionality not available on this system\n', None, set()),
    ('DMAR-IR: IRQ remapping was disabled\n', False, set()),
    ('', None, set()),
])
def test_kernel_log_facts(text, remapping, tables):
    assert kernel_log_facts(text) == {'interrupt_remapping': remapping, 'tables': tables}


# -- whole facts -----------------------------------------------------------------

def test_isolation_twin_nics_share_a_group_with_their_bridge(tmp_path):
    amd_twin_nic_host(tmp_path)
    devices = gather_iommu_facts(str(tmp_path))['devices']
    assert devices['0000:05:00.0']['group_peers'] == ['0000:00:02.1', '0000:06:00.0']
    assert devices['0000:05:00.0']['isolated'] is False   # the other NIC is another device
    assert devices['0000:07:00.0']['isolated'] is True    # only its bridge beside it
    assert devices['0000:09:00.0']['isolated'] is True    # alone in its group


def test_isolation_gpu_with_its_audio_function(tmp_path):
    intel_gpu_host(tmp_path)
    devices = gather_iommu_facts(str(tmp_path))['devices']
    assert devices['0000:01:00.0']['isolated'] is True
    assert devices['0000:01:00.1']['isolated'] is True
    assert devices['0000:00:1f.6']['isolated'] is True    # 00:1f.x are functions of one device


@pytest.mark.parametrize('dmar, firmware', [(True, True), (False, False)])
def test_iommu_off_host(tmp_path, dmar, firmware):
    iommu_off_host(tmp_path, dmar=dmar)
    facts = gather_iommu_facts(str(tmp_path))
    assert facts['enabled'] is False   # intel_iommu=on on the command line does not make it so
    assert facts['firmware_support'] is firmware
    assert facts['vendor'] == 'intel'  # DMAR table, or the CPU vendor without one
    assert facts['passthrough_mode'] is None
    assert facts['interrupt_remapping'] is False
    assert facts['groups'] == {}
    assert all(d['isolated'] is False and d['iommu_group'] is None for d in facts['devices'].values())


def test_kernel_log_only_where_sysfs_and_procfs_are_silent(tmp_path):
    host = iommu_off_host(tmp_path)
    calls = []

    def log():
        calls.append(1)
        return 'DMAR-IR: Enabled IRQ remapping in xapic mode\nACPI: DMAR 0x000000007FFE1F1A 000050\n'

    gather_iommu_facts(str(tmp_path), log)
    assert calls == []   # interrupts and ACPI tables answered everything
    os.unlink(tmp_path / 'proc/interrupts')
    for name in os.listdir(tmp_path / 'sys/firmware/acpi/tables'):
        os.unlink(tmp_path / 'sys/firmware/acpi/tables' / name)
    facts = gather_iommu_facts(str(tmp_path), log)
    assert calls == [1]  # read once for both questions
    assert (facts['interrupt_remapping'], facts['firmware_support'], facts['vendor']) == (True, True, 'intel')
    assert host.root == tmp_path


@pytest.mark.parametrize('types, cmdline, expected', [
    (['identity', 'identity'], 'quiet', True),
    (['DMA-FQ', 'DMA-FQ'], 'iommu=pt', False),          # the groups say what is in effect
    (['identity', 'identity', 'DMA'], 'quiet', True),   # an untrusted device forced to DMA
    ([None], 'intel_iommu=on iommu=pt', True),          # old kernel without type files
    ([None], 'intel_iommu=on', None),
])
def test_passthrough_mode(tmp_path, types, cmdline, expected):
    host = FakeHost(tmp_path).cmdline(cmdline)
    for n, type_ in enumerate(types):
        host.add_device('0000:00:%02x.0' % n, '8086', '10d3', '020000', group=n)
        if type_ is None:
            os.unlink(tmp_path / 'sys/kernel/iommu_groups' / str(n) / 'type')
        else:
            host.set_group_type(n, type_)
    assert gather_iommu_facts(str(tmp_path))['passthrough_mode'] is expected


@pytest.mark.parametrize('cmdline, expected', [
    ('quiet pcie_acs_override=downstream,multifunction', 'downstream,multifunction'),
    ('pcie_acs_override=id:8086:1533 pcie_acs_override=downstream', 'downstream'),  # the last one wins
    ('quiet', None),
])
def test_acs_override(tmp_path, cmdline, expected):
    FakeHost(tmp_path).cmdline(cmdline)
    assert gather_iommu_facts(str(tmp_path))['acs_override'] == expected


def test_vendor_from_iommu_units_when_tables_hidden(tmp_path):
    host = FakeHost(tmp_path).cpu_vendor('GenuineIntel')
    host.add_device('0000:00:00.2', '1022', '1481', '080600', group=0)
    host.iommu_unit('ivhd0', under='0000:00:00.2')
    facts = gather_iommu_facts(str(tmp_path))
    assert (facts['vendor'], facts['cpu_vendor'], facts['firmware_support']) == ('amd', 'intel', None)


def test_each_file_is_read_once_and_work_grows_linearly(tmp_path, monkeypatch):
    """200 vs 400 devices: opens and readlinks per device stay constant (no quadratic re-reading)."""
    counts = {}
    real_open, real_readlink = os.open, os.readlink

    def counting(name, real):
        def wrapper(*args, **kwargs):
            counts[name] = counts.get(name, 0) + 1
            return real(*args, **kwargs)
        return wrapper

    per_device = []
    for n in (200, 400):
        generated_host(tmp_path / str(n), n)
        counts.clear()
        monkeypatch.setattr(_sysfs.os, 'open', counting('open', real_open))
        monkeypatch.setattr(_sysfs.os, 'readlink', counting('readlink', real_readlink))
        facts = gather_iommu_facts(str(tmp_path / str(n)))
        monkeypatch.undo()
        assert len(facts['devices']) == n + (n + 31) // 32
        per_device.append((counts['open'] / n, counts['readlink'] / n))
    # vendor, device, subsystem x2, class, reset_method, group type: 7 files per device,
    # plus the root ports (one per 32 devices) and a few proc files
    assert per_device[1][0] <= 7.5
    assert per_device[1][0] <= per_device[0][0] + 0.05
    assert per_device[1][1] <= per_device[0][1] + 0.05
