# -*- coding: utf-8 -*-
# Copyright: contributors to vfio.passthrough
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Proxmox VE's own files, read the way Proxmox reads them: which PCI devices its guests name.

The grammar is Proxmox's, taken from its public sources:

* qemu-server ``src/PVE/QemuServer/PCI.pm``: ``$hostpci_fmt`` (the keys of a
  ``hostpciN`` value, ``host`` its default key), ``$PCIRE`` and
  ``parse_hostpci`` (``host`` and ``mapping`` exclude each other; every
  ``;``-separated ID goes through ``PVE::SysFSTools::lspci``).
* pve-common ``src/PVE/JSONSchema.pm``: ``parse_property_string`` (split on
  ``,``; ``key=value`` or a bare default-key value; no quoting), ``parse_boolean``
  and the ``pve-configid`` format.
* pve-common ``src/PVE/SysFSTools.pm``: ``lspci`` matches an ID as a PREFIX of
  ``[0000:]domain:bus:slot.function``, so ``01:00`` is every function of
  ``0000:01:00`` and an ID without domain means domain 0000.
* qemu-server 9.1 (Proxmox VE 9.1) adds ``driver`` to ``$hostpci_fmt``:
  ``driver=keep`` leaves the device on the driver it is bound to (a vfio-pci
  variant such as mlx5_vfio_pci) instead of rebinding it to vfio-pci at VM
  start, and Proxmox then skips its own reset of it. ``keep`` is the one value
  read here; the qemu-server sources stored for this project predate the key,
  so its exact schema entry is not quoted.
* qemu-server ``parse_vm_config``: ``key: value`` lines starting in column 0
  (``^([a-z][a-z_]*\\d*):\\s*(.+?)\\s*$``), ``#`` description lines,
  ``[PENDING]``, ``[special:cloudinit]`` and ``[snapshot]`` sections; a value
  with a format is checked as it stands (``check_type`` strips quotes only from
  format-less strings, so a quoted hostpci value is malformed).
* pve-guest-common ``src/PVE/Mapping/PCI.pm`` and pve-common
  ``src/PVE/SectionConfig.pm``: ``/etc/pve/mapping/pci.cfg`` is a section
  config whose headers are the bare mapping ID, properties indented
  ``map <property string>`` lines (``node``, ``path``, ``id``, ...), a section
  ending at an empty line; ``path`` is ``;``-separated alternatives, each
  resolved like a hostpci ID; a guest gets the maps of the node it runs on.

Which lines are settings is Proxmox's reading exactly: a line it ignores
configures nothing. A value it would reject still names the devices it spells
out (``errors`` says what Proxmox objects to): a false "in use" costs one
deferred change, a false "free" destroys a VF under a guest.

Pure functions: text in, data out.
"""

from __future__ import annotations

import re

__all__ = [
    'HOSTPCI_KEYS', 'MAP_KEYS', 'parse_hostpci', 'hostpci_id_addresses', 'parse_vm_config_hostpci',
    'parse_pci_mapping', 'guest_pci_settings', 'guest_pci_references', 'vmid_of', 'variant_driver_note',
    'vm_config_setting', 'starts_on_boot',
]

# $PCIRE of qemu-server: [domain:]bus:slot[.function], lowercase hex, a domain of 4 or more digits.
_PCIRE = r'(?:[a-f0-9]{4,}:)?[a-f0-9]{2}:[a-f0-9]{2}(?:\.[a-f0-9])?'
_HOST_PATTERN = re.compile(r'%s(?:;%s)*\Z' % (_PCIRE, _PCIRE))
# The same shape in any case: an ID we can resolve even where Proxmox would object to its case.
_PCI_ID = re.compile(_PCIRE + r'\Z', re.IGNORECASE)
# pve-configid ($CONFIGID_RE of pve-common): mapping IDs
_CONFIGID = re.compile(r'[a-z][a-z0-9_-]+\Z', re.IGNORECASE)
_HEX_ID = re.compile(r'0x[0-9a-fA-F]{4}\Z')

# $hostpci_fmt: key -> (JSON schema type, pattern the whole value must match or None)
HOSTPCI_KEYS = {
    'host': ('string', _HOST_PATTERN),
    'mapping': ('string', _CONFIGID),
    'rombar': ('boolean', None),
    'romfile': ('string', re.compile(r'[^,;]+\Z')),
    'pcie': ('boolean', None),
    'x-vga': ('boolean', None),
    'legacy-igd': ('boolean', None),
    'mdev': ('string', re.compile(r'[^/.:]+\Z')),
    'vendor-id': ('string', _HEX_ID),
    'device-id': ('string', _HEX_ID),
    'sub-vendor-id': ('string', _HEX_ID),
    'sub-device-id': ('string', _HEX_ID),
    'driver': ('string', re.compile(r'keep\Z')),
}
_DEFAULT_KEY = 'host'

# $map_fmt of PVE::Mapping::PCI: the keys of one ``map`` line (no default key); its $PCI_RE needs the domain.
_MAP_PCIRE = r'[a-f0-9]{4,}:[a-f0-9]{2}:[a-f0-9]{2}(?:\.[a-f0-9])?'
_VENDOR_DEVICE = re.compile(r'[0-9A-Fa-f]{4}:[0-9A-Fa-f]{4}\Z')
MAP_KEYS = {
    'node': ('string', re.compile(r'[a-zA-Z0-9](?:[a-zA-Z0-9\-]*[a-zA-Z0-9])?\Z')),
    'id': ('string', _VENDOR_DEVICE),
    'subsystem-id': ('string', _VENDOR_DEVICE),
    'path': ('string', re.compile(r'(?:%s;)*%s\Z' % (_MAP_PCIRE, _MAP_PCIRE))),
    'iommugroup': ('string', re.compile(r'[+-]?\d+\Z')),
    'description': ('string', None),
}
_MAP_REQUIRED = ('node', 'id', 'path')

_CONFIG_LINE = re.compile(r'([a-z][a-z_]*\d*):\s*(.+?)\s*\Z')
# hostpci0 to hostpci15 ($MAX_HOSTPCI_DEVICES = 16): any other key is an "unknown setting", dropped.
_HOSTPCI_KEY = re.compile(r'hostpci(?:[0-9]|1[0-5])\Z')
_SNAPSHOT = re.compile(r'\[([a-z][a-z0-9_\-]+)\]\s*\Z', re.IGNORECASE)
_SECTION_PROPERTY = re.compile(r'\s+(\S+)(?:\s+(.*\S))?\s*\Z')
_VMID_FILE = re.compile(r'(\d+)\.conf\Z')


def _parse_boolean(value):
    """PVE::JSONSchema::parse_boolean: 1/on/yes/true and 0/off/no/false in any case, else None."""
    lowered = value.lower()
    if lowered in ('1', 'on', 'yes', 'true'):
        return 1
    if lowered in ('0', 'off', 'no', 'false'):
        return 0
    return None


def _property_string(value, keys, default_key):
    """parse_property_string: ``(properties, errors, repeated)``.

    ``errors`` lists everything Proxmox would die or raise on; ``repeated``
    holds ``(key, value)`` of each duplicate, which Proxmox refuses but whose
    text still names what it names.
    """
    properties, errors, repeated = {}, [], []
    for part in value.split(','):
        if not part.strip():
            continue
        match = re.match(r'([^=]+)=(.+)\Z', part, re.DOTALL)
        if match:
            key, item = match.groups()
        elif '=' not in part and default_key is not None:
            key, item = default_key, part
        elif '=' not in part:
            errors.append('value without key, but schema does not define a default key')
            continue
        else:
            errors.append('missing key in comma-separated list property')
            continue
        if key in properties:
            errors.append('duplicate key in comma-separated list property: %s' % key)
            repeated.append((key, item))
            continue
        if key not in keys:
            errors.append('invalid key in comma-separated list property: %s' % key)
            continue
        if keys[key][0] == 'boolean':
            parsed = _parse_boolean(item)
            item = item if parsed is None else parsed
        properties[key] = item
    for key, item in properties.items():
        kind, pattern = keys[key]
        if kind == 'boolean' and item not in (0, 1):
            errors.append("%s: type check ('boolean') failed - got '%s'" % (key, item))
        elif pattern is not None and not pattern.match(item):
            errors.append('%s: value does not match the regex pattern' % key)
    return properties, errors, repeated


def parse_hostpci(value):
    """One ``hostpciN`` value as Proxmox parses it (``$hostpci_fmt`` through ``parse_property_string``).

    Returns ``{'host': [IDs as written], 'mapping': ID or None, 'options': {key: value},
    'errors': [what Proxmox rejects]}``: booleans as 0/1, ``host`` split on ``;``.
    Proxmox accepts the value exactly when ``errors`` is empty. Never raises.
    """
    text = value if isinstance(value, str) else ''
    properties, errors, repeated = _property_string(text, HOSTPCI_KEYS, _DEFAULT_KEY)
    host = properties.pop('host', None)
    mapping = properties.pop('mapping', None)
    if host is not None and mapping is not None:
        errors.append("Cannot set both 'host' and 'mapping'.")
    elif host is None and mapping is None:
        errors.append("Either 'host' or 'mapping' must be set.")
    ids = host.split(';') if host is not None else []
    for key, item in repeated:
        if key == 'host':
            ids.extend(i for i in item.split(';') if i not in ids)
    return {'host': ids, 'mapping': mapping, 'options': properties, 'errors': errors}


def hostpci_id_addresses(ident, existing):
    """The host's addresses one hostpci or mapping ID stands for, as ``PVE::SysFSTools::lspci`` finds them.

    lspci keeps the devices whose ``domain:bus:slot.function`` starts with the
    ID, or with ``0000:`` and the ID: ``01:00`` is every function of
    0000:01:00, ``01:00.1`` one function. A text of another shape names nothing
    (a prefix of garbage must not match half the host). Double quotes around
    an ID, which Proxmox never strips from a hostpci value, still let us see
    the device meant.
    """
    if not isinstance(ident, str):
        return []
    ident = ident.strip().strip('"').lower()
    if not _PCI_ID.match(ident):
        return []
    return sorted(a for a in existing if a.startswith(ident) or a.startswith('0000:' + ident))


def parse_vm_config_hostpci(text):
    """The ``hostpciN`` settings of one guest config, snapshots and pending changes included.

    A list of ``{'section': None | 'pending' | 'cloudinit' | snapshot name, 'key': 'hostpci0',
    'value': text, 'hostpci': parse_hostpci(value)}`` in file order. A line
    counts only where parse_vm_config reads a setting: the key in column 0,
    not in a ``#`` description.
    """
    found = []
    section = None
    for line in (text or '').split('\n'):
        if not line.strip():
            continue
        if re.match(r'\[PENDING\]\s*\Z', line, re.IGNORECASE):
            section = 'pending'
            continue
        if re.match(r'\[special:cloudinit\]\s*\Z', line, re.IGNORECASE):
            section = 'cloudinit'
            continue
        snapshot = _SNAPSHOT.match(line)
        if snapshot:
            section = snapshot.group(1)
            continue
        match = _CONFIG_LINE.match(line)
        if match and _HOSTPCI_KEY.match(match.group(1)):
            found.append({'section': section, 'key': match.group(1), 'value': match.group(2),
                          'hostpci': parse_hostpci(match.group(2))})
    return found


def vm_config_setting(text, key):
    """The value of ``key`` in a guest config's current settings (not a snapshot's, not pending), or None."""
    for line in (text or '').split('\n'):
        if line.startswith('['):
            break
        match = _CONFIG_LINE.match(line)
        if match and match.group(1) == key:
            return match.group(2)
    return None


def starts_on_boot(text):
    """Whether a guest config says ``onboot`` (a Proxmox boolean: 1, on, yes, true)."""
    value = vm_config_setting(text, 'onboot')
    return value is not None and _parse_boolean(value) == 1


def parse_pci_mapping(text):
    """/etc/pve/mapping/pci.cfg as ``{mapping ID: [{'node', 'path': [IDs], 'errors'}]}``, one item per ``map`` line.

    Section headers are the bare ID (``^(\\S+)\\s*$``); a header that is no
    valid configid skips its section, as SectionConfig does. ``#`` lines are
    skipped everywhere; a section ends at an empty line. A ``map`` line
    Proxmox would reject keeps the paths it spells out, with ``errors``.
    """
    result = {}
    lines = (text or '').split('\n')
    index = 0

    def next_line():
        nonlocal index
        while index < len(lines):
            line = lines[index]
            index += 1
            if not re.match(r'\s*#', line):
                return line
        return None

    while index < len(lines):
        line = next_line()
        if not line:
            continue
        header = re.match(r'(\S+)\s*\Z', line)
        if header is None:
            continue  # SectionConfig: "ignore config line"
        ident = header.group(1)
        maps = []
        while True:
            line = next_line()
            # Perl's while ($line = $nextline->()) ends the section on an empty line (or a lone "0")
            if not line or line == '0':
                break
            prop = _SECTION_PROPERTY.match(line)
            if not prop or prop.group(1) != 'map' or prop.group(2) is None:
                continue
            properties, errors, repeated = _property_string(prop.group(2), MAP_KEYS, None)
            errors.extend('%s: property is missing and it is not optional' % key
                          for key in _MAP_REQUIRED if key not in properties)
            paths = [properties['path']] if 'path' in properties else []
            paths.extend(item for key, item in repeated if key == 'path')
            maps.append({'node': properties.get('node'), 'path': [i for p in paths for i in p.split(';')],
                         'errors': errors})
        if _CONFIGID.match(ident):
            result.setdefault(ident, []).extend(maps)
    return result


def _mapping_addresses(maps, existing, node):
    """The addresses of a mapping's maps for ``node`` (None: every node's), each path alternative included."""
    found = []
    for item in maps:
        # A map without a node names no node, so it may be this one.
        if node is not None and item['node'] not in (None, node):
            continue
        for ident in item['path']:
            found.extend(a for a in hostpci_id_addresses(ident, existing) if a not in found)
    return found


def _where(vmid, setting, via=None):
    if setting['section'] is None:
        place = setting['key']
    elif setting['section'] == 'pending':
        place = '%s, pending' % setting['key']
    elif setting['section'] == 'cloudinit':
        place = '%s, cloud-init section' % setting['key']
    else:
        place = '%s of snapshot %s' % (setting['key'], setting['section'])
    return 'guest %s (%s%s)' % (vmid, place, ', mapping %s' % via if via else '')


def _vmid_order(vmid):
    return (len(str(vmid)), str(vmid))


def guest_pci_settings(configs, mapping_text, existing, node=None):
    """{address: [{'where': 'guest 101 (hostpci0)', 'options': {key: value}}]} for every guest setting naming a device.

    The same reading as guest_pci_references (``configs`` maps a VMID to its
    config text); ``options`` are the setting's other keys (``driver``,
    ``pcie``, ...), so a caller can tell which guest keeps the device's driver.
    """
    found = {}
    mappings = parse_pci_mapping(mapping_text)
    for vmid in sorted(configs, key=_vmid_order):
        for setting in parse_vm_config_hostpci(configs[vmid]):
            parsed = setting['hostpci']
            named = []
            for ident in parsed['host']:
                named.extend((a, _where(vmid, setting)) for a in hostpci_id_addresses(ident, existing))
            if parsed['mapping'] is not None:
                named.extend((a, _where(vmid, setting, parsed['mapping']))
                             for a in _mapping_addresses(mappings.get(parsed['mapping'], []), existing, node))
            for address, where in named:
                bucket = found.setdefault(address, [])
                if all(item['where'] != where for item in bucket):
                    bucket.append({'where': where, 'options': dict(parsed['options'])})
    return found


def guest_pci_references(configs, mapping_text, existing, node=None):
    """{address: [why]} for every device of ``existing`` a guest or a resource mapping names.

    ``configs`` maps a VMID to its config text (the guests of this node),
    ``mapping_text`` is /etc/pve/mapping/pci.cfg, ``node`` this node's name
    (None: every node's maps count). Whys read ``guest 101 (hostpci0)``,
    ``guest 102 (hostpci1, mapping nic1)`` or ``resource mapping nic1``: a
    mapping no guest names yet is still there to be given to one.
    """
    refs = {address: [item['where'] for item in items]
            for address, items in guest_pci_settings(configs, mapping_text, existing, node).items()}
    mappings = parse_pci_mapping(mapping_text)
    for ident in sorted(mappings):
        for address in _mapping_addresses(mappings[ident], existing, node):
            bucket = refs.setdefault(address, [])
            why = 'resource mapping %s' % ident
            if why not in bucket:
                bucket.append(why)
    return refs


def variant_driver_note(driver, guests):
    """What Proxmox VE 9.1+ does with a device on vfio-pci variant ``driver`` when a VM starts, or None.

    ``guests`` are the settings naming the device (``[{'where', 'driver'}]``,
    the facts' ``variant_driver_guests``). Without ``driver=keep`` Proxmox
    rebinds the device to plain vfio-pci (losing what the variant adds, such
    as live migration); with it Proxmox leaves the driver and skips its own
    reset of the device.
    """
    if not driver:
        return None
    kept = [g['where'] for g in guests if g.get('driver') == 'keep']
    rebound = [g['where'] for g in guests if g.get('driver') != 'keep']
    parts = []
    if kept:
        parts.append('%s keep%s it on %s (driver=keep: Proxmox VE leaves the driver and skips its own reset of the '
                     'device)' % (', '.join(kept), 's' if len(kept) == 1 else '', driver))
    if rebound:
        parts.append('%s name%s it without driver=keep: Proxmox VE 9.1 and later rebinds it to plain vfio-pci when '
                     '%s starts; add ,driver=keep to keep %s' % (', '.join(rebound), 's' if len(rebound) == 1 else '',
                                                                 'that VM' if len(rebound) == 1 else 'those VMs', driver))
    if not guests:
        parts.append('on %s, a vfio-pci variant driver: Proxmox VE 9.1 and later rebinds it to plain vfio-pci when a '
                     'VM starts unless the VM\'s hostpci line for it has driver=keep (then Proxmox skips its own reset '
                     'of the device)' % driver)
    return '; '.join(parts)


def vmid_of(name):
    """The VMID a file name in qemu-server/ stands for (``101.conf`` -> ``101``), or None."""
    match = _VMID_FILE.match(name)
    return match.group(1) if match else None
