# -*- coding: utf-8 -*-
# Copyright: contributors to vfio.passthrough
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Whether vfio_iommu_type1 lets a device be assigned without interrupt remapping, and what says so.

Without interrupt remapping vfio refuses to give a device to a VM unless
``vfio_iommu_type1 allow_unsafe_interrupts`` is true. The live module
parameter decides while the module is loaded; before it is, what modprobe
would pass it does: the kernel command line's ``vfio_iommu_type1.`` options,
then the modprobe.d files in the order modprobe reads them (a later setting wins).
"""

from __future__ import annotations

from ansible_collections.vfio.passthrough.plugins.module_utils.modprobe._modprobe import (
    MODPROBE_DIRS, conf_read_order, parse_modprobe,
)
from ansible_collections.vfio.passthrough.plugins.module_utils.pci._pci import normalise_module

__all__ = ['parse_kernel_bool', 'unsafe_interrupts_settings', 'read_unsafe_interrupts']

_MODULE = 'vfio_iommu_type1'
_PARAM = 'allow_unsafe_interrupts'
_LIVE = 'sys/module/%s/parameters/%s' % (_MODULE, _PARAM)


def parse_kernel_bool(value):
    """A bool module parameter as the kernel's kstrtobool reads it; a bare flag is true; None when unreadable."""
    if value is None:
        return True
    value = value.strip().strip('"\'').lower()
    if value in ('on', 'off'):
        return value == 'on'
    if value[:1] in ('1', 'y', 't'):
        return True
    if value[:1] in ('0', 'n', 'f'):
        return False
    return None


def unsafe_interrupts_settings(cmdline_args, sources):
    """[(value, evidence)] in the order modprobe applies them; the last one wins.

    ``cmdline_args`` are (key, value) pairs of the kernel command line;
    ``sources`` are (path, text) of modprobe.d files in modprobe's read order.
    """
    found = []
    for key, value in cmdline_args:
        module, dot, param = key.partition('.')
        if dot and normalise_module(module) == _MODULE and param == _PARAM:
            found.append((parse_kernel_bool(value),
                          '/proc/cmdline: %s' % (key if value is None else '%s=%s' % (key, value))))
    for path, text in sources:
        for directive in parse_modprobe(text or ''):
            if directive.kind != 'options' or directive.module != _MODULE:
                continue
            for word in directive.args:
                if word.startswith('#'):
                    break
                name, eq, value = word.partition('=')
                if name == _PARAM:
                    found.append((parse_kernel_bool(value if eq else None),
                                  '%s line %d: options %s %s' % (path, directive.lineno, _MODULE, word)))
    return found


def read_unsafe_interrupts(tree, cmdline_args):
    """(True/False/None, evidence): allow_unsafe_interrupts now, or as the next load of the module gets it."""
    live = tree.read(_LIVE)
    if live is not None:
        return parse_kernel_bool(live), '/%s is %s' % (_LIVE, live.strip())
    listings = [(d, tree.listdir(d.lstrip('/'))) for d in MODPROBE_DIRS]
    # bytes, not read(): stripping would shift the line numbers the evidence quotes
    sources = [(path, (tree.read_bytes(path.lstrip('/')) or b'').decode('utf-8', 'replace'))
               for path in conf_read_order(listings)]
    settings = unsafe_interrupts_settings(cmdline_args, sources)
    if settings:
        return settings[-1]
    return False, ('%s is not loaded and neither /proc/cmdline nor modprobe.d sets %s'
                   % (_MODULE, _PARAM))
