"""The molecule check-versus-real comparison records every writer of the role.

molecule/shared/record-run.yml keeps, per writer module, the diffs its configure.yml call
reported, in check mode and for real; the scenarios' verify compares the two writer by writer
(molecule/shared/testinfra/vfio_testinfra.py). A writer missing from the record is a writer whose
check-mode prediction nobody compares: this test finds the role's writers from the role itself
(every module it calls while configuring that documents diff support) and fails when the record,
or the testinfra helper's list, misses one or names a result the role does not register; and
it feeds the helper's comparison recorded runs that differ in one way each, which must fail it.
"""

from __future__ import annotations

import ast
import base64
import importlib.util
import json
import re
from pathlib import Path

import pytest
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


def _helper():
    spec = importlib.util.spec_from_file_location('vfio_testinfra', TESTINFRA)
    helper = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(helper)
    return helper


def test_the_comparison_walks_the_same_writers():
    assert sorted(_helper().WRITERS) == sorted(recorded_writers())


class _Host:
    """What the comparison reads of a container: files, through ``base64`` (vfio_testinfra.file_bytes)."""

    def __init__(self, files):
        self.files = files

    def run(self, command):
        path = command.rsplit(' ', 1)[1]
        ok = path in self.files
        return type('Result', (), {'rc': 0 if ok else 1, 'stderr': '' if ok else 'absent',
                                   'stdout': base64.b64encode(self.files.get(path, '').encode()).decode()})()


def _diff(path, after):
    return {'before_header': path, 'after_header': path, 'before': '', 'after': after}


RULES, SCRIPT = '/etc/udev/rules.d/70-vfio-passthrough-sriov.rules', '/usr/local/sbin/vfio-passthrough-sriov'
REAL_RUN = {'kernel_cmdline': [_diff('/etc/kernel/cmdline', 'iommu=pt\n')], 'vfio_modules': [],
            'driver_blacklist': [], 'vfio_address_binding': [], 'sriov_vfs': [_diff(RULES, 'r\n'), _diff(SCRIPT, 's\n')]}
EXPECTED = {'kernel_cmdline': {'/etc/kernel/cmdline'}, 'sriov_vfs': {RULES, SCRIPT}}
FILES = {'/etc/kernel/cmdline': 'iommu=pt\n', RULES: 'r\n', SCRIPT: 's\n'}


@pytest.mark.parametrize('check, files, expected, fails', [
    (REAL_RUN, FILES, EXPECTED, None),
    # check mode predicted one of sriov_vfs' two files
    (dict(REAL_RUN, sriov_vfs=REAL_RUN['sriov_vfs'][:1]), FILES, EXPECTED, 'sriov_vfs: check predicted'),
    # a record of three writers, as before issue 25
    ({k: v for k, v in REAL_RUN.items() if k not in ('vfio_address_binding', 'sriov_vfs')}, FILES, EXPECTED,
     'the check run recorded'),
    # the file the real run reported is not what the host holds
    (REAL_RUN, dict(FILES, **{SCRIPT: 'other\n'}), EXPECTED, SCRIPT),
    # a writer wrote where the scenario expects nothing
    (REAL_RUN, FILES, {'kernel_cmdline': {'/etc/kernel/cmdline'}}, "'sriov_vfs'"),
], ids=['same', 'check-missed-a-file', 'three-writers', 'file-differs', 'unexpected-writer'])
def test_the_comparison_fails_on_any_difference(tmp_path, monkeypatch, check, files, expected, fails):
    helper = _helper()
    for kind, diffs in (('check', check), ('converge', REAL_RUN)):
        (tmp_path / ('diffs-%s.json' % kind)).write_text(json.dumps(diffs))
    monkeypatch.setenv('MOLECULE_EPHEMERAL_DIRECTORY', str(tmp_path))
    if fails is None:
        helper.assert_check_diff_is_real_diff(_Host(files), expected)
        return
    with pytest.raises(AssertionError, match=re.escape(fails)):
        helper.assert_check_diff_is_real_diff(_Host(files), expected)
