#!/usr/bin/env bash
# Build the image of the molecule scenario `cluster`: the base image (build-image.sh) with Debian 12's
# corosync (3.1.7, kronosnet), corosync-qdevice and corosync-qnetd from Debian's archive, and a unit that
# writes /run/container-boot-id at each container start. The units are installed disabled: the scenario
# forms each cluster itself.
#
#   build-cluster-image.sh BASE_IMAGE   build unless it exists; print its name on stdout
#
# The tag hashes the base image's name, this script and the unit, so a change to any of them builds anew.
# Needs the containers to reach Debian's mirror (apt-get inside a container on podman's default network).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
log() { printf '[build-cluster-image] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

base=${1:?usage: build-cluster-image.sh BASE_IMAGE}
podman image exists "$base" || die "base image $base missing: run tests/containers/build-image.sh"
hash=$( { echo "$base"; cat "$here/build-cluster-image.sh" "$here/cluster/container-boot-id.service"; } | sha256sum | cut -c1-12)
image=localhost/vfio-passthrough/debian12-corosync:$hash
if podman image exists "$image"; then
    log "cached: $image"
    echo "$image"
    exit 0
fi

start=$SECONDS
work=vfio-cluster-image-build-$$
trap 'podman rm -f "$work" >/dev/null 2>&1 || true' EXIT
log "installing corosync, corosync-qdevice, corosync-qnetd into a container of $base"
podman create --name "$work" "$base" /bin/sh -euc '
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q --no-install-recommends corosync corosync-qdevice corosync-qnetd
    systemctl disable corosync.service corosync-qdevice.service corosync-qnetd.service
    systemctl enable container-boot-id.service
    apt-get clean
    rm -rf /var/lib/apt/lists/*
    : > /etc/machine-id
' >/dev/null
podman cp "$here/cluster/container-boot-id.service" "$work:/etc/systemd/system/container-boot-id.service"
podman start --attach "$work" >&2 || die "package installation failed (output above)"
podman commit --quiet --change 'CMD ["/sbin/init"]' "$work" "$image" >/dev/null
log "built $image in $((SECONDS - start)) s"
echo "$image"
