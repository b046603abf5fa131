"""Record every file below a directory, to prove what a module run did or did not touch."""

from __future__ import annotations

import stat
from pathlib import Path


def tree_snapshot(top, skip=()):
    """{relative path: (bytes, inode, mtime_ns, permission bits)} of every file below ``top``.

    Inode and mtime catch a rewrite with identical bytes, which an idempotent
    run must not do either. Directories in ``skip`` (e.g. stub tools) are left out.
    """
    top = Path(top)
    skip = [Path(s) for s in skip]
    result = {}
    for path in sorted(top.rglob('*')):
        if path.is_file() and not any(s in path.parents for s in skip):
            st = path.stat()
            result[str(path.relative_to(top))] = (path.read_bytes(), st.st_ino, st.st_mtime_ns, stat.S_IMODE(st.st_mode))
    return result
