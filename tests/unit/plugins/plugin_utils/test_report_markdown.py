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


def test_vfs_are_drawn_under_their_pf_with_a_verdict_each(tmp_path):
    import sysfs_builder
    from module_runner import run_module
    from ansible_collections.vfio.passthrough.plugins.modules import iommu_facts

    host = sysfs_builder.intel_gpu_host(tmp_path)
    host.add_bridge('0000:00:1c.4', group=20)
    host.add_device('0000:05:00.0', '8086', '10c9', '020000', driver='igb', group=21, parent_bridge='0000:00:1c.4',
                    sriov_totalvfs=7)
    host.add_vfs('0000:05:00.0', ['0000:05:10.0', '0000:05:10.2'], drivers=('vfio-pci', 'igbvf'), groups=(22, 23))
    facts = run_module(iommu_facts.main, {'root': str(tmp_path)})['ansible_facts']['iommu']
    rows = [cells(r) for r in md_rows(render_markdown(facts, 'pve'), 'Devices')]
    at = [c[0].strip() for c in rows].index('0000:05:00.0')
    pf, vf0, vf1 = rows[at:at + 3]
    assert [c[0].strip() for c in (vf0, vf1)] == ['\u21b3 0000:05:10.0', '\u21b3 0000:05:10.2']
    assert [c[6].strip() for c in (pf, vf0, vf1)] == ['2 of 7 VFs', 'VF 0 of 0000:05:00.0', 'VF 1 of 0000:05:00.0']
    # Each VF has its own group behind the root port: its own verdict.
    assert vf0[9].strip().startswith('**on vfio-pci**') and vf1[9].strip().startswith('**no FLR**') is False
    assert vf1[9].strip().startswith('**ready**'), vf1[9]
