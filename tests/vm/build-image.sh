#!/usr/bin/env bash
# Build a cached VM image of the QEMU test bed: one suite, one boot path, its kernel and its Proxmox helper.
#
# Usage: tests/vm/build-image.sh [--boot bios|uefi-sdboot|uefi-grub] [--suite trixie|bookworm]
#                                [--kernel 7.0|7.3] [--helper VERSION] [--force] [--fresh] [--prune] [--print-dir]
#   --boot       bios (default): intel.qcow2 and amd.qcow2, GRUB from /boot (image/bios.sh);
#                uefi-sdboot, uefi-grub: amd-sdboot.qcow2 or amd-grub.qcow2 under OVMF, the ESP made by the
#                real proxmox-boot-tool with systemd-boot or GRUB on it (image/uefi.sh)
#   --suite      Debian release: trixie (13, Proxmox VE 9's base; the default) or bookworm (12, VE 8's)
#   --kernel     7.0|7.3, bios on trixie only: also install that trixie-backports kernel line (7.0 is the one
#                Proxmox VE 9.2 boots) beside Debian's 6.12, and boot it by default
#   --helper     uefi only: the proxmox-kernel-helper version, 8.1.0 with bookworm, 9.2.0 with trixie (the
#                default follows the suite; other pairs are refused, as never tried)
#   --force      rebuild even if a complete image for this key exists
#   --fresh      also re-run debootstrap instead of reusing the cached root tarball
#   --prune      delete this variant's image dirs of other keys
#   --print-dir  only print the image dir this variant would be built in, then exit
#
# Output: $VFIO_VM_CACHE/images/<variant>-<key>/ (the files are listed in image/bios.sh and image/uefi.sh).
# <variant> names the parameters (trixie, trixie-linux7.3, bookworm-uefi-grub-pkh8.1.0, ...); <key> hashes
# image/common.sh, the boot's own image/<boot>.sh, the parameters (and the vendored helper tree): what builds
# the image, and nothing else, so an edit rebuilds just the variants it touches. This script only chooses
# the variant and whether to build it. The image dir appears only through an atomic rename at the very
# end: if it exists, it is complete. Exit 3 (nothing built): the vendored helper tree is absent.
set -euo pipefail

CACHE=${VFIO_VM_CACHE:-/var/cache/vfio-passthrough-vm}
SELF=$(readlink -f "${BASH_SOURCE[0]}")
HERE=$(dirname "$SELF")
IMAGES=$CACHE/images

BOOT=bios SUITE=${VFIO_VM_SUITE:-trixie} KERNEL="" HELPER="" FORCE=0 FRESH=0 PRUNE=0 PRINT_DIR=0
usage_error() { echo "build-image.sh: $*" >&2; exit 2; }
args=("$@")
while (($#)); do
    case $1 in
        --boot|--suite|--kernel|--helper)
            (($# >= 2)) || usage_error "$1 needs a value"
            opt=${1#--}; printf -v "${opt^^}" '%s' "$2"; shift ;;
        --boot=*) BOOT=${1#--boot=} ;;
        --suite=*) SUITE=${1#--suite=} ;;
        --kernel=*) KERNEL=${1#--kernel=} ;;
        --helper=*) HELPER=${1#--helper=} ;;
        --force) FORCE=1 ;;
        --prune) PRUNE=1 ;;
        --fresh) FRESH=1 FORCE=1 ;;
        --print-dir) PRINT_DIR=1 ;;
        -h|--help) sed -n '2,24p' "$SELF"; exit 0 ;;
        *) usage_error "unknown argument: $1" ;;
    esac
    shift
done
case $SUITE in
    trixie|bookworm) ;;
    *) usage_error "--suite must be trixie or bookworm, not '$SUITE'" ;;
esac
case $BOOT in
    bios) STEPS=bios ;;
    uefi-sdboot|uefi-grub) STEPS=uefi ;;
    *) usage_error "--boot must be bios, uefi-sdboot or uefi-grub, not '$BOOT'" ;;
esac
# shellcheck source=tests/vm/image/common.sh
source "$HERE/image/common.sh"
# shellcheck source=tests/vm/image/bios.sh disable=SC1090  # or image/uefi.sh
source "$HERE/image/$STEPS.sh"
# Checks the boot's own parameters; sets VARIANT, KEY_INPUT, IMAGE_FILES and HOST_TOOLS (may exit 2 or 3).
variant
KEY=$( { sha256sum "$HERE/image/common.sh" "$HERE/image/$STEPS.sh" | cut -d' ' -f1; echo "$KEY_INPUT"; } \
      | sha256sum | cut -c1-16)
FINAL=$IMAGES/$VARIANT-$KEY
[[ $PRINT_DIR -eq 1 ]] && { echo "$FINAL"; exit 0; }

LOG_TAG="build-image $VARIANT"
[[ $(id -u) -eq 0 ]] || die "must run as root (loop devices, mounts, chroot)"
# Mounts live in a private mount namespace: whatever happens to this script, the kernel
# drops them when it exits, and nothing leaks into (or propagates from) the host's mounts.
if [[ -z ${VFIO_VM_BUILD_NS:-} ]]; then
    exec unshare --mount --propagation private env VFIO_VM_BUILD_NS=1 "$SELF" "${args[@]}"
fi

mkdir -p "$CACHE" "$IMAGES"
# Two callers (e.g. parallel pytest workers) must not build the same image at once; other
# variants share nothing but the cache root and the root tarball (locked on its own), so they
# may build side by side.
exec 9>"$CACHE/.build-$VARIANT.lock"
if ! flock -n 9; then
    log "another build holds $CACHE/.build-$VARIANT.lock; waiting"
    flock 9
fi

prune() {
    local d
    for d in "$IMAGES/$VARIANT"-*/; do
        d=${d%/}
        # trixie-* also matches trixie-linux7.3-* and trixie-uefi-*: only this variant's own keys go.
        [[ $d == "$FINAL" || ! -d $d || ! ${d##*/} =~ ^$VARIANT-[0-9a-f]{16}$ ]] && continue
        log "pruning old image dir $d"
        rm -rf -- "$d"
    done
}

if [[ -d $FINAL && $FORCE -eq 0 ]]; then
    for f in "${IMAGE_FILES[@]}"; do
        [[ -s $FINAL/$f ]] || die "$FINAL exists but lacks $f: delete it and rerun"
    done
    log "image up to date: $FINAL"
    [[ $PRUNE -eq 1 ]] && prune
    exit 0
fi

install_host_tools "${HOST_TOOLS[@]}"
WORK=$CACHE/build.$VARIANT-$KEY.$$
RAW=$WORK/disk.raw
MNT=$WORK/mnt
trap cleanup EXIT
trap 'exit 130' INT TERM
log "building $VARIANT image $KEY in $WORK (cache $CACHE)"
mkdir -p "$WORK" "$MNT"
build
build_info >"$WORK/build-info.txt"
rm -f "$WORK"/*.log
[[ -d $FINAL ]] && rm -rf -- "$FINAL"   # only reached with --force
mv -T "$WORK" "$FINAL"
log "done in $SECONDS s: $FINAL"
[[ $PRUNE -eq 1 ]] && prune
exit 0
