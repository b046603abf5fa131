"""The canned hosts of report_pages.CANNED, built under tmp_path, with their facts from the real module."""

from __future__ import annotations

import pytest

from report_pages import CANNED, facts_of


@pytest.fixture(params=sorted(CANNED))
def canned(request, tmp_path):
    build, devices, groups = CANNED[request.param]
    build(tmp_path)
    return request.param, facts_of(tmp_path), devices, groups
