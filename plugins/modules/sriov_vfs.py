#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: contributors to vfio.passthrough
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
---
module: sriov_vfs
short_description: Create SR-IOV virtual functions at every boot and bind the chosen ones to vfio-pci by address
version_added: 0.2.0
description:
  - Writes a udev rule (O(rules)) that runs a script (O(script)) each time the driver of a listed physical
    function (PF) binds, at boot and later. The script sets the PF's C(sriov_drivers_autoprobe) to 0, writes
    C(sriov_numvfs) (0 first when a count is already set, since the kernel refuses one count over another), sets
    C(driver_override) to C(vfio-pci) on the chosen VFs by address and probes every VF, so the others get
    their own driver (C(igbvf), C(iavf), ...). Never by C(ids=), which every VF of one model shares.
  - Both files are owned whole by this module (the header "# Managed by Ansible (vfio.passthrough.sriov_vfs)").
    An empty O(pfs) removes them and nothing else; VFs that exist stay until the next boot.
  - Changes the running VFs too (the same script, the same arguments) when that is safe, that is when the PF is not
    host-critical (the verdict of M(vfio.passthrough.iommu_facts)) and none of its VFs is in use (its
    C(/dev/vfio) group file or its C(/dev/vfio/devices) device file open, or named in a guest's C(hostpciN)
    or a resource mapping in C(/etc/pve), read below O(root)).
    Otherwise the change is deferred to the next boot and RV(reboot_required) says so.
  - A PF with a VF the host runs on (its netdev carries the default route or the address Ansible uses, or is a
    port of the bridge or bond that does, or a disk under /, /boot or the ESP sits behind it) never changes its
    count live, since every count change goes through 0, which removes every VF. It waits for the next boot, or
    is refused when the new count (or dropping the PF from O(pfs) while O(rules) still makes its VFs) would leave
    that VF out even after the boot. The message names the VF and what the host uses it for.
  - Every request is checked before any file is read or written; a refusal names the value and why.
author:
  - vfio.passthrough developers (!UNKNOWN)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - vfio.passthrough.transaction
  - vfio.passthrough.host_critical
options:
  pfs:
    description: The physical functions and their VFs. Empty removes the files.
    type: list
    elements: dict
    default: []
    suboptions:
      pf:
        description:
          - The PF's PCI address, C(0000:01:00.0) or C(01:00.0). The whole-device form C(01:00) is refused,
            since on a multi-port card it names several PFs.
        type: str
        required: true
      vfs:
        description: How many VFs, from 0 to the PF's C(sriov_totalvfs).
        type: int
        required: true
      vfio:
        description: C(all) (the default), or the list of VF indexes (0 is C(virtfn0)) that go to vfio-pci; the others stay with the host.
        type: raw
        default: all
  passthrough:
    description: Addresses passed through whole (the role's C(pcie_passthrough_devices)); a listed PF among them is refused.
    type: list
    elements: str
    default: []
  apply:
    description: Change the running VFs when that is safe (never in check mode, never for a O(root) other than C(/)).
    type: bool
    default: true
  node:
    description: This host's node name in C(/etc/pve/mapping/pci.cfg); default the short host name.
    type: str
  script:
    description: The script the rule runs (mode 0755 when created).
    type: path
    default: /usr/local/sbin/vfio-passthrough-sriov
  rules:
    description: The udev rules file (mode 0644 when created).
    type: path
    default: /etc/udev/rules.d/70-vfio-passthrough-sriov.rules
attributes:
  check_mode:
    support: full
    details: Reports the same changes, live actions and diff a real run would; writes nothing and runs nothing.
  diff_mode:
    support: full
    details: One before/after entry per file that changes, with the file name as header.
  platform:
    platforms: debian
    details: Debian 12/13 and Proxmox VE 8/9 with systemd-udevd.
notes:
  - Why udev and not a systemd unit. A unit has no dependency on "this PCI device's driver has bound", the
    one moment VFs can be made; a udev rule on the PF's C(bind) event is exactly that, and its C(add) event
    covers PFs whose driver bound in the initramfs.
seealso:
  - module: vfio.passthrough.iommu_facts
  - module: vfio.passthrough.vfio_address_binding
'''

EXAMPLES = r'''
- name: Four VFs on the second port of an X710, the first two for VMs, the others for the host
  vfio.passthrough.sriov_vfs:
    pfs:
      - pf: '0000:03:00.1'
        vfs: 4
        vfio: [0, 1]

- name: Remove the VF persistence
  vfio.passthrough.sriov_vfs:
    pfs: []
'''

RETURN = r'''
pfs:
  description: The request as checked, sorted by PF; C(vfio) lists indexes.
  returned: always
  type: list
  elements: dict
  sample: [{"pf": "0000:03:00.1", "vfs": 4, "vfio": [0, 1]}]
files_changed:
  description: Paths changed (in check mode, that would change).
  returned: always
  type: list
  elements: str
  sample: [/etc/udev/rules.d/70-vfio-passthrough-sriov.rules]
live:
  description: PFs whose running VFs were changed now (in check mode, would be), each with what differed.
  returned: always
  type: list
  elements: dict
  sample: [{"pf": "0000:03:00.1", "why": "0000:03:00.1 has 0 VFs, 4 asked"}]
deferred:
  description: PFs whose change waits for the next boot, each with why.
  returned: always
  type: list
  elements: dict
  sample: [{"pf": "0000:03:00.0", "why": "0000:03:00.0 has 2 VFs, 4 asked; it is host-critical (...)"}]
reboot_required:
  description: True when a change was deferred to the next boot.
  returned: always
  type: bool
notes:
  description: How typed addresses were read (C(03:00.1) means C(0000:03:00.1)).
  returned: always
  type: list
  elements: str
commands:
  description: The argv run, in order.
  returned: always
  type: list
  elements: list
diff:
  description: Before/after text of each changed file.
  returned: when diff mode is on
  type: list
  elements: dict
'''

import socket

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.vfio.passthrough.plugins.module_utils.host_safety._host_critical import (
    check_host_critical_args, collect_host_critical, host_critical_arg_spec,
)
from ansible_collections.vfio.passthrough.plugins.module_utils.pci._pci_devices import read_pci_devices
from ansible_collections.vfio.passthrough.plugins.module_utils.proxmox._pve_guests import read_guest_references
from ansible_collections.vfio.passthrough.plugins.module_utils.sriov._sriov_boot import (
    OWNER, RULES, SCRIPT, managed_pfs, render, script_argv,
)
from ansible_collections.vfio.passthrough.plugins.module_utils.sriov._sriov_change import (
    NONE, decide, dropped_host_vfs, now_and_at_boot, vfs_in_use,
)
from ansible_collections.vfio.passthrough.plugins.module_utils.sriov._sriov_request import check_request
from ansible_collections.vfio.passthrough.plugins.module_utils.pci._vfio_open import vfio_users
from ansible_collections.vfio.passthrough.plugins.module_utils.pci._sysfs import SysfsTree
from ansible_collections.vfio.passthrough.plugins.module_utils.files._transaction import TRANSACTION_ARGS, Transaction


def _host_verdict(module, tree, devices):
    """Mark each device the host runs on with its ``host_critical`` reasons, as iommu_facts does for the plan.

    Read only when a PF needs a change or the rules file names a PF with VFs:
    otherwise nothing this run does can take a VF away.
    """
    critical = collect_host_critical(module, tree, module.params['protect_addresses'])
    for address, reasons in critical.items():
        if address in devices:
            devices[address]['host_critical'] = reasons
    return critical


def _decisions(module, tree, entries, devices, critical):
    """decide() for every entry; the in-use scan is read only when a PF needs a change."""
    if critical is None:
        return [decide(e, devices) for e in entries]
    users = vfio_users(tree, devices)
    node = module.params['node'] or socket.gethostname().split('.', 1)[0]
    references = read_guest_references(tree, devices, node)
    return [decide(e, devices, critical.get(e['pf'], []), vfs_in_use(e['pf'], devices, users, references))
            for e in entries]


def _read(path):
    try:
        with open(path, 'rb') as handle:
            return handle.read().decode('utf-8', 'replace')
    except (OSError, ValueError):
        return None


def main():
    module = AnsibleModule(
        argument_spec=dict(
            pfs=dict(type='list', elements='dict', default=[], options=dict(
                pf=dict(type='str', required=True),
                vfs=dict(type='int', required=True),
                vfio=dict(type='raw', default='all'),
            )),
            passthrough=dict(type='list', elements='str', default=[], no_log=False),
            apply=dict(type='bool', default=True),
            node=dict(type='str'),
            script=dict(type='path', default=SCRIPT),
            rules=dict(type='path', default=RULES),
            **host_critical_arg_spec(),
            **TRANSACTION_ARGS
        ),
        supports_check_mode=True,
    )
    params = module.params
    if params['script'] == params['rules']:
        module.fail_json(msg='script and rules must be two different files, got %s twice' % params['script'])
    check_host_critical_args(module)
    tree = SysfsTree(params['root'])
    devices = read_pci_devices(tree)
    entries, errors, notes = check_request(params['pfs'], devices, params['passthrough'], name='pfs')
    if errors:
        module.fail_json(msg='; '.join(errors) + '; nothing was written', errors=errors)
    rules_text = _read(params['rules'])
    critical = None
    if any(decide(e, devices)['action'] != NONE for e in entries) or \
            any((devices.get(pf) or {}).get('virtfns') for pf in managed_pfs(rules_text)):
        # The same request checked again against what the host runs on: the plan's rule, on this host's verdict.
        critical = _host_verdict(module, tree, devices)
        entries, errors, notes = check_request(params['pfs'], devices, params['passthrough'], name='pfs')
        errors += dropped_host_vfs(entries, devices, rules_text)
        if errors:
            module.fail_json(msg='; '.join(errors) + '; nothing was written', errors=errors)
    decisions = _decisions(module, tree, entries, devices, critical)
    held_back = None if params['apply'] else 'apply is false'
    if not tree.live:
        held_back = 'root is %s, not the running system' % params['root']
    live, deferred = now_and_at_boot(decisions, held_back)
    with Transaction(module) as tx:
        for path, text, mode in render(entries, params['script'], params['rules']):
            tx.change(path, tx.read(path, OWNER if path == params['rules'] else None), text, mode=mode)
        commands = []
        if tree.live and params['rules'] in tx.files_changed:
            # udevd reads its rules once; a PF bound later (hotplug, driver reload) needs the new one.
            commands.append(['udevadm', 'control', '--reload'])
        now = [d['pf'] for d in live]
        commands += [script_argv(e, params['script']) for e in entries if e['pf'] in now]
        result = dict(changed=bool(live), pfs=entries, live=live, deferred=deferred, reboot_required=bool(deferred),
                      notes=notes)
        tx.finish(result, commands, ran='commands')


if __name__ == '__main__':
    main()
