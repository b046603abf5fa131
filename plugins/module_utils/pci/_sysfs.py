# -*- coding: utf-8 -*-
# Copyright: contributors to vfio.passthrough
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Read sysfs and procfs below a root directory without ever leaving it.

Everything reads a tree below ``root`` (``/`` on a live host, a chroot or a
fake tree in tests). Symlinks are resolved TEXTUALLY against ``root``: absolute
targets are re-rooted and ``..`` stops at ``root``, so a tree under ``/mnt``
can never make us read the live ``/sys``. Files inside resolved directories are
opened with O_NOFOLLOW for the same reason.

The readers (_pci_devices, _net_interfaces, _block_devices, _iommu_facts)
accept the root as a string or a ``SysfsTree``; passing one tree to several
readers shares its link cache, so each link is read once.

Names are bytes to the kernel. Directory entries and link targets are read as
bytes and decoded by ``_kernel_names.decode_name``, as is every file that
carries names (``read_names``), so one interface is one string in every place
it is read, whatever the locale and whatever its bytes.
"""

from __future__ import annotations

import errno
import os

from ansible_collections.vfio.passthrough.plugins.module_utils.pci._kernel_names import (
    decode_name, strip_blanks,
)

__all__ = ['SysfsTree', 'as_tree', 'link_name']

_MAX_LINK_HOPS = 40  # the kernel's own limit (MAXSYMLINKS)

_O_READ = os.O_RDONLY | getattr(os, 'O_NOFOLLOW', 0) | getattr(os, 'O_CLOEXEC', 0)


class SysfsTree:
    """Textual symlink resolution and cached reads below one root directory."""

    def __init__(self, root='/'):
        self.root = os.path.abspath(root or '/')
        self.live = self.root == '/'
        self._prefix = '' if self.live else self.root
        self._links = {}     # relative path -> link target text, or None for "not a link"
        self._resolved = {}  # relative path -> physical relative path (None: link loop)
        self._entries = {}   # physical directory -> frozenset of names
        self._symlinks = {}  # physical directory -> frozenset of the names that are symlinks
        self._plain = {}     # physical directory not listed -> names readlink() found not to be links
        self.interfaces = None  # read_net_interfaces() of this tree, read once

    def path(self, rel):
        return self._prefix + '/' + rel if rel else self.root

    def os_path(self, rel):
        """``path(rel)`` as the bytes the kernel knows it by (names decoded by ``decode_name`` round-trip)."""
        # encode_name inlined: called for every syscall, thousands of times per run
        return (self._prefix + '/' + rel if rel else self.root).encode('utf-8', 'surrogateescape')

    def entries(self, rel):
        """Names in the physical directory ``rel``, listed once; empty when absent."""
        if rel in self._entries:
            return self._entries[rel]
        names, links = [], []
        try:
            # scandir tells links from the rest without a syscall per name (d_type),
            # so readlink() need not ask the kernel about plain files and directories.
            with os.scandir(self.os_path(rel)) as listing:
                for entry in listing:
                    name = decode_name(entry.name)
                    names.append(name)
                    # unknown (is_symlink failed) counts as a link: readlink() asks the kernel
                    try:
                        if entry.is_symlink():
                            links.append(name)
                    except OSError:
                        links.append(name)
        except OSError:
            # unlisted: readlink() keeps asking the kernel about each name here
            self._entries[rel] = frozenset()
            return self._entries[rel]
        found = frozenset(names)
        self._entries[rel] = found
        self._symlinks[rel] = frozenset(links)
        return found

    def readlink(self, rel):
        """The target text of the symlink ``rel`` (its directory part must be physical), or None."""
        # (here, in entries and in resolve) a membership test, not try/except KeyError:
        # most first lookups miss, and a raised exception costs more than the test
        if rel in self._links:
            return self._links[rel]
        head, _sep, tail = rel.rpartition('/')
        links = self._symlinks.get(head)
        if links is None and head in self._plain:
            # A second plain directory looked up in the same parent (a bridge's
            # devices, 32 to a root port): one listing answers for all the others.
            self.entries(head)
            links = self._symlinks.get(head)
        target = None
        # a directory already listed tells which names are links: no syscall for the others
        if links is None or tail in links:
            try:
                target = decode_name(os.readlink(self.os_path(rel)))
            except OSError as exc:
                target = None
                if links is None and exc.errno == errno.EINVAL:
                    self._plain[head] = True
        self._links[rel] = target
        return target

    def resolve(self, rel):
        """Resolve every symlink in ``rel`` inside root; return the physical relative path.

        Returns None for a link loop. A missing component resolves to itself,
        so the caller's later read of it fails normally. Results are cached:
        thousands of devices share the same few parent directories.
        """
        if rel in self._resolved:
            return self._resolved[rel]
        head, _sep, tail = rel.strip('/').rpartition('/')
        base = self.resolve(head) if head else ''
        result = None if base is None else self._step(base, tail, [0])
        self._resolved[rel] = result
        if result is not None:
            # A physical path resolves to itself: a later lookup below it (a NIC's
            # device/driver, reached from sys/class/net) starts from here.
            self._resolved[result] = result
        return result

    def _step(self, base, name, hops):
        """The physical path of ``name`` in the physical directory ``base`` (None: link loop)."""
        if name in ('', '.'):
            return base
        if name == '..':
            return base.rpartition('/')[0]
        here = base + '/' + name if base else name
        target = self.readlink(here)
        if target is None:
            return here
        return self._follow(base, target, hops)

    def _follow(self, base, target, hops):
        """Walk link ``target`` from the link's physical directory ``base`` (from root when absolute).

        Components are taken one by one, as the kernel does: a symlink before
        a ``..`` is followed first, and ``..`` of a physical path is its parent,
        stopping at root. ``hops`` counts the links one lookup follows, against
        the kernel's own limit. Nothing is cached per target text: thousands of
        devices have distinct ``../../..`` targets, each walked in a few steps.
        """
        hops[0] += 1
        if hops[0] > _MAX_LINK_HOPS:
            return None
        if target.startswith('/'):
            base = ''
        links = self._links
        for part in target.split('/'):
            if part in ('', '.'):
                continue
            if part == '..':
                base = base.rpartition('/')[0]
                continue
            here = base + '/' + part if base else part
            nested = links[here] if here in links else self.readlink(here)
            if nested is None:
                base = here
                continue
            base = self._follow(base, nested, hops)
            if base is None:
                return None
        return base

    def read(self, rel, resolved=False):
        """The stripped text of a file, or None when it is missing or unreadable.

        ``resolved`` says the directory part of ``rel`` contains no symlinks;
        otherwise it is resolved first. The last component is never followed.
        Bytes that are not UTF-8 become U+FFFD: use ``read_names`` for a file
        that carries kernel names.
        """
        data = self.read_bytes(rel, resolved=resolved)
        return None if data is None else data.decode('utf-8', 'replace').strip()

    def read_names(self, rel, resolved=False):
        """As ``read``, for a file that carries kernel names (``proc/net/route``, ``bonding/slaves``,
        ``proc/mounts``): decoded by ``decode_name``, so each name matches the same name listed anywhere."""
        data = self.read_bytes(rel, resolved=resolved)
        return None if data is None else strip_blanks(decode_name(data))

    def read_bytes(self, rel, size=None, resolved=False):
        """The bytes of a file, or None when it is missing or unreadable.

        ``size`` reads only the first bytes of a binary file (PCI ``config``);
        None reads it whole. ``resolved`` as for read(); the last component is
        never followed.
        """
        if not resolved:
            head, _sep, tail = rel.rpartition('/')
            head = self.resolve(head)
            if head is None:
                return None
            rel = head + '/' + tail if head else tail
        try:
            fd = os.open(self.os_path(rel), _O_READ)
        except OSError:
            return None
        try:
            if size is None:
                # sysfs attributes fit one page and arrive in one read; proc files may not
                data = os.read(fd, 8192)
                return data if len(data) < 8192 else _read_rest(fd, data)
            return _read_size(fd, size)
        except OSError:
            return None
        finally:
            os.close(fd)

    def listdir(self, rel, resolved=False):
        """Entry names of a directory (sorted), empty when it does not exist."""
        if not resolved:
            rel = self.resolve(rel)
            if rel is None:
                return []
        return sorted(self.entries(rel))

    def exists(self, rel):
        resolved = self.resolve(rel)
        return resolved is not None and os.path.lexists(self.os_path(resolved))


def _read_rest(fd, first):
    """``first`` and the rest of ``fd`` up to its end."""
    chunks = [first]
    while len(chunks[-1]) == 8192 or (len(chunks) > 1 and chunks[-1]):
        chunks.append(os.read(fd, 65536))
    return b''.join(chunks)


def _read_size(fd, size):
    """Up to ``size`` bytes of ``fd``."""
    chunks = []
    while size > 0:
        chunk = os.read(fd, size)
        if not chunk:
            break
        chunks.append(chunk)
        size -= len(chunk)
    return b''.join(chunks)


def as_tree(root):
    """``root`` as a SysfsTree: a path string gets a tree of its own, a tree is shared."""
    return root if isinstance(root, SysfsTree) else SysfsTree(root)


def link_name(target):
    """The last component of a link target (``../../../bus/pci/drivers/e1000e`` -> ``e1000e``), or None."""
    return target.rstrip('/').rsplit('/', 1)[-1] if target else None
