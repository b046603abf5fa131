#!/usr/bin/env bash
# Print the path .../ansible_collections/vfio/passthrough that points at this
# checkout, creating the symlink if needed. With --collections-path, print
# instead the directory holding ansible_collections/, the value for
# ANSIBLE_COLLECTIONS_PATH.
#
# ansible-test and ansible-doc only find a collection below a directory named
# ansible_collections/<namespace>/<name>; the repository root is the collection
# root, so a symlink outside the tree provides that path without making the tree
# contain itself. The scheme ($TMPDIR/vfio-passthrough-<sha1(root)[:10]>) is the
# one tests/unit/conftest.py uses, computed by the same Python code so that both
# always agree (tempfile.gettempdir() honours TMPDIR, TEMP and TMP).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
mode='link'
if [[ ${1:-} == --collections-path ]]; then
    mode='base'
elif [[ $# -gt 0 ]]; then
    echo "usage: $0 [--collections-path]" >&2
    exit 2
fi

exec "${PYTHON:-python3}" - "$root" "$mode" <<'PY'
import hashlib
import os
import sys
import tempfile
from pathlib import Path

root = Path(sys.argv[1]).resolve()
tag = hashlib.sha1(str(root).encode()).hexdigest()[:10]
link = Path(tempfile.gettempdir()) / ('vfio-passthrough-' + tag) / 'ansible_collections' / 'vfio' / 'passthrough'
if not (link.is_symlink() and link.resolve() == root):
    link.parent.mkdir(parents=True, exist_ok=True)
    # Replace atomically: another process (pytest's conftest) may race us.
    tmp = link.with_name('.passthrough.%d' % os.getpid())
    tmp.symlink_to(root)
    os.replace(tmp, link)
print(link if sys.argv[2] == 'link' else link.parents[2])
PY
