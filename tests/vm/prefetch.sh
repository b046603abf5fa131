#!/usr/bin/env bash
# Build every cached VM image (and QEMU tree) the scenarios need, in the background, while the
# faster stages of `make test` run: a cold build is mostly downloads, dpkg and one firmware boot,
# which overlap well with single-threaded units, sanity and lint on this 2-core machine kind.
#
#   tests/vm/prefetch.sh --background [--set S]  start, return at once (log: tests/output/vm/prefetch.log)
#   tests/vm/prefetch.sh [--set S]               build in the foreground
#
# S is the VM test set (tests/vm/lanes.py): make-test (default) builds what make test's guests
# boot (Debian 13: BIOS, and UEFI with the 9.2.0 helper's systemd-boot ESP); full also builds the
# Debian 12 images (BIOS, and UEFI with the 8.1.0 helper: systemd-boot and GRUB on the ESP) and the
# Debian 13 image with a trixie-backports kernel (the LINE test_backports_kernel.py boots).
#
# Nothing waits on this script: each builder holds its own lock, so a scenario that needs an
# image still being built waits for that build, and one that finds it built goes on.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd -P)
log=$root/tests/output/vm/prefetch.log

background=
set_name=make-test
while (($#)); do
    case $1 in
        --background) background=1 ;;
        --set) set_name=${2:?--set needs make-test or full}; shift ;;
        *) echo "usage: $0 [--background] [--set make-test|full]" >&2; exit 2 ;;
    esac
    shift
done
case $set_name in
    make-test | full) ;;
    *) echo "prefetch: --set must be make-test or full, not '$set_name'" >&2; exit 2 ;;
esac
if [[ -n $background ]]; then
    mkdir -p "$(dirname "$log")"
    if [[ $(id -u) -ne 0 ]]; then
        echo "prefetch: not root, no background image build (the VM stage says why it cannot run)"
        exit 0
    fi
    setsid "$0" --set "$set_name" >"$log" 2>&1 </dev/null &
    echo "prefetch: VM images building in the background (pid $!, log ${log#"$root"/})"
    exit 0
fi

cd "$root"
t0=$SECONDS
step() {
    local started=$SECONDS rc=0
    echo "[prefetch] $*"
    "$@" || rc=$?
    echo "[prefetch] $1 exit $rc in $((SECONDS - started)) s"
}
# The order is the order the lanes need them in (tests/vm/lanes.py starts the longest first).
# QEMU 10 is only unpacked debs (seconds); each UEFI build ends in a first OVMF boot that runs
# proxmox-boot-tool format and init, minutes of CPU that overlap the molecule stage.
step tests/vm/build-image.sh --suite trixie
step tests/vm/qemu10.sh
step tests/vm/build-image.sh --boot uefi-sdboot --suite trixie
if [[ $set_name == full ]]; then
    step tests/vm/build-image.sh --boot uefi-grub --suite trixie
    step tests/vm/build-image.sh --suite bookworm
    step tests/vm/build-image.sh --boot uefi-sdboot --suite bookworm
    step tests/vm/build-image.sh --boot uefi-grub --suite bookworm
    step tests/vm/build-image.sh --suite trixie --kernel "$(sed -n "s/^LINE = '\(.*\)'$/\1/p" tests/vm/scenarios/test_backports_kernel.py)"
fi
echo "[prefetch] done in $((SECONDS - t0)) s"
