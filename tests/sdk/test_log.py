"""kitaru.log(**metadata): JSON-able metadata on the running checkpoint or the execution."""

from __future__ import annotations

import json
from typing import Any

import pytest
from click.testing import CliRunner

import kitaru
from kitaru import KitaruClient, KitaruContextError, SerializationError, checkpoint, flow
from kitaru_store.cli import cli

CAUGHT: list[SerializationError] = []


@checkpoint
def score(text: str) -> int:
    kitaru.log(model="small", tokens=len(text))
    kitaru.log(tokens=len(text) * 2, details={"words": text.split(), "ok": True, "ratio": 0.5})
    return len(text)


@checkpoint
def quiet(x: int) -> int:
    return x


@flow(name="log_scoring")
def scoring(text: str) -> Any:
    kitaru.log(stage="start", attempt=1)
    n = score(text)
    quiet(1)
    kitaru.log(stage="done", words=len(text.split()))
    return n


def test_log_in_a_checkpoint_goes_to_its_call_and_later_values_win() -> None:
    handle = scoring.run("a bb ccc")
    assert handle.wait() == 8
    ex = KitaruClient().executions.get(handle.exec_id)
    scored, quiet_call = ex.checkpoints
    assert scored.metadata == {
        "model": "small",
        "tokens": 16,
        "details": {"words": ["a", "bb", "ccc"], "ok": True, "ratio": 0.5},
    }
    assert quiet_call.metadata == {}


def test_log_in_the_flow_body_merges_into_the_execution_metadata() -> None:
    handle = scoring.run("x y")
    meta = KitaruClient().executions.get(handle.exec_id).metadata
    assert meta["stage"] == "done" and meta["attempt"] == 1 and meta["words"] == 2
    assert meta["kitaru.module"] == scoring.fn.__module__  # the flow's own keys stay
    assert "tokens" not in meta  # checkpoint metadata stays on the checkpoint


def test_kitaru_prefixed_keys_are_reserved() -> None:
    @flow(name="log_reserved")
    def sneaky() -> None:
        kitaru.log(**{"kitaru.module": "elsewhere"})

    handle = sneaky.run()
    with pytest.raises(kitaru.FlowExecutionError) as info:
        handle.wait()
    assert "KitaruUsageError" in info.value.failure.type
    meta = KitaruClient().executions.get(handle.exec_id).metadata
    assert meta["kitaru.module"] == __name__  # the flow's own record was not overwritten


def test_logged_values_are_stored_as_json() -> None:
    @flow(name="log_json")
    def as_json() -> None:
        kitaru.log(pair=(1, 2), nested={"k": [1.5, None]}, text="é")

    handle = as_json.run()
    meta = KitaruClient().executions.get(handle.exec_id).metadata
    assert meta["pair"] == [1, 2]  # a tuple comes back as a JSON array
    assert meta["nested"] == {"k": [1.5, None]}
    assert meta["text"] == "é"


def test_metadata_is_visible_in_the_cli() -> None:
    handle = scoring.run("hello world")
    ex = KitaruClient().executions.get(handle.exec_id)
    runner = CliRunner()
    result = runner.invoke(cli, ["show", handle.exec_id], prog_name="kitaru-store", catch_exceptions=False)
    assert result.exit_code == 0
    lines = result.output.splitlines()
    meta_lines = [line.strip() for line in lines if line.strip().startswith("metadata")]
    assert len(meta_lines) == 2  # the execution's and the score call's
    assert json.loads(meta_lines[0].split(None, 1)[1]) == ex.metadata
    assert json.loads(meta_lines[1].split(None, 1)[1]) == ex.checkpoints[0].metadata

    as_json = runner.invoke(cli, ["show", handle.exec_id, "--json"], catch_exceptions=False)
    doc = json.loads(as_json.output)
    assert doc["metadata"]["stage"] == "done"
    assert [c["metadata"] for c in doc["checkpoints"] if c["invocation_id"] == "score"] == [
        {"model": "small", "tokens": 22, "details": {"words": ["hello", "world"], "ok": True, "ratio": 0.5}}
    ]


def test_a_failing_checkpoint_keeps_what_it_logged() -> None:
    @checkpoint(name="log_fails")
    def fails() -> None:
        kitaru.log(reason="bad data", rows=3)
        raise ValueError("boom")

    @flow(name="log_failing")
    def failing() -> None:
        fails()

    handle = failing.run()
    assert handle.status == "failed"
    [call] = KitaruClient().executions.get(handle.exec_id).checkpoints
    assert call.status == "failed"
    assert call.metadata == {"reason": "bad data", "rows": 3}


def test_reused_and_cached_calls_carry_the_logged_metadata() -> None:
    @checkpoint(name="log_cached", cache=True)
    def cached(x: int) -> int:
        kitaru.log(computed=x)
        return x

    @flow(name="log_cache_flow")
    def cache_flow() -> Any:
        return cached(4)

    first = cache_flow.run()
    second = cache_flow.run()
    replay = scoring.replay(scoring.run("ab").exec_id)
    client = KitaruClient()
    [hit] = client.executions.get(second.exec_id).checkpoints
    assert (hit.status, hit.metadata) == ("cached", {"computed": 4})
    assert client.executions.get(first.exec_id).checkpoints[0].metadata == {"computed": 4}
    reused = client.executions.get(replay.exec_id)
    assert reused.checkpoints[0].status == "reused"
    assert reused.checkpoints[0].metadata["tokens"] == 4
    assert reused.metadata["stage"] == "done"  # the replay's own body logged again


def test_log_with_a_value_that_is_not_json_is_a_serialization_error() -> None:
    CAUGHT.clear()

    @checkpoint(name="log_bad_cp")
    def bad_cp() -> int:
        try:
            kitaru.log(handle=object())
        except SerializationError as exc:
            CAUGHT.append(exc)
        kitaru.log(fine=True)
        return 1

    @flow(name="log_bad")
    def bad() -> int:
        try:
            kitaru.log(when=object(), ok=1)
        except SerializationError as exc:
            CAUGHT.append(exc)
        return bad_cp().load()

    handle = bad.run()
    assert handle.wait() == 1
    body_err, cp_err = CAUGHT
    assert body_err.exec_id == handle.exec_id and body_err.name is None
    assert cp_err.exec_id == handle.exec_id and cp_err.name == "log_bad_cp"
    assert "metadata must be JSON-able" in str(body_err)
    ex = KitaruClient().executions.get(handle.exec_id)
    assert "ok" not in ex.metadata and "when" not in ex.metadata  # nothing of a refused call is kept
    assert ex.checkpoints[0].metadata == {"fine": True}


def test_an_uncaught_serialization_error_fails_the_flow() -> None:
    @flow(name="log_uncaught")
    def uncaught() -> None:
        kitaru.log(value={1, 2, object()})

    handle = uncaught.run()
    assert handle.status == "failed"
    failure = KitaruClient().executions.get(handle.exec_id).failure
    assert failure is not None and failure.type == "kitaru_store.errors.SerializationError"


def test_log_outside_a_flow_is_a_context_error() -> None:
    with pytest.raises(KitaruContextError) as info:
        kitaru.log(anything=1)
    assert "only be called while a flow runs" in str(info.value)
    assert "@flow" in (info.value.hint or "")
