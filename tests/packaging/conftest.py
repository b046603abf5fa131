"""Session fixtures for the packaging tests: the tarball ansible-galaxy builds and its installed copy.

The build runs once per session from the real checkout into a temporary
directory, so `make test` leaves the tree as it found it. The installed copy
lives in an empty collections path that the Ansible commands are confined to:
nothing from the checkout or from site-packages can stand in for it.
"""

from __future__ import annotations

import pytest

from packaging_support import ROOT, ansible_env, build, run, tool


@pytest.fixture(scope='session')
def tarball(tmp_path_factory):
    """The tarball built from this checkout."""
    return build(ROOT, tmp_path_factory.mktemp('build'))


@pytest.fixture(scope='session')
def installed(tarball, tmp_path_factory):
    """The collections path (empty before) that the tarball was installed into."""
    path = tmp_path_factory.mktemp('collections')
    assert not any(path.iterdir())
    result = run([tool('ansible-galaxy'), 'collection', 'install', str(tarball), '-p', str(path)],
                 cwd=path, env=ansible_env(path))
    assert result.returncode == 0, result.stdout + result.stderr
    return path
