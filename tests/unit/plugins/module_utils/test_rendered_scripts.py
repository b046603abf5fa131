"""Every shell script the collection renders, in its rendered form: sh -n, bash -n, shellcheck, and each exit path.

The SR-IOV script's exits are driven on a fake kernel in test_sriov_script.py; here are the by-address
binding script and its initramfs hook, on a fake sysfs (their /sys and /sbin/modprobe substituted).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ansible_collections.vfio.passthrough.plugins.module_utils.modprobe import _binding
from ansible_collections.vfio.passthrough.plugins.module_utils.sriov import _sriov_boot
from ansible_collections.vfio.passthrough.plugins.module_utils.vm_probe import _vm_probe_guest

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
from sysfs_builder import FakeHost  # noqa: E402
from tree_snapshot import tree_snapshot  # noqa: E402

MODULE_UTILS = Path(_binding.__file__).resolve().parents[1]
ONE, TWO, BOUND, GONE = '0000:02:00.0', '0000:02:00.1', '0000:03:00.0', '0000:09:00.0'
# Each module that renders a script, and what it renders: one address or several, with or without drivers.
RENDERERS = {
    '_sriov_script': lambda: _sriov_boot.render([{'pf': '0000:01:00.0', 'vfs': 2, 'vfio': [0]}]),
    '_binding': lambda: (_binding.render_binding([ONE], ['igb'])
                         + _binding.render_binding([ONE, TWO, BOUND, GONE], [])),
    # vm_probe's guest runs them under busybox sh, an ash: POSIX sh is what shellcheck can hold it to.
    '_vm_probe_guest': lambda: [('/init', _vm_probe_guest.init_script(['crc_itu_t', 'e1000e'], True), 0o755),
                                ('/init', _vm_probe_guest.init_script([], False), 0o755),
                                ('/' + _vm_probe_guest.DHCP_SCRIPT, _vm_probe_guest.dhcp_script(), 0o755)],
}
# The host's initramfs-tools library, which a test machine need not have.
NOT_HERE = 'SC1091'


def _scripts():
    for name, render in sorted(RENDERERS.items()):
        for number, (path, text, mode) in enumerate(render()):
            if text is not None and mode & 0o111:
                yield pytest.param(text, id='%s-%d-%s' % (name, number, os.path.basename(path)))


def test_every_module_rendering_a_script_is_checked_here():
    rendering = sorted(p.stem for p in MODULE_UTILS.rglob('*.py') if re.search(r'["\']#!/bin/', p.read_text()))
    assert rendering == sorted(RENDERERS)


# sh is the interpreter they are written for (dash on Debian); bash is what /bin/sh is on other hosts.
@pytest.mark.parametrize('shell', ['sh', 'bash'])
@pytest.mark.parametrize('text', list(_scripts()))
def test_sh_n_parses_it(text, shell):
    done = subprocess.run([shell, '-n'], input=text, capture_output=True, text=True, check=False)
    assert done.returncode == 0 and done.stderr == '', done.stderr


@pytest.mark.parametrize('text', list(_scripts()))
def test_shellcheck_finds_nothing(text):
    if shutil.which('shellcheck') is None:
        if os.environ.get('CI'):
            pytest.fail('shellcheck is not installed (apt-get install shellcheck)')
        pytest.skip('shellcheck is not installed (apt-get install shellcheck)')
    done = subprocess.run(['shellcheck', '-s', 'sh', '-e', NOT_HERE, '-'], input=text, capture_output=True,
                          text=True, check=False)
    assert done.returncode == 0 and done.stdout == '', done.stdout


def _on_fake_host(tmp_path, text, modprobe='exit 0'):
    fake = tmp_path / 'fake-modprobe'
    fake.write_text('#!/bin/sh\necho "$@" >> %s\n%s\n' % (tmp_path / 'modprobe.log', modprobe))
    fake.chmod(0o755)
    assert text.count('sys=/sys\n') == 1 and text.count('modprobe=/sbin/modprobe\n') == 1
    path = tmp_path / 'script.sh'
    path.write_text(text.replace('sys=/sys\n', 'sys=%s\n' % (tmp_path / 'root/sys'))
                    .replace('modprobe=/sbin/modprobe\n', 'modprobe=%s\n' % fake))
    return path


def _binding_host(root):
    """ONE and TWO free (no driver), BOUND on igb; GONE does not exist."""
    host = FakeHost(root)
    host.add_device(ONE, '8086', '10c9', '020000', group=1)
    host.add_device(TWO, '8086', '10c9', '020000', group=2)
    host.add_device(BOUND, '8086', '10c9', '020000', driver='igb', group=3)
    for address in (ONE, TWO, BOUND):
        (root / host.device_dir(address) / 'driver_override').write_text('(null)\n')
    return host


@pytest.mark.parametrize('modprobe, override_fails', [('exit 0', False), ('exit 1', False), ('exit 0', True)],
                         ids=['vfio-pci-loads', 'modprobe-fails', 'override-fails'])
def test_binding_script_overrides_only_free_devices_and_always_exits_0(tmp_path, modprobe, override_fails):
    root = tmp_path / 'root'
    host = _binding_host(root)
    if override_fails:
        # An override that cannot be written: that device is left alone, the next still bound.
        os.unlink(root / host.device_dir(ONE) / 'driver_override')
        os.mkdir(root / host.device_dir(ONE) / 'driver_override')
    before = tree_snapshot(root)
    script = _binding.render_binding([ONE, TWO, BOUND, GONE], ['igb'])[0][1]
    done = subprocess.run(['sh', str(_on_fake_host(tmp_path, script, modprobe))], capture_output=True, text=True,
                          check=False)
    assert done.returncode == 0, done.stderr
    changed = {k for k, v in tree_snapshot(root).items() if before.get(k) != v}
    override = {a: host.device_dir(a) + '/driver_override' for a in (ONE, TWO)}
    expected = {override[TWO], 'sys/bus/pci/drivers_probe'} | (set() if override_fails else {override[ONE]})
    assert changed == expected
    assert (root / override[TWO]).read_text() == 'vfio-pci\n'
    # The fake kernel binds nothing, so each free device is probed; the last one written is TWO.
    assert (root / 'sys/bus/pci/drivers_probe').read_text() == TWO + '\n'
    assert (tmp_path / 'modprobe.log').read_text().splitlines() == ['vfio-pci'] * (1 if override_fails else 2)


def test_binding_script_with_nothing_free_writes_nothing(tmp_path):
    root = tmp_path / 'root'
    _binding_host(root)
    before = tree_snapshot(root)
    script = _binding.render_binding([BOUND, GONE], ['igb'])[0][1]
    done = subprocess.run(['sh', str(_on_fake_host(tmp_path, script))], capture_output=True, text=True, check=False)
    assert done.returncode == 0 and tree_snapshot(root) == before and not (tmp_path / 'modprobe.log').exists()


@pytest.mark.parametrize('argv, copied', [(['prereqs'], False), ([], True)])
def test_hook_exits(tmp_path, argv, copied):
    hook = _binding.render_binding([ONE], ['igb'])[2][1]
    library = '. /usr/share/initramfs-tools/hook-functions\n'
    assert hook.count(library) == 1
    fake = tmp_path / 'hook-functions'
    fake.write_text('copy_file() { echo "$@" >> %s; }\n' % (tmp_path / 'copied'))
    path = tmp_path / 'hook.sh'
    path.write_text(hook.replace(library, '. %s\n' % fake))
    done = subprocess.run(['sh', str(path)] + argv, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / 'copied').exists() == copied
    if copied:
        assert (tmp_path / 'copied').read_text() == 'script %s %s\n' % (_binding.SCRIPT, _binding.SCRIPT)
    else:
        assert done.stdout == '\n'
