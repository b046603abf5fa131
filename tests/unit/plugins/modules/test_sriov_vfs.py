"""sriov_vfs: the udev rule and script through the one transaction, refusals before any write."""

from __future__ import annotations

import stat
import sys
from pathlib import Path

import pytest

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.vfio.passthrough.plugins.modules import sriov_vfs

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from module_runner import run_module  # noqa: E402
from sriov_hosts import HOST_VF, PF0, PF1, host_on_vf, sriov_host  # noqa: E402
from tree_snapshot import tree_snapshot  # noqa: E402

REQUEST = [{'pf': PF0, 'vfs': 2, 'vfio': [0]}, {'pf': '02:00.0', 'vfs': 3}]
OTHER = '# Managed by Ansible (vfio.passthrough.driver_blacklist): manual edits will be overwritten\nblacklist x\n'


@pytest.fixture
def host(tmp_path, monkeypatch):
    def refuse(self, *args, **kwargs):
        raise AssertionError('sriov_vfs ran a command for a non-live root: %r' % (args,))
    monkeypatch.setattr(AnsibleModule, 'run_command', refuse)
    sriov_host(tmp_path / 'root')
    return tmp_path


def _run(base, pfs, check_mode=False, diff=False, **extra):
    args = dict(pfs=pfs, root=str(base / 'root'), script=str(base / 'sbin/sriov'),
                rules=str(base / 'rules.d/70-sriov.rules'), lock_file=str(base / 'lock'))
    args.update(extra)
    return run_module(sriov_vfs.main, args, check_mode=check_mode, diff=diff)


def _files(base):
    found = {}
    for path in (base / 'sbin/sriov', base / 'rules.d/70-sriov.rules'):
        if path.exists():
            found[path.name] = (path.read_text(), stat.S_IMODE(path.stat().st_mode))
    return found


def test_writes_rule_and_script_then_is_idempotent(host):
    (host / 'sbin').mkdir()
    (host / 'rules.d').mkdir()
    checked = _run(host, REQUEST, check_mode=True, diff=True)
    assert _files(host) == {}
    done = _run(host, REQUEST, diff=True)
    for result in (checked, done):
        written = [str(host / 'rules.d/70-sriov.rules'), str(host / 'sbin/sriov')]
        assert result['changed'] is True and result['files_changed'] == written
        assert [d['after_header'] for d in result['diff']] == [str(host / 'rules.d/70-sriov.rules'), str(host / 'sbin/sriov')]
        assert result['pfs'] == [{'pf': PF0, 'vfs': 2, 'vfio': [0]}, {'pf': PF1, 'vfs': 3, 'vfio': [0, 1, 2]}]
        # PF1 has 0 VFs and 3 are asked, but a fake root is not the running system: nothing changes live.
        assert result['live'] == [] and result['reboot_required'] is True
        assert result['deferred'] == [{'pf': PF1, 'why': '0000:02:00.0 has 0 VFs, 3 asked; not changed now: root is '
                                                         '%s, not the running system' % (host / 'root')}]
        assert result['notes'] == ["pfs: '02:00.0' means 0000:02:00.0"]
    files = _files(host)
    assert files['70-sriov.rules'][1] == 0o644 and files['sriov'][1] == 0o755
    assert 'RUN+="/bin/sh %s 0000:02:00.0 3 0,1,2"' % (host / 'sbin/sriov') in files['70-sriov.rules'][0]
    again = _run(host, REQUEST)
    assert again['changed'] is False and again['files_changed'] == [] and _files(host) == files


def test_removing_the_request_removes_only_its_files(host):
    (host / 'sbin').mkdir()
    (host / 'rules.d').mkdir()
    (host / 'rules.d/60-other.rules').write_text('# not ours\n')
    _run(host, REQUEST)
    ours = {'rules.d/70-sriov.rules', 'sbin/sriov'}
    before = {k: v for k, v in tree_snapshot(host).items() if k not in ours}
    gone = _run(host, [], diff=True)
    assert gone['changed'] is True and _files(host) == {}
    assert gone['diff'][0]['after'] == '' and gone['reboot_required'] is False
    # Nothing else: the running VFs (sriov_numvfs and every VF file of the fake sysfs below root) and
    # every other file stay byte for byte and inode for inode; no command runs.
    assert tree_snapshot(host) == before
    assert gone['live'] == [] and gone['deferred'] == [] and gone['commands'] == []
    assert (host / 'rules.d/60-other.rules').read_text() == '# not ours\n'
    assert _run(host, [])['changed'] is False


@pytest.mark.parametrize('pfs, extra, expected', [
    ([{'pf': '01:00', 'vfs': 2}], {}, "'01:00' names the whole device 0000:01:00, not one function"),
    ([{'pf': PF0, 'vfs': 9}], {}, 'vfs 9 is not a count from 0 to 7, the sriov_totalvfs of 0000:01:00.0'),
    ([{'pf': PF0, 'vfs': 2}], {'passthrough': [PF0]}, '0000:01:00.0 is also in pcie_passthrough_devices'),
    ([{'pf': PF0, 'vfs': 2, 'vfio': [5]}], {}, 'vfio index 5 is no VF of the 2 asked for'),
])
def test_bad_request_refused_before_any_write(host, pfs, extra, expected):
    result = _run(host, pfs, **extra)
    assert result['failed'] is True and expected in result['msg'] and result['msg'].endswith('nothing was written')
    assert _files(host) == {} and not (host / 'lock').exists()


def test_refuses_a_rules_file_another_module_owns(host):
    (host / 'rules.d').mkdir()
    (host / 'rules.d/70-sriov.rules').write_text(OTHER)
    result = _run(host, REQUEST)
    assert result['failed'] is True and 'managed by vfio.passthrough.driver_blacklist' in result['msg']
    assert (host / 'rules.d/70-sriov.rules').read_text() == OTHER and not (host / 'sbin/sriov').exists()


def test_same_path_twice_refused(host):
    result = _run(host, REQUEST, script=str(host / 'x'), rules=str(host / 'x'))
    assert result['failed'] is True and 'two different files' in result['msg']


@pytest.fixture
def on_vf(tmp_path, monkeypatch):
    """The host's default route runs through VF 1 of PF0 (bridged), which has 2 VFs now."""
    def refuse(self, *args, **kwargs):
        raise AssertionError('sriov_vfs ran a command for a non-live root: %r' % (args,))
    monkeypatch.setattr(AnsibleModule, 'run_command', refuse)
    host_on_vf(tmp_path / 'root', 'bridge')
    (tmp_path / 'sbin').mkdir()
    (tmp_path / 'rules.d').mkdir()
    return tmp_path


def test_a_count_change_under_the_host_waits_for_the_boot_naming_the_vf(on_vf):
    for check_mode in (True, False):
        result = _run(on_vf, [{'pf': PF0, 'vfs': 3, 'vfio': [0]}], check_mode=check_mode)
        assert result['live'] == [] and result['reboot_required'] is True and result['commands'] == []
        assert result['deferred'] == [{'pf': PF0, 'why': (
            '0000:01:00.0 has 2 VFs, 3 asked; the host runs on VF 1 (0000:01:10.2: %s) and any count change removes '
            'every VF first, so the change waits for the next boot' % HOST_VF['bridge'])}]


@pytest.mark.parametrize('vfs', [0, 1])
def test_a_count_that_leaves_out_the_hosts_vf_is_refused_before_any_write(on_vf, vfs):
    before = tree_snapshot(on_vf)
    result = _run(on_vf, [{'pf': PF0, 'vfs': vfs, 'vfio': []}])
    assert result['failed'] is True and result['msg'].endswith('; nothing was written')
    assert ('the host runs on VF 1 (0000:01:10.2: %s), which a count of %d leaves out' % (HOST_VF['bridge'], vfs)
            in result['msg'])
    assert tree_snapshot(on_vf) == before


def test_dropping_a_pf_the_host_runs_on_from_the_rules_is_refused(on_vf):
    kept = _run(on_vf, [{'pf': PF0, 'vfs': 2, 'vfio': [0]}])
    assert kept['changed'] is True and kept['deferred'] == [] and kept['live'] == []
    before = tree_snapshot(on_vf)
    for pfs in ([], [{'pf': PF1, 'vfs': 1, 'vfio': []}]):
        result = _run(on_vf, pfs)
        assert result['failed'] is True and result['msg'].startswith(
            '0000:01:00.0 is no longer listed, so the next boot makes none of its VFs, and the host runs on VF 1 '
            '(0000:01:10.2: %s)' % HOST_VF['bridge'])
        assert tree_snapshot(on_vf) == before
