# -*- coding: utf-8 -*-
# Copyright: contributors to vfio.passthrough
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""How long a kernel command line may be, and how long the boot loader makes it.

The kernel silently cuts a longer line at the end, which is where this
collection's arguments go. x86 boot protocol (Documentation/arch/x86/boot.rst):
the setup header holds the magic "HdrS" at 0x202 and the protocol version
(u16) at 0x206; from version 2.06 ``cmdline_size`` (u32 at 0x238) is the
longest line without its terminating NUL (2047 on today's kernels), before it
255.
"""

from __future__ import annotations

import re

__all__ = ['HEADER_BYTES', 'CmdlineTooLong', 'parse_cmdline_size', 'kernel_version', 'grub_boot_line',
           'systemd_boot_line', 'check_length']

HEADER_BYTES = 0x23C
_OLD_PROTOCOL_LIMIT = 255
# A root= as long as GRUB writes one for a UUID, when the running line does not tell.
_ROOT_GUESS = 'root=UUID=00000000-0000-0000-0000-000000000000'


class CmdlineTooLong(ValueError):
    """The assembled line exceeds a kernel's cmdline_size; the message names both."""


def parse_cmdline_size(header):
    """``cmdline_size`` from the first bytes of a bzImage, or None when it is not one."""
    if len(header) < 0x208 or header[0x202:0x206] != b'HdrS':
        return None
    version = int.from_bytes(header[0x206:0x208], 'little')
    if version < 0x206:
        return _OLD_PROTOCOL_LIMIT
    if len(header) < HEADER_BYTES:
        return None
    return int.from_bytes(header[0x238:0x23C], 'little')


def kernel_version(image_path):
    """``6.8.12-4-pve`` from ``/boot/vmlinuz-6.8.12-4-pve``."""
    name = image_path.rsplit('/', 1)[-1]
    return name[len('vmlinuz-'):] if name.startswith('vmlinuz-') else name


def _running_token(running, name):
    for token in (running or '').split():
        if token.startswith(name + '='):
            return token
    return None


def grub_boot_line(version, linux, default, running=None):
    """The line GRUB hands the kernel for 10_linux's default entry of ``version``.

    ``linux ${rel_dirname}/vmlinuz-<version> root=<device> ro ${GRUB_CMDLINE_LINUX} ${GRUB_CMDLINE_LINUX_DEFAULT}``,
    to which GRUB's linux command prepends ``BOOT_IMAGE=<path>``. The directory and
    root= come from the running line when it has them (ZFS: /ROOT/pve-1@/boot, root=ZFS=...).
    """
    image = _running_token(running, 'BOOT_IMAGE')
    directory = image[len('BOOT_IMAGE='):].rsplit('/', 1)[0] if image and '/' in image else '/boot'
    root = _running_token(running, 'root') or _ROOT_GUESS
    words = ['BOOT_IMAGE=%s/vmlinuz-%s' % (directory, version), root, 'ro'] + (linux or '').split() + (default or '').split()
    return ' '.join(words)


def systemd_boot_line(version, options):
    """The line systemd-boot hands the kernel for proxmox-boot-tool's loader entry of ``version``:
    its ``options`` (/etc/kernel/cmdline) and the ``initrd=`` it adds for the entry's initrd."""
    return '%s initrd=\\EFI\\proxmox\\%s\\initrd.img-%s' % ((options or '').strip(), version, version)


def check_length(line, limit, image, source):
    """Raise CmdlineTooLong when ``line`` (as the kernel gets it) exceeds ``limit`` bytes."""
    size = len(line.encode('utf-8', 'surrogateescape'))
    if limit is not None and size > limit:
        raise CmdlineTooLong(
            '%s: the kernel command line would be %d bytes, but %s accepts %d (cmdline_size in its setup header) '
            'and silently cuts the rest, where these arguments go; shorten it first. The line: %s'
            % (source, size, image, limit, re.sub(r'\s+', ' ', line)))
    return size
