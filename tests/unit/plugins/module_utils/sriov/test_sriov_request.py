"""_sriov_request: the SR-IOV request checked against the devices, every refusal naming the value."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ansible_collections.vfio.passthrough.plugins.module_utils.pci._pci_devices import read_pci_devices
from ansible_collections.vfio.passthrough.plugins.module_utils.sriov._sriov_request import check_request

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
from sriov_hosts import PF0, PF1, VFS0, sriov_host  # noqa: E402


@pytest.fixture
def devices(tmp_path):
    sriov_host(tmp_path)
    return read_pci_devices(str(tmp_path))


@pytest.mark.parametrize('request_, entries, notes', [
    ([{'pf': PF0, 'vfs': 2}], [{'pf': PF0, 'vfs': 2, 'vfio': [0, 1]}], []),
    ([{'pf': '02:00.0', 'vfs': 4, 'vfio': [3, 1, 1]}], [{'pf': PF1, 'vfs': 4, 'vfio': [1, 3]}],
     ["pcie_passthrough_sriov: '02:00.0' means 0000:02:00.0"]),
    ([{'pf': PF1, 'vfs': 7, 'vfio': []}, {'pf': PF0, 'vfs': 0, 'vfio': 'all'}],
     [{'pf': PF0, 'vfs': 0, 'vfio': []}, {'pf': PF1, 'vfs': 7, 'vfio': []}], []),
])
def test_check_request_accepts(devices, request_, entries, notes):
    assert check_request(request_, devices) == (entries, [], notes)


@pytest.mark.parametrize('request_, passthrough, expected', [
    ([{'pf': '01:00', 'vfs': 2}], (), "'01:00' names the whole device 0000:01:00, not one function"),
    ([{'pf': '01:00.0.1', 'vfs': 2}], (), "'01:00.0.1' is not a PCI address"),
    ([{'pf': '05:00.0', 'vfs': 2}], (), '0000:05:00.0 does not exist on this host'),
    ([{'pf': '00:04.0', 'vfs': 2}], (), '0000:00:04.0 does not support SR-IOV (it has no sriov_totalvfs)'),
    ([{'pf': VFS0[1], 'vfs': 1}], (), '0000:01:10.2 is itself a virtual function of 0000:01:00.0'),
    ([{'pf': PF0, 'vfs': 8}], (), 'vfs 8 is not a count from 0 to 7, the sriov_totalvfs of 0000:01:00.0'),
    ([{'pf': PF0, 'vfs': True}], (), 'vfs True is not a count from 0 to 7'),
    ([{'pf': PF0, 'vfs': -1}], (), 'vfs -1 is not a count'),
    ([{'pf': PF0, 'vfs': 2, 'vfio': [2]}], (), 'vfio index 2 is no VF of the 2 asked for (0 to 1)'),
    ([{'pf': PF0, 'vfs': 2, 'vfio': 'some'}], (), "vfio must be \"all\" or a list of VF indexes, not 'some'"),
    ([{'pf': PF0, 'vfs': 2, 'vf': 1}], (), 'unknown key vf (known: pf, vfs, vfio)'),
    ([{'pf': PF0, 'vfs': 1}, {'pf': '01:00.0', 'vfs': 2}], (), '0000:01:00.0 is already listed at pcie_passthrough_sriov[0]'),
    ([{'pf': PF0, 'vfs': 2}], (PF0,), '0000:01:00.0 is also in pcie_passthrough_devices'),
    ([{'pf': PF0, 'vfs': 2}], (VFS0[0],), '0000:01:10.0 in pcie_passthrough_devices is a VF of 0000:01:00.0'),
    (['0000:01:00.0'], (), "must be a dict with pf, vfs and optionally vfio, not '0000:01:00.0'"),
    ({'pf': PF0}, (), 'pcie_passthrough_sriov must be a list'),
])
def test_check_request_refuses_naming_the_value(devices, request_, passthrough, expected):
    _entries, errors, _notes = check_request(request_, devices, passthrough)
    assert len(errors) == 1 and expected in errors[0], errors


def test_host_critical_vf_refused_for_vfio(devices):
    devices[VFS0[1]]['host_critical'] = ['NIC enp1s10f1 carries the default route']
    _entries, errors, _notes = check_request([{'pf': PF0, 'vfs': 2}], devices)
    assert errors == ['pcie_passthrough_sriov[0] (pf 0000:01:00.0): VF 1 (0000:01:10.2) is host-critical '
                      '(NIC enp1s10f1 carries the default route); keep it off vfio']
    assert check_request([{'pf': PF0, 'vfs': 2, 'vfio': [0]}], devices)[1] == []


@settings(max_examples=200, deadline=None)
@given(st.lists(st.dictionaries(st.sampled_from(['pf', 'vfs', 'vfio', 'x']),
                                st.one_of(st.none(), st.booleans(), st.integers(-3, 9), st.text(max_size=12),
                                          st.lists(st.integers(-2, 9), max_size=4)))))
def test_check_request_never_raises_and_entries_are_valid(request_):
    host_devices = {PF0: {'sriov_totalvfs': 7, 'sriov_numvfs': 0, 'virtfns': [], 'physfn': None}}
    entries, errors, _notes = check_request(request_, host_devices)
    for entry in entries:
        assert entry['pf'] == PF0 and 0 <= entry['vfs'] <= 7
        assert all(0 <= i < entry['vfs'] for i in entry['vfio'])
    assert len(entries) + len(errors) >= min(len(request_), 1)
