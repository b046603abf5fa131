"""playbooks/vm_probe.yml with the real ansible-playbook against localhost, in check mode.

This machine has no device on vfio-pci, so every run here ends in a refusal: the playbook must print the
probe's lines, start nothing and fail naming the device. The start itself is proven in a guest
(tests/vm, the vm-probe scenario).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from collection_link import collection_link

ROOT = Path(__file__).resolve().parents[2]


def _play(tmp_path, extra):
    extra = dict({'pcie_passthrough_hosts': 'localhost', 'ansible_become': False,
                  'ansible_python_interpreter': sys.executable}, **extra)
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(collection_link(ROOT).parents[2]),
               ANSIBLE_COLLECTIONS_SCAN_SYS_PATH='false', ANSIBLE_NOCOLOR='1', ANSIBLE_RETRY_FILES_ENABLED='false',
               ANSIBLE_LOCAL_TEMP=str(tmp_path / 'tmp'), ANSIBLE_HOME=str(tmp_path / 'ansible-home'))
    argv = [str(Path(sys.executable).with_name('ansible-playbook')), '-i', 'localhost,', '-c', 'local', '--check',
            '-e', json.dumps(extra), str(ROOT / 'playbooks' / 'vm_probe.yml')]
    result = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300, check=False)
    return result.returncode, result.stdout + result.stderr


def test_a_device_that_is_not_there_is_refused_with_its_summary(tmp_path):
    rc, output = _play(tmp_path, {'vm_probe_devices': ['0000:fe:1f.7']})
    assert rc != 0, output
    assert 'Show what each guest and the host saw' in output
    assert '0000:fe:1f.7 is no PCI device on this host' in output, output
    assert 'vm_probe refused, nothing was started' in output, output


@pytest.mark.parametrize('devices', [None, '0000:03:00.0', []], ids=['unset', 'string', 'empty'])
def test_devices_must_be_a_list(tmp_path, devices):
    rc, output = _play(tmp_path, {} if devices is None else {'vm_probe_devices': devices})
    assert rc != 0, output
    assert 'Set vm_probe_devices to a list of PCI addresses' in output, output
