"""tests/vm/vmctl.py: how long a boot's wait for SSH lasts, and what its failure says.

A guest on CI once reached its login prompt and never answered SSH for the whole 600 s; the log
kept only the serial tail. The wait now gives up on a first boot soon after the prompt, and its
first line says what the last SSH attempt printed. The guest here is faked: its console is a file,
its SSH a function, its clock advanced by each sleep.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT / 'tests' / 'vm'))  # vmctl imports its siblings vmimages and vmqemu
_spec = importlib.util.spec_from_file_location('vmctl', ROOT / 'tests' / 'vm' / 'vmctl.py')
vmctl = importlib.util.module_from_spec(_spec)
sys.modules['vmctl'] = vmctl  # dataclasses resolve the module's annotations through sys.modules
_spec.loader.exec_module(vmctl)

REFUSED = 'kex_exchange_identification: read: Connection reset by peer'


class FakeGuest(vmctl.VM):
    """Its console prints the login prompt at `prompt_at` seconds; SSH answers from `ssh_at` (never: None)."""

    def __init__(self, run_dir, clock, prompt_at, ssh_at, console_before=b''):
        super().__init__(name='fake', flavour='amd', run_dir=run_dir, port=2222, key=run_dir / 'key',
                         base=run_dir / 'base', nics=1, accel='tcg')
        self.clock, self.prompt_at, self.ssh_at = clock, prompt_at, ssh_at
        self.serial_log.write_bytes(console_before)

    def running(self):
        return True

    def ssh(self, command, check=True, timeout=600, capture=True):
        now = self.clock[0]
        if self.prompt_at is not None and now >= self.prompt_at and b'fake login:' not in self.serial_log.read_bytes():
            with self.serial_log.open('ab') as console:
                console.write(b'\r\nDebian GNU/Linux 13 fake ttyS0\r\n\r\nfake login: ')
        if self.ssh_at is not None and now >= self.ssh_at:
            return subprocess.CompletedProcess([], 0, '', '')
        return subprocess.CompletedProcess([], 255, '', REFUSED + '\n')


@pytest.fixture
def clock(monkeypatch):
    now = [0.0]
    monkeypatch.setattr(vmctl.time, 'monotonic', lambda: now[0])
    monkeypatch.setattr(vmctl.time, 'sleep', lambda seconds: now.__setitem__(0, now[0] + seconds))
    monkeypatch.setattr(vmctl, 'log', lambda message: None)
    return now


@pytest.mark.parametrize('after_prompt, prompt_at, ssh_at, gives_up_at', [
    pytest.param(240, 50, None, 292, id='prompt-then-no-ssh-gives-up-soon-after-the-prompt'),
    pytest.param(None, 50, None, 602, id='without-after-prompt-waits-the-whole-timeout'),
    pytest.param(240, None, None, 602, id='no-prompt-waits-the-whole-timeout'),
])
def test_a_wait_without_ssh_ends_with_the_last_attempt_and_the_console(
        tmp_path, clock, after_prompt, prompt_at, ssh_at, gives_up_at):
    guest = FakeGuest(tmp_path, clock, prompt_at, ssh_at)
    with pytest.raises(vmctl.SSHTimeout) as failed:
        guest.wait_ssh(600, after_prompt=after_prompt)
    first = str(failed.value).splitlines()[0]
    assert clock[0] == gives_up_at
    assert first.startswith('fake: no SSH on port 2222 after %d s; ' % gives_up_at)
    assert first.endswith('last attempt: ssh exited 255: %s; serial log tail:' % REFUSED)
    assert (('the console showed its login prompt %d s in' % prompt_at) if prompt_at is not None
            else 'the console showed no login prompt') in first


def test_ssh_after_the_prompt_within_the_grace_is_a_boot(tmp_path, clock):
    guest = FakeGuest(tmp_path, clock, prompt_at=50, ssh_at=200)
    assert guest.wait_ssh(600, after_prompt=240) == 200


def test_a_prompt_printed_before_the_wait_is_not_this_boots(tmp_path, clock):
    # A reboot waits on the same console log: the previous boot's prompt must not end the wait.
    guest = FakeGuest(tmp_path, clock, prompt_at=None, ssh_at=None,
                      console_before=b'Debian GNU/Linux 13 fake ttyS0\r\n\r\nfake login: ')
    with pytest.raises(vmctl.SSHTimeout) as failed:
        guest.wait_ssh(600, after_prompt=240)
    assert 'the console showed no login prompt' in str(failed.value)


@pytest.fixture
def launches(tmp_path, monkeypatch):
    """start() with its image, accelerator and tools faked; each launch records a guest and boots per `silent`."""
    monkeypatch.setattr(vmctl, 'RUNS', tmp_path / 'runs')
    monkeypatch.setattr(vmctl, 'log', lambda message: None)
    monkeypatch.setattr(vmctl, 'ensure_image', lambda *args: tmp_path)
    monkeypatch.setattr(vmctl, 'disk_image', lambda *args: tmp_path / 'amd.qcow2')
    monkeypatch.setattr(vmctl, 'choose_accel', lambda: ('tcg', 'test'))
    monkeypatch.setattr(vmctl.shutil, 'which', lambda tool: '/usr/bin/' + tool)
    boots = {'names': [], 'silent': 1}

    def launch(name, *args):
        boots['names'].append(name)
        guest = vmctl.VM(name=name, flavour='amd', run_dir=vmctl.RUNS / name, port=2222, key=tmp_path / 'key',
                         base=tmp_path / 'amd.qcow2', nics=1, accel='tcg')
        guest.run_dir.mkdir(parents=True)
        guest.save()
        if len(boots['names']) <= boots['silent']:
            raise vmctl.SSHTimeout('%s: no SSH on port 2222 after 292 s; ...' % name)
        return guest

    monkeypatch.setattr(vmctl, '_launch', launch)
    return boots


def test_a_first_boot_without_ssh_is_booted_once_more_and_its_logs_kept_under_their_own_name(launches):
    guest = vmctl.start('amd', name='t1')
    assert launches['names'] == ['t1', 't1'] and guest.run_dir == vmctl.RUNS / 't1'
    kept = vmctl.get('t1.no-ssh')
    assert kept.name == 't1.no-ssh' and kept.run_dir == vmctl.RUNS / 't1.no-ssh'
    assert sorted(vm.name for vm in vmctl.all_vms()) == ['t1', 't1.no-ssh']


def test_a_second_boot_without_ssh_fails(launches):
    launches['silent'] = 2
    with pytest.raises(vmctl.SSHTimeout):
        vmctl.start('amd', name='t2')
    assert launches['names'] == ['t2', 't2']
