"""_pve_guests: this node's Proxmox guests, and the devices they name."""

from __future__ import annotations

import sys
from pathlib import Path

from ansible_collections.vfio.passthrough.plugins.module_utils.pci._pci_devices import read_pci_devices
from ansible_collections.vfio.passthrough.plugins.module_utils.proxmox._pve_guests import read_guest_references

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
from sriov_hosts import VFS0, sriov_host  # noqa: E402


def test_in_use_reads_this_nodes_guests_only(tmp_path):
    """/etc/pve/nodes/<node>/qemu-server holds each node's guests; another node's 0000:01:10.0 is another card."""
    host = sriov_host(tmp_path)
    host.write('etc/pve/nodes/pve1/qemu-server/201.conf', 'hostpci0: pcie=1,host=01:10.2\n')
    host.write('etc/pve/nodes/pve2/qemu-server/301.conf', 'hostpci0: 0000:01:10.0\n')
    host.write('etc/pve/nodes/pve1/qemu-server/202.conf.tmp.77', 'hostpci0: 0000:01:10.0\n')
    devices = read_pci_devices(str(tmp_path))
    assert read_guest_references(str(tmp_path), devices, node='pve1') == {VFS0[1]: ['guest 201 (hostpci0)']}
    # node unknown: every node's guests count, the safe side
    assert read_guest_references(str(tmp_path), devices) == {
        VFS0[0]: ['guest 301 (hostpci0)'], VFS0[1]: ['guest 201 (hostpci0)']}
