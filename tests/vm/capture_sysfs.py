"""Snapshot the parts of a live guest's sysfs/procfs that iommu_facts reads, as a tar on stdout.

Runs INSIDE a booted guest (piped over SSH, standard library only). GNU tar cannot
archive sysfs: every attribute claims 4096 bytes and tar pads or truncates. This
reads each attribute file once, stores what it returned, and keeps symlinks as
the kernel's relative links, so a unit test can extract the tar under tmp_path
and point iommu_facts at it as ``root``.
"""

import io
import os
import sys
import tarfile
import time

# Attribute files of a PCI device that the collection reads.
PCI_ATTRS = ('vendor', 'device', 'modalias', 'subsystem_vendor', 'subsystem_device', 'class', 'boot_vga',
             'reset_method', 'sriov_totalvfs', 'sriov_numvfs', 'driver_override', 'revision', 'resource')
# proc/iomem as the capture's user sees it: root gets the addresses, others zeros (iommu_facts tells them apart).
PROC_FILES = ('proc/cmdline', 'proc/interrupts', 'proc/net/route', 'proc/net/ipv6_route', 'proc/mounts',
              'proc/cpuinfo', 'proc/sys/kernel/osrelease', 'proc/iomem')


class Snapshot:
    def __init__(self, out):
        self.tar = tarfile.open(fileobj=out, mode='w|gz')
        self.seen = set()
        self.now = time.time()

    def _dirs(self, rel):
        parts = rel.split('/')[:-1]
        for i in range(1, len(parts) + 1):
            path = '/'.join(parts[:i])
            if path and path not in self.seen:
                self.seen.add(path)
                info = tarfile.TarInfo(path)
                info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, self.now
                self.tar.addfile(info)

    def file(self, rel, data=None):
        if rel in self.seen:
            return
        if data is None:
            try:
                with open('/' + rel, 'rb') as handle:
                    data = handle.read()
            except OSError:
                return
        self._dirs(rel)
        self.seen.add(rel)
        info = tarfile.TarInfo(rel)
        info.size, info.mode, info.mtime = len(data), 0o644, self.now
        self.tar.addfile(info, io.BytesIO(data))

    def link(self, rel):
        if rel in self.seen or not os.path.islink('/' + rel):
            return
        self._dirs(rel)
        self.seen.add(rel)
        info = tarfile.TarInfo(rel)
        info.type, info.linkname, info.mtime = tarfile.SYMTYPE, os.readlink('/' + rel), self.now
        self.tar.addfile(info)

    def directory(self, rel):
        if os.path.isdir('/' + rel):
            self._dirs(rel + '/x')

    def links_in(self, rel):
        try:
            names = sorted(os.listdir('/' + rel))
        except OSError:
            return []
        for name in names:
            self.link(rel + '/' + name)
        return names


def _pci_device_dir(snap, rel):
    for attr in PCI_ATTRS:
        snap.file(rel + '/' + attr)
    for name in ('driver', 'iommu_group', 'physfn'):
        snap.link(rel + '/' + name)
    for sub in sorted(os.listdir('/' + rel)):
        # virtio children (virtio0) hold the NIC's net/ and the disk's block/.
        if sub.startswith('virtio') and os.path.isdir('/' + rel + '/' + sub):
            snap.link(rel + '/' + sub + '/driver')
            for kind in ('net', 'block'):
                if os.path.isdir('/%s/%s/%s' % (rel, sub, kind)):
                    for name in os.listdir('/%s/%s/%s' % (rel, sub, kind)):
                        snap.directory('%s/%s/%s/%s' % (rel, sub, kind, name))
        elif sub in ('net', 'block', 'nvme') or sub.startswith(('ata', 'host')):
            snap.directory(rel + '/' + sub)


def main():
    snap = Snapshot(sys.stdout.buffer)
    for rel in PROC_FILES:
        snap.file(rel)
    for name in snap.links_in('sys/bus/pci/devices'):
        target = os.path.realpath('/sys/bus/pci/devices/' + name).lstrip('/')
        _pci_device_dir(snap, target)
    for name in os.listdir('/sys/bus/pci/drivers'):
        snap.link('sys/bus/pci/drivers/%s/module' % name)
        module = os.path.realpath('/sys/bus/pci/drivers/%s/module' % name).lstrip('/')
        if module.startswith('sys/module/'):
            snap.directory(module)
    snap.directory('sys/kernel/iommu_groups')
    for group in sorted(os.listdir('/sys/kernel/iommu_groups'), key=int):
        base = 'sys/kernel/iommu_groups/' + group
        snap.file(base + '/type')
        snap.directory(base + '/devices')
        snap.links_in(base + '/devices')
    snap.directory('sys/class/iommu')
    snap.links_in('sys/class/iommu')
    for name in snap.links_in('sys/class/net'):
        real = os.path.realpath('/sys/class/net/' + name).lstrip('/')
        snap.directory(real)
        snap.link(real + '/device')
        for entry in os.listdir('/' + real):
            if entry.startswith(('lower_', 'upper_')) or entry in ('brif', 'master'):
                snap.link(real + '/' + entry)
        snap.file(real + '/bonding/slaves')
    for name in snap.links_in('sys/class/block'):
        real = os.path.realpath('/sys/class/block/' + name).lstrip('/')
        snap.directory(real)
        snap.file(real + '/dev')
        snap.file(real + '/dm/name')
        snap.links_in(real + '/slaves')
    # Only the PCI aliases: enough to name the native driver of a device vfio-pci holds.
    kernel = os.uname().release
    try:
        with open('/lib/modules/%s/modules.alias' % kernel, 'rb') as handle:
            pci = b''.join(line for line in handle if line.startswith(b'alias pci:'))
        snap.file('lib/modules/%s/modules.alias' % kernel, pci)
    except OSError:
        pass
    # Each installed kernel's VFIO build options (CONFIG_VFIO_DEVICE_CDEV): only those lines.
    for name in sorted(os.listdir('/boot')):
        if name.startswith('config-'):
            try:
                with open('/boot/' + name, 'rb') as handle:
                    vfio = b''.join(line for line in handle if b'CONFIG_VFIO' in line)
                snap.file('boot/' + name, vfio)
            except OSError:
                pass
    for name in os.listdir('/sys/firmware/acpi/tables'):
        if os.path.isfile('/sys/firmware/acpi/tables/' + name):
            snap.file('sys/firmware/acpi/tables/' + name, b'')
    snap.tar.close()


if __name__ == '__main__':
    main()
