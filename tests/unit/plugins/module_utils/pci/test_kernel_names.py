"""Kernel names are bytes: one decoding, a lossless shown form (module_utils/pci/_kernel_names.py)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ansible_collections.vfio.passthrough.plugins.module_utils.pci._kernel_names import (
    decode_name, encode_name, show_name, unshow_name, valid_interface_name,
)


@pytest.mark.parametrize('raw, shown', [
    (b'eno1', 'eno1'),
    (b'vmbr0.20', 'vmbr0.20'),
    (b'caf\xc3\xa9', 'caf\u00e9'),            # UTF-8 that prints stands for itself
    (b'e\xffth0', 'e\\xffth0'),               # not UTF-8
    (b'\xc3', '\\xc3'),                       # a UTF-8 sequence cut short
    (b'a\\b', 'a\\\\b'),                      # a backslash is doubled ...
    (b'a\\xff', 'a\\\\xff'),                  # ... so the text "\xff" is told from the byte 0xff
    (b'\x01x\x7f', '\\x01x\\x7f'),            # control characters are bytes too
    (b'\xc2\x85', '\\xc2\\x85'),              # U+0085 is UTF-8 but does not print
    (b'"\'$`;|&<>', '"\'$`;|&<>'),            # printable ASCII is kept as it is
])
def test_show_name(raw, shown):
    assert show_name(decode_name(raw)) == shown
    assert encode_name(unshow_name(shown)) == raw


@given(st.binary(max_size=32))
def test_every_name_decodes_losslessly_and_shows_as_printable_utf8(raw):
    name = decode_name(raw)
    assert encode_name(name) == raw
    shown = show_name(name)
    shown.encode('utf-8')   # strict: no lone surrogate survives
    assert shown.isprintable()
    assert encode_name(unshow_name(shown)) == raw


@pytest.mark.parametrize('raw, valid', [
    (b'eno1', True), (b'a' * 15, True), (b'a' * 16, False), (b'', False), (b'.', False), (b'..', False),
    (b'...', True), (b'a/b', False), (b'a:b', False), (b'a b', False), (b'a\tb', False), (b'a\nb', False),
    (b'a\xa0b', False),   # the kernel's isspace() counts Latin-1's no-break space
    (b'a\x00b', False), (b'\xff\xfe', True), (b'a\\b', True), (b'a@b', True), (b'\x01', True),
])
def test_valid_interface_name_follows_dev_valid_name(raw, valid):
    assert valid_interface_name(raw) is valid
