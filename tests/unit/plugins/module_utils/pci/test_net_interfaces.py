"""Network interfaces and module usage from kernel-shaped fake trees (module_utils/pci/_net_interfaces.py)."""

from __future__ import annotations

from ansible_collections.vfio.passthrough.plugins.module_utils.pci._kernel_names import decode_name
from ansible_collections.vfio.passthrough.plugins.module_utils.pci._net_interfaces import module_usage, read_net_interfaces
from sysfs_builder import FakeHost, intel_gpu_host, iommu_off_host


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


def test_members_are_the_names_listed_in_sys_class_net_whatever_their_bytes(tmp_path):
    """brif/ entries, lower_ links and bonding/slaves text name a member by the same string as sys/class/net."""
    port, other, bond, bridge = (decode_name(raw) for raw in (b'e\xff1', b'e\\2\x1c', b'b\xc3', b'v\xe2\x80\xa8'))
    host = FakeHost(tmp_path)
    host.add_device('0000:01:00.0', '8086', '1521', '020000', driver='igb', netdev=port)
    host.add_device('0000:02:00.0', '8086', '1521', '020000', driver='igb', netdev=other)
    host.bond(bond, [port, other]).linux_bridge(bridge, [bond])
    nics = read_net_interfaces(str(tmp_path))
    assert set(nics) == {port, other, bond, bridge}
    assert nics[bond]['slaves'] == [port, other] and nics[bond]['lower'] == sorted([port, other])
    assert nics[bridge]['ports'] == nics[bridge]['lower'] == [bond]


def test_module_usage_shows_interface_names_as_utf8(tmp_path):
    host = FakeHost(tmp_path)
    host.add_device('0000:01:00.0', '8086', '1521', '020000', driver='igb', netdev=decode_name(b'e\xff\\1'))
    assert module_usage(str(tmp_path)) == {'igb': [{'address': '0000:01:00.0', 'interface': 'e\\xff\\\\1'}]}
