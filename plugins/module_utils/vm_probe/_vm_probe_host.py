# -*- coding: utf-8 -*-
# Copyright: contributors to vfio.passthrough
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""vm_probe's reads and its one start: the host's files, the initramfs, QEMU in the background.

Everything that touches the host is here, so _vm_probe stays pure. Reads go
through a SysfsTree below a root (a fake tree in tests); the only writes are
below the temporary directory the module creates and removes.
"""

from __future__ import annotations

import errno
import fcntl
import lzma
import os
import shutil
import subprocess
import time

from ansible_collections.vfio.passthrough.plugins.module_utils.host_safety._module_deps import normalise_module
from ansible_collections.vfio.passthrough.plugins.module_utils.boot._newc_cpio import (
    CHARDEV, DIRECTORY, FILE, SYMLINK, newc_archive,
)
from ansible_collections.vfio.passthrough.plugins.module_utils.pci._pci import C_LOCALE
from ansible_collections.vfio.passthrough.plugins.module_utils.pci._pci_devices import modules_for_modalias, parse_pci_aliases
from ansible_collections.vfio.passthrough.plugins.module_utils.vm_probe._vm_probe import (
    elf_interpreter, firmware_names, firmware_plan, kernel_release, parse_show_depends,
)
from ansible_collections.vfio.passthrough.plugins.module_utils.vm_probe._vm_probe_guest import (
    DHCP_SCRIPT, MODULE_DIR, dhcp_script, init_script,
)

__all__ = [
    'kvm_error', 'read_fds', 'find_qemu',
    'read_kernel', 'find_busybox', 'guest_modules',
    'decompress_module', 'write_initramfs', 'KernelLog', 'run_guest',
]

# <linux/kvm.h>: _IO(KVMIO, 0x00) and _IO(KVMIO, 0x01); the API version has been 12 since 2.6.22.
_KVM_GET_API_VERSION, _KVM_CREATE_VM, _KVM_API_VERSION = 0xAE00, 0xAE01, 12
_POLL_SECONDS = 0.25


def kvm_error(path='/dev/kvm'):
    """None when KVM works (the device opens, speaks API 12 and makes a VM), else why not."""
    try:
        fd = os.open(path, os.O_RDWR | getattr(os, 'O_CLOEXEC', 0))
    except OSError as exc:
        return 'cannot open %s: %s' % (path, exc.strerror)
    try:
        version = fcntl.ioctl(fd, _KVM_GET_API_VERSION, 0)
        if version != _KVM_API_VERSION:
            return '%s speaks KVM API %s, not %d' % (path, version, _KVM_API_VERSION)
        os.close(fcntl.ioctl(fd, _KVM_CREATE_VM, 0))
    except OSError as exc:
        return '%s does not make a VM: %s' % (path, exc.strerror)
    finally:
        os.close(fd)
    return None


def read_fds(pid):
    """{fd: link target} of a live process (empty once it is gone)."""
    base = '/proc/%d/fd' % pid
    found = {}
    try:
        names = os.listdir(base)
    except OSError:
        return found
    for name in names:
        try:
            found[name] = os.readlink('%s/%s' % (base, name))
        except OSError:
            continue
    return found


def find_qemu(module, tree, asked):
    """The QEMU binary: ``asked`` when executable, else /usr/bin/kvm, else qemu-system-x86_64 on the PATH; None: none."""
    if asked:
        return asked if os.access(asked, os.X_OK) else None
    kvm = tree.path('usr/bin/kvm')
    return kvm if os.access(kvm, os.X_OK) else module.get_bin_path('qemu-system-x86_64')


def read_kernel(tree, asked):
    """``(path, release, refusal)`` of the guest kernel: ``asked``, else /boot/vmlinuz-<running release>."""
    path = asked or tree.path('boot/vmlinuz-%s' % os.uname().release)
    try:
        with open(path, 'rb') as handle:
            head = handle.read(65536)
    except OSError as exc:
        return path, None, 'the guest kernel %s cannot be read: %s' % (path, exc.strerror)
    release = kernel_release(head)
    if release is None:
        return path, None, '%s is no bzImage kernel (no HdrS header with a version)' % path
    return path, release, None


def find_busybox(module):
    """``(path, refusal)``: busybox must be static, the guest has no libraries."""
    path = module.get_bin_path('busybox')
    if not path:
        return None, 'busybox was not found: install busybox-static'
    try:
        with open(path, 'rb') as handle:
            interpreter = elf_interpreter(handle.read())
    except (OSError, ValueError) as exc:
        return None, '%s cannot be used as the guest\'s userland: %s' % (path, exc)
    if interpreter:
        return None, ('%s is linked dynamically (it needs %s and its libraries, which the guest does not have): '
                      'install busybox-static' % (path, interpreter))
    return path, None


def _firmware(tree, names):
    """{name: host path} of the firmware files present (plain, .zst or .xz; updates/ first, as the kernel looks)."""
    present = {}
    for name in names:
        for base in ('lib/firmware/updates', 'lib/firmware'):
            for suffix in ('', '.zst', '.xz'):
                path = tree.path('%s/%s%s' % (base, name, suffix))
                if os.path.isfile(path) and name not in present:
                    present[name] = path
    return present


def guest_modules(module, tree, release, addresses, devices):
    """``(modules [{name, path}] in load order, firmware {name: path}, refusals, notes)`` for the passed devices:
    each one's modalias against the kernel's modules.alias, then ``modprobe --show-depends``."""
    aliases = parse_pci_aliases(tree.read('lib/modules/%s/modules.alias' % release))
    refusals, notes, loaded, firmware = [], [], [], {}
    for address in addresses:
        modalias = tree.read('%s/modalias' % devices[address]['path'], resolved=True)
        wanted = modules_for_modalias(modalias, aliases)
        if not wanted:
            notes.append('%s: no module of %s claims it; the guest lists it with driver none' % (address, release))
        for name in wanted:
            # The guest reads none of the host's modprobe.d: -C /dev/null leaves out its install rules (the
            # role's by-address binding is one, and --show-depends then prints only that command), softdeps
            # and blacklists, so what is listed is modules.dep's closure alone.
            rc, out, err = module.run_command(['modprobe', '-C', '/dev/null', '--show-depends', '-S', release, name],
                                              environ_update=C_LOCALE)
            if rc != 0:
                refusals.append('the driver module %s of %s is missing for %s: %s'
                                % (name, address, release, (err or out).strip()))
                continue
            entries = parse_show_depends(out)
            if all(entry['name'] != normalise_module(name) for entry in entries):
                refusals.append('modprobe --show-depends names no file for the driver module %s of %s (%s): %s'
                                % (name, address, release, out.strip() or 'no output'))
                continue
            for entry in entries:
                if any(e['name'] == entry['name'] for e in loaded):
                    continue
                if entry['path'] is None:
                    notes.append('%s is built into %s' % (entry['name'], release))
                elif not os.path.isfile(entry['path']):
                    refusals.append('the module file %s is missing' % entry['path'])
                    continue
                elif entry['path'].endswith('.zst') and not module.get_bin_path('zstd'):
                    refusals.append('%s is zstd-compressed and the zstd tool is missing: install zstd' % entry['path'])
                    continue
                loaded.append(entry)
                if entry['path'] is None:
                    continue
                rc, out, err = module.run_command(['modinfo', '-k', release, '-F', 'firmware', entry['name']],
                                                  environ_update=C_LOCALE)
                listed = firmware_names(out) if rc == 0 else []
                files, refusal, more = firmware_plan(entry['name'], listed, _firmware(tree, listed))
                if refusal:
                    refusals.append(refusal)
                notes.extend(more)
                firmware.update(files)
    return loaded, firmware, refusals, notes


def decompress_module(module, path, dest):
    """Write the module at ``path`` uncompressed to ``dest`` (busybox insmod takes plain ELF only).

    ``.ko.xz`` by Python's lzma; ``.ko.zst`` by the ``zstd`` tool, which the caller checked for.
    """
    if path.endswith('.zst'):
        rc, _out, err = module.run_command([module.get_bin_path('zstd', required=True), '-q', '-d', '-f',
                                            '-o', dest, path], environ_update=C_LOCALE)
        if rc != 0:
            raise OSError('zstd could not decompress %s: %s' % (path, err.strip()))
        return
    opener = lzma.open if path.endswith('.xz') else open
    with opener(path, 'rb') as source, open(dest, 'wb') as target:
        shutil.copyfileobj(source, target)


def write_initramfs(module, directory, busybox, modules, firmware, dhcp):
    """Build ``<directory>/initramfs.cpio``: busybox, /init, the modules (``[{name, path}]`` in load
    order, built-in ones skipped), the firmware files ({relative name: host path}). Returns its path."""
    entries = [(d, DIRECTORY, 0o755, b'') for d in ('bin', 'dev', 'lib', MODULE_DIR, 'lib/firmware')]
    entries.append(('dev/console', CHARDEV, 0o600, (5, 1)))
    with open(busybox, 'rb') as handle:
        entries.append(('bin/busybox', FILE, 0o755, handle.read()))
    entries.append(('bin/sh', SYMLINK, 0o777, 'busybox'))
    entries.append((DHCP_SCRIPT, FILE, 0o755, dhcp_script()))
    loaded = []
    for entry in modules:
        if entry['path'] is None:
            continue
        plain = os.path.join(directory, entry['name'] + '.ko')
        decompress_module(module, entry['path'], plain)
        with open(plain, 'rb') as handle:
            entries.append(('%s/%s.ko' % (MODULE_DIR, entry['name']), FILE, 0o644, handle.read()))
        os.unlink(plain)
        loaded.append(entry['name'])
    made = {'lib/firmware'}
    for name in sorted(firmware):
        # A compressed file keeps its suffix: the kernel's loader looks for name.zst / name.xz itself.
        stored = name + next((s for s in ('.zst', '.xz') if firmware[name].endswith(s)), '')
        parts = stored.split('/')
        for depth in range(1, len(parts)):
            sub = 'lib/firmware/' + '/'.join(parts[:depth])
            if sub not in made:
                made.add(sub)
                entries.append((sub, DIRECTORY, 0o755, b''))
        with open(firmware[name], 'rb') as handle:
            entries.append(('lib/firmware/' + stored, FILE, 0o644, handle.read()))
    entries.append(('init', FILE, 0o755, init_script(loaded, dhcp)))
    path = os.path.join(directory, 'initramfs.cpio')
    with open(path, 'wb') as handle:
        handle.write(newc_archive(entries))
    return path


class KernelLog:
    """The host kernel's messages from now on: /dev/kmsg from its end, or ``dmesg`` before and after."""

    def __init__(self, module, path='/dev/kmsg'):
        self.module = module
        self.fd = None
        self.before = None
        try:
            self.fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, 'O_CLOEXEC', 0))
            os.lseek(self.fd, 0, os.SEEK_END)
        except OSError:
            if self.fd is not None:
                os.close(self.fd)
            self.fd = None
            self.before = self._dmesg()

    def _dmesg(self):
        rc, out, _err = self.module.run_command(['dmesg'], environ_update=C_LOCALE)
        return out.splitlines() if rc == 0 else []

    def read(self):
        """kmsg record text since the start (``pri,seq,ts,flags;message`` lines)."""
        if self.fd is None:
            seen = set(self.before or [])
            return '\n'.join('6,0,0,-;%s' % line for line in self._dmesg() if line not in seen)
        records = []
        while True:
            try:
                records.append(os.read(self.fd, 8192).decode('utf-8', 'replace'))
            except OSError as exc:
                if exc.errno == errno.EPIPE:  # records overwritten while we read: go on with the next
                    continue
                break
        os.close(self.fd)
        self.fd = None
        return ''.join(records)


def run_guest(argv, directory, timeout, group, cdevs=()):
    """Start QEMU in the background, find the VFIO file it holds while it runs, wait for its poweroff.

    Returns ``{pid, returncode, seconds, timed_out, fds: {fd: target} of its /dev/vfio files,
    stderr}``; QEMU is killed after ``timeout`` seconds.
    """
    wanted = {'/dev/vfio/%s' % group} | {'/dev/vfio/devices/%s' % c for c in cdevs}
    env = dict(os.environ, LC_ALL='C')
    out_path = os.path.join(directory, 'qemu.log')
    start = time.monotonic()
    fds = {}
    timed_out = False
    with open(out_path, 'wb') as out:
        # Not run_command: it returns only when the command ends, and QEMU's open /dev/vfio file can only be
        # read from /proc/<pid>/fd while the guest runs. Still an argument list, LC_ALL=C, no shell.
        process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out,  # pylint: disable=ansible-bad-function
                                   stderr=subprocess.STDOUT, env=env, close_fds=True)
        try:
            while process.poll() is None:
                if not fds:
                    fds = {fd: t for fd, t in read_fds(process.pid).items() if t in wanted}
                if time.monotonic() - start > timeout:
                    timed_out = True
                    process.kill()
                    break
                time.sleep(_POLL_SECONDS)
            process.wait()
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
    with open(out_path, 'rb') as handle:
        stderr = handle.read().decode('utf-8', 'replace')
    return {'pid': process.pid, 'returncode': process.returncode, 'seconds': round(time.monotonic() - start, 1),
            'timed_out': timed_out, 'fds': fds, 'stderr': stderr}
