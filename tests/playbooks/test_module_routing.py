"""meta/runtime.yml's plugin_routing, through the real ansible: an old module name still runs, with its deprecation."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from collection_link import collection_link

ROOT = Path(__file__).resolve().parents[2]
ROUTING = yaml.safe_load((ROOT / 'meta' / 'runtime.yml').read_text())['plugin_routing']['modules']


@pytest.mark.parametrize('old', sorted(ROUTING))
def test_an_old_module_name_runs_the_new_module_and_warns(tmp_path, old):
    route = ROUTING[old]
    new = route['redirect']
    assert (ROOT / 'plugins' / 'modules' / (new.rsplit('.', 1)[1] + '.py')).is_file()
    assert not (ROOT / 'plugins' / 'modules' / (old + '.py')).exists()
    image = tmp_path / 'initrd.img-6.8.12-4-pve'
    image.write_text('')
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(collection_link(ROOT).parents[2]),
               ANSIBLE_COLLECTIONS_SCAN_SYS_PATH='false', ANSIBLE_NOCOLOR='1', ANSIBLE_HOME=str(tmp_path / 'home'),
               ANSIBLE_LOCAL_TEMP=str(tmp_path / 'tmp'), ANSIBLE_DEPRECATION_WARNINGS='1')
    argv = [str(Path(sys.executable).with_name('ansible')), 'localhost', '-c', 'local',
            '-e', 'ansible_python_interpreter=%s' % sys.executable,
            '-m', 'vfio.passthrough.%s' % old, '-a', json.dumps({'paths': [str(image)], 'images': str(image)})]
    result = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    # the minimal callback: "localhost | SUCCESS => {json}"
    task = json.loads(result.stdout.split(' => ', 1)[1])
    assert (task['stale'], task['present'], task['images']) == (False, [str(image)], [str(image)])
    warning = ' '.join(result.stderr.split())
    assert 'vfio.passthrough.%s has been deprecated' % old in warning, result.stderr
    assert route['deprecation']['warning_text'] in warning, result.stderr
