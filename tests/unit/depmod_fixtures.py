"""Real depmod files of Debian 12, Debian 13 and trixie-backports kernels (tests/fixtures/modules), for fake roots.

``install_kernels(root, DEB12, DEB13)`` puts them at ``root/lib/modules/<version>``
as on a host that keeps both kernels; ``kernel(version)`` parses one.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from ansible_collections.vfio.passthrough.plugins.module_utils.host_safety._module_deps import Kernel

__all__ = ['MODULES', 'DEB12', 'DEB13', 'DEB13_BPO', 'kernel', 'install_kernels']

MODULES = Path(__file__).resolve().parents[1] / 'fixtures' / 'modules'
DEB12 = '6.1.0-56-amd64'
DEB13 = '6.12.117+deb13-amd64'
# trixie-backports' newest whole line (its 7.0 packages lack their modules): a host keeps it beside 6.12.
DEB13_BPO = '7.3.4+deb13-amd64'


def kernel(version, config=None):
    names = ('modules.dep', 'modules.softdep', 'modules.builtin', 'modules.alias')
    files = {n: (MODULES / version / n).read_text() for n in names}
    return Kernel(version, files['modules.dep'], files['modules.softdep'], files['modules.builtin'],
                  files['modules.alias'], config)


def install_kernels(root, *versions):
    for version in versions:
        shutil.copytree(MODULES / version, Path(root) / 'lib/modules' / version)
