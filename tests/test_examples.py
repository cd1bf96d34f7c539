"""Every example runs and shows what it promises (in-process, on the test's temporary store)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _load(relative: str) -> ModuleType:
    path = EXAMPLES / relative
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_replay_after_failure() -> None:
    out = _load("replay/replay_after_failure.py").main()
    assert out["first_status"] == "failed"
    assert out["failure"] == "report service unavailable"
    assert out["attempts"] == 2  # retries=1: two attempts recorded
    assert out["retry_result"] == "REPORT -- durable agents: three findings."
    assert out["retry_ran"] == ["write_report"]  # research was reused, not run again
    assert out["replay_result"] == "REPORT -- an edited summary"
    assert out["replay_of"] is True


@pytest.mark.parametrize("answer", [True, False])
def test_human_approval(answer: bool) -> None:
    out = _load("human_approval/approve_summary.py").main(answer)
    assert out["status_after_run"] == "waiting"
    assert "Durable execution makes long-running agents" in str(out["question"])
    assert out["status"] == "completed"
    if answer:
        assert str(out["result"]).startswith("REPORT: Durable execution")
    else:
        assert out["result"] == "Report rejected by reviewer."


def test_offline_llm() -> None:
    out = _load("llm/offline_llm.py").main()
    assert str(out["draft"]).startswith("Offline answer")
    assert out["records"] == [
        "draft (response)",
        "draft.prompt (prompt)",
        "outline.llm (response)",
        "outline.llm.prompt (prompt)",
    ]
    assert isinstance(out["tokens"], int) and out["tokens"] > 0
    assert out["replay_same"] is True


def test_fan_out() -> None:
    out = _load("concurrency/fan_out.py").main()
    assert out["calls"] == ["score", *[f"score_{i}" for i in range(2, 10)], "best"]
    assert out["replay_reused"] == ["reused"]
    assert isinstance(out["best"], int)


@pytest.mark.parametrize(
    "script",
    ["replay/replay_after_failure.py", "human_approval/approve_summary.py", "llm/offline_llm.py"],
)
def test_examples_run_as_scripts(script: str, kitaru_temp_store: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / script)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip()


def test_memory_across_executions() -> None:
    from kitaru import memory

    out = _load("memory/memory_across_executions.py").main()
    assert out["facts"] == ["the artifact store is content-addressed", "replay was studied"]
    assert out["runs"] == 3
    assert out["versions"] == [1, 2, 3]
    assert out["written_by"] is True
    assert out["first_version"] == ["the artifact store is content-addressed"]
    # The third run set an unchanged value: a new version, but no new object bytes.
    history = memory.history("facts", flow="study")
    assert history[1].object_id == history[2].object_id
