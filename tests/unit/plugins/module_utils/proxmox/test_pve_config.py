"""_pve_config: hostpciN values, guest configs and pci.cfg, read as Proxmox VE reads them.

Every case group names the Proxmox source its forms come from (public repositories
proxmox/qemu-server, proxmox/pve-common, proxmox/pve-guest-common, proxmox/pve-docs).
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ansible_collections.vfio.passthrough.plugins.module_utils.proxmox._pve_config import (
    HOSTPCI_KEYS, guest_pci_references, guest_pci_settings, hostpci_id_addresses, parse_hostpci, parse_pci_mapping,
    parse_vm_config_hostpci, starts_on_boot, vm_config_setting, vmid_of,
)

HOST = ['0000:00:02.0', '0000:01:00.0', '0000:01:00.1', '0000:01:10.0', '0000:01:10.2', '0000:02:00.0',
        '0001:01:00.0']

# value, host IDs, mapping, options, Proxmox accepts it
HOSTPCI_CASES = [
    # pve-docs qm-pci-passthrough.adoc ("VM Configuration", "PCI ID overrides", "Mediated Devices")
    ('00:02.0', ['00:02.0'], None, {}, True),
    ('00:02', ['00:02'], None, {}, True),
    ('02:00,pcie=on,x-vga=on', ['02:00'], None, {'pcie': 1, 'x-vga': 1}, True),
    ('02:00,device-id=0x10f6,sub-vendor-id=0x0000', ['02:00'], None,
     {'device-id': '0x10f6', 'sub-vendor-id': '0x0000'}, True),
    ('00:02.0,mdev=i915-GVTg_V5_4', ['00:02.0'], None, {'mdev': 'i915-GVTg_V5_4'}, True),
    # qemu-server src/PVE/QemuServer/PCI.pm $hostpci_fmt: host is the default key, HOSTPCIID[;HOSTPCIID2...],
    # $PCIRE (domain of 4 or more hex digits, optional function), mapping=<pve-configid>
    ('host=0000:01:00.0', ['0000:01:00.0'], None, {}, True),
    ('host=0000:01:10.0;0000:01:10.2', ['0000:01:10.0', '0000:01:10.2'], None, {}, True),
    ('0000:01:10.0;01:10.2', ['0000:01:10.0', '01:10.2'], None, {}, True),
    ('pcie=1,host=01:00.0', ['01:00.0'], None, {'pcie': 1}, True),
    ('pcie=1,01:00.0,rombar=0', ['01:00.0'], None, {'pcie': 1, 'rombar': 0}, True),
    ('10000:01:00.0', ['10000:01:00.0'], None, {}, True),
    ('00:02.0,legacy-igd=1,romfile=vbios.bin', ['00:02.0'], None, {'legacy-igd': 1, 'romfile': 'vbios.bin'}, True),
    ('mapping=device1', [], 'device1', {}, True),
    ('pcie=1,mapping=rtx4000ada,x-vga=1', [], 'rtx4000ada', {'pcie': 1, 'x-vga': 1}, True),
    # Proxmox VE 9.1: driver=keep leaves a vfio-pci variant driver in place
    ('0000:41:00.2,pcie=1,driver=keep', ['0000:41:00.2'], None, {'pcie': 1, 'driver': 'keep'}, True),
    ('mapping=cx7vf,driver=keep', [], 'cx7vf', {'driver': 'keep'}, True),
    # pve-common src/PVE/JSONSchema.pm parse_property_string / parse_boolean: empty parts skipped,
    # booleans 1|on|yes|true / 0|off|no|false in any case, no quoting of any kind
    ('01:00.0,,pcie=YES,rombar=Off,', ['01:00.0'], None, {'pcie': 1, 'rombar': 0}, True),
    ('01:00.0,vendor-id=0xABCD', ['01:00.0'], None, {'vendor-id': '0xABCD'}, True),
]

# value, host IDs still named, what Proxmox objects to
REJECTED_CASES = [
    # PCI.pm parse_hostpci: host and mapping exclude each other, one of them is needed
    ('mapping=gpu,host=01:00.0', ['01:00.0'], "Cannot set both 'host' and 'mapping'."),
    ('pcie=1', [], "Either 'host' or 'mapping' must be set."),
    # JSONSchema.pm parse_property_string: duplicates (a second bare value is the default key again)
    ('01:00.0,02:00.0', ['01:00.0', '02:00.0'], 'duplicate key in comma-separated list property: host'),
    ('01:00.0,host=01:00.1', ['01:00.0', '01:00.1'], 'duplicate key in comma-separated list property: host'),
    ('host=', [], 'missing key in comma-separated list property'),
    ('01:00.0, pcie=1', ['01:00.0'], 'invalid key in comma-separated list property:  pcie'),
    ("01:00.0,pcie=maybe", ['01:00.0'], "pcie: type check ('boolean') failed - got 'maybe'"),
    # PVE 3.x accepted driver=kvm|vfio; today's $hostpci_fmt has no such key
    ('01:00.0,driver=vfio,x-vga=on', ['01:00.0'], 'driver: value does not match the regex pattern'),
    ('01:00.0,nodriver=keep', ['01:00.0'], 'invalid key in comma-separated list property: nodriver'),
    # $PCIRE is lowercase; check_type does not unquote a formatted value; pve-configid needs 2+ characters
    ('0000:0A:00.0', ['0000:0A:00.0'], 'host: value does not match the regex pattern'),
    ('"0000:01:00.0"', ['"0000:01:00.0"'], 'host: value does not match the regex pattern'),
    ('mapping=x', [], 'mapping: value does not match the regex pattern'),
    ('01:00.0,vendor-id=10de', ['01:00.0'], 'vendor-id: value does not match the regex pattern'),
]


@pytest.mark.parametrize('value, host, mapping, options, accepted', HOSTPCI_CASES)
def test_parse_hostpci_accepts_proxmox_forms(value, host, mapping, options, accepted):
    parsed = parse_hostpci(value)
    assert (parsed['host'], parsed['mapping'], parsed['options']) == (host, mapping, options)
    assert (parsed['errors'] == []) is accepted, parsed['errors']


@pytest.mark.parametrize('value, host, error', REJECTED_CASES)
def test_parse_hostpci_says_what_proxmox_rejects_and_keeps_the_ids(value, host, error):
    parsed = parse_hostpci(value)
    assert parsed['host'] == host
    assert error in parsed['errors'], parsed['errors']


# pve-common src/PVE/SysFSTools.pm lspci: an ID matches as a prefix of [0000:]domain:bus:slot.function
@pytest.mark.parametrize('ident, addresses', [
    ('01:00', ['0000:01:00.0', '0000:01:00.1']),         # all functions, domain 0000 only
    ('01:00.1', ['0000:01:00.1']),
    ('0000:01:00', ['0000:01:00.0', '0000:01:00.1']),
    ('0001:01:00.0', ['0001:01:00.0']),
    ('00:02.0', ['0000:00:02.0']),
    ('01:10', ['0000:01:10.0', '0000:01:10.2']),
    ('01:00.7', []),                                      # no such function here
    ('"01:00.0"', ['0000:01:00.0']),                      # the quoted form still names its device
    ('0000:0A:00.0', []), ('01:0', []), ('0', []), ('', []), ('01:00.0;02:00.0', []), (None, []),
])
def test_hostpci_id_addresses_is_lspci_prefix_match(ident, addresses):
    assert hostpci_id_addresses(ident, HOST) == addresses


# qemu-server PVE/QemuServer.pm parse_vm_config: key in column 0, '#' is the description,
# [PENDING] / [special:cloudinit] / [snapshot] sections; hostpci0..15 ($MAX_HOSTPCI_DEVICES)
@pytest.mark.parametrize('text, found', [
    ('boot: order=scsi0\nhostpci0: 01:00.0,pcie=1\nnet0: virtio=AA:BB:CC:DD:EE:FF,bridge=vmbr0\n',
     [(None, 'hostpci0', '01:00.0,pcie=1')]),
    ('hostpci3:01:10   \n', [(None, 'hostpci3', '01:10')]),
    ('hostpci0: 01:00.0\n[PENDING]\nhostpci1: mapping=gpu\n[snap1]\nhostpci0: 02:00.0\n',
     [(None, 'hostpci0', '01:00.0'), ('pending', 'hostpci1', 'mapping=gpu'), ('snap1', 'hostpci0', '02:00.0')]),
    ('#hostpci0: 01:00.0\ndescription: hostpci1: 02:00.0\n  hostpci2: 01:10.0\n', []),
    ('HOSTPCI0: 01:00.0\nhostpci16: 01:00.0\nhostpci00: 01:00.0\nhostpci: 01:00.0\nhostpci0:\n', []),
    ('hostpci15: 01:00.0\r\n', [(None, 'hostpci15', '01:00.0')]),
])
def test_parse_vm_config_hostpci(text, found):
    assert [(s['section'], s['key'], s['value']) for s in parse_vm_config_hostpci(text)] == found


# pve-guest-common src/PVE/Mapping/PCI.pm (bare-ID section header, $map_fmt) and pve-common
# src/PVE/SectionConfig.pm parse_config ('#' skipped, an empty line ends a section);
# the first text is pve-docs qm.adoc's `pvesh create /cluster/mapping/pci --id device1 ...` as written
@pytest.mark.parametrize('text, mapping', [
    ('device1\n\tmap id=0002:0001,node=node1,path=0000:01:00.0\n\tmap id=0002:0001,node=node2,path=0000:02:00.0\n',
     {'device1': [('node1', ['0000:01:00.0'], True), ('node2', ['0000:02:00.0'], True)]}),
    ('gpu\n\tdescription RTX\n\t# a comment\n\tmap id=10de:1b80,iommugroup=13,node=pve,path=0000:01:00\n\tmdev 1\n',
     {'gpu': [('pve', ['0000:01:00'], True)]}),
    ('vf\n\tmap id=8086:10ca,node=pve,path=0000:01:10.0;0000:01:10.2\n\nlost\n\tmap id=8086:10ca,node=pve,path=0000:02:00.0\n',
     {'vf': [('pve', ['0000:01:10.0', '0000:01:10.2'], True)], 'lost': [('pve', ['0000:02:00.0'], True)]}),
    ('a1\n\tmap id=8086:10ca,node=pve,path=0000:01:10.0\n\n\tmap id=8086:10ca,node=pve,path=0000:02:00.0\n',
     {'a1': [('pve', ['0000:01:10.0'], True)]}),
    # without the empty line SectionConfig writes between sections, "b2" is an ignored line of section a1
    ('a1\n\tmap id=8086:10ca,node=pve,path=0000:01:10.0\nb2\n\tmap id=8086:10ca,node=pve,path=0000:02:00.0\n',
     {'a1': [('pve', ['0000:01:10.0'], True), ('pve', ['0000:02:00.0'], True)]}),
    ('pci: nic1\n\tmap id=8086:10ca,node=pve,path=0000:01:10.0\n', {}),     # not a header Proxmox knows
    ('1bad\n\tmap id=8086:10ca,node=pve,path=0000:01:10.0\n', {}),         # no pve-configid: section skipped
    ('nic\n\tmap node=pve,path=01:10.0\n', {'nic': [('pve', ['01:10.0'], False)]}),  # no domain, no id
])
def test_parse_pci_mapping(text, mapping):
    parsed = parse_pci_mapping(text)
    assert {k: [(m['node'], m['path'], not m['errors']) for m in v] for k, v in parsed.items()} == mapping


def test_guest_references_name_guest_key_mapping_and_node():
    configs = {
        '101': 'hostpci0: 0000:01:10.0,pcie=1\n',
        '102': 'hostpci1: pcie=1,mapping=vf\n[snap]\nhostpci0: 01:00\n',
        '103': 'hostpci4: 01:00.1,driver=vfio\n',
    }
    mapping = ('vf\n\tmap id=8086:10ca,node=pve1,path=0000:01:10.2\n\tmap id=8086:10ca,node=pve2,path=0000:02:00.0\n'
               '\nspare\n\tmap id=8086:10ca,node=pve1,path=0000:00:02.0\n')
    assert guest_pci_references(configs, mapping, HOST, node='pve1') == {
        '0000:01:10.0': ['guest 101 (hostpci0)'],
        '0000:01:10.2': ['guest 102 (hostpci1, mapping vf)', 'resource mapping vf'],
        '0000:01:00.0': ['guest 102 (hostpci0 of snapshot snap)'],
        '0000:01:00.1': ['guest 102 (hostpci0 of snapshot snap)', 'guest 103 (hostpci4)'],
        '0000:00:02.0': ['resource mapping spare'],
    }
    # another node's map is another machine's device; without a node every map counts
    assert '0000:02:00.0' not in guest_pci_references(configs, mapping, HOST, node='pve1')
    assert guest_pci_references(configs, mapping, HOST)['0000:02:00.0'] == [
        'guest 102 (hostpci1, mapping vf)', 'resource mapping vf']


def test_guest_settings_carry_each_settings_options():
    configs = {
        '101': 'hostpci0: 0000:01:10.0,pcie=1,driver=keep\n',
        '102': 'hostpci1: mapping=vf,driver=keep\n[snap]\nhostpci0: 01:10\n',
        '103': 'hostpci4: 01:10.0\n',
    }
    mapping = 'vf\n\tmap id=8086:10ca,node=pve1,path=0000:01:10.2\n'
    assert guest_pci_settings(configs, mapping, HOST, node='pve1') == {
        '0000:01:10.0': [{'where': 'guest 101 (hostpci0)', 'options': {'pcie': 1, 'driver': 'keep'}},
                         {'where': 'guest 102 (hostpci0 of snapshot snap)', 'options': {}},
                         {'where': 'guest 103 (hostpci4)', 'options': {}}],
        '0000:01:10.2': [{'where': 'guest 102 (hostpci1, mapping vf)', 'options': {'driver': 'keep'}},
                         {'where': 'guest 102 (hostpci0 of snapshot snap)', 'options': {}}],
    }


@pytest.mark.parametrize('name, vmid', [('101.conf', '101'), ('101.conf.tmp.42', None), ('x.conf', None)])
def test_vmid_of(name, vmid):
    assert vmid_of(name) == vmid


_IDS = st.from_regex(r'\A(?:[0-9a-f]{4}:)?[0-9a-f]{2}:[0-1][0-9a-f](?:\.[0-7])?\Z')
_OPTIONS = st.dictionaries(st.sampled_from(['pcie', 'rombar', 'x-vga', 'legacy-igd']),
                           st.sampled_from(['0', '1', 'on', 'off', 'yes', 'no', 'true', 'false']))


@given(ids=st.lists(_IDS, min_size=1, max_size=4, unique=True), options=_OPTIONS, keyed=st.booleans(),
       position=st.integers(min_value=0, max_value=4))
def test_any_valid_value_gives_back_its_ids(ids, options, keyed, position):
    parts = ['%s=%s' % item for item in options.items()]
    parts.insert(min(position, len(parts)), ('host=' if keyed else '') + ';'.join(ids))
    parsed = parse_hostpci(','.join(parts))
    assert parsed['errors'] == [] and parsed['host'] == ids
    assert set(parsed['options']) == set(options) and set(parsed['options'].values()) <= {0, 1}


@given(st.text(max_size=80))
def test_any_text_parses_without_raising(text):
    parsed = parse_hostpci(text)
    assert set(parsed) == {'host', 'mapping', 'options', 'errors'}
    assert set(parsed['options']) <= set(HOSTPCI_KEYS)
    for ident in parsed['host']:
        assert set(hostpci_id_addresses(ident, HOST)) <= set(HOST)
    parse_vm_config_hostpci(text)
    parse_pci_mapping(text)


@pytest.mark.parametrize('text, onboot', [
    ('onboot: 1\nmemory: 2048\n', True),
    ('memory: 2048\nonboot: yes\n', True),
    ('onboot: On\n', True),
    ('onboot: 0\n', False),
    ('memory: 2048\n', False),
    # a snapshot's or pending setting is not what starts the guest at boot
    ('memory: 2048\n[PENDING]\nonboot: 1\n', False),
    ('memory: 2048\n\n[snap1]\nonboot: 1\n', False),
    ('#onboot: 1\n', False),
    (' onboot: 1\n', False),
    ('onboot: maybe\n', False),
    (None, False),
])
def test_starts_on_boot(text, onboot):
    assert starts_on_boot(text) is onboot


def test_vm_config_setting_reads_the_current_section_only():
    text = 'name: web\nonboot: 1\n[snap1]\nname: old\n'
    assert (vm_config_setting(text, 'name'), vm_config_setting(text, 'cores')) == ('web', None)
