"""Make the checkout importable as ``ansible_collections.vfio.passthrough`` (see tools/collection_link.py)."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / 'tools'))

from collection_link import collection_link  # noqa: E402  (tools/ is not a package)

_base = str(collection_link(ROOT).parents[2])
if _base not in sys.path:
    sys.path.insert(0, _base)
