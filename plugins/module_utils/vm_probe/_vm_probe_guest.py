# -*- coding: utf-8 -*-
# Copyright: contributors to vfio.passthrough
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The throwaway guest of vm_probe: the /init it runs, and what its console said.

Both halves live here because they share one vocabulary: every line the
guest's /init prints for the probe starts with MARKER and one word (``kernel``,
``pci``, ``insmod``, ``driver``, ``link``, ``dhcp``, ``done``), and the parser
keys on exactly those. The kernel writes to the same serial console, so a
marker is searched anywhere in a line, not only at its start.

Pure functions: data in, text out; text in, data out.
"""

from __future__ import annotations

import re

__all__ = ['MARKER', 'DHCP_SCRIPT', 'MODULE_DIR', 'init_script', 'dhcp_script', 'parse_console']

MARKER = 'vm-probe:'
# Where the initramfs keeps the driver modules (flat, decompressed) and udhcpc's hook.
MODULE_DIR = 'lib/modules'
DHCP_SCRIPT = 'bin/vm-probe-dhcp'
# Seconds the guest waits for a link's carrier after bringing it up: an e1000e under TCG
# inside TCG needs a few; a port without a cable never gets one.
CARRIER_WAIT = 20

_MODULE_NAME = re.compile(r'[A-Za-z0-9_-]+\Z')
_LEASE = re.compile(r'lease of (\S+) obtained from ([^\s,]+)')
_PCI = re.compile(r'([0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]) 0x([0-9a-f]{4}):0x([0-9a-f]{4}) class 0x([0-9a-f]{6})')
_DRIVER = re.compile(r'([0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]) (\S+)')
_LINK = re.compile(r'(\S+) (\S+) carrier=(\S+) operstate=(\S+)')
_INSMOD = re.compile(r'(\S+) (ok|failed)')
_ESCAPES = re.compile(r'\x1b\[[0-9;?]*[A-Za-z]|\x1bc')


def init_script(modules, dhcp):
    """The guest's /init (busybox sh): ``modules`` are module names in load order, ``dhcp`` runs udhcpc
    on every interface the guest has, which can only be the passed devices' (``-nic none``)."""
    for name in modules:
        if not _MODULE_NAME.match(name or ''):
            raise ValueError('%r is no kernel module name' % (name,))
    lines = [
        '#!/bin/busybox sh',
        "# vfio.passthrough.vm_probe: report what this guest's kernel sees of the passed devices, then power off.",
        '/bin/busybox mkdir -p /proc /sys /dev /sbin /usr/bin /usr/sbin /tmp',
        '/bin/busybox mount -t proc proc /proc',
        '/bin/busybox --install -s',
        'mount -t sysfs sysfs /sys',
        'mount -t devtmpfs devtmpfs /dev',
        'say() { echo "%s $*"; }' % MARKER,
        'say "kernel $(cat /proc/version)"',
        'for d in /sys/bus/pci/devices/*; do',
        '  say "pci ${d##*/} $(cat "$d/vendor"):$(cat "$d/device") class $(cat "$d/class")"',
        'done',
    ]
    for name in modules:
        lines.append('if insmod /%s/%s.ko; then say "insmod %s ok"; else say "insmod %s failed"; fi'
                     % (MODULE_DIR, name, name, name))
    lines += [
        # A probe may finish after insmod returns (asynchronous probing, firmware loads).
        'sleep 2' if modules else ':',
        'for d in /sys/bus/pci/devices/*; do',
        '  drv=none',
        '  [ -e "$d/driver" ] && drv=$(readlink "$d/driver") && drv=${drv##*/}',
        '  say "driver ${d##*/} $drv"',
        'done',
        'for n in /sys/class/net/*; do',
        '  i=${n##*/}',
        '  [ "$i" = lo ] && continue',
        '  dev=none',
        '  [ -e "$n/device" ] && dev=$(readlink "$n/device") && dev=${dev##*/}',
        '  ip link set "$i" up',
        '  t=0',
        '  while [ $t -lt %d ] && [ "$(cat "$n/carrier" 2>/dev/null)" != 1 ]; do sleep 1; t=$((t+1)); done'
        % CARRIER_WAIT,
        '  say "link $i $dev carrier=$(cat "$n/carrier" 2>/dev/null || echo none) operstate=$(cat "$n/operstate")"',
    ]
    if dhcp:
        lines += [
            '  udhcpc -i "$i" -n -q -t 5 -s /%s 2>&1' % DHCP_SCRIPT,
            '  say "dhcp $i rc=$?"',
        ]
    lines += [
        'done',
        'say "done"',
        'poweroff -f',
        '',
    ]
    return '\n'.join(lines)


def dhcp_script():
    """udhcpc's hook: it configures nothing, the lease line udhcpc prints itself is the proof."""
    # udhcpc passes the lease in the environment (interface, ip, router), the event as $1.
    return ('#!/bin/sh\n# shellcheck disable=SC2154\necho "%s dhcp-event $1 $interface ip=$ip router=$router"\n'
            % MARKER)


def _clean(line):
    return _ESCAPES.sub('', line).replace('\r', '').rstrip()


def parse_console(text):
    """What the guest printed, as data.

    Returns ``{kernel_line, devices: [{address, vendor_device, class, driver, interfaces}],
    links: {iface: 'up'|'down'}, link_details: {iface: {device, carrier, operstate}},
    modules: {name: 'ok'|'failed'}, lease, finished, lines}``. ``links`` says ``up`` where the
    carrier is 1. ``finished`` is true when /init reached its end; a guest that hung or
    panicked leaves it false, with whatever it printed before.
    """
    lines = [_clean(line) for line in (text or '').split('\n')]
    while lines and not lines[-1]:
        lines.pop()
    result = {'kernel_line': None, 'devices': [], 'links': {}, 'link_details': {}, 'modules': {},
              'lease': None, 'finished': False, 'lines': lines}
    by_address = {}
    for line in lines:
        lease = _LEASE.search(line)
        if lease and result['lease'] is None and MARKER not in line:
            result['lease'] = 'lease of %s obtained from %s' % lease.groups()
            continue
        at = line.find(MARKER)
        if at < 0:
            continue
        word, _sep, rest = line[at + len(MARKER):].strip().partition(' ')
        rest = rest.strip()
        if word == 'kernel' and result['kernel_line'] is None:
            result['kernel_line'] = rest
        elif word == 'pci':
            match = _PCI.match(rest.lower())
            if match and match.group(1) not in by_address:
                device = {'address': match.group(1), 'vendor_device': '%s:%s' % match.group(2, 3),
                          'class': match.group(4), 'driver': None, 'interfaces': []}
                by_address[device['address']] = device
                result['devices'].append(device)
        elif word == 'driver':
            match = _DRIVER.match(rest)
            if match and match.group(1) in by_address:
                driver = match.group(2)
                by_address[match.group(1)]['driver'] = None if driver == 'none' else driver
        elif word == 'insmod':
            match = _INSMOD.match(rest)
            if match:
                result['modules'][match.group(1)] = match.group(2)
        elif word == 'link':
            match = _LINK.match(rest)
            if match:
                iface, device, carrier, operstate = match.groups()
                result['links'][iface] = 'up' if carrier == '1' else 'down'
                result['link_details'][iface] = {'device': None if device == 'none' else device,
                                                 'carrier': carrier, 'operstate': operstate}
                if device in by_address and iface not in by_address[device]['interfaces']:
                    by_address[device]['interfaces'].append(iface)
        elif word == 'done':
            result['finished'] = True
    return result
