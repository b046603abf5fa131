#!/usr/bin/env bash
# Prepare this machine to run molecule's podman driver: install podman, runc and
# debootstrap, and write /etc/containers/containers.conf. Idempotent: a second
# run installs nothing and rewrites nothing. Needs root (CI machines are fresh,
# root, Debian 12).
#
# Why the config: crun (podman's default runtime) fails on this host's hybrid
# cgroup v1/v2 layout, and podman's default rlimits fail with "setrlimit
# RLIMIT_NOFILE: Operation not permitted". See docs in tests/containers/README.md.
set -euo pipefail

log() { printf '[setup-host] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

[ "$(id -u)" -eq 0 ] || die "must run as root (apt-get install, /etc/containers)"

CONF=/etc/containers/containers.conf
read -r -d '' WANT_CONF <<'EOF' || true
# Written by vfio.passthrough tests/containers/setup-host.sh.
# runc: crun fails on this host's hybrid cgroup v1/v2 layout.
# default_ulimits: podman's defaults (and --ulimit host) fail with
# "setrlimit RLIMIT_NOFILE: Operation not permitted".
[containers]
default_ulimits = ["nofile=4096:4096", "nproc=4096:4096"]

[engine]
runtime = "runc"
EOF

missing=()
for cmd_pkg in podman:podman runc:runc debootstrap:debootstrap; do
    command -v "${cmd_pkg%%:*}" >/dev/null 2>&1 || missing+=("${cmd_pkg#*:}")
done
if [ ${#missing[@]} -gt 0 ]; then
    log "installing ${missing[*]} (apt-get update + install)"
    start=$SECONDS
    export DEBIAN_FRONTEND=noninteractive
    # make test builds VM images in the background (tests/vm/prefetch.sh), which may hold the
    # dpkg lock (waited for below) or apt's lists lock (which apt never waits for: retry).
    for try in 1 2 3 4 5 6 7 8 9 10; do
        apt-get -o DPkg::Lock::Timeout=600 update -q >&2 && break
        [ "$try" -lt 10 ] || die "apt-get update failed 10 times"
        sleep 6
    done
    apt-get -o DPkg::Lock::Timeout=600 install -y -q --no-install-recommends podman runc debootstrap >&2
    log "apt done in $((SECONDS - start)) s"
else
    log "podman, runc, debootstrap already installed"
fi

mkdir -p "$(dirname "$CONF")"
if [ -f "$CONF" ] && [ "$(cat "$CONF")" = "$WANT_CONF" ]; then
    log "$CONF already as wanted"
else
    if [ -e "$CONF" ]; then
        backup="$CONF.bak.$(date -u +%Y%m%dT%H%M%SZ)"
        cp -a "$CONF" "$backup"
        log "existing $CONF differs: backed up to $backup and replaced"
    fi
    printf '%s\n' "$WANT_CONF" > "$CONF.tmp"
    mv "$CONF.tmp" "$CONF"
    log "wrote $CONF (runtime=runc, default_ulimits nofile/nproc 4096)"
fi

# Fail here, not in the middle of a molecule run, if the runtime is unusable.
runtime=$(podman info --format '{{.Host.OCIRuntime.Name}}' 2>/dev/null) \
    || die "podman info failed; run 'podman info' to see why"
[ "$runtime" = runc ] || die "podman uses OCI runtime '$runtime', expected runc (check $CONF)"
log "podman $(podman version --format '{{.Client.Version}}') ready, runtime $runtime"
