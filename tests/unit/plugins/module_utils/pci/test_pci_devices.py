"""PCI functions read from kernel-shaped fake trees (module_utils/pci/_pci_devices.py)."""

from __future__ import annotations

import shutil

import pytest

from ansible_collections.vfio.passthrough.plugins.module_utils.pci._iommu_facts import gather_iommu_facts
from ansible_collections.vfio.passthrough.plugins.module_utils.pci._pci_devices import read_pci_devices, vfio_core_users
from ansible_collections.vfio.passthrough.plugins.module_utils.pci._sysfs import SysfsTree
from sysfs_builder import FakeHost, amd_twin_nic_host, igb_mgmt_host, intel_gpu_host, iommu_off_host, vfio_variant_host


def _listed_groups(root):
    """The groups as the kernel lists them: sys/kernel/iommu_groups/N/devices/ and N/type."""
    base = root / 'sys' / 'kernel' / 'iommu_groups'
    if not base.is_dir():
        return {}
    return {group.name: {'devices': sorted(p.name for p in (group / 'devices').iterdir()),
                         'type': (group / 'type').read_text().strip()}
            for group in base.iterdir()}


def test_read_pci_devices_intel_gpu(tmp_path):
    intel_gpu_host(tmp_path)
    devices = read_pci_devices(str(tmp_path))
    gpu = dict(devices['0000:01:00.0'])
    assert gpu.pop('path') == 'sys/devices/pci0000:00/0000:00:01.0/0000:01:00.0'
    assert gpu == {
        'vendor_id': '10de', 'device_id': '1b80', 'subsystem_vendor_id': '1043', 'subsystem_device_id': '85aa',
        'class': '030000', 'class_name': 'VGA compatible controller', 'driver': 'nouveau',
        'driver_module': 'nouveau', 'vfio_driver': None, 'iommu_group': 1, 'reset_methods': ['flr', 'bus'],
        'sriov_totalvfs': None, 'sriov_numvfs': None, 'virtfns': [], 'physfn': None, 'boot_vga': True,
        'header_type': 0,
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
    assert (devices['0000:06:00.0']['sriov_totalvfs'], devices['0000:06:00.0']['sriov_numvfs']) == (7, 0)
    assert devices['0000:09:00.0']['driver'] == 'vfio-pci'
    assert devices['0000:09:00.0']['driver_module'] == 'vfio_pci'
    assert devices['0000:09:00.0']['boot_vga'] is False


def test_groups_without_iommu_are_empty_and_devices_have_no_group(tmp_path):
    iommu_off_host(tmp_path)
    assert _listed_groups(tmp_path) == {}
    assert gather_iommu_facts(str(tmp_path))['groups'] == {}
    assert {d['iommu_group'] for d in read_pci_devices(str(tmp_path)).values()} == {None}


def test_gathered_group_members_and_type(tmp_path):
    intel_gpu_host(tmp_path, passthrough=False)
    groups = gather_iommu_facts(str(tmp_path))['groups']
    assert groups['1'] == {'devices': ['0000:00:01.0', '0000:01:00.0', '0000:01:00.1'], 'type': 'DMA-FQ'}
    assert sorted(groups, key=int) == ['0', '1', '2', '3', '4']


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
    gathered = gather_iommu_facts(str(tmp_path))['groups']
    assert gathered == _listed_groups(tmp_path)


# -- vfio-pci variant drivers: decided by what the driver is built on ----------

_VARIANT_HOLDERS = {
    '0000:41:00.1': 'mlx5_vfio_pci', '0000:42:00.0': 'xe-vfio-pci', '0000:43:00.0': 'acme_passthru',
    '0000:44:00.0': None, '0000:45:00.0': None, '0000:46:00.0': 'vfio-pci',
}


def test_vfio_driver_comes_from_vfio_pci_core_holders(tmp_path):
    vfio_variant_host(tmp_path)
    devices = read_pci_devices(str(tmp_path))
    assert {a: d['vfio_driver'] for a, d in devices.items()} == _VARIANT_HOLDERS
    # acme_passthru is in no list of names, fake_vfio_pci would pass any "*vfio_pci" pattern:
    # only what the driver's module is built on decides
    assert devices['0000:43:00.0']['driver_module'] == 'acme_passthru'
    assert devices['0000:44:00.0']['driver'] == 'fake_vfio_pci'


def test_without_sys_module_the_running_kernels_modules_dep_decides(tmp_path):
    vfio_variant_host(tmp_path)
    shutil.rmtree(tmp_path / 'sys' / 'module')
    devices = read_pci_devices(str(tmp_path))
    assert {a: d['vfio_driver'] for a, d in devices.items()} == _VARIANT_HOLDERS
    assert vfio_core_users(SysfsTree(str(tmp_path))) == {'vfio_pci', 'mlx5_vfio_pci', 'xe_vfio_pci', 'acme_passthru'}


def test_vfio_pci_core_not_loaded_means_only_vfio_pci(tmp_path):
    """No vfio_pci_core in sys/module: no variant can be loaded, and modules.dep is not consulted."""
    vfio_variant_host(tmp_path)
    shutil.rmtree(tmp_path / 'sys' / 'module' / 'vfio_pci_core')
    devices = read_pci_devices(str(tmp_path))
    assert {a for a, d in devices.items() if d['vfio_driver']} == {'0000:46:00.0'}


@pytest.mark.parametrize('kwargs, header', [
    ({}, 0),
    ({'multifunction': True}, 0),                       # bit 7 is the multi-function flag, not the type
    ({'header_type': 1}, 1),                            # a bridge header under an Ethernet class code
    ({'header_type': 2, 'multifunction': True}, 2),
    ({'header_type': 0x7F}, 0x7F),
    ({'header_type': False}, None),                     # no config: a partial copy of sysfs
    ({'header_type': 0xFF}, None),                      # all ones: the function did not answer
])
def test_header_type_from_config_space(tmp_path, kwargs, header):
    host = FakeHost(tmp_path)
    host.add_device('0000:03:00.0', '8086', '10d3', '020000', driver='e1000e', group=1, **kwargs)
    assert read_pci_devices(str(tmp_path))['0000:03:00.0']['header_type'] == header


def test_bridge_class_gets_a_bridge_header_and_a_short_config_is_unknown(tmp_path):
    host = FakeHost(tmp_path)
    host.add_bridge('0000:00:1c.0', group=1)
    host.add_device('0000:03:00.0', '8086', '10d3', '020000', group=2)
    (tmp_path / host.device_dir('0000:03:00.0') / 'config').write_bytes(b'\x86\x80\xd3\x10')
    devices = read_pci_devices(str(tmp_path))
    assert (devices['0000:00:1c.0']['header_type'], devices['0000:03:00.0']['header_type']) == (1, None)
