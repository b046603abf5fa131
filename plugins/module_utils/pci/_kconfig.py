# -*- coding: utf-8 -*-
# Copyright: contributors to vfio.passthrough
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Kernel build options of every installed kernel, from its /boot/config-<release>.

Pure parser plus one reader; a kernel counts as installed when it has a
``lib/modules/<release>`` directory or a ``boot/vmlinuz-<release>`` image.
"""

from __future__ import annotations

import re

from ansible_collections.vfio.passthrough.plugins.module_utils.pci._sysfs import as_tree

__all__ = ['UNREADABLE', 'kconfig_value', 'installed_kernels', 'kernel_options']

UNREADABLE = 'unreadable'
_NAME = re.compile(r'CONFIG_[A-Za-z0-9_]+\Z')


def kconfig_value(text, option):
    """``y``, ``m`` or the value of ``option`` (``CONFIG_...``) in a kernel config; ``n`` when not set or absent."""
    if not _NAME.match(option):
        raise ValueError('%r is not a kernel config option name (CONFIG_...)' % (option,))
    for line in (text or '').splitlines():
        key, sep, value = line.strip().partition('=')
        if sep and key == option:
            return value.strip().strip('"') or 'n'
    return 'n'


def installed_kernels(root):
    """The releases of the installed kernels, sorted."""
    tree = as_tree(root)
    releases = set(name for name in tree.listdir('lib/modules') if '/' not in name and name not in ('.', '..'))
    releases.update(name[len('vmlinuz-'):] for name in tree.listdir('boot') if name.startswith('vmlinuz-'))
    return sorted(releases)


def kernel_options(root, option, releases=None):
    """{release: kconfig_value or UNREADABLE (no readable boot/config-<release>)} for every installed kernel."""
    tree = as_tree(root)
    found = {}
    for release in installed_kernels(tree) if releases is None else releases:
        text = tree.read('boot/config-%s' % release) if '/' not in release else None
        found[release] = UNREADABLE if text is None else kconfig_value(text, option)
    return found
