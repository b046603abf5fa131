#!/usr/bin/env bash
# Fail unless `ansible-doc vfio.passthrough.<module>` renders for every module
# in plugins/modules. ansible-doc exits 0 even for a module it cannot find or
# parse (it only warns), so success is judged from its JSON output: the module
# must come back with a non-empty description, and the text rendering an admin
# reads must produce no warning or error.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
root=$(dirname "$here")
# Search only the link's root, so an installed copy elsewhere cannot stand in
# for the checkout.
ANSIBLE_COLLECTIONS_PATH=$(PYTHON="${PYTHON:-python3}" "$here/collection-link.sh" --collections-path)
export ANSIBLE_COLLECTIONS_PATH
export ANSIBLE_COLLECTIONS_SCAN_SYS_PATH=false
export ANSIBLE_NOCOLOR=1

shopt -s nullglob
modules=()
for file in "$root"/plugins/modules/*.py; do
    name=${file##*/}
    name=${name%.py}
    [[ $name == __init__ ]] || modules+=("$name")
done
if [[ ${#modules[@]} -eq 0 ]]; then
    echo "ansible-doc: no modules found under plugins/modules" >&2
    exit 1
fi

failed=0
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for name in "${modules[@]}"; do
    fqcn=vfio.passthrough.$name
    if ! ansible-doc --json -t module "$fqcn" >"$tmp/json" 2>"$tmp/err" \
        || ! python3 - "$fqcn" "$tmp/json" <<'PY'
import json
import sys

fqcn, path = sys.argv[1], sys.argv[2]
with open(path) as handle:
    data = json.load(handle)
doc = (data.get(fqcn) or {}).get('doc') or {}
if not doc.get('short_description') or not doc.get('description'):
    sys.exit(1)
PY
    then
        echo "ansible-doc: $fqcn: no documentation" >&2
        cat "$tmp/err" >&2
        failed=1
        continue
    fi
    if ! ansible-doc -t module "$fqcn" >"$tmp/text" 2>"$tmp/err" || [[ -s $tmp/err ]] || [[ ! -s $tmp/text ]]; then
        echo "ansible-doc: $fqcn: text rendering failed" >&2
        cat "$tmp/err" >&2
        failed=1
        continue
    fi
    echo "ansible-doc: $fqcn renders ($(wc -l <"$tmp/text") lines)"
done
exit "$failed"
