#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: contributors to vfio.passthrough
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
---
module: vfio_modules
short_description: Load the VFIO modules early and bind PCI IDs to vfio-pci
version_added: 0.1.0
description:
  - Makes the VFIO kernel modules load at boot (C(modules-load.d)) and from the
    initramfs, so that C(vfio-pci) claims the passthrough devices before their
    normal drivers do.
  - "Writes C(options vfio-pci ids=...), C(options vfio-pci disable_vga=1) and
    C(softdep DRIVER pre: vfio-pci) to a modprobe.d file."
  - Runs C(update-initramfs -u -k all) after a change; if that fails, every file
    this run changed is put back byte for byte and the task fails.
  - "File ownership: O(modules_file) and O(modprobe_file) belong to this module when
    they do not exist yet or start with the header line \"# Managed by Ansible (vfio.passthrough.vfio_modules): manual edits will be overwritten\";
    such a file is rewritten whole and deleted by O(state=absent)."
  - "Any other file, and always O(initramfs_modules_file), is shared with the administrator:
    the module manages only the lines between
    C(# BEGIN vfio.passthrough.vfio_modules) and C(# END vfio.passthrough.vfio_modules),
    adds there only what is not already listed elsewhere in the file (spacing ignored, C(-) and C(_) equal),
    and never touches a line outside it. In O(modules_file) a line counts only as systemd-modules-load reads
    it, whole: C(vfio_pci  # GPU) names no module, so it loads nothing, does not count and is warned about;
    in O(initramfs_modules_file) the first word is the module and the rest are its parameters.
    O(state=absent) removes only that block. A trailing marker comment on each line
    is not used because initramfs-tools passes trailing words to modprobe as module
    parameters and systemd-modules-load reads the whole line as the module name."
  - A missing final newline before a new block gets added, so the block starts on its own line.
author:
  - vfio.passthrough developers (!UNKNOWN)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - vfio.passthrough.transaction
options:
  modules:
    description:
      - Modules to load at boot and put into the initramfs. C(-) and C(_) are equal.
      - When not given, C(vfio), C(vfio_iommu_type1), C(vfio_pci).
      - C(vfio_virqfd) is never listed by default. Linux 6.2 folded it into C(vfio) (Debian 13,
        Proxmox VE 8 and 9 kernels), where listing it makes C(systemd-modules-load) log
        C(Failed to find module); on Debian 12's 6.1 C(vfio_pci) pulls it in through modules.dep.
        One file serves every installed kernel, so it must name only modules all of them have.
    type: list
    elements: str
  ids:
    description:
      - PCI C(vendor:device) IDs (4 hex digits each) that C(vfio-pci) should claim.
        Written lowercased as C(options vfio-pci ids=...).
    type: list
    elements: str
    default: []
  softdeps:
    description:
      - "Drivers that must wait for C(vfio-pci) (for example C(nouveau), C(amdgpu), C(snd_hda_intel)).
        Each becomes C(softdep NAME pre: vfio-pci)."
    type: list
    elements: str
    default: []
  disable_vga:
    description: Write C(options vfio-pci disable_vga=1) (opt out of VGA arbitration for claimed GPUs).
    type: bool
    default: false
  modules_file:
    description: The modules-load.d file that lists the modules. C(/etc/modules) works too, as a shared file.
    type: path
    default: /etc/modules-load.d/vfio-passthrough.conf
  initramfs_modules_file:
    description: The initramfs-tools module list, always managed as a shared file.
    type: path
    default: /etc/initramfs-tools/modules
  modprobe_file:
    description: The modprobe.d file for the options and softdep lines.
    type: path
    default: /etc/modprobe.d/vfio-passthrough.conf
  state:
    description: C(present) puts the configuration in place; C(absent) removes only what this module added.
    type: str
    choices: [present, absent]
    default: present
  update_initramfs:
    description: Run C(update-initramfs -u -k all) after a change (never in check mode).
    type: bool
    default: true
  initramfs_inputs:
    description:
      - Other files whose content goes into the initramfs (blacklists, hooks), compared with the
        images together with O(initramfs_modules_file) and O(modprobe_file) for RV(initramfs).
      - Only reported; a caller that also decides about the rebuild learns in the same call
        whether an earlier run left the initramfs behind its configuration.
    type: list
    elements: path
    default: []
  initramfs_images:
    description: Shell glob of the initramfs images for RV(initramfs).
    type: str
    default: /boot/initrd.img-*
  modprobe_dirs:
    description:
      - The directories modprobe reads C(*.conf) files from, in kmod's precedence order (a file name in an
        earlier directory hides the same name in a later one). With O(ids), any of those files (or the
        administrator's part of O(modprobe_file)) that sets C(options vfio-pci ids=) to another list than
        exactly O(ids) is refused, naming the file and line, before anything is written, because modprobe
        joins the options lines of all files in file-name order and the last C(ids=) wins.
    type: list
    elements: path
    default: [/etc/modprobe.d, /run/modprobe.d, /usr/local/lib/modprobe.d, /usr/lib/modprobe.d, /lib/modprobe.d]
attributes:
  check_mode:
    support: full
    details: Reports the same changes and diff a real run would; writes nothing and runs nothing.
  diff_mode:
    support: full
    details: One before/after entry per file that changes, with the file name as header.
  platform:
    platforms: debian
    details: Debian 13 / Proxmox VE 9 and Debian 12 / Proxmox VE 8 with initramfs-tools and systemd-modules-load.
notes:
  - The new configuration takes effect after a reboot; RV(reboot_required) says when one is due.
seealso:
  - module: vfio.passthrough.driver_blacklist
'''

EXAMPLES = r'''
- name: Load VFIO early and hand an NVIDIA GPU and its audio function to vfio-pci
  vfio.passthrough.vfio_modules:
    ids:
      - 10de:1b80
      - 10de:10f0
    softdeps:
      - nouveau
      - snd_hda_intel
    disable_vga: true

- name: Use the classic /etc/modules, as in the Proxmox wiki
  vfio.passthrough.vfio_modules:
    modules_file: /etc/modules

- name: Remove everything this module added
  vfio.passthrough.vfio_modules:
    state: absent
'''

RETURN = r'''
modules:
  description: The modules configured to load (normalised with C(_)); empty for O(state=absent).
  returned: always
  type: list
  elements: str
  sample: [vfio, vfio_iommu_type1, vfio_pci]
ids:
  description: The PCI IDs written, lowercased; empty for O(state=absent).
  returned: always
  type: list
  elements: str
  sample: ['10de:1b80']
softdeps:
  description: The drivers that wait for vfio-pci; empty for O(state=absent).
  returned: always
  type: list
  elements: str
  sample: [nouveau]
files_changed:
  description: Paths changed (in check mode, that would change).
  returned: always
  type: list
  elements: str
  sample: [/etc/modules-load.d/vfio-passthrough.conf]
initramfs_updated:
  description: Whether C(update-initramfs) ran successfully.
  returned: always
  type: bool
reboot_required:
  description: True when a file changed, so the running kernel and initramfs do not reflect it yet.
  returned: always
  type: bool
command:
  description: The argv run, or null when nothing was run.
  returned: always
  type: list
  elements: str
  sample: [/usr/sbin/update-initramfs, -u, -k, all]
initramfs:
  description:
    - How the initramfs images compared, before this run wrote anything, with the files that go into them
      (O(initramfs_modules_file), O(modprobe_file) and O(initramfs_inputs)), as M(vfio.passthrough.initramfs_info)
      reports it.
  returned: always
  type: dict
  contains:
    stale:
      description: A file is newer than the oldest image, so C(update-initramfs -u -k all) is owed.
      type: bool
      sample: false
    newer:
      description: The files newer than the oldest image.
      type: list
      elements: str
      sample: []
    images:
      description: The images found (none in a container or a chroot without kernel).
      type: list
      elements: str
      sample: [/boot/initrd.img-6.8.12-4-pve]
    present:
      description: The compared files that exist (a dangling symlink too), own files first, then O(initramfs_inputs).
      type: list
      elements: str
      sample: [/etc/initramfs-tools/modules, /etc/modprobe.d/vfio-passthrough.conf]
diff:
  description: Before/after text of each changed file.
  returned: when diff mode is on
  type: list
  elements: dict
'''

import os

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.vfio.passthrough.plugins.module_utils.files._files import initramfs_lag, read_text
from ansible_collections.vfio.passthrough.plugins.module_utils.modprobe._modprobe import (
    MODPROBE_DIRS, check_module_names, check_pci_ids, competing_vfio_ids, conf_read_order, dead_module_lines,
    initramfs_modules_keys, is_owned, modprobe_keys, modules_load_keys, outside_block, plan_file,
)
from ansible_collections.vfio.passthrough.plugins.module_utils.files._transaction import TRANSACTION_ARGS, Transaction

OWNER = 'vfio_modules'
BASE_MODULES = ['vfio', 'vfio_iommu_type1', 'vfio_pci']


def wanted_lines(module):
    """Validate every input and return (modules, ids, softdeps, modprobe lines). Fails on bad input."""
    params = module.params
    try:
        ids = check_pci_ids(params['ids'])
        softdeps = check_module_names(params['softdeps'], 'softdep driver name')
        if params['modules'] is None:
            modules = list(BASE_MODULES)
        else:
            modules = check_module_names(params['modules'])
    except ValueError as exc:
        module.fail_json(msg=str(exc))
    if params['modules'] is not None and not modules:
        module.fail_json(msg='modules is empty; leave it out for the default list or use state=absent')
    lines = []
    if ids:
        lines.append('options vfio-pci ids=%s' % ','.join(ids))
    if params['disable_vga']:
        lines.append('options vfio-pci disable_vga=1')
    lines.extend('softdep %s pre: vfio-pci' % name for name in softdeps)
    return modules, ids, softdeps, lines


def plan(module, tx, modules, modprobe_lines):
    """Plan in ``tx`` the files that must change. Writes nothing."""
    params = module.params
    absent = params['state'] == 'absent'
    targets = [
        (params['modules_file'], [] if absent else modules, modules_load_keys, False),
        (params['initramfs_modules_file'], [] if absent else modules, initramfs_modules_keys, True),
        (params['modprobe_file'], [] if absent else modprobe_lines, modprobe_keys, False),
    ]
    real = [os.path.realpath(path) for path, _l, _k, _s in targets]
    if len(set(real)) != len(real):
        module.fail_json(msg='modules_file, initramfs_modules_file and modprobe_file must be three '
                             'different files, got %s' % ', '.join(path for path, _l, _k, _s in targets))
    for path, lines, keys, shared_only in targets:
        before = tx.read(path, OWNER)
        try:
            after = plan_file(before, OWNER, lines, keys, shared_only=shared_only, path=path)
        except ValueError as exc:
            module.fail_json(msg=str(exc))
        tx.change(path, before, after)


def other_modprobe_sources(module):
    """(path, text) of every modprobe.d file modprobe reads, in its order, but this module's own lines."""
    own = module.params['modprobe_file']
    own_real = os.path.realpath(own)
    listings = []
    for directory in module.params['modprobe_dirs']:
        try:
            names = os.listdir(directory)
        except OSError:
            names = []
        listings.append((directory, [n for n in names if os.path.isfile(os.path.join(directory, n))]))
    sources = []
    for path in conf_read_order(listings):
        text = read_text(path)
        if os.path.realpath(path) == own_real:
            if text is None or is_owned(text, OWNER):
                continue
            try:
                text = outside_block(text, OWNER, path)
            except ValueError as exc:
                module.fail_json(msg=str(exc))
        sources.append((path, text))
    return sources


def refuse_competing_ids(module, ids):
    """Fail, before any write, when another modprobe file sets other vfio-pci IDs than ``ids``."""
    problems = competing_vfio_ids(other_modprobe_sources(module), ids)
    if problems:
        module.fail_json(msg='refusing to write vfio-pci IDs: %s' % ' | '.join(problems))


def warn_dead_lines(module):
    """Say which lines of a shared modules-load file load nothing (systemd reads each line whole)."""
    path = module.params['modules_file']
    text = read_text(path)
    if text is None or is_owned(text, OWNER):
        return
    for number, line in dead_module_lines(text):
        module.warn('%s line %d %r loads nothing: systemd-modules-load takes the whole line as one module '
                    'name (no trailing comments or parameters there)' % (path, number, line))


def main():
    module = AnsibleModule(
        argument_spec=dict(
            modules=dict(type='list', elements='str'),
            ids=dict(type='list', elements='str', default=[]),
            softdeps=dict(type='list', elements='str', default=[]),
            disable_vga=dict(type='bool', default=False),
            modules_file=dict(type='path', default='/etc/modules-load.d/vfio-passthrough.conf'),
            initramfs_modules_file=dict(type='path', default='/etc/initramfs-tools/modules'),
            modprobe_file=dict(type='path', default='/etc/modprobe.d/vfio-passthrough.conf'),
            state=dict(type='str', choices=['present', 'absent'], default='present'),
            update_initramfs=dict(type='bool', default=True),
            initramfs_inputs=dict(type='list', elements='path', default=[]),
            initramfs_images=dict(type='str', default='/boot/initrd.img-*'),
            modprobe_dirs=dict(type='list', elements='path', default=list(MODPROBE_DIRS)),
            **TRANSACTION_ARGS
        ),
        supports_check_mode=True,
    )
    modules, ids, softdeps, modprobe_lines = wanted_lines(module)
    with Transaction(module) as tx:
        run(module, tx, modules, ids, softdeps, modprobe_lines)


def run(module, tx, modules, ids, softdeps, modprobe_lines):
    params = module.params
    absent = params['state'] == 'absent'
    if not absent and ids:
        refuse_competing_ids(module, ids)
    plan(module, tx, modules, modprobe_lines)
    if not absent:
        warn_dead_lines(module)
    compared = [params['initramfs_modules_file'], params['modprobe_file']]
    compared += [path for path in params['initramfs_inputs'] if path not in compared]
    # Taken before any write: what this run writes, its own rebuild (or the caller's) covers.
    initramfs = initramfs_lag(compared, params['initramfs_images'])

    result = dict(
        modules=[] if absent else modules,
        ids=[] if absent else ids,
        softdeps=[] if absent else softdeps,
        initramfs=initramfs,
    )
    tx.finish_initramfs(result, params['update_initramfs'])


if __name__ == '__main__':
    main()
