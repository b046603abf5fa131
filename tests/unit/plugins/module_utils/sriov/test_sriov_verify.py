"""_sriov_verify: the running VFs against the entries; each failure names the PF and the VF."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from ansible_collections.vfio.passthrough.plugins.module_utils.pci._pci_devices import read_pci_devices
from ansible_collections.vfio.passthrough.plugins.module_utils.sriov._sriov_verify import verify

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
from sriov_hosts import PF0, sriov_host  # noqa: E402


@pytest.mark.parametrize('entry, drivers, expected', [
    ({'pf': PF0, 'vfs': 2, 'vfio': [0]}, ('vfio-pci', 'igbvf'), []),
    ({'pf': PF0, 'vfs': 3, 'vfio': [0]}, ('vfio-pci', 'igbvf'), ['SR-IOV: PF 0000:01:00.0 has 2 VFs, 3 asked']),
    ({'pf': PF0, 'vfs': 2, 'vfio': [0, 1]}, ('vfio-pci', 'igbvf'),
     ['SR-IOV: PF 0000:01:00.0: VF 1 (0000:01:10.2) is on driver igbvf, not vfio-pci']),
    ({'pf': PF0, 'vfs': 2, 'vfio': [0]}, ('vfio-pci', None),
     ['SR-IOV: PF 0000:01:00.0: VF 1 (0000:01:10.2) is kept for the host but is on driver none']),
    ({'pf': PF0, 'vfs': 2, 'vfio': []}, ('vfio-pci', 'igbvf'),
     ['SR-IOV: PF 0000:01:00.0: VF 0 (0000:01:10.0) is kept for the host but is on driver vfio-pci']),
    ({'pf': '0000:09:00.0', 'vfs': 2, 'vfio': []}, ('vfio-pci', 'igbvf'), ['SR-IOV: PF 0000:09:00.0 is gone']),
])
def test_verify_names_pf_and_vf(tmp_path, entry, drivers, expected):
    sriov_host(tmp_path, drivers=drivers)
    assert verify([entry], read_pci_devices(str(tmp_path))) == expected
