"""Every refusal before the first write: each module the role writes with has a dry run in the pre-flight.

configure.yml writes; preflight.yml (imported before backup.yml and configure.yml) calls each of the
same modules in check mode, so a refusal a module makes only on the host (sriov_vfs' VF the host runs
on, driver_blacklist's host-critical driver, ...) stops the run while every file is as it was. The
dry run passes every option the real call passes, with the same value: a refusal that depends on an
option would otherwise differ between the two. Both take their options from one place, the
`module_defaults` of the block in main.yml that holds the pre-flight, the backup and configure.yml;
a call adds only what is its own (OWN_OPTIONS).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from ansible.parsing.dataloader import DataLoader
from ansible.template import Templar

ROOT = Path(__file__).resolve().parents[2]
TASKS = ROOT / 'roles' / 'pcie_passthrough' / 'tasks'
IMPORT = 'ansible.builtin.import_tasks'
# Options that change what happens after the checks, never what is refused.
AFTER_THE_CHECKS = {('vfio.passthrough.kernel_cmdline', 'apply')}
# What one call passes itself: the real call's `apply`, the dry run's initramfs inputs to compare
# against. Everything else comes from main.yml's module_defaults.
OWN_OPTIONS = AFTER_THE_CHECKS | {('vfio.passthrough.vfio_modules', 'initramfs_inputs')}


def _load(name):
    return DataLoader().load_from_file(str(TASKS / name), trusted_as_template=True) or []


def _shared_options():
    """The module_defaults of main.yml's block that imports preflight.yml and configure.yml."""
    blocks = [task for task in _load('main.yml') if 'block' in task
              and 'preflight.yml' in [inner.get(IMPORT) for inner in task['block']]]
    assert len(blocks) == 1, 'main.yml: no single block imports preflight.yml'
    return blocks[0].get('module_defaults') or {}


def _calls(name, variables=None, shared=True):
    """(module, options, check_mode) of each module call in task file ``name``, static imports followed.

    Options are those in effect: main.yml's module_defaults under the call's own (shared=False: the
    call's own only).
    """
    variables = dict(variables or {})
    found = []
    for task in _flatten(_load(name)):
        if IMPORT in task:
            found += _calls(task[IMPORT], dict(variables, **(task.get('vars') or {})), shared)
            continue
        module = next((key for key in task if key.startswith('vfio.passthrough.')), None)
        if module is None:
            continue
        check = task.get('check_mode', False)
        if isinstance(check, str):
            templar = Templar(loader=DataLoader(), variables=dict(variables, ansible_check_mode=False))
            check = templar.template(check)
        options = dict(_shared_options().get(module) or {}) if shared else {}
        options.update(task[module] or {})
        found.append((module, options, bool(check)))
    return found


def _flatten(tasks):
    for task in tasks:
        yield task
        for key in ('block', 'rescue', 'always'):
            yield from _flatten(task.get(key) or [])


def _writers():
    writes = [(module, options) for module, options, check in _calls('configure.yml') if not check]
    assert writes, 'configure.yml calls no module for real: this test would prove nothing'
    return writes


def test_the_pre_flight_comes_before_every_write():
    order = [task.get(IMPORT) or task.get('ansible.builtin.include_tasks') for task in _flatten(_load('main.yml'))]
    assert order.index('preflight.yml') < order.index('backup.yml') < order.index('configure.yml')


@pytest.mark.parametrize('module, options', _writers(), ids=[m for m, _o in _writers()])
def test_each_writer_has_a_dry_run_in_the_pre_flight_with_the_same_options(module, options):
    dry = [opts for name, opts, check in _calls('preflight.yml') if name == module and check]
    assert dry, '%s writes in configure.yml but has no dry run in preflight.yml' % module
    missing = {key: value for key, value in options.items()
               if (module, key) not in AFTER_THE_CHECKS and dry[0].get(key) != value}
    assert missing == {}, '%s: the dry run does not pass these as the real call does' % module


@pytest.mark.parametrize('name', ['preflight.yml', 'configure.yml'])
def test_each_call_passes_only_its_own_options_the_rest_are_defined_once(name):
    calls = _calls(name, shared=False)
    assert calls, '%s calls no module: this test would prove nothing' % name
    shared = _shared_options()
    own = {(module, key) for module, options, _check in calls if module in shared for key in options}
    assert own <= OWN_OPTIONS


def test_every_writer_takes_its_options_from_the_shared_defaults():
    shared = _shared_options()
    assert sorted(module for module, _options in _writers() if module not in shared) == [
        'vfio.passthrough.sriov_vfs']
