"""The bundle the role saved before its first write, then playbooks/restore.yml putting it back.

Runs after check, converge and idempotence. The bundle tests read the controller's bundle and
the originals prepare.yml copied to /root/original (which no run touches); the restore tests
share one fixture that runs the real restore playbook (check mode, real, again) and keeps
what the host looked like before it.
"""

from __future__ import annotations

import hashlib
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from vfio_testinfra import assert_grub_cfg_kernel_args, call_log, file_bytes

HOST = '%s-backup-restore' % os.environ['VFIO_MOLECULE_PREFIX']
EPHEMERAL = Path(os.environ['MOLECULE_EPHEMERAL_DIRECTORY'])
BACKUPS = EPHEMERAL / 'backups'
PROJECT = Path(os.environ['MOLECULE_PROJECT_DIRECTORY'])
ID_PATTERN = re.compile(r'^[0-9]{8}T[0-9]{6}Z$')

# What prepare.yml left on the host, as the manifest must describe it.
SAVED = {
    '/etc/default/grub': ('0640', 'root', 'adm', 'boot'),
    '/etc/default/grub.d/50-local.cfg': ('0644', 'root', 'root', 'boot'),
    # Debian's grub2-common ships this one.
    '/etc/default/grub.d/init-select.cfg': ('0644', 'root', 'root', 'boot'),
    '/etc/modprobe.d/vfio-passthrough.conf': ('0600', 'root', 'root', 'initramfs'),
    '/etc/initramfs-tools/modules': ('0644', 'root', 'root', 'initramfs'),
}
ABSENT = {
    '/etc/kernel/cmdline': 'boot',
    '/etc/modules-load.d/vfio-passthrough.conf': 'none',
    '/etc/modprobe.d/vfio-passthrough-blacklist.conf': 'initramfs',
    '/etc/modprobe.d/vfio-passthrough-address.conf': 'initramfs',
    '/etc/initramfs-tools/hooks/vfio-passthrough': 'initramfs',
    '/usr/local/sbin/vfio-passthrough-bind': 'initramfs',
}
# Files the converge run created (the blacklist, the modules-load.d list): restore deletes them.
CREATED = ('/etc/modprobe.d/vfio-passthrough-blacklist.conf', '/etc/modules-load.d/vfio-passthrough.conf')


def _bundle() -> Path:
    ids = [p.name for p in (BACKUPS / HOST).iterdir() if p.name != 'latest']
    assert len(ids) == 1, 'expected one bundle, found %s' % ids
    return BACKUPS / HOST / ids[0]


def _manifest() -> dict:
    return yaml.safe_load((_bundle() / 'manifest.yml').read_text(encoding='utf-8'))


def _etc_lines(snapshot: str) -> list[str]:
    """The /etc lines of a snapshot.yml snapshot (find lines, then sha256sum lines)."""
    kept = []
    for line in snapshot.splitlines():
        digest = re.match(r'^[0-9a-f]{64}  (.*)$', line)
        path = digest.group(1) if digest else line.split(' ', 3)[3].split(' -> ')[0]
        if path == '/etc' or path.startswith('/etc/'):
            kept.append(line)
    return kept


def _snapshot_etc(host) -> list[str]:
    # The commands of molecule/shared/tasks/snapshot.yml, for /etc alone.
    script = ("set -euo pipefail; { find /etc -xdev -printf '%y %m %u:%g %p -> %l\\n' | LC_ALL=C sort; "
              "find /etc -xdev -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum --; }")
    out = host.run('bash -c %s' % shlex.quote(script))
    assert out.rc == 0, out.stderr
    return _etc_lines(out.stdout)


def _restore(*args: str, backup_dir: str = 'backups') -> subprocess.CompletedProcess:
    """Run the restore playbook as an administrator would, from the directory holding backups/."""
    playbook = Path(sys.executable).with_name('ansible-playbook')
    cmd = [str(playbook) if playbook.exists() else 'ansible-playbook',
           '-i', str(Path(os.environ['MOLECULE_INVENTORY_FILE']).parent), 'vfio.passthrough.restore',
           '-e', 'pcie_passthrough_backup_dir=%s' % backup_dir, *args]
    return subprocess.run(cmd, cwd=EPHEMERAL, capture_output=True, text=True, check=False, timeout=600)


def _recap_changed(run: subprocess.CompletedProcess) -> int:
    found = re.search(r'^%s\s*:.*\bchanged=(\d+)' % re.escape(HOST), run.stdout, re.MULTILINE)
    assert found, run.stdout
    return int(found.group(1))


# -- the bundle ---------------------------------------------------------------

def test_one_bundle_and_latest_points_at_it():
    # The check run wrote none (side_effect.yml) and the idempotence run had nothing due.
    bundle = _bundle()
    assert ID_PATTERN.match(bundle.name), bundle.name
    latest = BACKUPS / HOST / 'latest'
    assert latest.is_symlink() and os.readlink(latest) == bundle.name


@pytest.mark.parametrize('path', sorted(SAVED))
def test_bundle_holds_the_original_bytes_under_the_absolute_path(host, path):
    assert (_bundle() / path.lstrip('/')).read_bytes() == file_bytes(host, '/root/original' + path)


def test_bundle_holds_nothing_else():
    files = sorted('/' + str(p.relative_to(_bundle())) for p in _bundle().rglob('*') if p.is_file())
    assert files == sorted(list(SAVED) + ['/manifest.yml'])


def test_manifest_header():
    manifest = _manifest()
    version = yaml.safe_load((PROJECT / 'galaxy.yml').read_text(encoding='utf-8'))['version']
    assert manifest['host'] == HOST
    assert manifest['id'] == _bundle().name
    assert manifest['time'] == '%s-%s-%sT%s:%s:%sZ' % re.match(
        r'(\d{4})(\d\d)(\d\d)T(\d\d)(\d\d)(\d\d)Z', manifest['id']).groups()
    assert manifest['collection'] == 'vfio.passthrough' and manifest['version'] == version
    assert manifest['due'] == {'cmdline': True, 'vfio': True, 'blacklist': True, 'bind': False, 'sriov': False}


def test_manifest_describes_each_saved_file(host):
    entries = {e['path']: e for e in _manifest()['files'] if e['state'] == 'file'}
    assert sorted(entries) == sorted(SAVED)
    for path, (mode, owner, group, rebuild) in SAVED.items():
        original = file_bytes(host, '/root/original' + path)
        assert entries[path] == {
            'path': path, 'state': 'file', 'rebuild': rebuild, 'mode': mode, 'owner': owner, 'group': group,
            'size': len(original), 'sha256': hashlib.sha256(original).hexdigest(),
        }


def test_manifest_lists_the_files_a_run_may_create_as_absent():
    entries = {e['path']: e for e in _manifest()['files'] if e['state'] == 'absent'}
    assert entries == {path: {'path': path, 'state': 'absent', 'rebuild': rebuild} for path, rebuild in ABSENT.items()}


# -- refusals -------------------------------------------------------------------

@pytest.mark.parametrize('backup_id, message', [
    ('20000101T000000Z', 'No backup bundle for %s: no bundle directory ' % HOST),
    ('../../etc', 'pcie_passthrough_backup_id=../../etc is neither'),
])
def test_restore_refuses_a_missing_or_bad_bundle_and_changes_nothing(host, backup_id, message):
    before = _snapshot_etc(host)
    run = _restore('-e', 'pcie_passthrough_backup_id=%s' % backup_id)
    assert run.returncode != 0
    output = run.stdout + run.stderr
    assert message in ' '.join(output.split()), output
    assert _snapshot_etc(host) == before


def _tamper_altered(bundle: Path) -> None:
    grub = bundle / 'etc/default/grub'
    grub.write_bytes(grub.read_bytes() + b'GRUB_TIMEOUT=0\n')


def _tamper_incomplete(bundle: Path) -> None:
    (bundle / 'manifest.yml').unlink()


@pytest.mark.parametrize('tamper, message', [
    (_tamper_altered, 'does not match its manifest, nothing restored: {bundle}/etc/default/grub has another sha256'),
    (_tamper_incomplete, '{bundle}/manifest.yml does not exist (the bundle is incomplete'),
], ids=['altered', 'incomplete'])
def test_restore_refuses_a_damaged_bundle_and_changes_nothing(host, tmp_path, tamper, message):
    bundle = tmp_path / HOST / _bundle().name
    shutil.copytree(_bundle(), bundle, symlinks=True)
    tamper(bundle)
    before = _snapshot_etc(host)
    run = _restore('-e', 'pcie_passthrough_backup_id=%s' % bundle.name, backup_dir=str(tmp_path))
    assert run.returncode != 0
    output = ' '.join((run.stdout + run.stderr).split())
    assert message.format(bundle=bundle) in output, output
    assert _snapshot_etc(host) == before


# -- the restore ------------------------------------------------------------------

@pytest.fixture(scope='module')
def restored(host):
    converged = file_bytes(host, '/etc/default/grub').decode()
    assert 'GRUB_CMDLINE_LINUX_DEFAULT="quiet intel_iommu=on iommu=pt"\n' in converged
    for path in CREATED:
        assert host.file(path).exists, path
    # Drift since the backup: restore must put the mode and owner back too.
    assert host.run('chmod 0644 /etc/default/grub && chgrp root /etc/default/grub').rc == 0
    calls_converged = call_log(host, '/var/log/update-initramfs.calls')

    before_check = _snapshot_etc(host)
    check = _restore('--check', '--diff')
    after_check = _snapshot_etc(host)
    calls_after_check = call_log(host, '/var/log/update-initramfs.calls')

    real = _restore('--diff')
    again = _restore()
    return {
        'calls_converged': calls_converged, 'check': check, 'check_changed_nothing': before_check == after_check,
        'calls_after_check': calls_after_check, 'real': real, 'again': again,
    }


def test_check_run_changes_nothing_and_shows_the_diff(host, restored):
    check = restored['check']
    assert check.returncode == 0, check.stdout + check.stderr
    assert restored['check_changed_nothing']
    assert restored['calls_after_check'] == restored['calls_converged']
    assert '-GRUB_CMDLINE_LINUX_DEFAULT="quiet intel_iommu=on iommu=pt"' in check.stdout
    assert '+GRUB_CMDLINE_LINUX_DEFAULT="quiet"' in check.stdout
    message = ' '.join(check.stdout.split())
    assert 'Check mode, nothing written: would restore %s' % HOST in message
    assert 'Would regenerate: update-initramfs -u -k all, update-grub.' in message
    assert 'REBOOT REQUIRED' not in message


def test_restore_reports_and_asks_for_a_reboot(restored):
    real = restored['real']
    assert real.returncode == 0, real.stdout + real.stderr
    message = ' '.join(real.stdout.split())
    assert 'Regenerated: update-initramfs -u -k all, update-grub.' in message
    assert 'REBOOT REQUIRED on %s' % HOST in message


def test_restore_puts_etc_back_byte_for_byte_with_modes_and_owners(host, restored):
    assert restored['real'].returncode == 0
    expected = _etc_lines(file_bytes(host, '/root/before.sha256').decode())
    assert _snapshot_etc(host) == expected


@pytest.mark.parametrize('path', CREATED)
def test_restore_removes_the_files_the_run_created(host, restored, path):
    assert restored['real'].returncode == 0
    assert not host.file(path).exists


def test_restore_regenerated_grub_cfg_without_the_arguments(host, restored):
    assert restored['real'].returncode == 0
    assert_grub_cfg_kernel_args(host, 'quiet')
    # The drop-in, saved and restored, still applies.
    assert 'set timeout=3' in file_bytes(host, '/boot/grub/grub.cfg').decode()


def test_restore_rebuilt_the_initramfs_once(host, restored):
    assert restored['calls_converged'] == [['-u', '-k', 'all']]
    assert call_log(host, '/var/log/update-initramfs.calls') == [['-u', '-k', 'all']] * 2


def test_second_restore_changes_nothing(restored):
    again = restored['again']
    assert again.returncode == 0, again.stdout + again.stderr
    assert _recap_changed(again) == 0
    assert 'every file already matched' in again.stdout
