"""The host-critical verdict: parsers table-driven, the whole verdict on kernel-shaped fake hosts."""

from __future__ import annotations

import ipaddress
import json
import sys
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ansible_collections.vfio.passthrough.plugins.module_utils.host_safety import _host_critical
from ansible_collections.vfio.passthrough.plugins.module_utils.host_safety._host_critical import (
    collect_host_critical, host_critical, host_verdict, interface_reasons, invalid_protect_addresses, network_verdict,
    parse_default_route, parse_ip_addr, parse_ipv6_default_route, parse_mounts, parse_zpool_members,
    ssh_server_address,
)
from ansible_collections.vfio.passthrough.plugins.module_utils.pci._kernel_names import (
    decode_name, show_name, unshow_name, valid_interface_name,
)
from ansible_collections.vfio.passthrough.plugins.module_utils.pci._net_interfaces import read_net_interfaces
from ansible_collections.vfio.passthrough.plugins.module_utils.pci._sysfs import SysfsTree
from ansible_collections.vfio.passthrough.plugins.modules import iommu_facts

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
from module_runner import run_module  # noqa: E402
from sysfs_builder import FakeHost, amd_twin_nic_host, intel_gpu_host, iommu_off_host  # noqa: E402
from sriov_hosts import HOST_VF, PF0, VFS0, host_on_vf  # noqa: E402

FIXTURES = Path(__file__).resolve().parents[4] / 'fixtures' / 'sysfs'
ip = ipaddress.ip_address


# -- parsers -----------------------------------------------------------------------

_HEADER = 'Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n'


@pytest.mark.parametrize('body, expected', [
    ('vmbr0\t00000000\t0102A8C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\n', ['vmbr0']),
    ('eno1\t0002A8C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n', []),
    ('a\t00000000\t01\t0003\t0\t0\t100\t00000000\t0\t0\t0\nb\t00000000\t01\t0003\t0\t0\t200\t00000000\t0\t0\t0\n',
     ['a', 'b']),
    ('', []),
])
def test_parse_default_route(body, expected):
    assert parse_default_route(_HEADER + body) == expected


def test_parse_ipv6_default_route_skips_the_reject_route_on_lo():
    assert parse_ipv6_default_route((FIXTURES / 'ipv6_route.txt').read_text()) == ['vmbr0']
    assert parse_ipv6_default_route(None) == []


def test_parse_ip_addr():
    holders = parse_ip_addr((FIXTURES / 'ip-o-addr.txt').read_text())
    assert holders[ip('192.0.2.10')] == ['vmbr0']
    assert holders[ip('2001:db8::10')] == ['vmbr0']
    assert holders[ip('198.51.100.3')] == ['vmbr0.20']   # "@vmbr0" is not part of the name
    assert holders[ip('127.0.0.1')] == ['lo']


@pytest.mark.parametrize('value, expected', [
    ('198.51.100.9 52114 192.0.2.10 22', '192.0.2.10'),
    ('2001:db8::9 52114 2001:db8::10 22', '2001:db8::10'),
    ('::ffff:198.51.100.9 52114 ::ffff:192.0.2.10 22', '192.0.2.10'),   # sshd on a dual-stack socket
    ('fe80::9%vmbr0 52114 fe80::1%vmbr0 22', 'fe80::1'),
    ('garbage', None),
    ('', None),
    (None, None),
])
def test_ssh_server_address(value, expected):
    assert ssh_server_address(value) == (ip(expected) if expected else None)


def test_parse_mounts_last_mount_wins_and_escapes_decode():
    text = ('/dev/sda2 / ext4 rw 0 0\n'
            '/dev/sdb1 /boot ext4 rw 0 0\n'
            '/dev/sdc1 /boot ext4 rw 0 0\n'        # mounted over the first: that one is hidden
            '/dev/sdd1 /srv/my\\040disk ext4 rw 0 0\n'
            'rpool/ROOT/pve-1 /boot/efi zfs rw 0 0\n')
    assert parse_mounts(text) == {'/': ('/dev/sda2', 'ext4'), '/boot': ('/dev/sdc1', 'ext4'),
                                  '/boot/efi': ('rpool/ROOT/pve-1', 'zfs')}
    assert parse_mounts(text, ('/srv/my disk',)) == {'/srv/my disk': ('/dev/sdd1', 'ext4')}


def test_parse_zpool_members():
    assert parse_zpool_members((FIXTURES / 'zpool-status-mirror.txt').read_text()) == [
        '/dev/disk/by-id/nvme-Samsung_SSD_970_EVO_Plus_1TB_S4EWNX0N123456-part3', '/dev/sda3', '/dev/nvme1n1p1']


@pytest.mark.parametrize('values, bad', [
    (['192.0.2.10', '2001:db8::1', 'pve1', 'pve1.example.org', 'pve1.example.org.'], []),
    (['192.0.2.10', 'bad value!'], ['bad value!']),
    ([''], ['']),
    (['-leading-dash'], ['-leading-dash']),
    (['a' * 64 + '.example'], ['a' * 64 + '.example']),
])
def test_invalid_protect_addresses(values, bad):
    assert invalid_protect_addresses(values) == bad


@given(st.ip_addresses())
def test_every_ip_address_is_a_valid_protect_address(addr):
    assert invalid_protect_addresses([str(addr)]) == []


# -- network verdict -----------------------------------------------------------------

def _nic(pci=None, ports=(), slaves=(), lower=()):
    return {'pci_address': pci, 'driver_module': None, 'ports': list(ports), 'slaves': list(slaves),
            'lower': list(lower), 'kind': 'x'}


def test_reasons_walk_bridge_bond_vlan_stacks():
    interfaces = {
        'vmbr0.20': _nic(lower=['vmbr0']),
        'vmbr0': _nic(ports=['bond0'], lower=['bond0']),
        'bond0': _nic(slaves=['eno1', 'eno2'], lower=['eno1', 'eno2']),
        'eno1': _nic('0000:00:1f.6'), 'eno2': _nic('0000:02:00.0'), 'eno3': _nic('0000:03:00.0'),
    }
    verdict = network_verdict(interfaces, {'vmbr0.20': ['carries the default route']})
    assert verdict == {
        '0000:00:1f.6': ['NIC eno1 is a slave of bond0, which is a port of vmbr0, which is the lower link of '
                         'vmbr0.20, which carries the default route'],
        '0000:02:00.0': ['NIC eno2 is a slave of bond0, which is a port of vmbr0, which is the lower link of '
                         'vmbr0.20, which carries the default route'],
    }


def test_reasons_survive_a_stacking_loop():
    interfaces = {'a': _nic(lower=['b']), 'b': _nic('0000:01:00.0', lower=['a'])}
    reasons = interface_reasons(interfaces, {'a': ['carries the default route']})
    assert reasons['a'][0] == 'carries the default route'
    assert reasons['b'][0] == 'is the lower link of a, which carries the default route'
    assert len(reasons['b']) <= _host_critical._MAX_STACK


def test_unknown_interfaces_are_ignored():
    assert network_verdict({}, {'wg0': ['carries the default route']}) == {}


# -- whole verdict on fake hosts --------------------------------------------------------

def test_intel_host_proxmox_bridge_and_lvm_root(tmp_path):
    intel_gpu_host(tmp_path)
    assert host_critical(SysfsTree(str(tmp_path))) == {
        '0000:00:1f.6': ['NIC eno1 is a port of vmbr0, which carries the default route'],
        '0000:00:17.0': ['storage controller of / (/dev/mapper/pve-root)',
                         'storage controller of /boot/efi (/dev/sda2)'],
    }


def test_amd_host_zfs_root_needs_zpool_status(tmp_path):
    amd_twin_nic_host(tmp_path)
    tree = SysfsTree(str(tmp_path))
    asked = []

    def zpool(pool):
        asked.append(pool)
        return '\tNAME STATE\n\trpool ONLINE\n\t  /dev/nvme0n1p3 ONLINE 0 0 0\n'

    assert host_critical(tree, zpool_status=zpool) == {
        '0000:07:00.0': ['NIC enp7s0 carries the default route'],
        '0000:08:00.0': ['storage controller of / (ZFS pool rpool on /dev/nvme0n1p3)',
                         'storage controller of /boot/efi (/dev/nvme0n1p2)'],
    }
    assert asked == ['rpool']
    # without zpool (a chroot) the ZFS root cannot be traced; /boot/efi still is
    assert host_critical(tree)['0000:08:00.0'] == ['storage controller of /boot/efi (/dev/nvme0n1p2)']


def test_ssh_and_protected_addresses_mark_their_nics(tmp_path):
    host = iommu_off_host(tmp_path)
    host.address('ens3', '192.0.2.33/24')
    verdict = host_critical(SysfsTree(str(tmp_path)), ip_text=host.ip_addr_text(), ssh_address=ip('10.0.2.15'),
                            protect=[(ip('192.0.2.33'), ' (pve1)')])
    assert verdict == {
        '0000:00:02.0': ['NIC ens2 carries the default route',
                         'NIC ens2 holds 10.0.2.15, the address Ansible connects to'],
        '0000:00:03.0': ['NIC ens3 holds 192.0.2.33, a protected address (pve1)'],
        '0000:00:04.0': ['storage controller of / (/dev/vda1)'],
    }


def test_ipv6_default_route_and_bond(tmp_path):
    host = FakeHost(tmp_path)
    host.add_device('0000:01:00.0', '8086', '1521', '020000', driver='igb', netdev='enp1s0f0')
    host.add_device('0000:01:00.1', '8086', '1521', '020000', driver='igb', netdev='enp1s0f1')
    host.add_device('0000:02:00.0', '8086', '1521', '020000', driver='igb', netdev='enp2s0')
    host.bond('bond0', ['enp1s0f0', 'enp1s0f1']).ipv6_default_route('bond0')
    assert host_critical(SysfsTree(str(tmp_path))) == {
        '0000:01:00.0': ['NIC enp1s0f0 is a slave of bond0, which carries the IPv6 default route'],
        '0000:01:00.1': ['NIC enp1s0f1 is a slave of bond0, which carries the IPv6 default route'],
    }


def test_md_root_over_two_controllers_and_proc_self_mounts(tmp_path):
    host = FakeHost(tmp_path)
    host.add_device('0000:00:17.0', '8086', 'a352', '010601', driver='ahci')
    host.add_device('0000:04:00.0', '1000', '0097', '010700', driver='mpt3sas')
    host.sata_disk('0000:00:17.0', 'sda').sata_disk('0000:04:00.0', 'sdb')
    host.stacked_block('md0', ['sda2', 'sdb2'])
    host.write('proc/self/mounts', '/dev/md0 / ext4 rw 0 0\n')
    assert host_critical(SysfsTree(str(tmp_path))) == {
        '0000:00:17.0': ['storage controller of / (/dev/md0)'],
        '0000:04:00.0': ['storage controller of / (/dev/md0)'],
    }


# -- the entry point: live-only inputs -----------------------------------------------------

class _Module:
    """Records what collect_host_critical asks of the module; refuses commands unless allowed."""

    def __init__(self, outputs=None):
        self.outputs = outputs
        self.commands = []
        self.warnings = []

    def get_bin_path(self, name):
        return '/usr/sbin/' + name

    def run_command(self, args, environ_update=None, encoding='utf-8'):
        if self.outputs is None:
            raise AssertionError('no command may run for a non-live root: %r' % (args,))
        self.commands.append((args, environ_update))
        out = self.outputs[args[0].rsplit('/', 1)[-1]]
        # as AnsibleModule.run_command: encoding=None gives the bytes the command wrote
        if encoding is None:
            return 0, out if isinstance(out, bytes) else out.encode('utf-8', 'surrogateescape'), b''
        return 0, out, ''

    def warn(self, msg):
        self.warnings.append(msg)


def test_non_live_root_runs_nothing_and_ignores_ssh_connection(tmp_path, monkeypatch):
    iommu_off_host(tmp_path)
    monkeypatch.setenv('SSH_CONNECTION', '198.51.100.9 52114 10.0.2.15 22')
    module = _Module()
    verdict = collect_host_critical(module, str(tmp_path), ['192.0.2.33'])
    assert verdict == host_critical(SysfsTree(str(tmp_path)))
    assert module.commands == [] and module.warnings == []


def test_live_root_uses_ip_zpool_and_ssh_connection(tmp_path, monkeypatch):
    host = amd_twin_nic_host(tmp_path)
    host.address('enp5s0', '192.0.2.50/24')
    tree = SysfsTree(str(tmp_path))
    tree.live = True   # pretend this tree is the running system's
    monkeypatch.setenv('SSH_CONNECTION', '198.51.100.9 52114 198.51.100.7 22')
    module = _Module({'ip': host.ip_addr_text(),
                      'zpool': '\trpool ONLINE\n\t  /dev/nvme0n1p3 ONLINE 0 0 0\n'})
    verdict = collect_host_critical(module, tree, ['192.0.2.50'], read_net_interfaces(tree))
    assert verdict['0000:07:00.0'] == ['NIC enp7s0 carries the default route',
                                       'NIC enp7s0 holds 198.51.100.7, the address Ansible connects to']
    assert verdict['0000:05:00.0'] == ['NIC enp5s0 holds 192.0.2.50, a protected address']
    assert verdict['0000:08:00.0'][0] == 'storage controller of / (ZFS pool rpool on /dev/nvme0n1p3)'
    assert module.commands == [
        (['/usr/sbin/ip', '-o', 'addr', 'show'], {'LC_ALL': 'C'}),
        (['/usr/sbin/zpool', 'status', '-P', 'rpool'], {'LC_ALL': 'C'}),
    ]


def test_live_host_names_resolve_and_failures_warn(tmp_path, monkeypatch):
    host = iommu_off_host(tmp_path)
    host.address('ens3', '192.0.2.33/24')
    tree = SysfsTree(str(tmp_path))
    tree.live = True
    monkeypatch.delenv('SSH_CONNECTION', raising=False)

    def getaddrinfo(name, *_args, **_kwargs):
        if name == 'pve1.example.org':
            return [(2, 1, 6, '', ('192.0.2.33', 0)), (2, 1, 6, '', ('127.0.1.1', 0))]
        raise _host_critical.socket.gaierror(-2, 'Name or service not known')

    monkeypatch.setattr(_host_critical.socket, 'getaddrinfo', getaddrinfo)
    module = _Module({'ip': host.ip_addr_text(), 'zpool': ''})
    verdict = collect_host_critical(module, tree, ['pve1.example.org', 'gone.example.org'])
    assert verdict['0000:00:03.0'] == ['NIC ens3 holds 192.0.2.33, a protected address (pve1.example.org)']
    assert len(module.warnings) == 1 and 'gone.example.org' in module.warnings[0]


def test_failed_ip_command_warns_instead_of_guessing(tmp_path, monkeypatch):
    iommu_off_host(tmp_path)
    tree = SysfsTree(str(tmp_path))
    tree.live = True
    monkeypatch.setenv('SSH_CONNECTION', '198.51.100.9 52114 10.0.2.15 22')
    module = _Module({'ip': ''})
    module.run_command = lambda args, environ_update=None, encoding=None: (1, b'', b'Cannot open netlink socket')
    verdict = collect_host_critical(module, tree, [])
    assert verdict['0000:00:02.0'] == ['NIC ens2 carries the default route']
    assert module.warnings and 'Cannot open netlink socket' in module.warnings[0]


@pytest.mark.parametrize('how', sorted(HOST_VF))
def test_a_vf_the_host_runs_on_makes_its_pf_and_its_driver_host_critical(tmp_path, how):
    # Unbinding, blacklisting or passing through the PF, or changing its VF count, takes the VF away.
    host_on_vf(tmp_path, how)
    verdict = host_verdict(SysfsTree(str(tmp_path)))
    assert verdict['devices'][VFS0[1]] == [HOST_VF[how]]
    assert verdict['devices'][PF0] == ['its virtual function %s: %s' % (VFS0[1], HOST_VF[how])]
    assert VFS0[0] not in verdict['devices']
    assert [n.what for n in verdict['modules']['igb']] == ['drives %s, the SR-IOV physical function of %s'
                                                           % (PF0, VFS0[1])]


# -- names are bytes -------------------------------------------------------------------

def _odd_host(root, port, bond, bridge, other, nic6):
    """Two NICs bonded under a bridge with the IPv4 default route, a third NIC with the IPv6 one."""
    host = FakeHost(root)
    host.add_device('0000:01:00.0', '8086', '1521', '020000', driver='igb', netdev=port)
    host.add_device('0000:02:00.0', '8086', '1521', '020000', driver='igb', netdev=other)
    host.add_device('0000:03:00.0', '8086', '1521', '020000', driver='igb', netdev=nic6)
    host.bond(bond, [port, other]).linux_bridge(bridge, [bond]).default_route(bridge).ipv6_default_route(nic6)
    return host


def _expected(port, bond, bridge, other, nic6):
    def via(nic):
        return ('NIC %s is a slave of %s, which is a port of %s, which carries the default route'
                % (show_name(nic), show_name(bond), show_name(bridge)))
    return {'0000:01:00.0': [via(port)], '0000:02:00.0': [via(other)],
            '0000:03:00.0': ['NIC %s carries the IPv6 default route' % show_name(nic6)]}


def _strings(value):
    if isinstance(value, dict):
        for key, item in value.items():
            yield key
            yield from _strings(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _strings(item)
    elif isinstance(value, str):
        yield value


@pytest.mark.parametrize('names', [
    [b'e\xffth0', b'b\xfe', b'br\xc3', b'en\\o2', b'\x01\x02'],            # not UTF-8, a backslash, controls
    [b'caf\xc3\xa9', b'bond\\134', b'vm@br0', b'x' * 15, b'\xed\xa0\x80'],  # UTF-8, octal-looking, '@', a surrogate's bytes

    # separators to Python's split() and splitlines() that the kernel allows in a name
    [b'e\x1cn', b'b\x1d', b'br\xe2\x80\xa8x', b'\x1e\x1f', b'n\xc2\x85'],
])
def test_names_with_any_bytes_are_matched_in_routes_bridges_and_bonds(tmp_path, names):
    decoded = [decode_name(raw) for raw in names]
    _odd_host(tmp_path, *decoded)
    verdict = host_critical(SysfsTree(str(tmp_path)))
    assert verdict == _expected(*decoded)
    for text in _strings(verdict):
        text.encode('utf-8')


_NAME = st.binary(min_size=1, max_size=15).filter(valid_interface_name)


@settings(max_examples=40, deadline=None)
@given(st.lists(_NAME, min_size=5, max_size=5, unique=True))
def test_any_valid_interface_name_stays_host_critical_and_results_stay_utf8(names):
    """Whatever bytes the kernel allows, a route's device and a bridge or bond member match, and are shown in UTF-8."""
    decoded = [decode_name(raw) for raw in names]
    with tempfile.TemporaryDirectory() as root:
        host = _odd_host(root, *decoded)
        host.osrelease('6.8.12-4-pve')
        result = run_module(iommu_facts.main, {'root': root})
    facts = result['ansible_facts']['iommu']
    assert {address: facts['devices'][address]['host_critical'] for address in _expected(*decoded)} == \
        _expected(*decoded)
    assert facts['devices']['0000:01:00.0']['netdevs'] == [show_name(decoded[0])]
    assert unshow_name(facts['devices']['0000:01:00.0']['netdevs'][0]) == decoded[0]
    assert any(show_name(decoded[2]) in ' '.join(whys) for whys in facts['host_critical_modules'].values())
    json.dumps(result, ensure_ascii=False).encode('utf-8')   # strict: a lone surrogate would raise


def test_mount_sources_decode_their_octal_escapes_as_names(tmp_path):
    """/proc/mounts writes a backslash as \\134; the device's other bytes are raw, as in sys/class/block."""
    host = FakeHost(tmp_path)
    host.add_device('0000:00:17.0', '8086', 'a352', '010601', driver='ahci')
    disk = decode_name(b'd\\\xff')
    host.sata_disk('0000:00:17.0', disk)
    (tmp_path / 'proc').mkdir(exist_ok=True)
    (tmp_path / 'proc/mounts').write_bytes(b'/dev/d\\134\xff2 / ext4 rw 0 0\n')
    assert host_critical(SysfsTree(str(tmp_path))) == {
        '0000:00:17.0': ['storage controller of / (/dev/d\\\\\\xff2)'],
    }


def test_ip_addr_names_the_interface_by_its_index():
    text = ('7: a@b    inet 192.0.2.7/24 scope global a@b\\       valid_lft forever\n'
            '8: v@x@eno1    inet 192.0.2.8/24 scope global v@x\\       valid_lft forever\n')
    holders = parse_ip_addr(text, {7: 'a@b', 8: 'v@x'})
    assert (holders[ip('192.0.2.7')], holders[ip('192.0.2.8')]) == (['a@b'], ['v@x'])
    # without sysfs to ask, the text before the first '@' is all ip tells
    assert parse_ip_addr(text)[ip('192.0.2.7')] == ['a']


def test_an_address_on_an_interface_named_with_at_signs_protects_its_nic(tmp_path):
    host = FakeHost(tmp_path)
    host.add_device('0000:01:00.0', '8086', '1521', '020000', driver='igb', netdev='mgmt@x')
    text = '1: mgmt@x    inet 192.0.2.50/24 scope global mgmt@x\\       valid_lft forever\n'
    verdict = host_critical(SysfsTree(str(tmp_path)), ip_text=text, ssh_address=ip('192.0.2.50'))
    assert verdict == {'0000:01:00.0': ['NIC mgmt@x holds 192.0.2.50, the address Ansible connects to']}
