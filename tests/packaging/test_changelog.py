"""changelogs/ as antsibull-changelog keeps it, and CHANGELOG.md generated from it.

Nothing here writes into the checkout: CHANGELOG.md is regenerated in a copy
and compared byte for byte.
"""

from __future__ import annotations

import shutil

import yaml
from packaging.version import Version

from packaging_support import ROOT, galaxy_meta, run, tool


def _changelog():
    return yaml.safe_load((ROOT / 'changelogs' / 'changelog.yaml').read_text())


def test_fragments_lint_clean():
    result = run([tool('antsibull-changelog'), 'lint'], cwd=ROOT)
    # lint prints one line per problem and may still exit 0 on some of them.
    assert result.returncode == 0 and not result.stdout.strip() and not result.stderr.strip(), \
        result.stdout + result.stderr


def test_changelog_yaml_lints_clean():
    result = run([tool('antsibull-changelog'), 'lint-changelog-yaml', 'changelogs/changelog.yaml'], cwd=ROOT)
    assert result.returncode == 0 and not result.stdout.strip(), result.stdout + result.stderr


def test_galaxy_version_is_the_latest_release():
    releases = sorted(_changelog()['releases'], key=Version)
    assert releases, 'changelogs/changelog.yaml holds no release'
    assert galaxy_meta()['version'] == releases[-1]


def test_changelog_md_is_generated_and_current(tmp_path):
    copy = tmp_path / 'collection'
    shutil.copytree(ROOT / 'changelogs', copy / 'changelogs',
                    ignore=shutil.ignore_patterns('.plugin-cache.yaml'))
    shutil.copy2(ROOT / 'galaxy.yml', copy / 'galaxy.yml')
    result = run([tool('antsibull-changelog'), 'generate'], cwd=copy)
    assert result.returncode == 0, result.stdout + result.stderr
    generated = (copy / 'CHANGELOG.md').read_text()
    assert generated.startswith('# vfio\\.passthrough Release Notes')
    assert (ROOT / 'CHANGELOG.md').read_text() == generated, \
        'CHANGELOG.md is stale or hand-edited: run `antsibull-changelog generate` and commit the result'
