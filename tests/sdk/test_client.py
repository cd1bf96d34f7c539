"""KitaruClient: executions and artifacts, browsed from outside any flow."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest

import kitaru
from kitaru import (
    AmbiguousIdError,
    AmbiguousNameError,
    ArtifactNotFoundError,
    ArtifactRef,
    CheckpointCall,
    Execution,
    ExecutionNotFoundError,
    InvalidArtifactTypeError,
    KitaruClient,
    KitaruError,
    KitaruUsageError,
    StoreNotFoundError,
    checkpoint,
    flow,
)
from kitaru_store import Repository


@checkpoint
def research(topic: str) -> str:
    kitaru.save("research_context", {"topic": topic}, type="context", tags=["t"], metadata={"m": 1})
    kitaru.save("prompt", f"about {topic}", type="prompt")
    return f"notes on {topic}"


@checkpoint(type="response")
def write(notes: str) -> str:
    return notes.upper()


@flow
def pipeline(topic: str) -> Any:
    return write(research(topic))


@flow
def other_flow() -> int:
    return 1


@flow
def broken_flow() -> None:
    raise RuntimeError("no")


# --- executions --------------------------------------------------------------------------


def test_get_returns_the_whole_execution() -> None:
    handle = pipeline.run("kitaru")
    execution = KitaruClient().executions.get(handle.exec_id)
    assert isinstance(execution, Execution)
    assert execution.exec_id == handle.exec_id
    assert execution.flow_name == "pipeline"
    assert execution.status == "completed"
    assert execution.failure is None
    assert execution.replay_of is None
    assert isinstance(execution.started_at, dt.datetime) and execution.started_at.tzinfo is not None
    assert execution.ended_at is not None and execution.ended_at >= execution.started_at
    assert execution.duration == execution.ended_at - execution.started_at
    assert execution.metadata["kitaru.module"] == __name__

    research_call, write_call = execution.checkpoints
    assert isinstance(research_call, CheckpointCall)
    assert (research_call.invocation_id, research_call.name, research_call.status) == (
        "research",
        "research",
        "completed",
    )
    assert research_call.failure is None
    assert len(research_call.attempts) == 1 and research_call.attempts[0].failure is None
    assert write_call.upstream == ("research",)
    assert write_call.inputs == (research_call.output_object_id,)

    names = sorted(a.name for a in execution.artifacts)
    assert names == ["prompt", "research", "research_context", "write"]
    assert all(isinstance(a, ArtifactRef) for a in execution.artifacts)


def test_get_accepts_prefixes_and_dashed_ids() -> None:
    exec_id = pipeline.run("p").exec_id
    client = KitaruClient()
    dashed = f"{exec_id[:8]}-{exec_id[8:12]}-{exec_id[12:16]}-{exec_id[16:20]}-{exec_id[20:]}"
    for given in (exec_id, exec_id[:4], exec_id[:10], exec_id.upper(), dashed):
        assert client.executions.get(given).exec_id == exec_id


def test_get_errors(repo: Repository) -> None:
    repo.create_execution("a", exec_id="abcd" + "0" * 28)
    repo.create_execution("b", exec_id="abcd" + "1" * 28)
    client = KitaruClient()
    with pytest.raises(AmbiguousIdError) as ambiguous:
        client.executions.get("abcd")
    assert sorted(ambiguous.value.candidates) == ["abcd" + "0" * 28, "abcd" + "1" * 28]
    assert ambiguous.value.hint
    assert client.executions.get("abcd0").flow_name == "a"
    with pytest.raises(ExecutionNotFoundError) as missing:
        client.executions.get("ffff")
    assert missing.value.exec_id == "ffff" and missing.value.hint
    for bad in ("xyz!", "ab", "0" * 40):
        with pytest.raises(KitaruError):
            client.executions.get(bad)


def test_a_failed_execution_records_its_failure() -> None:
    handle = broken_flow.run()
    execution = KitaruClient().executions.get(handle.exec_id)
    assert execution.status == "failed"
    assert execution.failure is not None
    assert (execution.failure.type, execution.failure.message) == ("RuntimeError", "no")
    assert "RuntimeError: no" in execution.failure.traceback
    assert execution.ended_at is not None


def test_list_is_newest_first_and_filters() -> None:
    a = pipeline.run("1").exec_id
    b = other_flow.run().exec_id
    c = broken_flow.run().exec_id
    d = pipeline.run("2").exec_id
    executions = KitaruClient().executions
    assert [s.exec_id for s in executions.list()] == [d, c, b, a]
    assert [s.exec_id for s in executions.list(flow="pipeline")] == [d, a]
    assert [s.exec_id for s in executions.list(status="failed")] == [c]
    assert [s.exec_id for s in executions.list(status="completed")] == [d, b, a]
    assert [s.exec_id for s in executions.list(flow="pipeline", status="completed", limit=1)] == [d]
    assert [s.exec_id for s in executions.list(limit=2)] == [d, c]
    assert [s.exec_id for s in executions.list(limit=2, offset=2)] == [b, a]
    assert executions.list(flow="no-such-flow") == []
    summary = executions.list(limit=1)[0]
    assert summary.flow_name == "pipeline" and summary.status == "completed"
    assert summary.checkpoint_count == 2 and summary.artifact_count == 4


@pytest.mark.parametrize("status", ["done", "COMPLETED", "success", ""])
def test_list_with_an_unknown_status_is_a_usage_error(status: str) -> None:
    other_flow.run()
    with pytest.raises(KitaruUsageError, match="unknown status") as info:
        KitaruClient().executions.list(status=status)
    for valid in ("running", "waiting", "completed", "failed", "cancelled"):
        assert valid in (info.value.hint or "")


def test_latest(repo: Repository) -> None:
    client = KitaruClient()
    assert client.executions.latest() is None  # an empty store
    first = pipeline.run("a").exec_id
    second = other_flow.run().exec_id
    latest = client.executions.latest()
    assert isinstance(latest, Execution) and latest.exec_id == second
    by_flow = client.executions.latest(flow="pipeline")
    assert by_flow is not None and by_flow.exec_id == first
    assert client.executions.latest(flow="nobody") is None


def test_execution_artifact_uses_load_rules() -> None:
    execution = KitaruClient().executions.get(pipeline.run("r").exec_id)
    assert execution.artifact("research").load() == "notes on r"
    assert execution.artifact("research_context").load() == {"topic": "r"}
    with pytest.raises(ArtifactNotFoundError):
        execution.artifact("nope")

    @checkpoint
    def research_again() -> None:
        kitaru.save("prompt", "again")

    @flow
    def dup() -> None:
        research("x")
        research_again()

    with pytest.raises(AmbiguousNameError):
        KitaruClient().executions.get(dup.run().exec_id).artifact("prompt")


# --- artifacts ---------------------------------------------------------------------------


def test_artifact_ref_fields(repo: Repository) -> None:
    handle = pipeline.run("fields")
    execution = KitaruClient().executions.get(handle.exec_id)
    by_name = {a.name: a for a in execution.artifacts}

    saved = by_name["research_context"]
    assert len(saved.artifact_id) == 32
    assert saved.type == "context"
    assert saved.kind == "manual"
    assert saved.checkpoint == "research" and saved.invocation_id == "research"
    assert saved.exec_id == handle.exec_id
    assert saved.size == len(repo.get_bytes(saved.object_id))
    assert saved.serializer == "msgpack"
    assert isinstance(saved.created_at, dt.datetime)
    assert saved.metadata == {"m": 1}
    assert saved.tags == ("t",)
    assert saved.load() == {"topic": "fields"}
    assert repo.get_value(saved.object_id) == {"topic": "fields"}

    output = by_name["write"]
    assert output.kind == "checkpoint_output" and not output.is_manual_save
    assert output.type == "response"
    assert output.checkpoint == "write" and output.invocation_id == "write"
    assert output.load() == "NOTES ON FIELDS"
    assert output.object_id == execution.checkpoints[1].output_object_id

    assert len({a.artifact_id for a in execution.artifacts}) == len(execution.artifacts)


def test_artifacts_get_by_id_and_prefix() -> None:
    execution = KitaruClient().executions.get(pipeline.run("g").exec_id)
    client = KitaruClient()
    for ref in execution.artifacts:
        for given in (ref.artifact_id, ref.artifact_id[:8]):
            got = client.artifacts.get(given)
            assert isinstance(got, ArtifactRef)
            assert got == ref  # same fields (the store handle is not compared)
            assert got.exec_id == execution.exec_id
            assert got.load() == ref.load()


def test_artifacts_get_unknown_id_is_an_error_with_a_hint() -> None:
    pipeline.run("x")
    with pytest.raises(KitaruError) as info:
        KitaruClient().artifacts.get("0123456789abcdef0123456789abcdef")
    assert info.value.hint


def test_artifacts_list_filters_by_name_and_type() -> None:
    exec_id = pipeline.run("l").exec_id
    artifacts = KitaruClient().artifacts
    assert sorted(a.name for a in artifacts.list(exec_id)) == [
        "prompt",
        "research",
        "research_context",
        "write",
    ]
    assert [a.name for a in artifacts.list(exec_id, name="research_context")] == ["research_context"]
    assert [a.name for a in artifacts.list(exec_id, name="research")] == ["research"]
    assert artifacts.list(exec_id, name="missing") == []
    assert [a.name for a in artifacts.list(exec_id, type="prompt")] == ["prompt"]
    assert [a.name for a in artifacts.list(exec_id, type="RESPONSE")] == ["write"]
    assert [a.name for a in artifacts.list(exec_id, type=kitaru.ArtifactType.CONTEXT)] == ["research_context"]
    assert artifacts.list(exec_id, name="prompt", type="context") == []
    assert [a.name for a in artifacts.list(exec_id[:6], name="prompt", type="prompt")] == ["prompt"]
    with pytest.raises(InvalidArtifactTypeError):
        artifacts.list(exec_id, type="image")


def test_artifacts_list_by_checkpoint_name_returns_every_call() -> None:
    @flow
    def twice() -> None:
        write("a")
        write("b")

    exec_id = twice.run().exec_id
    refs = KitaruClient().artifacts.list(exec_id, name="write")
    assert sorted((r.name, r.load()) for r in refs) == [("write", "A"), ("write_2", "B")]


# --- which store -------------------------------------------------------------------------


def test_explicit_store_path(store_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    exec_id = other_flow.run().exec_id
    monkeypatch.setenv("KITARU_STORE", str(tmp_path / "elsewhere"))
    for store in (store_path, str(store_path)):
        client = KitaruClient(store=store)
        assert client.executions.get(exec_id).flow_name == "other_flow"
        assert client.repository.path == store_path
    with pytest.raises(StoreNotFoundError):
        KitaruClient().executions.list()  # KITARU_STORE now names a missing store


def test_missing_store_is_store_not_found_and_is_not_created(tmp_path: Path) -> None:
    missing = tmp_path / "no-store-here"
    client = KitaruClient(store=missing)
    for call in (
        lambda: client.executions.list(),
        lambda: client.executions.latest(),
        lambda: client.executions.get("abcd"),
        lambda: client.artifacts.get("abcd"),
        lambda: client.artifacts.list("abcd"),
    ):
        with pytest.raises(StoreNotFoundError) as info:
            call()
        assert str(missing) in str(info.value)
        assert info.value.hint
    assert not missing.exists()


def test_default_client_before_any_flow_ran(store_path: Path) -> None:
    assert not store_path.exists()
    with pytest.raises(StoreNotFoundError) as info:
        KitaruClient().executions.latest()
    assert "KITARU_STORE" in (info.value.hint or "")
    other_flow.run()
    assert KitaruClient().executions.latest() is not None
