# shellcheck shell=bash
# --boot uefi-sdboot|uefi-grub: the UEFI image whose ESP the real proxmox-boot-tool manages (issues 14, 24).
# Sourced by tests/vm/build-image.sh after image/common.sh; part of these images' key, not of the BIOS ones'.
#
# uefi-sdboot: `proxmox-boot-tool init` makes a systemd-boot ESP (a ZFS/UEFI install); uefi-grub:
# `init <esp> grub` makes GRUB on the ESP (a Secure Boot install, Secure Boot itself off).
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
# Files: amd-<sdboot|grub>.qcow2, id_ed25519{,.pub}, build-info.txt.

ESP_MIB=512
# The guest boots with its IOMMU switched off on purpose, as the BIOS images do: the role
# must be what turns it on. AMD: Intel's IOMMU is covered on Debian 13 by the BIOS scenarios.
FLAVOUR=amd
FLAVOUR_ARG="amd_iommu=off"
OVMF_CODE=/usr/share/OVMF/OVMF_CODE_4M.fd OVMF_VARS=/usr/share/OVMF/OVMF_VARS_4M.fd
# The repository's parent holds shared/ (in CI the clone sits beside ../shared).
SHARED_VENDOR=$(readlink -f "$HERE/../../..")/shared/vendor

# shellcheck disable=SC2034  # VARIANT, KEY_INPUT, IMAGE_FILES: read by build-image.sh
variant() {
    [[ -z $KERNEL ]] || usage_error "--kernel goes with --boot bios"
    LOADER=${BOOT#uefi-}
    # Each suite with the helper its Proxmox VE release ships, installed as described above.
    case $SUITE in
        bookworm)
            HELPER=${HELPER:-8.1.0}
            EXTRA_PACKAGES="systemd-boot systemd-boot-efi dosfstools gdisk" ;;
        trixie)
            HELPER=${HELPER:-9.2.0}
            EXTRA_PACKAGES="systemd-boot-efi systemd-boot-tools memtest86+ dosfstools gdisk" ;;
    esac
    case $SUITE:$HELPER in
        bookworm:8.1.0)
            VENDOR_VAR=VFIO_PBT_VENDOR INSTALL=files TREE=proxmox-kernel-helper
            VENDOR=${VFIO_PBT_VENDOR:-$SHARED_VENDOR/$TREE} ;;
        trixie:9.2.0)
            VENDOR_VAR=VFIO_PBT92_VENDOR INSTALL=deb TREE=proxmox-kernel-helper-9.2.0
            VENDOR=${VFIO_PBT92_VENDOR:-$SHARED_VENDOR/$TREE} ;;
        *) usage_error "helper $HELPER on $SUITE was never tried (bookworm: 8.1.0, trixie: 9.2.0)" ;;
    esac
    case $LOADER in
        sdboot) INIT_MODE="" STATUS_MODE=uefi ;;
        grub) INIT_MODE=grub STATUS_MODE=grub EXTRA_PACKAGES+=" grub-efi-amd64-bin" ;;
    esac
    if [[ ! -x $VENDOR/src/bin/proxmox-boot-tool ]]; then
        echo "build-image.sh: $VENDOR/src/bin/proxmox-boot-tool not found: set $VENDOR_VAR to" \
             "Proxmox's proxmox-kernel-helper $HELPER source tree (default" \
             "../shared/vendor/$TREE beside this checkout)" >&2
        exit 3
    fi
    # The tree must be the version asked for: debian/changelog's first line names it.
    local tree_version
    tree_version=$(sed -n '1s/^proxmox-kernel-helper (\([^)]*\)).*/\1/p' "$VENDOR/debian/changelog")
    [[ $tree_version == "$HELPER" ]] \
        || usage_error "$VENDOR is proxmox-kernel-helper '$tree_version' (debian/changelog), not $HELPER: point $VENDOR_VAR at the $HELPER source tree"
    VENDOR_HASH=$(cd "$VENDOR" && find . -type f -print0 | sort -z | xargs -0 sha256sum | sha256sum | cut -c1-16)
    VARIANT=$SUITE-uefi-$LOADER-pkh$HELPER
    KEY_INPUT="$BOOT $SUITE $HELPER $VENDOR_HASH"
    IMAGE=$FLAVOUR-$LOADER.qcow2
    IMAGE_FILES=("$IMAGE" id_ed25519 id_ed25519.pub)
    HOST_TOOLS+=(sgdisk:gdisk mkfs.vfat:dosfstools make:make "$OVMF_CODE:ovmf")
    DEBS=$CACHE/debs/$SUITE-uefi-apt
}

# The helper's own package, built as Proxmox builds it: dpkg-buildpackage from a temporary copy of
# the tree, in a throw-away chroot of the image's suite (so the image gets no build tools), with
# the build dependencies from Debian's archive. Cached by the tree's hash: a rebuilt image reuses it.
build_helper_deb() {
    local t0=$SECONDS src=/usr/src/proxmox-kernel-helper-$HELPER in_deb
    HELPER_DEB_DIR=$CACHE/debs/proxmox-kernel-helper-$HELPER-$SUITE-$VENDOR_HASH
    HELPER_DEB=$HELPER_DEB_DIR/proxmox-kernel-helper_${HELPER}_all.deb
    exec 8>"$CACHE/.build-proxmox-kernel-helper-$HELPER-$SUITE.lock"
    flock 8
    if [[ -s $HELPER_DEB ]]; then
        log "proxmox-kernel-helper $HELPER package cached: $HELPER_DEB"
        exec 8>&-
        return 0
    fi
    DEB_ROOT=$WORK/deb-build
    log "building proxmox-kernel-helper $HELPER with dpkg-buildpackage in a $SUITE chroot ($DEB_ROOT)"
    mkdir -p "$DEB_ROOT"
    tar -C "$DEB_ROOT" --numeric-owner -xpf "$ROOTFS_TAR"
    chroot_mount "$DEB_ROOT" "$DEBS"
    cp /etc/resolv.conf "$DEB_ROOT/etc/resolv.conf"
    in_deb=(env LC_ALL=C DEBIAN_FRONTEND=noninteractive chroot "$DEB_ROOT")
    "${in_deb[@]}" apt-get update -qq >"$WORK/deb-build.log" 2>&1 \
        || fail_with_log deb-build 1000 "apt-get update failed in the build chroot"
    # debian/control: Build-Depends: debhelper-compat (=13), lintian; dpkg-checkbuilddeps also wants
    # build-essential, as on any Debian build host.
    "${in_deb[@]}" apt-get install -y -q --no-install-recommends build-essential debhelper lintian \
        >>"$WORK/deb-build.log" 2>&1 || fail_with_log deb-build 30 "installing the build dependencies failed"
    # The tree's own Makefile (`make deb`) lays the build dir out so: src/ with debian/ inside it.
    cp -a "$VENDOR/src" "$DEB_ROOT$src"
    cp -a "$VENDOR/debian" "$DEB_ROOT$src/"
    "${in_deb[@]}" sh -c "cd $src && dpkg-buildpackage -b -us -uc" >>"$WORK/deb-build.log" 2>&1 \
        || fail_with_log deb-build 40 "dpkg-buildpackage failed"
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

install_helper_files() { # 8.1.0: the files where its .deb would put them
    local t0
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
        || fail_with_log initramfs 30 "update-initramfs failed"
    log "initramfs (MODULES=dep) in $((SECONDS - t0)) s"
}

install_helper_deb() { # 9.2.0: dpkg -i of its package, with its maintainer scripts and triggers
    local t0 deb=proxmox-kernel-helper_${HELPER}_all.deb
    # A Proxmox VE 9 host has no systemd-boot package: only the two parts the helper suggests.
    # shellcheck disable=SC2016  # a dpkg-query format, not a shell expansion
    ! in_chroot dpkg-query -W -f '${Status}' systemd-boot 2>/dev/null | grep -q 'install ok installed' \
        || die "the systemd-boot package is installed; Proxmox VE 9 has only systemd-boot-efi + systemd-boot-tools"
    [[ -f $MNT/boot/memtest86+x64.efi ]] || die "memtest86+ left no /boot/memtest86+x64.efi"
    log "dpkg -i $deb (its preinst, postinst and the initramfs trigger run)"
    cp "$HELPER_DEB" "$MNT/tmp/"
    t0=$SECONDS
    in_chroot dpkg -i "/tmp/$deb" >"$WORK/dpkg-helper.log" 2>&1 \
        || fail_with_log dpkg-helper 40 "dpkg -i proxmox-kernel-helper failed"
    rm -f "$MNT/tmp/$deb"
    sed 's/^/    /' "$WORK/dpkg-helper.log"
    # debian/triggers activates update-initramfs: its rebuild (MODULES=dep, set above) is the image's.
    grep -q "update-initramfs: Generating /boot/initrd.img-$KVER" "$WORK/dpkg-helper.log" \
        || die "dpkg -i ran no update-initramfs trigger for $KVER"
    in_chroot dpkg-divert --list /usr/sbin/grub-install | grep -q 'diversion of /usr/sbin/grub-install to /usr/sbin/grub-install.real by proxmox-kernel-helper' \
        || die "the package's preinst did not divert grub-install"
    log "helper installed with its triggers in $((SECONDS - t0)) s"
}

grub_on_esp_defaults() {
    # As an installer leaves it: the console in a drop-in that extends GRUB_CMDLINE_LINUX,
    # the IOMMU off in /etc/default/grub (as in the BIOS images), and /etc/kernel/cmdline
    # beside them, which GRUB does not read.
    local g=$MNT/etc/default/grub
    sed -i -e 's/^GRUB_TIMEOUT=.*/GRUB_TIMEOUT=1/' \
        -e "s/^GRUB_CMDLINE_LINUX_DEFAULT=.*/GRUB_CMDLINE_LINUX_DEFAULT=\"quiet $FLAVOUR_ARG\"/" "$g"
    grep -qx "GRUB_CMDLINE_LINUX_DEFAULT=\"quiet $FLAVOUR_ARG\"" "$g" || die "could not set $FLAVOUR_ARG in $g"
    mkdir -p "$MNT/etc/default/grub.d"
    cat >"$MNT/etc/default/grub.d/installer.cfg" <<EOF
GRUB_TERMINAL="console serial"
GRUB_SERIAL_COMMAND="serial --unit=0 --speed=115200 --word=8 --parity=no --stop=1"
GRUB_CMDLINE_LINUX="\$GRUB_CMDLINE_LINUX console=ttyS0,115200n8"
EOF
}

# The build host runs in a container without EFI and without vfat: it can neither mount the
# ESP nor show the tool /sys/firmware/efi. So `format` and `init` run where they would on a
# Proxmox VE host, in the guest itself: one boot under OVMF (kernel and initrd handed over by
# QEMU, the ESP being empty), a oneshot unit that removes itself, then poweroff.
install_firstboot() {
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
}

first_boot() {
    local t0=$SECONDS
    cp "$OVMF_VARS" "$WORK/vars.fd"
    log "first boot under OVMF: proxmox-boot-tool format + init (TCG: 2-5 min)"
    timeout 1200 qemu-system-x86_64 -name vfio-uefi-build -M q35 -accel tcg,thread=multi -cpu max \
        -m 1536 -smp 2 -no-reboot -display none -vga none -serial "file:$WORK/serial.log" \
        -drive "if=pflash,format=raw,unit=0,readonly=on,file=$OVMF_CODE" \
        -drive "if=pflash,format=raw,unit=1,file=$WORK/vars.fd" \
        -drive "file=$RAW,if=none,id=disk0,format=raw" -device virtio-blk-pci,drive=disk0 \
        -kernel "$WORK/vmlinuz-$KVER" -initrd "$WORK/initrd.img-$KVER" -append "$CMDLINE" \
        || fail_with_log serial 40 "first boot failed or timed out"
    log "first boot done in $((SECONDS - t0)) s"
}

check_firstboot_report() { # what the first boot printed: a UEFI boot, the ESP as this variant wants it
    local report kver_re
    report=$(cat "$MNT/root/pbt-firstboot.log" 2>/dev/null || true)
    printf '%s\n' "$report" | sed 's/^/    /'
    [[ -f $MNT/root/pbt-firstboot.ok ]] || fail_with_log serial 40 "first-boot script failed"
    [[ ! -e $MNT/etc/systemd/system/vfio-pbt-firstboot.service ]] || die "first-boot unit did not remove itself"
    ESP_UUID=$(cat "$MNT/etc/kernel/proxmox-boot-uuids")
    grep -qx "System currently booted with uefi" <<<"$report" || die "the first boot was not a UEFI boot"
    grep -qx "$ESP_UUID is configured with: $STATUS_MODE (versions: $KVER)" <<<"$report" \
        || die "status does not say '$ESP_UUID is configured with: $STATUS_MODE (versions: $KVER)'"
    if [[ $LOADER == sdboot ]]; then
        grep -qx "options  $CMDLINE" <<<"$report" || die "loader entry options are not /etc/kernel/cmdline"
    else
        # Debian 13's kernel versions hold a '+' (6.12.117+deb13-amd64): literal in the pattern, not a quantifier.
        # A Debian kernel release is digits, letters, '.', '+', '-' and '~'; of those only '.' and '+' are special.
        kver_re=${KVER//./\\.}
        kver_re=${kver_re//+/\\+}
        grep -qE "^linux\s+/vmlinuz-$kver_re root=UUID=$UUID ro +console=ttyS0,115200n8 quiet $FLAVOUR_ARG\$" <<<"$report" \
            || die "grub.cfg on the ESP lacks the drop-in's console and $FLAVOUR_ARG"
        grep -qx './EFI/proxmox/grubx64.efi' <<<"$report" || die "no EFI/proxmox/grubx64.efi on the ESP"
    fi
    grep -qx './EFI/BOOT/BOOTX64.EFI' <<<"$report" \
        || die "no removable-path EFI/BOOT/BOOTX64.EFI: firmware without boot entries would not find the loader"
    if [[ $SUITE == trixie ]]; then
        # 9.x: init copies Debian's memtest86+ to the ESP; on systemd-boot with its own loader entry.
        if [[ $LOADER == sdboot ]]; then
            grep -qx './loader/entries/memtest86+x64.efi.conf' <<<"$report" || die "no memtest86+ loader entry on the ESP"
            grep -qx './EFI/memtest86+x64.efi' <<<"$report" || die "no EFI/memtest86+x64.efi on the ESP"
        else
            grep -qx './memtest86+x64.efi' <<<"$report" || die "no memtest86+x64.efi on the GRUB ESP"
        fi
    fi
}

build() {
    local t0 sdboot_efi_version sdboot_efi_deb
    # The ESP is created as a bare partition of the ESP type: proxmox-boot-tool format makes its
    # file system, as on a Proxmox VE host.
    log "creating $DISK_SIZE raw disk, GPT, a bare $ESP_MIB MiB ESP and an ext4 root"
    make_disk 2 mklabel gpt \
        mkpart esp fat32 1MiB $((1 + ESP_MIB))MiB set 1 esp on \
        mkpart root ext4 $((1 + ESP_MIB))MiB 100%
    unpack_rootfs
    [[ $INSTALL == deb ]] && build_helper_deb
    chroot_mount "$MNT" "$DEBS"
    configure_guest "vfio-vm-uefi-$KEY"
    set_hostname vfio-uefi

    t0=$SECONDS
    log "apt-get install $EXTRA_PACKAGES"
    image_apt update -qq || fail_with_log apt 1000 "apt-get update failed"
    # shellcheck disable=SC2086  # a word list
    image_apt install -y -q --no-install-recommends $EXTRA_PACKAGES || fail_with_log apt 30 "apt-get install failed"
    log "packages installed in $((SECONDS - t0)) s"

    KVER=$(newest_kernel)
    CMDLINE="root=UUID=$UUID ro console=ttyS0,115200n8 quiet $FLAVOUR_ARG"
    # Without this file the kernel hook would take /proc/cmdline.
    echo "$CMDLINE" >"$MNT/etc/kernel/cmdline"
    if [[ $INSTALL == files ]]; then install_helper_files; else install_helper_deb; fi
    # init copies only proxmox-kernel-* packages and the running kernel; Debian's is added by hand.
    in_chroot proxmox-boot-tool kernel add "$KVER"
    cp "$MNT/boot/vmlinuz-$KVER" "$MNT/boot/initrd.img-$KVER" "$WORK/"
    [[ $LOADER == grub ]] && grub_on_esp_defaults
    install_firstboot
    if [[ $INSTALL == deb ]]; then
        # 9.x reinitialises the ESPs when a boot loader package is upgraded (debian/triggers): the
        # scenario reinstalls systemd-boot-efi with apt, offline, from the image's own package lists
        # and the very .deb that is installed.
        # shellcheck disable=SC2016  # a dpkg-query format, not a shell expansion
        sdboot_efi_version=$(in_chroot dpkg-query -W -f '${Version}' systemd-boot-efi)
        sdboot_efi_deb=systemd-boot-efi_${sdboot_efi_version//:/%3a}_amd64.deb
        chroot_umount
        cp "$DEBS/$sdboot_efi_deb" "$MNT/var/cache/apt/archives/" \
            || die "no $sdboot_efi_deb in $DEBS to keep in the image's apt cache"
    else
        chroot_umount
        rm -rf "$MNT/var/lib/apt/lists/"*
    fi
    umount "$MNT"
    detach_disk

    first_boot
    attach_disk 2
    mount "$ROOT" "$MNT"
    check_firstboot_report
    rm -f "$MNT/root/pbt-firstboot.log" "$MNT/root/pbt-firstboot.ok"
    rm -rf "$MNT/var/log/journal/"* "$MNT/var/tmp/espmounts"
    convert_image "$IMAGE"
    detach_disk
    rm -f "$RAW" "$WORK/vars.fd" "$WORK/vmlinuz-$KVER" "$WORK/initrd.img-$KVER" "$WORK/serial.log"
    rmdir "$MNT"
}

variant_info() {
    cat <<EOF
loader=$LOADER
helper=$HELPER
helper_install=$INSTALL
esp_uuid=$ESP_UUID
cmdline=$CMDLINE
vendor=$VENDOR
EOF
}
