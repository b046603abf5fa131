#!/usr/bin/env bash
# Run molecule container scenarios end to end: one command for a Makefile target.
#
#   tests/containers/molecule.sh              every scenario molecule/*/molecule.yml
#   tests/containers/molecule.sh smoke other  just those
#   MOLECULE_CMD=converge tests/containers/molecule.sh smoke   another molecule command
#                                                   (default: test)
#   MOLECULE_FULL=1 tests/containers/molecule.sh     also the slow cases (make test-full: the
#                                                   cluster scenario's five-node and QDevice cases)
#
# Ensures, idempotently and in this order:
#   1. podman + runc + debootstrap and /etc/containers/containers.conf
#      (tests/containers/setup-host.sh; needs root)
#   2. the base image (tests/containers/build-image.sh; cached by content hash)
#   3. containers.podman & co. in .cache/collections (tests/containers/vendor-collections.sh)
#   4. molecule in a venv: the project's .venv if it exists (requirements/base.txt
#      + requirements/molecule.txt installed into it), else .cache/venv-molecule;
#      MOLECULE_VENV=<dir> forces a venv (created if missing, molecule.txt only)
#   5. the collection importable by FQCN vfio.passthrough (a symlink
#      $TMPDIR/vfio-passthrough-<hash>/ansible_collections/vfio/passthrough ->
#      this checkout, the scheme tests/unit/conftest.py uses)
# then runs `molecule --base-config molecule/shared/base.yml test -s <scenario>`
# for each scenario and exits non-zero if any failed.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd -P)
cd "$root"

MOLECULE_CMD=${MOLECULE_CMD:-test}
PYTHON=${PYTHON:-python3}

log() { printf '\n[molecule.sh] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
t0=$SECONDS
step_start=$SECONDS
step_done() { log "$1 done in $((SECONDS - step_start)) s"; step_start=$SECONDS; }

# Scenarios: arguments, or every directory with a molecule.yml (shared/ has none).
scenarios=("$@")
if [ ${#scenarios[@]} -eq 0 ]; then
    for f in molecule/*/molecule.yml; do
        [ -e "$f" ] || continue
        scenarios+=("$(basename "$(dirname "$f")")")
    done
fi
[ ${#scenarios[@]} -gt 0 ] || die "no scenarios found under molecule/"
for s in "${scenarios[@]}"; do
    [ -f "molecule/$s/molecule.yml" ] || die "no scenario '$s' (molecule/$s/molecule.yml missing)"
done

log "1/5 host: podman, runc, containers.conf"
tests/containers/setup-host.sh
step_done "host setup"

log "2/5 base image"
image=$(tests/containers/build-image.sh)
[ -n "$image" ] || die "build-image.sh printed no image name"
step_done "image ($image)"

log "3/5 collections"
collections=$(tests/containers/vendor-collections.sh)
step_done "collections"

log "4/5 venv with molecule"
if [ -n "${MOLECULE_VENV:-}" ]; then
    venv=${MOLECULE_VENV%/}
    reqs=(requirements/molecule.txt)
    log "MOLECULE_VENV: using $venv (requirements/molecule.txt only)"
    [ -x "$venv/bin/python" ] || "$PYTHON" -m venv "$venv"
elif [ -x .venv/bin/python ]; then
    venv=.venv
    reqs=(requirements/molecule.txt)
    # Resolve both files together so pip fails loudly on a pin conflict
    # instead of silently replacing what base.txt installed.
    [ -f requirements/base.txt ] && reqs=(requirements/base.txt "${reqs[@]}")
    log "using the project venv .venv (+ ${reqs[*]})"
else
    venv=.cache/venv-molecule
    reqs=(requirements/molecule.txt)
    log "no .venv: using $venv (requirements/molecule.txt only)"
    [ -x "$venv/bin/python" ] || "$PYTHON" -m venv "$venv"
fi
stamp="$venv/.molecule-requirements.sha256"
want=$(cat "${reqs[@]}" | sha256sum | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -x "$venv/bin/molecule" ]; then
    log "$venv already has ${reqs[*]}"
else
    args=()
    for r in "${reqs[@]}"; do args+=(-r "$r"); done
    "$venv/bin/python" -m pip install -q --disable-pip-version-check "${args[@]}" \
        || die "pip install ${reqs[*]} into $venv failed"
    echo "$want" > "$stamp"
fi
# molecule and ansible-playbook find each other (and ansible-config) via PATH.
case "$venv" in /*) ;; *) venv="$root/$venv" ;; esac
export PATH="$venv/bin:$PATH"
molecule --version >&2
step_done "venv ($venv)"

log "5/5 collection path"
link=$(PYTHON="$venv/bin/python" tools/collection-link.sh)
[ "$(cd "$link" && pwd -P)" = "$root" ] || die "$link does not point at $root"
collections_base=$(cd "$link/../../.." && pwd)

export ANSIBLE_COLLECTIONS_PATH="$collections_base:$collections"
export VFIO_MOLECULE_IMAGE="$image"
# The scenario `cluster` runs corosync: its image is the base one with Debian's corosync packages.
for s in "${scenarios[@]}"; do
    if [ "$s" = cluster ]; then
        VFIO_MOLECULE_CLUSTER_IMAGE=$(tests/containers/build-cluster-image.sh "$image")
        export VFIO_MOLECULE_CLUSTER_IMAGE
        log "VFIO_MOLECULE_CLUSTER_IMAGE=$VFIO_MOLECULE_CLUSTER_IMAGE"
    fi
done
# Container names are host-global: make ours unique per checkout.
prefix=$(printf '%s' "$root" | sha1sum | cut -c1-6)
export VFIO_MOLECULE_PREFIX="vfio-$prefix"
export LC_ALL=C.UTF-8 LANG=C.UTF-8
export ANSIBLE_FORCE_COLOR=${ANSIBLE_FORCE_COLOR:-0} PY_COLORS=${PY_COLORS:-0}
log "ANSIBLE_COLLECTIONS_PATH=$ANSIBLE_COLLECTIONS_PATH"
log "VFIO_MOLECULE_IMAGE=$VFIO_MOLECULE_IMAGE VFIO_MOLECULE_PREFIX=$VFIO_MOLECULE_PREFIX"
step_done "setup"

# Scenarios run MOLECULE_JOBS at a time (default 2, one per core): the work is mostly one
# ansible-playbook process per scenario, and the containers' names, networks and molecule's
# ephemeral dirs are per scenario. Each scenario's output is prefixed with its name.
why_failed() {  # why_failed LOG: the failed tasks' and tests' own lines (Ansible's fatal, pytest's summary)
    local pattern='^(FAILED |ERROR )|fatal: \[|^E   |CRITICAL'
    if grep -qE "$pattern" "$1"; then
        grep -E "$pattern" "$1" | tail -n 20 | cut -c1-400 | sed 's/^/  /'
    else
        echo '  (no failure line; its last lines:)'
        tail -n 15 "$1" | sed 's/^/  /'
    fi
}
jobs=${MOLECULE_JOBS:-2}
[[ $jobs =~ ^[1-9][0-9]*$ ]] || die "MOLECULE_JOBS must be a positive integer, not '$jobs'"
results=$(mktemp -d)
trap 'rm -rf "$results"' EXIT
# CI keeps only the end of a long log: each scenario's output is also kept whole in
# tests/output/molecule/SCENARIO.log, and the summary ends with why each failed scenario failed.
logs=tests/output/molecule
mkdir -p "$logs"
run_scenario() {
    local s=$1 st=$SECONDS rc=0
    log "scenario $s: molecule $MOLECULE_CMD (whole output: $logs/$s.log)"
    molecule --base-config molecule/shared/base.yml "$MOLECULE_CMD" -s "$s" 2>&1 \
        | tee "$logs/$s.log" | sed -u "s/^/[$s] /" || rc=$?
    if [ "$rc" -eq 0 ]; then
        echo "PASS $s ($((SECONDS - st)) s)" > "$results/$s"
    else
        echo "FAIL $s ($((SECONDS - st)) s)" > "$results/$s"
    fi
}
for s in "${scenarios[@]}"; do
    while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do wait -n || true; done
    run_scenario "$s" &
done
wait
failed=()
summary=()
for s in "${scenarios[@]}"; do
    if [ -s "$results/$s" ]; then
        summary+=("$(cat "$results/$s")")
    else
        summary+=("FAIL $s (no result)")
    fi
    case ${summary[-1]} in PASS*) ;; *) failed+=("$s") ;; esac
done

log "summary (total $((SECONDS - t0)) s)"
printf '  %s\n' "${summary[@]}" >&2
for s in "${failed[@]}"; do
    log "why $s failed (from $logs/$s.log):"
    why_failed "$logs/$s.log" >&2
done
[ ${#failed[@]} -eq 0 ] || die "failed scenarios: ${failed[*]}"
