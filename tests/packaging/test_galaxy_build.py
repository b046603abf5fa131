"""`ansible-galaxy collection build`: what the tarball carries and what it must never carry.

Two builds: one of the checkout as it is, and one of a copy of it into which
every kind of developer state was planted (venvs, caches, VM images, reports,
benchmark output, a .git directory), so the exclusions are proven even on a
fresh clone that has none of them.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tarfile
from pathlib import Path, PurePosixPath

import pytest

from packaging_support import ROOT, build, galaxy_meta, members

# (file planted in the copy, the path that must then be absent from the tarball)
PLANTED = [
    ('.venv/bin/python', '.venv'),
    ('.venv-molecule/pyvenv.cfg', '.venv-molecule'),
    ('.cache/debootstrap/libc6_2.36_amd64.deb', '.cache'),
    ('.pytest_cache/v/cache/lastfailed', '.pytest_cache'),
    ('tests/unit/.pytest_cache/v/cache/lastfailed', 'tests/unit/.pytest_cache'),
    ('.hypothesis/examples/0a1b/2c3d', '.hypothesis'),
    ('tests/unit/.hypothesis/examples/0a1b/2c3d', 'tests/unit/.hypothesis'),
    ('plugins/modules/__pycache__/iommu_facts.cpython-311.pyc', 'plugins/modules/__pycache__'),
    ('plugins/module_utils/_plan.pyc', 'plugins/module_utils/_plan.pyc'),
    ('tests/output/junit/python3.11-sanity.xml', 'tests/output'),
    ('tests/vm/cache/images/0123/intel.qcow2', 'tests/vm/cache'),
    ('debian-12-genericcloud-amd64.qcow2', 'debian-12-genericcloud-amd64.qcow2'),
    ('tests/containers/rootfs.img', 'tests/containers/rootfs.img'),
    ('tests/vm/rootfs-0123.tar', 'tests/vm/rootfs-0123.tar'),
    ('tests/vm/disk.raw', 'tests/vm/disk.raw'),
    ('debian-12-netinst.iso', 'debian-12-netinst.iso'),
    ('reports/pve1/iommu.html', 'reports'),
    ('bench/out/vm.json', 'bench/out'),
    ('molecule/.cache/state.yml', 'molecule/.cache'),
    ('molecule/default/.cache/state.yml', 'molecule/default/.cache'),
    ('.git/HEAD', '.git'),
    ('context/Containerfile', 'context'),
    ('changelogs/.plugin-cache.yaml', 'changelogs/.plugin-cache.yaml'),
    ('.build/vfio-passthrough-0.0.9.tar.gz', '.build'),
    ('vfio-passthrough-0.0.9.tar.gz', 'vfio-passthrough-0.0.9.tar.gz'),
]

# Rules every build must obey, whatever happens to be in the tree.
_DEV_DIRS = {'.venv', '.cache', '.pytest_cache', '.hypothesis', '__pycache__', '.git', '.tox'}
FORBIDDEN = [
    ('a venv, cache or VCS directory', lambda p: bool(_DEV_DIRS & set(PurePosixPath(p).parts))
     or PurePosixPath(p).parts[0].startswith('.venv')),
    ('compiled Python', lambda p: p.endswith('.pyc')),
    ('a disk or container image', lambda p: p.endswith(('.qcow2', '.img', '.raw', '.iso', '.tar'))),
    ('ansible-test output', lambda p: p == 'tests/output' or p.startswith('tests/output/')),
    ('a rendered report', lambda p: p == 'reports' or p.startswith('reports/')),
    ('benchmark output', lambda p: p == 'bench/out' or p.startswith('bench/out/')),
    ('an ansible-builder context', lambda p: p == 'context' or p.startswith('context/')),
    ('a VM image cache', lambda p: p.startswith('tests/vm/cache')),
    ('a molecule cache', lambda p: p.startswith('molecule/') and '.cache' in PurePosixPath(p).parts),
    ('an earlier collection tarball', lambda p: PurePosixPath(p).name.startswith('vfio-passthrough-')
     and p.endswith('.tar.gz')),
]


def _git_files():
    listing = subprocess.run(['git', 'ls-files', '-z', '--cached'], cwd=ROOT, capture_output=True, check=True)
    return [name for name in listing.stdout.decode().split('\0') if name]


@pytest.fixture(scope='session')
def planted_tarball(tmp_path_factory):
    """A copy of the checkout's files plus every entry of PLANTED, built."""
    copy = tmp_path_factory.mktemp('planted') / 'vfio.passthrough'
    for name in _git_files():
        source = ROOT / name
        if source.is_file():
            (copy / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, copy / name)
    for name, _absent in PLANTED:
        (copy / name).parent.mkdir(parents=True, exist_ok=True)
        (copy / name).write_bytes(b'planted by tests/packaging\n')
    return build(copy, tmp_path_factory.mktemp('planted-build'))


@pytest.mark.parametrize('planted, absent', PLANTED, ids=[p[0] for p in PLANTED])
def test_planted_developer_state_is_left_out(planted_tarball, planted, absent):
    names = members(planted_tarball)
    leaked = sorted(n for n in names if n == absent or n.startswith(absent + '/'))
    assert not leaked, 'build_ignore in galaxy.yml lets %s into the tarball: %s' % (planted, leaked)


@pytest.mark.parametrize('which', ['checkout', 'planted copy'])
@pytest.mark.parametrize('what, rule', FORBIDDEN, ids=[f[0] for f in FORBIDDEN])
def test_no_build_carries_forbidden_content(tarball, planted_tarball, which, what, rule):
    names = members(tarball if which == 'checkout' else planted_tarball)
    bad = sorted(n for n in names if rule(n))
    assert not bad, '%s in the tarball built from the %s: %s' % (what, which, bad)


def test_every_tracked_file_is_in_the_tarball(tarball):
    # .ci/ is CI plumbing and galaxy.yml becomes MANIFEST.json; everything else
    # tracked (the sysfs fixture tarballs included) belongs to the collection.
    names = members(tarball)
    expected = [n for n in _git_files() if (ROOT / n).is_file() and not n.startswith('.ci/') and n != 'galaxy.yml']
    assert expected, 'git ls-files listed nothing'
    missing = sorted(set(expected) - names)
    assert not missing, 'tracked files left out of the tarball (an over-broad build_ignore?): %s' % missing


@pytest.mark.parametrize('pattern', [
    'plugins/modules/*.py',
    'plugins/module_utils/*/*.py',
    'plugins/filter/*',
    'roles/pcie_passthrough/*/*',
    'playbooks/*.yml',
    'meta/runtime.yml',
    'README.md',
    'CHANGELOG.md',
    'changelogs/changelog.yaml',
])
def test_collection_content_is_in_the_tarball(tarball, pattern):
    expected = sorted(str(p.relative_to(ROOT)) for p in ROOT.glob(pattern)
                      if p.is_file() and '__pycache__' not in p.parts and p.suffix != '.pyc')
    assert expected, 'nothing in the checkout matches %s' % pattern
    missing = sorted(set(expected) - members(tarball))
    assert not missing, missing


def test_manifest_names_this_collection_and_version(tarball):
    meta = galaxy_meta()
    with tarfile.open(tarball) as archive:
        info = json.load(archive.extractfile('MANIFEST.json'))['collection_info']
        assert 'FILES.json' in archive.getnames()
    assert (info['namespace'], info['name'], info['version']) == (meta['namespace'], meta['name'], meta['version'])
    assert Path(tarball).name == '%s-%s-%s.tar.gz' % (meta['namespace'], meta['name'], meta['version'])
