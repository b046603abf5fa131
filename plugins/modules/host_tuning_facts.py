#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: contributors to vfio.passthrough
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
---
module: host_tuning_facts
short_description: Gather hugepage and isolated-CPU facts for passthrough VM hosts
version_added: 0.2.0
description:
  - Reads C(/proc) and C(/sys) below O(root) and returns C(ansible_facts.host_tuning) - RAM, the hugepage
    pools the running kernel holds, whether the CPU offers 1 GiB pages, the CPUs that exist and those
    isolated from the scheduler, and the hugepage and isolation arguments the running kernel booted with.
  - The pool sizes (C(nr_hugepages)) are the live state, which Proxmox VE raises when a VM with hugepages
    starts and lowers when it stops; the command-line values are what the host reserves at boot.
  - Changes nothing and runs no command.
author:
  - vfio.passthrough developers (!UNKNOWN)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - ansible.builtin.action_common_attributes.facts
options:
  root:
    description:
      - The directory holding the C(sys/) and C(proc/) to read, for chroots and tests.
      - Symlinks are resolved inside this directory; nothing outside it is read.
    type: path
    default: /
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
    platforms: debian
    details: Proxmox VE 9 / Debian 13 and Proxmox VE 8 / Debian 12 on x86-64.
notes:
  - A value the kernel does not provide (a file missing under O(root)) is null.
seealso:
  - module: vfio.passthrough.iommu_facts
  - module: vfio.passthrough.kernel_cmdline
'''

EXAMPLES = r'''
- name: Read hugepages and isolated CPUs
  vfio.passthrough.host_tuning_facts:

- name: Show the 2 MiB pool
  ansible.builtin.debug:
    msg: "{{ ansible_facts['host_tuning']['pools']['2048']['nr_hugepages'] }} pages of 2 MiB"
  when: "'2048' in ansible_facts['host_tuning']['pools']"
'''

RETURN = r'''
ansible_facts:
  description: Facts to add to ansible_facts.
  returned: always
  type: complex
  contains:
    host_tuning:
      description: Hugepages and isolated CPUs of the running kernel.
      returned: always
      type: complex
      contains:
        mem_total_kb:
          description: C(MemTotal) of C(/proc/meminfo) in kB (hugepages included).
          type: int
          sample: 65768432
        hugepages_total:
          description: C(HugePages_Total), the pages of the default size.
          type: int
          sample: 16
        hugepages_free:
          description: C(HugePages_Free).
          type: int
          sample: 16
        hugepage_size_kb:
          description: C(Hugepagesize), the default hugepage size in kB.
          type: int
          sample: 1048576
        pools:
          description: Per page size in kB, C(nr_hugepages), C(free_hugepages) and C(resv_hugepages) of
            C(/sys/kernel/mm/hugepages/hugepages-<size>kB).
          type: dict
          sample: {"2048": {nr_hugepages: 0, free_hugepages: 0, resv_hugepages: 0},
                   "1048576": {nr_hugepages: 16, free_hugepages: 16, resv_hugepages: 0}}
        pdpe1gb:
          description: The CPU offers 1 GiB pages (flag C(pdpe1gb) in C(/proc/cpuinfo)).
          type: bool
          sample: true
        cpus_possible:
          description: C(/sys/devices/system/cpu/possible), the CPUs the kernel has room for (hot-plug slots
            included, so possibly more than exist), as a cpulist.
          type: str
          sample: 0-15
        cpus_present:
          description: C(/sys/devices/system/cpu/present), the CPUs that exist, as a cpulist.
          type: str
          sample: 0-15
        cpus_online:
          description: C(/sys/devices/system/cpu/online) as a cpulist. Isolated CPUs are judged against the CPUs
            both present and online.
          type: str
          sample: 0-15
        cpu_count:
          description: The number of present CPUs.
          type: int
          sample: 16
        numa_nodes:
          description: C(/sys/devices/system/node/online), the NUMA nodes a C(hugepages=node:count) may name, as a
            cpulist (null without the file).
          type: str
          sample: 0-1
        isolated:
          description: C(/sys/devices/system/cpu/isolated), the CPUs isolated by C(isolcpus=), as a cpulist
            (empty for none).
          type: str
          sample: 2-7,10-15
        nohz_full:
          description: C(/sys/devices/system/cpu/nohz_full) as a cpulist (empty for none, null without the file).
          type: str
          sample: ''
        cmdline:
          description:
            - The values the running kernel booted with (C(/proc/cmdline)) of C(default_hugepagesz), C(hugepagesz),
              C(hugepages), C(isolcpus), C(nohz_full) and C(rcu_nocbs) (the last of each; null when absent), and
              C(reservations), every pool the line reserves with its size in kB, its count and its tokens.
            - A C(hugepages=) per NUMA node (C(hugepages=0:2,1:2)) counts the sum over its nodes; its reservation's
              C(nodes) maps each node to its pages (null for the plain form).
            - C(error) names a hugepage argument the kernel cannot read, when there is one.
          type: dict
          sample: {default_hugepagesz: 1G, hugepagesz: 1G, hugepages: '16', isolcpus: 2-7, nohz_full: null,
                   rcu_nocbs: null, reservations: [{size_kb: 1048576, count: 16, text: hugepagesz=1G hugepages=16,
                   nodes: null}]}
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.vfio.passthrough.plugins.module_utils.tuning._tuning_facts import gather_tuning_facts


def main():
    module = AnsibleModule(
        argument_spec=dict(root=dict(type='path', default='/')),
        supports_check_mode=True,
    )
    module.exit_json(changed=False, ansible_facts={'host_tuning': gather_tuning_facts(module.params['root'])})


if __name__ == '__main__':
    main()
