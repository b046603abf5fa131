"""vfio_iommu_type1 allow_unsafe_interrupts: live parameter, else what modprobe would pass (module_utils/pci/_unsafe_interrupts.py)."""

from __future__ import annotations

import pytest

from ansible_collections.vfio.passthrough.plugins.module_utils.boot._cmdline import kernel_args
from ansible_collections.vfio.passthrough.plugins.module_utils.pci._sysfs import SysfsTree
from ansible_collections.vfio.passthrough.plugins.module_utils.pci._unsafe_interrupts import (
    parse_kernel_bool, read_unsafe_interrupts, unsafe_interrupts_settings,
)


@pytest.mark.parametrize('text, expected', [
    ('Y\n', True), ('N\n', False), ('1', True), ('0', False), ('on', True), ('off', False),
    ('"1"', True), ('true', True), ('no', False), (None, True), ('maybe', None), ('', None),
])
def test_parse_kernel_bool(text, expected):
    assert parse_kernel_bool(text) is expected


@pytest.mark.parametrize('cmdline, files, expected', [
    ('ro quiet', [], []),
    ('ro vfio_iommu_type1.allow_unsafe_interrupts=1', [],
     [(True, '/proc/cmdline: vfio_iommu_type1.allow_unsafe_interrupts=1')]),
    ('ro vfio-iommu-type1.allow_unsafe_interrupts', [],
     [(True, '/proc/cmdline: vfio-iommu-type1.allow_unsafe_interrupts')]),
    # a modprobe.d file is applied after the command line, so it wins
    ('vfio_iommu_type1.allow_unsafe_interrupts=1',
     [('/etc/modprobe.d/vfio.conf', '# hosts without IR\noptions vfio-iommu-type1 allow_unsafe_interrupts=0\n')],
     [(True, '/proc/cmdline: vfio_iommu_type1.allow_unsafe_interrupts=1'),
      (False, '/etc/modprobe.d/vfio.conf line 2: options vfio_iommu_type1 allow_unsafe_interrupts=0')]),
    ('', [('/etc/modprobe.d/a.conf', 'options vfio_iommu_type1 dma_entry_limit=1 # allow_unsafe_interrupts=1\n'),
          ('/etc/modprobe.d/b.conf', 'options vfio_pci allow_unsafe_interrupts=1\n')], []),
])
def test_settings_in_modprobe_order(cmdline, files, expected):
    assert unsafe_interrupts_settings(kernel_args(cmdline), files) == expected


def _write(root, rel, text):
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_live_parameter_beats_the_files(tmp_path):
    _write(tmp_path, 'sys/module/vfio_iommu_type1/parameters/allow_unsafe_interrupts', 'N\n')
    _write(tmp_path, 'etc/modprobe.d/vfio.conf', 'options vfio_iommu_type1 allow_unsafe_interrupts=1\n')
    assert read_unsafe_interrupts(SysfsTree(str(tmp_path)), []) == (
        False, '/sys/module/vfio_iommu_type1/parameters/allow_unsafe_interrupts is N')


def test_files_in_read_order_when_not_loaded(tmp_path):
    # /etc hides /lib's file of the same name; z.conf is read last and wins
    _write(tmp_path, 'lib/modprobe.d/vfio.conf', 'options vfio_iommu_type1 allow_unsafe_interrupts=0\n')
    _write(tmp_path, 'etc/modprobe.d/vfio.conf', 'options vfio_iommu_type1 allow_unsafe_interrupts=0\n')
    _write(tmp_path, 'usr/lib/modprobe.d/z.conf', '\noptions vfio_iommu_type1 allow_unsafe_interrupts=Y\n')
    assert read_unsafe_interrupts(SysfsTree(str(tmp_path)), []) == (
        True, '/usr/lib/modprobe.d/z.conf line 2: options vfio_iommu_type1 allow_unsafe_interrupts=Y')


def test_default_is_off(tmp_path):
    value, evidence = read_unsafe_interrupts(SysfsTree(str(tmp_path)), [])
    assert value is False and 'not loaded' in evidence
