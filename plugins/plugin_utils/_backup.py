# -*- coding: utf-8 -*-
# Copyright: contributors to vfio.passthrough
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Backup bundles of the pcie_passthrough role, on the controller.

A bundle is ``<backup_dir>/<host>/<id>/``: every file the role may write, saved under its
absolute path (``<id>/etc/default/grub``), and ``manifest.yml``, written last, describing
them. ``<host>/latest`` is a symlink to the newest bundle. The role builds the manifest with
:func:`build_manifest`; playbooks/restore.yml opens a bundle with :func:`open_bundle`, which
refuses, before anything is restored, every bundle it cannot trust; :func:`restore_regeneration`
turns what restore changed into commands through module_utils/boot/_regeneration.py.
"""

from __future__ import annotations

import base64
import errno
import hashlib
import json
import os
import re
import stat

import yaml

from ansible_collections.vfio.passthrough.plugins.module_utils.boot._regeneration import regeneration
from ansible_collections.vfio.passthrough.plugins.module_utils.files._restore import MODE, path_problem

# The manifest's schema, defined here only. Bump SCHEMA_VERSION when a field changes meaning;
# restore refuses a manifest of a newer schema instead of guessing.
# 2: the header carries ``count`` and ``digest`` (entries_digest), which prove the entry list whole.
SCHEMA_VERSION = 2
MANIFEST_NAME = 'manifest.yml'
LATEST = 'latest'
ID_PATTERN = re.compile(r'\A[0-9]{8}T[0-9]{6}Z\Z')
TIME_PATTERN = re.compile(r'\A([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})Z\Z')
# absent: the file did not exist at backup time; restore deletes it (the run may create it).
STATES = ('file', 'absent')
# What must run after the file is put back: the boot loader's configuration, the initramfs, nothing.
REBUILDS = ('boot', 'initramfs', 'none')
HEADER_FIELDS = {
    'schema': int,
    'host': str,
    'id': str,
    'time': str,
    'collection': str,
    'version': str,
    'due': dict,
    'files': list,
}
# What proves a manifest whole, from schema 2 on: one that lost entries no longer matches them.
PROOF_FIELDS = {'count': int, 'digest': str}
ENTRY_FIELDS = {'path': str, 'state': str, 'rebuild': str}
SAVED_FIELDS = {'sha256': str, 'mode': str, 'owner': (str, int), 'group': (str, int), 'size': int}
_SHA256 = re.compile(r'\A[0-9a-f]{64}\Z')
_HOST = re.compile(r'\A[A-Za-z0-9_@:.+-]+\Z')
_TYPE_NAMES = {str: 'a string', int: 'an integer', dict: 'a mapping', list: 'a list'}


class BackupError(Exception):
    """Bad input to the bundle functions; the message names the value and why."""


def bundle_id(time):
    """The bundle's directory name for its UTC time: 2026-01-24T10:15:00Z -> 20260124T101500Z."""
    found = TIME_PATTERN.match(time) if isinstance(time, str) else None
    if not found:
        raise BackupError('backup time %r is not a UTC time like 2026-01-24T10:15:00Z' % (time,))
    return '%s%s%sT%s%s%sZ' % found.groups()


def collection_version(collection_root):
    """The collection's version: MANIFEST.json of an installed copy, else galaxy.yml of a checkout."""
    try:
        with open(os.path.join(collection_root, 'MANIFEST.json'), encoding='utf-8') as handle:
            version = (json.load(handle).get('collection_info') or {}).get('version')
    except (OSError, ValueError, AttributeError):
        version = None
    if not version:
        try:
            with open(os.path.join(collection_root, 'galaxy.yml'), encoding='utf-8') as handle:
                version = (yaml.safe_load(handle) or {}).get('version')
        except (OSError, yaml.YAMLError, AttributeError):
            version = None
    return str(version) if version else 'unknown'


def backup_candidates(boot_files, grub_dropin_dir, found_dropins, initramfs_inputs, other_files,
                      boot_written=(), initramfs_written=(), plain_written=()):
    """Every file the role may write, in order, each with what restoring it regenerates.

    ``found_dropins``: paths that exist below ``grub_dropin_dir`` (the role finds them); only
    its direct ``*.cfg`` children count, as grub-mkconfig sources only those.
    ``boot_written``, ``initramfs_written``, ``plain_written``: the ``files_changed`` of the modules'
    dry runs (kernel_cmdline; vfio_modules, driver_blacklist, vfio_address_binding; sriov_vfs, whose
    udev rule and script need no regeneration). Every file a module says it will write is in the
    bundle, also one the lists above do not name.
    """
    prefix = grub_dropin_dir.rstrip('/') + '/'
    dropins = sorted(p for p in found_dropins
                     if p.startswith(prefix) and '/' not in p[len(prefix):] and p.endswith('.cfg'))
    kinds = [(boot_files, 'boot'), (dropins, 'boot'), (other_files, 'none'), (initramfs_inputs, 'initramfs'),
             (boot_written, 'boot'), (initramfs_written, 'initramfs'), (plain_written, 'none')]
    candidates, seen = [], set()
    for paths, kind in kinds:
        for path in paths:
            if path not in seen:
                seen.add(path)
                candidates.append({'path': path, 'rebuild': kind})
    return candidates


def build_manifest(stat_results, host, time, due, version):
    """The manifest of a bundle from the role's stat of each candidate (loop over backup_candidates).

    ``stat_results``: the ``results`` of ``ansible.builtin.stat`` (sha256 checksum, following
    symlinks as fetch does), each with its ``item`` ({path, rebuild}).
    """
    files = []
    for result in stat_results:
        item, st = result.get('item') or {}, result.get('stat') or {}
        entry = {'path': item.get('path'), 'state': 'absent', 'rebuild': item.get('rebuild')}
        if st.get('exists'):
            if not st.get('isreg', True) or not st.get('checksum'):
                raise BackupError('cannot save %s: it is not a regular file' % entry['path'])
            entry.update(state='file', sha256=st['checksum'], mode=st['mode'],
                         owner=st.get('pw_name') or st['uid'], group=st.get('gr_name') or st['gid'],
                         size=st['size'])
        files.append(entry)
    manifest = {'schema': SCHEMA_VERSION, 'host': host, 'id': bundle_id(time), 'time': time,
                'collection': 'vfio.passthrough', 'version': version, 'due': due,
                'count': len(files), 'digest': entries_digest(files), 'files': files}
    problems = validate_manifest(manifest, host, manifest['id'])
    if problems:
        raise BackupError('the backup manifest for %s would be invalid: %s' % (host, '; '.join(problems)))
    return manifest


def entries_digest(files):
    """sha256 over the entry list sorted by path, in one canonical JSON form (any YAML round trip keeps it).

    With ``count`` it proves a manifest whole: an entry dropped, added or edited after backup
    wrote the manifest changes the digest.
    """
    ordered = sorted(files, key=lambda entry: json.dumps(entry.get('path') if isinstance(entry, dict) else entry))
    text = json.dumps(ordered, sort_keys=True, separators=(',', ':'), ensure_ascii=True)
    return hashlib.sha256(text.encode('ascii')).hexdigest()


def _field_problems(manifest, fields, why_needed=''):
    """A missing or mistyped field of ``fields`` ({name: type}) in ``manifest``, each named."""
    problems = []
    for field, expected in fields.items():
        if field not in manifest:
            problems.append('no field %s%s' % (field, why_needed))
            continue
        problem = _type_problem('field %s' % field, manifest[field], expected)
        if problem:
            problems.append(problem)
    return problems


def _proof_problems(manifest):
    """Why a schema-2 manifest is not provably whole; a schema-1 one carries no proof (the caller warns)."""
    problems = _field_problems(manifest, PROOF_FIELDS, ', which proves a schema %d manifest whole' % manifest['schema'])
    if problems:
        return problems
    if manifest['count'] != len(manifest['files']):
        problems.append('it lists %d entries but records %d: entries were lost or added after backup wrote it'
                        % (len(manifest['files']), manifest['count']))
    if manifest['digest'] != entries_digest(manifest['files']):
        problems.append('its entries do not match its digest %s: the entry list was changed after backup wrote it'
                        % manifest['digest'])
    return problems


def _type_problem(where, value, expected):
    types = expected if isinstance(expected, tuple) else (expected,)
    if isinstance(value, bool) or not isinstance(value, types):
        names = ' or '.join(_TYPE_NAMES[t] for t in types)
        return '%s is %r, not %s' % (where, value, names)
    return None


def _entry_problems(index, entry):
    if not isinstance(entry, dict):
        return ['files[%d] is %r, not a mapping' % (index, entry)]
    where = 'files[%d] (%s)' % (index, entry.get('path', 'no path'))
    problems = []
    fields = dict(ENTRY_FIELDS, **SAVED_FIELDS) if entry.get('state') == 'file' else ENTRY_FIELDS
    for field, expected in fields.items():
        if field not in entry:
            problems.append('%s has no field %s' % (where, field))
            continue
        problem = _type_problem('%s %s' % (where, field), entry[field], expected)
        if problem:
            problems.append(problem)
    if problems:
        return problems
    bad_path = path_problem(entry['path'])
    if bad_path:
        problems.append('%s: %s' % (where, bad_path))
    if entry['state'] not in STATES:
        problems.append('%s state %r is not one of %s' % (where, entry['state'], ', '.join(STATES)))
    if entry['rebuild'] not in REBUILDS:
        problems.append('%s rebuild %r is not one of %s' % (where, entry['rebuild'], ', '.join(REBUILDS)))
    if entry['state'] == 'file':
        if not _SHA256.match(entry['sha256']):
            problems.append('%s sha256 %r is not 64 lowercase hex digits' % (where, entry['sha256']))
        if not MODE.match(entry['mode']):
            problems.append('%s mode %r is not an octal mode like 0644' % (where, entry['mode']))
        for field in ('owner', 'group'):
            if entry[field] == '' or (isinstance(entry[field], int) and entry[field] < 0):
                problems.append('%s %s %r names no %s' % (where, field, entry[field], field))
        if entry['size'] < 0:
            problems.append('%s size %r is negative' % (where, entry['size']))
    return problems


def validate_manifest(manifest, host, name):
    """Every way ``manifest`` is not one to restore on ``host`` from the bundle directory ``name``."""
    if not isinstance(manifest, dict):
        return ['it is %r, not a mapping' % (type(manifest).__name__,)]
    # Bundles of 0.1.0 carry no schema field; their layout is schema 1.
    manifest = dict({'schema': 1}, **manifest)
    problems = _field_problems(manifest, HEADER_FIELDS)
    if problems:
        return problems
    if not 1 <= manifest['schema'] <= SCHEMA_VERSION:
        problems.append('schema %d is not one this collection reads (1 to %d)' % (manifest['schema'], SCHEMA_VERSION))
    if manifest['host'] != host:
        problems.append('it was taken on host %s' % manifest['host'])
    if manifest['id'] != name:
        problems.append('its id %s is not the name of its bundle directory %s' % (manifest['id'], name))
    if manifest['schema'] >= 2 and not problems:
        problems.extend(_proof_problems(manifest))
    seen = set()
    for index, entry in enumerate(manifest['files']):
        problems.extend(_entry_problems(index, entry))
        path = entry.get('path') if isinstance(entry, dict) else None
        if path in seen:
            problems.append('files[%d] lists %s a second time' % (index, path))
        seen.add(path)
    return problems


def shown(path):
    """``path`` as a message can carry it: undecodable bytes and control characters as ``\\xNN``.

    A result with a lone surrogate (a non-UTF-8 name) or a raw newline would break the
    controller's output or make one name read as two.
    """
    text = os.fsencode(str(path)).decode('utf-8', 'backslashreplace')
    return ''.join('\\x%02x' % ord(char) if ord(char) < 0x20 or ord(char) == 0x7f else char for char in text)


def _read_regular(path):
    """The bytes of the regular file ``path``, not following a final symlink and never blocking on a FIFO.

    Raises OSError (ELOOP for a symlink) or ValueError naming what ``path`` is instead.
    """
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, 'O_CLOEXEC', 0))
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise ValueError('a directory' if stat.S_ISDIR(mode) else 'a FIFO' if stat.S_ISFIFO(mode)
                             else 'a socket' if stat.S_ISSOCK(mode) else 'a device')
        chunks = []
        while True:
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                return b''.join(chunks)
            chunks.append(chunk)
    finally:
        os.close(fd)


def _read_problem(where, exc):
    if isinstance(exc, ValueError):
        return '%s is %s, not a regular file' % (where, exc)
    if getattr(exc, 'errno', None) == errno.ELOOP:
        return '%s is a symlink, not a file' % where
    return '%s cannot be read: %s' % (where, exc.strerror or exc)


def check_bundle(bundle, name, manifest, contents=None):
    """Every way the bundle directory ``bundle`` does not hold exactly its (valid) manifest's files.

    ``name`` is the bundle's path as messages show it. Nothing below the bundle is followed:
    a symlink there could make restore read any file on the controller. ``contents``, a dict,
    receives each saved file's bytes (read once, checked against its sha256).
    """
    contents = {} if contents is None else contents
    saved = {e['path']: e for e in manifest['files'] if e['state'] == 'file'}
    absent = {e['path'] for e in manifest['files'] if e['state'] == 'absent'}
    problems, found = [], set()

    def unreadable(exc):
        problems.append('%s cannot be read: %s' % (shown(exc.filename or bundle), exc.strerror or exc))

    for top, dirs, names in os.walk(bundle, onerror=unreadable):
        for entry_name in sorted(dirs + names):
            full = os.path.join(top, entry_name)
            rel = '/' + os.path.relpath(full, bundle)
            where = shown(name + rel)
            mode = os.lstat(full).st_mode
            if stat.S_ISLNK(mode):
                problems.append('%s is a symlink, not a saved file' % where)
            elif stat.S_ISREG(mode) and rel != '/' + MANIFEST_NAME:
                found.add(rel)
                if rel in absent:
                    problems.append('%s is in the bundle, but the manifest marks it absent' % where)
                elif rel not in saved:
                    problems.append('%s is not in the manifest' % where)
            elif not stat.S_ISREG(mode) and not stat.S_ISDIR(mode):
                problems.append('%s is not a regular file' % where)
        dirs[:] = sorted(d for d in dirs if not os.path.islink(os.path.join(top, d)))
    for path, entry in saved.items():
        where = shown(name + path)
        if path not in found:
            problems.append('%s is missing' % where)
            continue
        try:
            data = _read_regular(bundle + path)
        except (OSError, ValueError) as exc:
            problems.append(_read_problem(where, exc))
            continue
        if hashlib.sha256(data).hexdigest() != entry['sha256']:
            problems.append('%s has another sha256' % where)
        else:
            contents[path] = data
    return problems


def _bundle_dir(host_dir, backup_id):
    """(directory name, error) of the bundle ``backup_id`` names below ``host_dir``; 'latest' resolved one step."""
    link = os.path.join(host_dir, backup_id)
    if backup_id != LATEST:
        if os.path.islink(link):
            return None, '%s is a symlink, not a bundle directory' % shown(link)
        return backup_id, None
    if not os.path.islink(link):
        return (LATEST, None) if os.path.isdir(link) else (None, None)
    target = os.readlink(link)
    if not ID_PATTERN.match(target):
        return None, '%s points at %s, not at a bundle name like 20260124T101500Z' % (shown(link), shown(target))
    return target, None


def open_bundle(backup_dir, host, backup_id):
    """Find, read and check the bundle restore.yml is asked for; refuse anything it cannot trust.

    Returns ``error`` (None, or the one message naming every problem found at the first stage
    that failed) and, when None: ``bundle`` (the path as asked, for messages), ``source`` (the
    directory checked, ``latest`` resolved), ``manifest``, ``saved`` and ``absent`` (its entries
    by state), ``entries`` (every entry, a saved one with its ``content`` in base64: what
    module restore_files writes) and ``warnings`` (a bundle whose completeness cannot be proven).
    Every path in a message is shown with :func:`shown`.
    """
    backup_id = str(backup_id or LATEST)
    result = {'error': None, 'bundle': None, 'source': None, 'manifest': None, 'saved': [], 'absent': [],
              'entries': [], 'warnings': []}
    if backup_dir is None or backup_dir == '' or isinstance(backup_dir, (bool, dict, list)):
        return dict(result, error='Set the controller directory holding the bundles: -e pcie_passthrough_backup_dir=DIR')
    backup_dir = str(backup_dir)
    if not isinstance(host, str) or not _HOST.match(host) or host in ('.', '..'):
        return dict(result, error='The inventory host name %s cannot name a bundle directory below %s'
                    % (json.dumps(host), shown(backup_dir)))
    if backup_id != LATEST and not ID_PATTERN.match(backup_id):
        return dict(result, error="pcie_passthrough_backup_id=%s is neither 'latest' nor a bundle name like "
                    '20260124T101500Z (the directory names under %s/%s/)'
                    % (shown(backup_id), shown(backup_dir), host))
    if '\0' in backup_dir:
        return dict(result, error='pcie_passthrough_backup_dir %s holds a NUL byte, which no path can'
                    % shown(backup_dir))
    # As backup.yml names it: '~' expanded, symlinks in the directory given resolved (backup wrote there).
    top = os.path.realpath(os.path.expanduser(backup_dir))
    if not os.path.isdir(top):
        what = 'does not exist' if not os.path.lexists(top) else 'is not a directory'
        return dict(result, error='No backup bundle for %s: pcie_passthrough_backup_dir %s %s.'
                    % (host, shown(backup_dir), what))
    host_dir = os.path.join(top, host)
    asked = os.path.join(host_dir, backup_id)
    result['bundle'] = shown(asked)
    if os.path.islink(host_dir):
        return dict(result, error='%s is a symlink, not the host\'s bundle directory backup wrote' % shown(host_dir))
    name, error = _bundle_dir(host_dir, backup_id)
    if error:
        return dict(result, error=error)
    bundle = os.path.join(host_dir, name or backup_id)
    manifest_path = os.path.join(bundle, MANIFEST_NAME)
    if name is None or not os.path.lexists(bundle):
        return dict(result, error='No backup bundle for %s: no bundle directory %s.' % (host, shown(asked)))
    if os.path.islink(bundle) or not os.path.isdir(bundle):
        return dict(result, error='No backup bundle for %s: %s is not a directory.' % (host, shown(bundle)))
    if not os.path.lexists(manifest_path):
        return dict(result, error='No backup bundle for %s: %s does not exist (the bundle is incomplete: the '
                    'manifest is written last).' % (host, shown(os.path.join(asked, MANIFEST_NAME))))
    refused = '%s is not a restorable manifest for %s: ' % (shown(os.path.join(asked, MANIFEST_NAME)), host)
    try:
        manifest = yaml.safe_load(_read_regular(manifest_path).decode('utf-8'))
    except (OSError, ValueError) as exc:
        if isinstance(exc, (UnicodeDecodeError, yaml.YAMLError)):
            return dict(result, error=refused + 'it is not YAML in UTF-8 (%s)' % ' '.join(str(exc).split()))
        return dict(result, error=refused + _read_problem('it', exc))
    except yaml.YAMLError as exc:
        return dict(result, error=refused + 'it is not YAML (%s)' % ' '.join(str(exc).split()))
    problems = validate_manifest(manifest, host, name if name != LATEST else backup_id)
    if problems:
        return dict(result, error=refused + '; '.join(problems))
    contents = {}
    problems = check_bundle(bundle, asked, manifest, contents)
    if problems:
        return dict(result, error='Bundle %s does not match its manifest, nothing restored: %s'
                    % (shown(asked), ', '.join(problems)))
    warnings = []
    if manifest.get('schema', 1) < 2:
        warnings.append('Bundle %s was written before its manifest carried a proof of completeness (schema %d): '
                        'its completeness cannot be checked, so an entry lost from it would go unnoticed and that '
                        'file would not be restored.' % (shown(asked), manifest.get('schema', 1)))
    entries = [dict(e, content=base64.b64encode(contents[e['path']]).decode('ascii')) if e['state'] == 'file'
               else dict(e) for e in manifest['files']]
    return dict(result, source=shown(bundle), manifest=manifest, entries=entries, warnings=warnings,
                saved=[e for e in manifest['files'] if e['state'] == 'file'],
                absent=[e for e in manifest['files'] if e['state'] == 'absent'])


def restore_regeneration(changed, detection, initramfs_stale):
    """What to run after restore changed the files ``changed`` (their manifest entries).

    ``detection``: kernel_cmdline's check-mode result (bootloader, managed_by, stale_boot_config);
    ``initramfs_stale``: initramfs_info found the images older than an input. Returns
    module_utils/boot/_regeneration.py's plan, plus ``changed`` (the paths) and ``names`` (each
    command as one string, for messages).
    """
    boot = bool(detection.get('stale_boot_config')) or any(e['rebuild'] == 'boot' for e in changed)
    initramfs = bool(initramfs_stale) or any(e['rebuild'] == 'initramfs' for e in changed)
    try:
        plan = regeneration(boot, initramfs, detection.get('bootloader'), detection.get('managed_by'))
    except ValueError as exc:
        raise BackupError('cannot decide what to regenerate: %s' % exc) from exc
    return dict(plan, changed=[e['path'] for e in changed], names=[' '.join(argv) for argv in plan['commands']],
                boot_changed=boot)
