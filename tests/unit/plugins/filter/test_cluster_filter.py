"""passthrough_cluster_batch: the batch hosts of one cluster that may reboot, from hostvars."""

from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.vfio.passthrough.plugins.filter.cluster import passthrough_cluster_batch

MEMBERS = ('pve1', 'pve2', 'pve3')


def peer(node, may_reboot=True, members=MEMBERS):
    return {'__pcie_passthrough_cluster_peer': {'node': node, 'members': list(members), 'names': [node], 'may_reboot': may_reboot}}


@pytest.mark.parametrize('batch, hostvars, groups', [
    (['pve1', 'pve2'], {'pve1': peer('pve1'), 'pve2': peer('pve2')}, [['pve1', 'pve2']]),
    (['pve1'], {'pve1': peer('pve1'), 'pve2': peer('pve2')}, []),               # pve2 is in a later batch
    (['pve1', 'pve2'], {'pve1': peer('pve1'), 'pve2': peer('pve2', may_reboot=False)}, []),
    (['pve1', 'web'], {'pve1': peer('pve1'), 'web': {}}, []),                  # not a cluster member
])
def test_batch(batch, hostvars, groups):
    assert passthrough_cluster_batch(batch, hostvars) == groups


def test_refuses_a_non_list_batch():
    with pytest.raises(AnsibleFilterError, match='ansible_play_batch'):
        passthrough_cluster_batch('pve1', {})
