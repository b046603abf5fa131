"""passthrough_sriov_due reads a sriov_vfs dry run: what the real call owes, and whether VFs may reboot the host."""

from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.vfio.passthrough.plugins.filter.sriov import FilterModule

due = FilterModule().filters()['passthrough_sriov_due']
LIVE = [{'pf': '0000:03:00.1', 'why': '0000:03:00.1 has 0 VFs, 4 asked'}]


@pytest.mark.parametrize('files, live, deferred, expected', [
    ([], [], [], {'write': False, 'reboot': False}),      # converged: the real call is skipped
    (['/etc/udev/rules.d/x.rules'], [], [], {'write': True, 'reboot': False}),   # a file only never reboots
    ([], LIVE, [], {'write': True, 'reboot': True}),      # a live change can still be deferred
    ([], [], LIVE, {'write': True, 'reboot': True}),
])
def test_due(files, live, deferred, expected):
    assert due({'files_changed': files, 'live': live, 'deferred': deferred, 'changed': False}) == expected


@pytest.mark.parametrize('result, word', [
    ({'skipped': True}, 'files_changed'),
    ({'files_changed': [], 'live': None, 'deferred': []}, 'live'),
    ('changed', 'changed'),
])
def test_refuses_what_is_not_a_dry_run(result, word):
    with pytest.raises(AnsibleFilterError, match=word):
        due(result)
