#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: contributors to vfio.passthrough
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
---
module: driver_blacklist
short_description: Keep host drivers off devices meant for PCI passthrough
version_added: 0.1.0
description:
  - Writes C(blacklist NAME) (and with O(hard=true) C(install NAME /bin/false)) for each
    driver to a modprobe.d file, then runs C(update-initramfs -u -k all) so the
    blacklist also holds in early boot. If that fails, the file is put back byte for
    byte and the task fails.
  - Reports which devices each driver drives now (RV(in_use)), following both the PCI
    driver (C(virtio_pci)) and the driver of the network interface on top of it (C(virtio_net)).
  - "Refuses, writing nothing, to blacklist a driver of a host-critical device: the NIC of the
    default route, the NIC holding the address Ansible connects to (SSH_CONNECTION) or one of
    O(protect_addresses), a port, slave or lower link of a bridge, bond or VLAN carrying those,
    or the storage controller of C(/), C(/boot) or C(/boot/efi). O(force=true) overrides this
    and still warns."
  - "Refuses, the same way, a module that the host loads itself for those: the drivers of every device above
    the disks under C(/), C(/boot) and C(/boot/efi) (C(virtio_blk) and C(virtio_pci), C(sd_mod) and C(ahci),
    C(nvme)), their device-mapper and md layers, the filesystems of those mounts, and the bridge, bond, VLAN
    and NIC drivers of the management path, read from sysfs. With O(hard=true) also every module those
    load first (C(modules.dep), C(modules.softdep) and modprobe.d C(softdep) lines) in any kernel under
    C(/lib/modules). The message names the module, what it serves and the chain, for example
    C(crc16: needed by ext4 (filesystem of /) via modules.dep of 6.1.0-27-amd64). A module built into a
    kernel cannot be blacklisted there; that is warned about, not refused."
  - A driver already blacklisted by another C(*.conf) file in O(modprobe_dir) is not written
    again; RV(already_blacklisted) says where it is.
  - "O(path) belongs to this module when it does not exist or starts with
    the header line \"# Managed by Ansible (vfio.passthrough.driver_blacklist): manual edits will be overwritten\".
    Any other existing file (for example C(/etc/modprobe.d/blacklist.conf)) is shared: only the
    lines between C(# BEGIN vfio.passthrough.driver_blacklist) and
    C(# END vfio.passthrough.driver_blacklist) are managed and everything else stays byte for byte."
author:
  - vfio.passthrough developers (!UNKNOWN)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - vfio.passthrough.transaction
  - vfio.passthrough.host_critical
options:
  drivers:
    description:
      - Kernel module names to blacklist (letters, digits, C(_) and C(-); C(-) and C(_) are equal).
    type: list
    elements: str
    required: true
  state:
    description: C(present) blacklists the drivers; C(absent) removes what this module wrote.
    type: str
    choices: [present, absent]
    default: present
  path:
    description:
      - The modprobe.d file to write. It is not moved by O(root), which only says where
        C(sys/) and C(proc/) are read.
    type: path
    default: /etc/modprobe.d/vfio-passthrough-blacklist.conf
  hard:
    description:
      - Also write C(install NAME /bin/false), which stops the module from loading even
        as another module's dependency or by explicit C(modprobe NAME).
    type: bool
    default: false
  update_initramfs:
    description: Run C(update-initramfs -u -k all) after a change (never in check mode).
    type: bool
    default: true
  force:
    description: Blacklist even a driver of a host-critical device (warns). The host may become unreachable.
    type: bool
    default: false
  modprobe_dir:
    description:
      - Directory scanned for existing blacklists (C(*.conf)).
    type: path
    default: /etc/modprobe.d
attributes:
  check_mode:
    support: full
    details: Reports the same changes, refusals and diff a real run would; writes nothing and runs nothing.
  diff_mode:
    support: full
  platform:
    platforms: debian
    details: Debian 13 / Proxmox VE 9 and Debian 12 / Proxmox VE 8 with kmod and initramfs-tools.
notes:
  - The blacklist takes effect at the next boot; RV(reboot_required) says when one is due.
  - C(blacklist) only stops loading by device alias. A driver that another module needs,
    or that is built into the kernel, still loads; use O(hard=true) for the former.
seealso:
  - module: vfio.passthrough.vfio_modules
'''

EXAMPLES = r'''
- name: Keep the host's ixgbe driver off the NICs handed to a firewall VM
  vfio.passthrough.driver_blacklist:
    drivers: [ixgbe]
    protect_addresses: ["{{ ansible_host }}"]

- name: Keep nouveau and nvidiafb away from a passthrough GPU, even as dependencies
  vfio.passthrough.driver_blacklist:
    drivers: [nouveau, nvidiafb]
    hard: true

- name: Undo
  vfio.passthrough.driver_blacklist:
    drivers: [ixgbe]
    state: absent
'''

RETURN = r'''
drivers:
  description: The requested drivers, normalised with C(_).
  returned: always
  type: list
  elements: str
  sample: [ixgbe]
in_use:
  description:
    - For each requested driver, the devices it drives now.
    - C(interface) is shown as M(vfio.passthrough.iommu_facts) shows netdevs (C(\xNN) for a byte that is not
      printable UTF-8, C(\\) for a backslash).
  returned: always
  type: dict
  sample: {virtio_net: [{address: '0000:00:02.0', interface: ens2}], ixgbe: []}
already_blacklisted:
  description: Requested drivers already blacklisted by another file in O(modprobe_dir), and that file.
  returned: always
  type: dict
  sample: {nvidiafb: /etc/modprobe.d/pve-blacklist.conf}
files_changed:
  description: Paths changed (in check mode, that would change).
  returned: always
  type: list
  elements: str
initramfs_updated:
  description: Whether C(update-initramfs) ran successfully.
  returned: always
  type: bool
reboot_required:
  description: True when the file changed, so the running system does not reflect it yet.
  returned: always
  type: bool
command:
  description: The argv run, or null when nothing was run.
  returned: always
  type: list
  elements: str
  sample: [/usr/sbin/update-initramfs, -u, -k, all]
diff:
  description: Before/after text of the changed file.
  returned: when diff mode is on
  type: list
  elements: dict
'''

import glob
import os

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.vfio.passthrough.plugins.module_utils.files._files import read_text
from ansible_collections.vfio.passthrough.plugins.module_utils.host_safety._host_critical import (
    check_host_critical_args, collect_host_verdict, host_critical_arg_spec,
)
from ansible_collections.vfio.passthrough.plugins.module_utils.host_safety._module_deps import (
    Kernel, blacklist_problems, read_kernels,
)
from ansible_collections.vfio.passthrough.plugins.module_utils.modprobe._modprobe import (
    check_module_names, is_owned, modprobe_keys, outside_block, parse_modprobe, plan_file,
)
from ansible_collections.vfio.passthrough.plugins.module_utils.files._ownership import managed_lines
from ansible_collections.vfio.passthrough.plugins.module_utils.pci._net_interfaces import module_usage
from ansible_collections.vfio.passthrough.plugins.module_utils.pci._sysfs import SysfsTree
from ansible_collections.vfio.passthrough.plugins.module_utils.files._transaction import TRANSACTION_ARGS, Transaction

OWNER = 'driver_blacklist'


def find_blacklisted(modprobe_dir, own_path, own_text, drivers):
    """{driver: file} for drivers another file (or the admin's part of ours) blacklists already."""
    found = {}
    own_real = os.path.realpath(own_path)
    for conf in sorted(glob.glob(os.path.join(glob.escape(modprobe_dir), '*.conf'))):
        if os.path.realpath(conf) == own_real:
            if own_text is None or is_owned(own_text, OWNER):
                continue
            text = outside_block(own_text, OWNER, own_path)
        elif not os.path.isfile(conf):
            continue
        else:
            text = read_text(conf) or ''
        for directive in parse_modprobe(text):
            if directive.kind == 'blacklist' and directive.module in drivers:
                found.setdefault(directive.module, conf)
    return found


def refuse_critical(module, drivers, in_use):
    """Fail (or, with force, warn) when a driver drives a host-critical device or is part of its module stack."""
    tree = SysfsTree(module.params['root'])
    kernels = read_kernels(tree) or [Kernel.without_files()]
    verdict = collect_host_verdict(module, tree, module.params['protect_addresses'], kernels=kernels)
    critical = verdict['devices']
    problems, named = [], set()
    for driver in drivers:
        for use in in_use[driver]:
            reasons = critical.get(use['address']) or []
            if reasons:
                named.add(driver)
                problems.append('%s drives %s (interface %s), which is host-critical: %s'
                                % (driver, use['address'], use['interface'] or 'none', '; '.join(reasons)))
    stack, notes = blacklist_problems([d for d in drivers if d not in named], verdict['modules'],
                                      module.params['hard'], kernels)
    problems += stack
    for note in notes:
        module.warn(note)
    if not problems:
        return
    if module.params['force']:
        for problem in problems:
            module.warn('force=true: blacklisting anyway, although %s' % problem)
        return
    module.fail_json(msg='refusing to blacklist: %s. Set force=true to do it anyway.' % ' | '.join(problems),
                     in_use=in_use)


def kept_lines(text, drivers):
    """This module's lines in ``text`` that name none of ``drivers``: what state=absent leaves."""
    kept = []
    for line in managed_lines(text, OWNER):
        directive = parse_modprobe(line + '\n')
        if not (directive and directive[0].module in drivers):
            kept.append(line)
    return kept


def main():
    module = AnsibleModule(
        argument_spec=dict(
            drivers=dict(type='list', elements='str', required=True),
            state=dict(type='str', choices=['present', 'absent'], default='present'),
            path=dict(type='path', default='/etc/modprobe.d/vfio-passthrough-blacklist.conf'),
            hard=dict(type='bool', default=False),
            update_initramfs=dict(type='bool', default=True),
            force=dict(type='bool', default=False),
            modprobe_dir=dict(type='path', default='/etc/modprobe.d'),
            **host_critical_arg_spec(),
            **TRANSACTION_ARGS
        ),
        supports_check_mode=True,
    )
    params = module.params
    try:
        drivers = check_module_names(params['drivers'], 'driver name')
    except ValueError as exc:
        module.fail_json(msg=str(exc))
    if not drivers:
        module.fail_json(msg='drivers is empty: name at least one kernel module')
    check_host_critical_args(module)
    with Transaction(module) as tx:
        run(module, tx, drivers)


def run(module, tx, drivers):
    params = module.params
    path = params['path']
    present = params['state'] == 'present'

    before = tx.read(path, OWNER)
    try:
        already = find_blacklisted(params['modprobe_dir'], path, before, drivers) if present else {}
        usage = module_usage(params['root'])
        in_use = {driver: usage.get(driver, []) for driver in drivers}
        lines = []
        if present:
            # Sorted: the order of blacklist lines means nothing, so the file should not churn with it.
            for driver in sorted(drivers):
                if driver not in already:
                    lines.append('blacklist %s' % driver)
                if params['hard']:
                    lines.append('install %s /bin/false' % driver)
        else:
            # Only the named drivers go; what another call of this module wrote stays.
            lines = kept_lines(before, drivers)
        after = plan_file(before, OWNER, lines, modprobe_keys, path=path)
    except ValueError as exc:
        module.fail_json(msg=str(exc))
    if present:
        refuse_critical(module, drivers, in_use)

    tx.change(path, before, after)
    tx.finish_initramfs(dict(drivers=drivers, in_use=in_use, already_blacklisted=already), params['update_initramfs'])


if __name__ == '__main__':
    main()
