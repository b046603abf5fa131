# -*- coding: utf-8 -*-
# Copyright: contributors to vfio.passthrough
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The boot framebuffer as /proc/iomem shows it, and the PCI BAR it sits in.

The firmware's console (GOP/VESA) lives in a BAR of the boot GPU. At boot the
kernel's ``sysfb_init`` (drivers/firmware/sysfb.c, ``subsys_initcall_sync``)
registers a platform device for it: ``simple-framebuffer`` with a memory
resource named ``BOOTFB`` (sysfb_simplefb.c) when the mode is simple, else
``efi-framebuffer`` or ``vesa-framebuffer``; the drivers that bind claim the
range again under their own names (``simpledrm``, ``simplefb``, ``efifb``,
``vesafb``). While such a range is claimed, vfio-pci may fail to reserve the
BAR ("BAR 1: can't reserve") and the VM shows nothing. Keeping ``sysfb_init`` from
running (``initcall_blacklist=sysfb_init``) stops every one of them, since all
are registered there; ``video=efifb:off`` / ``video=vesafb:off`` only keep one
fbdev driver off and leave simpledrm and BOOTFB in place.

Pure functions: text in, data out.
"""

from __future__ import annotations

import re

__all__ = [
    'FRAMEBUFFER_NAMES', 'READABLE', 'HIDDEN', 'UNREADABLE', 'SYSFB_ARGUMENT',
    'parse_iomem', 'iomem_state', 'find_framebuffers', 'parse_resource', 'framebuffer_in_bars', 'framebuffer_hint',
]

# Resource names the firmware framebuffer appears under; a platform device's own
# name carries an instance suffix (simple-framebuffer.0).
FRAMEBUFFER_NAMES = ('BOOTFB', 'simplefb', 'simple-framebuffer', 'simpledrm', 'efifb', 'vesafb')

READABLE, HIDDEN, UNREADABLE = 'readable', 'hidden', 'unreadable'
SYSFB_ARGUMENT = 'initcall_blacklist=sysfb_init'

_LINE = re.compile(r'^( *)([0-9a-fA-F]+)-([0-9a-fA-F]+) : (.*?)\s*$')
_IORESOURCE_MEM = 0x200
_BARS = 6  # lines 0-5 of a device's sysfs resource file; 6 is the ROM, 7 on are bridge windows


def parse_iomem(text):
    """/proc/iomem as a forest: ``[{'start', 'end', 'name', 'children': [...]}]``.

    Nesting follows the indentation (two spaces a level), as the kernel prints
    it. Lines of another shape are skipped.
    """
    roots, stack = [], []  # stack of (indent, node)
    for line in (text or '').splitlines():
        match = _LINE.match(line)
        if not match:
            continue
        indent = len(match.group(1))
        node = {'start': int(match.group(2), 16), 'end': int(match.group(3), 16), 'name': match.group(4),
                'children': []}
        while stack and stack[-1][0] >= indent:
            stack.pop()
        (stack[-1][1]['children'] if stack else roots).append(node)
        stack.append((indent, node))
    return roots


def _walk(nodes):
    for node in nodes:
        yield node
        yield from _walk(node['children'])


def iomem_state(text, ranges):
    """READABLE, HIDDEN (every address 0: the kernel shows them only to root) or UNREADABLE (no file, no ranges)."""
    if text is None or not ranges:
        return UNREADABLE
    if all(node['start'] == 0 and node['end'] == 0 for node in _walk(ranges)):
        return HIDDEN
    return READABLE


def _framebuffer_name(name):
    for known in FRAMEBUFFER_NAMES:
        if name == known or name.startswith(known + '.'):
            return known
    return None


def find_framebuffers(ranges):
    """``[(name as printed, start, end)]`` of every framebuffer range, outermost first."""
    return [(node['name'], node['start'], node['end']) for node in _walk(ranges) if _framebuffer_name(node['name'])]


def parse_resource(text):
    """``[(BAR index, start, end)]`` of a PCI device's memory BARs from its sysfs ``resource`` file."""
    bars = []
    for index, line in enumerate((text or '').splitlines()[:_BARS]):
        parts = line.split()
        if len(parts) != 3:
            continue
        try:
            start, end, flags = (int(p, 16) for p in parts)
        except ValueError:
            continue
        if flags & _IORESOURCE_MEM and end > start:
            bars.append((index, start, end))
    return bars


def framebuffer_in_bars(bars, framebuffers):
    """The first framebuffer that lies inside one of ``bars``, as facts, or None.

    ``{'name', 'start', 'end', 'bar', 'bar_start', 'bar_end'}`` with addresses as ``0x`` hex text.
    """
    for name, start, end in framebuffers:
        for index, bar_start, bar_end in bars:
            if bar_start <= start and end <= bar_end:
                return {'name': name, 'start': '0x%x' % start, 'end': '0x%x' % end,
                        'bar': index, 'bar_start': '0x%x' % bar_start, 'bar_end': '0x%x' % bar_end}
    return None


def framebuffer_hint(address, device, state):
    """What to tell about a boot GPU: ``(level, text)`` with level ``warning`` or ``note``, or None.

    Only a framebuffer seen in one of the device's BARs earns a kernel argument;
    ``state`` is the facts' ``iomem`` (READABLE, HIDDEN or UNREADABLE).
    """
    held = device.get('boot_framebuffer')
    if held:
        return ('warning',
                '%s BAR %s (%s-%s) holds the boot framebuffer %s %s-%s: while the host console claims that memory '
                'vfio-pci may fail to reserve the BAR ("can\'t reserve") and the VM show no picture. Add %s to '
                'pcie_passthrough_kernel_args '
                '(it keeps sysfb_init from registering the firmware framebuffer that simpledrm, simplefb, efifb and '
                'vesafb bind to)'
                % (address, held['bar'], held['bar_start'], held['bar_end'], held['name'], held['start'], held['end'],
                   SYSFB_ARGUMENT))
    if not device.get('boot_vga'):
        return None
    if state == READABLE:
        return ('note', '%s is the boot VGA device, but /proc/iomem shows no boot framebuffer in its BARs: the host '
                        'console does not hold it, so no kernel argument is needed for it' % address)
    return ('warning', '%s is the boot VGA device; whether the host console holds one of its BARs is unknown: '
                       '/proc/iomem %s. Gather the facts as root to see it; no kernel argument is suggested without '
                       'that evidence'
            % (address, 'shows only zero addresses (read without root)' if state == HIDDEN else 'could not be read'))
