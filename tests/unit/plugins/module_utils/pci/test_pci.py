"""The PCI vocabulary (module_utils/pci/_pci.py): addresses, classes, group relations, VFIO drivers, module names."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ansible_collections.vfio.passthrough.plugins.module_utils.pci._pci import (
    BRIDGE, OTHER_CARD, PCI_ADDRESS, PCI_ID, SAME_CARD, class_name, config_header_type, group_relation, nearest_pci,
    normalise_address, normalise_module, off_host, slot, vfio_driver, vfio_pci_refusal,
)


@pytest.mark.parametrize('text, ok', [
    ('0000:03:00.0', True), ('0000:ff:1f.7', True),
    ('0000:03:00.8', False),          # functions are 0-7
    ('0000:03:00.0\n', False),        # a trailing newline is not part of an address
    ('0000:03:00', False), ('03:00.0', False), ('0000:0G:00.0', False),
    ('0000:03:00.0 ', False),
])
def test_pci_address(text, ok):
    assert bool(PCI_ADDRESS.match(text)) is ok


@pytest.mark.parametrize('text, ok', [('8086:10d3', True), ('8086:10D3', False), ('8086:10d', False),
                                      ('8086:10d3\n', False), ('808610d3', False)])
def test_pci_id(text, ok):
    assert bool(PCI_ID.match(text)) is ok


def test_slot_and_nearest_pci():
    assert slot('0000:03:00.1') == '0000:03:00'
    assert nearest_pci('sys/devices/pci0000:00/0000:00:1c.0/0000:03:00.0/net/eth0') == '0000:03:00.0'
    assert nearest_pci('sys/devices/virtual/net/lo') is None


@pytest.mark.parametrize('name, expected', [('vfio-pci', 'vfio_pci'), ('i2c_i801', 'i2c_i801'),
                                            ('a-b-c', 'a_b_c'), ('', ''), (None, None)])
def test_normalise_module(name, expected):
    assert normalise_module(name) == expected


@given(st.text(alphabet='ab-_', max_size=12))
def test_normalise_module_is_idempotent_and_dash_blind(name):
    once = normalise_module(name)
    assert normalise_module(once) == once and '-' not in once
    assert normalise_module(name.replace('_', '-')) == once


@pytest.mark.parametrize('code, name', [
    ('030000', 'VGA compatible controller'), ('030200', '3D controller'), ('040300', 'Audio device'),
    ('020000', 'Ethernet controller'), ('028000', 'Network controller'),
    ('010802', 'Non-Volatile memory controller'), ('010601', 'SATA controller'),
    ('010400', 'RAID bus controller'), ('010700', 'Serial Attached SCSI controller'),
    ('0c0330', 'USB controller'), ('0c0320', 'USB controller'), ('060400', 'PCI bridge'),
    ('060000', 'Host bridge'), ('060100', 'ISA bridge'), ('0c0500', 'SMBus'),
    ('01ff00', 'Mass storage controller'),   # unknown subclass: the base class names it
    ('ee0000', 'Unknown class ee00'),
])
def test_class_name(code, name):
    assert class_name(code) == name


_GPU, _AUDIO, _NIC, _BRIDGE, _HOST = '0000:01:00.0', '0000:01:00.1', '0000:02:00.0', '0000:00:01.0', '0000:00:00.0'
_DEVICES = {_GPU: {'class': '030000'}, _AUDIO: {'class': '040300'}, _NIC: {'class': '020000'},
            _BRIDGE: {'class': '060400'}, _HOST: {'class': '060000'}, '0000:01:00.2': {'class': '060400'}}


@pytest.mark.parametrize('peer, relation', [
    (_AUDIO, SAME_CARD),              # another function of the same card
    (_NIC, OTHER_CARD),
    (_BRIDGE, BRIDGE),                # a PCI bridge never blocks its group
    ('0000:01:00.2', BRIDGE),         # a bridge function on the same card is still a bridge
    (_HOST, OTHER_CARD),              # a host bridge is not a PCI-to-PCI bridge: vfio counts it
    ('0000:01:00.3', OTHER_CARD),     # a member the facts do not know cannot be vouched for
])
def test_group_relation(peer, relation):
    assert group_relation(_GPU, peer, _DEVICES) == relation


@pytest.mark.parametrize('device, driver, off', [
    ({'driver': 'vfio-pci'}, 'vfio-pci', True),                                  # facts without vfio_driver
    ({'driver': 'mlx5_vfio_pci', 'vfio_driver': 'mlx5_vfio_pci'}, 'mlx5_vfio_pci', True),
    ({'driver': 'vfio-pci', 'vfio_driver': None}, None, False),                   # the facts decide
    ({'driver': 'pci-stub'}, None, True),
    ({'driver': None}, None, True),
    ({}, None, True),
    ({'driver': 'e1000e'}, None, False),
])
def test_vfio_driver_and_off_host(device, driver, off):
    assert vfio_driver(device) == driver
    assert off_host(device) is off


# --- addresses as typed (issue 12, class 10) ----------------------------------

HOST = ['0000:00:1f.0', '0000:00:1f.6', '0000:01:00.0', '0000:01:00.1', '0000:0a:00.0', '0001:01:00.0']


@pytest.mark.parametrize('typed, addresses, note', [
    ('0000:01:00.0', ['0000:01:00.0'], None),
    ('01:00.0', ['0000:01:00.0'], "'01:00.0' means 0000:01:00.0"),                         # lspci
    ('0000:0A:00.0', ['0000:0a:00.0'], "'0000:0A:00.0' means 0000:0a:00.0"),
    ('0A:00.0', ['0000:0a:00.0'], "'0A:00.0' means 0000:0a:00.0"),
    ('01:00', ['0000:01:00.0', '0000:01:00.1'],                                            # Proxmox hostpci
     "'01:00' means every function of device 0000:01:00: 0000:01:00.0, 0000:01:00.1"),
    ('0001:01:00', ['0001:01:00.0'], "'0001:01:00' means every function of device 0001:01:00: 0001:01:00.0"),
    ('00:1F', ['0000:00:1f.0', '0000:00:1f.6'],
     "'00:1F' means every function of device 0000:00:1f: 0000:00:1f.0, 0000:00:1f.6"),
    ('05:00.0', ['0000:05:00.0'], "'05:00.0' means 0000:05:00.0"),   # absence is the plan's to report
])
def test_accepted_spellings(typed, addresses, note):
    assert normalise_address(typed, HOST) == (addresses, note)


@pytest.mark.parametrize('typed, fragment', [
    ('0000:01:00.8', "'0000:01:00.8' is not a PCI address"),      # functions are 0-7
    ('01:20.0', "'01:20.0' is not a PCI address"),                # slots are 00-1f
    ('1:00.0', "'1:00.0' is not a PCI address"),
    ('000:01:00.0', "'000:01:00.0' is not a PCI address"),
    ('0000:01:00.0\n', "'0000:01:00.0\\n' is not a PCI address"),
    (' 01:00.0', "' 01:00.0' is not a PCI address"),
    ('pci_0000_01_00_0', "'pci_0000_01_00_0' is not a PCI address"),
    ('01:00.0;02:00.0', "'01:00.0;02:00.0' is not a PCI address"),
    ('', "'' is not a PCI address"),
    (600.0, '600.0 is not a PCI address'),
    (600.0, 'quote addresses in YAML'),
    ('600.0', 'quote addresses in YAML'),     # the role's argument spec turned the number into text
    (None, 'None is not a PCI address'),
    ('02:00', "'02:00' names the whole device 0000:02:00, which has no function on this host"),
])
def test_anything_else_is_refused_naming_the_value(typed, fragment):
    with pytest.raises(ValueError) as err:
        normalise_address(typed, HOST)
    assert fragment in str(err.value)


_hex = st.sampled_from('0123456789abcdefABCDEF')


@given(st.text(_hex, min_size=4, max_size=4), st.text(_hex, min_size=2, max_size=2),
       st.integers(0, 31), st.integers(0, 7), st.booleans())
def test_property_every_spelling_of_an_address_means_the_same_canonical_one(domain, bus, slot, function, upper):
    canonical = '%s:%s:%02x.%d' % (domain.lower(), bus.lower(), slot, function)
    typed = '%s:%s:%02X.%d' % (domain, bus, slot, function) if upper else canonical
    assert normalise_address(typed, [])[0] == [canonical]
    assert normalise_address(canonical, [])[0] == [canonical]
    if domain.lower() == '0000':
        assert normalise_address(typed[5:], [])[0] == [canonical]
        assert normalise_address(typed[5:-2], [canonical])[0] == [canonical]


@given(st.text(max_size=14))
def test_property_a_result_is_always_canonical_or_an_error(typed):
    try:
        addresses, _note = normalise_address(typed, HOST)
    except ValueError as exc:
        assert repr(typed) in str(exc)
        return
    assert all(len(a) == 12 and a == a.lower() and a[4] == ':' and a[7] == ':' and a[10] == '.' for a in addresses)


# --- what vfio-pci's probe refuses (issue 21, class 8) -------------------------

def _config(header, vendor=b'\x86\x80'):
    data = bytearray(64)
    data[0:2] = vendor
    data[0x0E] = header
    return bytes(data)


@pytest.mark.parametrize('config, header', [
    (_config(0x00), 0), (_config(0x80), 0),            # multi-function bit dropped, as pdev->hdr_type does
    (_config(0x01), 1), (_config(0x81), 1), (_config(0x02), 2), (_config(0x7F), 0x7F),
    (_config(0x00, vendor=b'\xff\xff'), 0),            # a VF reads vendor 0xffff by design
    (_config(0xFF), None),                              # all ones: no answer
    (_config(0x01)[:0x0E], None), (b'', None), (None, None), ('00', None),
])
def test_config_header_type(config, header):
    assert config_header_type(config) == header


@pytest.mark.parametrize('device, fragment', [
    ({'header_type': 1, 'class': '060400'},
     '0000:00:1c.0 has config header type 1 (PCI-to-PCI bridge): vfio-pci refuses every header type but 0'),
    ({'header_type': 1, 'class': '020000'}, 'header type 1 (PCI-to-PCI bridge)'),   # the header, not the class
    ({'header_type': 2}, 'header type 2 (CardBus bridge)'),
    ({'header_type': 0x7F}, 'header type 127 (undefined)'),
    ({'header_type': 0, 'sriov_totalvfs': 7, 'sriov_numvfs': 1},
     '0000:00:1c.0 is an SR-IOV physical function with 1 VF enabled (sriov_numvfs): vfio-pci refuses a PF'),
    ({'header_type': None, 'sriov_numvfs': 4}, 'with 4 VFs enabled'),
])
def test_vfio_pci_refusal_names_why(device, fragment):
    assert fragment in vfio_pci_refusal('0000:00:1c.0', device)


@pytest.mark.parametrize('device', [
    {'header_type': 0}, {'header_type': 0, 'class': '060400'},   # a normal header under a bridge class code
    {'header_type': None}, {}, {'header_type': 0, 'sriov_totalvfs': 7, 'sriov_numvfs': 0},
    {'header_type': 0, 'sriov_numvfs': None},
])
def test_vfio_pci_takes_normal_devices_without_vfs(device):
    assert vfio_pci_refusal('0000:03:00.0', device) is None
