# -*- coding: utf-8 -*-
# Copyright: contributors to vfio.passthrough
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A PF's VF-count change or VF rebinding: whether it happens now, waits for the boot, or is refused.

The kernel refuses a new non-zero count over another, so every change goes
through 0, which removes every VF, and a driver resets the PF on the way. Hence
one rule each, used by the plan (through _sriov_request) and the sriov_vfs
module alike:

* ``vf_removal``: a change that takes away a VF the host runs on (its netdev
  carries the default route, is a port of the bridge or bond that does, or a
  disk the host boots from sits behind it) waits for the boot, or is refused
  where the new count lacks that VF, since not even the boot would give it back.
* ``dropped_host_vfs``: a PF the rules file gives VFs at boot, no longer asked
  for, with a VF the host runs on: refused.
* ``vfs_in_use``: the VFs a VM may be using (their /dev/vfio group or device
  file open, named in a guest's ``hostpciN`` or a resource mapping).
* ``decide``: ``none``, ``live`` or ``deferred`` (or ``vf_removal``'s verdict):
  a host-critical PF, a PF with a VF the host runs on, or a PF whose VFs are in
  use never changes while the host runs.
* ``now_and_at_boot``: the decisions as the run reports them, ``live`` and
  ``deferred``; a run that may not change the host (``apply`` false, a root
  that is not the running system) defers what could change now, saying why.

Pure functions: device facts in, verdicts out.
"""

from __future__ import annotations

from ansible_collections.vfio.passthrough.plugins.module_utils.pci._pci import vfio_driver
from ansible_collections.vfio.passthrough.plugins.module_utils.sriov._sriov_boot import managed_pfs
from ansible_collections.vfio.passthrough.plugins.module_utils.sriov._sriov_state import host_vfs, running_vfs, vf_address

__all__ = ['NONE', 'LIVE', 'DEFERRED', 'REFUSED', 'vf_removal', 'dropped_host_vfs', 'vfs_in_use', 'decide',
           'now_and_at_boot', 'dry_run_due']

NONE, LIVE, DEFERRED, REFUSED = 'none', 'live', 'deferred', 'refused'


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
    running = running_vfs(devices, pf)
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


def vfs_in_use(pf, devices, users, references):
    """{vf address: [why]} for the VFs of ``pf`` now that a VM may be using.

    ``users`` is _vfio_open.vfio_users (its group or device file open), ``references``
    _pve_guests.read_guest_references.
    """
    busy = {}
    for vf in (devices.get(pf) or {}).get('virtfns') or []:
        why = list(users.get(vf, []))
        why.extend('named by %s' % where for where in references.get(vf, []))
        if why:
            busy[vf] = why
    return busy


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


def _busy_words(busy):
    return '; '.join('VF %s is in use: %s' % (vf, ', '.join(why)) for vf, why in sorted(busy.items()))


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
    running = running_vfs(devices, pf)
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


def now_and_at_boot(decisions, held_back=None):
    """``(live, deferred)``, each ``[{'pf', 'why'}]``, from ``decide``'s results.

    ``held_back`` says why nothing changes now (None: changes may happen); a live
    change is then deferred too, its ``why`` ending with that reason.
    """
    live = [{'pf': d['pf'], 'why': d['why']} for d in decisions if d['action'] == LIVE and not held_back]
    deferred = [{'pf': d['pf'], 'why': d['why'] if d['action'] == DEFERRED else '%s; not changed now: %s'
                 % (d['why'], held_back)}
                for d in decisions if d['action'] == DEFERRED or (d['action'] == LIVE and held_back)]
    return live, deferred


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
