# -*- coding: utf-8 -*-
# Copyright: contributors to vfio.passthrough
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The three files that bind PCI devices to vfio-pci by address, rendered as text.

A device whose vendor:device ID is shared with a device that stays on the host
cannot be claimed by ``ids=``. Instead a modprobe ``install`` rule runs a script
before the device's usual driver loads; the script sets ``driver_override`` for
the listed addresses only. An initramfs hook copies the script into the
initramfs, where the rule fires too. Pure functions, no I/O.
"""

from __future__ import annotations

from ansible_collections.vfio.passthrough.plugins.module_utils.modprobe._modprobe import check_module_names, header
from ansible_collections.vfio.passthrough.plugins.module_utils.pci._pci import PCI_ADDRESS

__all__ = ['OWNER', 'SCRIPT', 'MODPROBE_FILE', 'HOOK', 'check_addresses', 'render_binding']

OWNER = 'vfio_address_binding'
SCRIPT = '/usr/local/sbin/vfio-passthrough-bind'
MODPROBE_FILE = '/etc/modprobe.d/vfio-passthrough-address.conf'
HOOK = '/etc/initramfs-tools/hooks/vfio-passthrough'

_SCRIPT = """#!/bin/sh
{header}
# vfio.passthrough: hand these devices to vfio-pci by PCI address. modprobe runs this
# before it loads their usual driver, so the driver never binds them, while other
# devices with the same vendor:device ID keep that driver. It runs in the initramfs
# and in the booted system alike. It writes nothing but each free device's override
# (and a probe), and every exit is 0: the usual driver's modprobe, next in the same
# install command, must load whatever happens here.
sys=/sys
modprobe=/sbin/modprobe
set -- {addresses}
for dev do
    sysdev=$sys/bus/pci/devices/$dev
    [ -e "$sysdev/driver_override" ] || continue
    [ -e "$sysdev/driver" ] && continue
    echo vfio-pci > "$sysdev/driver_override" || continue
    "$modprobe" vfio-pci 2>/dev/null || true
    # vfio-pci may have been loaded before the override was set: ask for a probe.
    [ -e "$sysdev/driver" ] || echo "$dev" > "$sys/bus/pci/drivers_probe" 2>/dev/null || true
done
exit 0
"""

_HOOK = """#!/bin/sh
{header}
# vfio.passthrough: the modprobe install rule for address binding needs its script in the initramfs.
PREREQ=""
prereqs() {{ echo "$PREREQ"; }}
case "$1" in
    prereqs) prereqs; exit 0 ;;
esac
. /usr/share/initramfs-tools/hook-functions
copy_file script {script} {script}
exit 0
"""


def check_addresses(addresses):
    """Validate canonical PCI addresses (``0000:01:00.0``); drop repeats, keep order. ValueError names the bad one."""
    result = []
    for address in addresses:
        if not isinstance(address, str) or not PCI_ADDRESS.match(address):
            raise ValueError('invalid PCI address %r: expected domain:bus:slot.function in lowercase hex, '
                             'like 0000:01:00.0' % (address,))
        if address not in result:
            result.append(address)
    return result


def render_binding(addresses, drivers, script=SCRIPT, modprobe_file=MODPROBE_FILE, hook=HOOK):
    """``[(path, text, mode)]`` of the three files for ``addresses`` ahead of ``drivers``.

    Raises ValueError naming a bad address or driver, or when there is no address.
    No driver is allowed (a device whose usual driver is not known): the files
    are then written without an ``install`` rule, as the plan asks.
    """
    addresses = check_addresses(addresses)
    drivers = check_module_names(drivers, 'driver name')
    if not addresses:
        raise ValueError('address binding needs at least one address (use state=absent to remove it)')
    mark = header(OWNER)
    rules = ''.join('install %s %s; /sbin/modprobe --ignore-install %s $CMDLINE_OPTS\n' % (driver, script, driver)
                    for driver in drivers)
    conf = ('%s\n# vfio.passthrough: bind %s to vfio-pci by address\n'
            '# before these drivers load (their IDs are shared with devices that stay on the host).\n%s'
            % (mark, ', '.join(addresses), rules))
    return [
        (script, _SCRIPT.format(header=mark, addresses=' '.join(addresses)), 0o755),
        (modprobe_file, conf, 0o644),
        (hook, _HOOK.format(header=mark, script=script), 0o755),
    ]
