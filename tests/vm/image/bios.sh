# shellcheck shell=bash
# --boot bios: the Debian base images intel.qcow2 and amd.qcow2 of one suite, GRUB (grub-pc) from /boot
# on an msdos disk with one ext4 partition; with KERNEL, a trixie-backports kernel line beside Debian's
# and booted by default. Sourced by tests/vm/build-image.sh after image/common.sh; part of these
# images' key, not of the UEFI ones'.

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
# Installed on top of the cached debootstrap result, so the root tarball (and Debian 12's build) stays
# as it was. Debian 13's guest runs the VM probe (playbooks/vm_probe.yml), which boots a guest of its
# own with Debian's QEMU 10 and a busybox initramfs: installed in a running guest that took 327 s,
# here it is a download plus dpkg. Depends only: seabios, ipxe-qemu (the e1000e's option ROM) and
# qemu-system-data come with qemu-system-x86; its recommends (GUI, OVMF, block modules) are not needed.
declare -A EXTRA_PACKAGES=([trixie]="qemu-system-x86 busybox-static" [bookworm]="")

# shellcheck disable=SC2034  # VARIANT, KEY_INPUT, IMAGE_FILES: read by build-image.sh
variant() {
    [[ -z $HELPER ]] || usage_error "--helper goes with --boot uefi-sdboot|uefi-grub"
    VARIANT=$SUITE
    if [[ -n $KERNEL ]]; then
        [[ -n ${BACKPORTS_KERNEL[$KERNEL]:-} ]] \
            || usage_error "--kernel must be one of: ${!BACKPORTS_KERNEL[*]}, not '$KERNEL'"
        [[ $SUITE == trixie ]] || usage_error "--kernel $KERNEL comes from $BACKPORTS_SUITE: --suite trixie only"
        VARIANT=$SUITE-linux$KERNEL
    fi
    KEY_INPUT="bios $SUITE $KERNEL"
    IMAGE_FILES=(intel.qcow2 amd.qcow2 id_ed25519 id_ed25519.pub)
}

install_extra_packages() {
    local t0=$SECONDS tool pkgs=${EXTRA_PACKAGES[$SUITE]}
    log "installing $pkgs (--no-install-recommends)"
    chroot_mount "$MNT" "$CACHE/debs/$SUITE/extra"
    # shellcheck disable=SC2086  # a space-separated package list
    { image_apt update -qq && image_apt install -y -qq --no-install-recommends $pkgs; } \
        || fail_with_log apt 30 "installing $pkgs failed"
    # The lists are 60+ MiB the guests never read: the image stays as debootstrap left it there.
    rm -rf "$MNT"/var/lib/apt/lists/*
    chroot_umount
    for tool in qemu-system-x86_64 busybox; do
        [[ -x $MNT/usr/bin/$tool || -x $MNT/bin/$tool ]] || die "$tool missing after installing $pkgs"
    done
    # shellcheck disable=SC2016  # dpkg-query's format, not the shell's
    log "installed in $((SECONDS - t0)) s: $(in_chroot dpkg-query -W -f '${Package} ${Version}\n' qemu-system-x86 busybox-static seabios ipxe-qemu | paste -sd, -)"
}

set_grub() { # KEY VALUE: replace the line or append it
    local g=$MNT/etc/default/grub
    if grep -q "^#\?$1=" "$g"; then sed -i "s|^#\?$1=.*|$1=$2|" "$g"; else echo "$1=$2" >>"$g"; fi
}

install_backports_kernel() { # the exact package of the KERNEL line, from trixie-backports
    local t0=$SECONDS k keyring="" candidate missing pkg=${BACKPORTS_KERNEL[$KERNEL]}
    for k in usr/share/keyrings/debian-archive-keyring.pgp usr/share/keyrings/debian-archive-keyring.gpg; do
        [[ -f $MNT/$k ]] && { keyring=$k; break; }
    done
    [[ -n $keyring ]] || die "no Debian archive keyring in the image: cannot verify $BACKPORTS_SUITE"
    printf 'Types: deb\nURIs: %s\nSuites: %s\nComponents: main\nSigned-By: /%s\n' \
        "$BACKPORTS_URI" "$BACKPORTS_SUITE" "$keyring" >"$MNT/etc/apt/sources.list.d/$BACKPORTS_SUITE.sources"
    log "kernel $KERNEL: apt-get update with $BACKPORTS_SUITE ($BACKPORTS_URI)"
    image_apt update -qq || fail_with_log apt 30 "apt-get update failed"
    candidate=$(in_chroot apt-cache policy "$pkg" | sed -n 's/^ *Candidate: //p')
    [[ -n $candidate && $candidate != "(none)" ]] \
        || die "$BACKPORTS_SUITE ($BACKPORTS_URI) no longer has $pkg: pick a $KERNEL package it still carries (apt-cache search linux-image-$KERNEL) and set BACKPORTS_KERNEL in ${BASH_SOURCE[0]}"
    # The archive can list the image package after dropping what it depends on: name what is missing.
    : >"$WORK/apt.log"
    if ! image_apt install -s --no-install-recommends "$pkg/$BACKPORTS_SUITE"; then
        missing=$(sed -n 's/.*Depends: \([^ ]*\) .*but it is not installable.*/\1/p' "$WORK/apt.log" | sort -u | paste -sd' ')
        die "$BACKPORTS_SUITE ($BACKPORTS_URI) lists $pkg $candidate but not ${missing:-all it depends on}: it cannot be installed (apt-get install -s: $(grep -m1 '^E:' "$WORK/apt.log"))"
    fi
    log "kernel $KERNEL: installing $pkg $candidate from $BACKPORTS_SUITE (its postinst builds a MODULES=dep initrd)"
    image_apt install -y -qq --no-install-recommends "$pkg/$BACKPORTS_SUITE" \
        || fail_with_log apt 30 "installing $pkg from $BACKPORTS_SUITE failed"
    in_chroot apt-get clean
    log "kernel $KERNEL: installed $(in_chroot dpkg-query -W -f "\${Package} \${Version}" "$pkg") in $((SECONDS - t0)) s"
}

build_initramfs() { # every installed kernel's, checked; KVERS (oldest first), KVER (the newest)
    local t0=$SECONDS kver initrd_files
    log "rebuilding initramfs with MODULES=dep"
    in_chroot update-initramfs -u -k all >"$WORK/initramfs.log" 2>&1 \
        || fail_with_log initramfs 30 "update-initramfs failed"
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
}

make_flavour() { # FLAVOUR: its hostname and IOMMU-off default command line, grub.cfg checked, FLAVOUR.qcow2
    local arg=${FLAVOUR_ARG[$1]} cfg=$MNT/boot/grub/grub.cfg linux_line kver
    log "flavour $1: GRUB_CMDLINE_LINUX_DEFAULT=\"quiet $arg\", update-grub"
    set_hostname "vfio-$1"
    set_grub GRUB_CMDLINE_LINUX_DEFAULT "\"quiet $arg\""
    in_chroot update-grub >"$WORK/update-grub.log" 2>&1 || fail_with_log update-grub 1000 "update-grub failed"
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
    convert_image "$1.qcow2"
}

build() {
    log "creating $DISK_SIZE raw disk, msdos label, one ext4 partition"
    make_disk 1 mklabel msdos mkpart primary ext4 1MiB 100% set 1 boot on
    unpack_rootfs
    [[ -n ${EXTRA_PACKAGES[$SUITE]} ]] && install_extra_packages
    configure_guest "vfio-vm-$KEY"
    # Serial console: the launcher logs ttyS0 to a file, the only window into a boot that fails.
    set_grub GRUB_TIMEOUT 1
    set_grub GRUB_CMDLINE_LINUX '"console=ttyS0,115200n8"'
    set_grub GRUB_TERMINAL '"console serial"'
    set_grub GRUB_SERIAL_COMMAND '"serial --unit=0 --speed=115200 --word=8 --parity=no --stop=1"'

    chroot_mount "$MNT"
    # No udev on the build host: without this link grub.cfg would say root=/dev/loopXp1.
    mkdir -p /dev/disk/by-uuid
    UUID_LINK=/dev/disk/by-uuid/$UUID
    ln -sfn "$ROOT" "$UUID_LINK"
    echo "grub-pc grub-pc/install_devices multiselect /dev/vda" | in_chroot debconf-set-selections
    [[ -n $KERNEL ]] && install_backports_kernel
    build_initramfs
    # The guests' kernel beside the images: a controller-side test can run what it checks against
    # the real image (e.g. its command-line limit) without booting a guest.
    cp "$MNT/boot/vmlinuz-$KVER" "$WORK/vmlinuz-$KVER"
    log "grub-install --target=i386-pc $LOOP"
    in_chroot grub-install --target=i386-pc "$LOOP" >"$WORK/grub-install.log" 2>&1 \
        || fail_with_log grub-install 1000 "grub-install failed"

    make_flavour intel
    mount "$ROOT" "$MNT"
    chroot_mount "$MNT"
    make_flavour amd

    rm -f "$UUID_LINK"; UUID_LINK=""
    detach_disk
    rm -f "$RAW"
    rmdir "$MNT"
}

variant_info() {
    cat <<EOF
kernels=${KVERS[*]}
backports_kernel_package=${KERNEL:+${BACKPORTS_KERNEL[$KERNEL]}}
initrd_bytes=$INITRD_SIZE
vmlinuz=vmlinuz-$KVER
extra_packages=${EXTRA_PACKAGES[$SUITE]}
intel_cmdline_default=quiet ${FLAVOUR_ARG[intel]}
amd_cmdline_default=quiet ${FLAVOUR_ARG[amd]}
EOF
}
