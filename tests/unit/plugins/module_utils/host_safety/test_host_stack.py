"""The module stack under /, /boot and the ESP and on the management path, read from kernel-shaped sysfs."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from ansible_collections.vfio.passthrough.plugins.module_utils.host_safety._host_critical import (
    _anchors, host_verdict, interface_reasons,
)
from ansible_collections.vfio.passthrough.plugins.module_utils.host_safety._host_stack import (
    block_roots, device_driver_modules, filesystem_roots, network_roots,
)
from ansible_collections.vfio.passthrough.plugins.module_utils.host_safety._module_deps import describe_need
from ansible_collections.vfio.passthrough.plugins.module_utils.pci._net_interfaces import read_net_interfaces
from ansible_collections.vfio.passthrough.plugins.module_utils.pci._sysfs import SysfsTree

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
from sysfs_builder import FakeHost, intel_gpu_host, iommu_off_host  # noqa: E402
from depmod_fixtures import DEB12, DEB13, install_kernels  # noqa: E402


def bind_child(host, rel, bus, driver, module):
    """Bind the non-PCI device ``rel`` (a SCSI disk, a USB interface) to ``driver`` of ``bus``, as the kernel links it."""
    drv = 'sys/bus/%s/drivers/%s' % (bus, driver)
    host.mkdir(drv)
    host.link(rel + '/driver', drv)
    if module:
        host.mkdir('sys/module/' + module)
        host.link(drv + '/module', 'sys/module/' + module)


def sata_host(root):
    host = FakeHost(root)
    host.add_device('0000:00:17.0', '8086', 'a352', '010601', driver='ahci')
    host.sata_disk('0000:00:17.0', 'sda')
    bind_child(host, host.device_dir('0000:00:17.0') + '/ata1/host0/target0:0:0/0:0:0:0', 'scsi', 'sd', 'sd_mod')
    return host


def nvme_host(root):
    host = FakeHost(root)
    host.add_bridge('0000:00:03.2')
    host.add_device('0000:08:00.0', '144d', 'a808', '010802', driver='nvme', parent_bridge='0000:00:03.2')
    host.nvme_disk('0000:08:00.0', 'nvme0')
    return host


def crypt_host(root):
    host = sata_host(root)
    host.stacked_block('dm-0', ['sda3'], dm_name='luks-root')
    host.write('sys/class/block/dm-0/dm/uuid', 'CRYPT-LUKS2-5c1f0c6e6b0b4bd59e4a0c1b2f1d3e4a-luks-root\n')
    host.stacked_block('dm-1', ['dm-0'], dm_name='pve-root')
    host.write('sys/class/block/dm-1/dm/uuid', 'LVM-Xq0rM2kU8f3n3L1yC4sPq7gq5FzN5Vb9\n')
    return host


def md_host(root):
    host = FakeHost(root)
    host.add_device('0000:00:17.0', '8086', 'a352', '010601', driver='ahci')
    host.sata_disk('0000:00:17.0', 'sda').sata_disk('0000:00:17.0', 'sdb', port=1)
    host.stacked_block('md0', ['sda2', 'sdb2'])
    host.write('sys/class/block/md0/md/level', 'raid1\n')
    host.stacked_block('md1', ['sda3', 'sdb3'])
    host.write('sys/class/block/md1/md/level', 'raid6\n')
    return host


def lvm_raid_host(root):
    host = nvme_host(root)
    host.stacked_block('dm-1', ['nvme0n1p3'], dm_name='pve-root_rimage_0')
    host.stacked_block('dm-2', ['nvme0n1p3'], dm_name='pve-root_rmeta_0')
    host.stacked_block('dm-3', ['dm-1', 'dm-2'], dm_name='pve-root')
    host.write('sys/class/block/dm-3/dm/uuid', 'LVM-abc\n')
    return host


def virtio_host(root):
    return iommu_off_host(root)


@pytest.mark.parametrize('build, name, expected', [
    (virtio_host, 'vda1', [('virtio_blk', 'driver of vda under /'), ('virtio_pci', 'driver of vda under /')]),
    (sata_host, 'sda2', [('sd_mod', 'driver of sda under /'), ('ahci', 'driver of sda under /')]),
    (nvme_host, 'nvme0n1p2', [('nvme', 'driver of nvme0n1 under /')]),    # pcieport is built in: no module link
    (crypt_host, 'dm-1', [('dm_mod', 'device-mapper target of dm-1 under /'),
                          ('dm_mod', 'device-mapper target of dm-0 under /'),
                          ('dm_crypt', 'device-mapper target of dm-0 under /'),
                          ('sd_mod', 'driver of sda under /'), ('ahci', 'driver of sda under /')]),
    (md_host, 'md0', [('md_mod', 'md RAID md0 under /'), ('raid1', 'md RAID md0 (raid1) under /'),
                      ('ahci', 'driver of sda under /'), ('ahci', 'driver of sdb under /')]),
    (md_host, 'md1', [('md_mod', 'md RAID md1 under /'), ('raid456', 'md RAID md1 (raid6) under /'),
                      ('ahci', 'driver of sda under /'), ('ahci', 'driver of sdb under /')]),
    (lvm_raid_host, 'dm-3', [('dm_mod', 'device-mapper target of dm-3 under /'),
                             ('dm_raid', 'device-mapper target of dm-3 under /'),
                             ('dm_mod', 'device-mapper target of dm-1 under /'),
                             ('nvme', 'driver of nvme0n1 under /'),
                             ('dm_mod', 'device-mapper target of dm-2 under /')]),
    (virtio_host, 'nosuchdisk', []),
])
def test_block_roots_per_layer(tmp_path, build, name, expected):
    build(tmp_path)
    assert block_roots(SysfsTree(str(tmp_path)), name, '/') == expected


def test_sata_disk_drivers_nearest_first(tmp_path):
    host = sata_host(tmp_path)
    tree = SysfsTree(str(tmp_path))
    assert device_driver_modules(tree, tree.resolve('sys/class/block/sda')) == ['sd_mod', 'ahci']
    assert device_driver_modules(tree, host.device_dir('0000:00:17.0')) == ['ahci']


def test_filesystem_roots():
    assert filesystem_roots('/boot/efi', 'vfat') == [('fs-vfat', 'filesystem of /boot/efi')]
    assert filesystem_roots('/', '') == []


def bond_vlan_host(root):
    """Proxmox with two igb ports bonded (bond0) as the port of vmbr0 and the default route on
    vmbr0.20, an 802.1Q VLAN on the bridge."""
    host = FakeHost(root)
    host.add_device('0000:05:00.0', '8086', '1533', '020000', driver='igb', netdev='enp5s0')
    host.add_device('0000:06:00.0', '8086', '1533', '020000', driver='igb', netdev='enp6s0')
    host.bond('bond0', ['enp5s0', 'enp6s0']).linux_bridge('vmbr0', ['bond0']).vlan('vmbr0.20', 'vmbr0')
    host.write('proc/net/vlan/vmbr0.20', 'vmbr0.20  VID: 20\n')
    host.loopback().default_route('vmbr0.20')
    return host


@pytest.mark.parametrize('build, expected', [
    (intel_gpu_host, {'bridge': 'runs vmbr0, which carries the default route',
                      'e1000e': 'runs eno1, which is a port of vmbr0, which carries the default route'}),
    (virtio_host, {'virtio_net': 'runs ens2, which carries the default route',
                   'virtio_pci': 'runs ens2, which carries the default route'}),
    (bond_vlan_host, {'8021q': 'runs vmbr0.20, which carries the default route',
                      'bridge': 'runs vmbr0, which is the lower link of vmbr0.20, which carries the default route',
                      'bonding': 'runs bond0, which is a port of vmbr0, which is the lower link of vmbr0.20, which '
                                 'carries the default route',
                      'igb': 'runs enp5s0, which is a slave of bond0, which is a port of vmbr0, which is the lower '
                             'link of vmbr0.20, which carries the default route'}),
])
def test_network_roots_per_layer(tmp_path, build, expected):
    build(tmp_path)
    tree = SysfsTree(str(tmp_path))
    interfaces = read_net_interfaces(tree)
    roots = network_roots(tree, interfaces, interface_reasons(interfaces, _anchors(tree, None, None, ())))
    first = {}
    for module, what in roots:
        first.setdefault(module, what)
    assert first == expected


def btrfs_virtio_host(root):
    """A Debian guest: btrfs / and a vfat ESP on a virtio disk, the default route on its virtio NIC,
    Debian 12 running and Debian 13 installed next to it."""
    host = iommu_off_host(root)
    host.add_disk('vdb', host.device_dir('0000:00:04.0') + '/virtio1', (1, 2))
    host.mount('/dev/vda1', '/', 'btrfs').mount('/dev/vdb1', '/boot/efi', 'vfat')
    install_kernels(root, DEB12, DEB13)
    return host


def test_whole_verdict_on_two_kernels(tmp_path):
    btrfs_virtio_host(tmp_path)
    modules = host_verdict(SysfsTree(str(tmp_path)))['modules']
    said = {name: describe_need(needs) for name, needs in modules.items()}
    assert said['crc32c_generic'] == ['crc32c_generic: needed by btrfs (filesystem of /) via softdep of %s, %s'
                                      % (DEB12, DEB13)]
    assert said['virtio_ring'][0] == 'virtio_ring: needed by virtio_blk (driver of vda under /) via modules.dep of %s' % DEB12
    assert said['virtio_pci'] == ['virtio_pci: driver of vda under / (in %s)' % DEB12,
                                  'virtio_pci: driver of vda under / (built into %s)' % DEB13]
    assert said['fat'] == ['fat: needed by vfat (filesystem of /boot/efi) via modules.dep of %s, %s' % (DEB12, DEB13)]
    assert said['net_failover'] == ['net_failover: needed by virtio_net (runs ens2, which carries the default route) '
                                    'via modules.dep of %s, %s' % (DEB12, DEB13)]
    assert {'btrfs', 'xor', 'raid6_pq', 'libcrc32c', 'vfat', 'virtio_blk', 'virtio_net'} <= set(modules)
    assert 'ext4' not in modules and 'e1000e' not in modules   # not on this host's paths


def test_without_depmod_files_the_sysfs_modules_still_count(tmp_path):
    intel_gpu_host(tmp_path)
    modules = host_verdict(SysfsTree(str(tmp_path)))['modules']
    assert sorted(modules) == ['ahci', 'bridge', 'dm_mod', 'e1000e', 'ext4', 'vfat']
    assert describe_need(modules['ext4']) == ['ext4: filesystem of / (in the running kernel, whose modules.dep is missing)']
