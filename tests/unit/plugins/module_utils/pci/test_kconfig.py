"""_kconfig: a build option of every installed kernel, from /boot/config-<release>."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from ansible_collections.vfio.passthrough.plugins.module_utils.pci._kconfig import (
    UNREADABLE, installed_kernels, kconfig_value, kernel_options,
)
from ansible_collections.vfio.passthrough.plugins.module_utils.pci._iommu_facts import gather_iommu_facts

sys.path.insert(0, str(Path(__file__).resolve().parents[4]))
from sysfs_builder import FakeHost  # noqa: E402

# The VFIO part of Debian's config-6.12 and config-7.0 (both set the option), and of a kernel built without it.
CONFIG_Y = """#
# VFIO support for PCI devices
#
CONFIG_VFIO=m
CONFIG_VFIO_DEVICE_CDEV=y
CONFIG_VFIO_GROUP=y
CONFIG_VFIO_CONTAINER=y
CONFIG_VFIO_IOMMU_TYPE1=m
# CONFIG_VFIO_NOIOMMU is not set
CONFIG_VFIO_VIRQFD=y
CONFIG_VFIO_PCI_CORE=m
CONFIG_VFIO_PCI=m
"""
CONFIG_NOT_SET = CONFIG_Y.replace('CONFIG_VFIO_DEVICE_CDEV=y', '# CONFIG_VFIO_DEVICE_CDEV is not set')
CONFIG_ABSENT = CONFIG_Y.replace('CONFIG_VFIO_DEVICE_CDEV=y\n', '')  # kernels before 6.6 have no such option


@pytest.mark.parametrize('text, option, value', [
    (CONFIG_Y, 'CONFIG_VFIO_DEVICE_CDEV', 'y'),
    (CONFIG_NOT_SET, 'CONFIG_VFIO_DEVICE_CDEV', 'n'),
    (CONFIG_ABSENT, 'CONFIG_VFIO_DEVICE_CDEV', 'n'),
    (CONFIG_Y, 'CONFIG_VFIO', 'm'),
    (CONFIG_Y, 'CONFIG_VFIO_NOIOMMU', 'n'),
    ('CONFIG_LOCALVERSION="-pve"\n', 'CONFIG_LOCALVERSION', '-pve'),
    ('', 'CONFIG_VFIO', 'n'),
])
def test_kconfig_value(text, option, value):
    assert kconfig_value(text, option) == value


@pytest.mark.parametrize('bad', ['VFIO_DEVICE_CDEV', 'CONFIG_VFIO=y', ''])
def test_kconfig_value_refuses_a_non_option(bad):
    with pytest.raises(ValueError, match='is not a kernel config option name'):
        kconfig_value(CONFIG_Y, bad)


def two_kernel_host(root):
    """Debian 13 with 6.12 and the backports 7.0 (both configs readable), an old 6.1 whose config is gone, and a
    6.5 built without the option; modules only, or the image only, make a kernel installed too."""
    host = FakeHost(root)
    host.write('boot/config-6.12.41+deb13-amd64', CONFIG_Y)
    host.write('boot/vmlinuz-6.12.41+deb13-amd64', '')
    host.write('lib/modules/6.12.41+deb13-amd64/modules.dep', '')
    host.write('boot/config-7.0.13+deb13-amd64', CONFIG_Y)
    host.write('lib/modules/7.0.13+deb13-amd64/modules.dep', '')
    host.write('boot/vmlinuz-6.1.0-27-amd64', '')
    host.write('boot/config-6.5.13-6-pve', CONFIG_NOT_SET)
    host.write('lib/modules/6.5.13-6-pve/modules.dep', '')
    host.write('boot/config-6.2.16-3-pve', CONFIG_ABSENT)  # config left behind by a removed kernel
    return host


def test_every_installed_kernel_is_judged(tmp_path):
    two_kernel_host(tmp_path)
    assert installed_kernels(str(tmp_path)) == ['6.1.0-27-amd64', '6.12.41+deb13-amd64', '6.5.13-6-pve',
                                                '7.0.13+deb13-amd64']
    expected = {'6.1.0-27-amd64': UNREADABLE, '6.12.41+deb13-amd64': 'y', '6.5.13-6-pve': 'n',
                '7.0.13+deb13-amd64': 'y'}
    assert kernel_options(str(tmp_path), 'CONFIG_VFIO_DEVICE_CDEV') == expected
    assert gather_iommu_facts(str(tmp_path))['vfio_device_cdev'] == expected


def test_no_kernel_installed(tmp_path):
    FakeHost(tmp_path)
    assert kernel_options(str(tmp_path), 'CONFIG_VFIO_DEVICE_CDEV') == {}
