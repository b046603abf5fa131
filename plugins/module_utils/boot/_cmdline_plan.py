# -*- coding: utf-8 -*-
# Copyright: contributors to vfio.passthrough
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What kernel_cmdline writes, decided before anything is written.

``plan_cmdline`` edits the file of every boot loader in use, then refuses (``PlanRefused``) whatever
no kernel should boot with: an argument asked absent still on a line, a line longer than an installed
kernel takes, a ``vfio-pci.ids=`` competing with modprobe.d, hugepages leaving the host too little RAM.

The steps are pure functions of text. What only the host can tell (a file, the shell's reading of
the GRUB files, the kernels' setup headers) comes from ``host``, read when a step needs it, in the
order the refusals are due: the module passes an adapter over its transaction, the tests a fake.
"""

from __future__ import annotations

from typing import NamedTuple, Optional

from ansible_collections.vfio.passthrough.plugins.module_utils.boot._cmdline import (
    CmdlineError, check_balanced_quotes, cmdline_vfio_ids, edit_args, kernel_tokens, proxmox_cmdline_problem,
    remaining_absent, same_name, strip_boot_args,
)
from ansible_collections.vfio.passthrough.plugins.module_utils.boot._cmdline_limit import (
    CmdlineTooLong, check_length, grub_boot_line, kernel_version, parse_cmdline_size, systemd_boot_line,
)
from ansible_collections.vfio.passthrough.plugins.module_utils.files._files import FileError
from ansible_collections.vfio.passthrough.plugins.module_utils.boot._grub_default import (
    CMDLINE_VARIABLES, GrubError, check_evaluable, edit_grub_default, judge_evaluation,
)
from ansible_collections.vfio.passthrough.plugins.module_utils.tuning._tuning import (
    HUGEPAGE_ARGS, TuningError, hugepage_reservations, memory_guard, parse_cpulist, parse_meminfo,
)

__all__ = ['PlanRefused', 'CmdlineOptions', 'FileEdit', 'KernelImage', 'KernelLine', 'CmdlinePlan',
           'plan_cmdline', 'plan_grub', 'plan_systemd_boot', 'kernel_images', 'check_absent_gone',
           'measure_kernel_lines', 'check_vfio_ids', 'hugepage_args', 'mem_total_kb', 'numa_nodes', 'check_memory']


class PlanRefused(Exception):
    """Nothing may be written: the module fails with this message, and ``path`` when one file is to blame."""

    def __init__(self, msg, path=None):
        super().__init__(msg)
        self.path = path

    @property
    def result_keys(self):
        return {} if self.path is None else {'path': self.path}


class CmdlineOptions(NamedTuple):
    """The module options planning reads (named as the options are), with the boot loaders to edit."""

    bootloaders: list
    grub_file: str
    grub_variable: str
    cmdline_file: str
    proc_cmdline: str
    boot_dir: str
    vfio_ids: list
    meminfo: str
    numa_nodes: str
    hugepages_host_reserve_mib: Optional[int]

    @classmethod
    def from_params(cls, params, bootloaders):
        """The options from the module's ``params``, editing the files of ``bootloaders``."""
        return cls(bootloaders, *(params[name] for name in cls._fields[1:]))


class FileEdit(NamedTuple):
    """One boot loader's file: its text now and as planned, and the command-line values the module returns."""

    bootloader: str
    path: str
    old: Optional[str]  # None: the file does not exist yet
    new: str
    before: Optional[str]  # the edited value as it is (None: no file or no assignment)
    after: str
    effective: Optional[str] = None  # GRUB only: both variables as /bin/sh computes them
    evaluated: Optional[dict] = None  # GRUB only: each variable as /bin/sh computes it

    @property
    def boot_line(self):
        """The arguments the boot loader will pass from this file."""
        return self.effective if self.bootloader == 'grub' else self.after

    def returned(self):
        """The module's return values for this file."""
        values = {'before': self.before, 'after': self.after}
        if self.bootloader == 'grub':
            values.update(effective=self.effective, evaluated=self.evaluated)
        return values


class KernelImage(NamedTuple):
    """An installed kernel and the longest command line it takes (None: no x86 setup header)."""

    image: str
    version: str
    cmdline_size: Optional[int]


class KernelLine(NamedTuple):
    """How long the line one boot loader gives one kernel is, against what that kernel takes."""

    image: str
    bootloader: str
    length: int
    cmdline_size: Optional[int]


class CmdlinePlan(NamedTuple):
    """Every edit (one per boot loader, in the order asked) and every line measured."""

    edits: list
    kernel_lines: list


def plan_cmdline(options, request, running, host):
    """The edits and measurements for ``request`` (an ``ArgRequest``); raises PlanRefused.

    ``running`` is the running kernel's line (None: unreadable). ``host`` reads: ``read(path)``
    (text or None), ``dropins(grub_file)`` ([(path, text)]), ``evaluate_grub(path, candidate=None)``
    (what /bin/sh computes, as ``parse_eval_output`` and its error text), ``kernel_headers(boot_dir)``
    ([(image, first bytes)]), ``read_text(path)`` (text or None, FileError) and ``warn(msg)``.
    """
    edits = []
    for loader in options.bootloaders:
        if loader == 'grub':
            edits.append(plan_grub(options.grub_file, options.grub_variable, request, host))
        else:
            path = options.cmdline_file
            edit, warning = plan_systemd_boot(path, host.read(path), running, options.proc_cmdline, request)
            if warning:
                # Nothing to write: say it, the file is the administrator's to fix, and a read-only run must not fail.
                host.warn(warning)
            edits.append(edit)
    check_absent_gone(edits, request)
    kernel_lines = measure_kernel_lines(edits, kernel_images(host.kernel_headers(options.boot_dir)), running)
    if options.vfio_ids:
        check_vfio_ids(edits, request, options.vfio_ids, running, options.proc_cmdline)
    asked = hugepage_args(request)
    if asked:
        mem_total = mem_total_kb(_read_for_memory_guard(host, options.meminfo), options.meminfo, asked)
        nodes = numa_nodes(_read_for_memory_guard(host, options.numa_nodes), options.numa_nodes)
        check_memory(edits, mem_total, nodes, options.hugepages_host_reserve_mib)
    return CmdlinePlan(edits, kernel_lines)


def _read_for_memory_guard(host, path):
    try:
        return host.read_text(path)
    except FileError as exc:
        raise PlanRefused('cannot read %s for the hugepage memory guard: %s' % (path, exc))


def plan_grub(path, variable, request, host):
    """The edit of GRUB's default file ``path``, which /bin/sh must read as asked, drop-ins included."""
    old = host.read(path)
    if old is None:
        raise PlanRefused('%s does not exist; is GRUB installed?' % path)
    dropins = host.dropins(path)
    try:
        # The drop-ins are judged by /bin/sh below, which sees their if/unset/&& forms.
        edited = edit_grub_default(old, request, variable, path)
        before, errors_before = host.evaluate_grub(path)
        if edited['text'] == old:
            after, errors_after = before, errors_before
        else:
            after, errors_after = host.evaluate_grub(path, edited['text'])
        effective = judge_evaluation(request, before, after, path, edited['text'], edited['line'],
                                     variable, dropins, errors_before, errors_after)
        # /bin/sh computed the line once, in a clean environment: a value it got from a command or from
        # a variable the files do not set may differ when update-grub runs, an absent argument with it.
        check_evaluable([(path, edited['text'])] + dropins, request)
    except GrubError as exc:
        raise PlanRefused(str(exc), path)
    final = after['files'][-1][1:] if after['files'] else ('', '')
    return FileEdit('grub', path, old, edited['text'], edited['before'], edited['after'],
                    effective, dict(zip(CMDLINE_VARIABLES, final)))


def plan_systemd_boot(path, old, running, proc_cmdline, request):
    """The edit of systemd-boot's ``path`` (text ``old``, None when missing) and a warning, or None.

    A missing file is seeded from the running line ``running`` read from ``proc_cmdline``.
    """
    if old is None:
        if running is None:
            raise PlanRefused('%s is missing and %s is unreadable to seed it' % (path, proc_cmdline))
        line, rest, before = strip_boot_args(running), '', None
    else:
        line, _newline, rest = old.partition('\n')
        before = line
    try:
        check_balanced_quotes(line, '%s line 1' % path)
    except CmdlineError as exc:
        raise PlanRefused(str(exc), path)
    try:
        after = edit_args(line, request)
    except CmdlineError as exc:
        raise PlanRefused('%s line 1: %s' % (path, exc), path)
    if old is not None and after == line:
        return FileEdit('systemd-boot', path, old, old, before, after), proxmox_cmdline_problem(old, path)
    new = after + '\n' + rest
    # The file as it is, then as it would be: a first line the boot hook rejects or misreads is never edited
    # as if it could boot, and no edit may leave one behind.
    for text in ((old, new) if old is not None else (new,)):
        problem = proxmox_cmdline_problem(text, path)
        if problem:
            raise PlanRefused('%s%s; nothing was written' % ('' if text is old else 'after the edit: ', problem), path)
    return FileEdit('systemd-boot', path, old, new, before, after), None


def kernel_images(headers):
    """Each ``(image, first bytes)`` as a KernelImage: a host boots the newest kernel but keeps others."""
    return [KernelImage(image, kernel_version(image), parse_cmdline_size(header)) for image, header in headers]


def check_absent_gone(edits, request):
    """The last word before any write: no line the boot loader will use keeps an argument asked absent.

    Each planner already refuses what it cannot edit; this holds whatever a planner missed.
    """
    for edit in edits:
        line = edit.boot_line or ''
        remaining = remaining_absent(line, request)
        if remaining:
            raise PlanRefused('%s: the kernel line would still have %s, asked absent: "%s"; nothing was written'
                              % (edit.path, ' '.join(remaining), line), edit.path)


def measure_kernel_lines(edits, kernels, running):
    """The whole line each boot loader assembles for each kernel; refuses one longer than that kernel takes."""
    measured = []
    for edit in edits:
        for kernel in kernels:
            if edit.bootloader == 'grub':
                line = grub_boot_line(kernel.version, edit.evaluated['GRUB_CMDLINE_LINUX'],
                                      edit.evaluated['GRUB_CMDLINE_LINUX_DEFAULT'], running)
            else:
                line = systemd_boot_line(kernel.version, edit.after)
            try:
                length = check_length(line, kernel.cmdline_size, kernel.image, edit.path)
            except CmdlineTooLong as exc:
                raise PlanRefused(str(exc), edit.path)
            measured.append(KernelLine(kernel.image, edit.bootloader, length, kernel.cmdline_size))
    return measured


def check_vfio_ids(edits, request, vfio_ids, running, proc_cmdline):
    """vfio-pci.ids= on the kernel line competes with the modprobe ids= (``vfio_ids``) this collection writes."""
    wanted = sorted({pci_id.lower() for pci_id in vfio_ids})
    places = [(edit.path, edit.boot_line) for edit in edits]
    if not any(same_name(arg.split('=', 1)[0], 'vfio_pci.ids') for arg in request.absent):
        places.append((proc_cmdline + ' (the running kernel)', running))
    for where, line in places:
        ids = cmdline_vfio_ids(line)
        if ids is not None and sorted(set(ids)) != wanted:
            raise PlanRefused(
                '%s: the kernel command line has vfio-pci.ids=%s, which competes with the vfio-pci ids=%s this '
                'run writes to modprobe.d (the last ids= wins): remove it (absent: [vfio-pci.ids]) or list '
                'exactly those IDs' % (where, ','.join(ids), ','.join(wanted) or '(none)'))


def hugepage_args(request):
    """The hugepage arguments the request sets; the memory guard judges only a request with some."""
    return [arg for arg in request.present + request.group if any(same_name(arg, name) for name in HUGEPAGE_ARGS)]


def numa_nodes(text, path):
    """The online NUMA nodes in ``text`` (a cpulist read from ``path``), or None when the file is missing."""
    if text is None:
        return None
    try:
        return parse_cpulist(text.strip(), path)
    except TuningError as exc:
        raise PlanRefused('%s, read for the hugepage memory guard: %s' % (path, exc))


def mem_total_kb(meminfo, path, asked):
    """``MemTotal`` of ``meminfo`` (read from ``path``), without which the hugepage arguments ``asked`` are refused."""
    mem_total = parse_meminfo(meminfo).get('MemTotal')
    if mem_total is None:
        raise PlanRefused('%s has no MemTotal, so the hugepage memory guard cannot judge %s' % (path, ' '.join(asked)))
    return mem_total


def check_memory(edits, total_kb, nodes, reserve_mib):
    """Refuse a line whose hugepages leave the host less than ``reserve_mib`` MiB of ``total_kb``.

    ``reserve_mib`` None keeps the default share (``memory_guard``).
    """
    for edit in edits:
        line = edit.boot_line or ''
        try:
            refusal = memory_guard(hugepage_reservations(kernel_tokens(line), nodes), total_kb, reserve_mib)
        except TuningError as exc:
            refusal = 'the resulting kernel line "%s" holds a hugepage argument the kernel cannot read: %s' % (line, exc)
        if refusal:
            raise PlanRefused('%s: %s' % (edit.path, refusal), edit.path)
