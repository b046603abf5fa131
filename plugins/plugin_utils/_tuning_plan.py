# -*- coding: utf-8 -*-
# Copyright: contributors to vfio.passthrough
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Hugepages and isolated CPUs in the role's plan: kernel arguments, refusals, verification.

Null leaves whatever an administrator set by hand alone, empty removes exactly
these arguments, a value replaces them. The memory guard needs the resulting
kernel line and so runs in kernel_cmdline (module_utils/tuning/_tuning.memory_guard).
"""

from __future__ import annotations

from ansible_collections.vfio.passthrough.plugins.module_utils.boot._cmdline import arg_name
from ansible_collections.vfio.passthrough.plugins.module_utils.pci._pci import normalise_module
from ansible_collections.vfio.passthrough.plugins.module_utils.tuning._tuning import (
    HUGEPAGE_ARGS, ISOLATION_ARGS, PAGE_SIZES, TuningError, cpu_guard, format_cpulist, hugepage_group, page_size_guard,
    page_size_name, parse_cpulist,
)

__all__ = ['plan_tuning', 'verify_tuning']

_HUGEPAGES = 'pcie_passthrough_hugepages'
_ISOLATED = 'pcie_passthrough_isolated_cpus'


def _is_empty(value):
    return value in ('', {}, [])


def _clash(names, owner, kernel_args, kernel_args_absent):
    for option, args in (('pcie_passthrough_kernel_args', kernel_args),
                         ('pcie_passthrough_kernel_args_absent', kernel_args_absent)):
        named = [a for a in args if normalise_module(arg_name(str(a))) in names]
        if named:
            yield ('%s names %s, which %s sets: set it in one place (leave %s null to keep arguments set by hand)'
                   % (option, ', '.join(named), owner, owner))


def _hugepages(value, tuning, errors):
    """(size, count) of a valid request, else None with the refusals in ``errors``."""
    if not isinstance(value, dict) or set(value) != {'size', 'count'}:
        errors.append('%s: %r is not {size: 2M or 1G, count: pages}; null keeps the hugepage arguments set by hand, '
                      '{} removes them' % (_HUGEPAGES, value))
        return None
    try:
        size = page_size_name(value['size'], '%s.size' % _HUGEPAGES)
    except TuningError as exc:
        errors.append(str(exc))
        return None
    count = value['count']
    if isinstance(count, bool) or not isinstance(count, int) and not str(count).isdigit() or int(count) < 1:
        errors.append('%s.count: %r is not a number of pages of at least 1 ({} removes the hugepages)' % (_HUGEPAGES, count))
        return None
    refusal = page_size_guard(size, ['pdpe1gb'] if tuning.get('pdpe1gb') else [])
    if refusal:
        errors.append(refusal)
        return None
    return size, int(count)


def _host_cpus(tuning):
    """(present, online) CPU lists from the facts; facts without ``cpus_present`` fall back to ``possible``."""
    present = tuning.get('cpus_present')
    if present is None:
        present = tuning.get('cpus_possible')
    online = tuning.get('cpus_online')
    present = parse_cpulist(present or '')
    return present, parse_cpulist(online) if online is not None else present


def plan_tuning(tuning, hugepages=None, isolated_cpus=None, isolated_nohz=False, force_cpu0=False,
                kernel_args=(), kernel_args_absent=()):
    """Kernel arguments and refusals for the hugepage and isolation variables.

    ``tuning`` is ansible_facts.host_tuning (vfio.passthrough.host_tuning_facts).
    Returns dict(errors, present, absent, group, hugepages, isolated_cpus, nohz).
    """
    errors, present, absent, group = [], [], [], []
    result = {'hugepages': None, 'isolated_cpus': None, 'nohz': bool(isolated_nohz)}
    tuning = tuning or {}
    if hugepages is not None:
        errors.extend(_clash(HUGEPAGE_ARGS, _HUGEPAGES, kernel_args, kernel_args_absent))
        if _is_empty(hugepages):
            absent.extend(HUGEPAGE_ARGS)
            result['hugepages'] = {}
        else:
            asked = _hugepages(hugepages, tuning, errors)
            if asked:
                group = hugepage_group(*asked)
                result['hugepages'] = {'size': asked[0], 'count': asked[1]}
    if isolated_cpus is not None:
        errors.extend(_clash(ISOLATION_ARGS, _ISOLATED, kernel_args, kernel_args_absent))
        try:
            cpus = parse_cpulist(isolated_cpus, _ISOLATED)
        except TuningError as exc:
            errors.append(str(exc))
            cpus = None
        if cpus == []:
            absent.extend(ISOLATION_ARGS)
            result['isolated_cpus'] = ''
        elif cpus:
            cpulist = format_cpulist(cpus)
            args = ['isolcpus=%s' % cpulist]
            # Without the variable the role owns no nohz_full=/rcu_nocbs=: an old pair would tick on other CPUs.
            if isolated_nohz:
                args.extend(['nohz_full=%s' % cpulist, 'rcu_nocbs=%s' % cpulist])
            else:
                absent.extend(['nohz_full', 'rcu_nocbs'])
            errors.extend(cpu_guard(cpus, *_host_cpus(tuning), force_cpu0=force_cpu0, what=_ISOLATED,
                                    asked=' '.join(args)))
            present.extend(args)
            result['isolated_cpus'] = cpulist
    result.update(errors=errors, present=present, absent=absent, group=group)
    return result


def verify_tuning(tuning, planned):
    """Errors naming what the running kernel lacks of the planned hugepages and isolation."""
    errors = []
    tuning = tuning or {}
    pages = planned.get('hugepages')
    if pages:
        size_kb = PAGE_SIZES[pages['size']] // 1024
        pool = (tuning.get('pools') or {}).get(str(size_kb)) or {}
        have = pool.get('nr_hugepages')
        if have is None or have < pages['count']:
            errors.append('/sys/kernel/mm/hugepages/hugepages-%dkB/nr_hugepages is %s, fewer than the %d pages of %s '
                          'asked (%s); /proc/cmdline is "%s"'
                          % (size_kb, 'missing' if have is None else have, pages['count'], pages['size'], _HUGEPAGES,
                             ' '.join(r['text'] for r in (tuning.get('cmdline') or {}).get('reservations') or [])
                             or 'without hugepages'))
        total, default_kb = tuning.get('hugepages_total'), tuning.get('hugepage_size_kb')
        if default_kb != size_kb or total is None or total < pages['count']:
            errors.append('/proc/meminfo has HugePages_Total %s of Hugepagesize %s kB, not at least %d pages of %d kB '
                          '(%s as the default size)' % (total, default_kb, pages['count'], size_kb, pages['size']))
    cpulist = planned.get('isolated_cpus')
    if cpulist is not None:
        if tuning.get('isolated') != cpulist:
            errors.append('/sys/devices/system/cpu/isolated is "%s", not "%s" (%s)'
                          % (tuning.get('isolated'), cpulist, _ISOLATED))
        if cpulist and planned.get('nohz') and tuning.get('nohz_full') != cpulist:
            errors.append('/sys/devices/system/cpu/nohz_full is "%s", not "%s": the kernel may lack CONFIG_NO_HZ_FULL '
                          '(pcie_passthrough_isolated_cpus_nohz)' % (tuning.get('nohz_full'), cpulist))
    return errors
