"""Build fake ``/sys`` and ``/proc`` trees laid out the way the Linux kernel lays them out.

Real sysfs is a web of RELATIVE symlinks (``sys/bus/pci/devices/<addr>`` ->
``../../../devices/pci0000:00/.../<addr>``); a reader that only works on flat
fakes breaks on a real host. This builder therefore writes devices where the
kernel puts them (behind their parent bridges) and links them the way the kernel
links them, computing every relative target from the two locations.

Usage::

    host = FakeHost(tmp_path)
    host.add_device('0000:01:00.0', '10de', '1b80', '030000', driver='nouveau',
                    group=1, parent_bridge='0000:00:01.0', boot_vga=True)
    host.linux_bridge('vmbr0', ['eno1'])
    host.default_route('vmbr0')

``intel_gpu_host``, ``amd_twin_nic_host``, ``igb_mgmt_host``, ``iommu_off_host`` and
``generated_host`` build complete canned machines. Import with
``from sysfs_builder import ...`` after putting ``tests/unit`` on ``sys.path``.

Molecule scenarios build the same machines on the controller (the fake root the
role reads through ``pcie_passthrough_root``)::

    python3 tests/unit/sysfs_builder.py intel_gpu_host DIR
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

__all__ = [
    'FakeHost', 'intel_gpu_host', 'amd_twin_nic_host', 'igb_mgmt_host', 'iommu_off_host', 'generated_host',
    'CANNED_HOSTS',
]

IOMEM_FIXTURES = Path(__file__).resolve().parents[1] / 'fixtures' / 'iomem'

# The BARs of the GTX 1070 (10de:1b80) of bootfb-intel-nvidia.txt, as its sysfs resource file shows them:
# BAR 0 registers, BAR 1 and 3 prefetchable 64-bit above 4G, BAR 5 I/O ports, the ROM.
NVIDIA_BARS = [(0xd0000000, 0xd0ffffff, 0x40200), (0x6000000000, 0x600fffffff, 0x14220c), None,
               (0x6010000000, 0x6011ffffff, 0x14220c), None, (0xe000, 0xe07f, 0x40101), (0xd1200000, 0xd127ffff, 0x46200)]

_ROUTE_HEADER = 'Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n'

_INTERRUPTS_IR = """\
            CPU0       CPU1
   0:         36          0  IR-IO-APIC    2-edge      timer
   8:          0          0  IR-IO-APIC    8-edge      rtc0
   9:          0          0  IR-IO-APIC    9-fasteoi   acpi
 120:          0          0  DMAR-MSI    0-edge      dmar0
 121:     123456          0  IR-PCI-MSI-0000:00:1f.6    0-edge      eno1
NMI:          0          0   Non-maskable interrupts
"""

_INTERRUPTS_PLAIN = """\
            CPU0       CPU1
   0:         36          0   IO-APIC    2-edge      timer
   8:          0          0   IO-APIC    8-edge      rtc0
   9:          0          0   IO-APIC    9-fasteoi   acpi
  24:     123456          0   PCI-MSI 49152-edge      virtio0-input.0
NMI:          0          0   Non-maskable interrupts
"""

_CPUINFO = """\
processor\t: {n}
vendor_id\t: {vendor}
cpu family\t: 6
model name\t: Fake CPU
flags\t\t: fpu vme de pse
"""

# ``lower_``/``upper_`` adjacency links exist for every stacked device
# (bridge, bond, VLAN); bridges add ``brif/``, bonds add ``bonding/slaves``.


class FakeHost:
    """A fake root directory holding ``sys/`` and ``proc/`` for one machine."""

    def __init__(self, root, group_type='DMA-FQ'):
        self.root = Path(root)
        self.group_type = group_type
        self._dirs = {}          # pci address -> directory relative to root
        self._netdirs = {}       # interface -> directory relative to root
        self._ifindex = {}       # interface -> its ifindex, in the order they were added
        self._addresses = []     # (ifname, cidr) for ip_addr_text()
        self._mounts = []
        self._made = set()
        self.mkdir('sys/bus/pci/devices')
        self.mkdir('sys/bus/pci/drivers')
        self.mkdir('sys/class/net')
        self.mkdir('sys/class/block')
        self.mkdir('sys/module')
        self.mkdir('proc/sys/kernel')

    # -- low-level helpers -------------------------------------------------
    def mkdir(self, rel):
        if rel not in self._made:
            os.makedirs(self.root / rel, exist_ok=True)
            self._made.add(rel)

    def write(self, rel, text):
        # names are bytes to the kernel: a name decoded with surrogateescape is written back as its bytes
        self.mkdir(os.path.dirname(rel))
        with open(self.root / rel, 'w', encoding='utf-8', errors='surrogateescape') as handle:
            handle.write(text)

    def _read(self, rel):
        path = self.root / rel
        return path.read_text(encoding='utf-8', errors='surrogateescape') if path.exists() else None

    def link(self, rel, target_rel):
        """Create ``rel`` as a relative symlink to ``target_rel`` (both relative to root)."""
        self.mkdir(os.path.dirname(rel))
        target = os.path.relpath(target_rel, os.path.dirname(rel))
        path = self.root / rel
        if path.is_symlink():
            path.unlink()
        os.symlink(target, path)

    def device_dir(self, address):
        return self._dirs[address]

    def vfio_device_file(self, address, name):
        """The VFIO device file ``/dev/vfio/devices/<name>`` of ``address`` (CONFIG_VFIO_DEVICE_CDEV), as sysfs
        shows it: ``<device>/vfio-dev/<name>`` and ``sys/class/vfio-dev/<name>`` linking to it."""
        rel = '%s/vfio-dev/%s' % (self._dirs[address], name)
        self.write(rel + '/dev', '511:%s\n' % name[4:])
        self.link('sys/class/vfio-dev/%s' % name, rel)
        return self

    def resource(self, address, regions):
        """The device's sysfs ``resource`` file: ``regions`` by index (BAR 0-5, 6 the ROM) as (start, end, flags),
        None for an unused one; the kernel prints 13 lines (BARs, ROM, SR-IOV and bridge windows)."""
        lines = []
        for index in range(13):
            start, end, flags = (regions[index] if index < len(regions) and regions[index] else (0, 0, 0))
            lines.append('0x%016x 0x%016x 0x%016x' % (start, end, flags))
        self.write(self._dirs[address] + '/resource', '\n'.join(lines) + '\n')
        return self

    # -- procfs ------------------------------------------------------------
    def open_file(self, pid, fd, target):
        """Process ``pid`` holds ``target`` (an absolute path on the host) open as descriptor ``fd``."""
        self.mkdir('proc/%d/fd' % pid)
        os.symlink(target, self.root / ('proc/%d/fd/%d' % (pid, fd)))
        return self

    def iomem(self, text):
        self.write('proc/iomem', text)
        return self

    def cmdline(self, text):
        self.write('proc/cmdline', text + '\n')
        return self

    def efivar(self, name, value=''):
        """An efivarfs file as the kernel shows it: 4 attribute bytes, then the value (UTF-16LE for strings)."""
        self.mkdir('sys/firmware/efi/efivars')
        data = b'\x06\x00\x00\x00' + (value.encode('utf-16-le') + b'\x00\x00' if value else b'')
        (self.root / 'sys/firmware/efi/efivars' / name).write_bytes(data)
        return self

    def interrupts(self, remapped):
        self.write('proc/interrupts', _INTERRUPTS_IR if remapped else _INTERRUPTS_PLAIN)
        return self

    def cpu_vendor(self, vendor, cpus=2):
        self.write('proc/cpuinfo', '\n'.join(_CPUINFO.format(n=n, vendor=vendor) for n in range(cpus)))
        return self

    def tuning(self, mem_kb=16 * 1024 * 1024, possible='0-3', isolated='', nohz_full='(null)', pools=None,
               flags='fpu vme de pse', default_kb=2048, present=None, online=None, nodes='0'):
        """RAM, hugepage pools ({size_kb: nr}), CPUs, NUMA nodes and CPU flags as the running kernel reports them.

        ``present`` and ``online`` default to ``possible`` (no empty hot-plug slots, nothing offline).
        """
        pools = {2048: 0, 1048576: 0} if pools is None else pools
        total = pools.get(default_kb, 0)
        self.write('proc/meminfo', 'MemTotal:       %d kB\nMemFree:        %d kB\nHugePages_Total:   %d\n'
                   'HugePages_Free:    %d\nHugepagesize:    %d kB\n' % (mem_kb, mem_kb // 2, total, total, default_kb))
        cpus = len(range(*[int(n) + i for i, n in enumerate(possible.split('-'))])) if '-' in possible else 1
        self.write('proc/cpuinfo', '\n'.join(_CPUINFO.replace('fpu vme de pse', flags).format(n=n, vendor='GenuineIntel')
                                             for n in range(cpus)))
        present = possible if present is None else present
        for name, value in (('possible', possible), ('present', present),
                            ('online', present if online is None else online),
                            ('isolated', isolated), ('nohz_full', nohz_full)):
            self.write('sys/devices/system/cpu/' + name, value + '\n')
        if nodes is not None:
            self.write('sys/devices/system/node/online', nodes + '\n')
        for size_kb, nr in pools.items():
            base = 'sys/kernel/mm/hugepages/hugepages-%dkB/' % size_kb
            for name, value in (('nr_hugepages', nr), ('free_hugepages', nr), ('resv_hugepages', 0)):
                self.write(base + name, '%d\n' % value)
        return self

    def osrelease(self, text):
        self.write('proc/sys/kernel/osrelease', text + '\n')
        self._kernel = text
        return self

    def modules_alias(self, *aliases):
        """lib/modules/<kernel>/modules.alias with (pattern, module) lines, as depmod writes them."""
        lines = ['# Aliases extracted from modules themselves.']
        lines += ['alias %s %s' % (pattern, module) for pattern, module in aliases]
        self.write('lib/modules/%s/modules.alias' % self._kernel, '\n'.join(lines) + '\n')
        return self

    def modules_dep(self, deps):
        """lib/modules/<kernel>/modules.dep from {module: [modules it needs]}, with depmod's .ko paths."""
        def path(module):
            return 'kernel/drivers/%s.ko.xz' % module.replace('_', '-')
        lines = ['%s: %s' % (path(module), ' '.join(path(n) for n in needs)) for module, needs in deps.items()]
        self.write('lib/modules/%s/modules.dep' % self._kernel, '\n'.join(lines) + '\n')
        return self

    def module_holders(self, module, *holders):
        """sys/module/<module>/holders/<holder> links: the loaded modules that depend on ``module``."""
        self.mkdir('sys/module/%s/holders' % module)
        for holder in holders:
            self.mkdir('sys/module/%s' % holder)
            self.link('sys/module/%s/holders/%s' % (module, holder), 'sys/module/%s' % holder)
        return self

    def default_route(self, ifname, gateway='0100A8C0'):
        """Append an IPv4 default route via ``ifname`` to proc/net/route."""
        text = self._read('proc/net/route') or _ROUTE_HEADER
        text += '%s\t00000000\t%s\t0003\t0\t0\t0\t00000000\t0\t0\t0\n' % (ifname, gateway)
        text += '%s\t0000A8C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n' % ifname
        self.write('proc/net/route', text)
        return self

    def ipv6_default_route(self, ifname):
        text = self._read('proc/net/ipv6_route') or (
            # the kernel's unreachable default on lo: never a real default route
            '00000000000000000000000000000000 00 00000000000000000000000000000000 00 '
            '00000000000000000000000000000000 ffffffff 00000001 00000000 00200200       lo\n')
        text += ('00000000000000000000000000000000 00 00000000000000000000000000000000 00 '
                 'fe800000000000000000000000000001 00000400 00000001 00000000 00450003 %8s\n' % ifname)
        self.write('proc/net/ipv6_route', text)
        return self

    def mount(self, device, mountpoint, fstype='ext4'):
        self._mounts.append((device, mountpoint, fstype))
        lines = ['sysfs /sys sysfs rw,nosuid,nodev,noexec,relatime 0 0',
                 'proc /proc proc rw,nosuid,nodev,noexec,relatime 0 0']
        lines += ['%s %s %s rw,relatime 0 0' % (d, m.replace(' ', '\\040'), f) for d, m, f in self._mounts]
        self.write('proc/mounts', '\n'.join(lines) + '\n')
        return self

    def address(self, ifname, cidr):
        """Record an address for ip_addr_text(); the kernel keeps no file for it."""
        self._addresses.append((ifname, cidr))
        return self

    def ip_addr_text(self):
        """What ``ip -o addr show`` prints for the recorded addresses."""
        lines = []
        for n, (ifname, cidr) in enumerate(self._addresses, start=2):
            family = 'inet6' if ':' in cidr else 'inet'
            index = self._ifindex.get(ifname.split('@')[0], n)
            lines.append('%d: %s    %s %s scope global %s\\       valid_lft forever preferred_lft forever'
                         % (index, ifname, family, cidr, ifname.split('@')[0]))
        return '\n'.join(lines) + '\n'

    # -- firmware and IOMMU ------------------------------------------------
    def acpi_tables(self, *names):
        self.mkdir('sys/firmware/acpi/tables')
        for name in names:
            self.write('sys/firmware/acpi/tables/%s' % name, name + '\0fake table')
        return self

    def iommu_unit(self, name, under=None):
        """Register an IOMMU in sys/class/iommu: Intel's dmarN are virtual devices,
        AMD's ivhdN hang off the IOMMU's own PCI function (``under``)."""
        target = ('%s/iommu/%s' % (self._dirs[under], name)) if under else 'sys/devices/virtual/iommu/' + name
        self.mkdir(target)
        self.link('sys/class/iommu/%s' % name, target)
        return self

    def set_group_type(self, group, type_):
        self.write('sys/kernel/iommu_groups/%d/type' % group, type_ + '\n')
        return self

    # -- PCI devices -------------------------------------------------------
    def add_device(self, address, vendor, device, class_, driver=None, module=None, group=None,
                   parent_bridge=None, netdev=None, virtio=False, subsystem=None, boot_vga=None,
                   reset_methods=('flr', 'bus'), sriov_totalvfs=None, sriov_numvfs=None,
                   virtio_driver='virtio_net', virtio_block=None, header_type=None, multifunction=False):
        """Add one PCI function.

        Its ``config`` holds the first 64 bytes of config space: IDs, class and
        the header type (``header_type``; default 1 for a PCI bridge, class
        0604xx, 2 for a CardBus bridge, 0607xx, else 0), with bit 7 set for a
        ``multifunction`` device. ``header_type=False`` writes no ``config``, as
        in a partial copy of sysfs.

        ``driver`` is the driver name (``virtio-pci``), ``module`` the module
        providing it (default: the driver name, ``-`` turned into ``_``; pass
        ``module=False`` for a built-in driver such as pcieport). ``netdev``
        names its network interface; with ``virtio=True`` that interface hangs
        off ``<addr>/virtio0`` bound to ``virtio_driver``, as on a real VM.
        """
        if parent_bridge:
            base = self._dirs[parent_bridge]
        else:
            domain, bus = address.split(':')[:2]
            base = 'sys/devices/pci%s:%s' % (domain, bus)
        rel = '%s/%s' % (base, address)
        self._dirs[address] = rel
        self.mkdir(rel)
        sub_vendor, sub_device = subsystem or (vendor, device)
        files = {
            'vendor': '0x%s\n' % vendor, 'device': '0x%s\n' % device,
            'subsystem_vendor': '0x%s\n' % sub_vendor, 'subsystem_device': '0x%s\n' % sub_device,
            'class': '0x%s\n' % class_,
            'modalias': 'pci:v0000%sd0000%ssv0000%ssd0000%sbc%ssc%si%s\n' % (
                vendor.upper(), device.upper(), sub_vendor.upper(), sub_device.upper(),
                class_[0:2].upper(), class_[2:4].upper(), class_[4:6].upper()),
        }
        if boot_vga is not None:
            files['boot_vga'] = '1\n' if boot_vga else '0\n'
        if reset_methods:
            files['reset_method'] = ' '.join(reset_methods) + '\n'
        if sriov_totalvfs is not None:
            files['sriov_totalvfs'] = '%d\n' % sriov_totalvfs
            files['sriov_numvfs'] = '%d\n' % (sriov_numvfs or 0)
            files['sriov_drivers_autoprobe'] = '1\n'
        for name, text in files.items():
            with open(self.root / rel / name, 'w', encoding='ascii') as handle:
                handle.write(text)
        if header_type is not False:
            self.config_space(address, vendor, device, class_, header_type, multifunction)
        self.link('sys/bus/pci/devices/%s' % address, rel)
        if driver:
            self.bind(address, driver, module)
        if group is not None:
            self.join_group(address, group)
        if netdev:
            if virtio:
                self._virtio_child(address, 'virtio0', virtio_driver)
                self.add_netdev(netdev, '%s/virtio0' % rel)
            else:
                self.add_netdev(netdev, rel)
        if virtio_block:
            self._virtio_child(address, 'virtio1', 'virtio_blk')
            self.add_disk(virtio_block[0], '%s/virtio1' % rel, virtio_block[1])
        return self

    def config_space(self, address, vendor, device, class_, header_type=None, multifunction=False):
        """Write ``<device>/config``: little-endian IDs, class code at 0x09, header type at 0x0E."""
        if header_type is None:
            header_type = {'0604': 1, '0607': 2}.get(class_[:4], 0)
        data = bytearray(64)
        data[0:4] = int(vendor, 16).to_bytes(2, 'little') + int(device, 16).to_bytes(2, 'little')
        data[0x09:0x0C] = bytes(reversed(bytes.fromhex(class_)))
        data[0x0E] = (header_type & 0xFF) | (0x80 if multifunction else 0)
        (self.root / self._dirs[address] / 'config').write_bytes(bytes(data))
        return self

    def add_vfs(self, pf, addresses, device='10ca', drivers=(), groups=()):
        """Give SR-IOV physical function ``pf`` the VFs ``addresses`` (index order), as the kernel links them:
        ``<pf>/virtfnN`` -> VF, ``<vf>/physfn`` -> PF, ``sriov_numvfs`` = their count. ``drivers`` and
        ``groups`` go by index (None: no driver, no group)."""
        rel = self._dirs[pf]
        parent = os.path.basename(os.path.dirname(rel))
        vendor = (self.root / rel / 'vendor').read_text().strip()[2:]
        class_ = (self.root / rel / 'class').read_text().strip()[2:]
        for index, address in enumerate(addresses):
            driver = drivers[index] if index < len(drivers) else None
            group = groups[index] if index < len(groups) else None
            self.add_device(address, vendor, device, class_, driver=driver, group=group,
                            parent_bridge=parent if parent in self._dirs else None)
            self.link('%s/virtfn%d' % (rel, index), self._dirs[address])
            self.link('%s/physfn' % self._dirs[address], rel)
        self.write(rel + '/sriov_numvfs', '%d\n' % len(addresses))
        return self

    def add_bridge(self, address, group=None, parent_bridge=None, vendor='8086', device='1901'):
        """A PCIe root/downstream port: class 060400, bound to the built-in pcieport."""
        return self.add_device(address, vendor, device, '060400', driver='pcieport', module=False,
                               group=group, parent_bridge=parent_bridge, reset_methods=None)

    def bind(self, address, driver, module=None):
        rel = self._dirs[address]
        drv = 'sys/bus/pci/drivers/%s' % driver
        self.mkdir(drv)
        self.link('%s/driver' % rel, drv)
        self.link('%s/%s' % (drv, address), rel)
        if module is None:
            module = driver.replace('-', '_')
        if module:
            self.mkdir('sys/module/%s' % module)
            self.link('%s/module' % drv, 'sys/module/%s' % module)
        return self

    def join_group(self, address, group):
        rel = self._dirs[address]
        gdir = 'sys/kernel/iommu_groups/%d' % group
        if gdir not in self._made:
            self.mkdir(gdir + '/devices')
            self._made.add(gdir)
            self.write(gdir + '/type', self.group_type + '\n')
        self.link('%s/devices/%s' % (gdir, address), rel)
        self.link('%s/iommu_group' % rel, gdir)
        return self

    def _virtio_child(self, address, name, driver):
        rel = '%s/%s' % (self._dirs[address], name)
        drv = 'sys/bus/virtio/drivers/%s' % driver
        self.mkdir(rel)
        self.mkdir(drv)
        self.mkdir('sys/module/%s' % driver)
        self.link('%s/module' % drv, 'sys/module/%s' % driver)
        self.link('%s/driver' % rel, drv)
        self.link('%s/%s' % (drv, name), rel)

    # -- network interfaces ------------------------------------------------
    def add_netdev(self, ifname, parent_rel):
        rel = '%s/net/%s' % (parent_rel, ifname)
        self._netdirs[ifname] = rel
        self._ifindex[ifname] = len(self._ifindex) + 1
        self.mkdir(rel)
        self.write(rel + '/operstate', 'up\n')
        self.write(rel + '/ifindex', '%d\n' % self._ifindex[ifname])
        self.link(rel + '/device', parent_rel)
        self.link('sys/class/net/%s' % ifname, rel)
        return self

    def _virtual_netdev(self, ifname):
        return self.add_netdev(ifname, 'sys/devices/virtual')._netdirs[ifname]

    def _stack(self, upper, lowers):
        up = self._netdirs[upper]
        for lower in lowers:
            low = self._netdirs[lower]
            self.link('%s/lower_%s' % (up, lower), low)
            self.link('%s/upper_%s' % (low, upper), up)

    def linux_bridge(self, name, ports):
        rel = self._virtual_netdev(name)
        os.unlink(self.root / rel / 'device')
        self.mkdir(rel + '/bridge')
        self.mkdir(rel + '/brif')
        for port in ports:
            self.mkdir(self._netdirs[port] + '/brport')
            self.link('%s/brif/%s' % (rel, port), self._netdirs[port] + '/brport')
        self._stack(name, ports)
        return self

    def bond(self, name, slaves):
        rel = self._virtual_netdev(name)
        os.unlink(self.root / rel / 'device')
        self.write(rel + '/bonding/slaves', ' '.join(slaves) + '\n')
        self._stack(name, slaves)
        return self

    def vlan(self, name, lower):
        rel = self._virtual_netdev(name)
        os.unlink(self.root / rel / 'device')
        self._stack(name, [lower])
        return self

    def loopback(self):
        rel = self._virtual_netdev('lo')
        os.unlink(self.root / rel / 'device')
        return self

    # -- block devices -----------------------------------------------------
    def add_disk(self, name, parent_rel, partitions=()):
        """A disk under ``parent_rel`` (a controller path), with numbered partitions."""
        rel = '%s/block/%s' % (parent_rel, name)
        self.mkdir(rel)
        self.link('sys/class/block/%s' % name, rel)
        sep = 'p' if name[-1].isdigit() else ''
        for number in partitions:
            part = '%s%s%d' % (name, sep, number)
            self.write('%s/%s/partition' % (rel, part), '%d\n' % number)
            self.link('sys/class/block/%s' % part, '%s/%s' % (rel, part))
        return self

    def sata_disk(self, address, name, partitions=(1, 2, 3), port=0):
        parent = '%s/ata%d/host%d/target%d:0:0/%d:0:0:0' % (self._dirs[address], port + 1, port, port, port)
        return self.add_disk(name, parent, partitions)

    def nvme_disk(self, address, controller, partitions=(1, 2, 3)):
        parent = '%s/nvme/%s' % (self._dirs[address], controller)
        return self.add_disk('%sn1' % controller, parent, partitions)

    def stacked_block(self, name, slaves, dm_name=None):
        """A dm-N or mdN device whose ``slaves`` are other block devices (partitions or disks)."""
        rel = 'sys/devices/virtual/block/%s' % name
        self.mkdir(rel + '/slaves')
        self.link('sys/class/block/%s' % name, rel)
        for slave in slaves:
            target = os.path.normpath(os.path.join('sys/class/block', os.readlink(self.root / 'sys/class/block' / slave)))
            self.link('%s/slaves/%s' % (rel, slave), target)
        if dm_name:
            self.write(rel + '/dm/name', dm_name + '\n')
        return self


# -- canned machines ---------------------------------------------------------

def intel_gpu_host(root, passthrough=True):
    """Proxmox on Intel: GPU + its HDMI audio behind a root port (group 1), eno1 on vmbr0
    carrying the default route, LVM root on a SATA disk, ESP on the same disk."""
    host = FakeHost(root, group_type='identity' if passthrough else 'DMA-FQ')
    host.cmdline('BOOT_IMAGE=/boot/vmlinuz-6.8.12-4-pve root=/dev/mapper/pve-root ro quiet intel_iommu=on'
                 + (' iommu=pt' if passthrough else ''))
    host.interrupts(remapped=True).cpu_vendor('GenuineIntel').osrelease('6.8.12-4-pve')
    host.acpi_tables('DMAR', 'FACP', 'APIC').iommu_unit('dmar0').iommu_unit('dmar1')
    host.add_device('0000:00:00.0', '8086', '3e30', '060000', group=0, reset_methods=None)
    host.add_bridge('0000:00:01.0', group=1)
    host.add_device('0000:01:00.0', '10de', '1b80', '030000', driver='nouveau', group=1,
                    parent_bridge='0000:00:01.0', boot_vga=True, subsystem=('1043', '85aa'))
    host.add_device('0000:01:00.1', '10de', '10f0', '040300', driver='snd_hda_intel', group=1,
                    parent_bridge='0000:00:01.0', subsystem=('1043', '85aa'))
    # BAR 1 above 4G holds the firmware console: BOOTFB in tests/fixtures/iomem/bootfb-intel-nvidia.txt
    host.resource('0000:01:00.0', NVIDIA_BARS)
    host.iomem(IOMEM_FIXTURES.joinpath('bootfb-intel-nvidia.txt').read_text())
    host.add_device('0000:00:14.0', '8086', 'a36d', '0c0330', driver='xhci_hcd', module='xhci_pci', group=2)
    host.add_device('0000:00:17.0', '8086', 'a352', '010601', driver='ahci', group=3, reset_methods=('bus',))
    host.add_device('0000:00:1f.0', '8086', 'a306', '060100', group=4, reset_methods=None)
    host.add_device('0000:00:1f.4', '8086', 'a323', '0c0500', driver='i801_smbus', module='i2c_i801', group=4)
    host.add_device('0000:00:1f.6', '8086', '15bb', '020000', driver='e1000e', group=4, netdev='eno1')
    host.loopback().linux_bridge('vmbr0', ['eno1']).default_route('vmbr0')
    host.address('vmbr0', '192.0.2.10/24').address('lo', '127.0.0.1/8')
    host.sata_disk('0000:00:17.0', 'sda')
    host.stacked_block('dm-0', ['sda3'], dm_name='pve-root')
    host.mount('/dev/mapper/pve-root', '/').mount('/dev/sda2', '/boot/efi', 'vfat')
    return host


def amd_twin_nic_host(root, split=False):
    """Proxmox on AMD: two identical i210 NICs share group 3 with their PCI bridge; the
    management NIC enp7s0 carries the default route itself; ZFS root on NVMe.

    ``split``: the ACS override on its command line split the bridge's ports, so the second NIC
    is in a group of its own (10); either twin can then go to a VM alone, by address."""
    host = FakeHost(root)
    host.cmdline('initrd=\\EFI\\proxmox\\6.8.12-4-pve\\initrd.img-6.8.12-4-pve root=ZFS=rpool/ROOT/pve-1 '
                 'boot=zfs quiet amd_iommu=on pcie_acs_override=downstream,multifunction')
    host.interrupts(remapped=True).cpu_vendor('AuthenticAMD').osrelease('6.8.12-4-pve')
    host.acpi_tables('IVRS', 'FACP')
    host.add_device('0000:00:00.0', '1022', '1480', '060000', group=0, reset_methods=None)
    host.add_device('0000:00:00.2', '1022', '1481', '080600', group=1, reset_methods=None)
    host.iommu_unit('ivhd0', under='0000:00:00.2')
    host.add_bridge('0000:00:02.1', group=3, vendor='1022', device='1483')
    host.add_device('0000:05:00.0', '8086', '1533', '020000', driver='igb', group=3,
                    parent_bridge='0000:00:02.1', netdev='enp5s0', sriov_totalvfs=7, sriov_numvfs=0)
    host.add_device('0000:06:00.0', '8086', '1533', '020000', driver='igb', group=10 if split else 3,
                    parent_bridge='0000:00:02.1', netdev='enp6s0', sriov_totalvfs=7, sriov_numvfs=0)
    host.add_bridge('0000:00:03.1', group=4, vendor='1022', device='1483')
    host.add_device('0000:07:00.0', '10ec', '8168', '020000', driver='r8169', group=4,
                    parent_bridge='0000:00:03.1', netdev='enp7s0')
    host.add_bridge('0000:00:03.2', group=5, vendor='1022', device='1483')
    host.add_device('0000:08:00.0', '144d', 'a808', '010802', driver='nvme', group=5,
                    parent_bridge='0000:00:03.2')
    host.add_device('0000:09:00.0', '1002', '73bf', '030000', driver='vfio-pci', group=6, boot_vga=False)
    host.nvme_disk('0000:08:00.0', 'nvme0')
    host.loopback().default_route('enp7s0').address('enp7s0', '198.51.100.7/24')
    host.mount('rpool/ROOT/pve-1', '/', 'zfs').mount('/dev/nvme0n1p2', '/boot/efi', 'vfat')
    return host


def igb_mgmt_host(root):
    """Proxmox on AMD where one driver serves both sides: the management NIC enp7s0 (i211, igb,
    own group 4) is the port of vmbr0, which carries the default route, and two i210 NICs
    (igb) behind two root ports share group 3. Requesting one i210, the management NIC, or a
    blacklist of igb must each be refused."""
    host = FakeHost(root)
    host.cmdline('BOOT_IMAGE=/boot/vmlinuz-6.8.12-4-pve root=/dev/mapper/pve-root ro quiet')
    host.interrupts(remapped=True).cpu_vendor('AuthenticAMD').osrelease('6.8.12-4-pve')
    host.acpi_tables('IVRS', 'FACP')
    host.add_device('0000:00:00.0', '1022', '1480', '060000', group=0, reset_methods=None)
    host.add_device('0000:00:00.2', '1022', '1481', '080600', group=1, reset_methods=None)
    host.iommu_unit('ivhd0', under='0000:00:00.2')
    # Two chipset root ports without ACS: the kernel puts both ports and the NICs behind them
    # in one group.
    host.add_bridge('0000:00:02.1', group=3, vendor='1022', device='1483')
    host.add_bridge('0000:00:02.2', group=3, vendor='1022', device='1483')
    host.add_device('0000:05:00.0', '8086', '1533', '020000', driver='igb', group=3,
                    parent_bridge='0000:00:02.1', netdev='enp5s0')
    host.add_device('0000:06:00.0', '8086', '1533', '020000', driver='igb', group=3,
                    parent_bridge='0000:00:02.2', netdev='enp6s0')
    host.add_bridge('0000:00:03.1', group=4, vendor='1022', device='1483')
    host.add_device('0000:07:00.0', '8086', '1539', '020000', driver='igb', group=4,
                    parent_bridge='0000:00:03.1', netdev='enp7s0')
    host.add_bridge('0000:00:03.2', group=5, vendor='1022', device='1483')
    host.add_device('0000:08:00.0', '144d', 'a808', '010802', driver='nvme', group=5,
                    parent_bridge='0000:00:03.2')
    host.nvme_disk('0000:08:00.0', 'nvme0')
    host.stacked_block('dm-0', ['nvme0n1p3'], dm_name='pve-root')
    host.loopback().linux_bridge('vmbr0', ['enp7s0']).default_route('vmbr0')
    host.address('vmbr0', '198.51.100.7/24')
    host.mount('/dev/mapper/pve-root', '/').mount('/dev/nvme0n1p2', '/boot/efi', 'vfat')
    return host


def iommu_off_host(root, dmar=True):
    """A QEMU guest without an IOMMU booted with intel_iommu=on: no groups, no
    sys/class/iommu; a DMAR table only when ``dmar``. virtio NIC ens2 holds the
    default route; e1000e ens3 is the passthrough candidate; root on virtio-blk."""
    host = FakeHost(root)
    host.cmdline('BOOT_IMAGE=/boot/vmlinuz-6.1.0-27-amd64 root=UUID=5c1f ro console=ttyS0,115200n8 '
                 'intel_iommu=on iommu=pt')
    host.interrupts(remapped=False).cpu_vendor('GenuineIntel').osrelease('6.1.0-27-amd64')
    host.acpi_tables(*(('DMAR', 'FACP') if dmar else ('FACP',)))
    host.mkdir('sys/kernel/iommu_groups')
    host.mkdir('sys/class/iommu')
    host.add_device('0000:00:00.0', '8086', '29c0', '060000', reset_methods=None)
    host.add_device('0000:00:01.0', '1234', '1111', '030000', driver='bochs-drm', module='bochs', boot_vga=True)
    host.add_device('0000:00:02.0', '1af4', '1000', '020000', driver='virtio-pci', netdev='ens2', virtio=True,
                    subsystem=('1af4', '0001'))
    host.add_device('0000:00:03.0', '8086', '10d3', '020000', driver='e1000e', netdev='ens3')
    host.add_device('0000:00:04.0', '1af4', '1001', '010000', driver='virtio-pci', virtio_block=('vda', (1,)),
                    subsystem=('1af4', '0002'))
    host.loopback().default_route('ens2').address('ens2', '10.0.2.15/24')
    host.mount('/dev/vda1', '/')
    return host


def generated_host(root, count, per_group=1):
    """``count`` e1000e functions, 32 behind each root port, ``per_group`` to a group; for benchmarks."""
    if count > 32 * 255:
        raise ValueError('generated_host supports at most %d devices, not %d' % (32 * 255, count))
    host = FakeHost(root)
    host.cmdline('root=/dev/sda1 ro quiet intel_iommu=on iommu=pt')
    host.interrupts(remapped=True).cpu_vendor('GenuineIntel').osrelease('6.8.12-4-pve')
    host.acpi_tables('DMAR').iommu_unit('dmar0')
    for n in range(count):
        bus, slot = divmod(n, 32)
        bridge = '0000:00:%02x.%d' % (bus // 8, bus % 8)
        if slot == 0:
            host.add_bridge(bridge, group=100000 + bus)
        host.add_device('0000:%02x:%02x.0' % (bus + 1, slot), '8086', '10d3', '020000', driver='e1000e',
                        group=n // per_group, parent_bridge=bridge, netdev='eth%d' % n)
    host.loopback().default_route('eth0')
    host.mount('/dev/sda1', '/')
    return host


# Devices of vfio_variant_host, by address: (driver, module).
VARIANT_DEVICES = {
    '0000:41:00.1': ('mlx5_vfio_pci', 'mlx5_vfio_pci'),      # ConnectX-7 VF on its live-migration variant
    '0000:42:00.0': ('xe-vfio-pci', 'xe_vfio_pci'),          # Intel GPU on the xe variant (dashes in the name)
    '0000:43:00.0': ('acme_passthru', 'acme_passthru'),      # a variant no name list knows
    '0000:44:00.0': ('fake_vfio_pci', 'fake_vfio_pci'),      # named like one, but not built on vfio_pci_core
    '0000:45:00.0': ('e1000e', 'e1000e'),
    '0000:46:00.0': ('vfio-pci', 'vfio_pci'),
}


def vfio_variant_host(root):
    """Proxmox VE 9 on Intel with devices on vfio-pci variant drivers, each alone in its group.

    sys/module/vfio_pci_core/holders lists what is built on vfio_pci_core, as a
    6.14 kernel shows it: vfio_pci and three variants, but not fake_vfio_pci.
    modules.alias offers each device its host driver (and the variants' own
    vfio_pci: aliases, which are no host drivers).
    """
    host = FakeHost(root, group_type='identity')
    host.cmdline('BOOT_IMAGE=/boot/vmlinuz-6.14.8-2-pve root=/dev/mapper/pve-root ro quiet intel_iommu=on iommu=pt')
    host.interrupts(remapped=True).cpu_vendor('GenuineIntel').osrelease('6.14.8-2-pve')
    host.acpi_tables('DMAR').iommu_unit('dmar0')
    ids = {'0000:41:00.1': ('15b3', '101e', '020000'), '0000:42:00.0': ('8086', 'e20b', '030000'),
           '0000:43:00.0': ('1ded', '0001', '120000'), '0000:44:00.0': ('1ded', '0002', '120000'),
           '0000:45:00.0': ('8086', '10d3', '020000'), '0000:46:00.0': ('10de', '2684', '030000')}
    for group, (address, (driver, module)) in enumerate(sorted(VARIANT_DEVICES.items()), start=10):
        vendor, device, class_ = ids[address]
        host.add_device(address, vendor, device, class_, driver=driver, module=module, group=group)
    host.module_holders('vfio_pci_core', 'vfio_pci', 'mlx5_vfio_pci', 'xe_vfio_pci', 'acme_passthru')
    host.modules_alias(('pci:v000015B3d0000101Esv*sd*bc*sc*i*', 'mlx5_core'),
                       ('vfio_pci:v000015B3d0000101Esv*sd*bc*sc*i*', 'mlx5_vfio_pci'),
                       ('pci:v00008086d0000E20Bsv*sd*bc*sc*i*', 'xe'),
                       ('vfio_pci:v00008086d0000E20Bsv*sd*bc*sc*i*', 'xe_vfio_pci'),
                       ('pci:v00001DEDd00000001sv*sd*bc*sc*i*', 'acme'),
                       ('pci:v000010DEd00002684sv*sd*bc*sc*i*', 'nouveau'))
    host.modules_dep({'vfio_pci': ['vfio_pci_core', 'vfio'], 'mlx5_vfio_pci': ['mlx5_core', 'vfio_pci_core', 'vfio'],
                      'xe_vfio_pci': ['xe', 'vfio_pci_core', 'vfio'], 'acme_passthru': ['vfio_pci_core', 'vfio'],
                      'fake_vfio_pci': ['vfio'], 'e1000e': [], 'vfio_pci_core': ['vfio'], 'vfio': []})
    return host


# Machines the command line can build: scenarios need them without importing this module.
CANNED_HOSTS = {
    'intel_gpu_host': intel_gpu_host,
    # The same machine before the role ran: no iommu=pt, groups in translated (DMA-FQ) mode.
    'intel_gpu_host_unconfigured': lambda root: intel_gpu_host(root, passthrough=False),
    'amd_twin_nic_host': amd_twin_nic_host,
    # The same machine with the twins in two groups: one twin by address, SR-IOV on the other.
    'amd_split_twin_nic_host': lambda root: amd_twin_nic_host(root, split=True),
    'igb_mgmt_host': igb_mgmt_host,
    'iommu_off_host': iommu_off_host,
    'vfio_variant_host': vfio_variant_host,
}


def main(argv=None):
    parser = argparse.ArgumentParser(description='Write a canned fake sysfs/procfs root into DIR.')
    parser.add_argument('host', choices=sorted(CANNED_HOSTS))
    parser.add_argument('dir', type=Path, help='an empty or missing directory')
    args = parser.parse_args(argv)
    # A tree left over from another machine would mix two hosts' devices.
    if args.dir.exists() and any(args.dir.iterdir()):
        parser.error('%s is not empty' % args.dir)
    CANNED_HOSTS[args.host](args.dir)
    return 0


if __name__ == '__main__':
    sys.exit(main())
