"""plugin_utils/_backup.py: the manifest's schema, building it, and refusing every damaged bundle.

Bundles are real directories under tmp_path, laid out as the role writes them; each damage case
breaks one good bundle in one way and expects open_bundle to refuse it naming the problem.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os

import pytest
import yaml

from ansible_collections.vfio.passthrough.plugins.plugin_utils._backup import (
    SCHEMA_VERSION, BackupError, backup_candidates, build_manifest, bundle_id, collection_version, entries_digest,
    open_bundle, restore_regeneration, validate_manifest,
)

HOST = 'pve1'
ID = '20260124T101500Z'
TIME = '2026-01-24T10:15:00Z'
GRUB = b'GRUB_DEFAULT=0\nGRUB_CMDLINE_LINUX_DEFAULT="quiet"\n'
MODULES = b'# List of modules\n\xff not UTF-8 survives\n'
FILES = {'/etc/default/grub': (GRUB, 'boot'), '/etc/initramfs-tools/modules': (MODULES, 'initramfs')}
ABSENT = {'/etc/modprobe.d/vfio-passthrough.conf': 'initramfs', '/etc/modules-load.d/vfio-passthrough.conf': 'none'}


def _entry(path):
    content, rebuild = FILES[path]
    return {'path': path, 'state': 'file', 'rebuild': rebuild, 'sha256': hashlib.sha256(content).hexdigest(),
            'mode': '0644', 'owner': 'root', 'group': 'root', 'size': len(content)}


def _manifest():
    files = [_entry(p) for p in FILES] + [{'path': p, 'state': 'absent', 'rebuild': r} for p, r in ABSENT.items()]
    return {
        'schema': SCHEMA_VERSION, 'host': HOST, 'id': ID, 'time': TIME, 'collection': 'vfio.passthrough',
        'version': '0.2.0', 'due': {'cmdline': True, 'vfio': True, 'blacklist': False},
        'count': len(files), 'digest': entries_digest(files), 'files': files,
    }


def _write(bundle, manifest):
    (bundle / 'manifest.yml').write_text(yaml.safe_dump(manifest, sort_keys=False), encoding='utf-8')


@pytest.fixture
def backups(tmp_path):
    """A good bundle, as the role leaves it: files under their absolute paths, manifest, latest."""
    bundle = tmp_path / 'backups' / HOST / ID
    for path, (content, _rebuild) in FILES.items():
        (bundle / path.lstrip('/')).parent.mkdir(parents=True, exist_ok=True)
        (bundle / path.lstrip('/')).write_bytes(content)
    _write(bundle, _manifest())
    (bundle.parent / 'latest').symlink_to(ID)
    return tmp_path / 'backups'


def test_a_good_bundle_opens(backups):
    opened = open_bundle(str(backups), HOST, None)
    assert opened['error'] is None
    assert opened['bundle'] == str(backups / HOST / 'latest')
    assert opened['source'] == str(backups / HOST / ID)
    assert opened['manifest'] == _manifest()
    assert [e['path'] for e in opened['saved']] == list(FILES)
    assert [e['path'] for e in opened['absent']] == list(ABSENT)
    assert open_bundle(str(backups), HOST, ID)['source'] == str(backups / HOST / ID)


@pytest.mark.parametrize('schema', [None, 1], ids=['0.1.0-no-schema-field', 'schema-1'])
def test_a_bundle_without_a_completeness_proof_opens_with_a_warning(backups, schema):
    manifest = _manifest()
    del manifest['schema'], manifest['count'], manifest['digest']
    if schema is not None:
        manifest['schema'] = schema
    # Before schema 2 a lost entry cannot be told: that is what the warning says.
    del manifest['files'][1]
    _write(backups / HOST / ID, manifest)
    (backups / HOST / ID / 'etc/initramfs-tools/modules').unlink()
    opened = open_bundle(str(backups), HOST, ID)
    assert opened['error'] is None
    assert opened['warnings'] == [
        'Bundle %s was written before its manifest carried a proof of completeness (schema 1): its completeness '
        'cannot be checked, so an entry lost from it would go unnoticed and that file would not be restored.'
        % (backups / HOST / ID)]


def test_a_proven_bundle_opens_without_a_warning_and_hands_over_each_files_bytes(backups):
    opened = open_bundle(str(backups), HOST, None)
    assert opened['warnings'] == []
    saved = {e['path']: base64.b64decode(e['content']) for e in opened['entries'] if e['state'] == 'file'}
    assert saved == {path: content for path, (content, _rebuild) in FILES.items()}
    assert [e['path'] for e in opened['entries']] == [e['path'] for e in _manifest()['files']]
    assert all('content' not in e for e in opened['entries'] if e['state'] == 'absent')


PROOF_DAMAGE = [
    ('lost-entry', lambda m: m['files'].pop(3),
     'it lists 3 entries but records 4: entries were lost or added after backup wrote it'),
    ('lost-saved-entry', lambda m: m['files'].pop(1), 'it lists 3 entries but records 4'),
    ('added-entry', lambda m: m['files'].append({'path': '/etc/passwd', 'state': 'absent', 'rebuild': 'none'}),
     'it lists 5 entries but records 4'),
    ('edited-entry', lambda m: m['files'][2].update(rebuild='none'),
     'its entries do not match its digest'),
    ('swapped-lost-and-count', lambda m: (m['files'].pop(3), m.update(count=3)), 'its entries do not match its digest'),
    ('no-count', lambda m: m.pop('count'), 'no field count, which proves a schema 2 manifest whole'),
    ('no-digest', lambda m: m.pop('digest'), 'no field digest, which proves a schema 2 manifest whole'),
    ('count-as-text', lambda m: m.update(count='4'), "field count is '4', not an integer"),
]


@pytest.mark.parametrize('edit, message', [case[1:] for case in PROOF_DAMAGE], ids=[case[0] for case in PROOF_DAMAGE])
def test_a_manifest_that_lost_or_changed_entries_is_told_from_a_whole_one(backups, edit, message):
    _manifest_edit(edit, reprove=False)(backups)
    opened = open_bundle(str(backups), HOST, None)
    assert opened['error'] is not None and message in opened['error'], opened['error']
    assert opened['entries'] == [] and opened['manifest'] is None


def _proven(manifest):
    """``manifest`` with the count and digest backup would write for its entries now."""
    if isinstance(manifest.get('files'), list):
        manifest.update(count=len(manifest['files']), digest=entries_digest(manifest['files']))
    return manifest


def _manifest_edit(edit, reprove=True):
    """Damage: the good manifest, edited; ``reprove`` makes its proof fit, so the check behind it is reached."""
    def damage(backups):
        manifest = _manifest()
        edit(manifest)
        _write(backups / HOST / ID, _proven(manifest) if reprove else manifest)
    return damage


def _set_entry(index, **fields):
    def edit(manifest):
        manifest['files'][index].update(fields)
    return edit


def _drop(field, index=None):
    def edit(manifest):
        del (manifest if index is None else manifest['files'][index])[field]
    return edit


def _in_bundle(path):
    def locate(backups):
        return backups / HOST / ID / path.lstrip('/')
    return locate


def _replace_with_symlink(path, target):
    def damage(backups):
        _in_bundle(path)(backups).unlink()
        _in_bundle(path)(backups).symlink_to(target)
    return damage


def _symlink_directory(backups):
    bundle = backups / HOST / ID
    real = backups / 'elsewhere'
    (bundle / 'etc/default').rename(real)
    (bundle / 'etc/default').symlink_to(real)


def _write_file(path, content=b'x\n'):
    def damage(backups):
        _in_bundle(path)(backups).parent.mkdir(parents=True, exist_ok=True)
        _in_bundle(path)(backups).write_bytes(content)
    return damage


def _raw_manifest(text):
    def damage(backups):
        (backups / HOST / ID / 'manifest.yml').write_text(text, encoding='utf-8')
    return damage


def _relink_latest(target):
    def damage(backups):
        (backups / HOST / 'latest').unlink()
        (backups / HOST / 'latest').symlink_to(target)
    return damage


GRUB_ENTRY = 'files[0] (/etc/default/grub)'

DAMAGE = [
    # the manifest: schema
    ('missing-field', _manifest_edit(_drop('host')), 'is not a restorable manifest for pve1: no field host'),
    ('missing-entry-field', _manifest_edit(_drop('sha256', 0)), GRUB_ENTRY + ' has no field sha256'),
    ('missing-state', _manifest_edit(_drop('state', 0)), GRUB_ENTRY + ' has no field state'),
    ('wrong-type', _manifest_edit(lambda m: m.update(files='/etc/shadow')), "field files is '/etc/shadow', not a list"),
    ('bool-is-not-size', _manifest_edit(_set_entry(0, size=True)), GRUB_ENTRY + ' size is True, not an integer'),
    ('not-a-mapping', _raw_manifest('- just\n- a list\n'), "it is 'list', not a mapping"),
    ('not-yaml', _raw_manifest('host: [unclosed\n'), 'it is not YAML'),
    ('newer-schema', _manifest_edit(lambda m: m.update(schema=SCHEMA_VERSION + 1)),
     'schema %d is not one this collection reads' % (SCHEMA_VERSION + 1)),
    ('wrong-node', _manifest_edit(lambda m: m.update(host='pve2')), 'it was taken on host pve2'),
    ('other-id', _manifest_edit(lambda m: m.update(id='20250101T000000Z')),
     'its id 20250101T000000Z is not the name of its bundle directory %s' % ID),
    ('bad-sha256', _manifest_edit(_set_entry(0, sha256='abc')), GRUB_ENTRY + " sha256 'abc' is not 64 lowercase hex"),
    ('bad-mode', _manifest_edit(_set_entry(0, mode='rw-r--r--')), GRUB_ENTRY + " mode 'rw-r--r--' is not an octal"),
    ('empty-owner', _manifest_edit(_set_entry(0, owner='')), GRUB_ENTRY + " owner '' names no owner"),
    ('negative-gid', _manifest_edit(_set_entry(0, group=-1)), GRUB_ENTRY + ' group -1 names no group'),
    ('unknown-state', _manifest_edit(_set_entry(2, state='deleted')),
     "files[2] (/etc/modprobe.d/vfio-passthrough.conf) state 'deleted' is not one of file, absent"),
    ('unknown-rebuild', _manifest_edit(_set_entry(0, rebuild='grub')),
     GRUB_ENTRY + " rebuild 'grub' is not one of boot, initramfs, none"),
    ('duplicate-path', _manifest_edit(lambda m: m['files'].append(dict(m['files'][0]))),
     'files[4] lists /etc/default/grub a second time'),
    # the manifest: paths that would reach outside the bundle or name another file
    ('dotdot', _manifest_edit(_set_entry(2, path='/etc/../../root/.ssh/authorized_keys')),
     "path '/etc/../../root/.ssh/authorized_keys' is not in normal form"),
    ('dotdot-at-root', _manifest_edit(_set_entry(2, path='/../etc/shadow')), "path '/../etc/shadow' is not in normal form"),
    ('relative', _manifest_edit(_set_entry(2, path='etc/shadow')), "path 'etc/shadow' is not an absolute path"),
    ('double-slash', _manifest_edit(_set_entry(2, path='//etc/shadow')), "path '//etc/shadow' is not in normal form"),
    ('dot', _manifest_edit(_set_entry(2, path='/etc/./shadow')), "path '/etc/./shadow' is not in normal form"),
    ('trailing-slash', _manifest_edit(_set_entry(2, path='/etc/shadow/')), "path '/etc/shadow/' is not in normal form"),
    ('root-itself', _manifest_edit(_set_entry(2, path='/')), "path '/' is not an absolute path of a file"),
    ('nul', _manifest_edit(_set_entry(2, path='/etc/sha\0dow')), 'is not an absolute path of a file'),
    # the bundle against its manifest
    ('altered', _write_file('/etc/default/grub', GRUB + b'GRUB_TIMEOUT=0\n'),
     'does not match its manifest, nothing restored: {bundle}/etc/default/grub has another sha256'),
    ('saved-file-missing', lambda b: _in_bundle('/etc/default/grub')(b).unlink(), '{bundle}/etc/default/grub is missing'),
    ('absent-file-marked-present', _manifest_edit(lambda m: m['files'].__setitem__(2, dict(
        _entry('/etc/default/grub'), path='/etc/modprobe.d/vfio-passthrough.conf'))),
     '{bundle}/etc/modprobe.d/vfio-passthrough.conf is missing'),
    ('present-file-marked-absent', _write_file('/etc/modprobe.d/vfio-passthrough.conf'),
     '{bundle}/etc/modprobe.d/vfio-passthrough.conf is in the bundle, but the manifest marks it absent'),
    ('file-not-in-manifest', _write_file('/etc/shadow'), '{bundle}/etc/shadow is not in the manifest'),
    ('symlink-to-outside', _replace_with_symlink('/etc/default/grub', '/etc/passwd'),
     '{bundle}/etc/default/grub is a symlink, not a saved file'),
    ('symlink-inside', _replace_with_symlink('/etc/default/grub', '../initramfs-tools/modules'),
     '{bundle}/etc/default/grub is a symlink, not a saved file'),
    ('symlinked-directory', _symlink_directory, '{bundle}/etc/default is a symlink, not a saved file'),
    ('manifest-symlink', lambda b: (_raw_manifest('')(b), (b / HOST / ID / 'manifest.yml').unlink(),
                                    (b / HOST / ID / 'manifest.yml').symlink_to(b / 'elsewhere.yml'),
                                    _write_file('/../../elsewhere.yml', b'{}')(b)),
     'is not a restorable manifest for pve1: it is a symlink'),
    # finding the bundle
    ('incomplete', lambda b: (b / HOST / ID / 'manifest.yml').unlink(),
     'No backup bundle for pve1: {latest}/manifest.yml does not exist (the bundle is incomplete'),
    ('latest-escapes', _relink_latest('../../etc'), '{latest} points at ../../etc, not at a bundle name'),
    ('latest-dangling', _relink_latest('20000101T000000Z'),
     'No backup bundle for pve1: no bundle directory {latest}.'),
    ('manifest-is-a-directory', lambda b: ((b / HOST / ID / 'manifest.yml').unlink(), (b / HOST / ID / 'manifest.yml').mkdir()),
     'is not a restorable manifest for pve1: it is a directory, not a regular file'),
    ('manifest-is-a-fifo', lambda b: ((b / HOST / ID / 'manifest.yml').unlink(), os.mkfifo(b / HOST / ID / 'manifest.yml')),
     'is not a restorable manifest for pve1: it is a FIFO, not a regular file'),
    ('saved-file-is-a-fifo', lambda b: (_in_bundle('/etc/default/grub')(b).unlink(),
                                        os.mkfifo(_in_bundle('/etc/default/grub')(b))),
     '{bundle}/etc/default/grub is not a regular file'),
    ('bundle-is-a-file', lambda b: (__import__('shutil').rmtree(b / HOST / ID), (b / HOST / ID).write_text('x')),
     'No backup bundle for pve1: {real} is not a directory.'),
    ('host-dir-is-a-symlink', lambda b: ((b / HOST).rename(b / 'moved'), (b / HOST).symlink_to(b / 'moved')),
     '{hostdir} is a symlink, not the host\'s bundle directory backup wrote'),
]


@pytest.mark.parametrize('damage, message', [case[1:] for case in DAMAGE], ids=[case[0] for case in DAMAGE])
def test_a_damaged_bundle_is_refused_naming_the_problem(backups, damage, message):
    damage(backups)
    before = sorted((str(p), p.is_symlink() or p.read_bytes() if p.is_file() else None) for p in backups.rglob('*'))
    opened = open_bundle(str(backups), HOST, None)
    assert opened['error'] is not None
    latest = str(backups / HOST / 'latest')
    assert message.format(bundle=latest, latest=latest, real=backups / HOST / ID, hostdir=backups / HOST) in opened['error']
    assert opened['saved'] == [] and opened['absent'] == [] and opened['manifest'] is None
    after = sorted((str(p), p.is_symlink() or p.read_bytes() if p.is_file() else None) for p in backups.rglob('*'))
    assert after == before


@pytest.mark.parametrize('backup_dir, host, backup_id, message', [
    ('', HOST, None, 'Set the controller directory holding the bundles: -e pcie_passthrough_backup_dir=DIR'),
    (None, HOST, None, 'Set the controller directory holding the bundles'),
    ('{dir}', HOST, '../../etc', "pcie_passthrough_backup_id=../../etc is neither 'latest' nor a bundle name"),
    ('{dir}', HOST, '/etc', "pcie_passthrough_backup_id=/etc is neither 'latest'"),
    ('{dir}', HOST, '20000101T000000Z',
     'No backup bundle for pve1: no bundle directory {dir}/pve1/20000101T000000Z.'),
    ('{dir}/pve1/' + ID + '/manifest.yml', HOST, None, 'is not a directory.'),
    ('{dir}/nowhere', HOST, None, 'No backup bundle for pve1: pcie_passthrough_backup_dir {dir}/nowhere does not exist.'),
    ('{dir}', '..', None, 'The inventory host name ".." cannot name a bundle directory'),
    ('{dir}', 'pve1/../pve2', None, 'The inventory host name "pve1/../pve2" cannot name a bundle directory'),
    ('{dir}', 'pve2', None, 'No backup bundle for pve2'),
], ids=['no-dir', 'null-dir', 'id-escapes', 'id-absolute', 'unknown-id', 'dir-is-a-file', 'dir-missing', 'host-dotdot',
        'host-slash', 'other-host'])
def test_a_bundle_that_cannot_be_found_is_refused(backups, backup_dir, host, backup_id, message):
    opened = open_bundle(backup_dir and backup_dir.format(dir=backups), host, backup_id)
    assert message.format(dir=backups) in opened['error']


@pytest.mark.parametrize('name', [
    'with space', '-leading-dash', '--check', 'new\nline', os.fsdecode(b'not-utf8-\xff'), 'tab\there', '~tilde', '$HOME',
    '*glob?[x]',
], ids=['space', 'dash', 'double-dash', 'newline', 'non-utf8', 'tab', 'tilde', 'dollar', 'glob'])
def test_a_bundle_opens_however_its_directory_is_named(backups, name):
    renamed = backups.parent / name
    backups.rename(renamed)
    opened = open_bundle(str(renamed), HOST, None)
    assert opened['error'] is None, opened['error']
    assert [e['path'] for e in opened['entries']] == [e['path'] for e in _manifest()['files']]
    # What the result carries is printable UTF-8, whatever bytes the name holds.
    for key in ('bundle', 'source'):
        opened[key].encode('utf-8')
        assert '\n' not in opened[key] and '\t' not in opened[key]


def test_a_bundle_directory_reached_through_a_symlink_opens(backups):
    link = backups.parent / 'link to backups'
    link.symlink_to(backups)
    assert open_bundle(str(link), HOST, None)['error'] is None


@pytest.mark.parametrize('name', ['new\nline', os.fsdecode(b'not-utf8-\xff')], ids=['newline', 'non-utf8'])
def test_a_refusal_names_an_odd_directory_in_printable_utf8(tmp_path, name):
    error = open_bundle(str(tmp_path / name), HOST, None)['error']
    error.encode('utf-8')
    assert '\n' not in error
    assert ('new\\x0aline' if 'line' in name else 'not-utf8-\\xff') in error


def test_an_explicit_id_that_is_a_symlink_is_refused(backups):
    (backups / HOST / '20250101T000000Z').symlink_to(ID)
    assert 'is a symlink, not a bundle directory' in open_bundle(str(backups), HOST, '20250101T000000Z')['error']


def test_every_problem_of_a_manifest_is_named_at_once():
    manifest = _manifest()
    manifest['host'] = 'pve2'
    manifest['files'][0]['sha256'] = 'abc'
    manifest['files'][2]['path'] = '/../etc/shadow'
    problems = validate_manifest(manifest, HOST, ID)
    assert len(problems) == 3, problems


# -- building the manifest -------------------------------------------------------------

def _stat(path, rebuild, content=None, **extra):
    item = {'path': path, 'rebuild': rebuild}
    if content is None:
        return {'item': item, 'stat': {'exists': False}}
    stat = {'exists': True, 'isreg': True, 'checksum': hashlib.sha256(content).hexdigest(), 'mode': '0644',
            'uid': 0, 'gid': 0, 'pw_name': 'root', 'gr_name': 'root', 'size': len(content)}
    return {'item': item, 'stat': dict(stat, **extra)}


def test_build_manifest_describes_each_candidate():
    stats = [_stat(p, r, c) for p, (c, r) in FILES.items()] + [_stat(p, r) for p, r in ABSENT.items()]
    manifest = build_manifest(stats, HOST, TIME, {'cmdline': True, 'vfio': True, 'blacklist': False}, '0.2.0')
    assert manifest == _manifest()
    assert list(manifest) == ['schema', 'host', 'id', 'time', 'collection', 'version', 'due', 'count', 'digest', 'files']
    assert manifest['count'] == len(FILES) + len(ABSENT)
    assert manifest['digest'] == hashlib.sha256(json.dumps(sorted(manifest['files'], key=lambda e: e['path']),
                                                           sort_keys=True, separators=(',', ':')).encode()).hexdigest()


def test_build_manifest_keeps_numeric_owners_without_a_name():
    stat = _stat('/etc/default/grub', 'boot', GRUB, pw_name='', gr_name='', uid=1001, gid=4, mode='0640')
    entry = build_manifest([stat], HOST, TIME, {}, '0.2.0')['files'][0]
    assert (entry['owner'], entry['group'], entry['mode']) == (1001, 4, '0640')


@pytest.mark.parametrize('stats, time, message', [
    ([_stat('/etc/default/grub', 'boot', GRUB, isreg=False, checksum=None)], TIME,
     'cannot save /etc/default/grub: it is not a regular file'),
    ([_stat('etc/default/grub', 'boot', GRUB)], TIME, "path 'etc/default/grub' is not an absolute path"),
    ([_stat('/etc/default/grub', 'grub', GRUB)], TIME, "rebuild 'grub' is not one of"),
    ([], '2026-01-24 10:15:00', "backup time '2026-01-24 10:15:00' is not a UTC time"),
], ids=['directory', 'relative', 'unknown-rebuild', 'bad-time'])
def test_build_manifest_refuses_what_restore_could_not_read(stats, time, message):
    with pytest.raises(BackupError, match=None) as raised:
        build_manifest(stats, HOST, time, {}, '0.2.0')
    assert message in str(raised.value)


def test_a_built_manifest_opens_as_its_bundle(tmp_path):
    stats = [_stat(p, r, c) for p, (c, r) in FILES.items()] + [_stat(p, r) for p, r in ABSENT.items()]
    manifest = build_manifest(stats, HOST, TIME, {'cmdline': True}, '0.2.0')
    bundle = tmp_path / HOST / manifest['id']
    for path, (content, _rebuild) in FILES.items():
        (bundle / path.lstrip('/')).parent.mkdir(parents=True, exist_ok=True)
        (bundle / path.lstrip('/')).write_bytes(content)
    _write(bundle, manifest)
    assert open_bundle(str(tmp_path), HOST, manifest['id'])['manifest'] == manifest


@pytest.mark.parametrize('time, expected', [('2026-01-24T10:15:00Z', '20260124T101500Z'),
                                            ('1999-12-31T23:59:59Z', '19991231T235959Z')])
def test_bundle_id(time, expected):
    assert bundle_id(time) == expected


def test_backup_candidates_tag_each_file_once_in_order():
    candidates = backup_candidates(
        ['/etc/default/grub', '/etc/kernel/cmdline'], '/etc/default/grub.d',
        ['/etc/default/grub.d/zz.cfg', '/etc/default/grub.d/50-local.cfg', '/etc/default/grub.d/sub/x.cfg',
         '/etc/default/grub.d/notes.txt', '/etc/default/other.cfg'],
        ['/etc/modprobe.d/vfio-passthrough.conf', '/etc/initramfs-tools/modules'],
        ['/etc/modules-load.d/vfio-passthrough.conf', '/etc/default/grub'])
    assert candidates == [
        {'path': '/etc/default/grub', 'rebuild': 'boot'},
        {'path': '/etc/kernel/cmdline', 'rebuild': 'boot'},
        {'path': '/etc/default/grub.d/50-local.cfg', 'rebuild': 'boot'},
        {'path': '/etc/default/grub.d/zz.cfg', 'rebuild': 'boot'},
        {'path': '/etc/modules-load.d/vfio-passthrough.conf', 'rebuild': 'none'},
        {'path': '/etc/modprobe.d/vfio-passthrough.conf', 'rebuild': 'initramfs'},
        {'path': '/etc/initramfs-tools/modules', 'rebuild': 'initramfs'},
    ]


@pytest.mark.parametrize('files, expected', [
    ({'MANIFEST.json': json.dumps({'collection_info': {'version': '1.2.3'}}), 'galaxy.yml': 'version: 0.0.1\n'}, '1.2.3'),
    ({'galaxy.yml': 'namespace: vfio\nversion: 0.2.0\n'}, '0.2.0'),
    ({'MANIFEST.json': 'not json', 'galaxy.yml': 'version: 0.2.0\n'}, '0.2.0'),
    ({'galaxy.yml': '- a list\n'}, 'unknown'),
    ({}, 'unknown'),
], ids=['installed', 'checkout', 'broken-manifest', 'broken-galaxy', 'neither'])
def test_collection_version(tmp_path, files, expected):
    for name, text in files.items():
        (tmp_path / name).write_text(text, encoding='utf-8')
    assert collection_version(str(tmp_path)) == expected


def test_the_collections_own_version_is_found():
    root = os.path.join(os.path.dirname(__file__), '..', '..', '..', '..')
    with open(os.path.join(root, 'galaxy.yml'), encoding='utf-8') as handle:
        assert collection_version(root) == yaml.safe_load(handle)['version']


# -- what restore regenerates ------------------------------------------------------------

GRUB_HOST = {'bootloader': 'grub', 'managed_by': None, 'stale_boot_config': False}
PBT_UEFI = {'bootloader': 'systemd-boot', 'managed_by': 'proxmox-boot-tool', 'stale_boot_config': False}
PBT_GRUB = {'bootloader': 'grub', 'managed_by': 'proxmox-boot-tool', 'stale_boot_config': False}
BARE_SYSTEMD_BOOT = {'bootloader': 'systemd-boot', 'managed_by': None, 'stale_boot_config': False}


def _changed(*kinds):
    return [{'path': '/f%d' % i, 'rebuild': kind} for i, kind in enumerate(kinds)]


@pytest.mark.parametrize('changed, detection, stale, names, unrefreshed', [
    (_changed('boot', 'initramfs', 'none'), GRUB_HOST, False, ['update-initramfs -u -k all', 'update-grub'], False),
    (_changed('boot'), GRUB_HOST, False, ['update-grub'], False),
    (_changed('initramfs'), GRUB_HOST, False, ['update-initramfs -u -k all'], False),
    (_changed('none'), GRUB_HOST, False, [], False),
    ([], GRUB_HOST, False, [], False),
    # Not changed by restore, but owed since an earlier run died before regenerating.
    ([], dict(GRUB_HOST, stale_boot_config=True), False, ['update-grub'], False),
    ([], GRUB_HOST, True, ['update-initramfs -u -k all'], False),
    # The initramfs rebuild's post-update hook refreshes the ESPs: no second refresh.
    (_changed('boot', 'initramfs'), PBT_UEFI, False, ['update-initramfs -u -k all'], False),
    (_changed('boot'), PBT_UEFI, False, ['proxmox-boot-tool refresh'], False),
    (_changed('boot'), PBT_GRUB, False, ['proxmox-boot-tool refresh'], False),
    (_changed('boot'), BARE_SYSTEMD_BOOT, False, [], True),
], ids=['grub-all', 'grub-boot', 'grub-initramfs', 'plain-file', 'nothing', 'stale-grub-cfg', 'stale-initramfs',
        'pbt-both', 'pbt-boot', 'pbt-grub-boot', 'systemd-boot-alone'])
def test_restore_regeneration(changed, detection, stale, names, unrefreshed):
    plan = restore_regeneration(changed, detection, stale)
    assert plan['names'] == names
    assert plan['commands'] == [name.split() for name in names]
    assert plan['changed'] == [e['path'] for e in changed]
    assert plan['unrefreshed'] is unrefreshed


def test_restore_regeneration_refuses_an_unknown_boot_loader():
    with pytest.raises(BackupError, match="cannot decide what to regenerate: unknown boot loader 'lilo'"):
        restore_regeneration(_changed('boot'), dict(GRUB_HOST, bootloader='lilo'), False)


def test_backup_candidates_add_every_file_a_dry_run_will_write():
    candidates = backup_candidates(
        ['/etc/default/grub'], '/etc/default/grub.d', [], ['/etc/modprobe.d/vfio-passthrough.conf'], [],
        boot_written=['/etc/default/grub', '/etc/kernel/cmdline'],
        initramfs_written=['/etc/modprobe.d/vfio-passthrough.conf', '/usr/local/sbin/vfio-passthrough-bind'],
        plain_written=['/etc/udev/rules.d/70-vfio-passthrough-sriov.rules', '/usr/local/sbin/vfio-passthrough-sriov'])
    assert candidates == [
        {'path': '/etc/default/grub', 'rebuild': 'boot'},
        {'path': '/etc/modprobe.d/vfio-passthrough.conf', 'rebuild': 'initramfs'},
        {'path': '/etc/kernel/cmdline', 'rebuild': 'boot'},
        {'path': '/usr/local/sbin/vfio-passthrough-bind', 'rebuild': 'initramfs'},
        # sriov_vfs' udev rule and script: putting them back regenerates nothing (udev reads them at boot).
        {'path': '/etc/udev/rules.d/70-vfio-passthrough-sriov.rules', 'rebuild': 'none'},
        {'path': '/usr/local/sbin/vfio-passthrough-sriov', 'rebuild': 'none'},
    ]
