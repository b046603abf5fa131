"""_sriov_boot: the udev rule that gives each PF its VFs at boot, and the script beside it."""

from __future__ import annotations

from ansible_collections.vfio.passthrough.plugins.module_utils.sriov._sriov_boot import render, script_argv

PF0, PF1 = '0000:01:00.0', '0000:02:00.0'


def test_render_rule_names_each_pf_and_no_ids():
    entries = [{'pf': PF0, 'vfs': 4, 'vfio': [0, 1]}, {'pf': PF1, 'vfs': 2, 'vfio': []}]
    (rules, rule_text, rule_mode), (script, script_text, script_mode) = render(entries, '/s', '/r')
    assert (rules, rule_mode, script, script_mode) == ('/r', 0o644, '/s', 0o755)
    assert rule_text.splitlines()[0] == '# Managed by Ansible (vfio.passthrough.sriov_vfs): manual edits will be overwritten'
    assert ('ACTION=="add|bind", SUBSYSTEM=="pci", KERNEL=="0000:01:00.0", DRIVER=="?*", '
            'RUN+="/bin/sh /s 0000:01:00.0 4 0,1"') in rule_text.splitlines()
    assert 'RUN+="/bin/sh /s 0000:02:00.0 2 -"' in rule_text
    assert 'ids=' not in rule_text and 'ids=' not in script_text.replace('(never by ids=', '')
    assert script_argv(entries[0], '/s') == ['/bin/sh', '/s', PF0, '4', '0,1']
    assert render([], '/s', '/r') == [('/r', None, 0o644), ('/s', None, 0o755)]
