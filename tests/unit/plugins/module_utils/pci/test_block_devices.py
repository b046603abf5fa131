"""Block devices to the PCI controllers below them (module_utils/pci/_block_devices.py)."""

from __future__ import annotations

import pytest

from ansible_collections.vfio.passthrough.plugins.module_utils.pci._block_devices import block_pci_addresses
from sysfs_builder import FakeHost


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
