# -*- coding: utf-8 -*-
# Copyright: contributors to vfio.passthrough
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""PCI addresses as administrators type them, turned into the kernel's ``0000:01:00.0``.

A Proxmox administrator copies an address from ``lspci`` (``01:00.0``, no
domain) or from a VM's ``hostpci`` line (``01:00``: the whole device, every
function). Both mean something exact on one host, so both are accepted; any
other spelling is refused with the value named.
"""

from __future__ import annotations

import re

from ansible_collections.vfio.passthrough.plugins.module_utils._pci import slot

__all__ = ['normalise_address']

# [domain:]bus:slot[.function]; a slot is 5 bits, a function 3.
_TYPED = re.compile(r'(?:([0-9A-Fa-f]{4}):)?([0-9A-Fa-f]{2}):([01][0-9A-Fa-f])(?:\.([0-7]))?\Z')


def normalise_address(value, existing):
    """The canonical addresses ``value`` stands for, and a note when it was not written canonically.

    ``existing`` holds the host's addresses (``0000:01:00.0``, lowercase):
    a whole device (``01:00``) stands for every one of its functions found
    there. Returns ``(addresses, note or None)``; raises ValueError naming
    the value when it is no PCI address, or a whole device without functions.
    """
    text = value if isinstance(value, str) else ''
    match = _TYPED.match(text)
    if match is None:
        hint = ''
        if (isinstance(value, (int, float)) and not isinstance(value, bool)) or re.match(r'\d+(\.\d+)?\Z', text):
            # YAML 1.1 reads unquoted 10:00.0 as the base-60 number 600.0
            hint = '; quote addresses in YAML, which reads an unquoted 10:00.0 as a number'
        raise ValueError('%r is not a PCI address: expected domain:bus:slot.function like 0000:01:00.0, '
                         'bus:slot.function like 01:00.0 (lspci) or bus:slot like 01:00 for every function '
                         'of a device (Proxmox hostpci)%s' % (value, hint))
    domain, bus, device_number, function = match.groups()
    device = ('%s:%s:%s' % (domain or '0000', bus, device_number)).lower()
    if function is not None:
        address = '%s.%s' % (device, function)
        return [address], None if address == value else '%r means %s' % (value, address)
    functions = sorted(a for a in existing if slot(a) == device)
    if not functions:
        raise ValueError('%r names the whole device %s, which has no function on this host (see lspci -D)'
                         % (value, device))
    return functions, '%r means every function of device %s: %s' % (value, device, ', '.join(functions))
