"""_files: reading files as text (any bytes), diffs and display. Writing is the transaction's (test_transaction*.py)."""

from __future__ import annotations

import json
import os

import pytest

from ansible_collections.vfio.passthrough.plugins.module_utils.files._files import (
    MTIME_MARGIN_NS, FileError, display, file_diff, initramfs_lag, modified_after, read_text, utf8_result,
)
from ansible_collections.vfio.passthrough.plugins.module_utils.pci._kernel_names import decode_name


def test_read_text_missing_is_none(tmp_path):
    assert read_text(str(tmp_path / 'nope')) is None


@pytest.mark.parametrize('before, after, headers, texts', [
    (None, 'x\n', ('/etc/f (absent)', '/etc/f'), ('', 'x\n')),
    ('x\n', None, ('/etc/f', '/etc/f (absent)'), ('x\n', '')),
    ('x\n', 'y\n', ('/etc/f', '/etc/f'), ('x\n', 'y\n')),
    ('', 'y', ('/etc/f', '/etc/f'), ('', 'y')),
])
def test_file_diff_headers(before, after, headers, texts):
    diff = file_diff('/etc/f', before, after)
    assert (diff['before_header'], diff['after_header']) == headers
    assert (diff['before'], diff['after']) == texts


def test_initramfs_lag_ignores_a_dangling_image_link(tmp_path):
    # An image removed by hand leaves its /boot/initrd.img-* link behind: no time to compare, no traceback.
    image = tmp_path / 'initrd.img-6.8.12-4-pve'
    image.write_bytes(b'image')
    os.utime(image, (100, 100))
    (tmp_path / 'initrd.img-6.5.13-6-pve').symlink_to('gone')
    conf = tmp_path / 'vfio.conf'
    conf.write_text('options vfio-pci ids=10de:1b80\n')
    os.utime(conf, (200, 200))
    lag = initramfs_lag([str(conf)], str(tmp_path / 'initrd.img-*'))
    assert lag == {'stale': True, 'newer': [str(conf)], 'images': [str(image)], 'present': [str(conf)]}


@pytest.mark.parametrize('make, reason', [
    (lambda p: p.mkdir(), 'is a directory, not a file'),
    (lambda p: p.symlink_to('missing.conf'), 'is a symlink to missing.conf, which does not exist'),
])
def test_read_text_names_a_path_that_is_no_plain_file(tmp_path, make, reason):
    path = tmp_path / 'x.conf'
    make(path)
    with pytest.raises(FileError, match=reason) as caught:
        read_text(str(path))
    assert caught.value.path == str(path)


@pytest.mark.parametrize('text, shown', [
    ('plain', 'plain'),
    (b'caf\xe9'.decode('utf-8', 'surrogateescape'), 'caf\\xe9'),
    ('café', 'café'),
])
def test_display_is_valid_utf8(text, shown):
    assert display(text) == shown
    display(text).encode('utf-8')


_LATIN1 = decode_name(b'caf\xe9')   # a name from sysfs: a lone surrogate for the byte 0xe9


@pytest.mark.parametrize('value, expected', [
    ({'a': ['x', 1, None, True]}, {'a': ['x', 1, None, True]}),
    ({'msg': _LATIN1, 'nested': {'list': [_LATIN1, ('t', _LATIN1)]}},
     {'msg': 'caf\\xe9', 'nested': {'list': ['caf\\xe9', ['t', 'caf\\xe9']]}}),
    ({_LATIN1: 1}, {'caf\\xe9': 1}),
    # not JSON (bytes, a set): walked as before, strings beside them still made valid
    ({'raw': b'\xe9', 'name': _LATIN1}, {'raw': b'\xe9', 'name': 'caf\\xe9'}),
    ({'ids': {1}, 'name': _LATIN1}, {'ids': {1}, 'name': 'caf\\xe9'}),
])
def test_utf8_result_shows_every_undecodable_byte(value, expected):
    result = utf8_result(value)
    assert result == expected
    # a result the controller accepts: no lone surrogate anywhere
    assert json.dumps(result, ensure_ascii=False, default=repr).encode('utf-8')


def test_utf8_result_of_a_valid_result_is_the_result():
    # the fast path: nothing to change, so nothing is copied
    value = {'devices': {'0000:00:01.0': {'netdevs': ['eno1', 'caf\u00e9']}}}
    assert utf8_result(value) is value


# Multigrain timestamps (Linux 6.13+): the input written first can carry an mtime up to a jiffy later than the
# file generated from it next. 669767 ns is what a Debian 13 root on 6.18 showed between /etc/default/grub and
# the grub.cfg update-grub wrote after it.
@pytest.mark.parametrize('offset_ns, after', [
    (0, False),
    (669767, False),
    (-669767, False),
    (MTIME_MARGIN_NS, False),
    (MTIME_MARGIN_NS + 1, True),
    (1000 * 1000 * 1000, True),
])
def test_modified_after_allows_for_the_clocks_grain(tmp_path, offset_ns, after):
    generated, source = tmp_path / 'initrd.img-6.12.0', tmp_path / 'vfio.conf'
    generated.write_text('image')
    source.write_text('options vfio-pci ids=10de:1b80\n')
    base = generated.stat().st_mtime_ns
    os.utime(source, ns=(base + offset_ns, base + offset_ns))
    assert modified_after(str(source), base) is after
    assert initramfs_lag([str(source)], str(tmp_path / 'initrd.img-*'))['stale'] is after
