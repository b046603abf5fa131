# shellcheck shell=bash
# The steps every VM image shares; sourced by tests/vm/build-image.sh before image/bios.sh or image/uefi.sh,
# whose build() calls them. This file is part of every image's key: edit it and every variant rebuilds.
# Expects SUITE, CACHE, FRESH; build-image.sh sets WORK, RAW and MNT before build().

DISK_SIZE=4G
# debootstrap's package list; the root tarball is kept by suite and this list.
INCLUDE=linux-image-amd64,grub-pc,openssh-server,python3,initramfs-tools,kmod,pciutils,systemd-sysv,udev,dbus,iproute2,sudo,zstd,lz4
# debootstrap is 2-5 min of a build; its untouched result is kept as a tarball keyed by what
# debootstrap was asked for, so editing the configuration costs seconds, not minutes.
# Older than this, it is rebuilt so the base picks up Debian's security updates.
ROOTFS_MAX_AGE_DAYS=${VFIO_VM_ROOTFS_MAX_AGE_DAYS:-14}
ROOTFS_TAR=$CACHE/rootfs-$(echo "$SUITE $INCLUDE" | sha256sum | cut -c1-16).tar
# What the build runs on the host, as COMMAND:PACKAGE (or /FILE:PACKAGE); the boot's file adds its own.
# shellcheck disable=SC2034  # read by build-image.sh
HOST_TOOLS=(qemu-system-x86_64:qemu-system-x86 qemu-img:qemu-utils debootstrap:debootstrap parted:parted
            partx:util-linux ssh:openssh-client ssh-keygen:openssh-client)
LOG_TAG=build-image
WORK="" MNT="" LOOP="" ROOT="" UUID="" UUID_LINK="" DEB_ROOT=""

log() { printf '[%s %4ds] %s\n' "$LOG_TAG" "$SECONDS" "$*"; }
die() { printf '[%s %4ds] ERROR: %s\n' "$LOG_TAG" "$SECONDS" "$*" >&2; exit 1; }
# parted and friends call `udevadm settle`; the build host has no udev, and the resulting
# "udevadm: not found" lines are noise, not errors (device nodes are checked explicitly).
no_udev_noise() { "$@" 2> >(grep -v 'udevadm: not found' >&2); }
in_chroot() { LC_ALL=C DEBIAN_FRONTEND=noninteractive chroot "$MNT" "$@"; }
fail_with_log() { # LOG LINES MESSAGE
    # Under set -e a missing log (QEMU that never started has no serial.log) would end the
    # script here, and the message saying what failed would never be printed.
    tail -n "$2" "$WORK/$1.log" >&2 || true
    die "$3"
}

install_host_tools() { # COMMAND:PACKAGE or /FILE:PACKAGE...
    local pair have need=()
    for pair in "$@"; do
        have=${pair%%:*}
        if [[ $have == /* ]]; then [[ -e $have ]]; else command -v "$have" >/dev/null; fi || need+=("${pair#*:}")
    done
    ((${#need[@]})) || return 0
    log "installing host packages: ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    # Other engineers' scripts may hold the dpkg lock: wait for it instead of failing.
    apt-get -o DPkg::Lock::Timeout=600 update -qq
    mapfile -t need < <(printf '%s\n' "${need[@]}" | sort -u)
    apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${need[@]}" >/dev/null
}

chroot_mount() { # ROOT [DEB_CACHE]: the API file systems, and DEB_CACHE (on the host) as apt's archive dir
    local root=$1
    mount --bind /dev "$root/dev"
    mount --bind /dev/pts "$root/dev/pts"
    mount -t proc proc "$root/proc"
    mount -t sysfs sys "$root/sys"
    mount -t tmpfs tmpfs "$root/run"
    if [[ -n ${2:-} ]]; then
        # Downloads go to the host's deb cache, not into the image.
        mkdir -p "$2/partial" "$root/var/cache/apt/archives"
        mount --bind "$2" "$root/var/cache/apt/archives"
    fi
}

chroot_umount() { # [ROOT]
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
    [[ -n $UUID_LINK && -L $UUID_LINK ]] && rm -f "$UUID_LINK"
    if [[ -n $LOOP ]]; then partx -d "$LOOP" 2>/dev/null; losetup -d "$LOOP"; fi
    # Never delete through a bind mount that failed to let go (the package cache, /dev).
    if [[ -n $WORK && -d $WORK ]] && grep -qF " $WORK/" /proc/self/mountinfo; then
        echo "[$LOG_TAG] mounts remain under $WORK: left in place, remove it by hand" >&2
    elif [[ -n $WORK && -d $WORK ]]; then
        rm -rf -- "$WORK"
    fi
    ((rc)) && echo "[$LOG_TAG] FAILED (exit $rc); partial build removed" >&2
    exit "$rc"
}

attach_disk() { # PARTITION: loop-mount $RAW, ROOT=its partition PARTITION
    LOOP=$(no_udev_noise losetup -P --show -f "$RAW")
    # This host kernel does not create loopXpN by itself.
    [[ -b ${LOOP}p$1 ]] || no_udev_noise partx -a "$LOOP"
    [[ -b ${LOOP}p$1 ]] || die "partition device ${LOOP}p$1 did not appear"
    ROOT=${LOOP}p$1
}

detach_disk() {
    partx -d "$LOOP" 2>/dev/null || true
    losetup -d "$LOOP"; LOOP=""
}

make_disk() { # ROOT_PARTITION PARTED_COMMAND...: $RAW partitioned, its ext4 root (UUID) mounted on $MNT
    local part=$1; shift
    truncate -s "$DISK_SIZE" "$RAW"
    no_udev_noise parted -s "$RAW" "$@"
    attach_disk "$part"
    no_udev_noise mkfs.ext4 -q -L vfio-root "$ROOT"
    UUID=$(blkid -s UUID -o value "$ROOT")
    [[ -n $UUID ]] || die "no filesystem UUID on $ROOT"
    log "loop $LOOP, root $ROOT, UUID $UUID"
    mount "$ROOT" "$MNT"
}

unpack_rootfs() { # the suite's debootstrap result on $MNT, from the cached tarball while it is fresh
    local t0=$SECONDS debs=$CACHE/debs/$SUITE
    # Every variant of a suite starts from this tarball: one debootstrap at a time makes it.
    exec 7>"$ROOTFS_TAR.lock"
    if ! flock -n 7; then
        # Held only while a debootstrap runs: minutes, which should not pass in silence.
        log "another build holds $ROOTFS_TAR.lock (debootstrap of $SUITE); waiting"
        flock 7
    fi
    if [[ $FRESH -eq 0 && -f $ROOTFS_TAR && -n $(find "$ROOTFS_TAR" -mtime -"$ROOTFS_MAX_AGE_DAYS") ]]; then
        exec 7>&-
        log "unpacking cached debootstrap result $ROOTFS_TAR"
        tar -C "$MNT" --numeric-owner --xattrs --xattrs-include='*' -xpf "$ROOTFS_TAR"
        log "unpacked in $((SECONDS - t0)) s"
        return 0
    fi
    log "debootstrap $SUITE (deb cache $debs; takes 2-5 min)"
    mkdir -p "$debs"
    debootstrap --cache-dir="$debs" --include="$INCLUDE" "$SUITE" "$MNT" \
        >"$WORK/debootstrap.log" 2>&1 || fail_with_log debootstrap 30 "debootstrap failed"
    log "debootstrap done in $((SECONDS - t0)) s; caching it as $ROOTFS_TAR"
    # Written aside and renamed: a half-written tarball must never look reusable.
    tar -C "$MNT" --numeric-owner --xattrs --xattrs-include='*' -cpf "$WORK/rootfs.tar" .
    mv -f "$WORK/rootfs.tar" "$ROOTFS_TAR"
    exec 7>&-
    log "root tarball cached ($(du -m "$ROOTFS_TAR" | cut -f1) MiB)"
}

image_apt() { # APT-GET ARGUMENTS...: in the image (chroot_mounted), logged to $WORK/apt.log
    # The image's resolv.conf names QEMU's DNS, which the build host does not have: the host's
    # resolver while apt runs, the image's back after.
    local rc=0
    cp "$MNT/etc/resolv.conf" "$WORK/resolv.conf.image"
    cp -L /etc/resolv.conf "$MNT/etc/resolv.conf"
    in_chroot apt-get "$@" >>"$WORK/apt.log" 2>&1 || rc=$?
    cp "$WORK/resolv.conf.image" "$MNT/etc/resolv.conf"
    rm -f "$WORK/resolv.conf.image"
    return "$rc"
}

configure_guest() { # SSH_KEY_COMMENT: what every guest has, whatever boots it
    log "configuring fstab, network, ssh, initramfs"
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

    ssh-keygen -q -t ed25519 -N '' -C "$1" -f "$WORK/id_ed25519"
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
    # A Proxmox VE host has /etc/default/grub whichever loader boots it; the role must leave it alone.
    [[ -f $MNT/etc/default/grub ]] || cp "$MNT/usr/share/grub/default/grub" "$MNT/etc/default/grub"
}

set_hostname() { # NAME
    echo "$1" >"$MNT/etc/hostname"
    printf '127.0.0.1\tlocalhost\n127.0.1.1\t%s\n' "$1" >"$MNT/etc/hosts"
}

newest_kernel() { find "$MNT/lib/modules" -mindepth 1 -maxdepth 1 -printf '%f\n' | sort -V | tail -n1; }

convert_image() { # FILE: $RAW as $WORK/FILE (qcow2), with the freed blocks of $MNT dropped first
    local t0
    # Freed blocks (downloaded .debs, the journal) would otherwise be copied into the qcow2.
    fstrim "$MNT"
    umount "$MNT"
    t0=$SECONDS
    qemu-img convert -O qcow2 "$RAW" "$WORK/$1"
    log "$1: $(du -m "$WORK/$1" | cut -f1) MiB, converted in $((SECONDS - t0)) s"
}

# shellcheck disable=SC2153  # BOOT, KEY: set by build-image.sh
build_info() { # build-info.txt: these lines, then the boot's own (variant_info)
    cat <<EOF
key=$KEY
built=$(date -u +%Y-%m-%dT%H:%M:%SZ)
build_seconds=$SECONDS
suite=$SUITE
boot=$BOOT
variant=$VARIANT
kernel=$KVER
root_uuid=$UUID
EOF
    variant_info
}
