"""kernel_cmdline's planning: each step over text, then plan_cmdline over a fake host (the module's end-to-end
tests in tests/unit/plugins/modules run it over real files and the real /bin/sh)."""

from __future__ import annotations

import re

import pytest

from ansible_collections.vfio.passthrough.plugins.module_utils.boot._cmdline import validate_request
from ansible_collections.vfio.passthrough.plugins.module_utils.boot._cmdline_limit import HEADER_BYTES
from ansible_collections.vfio.passthrough.plugins.module_utils.boot._cmdline_plan import (
    CmdlineOptions, FileEdit, KernelImage, KernelLine, PlanRefused, check_absent_gone, check_memory, check_vfio_ids,
    hugepage_args, kernel_images, measure_kernel_lines, mem_total_kb, numa_nodes, plan_cmdline, plan_grub,
    plan_systemd_boot,
)
from ansible_collections.vfio.passthrough.plugins.module_utils.files._files import FileError

CMDLINE = '/etc/kernel/cmdline'
GRUB = '/etc/default/grub'
PROC = '/proc/cmdline'
INTEL = validate_request(['intel_iommu=on', 'iommu=pt'], ['intel_iommu=off'])
HUGE = validate_request([], [], group=['default_hugepagesz=1G', 'hugepagesz=1G', 'hugepages=16'])
MEMINFO_64G = 'MemTotal:       67108864 kB\nMemFree:        60000000 kB\n'


def header(cmdline_size):
    """The first bytes of a bzImage with boot protocol 2.15 and this ``cmdline_size``."""
    data = bytearray(HEADER_BYTES)
    data[0x202:0x206] = b'HdrS'
    data[0x206:0x208] = (0x020F).to_bytes(2, 'little')
    data[0x238:0x23C] = cmdline_size.to_bytes(4, 'little')
    return bytes(data)


def systemd_edit(after, path=CMDLINE):
    return FileEdit('systemd-boot', path, None, after + '\n', None, after)


def grub_edit(linux, default, path=GRUB):
    return FileEdit('grub', path, '', '', None, default, ' '.join(v for v in (linux, default) if v),
                    {'GRUB_CMDLINE_LINUX': linux, 'GRUB_CMDLINE_LINUX_DEFAULT': default})


def refusal(call):
    with pytest.raises(PlanRefused) as caught:
        call()
    return str(caught.value), caught.value.path


# -- plan_systemd_boot ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize('old, running, new, before, after, warning', [
    pytest.param('root=ZFS=rpool/ROOT/pve-1 quiet\n', None,
                 'root=ZFS=rpool/ROOT/pve-1 quiet intel_iommu=on iommu=pt\n', 'root=ZFS=rpool/ROOT/pve-1 quiet',
                 'root=ZFS=rpool/ROOT/pve-1 quiet intel_iommu=on iommu=pt', None, id='appended, newline kept'),
    pytest.param('root=ZFS=rpool intel_iommu=off\n', None, 'root=ZFS=rpool intel_iommu=on iommu=pt\n',
                 'root=ZFS=rpool intel_iommu=off', 'root=ZFS=rpool intel_iommu=on iommu=pt', None, id='absent removed'),
    pytest.param(None, 'BOOT_IMAGE=/vmlinuz-6.8 initrd=\\EFI\\x root=ZFS=rpool ro', 'root=ZFS=rpool ro intel_iommu=on '
                 'iommu=pt\n', None, 'root=ZFS=rpool ro intel_iommu=on iommu=pt', None, id='missing: seeded from running'),
    pytest.param('root=ZFS=rpool intel_iommu=on iommu=pt\nquiet\n', None, 'root=ZFS=rpool intel_iommu=on iommu=pt\nquiet\n',
                 'root=ZFS=rpool intel_iommu=on iommu=pt', 'root=ZFS=rpool intel_iommu=on iommu=pt',
                 "/etc/kernel/cmdline line 2 'quiet' is never read", id='no edit due: a bad file is only warned about'),
])
def test_plan_systemd_boot(old, running, new, before, after, warning):
    edit, warned = plan_systemd_boot(CMDLINE, old, running, PROC, INTEL)
    assert edit == FileEdit('systemd-boot', CMDLINE, old, new, before, after)
    assert edit.boot_line == after and edit.returned() == {'before': before, 'after': after}
    if warning is None:
        assert warned is None
    else:
        assert warned.startswith(warning), warned


@pytest.mark.parametrize('old, running, msg, path', [
    pytest.param(None, None, '/etc/kernel/cmdline is missing and /proc/cmdline is unreadable to seed it', None,
                 id='missing and nothing to seed it'),
    pytest.param('root=ZFS=rpool "quiet\n', None, '/etc/kernel/cmdline line 1', CMDLINE, id='unbalanced quote'),
    pytest.param('root=ZFS=rpool quiet -- intel_iommu=off\n', None, None, None, id='after --: edited before it'),
    pytest.param('quiet\n', None, "/etc/kernel/cmdline line 1 'quiet' has no root=", CMDLINE,
                 id='no root= now: refused as it is'),
    pytest.param(None, 'BOOT_IMAGE=/vmlinuz boot=zfs quiet', "after the edit: /etc/kernel/cmdline line 1 'boot=zfs "
                 "quiet intel_iommu=on iommu=pt' has no root=", CMDLINE, id='no root= after the edit'),
])
def test_plan_systemd_boot_refuses(old, running, msg, path):
    if msg is None:  # the control row: accepted
        edit, _warned = plan_systemd_boot(CMDLINE, old, running, PROC, INTEL)
        assert edit.after == 'root=ZFS=rpool quiet intel_iommu=on iommu=pt -- intel_iommu=off'
        return
    text, where = refusal(lambda: plan_systemd_boot(CMDLINE, old, running, PROC, INTEL))
    assert text.startswith(msg), text
    assert where == path


# -- plan_grub over a fake shell -----------------------------------------------------------------------------------

class FakeHost:
    """Files as a dict, a "shell" that reads only NAME="value" lines, kernels as headers; it logs each read."""

    def __init__(self, files=(), headers=(), unreadable=()):
        self.files = dict(files)
        self.headers = list(headers)
        self.unreadable = set(unreadable)
        self.reads = []
        self.warnings = []

    def read(self, path):
        self.reads.append(path)
        return self.files.get(path)

    def dropins(self, grub_file):
        return [(path, text) for path, text in sorted(self.files.items()) if path.startswith(grub_file + '.d/')]

    def evaluate_grub(self, path, candidate=None):
        self.reads.append('sh ' + ('candidate' if candidate is not None else path))
        values = {'GRUB_CMDLINE_LINUX': '', 'GRUB_CMDLINE_LINUX_DEFAULT': ''}
        for name, value in re.findall(r'^(GRUB_CMDLINE_LINUX(?:_DEFAULT)?)="([^"]*)"$',
                                      self.files[path] if candidate is None else candidate, re.M):
            values[name] = value
        files = [(path, values['GRUB_CMDLINE_LINUX'], values['GRUB_CMDLINE_LINUX_DEFAULT'])]
        return {'files': files, 'syntax_error': None, 'stopped_in': None, 'complete': True}, ''

    def kernel_headers(self, boot_dir):
        self.reads.append(boot_dir)
        return self.headers

    def read_text(self, path):
        self.reads.append(path)
        if path in self.unreadable:
            raise FileError(path, 'cannot be read: permission denied')
        return self.files.get(path)

    def warn(self, msg):
        self.warnings.append(msg)


@pytest.mark.parametrize('text, evaluated, effective', [
    ('GRUB_CMDLINE_LINUX=""\nGRUB_CMDLINE_LINUX_DEFAULT="quiet"\n',
     {'GRUB_CMDLINE_LINUX': '', 'GRUB_CMDLINE_LINUX_DEFAULT': 'quiet intel_iommu=on iommu=pt'},
     'quiet intel_iommu=on iommu=pt'),
    ('GRUB_CMDLINE_LINUX="intel_iommu=off"\nGRUB_CMDLINE_LINUX_DEFAULT="quiet"\n',
     {'GRUB_CMDLINE_LINUX': '', 'GRUB_CMDLINE_LINUX_DEFAULT': 'quiet intel_iommu=on iommu=pt'},
     'quiet intel_iommu=on iommu=pt'),
])
def test_plan_grub_returns_what_the_shell_computes(text, evaluated, effective):
    host = FakeHost({GRUB: text})
    edit = plan_grub(GRUB, 'GRUB_CMDLINE_LINUX_DEFAULT', INTEL, host)
    assert (edit.bootloader, edit.path, edit.old) == ('grub', GRUB, text)
    assert edit.evaluated == evaluated and edit.effective == effective == edit.boot_line
    assert set(edit.returned()) == {'before', 'after', 'effective', 'evaluated'}
    assert host.reads == [GRUB, 'sh ' + GRUB, 'sh candidate']


def test_plan_grub_does_not_run_the_shell_twice_when_nothing_changes():
    host = FakeHost({GRUB: 'GRUB_CMDLINE_LINUX_DEFAULT="quiet intel_iommu=on iommu=pt"\n'})
    edit = plan_grub(GRUB, 'GRUB_CMDLINE_LINUX_DEFAULT', INTEL, host)
    assert edit.new == edit.old
    assert host.reads == [GRUB, 'sh ' + GRUB]


@pytest.mark.parametrize('files, msg, path', [
    ({}, '/etc/default/grub does not exist; is GRUB installed?', None),
    ({GRUB: 'GRUB_CMDLINE_LINUX_DEFAULT="quiet"\n', GRUB + '.d/pve.cfg': 'GRUB_CMDLINE_LINUX_DEFAULT="quiet"\n'},
     None, None),  # control: the fake shell ignores the drop-in, and the edit is accepted
    ({GRUB: 'GRUB_CMDLINE_LINUX_DEFAULT="quiet $(cat /x)"\n'}, '/etc/default/grub line 1', GRUB),
])
def test_plan_grub_refuses(files, msg, path):
    host = FakeHost(files)
    if msg is None:
        assert plan_grub(GRUB, 'GRUB_CMDLINE_LINUX_DEFAULT', INTEL, host).effective == 'quiet intel_iommu=on iommu=pt'
        return
    text, where = refusal(lambda: plan_grub(GRUB, 'GRUB_CMDLINE_LINUX_DEFAULT', INTEL, host))
    assert text.startswith(msg), text
    assert where == path


# -- the checks ----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize('edits, msg', [
    ([systemd_edit('root=x intel_iommu=on')], None),
    ([grub_edit('', 'quiet intel_iommu=on')], None),
    ([grub_edit('intel_iommu=off', 'quiet')],
     '/etc/default/grub: the kernel line would still have intel_iommu=off, asked absent: "intel_iommu=off quiet"; '
     'nothing was written'),
    ([systemd_edit('root=x'), systemd_edit('root=x intel_iommu=off', '/other')],
     '/other: the kernel line would still have intel_iommu=off, asked absent: "root=x intel_iommu=off"; '
     'nothing was written'),
])
def test_check_absent_gone(edits, msg):
    if msg is None:
        check_absent_gone(edits, INTEL)
    else:
        assert refusal(lambda: check_absent_gone(edits, INTEL)) == (msg, edits[-1].path)


def test_kernel_images_reads_version_and_limit():
    assert kernel_images([('/boot/vmlinuz-6.8.12-4-pve', header(2047)), ('/boot/vmlinuz-arm', b'MZ')]) == [
        KernelImage('/boot/vmlinuz-6.8.12-4-pve', '6.8.12-4-pve', 2047), KernelImage('/boot/vmlinuz-arm', 'arm', None)]


@pytest.mark.parametrize('edit, running, limit, length', [
    (systemd_edit('root=x quiet'), None, 2047, len('root=x quiet initrd=\\EFI\\proxmox\\6.8\\initrd.img-6.8')),
    (grub_edit('', 'quiet'), 'BOOT_IMAGE=/boot/vmlinuz-6.8 root=/dev/sda1 ro',
     None, len('BOOT_IMAGE=/boot/vmlinuz-6.8 root=/dev/sda1 ro quiet')),
    (systemd_edit('root=x quiet'), None, 20, None),
])
def test_measure_kernel_lines(edit, running, limit, length):
    kernels = [KernelImage('/boot/vmlinuz-6.8', '6.8', limit)]
    if length is None:
        text, path = refusal(lambda: measure_kernel_lines([edit], kernels, running))
        assert text.startswith('%s: the kernel command line would be 51 bytes, but /boot/vmlinuz-6.8 accepts 20 '
                               % edit.path), text
        assert path == edit.path
    else:
        assert measure_kernel_lines([edit], kernels, running) == [
            KernelLine('/boot/vmlinuz-6.8', edit.bootloader, length, limit)]


@pytest.mark.parametrize('line, running, request_, where', [
    ('root=x vfio-pci.ids=10de:1b80', None, INTEL, None),
    ('root=x vfio-pci.ids=10de:1b80,10de:10f0', None, INTEL, CMDLINE),
    ('root=x', 'root=x vfio-pci.ids=8086:10d3', INTEL, '/proc/cmdline (the running kernel)'),
    ('root=x', 'root=x vfio-pci.ids=8086:10d3', validate_request([], ['vfio-pci.ids']), None),
])
def test_check_vfio_ids(line, running, request_, where):
    def check():
        check_vfio_ids([systemd_edit(line)], request_, ['10DE:1B80'], running, PROC)
    if where is None:
        check()
    else:
        text, path = refusal(check)
        assert text.startswith('%s: the kernel command line has vfio-pci.ids=' % where), text
        assert text.endswith('which competes with the vfio-pci ids=10de:1b80 this run writes to modprobe.d (the last '
                             'ids= wins): remove it (absent: [vfio-pci.ids]) or list exactly those IDs'), text
        assert path is None


@pytest.mark.parametrize('request_, asked', [
    (INTEL, []),
    (HUGE, ['default_hugepagesz=1G', 'hugepagesz=1G', 'hugepages=16']),
    (validate_request(['hugepages=8', 'quiet'], []), ['hugepages=8']),
])
def test_hugepage_args(request_, asked):
    assert hugepage_args(request_) == asked


@pytest.mark.parametrize('text, nodes', [(None, None), ('0\n', [0]), ('0-1\n', [0, 1]), ('0,2-3', [0, 2, 3])])
def test_numa_nodes(text, nodes):
    assert numa_nodes(text, '/sys/devices/system/node/online') == nodes


def test_numa_nodes_refuses_what_is_no_cpulist():
    text, path = refusal(lambda: numa_nodes('zero', '/online'))
    assert text.startswith('/online, read for the hugepage memory guard: '), text
    assert path is None


@pytest.mark.parametrize('meminfo, total', [(MEMINFO_64G, 67108864), ('MemTotal: 1024 kB', 1024), (None, None),
                                            ('MemFree: 5 kB\n', None)])
def test_mem_total_kb(meminfo, total):
    if total is None:
        assert refusal(lambda: mem_total_kb(meminfo, '/proc/meminfo', ['hugepages=16'])) == (
            '/proc/meminfo has no MemTotal, so the hugepage memory guard cannot judge hugepages=16', None)
    else:
        assert mem_total_kb(meminfo, '/proc/meminfo', ['hugepages=16']) == total


@pytest.mark.parametrize('line, nodes, reserve, refused', [
    ('root=x hugepagesz=1G hugepages=16', None, None, None),             # 16 of 64 GiB
    ('root=x hugepagesz=1G hugepages=60', None, None, 'leaving the host 4096 MiB'),  # under a quarter
    ('root=x hugepagesz=1G hugepages=60', None, 4096, None),             # the reserve asked is met
    ('root=x hugepagesz=1G hugepages=0:8,1:8', [0, 1], None, None),
    ('root=x hugepagesz=1G hugepages=0:8,2:8', [0, 1], None, 'node'),    # a node that is not online
    ('root=x hugepagesz=1G hugepages=lots', None, None, 'the kernel cannot read'),
])
def test_check_memory(line, nodes, reserve, refused):
    def check():
        check_memory([systemd_edit(line)], 67108864, nodes, reserve)
    if refused is None:
        check()
    else:
        text, path = refusal(check)
        assert text.startswith(CMDLINE + ': ') and refused in text, text
        assert path == CMDLINE


# -- plan_cmdline: the steps in order, each read only when due ----------------------------------------------------

def options(bootloaders=('systemd-boot',), **extra):
    params = dict(grub_file=GRUB, grub_variable='GRUB_CMDLINE_LINUX_DEFAULT', cmdline_file=CMDLINE,
                  proc_cmdline=PROC, boot_dir='/boot', vfio_ids=[], meminfo='/proc/meminfo',
                  numa_nodes='/online', hugepages_host_reserve_mib=None, grub_cfg='unused', apply=True)
    params.update(extra)
    return CmdlineOptions.from_params(params, list(bootloaders))


def test_options_take_the_module_params_by_name():
    made = options(['grub', 'systemd-boot'], boot_dir='/b')
    assert made.bootloaders == ['grub', 'systemd-boot'] and made.boot_dir == '/b' and made.cmdline_file == CMDLINE


def test_plan_cmdline_edits_every_boot_loader_and_measures_every_kernel():
    host = FakeHost({GRUB: 'GRUB_CMDLINE_LINUX_DEFAULT="quiet"\n', CMDLINE: 'root=ZFS=rpool\n'},
                    headers=[('/boot/vmlinuz-6.8', header(2047)), ('/boot/vmlinuz-6.5', header(2047))])
    plan = plan_cmdline(options(['grub', 'systemd-boot']), INTEL, 'root=ZFS=rpool', host)
    assert [(edit.bootloader, edit.boot_line) for edit in plan.edits] == [
        ('grub', 'quiet intel_iommu=on iommu=pt'), ('systemd-boot', 'root=ZFS=rpool intel_iommu=on iommu=pt')]
    assert [(line.bootloader, line.image) for line in plan.kernel_lines] == [
        ('grub', '/boot/vmlinuz-6.8'), ('grub', '/boot/vmlinuz-6.5'),
        ('systemd-boot', '/boot/vmlinuz-6.8'), ('systemd-boot', '/boot/vmlinuz-6.5')]
    assert '/proc/meminfo' not in host.reads and host.warnings == []  # no hugepages asked: no memory guard


def test_plan_cmdline_warns_through_the_host_and_still_plans():
    host = FakeHost({CMDLINE: 'root=x intel_iommu=on iommu=pt\nquiet\n'})
    plan = plan_cmdline(options(), INTEL, None, host)
    assert plan.edits[0].new == plan.edits[0].old
    assert len(host.warnings) == 1 and "line 2 'quiet' is never read" in host.warnings[0]


@pytest.mark.parametrize('files, unreadable, extra, msg', [
    # A too-long line is refused before the memory guard reads anything.
    ({CMDLINE: 'root=x ' + 'a' * 3000 + '\n'}, {'/proc/meminfo'}, {}, '/etc/kernel/cmdline: the kernel command line'),
    ({CMDLINE: 'root=x\n'}, {'/proc/meminfo'}, {},
     'cannot read /proc/meminfo for the hugepage memory guard: /proc/meminfo: cannot be read: permission denied'),
    # MemTotal is judged before the NUMA nodes are read.
    ({CMDLINE: 'root=x\n', '/proc/meminfo': 'MemFree: 1 kB\n'}, {'/online'}, {},
     '/proc/meminfo has no MemTotal, so the hugepage memory guard cannot judge'),
    ({CMDLINE: 'root=x\n', '/proc/meminfo': MEMINFO_64G}, {'/online'}, {},
     'cannot read /online for the hugepage memory guard: /online: cannot be read: permission denied'),
    ({CMDLINE: 'root=x vfio-pci.ids=1:2\n', '/proc/meminfo': 'MemFree: 1 kB\n'}, (), {'vfio_ids': ['8086:10d3']},
     '/etc/kernel/cmdline: the kernel command line has vfio-pci.ids=1:2'),
    ({CMDLINE: 'root=x\n', '/proc/meminfo': 'MemTotal: 8388608 kB\n'}, (), {},
     '/etc/kernel/cmdline: the hugepages'),
])
def test_plan_cmdline_refuses_in_order(files, unreadable, extra, msg):
    host = FakeHost(files, headers=[('/boot/vmlinuz-6.8', header(2047))], unreadable=unreadable)
    text, _path = refusal(lambda: plan_cmdline(options(**extra), HUGE, None, host))
    assert text.startswith(msg), text
