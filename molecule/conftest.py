"""Make molecule/shared/testinfra importable for every scenario's tests.

molecule runs pytest on molecule/<scenario>/tests/test_*.py with the checkout's pytest.ini, so
pytest loads this conftest (an ancestor of each test file, below the rootdir) for all of them.
"""

from __future__ import annotations

import sys
from pathlib import Path

_shared = str(Path(__file__).resolve().parent / 'shared' / 'testinfra')
if _shared not in sys.path:
    sys.path.insert(0, _shared)
