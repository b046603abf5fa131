#!/usr/bin/env bash
# Build (once, cached) a Debian 13 (trixie) root with Python 3.13: the control node a Proxmox VE 9
# administrator runs Ansible from. tests/controller/run.sh runs the fast checks in it on each
# ansible-core line. Prints the root's path on its last line of stdout.
#
#   tests/controller/build-root.sh          build if missing, print the path
#   tests/controller/build-root.sh --print  print the path only (exit 1 if not built)
#
# Cache: $VFIO_CONTROLLER_CACHE (default /var/cache/vfio-passthrough-controller)/trixie-<key>, where
# <key> hashes this script: a changed package list builds a new root, an unchanged one is reused.
# Debian's own ansible-core (the apt line, 2.19 on Debian 13) is installed here, as `apt install
# ansible-core` would on a Debian 13 control node.
set -euo pipefail

CACHE=${VFIO_CONTROLLER_CACHE:-/var/cache/vfio-passthrough-controller}
MIRROR=${VFIO_DEBIAN_MIRROR:-http://deb.debian.org/debian}
PACKAGES=(
    python3 python3-venv  # Python 3.13, the venvs for the PyPI lines
    ansible-core          # Debian 13's own line (2.19.x), the apt-installed control node
    git                   # ansible-test lists files with git ls-files
    make shellcheck       # sanity's shellcheck test
    ca-certificates       # pip over TLS with the host's CAs (copied in below)
    openssh-client        # ansible's ssh connection plugin is loaded by the playbook tests
)
KEY=$( (cat "${BASH_SOURCE[0]}"; echo "$MIRROR") | sha256sum | cut -c1-12)
ROOT=$CACHE/trixie-$KEY

log() { echo "[controller-root] $*" >&2; }

if [[ ${1:-} == --print ]]; then
    [[ -f $ROOT/.complete ]] || exit 1
    echo "$ROOT"
    exit 0
fi
[[ $(id -u) -eq 0 ]] || { echo "build-root.sh: needs root (debootstrap, chroot)" >&2; exit 1; }

mkdir -p "$CACHE"
exec 9>"$CACHE/.build.lock"
flock 9
if [[ -f $ROOT/.complete ]]; then
    echo "$ROOT"
    exit 0
fi
if ! command -v debootstrap >/dev/null; then
    log "installing debootstrap"
    apt-get -o DPkg::Lock::Timeout=600 install -y -q --no-install-recommends debootstrap >&2
fi
started=$SECONDS
work=$ROOT.tmp.$$
trap 'rm -rf "$work"' EXIT
log "debootstrap --variant=minbase trixie into $work"
# Only the base here: packages whose maintainer scripts need /proc (python3's byte-compiling
# triggers among them) fail inside debootstrap's second stage, so apt installs them below.
debootstrap --variant=minbase --include=ca-certificates trixie "$work" "$MIRROR" >&2
# The host's extra CAs (a TLS-inspecting proxy, say) must be trusted inside too, or pip fails
# with CERTIFICATE_VERIFY_FAILED.
if compgen -G '/usr/local/share/ca-certificates/*.crt' >/dev/null; then
    cp /usr/local/share/ca-certificates/*.crt "$work/usr/local/share/ca-certificates/"
fi
# A private mount namespace: /proc and /dev vanish with it, whatever way this script ends.
# shellcheck disable=SC2016  # expanded by the shell unshare starts
unshare --mount --propagation private bash -euo pipefail -c '
    mount -t proc proc "$1/proc"
    mount --bind /dev "$1/dev"
    chroot "$1" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive \
        sh -euc "update-ca-certificates >/dev/null; apt-get -q update; apt-get -q install -y --no-install-recommends $2; apt-get clean"
' _ "$work" "${PACKAGES[*]}" >&2
rm -rf "$work/var/cache/apt/archives"/*.deb "$work/var/lib/apt/lists"/*_Packages
chroot "$work" sh -c 'python3 --version; ansible --version | head -n1' | sed 's/^/[controller-root] /' >&2
touch "$work/.complete"
rm -rf "$ROOT"
mv "$work" "$ROOT"
trap - EXIT
log "built $ROOT in $((SECONDS - started)) s ($(du -sm "$ROOT" | cut -f1) MiB)"
echo "$ROOT"
