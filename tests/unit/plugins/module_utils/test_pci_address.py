"""Addresses as administrators type them (lspci, Proxmox hostpci) become the kernel's spelling."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ansible_collections.vfio.passthrough.plugins.module_utils._pci_address import normalise_address

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
