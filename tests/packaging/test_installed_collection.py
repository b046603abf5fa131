"""The tarball, installed into an empty collections path, works from there alone.

Every Ansible command here sees only that path (ANSIBLE_COLLECTIONS_PATH, no
site-packages scan), and the tests prove the installed copy is what ran: the
documentation's file name, the playbook path ansible-playbook announces and
every task path lie under it.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from packaging_support import ROOT, ansible_env, galaxy_meta, load_unit_helper, run, tool

MODULES = sorted(p.stem for p in (ROOT / 'plugins' / 'modules').glob('*.py') if p.stem != '__init__')
COLLECTION = ('ansible_collections', 'vfio', 'passthrough')


def _doc(collections_path, fqcn, cwd):
    result = run([tool('ansible-doc'), '--json', '-t', 'module', fqcn], cwd=cwd, env=ansible_env(collections_path))
    # ansible-doc exits 0 and prints {} for a module it cannot find: judge by the JSON.
    assert result.returncode == 0, result.stderr
    return (json.loads(result.stdout or '{}').get(fqcn) or {}).get('doc') or {}, result.stderr


def test_modules_exist():
    assert MODULES, 'no modules under plugins/modules'


def test_installed_manifest_is_this_version(installed):
    meta = galaxy_meta()
    manifest = json.loads(installed.joinpath(*COLLECTION, 'MANIFEST.json').read_text())['collection_info']
    assert (manifest['namespace'], manifest['name'], manifest['version']) == (meta['namespace'], meta['name'], meta['version'])


def test_collection_list_sees_only_the_installed_copy(installed):
    result = run([tool('ansible-galaxy'), 'collection', 'list', '--format', 'json'], cwd=installed,
                 env=ansible_env(installed))
    assert result.returncode == 0, result.stderr
    found = {path: names['vfio.passthrough'] for path, names in json.loads(result.stdout).items()
             if 'vfio.passthrough' in names}
    assert found == {str(installed.joinpath(*COLLECTION[:1])): {'version': galaxy_meta()['version']}}


def test_an_empty_collections_path_finds_nothing(tmp_path):
    # The control for the tests below: confined to an empty path, ansible-doc
    # must not find the module in the checkout, site-packages or ~/.ansible.
    doc, _stderr = _doc(tmp_path, 'vfio.passthrough.' + MODULES[0], tmp_path)
    assert doc == {}


@pytest.mark.parametrize('module', MODULES)
def test_ansible_doc_from_the_installed_copy(installed, module, tmp_path):
    fqcn = 'vfio.passthrough.' + module
    doc, stderr = _doc(installed, fqcn, tmp_path)
    assert doc.get('short_description') and doc.get('description'), 'no documentation for %s: %s' % (fqcn, stderr)
    assert Path(doc['filename']).is_relative_to(installed.joinpath(*COLLECTION)), doc['filename']


def test_report_playbook_in_check_mode_from_the_installed_copy(installed, tmp_path):
    root = tmp_path / 'root'
    built = subprocess.run([sys.executable, str(ROOT / 'tests' / 'unit' / 'sysfs_builder.py'), 'intel_gpu_host', str(root)],
                           capture_output=True, text=True, check=False)
    assert built.returncode == 0, built.stderr
    addresses = sorted(p.name for p in (root / 'sys' / 'bus' / 'pci' / 'devices').iterdir())
    assert addresses
    snapshot = load_unit_helper('tree_snapshot').tree_snapshot
    before = snapshot(root)
    inventory = tmp_path / 'inventory.ini'
    # No become: the play reads a fake tree, and sudo is not on a bare CI machine.
    inventory.write_text('localhost ansible_connection=local ansible_become=false ansible_python_interpreter=%s\n'
                         % sys.executable)
    result = run([tool('ansible-playbook'), '-i', str(inventory), 'vfio.passthrough.report', '--check', '-vv',
                  '-e', 'pcie_passthrough_hosts=all', '-e', 'pcie_passthrough_root=%s' % root,
                  '-e', 'pcie_passthrough_report_dir=%s' % (tmp_path / 'reports')],
                 cwd=tmp_path, env=ansible_env(installed, ANSIBLE_LOCAL_TEMP=str(tmp_path / 'tmp')))
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    assert re.search(r'^localhost +: ok=\d+ +changed=\d+ +unreachable=0 +failed=0 ', result.stdout, re.M), output[-2000:]

    playbook = installed.joinpath(*COLLECTION, 'playbooks', 'report.yml')
    assert 'plays in %s' % playbook in result.stdout, output[:3000]
    task_paths = re.findall(r'^task path: (.+):\d+$', result.stdout, re.M)
    assert task_paths, output[:3000]
    elsewhere = sorted({p for p in task_paths if not Path(p).is_relative_to(installed)})
    assert not elsewhere, 'tasks ran from outside the installed copy: %s' % elsewhere

    missing = [a for a in addresses if a not in result.stdout]
    assert not missing, 'the report run does not mention %s' % missing
    assert snapshot(root) == before, 'the read-only report changed the host tree'
    assert not (tmp_path / 'reports').exists(), 'the report wrote files under --check'
