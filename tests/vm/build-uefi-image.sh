#!/usr/bin/env bash
# Build the cached UEFI image whose ESP the real proxmox-boot-tool manages (issues 14, 24).
#
# Usage: tests/vm/build-uefi-image.sh [--suite bookworm|trixie] [--helper VERSION]
#                                     [--variant sdboot|grub] [--force] [--print-dir]
#   --suite      bookworm (default: Proxmox VE 8's base) or trixie (Proxmox VE 9's)
#   --helper     the proxmox-kernel-helper version: 8.1.0 with bookworm, 9.2.0 with trixie (the
#                default follows the suite; other pairs are refused, as never tried)
#   --variant    sdboot (default): `proxmox-boot-tool init` makes a systemd-boot ESP (a ZFS/UEFI
#                install); grub: `init <esp> grub` makes GRUB on the ESP (a Secure Boot install,
#                Secure Boot itself off)
#   --force      rebuild even if a complete image for this script's hash exists
#   --print-dir  only print the image dir this script version would produce, then exit
#
# Proxmox's proxmox-kernel-helper source comes from ../shared/vendor (never copied into the
# project). 8.1.0 (VFIO_PBT_VENDOR, default ../shared/vendor/proxmox-kernel-helper) is installed
# as its .deb would install it: the files where its Makefiles put them, the grub-install
# diversion, the hooks. 9.2.0 (VFIO_PBT92_VENDOR, default ../shared/vendor/proxmox-kernel-helper-9.2.0)
# is installed the way a Proxmox VE 9 host gets it: the real package, built with
# `dpkg-buildpackage -b -us -uc` from a temporary copy inside a throw-away chroot of the same
# suite (build dependencies from Debian's archive; the .deb is cached by the tree's hash), then
# `dpkg -i` in the image, so its maintainer scripts and triggers run. On trixie systemd-boot
# comes from systemd-boot-efi + systemd-boot-tools (not the systemd-boot package, as on VE 9),
# and Debian's memtest86+ is installed (9.x writes a memtest entry on init/reinit when
# /boot/memtest86+x64.efi exists). GPT disk: a vfat ESP (512 MiB, not in fstab:
# proxmox-boot-tool mounts it itself) and an ext4 root.
#
# Output: $VFIO_VM_CACHE/images/<suite>-uefi-<variant>-pkh<helper>-<key>/{amd-<variant>.qcow2,
# id_ed25519,id_ed25519.pub,build-info.txt}; <key> hashes this script and the vendored tree. Exit 3
# (nothing built) when the vendored tree is absent.
set -euo pipefail

CACHE=${VFIO_VM_CACHE:-/var/cache/vfio-passthrough-vm}
SELF=$(readlink -f "${BASH_SOURCE[0]}")
HERE=$(dirname "$SELF")
# The repository's parent holds shared/ (in CI the clone sits beside ../shared).
SHARED_VENDOR=$(readlink -f "$HERE/../../..")/shared/vendor
DISK_SIZE=4G
ESP_MIB=512
# The guest boots with its IOMMU switched off on purpose, as the BIOS images do: the role
# must be what turns it on. AMD: Intel's IOMMU is covered on Debian 13 by the BIOS scenarios.
FLAVOUR=amd
FLAVOUR_ARG="amd_iommu=off"

FORCE=0 PRINT_DIR=0 VARIANT=sdboot SUITE=bookworm HELPER=""
args=("$@")
while (($#)); do
    case $1 in
        --suite) (($# >= 2)) || { echo "build-uefi-image.sh: --suite needs a value" >&2; exit 2; }; SUITE=$2; shift ;;
        --suite=*) SUITE=${1#--suite=} ;;
        --helper) (($# >= 2)) || { echo "build-uefi-image.sh: --helper needs a value" >&2; exit 2; }; HELPER=$2; shift ;;
        --helper=*) HELPER=${1#--helper=} ;;
        --variant) (($# >= 2)) || { echo "build-uefi-image.sh: --variant needs a value" >&2; exit 2; }; VARIANT=$2; shift ;;
        --variant=*) VARIANT=${1#--variant=} ;;
        --force) FORCE=1 ;;
        --print-dir) PRINT_DIR=1 ;;
        -h|--help) sed -n '2,32p' "$SELF"; exit 0 ;;
        *) echo "build-uefi-image.sh: unknown argument: $1" >&2; exit 2 ;;
    esac
    shift
done
# Each suite with the helper its Proxmox VE release ships, installed as described above.
case $SUITE in
    bookworm)
        HELPER=${HELPER:-8.1.0}
        EXTRA_PACKAGES="systemd-boot systemd-boot-efi dosfstools gdisk" ;;
    trixie)
        HELPER=${HELPER:-9.2.0}
        EXTRA_PACKAGES="systemd-boot-efi systemd-boot-tools memtest86+ dosfstools gdisk" ;;
    *) echo "build-uefi-image.sh: --suite must be bookworm or trixie, not '$SUITE'" >&2; exit 2 ;;
esac
case $SUITE:$HELPER in
    bookworm:8.1.0)
        VENDOR_VAR=VFIO_PBT_VENDOR INSTALL=files TREE=proxmox-kernel-helper
        VENDOR=${VFIO_PBT_VENDOR:-$SHARED_VENDOR/$TREE} ;;
    trixie:9.2.0)
        VENDOR_VAR=VFIO_PBT92_VENDOR INSTALL=deb TREE=proxmox-kernel-helper-9.2.0
        VENDOR=${VFIO_PBT92_VENDOR:-$SHARED_VENDOR/$TREE} ;;
    *) echo "build-uefi-image.sh: helper $HELPER on $SUITE was never tried (bookworm: 8.1.0, trixie: 9.2.0)" >&2
       exit 2 ;;
esac
case $VARIANT in
    sdboot) INIT_MODE="" STATUS_MODE=uefi ;;
    grub) INIT_MODE=grub STATUS_MODE=grub EXTRA_PACKAGES+=" grub-efi-amd64-bin" ;;
    *) echo "build-uefi-image.sh: --variant must be sdboot or grub, not '$VARIANT'" >&2; exit 2 ;;
esac
if [[ ! -x $VENDOR/src/bin/proxmox-boot-tool ]]; then
    echo "build-uefi-image.sh: $VENDOR/src/bin/proxmox-boot-tool not found: set $VENDOR_VAR to" \
         "Proxmox's proxmox-kernel-helper $HELPER source tree (default" \
         "../shared/vendor/$TREE beside this checkout)" >&2
    exit 3
fi
# The tree must be the version asked for: debian/changelog's first line names it.
TREE_VERSION=$(sed -n '1s/^proxmox-kernel-helper (\([^)]*\)).*/\1/p' "$VENDOR/debian/changelog")
if [[ $TREE_VERSION != "$HELPER" ]]; then
    echo "build-uefi-image.sh: $VENDOR is proxmox-kernel-helper '$TREE_VERSION' (debian/changelog)," \
         "not $HELPER: point $VENDOR_VAR at the $HELPER source tree" >&2
    exit 2
fi
VENDOR_HASH=$(cd "$VENDOR" && find . -type f -print0 | sort -z | xargs -0 sha256sum | sha256sum | cut -c1-16)
KEY=$( { sha256sum "$SELF"; echo "$SUITE $HELPER $VENDOR_HASH"; } | sha256sum | cut -c1-16)
IMAGES=$CACHE/images
FINAL=$IMAGES/$SUITE-uefi-$VARIANT-pkh$HELPER-$KEY
IMAGE=$FLAVOUR-$VARIANT.qcow2
[[ $PRINT_DIR -eq 1 ]] && { echo "$FINAL"; exit 0; }

# The BIOS builder's untouched debootstrap result is reused (same name, same key): the UEFI
# extras are installed on top of it with apt, so no second debootstrap is needed.
INCLUDE=$(sed -n 's/^INCLUDE=//p' "$HERE/build-image.sh")
[[ -n $INCLUDE ]] || { echo "build-uefi-image.sh: no INCLUDE= in build-image.sh" >&2; exit 1; }
ROOTFS_TAR=$CACHE/rootfs-$(echo "$SUITE $INCLUDE" | sha256sum | cut -c1-16).tar

log() { printf '[build-uefi-image %4ds] %s\n' "$SECONDS" "$*"; }
die() { printf '[build-uefi-image %4ds] ERROR: %s\n' "$SECONDS" "$*" >&2; exit 1; }

[[ $(id -u) -eq 0 ]] || die "must run as root (loop devices, mounts, chroot)"
if [[ -z ${VFIO_VM_BUILD_NS:-} ]]; then
    exec unshare --mount --propagation private env VFIO_VM_BUILD_NS=1 "$SELF" "${args[@]}"
fi

DEBS=$CACHE/debs/$SUITE-uefi-apt
mkdir -p "$CACHE" "$IMAGES" "$DEBS"
exec 9>"$CACHE/.build-$SUITE-uefi-$VARIANT.lock"
if ! flock -n 9; then
    log "another build holds $CACHE/.build-$SUITE-uefi-$VARIANT.lock; waiting"
    flock 9
fi
if [[ -d $FINAL && $FORCE -eq 0 ]]; then
    for f in $IMAGE id_ed25519 id_ed25519.pub; do
        [[ -s $FINAL/$f ]] || die "$FINAL exists but lacks $f: delete it and rerun"
    done
    log "image up to date: $FINAL"
    exit 0
fi
if [[ ! -f $ROOTFS_TAR ]]; then
    # Makes the BIOS images too, and with them the shared debootstrap tarball.
    log "no cached $SUITE root tarball; running build-image.sh --suite $SUITE first"
    env -u VFIO_VM_BUILD_NS "$HERE/build-image.sh" --suite "$SUITE"
    [[ -f $ROOTFS_TAR ]] || die "build-image.sh left no $ROOTFS_TAR"
fi
for pair in sgdisk:gdisk mkfs.vfat:dosfstools parted:parted qemu-img:qemu-utils make:make; do
    command -v "${pair%%:*}" >/dev/null && continue
    log "installing host package ${pair#*:}"
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq \
        --no-install-recommends "${pair#*:}" >/dev/null
done

WORK=$CACHE/build.$SUITE-uefi-$VARIANT-$KEY.$$
RAW=$WORK/disk.raw
MNT=$WORK/mnt
LOOP=""
DEB_ROOT=""

chroot_umount() {
    local m root=${1:-$MNT}
    for m in var/cache/apt/archives run sys proc dev/pts dev; do
        mountpoint -q "$root/$m" && umount "$root/$m"
    done
    return 0
}

# shellcheck disable=SC2317  # reached through the EXIT trap
cleanup() {
    local rc=$?
    set +e
    if [[ -n $MNT ]] && mountpoint -q "$MNT" 2>/dev/null; then chroot_umount; umount -R "$MNT"; fi
    [[ -n $DEB_ROOT && -d $DEB_ROOT ]] && chroot_umount "$DEB_ROOT"
    if [[ -n $LOOP ]]; then partx -d "$LOOP" 2>/dev/null; losetup -d "$LOOP"; fi
    # Never delete through a bind mount that failed to let go (the package cache, /dev).
    if [[ -d $WORK ]] && grep -qF " $WORK/" /proc/self/mountinfo; then
        echo "[build-uefi-image] mounts remain under $WORK: left in place, remove it by hand" >&2
    elif [[ -d $WORK ]]; then
        rm -rf -- "$WORK"
    fi
    ((rc)) && echo "[build-uefi-image] FAILED (exit $rc); partial build removed" >&2
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

no_udev_noise() { "$@" 2> >(grep -v 'udevadm: not found' >&2); }

log "building $SUITE UEFI image ($VARIANT) $KEY in $WORK"
mkdir -p "$WORK" "$MNT"
truncate -s "$DISK_SIZE" "$RAW"
# The ESP is created as a bare partition of the ESP type: proxmox-boot-tool format makes its
# file system, as on a Proxmox VE host.
no_udev_noise parted -s "$RAW" mklabel gpt \
    mkpart esp fat32 1MiB $((1 + ESP_MIB))MiB set 1 esp on \
    mkpart root ext4 $((1 + ESP_MIB))MiB 100%
LOOP=$(no_udev_noise losetup -P --show -f "$RAW")
[[ -b ${LOOP}p2 ]] || no_udev_noise partx -a "$LOOP"
[[ -b ${LOOP}p2 ]] || die "partition devices of $LOOP did not appear"
ROOT=${LOOP}p2
no_udev_noise mkfs.ext4 -q -L vfio-root "$ROOT"
UUID=$(blkid -s UUID -o value "$ROOT")
mount "$ROOT" "$MNT"
t0=$SECONDS
tar -C "$MNT" --numeric-owner --xattrs --xattrs-include='*' -xpf "$ROOTFS_TAR"
log "unpacked $ROOTFS_TAR in $((SECONDS - t0)) s"

chroot_mount() {
    local root=${1:-$MNT}
    mount --bind /dev "$root/dev"
    mount --bind /dev/pts "$root/dev/pts"
    mount -t proc proc "$root/proc"
    mount -t sysfs sys "$root/sys"
    mount -t tmpfs tmpfs "$root/run"
    mkdir -p "$DEBS" "$root/var/cache/apt/archives"
    mount --bind "$DEBS" "$root/var/cache/apt/archives"
}
in_chroot() { LC_ALL=C DEBIAN_FRONTEND=noninteractive chroot "$MNT" "$@"; }

# The helper's own package, built as Proxmox builds it: dpkg-buildpackage from a temporary copy of
# the tree, in a throw-away chroot of the image's suite (so the image gets no build tools), with
# the build dependencies from Debian's archive. Cached by the tree's hash: a rebuilt image reuses it.
HELPER_DEB_DIR=$CACHE/debs/proxmox-kernel-helper-$HELPER-$SUITE-$VENDOR_HASH
HELPER_DEB=$HELPER_DEB_DIR/proxmox-kernel-helper_${HELPER}_all.deb
build_helper_deb() {
    exec 8>"$CACHE/.build-proxmox-kernel-helper-$HELPER-$SUITE.lock"
    flock 8
    if [[ -s $HELPER_DEB ]]; then
        log "proxmox-kernel-helper $HELPER package cached: $HELPER_DEB"
        exec 8>&-
        return 0
    fi
    local t0=$SECONDS src=/usr/src/proxmox-kernel-helper-$HELPER
    DEB_ROOT=$WORK/deb-build
    log "building proxmox-kernel-helper $HELPER with dpkg-buildpackage in a $SUITE chroot ($DEB_ROOT)"
    mkdir -p "$DEB_ROOT"
    tar -C "$DEB_ROOT" --numeric-owner -xpf "$ROOTFS_TAR"
    chroot_mount "$DEB_ROOT"
    cp /etc/resolv.conf "$DEB_ROOT/etc/resolv.conf"
    local in_deb=(env LC_ALL=C DEBIAN_FRONTEND=noninteractive chroot "$DEB_ROOT")
    "${in_deb[@]}" apt-get update -qq >"$WORK/deb-build.log" 2>&1 \
        || { cat "$WORK/deb-build.log" >&2; die "apt-get update failed in the build chroot"; }
    # debian/control: Build-Depends: debhelper-compat (=13), lintian; dpkg-checkbuilddeps also wants
    # build-essential, as on any Debian build host.
    "${in_deb[@]}" apt-get install -y -q --no-install-recommends build-essential debhelper lintian \
        >>"$WORK/deb-build.log" 2>&1 \
        || { tail -n 30 "$WORK/deb-build.log" >&2; die "installing the build dependencies failed"; }
    # The tree's own Makefile (`make deb`) lays the build dir out so: src/ with debian/ inside it.
    cp -a "$VENDOR/src" "$DEB_ROOT$src"
    cp -a "$VENDOR/debian" "$DEB_ROOT$src/"
    "${in_deb[@]}" sh -c "cd $src && dpkg-buildpackage -b -us -uc" >>"$WORK/deb-build.log" 2>&1 \
        || { tail -n 40 "$WORK/deb-build.log" >&2; die "dpkg-buildpackage failed"; }
    grep -E "^dpkg-deb: building package|^dpkg-buildpackage: info: binary-only" "$WORK/deb-build.log" | sed 's/^/    /'
    # `make deb` then runs lintian on the package: its verdict is shown, not judged here.
    "${in_deb[@]}" lintian "/usr/src/proxmox-kernel-helper_${HELPER}_all.deb" 2>&1 | sed 's/^/    lintian: /' || true
    mkdir -p "$HELPER_DEB_DIR.tmp"
    cp "$DEB_ROOT/usr/src/proxmox-kernel-helper_${HELPER}_all.deb" "$HELPER_DEB_DIR.tmp/"
    chroot_umount "$DEB_ROOT"
    rm -rf -- "$DEB_ROOT"; DEB_ROOT=""
    rm -rf -- "$HELPER_DEB_DIR"
    mv -T "$HELPER_DEB_DIR.tmp" "$HELPER_DEB_DIR"
    log "proxmox-kernel-helper $HELPER built in $((SECONDS - t0)) s: $HELPER_DEB"
    exec 8>&-
}
[[ $INSTALL == deb ]] && build_helper_deb
chroot_mount

log "configuring fstab, network, ssh, initramfs"
echo "UUID=$UUID / ext4 errors=remount-ro 0 1" >"$MNT/etc/fstab"
: >"$MNT/etc/machine-id"
rm -f "$MNT/var/lib/dbus/machine-id"
echo "nameserver 10.0.2.3" >"$MNT/etc/resolv.conf"
echo "vfio-uefi" >"$MNT/etc/hostname"
printf '127.0.0.1\tlocalhost\n127.0.1.1\tvfio-uefi\n' >"$MNT/etc/hosts"
mkdir -p "$MNT/etc/systemd/network"
cat >"$MNT/etc/systemd/network/10-mgmt.network" <<'EOF'
[Match]
Driver=virtio_net

[Network]
DHCP=ipv4
EOF
in_chroot systemctl enable -q systemd-networkd
in_chroot systemctl disable -q systemd-networkd-wait-online.service 2>/dev/null || true
in_chroot systemctl mask -q apt-daily.timer apt-daily-upgrade.timer
in_chroot systemctl disable -q e2scrub_reap.service e2scrub_all.timer networking.service \
    man-db.timer fstrim.timer 2>/dev/null || true
ssh-keygen -q -t ed25519 -N '' -C "vfio-vm-uefi-$KEY" -f "$WORK/id_ed25519"
install -d -m 700 "$MNT/root/.ssh"
install -m 600 "$WORK/id_ed25519.pub" "$MNT/root/.ssh/authorized_keys"
cat >"$MNT/etc/ssh/sshd_config.d/10-vfio-test.conf" <<'EOF'
PermitRootLogin prohibit-password
PasswordAuthentication no
UseDNS no
EOF
sed -i 's/^MODULES=.*/MODULES=dep/' "$MNT/etc/initramfs-tools/initramfs.conf"
cat >>"$MNT/etc/initramfs-tools/modules" <<'EOF'
# vfio test bed: guest root disk is virtio-blk on q35 PCIe
virtio_pci
virtio_blk
ext4
EOF
# A Proxmox VE host has /etc/default/grub whichever loader boots it; the role must leave it alone.
[[ -f $MNT/etc/default/grub ]] || cp "$MNT/usr/share/grub/default/grub" "$MNT/etc/default/grub"

t0=$SECONDS
log "apt-get install $EXTRA_PACKAGES"
in_chroot apt-get update -qq >"$WORK/apt.log" 2>&1 || { cat "$WORK/apt.log" >&2; die "apt-get update failed"; }
# shellcheck disable=SC2086  # a word list
in_chroot apt-get install -y -q --no-install-recommends $EXTRA_PACKAGES >>"$WORK/apt.log" 2>&1 \
    || { tail -n 30 "$WORK/apt.log" >&2; die "apt-get install failed"; }
log "packages installed in $((SECONDS - t0)) s"

KVER=$(find "$MNT/lib/modules" -mindepth 1 -maxdepth 1 -printf '%f\n' | sort -V | tail -n1)
CMDLINE="root=UUID=$UUID ro console=ttyS0,115200n8 quiet $FLAVOUR_ARG"
# Without this file the kernel hook would take /proc/cmdline.
echo "$CMDLINE" >"$MNT/etc/kernel/cmdline"
if [[ $INSTALL == files ]]; then
    log "installing proxmox-kernel-helper $HELPER from $VENDOR as its .deb would"
    # debian/preinst: divert Debian's grub-install before the wrapper takes its place.
    in_chroot dpkg-divert --package proxmox-kernel-helper --add --rename \
        --divert /usr/sbin/grub-install.real /usr/sbin/grub-install
    make -s -C "$VENDOR/src" install DESTDIR="$MNT"
    # debian/install and debian/links
    install -m 0644 "$VENDOR/debian/proxmox-simplefb" "$MNT/usr/share/initramfs-tools/modules.d/"
    ln -sfn proxmox-boot-tool "$MNT/usr/sbin/pve-efiboot-tool"
    ln -sfn proxmox-kernel-helper "$MNT/usr/share/pve-kernel-helper"
    # dh_installsystemd --no-start: enabled, not started.
    in_chroot systemctl enable -q proxmox-boot-cleanup.service
    t0=$SECONDS
    in_chroot update-initramfs -u -k "$KVER" >"$WORK/initramfs.log" 2>&1 \
        || { tail -n 30 "$WORK/initramfs.log" >&2; die "update-initramfs failed"; }
    log "initramfs (MODULES=dep) in $((SECONDS - t0)) s"
else
    # A Proxmox VE 9 host has no systemd-boot package: only the two parts the helper suggests.
    # shellcheck disable=SC2016  # a dpkg-query format, not a shell expansion
    ! in_chroot dpkg-query -W -f '${Status}' systemd-boot 2>/dev/null | grep -q 'install ok installed' \
        || die "the systemd-boot package is installed; Proxmox VE 9 has only systemd-boot-efi + systemd-boot-tools"
    [[ -f $MNT/boot/memtest86+x64.efi ]] || die "memtest86+ left no /boot/memtest86+x64.efi"
    log "dpkg -i proxmox-kernel-helper_${HELPER}_all.deb (its preinst, postinst and the initramfs trigger run)"
    cp "$HELPER_DEB" "$MNT/tmp/"
    t0=$SECONDS
    in_chroot dpkg -i "/tmp/proxmox-kernel-helper_${HELPER}_all.deb" >"$WORK/dpkg-helper.log" 2>&1 \
        || { tail -n 40 "$WORK/dpkg-helper.log" >&2; die "dpkg -i proxmox-kernel-helper failed"; }
    rm -f "$MNT/tmp/proxmox-kernel-helper_${HELPER}_all.deb"
    sed 's/^/    /' "$WORK/dpkg-helper.log"
    # debian/triggers activates update-initramfs: its rebuild (MODULES=dep, set above) is the image's.
    grep -q "update-initramfs: Generating /boot/initrd.img-$KVER" "$WORK/dpkg-helper.log" \
        || die "dpkg -i ran no update-initramfs trigger for $KVER"
    in_chroot dpkg-divert --list /usr/sbin/grub-install | grep -q 'diversion of /usr/sbin/grub-install to /usr/sbin/grub-install.real by proxmox-kernel-helper' \
        || die "the package's preinst did not divert grub-install"
    log "helper installed with its triggers in $((SECONDS - t0)) s"
fi
# init copies only proxmox-kernel-* packages and the running kernel; Debian's is added by hand.
in_chroot proxmox-boot-tool kernel add "$KVER"
cp "$MNT/boot/vmlinuz-$KVER" "$MNT/boot/initrd.img-$KVER" "$WORK/"
if [[ $VARIANT == grub ]]; then
    # As an installer leaves it: the console in a drop-in that extends GRUB_CMDLINE_LINUX,
    # the IOMMU off in /etc/default/grub (as in the BIOS images), and /etc/kernel/cmdline
    # beside them, which GRUB does not read.
    G=$MNT/etc/default/grub
    sed -i -e 's/^GRUB_TIMEOUT=.*/GRUB_TIMEOUT=1/' \
        -e "s/^GRUB_CMDLINE_LINUX_DEFAULT=.*/GRUB_CMDLINE_LINUX_DEFAULT=\"quiet $FLAVOUR_ARG\"/" "$G"
    grep -qx "GRUB_CMDLINE_LINUX_DEFAULT=\"quiet $FLAVOUR_ARG\"" "$G" || die "could not set $FLAVOUR_ARG in $G"
    mkdir -p "$MNT/etc/default/grub.d"
    cat >"$MNT/etc/default/grub.d/installer.cfg" <<EOF
GRUB_TERMINAL="console serial"
GRUB_SERIAL_COMMAND="serial --unit=0 --speed=115200 --word=8 --parity=no --stop=1"
GRUB_CMDLINE_LINUX="\$GRUB_CMDLINE_LINUX console=ttyS0,115200n8"
EOF
fi

# The build host runs in a container without EFI and without vfat: it can neither mount the
# ESP nor show the tool /sys/firmware/efi. So `format` and `init` run where they would on a
# Proxmox VE host, in the guest itself: one boot under OVMF (kernel and initrd handed over by
# QEMU, the ESP being empty), a oneshot unit that removes itself, then poweroff.
cat >"$MNT/usr/local/sbin/vfio-pbt-firstboot" <<EOF
#!/bin/sh
# Image build only: make the ESP a proxmox-boot-tool ESP under real UEFI firmware.
set -eu
ESP=\$(readlink -f /dev/disk/by-partlabel/esp)
proxmox-boot-tool format "\$ESP"
udevadm trigger --action=change --settle "\$ESP"
proxmox-boot-tool init "\$ESP" $INIT_MODE
proxmox-boot-tool status
UUID=\$(cat /etc/kernel/proxmox-boot-uuids)
mkdir -p /run/esp
mount -o ro "/dev/disk/by-uuid/\$UUID" /run/esp
echo "--- ESP files"
(cd /run/esp && find . -type f | sort)
echo "--- boot entries"
cat /run/esp/loader/loader.conf /run/esp/loader/entries/*.conf 2>/dev/null || true
grep -E '^\s+linux\s' /run/esp/grub/grub.cfg 2>/dev/null | sed 's/^\s*//' || true
umount /run/esp
EOF
chmod 755 "$MNT/usr/local/sbin/vfio-pbt-firstboot"
cat >"$MNT/etc/systemd/system/vfio-pbt-firstboot.service" <<'EOF'
[Unit]
Description=Image build: proxmox-boot-tool format and init the ESP
After=systemd-udev-settle.service local-fs.target
Wants=systemd-udev-settle.service

[Service]
Type=oneshot
StandardOutput=journal+console
ExecStart=/bin/sh -c '/usr/local/sbin/vfio-pbt-firstboot >/root/pbt-firstboot.log 2>&1 && touch /root/pbt-firstboot.ok; systemctl disable vfio-pbt-firstboot.service; rm -f /etc/systemd/system/vfio-pbt-firstboot.service /usr/local/sbin/vfio-pbt-firstboot; : >/etc/machine-id; systemctl poweroff --no-block'

[Install]
WantedBy=multi-user.target
EOF
in_chroot systemctl enable -q vfio-pbt-firstboot.service
if [[ $INSTALL == deb ]]; then
    # 9.x reinitialises the ESPs when a boot loader package is upgraded (debian/triggers): the
    # scenario reinstalls systemd-boot-efi with apt, offline, from the image's own package lists
    # and the very .deb that is installed.
    # shellcheck disable=SC2016  # a dpkg-query format, not a shell expansion
    SDBOOT_EFI_VERSION=$(in_chroot dpkg-query -W -f '${Version}' systemd-boot-efi)
    SDBOOT_EFI_DEB=systemd-boot-efi_${SDBOOT_EFI_VERSION//:/%3a}_amd64.deb
    chroot_umount
    cp "$DEBS/$SDBOOT_EFI_DEB" "$MNT/var/cache/apt/archives/" \
        || die "no $SDBOOT_EFI_DEB in $DEBS to keep in the image's apt cache"
else
    chroot_umount
    rm -rf "$MNT/var/lib/apt/lists/"*
fi
umount "$MNT"
partx -d "$LOOP" 2>/dev/null || true
losetup -d "$LOOP"; LOOP=""

OVMF_CODE=/usr/share/OVMF/OVMF_CODE_4M.fd OVMF_VARS=/usr/share/OVMF/OVMF_VARS_4M.fd
if [[ ! -f $OVMF_CODE ]]; then
    log "installing host package ovmf"
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq \
        --no-install-recommends ovmf >/dev/null
fi
cp "$OVMF_VARS" "$WORK/vars.fd"
t0=$SECONDS
log "first boot under OVMF: proxmox-boot-tool format + init (TCG: 2-5 min)"
timeout 1200 qemu-system-x86_64 -name vfio-uefi-build -M q35 -accel tcg,thread=multi -cpu max \
    -m 1536 -smp 2 -no-reboot -display none -vga none -serial "file:$WORK/serial.log" \
    -drive "if=pflash,format=raw,unit=0,readonly=on,file=$OVMF_CODE" \
    -drive "if=pflash,format=raw,unit=1,file=$WORK/vars.fd" \
    -drive "file=$RAW,if=none,id=disk0,format=raw" -device virtio-blk-pci,drive=disk0 \
    -kernel "$WORK/vmlinuz-$KVER" -initrd "$WORK/initrd.img-$KVER" -append "$CMDLINE" \
    || { tail -n 40 "$WORK/serial.log" >&2; die "first boot failed or timed out"; }
log "first boot done in $((SECONDS - t0)) s"

LOOP=$(no_udev_noise losetup -P --show -f "$RAW")
[[ -b ${LOOP}p2 ]] || no_udev_noise partx -a "$LOOP"
ROOT=${LOOP}p2
mount "$ROOT" "$MNT"
REPORT=$(cat "$MNT/root/pbt-firstboot.log" 2>/dev/null || true)
printf '%s\n' "$REPORT" | sed 's/^/    /'
[[ -f $MNT/root/pbt-firstboot.ok ]] || { tail -n 40 "$WORK/serial.log" >&2; die "first-boot script failed"; }
[[ ! -e $MNT/etc/systemd/system/vfio-pbt-firstboot.service ]] || die "first-boot unit did not remove itself"
ESP_UUID=$(cat "$MNT/etc/kernel/proxmox-boot-uuids")
grep -qx "System currently booted with uefi" <<<"$REPORT" || die "the first boot was not a UEFI boot"
grep -qx "$ESP_UUID is configured with: $STATUS_MODE (versions: $KVER)" <<<"$REPORT" \
    || die "status does not say '$ESP_UUID is configured with: $STATUS_MODE (versions: $KVER)'"
if [[ $VARIANT == sdboot ]]; then
    grep -qx "options  $CMDLINE" <<<"$REPORT" || die "loader entry options are not /etc/kernel/cmdline"
else
    # Debian 13's kernel versions hold a '+' (6.12.117+deb13-amd64): literal in the pattern, not a quantifier.
    # A Debian kernel release is digits, letters, '.', '+', '-' and '~'; of those only '.' and '+' are special.
    KVER_RE=${KVER//./\\.}
    KVER_RE=${KVER_RE//+/\\+}
    grep -qE "^linux\s+/vmlinuz-$KVER_RE root=UUID=$UUID ro +console=ttyS0,115200n8 quiet $FLAVOUR_ARG\$" <<<"$REPORT" \
        || die "grub.cfg on the ESP lacks the drop-in's console and $FLAVOUR_ARG"
    grep -qx './EFI/proxmox/grubx64.efi' <<<"$REPORT" || die "no EFI/proxmox/grubx64.efi on the ESP"
fi
grep -qx './EFI/BOOT/BOOTX64.EFI' <<<"$REPORT" \
    || die "no removable-path EFI/BOOT/BOOTX64.EFI: firmware without boot entries would not find the loader"
if [[ $SUITE == trixie ]]; then
    # 9.x: init copies Debian's memtest86+ to the ESP; on systemd-boot with its own loader entry.
    if [[ $VARIANT == sdboot ]]; then
        grep -qx './loader/entries/memtest86+x64.efi.conf' <<<"$REPORT" || die "no memtest86+ loader entry on the ESP"
        grep -qx './EFI/memtest86+x64.efi' <<<"$REPORT" || die "no EFI/memtest86+x64.efi on the ESP"
    else
        grep -qx './memtest86+x64.efi' <<<"$REPORT" || die "no memtest86+x64.efi on the GRUB ESP"
    fi
fi
rm -f "$MNT/root/pbt-firstboot.log" "$MNT/root/pbt-firstboot.ok"
rm -rf "$MNT/var/log/journal/"* "$MNT/var/tmp/espmounts"
fstrim "$MNT"
umount "$MNT"
partx -d "$LOOP" 2>/dev/null || true
losetup -d "$LOOP"; LOOP=""
t0=$SECONDS
qemu-img convert -O qcow2 "$RAW" "$WORK/$IMAGE"
log "$IMAGE: $(du -m "$WORK/$IMAGE" | cut -f1) MiB in $((SECONDS - t0)) s"
rm -f "$RAW" "$WORK/vars.fd" "$WORK/vmlinuz-$KVER" "$WORK/initrd.img-$KVER" "$WORK/serial.log"
rmdir "$MNT"

cat >"$WORK/build-info.txt" <<EOF
key=$KEY
built=$(date -u +%Y-%m-%dT%H:%M:%SZ)
build_seconds=$SECONDS
suite=$SUITE
helper=$HELPER
helper_install=$INSTALL
variant=$VARIANT
kernel=$KVER
root_uuid=$UUID
esp_uuid=$ESP_UUID
cmdline=$CMDLINE
vendor=$VENDOR
EOF
rm -f "$WORK"/*.log
[[ -d $FINAL ]] && rm -rf -- "$FINAL"
mv -T "$WORK" "$FINAL"
log "done in $SECONDS s: $FINAL"
exit 0
