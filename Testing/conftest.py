"""Shared pytest setup: make the library and the training package importable from a plain checkout."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
for _path in (REPO / "NeonatalLungSeg", REPO / "Training"):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

SHARED_DATA = REPO.parent / "shared" / "data"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "slow: takes more than a few seconds (large volumes, training)")
    config.addinivalue_line("markers", "gpu: needs a CUDA device; skipped where there is none")
