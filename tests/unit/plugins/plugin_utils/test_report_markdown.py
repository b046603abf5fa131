"""The host report as Markdown (plugin_utils/_report_markdown.py): one row per device, one per group."""

from __future__ import annotations

from ansible_collections.vfio.passthrough.plugins.plugin_utils._report_markdown import render_markdown
from ansible_collections.vfio.passthrough.plugins.plugin_utils._report_verdicts import VERDICTS
from report_pages import cells, md_rows


def test_canned_host_markdown(canned):
    name, facts, expected, groups = canned
    text = render_markdown(facts, name)
    assert text.startswith('# IOMMU report: %s\n' % name)
    rows = md_rows(text, 'Devices')
    assert [cells(r)[0].strip() for r in rows] == sorted(facts['devices'])
    assert all(len(cells(r)) == 10 for r in rows)
    labels = dict((v[0], v[1]) for v in VERDICTS)
    for row in rows:
        row_cells = cells(row)
        address, device = row_cells[0].strip(), facts['devices'][row_cells[0].strip()]
        assert row_cells[1].strip() == '%s:%s' % (device['vendor_id'], device['device_id'])
        assert row_cells[9].strip().startswith('**%s**' % labels[expected[address]])
    group_rows = md_rows(text, 'IOMMU groups')
    assert [cells(r)[0].strip() for r in group_rows] == [('-' if g == 'none' else g) for g in groups]
    assert [cells(r)[2].strip() for r in group_rows] == [labels[v] for v in groups.values()]
