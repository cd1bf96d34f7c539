"""@flow: decoration, flow.run(), FlowHandle (wait/get/status), results, misuse."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import pytest

import kitaru
from kitaru import (
    ExecutionNotFinishedError,
    Flow,
    FlowExecutionError,
    FlowHandle,
    InvalidNameError,
    KitaruClient,
    KitaruContextError,
    KitaruError,
    KitaruUsageError,
    checkpoint,
    flow,
)
from kitaru_store import Repository


@checkpoint
def double(x: int) -> int:
    return x * 2


@flow
def bare_flow(a: int, b: int = 0, *, scale: int = 1) -> int:
    return (a + b) * scale


@flow(name="renamed-flow")
def named_flow() -> str:
    return "named"


@flow
def returns_handle(x: int) -> Any:
    return double(x)


@flow
def failing_flow() -> None:
    raise ValueError("flow body broke")


@flow
def inner_flow() -> int:
    return 1


@flow
def outer_flow() -> int:
    return inner_flow.run().wait()


# --- decoration ------------------------------------------------------------------------------


def test_bare_flow_is_a_flow_named_after_the_function() -> None:
    assert isinstance(bare_flow, Flow)
    assert bare_flow.name == "bare_flow"
    assert bare_flow.__name__ == "bare_flow"  # functools.update_wrapper
    assert "bare_flow" in repr(bare_flow)


def test_flow_with_options_uses_the_given_name(store_path: Path) -> None:
    assert isinstance(named_flow, Flow)
    assert named_flow.name == "renamed-flow"
    handle = named_flow.run()
    assert handle.flow_name == "renamed-flow"
    assert KitaruClient().executions.get(handle.exec_id).flow_name == "renamed-flow"


def test_flow_with_empty_parentheses() -> None:
    @flow()
    def f() -> int:
        return 3

    assert isinstance(f, Flow) and f.name == "f"
    assert f.run().wait() == 3


@pytest.mark.parametrize("bad_name", ["", "a/b", " padded", "x" * 256, "line\nbreak"])
def test_invalid_flow_name_is_rejected_when_decorating(bad_name: str) -> None:
    with pytest.raises(InvalidNameError) as info:
        flow(name=bad_name)(lambda: None)
    assert info.value.hint


@pytest.mark.parametrize("thing", [42, "my_flow", None, [1, 2]])
def test_decorating_a_non_callable_is_a_usage_error(thing: Any) -> None:
    with pytest.raises(KitaruUsageError, match="must decorate a function") as info:
        Flow(thing)
    assert info.value.hint and "def" in info.value.hint
    if thing is not None:  # flow(None) is the options form
        with pytest.raises(KitaruUsageError, match="must decorate a function"):
            flow(thing)


def test_flow_with_a_string_argument_instead_of_name_keyword() -> None:
    with pytest.raises(KitaruUsageError, match="not str"):
        flow("my_flow")  # type: ignore[call-overload]


def test_decorating_an_async_function_is_a_usage_error() -> None:
    async def agent() -> int:
        return 1

    with pytest.raises(KitaruUsageError, match="async") as info:
        flow(agent)
    assert "asyncio.run" in (info.value.hint or "")
    with pytest.raises(KitaruUsageError, match="async"):
        flow(name="x")(agent)


def test_decorating_an_async_generator_is_a_usage_error() -> None:
    async def stream() -> Any:
        yield 1

    with pytest.raises(KitaruUsageError, match="async"):
        flow(stream)


def test_a_callable_without_a_name_needs_an_explicit_name() -> None:
    body = functools.partial(bare_flow.fn, 1, 2)
    with pytest.raises(KitaruUsageError, match="no __name__") as info:
        flow(body)
    assert "name=" in (info.value.hint or "")
    named = flow(body, name="partial-flow")
    assert named.run().wait() == 3


# --- running ---------------------------------------------------------------------------------


def test_run_passes_args_and_kwargs_and_returns_a_handle(repo: Repository) -> None:
    handle = bare_flow.run(2, b=3, scale=10)
    assert isinstance(handle, FlowHandle)
    assert len(handle.exec_id) == 32
    assert handle.flow_name == "bare_flow"
    assert handle.status == "completed"
    assert handle.wait() == 50
    assert handle.get() == 50
    assert handle.exec_id[:12] in repr(handle)
    manifest = repo.get_execution(handle.exec_id)
    assert manifest.status == "completed"
    assert manifest.ended_at is not None and manifest.ended_at >= manifest.started_at
    assert repo.get_value(manifest.input_object_id) == {"args": [2], "kwargs": {"b": 3, "scale": 10}}


def test_each_run_is_a_new_execution() -> None:
    first, second = bare_flow.run(1), bare_flow.run(1)
    assert first.exec_id != second.exec_id
    assert first.wait() == second.wait() == 1


def test_result_is_stored_and_readable_without_the_handle(repo: Repository) -> None:
    exec_id = bare_flow.run(4, 5).exec_id
    execution = KitaruClient().executions.get(exec_id)
    assert execution.result_object_id is not None
    assert repo.get_value(execution.result_object_id) == 9


def test_none_result_stores_no_object() -> None:
    @flow
    def nothing() -> None:
        return None

    handle = nothing.run()
    assert handle.wait() is None
    assert KitaruClient().executions.get(handle.exec_id).result_object_id is None


def test_returning_a_checkpoint_output_returns_its_value_and_reuses_its_object(repo: Repository) -> None:
    handle = returns_handle.run(21)
    assert handle.wait() == 42
    execution = KitaruClient().executions.get(handle.exec_id)
    assert execution.result_object_id == execution.checkpoints[0].output_object_id
    assert repo.get_value(execution.result_object_id) == 42


def test_returning_handles_inside_a_collection_returns_their_values(repo: Repository) -> None:
    @flow
    def fan_out() -> Any:
        return {"pair": [double(1), double(2)], "single": double(3), "plain": "x"}

    handle = fan_out.run()
    expected = {"pair": [2, 4], "single": 6, "plain": "x"}
    assert handle.wait() == expected
    result_id = KitaruClient().executions.get(handle.exec_id).result_object_id
    assert result_id is not None and repo.get_value(result_id) == expected


def test_unserializable_flow_result_fails_the_flow() -> None:
    @flow
    def returns_object() -> object:
        return object()

    handle = returns_object.run()
    assert handle.status == "failed"
    with pytest.raises(FlowExecutionError) as info:
        handle.wait()
    assert isinstance(info.value.__cause__, kitaru.SerializationError)
    assert info.value.failure.type.endswith("PickleNotAllowedError")


def test_flow_inputs_that_are_not_data_do_not_stop_the_run(repo: Repository) -> None:
    @flow
    def takes_anything(x: object) -> str:
        return type(x).__name__

    handle = takes_anything.run(object())
    assert handle.wait() == "object"
    assert repo.get_execution(handle.exec_id).input_object_id is None


# --- failures ------------------------------------------------------------------------------


def test_failed_flow_returns_a_failed_handle_and_wait_raises() -> None:
    handle = failing_flow.run()
    assert handle.status == "failed"
    with pytest.raises(FlowExecutionError) as info:
        handle.wait()
    err = info.value
    assert err.exec_id == handle.exec_id
    assert err.name == "failing_flow"
    assert isinstance(err.__cause__, ValueError) and str(err.__cause__) == "flow body broke"
    assert err.failure.type == "ValueError"
    assert err.failure.message == "flow body broke"
    assert "flow body broke" in err.failure.traceback
    assert err.failure.checkpoint is None
    assert "failing_flow" in str(err) and "ValueError" in str(err)
    assert err.hint and handle.exec_id[:12] in err.hint
    with pytest.raises(FlowExecutionError):
        handle.get()


def test_get_on_an_unfinished_execution_raises_not_finished(repo: Repository) -> None:
    exec_id = repo.create_execution("still_running")
    handle = FlowHandle(repo=repo, exec_id=exec_id, flow_name="still_running", status="running")
    assert handle.status == "running"
    with pytest.raises(ExecutionNotFinishedError) as info:
        handle.get()
    assert info.value.exec_id == exec_id
    assert info.value.name == "still_running"
    assert info.value.hint


def test_status_reads_the_store(repo: Repository) -> None:
    handle = bare_flow.run(1)
    repo.update_execution(handle.exec_id, status="cancelled")
    assert handle.status == "cancelled"
    with pytest.raises(FlowExecutionError, match="cancelled"):
        handle.wait()


# --- misuse ----------------------------------------------------------------------------------


def test_calling_a_flow_directly_says_to_use_run() -> None:
    with pytest.raises(KitaruUsageError, match="called directly") as info:
        bare_flow(1, 2)
    assert info.value.name == "bare_flow"
    assert "bare_flow.run(" in (info.value.hint or "")
    assert ".run(" in str(info.value)


def test_calling_a_flow_directly_creates_no_execution(store_path: Path) -> None:
    with pytest.raises(KitaruUsageError):
        bare_flow(1)
    bare_flow.run(1)
    assert len(KitaruClient().executions.list()) == 1


def test_starting_a_flow_inside_a_flow_is_a_context_error() -> None:
    handle = outer_flow.run()
    with pytest.raises(FlowExecutionError) as info:
        handle.wait()
    cause = info.value.__cause__
    assert isinstance(cause, KitaruContextError)
    assert cause.name == "inner_flow"
    assert cause.exec_id == handle.exec_id
    assert cause.hint
    assert "inside another flow" in str(cause)
    # The inner flow never started an execution of its own.
    assert [e.flow_name for e in KitaruClient().executions.list()] == ["outer_flow"]


def test_starting_a_flow_inside_a_checkpoint_is_a_context_error() -> None:
    @checkpoint
    def starts_flow() -> int:
        return inner_flow.run().wait()

    @flow
    def host() -> Any:
        return starts_flow()

    with pytest.raises(FlowExecutionError) as info:
        host.run().wait()
    assert isinstance(info.value.__cause__, KitaruContextError)
    assert info.value.failure.checkpoint == "starts_flow"


def test_flow_errors_are_kitaru_errors() -> None:
    for cls in (FlowExecutionError, ExecutionNotFinishedError, KitaruContextError, KitaruUsageError):
        assert issubclass(cls, KitaruError)
