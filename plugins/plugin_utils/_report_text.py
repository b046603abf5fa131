# -*- coding: utf-8 -*-
# Copyright: contributors to vfio.passthrough
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Text the report's Markdown and HTML share: host rows and device cells, cleaned of unsafe characters.

Every string that comes from a host (class names, drivers, the kernel command
line, host names) passes clean() and is escaped where it is written, so a
hostile or broken sysfs cannot inject markup into a page.
"""

from __future__ import annotations

import re

from ansible_collections.vfio.passthrough.plugins.module_utils.pci._pci import PCI_STUB, VFIO_PCI, vfio_driver
from ansible_collections.vfio.passthrough.plugins.plugin_utils._report_verdicts import KEYS, LABEL, report_summary

__all__ = [
    'clean', 'host_rows', 'boot_path_rows', 'cdev_rows', 'tuning_rows', 'sriov_text', 'device_order', 'address_text', 'isolation_text',
    'vfio_state', 'pci_id_text', 'verdict_text', 'count_line', 'console_summary',
]

# Bytes XML 1.0 cannot carry even escaped (and lone surrogates no encoder accepts):
# a sysfs read with errors='replace' cannot produce them, but facts may come from anywhere.
_UNSAFE_CHARS = re.compile('[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff\ufffe\uffff]')


def clean(value):
    return _UNSAFE_CHARS.sub('\ufffd', '' if value is None else str(value))


def _yes_no(value, yes='yes', no='no'):
    return 'unknown' if value is None else (yes if value else no)


def _pool_text(size_kb, pool):
    size = '%dG' % (size_kb // 1048576) if size_kb % 1048576 == 0 else '%dM' % (size_kb // 1024)
    return '%s x %s' % (pool.get('nr_hugepages') if pool.get('nr_hugepages') is not None else '?', size)


def tuning_rows(tuning):
    """Summary rows from vfio.passthrough.host_tuning_facts: hugepages now and at boot, CPUs, isolation."""
    if not tuning:
        return []
    pools = tuning.get('pools') or {}
    live = ', '.join(_pool_text(int(size), pools[size]) for size in sorted(pools, key=int)) or 'none'
    default_kb = tuning.get('hugepage_size_kb')
    boot = tuning.get('cmdline') or {}
    mem = tuning.get('mem_total_kb')
    isolated = tuning.get('isolated')
    nohz = tuning.get('nohz_full')
    return [
        ('Memory', '%d MiB' % (mem // 1024) if mem is not None else 'unknown'),
        ('Hugepages now', '%s (default size %s kB; 1G pages %s)'
         % (live, default_kb if default_kb is not None else '?', 'supported' if tuning.get('pdpe1gb') else 'not supported')),
        ('Hugepages at boot', boot.get('error') or '; '.join(r['text'] for r in boot.get('reservations') or []) or 'none'),
        ('CPUs', '%s (%s)' % (tuning.get('cpu_count') or '?', tuning.get('cpus_present') or tuning.get('cpus_possible') or '?')),
        ('Isolated CPUs', (isolated or 'none') + ('; nohz_full %s' % nohz if nohz else '')),
    ]


def host_rows(facts, tuning=None):
    acs = facts.get('acs_override')
    return [
        ('IOMMU', '%s (%s)' % ('on' if facts.get('enabled') else 'OFF', facts.get('vendor') or 'vendor unknown')),
        ('Firmware table (DMAR/IVRS)', _yes_no(facts.get('firmware_support'), 'present', 'MISSING')),
        ('Interrupt remapping', _yes_no(facts.get('interrupt_remapping'))),
        ('Passthrough (iommu=pt)', _yes_no(facts.get('passthrough_mode'))),
        ('ACS override', 'pcie_acs_override=%s' % acs if acs is not None else 'none'),
        ('Kernel', facts.get('kernel') or 'unknown'),
        ('Command line', facts.get('cmdline') or ''),
    ] + boot_path_rows(facts.get('boot_path')) + cdev_rows(facts.get('vfio_device_cdev')) + tuning_rows(tuning)


def cdev_rows(kernels):
    """Per installed kernel, whether it makes the per-device VFIO files /dev/vfio/devices/vfioN."""
    if not kernels:
        return []
    return [('VFIO device files (CONFIG_VFIO_DEVICE_CDEV)',
             '; '.join('%s: %s' % (release, kernels[release]) for release in sorted(kernels)))]


def boot_path_rows(boot_path):
    """The boot path row from iommu_facts' boot_path: firmware, loader, and why it is believed."""
    if not boot_path:
        return []
    return [('Booted by', '%s via %s: %s' % ((boot_path.get('firmware') or 'unknown firmware').upper(),
                                             boot_path.get('loader') or 'an unrecognised loader',
                                             boot_path.get('reason') or 'no reason given'))]


def sriov_text(device, devices=None):
    """``2 of 7 VFs`` for a physical function, ``VF 1 of 0000:01:00.0`` for a virtual one, else ``-``."""
    physfn = device.get('physfn')
    if physfn:
        virtfns = ((devices or {}).get(physfn) or {}).get('virtfns') or []
        for index, vf in enumerate(virtfns):
            if vf is not None and (devices or {}).get(vf) is device:
                return 'VF %d of %s' % (index, physfn)
        return 'VF of %s' % physfn
    total = device.get('sriov_totalvfs')
    if not total:
        return '-'
    return '%s of %s VFs' % (device.get('sriov_numvfs') or 0, total)


def device_order(devices):
    """Addresses in order, each physical function's VFs right under it (by VF index), not at their own bus."""
    order = []
    for address in sorted(devices):
        if devices[address].get('physfn') in devices:
            continue
        order.append(address)
        order.extend(vf for vf in devices[address].get('virtfns') or [] if vf in devices)
    return order


def address_text(address, device):
    """The address as the device tables show it: a VF indented under its PF."""
    return '\u21b3 %s' % address if device.get('physfn') else address


def isolation_text(device):
    if device.get('iommu_group') is None:
        return 'no group'
    peers = device.get('group_peers') or []
    if not peers:
        return 'alone in group %s' % device['iommu_group']
    if device.get('isolated'):
        return 'isolated (group %s with %s)' % (device['iommu_group'], ', '.join(peers))
    return 'shared (group %s with %s)' % (device['iommu_group'], ', '.join(peers))


def vfio_state(device):
    driver = device.get('driver')
    holder = vfio_driver(device)
    if holder:
        return 'bound' if holder == VFIO_PCI else 'bound (%s)' % holder
    if driver == PCI_STUB:
        return 'held by pci-stub'
    return 'host (%s)' % driver if driver else 'no driver'


def pci_id_text(device):
    return '%s:%s' % (device.get('vendor_id') or '????', device.get('device_id') or '????')


def verdict_text(verdict):
    return '; '.join([verdict['reason']] + verdict['notes'])


def count_line(counts):
    parts = ['%d %s' % (counts[key], LABEL[key]) for key in KEYS if counts.get(key)]
    return ', '.join(parts) or 'no devices'


def console_summary(facts):
    """report_summary plus ``lines``: the host rows of the Markdown and HTML pages and the verdict counts, as text."""
    summary = report_summary(facts)
    summary['lines'] = ['%s: %s' % (label, clean(value)) for label, value in host_rows(facts)]
    summary['lines'].append('Devices: %s' % count_line(summary['counts']))
    return summary
