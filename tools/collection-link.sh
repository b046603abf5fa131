#!/usr/bin/env bash
# Print the path .../ansible_collections/vfio/passthrough that points at this
# checkout, creating the symlink if needed. With --collections-path, print
# instead the directory holding ansible_collections/, the value for
# ANSIBLE_COLLECTIONS_PATH.
#
# ansible-test and ansible-doc only find a collection below a directory named
# ansible_collections/<namespace>/<name>; the repository root is the collection
# root, so a symlink outside the tree provides that path without making the tree
# contain itself. tools/collection_link.py computes it, for tests/unit/conftest.py too.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
if [[ $# -gt 0 && $1 != --collections-path ]]; then
    echo "usage: $0 [--collections-path]" >&2
    exit 2
fi

exec "${PYTHON:-python3}" "$root/tools/collection_link.py" "$root" "$@"
