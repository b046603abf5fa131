#!/usr/bin/env bash
# Build the Debian 12 base image for molecule scenarios, without any image
# registry: debootstrap a minbase rootfs, add the container stubs, and
# `podman import` it.
#
#   build-image.sh               build unless the image already exists; print its name
#   build-image.sh --print-name  only print the image name (no build)
#   build-image.sh --force       rebuild even if the image exists
#   build-image.sh --prune       also remove older tags of the image (those no
#                                container uses); not automatic, because other
#                                checkouts on the same host may still use them
#
# The tag is a hash of this script and the stubs baked into the image, so any
# change to them yields a new image and an unchanged tree reuses the cached one
# (`podman image exists`). Progress goes to stderr; stdout is only the image name.
# Needs root (debootstrap, chroot) and tests/containers/setup-host.sh done first.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
repo_root=$(cd "$here/../.." && pwd -P)

SUITE=bookworm
IMAGE_REPO=localhost/vfio-passthrough/debian12
# Files whose content ends up in the image: the hash covers exactly these.
BAKED=("$here/build-image.sh" "$here/stubs/grub-probe" "$here/stubs/update-initramfs")
# A fake Proxmox kernel in /boot: update-grub's 10_linux only writes "linux"
# menu entries (with GRUB_CMDLINE_LINUX[_DEFAULT]) for kernels it finds there,
# and scenarios must be able to check that the role's kernel arguments reach
# grub.cfg. The files are text placeholders, never booted.
FAKE_KVER=6.8.12-4-pve
PACKAGES=python3,python3-apt,systemd,systemd-sysv,dbus,kmod,procps,iproute2,pciutils,initramfs-tools,grub2-common,sudo

log() { printf '[build-image] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

hash=$(cat "${BAKED[@]}" | sha256sum | cut -c1-12)
image="$IMAGE_REPO:$hash"

mode=build
prune=no
for arg in "$@"; do
    case "$arg" in
        --print-name) echo "$image"; exit 0 ;;
        --force) mode=force ;;
        --prune) prune=yes ;;
        *) die "unknown argument '$arg' (use --print-name, --force or --prune)" ;;
    esac
done

prune_old() {
    [ "$prune" = yes ] || return 0
    local old
    for old in $(podman images --format '{{.Repository}}:{{.Tag}}' | grep -F "$IMAGE_REPO:" | grep -vxF "$image" || true); do
        if podman rmi "$old" >/dev/null 2>&1; then
            log "removed old image $old"
        else
            log "WARNING: could not remove old image $old (a container uses it?)"
        fi
    done
}

command -v podman >/dev/null || die "podman missing: run tests/containers/setup-host.sh"
command -v debootstrap >/dev/null || die "debootstrap missing: run tests/containers/setup-host.sh"

if [ "$mode" = build ] && podman image exists "$image"; then
    log "cached: $image (tree unchanged since it was built)"
    prune_old
    echo "$image"
    exit 0
fi
[ "$(id -u)" -eq 0 ] || die "must run as root (debootstrap, chroot)"

cache_dir="$repo_root/.cache/debootstrap"
mkdir -p "$cache_dir"
rootfs=$(mktemp -d "${TMPDIR:-/var/tmp}/vfio-rootfs.XXXXXX")
cleanup() {
    # debootstrap mounts proc/sys inside the target; never rm -rf through a mount.
    local m
    for m in $(findmnt -rn -o TARGET | grep -F "$rootfs/" | sort -r); do
        umount -l "$m" || true
    done
    rm -rf --one-file-system "$rootfs"
}
trap cleanup EXIT

start=$SECONDS
log "debootstrap $SUITE minbase into $rootfs (package cache $cache_dir)"
if ! debootstrap --variant=minbase --include="$PACKAGES" --cache-dir="$cache_dir" \
        "$SUITE" "$rootfs" > "$rootfs.debootstrap.log" 2>&1; then
    tail -n 30 "$rootfs.debootstrap.log" >&2
    die "debootstrap failed (full log: $rootfs.debootstrap.log)"
fi
rm -f "$rootfs.debootstrap.log"
log "debootstrap done in $((SECONDS - start)) s"

log "customising rootfs (grub defaults, diverted grub-probe/update-initramfs, fake kernel $FAKE_KVER)"
install -m 0755 "$here/stubs/grub-probe" "$rootfs/usr/local/share/grub-probe.stub"
install -m 0755 "$here/stubs/update-initramfs" "$rootfs/usr/local/share/update-initramfs.stub"
# The script's variables are the chroot shell's, not ours: single quotes on purpose.
# shellcheck disable=SC2016
chroot "$rootfs" /bin/sh -eu -c '
    # A minbase rootfs has no /etc/default/grub; the package ships the default here.
    cp /usr/share/grub/default/grub /etc/default/grub
    # grub-install creates /boot/grub on a real host; update-grub writes into it.
    mkdir -p /boot/grub
    for tool in /usr/sbin/grub-probe /usr/sbin/update-initramfs; do
        dpkg-divert --local --rename --divert "$tool.real" --add "$tool"
        mv "/usr/local/share/${tool##*/}.stub" "$tool"
    done
    printf "placeholder kernel image for container tests, never booted\n" > /boot/vmlinuz-'"$FAKE_KVER"'
    printf "placeholder initrd for container tests, never booted\n" > /boot/initrd.img-'"$FAKE_KVER"'
    apt-get clean
    rm -rf /var/lib/apt/lists/* /var/log/*.log /var/cache/debconf/*-old
    # Every container must get its own machine-id at boot, not share the build one.
    : > /etc/machine-id
    rm -f /var/lib/dbus/machine-id
' >&2
# Facts a human debugging a container wants first.
cat > "$rootfs/etc/vfio-passthrough-test-image" <<EOF
image=$image
suite=$SUITE
fake_kernel=$FAKE_KVER
stubs=/usr/sbin/grub-probe /usr/sbin/update-initramfs (see /usr/sbin/*.real for the diverted originals)
update_initramfs_log=/var/log/update-initramfs.calls
EOF

log "podman import as $image"
t=$SECONDS
tar -C "$rootfs" -c . | podman import --quiet \
    --change 'CMD ["/sbin/init"]' \
    --change "LABEL org.vfio-passthrough.build-hash=$hash" \
    - "$image" >/dev/null
log "import done in $((SECONDS - t)) s"

log "smoke-testing the image with runc"
podman run --rm "$image" /bin/sh -c \
    'python3 --version && test -x /usr/sbin/grub-probe.real && test -x /usr/sbin/update-initramfs.real' >&2 \
    || die "the new image does not run; see podman output above"

prune_old

log "built $image in $((SECONDS - start)) s"
echo "$image"
