"""Failures: recorded errors, what stays loadable, retries and their attempts, caught failures."""

from __future__ import annotations

from typing import Any

import pytest

import kitaru
from kitaru import FlowExecutionError, KitaruClient, checkpoint, flow


class Flaky:
    """Fails the first ``failures`` calls, then returns the attempt number."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls = 0

    def __call__(self) -> int:
        self.calls += 1
        kitaru.save("attempt_note", f"attempt {self.calls}", overwrite=True)
        if self.calls <= self.failures:
            raise ConnectionError(f"transient failure {self.calls}")
        return self.calls


@checkpoint
def prepare(x: int) -> int:
    kitaru.save("prepared", {"x": x})
    return x + 1


@checkpoint
def explode(x: int) -> None:
    kitaru.save("before_crash", f"got {x}", type="context")
    raise ValueError(f"bad input {x}")


@checkpoint
def after(x: int) -> int:
    return x


@flow
def failing_pipeline(x: int) -> Any:
    y = prepare(x)
    explode(y)
    return after(1)


def test_an_exception_in_a_checkpoint_fails_the_execution_with_the_error_recorded() -> None:
    handle = failing_pipeline.run(1)
    assert handle.status == "failed"
    with pytest.raises(FlowExecutionError) as info:
        handle.wait()
    err = info.value
    assert err.exec_id == handle.exec_id and err.name == "failing_pipeline"
    assert isinstance(err.__cause__, ValueError) and str(err.__cause__) == "bad input 2"
    assert err.failure.type == "ValueError"
    assert err.failure.message == "bad input 2"
    assert err.failure.checkpoint == "explode"
    assert "bad input 2" in str(err)

    execution = KitaruClient().executions.get(handle.exec_id)
    assert execution.status == "failed"
    assert execution.ended_at is not None
    failure = execution.failure
    assert failure is not None
    assert (failure.type, failure.message, failure.checkpoint) == ("ValueError", "bad input 2", "explode")
    assert "Traceback (most recent call last)" in failure.traceback
    assert 'raise ValueError(f"bad input {x}")' in failure.traceback

    assert [(c.invocation_id, c.status) for c in execution.checkpoints] == [
        ("prepare", "completed"),
        ("explode", "failed"),
    ]
    failed = execution.checkpoints[1]
    assert failed.failure is not None
    assert (failed.failure.type, failed.failure.checkpoint) == ("ValueError", "explode")
    assert failed.output_object_id is None
    assert failed.upstream == ("prepare",)
    assert [a.failure is not None for a in failed.attempts] == [True]


def test_artifacts_saved_before_a_failure_stay_loadable() -> None:
    handle = failing_pipeline.run(5)
    execution = KitaruClient().executions.get(handle.exec_id)
    by_name = {a.name: a for a in execution.artifacts}
    assert set(by_name) == {"prepare", "prepared", "before_crash"}
    assert by_name["prepare"].load() == 6  # an earlier checkpoint's output
    assert by_name["prepared"].load() == {"x": 5}  # an earlier checkpoint's save
    assert by_name["before_crash"].load() == "got 6"  # the failing checkpoint's own save
    assert by_name["before_crash"].checkpoint == "explode"
    assert by_name["before_crash"].type == "context"


def test_a_failure_in_the_flow_body_names_no_checkpoint() -> None:
    @flow
    def body_fails() -> None:
        prepare(1)
        raise KeyError("missing")

    handle = body_fails.run()
    execution = KitaruClient().executions.get(handle.exec_id)
    assert execution.failure is not None
    assert execution.failure.type == "KeyError"
    assert execution.failure.checkpoint is None
    assert execution.checkpoints[0].status == "completed"


def test_custom_exception_types_are_recorded_with_their_module() -> None:
    class AgentGaveUp(Exception):
        pass

    @checkpoint
    def gives_up() -> None:
        raise AgentGaveUp("tired")

    @flow
    def f() -> None:
        gives_up()

    handle = f.run()
    with pytest.raises(FlowExecutionError) as info:
        handle.wait()
    assert info.value.failure.type == f"{__name__}.{AgentGaveUp.__qualname__}"
    assert isinstance(info.value.__cause__, AgentGaveUp)


# --- retries -------------------------------------------------------------------------------


def test_a_checkpoint_that_succeeds_on_attempt_two_completes_the_flow() -> None:
    flaky = Flaky(failures=1)
    cp = checkpoint(flaky, name="flaky", retries=2)

    @flow
    def f() -> Any:
        return cp()

    handle = f.run()
    assert handle.wait() == 2
    assert flaky.calls == 2
    execution = KitaruClient().executions.get(handle.exec_id)
    assert execution.status == "completed" and execution.failure is None
    [call] = execution.checkpoints
    assert call.status == "completed" and call.failure is None
    assert len(call.attempts) == 2
    first, second = call.attempts
    assert first.failure is not None
    assert (first.failure.type, first.failure.message) == ("ConnectionError", "transient failure 1")
    assert first.failure.checkpoint == "flaky"
    assert first.ended_at is not None
    assert second.failure is None
    # The save of the successful attempt replaced the failed attempt's save of the same name.
    notes = [a for a in execution.artifacts if a.name == "attempt_note"]
    assert [n.load() for n in notes] == ["attempt 2"]
    assert execution.artifact("flaky").load() == 2


@pytest.mark.parametrize("retries", [0, 1, 3])
def test_a_checkpoint_that_keeps_failing_has_retries_plus_one_attempts(retries: int) -> None:
    flaky = Flaky(failures=100)
    cp = checkpoint(flaky, name="always_fails", retries=retries)

    @flow
    def f() -> None:
        cp()

    handle = f.run()
    with pytest.raises(FlowExecutionError) as info:
        handle.wait()
    assert flaky.calls == retries + 1
    assert str(info.value.__cause__) == f"transient failure {retries + 1}"
    [call] = KitaruClient().executions.get(handle.exec_id).checkpoints
    assert call.status == "failed"
    assert len(call.attempts) == retries + 1
    assert [a.failure.message if a.failure else None for a in call.attempts] == [
        f"transient failure {n}" for n in range(1, retries + 2)
    ]
    assert call.failure is not None and call.failure.message == f"transient failure {retries + 1}"
    # What the last attempt saved is still there.
    ref = KitaruClient().executions.get(handle.exec_id).artifact("attempt_note")
    assert ref.load() == f"attempt {retries + 1}"


def test_retries_reuse_the_handed_over_inputs_and_keep_the_invocation_id() -> None:
    seen: list[Any] = []

    @checkpoint(retries=1)
    def uses_input(value: Any) -> Any:
        seen.append(value)
        if len(seen) == 1:
            raise TimeoutError("slow")
        return value

    @flow
    def f() -> Any:
        return uses_input({"from": prepare(1)})

    handle = f.run()
    assert handle.wait() == {"from": 2}
    assert seen == [{"from": 2}, {"from": 2}]
    calls = KitaruClient().executions.get(handle.exec_id).checkpoints
    assert [c.invocation_id for c in calls] == ["prepare", "uses_input"]
    assert calls[1].upstream == ("prepare",)


def test_kitaru_errors_are_not_retried() -> None:
    calls: list[int] = []

    @checkpoint(retries=3)
    def misuses_save() -> None:
        calls.append(1)
        kitaru.save("bad/name", 1)

    @flow
    def f() -> None:
        misuses_save()

    handle = f.run()
    with pytest.raises(FlowExecutionError) as info:
        handle.wait()
    assert isinstance(info.value.__cause__, kitaru.InvalidNameError)
    assert calls == [1]
    [call] = KitaruClient().executions.get(handle.exec_id).checkpoints
    assert len(call.attempts) == 1


# --- the flow body handles a failure ------------------------------------------------------


def test_the_flow_body_can_catch_a_checkpoint_failure_and_continue() -> None:
    @flow
    def resilient(x: int) -> Any:
        try:
            explode(x)
        except ValueError as exc:
            fallback = f"recovered from: {exc}"
        else:  # pragma: no cover - explode always raises
            fallback = "no error"
        return after(fallback)

    handle = resilient.run(7)
    assert handle.wait() == "recovered from: bad input 7"
    assert handle.status == "completed"
    execution = KitaruClient().executions.get(handle.exec_id)
    assert execution.status == "completed" and execution.failure is None
    assert [(c.invocation_id, c.status) for c in execution.checkpoints] == [
        ("explode", "failed"),
        ("after", "completed"),
    ]
    assert execution.artifact("before_crash").load() == "got 7"
    assert execution.artifact("after").load() == "recovered from: bad input 7"


def test_a_failed_invocation_keeps_its_id_so_a_retry_by_hand_gets_the_next_one() -> None:
    flaky = Flaky(failures=1)
    cp = checkpoint(flaky, name="by_hand")

    @flow
    def f() -> Any:
        try:
            return cp()
        except ConnectionError:
            return cp()

    handle = f.run()
    assert handle.wait() == 2
    calls = KitaruClient().executions.get(handle.exec_id).checkpoints
    assert [(c.invocation_id, c.status) for c in calls] == [("by_hand", "failed"), ("by_hand_2", "completed")]
