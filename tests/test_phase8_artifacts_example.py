"""The guide's example, end to end: run it as a user would and check what it stored."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

from kitaru import KitaruClient

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "basic_flow" / "flow_with_artifacts.py"


@pytest.fixture
def example():
    spec = importlib.util.spec_from_file_location("flow_with_artifacts", EXAMPLE)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_example_results(example) -> None:
    first_id, first_result, second_id, second_result = example.main("kitaru")
    assert first_result == "Research notes about kitaru."
    assert second_result == "Research notes about kitaru. [topic=kitaru]"
    assert first_id != second_id


def test_saved_artifact_is_a_manual_save_of_type_context(example) -> None:
    first_id, *_ = example.main("agents")
    execution = KitaruClient().executions.get(first_id)
    assert execution.status == "completed"
    by_name = {a.name: a for a in execution.artifacts}
    context = by_name["research_context"]
    assert context.kind == "manual" and context.is_manual_save
    assert context.type == "context"
    assert context.checkpoint == "research"
    assert context.load() == {"topic": "agents", "notes": "Research notes about agents."}
    output = by_name["research"]
    assert output.kind == "checkpoint_output" and output.type == "output"
    assert KitaruClient().artifacts.get(context.artifact_id).load()["topic"] == "agents"


def test_follow_up_records_lineage(example) -> None:
    first_id, _, second_id, _ = example.main("lineage")
    client = KitaruClient()
    first = client.executions.get(first_id)
    follow = client.executions.get(second_id).checkpoints[0]
    loaded = {a.object_id for a in first.artifacts}
    second_output = client.executions.get(second_id).artifact("follow_up")
    assert follow.status == "completed"
    assert loaded <= set(second_output.inputs)


def test_example_runs_as_a_script(kitaru_temp_store: Path) -> None:
    env = {**os.environ, "KITARU_STORE": str(kitaru_temp_store)}
    out = subprocess.run(
        [sys.executable, str(EXAMPLE)], env=env, capture_output=True, text=True, timeout=120, check=True
    ).stdout
    assert "Research notes about durable execution. [topic=durable execution]" in out
    assert "type=context, kind=manual" in out
