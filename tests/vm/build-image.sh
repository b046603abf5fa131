#!/usr/bin/env bash
# Build the cached Debian base images (intel, amd) for the QEMU test bed.
#
# Usage: tests/vm/build-image.sh [--suite trixie|bookworm] [--kernel 7.0] [--force] [--fresh] [--prune] [--print-dir]
#   --suite      Debian release: trixie (13, Proxmox VE 9's base; the default) or bookworm (12, VE 8's)
#   --kernel     7.0|7.3, trixie only: also install that trixie-backports kernel line (7.0 is the one
#                Proxmox VE 9.2 boots) beside Debian's 6.12, and boot it by default; image dir <suite>-linux<line>-<key>
#   --force      rebuild even if a complete image for this script's hash exists
#   --fresh      also re-run debootstrap instead of reusing the cached root tarball
#   --prune      delete image dirs of this suite built by other versions of this script
#   --print-dir  only print the image dir this script version would produce, then exit
#
# Output: $VFIO_VM_CACHE/images/<suite>[-linux<kernel>]-<key>/{intel.qcow2,amd.qcow2,id_ed25519,id_ed25519.pub,
# vmlinuz-<kernel>,build-info.txt} where <key> hashes this script, so editing the script forces a rebuild. The
# image dir appears only through an atomic rename at the very end: if it exists, it is complete.
set -euo pipefail

CACHE=${VFIO_VM_CACHE:-/var/cache/vfio-passthrough-vm}
SELF=$(readlink -f "${BASH_SOURCE[0]}")
KEY=$(sha256sum "$SELF" | cut -c1-16)
IMAGES=$CACHE/images
SUITE=${VFIO_VM_SUITE:-trixie}
DISK_SIZE=4G
# Each flavour boots with its IOMMU switched off on purpose: the collection under test must
# be what turns it on, so "before" shows an honest off state.
declare -A FLAVOUR_ARG=([intel]="intel_iommu=off" [amd]="amd_iommu=off")
# Each line's exact package, so the image boots that line whatever trixie-backports' linux-image-amd64
# moves to. 7.0 is the line Proxmox VE 9.2 boots; on 2026-12-06 the archive (Release of 2026-12-04) still
# lists linux-image-7.0.4..7.0.13 but no longer their linux-base-7.0.x and linux-modules-7.0.x, so it
# cannot be installed and the build says so. 7.3 is the newest line it carries whole.
declare -A BACKPORTS_KERNEL=([7.0]=linux-image-7.0.13+deb13-amd64 [7.3]=linux-image-7.3.4+deb13-amd64)
BACKPORTS_SUITE=trixie-backports
BACKPORTS_URI=http://deb.debian.org/debian
INCLUDE=linux-image-amd64,grub-pc,openssh-server,python3,initramfs-tools,kmod,pciutils,systemd-sysv,udev,dbus,iproute2,sudo,zstd,lz4
# Installed on top of the cached debootstrap result, so the root tarball (and Debian 12's build) stays
# as it was. Debian 13's guest runs the VM probe (playbooks/vm_probe.yml), which boots a guest of its
# own with Debian's QEMU 10 and a busybox initramfs: installed in a running guest that took 327 s,
# here it is a download plus dpkg. Depends only: seabios, ipxe-qemu (the e1000e's option ROM) and
# qemu-system-data come with qemu-system-x86; its recommends (GUI, OVMF, block modules) are not needed.
declare -A EXTRA_PACKAGES=([trixie]="qemu-system-x86 busybox-static" [bookworm]="")

FORCE=0 PRUNE=0 FRESH=0 PRINT_DIR=0 KERNEL=""
args=("$@")
while (($#)); do
    case $1 in
        --suite) (($# >= 2)) || { echo "build-image.sh: --suite needs a value" >&2; exit 2; }; SUITE=$2; shift ;;
        --suite=*) SUITE=${1#--suite=} ;;
        --kernel) (($# >= 2)) || { echo "build-image.sh: --kernel needs a value" >&2; exit 2; }; KERNEL=$2; shift ;;
        --kernel=*) KERNEL=${1#--kernel=} ;;
        --force) FORCE=1 ;;
        --prune) PRUNE=1 ;;
        --fresh) FRESH=1 FORCE=1 ;;
        --print-dir) PRINT_DIR=1 ;;
        -h|--help) sed -n '2,15p' "$SELF"; exit 0 ;;
        *) echo "build-image.sh: unknown argument: $1" >&2; exit 2 ;;
    esac
    shift
done
case $SUITE in
    trixie|bookworm) ;;
    *) echo "build-image.sh: --suite must be trixie or bookworm, not '$SUITE'" >&2; exit 2 ;;
esac
VARIANT=$SUITE
if [[ -n $KERNEL ]]; then
    [[ -n ${BACKPORTS_KERNEL[$KERNEL]:-} ]] \
        || { echo "build-image.sh: --kernel must be one of: ${!BACKPORTS_KERNEL[*]}, not '$KERNEL'" >&2; exit 2; }
    [[ $SUITE == trixie ]] || { echo "build-image.sh: --kernel $KERNEL comes from $BACKPORTS_SUITE: --suite trixie only" >&2; exit 2; }
    VARIANT=$SUITE-linux$KERNEL
fi
FINAL=$IMAGES/$VARIANT-$KEY
[[ $PRINT_DIR -eq 1 ]] && { echo "$FINAL"; exit 0; }
# debootstrap is 2-5 min of a build; its untouched result is kept as a tarball keyed by what
# debootstrap was asked for, so editing the configuration below costs seconds, not minutes.
# Older than this, it is rebuilt so the base picks up Debian's security updates.
ROOTFS_MAX_AGE_DAYS=${VFIO_VM_ROOTFS_MAX_AGE_DAYS:-14}
ROOTFS_TAR=$CACHE/rootfs-$(echo "$SUITE $INCLUDE" | sha256sum | cut -c1-16).tar

log() { printf '[build-image %4ds] %s\n' "$SECONDS" "$*"; }
die() { printf '[build-image %4ds] ERROR: %s\n' "$SECONDS" "$*" >&2; exit 1; }

[[ $(id -u) -eq 0 ]] || die "must run as root (loop devices, mounts, chroot)"

# Mounts live in a private mount namespace: whatever happens to this script, the kernel
# drops them when it exits, and nothing leaks into (or propagates from) the host's mounts.
if [[ -z ${VFIO_VM_BUILD_NS:-} ]]; then
    exec unshare --mount --propagation private env VFIO_VM_BUILD_NS=1 "$SELF" "${args[@]}"
fi

DEBS=$CACHE/debs/$SUITE
mkdir -p "$CACHE" "$IMAGES" "$DEBS"
# Two callers (e.g. parallel pytest workers) must not build the same image at once; the two
# suites share nothing but the cache root, so they may build side by side.
exec 9>"$CACHE/.build-$VARIANT.lock"
if ! flock -n 9; then
    log "another build holds $CACHE/.build-$VARIANT.lock; waiting"
    flock 9
fi

prune() {
    local d
    for d in "$IMAGES/$VARIANT"-*/; do
        d=${d%/}
        # trixie-* also matches the trixie-linux7.0-* variant: only this variant's own keys go.
        [[ $d == "$FINAL" || ! -d $d || ! ${d##*/} =~ ^$VARIANT-[0-9a-f]{16}$ ]] && continue
        log "pruning old image dir $d"
        rm -rf -- "$d"
    done
}

if [[ -d $FINAL && $FORCE -eq 0 ]]; then
    for f in intel.qcow2 amd.qcow2 id_ed25519 id_ed25519.pub; do
        [[ -s $FINAL/$f ]] || die "$FINAL exists but lacks $f: delete it and rerun"
    done
    log "image up to date: $FINAL"
    [[ $PRUNE -eq 1 ]] && prune
    exit 0
fi

# --- host dependencies -------------------------------------------------------------------
need=()
for pair in qemu-system-x86_64:qemu-system-x86 qemu-img:qemu-utils debootstrap:debootstrap \
            parted:parted partx:util-linux ssh:openssh-client ssh-keygen:openssh-client; do
    command -v "${pair%%:*}" >/dev/null || need+=("${pair#*:}")
done
if ((${#need[@]})); then
    log "installing host packages: ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    # Other engineers' scripts may hold the dpkg lock: wait for it instead of failing.
    apt-get -o DPkg::Lock::Timeout=600 update -qq
    mapfile -t packages < <(printf '%s\n' "${need[@]}" | sort -u)
    apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${packages[@]}" >/dev/null
fi

# --- build ---------------------------------------------------------------------------------
WORK=$CACHE/build.$VARIANT-$KEY.$$
RAW=$WORK/root.raw
MNT=$WORK/mnt
LOOP="" UUID_LINK=""

chroot_umount() {
    local m
    for m in var/cache/vfio-extra-debs run sys proc dev/pts dev; do
        mountpoint -q "$MNT/$m" && umount "$MNT/$m"
    done
    return 0
}

# shellcheck disable=SC2317  # reached through the EXIT trap
cleanup() {
    local rc=$?
    set +e
    if [[ -n $MNT ]] && mountpoint -q "$MNT" 2>/dev/null; then chroot_umount; umount "$MNT"; fi
    [[ -n $UUID_LINK && -L $UUID_LINK ]] && rm -f "$UUID_LINK"
    if [[ -n $LOOP ]]; then partx -d "$LOOP" 2>/dev/null; losetup -d "$LOOP"; fi
    [[ -d $WORK ]] && rm -rf -- "$WORK"
    ((rc)) && echo "[build-image] FAILED (exit $rc); partial build removed" >&2
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log "building $VARIANT image $KEY in $WORK (cache $CACHE)"
mkdir -p "$WORK" "$MNT"

# parted and friends call `udevadm settle`; the build host has no udev, and the resulting
# "udevadm: not found" lines are noise, not errors (device nodes are checked explicitly).
no_udev_noise() { "$@" 2> >(grep -v 'udevadm: not found' >&2); }

log "creating $DISK_SIZE raw disk, msdos label, one ext4 partition"
truncate -s "$DISK_SIZE" "$RAW"
no_udev_noise parted -s "$RAW" mklabel msdos mkpart primary ext4 1MiB 100% set 1 boot on
LOOP=$(no_udev_noise losetup -P --show -f "$RAW")
# This host kernel does not create loopXp1 by itself.
[[ -b ${LOOP}p1 ]] || no_udev_noise partx -a "$LOOP"
[[ -b ${LOOP}p1 ]] || die "partition device ${LOOP}p1 did not appear"
PART=${LOOP}p1
no_udev_noise mkfs.ext4 -q -L vfio-root "$PART"
UUID=$(blkid -s UUID -o value "$PART")
[[ -n $UUID ]] || die "no filesystem UUID on $PART"
log "loop $LOOP, root $PART, UUID $UUID"

chroot_mount() {
    mount --bind /dev "$MNT/dev"
    mount --bind /dev/pts "$MNT/dev/pts"
    mount -t proc proc "$MNT/proc"
    mount -t sysfs sys "$MNT/sys"
    mount -t tmpfs tmpfs "$MNT/run"
}
in_chroot() { LC_ALL=C DEBIAN_FRONTEND=noninteractive chroot "$MNT" "$@"; }

mount "$PART" "$MNT"
t0=$SECONDS
if [[ $FRESH -eq 0 && -f $ROOTFS_TAR && -n $(find "$ROOTFS_TAR" -mtime -"$ROOTFS_MAX_AGE_DAYS") ]]; then
    log "unpacking cached debootstrap result $ROOTFS_TAR"
    tar -C "$MNT" --numeric-owner --xattrs --xattrs-include='*' -xpf "$ROOTFS_TAR"
    log "unpacked in $((SECONDS - t0)) s"
else
    log "debootstrap $SUITE (deb cache $DEBS; takes 2-5 min)"
    debootstrap --cache-dir="$DEBS" --include="$INCLUDE" "$SUITE" "$MNT" \
        >"$WORK/debootstrap.log" 2>&1 || { tail -n 30 "$WORK/debootstrap.log" >&2; die "debootstrap failed"; }
    log "debootstrap done in $((SECONDS - t0)) s; caching it as $ROOTFS_TAR"
    # Written aside and renamed: a half-written tarball must never look reusable.
    tar -C "$MNT" --numeric-owner --xattrs --xattrs-include='*' -cpf "$WORK/rootfs.tar" .
    mv -f "$WORK/rootfs.tar" "$ROOTFS_TAR"
    log "root tarball cached ($(du -m "$ROOTFS_TAR" | cut -f1) MiB)"
fi

if [[ -n ${EXTRA_PACKAGES[$SUITE]} ]]; then
    t0=$SECONDS
    log "installing ${EXTRA_PACKAGES[$SUITE]} (--no-install-recommends)"
    chroot_mount
    # The chroot resolves names with the build host's resolver until the guest's is written below;
    # downloads go to the host's deb cache, not into the image.
    cp -L /etc/resolv.conf "$MNT/etc/resolv.conf"
    mkdir -p "$DEBS/extra/partial" "$MNT/var/cache/vfio-extra-debs"
    mount --bind "$DEBS/extra" "$MNT/var/cache/vfio-extra-debs"
    apt_in_chroot() { in_chroot apt-get -o Dir::Cache::Archives=/var/cache/vfio-extra-debs "$@"; }
    # shellcheck disable=SC2086  # a space-separated package list
    { apt_in_chroot update -qq && apt_in_chroot install -y -qq --no-install-recommends ${EXTRA_PACKAGES[$SUITE]}; } \
        >"$WORK/extra.log" 2>&1 || { tail -n 30 "$WORK/extra.log" >&2; die "installing ${EXTRA_PACKAGES[$SUITE]} failed"; }
    umount "$MNT/var/cache/vfio-extra-debs"
    rmdir "$MNT/var/cache/vfio-extra-debs"
    # The lists are 60+ MiB the guests never read: the image stays as debootstrap left it there.
    rm -rf "$MNT"/var/lib/apt/lists/*
    chroot_umount
    for tool in qemu-system-x86_64 busybox; do
        [[ -x $MNT/usr/bin/$tool || -x $MNT/bin/$tool ]] || die "$tool missing after installing ${EXTRA_PACKAGES[$SUITE]}"
    done
    # shellcheck disable=SC2016  # dpkg-query's format, not the shell's
    log "installed in $((SECONDS - t0)) s: $(in_chroot dpkg-query -W -f '${Package} ${Version}\n' qemu-system-x86 busybox-static seabios ipxe-qemu | paste -sd, -)"
fi

log "configuring fstab, network, ssh, grub defaults, initramfs"
echo "UUID=$UUID / ext4 errors=remount-ro 0 1" >"$MNT/etc/fstab"
# Every VM from the image must get its own machine-id (DHCP client id, journal).
: >"$MNT/etc/machine-id"
rm -f "$MNT/var/lib/dbus/machine-id"
echo "nameserver 10.0.2.3" >"$MNT/etc/resolv.conf"

# DHCP only on the management NIC: matching by driver keeps the e1000e passthrough
# candidates unconfigured, so the default route always goes through virtio.
mkdir -p "$MNT/etc/systemd/network"
cat >"$MNT/etc/systemd/network/10-mgmt.network" <<'EOF'
[Match]
Driver=virtio_net

[Network]
DHCP=ipv4
EOF
in_chroot systemctl enable -q systemd-networkd
# Nothing waits on network-online here; the wait service would only slow boots.
in_chroot systemctl disable -q systemd-networkd-wait-online.service 2>/dev/null || true
# Background apt runs would grab the dpkg lock under a playbook's feet.
in_chroot systemctl mask -q apt-daily.timer apt-daily-upgrade.timer
# Under TCG on shared cores every boot-time job costs seconds (measured: e2scrub_reap 17-26 s,
# ifupdown's networking.service 9-12 s, though it only brings up lo, which networkd does too).
in_chroot systemctl disable -q e2scrub_reap.service e2scrub_all.timer networking.service \
    man-db.timer fstrim.timer 2>/dev/null || true

ssh-keygen -q -t ed25519 -N '' -C "vfio-vm-$KEY" -f "$WORK/id_ed25519"
install -d -m 700 "$MNT/root/.ssh"
install -m 600 "$WORK/id_ed25519.pub" "$MNT/root/.ssh/authorized_keys"
cat >"$MNT/etc/ssh/sshd_config.d/10-vfio-test.conf" <<'EOF'
PermitRootLogin prohibit-password
PasswordAuthentication no
UseDNS no
EOF

# MODULES=dep keeps update-initramfs at ~1.5 min under TCG instead of ~10 (MODULES=most).
# dep mode resolves the root device of whatever runs it: here the build host's loop device,
# so the guest's disk/bus drivers are listed explicitly for the initrd built in this chroot.
sed -i 's/^MODULES=.*/MODULES=dep/' "$MNT/etc/initramfs-tools/initramfs.conf"
grep -qx 'MODULES=dep' "$MNT/etc/initramfs-tools/initramfs.conf" || die "MODULES=dep not set"
cat >>"$MNT/etc/initramfs-tools/modules" <<'EOF'
# vfio test bed: guest root disk is virtio-blk on q35 PCIe
virtio_pci
virtio_blk
ext4
EOF

# Serial console: the launcher logs ttyS0 to a file, the only window into a boot that fails.
G=$MNT/etc/default/grub
[[ -f $G ]] || cp "$MNT/usr/share/grub/default/grub" "$G"
set_grub() { # KEY VALUE: replace the line or append it
    if grep -q "^#\?$1=" "$G"; then sed -i "s|^#\?$1=.*|$1=$2|" "$G"; else echo "$1=$2" >>"$G"; fi
}
set_grub GRUB_TIMEOUT 1
set_grub GRUB_CMDLINE_LINUX '"console=ttyS0,115200n8"'
set_grub GRUB_TERMINAL '"console serial"'
set_grub GRUB_SERIAL_COMMAND '"serial --unit=0 --speed=115200 --word=8 --parity=no --stop=1"'

chroot_mount
# No udev on the build host: without this link grub.cfg would say root=/dev/loopXp1.
mkdir -p /dev/disk/by-uuid
UUID_LINK=/dev/disk/by-uuid/$UUID
ln -sfn "$PART" "$UUID_LINK"

echo "grub-pc grub-pc/install_devices multiselect /dev/vda" | in_chroot debconf-set-selections
if [[ -n $KERNEL ]]; then
    pkg=${BACKPORTS_KERNEL[$KERNEL]}
    keyring=""
    for k in usr/share/keyrings/debian-archive-keyring.pgp usr/share/keyrings/debian-archive-keyring.gpg; do
        [[ -f $MNT/$k ]] && { keyring=$k; break; }
    done
    [[ -n $keyring ]] || die "no Debian archive keyring in the image: cannot verify $BACKPORTS_SUITE"
    printf 'Types: deb\nURIs: %s\nSuites: %s\nComponents: main\nSigned-By: /%s\n' \
        "$BACKPORTS_URI" "$BACKPORTS_SUITE" "$keyring" >"$MNT/etc/apt/sources.list.d/$BACKPORTS_SUITE.sources"
    t0=$SECONDS
    # The image's resolv.conf names QEMU's DNS, which the build host does not have.
    cp "$MNT/etc/resolv.conf" "$WORK/resolv.conf.guest"
    cp -L /etc/resolv.conf "$MNT/etc/resolv.conf"
    log "kernel $KERNEL: apt-get update with $BACKPORTS_SUITE ($BACKPORTS_URI)"
    in_chroot apt-get update -qq >"$WORK/apt.log" 2>&1 || { cat "$WORK/apt.log" >&2; die "apt-get update failed"; }
    candidate=$(in_chroot apt-cache policy "$pkg" | sed -n 's/^ *Candidate: //p')
    [[ -n $candidate && $candidate != "(none)" ]] \
        || die "$BACKPORTS_SUITE ($BACKPORTS_URI) no longer has $pkg: pick a $KERNEL package it still carries (apt-cache search linux-image-$KERNEL) and set BACKPORTS_KERNEL in $SELF"
    # The archive can list the image package after dropping what it depends on: name what is missing.
    if ! in_chroot apt-get install -s --no-install-recommends "$pkg/$BACKPORTS_SUITE" >"$WORK/apt.log" 2>&1; then
        missing=$(sed -n 's/.*Depends: \([^ ]*\) .*but it is not installable.*/\1/p' "$WORK/apt.log" | sort -u | paste -sd' ')
        die "$BACKPORTS_SUITE ($BACKPORTS_URI) lists $pkg $candidate but not ${missing:-all it depends on}: it cannot be installed (apt-get install -s: $(grep -m1 '^E:' "$WORK/apt.log"))"
    fi
    log "kernel $KERNEL: installing $pkg $candidate from $BACKPORTS_SUITE (its postinst builds a MODULES=dep initrd)"
    in_chroot apt-get install -y -qq --no-install-recommends "$pkg/$BACKPORTS_SUITE" >"$WORK/apt.log" 2>&1 \
        || { tail -n 30 "$WORK/apt.log" >&2; die "installing $pkg from $BACKPORTS_SUITE failed"; }
    in_chroot apt-get clean
    cp "$WORK/resolv.conf.guest" "$MNT/etc/resolv.conf"
    log "kernel $KERNEL: installed $(in_chroot dpkg-query -W -f "\${Package} \${Version}" "$pkg") in $((SECONDS - t0)) s"
fi
t0=$SECONDS
log "rebuilding initramfs with MODULES=dep"
in_chroot update-initramfs -u -k all >"$WORK/initramfs.log" 2>&1 \
    || { tail -n 30 "$WORK/initramfs.log" >&2; die "update-initramfs failed"; }
mapfile -t KVERS < <(find "$MNT/lib/modules" -mindepth 1 -maxdepth 1 -printf '%f\n' | sort -V)
KVER=${KVERS[-1]}
# Every installed kernel must be able to boot: a Proxmox host falls back to an older one.
for kver in "${KVERS[@]}"; do
    [[ -f $MNT/boot/initrd.img-$kver ]] || die "no initrd for $kver"
    # Listing to a variable first: grep -q closing the pipe early would trip pipefail.
    initrd_files=$(in_chroot lsinitramfs "/boot/initrd.img-$kver")
    grep -q '/virtio_blk\.ko' <<<"$initrd_files" \
        || grep -qx 'CONFIG_VIRTIO_BLK=y' "$MNT/boot/config-$kver" \
        || die "initrd for $kver has no virtio_blk: the guest could not find its root disk"
    log "initramfs $kver: $(($(stat -c %s "$MNT/boot/initrd.img-$kver") / 1024 / 1024)) MiB"
done
if [[ -n $KERNEL && $KVER != "$KERNEL".* ]]; then
    die "newest installed kernel is $KVER, not $KERNEL.x: GRUB would not boot the $KERNEL line by default"
fi
INITRD_SIZE=$(stat -c %s "$MNT/boot/initrd.img-$KVER")
log "initramfs for ${KVERS[*]} in $((SECONDS - t0)) s"

# The guests' kernel beside the images: a controller-side test can run what it checks against
# the real image (e.g. its command-line limit) without booting a guest.
cp "$MNT/boot/vmlinuz-$KVER" "$WORK/vmlinuz-$KVER"

log "grub-install --target=i386-pc $LOOP"
in_chroot grub-install --target=i386-pc "$LOOP" >"$WORK/grub-install.log" 2>&1 \
    || { cat "$WORK/grub-install.log" >&2; die "grub-install failed"; }

for flavour in intel amd; do
    [[ $flavour == amd ]] && { mount "$PART" "$MNT"; chroot_mount; }
    arg=${FLAVOUR_ARG[$flavour]}
    log "flavour $flavour: GRUB_CMDLINE_LINUX_DEFAULT=\"quiet $arg\", update-grub"
    echo "vfio-$flavour" >"$MNT/etc/hostname"
    printf '127.0.0.1\tlocalhost\n127.0.1.1\tvfio-%s\n' "$flavour" >"$MNT/etc/hosts"
    set_grub GRUB_CMDLINE_LINUX_DEFAULT "\"quiet $arg\""
    in_chroot update-grub >"$WORK/update-grub.log" 2>&1 \
        || { cat "$WORK/update-grub.log" >&2; die "update-grub failed"; }
    cfg=$MNT/boot/grub/grub.cfg
    linux_line=$(grep -m1 -E '^\s+linux\s' "$cfg") || die "no linux line in grub.cfg"
    [[ $linux_line == *"root=UUID=$UUID "* ]] || die "grub.cfg root is not UUID=$UUID: $linux_line"
    [[ $linux_line == *"console=ttyS0,115200n8 quiet $arg"* ]] || die "grub.cfg lacks '$arg': $linux_line"
    grep -q '^terminal_output.*serial' "$cfg" || die "grub.cfg has no serial terminal"
    # GRUB's default entry is the first one, and Debian's 10_linux sorts the newest version first.
    [[ $linux_line == *"/vmlinuz-$KVER "* ]] || die "grub.cfg's default entry is not $KVER: $linux_line"
    for kver in "${KVERS[@]}"; do
        # -F: a release like 6.12.117+deb13-amd64 is no regular expression.
        grep -qF "/vmlinuz-$kver " "$cfg" || die "grub.cfg has no entry for $kver"
    done
    log "  grub.cfg:${linux_line#*vmlinuz}"
    chroot_umount
    # Freed blocks (debootstrap's downloaded .debs) would otherwise be copied into the qcow2.
    fstrim "$MNT"
    umount "$MNT"
    t0=$SECONDS
    qemu-img convert -O qcow2 "$RAW" "$WORK/$flavour.qcow2"
    log "  $flavour.qcow2: $(du -m "$WORK/$flavour.qcow2" | cut -f1) MiB, converted in $((SECONDS - t0)) s"
done

rm -f "$UUID_LINK"; UUID_LINK=""
partx -d "$LOOP" 2>/dev/null || true
losetup -d "$LOOP"; LOOP=""
rm -f "$RAW"
rmdir "$MNT"

cat >"$WORK/build-info.txt" <<EOF
key=$KEY
built=$(date -u +%Y-%m-%dT%H:%M:%SZ)
build_seconds=$SECONDS
suite=$SUITE
variant=$VARIANT
kernel=$KVER
kernels=${KVERS[*]}
backports_kernel_package=${KERNEL:+${BACKPORTS_KERNEL[$KERNEL]}}
root_uuid=$UUID
initrd_bytes=$INITRD_SIZE
vmlinuz=vmlinuz-$KVER
extra_packages=${EXTRA_PACKAGES[$SUITE]}
intel_cmdline_default=quiet ${FLAVOUR_ARG[intel]}
amd_cmdline_default=quiet ${FLAVOUR_ARG[amd]}
EOF
rm -f "$WORK"/*.log
[[ -d $FINAL ]] && rm -rf -- "$FINAL"   # only reached with --force
mv -T "$WORK" "$FINAL"
log "done in $SECONDS s: $FINAL"
[[ $PRUNE -eq 1 ]] && prune
exit 0
