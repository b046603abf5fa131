#!/usr/bin/env bash
# Put the Ansible collections the container tests need into .cache/collections/
# (ANSIBLE_COLLECTIONS_PATH entry), idempotently.
#
# Why not ansible-galaxy: Galaxy is unreachable from these machines. The same
# collections ship inside the `ansible` package on PyPI, so download that wheel
# once (no dependencies, ~50 MB, kept in .cache/pip-ansible/) and extract only
# the collections listed below.
#
#   tests/containers/vendor-collections.sh          prints the collections path on stdout
#   COLLECTIONS="containers.podman ansible.posix" tests/containers/vendor-collections.sh
#
# ansible 12.3.0 holds containers.podman 1.18.0, community.general 11.4.2,
# ansible.posix 2.1.0.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd -P)
ANSIBLE_VERSION=${ANSIBLE_VERSION:-12.3.0}
# containers.podman: molecule's podman driver (create/destroy playbooks) and the
# Ansible connection to the containers. ansible.posix / community.general:
# commonly needed by roles and scenarios (mount, sysctl, modprobe, ini_file).
COLLECTIONS=${COLLECTIONS:-containers.podman ansible.posix community.general}
PYTHON=${PYTHON:-python3}

dest="$root/.cache/collections"
wheel_dir="$root/.cache/pip-ansible"
stamp="$dest/.vendored"
want="ansible==$ANSIBLE_VERSION: $COLLECTIONS"

log() { printf '[vendor-collections] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    log "up to date ($want)"
    echo "$dest"
    exit 0
fi

mkdir -p "$wheel_dir"
wheel=$(find "$wheel_dir" -maxdepth 1 -name "ansible-$ANSIBLE_VERSION-*.whl" -print -quit)
if [ -z "$wheel" ]; then
    log "downloading ansible==$ANSIBLE_VERSION wheel (no deps) into $wheel_dir"
    start=$SECONDS
    "$PYTHON" -m pip download -q --no-deps --only-binary=:all: -d "$wheel_dir" \
        "ansible==$ANSIBLE_VERSION" >&2 || die "pip download ansible==$ANSIBLE_VERSION failed"
    wheel=$(find "$wheel_dir" -maxdepth 1 -name "ansible-$ANSIBLE_VERSION-*.whl" -print -quit)
    [ -n "$wheel" ] || die "no ansible-$ANSIBLE_VERSION wheel in $wheel_dir after download"
    log "downloaded $(basename "$wheel") in $((SECONDS - start)) s"
fi

# Extract into a fresh directory and swap it in, so an interrupted run never
# leaves a half-extracted collection that a later run would trust.
tmp=$(mktemp -d "$root/.cache/collections.tmp.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
read -r -a collection_names <<< "$COLLECTIONS"
"$PYTHON" - "$wheel" "$tmp" "${collection_names[@]}" <<'PY'
import sys
import zipfile

wheel, dest, *names = sys.argv[1:]
prefixes = ['ansible_collections/%s/' % n.replace('.', '/') for n in names]
with zipfile.ZipFile(wheel) as zf:
    members = [m for m in zf.namelist() if any(m.startswith(p) for p in prefixes)]
    for p, n in zip(prefixes, names):
        if not any(m.startswith(p) for m in members):
            sys.exit('collection %s not found in %s' % (n, wheel))
    zf.extractall(dest, members)
    print('extracted %d files for %s' % (len(members), ', '.join(names)), file=sys.stderr)
PY
for n in $COLLECTIONS; do
    ver=$("$PYTHON" -c 'import json,sys; print(json.load(open(sys.argv[1]))["collection_info"]["version"])' \
        "$tmp/ansible_collections/${n//.//}/MANIFEST.json")
    log "  $n $ver"
done
echo "$want" > "$tmp/.vendored"
rm -rf "$dest.old"
[ -d "$dest" ] && mv "$dest" "$dest.old"
mv "$tmp" "$dest"
rm -rf "$dest.old"
trap - EXIT
log "collections ready in $dest"
echo "$dest"
