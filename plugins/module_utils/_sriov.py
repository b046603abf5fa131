# -*- coding: utf-8 -*-
# Copyright: contributors to vfio.passthrough
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""SR-IOV virtual functions: the request, when a count may change live, the boot files, the verdict.

One rule each, used by the role's plan (preflight), the sriov_vfs module and
verify alike:

* ``check_request``: what an administrator asked for, checked against the
  devices (PF exists, supports SR-IOV, count within ``sriov_totalvfs``, PF
  not also passed through), normalised to ``{pf, vfs, vfio}`` entries.
* ``vf_removal``: whether a count change takes away a VF the host runs on
  (its netdev carries the default route, is a port of the bridge or bond that
  does, or a disk the host boots from sits behind it). The kernel refuses a
  new non-zero count over another, so every change goes through 0, which
  removes every VF: such a change waits for the boot, or is refused where the
  new count lacks that VF, since not even the boot would give it back.
  ``check_request`` refuses by it, ``decide`` defers by it.
* ``decide``: whether a PF's running VFs already match, may be changed now
  (``live``), or must wait for the next boot (``deferred``): the kernel
  destroys every VF before it creates a new count, and a driver resets the
  PF on the way, so a host-critical PF, a PF with a VF the host runs on, or a
  PF whose VFs are in use (their /dev/vfio group or device file open, named in a guest's
  ``hostpciN`` or a resource mapping) never changes while the host runs.
* ``render``: the udev rule that runs ``SCRIPT`` when the PF's driver binds,
  and the script itself, which also does the live change.
* ``verify``: the running state against the entries; each failure names the
  PF and the VF.

Pure functions except the ``read_*`` helpers, which read below a root
through ``_sysfs.SysfsTree``.
"""

from __future__ import annotations

import re

from ansible_collections.vfio.passthrough.plugins.module_utils._modprobe import header
from ansible_collections.vfio.passthrough.plugins.module_utils._pci import normalise_address, vfio_driver
from ansible_collections.vfio.passthrough.plugins.module_utils._pve_config import guest_pci_references, vmid_of
from ansible_collections.vfio.passthrough.plugins.module_utils._sysfs import as_tree

__all__ = [
    'OWNER', 'SCRIPT', 'RULES', 'NONE', 'LIVE', 'DEFERRED', 'REFUSED', 'check_request', 'vf_address',
    'read_guest_configs', 'read_guest_references', 'vfs_in_use', 'host_vfs', 'vf_removal',
    'managed_pfs', 'dropped_host_vfs', 'decide', 'render', 'script_argv', 'verify', 'dry_run_due',
]

OWNER = 'sriov_vfs'
SCRIPT = '/usr/local/sbin/vfio-passthrough-sriov'
RULES = '/etc/udev/rules.d/70-vfio-passthrough-sriov.rules'
NONE, LIVE, DEFERRED, REFUSED = 'none', 'live', 'deferred', 'refused'
_KEYS = ('pf', 'vfs', 'vfio')
_RULE_PF = re.compile(r'KERNEL=="([0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7])"')


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _vfio_indexes(value, count, label, errors):
    """The VF indexes ``value`` sends to vfio-pci: ``all`` (the default), or a list of indexes."""
    if value is None or value == 'all':
        return list(range(count))
    if not isinstance(value, list):
        errors.append('%s: vfio must be "all" or a list of VF indexes, not %r' % (label, value))
        return []
    indexes = []
    for index in value:
        if not _is_int(index) or not 0 <= index < count:
            errors.append('%s: vfio index %r is no VF of the %d asked for (0 to %d)' % (label, index, count, count - 1))
        elif index not in indexes:
            indexes.append(index)
    return sorted(indexes)


def check_request(request, devices, passthrough=(), name='pcie_passthrough_sriov'):
    """Check and normalise the SR-IOV request against ``devices`` (iommu facts or read_pci_devices).

    ``request`` is a list of ``{pf, vfs, vfio}``; ``passthrough`` the addresses
    also going to vfio-pci whole. The host's verdict is each device's
    ``host_critical`` (as iommu_facts sets it): a VF the host runs on is
    neither sent to vfio-pci nor removed for good (``vf_removal``). Returns ``(entries, errors, notes)``: entries
    sorted by PF, ``{'pf': canonical address, 'vfs': count, 'vfio': [indexes]}``.
    Every error names the value and why; nothing is raised.
    """
    entries, errors, notes = [], [], []
    if not isinstance(request, list):
        return [], ['%s must be a list of {pf, vfs, vfio}, not %r' % (name, request)], []
    seen = {}
    for position, item in enumerate(request):
        label = '%s[%d]' % (name, position)
        if not isinstance(item, dict):
            errors.append('%s must be a dict with pf, vfs and optionally vfio, not %r' % (label, item))
            continue
        unknown = sorted(str(k) for k in item if k not in _KEYS)
        if unknown:
            errors.append('%s: unknown key %s (known: pf, vfs, vfio)' % (label, ', '.join(unknown)))
        try:
            addresses, note = normalise_address(item.get('pf'), devices, whole_device=False)
        except ValueError as exc:
            errors.append('%s: pf %s' % (label, exc))
            continue
        pf = addresses[0]
        label = '%s (pf %s)' % (label, pf)
        if note:
            notes.append('%s: %s' % (name, note))
        device = devices.get(pf)
        count = item.get('vfs')
        if device is None:
            errors.append('%s: %s does not exist on this host (see lspci -D)' % (label, pf))
            continue
        if device.get('physfn'):
            errors.append('%s: %s is itself a virtual function of %s; name the physical function'
                          % (label, pf, device['physfn']))
            continue
        total = device.get('sriov_totalvfs')
        if total is None:
            errors.append('%s: %s does not support SR-IOV (it has no sriov_totalvfs)' % (label, pf))
            continue
        if not _is_int(count) or not 0 <= count <= total:
            errors.append('%s: vfs %r is not a count from 0 to %d, the sriov_totalvfs of %s'
                          % (label, count, total, pf))
            continue
        if pf in seen:
            errors.append('%s: %s is already listed at %s[%d]' % (label, pf, name, seen[pf]))
            continue
        seen[pf] = position
        if pf in passthrough:
            errors.append('%s: %s is also in pcie_passthrough_devices; a PF passed through whole takes its VFs '
                          'with it. Pass through its VFs (vfio) or the PF, not both' % (label, pf))
            continue
        vfio = _vfio_indexes(item.get('vfio'), count, label, errors)
        for other in passthrough:
            if (devices.get(other) or {}).get('physfn') == pf:
                errors.append('%s: %s in pcie_passthrough_devices is a VF of %s, whose VFs this variable manages: '
                              'choose it by index in vfio instead' % (label, other, pf))
        for index in vfio:
            vf = vf_address(devices, pf, index)
            reasons = (devices.get(vf) or {}).get('host_critical') if vf else None
            if reasons:
                errors.append('%s: VF %d (%s) is host-critical (%s); keep it off vfio'
                              % (label, index, vf, '; '.join(reasons)))
        entry = {'pf': pf, 'vfs': count, 'vfio': vfio}
        removal = vf_removal(entry, devices)
        if removal and removal[0] == REFUSED:
            errors.append('%s: %s' % (label, removal[1]))
        entries.append(entry)
    return sorted(entries, key=lambda e: e['pf']), errors, notes


def vf_address(devices, pf, index):
    """The address of VF ``index`` of ``pf`` now (its ``virtfnN`` link), or None."""
    virtfns = (devices.get(pf) or {}).get('virtfns') or []
    return virtfns[index] if index < len(virtfns) else None


# -- what the host runs on ----------------------------------------------------

def host_vfs(pf, devices):
    """``[(index, vf, reasons)]``: the VFs of ``pf`` now that the host runs on (their ``host_critical``)."""
    used = []
    for index, vf in enumerate((devices.get(pf) or {}).get('virtfns') or []):
        reasons = (devices.get(vf) or {}).get('host_critical') if vf else None
        if reasons:
            used.append((index, vf, list(reasons)))
    return used


def _uses(used):
    return '; '.join('VF %d (%s: %s)' % (index, vf, '; '.join(reasons)) for index, vf, reasons in used)


def vf_removal(entry, devices):
    """None, or ``(DEFERRED or REFUSED, why)`` when ``entry``'s count change removes a VF the host runs on.

    The kernel refuses a new non-zero count over another, so every change goes
    through 0, and 0 removes every VF; growing from 0 removes none. The boot
    makes the asked count again (the udev rule), so a VF the host runs on comes
    back then if its index is below the new count: the change waits for the
    boot. Otherwise not even the boot gives it back: refused.
    """
    pf, want = entry['pf'], entry['vfs']
    running = (devices.get(pf) or {}).get('sriov_numvfs') or 0
    if running == want or not running:
        return None
    used = host_vfs(pf, devices)
    if not used:
        return None
    what = '%s has %d VFs, %d asked' % (pf, running, want)
    lost = [u for u in used if u[0] >= want]
    if lost:
        return REFUSED, ('%s, and the host runs on %s, which a count of %d leaves out: any count change removes every '
                         'VF, and not even the next boot would bring %s back. Ask for at least %d VFs, or move the '
                         'host off %s first' % (what, _uses(lost), want, 'it' if len(lost) == 1 else 'them',
                                                lost[-1][0] + 1, 'it' if len(lost) == 1 else 'them'))
    return DEFERRED, ('%s; the host runs on %s and any count change removes every VF first, so the change waits '
                      'for the next boot' % (what, _uses(used)))


def managed_pfs(rules_text):
    """The PFs a rules file ``render`` wrote gives VFs at every boot, in file order."""
    found = []
    for line in (rules_text or '').splitlines():
        match = _RULE_PF.search(line) if not line.lstrip().startswith('#') else None
        if match and match.group(1) not in found:
            found.append(match.group(1))
    return found


def dropped_host_vfs(entries, devices, rules_text):
    """Refusals for the PFs the current rules file gives VFs at boot, that ``entries`` drop, with a VF the host runs on.

    Without its rule such a PF has no VF after the next boot: the host would lose its path then.
    """
    asked = {e['pf'] for e in entries}
    errors = []
    for pf in managed_pfs(rules_text):
        used = host_vfs(pf, devices) if pf not in asked else []
        if used:
            errors.append('%s is no longer listed, so the next boot makes none of its VFs, and the host runs on %s. '
                          'Keep it listed with at least %d VFs, or move the host off %s first'
                          % (pf, _uses(used), used[-1][0] + 1, 'it' if len(used) == 1 else 'them'))
    return errors


# -- what holds a VF --------------------------------------------------------

def read_guest_configs(root, node=None):
    """({vmid: config text}, pci.cfg text) of this node's guests, from the Proxmox cluster files.

    The guests are this node's: ``etc/pve/qemu-server`` (pmxcfs links it to the
    local node) and ``etc/pve/nodes/<node>/qemu-server``; another node's guest
    names another machine's device at the same address. Without ``node`` every
    node's guests count.
    """
    tree = as_tree(root)
    dirs = ['etc/pve/qemu-server']
    nodes = [node] if node is not None else tree.listdir('etc/pve/nodes')
    dirs.extend('etc/pve/nodes/%s/qemu-server' % name for name in nodes if '/' not in name and name not in ('.', '..'))
    configs = {}
    for directory in dirs:
        for name in tree.listdir(directory):
            vmid = vmid_of(name)
            if vmid is not None and vmid not in configs:
                configs[vmid] = tree.read('%s/%s' % (directory, name)) or ''
    return configs, tree.read('etc/pve/mapping/pci.cfg')


def read_guest_references(root, existing, node=None):
    """{address: ["guest 101 (hostpci0)", "resource mapping nic1"]} from the Proxmox cluster files.

    The guests are read_guest_configs'; parsing is _pve_config's, as Proxmox parses.
    """
    configs, mapping_text = read_guest_configs(root, node)
    return guest_pci_references(configs, mapping_text, list(existing), node)


def vfs_in_use(pf, devices, users, references):
    """{vf address: [why]} for the VFs of ``pf`` now that a VM may be using.

    ``users`` is _vfio_open.vfio_users (its group or device file open), ``references`` read_guest_references.
    """
    busy = {}
    for vf in (devices.get(pf) or {}).get('virtfns') or []:
        why = list(users.get(vf, []))
        why.extend('named by %s' % where for where in references.get(vf, []))
        if why:
            busy[vf] = why
    return busy


# -- what to do now -------------------------------------------------------

def _misplaced(entry, devices):
    """VFs (index, address) whose driver is not the one asked for: vfio-pci, or a host driver."""
    wrong = []
    for index in range(min(entry['vfs'], len((devices.get(entry['pf']) or {}).get('virtfns') or []))):
        vf = vf_address(devices, entry['pf'], index)
        device = devices.get(vf) or {}
        on_vfio = bool(vfio_driver(device))
        if (index in entry['vfio']) != on_vfio and (index in entry['vfio'] or on_vfio):
            wrong.append((index, vf))
    return wrong


def decide(entry, devices, critical_reasons=(), busy=None):
    """What ``entry`` needs now: ``{'pf', 'running', 'action': none|live|deferred|refused, 'why'}``.

    ``critical_reasons`` says why the host cannot lose the PF (empty: it can);
    ``busy`` is ``vfs_in_use`` for the PF. A count change destroys every VF and
    resets the PF, a rebind takes a VF from whoever drives it: neither happens
    while the host depends on the PF or one of its VFs (``vf_removal``), or a
    VM may use one of the VFs.
    """
    busy = busy or {}
    pf = entry['pf']
    running = (devices.get(pf) or {}).get('sriov_numvfs') or 0
    result = {'pf': pf, 'running': running, 'action': NONE, 'why': ''}
    if running != entry['vfs']:
        what = '%s has %d VFs, %d asked' % (pf, running, entry['vfs'])
        removal = vf_removal(entry, devices)
        if removal:
            result.update(action=removal[0], why=removal[1])
        elif critical_reasons:
            result.update(action=DEFERRED, why='%s; it is host-critical (%s) and changing the count resets it, so '
                                               'the change waits for the next boot' % (what, '; '.join(critical_reasons)))
        elif busy:
            result.update(action=DEFERRED, why='%s; changing the count destroys every VF and %s, so the change waits '
                                               'for the next boot' % (what, _busy_words(busy)))
        else:
            result.update(action=LIVE, why=what)
        return result
    wrong = _misplaced(entry, devices)
    if wrong:
        states = ('VF %d (%s) %s' % (i, vf, 'not on vfio-pci' if i in entry['vfio'] else 'on vfio-pci, asked for the host')
                  for i, vf in wrong)
        what = '%s: %s' % (pf, ', '.join(states))
        held = {vf: busy[vf] for _i, vf in wrong if vf in busy}
        if held:
            result.update(action=DEFERRED, why='%s; %s, so the rebinding waits for the next boot'
                                               % (what, _busy_words(held)))
        else:
            result.update(action=LIVE, why=what)
    return result


def _busy_words(busy):
    return '; '.join('VF %s is in use: %s' % (vf, ', '.join(why)) for vf, why in sorted(busy.items()))


# -- the files --------------------------------------------------------------

def _vfio_word(entry):
    return ','.join(str(i) for i in entry['vfio']) or '-'


def script_argv(entry, script=SCRIPT):
    """The command that makes ``entry`` true now: the same script, with the same arguments, as at boot."""
    return ['/bin/sh', script, entry['pf'], str(entry['vfs']), _vfio_word(entry)]


_SCRIPT = r"""#!/bin/sh
{header}
# vfio.passthrough: give an SR-IOV physical function its virtual functions and their drivers.
# Usage: {script} PF COUNT VFIO   (VFIO: comma-separated VF indexes for vfio-pci, or -)
# The udev rule {rules} runs it when the PF's driver binds (at boot
# and whenever it is bound again); vfio.passthrough.sriov_vfs runs it for a live change.
# With sriov_drivers_autoprobe at 0 no driver takes the new VFs, so driver_override is set
# before any probe: the chosen VFs bind vfio-pci by address (never by ids=, which every VF of
# the same model shares), the others their own driver.
# Every exit, a failed or interrupted one too, goes through finish: sriov_drivers_autoprobe as it
# was, the VFs it had if the new count could not be made, and no VF left without a driver.
set -u
sys=${{VFIO_PASSTHROUGH_SYSFS:-/sys}}
modprobe=/sbin/modprobe
pf=${{1-}} want=${{2-}} vfio=${{3-}}
dev=$sys/bus/pci/devices/$pf
say() {{ echo "vfio-passthrough-sriov: $pf: $*" >&2; }}
# Every write to sysfs, so each one's failure is seen.
put() {{ echo "$1" > "$2"; }}
touched='' autoprobe='' count=''
# shellcheck disable=SC2317  # reached through the EXIT trap
finish() {{
    rc=$?
    trap - EXIT HUP INT TERM
    [ -n "$touched" ] || exit "$rc"
    if [ -n "$autoprobe" ]; then
        put "$autoprobe" "$dev/sriov_drivers_autoprobe" || {{ say "cannot set sriov_drivers_autoprobe back to $autoprobe"; rc=1; }}
    fi
    if [ -n "$count" ]; then
        say "putting back the $count VFs it had"
        put "$count" "$dev/sriov_numvfs" || {{ say "cannot put back its $count VFs"; rc=1; }}
    fi
    n=$(cat "$dev/sriov_numvfs" 2>/dev/null) || n=0
    case $n in ''|*[!0-9]*) n=0 ;; esac
    i=0
    while [ "$i" -lt "$n" ]; do
        if vf=$(readlink "$dev/virtfn$i"); then
            vf=${{vf##*/}}
            [ -e "$sys/bus/pci/devices/$vf/driver" ] || put "$vf" "$sys/bus/pci/drivers_probe" \
                || say "no driver took VF $i ($vf)"
        fi
        i=$((i + 1))
    done
    exit "$rc"
}}
usage() {{ say "$*; usage: $0 PF COUNT VFIO (VFIO: comma-separated VF indexes, or -)"; exit 2; }}
case $pf in ''|*/*|.*) usage "PF '$pf' is no PCI address" ;; esac
case $want in ''|*[!0-9]*) usage "COUNT '$want' is no number" ;; esac
case ,$vfio, in ,-,) ;; *[!0-9,]*|*,,*) usage "VFIO '$vfio' is neither - nor a list of indexes" ;; esac
[ -e "$dev/sriov_numvfs" ] || {{ say "no such SR-IOV physical function"; exit 1; }}
have=$(cat "$dev/sriov_numvfs") || exit 1
trap finish EXIT
trap 'exit 1' HUP INT TERM
if [ "$have" != "$want" ]; then
    old=$(cat "$dev/sriov_drivers_autoprobe") || exit 1
    touched=1
    put 0 "$dev/sriov_drivers_autoprobe" || {{ say "cannot set sriov_drivers_autoprobe to 0"; exit 1; }}
    autoprobe=$old
    # The kernel refuses a new non-zero count over an existing one (EBUSY): 0 first.
    if [ "$have" != 0 ]; then
        put 0 "$dev/sriov_numvfs" || {{ say "cannot remove its $have VFs"; exit 1; }}
        count=$have
    fi
    if [ "$want" != 0 ]; then put "$want" "$dev/sriov_numvfs" || {{ say "cannot create $want VFs"; exit 1; }}; fi
    count=
fi
[ "$vfio" = - ] || "$modprobe" vfio-pci 2>/dev/null || say "modprobe vfio-pci failed"
chosen() {{ case ",$vfio," in *,$1,*) return 0 ;; esac; return 1; }}
i=0
while [ "$i" -lt "$want" ]; do
    vf=$(readlink "$dev/virtfn$i") || {{ say "virtfn$i missing"; exit 1; }}
    vf=${{vf##*/}}
    vdev=$sys/bus/pci/devices/$vf
    driver=
    if [ -e "$vdev/driver" ]; then driver=$(readlink "$vdev/driver"); driver=${{driver##*/}}; fi
    touched=1
    if chosen "$i"; then
        put vfio-pci "$vdev/driver_override" || {{ say "cannot set driver_override of VF $i ($vf)"; exit 1; }}
        [ "$driver" != vfio-pci ] || {{ i=$((i + 1)); continue; }}
    else
        put "" "$vdev/driver_override" || {{ say "cannot clear driver_override of VF $i ($vf)"; exit 1; }}
        if [ -n "$driver" ] && [ "$driver" != vfio-pci ]; then i=$((i + 1)); continue; fi
    fi
    # finish probes it again, now that its override is in place.
    [ -z "$driver" ] || put "$vf" "$vdev/driver/unbind" || {{ say "cannot unbind VF $i ($vf) from $driver"; exit 1; }}
    i=$((i + 1))
done
exit 0
"""

_RULE = ('ACTION=="add|bind", SUBSYSTEM=="pci", KERNEL=="{pf}", DRIVER=="?*", '
         'RUN+="{argv}"\n')


def render(entries, script=SCRIPT, rules=RULES):
    """``[(path, text or None, mode)]``: the udev rule and the script; both None without entries."""
    if not entries:
        return [(rules, None, 0o644), (script, None, 0o755)]
    mark = header(OWNER)
    lines = [mark, '# vfio.passthrough: SR-IOV virtual functions, made once each physical function\'s driver has '
                   'bound (a udev "bind" event; "add" covers the PFs bound before udev started).']
    for entry in entries:
        chosen = ', '.join(str(i) for i in entry['vfio']) or 'none'
        lines.append('# %s: %d VFs, vfio-pci: %s' % (entry['pf'], entry['vfs'], chosen))
        lines.append(_RULE.format(pf=entry['pf'], argv=' '.join(script_argv(entry, script))).rstrip('\n'))
    return [
        (rules, '\n'.join(lines) + '\n', 0o644),
        (script, _SCRIPT.format(header=mark, script=script, rules=rules), 0o755),
    ]


# -- the verdict -----------------------------------------------------------

def verify(entries, devices):
    """Errors of the running state against ``entries``; each names the PF and, where it is one, the VF."""
    errors = []
    for entry in entries:
        pf = entry['pf']
        device = devices.get(pf)
        if device is None:
            errors.append('SR-IOV: PF %s is gone' % pf)
            continue
        running = device.get('sriov_numvfs') or 0
        if running != entry['vfs']:
            errors.append('SR-IOV: PF %s has %d VFs, %d asked' % (pf, running, entry['vfs']))
            continue
        for index in range(entry['vfs']):
            vf = vf_address(devices, pf, index)
            vf_facts = devices.get(vf) if vf else None
            if vf_facts is None:
                errors.append('SR-IOV: PF %s: VF %d does not exist (no virtfn%d)' % (pf, index, index))
                continue
            holder = vfio_driver(vf_facts)
            driver = vf_facts.get('driver') or 'none'
            if index in entry['vfio'] and not holder:
                errors.append('SR-IOV: PF %s: VF %d (%s) is on driver %s, not vfio-pci' % (pf, index, vf, driver))
            elif index not in entry['vfio'] and (holder or driver == 'none'):
                errors.append('SR-IOV: PF %s: VF %d (%s) is kept for the host but is on driver %s'
                              % (pf, index, vf, driver))
    return errors


_DRY_RUN_KEYS = ('files_changed', 'live', 'deferred')


def dry_run_due(result):
    """What sriov_vfs' dry run (check mode) says the real call owes, from its result alone.

    ``write``: the real call has something to do (a file to write or remove, running VFs to change
    now or at the next boot); when false it would find the host as the dry run did and change
    nothing, so the role does not make it (one remote call less on every converged host).
    ``reboot``: a VF change may end in a reboot (a live change can still be deferred if a user
    opens a VF in between); a file-only change never reboots.
    """
    if not isinstance(result, dict) or not all(isinstance(result.get(key), list) for key in _DRY_RUN_KEYS):
        raise ValueError('expects the result of a sriov_vfs dry run with the lists %s, got %r'
                         % (', '.join(_DRY_RUN_KEYS), sorted(result) if isinstance(result, dict) else result))
    reboot = bool(result['live'] or result['deferred'])
    return {'write': reboot or bool(result['files_changed']), 'reboot': reboot}
