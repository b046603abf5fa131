"""vfio_address_binding: the three by-address files through the one transaction."""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

import pytest

from ansible_collections.vfio.passthrough.plugins.modules import vfio_address_binding

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from module_runner import run_module  # noqa: E402

BIND = {'addresses': ['0000:02:00.0', '0000:02:00.1'], 'drivers': ['igb']}
STUB = '#!/bin/sh\necho "$*" >> "{log}"\nexit $(cat "{rc}")\n'


class Host:
    def __init__(self, base):
        self.base = base
        self.script = base / 'usr/local/sbin/vfio-passthrough-bind'
        self.conf = base / 'etc/modprobe.d/vfio-passthrough-address.conf'
        self.hook = base / 'etc/initramfs-tools/hooks/vfio-passthrough'
        for path in (self.script, self.conf, self.hook):
            path.parent.mkdir(parents=True, exist_ok=True)
        (base / 'bin').mkdir()
        self.log, self.rc = base / 'calls.log', base / 'rc'
        self.rc.write_text('0')
        stub = base / 'bin/update-initramfs'
        stub.write_text(STUB.format(log=self.log, rc=self.rc))
        stub.chmod(0o755)

    def run(self, check_mode=False, diff=False, **args):
        full = dict(script=str(self.script), modprobe_file=str(self.conf), hook=str(self.hook),
                    lock_file=str(self.base / 'lock'))
        full.update(args)
        return run_module(vfio_address_binding.main, full, check_mode=check_mode, diff=diff)

    def files(self):
        return {p: (p.read_bytes(), stat.S_IMODE(p.stat().st_mode)) for p in (self.script, self.conf, self.hook)
                if p.exists()}

    def calls(self):
        return self.log.read_text().splitlines() if self.log.exists() else []


@pytest.fixture
def host(tmp_path, monkeypatch):
    monkeypatch.setenv('PATH', '%s:/usr/bin:/bin' % (tmp_path / 'bin'))
    return Host(tmp_path)


def test_writes_three_files_then_is_idempotent(host):
    checked = host.run(check_mode=True, diff=True, **BIND)
    assert host.files() == {} and host.calls() == []
    result = host.run(diff=True, **BIND)
    assert result['changed'] is True and result['initramfs_updated'] is True
    assert result['files_changed'] == [str(host.script), str(host.conf), str(host.hook)]
    assert checked['diff'] == result['diff'] and checked['files_changed'] == result['files_changed']
    assert host.calls() == ['-u -k all']
    files = host.files()
    assert files[host.script][1] == 0o755 and files[host.hook][1] == 0o755 and files[host.conf][1] == 0o644
    conf = host.conf.read_text()
    assert conf.startswith('# Managed by Ansible (vfio.passthrough.vfio_address_binding)')
    assert 'install igb %s; /sbin/modprobe --ignore-install igb $CMDLINE_OPTS\n' % host.script in conf
    assert 'set -- 0000:02:00.0 0000:02:00.1\nfor dev do\n' in host.script.read_text()
    assert 'copy_file script %s %s' % (host.script, host.script) in host.hook.read_text()
    again = host.run(**BIND)
    assert again['changed'] is False and host.calls() == ['-u -k all']


def test_absent_removes_them_and_a_failed_rebuild_puts_them_back(host):
    host.run(**BIND)
    written = host.files()
    host.rc.write_text('1')
    failed = host.run(state='absent')
    assert failed['failed'] is True and 'restored' in failed['msg']
    assert host.files() == written
    host.rc.write_text('0')
    assert host.run(state='absent', diff=True)['changed'] is True
    assert host.files() == {}
    assert host.run(state='absent')['changed'] is False


@pytest.mark.parametrize('args, needle', [
    (dict(addresses=['02:00.0'], drivers=['igb']), "invalid PCI address '02:00.0'"),
    (dict(addresses=['0000:02:00.0'], drivers=['igb e1000']), "invalid driver name 'igb e1000'"),
    (dict(addresses=[], drivers=['igb']), 'at least one address'),
    (dict(addresses=['0000:02:00.0'], drivers=['igb'], hook='SAME'), 'three different files'),
])
def test_bad_input_fails_and_writes_nothing(host, args, needle):
    if args.get('hook') == 'SAME':
        args['hook'] = str(host.script)
    result = host.run(**args)
    assert result['failed'] is True and needle in result['msg']
    assert host.files() == {} and host.calls() == []


def test_vfio_modules_pointed_at_the_binding_file_is_refused(host):
    from ansible_collections.vfio.passthrough.plugins.modules import vfio_modules
    host.run(**BIND)
    result = run_module(vfio_modules.main, dict(
        ids=['10de:1b80'], modprobe_file=str(host.conf), modules_file=str(host.base / 'm.conf'),
        initramfs_modules_file=str(host.base / 'initramfs-modules'), modprobe_dirs=[],
        lock_file=str(host.base / 'lock'), update_initramfs=False))
    assert result['failed'] is True
    assert 'managed by vfio.passthrough.vfio_address_binding' in result['msg']
    assert os.path.exists(host.conf)
