"""The report's "Booted by" row: which loader started the running kernel, and why that is believed."""

from __future__ import annotations

import pytest

from ansible_collections.vfio.passthrough.plugins.plugin_utils._report_text import boot_path_rows, host_rows


@pytest.mark.parametrize('boot_path, expected', [
    ({'firmware': 'uefi', 'loader': 'systemd-boot', 'reason': 'UEFI boot; systemd-boot set the EFI variable LoaderInfo'},
     'UEFI via systemd-boot: UEFI boot; systemd-boot set the EFI variable LoaderInfo'),
    ({'firmware': 'uefi', 'loader': None, 'reason': 'UEFI boot, but neither'},
     'UEFI via an unrecognised loader: UEFI boot, but neither'),
    ({'firmware': 'bios', 'loader': 'grub', 'reason': 'no /sys/firmware/efi'}, 'BIOS via grub: no /sys/firmware/efi'),
])
def test_boot_path_row(boot_path, expected):
    assert boot_path_rows(boot_path) == [('Booted by', expected)]
    assert ('Booted by', expected) in host_rows({'boot_path': boot_path})


def test_facts_without_a_boot_path_have_no_row():
    # Facts saved by an older collection (report.yml reads them from JSON files too).
    assert boot_path_rows(None) == []
    assert 'Booted by' not in dict(host_rows({'cmdline': 'ro'}))


def test_vfio_device_file_row_per_installed_kernel():
    kernels = {'7.0.13+deb13-amd64': 'y', '6.12.41+deb13-amd64': 'y', '6.1.0-27-amd64': 'unreadable'}
    assert ('VFIO device files (CONFIG_VFIO_DEVICE_CDEV)',
            '6.1.0-27-amd64: unreadable; 6.12.41+deb13-amd64: y; 7.0.13+deb13-amd64: y') in host_rows(
        {'vfio_device_cdev': kernels})
    # older facts, or no kernel found: no row
    assert not any(name.startswith('VFIO device files') for name in dict(host_rows({'vfio_device_cdev': {}})))
