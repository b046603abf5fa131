"""The throwaway guest's /init and its console: real consoles as goldens, the script's text as data."""

from __future__ import annotations

from pathlib import Path

import pytest

from ansible_collections.vfio.passthrough.plugins.module_utils.vm_probe._vm_probe_guest import (
    DHCP_SCRIPT, MARKER, dhcp_script, init_script, parse_console,
)

GOLDEN = Path(__file__).resolve().parents[4] / 'fixtures' / 'vm_probe'
KERNEL = ('Linux version 6.12.117+deb13-amd64 (debian-kernel@lists.debian.org) (x86_64-linux-gnu-gcc-14 '
          '(Debian 14.2.0-19) 14.2.0, GNU ld (GNU Binutils for Debian) 2.44) #1 SMP PREEMPT_DYNAMIC Debian '
          '6.12.117-1 (2026-11-12)')
Q35 = [('0000:00:00.0', '8086:29c0', '060000'), ('0000:00:1f.0', '8086:2918', '060100'),
       ('0000:00:1f.2', '8086:2922', '010601'), ('0000:00:1f.3', '8086:2930', '0c0500')]


def _console(name):
    return (GOLDEN / name).read_text(encoding='utf-8', errors='replace')


def _nic(parsed):
    return [d for d in parsed['devices'] if d['vendor_device'] == '8086:10d3']


@pytest.mark.parametrize('name, driver, links, lease, modules, finished', [
    ('e1000e-dhcp.console', 'e1000e', {'eth0': 'up'}, 'lease of 10.0.2.15 obtained from 10.0.2.2',
     {'e1000e': 'ok'}, True),
    ('e1000e.console', 'e1000e', {'eth0': 'up'}, None, {'e1000e': 'ok'}, True),
    ('no-driver.console', None, {}, None, {}, True),
    ('hung-after-insmod.console', None, {}, None, {}, False),
])
def test_golden_consoles(name, driver, links, lease, modules, finished):
    parsed = parse_console(_console(name))
    assert parsed['kernel_line'] == KERNEL
    assert [(d['address'], d['vendor_device'], d['class']) for d in parsed['devices'] if d not in _nic(parsed)] == Q35
    nic, = _nic(parsed)
    assert (nic['address'], nic['class'], nic['driver']) == ('0000:00:01.0', '020000', driver)
    assert nic['interfaces'] == list(links)
    assert parsed['links'] == links and parsed['lease'] == lease
    assert parsed['modules'] == modules and parsed['finished'] is finished
    # SeaBIOS's terminal reset and colour codes are gone; every other line is kept as printed
    assert parsed['lines'][0] == 'SeaBIOS (version 1.16.2-debian-1.16.2-1)'
    assert not any('\x1b' in line or '\r' in line for line in parsed['lines'])
    assert len(parsed['lines']) == len(_console(name).rstrip('\n').split('\n'))


def test_link_details_name_the_guest_device():
    parsed = parse_console(_console('e1000e-dhcp.console'))
    assert parsed['link_details'] == {'eth0': {'device': '0000:00:01.0', 'carrier': '1', 'operstate': 'up'}}


@pytest.mark.parametrize('text, expected', [
    # the kernel writes into the same console: a marker after a kernel line's text still counts
    ('[   6.1] e1000e: probe\x1b[0mvm-probe: pci 0000:00:02.0 0x8086:0x10d3 class 0x020000\r\n',
     [('0000:00:02.0', '8086:10d3', '020000')]),
    # the line the nested guest printed in the measured run, as our /init prints it
    ('vm-probe: pci 0000:00:02.0 0x8086:0x10d3 class 0x020000', [('0000:00:02.0', '8086:10d3', '020000')]),
    ('vm-probe: pci garbage\nvm-probe: pci 0000:00:02.0 0x8086:0x10d3', []),
    ('', []),
])
def test_pci_lines(text, expected):
    assert [(d['address'], d['vendor_device'], d['class']) for d in parse_console(text)['devices']] == expected


def test_down_link_and_failed_module():
    parsed = parse_console('vm-probe: pci 0000:00:02.0 0x8086:0x1533 class 0x020000\n'
                           'vm-probe: insmod igb failed\n'
                           'vm-probe: driver 0000:00:02.0 none\n'
                           'vm-probe: link eth0 0000:00:02.0 carrier=none operstate=down\n'
                           'udhcpc: lease of 192.0.2.9 obtained from 192.0.2.1, lease time 600\n')
    assert parsed['modules'] == {'igb': 'failed'} and parsed['links'] == {'eth0': 'down'}
    assert parsed['devices'][0]['driver'] is None and parsed['devices'][0]['interfaces'] == ['eth0']
    assert parsed['lease'] == 'lease of 192.0.2.9 obtained from 192.0.2.1'
    assert parsed['finished'] is False and parsed['kernel_line'] is None


def test_init_script_loads_modules_in_order_and_dhcp_only_when_asked():
    quiet = init_script(['crc_itu_t', 'e1000e'], dhcp=False)
    loud = init_script(['e1000e'], dhcp=True)
    assert quiet.startswith('#!/bin/busybox sh\n') and quiet.endswith('poweroff -f\n')
    assert quiet.index('insmod /lib/modules/crc_itu_t.ko') < quiet.index('insmod /lib/modules/e1000e.ko')
    assert 'udhcpc' not in quiet
    assert 'udhcpc -i "$i" -n -q -t 5 -s /%s' % DHCP_SCRIPT in loud
    for text in (quiet, loud):
        # the words the parser keys on, each printed through say()
        for word in ('kernel', 'pci', 'driver', 'link', 'done'):
            assert 'say "%s' % word in text
        assert 'say() { echo "%s $*"; }' % MARKER in text
    assert 'sleep 2' not in init_script([], dhcp=False)


@pytest.mark.parametrize('bad', ['e1000e; reboot', '../x', '', None])
def test_init_script_refuses_what_is_no_module_name(bad):
    with pytest.raises(ValueError, match='no kernel module name'):
        init_script([bad], dhcp=False)


def test_dhcp_script_only_reports():
    text = dhcp_script()
    assert text.startswith('#!/bin/sh\n') and MARKER in text
    # udhcpc's lease line is the proof; the guest's address is never configured
    assert [line.split()[0] for line in text.splitlines()[1:] if not line.startswith('#')] == ['echo']
