"""pytest plugin: an isolated, temporary kitaru store for every test that asks for one.

Registered through the ``pytest11`` entry point, so it is active wherever kitaru is installed:

    def test_my_flow(kitaru_temp_store):
        handle = my_flow.run()          # writes into a fresh store under tmp_path
        assert handle.wait() == 42
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture
def kitaru_temp_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Point ``KITARU_STORE`` at a new directory for this test; yields its path.

    ``KITARU_NO_PROMPT`` is set too: a ``kitaru.wait()`` never stops a test run (``pytest -s`` in
    a terminal) to ask its question; it leaves the execution waiting.
    """
    from kitaru_store.backend import close_backend

    path = tmp_path / "kitaru-store"
    monkeypatch.setenv("KITARU_STORE", str(path))
    monkeypatch.setenv("KITARU_NO_PROMPT", "1")
    try:
        yield path
    finally:
        close_backend(str(path / "db"))
