# -*- coding: utf-8 -*-
# Copyright: contributors to vfio.passthrough
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Which PCI devices the host cannot lose: the verdict that keeps a playbook from cutting itself off.

Handing the NIC Ansible talks through, or the controller of the root disk, to
vfio-pci leaves a host unreachable or unbootable. A device is host-critical
when it is:

* the NIC of a default route (IPv4 or IPv6),
* the NIC holding the address Ansible connects to (SSH_CONNECTION's server
  address) or one of ``protect_addresses``,
* a port, slave or lower link of a bridge/bond/VLAN that is one of those,
  recursively (Proxmox: default route on vmbr0, port eno1 -> eno1's PCI device),
* the storage controller under /, /boot or /boot/efi, through dm/md stacks and
  ZFS pools,
* the SR-IOV physical function of any of those that is a virtual function:
  unbinding, resetting or re-counting a PF destroys its VFs.

The same verdict names the kernel MODULES the host cannot lose (``host_verdict``):
the drivers, device-mapper/md layers and filesystems of those mounts and the
bridge/bond/VLAN/NIC drivers of that network path (``_host_stack``), and
everything they load first in any installed kernel (``_module_deps``).

Parsers are pure (text in, data out). ``collect_host_critical`` is the one
entry point for modules, ``host_critical_arg_spec`` and ``check_host_critical_args``
their one set of inputs; it runs commands (``ip``, ``zpool``) and reads
SSH_CONNECTION only for the live root, since neither describes a chroot.
"""

from __future__ import annotations

import ipaddress
import os
import re
import socket

from ansible_collections.vfio.passthrough.plugins.module_utils.pci._block_devices import (
    block_devices_by_dm_name, block_pci_addresses,
)
from ansible_collections.vfio.passthrough.plugins.module_utils.pci._kernel_names import (
    decode_name, name_fields, name_lines, show_name,
)
from ansible_collections.vfio.passthrough.plugins.module_utils.host_safety._host_stack import (
    block_roots, device_driver_modules, filesystem_roots, network_roots,
)
from ansible_collections.vfio.passthrough.plugins.module_utils.host_safety._module_deps import Kernel, needed_modules, read_kernels
from ansible_collections.vfio.passthrough.plugins.module_utils.pci._net_interfaces import read_net_interfaces
from ansible_collections.vfio.passthrough.plugins.module_utils.pci._pci import C_LOCALE
from ansible_collections.vfio.passthrough.plugins.module_utils.pci._sysfs import SysfsTree

__all__ = [
    'parse_default_route', 'parse_ipv6_default_route', 'parse_ip_addr', 'ssh_server_address',
    'parse_mounts', 'parse_zpool_members', 'interface_reasons', 'network_verdict',
    'invalid_protect_addresses', 'collect_host_critical', 'collect_host_verdict', 'host_verdict',
    'CRITICAL_MOUNTPOINTS',
]

CRITICAL_MOUNTPOINTS = ('/', '/boot', '/boot/efi')
_RTF_REJECT = 0x0200
_HOSTNAME = re.compile(r'^(?=.{1,253}\.?$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?'
                       r'(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$')
_MAX_STACK = 16  # deeper bridge/bond/VLAN stacks than this are loops


def _ip(text):
    """An ip_address from text such as ``192.0.2.1``, ``[fe80::1%eno1]``, ``::ffff:192.0.2.1``; else None."""
    text = (text or '').strip().strip('[]').split('%', 1)[0]
    try:
        addr = ipaddress.ip_address(text)
    except ValueError:
        return None
    if addr.version == 6 and addr.ipv4_mapped:
        return addr.ipv4_mapped
    return addr


def parse_default_route(text):
    """Interfaces of IPv4 default routes in /proc/net/route (destination and mask 00000000)."""
    result = []
    for line in name_lines(text)[1:]:
        fields = name_fields(line)
        if len(fields) >= 8 and fields[1] == '00000000' and fields[7] == '00000000':
            if fields[0] not in result:
                result.append(fields[0])
    return result


def parse_ipv6_default_route(text):
    """Interfaces of IPv6 default routes in /proc/net/ipv6_route, leaving out reject routes (``lo``)."""
    result = []
    for line in name_lines(text):
        fields = name_fields(line)
        if len(fields) < 10 or fields[0] != '0' * 32 or fields[1] != '00':
            continue
        try:
            flags = int(fields[8], 16)
        except ValueError:
            continue
        if flags & _RTF_REJECT or fields[9] == 'lo':
            continue
        if fields[9] not in result:
            result.append(fields[9])
    return result


def parse_ip_addr(text, names_by_index=None):
    """{ip_address: [ifname]} from ``ip -o addr show``.

    ``names_by_index`` ({ifindex: name}, from sysfs ``ifindex``) names the
    interface by the index ``ip`` prints first: a name may hold ``@`` itself,
    so ``a@b@eno1`` cannot be split. Without it, ``vlan10@eno1`` becomes ``vlan10``.
    """
    result = {}
    names_by_index = names_by_index or {}
    for line in name_lines(text):
        fields = name_fields(line)
        if len(fields) < 4 or fields[2] not in ('inet', 'inet6'):
            continue
        addr = _ip(fields[3].split('/', 1)[0])
        if addr is None:
            continue
        index = fields[0].rstrip(':')
        ifname = names_by_index.get(int(index)) if index.isdigit() else None
        if ifname is None:
            ifname = fields[1].rstrip(':').split('@', 1)[0]
        names = result.setdefault(addr, [])
        if ifname not in names:
            names.append(ifname)
    return result


def ssh_server_address(value):
    """The server address in SSH_CONNECTION (``client port server port``), or None."""
    fields = (value or '').split()
    return _ip(fields[2]) if len(fields) == 4 else None


def _unescape(field):
    # /proc/mounts escapes space, tab, newline and backslash as octal bytes; a byte is decoded as names are
    return re.sub(r'\\([0-3][0-7]{2})', lambda m: decode_name(bytes([int(m.group(1), 8)])), field)


def parse_mounts(text, mountpoints=CRITICAL_MOUNTPOINTS):
    """{mountpoint: (device, fstype)} for ``mountpoints``; the last mount on a path wins (it hides the others)."""
    result = {}
    for line in name_lines(text):
        fields = name_fields(line)
        if len(fields) < 3:
            continue
        mountpoint = _unescape(fields[1])
        if mountpoint in mountpoints:
            result[mountpoint] = (_unescape(fields[0]), fields[2])
    return result


def parse_zpool_members(text):
    """Member device paths from ``zpool status -P``: the config lines naming /dev paths."""
    members = []
    for line in name_lines(text):
        fields = name_fields(line)
        if fields and fields[0].startswith('/dev/') and fields[0] not in members:
            members.append(fields[0])
    return members


def invalid_protect_addresses(values):
    """The entries of ``values`` that are neither an IP address nor a host name."""
    return [v for v in values if not isinstance(v, str) or (_ip(v) is None and not _HOSTNAME.match(v))]


def interface_reasons(interfaces, anchors):
    """{ifname: [why]} for the anchors and everything beneath them.

    ``anchors`` maps an interface to phrases such as "carries the default
    route"; the ports, slaves and lower links of an anchor inherit the phrase,
    prefixed with how they relate ("is a port of vmbr0, which carries ...").
    """
    reasons = {}
    pending = [(name, why, 0) for name, whys in anchors.items() for why in whys]
    while pending:
        name, why, depth = pending.pop(0)
        have = reasons.setdefault(name, [])
        if why in have:
            continue
        have.append(why)
        facts = interfaces.get(name)
        if facts is None or depth >= _MAX_STACK:
            continue
        below = [(port, 'is a port of') for port in facts['ports']]
        below += [(slave, 'is a slave of') for slave in facts['slaves']]
        named = {child for child, _relation in below}
        below += [(low, 'is the lower link of') for low in facts['lower'] if low not in named]
        for child, relation in below:
            pending.append((child, '%s %s, which %s' % (relation, show_name(name), why), depth + 1))
    return reasons


def network_verdict(interfaces, anchors):
    """{pci address: ["NIC eno1 is a port of vmbr0, which carries the default route", ...]}."""
    result = {}
    for name, whys in sorted(interface_reasons(interfaces, anchors).items()):
        facts = interfaces.get(name)
        if facts and facts['pci_address']:
            bucket = result.setdefault(facts['pci_address'], [])
            shown = show_name(name)
            bucket.extend('NIC %s %s' % (shown, why) for why in whys if 'NIC %s %s' % (shown, why) not in bucket)
    return result


def _anchors(tree, ip_text, ssh_address, protect):
    anchors = {}

    def add(name, why):
        whys = anchors.setdefault(name, [])
        if why not in whys:
            whys.append(why)

    for name in parse_default_route(tree.read_names('proc/net/route')):
        add(name, 'carries the default route')
    for name in parse_ipv6_default_route(tree.read_names('proc/net/ipv6_route')):
        add(name, 'carries the IPv6 default route')
    if ip_text is not None:
        holders = parse_ip_addr(ip_text, _names_by_index(tree))
        if ssh_address is not None:
            for name in holders.get(ssh_address, []):
                add(name, 'holds %s, the address Ansible connects to' % ssh_address)
        for addr, label in protect:
            for name in holders.get(addr, []):
                add(name, 'holds %s, a protected address%s' % (addr, label))
    return anchors


def _names_by_index(tree):
    """{ifindex: interface name} from sys/class/net/*/ifindex."""
    names = {}
    for name in tree.listdir('sys/class/net'):
        index = tree.read('sys/class/net/%s/ifindex' % name)
        if index is not None and index.isdigit():
            names[int(index)] = name
    return names


def _block_names(tree, device, fstype, zpool_status):
    """Block device names (``sda2``, ``dm-0``) behind a mount source, and how to describe it."""
    if fstype == 'zfs':
        pool = device.split('/', 1)[0]
        members = parse_zpool_members(zpool_status(pool)) if zpool_status else []
        names = []
        for member in members:
            path = os.path.realpath(member) if tree.live else member
            names.append(os.path.basename(path))
        shown = show_name(pool)
        return names, ('ZFS pool %s on %s' % (shown, ', '.join(show_name(m) for m in members)) if members
                       else 'ZFS pool %s' % shown)
    if device.startswith('/dev/mapper/'):
        dm = block_devices_by_dm_name(tree).get(device[len('/dev/mapper/'):])
        return ([dm] if dm else []), show_name(device)
    if device.startswith('/dev/') and tree.exists('sys/class/block/' + device[5:].replace('/', '!')):
        return [device[5:].replace('/', '!')], show_name(device)
    return [], show_name(device)


def _live_block_name(tree, mountpoint):
    """The block device a live mount sits on, from its st_dev (for /dev/root and friends)."""
    try:
        st = os.stat(mountpoint)
    except OSError:
        return None
    rel = tree.resolve('sys/dev/block/%d:%d' % (os.major(st.st_dev), os.minor(st.st_dev)))
    return rel.rsplit('/', 1)[-1] if rel and os.path.exists(tree.os_path(rel)) else None


def _critical_mounts(tree, mounts_text, zpool_status):
    """(mountpoint, fstype, label, [block device names]) for each critical mount."""
    for mountpoint, (device, fstype) in sorted(parse_mounts(mounts_text).items()):
        names, label = _block_names(tree, device, fstype, zpool_status)
        if not names and tree.live and fstype != 'zfs':
            name = _live_block_name(tree, mountpoint)
            names = [name] if name else []
        yield mountpoint, fstype, label, names


def storage_verdict(tree, mounts_text, zpool_status=None):
    """{pci address: ["storage controller of / (/dev/sda2)", ...]} for the critical mounts."""
    result = {}
    for mountpoint, _fstype, label, names in _critical_mounts(tree, mounts_text, zpool_status):
        seen = set()
        for name in names:
            for address in block_pci_addresses(tree, name, seen):
                reason = 'storage controller of %s (%s)' % (mountpoint, label)
                bucket = result.setdefault(address, [])
                if reason not in bucket:
                    bucket.append(reason)
    return result


def _mounts_text(tree):
    mounts = tree.read_names('proc/mounts')
    return mounts if mounts is not None else tree.read_names('proc/self/mounts')


def host_critical(tree, interfaces=None, ip_text=None, ssh_address=None, protect=(), zpool_status=None):
    """The device verdict from already-gathered inputs: {pci address: [reasons]}.

    ``protect`` holds (ip_address, label) pairs; ``zpool_status`` maps a pool
    name to ``zpool status -P`` text (None where it cannot run).
    """
    return host_verdict(tree, interfaces, ip_text, ssh_address, protect, zpool_status, kernels=())['devices']


def _once(function):
    """``function`` of one argument, called at most once per argument (a command run per pool)."""
    cache = {}

    def cached(arg):
        if arg not in cache:
            cache[arg] = function(arg)
        return cache[arg]
    return cached


def host_verdict(tree, interfaces=None, ip_text=None, ssh_address=None, protect=(), zpool_status=None,
                 kernels=None):
    """What the host cannot lose: {'devices': {pci address: [reasons]}, 'modules': {module: [Need]}}.

    ``kernels`` are ``_module_deps.Kernel`` views (None: every kernel under
    the tree's ``lib/modules``, or, without any, the modules found in sysfs
    alone; an empty sequence: no module verdict).
    """
    if interfaces is None:
        interfaces = read_net_interfaces(tree)
    anchors = _anchors(tree, ip_text, ssh_address, protect)
    devices = network_verdict(interfaces, anchors)
    mounts = _mounts_text(tree)
    if zpool_status is not None:
        zpool_status = _once(zpool_status)
    for address, why in storage_verdict(tree, mounts, zpool_status).items():
        devices.setdefault(address, []).extend(why)
    parents = _physical_functions(tree, devices)
    if kernels is None:
        kernels = read_kernels(tree) or [Kernel.without_files()]
    if not kernels:
        return {'devices': devices, 'modules': {}}
    roots = []
    for mountpoint, fstype, _label, names in _critical_mounts(tree, mounts, zpool_status):
        roots += filesystem_roots(mountpoint, fstype)
        seen = set()
        for name in names:
            roots += block_roots(tree, name, mountpoint, seen)
    roots += network_roots(tree, interfaces, interface_reasons(interfaces, anchors))
    for pf, vf in parents:
        rel = tree.resolve('sys/bus/pci/devices/' + pf)
        roots += [(module, 'drives %s, the SR-IOV physical function of %s' % (pf, vf))
                  for module in (device_driver_modules(tree, rel) if rel else [])]
    return {'devices': devices, 'modules': needed_modules(roots, kernels)}


def _physical_functions(tree, devices):
    """Add to ``devices`` the PF of each host-critical VF, naming the VF; return the ``(pf, vf)`` pairs.

    A PF's VFs live only while its driver has SR-IOV enabled: unbinding or
    blacklisting that driver, passing the PF through, or changing its VF
    count (always through 0) takes the VF away from the host.
    """
    pairs = []
    for vf in sorted(devices):
        rel = tree.resolve('sys/bus/pci/devices/' + vf)
        target = tree.readlink(rel + '/physfn') if rel else None
        if not target:
            continue
        pf = target.rstrip('/').rsplit('/', 1)[-1]
        bucket = devices.setdefault(pf, [])
        for why in list(devices[vf]):
            reason = 'its virtual function %s: %s' % (vf, why)
            if reason not in bucket:
                bucket.append(reason)
        pairs.append((pf, vf))
    return pairs


def host_critical_arg_spec():
    """The options every module that judges host-critical devices takes (doc fragment ``vfio.passthrough.host_critical``).

    A fresh dict each call, as ansible-core's ``get_file_arg_spec``: ``default=[]`` is no list two modules share.
    """
    return dict(
        root=dict(type='path', default='/'),
        protect_addresses=dict(type='list', elements='str', default=[]),
    )


def check_host_critical_args(module):
    """Fail, naming the value and why, on the inputs ``host_critical_arg_spec`` declares; before anything is read."""
    bad = invalid_protect_addresses(module.params['protect_addresses'])
    if bad:
        module.fail_json(msg='protect_addresses: %s is neither an IP address nor a host name'
                             % ', '.join(repr(b) for b in bad))
    root = module.params['root']
    if not os.path.isdir(root):
        module.fail_json(msg='root %s is not a directory' % root)
    if not os.path.isdir(os.path.join(root, 'sys')):
        # An empty verdict would protect nothing: refuse rather than judge a tree that is not there.
        module.fail_json(msg='root %s has no sys/ directory to read' % root)


def _resolve_protect(module, values):
    """(ip_address, label) pairs; host names are looked up (as the controller may have given one)."""
    pairs = []
    for value in values:
        addr = _ip(value)
        if addr is not None:
            pairs.append((addr, ''))
            continue
        try:
            infos = socket.getaddrinfo(value, None, proto=socket.IPPROTO_TCP)
        except (socket.gaierror, UnicodeError) as exc:
            module.warn('protect_addresses: cannot resolve %s (%s); its NIC is not protected by address'
                        % (value, exc))
            continue
        for info in infos:
            addr = _ip(info[4][0])
            if addr is not None and not addr.is_loopback and (addr, ' (%s)' % value) not in pairs:
                pairs.append((addr, ' (%s)' % value))
    return pairs


def collect_host_critical(module, root, protect_addresses, interfaces=None):
    """{pci address: [reason, ...]} for every host-critical device under ``root`` (see ``collect_host_verdict``)."""
    return collect_host_verdict(module, root, protect_addresses, interfaces, kernels=())['devices']


def collect_host_verdict(module, root, protect_addresses, interfaces=None, kernels=None):
    """``host_verdict`` for the system under ``root``: the one verdict modules and the role share.

    On the live root (``/``) this also runs ``ip -o addr show`` (when there is
    an address to protect) and ``zpool status -P`` (for a ZFS / or /boot), and
    reads SSH_CONNECTION. A chroot's addresses and pools are not the running
    system's, so for any other root only files under it are read.
    """
    tree = root if isinstance(root, SysfsTree) else SysfsTree(root)
    ip_text = None
    ssh_address = None
    protect = []
    zpool_status = None
    if tree.live:
        ssh_address = ssh_server_address(os.environ.get('SSH_CONNECTION'))
        protect = _resolve_protect(module, protect_addresses or [])
        if ssh_address is not None or protect:
            ip_text = _run(module, 'ip', ['-o', 'addr', 'show'])

        def zpool_status(pool):
            return _run(module, 'zpool', ['status', '-P', pool]) or ''

    return host_verdict(tree, interfaces, ip_text, ssh_address, protect, zpool_status, kernels)


def _run(module, name, args):
    binary = module.get_bin_path(name)
    if binary is None:
        module.warn('%s not found; host-critical devices may be missed' % name)
        return None
    # bytes, decoded as sysfs names are: an interface in ``ip`` output is the same string as in sys/class/net
    rc, out, err = module.run_command([binary] + args, environ_update=C_LOCALE, encoding=None)
    if rc != 0:
        module.warn('%s %s failed (rc=%d): %s; host-critical devices may be missed'
                    % (name, ' '.join(args), rc, show_name(decode_name(err).strip())))
        return None
    return decode_name(out)
