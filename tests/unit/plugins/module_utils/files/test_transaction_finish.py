"""How every writing module ends (Transaction.finish, finish_initramfs): the keys all writers
report, what ran, check and diff mode, warnings only after success, and the rollback."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.testing import patch_module_args

from ansible_collections.vfio.passthrough.plugins.module_utils.files._transaction import Transaction

MODULES = Path(__file__).resolve().parents[5] / 'plugins' / 'modules'
STUB = '#!/bin/sh\necho "$(basename "$0") $*" >> "{log}"\nexit {rc}\n'


class Exited(Exception):
    """exit_json or fail_json, raised instead of exiting: the result is the exception's ``result``."""

    def __init__(self, result):
        super().__init__(result)
        self.result = result


class Host:
    """A file to edit, stub commands on PATH that log their calls, and a module that records warnings."""

    def __init__(self, base, monkeypatch):
        self.base = base
        self.path = base / 'conf'
        self.path.write_bytes(b'old \xff bytes\n')
        self.path.chmod(0o640)
        self.bin = base / 'bin'
        self.bin.mkdir()
        self.log = base / 'calls.log'
        for name in ('update-initramfs', 'update-grub', 'udevadm'):
            self.stub(name, 0)
        monkeypatch.setenv('PATH', '%s:/usr/bin:/bin' % self.bin)

    def stub(self, name, rc):
        path = self.bin / name
        path.write_text(STUB.format(log=self.log, rc=rc))
        path.chmod(0o755)

    def calls(self):
        return self.log.read_text().splitlines() if self.log.exists() else []

    def module(self, check_mode=False, diff=False):
        with patch_module_args({'_ansible_check_mode': check_mode, '_ansible_diff': diff}):
            module = AnsibleModule(argument_spec={}, supports_check_mode=True)

        def leave(**result):
            raise Exited(result)

        module.exit_json = leave
        module.fail_json = lambda msg, **result: leave(msg=msg, failed=True, **result)
        module.warnings_given = []
        module.warn = module.warnings_given.append
        return module

    def finish(self, after='new\n', check_mode=False, diff=False, initramfs=None, **kwargs):
        """One transaction that plans ``after`` (None: leave the file) and ends with ``finish`` or,
        with ``initramfs`` (the update flag), ``finish_initramfs``; returns (result, module)."""
        module = self.module(check_mode, diff)
        with pytest.raises(Exited) as exited:
            with Transaction(module, lock_file=str(self.base / 'lock')) as tx:
                before = tx.read(str(self.path))
                if after is not None:
                    tx.change(str(self.path), before, after)
                if initramfs is None:
                    tx.finish(kwargs.pop('result', {'own': 1}), **kwargs)
                else:
                    tx.finish_initramfs(kwargs.pop('result', {'own': 1}), initramfs)
        return exited.value.result, module


@pytest.fixture
def host(tmp_path, monkeypatch):
    return Host(tmp_path, monkeypatch)


COMMANDS = [['update-grub'], ['udevadm', 'control', '--reload']]


@pytest.mark.parametrize('ran, expected', [
    ('command', {'command': ['{bin}/update-grub']}),
    ('commands', {'commands': [['{bin}/update-grub'], ['{bin}/udevadm', 'control', '--reload']]}),
    (None, {}),
])
def test_finish_reports_what_ran_as_the_module_names_it(host, ran, expected):
    result, _module = host.finish(commands=COMMANDS, ran=ran)
    expected = {key: [[a.format(bin=host.bin) for a in argv] if isinstance(argv, list) else argv.format(bin=host.bin)
                      for argv in value] for key, value in expected.items()}
    assert result == dict(own=1, changed=True, files_changed=[str(host.path)], **expected)
    assert host.calls() == ['update-grub ', 'udevadm control --reload']
    assert host.path.read_text() == 'new\n'


@pytest.mark.parametrize('after, own, changed', [
    ('new\n', False, True),  # a file changes
    (None, True, True),  # the module changed something besides files (a live VF count)
    (None, False, False),
])
def test_changed_is_a_file_change_or_the_modules_own(host, after, own, changed):
    result, _module = host.finish(after=after, result={'changed': own}, commands=[['update-grub']] if after else [])
    assert result['changed'] is changed
    assert result['files_changed'] == ([str(host.path)] if after else [])
    assert result['command'] == ([str(host.bin / 'update-grub')] if after else None)


@pytest.mark.parametrize('diff', [False, True])
def test_the_diff_is_reported_in_diff_mode_only(host, diff):
    result, _module = host.finish(diff=diff)
    if diff:
        assert [(d['before_header'], d['after']) for d in result['diff']] == [(str(host.path), 'new\n')]
    else:
        assert 'diff' not in result


def test_check_mode_reports_the_same_change_and_writes_and_runs_nothing(host):
    result, module = host.finish(check_mode=True, diff=True, commands=COMMANDS,
                                 warnings=['conf changed; refresh by hand'])
    assert result['changed'] is True and result['files_changed'] == [str(host.path)] and result['command'] is None
    assert result['diff'][0]['after'] == 'new\n'
    assert module.warnings_given == ['conf changed; refresh by hand']
    assert host.path.read_bytes() == b'old \xff bytes\n' and host.calls() == []


def test_a_backup_is_reported_as_backup_file(host):
    result, _module = host.finish(backup=True)
    backup = Path(result['backup_file'])
    assert backup.parent == host.base and backup.read_bytes() == b'old \xff bytes\n'


@pytest.mark.parametrize('initramfs', [None, True], ids=['finish', 'finish_initramfs'])
def test_a_failed_command_restores_the_file_and_gives_no_warning(host, initramfs):
    host.stub('update-grub', 1)
    host.stub('update-initramfs', 1)
    extra = {} if initramfs else {'commands': [['update-grub']], 'warnings': ['conf changed; refresh by hand']}
    result, module = host.finish(initramfs=initramfs, **extra)
    assert result['failed'] is True and result['rc'] == 1 and 'restored' in result['msg']
    assert result['own'] == 1 and result['files_changed'] == [] and result['restored'] == [str(host.path)]
    assert module.warnings_given == []
    assert host.path.read_bytes() == b'old \xff bytes\n'
    assert host.path.stat().st_mode & 0o777 == 0o640
    if initramfs:
        assert result['initramfs_updated'] is False and result['reboot_required'] is True


@pytest.mark.parametrize('after, update, check_mode, runs', [
    ('new\n', True, False, True),
    ('new\n', False, False, False),  # the caller rebuilds once for several modules
    ('new\n', True, True, False),
    (None, True, False, False),  # nothing changed: no rebuild
])
def test_finish_initramfs_rebuilds_after_a_change_only(host, after, update, check_mode, runs):
    result, _module = host.finish(after=after, initramfs=update, check_mode=check_mode)
    changed = after is not None
    assert host.calls() == (['update-initramfs -u -k all'] if runs else [])
    assert result == dict(own=1, changed=changed, files_changed=[str(host.path)] if changed else [],
                          reboot_required=changed, initramfs_updated=runs,
                          command=[str(host.bin / 'update-initramfs'), '-u', '-k', 'all'] if runs else None)


def test_an_unknown_ran_is_a_programming_error(host):
    with pytest.raises(ValueError, match="ran must be command, commands or None, not 'cmd'"):
        host.finish(ran='cmd')


def _calls(tree):
    return {node.func.attr for node in ast.walk(tree) if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)}


@pytest.mark.parametrize('path', sorted(p for p in MODULES.glob('*.py') if 'Transaction(' in p.read_text()),
                         ids=lambda p: p.stem)
def test_every_writing_module_ends_through_finish(path):
    """The closing block lives in the transaction: a module that commits or diffs itself has copied it back."""
    calls = _calls(ast.parse(path.read_text(encoding='utf-8')))
    assert calls & {'finish', 'finish_initramfs'}, '%s never calls tx.finish' % path.name
    assert not calls & {'commit', 'diff'}, '%s commits or diffs itself instead of tx.finish' % path.name


def test_the_writing_modules_are_found():
    names = {p.stem for p in MODULES.glob('*.py') if 'Transaction(' in p.read_text()}
    assert {'kernel_cmdline', 'vfio_modules', 'vfio_address_binding', 'driver_blacklist', 'sriov_vfs',
            'restore_files'} <= names
