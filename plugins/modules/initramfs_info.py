#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: contributors to vfio.passthrough
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
---
module: initramfs_info
short_description: Tell whether an initramfs rebuild is still owed
version_added: 0.2.0
description:
  - Compares the modification times of configuration files that end up in the initramfs
    (modprobe.d, initramfs-tools/modules, hooks) with the initramfs images.
  - A file newer than the oldest image means C(update-initramfs -u -k all) is still owed, also when
    the run that changed the file died before its rebuild. The need to rebuild is state, not an event.
  - Never changes anything.
  - Called C(vfio.passthrough.initramfs_status) before 0.2.0; that name still works, with a deprecation
    warning, until 2.0.0.
author:
  - vfio.passthrough developers (!UNKNOWN)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
options:
  paths:
    description: Files whose content goes into the initramfs. Missing files are ignored.
    type: list
    elements: path
    required: true
  images:
    description: Shell glob of the initramfs images.
    type: str
    default: /boot/initrd.img-*
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
  platform:
    platforms: debian
notes:
  - With no image at all (a container, a chroot before the first kernel) nothing is owed.
'''

EXAMPLES = r'''
- name: Find out whether the initramfs lags behind its configuration
  vfio.passthrough.initramfs_info:
    paths:
      - /etc/modprobe.d/vfio-passthrough.conf
      - /etc/initramfs-tools/modules
  register: initramfs

- name: Rebuild it once
  ansible.builtin.command: update-initramfs -u -k all
  when: initramfs.stale
  changed_when: true
'''

RETURN = r'''
stale:
  description: A file in O(paths) is newer than the oldest image.
  returned: always
  type: bool
  sample: true
newer:
  description: The files newer than the oldest image.
  returned: always
  type: list
  elements: str
  sample: [/etc/modprobe.d/vfio-passthrough.conf]
images:
  description: The images found.
  returned: always
  type: list
  elements: str
  sample: [/boot/initrd.img-6.8.12-4-pve]
present:
  description:
    - The files in O(paths) that exist (a dangling symlink too), in the given order.
    - Lets a caller skip removing files that are already gone without asking the host again.
  returned: always
  type: list
  elements: str
  sample: [/etc/modprobe.d/vfio-passthrough.conf, /etc/initramfs-tools/modules]
'''

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.vfio.passthrough.plugins.module_utils.files._files import initramfs_lag


def main():
    module = AnsibleModule(
        argument_spec=dict(
            paths=dict(type='list', elements='path', required=True),
            images=dict(type='str', default='/boot/initrd.img-*'),
        ),
        supports_check_mode=True,
    )
    module.exit_json(changed=False, **initramfs_lag(module.params['paths'], module.params['images']))


if __name__ == '__main__':
    main()
