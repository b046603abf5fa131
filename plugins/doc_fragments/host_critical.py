# -*- coding: utf-8 -*-
# Copyright: contributors to vfio.passthrough
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment:
    # The inputs of the host-critical verdict (plugins/module_utils/host_safety/_host_critical.py: host_critical_arg_spec),
    # shared by every module that judges which devices and modules the host cannot lose.
    DOCUMENTATION = r'''
options:
  root:
    description:
      - The root of the system to judge, for chroots and tests. Its C(sys/), C(proc/) and C(lib/modules/)
        are read below this directory, symlinks resolved inside it; nothing outside it is read.
      - It must be a directory holding C(sys/); otherwise the task fails before reading anything, since an
        empty tree would make no device host-critical.
      - With any value other than C(/), the verdict runs no command and does not read C(SSH_CONNECTION),
        since they describe the running system, not the one under O(root).
    type: path
    default: /
  protect_addresses:
    description:
      - IP addresses (or host names) the controller reaches this host on. The NICs holding them are
        host-critical, as are the ports, slaves and lower links of a bridge, bond or VLAN holding them.
      - Pass C(ansible_host) here when becoming root through sudo, which drops C(SSH_CONNECTION);
        the role C(vfio.passthrough.pcie_passthrough) passes its connection address.
      - A host name is resolved on the managed host; one that does not resolve is warned about and
        protects nothing. A value that is neither an address nor a host name fails the task.
      - Only used when O(root=/).
    type: list
    elements: str
    default: []
notes:
  - On the live root the host-critical verdict runs C(ip -o addr show) when there is an address to protect
    and C(zpool status -P POOL) when C(/) or C(/boot) is on ZFS. Both only read state.
'''
