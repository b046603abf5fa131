"""Helpers for testinfra tests of container scenarios.

Import from a scenario's ``tests/conftest.py`` (which puts this directory on
``sys.path``).

Why ``file_bytes`` exists: molecule runs testinfra through Ansible (the
``containers.podman.podman`` connection is not one testinfra drives itself),
and Ansible's command module strips trailing newlines from stdout. So
``host.file(p).content`` cannot tell ``b"x"`` from ``b"x\\n"``, nor keep
non-UTF-8 bytes. Reading the file base64-encoded and decoding it here gives
the exact bytes.
"""

from __future__ import annotations

import base64
import shlex


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
