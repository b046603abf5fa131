"""The passthrough_plan filter turns the role's keywords into one PassthroughRequest and hands back the plan as a dict."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.vfio.passthrough.plugins.filter.passthrough import FilterModule
from ansible_collections.vfio.passthrough.plugins.plugin_utils._plan import PassthroughRequest, plan_passthrough

ROOT = Path(__file__).resolve().parents[4]
passthrough_plan = FilterModule().filters()['passthrough_plan']
FACTS = {'devices': {}, 'groups': {}, 'enabled': True, 'firmware_support': True, 'vendor': 'intel'}


def test_every_keyword_the_role_passes_is_a_request_field():
    call = (ROOT / 'roles' / 'pcie_passthrough' / 'tasks' / 'facts.yml').read_text()
    keywords = re.findall(r'^\s+(\w+)=', call.split('passthrough_plan(', 1)[1], re.M)
    assert keywords == [item.name for item in dataclasses.fields(PassthroughRequest)]


@pytest.mark.parametrize('options', [
    {},
    {'vfio_ids': ['10DE:1B80'], 'kernel_args': ['quiet']},
    {'acs_override': 'downstream', 'acs_accept_risk': True, 'iommu_pt': False},
    {'devices': ['0000:99:00.0'], 'vfio_ids': ['bad']},
])
def test_the_filter_returns_the_typed_plan_as_a_dict(options):
    assert passthrough_plan(FACTS, **options) == plan_passthrough(FACTS, PassthroughRequest(**options)).as_dict()


@pytest.mark.parametrize('facts, options, error, word', [
    ([], {}, AnsibleFilterError, 'list'),
    ({'vendor': 'intel'}, {}, AnsibleFilterError, 'dict'),
    (FACTS, {'device': ['0000:01:00.0']}, TypeError, "'device'"),  # a misspelt option is never silently dropped
])
def test_the_filter_refuses(facts, options, error, word):
    with pytest.raises(error, match=word):
        passthrough_plan(facts, **options)
