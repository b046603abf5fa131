#!/usr/bin/env bash
# Build the cached UEFI image whose ESP the real proxmox-boot-tool manages (issue 14).
#
# Usage: tests/vm/build-uefi-image.sh [--variant sdboot|grub] [--force] [--print-dir]
#   --variant    sdboot (default): `proxmox-boot-tool init` makes a systemd-boot ESP (a ZFS/UEFI
#                install); grub: `init <esp> grub` makes GRUB on the ESP (a Secure Boot install,
#                Secure Boot itself off)
#   --force      rebuild even if a complete image for this script's hash exists
#   --print-dir  only print the image dir this script version would produce, then exit
#
# Debian 12 (Proxmox VE 8's base) with Proxmox's proxmox-kernel-helper 8.1.0 from
# ../shared/vendor/proxmox-kernel-helper (never copied into the project), installed as its .deb
# would install it: the files where its Makefiles put them, the grub-install diversion, the
# hooks. GPT disk: a vfat ESP (512 MiB, not in fstab: proxmox-boot-tool mounts it itself) and an
# ext4 root. systemd-boot and bootctl (and for GRUB on the ESP its EFI modules) come from Debian.
#
# Output: $VFIO_VM_CACHE/images/bookworm-uefi-<variant>-<key>/{amd-<variant>.qcow2,id_ed25519,
# id_ed25519.pub,build-info.txt}; <key> hashes this script and the vendored tree. Exit 3
# (nothing built) when the vendored tree is absent.
set -euo pipefail

CACHE=${VFIO_VM_CACHE:-/var/cache/vfio-passthrough-vm}
SELF=$(readlink -f "${BASH_SOURCE[0]}")
HERE=$(dirname "$SELF")
# The repository's parent holds shared/ (in CI the clone sits beside ../shared).
VENDOR=${VFIO_PBT_VENDOR:-$(readlink -f "$HERE/../../..")/shared/vendor/proxmox-kernel-helper}
SUITE=bookworm
DISK_SIZE=4G
ESP_MIB=512
# The guest boots with its IOMMU switched off on purpose, as the BIOS images do: the role
# must be what turns it on. AMD: Intel's IOMMU is covered on Debian 13 by the BIOS scenarios.
FLAVOUR=amd
FLAVOUR_ARG="amd_iommu=off"
EXTRA_PACKAGES="systemd-boot systemd-boot-efi dosfstools gdisk"

FORCE=0 PRINT_DIR=0 VARIANT=sdboot
args=("$@")
while (($#)); do
    case $1 in
        --variant) (($# >= 2)) || { echo "build-uefi-image.sh: --variant needs a value" >&2; exit 2; }; VARIANT=$2; shift ;;
        --variant=*) VARIANT=${1#--variant=} ;;
        --force) FORCE=1 ;;
        --print-dir) PRINT_DIR=1 ;;
        -h|--help) sed -n '2,21p' "$SELF"; exit 0 ;;
        *) echo "build-uefi-image.sh: unknown argument: $1" >&2; exit 2 ;;
    esac
    shift
done
case $VARIANT in
    sdboot) INIT_MODE="" STATUS_MODE=uefi ;;
    grub) INIT_MODE=grub STATUS_MODE=grub EXTRA_PACKAGES+=" grub-efi-amd64-bin" ;;
    *) echo "build-uefi-image.sh: --variant must be sdboot or grub, not '$VARIANT'" >&2; exit 2 ;;
esac
if [[ ! -x $VENDOR/src/bin/proxmox-boot-tool ]]; then
    echo "build-uefi-image.sh: $VENDOR/src/bin/proxmox-boot-tool not found: set VFIO_PBT_VENDOR to" \
         "Proxmox's proxmox-kernel-helper 8.1.0 source tree (default ../shared/vendor/proxmox-kernel-helper)" >&2
    exit 3
fi
KEY=$( { sha256sum "$SELF"; (cd "$VENDOR" && find . -type f -print0 | sort -z | xargs -0 sha256sum); } \
       | sha256sum | cut -c1-16)
IMAGES=$CACHE/images
FINAL=$IMAGES/$SUITE-uefi-$VARIANT-$KEY
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

chroot_umount() {
    local m
    for m in var/cache/apt/archives run sys proc dev/pts dev; do
        mountpoint -q "$MNT/$m" && umount "$MNT/$m"
    done
    return 0
}

# shellcheck disable=SC2317  # reached through the EXIT trap
cleanup() {
    local rc=$?
    set +e
    if [[ -n $MNT ]] && mountpoint -q "$MNT" 2>/dev/null; then chroot_umount; umount -R "$MNT"; fi
    if [[ -n $LOOP ]]; then partx -d "$LOOP" 2>/dev/null; losetup -d "$LOOP"; fi
    [[ -d $WORK ]] && rm -rf -- "$WORK"
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
    mount --bind /dev "$MNT/dev"
    mount --bind /dev/pts "$MNT/dev/pts"
    mount -t proc proc "$MNT/proc"
    mount -t sysfs sys "$MNT/sys"
    mount -t tmpfs tmpfs "$MNT/run"
    mkdir -p "$DEBS" "$MNT/var/cache/apt/archives"
    mount --bind "$DEBS" "$MNT/var/cache/apt/archives"
}
in_chroot() { LC_ALL=C DEBIAN_FRONTEND=noninteractive chroot "$MNT" "$@"; }
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

log "installing proxmox-kernel-helper from $VENDOR as its .deb would"
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
KVER=$(find "$MNT/lib/modules" -mindepth 1 -maxdepth 1 -printf '%f\n' | sort -V | tail -n1)
CMDLINE="root=UUID=$UUID ro console=ttyS0,115200n8 quiet $FLAVOUR_ARG"
# Without this file the kernel hook would take /proc/cmdline.
echo "$CMDLINE" >"$MNT/etc/kernel/cmdline"
# init copies only proxmox-kernel-* packages and the running kernel; Debian's is added by hand.
in_chroot proxmox-boot-tool kernel add "$KVER"
t0=$SECONDS
in_chroot update-initramfs -u -k "$KVER" >"$WORK/initramfs.log" 2>&1 \
    || { tail -n 30 "$WORK/initramfs.log" >&2; die "update-initramfs failed"; }
log "initramfs (MODULES=dep) in $((SECONDS - t0)) s"
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
chroot_umount
rm -rf "$MNT/var/lib/apt/lists/"*
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
    grep -qE "^linux\s+/vmlinuz-$KVER root=UUID=$UUID ro +console=ttyS0,115200n8 quiet $FLAVOUR_ARG\$" <<<"$REPORT" \
        || die "grub.cfg on the ESP lacks the drop-in's console and $FLAVOUR_ARG"
    grep -qx './EFI/proxmox/grubx64.efi' <<<"$REPORT" || die "no EFI/proxmox/grubx64.efi on the ESP"
fi
grep -qx './EFI/BOOT/BOOTX64.EFI' <<<"$REPORT" \
    || die "no removable-path EFI/BOOT/BOOTX64.EFI: firmware without boot entries would not find the loader"
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
