"""Helpers for testinfra tests of container scenarios.

Scenario tests import it by name: molecule/conftest.py puts this directory on
``sys.path``. Assertions more than one scenario makes live here, once.

Why ``file_bytes`` exists: molecule runs testinfra through Ansible (the
``containers.podman.podman`` connection is not one testinfra drives itself),
and Ansible's command module strips trailing newlines from stdout. So
``host.file(p).content`` cannot tell ``b"x"`` from ``b"x\\n"``, nor keep
non-UTF-8 bytes. Reading the file base64-encoded and decoding it here gives
the exact bytes.
"""

from __future__ import annotations

import base64
import json
import os
import shlex
from pathlib import Path


def file_bytes(host, path: str) -> bytes:
    """Return the exact bytes of ``path`` on ``host`` (fails if unreadable)."""
    out = host.run('base64 -w0 -- %s' % shlex.quote(path))
    assert out.rc == 0, 'cannot read %s: %s' % (path, out.stderr)
    return base64.b64decode(out.stdout.strip())


def assert_file_bytes(host, path: str, expected: bytes | str, mode: int | None = None,
                      owner: str = 'root', group: str = 'root') -> None:
    """Assert ``path`` holds exactly ``expected`` (and optionally its mode/owner).

    On mismatch the assertion message shows both contents line by line with
    ``repr`` so invisible differences (trailing newline, spaces, tabs) show.
    """
    if isinstance(expected, str):
        expected = expected.encode()
    actual = file_bytes(host, path)
    assert actual == expected, (
        '%s differs\n--- expected\n%s\n--- actual\n%s' % (
            path,
            '\n'.join(repr(line) for line in expected.splitlines(keepends=True)),
            '\n'.join(repr(line) for line in actual.splitlines(keepends=True)),
        ))
    f = host.file(path)
    if mode is not None:
        assert f.mode == mode, '%s mode %o, expected %o' % (path, f.mode, mode)
    assert f.user == owner and f.group == group, (
        '%s owned by %s:%s, expected %s:%s' % (path, f.user, f.group, owner, group))


def call_log(host, path: str) -> list[list[str]]:
    """Parse a stub call log (``<time><TAB><argv>`` lines) into argv lists.

    Used for /var/log/update-initramfs.calls and /var/log/proxmox-boot-tool.calls;
    a missing log means no calls.
    """
    if not host.file(path).exists:
        return []
    calls = []
    for line in file_bytes(host, path).decode().splitlines():
        _time, _tab, argv = line.partition('\t')
        calls.append(argv.split())
    return calls


# Debian 12's /etc/initramfs-tools/modules (initramfs-tools 0.142), as in the
# base image: the role must append its block and keep every one of these bytes.
INITRAMFS_MODULES_DEBIAN = (
    '# List of modules that you want to include in your initramfs.\n'
    '# They will be loaded at boot time in the order below.\n'
    '#\n'
    '# Syntax:  module_name [args ...]\n'
    '#\n'
    '# You must run update-initramfs(8) to effect this change.\n'
    '#\n'
    '# Examples:\n'
    '#\n'
    '# raid1\n'
    '# sd_mod\n'
)

VFIO_MODULES_BLOCK = (
    '# BEGIN vfio.passthrough.vfio_modules: lines up to END are managed by Ansible\n'
    'vfio\n'
    'vfio_iommu_type1\n'
    'vfio_pci\n'
    '# END vfio.passthrough.vfio_modules\n'
)

VFIO_MODULES_LOAD = (
    '# Managed by Ansible (vfio.passthrough.vfio_modules): manual edits will be overwritten\n'
    'vfio\n'
    'vfio_iommu_type1\n'
    'vfio_pci\n'
)


def run_diffs(kind: str) -> list[dict]:
    """The diffs converge.yml recorded for the ``check`` or ``converge`` run.

    molecule/shared/record-run.yml writes them on the controller, in the
    scenario's ephemeral directory, which is where these tests run too.
    """
    path = Path(os.environ['MOLECULE_EPHEMERAL_DIRECTORY']) / ('diffs-%s.json' % kind)
    assert path.is_file(), '%s missing: the %s run recorded no diffs' % (path, kind)
    return json.loads(path.read_text(encoding='utf-8'))


# The role's writers, as record-run.yml names them: each one's diffs are recorded and compared.
WRITERS = ('kernel_cmdline', 'vfio_modules', 'driver_blacklist', 'vfio_address_binding', 'sriov_vfs')


def assert_check_diff_is_real_diff(host, expected: dict[str, set[str]]) -> None:
    """For each writer, the check run predicted exactly the diffs the real run reported, for
    exactly the paths ``expected`` gives it (a writer not named there: none), and each diff's
    'after' is what the file holds now."""
    check, real = run_diffs('check'), run_diffs('converge')
    unknown = sorted(set(expected) - set(WRITERS))
    assert unknown == [], 'not writers of the role: %s' % unknown
    for kind, recorded in (('check', check), ('converge', real)):
        assert sorted(recorded) == sorted(WRITERS), 'the %s run recorded %s' % (kind, sorted(recorded))
    for writer in WRITERS:
        assert check[writer] == real[writer], '%s: check predicted %s, the real run did %s' % (
            writer, [d['after_header'] for d in check[writer]], [d['after_header'] for d in real[writer]])
        paths = sorted(d['after_header'] for d in real[writer])
        assert paths == sorted(expected.get(writer, ())), (writer, paths)
        for diff in real[writer]:
            assert file_bytes(host, diff['after_header']).decode() == diff['after'], diff['after_header']


# The base image's fake kernel (tests/containers/build-image.sh).
KVER = '6.8.12-4-pve'

# Files the role writes only for a blacklist or for devices bound by address; with
# /etc/modprobe.d/vfio-passthrough.conf and modules-load.d, every file of its own.
BLACKLIST_FILE = '/etc/modprobe.d/vfio-passthrough-blacklist.conf'
BY_ADDRESS_FILES = (
    '/etc/modprobe.d/vfio-passthrough-address.conf',
    '/etc/initramfs-tools/hooks/vfio-passthrough',
    '/usr/local/sbin/vfio-passthrough-bind',
)
# sriov_vfs' udev rule and the script it runs (the role's vars/main.yml).
SRIOV_FILES = (
    '/etc/udev/rules.d/70-vfio-passthrough-sriov.rules',
    '/usr/local/sbin/vfio-passthrough-sriov',
)
ROLE_FILES = (
    '/etc/modprobe.d/vfio-passthrough.conf',
    BLACKLIST_FILE,
    '/etc/modules-load.d/vfio-passthrough.conf',
) + BY_ADDRESS_FILES + SRIOV_FILES


def assert_absent(host, paths) -> None:
    present = [path for path in paths if host.file(path).exists]
    assert present == [], 'these should not exist: %s' % present


def grub_cfg_linux_lines(host) -> list[str]:
    """The ``linux`` lines update-grub wrote into /boot/grub/grub.cfg."""
    cfg = file_bytes(host, '/boot/grub/grub.cfg').decode()
    return [line.strip() for line in cfg.splitlines() if line.strip().startswith('linux\t')]


def assert_grub_cfg_kernel_args(host, args: str) -> None:
    """grub.cfg was generated from a GRUB_CMDLINE_LINUX_DEFAULT of ``args``: the two normal
    entries carry them, the recovery entry does not."""
    assert grub_cfg_linux_lines(host) == [
        'linux\t/boot/vmlinuz-%s root=/dev/sda1 ro  %s' % (KVER, args),
        'linux\t/boot/vmlinuz-%s root=/dev/sda1 ro  %s' % (KVER, args),
        'linux\t/boot/vmlinuz-%s root=/dev/sda1 ro single' % KVER,
    ]


def assert_grub_default_is_debians(host) -> None:
    assert file_bytes(host, '/etc/default/grub') == file_bytes(host, '/usr/share/grub/default/grub')


def assert_vfio_modules_configured(host) -> None:
    """The VFIO modules load at boot and are in the initramfs, Debian's own lines kept."""
    assert_file_bytes(host, '/etc/modules-load.d/vfio-passthrough.conf', VFIO_MODULES_LOAD, mode=0o644)
    assert_file_bytes(host, '/etc/initramfs-tools/modules', INITRAMFS_MODULES_DEBIAN + VFIO_MODULES_BLOCK, mode=0o644)


def assert_one_initramfs_rebuild(host) -> None:
    """Exactly one update-initramfs over the converge and idempotence runs."""
    assert call_log(host, '/var/log/update-initramfs.calls') == [['-u', '-k', 'all']]


def assert_one_esp_sync(host) -> None:
    """Exactly one proxmox-boot-tool refresh, the one update-initramfs's post-update hook runs."""
    assert call_log(host, '/var/log/proxmox-boot-tool.calls') == [['refresh', '--hook', 'zz-proxmox-boot']]
