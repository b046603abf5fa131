#!/usr/bin/env bash
# Run the fast checks on a Debian 13 (Python 3.13) control node, once per ansible-core line:
# `make test-controller` calls this with the Makefile's CONTROLLER_LINES.
#
#   tests/controller/run.sh LINE=CHECK[,CHECK...] ...     e.g. 2.21=units,sanity apt=units
#
# LINE is an ansible-core line (X.Y: a venv from requirements/ansible-core-X.Y/controller.txt) or
# `apt` (Debian 13's own ansible-core package, with the test tools from
# requirements/debian-13-apt/controller.txt in a venv that sees the system's packages). CHECK is a
# Makefile target (units, test-playbooks, sanity, lint, docs, package): the Makefile stays the one
# place that says what a check runs; here it runs inside the root on this checkout, bind-mounted.
#
# The root (tests/controller/build-root.sh) and each venv are built once and cached; a changed
# requirements file builds a new venv. Every line runs even after one fails; the exit status
# says whether all passed.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
SRC=$(cd "$HERE/../.." && pwd -P)
(($#)) || { echo "usage: $0 LINE=CHECK[,CHECK...] ..." >&2; exit 2; }
if [[ $(id -u) -ne 0 ]]; then
    echo "controller: needs root (debootstrap, chroot, bind mounts): not run" >&2
    exit 1
fi

requirements_for() {
    case $1 in
        apt) echo requirements/debian-13-apt/controller.txt ;;
        [0-9]*.[0-9]*) echo "requirements/ansible-core-$1/controller.txt" ;;
        *) return 1 ;;
    esac
}

# Validate every argument before building anything.
for spec in "$@"; do
    line=${spec%%=*}
    if [[ $spec != *=?* ]] || ! req=$(requirements_for "$line") || [[ ! -f $SRC/$req ]]; then
        echo "controller: '$spec' is not LINE=CHECK,...: LINE is X.Y with requirements/ansible-core-X.Y/controller.txt, or apt" >&2
        exit 2
    fi
done

started=$SECONDS
root=$("$HERE/build-root.sh")
echo "controller: Debian 13 root $root ready in $((SECONDS - started)) s"

# Run "$@" inside the root with the checkout at /src, in a private mount namespace: the mounts
# vanish with it however the command ends. The environment is explicit (the host's pip settings,
# which may name host-only paths, stay out); CI and colour settings pass through.
in_root() {
    # shellcheck disable=SC2016  # expanded by the shell unshare starts
    unshare --mount --propagation private bash -euo pipefail -c '
        root=$1 src=$2; shift 2
        mount -t proc proc "$root/proc"
        mount --rbind /dev "$root/dev"
        mount -t sysfs sysfs "$root/sys"
        mkdir -p "$root/src"
        mount --bind "$src" "$root/src"
        # The vendored third-party tools beside the checkout, read-only, where the tests look.
        if [[ -d $src/../shared ]]; then
            mkdir -p "$root/shared"
            mount --bind -o ro "$src/../shared" "$root/shared"
        fi
        exec chroot "$root" /usr/bin/env -i PATH=/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root \
            LANG=C.UTF-8 TMPDIR=/tmp SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
            PIP_CERT=/etc/ssl/certs/ca-certificates.crt PIP_DISABLE_PIP_VERSION_CHECK=1 \
            ${CI:+CI=$CI} ${NO_COLOR:+NO_COLOR=$NO_COLOR} ${ANSIBLE_NOCOLOR:+ANSIBLE_NOCOLOR=$ANSIBLE_NOCOLOR} \
            GIT_CONFIG_COUNT=1 GIT_CONFIG_KEY_0=safe.directory GIT_CONFIG_VALUE_0=/src "$@"
    ' _ "$root" "$SRC" "$@"
}

failed=()
for spec in "$@"; do
    line=${spec%%=*}
    checks=${spec#*=}
    req=$(requirements_for "$line")
    venv=/opt/venvs/$line-$(sha256sum "$SRC/$req" | cut -c1-16)
    system_site=
    [[ $line == apt ]] && system_site=--system-site-packages
    if [[ ! -f $root$venv/.complete ]]; then
        t0=$SECONDS
        rm -rf "$root$venv"
        # shellcheck disable=SC2016  # expanded by the shell inside the root
        if ! in_root sh -euc 'python3 -m venv ${1:+"$1"} "$0"; "$0/bin/pip" install --quiet -r "$2"; touch "$0/.complete"' \
            "$venv" "$system_site" "/src/$req"; then
            echo "== venv@$line: FAILED (pip install -r $req)"
            failed+=("$line")
            continue
        fi
        echo "controller: venv for $line built in $((SECONDS - t0)) s ($req)"
    fi
    echo "controller: $line: $(in_root "$venv/bin/python" -c 'import sys, ansible.release as r; print("ansible-core %s from %s, Python %s" % (r.__version__, r.__file__.rsplit("/ansible/", 1)[0], sys.version.split()[0]))')"
    # shellcheck disable=SC2086  # the checks are Makefile target names, split on purpose
    if ! in_root make -C /src --no-print-directory VENV="$venv" VENV_DEPS= CHECK_TAG="@$line" ${checks//,/ }; then
        failed+=("$line")
    fi
done
echo "controller: lines ${*%%=*} in $((SECONDS - started)) s; ${#failed[@]} failed${failed[*]:+: ${failed[*]}}"
((${#failed[@]} == 0))
