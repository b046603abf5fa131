# -*- coding: utf-8 -*-
# Copyright: contributors to vfio.passthrough
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The IOMMU readiness report's verdicts: one per device, the worst per group, counts per host.

Pure functions over the ``iommu`` facts of M(vfio.passthrough.iommu_facts); the
renderers (_report_markdown, _report_html, _report_index) only format them.
"""

from __future__ import annotations

from ansible_collections.vfio.passthrough.plugins.module_utils.pci._iomem import framebuffer_hint
from ansible_collections.vfio.passthrough.plugins.module_utils.proxmox._pve_config import variant_driver_note
from ansible_collections.vfio.passthrough.plugins.module_utils.pci._pci import (
    BRIDGE, OTHER_CARD, SAME_CARD, VFIO_PCI, group_relation, off_host, vfio_driver, vfio_pci_refusal,
)

__all__ = [
    'VERDICTS', 'KEYS', 'LABEL', 'STROKE', 'FILL', 'device_verdict', 'device_verdicts', 'group_verdict',
    'facts_devices', 'report_groups', 'report_summary',
]

# (key, label, stroke colour, fill colour, meaning), ordered worst first: a group
# takes the first of these that any member has (platform devices last, since a
# bridge says nothing about what can be passed through).
VERDICTS = (
    ('host-critical', 'host-critical', '#c0392b', '#fbe3e0',
     'The host needs it: the NIC of the default route or of the address Ansible uses, a port of the '
     'bridge or bond carrying them, or the controller of /, /boot or /boot/efi. The role refuses it.'),
    ('iommu-off', 'IOMMU off', '#6d4bb8', '#ece6fa',
     'No IOMMU group: the IOMMU is off (firmware switch or kernel arguments), so nothing can be '
     'passed through yet. Run the role; it adds the arguments and says what firmware must enable.'),
    ('needs-acs', 'needs ACS', '#d35400', '#fde6d2',
     'Its IOMMU group holds devices of other cards, typically behind a bridge without ACS. Move the card '
     'to another slot, or accept pcie_acs_override, which lets the guest reach those devices by '
     'peer-to-peer DMA.'),
    ('shares-group', 'shares group', '#b7950b', '#fcf3cf',
     'Its group holds other functions of the same card (a GPU and its audio): pass them to the same VM '
     'together.'),
    ('no-flr', 'no FLR', '#5d8a1c', '#eaf4d3',
     'Isolated, but without a function-level reset: passthrough works, though the device may not come '
     'back cleanly when its VM restarts.'),
    ('ready', 'ready', '#1e8449', '#d5f5e3',
     'Alone in its IOMMU group (bridges aside) with a function-level reset: ready for passthrough.'),
    ('vfio', 'on vfio-pci', '#1f5fbf', '#dce8fa',
     'Bound to vfio-pci or one of its variant drivers (such as mlx5_vfio_pci): held for a VM.'),
    ('platform', 'platform', '#7f8c8d', '#eef0f1',
     'A host bridge, PCI bridge, ISA bridge or the IOMMU itself: part of the platform, never passed '
     'through. Bridges in a group do not stop the devices behind them from being passed through.'),
)
KEYS = tuple(v[0] for v in VERDICTS)
LABEL = {v[0]: v[1] for v in VERDICTS}
STROKE = {v[0]: v[2] for v in VERDICTS}
FILL = {v[0]: v[3] for v in VERDICTS}
_RANK = {key: n for n, key in enumerate(KEYS)}


def _is_platform(device):
    cls = device.get('class') or ''
    return cls.startswith('06') or cls.startswith('0806')


def _has_flr(device):
    # 'af' is the Advanced Features FLR of conventional PCI: the same reset under another capability.
    methods = device.get('reset_methods') or []
    return 'flr' in methods or 'af' in methods


def _describe(address, devices):
    device = devices.get(address)
    if not device:
        return address
    driver = device.get('driver')
    return '%s (%s%s)' % (address, device.get('class_name') or 'unknown class', ', ' + driver if driver else '')


def _reset_note(device):
    methods = device.get('reset_methods') or []
    if methods:
        return 'no function-level reset (resets only by %s): it may not come back cleanly after a VM restart' % \
            ', '.join(methods)
    return 'no reset method at all: it may not come back cleanly after a VM restart'


def device_verdict(address, devices, iommu_enabled=True, iomem=None, variant_guests=None):
    """The passthrough verdict of one device: {'verdict', 'label', 'reason', 'notes'}.

    ``devices`` is the facts' address -> device dict (peers are looked up in it),
    ``iommu_enabled`` the facts' ``enabled``, ``iomem`` and ``variant_guests``
    the facts' ``iomem`` and ``variant_driver_guests`` (the boot framebuffer's
    evidence, the guests naming a device on a variant driver). Precedence, first match wins:
    on vfio-pci or a variant of it (names which), host-critical (names why), platform device (bridges, the IOMMU),
    no IOMMU group, a group shared with another card (needs ACS), a group shared
    with other functions of the same card (pass together), no FLR, ready.
    PCI bridges in a group are ignored, as vfio ignores them.
    """
    device = devices[address]
    group = device.get('iommu_group')
    relation = {p: group_relation(address, p, devices) for p in device.get('group_peers') or []}
    endpoints = [p for p, r in relation.items() if r != BRIDGE]
    same_card = [p for p, r in relation.items() if r == SAME_CARD]
    foreign = [p for p, r in relation.items() if r == OTHER_CARD]
    notes = []
    hint = framebuffer_hint(address, device, iomem)
    if hint:
        notes.append(hint[1])

    holder = vfio_driver(device)
    if holder:
        verdict = 'vfio'
        reason = 'bound to %s%s, held for a VM' % (holder, '' if holder == VFIO_PCI else ', a vfio-pci variant driver')
        if holder != VFIO_PCI:
            notes.append(variant_driver_note(holder, (variant_guests or {}).get(address) or []))
        # vfio accepts a group whose other endpoints have no driver, vfio-pci or pci-stub.
        held = [p for p in endpoints if not off_host(devices.get(p) or {})]
        if held:
            notes.append('%s in IOMMU group %s %s still on the host: the VM does not start until %s on vfio-pci too'
                         % (', '.join(_describe(p, devices) for p in held), group,
                            'is' if len(held) == 1 else 'are', 'it is' if len(held) == 1 else 'they are'))
    elif device.get('host_critical'):
        verdict = 'host-critical'
        reason = 'the host needs it: %s' % '; '.join(device['host_critical'])
    elif _is_platform(device):
        verdict = 'platform'
        reason = '%s: part of the platform, not passed through' % (device.get('class_name') or 'bridge')
    elif group is None:
        verdict = 'iommu-off'
        reason = ('the IOMMU is off: no IOMMU groups exist' if not iommu_enabled else
                  'in no IOMMU group although the IOMMU is on: the kernel does not isolate it')
    elif foreign:
        verdict = 'needs-acs'
        reason = ('shares IOMMU group %s with %s, not of this card: move the card to another slot, or use '
                  'pcie_acs_override (risk: the guest can reach those devices by peer-to-peer DMA)'
                  % (group, ', '.join(_describe(p, devices) for p in foreign)))
    elif same_card:
        verdict = 'shares-group'
        reason = ('shares IOMMU group %s with %s, other functions of the same card: pass them together'
                  % (group, ', '.join(_describe(p, devices) for p in same_card)))
    elif not _has_flr(device):
        verdict = 'no-flr'
        reason = 'isolated in IOMMU group %s, but %s' % (group, _reset_note(device))
    else:
        verdict = 'ready'
        reason = 'isolated in IOMMU group %s, function-level reset' % group
    if verdict in ('needs-acs', 'shares-group'):
        # The whole group goes to the VM, so a peer the host needs blocks this device too.
        critical = [p for p in endpoints if (devices.get(p) or {}).get('host_critical')]
        if critical:
            notes.append('%s in the same IOMMU group %s host-critical: the group cannot go to a VM while the '
                         'host needs %s' % (', '.join(critical), 'is' if len(critical) == 1 else 'are',
                                            'it' if len(critical) == 1 else 'them'))
    if verdict in ('vfio', 'needs-acs', 'shares-group') and not _has_flr(device):
        notes.append(_reset_note(device))
    refusal = vfio_pci_refusal(address, device)
    if refusal and verdict != 'platform':
        # The plan refuses it by the same rule; a bridge is platform already.
        notes.append(refusal)
    return {'verdict': verdict, 'label': LABEL[verdict], 'reason': reason, 'notes': notes}


def device_verdicts(facts):
    """{address: device_verdict(...)} for every device, in address order."""
    devices = facts_devices(facts)
    enabled = bool(facts.get('enabled'))
    return {address: device_verdict(address, devices, enabled, facts.get('iomem'), facts.get('variant_driver_guests'))
            for address in sorted(devices)}


def group_verdict(verdicts):
    """The worst of the members' verdict keys; platform devices count only when nothing else is there."""
    keys = [v for v in verdicts if v != 'platform'] or list(verdicts)
    return min(keys, key=_RANK.__getitem__) if keys else 'platform'


def facts_devices(facts):
    if not isinstance(facts, dict) or not isinstance(facts.get('devices'), dict):
        raise ValueError('expected the iommu facts of vfio.passthrough.iommu_facts (a dict with devices), got %r'
                         % type(facts).__name__)
    return facts['devices']


def _group_key(name):
    text = str(name)
    return (0, int(text), '') if text.isdigit() else (1, 0, text)


def report_groups(facts, verdicts):
    """[(group name or None, [addresses], type, verdict key)], groups in numeric order, ungrouped devices last."""
    devices = facts_devices(facts)
    groups = facts.get('groups') or {}
    seen = set()
    result = []
    for name in sorted(groups, key=_group_key):
        members = sorted(a for a in (groups[name] or {}).get('devices') or [] if a in devices)
        seen.update(members)
        result.append((str(name), members, (groups[name] or {}).get('type'),
                       group_verdict([verdicts[a]['verdict'] for a in members])))
    # A device the group listing missed still carries its group number.
    strays = {}
    for address in sorted(devices):
        if address not in seen:
            strays.setdefault(devices[address].get('iommu_group'), []).append(address)
    for name in sorted((n for n in strays if n is not None), key=_group_key):
        result.append((str(name), strays[name], None, group_verdict([verdicts[a]['verdict'] for a in strays[name]])))
    if None in strays:
        # Not a group: the devices the IOMMU does not isolate, whatever each one's own verdict.
        result.append((None, strays[None], None, 'iommu-off'))
    return result


def report_summary(facts):
    """What the fleet index shows of one host: IOMMU state and the number of devices per verdict."""
    verdicts = device_verdicts(facts)
    counts = {key: 0 for key in KEYS}
    for verdict in verdicts.values():
        counts[verdict['verdict']] += 1
    return {
        'enabled': bool(facts.get('enabled')),
        'vendor': facts.get('vendor'),
        'kernel': facts.get('kernel'),
        'interrupt_remapping': facts.get('interrupt_remapping'),
        'passthrough_mode': facts.get('passthrough_mode'),
        'devices': len(verdicts),
        'groups': len(facts.get('groups') or {}),
        'counts': counts,
    }
