# -*- coding: utf-8 -*-
# Copyright: contributors to vfio.passthrough
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the running kernel reports about hugepages and isolated CPUs, read below one root."""

from __future__ import annotations

import re

from ansible_collections.vfio.passthrough.plugins.module_utils.boot._cmdline import kernel_tokens, last_value
from ansible_collections.vfio.passthrough.plugins.module_utils.pci._sysfs import as_tree
from ansible_collections.vfio.passthrough.plugins.module_utils.tuning._tuning import (
    HUGEPAGE_ARGS, ISOLATION_ARGS, TuningError, cpu_flags, format_cpulist, hugepage_reservations, parse_cpulist,
    parse_meminfo,
)

__all__ = ['gather_tuning_facts']

_POOL_DIR = re.compile(r'hugepages-(\d+)kB')
_CPU = 'sys/devices/system/cpu/'
_NODES = 'sys/devices/system/node/online'   # the NUMA nodes hugepages=node:count may name (node_online() in mm/hugetlb.c)


def _number(text):
    return int(text) if text is not None and text.isdigit() else None


def _cpus(tree, path):
    """A cpulist file in the kernel's spelling ('' for none; nohz_full prints '(null)'), or None when absent."""
    text = tree.read(path)
    if text is None:
        return None
    try:
        return format_cpulist(parse_cpulist(text))
    except TuningError:
        return ''


def _pools(tree):
    pools = {}
    for entry in tree.listdir('sys/kernel/mm/hugepages'):
        match = _POOL_DIR.fullmatch(entry)
        if match:
            base = 'sys/kernel/mm/hugepages/%s/' % entry
            pools[match.group(1)] = {name: _number(tree.read(base + name))
                                     for name in ('nr_hugepages', 'free_hugepages', 'resv_hugepages')}
    return pools


def _cmdline(text, nodes):
    values = {name: last_value(text, name) for name in HUGEPAGE_ARGS + ISOLATION_ARGS}
    try:
        reserved = [{'size_kb': pool['size'] // 1024, 'count': pool['count'], 'text': pool['text'],
                     'nodes': {str(node): count for node, count in sorted(pool['nodes'].items())}
                     if pool['nodes'] is not None else None}
                    for pool in hugepage_reservations(kernel_tokens(text), nodes)]
    except TuningError as exc:
        reserved, values['error'] = [], str(exc)
    values['reservations'] = reserved
    return values


def gather_tuning_facts(root='/'):
    """The facts dict of vfio.passthrough.host_tuning_facts."""
    tree = as_tree(root)
    meminfo = parse_meminfo(tree.read('proc/meminfo'))
    present = _cpus(tree, _CPU + 'present')
    cmdline = tree.read('proc/cmdline') or ''
    nodes = _cpus(tree, _NODES)
    return {
        'mem_total_kb': meminfo.get('MemTotal'),
        'hugepages_total': meminfo.get('HugePages_Total'),
        'hugepages_free': meminfo.get('HugePages_Free'),
        'hugepage_size_kb': meminfo.get('Hugepagesize'),
        'pools': _pools(tree),
        'pdpe1gb': 'pdpe1gb' in cpu_flags(tree.read('proc/cpuinfo')),
        'cpus_possible': _cpus(tree, _CPU + 'possible'),
        'cpus_present': present,
        'cpus_online': _cpus(tree, _CPU + 'online'),
        'cpu_count': len(parse_cpulist(present)) if present else None,
        'isolated': _cpus(tree, _CPU + 'isolated'),
        'nohz_full': _cpus(tree, _CPU + 'nohz_full'),
        'numa_nodes': nodes,
        'cmdline': _cmdline(cmdline, parse_cpulist(nodes) if nodes is not None else None),
    }
