"""_sriov_state: a PF's running count, its VF addresses and the VFs the host runs on, from the device facts."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from ansible_collections.vfio.passthrough.plugins.module_utils.pci._pci_devices import read_pci_devices
from ansible_collections.vfio.passthrough.plugins.module_utils.sriov._sriov_state import host_vfs, running_vfs, vf_address

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
from sriov_hosts import HOST_VF, PF0, PF1, VFS0, host_on_vf, judged_devices, sriov_host  # noqa: E402


@pytest.fixture
def devices(tmp_path):
    sriov_host(tmp_path)
    return read_pci_devices(str(tmp_path))


def test_facts_link_pf_and_vfs(devices):
    assert devices[PF0]['virtfns'] == VFS0 and devices[PF0]['sriov_numvfs'] == 2
    assert [devices[vf]['physfn'] for vf in VFS0] == [PF0, PF0]
    assert devices[PF1]['virtfns'] == [] and devices[PF0]['physfn'] is None


@pytest.mark.parametrize('pf, running, addresses', [
    (PF0, 2, [VFS0[0], VFS0[1], None]),
    (PF1, 0, [None, None, None]),
    ('0000:09:00.0', 0, [None, None, None]),   # gone: no count, no VF
])
def test_running_count_and_vf_addresses(devices, pf, running, addresses):
    assert running_vfs(devices, pf) == running
    assert [vf_address(devices, pf, index) for index in range(3)] == addresses


@pytest.mark.parametrize('how', sorted(HOST_VF))
def test_host_vfs_names_the_vf_the_host_runs_on_and_why(tmp_path, how):
    host_on_vf(tmp_path, how)
    found = judged_devices(tmp_path)
    assert host_vfs(PF0, found) == [(1, VFS0[1], [HOST_VF[how]])]
    assert host_vfs(PF1, found) == [] and host_vfs('0000:09:00.0', found) == []
