#!/usr/bin/env bash
# Install QEMU 10 (Debian bookworm-backports) as an extracted tree beside the system QEMU.
#
# Usage: tests/vm/qemu10.sh [--print]
#   --print  only print the wrapper path this script would install (whether or not it exists)
#
# QEMU 7.2 (bookworm) has no emulated igb, the SR-IOV NIC of the Debian 13 Intel scenario (tests/vm/scenarios/test_intel_twins.py).
# The packages come from a private apt state under the cache (the system's sources, lists and
# installed QEMU stay untouched, so every other scenario keeps the default QEMU), are unpacked
# with dpkg -x into $VFIO_VM_CACHE/qemu10-<version>/tree, and a wrapper there
# (bin/qemu-system-x86_64) sets QEMU_MODULE_DIR and the firmware paths (-L): without them QEMU 10
# loads the system's 7.2 modules and aborts, or boots the system's older SeaBIOS.
# Prints the wrapper's path on stdout. The tree appears through an atomic rename: if it exists,
# it is complete.
set -euo pipefail

CACHE=${VFIO_VM_CACHE:-/var/cache/vfio-passthrough-vm}
SUITE=bookworm-backports
QEMU_VERSION=${VFIO_QEMU10_VERSION:-1:10.0.2+ds-2+deb13u1~bpo12+1}
SEABIOS_VERSION=${VFIO_SEABIOS_VERSION:-1.16.3-2~bpo12+1}
QEMU_PACKAGES=(qemu-system-x86 qemu-system-data qemu-system-common qemu-utils
               qemu-system-modules-opengl qemu-system-modules-spice)
DIR=$CACHE/qemu10-$(echo "$QEMU_VERSION $SEABIOS_VERSION ${QEMU_PACKAGES[*]}" | sha256sum | cut -c1-12)
WRAPPER=$DIR/bin/qemu-system-x86_64

log() { printf '[qemu10 %4ds] %s\n' "$SECONDS" "$*" >&2; }
die() { printf '[qemu10 %4ds] ERROR: %s\n' "$SECONDS" "$*" >&2; exit 1; }

[[ ${1:-} == --print ]] && { echo "$WRAPPER"; exit 0; }
[[ $# -eq 0 ]] || die "unknown argument: $1 (usage: qemu10.sh [--print])"
if [[ -x $WRAPPER ]]; then
    echo "$WRAPPER"
    exit 0
fi
[[ $(id -u) -eq 0 ]] || die "must run as root (it writes under $CACHE)"
if ! command -v apt-get >/dev/null || ! command -v dpkg >/dev/null; then
    die "needs apt-get and dpkg (a Debian host)"
fi

WORK=$(mktemp -d "$CACHE/.qemu10.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
APT=$CACHE/qemu10-apt
mkdir -p "$APT/lists/partial" "$APT/cache/archives/partial" "$WORK/debs" "$WORK/dir/tree" "$WORK/dir/bin"
# The same mirror and keyring as the system's bookworm source, in a private apt state.
cat > "$APT/sources.list" <<SOURCES
deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian $SUITE main
SOURCES
apt_opts=(-o "Dir::Etc::SourceList=$APT/sources.list" -o Dir::Etc::SourceParts=/dev/null
          -o "Dir::State::Lists=$APT/lists" -o "Dir::Cache=$APT/cache" -o APT::Get::List-Cleanup=0
          -o APT::Sandbox::User=root)
log "apt-get update ($SUITE, private state under $APT)"
apt-get "${apt_opts[@]}" -qq update >&2
wanted=()
for package in "${QEMU_PACKAGES[@]}"; do wanted+=("$package=$QEMU_VERSION"); done
wanted+=("seabios=$SEABIOS_VERSION")
log "downloading ${wanted[*]}"
(cd "$WORK/debs" && apt-get "${apt_opts[@]}" -qq download "${wanted[@]}" >&2) \
    || die "apt-get download failed: $SUITE may have moved on; set VFIO_QEMU10_VERSION / VFIO_SEABIOS_VERSION"
for deb in "$WORK"/debs/*.deb; do
    dpkg -x "$deb" "$WORK/dir/tree"
done
tree=$DIR/tree
cat > "$WORK/dir/bin/qemu-system-x86_64" <<WRAP
#!/bin/sh
# QEMU $QEMU_VERSION from $SUITE, unpacked by tests/vm/qemu10.sh: its own modules and firmware.
export QEMU_MODULE_DIR=$tree/usr/lib/x86_64-linux-gnu/qemu
exec $tree/usr/bin/qemu-system-x86_64 -L $tree/usr/share/qemu -L $tree/usr/share/seabios "\$@"
WRAP
chmod 0755 "$WORK/dir/bin/qemu-system-x86_64"
"$WORK/dir/tree/usr/bin/qemu-system-x86_64" --version >/dev/null 2>&1 || true
mv "$WORK/dir" "$DIR"
version=$("$WRAPPER" --version | head -n1)
QEMU_MODULE_DIR=$tree/usr/lib/x86_64-linux-gnu/qemu "$WRAPPER" -device help 2>&1 | grep -q '"igb"' \
    || { rm -rf "$DIR"; die "$version has no igb device"; }
log "installed $version at $DIR"
echo "$WRAPPER"
