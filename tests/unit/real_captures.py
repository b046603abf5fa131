"""The sysfs/procfs captures of real guests under tests/fixtures/real, and what their names say.

The VM scenarios write them (``VFIO_CAPTURE=1``, tests/vm/scenarios/conftest.py ``Guest.capture``) as
``<suite>-[linux<X.Y>-]<flavour>[-<variant>]-<phase>``: ``trixie-intel-after`` is a Debian 13 guest on its
own kernel after the role ran, ``trixie-linux7.3-intel-after`` the same on the trixie-backports 7.3 kernel.
Tests take the list from the directory, so a refreshed or added capture needs no edit; what they
assert instead is that each name parses and agrees with the capture's own kernel release.
"""

from __future__ import annotations

import re
import tarfile
from pathlib import Path

REAL = Path(__file__).resolve().parents[1] / 'fixtures' / 'real'
NAME = re.compile(r'^(?P<suite>bookworm|trixie)-(?:linux(?P<line>\d+\.\d+)-)?(?P<flavour>intel|amd)'
                  r'(?:-(?P<variant>[a-z0-9]+))?-(?P<phase>before|after)$')
# The release each suite's own kernel reports (uname -r): 6.1.0-NN-amd64, 6.12.NN+deb13-amd64.
SUITE_KERNELS = {'bookworm': '6.1.', 'trixie': '6.12.'}


def captures():
    return sorted(p.name for p in REAL.iterdir() if (p / 'sysfs.tar.gz').is_file()) if REAL.is_dir() else []


def parse(name):
    """What the name says: suite, kernel line (or None), flavour, variant (or None), phase."""
    match = NAME.match(name)
    if not match:
        raise ValueError('%s is not <suite>-[linux<X.Y>-]<intel|amd>[-<variant>]-<before|after>' % name)
    return match.groupdict()


def expected_release_prefix(info):
    return info['line'] + '.' if info['line'] else SUITE_KERNELS[info['suite']]


def read(name, member):
    """A file of the capture's tar, as text."""
    with tarfile.open(REAL / name / 'sysfs.tar.gz') as tar:
        return tar.extractfile(member).read().decode()
