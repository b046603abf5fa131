"""The symlink $TMPDIR/vfio-passthrough-<hash>/ansible_collections/vfio/passthrough -> this checkout.

Ansible only loads a collection from a directory named
ansible_collections/<namespace>/<name>; the repository root is the collection
root, so a symlink outside the tree gives that path without making the tree
contain itself. tools/collection-link.sh (ansible-test, ansible-doc, lint,
molecule) and tests/unit/conftest.py (pytest) both call collection_link().
"""

from __future__ import annotations

import hashlib
import os
import sys
import tempfile
from pathlib import Path


def collection_link(root):
    """Create (atomically, if missing or stale) and return the link for checkout ``root``."""
    root = Path(root).resolve()
    tag = hashlib.sha1(str(root).encode()).hexdigest()[:10]
    link = Path(tempfile.gettempdir()) / ('vfio-passthrough-' + tag) / 'ansible_collections' / 'vfio' / 'passthrough'
    if not (link.is_symlink() and link.resolve() == root):
        link.parent.mkdir(parents=True, exist_ok=True)
        # Replace atomically: pytest and make may create it at the same time.
        tmp = link.with_name('.passthrough.%d' % os.getpid())
        tmp.symlink_to(root)
        os.replace(tmp, link)
    return link


if __name__ == '__main__':
    LINK = collection_link(sys.argv[1])
    print(LINK.parents[2] if sys.argv[2:] == ['--collections-path'] else LINK)
