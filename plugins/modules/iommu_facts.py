#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: contributors to vfio.passthrough
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
---
module: iommu_facts
short_description: Gather IOMMU, IOMMU group and PCI device facts for VFIO passthrough
version_added: 0.1.0
description:
  - Reads C(/sys) and C(/proc) below O(root) and returns C(ansible_facts.iommu) - whether the
    IOMMU is on, its vendor, interrupt remapping, passthrough mode, the IOMMU groups and every
    PCI device with its driver, group peers, isolation, network interfaces and reset methods.
  - Marks host-critical devices (RV(ansible_facts.iommu.devices.host_critical)) - the NIC of the
    default route, the NIC Ansible connects through, ports of bridges/bonds/VLANs carrying
    them, the storage controller of C(/), C(/boot) and C(/boot/efi) - so that nothing takes
    them away from the host; and the kernel modules the host needs for them
    (C(host_critical_modules)).
  - "The IOMMU counts as on when C(/sys/class/iommu) has an entry or IOMMU groups exist.
    The kernel log line C(DMAR: IOMMU enabled) is not used; a machine without an IOMMU
    prints it too when booted with C(intel_iommu=on)."
  - The kernel log (C(journalctl -k -b), else C(dmesg)) is read only for what sysfs and
    procfs do not show, and only when O(root=/).
  - Changes nothing.
author:
  - vfio.passthrough developers (!UNKNOWN)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - ansible.builtin.action_common_attributes.facts
  - vfio.passthrough.host_critical
attributes:
  check_mode:
    support: full
    details: The module never changes anything, so check mode gathers the same facts.
  diff_mode:
    support: none
    details: There is nothing to diff.
  facts:
    support: full
  platform:
    support: full
    platforms: [debian]
    details: Linux with sysfs (Debian 13 / Proxmox VE 9, Debian 12 / Proxmox VE 8). ZFS pools are inspected with C(zpool status -P).
notes:
  - Inside a container C(/sys) shows no IOMMU; point O(root) at a copy of a real tree instead.
seealso:
  - module: vfio.passthrough.kernel_cmdline
  - module: vfio.passthrough.driver_blacklist
'''

EXAMPLES = r'''
- name: Gather IOMMU facts, protecting the NIC Ansible reaches the host through
  vfio.passthrough.iommu_facts:
    protect_addresses:
      - "{{ ansible_host }}"

- name: Stop when the IOMMU is off
  ansible.builtin.assert:
    that: ansible_facts.iommu.enabled
    fail_msg: >-
      No IOMMU groups. Enable {{ 'VT-d' if ansible_facts.iommu.vendor == 'intel' else 'AMD-Vi' }}
      in the firmware{{ '' if ansible_facts.iommu.firmware_support else ' (no DMAR/IVRS table found)' }}
      and boot with the IOMMU kernel arguments.

- name: List GPUs that can be passed through on their own
  ansible.builtin.debug:
    msg: "{{ item.key }} {{ item.value.vendor_id }}:{{ item.value.device_id }} group {{ item.value.iommu_group }}"
  loop: "{{ ansible_facts.iommu.devices | dict2items }}"
  when:
    - item.value.class.startswith('03')
    - item.value.isolated
    - not item.value.host_critical

- name: Read a chroot's tree (no command runs, the live kernel log is not read)
  vfio.passthrough.iommu_facts:
    root: /srv/rescue
'''

RETURN = r'''
ansible_facts:
  description: Facts added to the host.
  returned: always
  type: dict
  contains:
    iommu:
      description: IOMMU and PCI device facts.
      returned: always
      type: dict
      contains:
        enabled:
          description: An IOMMU is active (C(sys/class/iommu) has an entry or IOMMU groups exist).
          type: bool
          returned: always
          sample: true
        vendor:
          description:
            - C(intel) or C(amd), from the ACPI DMAR or IVRS table, else the IOMMU units, else the CPU vendor.
            - null when none of these tells.
          type: str
          returned: always
          sample: intel
        cpu_vendor:
          description: CPU vendor from C(proc/cpuinfo) (C(intel), C(amd), or the raw vendor_id in lower case).
          type: str
          returned: always
          sample: intel
        firmware_support:
          description:
            - The firmware publishes a DMAR (VT-d) or IVRS (AMD-Vi) ACPI table, so the IOMMU is switched on there.
            - null when the ACPI tables cannot be seen.
          type: bool
          returned: always
          sample: true
        interrupt_remapping:
          description:
            - Interrupt remapping is on (C(IR-) interrupt chips in C(proc/interrupts), else the kernel log).
            - null when unknown.
          type: bool
          returned: always
          sample: true
        allow_unsafe_interrupts:
          description:
            - C(vfio_iommu_type1 allow_unsafe_interrupts) is true, so vfio assigns devices without interrupt
              remapping. The live module parameter while the module is loaded, else what modprobe would pass
              it (C(/proc/cmdline), then C(modprobe.d) in modprobe's order, the last setting winning).
            - null when a setting cannot be read as a bool.
          type: bool
          returned: always
          sample: false
        evidence:
          description:
            - Where each verdict above came from, quoted so a message can name it; null when nothing told.
          type: dict
          returned: always
          contains:
            interrupt_remapping:
              description: The C(/proc/interrupts) or kernel log line that decided RV(ansible_facts.iommu.interrupt_remapping).
              type: str
              sample: "/proc/interrupts line 2: 0: 36 0 IR-IO-APIC 2-edge timer"
            allow_unsafe_interrupts:
              description: The parameter file, command line argument or C(modprobe.d) line that decided RV(ansible_facts.iommu.allow_unsafe_interrupts).
              type: str
              sample: "/sys/module/vfio_iommu_type1/parameters/allow_unsafe_interrupts is N"
            passthrough_mode:
              description: The group types counted, or the kernel log line or C(iommu=) argument, that decided RV(ansible_facts.iommu.passthrough_mode).
              type: str
              sample: "/sys/kernel/iommu_groups/*/type: identity in 7 of 7 groups"
        passthrough_mode:
          description:
            - true when DMA passes the IOMMU untranslated (C(iommu=pt), group type C(identity)),
              false when translated (C(DMA), C(DMA-FQ)).
            - "Decided by the type most groups have, else by the kernel log's C(iommu: Default domain type:)
              line, else by C(iommu=) on the command line; null when the IOMMU is off or nothing tells."
          type: bool
          returned: always
          sample: true
        acs_override:
          description: The value of C(pcie_acs_override=) on the running kernel's command line, or null.
          type: str
          returned: always
          sample: downstream,multifunction
        cmdline:
          description: The running kernel's command line (C(proc/cmdline)).
          type: str
          returned: always
          sample: BOOT_IMAGE=/boot/vmlinuz-6.8.12-4-pve root=/dev/mapper/pve-root ro quiet intel_iommu=on iommu=pt
        boot_path:
          description:
            - Which path the firmware took to the running kernel, and why it is believed.
            - C(firmware) is V(uefi) (C(sys/firmware/efi) exists) or V(bios).
            - C(loader) is V(systemd-boot) (it set the EFI variable LoaderInfo or LoaderEntrySelected),
              V(grub) (GRUB 2.12 set LoaderInfo to its own name, or no such variable and C(BOOT_IMAGE=) on the
              command line) or null (not recognised).
          type: dict
          returned: always
          sample: {firmware: uefi, loader: systemd-boot,
                   reason: "UEFI boot; systemd-boot set the EFI variables LoaderInfo and LoaderEntrySelected
                            (systemd-boot 252.39-1~deb12u1)"}
        kernel:
          description: The running kernel's release (C(proc/sys/kernel/osrelease)), or null.
          type: str
          returned: always
          sample: 6.8.12-4-pve
        iommu_units:
          description: Entries of C(sys/class/iommu) (C(dmar0), C(ivhd0)).
          type: list
          elements: str
          returned: always
          sample: [dmar0, dmar1]
        groups:
          description: IOMMU groups, keyed by the group number as a string.
          type: dict
          returned: always
          sample: {"1": {"devices": ["0000:00:01.0", "0000:01:00.0", "0000:01:00.1"], "type": "identity"}}
          contains:
            devices:
              description: PCI addresses of the group's members, sorted.
              type: list
              elements: str
            type:
              description: The group's default domain type (C(identity), C(DMA), C(DMA-FQ)), or null.
              type: str
        devices:
          description: Every PCI function, keyed by its address (C(0000:03:00.0)).
          type: dict
          returned: always
          contains:
            vendor_id:
              description: Vendor ID, 4 lowercase hex digits without C(0x).
              type: str
              sample: 10de
            device_id:
              description: Device ID, 4 lowercase hex digits.
              type: str
              sample: 1b80
            subsystem_vendor_id:
              description: Subsystem vendor ID.
              type: str
              sample: '1043'
            subsystem_device_id:
              description: Subsystem device ID.
              type: str
              sample: 85aa
            class:
              description: Class code, 6 lowercase hex digits (class, subclass, programming interface).
              type: str
              sample: '030000'
            class_name:
              description: Name of the class and subclass (C(VGA compatible controller), C(Ethernet controller)).
              type: str
              sample: VGA compatible controller
            driver:
              description: The bound driver's name (C(virtio-pci), C(vfio-pci)), or null.
              type: str
              sample: nouveau
            driver_module:
              description: The kernel module providing the driver (C(virtio_pci)); null when built in or unbound.
              type: str
              sample: nouveau
            vfio_driver:
              description:
                - The driver holding the device for a VM, or null. C(vfio-pci), or one of its variant drivers
                  (C(mlx5_vfio_pci), C(hisi_acc_vfio_pci), C(nvgrace_gpu_vfio_pci), C(xe_vfio_pci), ...),
                  recognised by what its module is built on (it holds C(vfio_pci_core) in
                  C(/sys/module/vfio_pci_core/holders)), not by its name.
              type: str
              sample: vfio-pci
            iommu_group:
              description: The IOMMU group number, or null without an IOMMU.
              type: int
              sample: 1
            group_peers:
              description: The other members of the device's IOMMU group.
              type: list
              elements: str
              sample: ["0000:00:01.0", "0000:01:00.1"]
            isolated:
              description:
                - Every other member of the group is a PCI-to-PCI bridge (class C(0604xx)) or another
                  function of the same device, so the device can be passed through without taking
                  unrelated devices along. false without an IOMMU group.
              type: bool
              sample: true
            netdevs:
              description:
                - Network interfaces on this device, found from C(sys/class/net) (virtio NICs included).
                - An interface name is bytes to the kernel; it is shown as UTF-8 text, each byte that is not part of
                  a printable UTF-8 character written C(\xNN) and a backslash written C(\\), so the form is
                  lossless. Host-critical reasons name interfaces the same way.
              type: list
              elements: str
              sample: [eno1]
            reset_methods:
              description: Reset methods from C(reset_method) (C(flr), C(bus), ...); empty when the file is absent.
              type: list
              elements: str
              sample: [flr, bus]
            sriov_totalvfs:
              description: Virtual functions the device supports, or null without SR-IOV.
              type: int
              sample: 7
            sriov_numvfs:
              description: Virtual functions enabled now, or null without SR-IOV.
              type: int
              sample: 0
            virtfns:
              description:
                - An SR-IOV physical function's virtual functions now, by index (C(virtfn0) first); empty
                  for every other device.
              type: list
              elements: str
              sample: ["0000:01:10.0", "0000:01:10.2"]
            physfn:
              description: A virtual function's physical function (its C(physfn) link), or null.
              type: str
              sample: "0000:01:00.0"
            boot_vga:
              description: The firmware used this device as the boot display.
              type: bool
              sample: true
            header_type:
              description:
                - The config space header type, byte C(0x0E) of C(config) without its multi-function bit;
                  0 for a normal device, 1 for a PCI-to-PCI bridge, 2 for a CardBus bridge. vfio-pci takes
                  only 0. null when C(config) cannot be read (a partial copy of sysfs).
              type: int
              sample: 0
            host_critical:
              description: Why the host cannot give this device away; empty when it can.
              type: list
              elements: str
              sample: ["NIC eno1 is a port of vmbr0, which carries the default route"]
            boot_framebuffer:
              description:
                - The firmware framebuffer (C(BOOTFB), C(simplefb), C(simple-framebuffer), C(simpledrm), C(efifb)
                  or C(vesafb) in C(/proc/iomem)) lying inside one of this display device's BARs (from its sysfs
                  C(resource) file), or null. While it is claimed vfio-pci cannot reserve that BAR.
                - Addresses are hex text; C(bar) is the BAR index.
              type: dict
              sample: {name: BOOTFB, start: "0xe0000000", end: "0xe07e8fff", bar: 1, bar_start: "0xe0000000",
                       bar_end: "0xefffffff"}
        vfio_bound:
          description: Addresses of the devices bound to vfio-pci or a variant of it now (see RV(ansible_facts.iommu.devices.vfio_driver)).
          type: list
          elements: str
          returned: always
          sample: ["0000:01:00.0"]
        iomem:
          description:
            - How C(/proc/iomem) could be read, which decides whether RV(ansible_facts.iommu.devices.boot_framebuffer)
              is evidence. C(readable); C(hidden) when every address is zero (the kernel shows addresses to root
              only), so no framebuffer can be placed; C(unreadable) when the file is missing.
          type: str
          returned: always
          choices: [readable, hidden, unreadable]
          sample: readable
        variant_driver_guests:
          description:
            - For each device on a vfio-pci variant driver (such as C(mlx5_vfio_pci)), the guest C(hostpciN)
              settings of this node naming it (directly or through a resource mapping), each with its C(driver)
              option (C(keep) or null). Proxmox VE 9.1 and later rebind such a device to plain vfio-pci at VM
              start unless the setting has C(driver=keep).
          type: dict
          returned: always
          sample: {"0000:41:00.2": [{where: "guest 101 (hostpci0)", driver: keep}]}
        vfio_device_cdev:
          description:
            - C(CONFIG_VFIO_DEVICE_CDEV) of every installed kernel (C(lib/modules/<release>) or
              C(boot/vmlinuz-<release>)), from C(boot/config-<release>) - C(y) where the per-device VFIO files
              C(/dev/vfio/devices/vfioN) exist, C(n) where the option is not set, C(unreadable) without a
              readable config.
          type: dict
          returned: always
          sample: {"6.12.41+deb13-amd64": y, "7.0.13+deb13-amd64": y}
        host_critical_modules:
          description:
            - The kernel modules the host cannot lose, each with why, from the same verdict as the devices'
              C(host_critical) (which M(vfio.passthrough.driver_blacklist) refuses); the drivers of every
              device above the disks of C(/), C(/boot) and C(/boot/efi), their device-mapper and md layers
              and filesystems, the bridge, bond, VLAN and NIC drivers of the management path, and what
              those load first (C(modules.dep), softdeps) in every kernel under C(lib/modules).
          type: dict
          returned: always
          sample: {"crc16": ["crc16: needed by ext4 (filesystem of /) via modules.dep of 6.1.0-27-amd64"]}
'''

import socket

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.vfio.passthrough.plugins.module_utils.files._files import utf8_results
from ansible_collections.vfio.passthrough.plugins.module_utils.host_safety._host_critical import (
    check_host_critical_args, collect_host_verdict, host_critical_arg_spec,
)
from ansible_collections.vfio.passthrough.plugins.module_utils.pci._iommu_facts import gather_iommu_facts
from ansible_collections.vfio.passthrough.plugins.module_utils.host_safety._module_deps import describe_need
from ansible_collections.vfio.passthrough.plugins.module_utils.pci._net_interfaces import read_net_interfaces
from ansible_collections.vfio.passthrough.plugins.module_utils.pci._pci import C_LOCALE
from ansible_collections.vfio.passthrough.plugins.module_utils.pci._sysfs import SysfsTree


def _kernel_log(module):
    """The current boot's kernel messages: journald first (survives ring-buffer wrap), else dmesg."""
    for name, args in (('journalctl', ['-k', '-b', '--no-pager', '-o', 'cat']), ('dmesg', [])):
        binary = module.get_bin_path(name)
        if binary is None:
            continue
        rc, out, _err = module.run_command([binary] + args, environ_update=C_LOCALE)
        if rc == 0 and out.strip():
            return out
    return ''


def main():
    module = AnsibleModule(
        argument_spec=host_critical_arg_spec(),
        supports_check_mode=True,
    )
    # names read from sysfs are bytes: whatever the readers did not show must not make the result invalid UTF-8
    utf8_results(module)
    check_host_critical_args(module)

    tree = SysfsTree(module.params['root'])
    kernel_log = (lambda: _kernel_log(module)) if tree.live else None
    # PCI devices first: their directories, once listed, tell which path
    # components are links, so the interfaces below them resolve with fewer syscalls.
    # a live host's guests are its node's; a copied root may hold any node's
    node = socket.gethostname().split('.', 1)[0] if tree.live else None
    facts = gather_iommu_facts(tree, kernel_log, node=node)
    interfaces = read_net_interfaces(tree)
    verdict = collect_host_verdict(module, tree, module.params['protect_addresses'], interfaces)
    for address, reasons in verdict['devices'].items():
        if address in facts['devices']:
            facts['devices'][address]['host_critical'] = reasons
    facts['host_critical_modules'] = {name: describe_need(needs) for name, needs in sorted(verdict['modules'].items())}
    module.exit_json(changed=False, ansible_facts={'iommu': facts})


if __name__ == '__main__':
    main()
