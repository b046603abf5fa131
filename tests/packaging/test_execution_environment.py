"""execution-environment.yml: `ansible-builder create` turns it into a build context.

`create` needs no container engine; it validates the file against the v3
schema and writes the Containerfile and the _build/ context. The galaxy stage
of that Containerfile is then replayed here: `ansible-galaxy collection
install -r requirements.yml` from _build/, as the image build runs it from /build.
"""

from __future__ import annotations

import json
import re
import shutil

import pytest
import yaml

from packaging_support import ROOT, ansible_env, galaxy_meta, run, tool

EE_FILE = ROOT / 'execution-environment.yml'


def _base_pin(name):
    for line in (ROOT / 'requirements' / 'base.txt').read_text().splitlines():
        if line.lower().startswith(name + '=='):
            return line.strip()
    raise AssertionError('%s is not pinned in requirements/base.txt' % name)


@pytest.fixture(scope='module')
def ee():
    return yaml.safe_load(EE_FILE.read_text())


@pytest.fixture(scope='module')
def context(tarball, ee, tmp_path_factory):
    """The build context ansible-builder creates, from a copy of the EE file beside the built tarball."""
    work = tmp_path_factory.mktemp('ee')
    shutil.copy2(EE_FILE, work / EE_FILE.name)
    for item in ee.get('additional_build_files', []):
        if item['src'].endswith('.tar.gz'):
            (work / item['src']).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(tarball, work / item['src'])
    ctx = work / 'context'
    result = run([tool('ansible-builder'), 'create', '-f', str(work / EE_FILE.name), '-c', str(ctx),
                  '--output-filename', 'Containerfile'], cwd=work)
    assert result.returncode == 0, result.stdout + result.stderr
    return ctx


def test_schema_version_3(ee):
    assert ee['version'] == 3


def test_ee_names_the_tarball_the_build_makes(ee, tarball):
    # After a version bump in galaxy.yml, this names the line to update.
    sources = [item['src'] for item in ee.get('additional_build_files', []) if item['src'].endswith('.tar.gz')]
    assert sources == ['.build/' + tarball.name]
    names = [c['name'] for c in ee['dependencies']['galaxy']['collections']]
    assert names == ['collections/' + tarball.name]


@pytest.mark.parametrize('key, package', [('ansible_core', 'ansible-core'), ('ansible_runner', 'ansible-runner')])
def test_ansible_packages_are_exact_pins(ee, key, package):
    pin = ee['dependencies'][key]['package_pip']
    assert re.fullmatch(re.escape(package) + r'==\d+(\.\d+)+', pin), pin


def test_ee_runs_the_ansible_core_the_tests_use(ee):
    assert ee['dependencies']['ansible_core']['package_pip'] == _base_pin('ansible-core')


def test_containerfile_installs_the_pinned_packages(context, ee):
    containerfile = (context / 'Containerfile').read_text()
    refs = re.search(r'^ARG ANSIBLE_INSTALL_REFS="([^"]*)"$', containerfile, re.M)
    assert refs, containerfile[:2000]
    assert refs.group(1).split() == [ee['dependencies']['ansible_core']['package_pip'],
                                     ee['dependencies']['ansible_runner']['package_pip']]
    assert 'ARG EE_BASE_IMAGE="%s"' % ee['images']['base_image']['name'] in containerfile
    assert 'ansible-galaxy collection install' in containerfile and 'COPY _build /build' in containerfile


def test_context_holds_the_built_tarball(context, tarball):
    copied = context / '_build' / 'collections' / tarball.name
    assert copied.read_bytes() == tarball.read_bytes()


def test_galaxy_stage_installs_the_collection(context, tmp_path):
    build_dir = context / '_build'
    requirements = yaml.safe_load((build_dir / 'requirements.yml').read_text())
    assert [c['type'] for c in requirements['collections']] == ['file']
    target = tmp_path / 'collections'
    result = run([tool('ansible-galaxy'), 'collection', 'install', '-r', 'requirements.yml', '-p', str(target)],
                 cwd=build_dir, env=ansible_env(target))
    assert result.returncode == 0, result.stdout + result.stderr
    manifest = json.loads((target / 'ansible_collections' / 'vfio' / 'passthrough' / 'MANIFEST.json').read_text())
    assert manifest['collection_info']['version'] == galaxy_meta()['version']
