"""The host-critical inputs (``root``, ``protect_addresses``): one argument spec, one check, one doc
fragment, for every module that judges which devices the host cannot lose."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest
import yaml

from ansible_collections.vfio.passthrough.plugins.module_utils.host_safety._host_critical import host_critical_arg_spec
from ansible_collections.vfio.passthrough.plugins.modules import driver_blacklist, iommu_facts, sriov_vfs

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
from module_runner import run_module  # noqa: E402
from sysfs_builder import intel_gpu_host  # noqa: E402

PLUGINS = Path(__file__).resolve().parents[5] / 'plugins'
FRAGMENT = 'vfio.passthrough.host_critical'
MAINS = {'iommu_facts': iommu_facts.main, 'driver_blacklist': driver_blacklist.main, 'sriov_vfs': sriov_vfs.main}


def _documentation(path):
    for node in ast.walk(ast.parse(path.read_text(encoding='utf-8'))):
        if isinstance(node, ast.Assign) and any(getattr(t, 'id', None) == 'DOCUMENTATION' for t in node.targets):
            return yaml.safe_load(node.value.value)
    raise AssertionError('%s has no DOCUMENTATION' % path)


def _extending():
    return sorted(p.stem for p in (PLUGINS / 'modules').glob('*.py')
                  if FRAGMENT in (_documentation(p).get('extends_documentation_fragment') or []))


def test_every_module_taking_the_inputs_extends_the_one_fragment():
    assert _extending() == sorted(MAINS)


@pytest.mark.parametrize('name', sorted(MAINS))
def test_a_module_takes_the_spec_and_the_check_and_documents_neither_itself(name):
    """Its own copy of an option or of the check would drift from the others: that is what was removed."""
    path = PLUGINS / 'modules' / ('%s.py' % name)
    called = {node.func.id for node in ast.walk(ast.parse(path.read_text(encoding='utf-8')))
              if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)}
    assert {'host_critical_arg_spec', 'check_host_critical_args'} <= called
    own = set(_documentation(path).get('options') or {})
    assert not own & set(host_critical_arg_spec())


def test_the_fragment_documents_the_spec_exactly():
    options = _documentation(PLUGINS / 'doc_fragments' / 'host_critical.py')['options']
    spec = host_critical_arg_spec()
    assert set(options) == set(spec)
    for name, arg in spec.items():
        documented = {key: options[name][key] for key in ('type', 'default', 'elements') if key in options[name]}
        assert documented == arg, name


def test_each_call_gives_a_fresh_spec():
    first = host_critical_arg_spec()
    first['protect_addresses']['default'].append('192.0.2.1')
    assert host_critical_arg_spec()['protect_addresses']['default'] == []


@pytest.fixture
def base(tmp_path):
    intel_gpu_host(tmp_path / 'root')
    return tmp_path


def _args(name, base, **extra):
    args = {
        'iommu_facts': {},
        'driver_blacklist': dict(drivers=['nouveau'], path=str(base / 'blacklist.conf'), modprobe_dir=str(base),
                                 update_initramfs=False, lock_file=str(base / 'lock')),
        'sriov_vfs': dict(script=str(base / 'sriov'), rules=str(base / 'sriov.rules'), lock_file=str(base / 'lock')),
    }[name]
    args['root'] = str(base / 'root')
    args.update(extra)
    return args


@pytest.mark.parametrize('name', sorted(MAINS))
@pytest.mark.parametrize('extra, message', [
    (dict(protect_addresses=['192.0.2.7', 'not an address!']),
     "protect_addresses: 'not an address!' is neither an IP address nor a host name"),
    (dict(root='{base}/missing'), 'root {base}/missing is not a directory'),
    (dict(root='{base}'), 'root {base} has no sys/ directory to read'),
], ids=['bad-address', 'missing-root', 'root-without-sys'])
@pytest.mark.parametrize('check_mode', [False, True])
def test_bad_inputs_fail_alike_in_every_module_before_any_write(base, name, extra, message, check_mode):
    extra = {key: value.format(base=base) if isinstance(value, str) else value for key, value in extra.items()}
    before = sorted(p.name for p in base.iterdir())
    result = run_module(MAINS[name], _args(name, base, **extra), check_mode=check_mode)
    assert result.get('failed') is True and result['msg'] == message.format(base=base)
    assert sorted(p.name for p in base.iterdir()) == before


@pytest.mark.parametrize('name', sorted(MAINS))
def test_good_inputs_pass_the_check(base, name):
    result = run_module(MAINS[name], _args(name, base, protect_addresses=['192.0.2.7', 'pve1.example']),
                        check_mode=True)
    assert not result.get('failed'), result
