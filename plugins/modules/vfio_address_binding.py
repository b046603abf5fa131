#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: contributors to vfio.passthrough
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
---
module: vfio_address_binding
short_description: Bind PCI devices to vfio-pci by address, ahead of their usual driver
version_added: 0.2.0
description:
  - For devices whose vendor:device ID is shared with a device that stays on the host, so that
    C(options vfio-pci ids=) would take both. Writes three files, owned whole by this module
    (each carries the header "# Managed by Ansible (vfio.passthrough.vfio_address_binding)").
  - O(script) sets C(driver_override) to C(vfio-pci) for each of O(addresses) that has no driver yet.
  - O(modprobe_file) holds an C(install DRIVER O(script); /sbin/modprobe --ignore-install DRIVER) rule
    for each of O(drivers), so the script runs before those drivers load.
  - O(hook) copies the script into the initramfs, where the rule fires too.
  - Runs C(update-initramfs -u -k all) after a change; if that fails, every file is put back.
author:
  - vfio.passthrough developers (!UNKNOWN)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - vfio.passthrough.transaction
options:
  addresses:
    description: PCI addresses to bind, canonical (C(0000:01:00.0)). Required for O(state=present).
    type: list
    elements: str
    default: []
  drivers:
    description: The drivers those devices would otherwise get (for example C(igb)); each gets an C(install) rule.
    type: list
    elements: str
    default: []
  state:
    description: C(present) writes the three files; C(absent) removes them.
    type: str
    choices: [present, absent]
    default: present
  script:
    description: The binding script (mode 0755 when created).
    type: path
    default: /usr/local/sbin/vfio-passthrough-bind
  modprobe_file:
    description: The modprobe.d file with the C(install) rules (mode 0644 when created).
    type: path
    default: /etc/modprobe.d/vfio-passthrough-address.conf
  hook:
    description: The initramfs-tools hook that copies the script (mode 0755 when created).
    type: path
    default: /etc/initramfs-tools/hooks/vfio-passthrough
  update_initramfs:
    description: Run C(update-initramfs -u -k all) after a change (never in check mode).
    type: bool
    default: true
attributes:
  check_mode:
    support: full
    details: Reports the same changes and diff a real run would; writes nothing and runs nothing.
  diff_mode:
    support: full
    details: One before/after entry per file that changes, with the file name as header.
  platform:
    platforms: debian
    details: Debian 12/13 and Proxmox VE 8 with kmod and initramfs-tools.
notes:
  - The binding takes effect at the next boot; RV(reboot_required) says when one is due.
seealso:
  - module: vfio.passthrough.vfio_modules
'''

EXAMPLES = r'''
- name: Hand the second of two identical NICs to vfio-pci, keep the first on igb
  vfio.passthrough.vfio_address_binding:
    addresses: ['0000:02:00.0']
    drivers: [igb]

- name: Remove the binding
  vfio.passthrough.vfio_address_binding:
    state: absent
'''

RETURN = r'''
files_changed:
  description: Paths changed (in check mode, that would change).
  returned: always
  type: list
  elements: str
  sample: [/usr/local/sbin/vfio-passthrough-bind, /etc/modprobe.d/vfio-passthrough-address.conf]
addresses:
  description: The addresses bound; empty for O(state=absent).
  returned: always
  type: list
  elements: str
  sample: ['0000:02:00.0']
drivers:
  description: The drivers the script runs ahead of (normalised with C(_)); empty for O(state=absent).
  returned: always
  type: list
  elements: str
  sample: [igb]
initramfs_updated:
  description: Whether C(update-initramfs) ran successfully.
  returned: always
  type: bool
reboot_required:
  description: True when a file changed, so the running system and initramfs do not reflect it yet.
  returned: always
  type: bool
command:
  description: The argv run, or null when nothing was run.
  returned: always
  type: list
  elements: str
  sample: [/usr/sbin/update-initramfs, -u, -k, all]
diff:
  description: Before/after text of each changed file.
  returned: when diff mode is on
  type: list
  elements: dict
'''

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.vfio.passthrough.plugins.module_utils.modprobe._binding import OWNER, check_addresses, render_binding
from ansible_collections.vfio.passthrough.plugins.module_utils.modprobe._modprobe import check_module_names
from ansible_collections.vfio.passthrough.plugins.module_utils.files._transaction import TRANSACTION_ARGS, Transaction


def main():
    module = AnsibleModule(
        argument_spec=dict(
            addresses=dict(type='list', elements='str', default=[]),
            drivers=dict(type='list', elements='str', default=[]),
            state=dict(type='str', choices=['present', 'absent'], default='present'),
            script=dict(type='path', default='/usr/local/sbin/vfio-passthrough-bind'),
            modprobe_file=dict(type='path', default='/etc/modprobe.d/vfio-passthrough-address.conf'),
            hook=dict(type='path', default='/etc/initramfs-tools/hooks/vfio-passthrough'),
            update_initramfs=dict(type='bool', default=True),
            **TRANSACTION_ARGS
        ),
        supports_check_mode=True,
    )
    params = module.params
    present = params['state'] == 'present'
    paths = [params['script'], params['modprobe_file'], params['hook']]
    if len(set(paths)) != len(paths):
        module.fail_json(msg='script, modprobe_file and hook must be three different files, got %s' % ', '.join(paths))
    wanted = [(path, None, None) for path in paths]
    addresses = drivers = []
    if present:
        try:
            addresses = check_addresses(params['addresses'])
            drivers = check_module_names(params['drivers'], 'driver name')
            wanted = render_binding(addresses, drivers, *paths)
        except ValueError as exc:
            module.fail_json(msg=str(exc))
    with Transaction(module) as tx:
        for path, text, mode in wanted:
            before = tx.read(path, OWNER if path == params['modprobe_file'] else None)
            tx.change(path, before, text, mode=mode)
        tx.finish_initramfs(dict(addresses=addresses, drivers=drivers), params['update_initramfs'])


if __name__ == '__main__':
    main()
