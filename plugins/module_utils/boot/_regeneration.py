# -*- coding: utf-8 -*-
# Copyright: contributors to vfio.passthrough
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What regenerates what: the one place that turns "these files changed" into commands.

Used by the writing modules (kernel_cmdline, vfio_modules, driver_blacklist), by
the role (filter ``vfio.passthrough.regeneration``) and by playbooks/restore.yml.
"""

from __future__ import annotations

__all__ = ['UPDATE_GRUB', 'BOOT_TOOL_REFRESH', 'UPDATE_INITRAMFS', 'BOOTLOADERS', 'regeneration']

UPDATE_GRUB = ('update-grub',)
BOOT_TOOL_REFRESH = ('proxmox-boot-tool', 'refresh')
UPDATE_INITRAMFS = ('update-initramfs', '-u', '-k', 'all')
BOOTLOADERS = ('grub', 'systemd-boot')
_MANAGERS = (None, 'proxmox-boot-tool')


def regeneration(boot_changed, initramfs_changed, bootloader, managed_by):
    """Decide which commands carry changed files to the next boot.

    Arguments (the signature is stable; the role and restore.yml call it):

    ``boot_changed``
        A file the boot loader's configuration is generated from changed
        (/etc/default/grub, a grub.d drop-in, /etc/kernel/cmdline), or the
        generated configuration is older than it (a previous run died first).
    ``initramfs_changed``
        A file that goes into the initramfs changed (initramfs-tools modules,
        modprobe.d, hooks), or the images are older than one of them.
    ``bootloader``, ``managed_by``
        As ``_bootloader.detect_bootloader`` (and kernel_cmdline) report them:
        ``'grub'`` or ``'systemd-boot'``; ``'proxmox-boot-tool'`` or None.

    Returns a dict:

    ``commands``
        Argument lists with bare command names, in the order to run them:
        ``update-initramfs -u -k all`` first, then ``proxmox-boot-tool refresh``
        or ``update-grub``. Empty when nothing is owed.
    ``initramfs``
        ``update-initramfs -u -k all`` is among them.
    ``boot_by_initramfs``
        The boot change rides on the initramfs rebuild: on a proxmox-boot-tool
        host update-initramfs's post-update hook runs ``proxmox-boot-tool refresh``
        (GRUB and systemd-boot ESPs alike), so a second refresh is not run.
    ``unrefreshed``
        The boot change reaches no boot loader: systemd-boot without
        proxmox-boot-tool has nothing here that copies /etc/kernel/cmdline
        to the ESP. Callers warn.

    Rules: plain GRUB needs ``update-grub`` for a boot change, whatever happens
    to the initramfs (update-initramfs does not regenerate grub.cfg). A
    proxmox-boot-tool host needs ``proxmox-boot-tool refresh`` for a boot change,
    unless the initramfs is rebuilt anyway. Raises ValueError for an unknown
    boot loader or manager.
    """
    if bootloader not in BOOTLOADERS:
        raise ValueError('unknown boot loader %r: expected one of %s' % (bootloader, ', '.join(BOOTLOADERS)))
    if managed_by not in _MANAGERS:
        raise ValueError('unknown boot manager %r: expected proxmox-boot-tool or none' % (managed_by,))
    boot_tool = managed_by == 'proxmox-boot-tool'
    commands = []
    if initramfs_changed:
        commands.append(list(UPDATE_INITRAMFS))
    boot_by_initramfs = bool(boot_changed and boot_tool and initramfs_changed)
    if boot_changed and boot_tool and not initramfs_changed:
        commands.append(list(BOOT_TOOL_REFRESH))
    elif boot_changed and not boot_tool and bootloader == 'grub':
        commands.append(list(UPDATE_GRUB))
    return {
        'commands': commands,
        'initramfs': bool(initramfs_changed),
        'boot_by_initramfs': boot_by_initramfs,
        'unrefreshed': bool(boot_changed and not boot_tool and bootloader != 'grub'),
    }
