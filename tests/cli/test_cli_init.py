"""`kitaru-store init`: create a store where asked, leave an existing one alone."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cli_demo import Run

from kitaru_store import config


def test_init_creates_the_located_store(run: Run, store_path: Path) -> None:
    assert config.read_config(store_path) is None
    first = run("init")
    assert first.exit_code == 0, first.output
    assert first.output.strip() == f"created kitaru store in {store_path}"
    store_id = config.read_config(store_path)["store_id"]  # type: ignore[index]
    again = run("init", "--json")
    assert again.exit_code == 0
    doc = json.loads(again.output)
    assert doc == {"path": str(store_path), "created": False, "store_id": store_id}


def test_init_at_a_directory_and_as_a_project_store(
    run: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "elsewhere"
    assert run("init", str(target)).exit_code == 0
    assert config.read_config(target) is not None
    project = tmp_path / "project"
    project.mkdir()
    monkeypatch.chdir(project)
    monkeypatch.delenv("KITARU_STORE")
    result = run("init", "--project")
    assert result.exit_code == 0, result.output
    assert config.read_config(project / ".kitaru") is not None
    (project / "sub").mkdir()
    monkeypatch.chdir(project / "sub")
    located = run("path", "--json")
    assert json.loads(located.output)["source"] == "project"
    assert run("init", str(target), "--project").exit_code == 2  # one or the other


def test_init_refuses_a_directory_that_holds_something_else(run: Run, tmp_path: Path) -> None:
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("not a store")
    result = run("init", str(busy))
    assert result.exit_code == 1
    assert "is not a kitaru store" in result.output
    assert sorted(p.name for p in busy.iterdir()) == ["notes.txt"]  # left unchanged
