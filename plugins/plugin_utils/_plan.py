# -*- coding: utf-8 -*-
# Copyright: contributors to vfio.passthrough
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the pcie_passthrough role will do on one host, decided before it writes anything.

Pure functions over the ``iommu_facts`` dict and the role's variables, which the
passthrough_plan filter hands over as one ``PassthroughRequest``. ``plan_passthrough``
runs named steps, each returning what it decided and its own ``Findings``, and
returns one ``PassthroughPlan``. Every refusal is collected, not raised one at a
time, so an administrator sees all that is wrong with a request in one run.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Optional, Sequence

from ansible_collections.vfio.passthrough.plugins.module_utils.boot._cmdline import effective_items, last_value
from ansible_collections.vfio.passthrough.plugins.module_utils.pci._iomem import framebuffer_hint
from ansible_collections.vfio.passthrough.plugins.module_utils.pci._pci import (
    BRIDGE, PCI_ID, SAME_CARD, VFIO_HOLDER_MODULES, group_relation, normalise_address, normalise_module, off_host,
    vfio_driver, vfio_pci_refusal,
)
from ansible_collections.vfio.passthrough.plugins.module_utils.sriov._sriov_request import check_request as check_sriov
from ansible_collections.vfio.passthrough.plugins.module_utils.sriov._sriov_verify import verify as verify_sriov
from ansible_collections.vfio.passthrough.plugins.plugin_utils._iommu_verdict import judge_remapping_and_mode
from ansible_collections.vfio.passthrough.plugins.plugin_utils._tuning_plan import plan_tuning, verify_tuning

__all__ = ['PassthroughRequest', 'PassthroughPlan', 'plan_passthrough', 'reboot_reasons', 'verify_passthrough',
           'TROUBLESHOOTING']


# Rows of the guide's Troubleshooting table, quoted in the role's messages so an
# administrator can find the matching advice.
TROUBLESHOOTING = {
    'iommu_off': 'Troubleshooting "IOMMU not enabled" (cause: BIOS flag off or kernel args missing)',
    'not_isolated': 'Troubleshooting "Devices not isolated" (cause: IOMMU groups too broad)',
    'still_bound': 'Troubleshooting "NIC still bound to host" / "VM won\'t start with passthrough" (device in use)',
    'zfs_args': 'Troubleshooting "ZFS boot ignoring args" (/etc/kernel/cmdline not updated or not refreshed)',
    'acs_ignored': 'Troubleshooting "ACS override ignored" (kernel line not updated)',
}

ACS_RISK = (
    'pcie_acs_override makes the kernel pretend that devices are isolated when the hardware does not '
    'guarantee it: a device passed to a VM may then reach other devices in its real group by '
    'peer-to-peer DMA, bypassing the IOMMU. Use it only on lab or low-risk hosts, and set '
    'pcie_passthrough_acs_override_accept_risk: true to confirm.'
)


def _pci_id(device):
    return '%s:%s' % (device['vendor_id'], device['device_id'])


def _describe(address, device):
    return '%s [%s] %s (driver %s)' % (address, _pci_id(device), device.get('class_name') or device.get('class'),
                                       device.get('driver') or 'none')


def _native_driver(device):
    """The module the host gives the device, also while vfio-pci (or a variant of it) holds it."""
    if not off_host(device):
        current = normalise_module(device.get('driver_module') or device.get('driver'))
        if current:
            return current
    native = [m for m in device.get('kernel_modules') or [] if m not in VFIO_HOLDER_MODULES]
    return native[0] if native else None


def _kernel_args(vendor, iommu_pt, acs_override, extra_present, extra_absent):
    present, absent = [], ['intel_iommu=off', 'amd_iommu=off']
    if vendor == 'intel':
        present.append('intel_iommu=on')
    if iommu_pt:
        present.append('iommu=pt')
    if acs_override:
        present.append('pcie_acs_override=%s' % acs_override)
    present.extend(extra_present)
    absent.extend(extra_absent)
    return present, absent


@dataclass(frozen=True)
class PassthroughRequest:
    """What the role asks of one host: its pcie_passthrough_* variables, named as the passthrough_plan filter's options.

    ``tuning`` is ansible_facts.host_tuning, needed when ``hugepages`` or ``isolated_cpus`` is not None.
    """

    devices: Sequence[str] = ()
    vfio_ids: Sequence[str] = ()
    softdep_drivers: Sequence[str] = ()
    vendor: str = 'auto'
    iommu_pt: bool = True
    acs_override: str = ''
    acs_accept_risk: bool = False
    force_host_critical: bool = False
    kernel_args: Sequence[str] = ()
    kernel_args_absent: Sequence[str] = ()
    tuning: Optional[dict] = None
    hugepages: Optional[dict] = None
    isolated_cpus: Optional[str] = None
    isolated_nohz: bool = False
    force_cpu0: bool = False
    sriov: Sequence[dict] = ()


@dataclass
class PassthroughPlan:
    """Everything decided for one host; ``errors`` non-empty means refuse. ``as_dict()`` is what the role keeps."""

    errors: list
    warnings: list
    notes: list
    vendor: Optional[str]
    kernel_present: list
    kernel_absent: list
    kernel_group: list
    tuning: dict
    bind: list
    vfio_ids: list
    by_address: list
    override_drivers: list
    softdeps: list
    acs_override: str
    iommu_pt: bool
    normalised: dict
    sriov: list

    def as_dict(self):
        # Shallow, in field order: the role keeps the very lists and dicts the steps made.
        return {item.name: getattr(self, item.name) for item in fields(self)}


@dataclass
class Findings:
    """What one step has to tell: refusals, warnings and notes, each in the order found."""

    errors: list = field(default_factory=list)
    warnings: list = field(default_factory=list)
    notes: list = field(default_factory=list)


def plan_passthrough(facts, request):
    """Decide everything for one host from its ``iommu_facts`` and a PassthroughRequest; returns a PassthroughPlan.

    Every refusal is collected, not raised: each step tells its own, and the plan lists them in step order.
    """
    known = facts.get('devices') or {}
    vfio_ids = [i.lower() for i in request.vfio_ids]
    (devices, normalised), found_devices = _select_devices(request.devices, known)
    vendor, found_vendor = _choose_vendor(facts, request.vendor)
    requested, found_missing = _present_devices(devices, known)
    bind, found_peers = _with_same_card_functions(facts, known, requested)
    found_isolation = _check_isolation(facts, known, requested, bind)
    (by_id, by_address), found_binding = _split_by_id_and_address(known, bind, vfio_ids)
    # Bound by address or by ID: an ID also takes every other device that has it.
    caught = sorted(set(bind) | {a for a, d in known.items() if _pci_id(d) in vfio_ids})
    override_drivers, softdeps = _drivers(known, by_address, caught, request.softdep_drivers)
    tuned = plan_tuning(request.tuning, request.hugepages, request.isolated_cpus, request.isolated_nohz,
                        request.force_cpu0, request.kernel_args, request.kernel_args_absent)
    sriov, sriov_errors, sriov_notes = check_sriov(list(request.sriov), known, bind)
    acs_override = request.acs_override if request.acs_accept_risk else ''
    present, absent = _kernel_args(vendor, request.iommu_pt, acs_override,
                                   list(request.kernel_args) + tuned['present'],
                                   list(request.kernel_args_absent) + tuned['absent'])
    # The order an administrator reads them in: the request's own mistakes first, then the host's objections.
    findings = [
        found_devices, _check_vfio_ids(vfio_ids), found_vendor, _check_acs(request), found_missing, found_peers,
        found_isolation, found_binding, _check_host_critical(known, caught, request.force_host_critical),
        _check_vfio_pci(known, caught), _framebuffer_hints(facts, known, requested), Findings(errors=tuned['errors']),
        Findings(errors=sriov_errors, notes=sriov_notes),
    ]
    return PassthroughPlan(
        errors=[e for f in findings for e in f.errors], warnings=[w for f in findings for w in f.warnings],
        notes=[n for f in findings for n in f.notes],
        vendor=vendor, kernel_present=present, kernel_absent=absent, kernel_group=tuned['group'],
        tuning={key: tuned[key] for key in ('hugepages', 'isolated_cpus', 'nohz')},
        bind=sorted(bind), vfio_ids=by_id, by_address=sorted(by_address),
        override_drivers=override_drivers, softdeps=softdeps, acs_override=acs_override,
        iommu_pt=bool(request.iommu_pt), normalised=normalised, sriov=sriov)


def _select_devices(typed, known):
    """The canonical addresses of the devices as typed, and {typed: [addresses]} for those rewritten."""
    found = Findings()
    devices, normalised = [], {}
    for value in typed:
        try:
            addresses, note = normalise_address(value, known)
        except ValueError as exc:
            found.errors.append('pcie_passthrough_devices: %s' % exc)
            continue
        if note:
            normalised[str(value)] = addresses
            found.notes.append('pcie_passthrough_devices: %s' % note)
        devices.extend(a for a in addresses if a not in devices)
    return (devices, normalised), found


def _check_vfio_ids(vfio_ids):
    return Findings(errors=['pcie_passthrough_vfio_ids: %r is not a vendor:device ID like 8086:10d3' % pci_id
                            for pci_id in vfio_ids if not PCI_ID.match(pci_id)])


def _choose_vendor(facts, vendor):
    """The IOMMU vendor asked for, or with ``auto`` the one the facts show, which must be there to see."""
    found = Findings()
    if vendor == 'auto':
        vendor = facts.get('vendor')
        if not facts.get('firmware_support'):
            found.errors.append(
                'No DMAR or IVRS ACPI table, so the IOMMU is switched off in firmware: enable VT-d / AMD-Vi '
                '(and disable CSM if needed) in firmware (BIOS/UEFI setup), or set '
                'pcie_passthrough_iommu_vendor to intel or amd to continue anyway. %s' % TROUBLESHOOTING['iommu_off'])
        if vendor not in ('intel', 'amd'):
            found.errors.append('Cannot tell the IOMMU vendor (no ACPI table, CPU vendor %r); set '
                                'pcie_passthrough_iommu_vendor' % facts.get('cpu_vendor'))
    return vendor, found


def _check_acs(request):
    if request.acs_override and not request.acs_accept_risk:
        return Findings(errors=['pcie_passthrough_acs_override=%s refused: %s' % (request.acs_override, ACS_RISK)])
    return Findings()


def _present_devices(devices, known):
    """The requested devices this host has; each other one is refused."""
    missing = [a for a in devices if a not in known]
    return [a for a in devices if a in known], Findings(errors=[
        'pcie_passthrough_devices: %s does not exist on this host (see lspci -D)' % a for a in missing])


def _with_same_card_functions(facts, known, requested):
    """The devices to bind: the requested ones and the other functions of the same card in their groups.

    A GPU's HDMI audio must leave its host driver too, or the group cannot be given to a VM.
    """
    found = Findings()
    bind = list(requested)
    for address in requested:
        for peer in _group_members(facts, address):
            if peer not in bind and group_relation(address, peer, known) == SAME_CARD:
                bind.append(peer)
                found.notes.append('%s joins %s: another function of the same device in IOMMU group %s'
                                   % (_describe(peer, known[peer]), address, known[address]['iommu_group']))
    return bind, found


def _check_isolation(facts, known, requested, bind):
    """A VM can only receive a whole IOMMU group: refuse a requested device whose group holds others."""
    found = Findings()
    if requested and not facts.get('enabled'):
        found.warnings.append('The IOMMU is off in the running kernel, so IOMMU groups cannot be checked before the '
                              'reboot; they are checked again after it.')
    for address in requested:
        device = known[address]
        if device.get('iommu_group') is None:
            continue
        outsiders = [p for p in _group_members(facts, address)
                     if p not in bind and group_relation(address, p, known) != BRIDGE]
        if outsiders:
            found.errors.append(
                '%s shares IOMMU group %s with %s, which %s not requested: a VM can only receive a whole '
                'group. Request them too, move the card to another slot, enable ACS in firmware, or (lab '
                'only) pcie_passthrough_acs_override. %s'
                % (address, device['iommu_group'], ', '.join(_describe(p, known[p]) for p in outsiders),
                   'is' if len(outsiders) == 1 else 'are', TROUBLESHOOTING['not_isolated']))
    return found


def _split_by_id_and_address(known, bind, vfio_ids):
    """The vfio-pci IDs, and the devices bound by address because another device has the same ID."""
    found = Findings()
    by_id, by_address = [], []
    for address in bind:
        pci_id = _pci_id(known[address])
        twins = [a for a, d in known.items() if a not in bind and _pci_id(d) == pci_id]
        if twins:
            by_address.append(address)
            found.notes.append('%s is bound by address: %s has the same ID %s and stays with its driver'
                               % (address, ', '.join(twins), pci_id))
        elif pci_id not in by_id:
            by_id.append(pci_id)
    for pci_id in vfio_ids:
        if pci_id not in by_id:
            by_id.append(pci_id)
    return (by_id, by_address), found


def _check_host_critical(known, caught, force):
    found = Findings()
    for address in caught:
        reasons = known[address].get('host_critical') or []
        if not reasons:
            continue
        why = '%s is host-critical: %s' % (_describe(address, known[address]), '; '.join(reasons))
        if force:
            found.warnings.append(why + ' (passed through anyway: pcie_passthrough_force_host_critical is true)')
        else:
            found.errors.append(why + '. Passing it through would cut the host off; set '
                                'pcie_passthrough_force_host_critical: true only if another path reaches the host.')
    return found


def _check_vfio_pci(known, caught):
    """Refuse what vfio-pci cannot take; say where its config header could not be read."""
    found = Findings()
    for address in caught:
        refusal = vfio_pci_refusal(address, known[address])
        if refusal:
            found.errors.append('%s, so it cannot be passed through; nothing was written.' % refusal)
        elif known[address].get('header_type') is None:
            found.notes.append('%s: config header type unknown (its sysfs config could not be read), so whether '
                               'vfio-pci takes it shows only when it binds' % address)
    return found


def _framebuffer_hints(facts, known, requested):
    found = Findings()
    for address in requested:
        hint = framebuffer_hint(address, known[address], facts.get('iomem'))
        if hint:
            (found.warnings if hint[0] == 'warning' else found.notes).append(hint[1])
    return found


def _drivers(known, by_address, caught, softdep_drivers):
    """The drivers hooked for binding by address, and those that get a softdep on vfio-pci."""
    override_drivers = []
    for address in by_address:
        driver = _native_driver(known[address])
        if driver and driver not in override_drivers:
            override_drivers.append(driver)
    softdeps = []
    for driver in [_native_driver(known[a]) for a in caught] + [normalise_module(d) for d in softdep_drivers]:
        # libkmod ignores a module's install command when the module also has a
        # softdep, so drivers hooked for binding by address get no softdep: their
        # install script loads vfio-pci itself.
        if driver and driver not in override_drivers and driver not in softdeps:
            softdeps.append(driver)
    return override_drivers, softdeps


def _group_members(facts, address):
    device = facts['devices'][address]
    group = device.get('iommu_group')
    if group is None:
        return []
    return [a for a in facts['groups'].get(str(group), {}).get('devices', []) if a != address]


_STATE_ARGS = ('intel_iommu', 'amd_iommu', 'iommu', 'pcie_acs_override')


def reboot_reasons(facts, plan, cmdline_unmet=(), sriov_deferred=()):
    """Why the running kernel is not yet what the plan asks for; empty means no reboot.

    Judged on effective state, not on text: a Proxmox VE 8.2+ kernel turns the
    Intel IOMMU on by itself, so a missing ``intel_iommu=on`` alone costs no reboot.
    ``sriov_deferred`` are the VF changes sriov_vfs judged unsafe while the host runs.
    """
    reasons = []
    if not facts.get('enabled'):
        reasons.append('the IOMMU is off in the running kernel')
    elif plan['iommu_pt'] and not facts.get('passthrough_mode'):
        reasons.append('the running kernel is not in IOMMU passthrough mode (iommu=pt)')
    if (plan['acs_override'] or None) != (facts.get('acs_override') or None):
        reasons.append('the running kernel has pcie_acs_override=%s, wanted %s'
                       % (facts.get('acs_override') or '(none)', plan['acs_override'] or '(none)'))
    bound = set(facts.get('vfio_bound') or [])
    pending = [a for a in plan['bind'] if a not in bound]
    if pending:
        reasons.append('not yet on vfio-pci: %s' % ', '.join(pending))
    for item in cmdline_unmet:
        arg = item.split(' ', 1)[-1]
        if normalise_module(arg.split('=', 1)[0]) not in _STATE_ARGS:
            reasons.append('the running kernel command line is not as configured: %s' % item)
    for item in sriov_deferred:
        reasons.append('SR-IOV: %s' % item['why'])
    return reasons


def verify_passthrough(facts, plan, tuning=None):
    """Check the live host after the reboot (or when none was needed).

    Returns dict(errors, warnings, bound): ``bound`` maps each planned address
    held for a VM to its driver (vfio-pci or a variant such as mlx5_vfio_pci).
    ``tuning`` (ansible_facts.host_tuning) is judged against the plan's hugepages and isolated CPUs.
    """
    errors, warnings = [], []
    if plan.get('tuning'):
        errors.extend(verify_tuning(tuning, plan['tuning']))
    cmdline = facts.get('cmdline') or ''
    if not facts.get('enabled'):
        # As the kernel reads it: the kernel part only, the last on/off and the last iommu= win.
        asked = ('on' in effective_items(cmdline, 'intel_iommu') or last_value(cmdline, 'iommu') == 'pt'
                 or plan['vendor'] == 'amd')
        if asked and not facts.get('firmware_support'):
            errors.append('The IOMMU is off although the kernel arguments are in /proc/cmdline and no DMAR/IVRS '
                          'table exists: the firmware switch (VT-d / AMD-Vi) is off. %s' % TROUBLESHOOTING['iommu_off'])
        else:
            errors.append('The IOMMU is off; /proc/cmdline is "%s". Check that the boot loader really uses the '
                          'edited file. %s; %s'
                          % (facts.get('cmdline'), TROUBLESHOOTING['iommu_off'], TROUBLESHOOTING['zfs_args']))
    mode_errors, mode_warnings = judge_remapping_and_mode(facts, plan['iommu_pt'])
    errors.extend(mode_errors)
    warnings.extend(mode_warnings)
    if plan['acs_override'] and facts.get('acs_override') != plan['acs_override']:
        errors.append('pcie_acs_override=%s is not active (running: %s). %s'
                      % (plan['acs_override'], facts.get('acs_override'), TROUBLESHOOTING['acs_ignored']))
    devices = facts.get('devices') or {}
    bound = {}
    for address in plan['bind']:
        device = devices.get(address) or {}
        holder = vfio_driver(device)
        if holder:
            bound[address] = holder
        else:
            errors.append('%s is on driver %s, not vfio-pci or a variant of it. %s'
                          % (address, device.get('driver') or 'none', TROUBLESHOOTING['still_bound']))
    errors.extend(verify_sriov(plan.get('sriov') or [], devices))
    return {'errors': errors, 'warnings': warnings, 'bound': bound}
