"""Issue 12 class 4: a command line longer than the kernel's cmdline_size is refused before writing."""

from __future__ import annotations

import glob
import os

import pytest

from ansible_collections.vfio.passthrough.plugins.module_utils.boot._cmdline_limit import (
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


# The VM stage keeps each image's kernel beside the image and names the files here (os.pathsep
# between them); set, it makes a missing kernel a failure, not a skip.
KERNEL_ENV = 'VFIO_TEST_KERNEL'
VM_CACHE = os.path.join(os.environ.get('VFIO_VM_CACHE', '/var/cache/vfio-passthrough-vm'), 'images')


def real_kernels(environ=None):
    """(kernel images to read, why there are none or None); raises AssertionError when the VM stage's are missing."""
    environ = os.environ if environ is None else environ
    if KERNEL_ENV in environ:
        named = [p for p in environ[KERNEL_ENV].split(os.pathsep) if p]
        missing = [p for p in named if not os.path.isfile(p)]
        assert named and not missing, ('%s=%r: the VM stage names the kernels kept beside its images, and %s'
                                       % (KERNEL_ENV, environ[KERNEL_ENV],
                                          'names none' if not named else 'these are missing: %s' % ', '.join(missing)))
        return named, None
    found = sorted(glob.glob('/boot/vmlinuz-*')) + sorted(glob.glob(VM_CACHE + '/*/vmlinuz-*'))
    if found:
        return found, None
    return [], ('no /boot/vmlinuz-* here and no vmlinuz-* beside a VM image in %s; set %s to a kernel image '
                '(the VM stage does, and fails without one)' % (VM_CACHE, KERNEL_ENV))


def test_real_kernels_have_a_cmdline_size():
    images, why = real_kernels()
    if not images:
        print(why)
        pytest.skip(why)
    for image in images:
        with open(image, 'rb') as handle:
            size = parse_cmdline_size(handle.read(HEADER_BYTES))
        print('%s: cmdline_size %s' % (image, size))
        # an x86 bzImage has the field (protocol 2.06+: 2047 on every kernel since 2.6.2x)
        assert size is not None and size >= 255, (image, size)


@pytest.mark.parametrize('value, result', [
    ('', AssertionError),
    ('/nonexistent/vmlinuz-6.12.0', AssertionError),
])
def test_vm_stage_fails_without_its_kernel(value, result):
    with pytest.raises(result, match=KERNEL_ENV):
        real_kernels({KERNEL_ENV: value})


def test_vm_stage_kernels_are_read(tmp_path):
    image = tmp_path / 'vmlinuz-6.12.0'
    image.write_bytes(setup_header(0x020F, 2047))
    assert real_kernels({KERNEL_ENV: str(image)}) == ([str(image)], None)


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
