"""iommu_facts on sysfs trees captured from real Debian 12 and 13 kernels (tests/vm, VFIO_CAPTURE=1),
checked against lspci -Dnnk captured from the same boot. The captures and what their names say:
tests/unit/real_captures.py."""

from __future__ import annotations

import re
import tarfile

import pytest

from ansible_collections.vfio.passthrough.plugins.modules import iommu_facts
from ansible_collections.vfio.passthrough.plugins.plugin_utils._iommu_verdict import judge_remapping_and_mode
from module_runner import run_module
from real_captures import REAL, SUITE_KERNELS, captures, expected_release_prefix, parse, read

CAPTURES = captures()
_DEVICE = re.compile(r'^(?P<addr>[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]) .*?\[(?P<cls>[0-9a-f]{4})\]: '
                     r'.*\[(?P<vendor>[0-9a-f]{4}):(?P<device>[0-9a-f]{4})\]')


def parse_lspci(text):
    devices, current = {}, None
    for line in text.splitlines():
        match = _DEVICE.match(line)
        if match:
            current = match.group('addr')
            devices[current] = {'class': match.group('cls'), 'id': '%s:%s' % (match.group('vendor'),
                                                                              match.group('device')),
                                'driver': None}
        elif current and line.strip().startswith('Kernel driver in use:'):
            devices[current]['driver'] = line.split(':', 1)[1].strip()
    return devices


@pytest.fixture(params=CAPTURES)
def capture(request, tmp_path):
    with tarfile.open(REAL / request.param / 'sysfs.tar.gz') as tar:
        tar.extractall(tmp_path, filter='tar')
    result = run_module(iommu_facts.main, {'root': str(tmp_path)})
    assert not result.get('failed'), result
    return request.param, result['ansible_facts']['iommu'], parse_lspci((REAL / request.param / 'lspci-Dnnk.txt').read_text())


def test_real_captures_exist():
    # The VM scenarios produce them; losing them would silently drop this whole check. Not a list
    # of names (a refresh may rename or add captures): each release, before and after the role.
    found = {(parse(name)['suite'], parse(name)['phase']) for name in CAPTURES}
    assert {(suite, phase) for suite in SUITE_KERNELS for phase in ('before', 'after')} <= found, CAPTURES


@pytest.mark.parametrize('name', CAPTURES)
def test_capture_is_named_for_its_boot(name):
    info = parse(name)
    release = read(name, 'proc/sys/kernel/osrelease').strip()
    assert release.startswith(expected_release_prefix(info)), (name, release)
    assert release.endswith('-amd64'), (name, release)


def test_devices_match_lspci(capture):
    _name, facts, lspci = capture
    assert set(facts['devices']) == set(lspci)
    for address, seen in lspci.items():
        device = facts['devices'][address]
        assert '%s:%s' % (device['vendor_id'], device['device_id']) == seen['id'], address
        assert device['class'][:4] == seen['class'], address
        assert device['driver'] == seen['driver'], address


def test_iommu_state_matches_the_boot(capture):
    name, facts, lspci = capture
    flavour, phase = parse(name)['flavour'], parse(name)['phase']
    e1000e = [a for a, d in lspci.items() if d['id'] == '8086:10d3']
    assert facts['vendor'] == flavour and facts['firmware_support'] is True
    if phase == 'before':
        assert facts['enabled'] is False and facts['groups'] == {} and facts['vfio_bound'] == []
    else:
        assert facts['enabled'] is True and facts['passthrough_mode'] is True
        assert facts['interrupt_remapping'] is True
        # what the role's verification judges after the reboot: the guests must pass it
        assert judge_remapping_and_mode(facts, iommu_pt=True) == ([], []), facts['evidence']
        assert facts['evidence']['interrupt_remapping'].startswith('/proc/interrupts line ')
        assert facts['evidence']['passthrough_mode'].startswith('/sys/kernel/iommu_groups/*/type: identity in ')
        assert e1000e[0] in facts['vfio_bound']
        assert facts['devices'][e1000e[0]]['kernel_modules'] == ['e1000e']
        # Every function is in a group except an IOMMU's own (class 0806, the AMD IOMMU).
        assert [a for a in lspci if facts['devices'][a]['iommu_group'] is None] == \
            [a for a in lspci if lspci[a]['class'] == '0806']
    # The management NIC (virtio) carries the IPv4 default route in every capture.
    ipv4 = [a for a, d in facts['devices'].items() if any(r.endswith('carries the default route') for r in d['host_critical'])]
    assert [lspci[a]['driver'] for a in ipv4] == ['virtio-pci']
    # An interface that is up takes QEMU's IPv6 router advertisement: only then is it critical too.
    for address in e1000e:
        device = facts['devices'][address]
        allowed = [[]] + [['NIC %s carries the IPv6 default route' % n] for n in device['netdevs']]
        assert device['host_critical'] in allowed, (address, device['host_critical'])
