# -*- coding: utf-8 -*-
# Copyright: contributors to vfio.passthrough
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Hugepages and isolated CPUs: the kernel's cpulist and size syntax, and the guards.

Pure functions, text in and data out. The same functions read what an
administrator asks for, what a command line reserves and what the running
kernel reports, so the plan, the module's memory guard, the facts and the
verification agree on every number.
"""

from __future__ import annotations

import re

__all__ = [
    'TuningError', 'PAGE_SIZES', 'HUGEPAGE_ARGS', 'ISOLATION_ARGS', 'MIB', 'GIB',
    'parse_cpulist', 'format_cpulist', 'parse_size', 'page_size_name', 'hugepage_group',
    'hugepage_reservations', 'foreign_reservations', 'memory_guard', 'cpu_guard', 'page_size_guard',
    'parse_meminfo', 'cpu_flags', 'hugepage_count', 'same_hugepage_tokens',
]

MIB = 1024 * 1024
GIB = 1024 * MIB

# The two sizes an x86-64 kernel offers: 2 MiB always, 1 GiB with the CPU's pdpe1gb flag.
PAGE_SIZES = {'2M': 2 * MIB, '1G': GIB}
_PAGE_FLAGS = {'1G': 'pdpe1gb'}

# In the order the kernel needs them: hugepages=N counts pages of the hugepagesz= before it.
HUGEPAGE_ARGS = ('default_hugepagesz', 'hugepagesz', 'hugepages')
ISOLATION_ARGS = ('isolcpus', 'nohz_full', 'rcu_nocbs')

# NR_CPUS is at most 8192 on x86-64: a larger number is a typo, and expanding it would cost memory.
MAX_CPU = 8191

# The default share of RAM the host keeps outside hugepages, and the floor of it.
HOST_SHARE = 0.25
HOST_FLOOR = 4 * GIB

_CPU_ITEM = re.compile(r'(\d+)(?:-(\d+)(?::(\d+)/(\d+))?)?')
_SIZE = re.compile(r'(\d+)([KMGkmg])?(?:[bB])?')
_SUFFIX = {None: 1, 'k': 1024, 'm': MIB, 'g': GIB}
# hugepages= is a count, or per NUMA node (Linux 5.14+, every Proxmox VE 8/9 kernel) node:count[,node:count];
# the kernel's parser stops at the end of the list and takes a trailing comma.
_NODE_COUNTS = re.compile(r'\d+:\d+(?:,\d+:\d+)*,?')


class TuningError(ValueError):
    """A value that must not be used; the message names it and says why."""


def parse_cpulist(text, what='cpulist'):
    """The sorted CPU numbers of a kernel cpulist (``0-3,8``, ``0-15:2/4``); '' is no CPU."""
    if not isinstance(text, (str, int)) or isinstance(text, bool):
        raise TuningError('%s: %r is not a cpulist like 2-7,10' % (what, text))
    cpus = set()
    if not str(text).strip():
        return []
    for item in str(text).strip().split(','):
        match = _CPU_ITEM.fullmatch(item)
        if not match:
            raise TuningError('%s: %r is not a cpulist like 2-7,10 (the item %r is neither a CPU number nor a '
                              'range a-b nor a-b:used/group)' % (what, str(text), item))
        first = int(match.group(1))
        last = int(match.group(2)) if match.group(2) is not None else first
        if last < first:
            raise TuningError('%s: the range %r in %r runs backwards' % (what, item, str(text)))
        if last > MAX_CPU:
            raise TuningError('%s: CPU %d in %r is beyond the largest CPU number a kernel knows (%d)'
                              % (what, last, str(text), MAX_CPU))
        used, group = (int(match.group(3)), int(match.group(4))) if match.group(3) is not None else (1, 1)
        if group == 0 or used == 0 or used > group:
            raise TuningError('%s: the stride %r in %r needs 0 < used <= group size' % (what, item, str(text)))
        cpus.update(cpu for cpu in range(first, last + 1) if (cpu - first) % group < used)
    return sorted(cpus)


def format_cpulist(cpus):
    """The kernel's own spelling of a set of CPUs (as /sys/devices/system/cpu/isolated prints it)."""
    ranges, run = [], []
    for cpu in sorted(set(cpus)):
        if run and cpu == run[-1] + 1:
            run.append(cpu)
            continue
        if run:
            ranges.append(run)
        run = [cpu]
    if run:
        ranges.append(run)
    return ','.join(str(r[0]) if len(r) == 1 else '%d-%d' % (r[0], r[-1]) for r in ranges)


def parse_size(text, what='size'):
    """Bytes of a size as the kernel's memparse() reads it (``2M``, ``1G``, ``2048k``, ``2097152``)."""
    match = _SIZE.fullmatch(str(text).strip()) if isinstance(text, (str, int)) and not isinstance(text, bool) else None
    if not match:
        raise TuningError('%s: %r is not a size like 2M or 1G' % (what, text))
    return int(match.group(1)) * _SUFFIX[match.group(2).lower() if match.group(2) else None]


def page_size_name(text, what='size'):
    """'2M' or '1G' for any spelling of those two sizes; anything else is refused."""
    size = parse_size(text, what)
    for name, value in PAGE_SIZES.items():
        if size == value:
            return name
    raise TuningError('%s: %r is not a hugepage size this host type offers (2M or 1G)' % (what, text))


def hugepage_group(size, count):
    """The ordered argument group that reserves ``count`` pages of ``size`` and makes it the default size."""
    return ['default_hugepagesz=%s' % size, 'hugepagesz=%s' % size, 'hugepages=%d' % count]


def _name(token):
    return token.split('=', 1)[0].replace('-', '_')


def _value(token):
    return token.split('=', 1)[1] if '=' in token else ''


def hugepage_count(token, nodes=None):
    """(total pages, {node: pages} or None) of one ``hugepages=`` token, as mm/hugetlb.c reads it.

    The plain form counts pages; the node form ``hugepages=0:2,1:2`` asks for
    pages on each NUMA node and reserves their sum. ``nodes`` (the online NUMA
    nodes, a list) refuses a node the host does not have: the kernel drops the
    whole argument then. A node named twice is refused too (the kernel keeps
    the last count for the node but adds both to the total).
    """
    value = _value(token)
    if value.isdigit():
        return int(value), None
    if not _NODE_COUNTS.fullmatch(value):
        raise TuningError('%s: %r is not a page count (N, or per NUMA node node:N[,node:N])' % (token, value))
    per_node = {}
    for item in value.rstrip(',').split(','):
        node, count = (int(part) for part in item.split(':'))
        if node in per_node:
            raise TuningError('%s: names NUMA node %d twice' % (token, node))
        per_node[node] = count
    if nodes is not None:
        missing = sorted(set(per_node) - set(nodes))
        if missing:
            raise TuningError('%s: names NUMA node%s %s, which this host does not have (online nodes: %s); the '
                              'kernel would ignore the whole argument'
                              % (token, 's' if len(missing) > 1 else '', format_cpulist(missing),
                                 format_cpulist(nodes) or 'none'))
    return sum(per_node.values()), per_node


def hugepage_reservations(tokens, nodes=None):
    """Every pool a list of kernel tokens reserves, in order, as the kernel reads them.

    A ``hugepages=N`` counts pages of the ``hugepagesz=`` before it, or of the
    default size (``default_hugepagesz=`` anywhere on the line, else 2M) when
    none comes before it; its per-node form counts the sum over the nodes.
    Returns dicts (size, count, nodes, text) where ``text`` names the tokens and
    ``nodes`` is {node: pages} for the node form, else None. A value the kernel
    cannot read, or a node not in ``nodes`` (when given), is refused, naming it.
    """
    default = PAGE_SIZES['2M']
    for token in tokens:
        if _name(token) == 'default_hugepagesz':
            default = parse_size(_value(token), token)
    pools, current, current_token = [], None, None
    for token in tokens:
        name = _name(token)
        if name == 'hugepagesz':
            current, current_token = parse_size(_value(token), token), token
        elif name == 'hugepages':
            count, per_node = hugepage_count(token, nodes)
            size = default if current is None else current
            text = token if current is None else '%s %s' % (current_token, token)
            pools.append({'size': size, 'count': count, 'nodes': per_node, 'text': text})
    return pools


def same_hugepage_tokens(have, want):
    """Whether two lists of hugepage tokens say the same thing, token by token.

    Names compare as the kernel reads them (``-`` is ``_``), sizes by bytes and
    ``hugepages=`` by its total, so ``hugepages=0:64,1:64`` meets ``hugepages=128``:
    the node split is the administrator's and costs no reboot. An unreadable
    value never matches.
    """
    if len(have) != len(want):
        return False
    try:
        for left, right in zip(have, want):
            if _name(left) != _name(right):
                return False
            if _name(left) == 'hugepages':
                if hugepage_count(left)[0] != hugepage_count(right)[0]:
                    return False
            elif parse_size(_value(left), left) != parse_size(_value(right), right):
                return False
    except TuningError:
        return False
    return True


def foreign_reservations(tokens, size):
    """What of ``tokens`` reserves or declares hugepages of another size than ``size``, as text."""
    foreign = [pool['text'] for pool in hugepage_reservations(tokens) if pool['size'] != size]
    counted = ' '.join(foreign).split()
    foreign += [tok for tok in tokens if _name(tok) == 'hugepagesz' and tok not in counted
                and parse_size(_value(tok), tok) != size]
    return foreign


def memory_guard(pools, mem_total_kb, host_reserve_mib=None):
    """None when the reservations leave the host enough RAM, else the refusal naming the numbers.

    The host keeps ``host_reserve_mib`` MiB, or by default a quarter of RAM and
    at least 4 GiB, whichever is larger.
    """
    total = sum(pool['size'] * pool['count'] for pool in pools)
    if not total:
        return None
    mem = int(mem_total_kb) * 1024
    if host_reserve_mib is None:
        keep, rule = max(int(mem * HOST_SHARE), HOST_FLOOR), '25% of RAM and at least 4096 MiB'
    else:
        keep, rule = int(host_reserve_mib) * MIB, 'pcie_passthrough_hugepages_host_reserve_mib'
    if mem - total >= keep:
        return None
    return ('the hugepages on the kernel command line (%s) reserve %d MiB of the %d MiB RAM (MemTotal), leaving the '
            'host %d MiB, less than the %d MiB it keeps (%s): the host could run out of memory while booting. '
            'Reserve fewer pages%s'
            % ('; '.join('%s = %d MiB' % (pool['text'], pool['size'] * pool['count'] // MIB) for pool in pools),
               total // MIB, mem // MIB, (mem - total) // MIB, keep // MIB, rule,
               '' if host_reserve_mib is not None else ', or lower the share with '
               'pcie_passthrough_hugepages_host_reserve_mib on a small host'))


def page_size_guard(size, flags):
    """None when the CPU offers pages of ``size`` ('2M'/'1G'), else the refusal."""
    flag = _PAGE_FLAGS.get(size)
    if flag and flag not in flags:
        return ('pcie_passthrough_hugepages: %s pages need the CPU flag %s, which /proc/cpuinfo does not list: '
                'the kernel would ignore hugepagesz=%s; use 2M pages' % (size, flag, size))
    return None


def _cpus_word(cpus):
    return 'CPU %s' % format_cpulist(cpus) if len(cpus) == 1 else 'CPUs %s' % format_cpulist(cpus)


def cpu_guard(cpus, present, online, force_cpu0=False, what='pcie_passthrough_isolated_cpus', asked=None):
    """Refusals for isolating ``cpus`` (a list) on a host whose CPUs are ``present`` and ``online`` (lists).

    ``possible`` counts hot-plug slots that hold no CPU; a CPU exists when it
    is present, and works for the host when it is also online. Isolating one
    that is not both, or every one that is, is refused naming both lists.
    ``asked`` is the arguments as the plan writes them (``isolcpus=4-7``).
    """
    errors = []
    text = format_cpulist(cpus)
    asked = asked or text
    lists = '(present: %s, online: %s)' % (format_cpulist(present) or 'unknown', format_cpulist(online) or 'unknown')
    absent = sorted(set(cpus) - set(present))
    offline = sorted(set(cpus) & set(present) - set(online))
    if absent:
        errors.append('%s: %s names %s that %s not present %s' % (
            what, asked, _cpus_word(absent), 'is' if len(absent) == 1 else 'are', lists))
    if offline:
        errors.append('%s: %s names %s that %s present but offline %s: bring %s online or leave %s out' % (
            what, asked, _cpus_word(offline), 'is' if len(offline) == 1 else 'are', lists,
            'it' if len(offline) == 1 else 'them', 'it' if len(offline) == 1 else 'them'))
    usable = set(present) & set(online)
    if usable and not usable - set(cpus):
        errors.append('%s: %s isolates every present and online CPU of this host %s: at least one housekeeping CPU '
                      'must stay for the host, its interrupts and its timers' % (what, asked, lists))
    if 0 in cpus and not force_cpu0:
        errors.append('%s: %s isolates CPU 0, which takes interrupts and timers the kernel cannot move; leave it '
                      'out, or set pcie_passthrough_isolated_cpus_force_cpu0: true' % (what, asked))
    return errors


def parse_meminfo(text):
    """/proc/meminfo as {field: number} (kB fields in kB, page counts as counts)."""
    info = {}
    for line in (text or '').splitlines():
        name, _sep, rest = line.partition(':')
        words = rest.split()
        if words and words[0].isdigit():
            info[name.strip()] = int(words[0])
    return info


def cpu_flags(cpuinfo):
    """The flags of the first processor in /proc/cpuinfo (every CPU of a host has the same)."""
    for line in (cpuinfo or '').splitlines():
        name, _sep, rest = line.partition(':')
        if name.strip() == 'flags':
            return rest.split()
    return []
