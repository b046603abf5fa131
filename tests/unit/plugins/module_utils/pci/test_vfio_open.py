"""_vfio_open: a device is in use when a process holds its group file or its own device file."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from ansible_collections.vfio.passthrough.plugins.module_utils.pci._pci_devices import read_pci_devices
from ansible_collections.vfio.passthrough.plugins.module_utils.pci._vfio_open import (
    read_vfio_openers, vfio_device_files, vfio_open_target, vfio_users,
)

sys.path.insert(0, str(Path(__file__).resolve().parents[4]))
from sysfs_builder import FakeHost  # noqa: E402

NIC, NIC_FN1, GPU = '0000:01:00.0', '0000:01:00.1', '0000:02:00.0'


def vfio_host(root):
    """A two-function NIC in group 3 and a GPU alone in group 4, all on vfio-pci; the GPU has device file vfio1."""
    host = FakeHost(root)
    host.add_device(NIC, '8086', '1521', '020000', driver='vfio-pci', group=3)
    host.add_device(NIC_FN1, '8086', '1521', '020000', driver='vfio-pci', group=3)
    host.add_device(GPU, '10de', '1b80', '030000', driver='vfio-pci', group=4)
    host.vfio_device_file(NIC, 'vfio0').vfio_device_file(NIC_FN1, 'vfio2').vfio_device_file(GPU, 'vfio1')
    return host


@pytest.mark.parametrize('target, opened', [
    ('/dev/vfio/12', ('group', 12)),
    ('/dev/vfio/noiommu-0', ('group', 0)),
    ('/dev/vfio/devices/vfio3', ('device', 'vfio3')),
    ('/dev/vfio/vfio', None),                      # the container names no device
    ('/dev/vfio/12 (deleted)', None),
    ('/dev/vfio/devices/vfio3 (deleted)', None),
    ('/dev/iommu', None),
    ('', None),
    (None, None),
])
def test_vfio_open_target(target, opened):
    assert vfio_open_target(target) == opened


@pytest.mark.parametrize('opens, users', [
    ([], {}),
    # QEMU the classic way: the container and the group file; the group holds both NIC functions
    ([(100, 5, '/dev/vfio/vfio'), (100, 6, '/dev/vfio/3')],
     {NIC: ['/dev/vfio/3 is open (pid 100)'], NIC_FN1: ['/dev/vfio/3 is open (pid 100)']}),
    # through iommufd: /dev/iommu and the device's own file, one device only
    ([(200, 5, '/dev/iommu'), (200, 6, '/dev/vfio/devices/vfio1')], {GPU: ['/dev/vfio/devices/vfio1 is open (pid 200)']}),
    ([(300, 9, '/dev/vfio/devices/vfio0')], {NIC: ['/dev/vfio/devices/vfio0 is open (pid 300)']}),
    # both kinds at once, two holders of one file
    ([(100, 6, '/dev/vfio/3'), (101, 7, '/dev/vfio/3'), (200, 6, '/dev/vfio/devices/vfio1')],
     {NIC: ['/dev/vfio/3 is open (pid 100, 101)'], NIC_FN1: ['/dev/vfio/3 is open (pid 100, 101)'],
      GPU: ['/dev/vfio/devices/vfio1 is open (pid 200)']}),
    # a file of no device this host knows, and a group nobody is in
    ([(400, 3, '/dev/vfio/devices/vfio9'), (400, 4, '/dev/vfio/77')], {}),
    ([(500, 0, '/dev/null'), (500, 1, 'socket:[12345]')], {}),
])
def test_vfio_users_sees_both_kinds_of_opener(tmp_path, opens, users):
    host = vfio_host(tmp_path)
    host.mkdir('proc/self')
    for pid, fd, target in opens:
        host.open_file(pid, fd, target)
    devices = read_pci_devices(str(tmp_path))
    assert vfio_users(str(tmp_path), devices) == users


def test_openers_and_device_files(tmp_path):
    host = vfio_host(tmp_path)
    host.open_file(100, 6, '/dev/vfio/3').open_file(100, 7, '/dev/vfio/3').open_file(200, 6, '/dev/vfio/devices/vfio1')
    assert read_vfio_openers(str(tmp_path)) == {'/dev/vfio/3': [100], '/dev/vfio/devices/vfio1': [200]}
    assert vfio_device_files(str(tmp_path), [NIC, GPU, '0000:09:00.0']) == {'vfio0': NIC, 'vfio1': GPU}


def test_device_file_of_a_device_not_on_vfio_is_not_looked_up(tmp_path):
    """Only devices on a VFIO driver have device files; facts saying otherwise save the listing."""
    host = vfio_host(tmp_path)
    host.open_file(200, 6, '/dev/vfio/devices/vfio1')
    devices = read_pci_devices(str(tmp_path))
    devices[GPU]['vfio_driver'] = None
    assert vfio_users(str(tmp_path), devices) == {}
    # facts from before vfio_driver existed: every device counts
    assert vfio_users(str(tmp_path), {GPU: {'iommu_group': 4}}) == {GPU: ['/dev/vfio/devices/vfio1 is open (pid 200)']}
