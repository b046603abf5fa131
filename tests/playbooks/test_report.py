"""playbooks/report.yml end to end: the real ansible-playbook against localhost over the local connection.

Two inventory hosts read two fake sysfs trees (pcie_passthrough_root); the files
land on the controller below the working directory. Check mode writes nothing,
a real run writes exactly the facts and the renderers' output, a second run
changes nothing, and the hosts' trees are never touched.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from ansible_collections.vfio.passthrough.plugins.module_utils.tuning._tuning_facts import gather_tuning_facts
from ansible_collections.vfio.passthrough.plugins.plugin_utils._report_html import render_html
from ansible_collections.vfio.passthrough.plugins.plugin_utils._report_index import render_index_html, render_index_markdown
from ansible_collections.vfio.passthrough.plugins.plugin_utils._report_markdown import render_markdown
from collection_link import collection_link
from report_pages import check_page, facts_of, parse_page
from sysfs_builder import amd_twin_nic_host, intel_gpu_host
from tree_snapshot import tree_snapshot

ROOT = Path(__file__).resolve().parents[2]
PLAYBOOK = ROOT / 'playbooks' / 'report.yml'
HOSTS = {'pve1': intel_gpu_host, 'pve2': amd_twin_nic_host}


@pytest.fixture(scope='module')
def bed(tmp_path_factory):
    base = tmp_path_factory.mktemp('report-playbook')
    trees = {}
    for host, build in HOSTS.items():
        trees[host] = base / 'trees' / host
        build(trees[host])
    work = base / 'work'
    work.mkdir()
    # ansible_become_method su: become stays on as in production; root needs no password for it,
    # and this machine has no sudo.
    inventory = {'all': {'hosts': {h: {'pcie_passthrough_root': str(t)} for h, t in trees.items()},
                         'vars': {'ansible_connection': 'local', 'ansible_python_interpreter': sys.executable,
                                  'ansible_become_method': 'su'}}}
    (base / 'inventory.json').write_text(json.dumps(inventory))
    return base, trees, work


def playbook(bed, *extra):
    base, _trees, work = bed
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(collection_link(ROOT).parents[2]),
               ANSIBLE_COLLECTIONS_SCAN_SYS_PATH='false', ANSIBLE_NOCOLOR='1', ANSIBLE_RETRY_FILES_ENABLED='false',
               ANSIBLE_LOCAL_TEMP=str(base / 'tmp'), ANSIBLE_HOME=str(base / 'ansible-home'))
    env.pop('PWD', None)  # the default ./reports comes from the working directory itself
    argv = [str(Path(sys.executable).with_name('ansible-playbook')), '-i', str(base / 'inventory.json'),
            str(PLAYBOOK), '-e', 'pcie_passthrough_hosts=all', *extra]
    result = subprocess.run(argv, cwd=work, env=env, capture_output=True, text=True, timeout=300, check=False)
    return result.returncode, result.stdout + result.stderr


def recap(output):
    return {m.group(1): {k: int(v) for k, v in re.findall(r'(\w+)=(\d+)', m.group(2))}
            for m in re.finditer(r'^(\S+)\s+: (ok=.*)$', output, re.M)}


def test_check_run_then_real_run_then_idempotent(bed):
    _base, trees, work = bed
    before_trees = {h: tree_snapshot(t) for h, t in trees.items()}

    rc, out = playbook(bed, '--check')
    assert rc == 0, out
    assert list(work.iterdir()) == [], 'check mode wrote on the controller'
    assert set(recap(out)) == set(HOSTS), out
    assert 'reports/index.html lists 2 hosts (not written: check mode)' in out

    rc, out = playbook(bed)
    assert rc == 0, out
    assert all(r['failed'] == 0 and r['changed'] >= 1 for r in recap(out).values()), out
    reports = work / 'reports'
    assert sorted(str(p.relative_to(reports)) for p in reports.rglob('*') if p.is_file()) == [
        'index.html', 'index.md', 'pve1/iommu.html', 'pve1/iommu.json', 'pve1/iommu.md',
        'pve2/iommu.html', 'pve2/iommu.json', 'pve2/iommu.md']
    facts = {}
    for host, tree in trees.items():
        facts[host] = json.loads((reports / host / 'iommu.json').read_text())
        # the facts the host reported, unchanged, and each page rendered from them for this host name
        assert facts[host] == facts_of(tree)
        html = (reports / host / 'iommu.html').read_text()
        # the summary also holds the host_tuning facts of the same tree
        assert html == render_html(facts[host], host, gather_tuning_facts(str(tree)))
        check_page(html, facts[host])
        markdown = render_markdown(facts[host], host, gather_tuning_facts(str(tree)))
        assert (reports / host / 'iommu.md').read_text() == markdown
        assert 'IOMMU report: %s' % host in html
    index = (reports / 'index.html').read_text()
    assert index == render_index_html(facts)
    assert (reports / 'index.md').read_text() == render_index_markdown(facts)
    links = [a['href'] for t, a in parse_page(index).elements if t == 'a']
    assert links == ['pve1/iommu.html', 'pve2/iommu.html'] and all((reports / link).is_file() for link in links)
    # the console summary gives each device its verdict
    assert re.search(r'0000:01:00\.0 \[10de:1b80\] VGA compatible controller group=1 driver=nouveau: SHARES GROUP', out)
    assert re.search(r'0000:07:00\.0 \[10ec:8168\] .*: HOST-CRITICAL \(the host needs it: NIC enp7s0', out)

    written = tree_snapshot(reports)
    for extra in ((), ('--check',)):
        rc, out = playbook(bed, *extra)
        assert rc == 0, out
        assert all(r['changed'] == 0 and r['failed'] == 0 for r in recap(out).values()), (extra, out)
        assert tree_snapshot(reports) == written, extra
    assert {h: tree_snapshot(t) for h, t in trees.items()} == before_trees, 'the hosts were written to'


def test_report_dir_option_and_a_host_name_that_cannot_be_a_directory(bed, tmp_path):
    base, trees, _work = bed
    inventory = json.loads((base / 'inventory.json').read_text())
    inventory['all']['hosts'] = {'ok-host': {'pcie_passthrough_root': str(trees['pve1'])},
                                 'bad/name': {'pcie_passthrough_root': str(trees['pve2'])}}
    bad_bed = tmp_path / 'bad'
    (bad_bed / 'work').mkdir(parents=True)
    (bad_bed / 'inventory.json').write_text(json.dumps(inventory))
    target = tmp_path / 'out'
    rc, out = playbook((bad_bed, trees, bad_bed / 'work'), '-e', 'pcie_passthrough_report_dir=%s' % target)
    assert rc != 0
    assert 'The inventory host name "bad/name" cannot name a directory below %s' % target in out, out
    # the bad host is left out; the good one is reported, and the index lists only it
    assert sorted(str(p.relative_to(target)) for p in target.rglob('*') if p.is_file()) == [
        'index.html', 'index.md', 'ok-host/iommu.html', 'ok-host/iommu.json', 'ok-host/iommu.md']
    assert list((bad_bed / 'work').iterdir()) == []
