#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: contributors to vfio.passthrough
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
---
module: restore_files
short_description: Put back the files of a vfio.passthrough backup bundle, all of them or none
version_added: 0.2.0
description:
  - Writes each saved file back byte for byte with its mode, owner and group, and removes each file the
    bundle records as absent, in one transaction.
  - Every entry is judged on the host before the first write, and every problem is named at once; then nothing
    is written. Refused are a path that is a directory (restore never deletes or replaces one), a FIFO, socket or
    device; a symlink that is dangling, points at no regular file or out of its own directory, or stands where the
    bundle records no file; a parent directory that is missing, no directory, or a symlink; an owner or group
    name this host does not know; content that does not match its sha256.
  - Used by the C(vfio.passthrough.restore) playbook, which opens and checks the bundle on the controller
    (filter C(vfio.passthrough.passthrough_backup_bundle)) and hands over its C(entries).
author:
  - vfio.passthrough developers (!UNKNOWN)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - vfio.passthrough.transaction
options:
  files:
    description:
      - The bundle's entries, each with C(path) and C(state) (C(file) or C(absent)); a saved file also with
        C(content) (its bytes, base64), C(sha256), C(mode) (octal string like C(0644)), C(owner) and C(group)
        (a name, or a number when it had no name at backup time).
    type: list
    elements: dict
    required: true
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
  platform:
    platforms: debian
'''

EXAMPLES = r'''
- name: Put each saved file back
  vfio.passthrough.restore_files:
    files: "{{ bundle['entries'] }}"
  register: restored
'''

RETURN = r'''
files_changed:
  description: The paths written or removed (or that would be, in check mode), in the bundle's order.
  type: list
  elements: str
  returned: always
  sample: [/etc/default/grub]
'''

import grp
import pwd

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.vfio.passthrough.plugins.module_utils.files._restore import entry_bytes, restore_problems
from ansible_collections.vfio.passthrough.plugins.module_utils.files._transaction import TRANSACTION_ARGS, Transaction


def _owner_id(value, lookup, attribute):
    return value if isinstance(value, int) else getattr(lookup(value), attribute)


def run_module():
    module = AnsibleModule(
        argument_spec=dict(files=dict(type='list', elements='dict', required=True), **TRANSACTION_ARGS),
        supports_check_mode=True,
    )
    entries = module.params['files']
    with Transaction(module) as tx:
        # Judged under the lock, so no other run of this collection changes a path between the judgement and the write.
        problems = restore_problems(entries)
        if problems:
            module.fail_json(msg='Nothing restored: %d entr%s cannot be put back on this host: %s'
                                 % (len(problems), 'y' if len(problems) == 1 else 'ies', '; '.join(problems)),
                             problems=problems, files_changed=[])
        for entry in entries:
            before = tx.read(entry['path'])
            if entry['state'] == 'absent':
                tx.change(entry['path'], before, None)
                continue
            attrs = (int(entry['mode'], 8), _owner_id(entry['owner'], pwd.getpwnam, 'pw_uid'),
                     _owner_id(entry['group'], grp.getgrnam, 'gr_gid'))
            tx.change(entry['path'], before, entry_bytes(entry).decode('utf-8', 'surrogateescape'), attrs=attrs)
        tx.finish({}, ran=None)


def main():
    run_module()


if __name__ == '__main__':
    main()
