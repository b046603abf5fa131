"""ansible_facts.iommu assembled from fake trees, and the parsers behind it (module_utils/pci/_iommu_facts.py)."""

from __future__ import annotations

import os

import pytest

from ansible_collections.vfio.passthrough.plugins.module_utils.pci._iommu_facts import (
    gather_iommu_facts, interrupt_remapping_evidence, kernel_log_facts, parse_cmdline, parse_cpu_vendor, parse_interrupt_remapping,
)
from sysfs_builder import FakeHost, amd_twin_nic_host, intel_gpu_host, iommu_off_host, vfio_variant_host


# -- pure parsers --------------------------------------------------------------

@pytest.mark.parametrize('text, expected', [
    (' 0:  36  0  IR-IO-APIC    2-edge      timer\n', True),
    (' 25: 0 0  IR-PCI-MSIX-0000:01:00.0    0-edge      nvme0q0\n', True),
    (' 0:  36  0   IO-APIC    2-edge      timer\n 24: 1 0 PCI-MSI 49152-edge  virtio0\n', False),
    ('NMI:  0  0   Non-maskable interrupts\n', None),
    ('', None),
    (None, None),
])
def test_parse_interrupt_remapping(text, expected):
    assert parse_interrupt_remapping(text) is expected


@pytest.mark.parametrize('text, expected', [
    ('processor\t: 0\nvendor_id\t: GenuineIntel\n', 'intel'),
    ('vendor_id\t: AuthenticAMD\n', 'amd'),
    ('vendor_id\t: HygonGenuine\n', 'amd'),
    ('vendor_id\t: CentaurHauls\n', 'centaurhauls'),
    ('processor\t: 0\n', None),
    (None, None),
])
def test_parse_cpu_vendor(text, expected):
    assert parse_cpu_vendor(text) == expected


def test_parse_cmdline_stops_at_init_separator():
    # Everything after a bare '--' goes to init: iommu=pt there is not the kernel's.
    assert parse_cmdline('ro iommu=soft -- iommu=pt single') == [('ro', None), ('iommu', 'soft')]


def test_parse_cmdline_keeps_order_and_bare_flags():
    assert parse_cmdline('ro quiet iommu=pt pcie_acs_override=downstream,multifunction x=') == [
        ('ro', None), ('quiet', None), ('iommu', 'pt'),
        ('pcie_acs_override', 'downstream,multifunction'), ('x', '')]


@pytest.mark.parametrize('text, remapping, line, tables', [
    ('DMAR-IR: Enabled IRQ remapping in xapic mode\nACPI: DMAR 0x000000007FFE1F1A 000050 (v01 BOCHS)', True,
     'DMAR-IR: Enabled IRQ remapping in xapic mode', {'DMAR'}),
    ('AMD-Vi: Interrupt remapping enabled\nACPI: IVRS 0x0000000 0000D0 (v02 AMD)', True,
     'AMD-Vi: Interrupt remapping enabled', {'IVRS'}),
    ('DMAR: IOMMU enabled\n', None, None, set()),   # proves nothing: printed without an IOMMU too
    ('AMD-Vi: AMD IOMMUv2 functionality not available on this system\n', None, None, set()),
    ('DMAR-IR: IRQ remapping was disabled\n', False, 'DMAR-IR: IRQ remapping was disabled', set()),
    ('', None, None, set()),
])
def test_kernel_log_facts(text, remapping, line, tables):
    assert kernel_log_facts(text) == {'interrupt_remapping': remapping, 'interrupt_remapping_line': line,
                                      'default_domain': None, 'tables': tables}


@pytest.mark.parametrize('text, expected', [
    ('[    0.3] iommu: Default domain type: Passthrough (set via kernel command line)\n',
     'iommu: Default domain type: Passthrough (set via kernel command line)'),
    ('iommu: Default domain type: Translated\n', 'iommu: Default domain type: Translated'),
    ('DMAR: IOMMU enabled\n', None),
])
def test_kernel_log_default_domain(text, expected):
    found = kernel_log_facts(text)['default_domain']
    assert (found.split('] ')[-1] if found else found) == expected


@pytest.mark.parametrize('text, expected', [
    ('  CPU0\n 0:  36  0  IR-IO-APIC    2-edge      timer\n', (True, '/proc/interrupts line 2: 0: 36 0 IR-IO-APIC 2-edge timer')),
    (' 24: 1 0 PCI-MSI 49152-edge  virtio0\n 0: 36 0 IO-APIC 2-edge timer\n',
     (False, '/proc/interrupts line 1: 24: 1 0 PCI-MSI 49152-edge virtio0')),
    # one IR- chip anywhere is remapping on: the plain line before it is not the evidence
    (' 24: 1 0 PCI-MSI 49152-edge  virtio0\n 25: 0 0 IR-PCI-MSIX-0000:01:00.0 0-edge nvme0q0\n',
     (True, '/proc/interrupts line 2: 25: 0 0 IR-PCI-MSIX-0000:01:00.0 0-edge nvme0q0')),
    ('NMI:  0  0   Non-maskable interrupts\n', (None, None)),
    (None, (None, None)),
])
def test_interrupt_remapping_evidence(text, expected):
    assert interrupt_remapping_evidence(text) == expected


def test_evidence_of_each_verdict(tmp_path):
    intel_gpu_host(tmp_path)
    facts = gather_iommu_facts(str(tmp_path))
    assert facts['evidence'] == {
        'interrupt_remapping': '/proc/interrupts line 2: 0: 36 0 IR-IO-APIC 2-edge timer',
        'allow_unsafe_interrupts': 'vfio_iommu_type1 is not loaded and neither /proc/cmdline nor modprobe.d sets '
                                   'allow_unsafe_interrupts',
        'passthrough_mode': '/sys/kernel/iommu_groups/*/type: identity in 5 of 5 groups',
    }
    assert facts['allow_unsafe_interrupts'] is False


def test_passthrough_mode_from_the_kernel_log_without_group_types(tmp_path):
    intel_gpu_host(tmp_path)
    for group in (tmp_path / 'sys/kernel/iommu_groups').iterdir():
        (group / 'type').unlink()
    facts = gather_iommu_facts(str(tmp_path), kernel_log=lambda: 'iommu: Default domain type: Translated\n')
    assert (facts['passthrough_mode'], facts['evidence']['passthrough_mode']) == (
        False, 'kernel log: iommu: Default domain type: Translated')
    # without a log, the command line's iommu=pt is all that is left
    facts = gather_iommu_facts(str(tmp_path))
    assert (facts['passthrough_mode'], facts['evidence']['passthrough_mode']) == (True, '/proc/cmdline: iommu=pt')


# -- whole facts -----------------------------------------------------------------

def test_isolation_twin_nics_share_a_group_with_their_bridge(tmp_path):
    amd_twin_nic_host(tmp_path)
    devices = gather_iommu_facts(str(tmp_path))['devices']
    assert devices['0000:05:00.0']['group_peers'] == ['0000:00:02.1', '0000:06:00.0']
    assert devices['0000:05:00.0']['isolated'] is False   # the other NIC is another device
    assert devices['0000:07:00.0']['isolated'] is True    # only its bridge beside it
    assert devices['0000:09:00.0']['isolated'] is True    # alone in its group


def test_isolation_gpu_with_its_audio_function(tmp_path):
    intel_gpu_host(tmp_path)
    devices = gather_iommu_facts(str(tmp_path))['devices']
    assert devices['0000:01:00.0']['isolated'] is True
    assert devices['0000:01:00.1']['isolated'] is True
    assert devices['0000:00:1f.6']['isolated'] is True    # 00:1f.x are functions of one device


@pytest.mark.parametrize('dmar, firmware', [(True, True), (False, False)])
def test_iommu_off_host(tmp_path, dmar, firmware):
    iommu_off_host(tmp_path, dmar=dmar)
    facts = gather_iommu_facts(str(tmp_path))
    assert facts['enabled'] is False   # intel_iommu=on on the command line does not make it so
    assert facts['firmware_support'] is firmware
    assert facts['vendor'] == 'intel'  # DMAR table, or the CPU vendor without one
    assert facts['passthrough_mode'] is None
    assert facts['interrupt_remapping'] is False
    assert facts['groups'] == {}
    assert all(d['isolated'] is False and d['iommu_group'] is None for d in facts['devices'].values())


def test_kernel_log_only_where_sysfs_and_procfs_are_silent(tmp_path):
    host = iommu_off_host(tmp_path)
    calls = []

    def log():
        calls.append(1)
        return 'DMAR-IR: Enabled IRQ remapping in xapic mode\nACPI: DMAR 0x000000007FFE1F1A 000050\n'

    gather_iommu_facts(str(tmp_path), log)
    assert calls == []   # interrupts and ACPI tables answered everything
    os.unlink(tmp_path / 'proc/interrupts')
    for name in os.listdir(tmp_path / 'sys/firmware/acpi/tables'):
        os.unlink(tmp_path / 'sys/firmware/acpi/tables' / name)
    facts = gather_iommu_facts(str(tmp_path), log)
    assert calls == [1]  # read once for both questions
    assert (facts['interrupt_remapping'], facts['firmware_support'], facts['vendor']) == (True, True, 'intel')
    assert host.root == tmp_path


@pytest.mark.parametrize('types, cmdline, expected', [
    (['identity', 'identity'], 'quiet', True),
    (['DMA-FQ', 'DMA-FQ'], 'iommu=pt', False),          # the groups say what is in effect
    (['identity', 'identity', 'DMA'], 'quiet', True),   # an untrusted device forced to DMA
    ([None], 'intel_iommu=on iommu=pt', True),          # old kernel without type files
    ([None], 'intel_iommu=on', None),
])
def test_passthrough_mode(tmp_path, types, cmdline, expected):
    host = FakeHost(tmp_path).cmdline(cmdline)
    for n, type_ in enumerate(types):
        host.add_device('0000:00:%02x.0' % n, '8086', '10d3', '020000', group=n)
        if type_ is None:
            os.unlink(tmp_path / 'sys/kernel/iommu_groups' / str(n) / 'type')
        else:
            host.set_group_type(n, type_)
    assert gather_iommu_facts(str(tmp_path))['passthrough_mode'] is expected


@pytest.mark.parametrize('cmdline, expected', [
    ('quiet pcie_acs_override=downstream,multifunction', 'downstream,multifunction'),
    ('pcie_acs_override=id:8086:1533 pcie_acs_override=downstream', 'downstream'),  # the last one wins
    ('quiet', None),
])
def test_acs_override(tmp_path, cmdline, expected):
    FakeHost(tmp_path).cmdline(cmdline)
    assert gather_iommu_facts(str(tmp_path))['acs_override'] == expected


def test_vendor_from_iommu_units_when_tables_hidden(tmp_path):
    host = FakeHost(tmp_path).cpu_vendor('GenuineIntel')
    host.add_device('0000:00:00.2', '1022', '1481', '080600', group=0)
    host.iommu_unit('ivhd0', under='0000:00:00.2')
    facts = gather_iommu_facts(str(tmp_path))
    assert (facts['vendor'], facts['cpu_vendor'], facts['firmware_support']) == ('amd', 'intel', None)


# -- the boot path, from fake efivars trees ----------------------------------------

_GUID = '4a67b082-0a4c-41cf-b6c7-440b29bb8c4f'


@pytest.mark.parametrize('efivars, cmdline, expected', [
    ({'LoaderInfo-' + _GUID: 'systemd-boot 252.39-1~deb12u1', 'LoaderEntrySelected-' + _GUID: 'proxmox-6.1.0.conf',
      'LoaderSystemToken-' + _GUID: ''},
     'initrd=\\EFI\\proxmox\\6.1\\initrd.img root=UUID=0b1c ro',
     ('uefi', 'systemd-boot', 'LoaderInfo and LoaderEntrySelected (systemd-boot 252.39-1~deb12u1)')),
    ({'LoaderSystemToken-' + _GUID: '', 'BootOrder-8be4df61-93ca-11d2-aa0d-00e098032b8c': ''},
     'BOOT_IMAGE=/vmlinuz-6.1.0-50-amd64 root=UUID=0b1c ro',
     ('uefi', 'grub', 'no systemd-boot EFI variable')),
    (None, 'BOOT_IMAGE=/boot/vmlinuz-6.1.0-50-amd64 root=/dev/sda1 ro', ('bios', 'grub', 'legacy BIOS')),
])
def test_boot_path_from_a_fake_efivars_tree(tmp_path, efivars, cmdline, expected):
    host = FakeHost(tmp_path).cmdline(cmdline)
    for name, value in (efivars or {}).items():
        host.efivar(name, value)
    boot = gather_iommu_facts(str(tmp_path))['boot_path']
    assert (boot['firmware'], boot['loader']) == expected[:2]
    assert expected[2] in boot['reason'], boot['reason']


def test_variant_driver_guests_name_each_setting_and_its_driver_option(tmp_path):
    """Only devices on a vfio-pci variant get an entry; driver=keep and a mapping are seen as Proxmox reads them."""
    host = vfio_variant_host(tmp_path)
    host.write('etc/pve/qemu-server/101.conf', 'hostpci0: 0000:41:00.1,pcie=1,driver=keep\n')
    host.write('etc/pve/qemu-server/102.conf', 'hostpci0: mapping=xegpu\nhostpci1: 46:00.0\n')
    host.write('etc/pve/mapping/pci.cfg', 'xegpu\n\tmap id=8086:e20b,node=pve1,path=0000:42:00.0\n')
    facts = gather_iommu_facts(str(tmp_path), node='pve1')
    assert facts['variant_driver_guests'] == {
        '0000:41:00.1': [{'where': 'guest 101 (hostpci0)', 'driver': 'keep'}],
        '0000:42:00.0': [{'where': 'guest 102 (hostpci0, mapping xegpu)', 'driver': None}],
        '0000:43:00.0': [],
    }
