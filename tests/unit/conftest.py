"""Make the checkout importable as ``ansible_collections.vfio.passthrough``.

The repository root is the collection root, but Python (and Ansible's module
loader) can only import it from a directory named
``ansible_collections/vfio/passthrough``. A symlink outside the tree provides
that without making the tree contain itself.
"""

from __future__ import annotations

import hashlib
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _collection_path() -> Path:
    tag = hashlib.sha1(str(ROOT).encode()).hexdigest()[:10]
    base = Path(tempfile.gettempdir()) / ('vfio-passthrough-' + tag)
    link = base / 'ansible_collections' / 'vfio' / 'passthrough'
    if not link.is_symlink():
        link.parent.mkdir(parents=True, exist_ok=True)
        tmp = link.with_name('.passthrough.%d' % os.getpid())
        tmp.symlink_to(ROOT)
        os.replace(tmp, link)
    return base


_base = str(_collection_path())
if _base not in sys.path:
    sys.path.insert(0, _base)
