"""The molecule check-versus-real comparison records every writer of the role.

molecule/shared/record-run.yml keeps, per writer module, the diffs its configure.yml call
reported, in check mode and for real; the scenarios' verify compares the two writer by writer
(molecule/shared/testinfra/vfio_testinfra.py). A writer missing from the record is a writer whose
check-mode prediction nobody compares: this test finds the role's writers from the role itself
(every module it calls while configuring that documents diff support) and fails when the record,
or the testinfra helper's list, misses one or names a result the role does not register.
"""

from __future__ import annotations

import ast
import importlib.util
import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
TASKS = ROOT / 'roles' / 'pcie_passthrough' / 'tasks'
RECORD = ROOT / 'molecule' / 'shared' / 'record-run.yml'
TESTINFRA = ROOT / 'molecule' / 'shared' / 'testinfra' / 'vfio_testinfra.py'
PREFIX = 'vfio.passthrough.'
_RESULT = re.compile(r'^\{\{\s*(__pcie_passthrough_\w+)\s*\|\s*default\(\{\}\)\s*\}\}$')


def _diff_modules():
    """Modules whose documentation says they report a diff (attributes.diff_mode.support: full)."""
    found = set()
    for path in sorted((ROOT / 'plugins' / 'modules').glob('*.py')):
        for node in ast.parse(path.read_text(encoding='utf-8')).body:
            if isinstance(node, ast.Assign) and any(getattr(t, 'id', None) == 'DOCUMENTATION' for t in node.targets):
                doc = yaml.safe_load(node.value.value) or {}
                if ((doc.get('attributes') or {}).get('diff_mode') or {}).get('support') == 'full':
                    found.add(path.stem)
    return found


def _tasks(name):
    """The tasks of a role task file, blocks opened and static imports followed."""
    def walk(tasks):
        for task in tasks or []:
            imported = task.get('ansible.builtin.import_tasks')
            if imported:
                yield from _tasks(imported)
            yield task
            for key in ('block', 'rescue', 'always'):
                yield from walk(task.get(key))
    yield from walk(yaml.safe_load((TASKS / name).read_text(encoding='utf-8')))


def role_writers():
    """{module name: the variable its configure.yml call registers} for each writer of the role."""
    diff_modules = _diff_modules()
    writers = {}
    for task in _tasks('configure.yml'):
        for key in task:
            if key.startswith(PREFIX) and key[len(PREFIX):] in diff_modules:
                writers[key[len(PREFIX):]] = task.get('register')
    return writers


def recorded_writers():
    plays = yaml.safe_load(RECORD.read_text(encoding='utf-8'))
    results = plays[0]['vars']['vfio_writer_results']
    recorded = {}
    for writer, template in results.items():
        match = _RESULT.match(template.strip())
        assert match, '%s: %r is not "{{ <registered result> | default({}) }}"' % (writer, template)
        recorded[writer] = match.group(1)
    return recorded


def test_the_role_has_its_five_writers():
    # Found from the role, so this would prove nothing if it found none.
    assert set(role_writers()) == {'kernel_cmdline', 'vfio_modules', 'driver_blacklist', 'vfio_address_binding',
                                   'sriov_vfs'}


def test_every_writer_is_recorded_with_the_result_it_registers():
    writers = role_writers()
    assert all(writers.values()), 'a writer of configure.yml registers no result: %s' % writers
    assert recorded_writers() == writers


def test_the_comparison_walks_the_same_writers():
    spec = importlib.util.spec_from_file_location('vfio_testinfra', TESTINFRA)
    helper = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(helper)
    assert sorted(helper.WRITERS) == sorted(recorded_writers())
