"""Fake SR-IOV hosts for the tests of _sriov_*, sriov_vfs and the host-critical verdict.

Import with ``from sriov_hosts import ...`` after putting ``tests/unit`` on ``sys.path``.
"""

from __future__ import annotations

from ansible_collections.vfio.passthrough.plugins.module_utils.host_safety._host_critical import host_critical
from ansible_collections.vfio.passthrough.plugins.module_utils.pci._pci_devices import read_pci_devices
from ansible_collections.vfio.passthrough.plugins.module_utils.pci._sysfs import SysfsTree
from sysfs_builder import FakeHost

PF0, PF1 = '0000:01:00.0', '0000:02:00.0'
VFS0 = ['0000:01:10.0', '0000:01:10.2']


def sriov_host(root, drivers=('vfio-pci', 'igbvf')):
    """Two igb PFs (82576, 7 VFs each) behind their own root ports; PF0 has two VFs, PF1 none, a plain e1000e."""
    host = FakeHost(root)
    host.add_bridge('0000:00:02.0', group=1)
    host.add_device(PF0, '8086', '10c9', '020000', driver='igb', group=2, parent_bridge='0000:00:02.0',
                    netdev='enp1s0', sriov_totalvfs=7)
    host.add_vfs(PF0, VFS0, drivers=drivers, groups=(5, 6))
    host.add_bridge('0000:00:03.0', group=3)
    host.add_device(PF1, '8086', '10c9', '020000', driver='igb', group=4, parent_bridge='0000:00:03.0',
                    netdev='enp2s0', sriov_totalvfs=7)
    host.add_device('0000:00:04.0', '8086', '10d3', '020000', driver='e1000e', group=7)
    return host


# What the host runs on, through VF 1 of PF0, and the reason the host's verdict gives for it.
HOST_VF = {
    'bridge': 'NIC enp1s0v1 is a port of vmbr0, which carries the default route',
    'bond': 'NIC enp1s0v1 is a slave of bond0, which is a port of vmbr0, which carries the default route',
    'disk': 'storage controller of / (/dev/nvme0n1p2)',
}


def host_on_vf(root, how):
    """sriov_host whose VF 1 (igbvf) carries the host: its netdev in the bridge (or bond) of the default route, or the root disk."""
    host = sriov_host(root)
    if how == 'disk':
        host.nvme_disk(VFS0[1], 'nvme0')
        host.mount('/dev/nvme0n1p2', '/')
        return host
    host.add_netdev('enp1s0v1', host.device_dir(VFS0[1]))
    if how == 'bond':
        host.bond('bond0', ['enp1s0v1'])
    host.linux_bridge('vmbr0', ['bond0' if how == 'bond' else 'enp1s0v1'])
    host.default_route('vmbr0')
    return host


def judged_devices(root):
    """read_pci_devices with each device's host_critical, as iommu_facts gives them to the plan."""
    found = read_pci_devices(str(root))
    for address, reasons in host_critical(SysfsTree(str(root))).items():
        found[address]['host_critical'] = reasons
    return found
