"""The tree reader (module_utils/pci/_sysfs.py): link resolution never leaves root, and each file is read once."""

from __future__ import annotations

import os
import tempfile

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ansible_collections.vfio.passthrough.plugins.module_utils.pci import _sysfs
from ansible_collections.vfio.passthrough.plugins.module_utils.pci._iommu_facts import gather_iommu_facts
from ansible_collections.vfio.passthrough.plugins.module_utils.pci._sysfs import SysfsTree
from sysfs_builder import generated_host


# -- link resolution inside root --------------------------------------------

@pytest.mark.parametrize('link, target, expected', [
    ('sys/a', 'b/c', 'sys/b/c'),                     # relative
    ('sys/a', '/etc', 'etc'),                        # absolute: re-rooted, never the host's /etc
    ('sys/a', '../../../../../../etc', 'etc'),       # .. stops at root
    ('sys/a', '../sys/./b', 'sys/b'),
    ('sys/x/a', '../../sys/b', 'sys/b'),
])
def test_resolve_stays_inside_root(tmp_path, link, target, expected):
    (tmp_path / link).parent.mkdir(parents=True, exist_ok=True)
    os.symlink(target, tmp_path / link)
    assert SysfsTree(str(tmp_path)).resolve(link) == expected


def test_reading_through_an_escaping_link_reads_the_tree_not_the_host(tmp_path):
    (tmp_path / 'sys').mkdir()
    os.symlink('/etc', tmp_path / 'sys' / 'evil')
    os.symlink('../../../../../etc/hostname', tmp_path / 'sys' / 'evil2')
    tree = SysfsTree(str(tmp_path))
    assert tree.read('sys/evil/hostname') is None
    assert tree.read('sys/evil2') is None  # a link as the last component is never followed
    (tmp_path / 'etc').mkdir()
    (tmp_path / 'etc' / 'hostname').write_text('inside\n')
    assert SysfsTree(str(tmp_path)).read('sys/evil/hostname') == 'inside'


def test_read_bytes_stays_inside_root_and_stops_at_size(tmp_path):
    (tmp_path / 'sys' / 'dev').mkdir(parents=True)
    (tmp_path / 'sys' / 'dev' / 'config').write_bytes(bytes(range(256)))
    os.symlink('/etc', tmp_path / 'sys' / 'evil')
    os.symlink('dev/config', tmp_path / 'sys' / 'config-link')
    tree = SysfsTree(str(tmp_path))
    assert tree.read_bytes('sys/dev/config', 64) == bytes(range(64))
    assert tree.read_bytes('sys/dev/config', 4096) == bytes(range(256))
    assert tree.read_bytes('sys/evil/passwd', 64) is None          # re-rooted: the tree has no etc/passwd
    assert tree.read_bytes('sys/config-link', 64) is None           # the last component is never followed
    assert tree.read_bytes('sys/dev/missing', 64) is None


def test_link_loop_resolves_to_none(tmp_path):
    os.symlink('b', tmp_path / 'a')
    os.symlink('a', tmp_path / 'b')
    tree = SysfsTree(str(tmp_path))
    assert tree.resolve('a/x') is None
    assert tree.read('a/x') is None
    assert tree.listdir('a') == []


def test_chained_links_and_missing_components(tmp_path):
    (tmp_path / 'real').mkdir()
    os.symlink('real', tmp_path / 'one')
    os.symlink('one', tmp_path / 'two')
    tree = SysfsTree(str(tmp_path))
    assert tree.resolve('two/missing/file') == 'real/missing/file'
    assert tree.read('two/missing/file') is None


_names = st.sampled_from(['a', 'b', 'c', 'd'])
_targets = st.lists(st.sampled_from(['a', 'b', 'c', 'd', '..', '.']), min_size=1, max_size=5).map('/'.join)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(links=st.dictionaries(st.tuples(_names, _names), _targets, max_size=6),
       query=st.lists(st.sampled_from(['a', 'b', 'c', 'd', '..']), min_size=1, max_size=4))
def test_resolve_matches_the_kernel_and_never_leaves_root(links, query):
    """Textual resolution equals realpath (the kernel's own answer) wherever the walk stays inside.

    The root sits below directories named only ``nest``/``root``, so a walk that
    climbs out can never find its way back in: realpath then lands outside,
    while ours must still land inside.
    """
    with tempfile.TemporaryDirectory() as tmp:
        root = os.path.join(os.path.realpath(tmp), 'nest', 'nest', 'root')
        for name in 'abcd':
            os.makedirs(os.path.join(root, name))
        for (parent, name), target in links.items():
            path = os.path.join(root, parent, name)
            if not os.path.lexists(path):
                os.symlink(target, path)
        rel = '/'.join(query)
        ours = SysfsTree(root).resolve(rel)
        if ours is None:   # a link loop
            with pytest.raises(OSError):
                os.path.realpath(os.path.join(root, rel), strict=True)
            return
        assert not ours.startswith('/') and '..' not in ours.split('/')
        real = os.path.realpath(os.path.join(root, rel))
        if real == root or real.startswith(root + '/'):
            assert (os.path.join(root, ours) if ours else root) == real


def test_each_file_is_read_once_and_work_grows_linearly(tmp_path, monkeypatch):
    """200 vs 400 devices: opens and readlinks per device stay constant (no quadratic re-reading)."""
    counts = {}
    real_open, real_readlink = os.open, os.readlink

    def counting(name, real):
        def wrapper(*args, **kwargs):
            counts[name] = counts.get(name, 0) + 1
            return real(*args, **kwargs)
        return wrapper

    per_device = []
    for n in (200, 400):
        generated_host(tmp_path / str(n), n)
        counts.clear()
        monkeypatch.setattr(_sysfs.os, 'open', counting('open', real_open))
        monkeypatch.setattr(_sysfs.os, 'readlink', counting('readlink', real_readlink))
        facts = gather_iommu_facts(str(tmp_path / str(n)))
        monkeypatch.undo()
        assert len(facts['devices']) == n + (n + 31) // 32
        per_device.append((counts['open'] / n, counts['readlink'] / n))
    # vendor, device, subsystem x2, class, reset_method, group type: 7 files per device,
    # plus the root ports (one per 32 devices) and a few proc files
    assert per_device[1][0] <= 7.5
    assert per_device[1][0] <= per_device[0][0] + 0.05
    assert per_device[1][1] <= per_device[0][1] + 0.05


def test_a_directory_looked_up_entry_by_entry_is_listed_once(tmp_path, monkeypatch):
    # A root port's devices: the entry looked up after a plain one lists the directory, after
    # which only its links cost a readlink; a link among them is still followed.
    port = tmp_path / 'sys/devices/port'
    for n in range(10):
        (port / ('dev%d' % n)).mkdir(parents=True)
        (port / ('dev%d' % n) / 'f').write_text('%d\n' % n)
    (tmp_path / 'sys/elsewhere').mkdir()
    (tmp_path / 'sys/elsewhere/f').write_text('link\n')
    os.symlink('../../elsewhere', port / 'dev9link')
    calls = []
    real_readlink = os.readlink
    monkeypatch.setattr(_sysfs.os, 'readlink', lambda path: calls.append(path) or real_readlink(path))
    tree = SysfsTree(str(tmp_path))
    assert [tree.read('sys/devices/port/dev%d/f' % n) for n in range(10)] == [str(n) for n in range(10)]
    assert tree.read('sys/devices/port/dev9link/f') == 'link'
    names = [os.path.basename(p).decode() for p in calls]
    # sys, devices, port, dev0: then the listing answers for dev1..dev8; dev9link is a link
    assert names == ['sys', 'devices', 'port', 'dev0', 'dev9link'], names
