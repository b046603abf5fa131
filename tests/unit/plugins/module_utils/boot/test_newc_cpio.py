"""The initramfs writer: the kernel's newc byte format, read back field by field and by cpio where present."""

from __future__ import annotations

import shutil
import stat
import subprocess

import pytest
from hypothesis import given, settings, strategies as st

from ansible_collections.vfio.passthrough.plugins.module_utils.boot._newc_cpio import (
    CHARDEV, DIRECTORY, FILE, SYMLINK, TRAILER, newc_archive, newc_entry,
)

FIELDS = ('ino', 'mode', 'uid', 'gid', 'nlink', 'mtime', 'filesize', 'devmajor', 'devminor', 'rdevmajor',
          'rdevminor', 'namesize', 'check')


def read_newc(data):
    """Every entry of a newc archive as a dict of its header fields plus name and data, checking alignment."""
    entries, at = [], 0
    while True:
        assert at % 4 == 0, 'header at %d is not 4-aligned' % at
        assert data[at:at + 6] == b'070701', data[at:at + 6]
        values = [int(data[at + 6 + 8 * i:at + 14 + 8 * i], 16) for i in range(13)]
        entry = dict(zip(FIELDS, values))
        name_at = at + 110
        name = data[name_at:name_at + entry['namesize']]
        assert name.endswith(b'\0')
        entry['name'] = name[:-1].decode()
        body = name_at + entry['namesize']
        body += -body % 4
        entry['data'] = data[body:body + entry['filesize']]
        at = body + entry['filesize']
        at += -at % 4
        entries.append(entry)
        if entry['name'] == TRAILER:
            assert at == len(data)
            return entries


SAMPLE = [
    ('bin', DIRECTORY, 0o755, b''),
    ('bin/busybox', FILE, 0o755, b'\x7fELF' + bytes(range(7))),
    ('bin/sh', SYMLINK, 0o777, 'busybox'),
    ('dev', DIRECTORY, 0o755, b''),
    ('dev/console', CHARDEV, 0o600, (5, 1)),
    ('init', FILE, 0o755, '#!/bin/busybox sh\n'),
]


def test_round_trip_keeps_every_field():
    entries = read_newc(newc_archive(SAMPLE))
    assert [e['name'] for e in entries] == ['bin', 'bin/busybox', 'bin/sh', 'dev', 'dev/console', 'init', TRAILER]
    by_name = {e['name']: e for e in entries}
    assert stat.S_ISDIR(by_name['bin']['mode']) and stat.S_IMODE(by_name['bin']['mode']) == 0o755
    assert by_name['bin']['nlink'] == 2
    assert by_name['bin/busybox']['data'] == b'\x7fELF' + bytes(range(7))
    assert stat.S_ISLNK(by_name['bin/sh']['mode']) and by_name['bin/sh']['data'] == b'busybox'
    console = by_name['dev/console']
    assert stat.S_ISCHR(console['mode']) and (console['rdevmajor'], console['rdevminor']) == (5, 1)
    assert console['filesize'] == 0
    assert by_name[TRAILER]['mode'] == 0 and by_name[TRAILER]['ino'] == 0
    # root owns everything, mtime 0: one input, one archive
    assert {(e['uid'], e['gid'], e['mtime'], e['check']) for e in entries} == {(0, 0, 0, 0)}
    assert len({e['ino'] for e in entries[:-1]}) == len(SAMPLE)


def test_header_bytes_are_the_kernels():
    entry = newc_entry(1, 'init', FILE, 0o755, b'ab')
    assert entry[:110] == (b'070701' + b'00000001' + b'000081ED' + b'00000000' * 2 + b'00000001' + b'00000000'
                           + b'00000002' + b'00000000' * 4 + b'00000005' + b'00000000')
    assert entry[110:] == b'init\0' + b'\0' + b'ab' + b'\0\0'  # 110 + 5 name bytes pad to 116


@pytest.mark.parametrize('entries, message', [
    ([('/init', FILE, 0o755, b'')], 'relative path'),
    ([('init', FILE, 0o755, b''), ('init', FILE, 0o755, b'')], 'twice'),
    ([('bin/sh', SYMLINK, 0o777, 'busybox')], 'before its directory bin'),
    ([('x', 'fifo', 0o644, b'')], 'no cpio entry kind'),
    ([(TRAILER, FILE, 0o644, b'')], 'relative path'),
])
def test_refuses_what_the_kernel_would_misread(entries, message):
    with pytest.raises(ValueError, match=message):
        newc_archive(entries)


_NAME = st.text(alphabet='abcdefghij_-.', min_size=1, max_size=12).filter(lambda n: n not in ('.', '..'))


@settings(max_examples=60, deadline=None)
@given(st.dictionaries(_NAME, st.binary(max_size=40), min_size=1, max_size=8))
def test_any_files_read_back_byte_for_byte(files):
    entries = read_newc(newc_archive([(name, FILE, 0o644, data) for name, data in sorted(files.items())]))
    assert {e['name']: e['data'] for e in entries[:-1]} == files


def test_cpio_lists_it(tmp_path):
    """GNU cpio, where installed, reads the archive as the kernel would; else the reader above is the check."""
    archive = tmp_path / 'initramfs.cpio'
    archive.write_bytes(newc_archive(SAMPLE))
    tool = shutil.which('cpio')
    if tool is None:
        names = [e['name'] for e in read_newc(archive.read_bytes())][:-1]
    else:
        listed = subprocess.run([tool, '-t', '--quiet', '-H', 'newc'], input=archive.read_bytes(),
                                capture_output=True, check=True)
        names = listed.stdout.decode().split()
    assert names == [name for name, _k, _m, _d in SAMPLE]
