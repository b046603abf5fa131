"""Make molecule/shared/testinfra importable for this scenario's tests."""

from __future__ import annotations

import sys
from pathlib import Path

_shared = str(Path(__file__).resolve().parents[2] / 'shared' / 'testinfra')
if _shared not in sys.path:
    sys.path.insert(0, _shared)
