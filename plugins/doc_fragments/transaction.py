# -*- coding: utf-8 -*-
# Copyright: contributors to vfio.passthrough
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment:
    # The options and guarantees of plugins/module_utils/files/_transaction.py, shared by every module that writes.
    DOCUMENTATION = r'''
options:
  lock_file:
    description:
      - An exclusive lock on this file is held from the first read to the end of the regeneration
        command, so two runs on one host (two playbooks, two modules) never lose each other's edit.
        The edited files cannot be the lock, since a write replaces them by rename.
      - Every module of this collection that writes uses the same default; change it only for tests.
    type: path
    default: /run/lock/vfio-passthrough.lock
notes:
  - "Writes are atomic (a temp file beside the target, then a rename). A symlinked file is written through
    the link. If a write or the regeneration command fails, or the command is missing, every file this run
    wrote is put back byte for byte with its mode and owner (and its link), files it created are removed,
    and the task fails listing them in C(restored)."
  - A path that is a directory, lies below a regular file, cannot be read, sits on a read-only file system or
    in a missing directory, or is a dangling symlink fails the task naming the path and why, before anything
    is written; check mode fails the same way.
  - Bytes that are not UTF-8 survive unchanged; results show them as C(\\xNN).
'''
