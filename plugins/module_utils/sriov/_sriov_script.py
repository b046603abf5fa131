# -*- coding: utf-8 -*-
# Copyright: contributors to vfio.passthrough
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The shell script the SR-IOV udev rule runs at boot, and sriov_vfs for a live change.

``SRIOV_SCRIPT`` is the script as the host gets it, plain POSIX sh with no
Python escapes (a module ships its module_utils as Python, so the script lives
in a string): only the three marks ``@HEADER@``, ``@SCRIPT@`` and ``@RULES@``
in its opening comments are filled in, by ``script_text``. Its exits are
driven on a fake kernel in tests/unit/plugins/module_utils/test_sriov_script.py.
"""

from __future__ import annotations

import re

__all__ = ['SRIOV_SCRIPT', 'script_text']

_MARK = re.compile(r'@(HEADER|SCRIPT|RULES)@')

SRIOV_SCRIPT = r"""#!/bin/sh
@HEADER@
# vfio.passthrough: give an SR-IOV physical function its virtual functions and their drivers.
# Usage: @SCRIPT@ PF COUNT VFIO   (VFIO: comma-separated VF indexes for vfio-pci, or -)
# The udev rule @RULES@ runs it when the PF's driver binds (at boot
# and whenever it is bound again); vfio.passthrough.sriov_vfs runs it for a live change.
# With sriov_drivers_autoprobe at 0 no driver takes the new VFs, so driver_override is set
# before any probe: the chosen VFs bind vfio-pci by address (never by ids=, which every VF of
# the same model shares), the others their own driver.
# Every exit, a failed or interrupted one too, goes through finish: sriov_drivers_autoprobe as it
# was, the VFs it had if the new count could not be made, and no VF left without a driver.
set -u
sys=${VFIO_PASSTHROUGH_SYSFS:-/sys}
modprobe=/sbin/modprobe
pf=${1-} want=${2-} vfio=${3-}
dev=$sys/bus/pci/devices/$pf
say() { echo "vfio-passthrough-sriov: $pf: $*" >&2; }
# Every write to sysfs, so each one's failure is seen.
put() { echo "$1" > "$2"; }
touched='' autoprobe='' count=''
# shellcheck disable=SC2317  # reached through the EXIT trap
finish() {
    rc=$?
    trap - EXIT HUP INT TERM
    [ -n "$touched" ] || exit "$rc"
    if [ -n "$autoprobe" ]; then
        put "$autoprobe" "$dev/sriov_drivers_autoprobe" || { say "cannot set sriov_drivers_autoprobe back to $autoprobe"; rc=1; }
    fi
    if [ -n "$count" ]; then
        say "putting back the $count VFs it had"
        put "$count" "$dev/sriov_numvfs" || { say "cannot put back its $count VFs"; rc=1; }
    fi
    n=$(cat "$dev/sriov_numvfs" 2>/dev/null) || n=0
    case $n in ''|*[!0-9]*) n=0 ;; esac
    i=0
    while [ "$i" -lt "$n" ]; do
        if vf=$(readlink "$dev/virtfn$i"); then
            vf=${vf##*/}
            [ -e "$sys/bus/pci/devices/$vf/driver" ] || put "$vf" "$sys/bus/pci/drivers_probe" \
                || say "no driver took VF $i ($vf)"
        fi
        i=$((i + 1))
    done
    exit "$rc"
}
usage() { say "$*; usage: $0 PF COUNT VFIO (VFIO: comma-separated VF indexes, or -)"; exit 2; }
case $pf in ''|*/*|.*) usage "PF '$pf' is no PCI address" ;; esac
case $want in ''|*[!0-9]*) usage "COUNT '$want' is no number" ;; esac
case ,$vfio, in ,-,) ;; *[!0-9,]*|*,,*) usage "VFIO '$vfio' is neither - nor a list of indexes" ;; esac
[ -e "$dev/sriov_numvfs" ] || { say "no such SR-IOV physical function"; exit 1; }
have=$(cat "$dev/sriov_numvfs") || exit 1
trap finish EXIT
trap 'exit 1' HUP INT TERM
if [ "$have" != "$want" ]; then
    old=$(cat "$dev/sriov_drivers_autoprobe") || exit 1
    touched=1
    put 0 "$dev/sriov_drivers_autoprobe" || { say "cannot set sriov_drivers_autoprobe to 0"; exit 1; }
    autoprobe=$old
    # The kernel refuses a new non-zero count over an existing one (EBUSY): 0 first.
    if [ "$have" != 0 ]; then
        put 0 "$dev/sriov_numvfs" || { say "cannot remove its $have VFs"; exit 1; }
        count=$have
    fi
    if [ "$want" != 0 ]; then put "$want" "$dev/sriov_numvfs" || { say "cannot create $want VFs"; exit 1; }; fi
    count=
fi
[ "$vfio" = - ] || "$modprobe" vfio-pci 2>/dev/null || say "modprobe vfio-pci failed"
chosen() { case ",$vfio," in *,$1,*) return 0 ;; esac; return 1; }
i=0
while [ "$i" -lt "$want" ]; do
    vf=$(readlink "$dev/virtfn$i") || { say "virtfn$i missing"; exit 1; }
    vf=${vf##*/}
    vdev=$sys/bus/pci/devices/$vf
    driver=
    if [ -e "$vdev/driver" ]; then driver=$(readlink "$vdev/driver"); driver=${driver##*/}; fi
    touched=1
    if chosen "$i"; then
        put vfio-pci "$vdev/driver_override" || { say "cannot set driver_override of VF $i ($vf)"; exit 1; }
        [ "$driver" != vfio-pci ] || { i=$((i + 1)); continue; }
    else
        put "" "$vdev/driver_override" || { say "cannot clear driver_override of VF $i ($vf)"; exit 1; }
        if [ -n "$driver" ] && [ "$driver" != vfio-pci ]; then i=$((i + 1)); continue; fi
    fi
    # finish probes it again, now that its override is in place.
    [ -z "$driver" ] || put "$vf" "$vdev/driver/unbind" || { say "cannot unbind VF $i ($vf) from $driver"; exit 1; }
    i=$((i + 1))
done
exit 0
"""


def script_text(header, script, rules):
    """``SRIOV_SCRIPT`` with its ownership ``header`` line and the paths of the ``script`` and the ``rules`` file."""
    values = {'HEADER': header, 'SCRIPT': script, 'RULES': rules}
    # One pass: a path holding a mark is not filled in again.
    return _MARK.sub(lambda match: values[match.group(1)], SRIOV_SCRIPT)
