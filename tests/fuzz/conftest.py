"""The fuzz tests share tests/fuzz/fuzz_helpers.py (the contract every decoder is held to)."""

from __future__ import annotations

import sys
from pathlib import Path

HERE = str(Path(__file__).resolve().parent)
if HERE not in sys.path:
    sys.path.insert(0, HERE)
