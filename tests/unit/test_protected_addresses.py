"""One rule for the addresses a host must keep: the role and playbooks/report.yml may not diverge.

iommu_facts marks a device host-critical from ``protect_addresses`` (and the tree under ``root``);
the role refuses what the facts mark. If the report passed other inputs, it could call a NIC
host-critical that the role lets through, or the other way round. So every call of a module
taking ``protect_addresses`` in roles/ and playbooks/ must pass the role's one variable, and the
report must gather its facts through the role's own task.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml
from ansible.parsing.dataloader import DataLoader
from ansible.template import Templar

ROOT = Path(__file__).resolve().parents[2]
ROLE = ROOT / 'roles' / 'pcie_passthrough'
FACTS_TASKS = ROLE / 'tasks' / 'iommu_facts.yml'
RULE = '{{ __pcie_passthrough_protect_addresses }}'


def _documentation(path):
    """The YAML of the ``DOCUMENTATION`` string assigned in ``path`` (at module or class level)."""
    for node in ast.walk(ast.parse(path.read_text(encoding='utf-8'))):
        if isinstance(node, ast.Assign) and any(getattr(t, 'id', None) == 'DOCUMENTATION' for t in node.targets):
            return yaml.safe_load(node.value.value) or {}
    return {}


def _protecting_modules():
    """Every module that takes ``protect_addresses``, read from its documentation and this collection's
    fragments it extends: a new module that judges host-critical devices is covered the day it documents
    the option."""
    found = []
    for path in sorted((ROOT / 'plugins' / 'modules').glob('*.py')):
        doc = _documentation(path)
        options = dict(doc.get('options') or {})
        for fragment in doc.get('extends_documentation_fragment') or []:
            if fragment.startswith('vfio.passthrough.'):
                fragment_file = ROOT / 'plugins' / 'doc_fragments' / (fragment.split('.')[2] + '.py')
                options.update(_documentation(fragment_file).get('options') or {})
        if 'protect_addresses' in options:
            found.append('vfio.passthrough.' + path.stem)
    return tuple(found)


# The modules whose host-critical verdicts depend on the protected addresses.
PROTECTING = _protecting_modules()


def test_the_protecting_modules_are_found():
    assert {'vfio.passthrough.iommu_facts', 'vfio.passthrough.driver_blacklist',
            'vfio.passthrough.sriov_vfs'} <= set(PROTECTING)


def _tasks(tasks, defaults=None):
    """Each task with the options in effect: a block's module_defaults under the task's own."""
    for task in tasks or []:
        inherited = dict(defaults or {})
        for module, options in (task.get('module_defaults') or {}).items():
            inherited[module] = dict(inherited.get(module) or {}, **(options or {}))
        yield _with_defaults(task, inherited)
        for key in ('block', 'rescue', 'always'):
            yield from _tasks(task.get(key), inherited)


def _with_defaults(task, defaults):
    task = dict(task)
    for module, options in defaults.items():
        if module in task:
            task[module] = dict(options, **(task[module] or {}))
    return task


def _imported_defaults():
    """Role task file -> the module_defaults of main.yml's blocks that import it (imports followed)."""
    found = {}

    def visit(name, defaults):
        found[name] = defaults
        for task in _tasks(yaml.safe_load((ROLE / 'tasks' / name).read_text(encoding='utf-8'))):
            for key in ('ansible.builtin.import_tasks', 'ansible.builtin.include_tasks'):
                if key in task:
                    visit(task[key], defaults)

    for task in yaml.safe_load((ROLE / 'tasks' / 'main.yml').read_text(encoding='utf-8')):
        for inner in task.get('block') or []:
            name = inner.get('ansible.builtin.import_tasks') or inner.get('ansible.builtin.include_tasks')
            if name and task.get('module_defaults'):
                visit(name, task['module_defaults'])
    return found


def _task_files():
    files = sorted((ROLE / 'tasks').glob('*.yml')) + sorted((ROOT / 'playbooks').glob('*.yml'))
    role_defaults = _imported_defaults()
    for path in files:
        data = yaml.safe_load(path.read_text(encoding='utf-8')) or []
        plays = data if path.parent.name == 'playbooks' else [{'tasks': data}]
        defaults = role_defaults.get(path.name) if path.parent.name == 'tasks' else None
        for play in plays:
            for section in ('pre_tasks', 'tasks', 'post_tasks', 'handlers'):
                for task in _tasks(play.get(section), defaults):
                    yield path.relative_to(ROOT), task


def _calls(module):
    return [(path, task) for path, task in _task_files() if module in task]


@pytest.mark.parametrize('module', PROTECTING)
def test_every_call_passes_the_roles_protected_addresses(module):
    calls = _calls(module)
    assert calls, 'no task calls %s: this test would prove nothing' % module
    for path, task in calls:
        assert task[module].get('protect_addresses') == RULE, (path, task['name'], task[module])
        assert task[module].get('root') == '{{ pcie_passthrough_root }}', (path, task['name'], task[module])


def test_report_gathers_its_facts_through_the_roles_task():
    report = Path('playbooks/report.yml')
    gathering = [task for path, task in _task_files() if path == report
                 and task.get('ansible.builtin.include_role', {}).get('tasks_from') == FACTS_TASKS.name]
    assert [task['ansible.builtin.include_role']['name'] for task in gathering] == ['vfio.passthrough.pcie_passthrough']
    assert [path for path, _task in _calls('vfio.passthrough.iommu_facts') if path == report] == []
    facts = yaml.safe_load(FACTS_TASKS.read_text(encoding='utf-8'))
    assert [list(task) for task in facts] == [['name', 'vfio.passthrough.iommu_facts']]


def test_the_role_gathers_through_the_same_task():
    facts = yaml.safe_load((ROLE / 'tasks' / 'facts.yml').read_text(encoding='utf-8'))
    assert facts[0].get('ansible.builtin.import_tasks') == FACTS_TASKS.name


@pytest.mark.parametrize('hostvars, expected', [
    ({'ansible_host': '192.0.2.11'}, ['192.0.2.11']),
    ({'ansible_host': '192.0.2.11', 'ansible_connection': 'ssh'}, ['192.0.2.11']),
    ({'ansible_host': 'pve1.example.org', 'ansible_connection': 'ansible.builtin.paramiko_ssh'}, ['pve1.example.org']),
    ({'ansible_host': '192.0.2.11', 'ansible_connection': 'ansible.netcommon.libssh'}, ['192.0.2.11']),
    # Under podman or local, ansible_host names a container or nothing of the host's own.
    ({'ansible_host': 'vfio-abc-systemd_boot', 'ansible_connection': 'containers.podman.podman'}, []),
    ({'ansible_host': 'localhost', 'ansible_connection': 'local'}, []),
    ({}, []),
], ids=['ssh-default', 'ssh', 'paramiko', 'libssh', 'podman', 'local', 'no-ansible_host'])
def test_the_rule(hostvars, expected):
    loader = DataLoader()
    role_vars = loader.load_from_file(str(ROLE / 'vars' / 'main.yml'), trusted_as_template=True)
    templar = Templar(loader=loader, variables=dict(role_vars, **hostvars))
    assert templar.template(role_vars['__pcie_passthrough_protect_addresses']) == expected
