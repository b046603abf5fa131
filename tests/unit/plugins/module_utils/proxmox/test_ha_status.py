"""HA status parsers. The fixtures are BUILT from pve-ha-manager's source formats, not captured
(tests/fixtures/cluster/README.md): ha-manager needs Proxmox's cluster file system."""

from __future__ import annotations

from pathlib import Path

import pytest

from ansible_collections.vfio.passthrough.plugins.module_utils.proxmox._ha_status import (
    HaStatusError, parse_ha_resources, parse_ha_status_text, parse_lrm_status, parse_manager_status,
)

HA = Path(__file__).resolve().parents[4] / 'fixtures' / 'cluster' / 'ha'


def test_manager_status_services_and_nodes():
    parsed = parse_manager_status((HA / 'manager_status_draining.json').read_text())
    assert parsed['master_node'] == 'pve1'
    assert parsed['node_status']['pve2'] == 'maintenance'
    assert parsed['node_request'] == {'pve2': ['maintenance']}
    assert parsed['service_status']['vm:100'] == {'node': 'pve2', 'state': 'migrate', 'target': 'pve3', 'running': 1}
    assert parsed['service_status']['ct:201']['target'] == 'pve2'
    assert 'future_key' not in parsed and 'crs' not in parsed   # unknown keys tolerated, not carried


@pytest.mark.parametrize('name, state, mode', [
    ('lrm_status_active.json', 'active', 'active'),
    ('lrm_status_maintenance.json', 'maintenance', 'maintenance'),
])
def test_lrm_status(name, state, mode):
    parsed = parse_lrm_status((HA / name).read_text())
    assert (parsed['state'], parsed['mode']) == (state, mode)


@pytest.mark.parametrize('text, match', [
    ('{"master_node": ', 'not JSON'),
    ('[1, 2]', 'JSON list, not an object'),
    ('', 'not JSON'),
])
def test_bad_files_are_named(text, match):
    with pytest.raises(HaStatusError, match=match):
        parse_manager_status(text)
    with pytest.raises(HaStatusError, match=match):
        parse_lrm_status(text)


def test_ha_manager_status_text():
    parsed = parse_ha_status_text((HA / 'ha_status_drained.txt').read_text())
    assert parsed['quorum'] == 'OK'
    assert parsed['master'].startswith('pve1 (active')
    assert parsed['lrm'] == {'pve1': 'active', 'pve2': 'maintenance mode', 'pve3': 'active'}
    assert parsed['services']['vm:104'] == {'node': 'pve2', 'state': 'ignored'}
    assert parsed['services']['vm:100'] == {'node': 'pve3', 'state': 'started'}
    assert len(parsed['services']) == 6


def test_ha_manager_status_verbose_json_is_not_read_as_lines():
    text = (HA / 'ha_status_online.txt').read_text() + 'full cluster state:\n{\n "service vm:999 (pve2, started)": 1\n}\n'
    assert 'vm:999' not in parse_ha_status_text(text)['services']


# resources.cfg as pve-ha-manager writes it (SectionConfig: header, tab-indented properties, blank line).
RESOURCES = """\
vm: 100
\tgroup prefer-pve1
\tstate started

vm: 101
\tstate disabled
\tcomment  two  words

# a comment line
ct: 200
\tmax_restart 2
"""


def test_ha_resources_sections():
    assert parse_ha_resources(RESOURCES) == {
        'vm:100': {'type': 'vm', 'name': '100', 'group': 'prefer-pve1', 'state': 'started'},
        'vm:101': {'type': 'vm', 'name': '101', 'state': 'disabled', 'comment': 'two  words'},
        'ct:200': {'type': 'ct', 'name': '200', 'max_restart': '2'},
    }


@pytest.mark.parametrize('text', [None, '', '\tstate started\n', 'not a header line\n'])
def test_ha_resources_without_sections(text):
    assert parse_ha_resources(text) == {}
