"""Helpers for the packaging tests: tools from the venv, Ansible environments, galaxy builds."""

from __future__ import annotations

import functools
import importlib.util
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def _tool_dirs():
    """Where the running interpreter's console scripts are: its venv, and for a venv that sees the
    system's packages (Debian's apt-installed ansible-core, say) the system interpreter's bin too."""
    dirs = [BIN]
    cfg = Path(sys.prefix) / 'pyvenv.cfg'
    if cfg.is_file() and 'include-system-site-packages = true' in cfg.read_text():
        dirs.append(Path(sys._base_executable).parent)
    return dirs


def tool(name):
    """Path of a console script installed with the running interpreter (the venv's, then the system's it sees)."""
    for directory in _tool_dirs():
        if (directory / name).exists():
            return str(directory / name)
    raise FileNotFoundError('%s not found in %s: run the tests with the venv `make` builds'
                            % (name, ', '.join(str(d) for d in _tool_dirs())))


def run(argv, **kwargs):
    """Run a command, capturing text output; the caller asserts on the result."""
    kwargs.setdefault('env', ansible_env())
    return subprocess.run(argv, capture_output=True, text=True, check=False, **kwargs)


def ansible_env(collections_path=None, **extra):
    """Environment for Ansible commands: no colour, and when given, only ``collections_path``."""
    env = dict(os.environ, ANSIBLE_NOCOLOR='1', ANSIBLE_FORCE_COLOR='0')
    env.pop('ANSIBLE_CONFIG', None)
    if collections_path is not None:
        env['ANSIBLE_COLLECTIONS_PATH'] = str(collections_path)
        env['ANSIBLE_COLLECTIONS_SCAN_SYS_PATH'] = 'false'
    env.update(extra)
    return env


def galaxy_meta(root=ROOT):
    return yaml.safe_load((Path(root) / 'galaxy.yml').read_text())


def build(source, output):
    """``ansible-galaxy collection build`` of ``source`` into ``output``; returns the tarball."""
    output.mkdir(parents=True, exist_ok=True)
    result = run([tool('ansible-galaxy'), 'collection', 'build', '--output-path', str(output), str(source)], cwd=output)
    assert result.returncode == 0, result.stdout + result.stderr
    tarballs = sorted(output.glob('*.tar.gz'))
    assert len(tarballs) == 1, tarballs
    return tarballs[0]


@functools.lru_cache(maxsize=None)
def members(tarball):
    """Every member name of ``tarball`` (read once), without a leading ``./`` or trailing ``/``."""
    with tarfile.open(tarball) as archive:
        return frozenset(name.removeprefix('./').rstrip('/') for name in archive.getnames())


def load_unit_helper(name):
    """Import tests/unit/<name>.py (tree_snapshot, sysfs_builder) without putting tests/unit on sys.path."""
    spec = importlib.util.spec_from_file_location('unit_' + name, ROOT / 'tests' / 'unit' / (name + '.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
