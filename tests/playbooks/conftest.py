"""Tests that run the real ansible-playbook on the playbooks/ (slow: a controller and a module run per task).

They share the unit tests' helpers (fake sysfs trees, the report's page checks)
and their import setup, so tests/unit/conftest.py runs here first.
"""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

UNIT = Path(__file__).resolve().parents[1] / 'unit'
sys.path.insert(0, str(UNIT))
runpy.run_path(str(UNIT / 'conftest.py'))
