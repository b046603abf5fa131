"""Issue 12 class 4: a command line longer than the kernel's cmdline_size is refused before writing."""

from __future__ import annotations

import glob

import pytest

from ansible_collections.vfio.passthrough.plugins.module_utils._cmdline_limit import (
    HEADER_BYTES, CmdlineTooLong, check_length, grub_boot_line, kernel_version, parse_cmdline_size,
    systemd_boot_line,
)


def setup_header(version, cmdline_size=None, magic=b'HdrS', length=HEADER_BYTES):
    """The first bytes of a bzImage as Documentation/arch/x86/boot.rst lays them out."""
    data = bytearray(length)
    data[0x1FE:0x200] = b'\x55\xaa'
    data[0x202:0x206] = magic
    data[0x206:0x208] = version.to_bytes(2, 'little')
    if cmdline_size is not None:
        data[0x238:0x23C] = cmdline_size.to_bytes(4, 'little')
    return bytes(data)


@pytest.mark.parametrize('header, expected', [
    (setup_header(0x020F, 2047), 2047),                    # Linux 6.x
    (setup_header(0x0206, 4095), 4095),                    # the first protocol with the field
    (setup_header(0x0205, 2047), 255),                     # before 2.06 the field does not exist
    (setup_header(0x0200), 255),
    (setup_header(0x020F, 2047, magic=b'MZ\x00\x00'), None),  # not a bzImage (arm64 Image, EFI zboot)
    (setup_header(0x020F, 2047)[:0x230], None),            # cut short
    (b'', None),
])
def test_parse_cmdline_size(header, expected):
    assert parse_cmdline_size(header) == expected


def test_installed_kernels_have_a_cmdline_size():
    images = sorted(glob.glob('/boot/vmlinuz-*'))
    if not images:
        pytest.skip('no /boot/vmlinuz-* on this machine to read a real setup header from')
    for image in images:
        with open(image, 'rb') as handle:
            size = parse_cmdline_size(handle.read(HEADER_BYTES))
        print('%s: cmdline_size %s' % (image, size))
        assert size is None or size >= 255


@pytest.mark.parametrize('running, expected', [
    ('BOOT_IMAGE=/boot/vmlinuz-6.8.12-4-pve root=/dev/mapper/pve-root ro quiet',
     'BOOT_IMAGE=/boot/vmlinuz-6.14.8-2-pve root=/dev/mapper/pve-root ro console=ttyS0 quiet iommu=pt'),
    # ZFS: the path GRUB uses inside the dataset, and its root=.
    ('BOOT_IMAGE=/ROOT/pve-1@/boot/vmlinuz-6.8.12-4-pve root=ZFS=rpool/ROOT/pve-1 ro boot=zfs',
     'BOOT_IMAGE=/ROOT/pve-1@/boot/vmlinuz-6.14.8-2-pve root=ZFS=rpool/ROOT/pve-1 ro console=ttyS0 quiet iommu=pt'),
    # Unknown: the longest usual forms.
    (None, 'BOOT_IMAGE=/boot/vmlinuz-6.14.8-2-pve root=UUID=00000000-0000-0000-0000-000000000000 ro '
           'console=ttyS0 quiet iommu=pt'),
])
def test_grub_boot_line(running, expected):
    assert grub_boot_line('6.14.8-2-pve', 'console=ttyS0', ' quiet  iommu=pt', running) == expected


def test_systemd_boot_line():
    assert systemd_boot_line('6.14.8-2-pve', 'root=ZFS=rpool/ROOT/pve-1 boot=zfs\n') == (
        'root=ZFS=rpool/ROOT/pve-1 boot=zfs initrd=\\EFI\\proxmox\\6.14.8-2-pve\\initrd.img-6.14.8-2-pve')
    assert kernel_version('/boot/vmlinuz-6.14.8-2-pve') == '6.14.8-2-pve'


@pytest.mark.parametrize('length, limit, refused', [
    (2047, 2047, False),
    (2048, 2047, True),
    (256, 255, True),
    (5000, None, False),   # no setup header: nothing to measure against
])
def test_check_length(length, limit, refused):
    line = 'a' * length
    if not refused:
        assert check_length(line, limit, '/boot/vmlinuz-x', '/etc/default/grub') == length
        return
    with pytest.raises(CmdlineTooLong) as exc:
        check_length(line, limit, '/boot/vmlinuz-x', '/etc/default/grub')
    assert str(exc.value).startswith('/etc/default/grub: the kernel command line would be %d bytes, but '
                                     '/boot/vmlinuz-x accepts %d' % (length, limit))
