# -*- coding: utf-8 -*-
# Copyright: contributors to vfio.passthrough
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The filter through which the role asks module_utils/proxmox/_cluster_leave.py which batch hosts share a cluster."""

from __future__ import annotations

from ansible.errors import AnsibleFilterError

from ansible_collections.vfio.passthrough.plugins.module_utils.proxmox._cluster_leave import batch_conflicts


def passthrough_cluster_batch(batch, hostvars, fact='__pcie_passthrough_cluster_peer'):
    if not isinstance(batch, (list, tuple)):
        raise AnsibleFilterError('passthrough_cluster_batch expects ansible_play_batch, got %r' % type(batch).__name__)
    hosts = {}
    for host in batch:
        peer = (hostvars.get(host) or {}).get(fact) if hasattr(hostvars, 'get') else None
        if isinstance(peer, dict):
            hosts[str(host)] = peer
    return batch_conflicts(hosts)


class FilterModule:
    def filters(self):
        return {'passthrough_cluster_batch': passthrough_cluster_batch}
