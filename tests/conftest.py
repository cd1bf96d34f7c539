from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from kitaru_store import Repository


@pytest.fixture(autouse=True)
def _isolated(kitaru_temp_store: Path) -> Iterator[None]:
    """Every test runs against its own temporary store, never the user's."""
    yield


@pytest.fixture
def store_path(kitaru_temp_store: Path) -> Path:
    return kitaru_temp_store


@pytest.fixture
def repo(kitaru_temp_store: Path) -> Repository:
    return Repository.open(kitaru_temp_store)
