"""initramfs_info: a configuration file newer than the oldest image means a rebuild is owed."""

from __future__ import annotations

import os

import pytest

from ansible_collections.vfio.passthrough.plugins.modules import initramfs_info
from module_runner import run_module


@pytest.mark.parametrize('image_times, file_time, stale', [
    ((100, 200), 150, True),     # newer than the oldest image: one kernel still has the old initramfs
    ((100, 200), 50, False),
    ((100,), 100, False),        # same second: written by the rebuild itself
    ((), 500, False),            # no image at all (container): nothing to rebuild
])
def test_stale(tmp_path, image_times, file_time, stale):
    for index, when in enumerate(image_times):
        image = tmp_path / ('initrd.img-6.8.%d-pve' % index)
        image.write_text('x')
        os.utime(image, (when, when))
    conf = tmp_path / 'vfio.conf'
    conf.write_text('options vfio-pci ids=8086:10d3\n')
    os.utime(conf, (file_time, file_time))
    result = run_module(initramfs_info.main, {'paths': [str(conf), str(tmp_path / 'missing.conf')],
                                              'images': str(tmp_path / 'initrd.img-*')})
    assert result['changed'] is False
    assert result['stale'] is stale
    assert result['newer'] == ([str(conf)] if stale else [])
    assert len(result['images']) == len(image_times)
    assert result['present'] == [str(conf)]   # the missing file is not listed


def test_present_lists_existing_paths_in_order_with_dangling_links(tmp_path):
    hook, conf, dangling = tmp_path / 'hook', tmp_path / 'a.conf', tmp_path / 'bind'
    hook.write_text('#!/bin/sh\n')
    conf.write_text('options vfio-pci ids=8086:10d3\n')
    os.symlink(tmp_path / 'gone', dangling)
    paths = [str(conf), str(tmp_path / 'missing.conf'), str(dangling), str(hook)]
    result = run_module(initramfs_info.main, {'paths': paths, 'images': str(tmp_path / 'initrd.img-*')})
    assert result['present'] == [str(conf), str(dangling), str(hook)]
