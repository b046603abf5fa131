#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: contributors to vfio.passthrough
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
---
module: kernel_cmdline
short_description: Add or remove kernel command-line arguments in GRUB or systemd-boot
version_added: 0.1.0
description:
  - Edits the kernel command line the boot loader passes at the next boot, in C(/etc/default/grub)
    (GRUB) or C(/etc/kernel/cmdline) (systemd-boot on Proxmox VE ZFS/UEFI installs managed by
    C(proxmox-boot-tool)), then regenerates the boot configuration.
  - Every other argument, its spelling, order and spacing, and every other line of the file stay
    byte for byte. Argument names compare with C(-) and C(_) equal, as the kernel does.
  - Every argument is validated before anything is read or written. C(/etc/default/grub) is a
    shell script that C(grub-mkconfig) sources as root, so quotes, C($), backticks, C(;),
    whitespace and newlines in an argument are refused.
  - For GRUB, the last uncommented assignment of O(grub_variable) is edited (the one the shell keeps),
    its quoting style kept. Arguments in O(absent) are removed from every assignment of both
    C(GRUB_CMDLINE_LINUX) and C(GRUB_CMDLINE_LINUX_DEFAULT), because the kernel sees both.
  - The GRUB files are shell scripts, and C(/bin/sh) judges every edit. Before writing, the
    edited text (from a temporary copy) and the drop-ins C(<grub_file>.d/*.cfg) are sourced as
    C(grub-mkconfig) does (C(set -e), same order, clean environment, after C(sh -n) of each
    file); unless the shell then computes the requested arguments and every other argument as
    before, nothing is written and the file and line are named (an C(if) branch not taken,
    C(unset), a drop-in overriding the variable, a syntax error, a command that would stop
    C(grub-mkconfig)). RV(effective) is what the shell computed.
  - While O(absent) names an argument, a C(GRUB_CMDLINE_*) value the shell alone can compute is refused
    naming its file and line, since C(update-grub) may compute it otherwise (a command substitution,
    or a variable the files do not set, which C(grub-mkconfig) and root's environment decide). No line
    the boot loader will use is ever reported as done while it keeps an argument asked absent.
  - The C(zz-proxmox-boot) hook of C(proxmox-boot-tool) reads only line 1 of O(cmdline_file) and needs
    C(root=) on it. A file it would reject or misread (empty, a blank first line, arguments on a later
    line, no C(root=), a carriage return, a NUL or other control byte) is refused before any write,
    naming the line; when no edit is due it is only warned about.
  - Arguments go before a bare C(--) (everything after it is for init); an argument only after
    C(--) does not count as set. An unbalanced double quote in the edited value is refused with
    the line quoted.
  - If regenerating the boot configuration fails, the previous file is restored byte for byte.
  - O(group) is written as one adjacent group in its order (the hugepage arguments, whose
    C(hugepages=N) counts pages of the C(hugepagesz=) before it); a line reserving hugepages of another size
    is refused, naming the tokens. When the request sets hugepages, the reservations on the resulting line,
    summed, must leave the host the RAM O(hugepages_host_reserve_mib) says, else nothing is written.
  - C(hugepages=) is read in both forms the kernel takes, a count and one count per NUMA node
    (C(hugepages=0:2,1:2), four pages); a group whose C(hugepages=) asks the same total is already met, another
    total replaces the per-node form like the plain one.
author:
  - vfio.passthrough developers (!UNKNOWN)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - vfio.passthrough.transaction
options:
  present:
    description:
      - Arguments that must be on the command line, as C(name) or C(name=value).
      - C(name=value) leaves exactly one argument of that name, with that value, where the first
        one was (else appended). A bare C(name) is satisfied by a bare argument of that name and
        leaves C(name=value) arguments alone.
    type: list
    elements: str
    default: []
  absent:
    description:
      - Arguments that must not be on the command line. C(name) removes every argument of that
        name; C(name=value) removes exactly that one.
      - C(name=v1) here beside C(name=v2) in O(present) is allowed (for example C(intel_iommu=off)
        absent and C(intel_iommu=on) present).
    type: list
    elements: str
    default: []
  merge:
    description:
      - Names whose values are comma-separated lists that are merged item by item rather than
        replaced, so an administrator's C(intel_iommu=on,igfx_off) survives a request for
        C(intel_iommu=on). O(absent) removes single items of these; an empty list removes the argument.
    type: list
    elements: str
    default: [intel_iommu, pcie_acs_override]
  bootloader:
    description:
      - Which file to edit. V(auto) follows C(proxmox-boot-tool status) - no O(uuids_file) (or the
        tool's exit code 2, "does not exist") means plain GRUB; ESPs "configured with uefi" mean
        systemd-boot; "configured with grub" mean GRUB kept in sync by C(proxmox-boot-tool); ESPs
        configured with both mean both files are edited. Installed packages, the presence of
        C(/etc/kernel/cmdline) and C(root=ZFS) are not signals.
    type: str
    choices: [auto, grub, systemd-boot]
    default: auto
  grub_file:
    description: GRUB's default file.
    type: path
    default: /etc/default/grub
  grub_variable:
    description: The GRUB variable that receives O(present) arguments.
    type: str
    choices: [GRUB_CMDLINE_LINUX_DEFAULT, GRUB_CMDLINE_LINUX]
    default: GRUB_CMDLINE_LINUX_DEFAULT
  grub_cfg:
    description:
      - The generated GRUB configuration. When O(grub_file) is newer than it, a regeneration is
        still owed (a previous run died before C(update-grub)) and O(apply) runs it even though the
        file itself needs no change. Not used on C(proxmox-boot-tool) managed hosts.
    type: path
    default: /boot/grub/grub.cfg
  cmdline_file:
    description:
      - systemd-boot's command line, one line ending in a newline. Created (mode 0644) if missing,
        seeded from O(proc_cmdline) without the C(BOOT_IMAGE=) and C(initrd=) arguments.
    type: path
    default: /etc/kernel/cmdline
  proc_cmdline:
    description: The running kernel's command line, to decide RV(reboot_required).
    type: path
    default: /proc/cmdline
  uuids_file:
    description: The list of ESPs C(proxmox-boot-tool) keeps in sync.
    type: path
    default: /etc/kernel/proxmox-boot-uuids
  apply:
    description:
      - After a change, run C(proxmox-boot-tool refresh) on hosts it manages, else C(update-grub).
        Nothing runs in check mode.
    type: bool
    default: true
  backup:
    description: Keep a timestamped copy of the file before changing it.
    type: bool
    default: false
  boot_dir:
    description:
      - Where the installed kernels C(vmlinuz-*) are. The whole line the boot loader assembles (GRUB's
        C(BOOT_IMAGE=... root=... ro) and both variables; systemd-boot's options and C(initrd=)) must fit
        the C(cmdline_size) in the setup header of every one of them, else nothing is written, because
        the kernel would silently cut the end, where these arguments go.
    type: path
    default: /boot
  group:
    description:
      - Arguments written adjacent and in this order, in place of every argument bearing one of their names
        (in the edited line; removed from the other GRUB variable), for example
        C([default_hugepagesz=1G, hugepagesz=1G, hugepages=16]). Their names may not be in O(present) or O(absent).
      - A line that reserves hugepages of another size than the C(hugepagesz=) of the group is refused, naming it.
    type: list
    elements: str
    default: []
  meminfo:
    description: Where C(MemTotal) is read for the hugepage memory guard.
    type: path
    default: /proc/meminfo
  numa_nodes:
    description:
      - Where the online NUMA nodes are read (a cpulist such as C(0-1)) for the hugepage memory guard.
      - A C(hugepages=node:count[,node:count]) on the resulting kernel line that names a node not listed there is
        refused, naming the node (the kernel would ignore the whole argument); without the file nodes are not judged.
    type: path
    default: /sys/devices/system/node/online
  hugepages_host_reserve_mib:
    description:
      - When O(group) or O(present) names a hugepage argument, the hugepages every C(hugepages=) on the resulting
        kernel line reserves (summed over all sizes) must leave the host at least this many MiB of C(MemTotal),
        else nothing is written and the numbers are named.
      - Unset, the host keeps a quarter of its RAM and at least 4096 MiB, whichever is larger.
    type: int
  vfio_ids:
    description:
      - The vendor:device IDs this run writes to C(options vfio-pci ids=) in modprobe.d (as
        M(vfio.passthrough.vfio_modules) O(vfio.passthrough.vfio_modules#module:ids)). With any, a
        C(vfio-pci.ids=) on the kernel command line - in the edited file or in O(proc_cmdline) - that
        lists other IDs is refused, naming where it is, before anything is written, as both would compete.
      - O(proc_cmdline) is not checked when O(absent) removes C(vfio-pci.ids).
    type: list
    elements: str
    default: []
attributes:
  check_mode:
    support: full
    details:
      - Reads the files and, when O(bootloader=auto), runs C(proxmox-boot-tool status); for GRUB it runs
        C(/bin/sh) to source the default file (a candidate copy in the module's temporary directory) and
        its drop-ins as C(grub-mkconfig) does. Writes nothing and runs nothing else.
  diff_mode:
    support: full
  platform:
    platforms: debian
    details: Proxmox VE 9 / Debian 13 and Proxmox VE 8 / Debian 12 (GRUB 2, proxmox-boot-tool).
notes:
  - A reboot is needed for the running kernel to see the change; see RV(reboot_required).
seealso:
  - module: vfio.passthrough.iommu_facts
  - module: vfio.passthrough.vfio_modules
'''

EXAMPLES = r'''
- name: Turn the Intel IOMMU on in passthrough mode
  vfio.passthrough.kernel_cmdline:
    present:
      - intel_iommu=on
      - iommu=pt
    absent:
      - intel_iommu=off
  register: cmdline

- name: Say when the running kernel lags behind
  ansible.builtin.debug:
    msg: "Reboot needed: {{ cmdline.unmet | join(', ') }}"
  when: cmdline.reboot_required

- name: Reserve 16 pages of 1 GiB as the default hugepage size, in the order the kernel needs
  vfio.passthrough.kernel_cmdline:
    group:
      - default_hugepagesz=1G
      - hugepagesz=1G
      - hugepages=16

- name: Split IOMMU groups with the ACS override on a lab host (systemd-boot on ZFS)
  vfio.passthrough.kernel_cmdline:
    bootloader: systemd-boot
    present:
      - pcie_acs_override=downstream,multifunction
'''

RETURN = r'''
bootloader:
  description: The boot loader whose file was edited.
  returned: always
  type: str
  sample: grub
bootloaders:
  description: Every boot loader whose file is edited (both when the ESPs hold GRUB and systemd-boot).
  returned: always
  type: list
  elements: str
  sample: [grub]
esps:
  description: Per ESP UUID, what C(proxmox-boot-tool status) says it is configured with (empty without the tool).
  returned: always
  type: dict
  sample: {"5A1B-2C3D": [uefi]}
edits:
  description: Per edited file its path, C(before) and C(after), when more than one boot loader is edited.
  returned: when bootloaders has two entries
  type: list
  elements: dict
  sample: [{path: /etc/default/grub, before: quiet, after: quiet iommu=pt}]
bootloader_reason:
  description: Why that boot loader was chosen (the status lines or the missing ESP list).
  returned: always
  type: str
  sample: "no /etc/kernel/proxmox-boot-uuids: plain GRUB from /boot"
managed_by:
  description: C(proxmox-boot-tool) when it keeps the ESPs in sync, else null.
  returned: always
  type: str
  sample: null
path:
  description: The file edited.
  returned: always
  type: str
  sample: /etc/default/grub
files_changed:
  description: The files changed, or in check mode the files a real run would change.
  returned: always
  type: list
  elements: str
  sample: [/etc/default/grub]
before:
  description: The command-line value before (null when the file or variable did not exist).
  returned: always
  type: str
  sample: quiet intel_iommu=off
after:
  description: The command-line value after.
  returned: always
  type: str
  sample: quiet intel_iommu=on iommu=pt
effective:
  description:
    - For GRUB, the default entry's arguments as C(/bin/sh) computes them from the edited files the way
      grub-mkconfig sources them (both variables, drop-ins included).
  returned: when bootloader is grub
  type: str
  sample: console=ttyS0,115200n8 quiet intel_iommu=on iommu=pt
running:
  description: The running kernel's command line, or null when O(proc_cmdline) is unreadable.
  returned: always
  type: str
  sample: BOOT_IMAGE=/boot/vmlinuz-6.8.12-4-pve root=/dev/mapper/pve-root ro quiet
unmet:
  description: What the running kernel lacks or still has compared with the request.
  returned: always
  type: list
  elements: str
  sample: [missing intel_iommu=on, still has intel_iommu=off]
reboot_required:
  description: The running kernel lacks a present argument or still has an absent one (true also when the file was already right but the host never rebooted).
  returned: always
  type: bool
  sample: true
stale_boot_config:
  description: O(grub_file) is newer than O(grub_cfg), so the boot configuration still had to be regenerated.
  returned: always
  type: bool
  sample: false
command:
  description: The command run to regenerate the boot configuration, or null when nothing ran.
  returned: always
  type: list
  elements: str
  sample: [/usr/sbin/update-grub]
evaluated:
  description: For GRUB, C(GRUB_CMDLINE_LINUX) and C(GRUB_CMDLINE_LINUX_DEFAULT) as C(/bin/sh) computes them after the edit.
  returned: when bootloader is grub
  type: dict
  sample: {GRUB_CMDLINE_LINUX: "", GRUB_CMDLINE_LINUX_DEFAULT: quiet intel_iommu=on iommu=pt}
kernel_lines:
  description:
    - Per installed kernel and boot loader, the length of the line it would receive and its C(cmdline_size)
      (null for an image without an x86 setup header).
  returned: always
  type: list
  elements: dict
  sample: [{image: /boot/vmlinuz-6.8.12-4-pve, bootloader: grub, length: 112, cmdline_size: 2047}]
backup_file:
  description: The backup made by O(backup).
  returned: when a backup was made
  type: str
  sample: /etc/default/grub.12345.2026-11-24@10:00:00~
'''

import glob
import os

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.vfio.passthrough.plugins.module_utils.boot._bootloader import BootloaderError, detect_bootloader
from ansible_collections.vfio.passthrough.plugins.module_utils.boot._cmdline import (
    DEFAULT_MERGE, CmdlineError, unmet_args, validate_request,
)
from ansible_collections.vfio.passthrough.plugins.module_utils.boot._cmdline_limit import HEADER_BYTES
from ansible_collections.vfio.passthrough.plugins.module_utils.boot._cmdline_plan import (
    CmdlineOptions, PlanRefused, plan_cmdline,
)
from ansible_collections.vfio.passthrough.plugins.module_utils.files._files import FileError, modified_after, read_text
from ansible_collections.vfio.passthrough.plugins.module_utils.boot._grub_shell import (
    ENV, SH, build_eval_script, parse_eval_output,
)
from ansible_collections.vfio.passthrough.plugins.module_utils.pci._pci import C_LOCALE
from ansible_collections.vfio.passthrough.plugins.module_utils.boot._regeneration import regeneration
from ansible_collections.vfio.passthrough.plugins.module_utils.files._transaction import TRANSACTION_ARGS, Transaction


def _detect(module):
    params = module.params
    uuids_present = os.path.exists(params['uuids_file'])
    tool = module.get_bin_path('proxmox-boot-tool')
    status_rc = status_out = None
    if uuids_present and tool and params['bootloader'] == 'auto':
        status_rc, out, err = module.run_command([tool, 'status'], environ_update=C_LOCALE)
        status_out = out + err
    if params['bootloader'] != 'auto':
        managed = 'proxmox-boot-tool' if uuids_present and tool else None
        return {'bootloader': params['bootloader'], 'bootloaders': [params['bootloader']], 'managed_by': managed,
                'reason': 'set by the bootloader option', 'esps': {}, 'booted': None}, tool
    try:
        return detect_bootloader(uuids_present, status_out, status_rc if tool else None), tool
    except BootloaderError as exc:
        module.fail_json(msg='cannot detect the boot loader: %s' % exc)


class _HostReads:
    """What the planner reads of this host: files through the transaction, the shell, the kernels' headers."""

    def __init__(self, module, tx):
        self.module = module
        self.tx = tx

    def read(self, path):
        return self.tx.read(path)

    def dropins(self, grub_file):
        return [(dropin, self.tx.read(dropin) or '') for dropin in sorted(glob.glob(grub_file + '.d/*.cfg'))]

    def evaluate_grub(self, path, candidate=None):
        """What /bin/sh computes from ``path`` (or the ``candidate`` text in its place) and the drop-ins."""
        default_file = path if candidate is None else self._candidate_copy(candidate)
        script = build_eval_script(default_file, path + '.d', path)
        env = self.module.get_bin_path('env', required=True)
        rc, out, err = self.module.run_command([env, '-i'] + list(ENV) + [SH, '-c', script])
        return parse_eval_output(out), '%s (sh exit status %d)' % ((err or '').strip().replace(default_file, path), rc)

    def _candidate_copy(self, text):
        # The candidate is judged from a copy in the module's own temporary directory:
        # the real file is written only once the shell has accepted it.
        path = os.path.join(self.module.tmpdir, 'grub.candidate')
        with open(path, 'wb') as handle:
            handle.write(text.encode('utf-8', 'surrogateescape'))
        return path

    @staticmethod
    def kernel_headers(boot_dir):
        headers = []
        for image in sorted(glob.glob(os.path.join(boot_dir, 'vmlinuz-*'))):
            try:
                with open(image, 'rb') as handle:
                    headers.append((image, handle.read(HEADER_BYTES)))
            except OSError:
                continue  # a dangling link is no kernel anyone boots
        return headers

    @staticmethod
    def read_text(path):
        return read_text(path)

    def warn(self, msg):
        self.module.warn(msg)


def _grub_config_stale(params, managed_by):
    if managed_by or not os.path.exists(params['grub_cfg']):
        return False
    return modified_after(params['grub_file'], os.stat(params['grub_cfg']).st_mtime_ns)


def _running(path):
    try:
        text = read_text(path)
    except FileError:
        return None
    return text.strip() if text is not None else None


def run_module():
    module = AnsibleModule(
        argument_spec=dict(
            present=dict(type='list', elements='str', default=[]),
            absent=dict(type='list', elements='str', default=[]),
            merge=dict(type='list', elements='str', default=list(DEFAULT_MERGE)),
            bootloader=dict(type='str', default='auto', choices=['auto', 'grub', 'systemd-boot']),
            grub_file=dict(type='path', default='/etc/default/grub'),
            grub_variable=dict(type='str', default='GRUB_CMDLINE_LINUX_DEFAULT',
                               choices=['GRUB_CMDLINE_LINUX_DEFAULT', 'GRUB_CMDLINE_LINUX']),
            grub_cfg=dict(type='path', default='/boot/grub/grub.cfg'),
            cmdline_file=dict(type='path', default='/etc/kernel/cmdline'),
            proc_cmdline=dict(type='path', default='/proc/cmdline'),
            uuids_file=dict(type='path', default='/etc/kernel/proxmox-boot-uuids'),
            apply=dict(type='bool', default=True),
            backup=dict(type='bool', default=False),
            boot_dir=dict(type='path', default='/boot'),
            vfio_ids=dict(type='list', elements='str', default=[]),
            group=dict(type='list', elements='str', default=[]),
            meminfo=dict(type='path', default='/proc/meminfo'),
            numa_nodes=dict(type='path', default='/sys/devices/system/node/online'),
            hugepages_host_reserve_mib=dict(type='int'),
            **TRANSACTION_ARGS
        ),
        supports_check_mode=True,
    )
    params = module.params
    try:
        request = validate_request(params['present'], params['absent'], params['merge'], params['group'])
    except CmdlineError as exc:
        module.fail_json(msg=str(exc))

    with Transaction(module) as tx:
        _run(module, request, tx)


def _run(module, request, tx):
    params = module.params
    detection, _tool = _detect(module)
    running = _running(params['proc_cmdline'])

    # A host whose ESPs hold both GRUB and systemd-boot gets both files edited:
    # whichever the firmware starts then finds the arguments.
    try:
        planned = plan_cmdline(CmdlineOptions.from_params(params, detection['bootloaders']), request, running,
                               _HostReads(module, tx))
    except PlanRefused as exc:
        module.fail_json(msg=str(exc), **exc.result_keys)
    edits = planned.edits
    path, values = edits[0].path, edits[0].returned()
    measured = [line._asdict() for line in planned.kernel_lines]
    for edit in edits:
        tx.change(edit.path, edit.old, edit.new)
    changed = bool(tx.changes)
    stale = 'grub' in detection['bootloaders'] and not changed and _grub_config_stale(params, detection['managed_by'])
    unmet = unmet_args(running, request) if running is not None else ['running command line unknown']
    plan = regeneration(changed or stale, False, detection['bootloader'], detection['managed_by'])
    commands = plan['commands'] if params['apply'] else []
    result = dict(
        changed=changed or bool(stale and commands),
        bootloader=detection['bootloader'], bootloaders=detection['bootloaders'], bootloader_reason=detection['reason'],
        esps=detection['esps'], managed_by=detection['managed_by'], path=path, running=running, unmet=unmet,
        reboot_required=bool(unmet), stale_boot_config=stale, kernel_lines=measured, **values)
    if len(edits) > 1:
        result['edits'] = [dict(path=edit.path, **edit.returned()) for edit in edits]
    warnings = []
    if params['apply'] and changed and plan['unrefreshed']:
        warnings.append('%s changed but no proxmox-boot-tool is present to copy it to the ESPs; '
                        'run your boot loader\'s refresh before rebooting' % path)
    tx.finish(result, commands, backup=params['backup'], warnings=warnings)


def main():
    run_module()


if __name__ == '__main__':
    main()
