"""The kernels the VM images boot, read by the collection's command-line limit check (issue 25).

tests/unit's test_cmdline_limit.py reads real bzImages where it finds them and skips elsewhere (a CI
machine has no /boot/vmlinuz-*). The image builder keeps each guest's kernel beside its image, so the
VM stage runs that test against them with VFIO_TEST_KERNEL set, where a missing kernel is a failure.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
UNIT_TEST = ROOT / 'tests' / 'unit' / 'plugins' / 'module_utils' / 'boot' / 'test_cmdline_limit.py'


def image_dir(suite):
    argv = [str(ROOT / 'tests' / 'vm' / 'build-image.sh'), '--suite', suite, '--print-dir']
    return Path(subprocess.run(argv, capture_output=True, text=True, check=True).stdout.strip())


def test_the_collection_reads_the_cmdline_size_of_the_guests_kernel():
    # Building (or finding) the image is what keeps its kernel: the Intel scenario builds the same one.
    subprocess.run([str(ROOT / 'tests' / 'vm' / 'build-image.sh'), '--suite', 'trixie'], check=True)
    kernels = sorted(str(path) for path in image_dir('trixie').glob('vmlinuz-*'))
    env = dict(os.environ, VFIO_TEST_KERNEL=os.pathsep.join(kernels))
    run = subprocess.run([sys.executable, '-m', 'pytest', '-o', 'addopts=', '-p', 'no:cacheprovider', '-s', '-q', str(UNIT_TEST),
                          '-k', 'test_real_kernels_have_a_cmdline_size'],
                         cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    print(run.stdout[-2000:])
    assert kernels, 'no vmlinuz-* beside the trixie image in %s' % image_dir('trixie')
    assert run.returncode == 0 and '1 passed' in run.stdout, run.stdout + run.stderr
    assert 'cmdline_size' in run.stdout
