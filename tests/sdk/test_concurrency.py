"""Concurrency inside a flow: checkpoint.submit() futures and checkpoint.map() on a thread pool."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

import kitaru
from kitaru import (
    CheckpointOutput,
    FlowExecutionError,
    KitaruClient,
    KitaruContextError,
    checkpoint,
    flow,
)

CALLS: list[Any] = []
_lock = threading.Lock()


@pytest.fixture(autouse=True)
def _reset() -> Iterator[None]:
    CALLS.clear()
    yield


def _record(item: Any) -> None:
    with _lock:
        CALLS.append(item)


@checkpoint
def square(x: int) -> int:
    _record(x)
    time.sleep(0.002 * (20 - x) if x <= 20 else 0)  # later items finish first
    return x * x


@checkpoint
def add(a: int, b: int) -> int:
    return a + b


@checkpoint
def total(values: list[int]) -> int:
    return sum(values)


@checkpoint
def fails(x: int) -> int:
    raise ValueError(f"no {x}")


@flow(name="cc_mapped")
def mapped(n: int) -> Any:
    outputs = square.map(range(1, n + 1))
    return total(outputs)


def _calls(exec_id: str) -> list[Any]:
    return KitaruClient().executions.get(exec_id).checkpoints


def test_submit_returns_a_future_that_gives_the_output_handle() -> None:
    seen: dict[str, Any] = {}

    @flow(name="cc_submit")
    def submitting() -> Any:
        future = square.submit(3)
        seen["future"] = future
        seen["invocation_id"] = future.invocation_id
        seen["checkpoint"] = future.checkpoint
        output = future.result()
        seen["output"] = output
        seen["done"] = future.done()
        seen["value"] = future.load()
        return output

    handle = submitting.run()
    assert handle.wait() == 9
    assert isinstance(seen["future"], kitaru.CheckpointFuture)
    assert (seen["invocation_id"], seen["checkpoint"]) == ("square", "square")
    assert isinstance(seen["output"], CheckpointOutput)
    assert seen["done"] is True and seen["value"] == 9
    [call] = _calls(handle.exec_id)
    assert (call.invocation_id, call.status, call.output_object_id) == (
        "square",
        "completed",
        seen["output"].object_id,
    )
    assert "square done" in repr(seen["future"])


def test_submitted_calls_run_concurrently() -> None:
    barrier = threading.Barrier(3, timeout=5)
    threads: set[str] = set()

    @checkpoint(name="cc_meet")
    def meet(i: int) -> int:
        threads.add(threading.current_thread().name)
        barrier.wait()  # only passes when all three run at the same time
        return i

    @flow(name="cc_meeting")
    def meeting() -> Any:
        futures = [meet.submit(i) for i in range(3)]
        return [f.load() for f in futures]

    assert meeting.run().wait() == [0, 1, 2]
    assert len(threads) == 3 and all(t.startswith("kitaru-cc_meeting") for t in threads)


def test_futures_can_be_passed_into_other_checkpoints() -> None:
    @flow(name="cc_chain")
    def chain() -> Any:
        a = square.submit(2)
        b = square.submit(3)
        direct = add(a, b)  # a plain call with futures
        later = add.submit(a, direct)  # a submitted call with a future and a handle
        return total([a, b, later])  # futures inside a list

    handle = chain.run()
    assert handle.wait() == 4 + 9 + (4 + 13)
    calls = {c.invocation_id: c for c in _calls(handle.exec_id)}
    assert list(calls) == ["square", "square_2", "add", "add_2", "total"]
    assert calls["add"].upstream == ("square", "square_2")
    assert calls["add_2"].upstream == ("square", "add")
    assert calls["total"].upstream == ("square", "square_2", "add_2")
    assert calls["add"].inputs == (calls["square"].output_object_id, calls["square_2"].output_object_id)


def test_the_flow_waits_for_submitted_calls_nobody_read() -> None:
    @checkpoint(name="cc_slow")
    def slow() -> str:
        time.sleep(0.05)
        return "late"

    @flow(name="cc_forgotten")
    def forgotten() -> str:
        slow.submit()
        return "body done"

    handle = forgotten.run()
    assert handle.wait() == "body done"
    [call] = _calls(handle.exec_id)
    assert (call.invocation_id, call.status) == ("cc_slow", "completed")


def test_a_flow_can_return_a_future() -> None:
    @flow(name="cc_return_future")
    def returns_future() -> Any:
        return square.submit(5)

    handle = returns_future.run()
    assert handle.wait() == 25
    ex = KitaruClient().executions.get(handle.exec_id)
    assert ex.result_object_id == ex.checkpoints[0].output_object_id


def test_map_gives_deterministic_invocation_ids_and_outputs_in_input_order() -> None:
    handle = mapped.run(20)
    assert handle.wait() == sum(x * x for x in range(1, 21))
    assert sorted(CALLS) == list(range(1, 21))
    calls = _calls(handle.exec_id)
    squares = [c for c in calls if c.name == "square"]
    assert [c.invocation_id for c in squares] == ["square"] + [f"square_{i}" for i in range(2, 21)]
    assert [c.seq for c in squares] == list(range(1, 21))
    repo = KitaruClient().repository
    assert [repo.get_value(c.output_object_id) for c in squares] == [x * x for x in range(1, 21)]
    assert calls[-1].invocation_id == "total"
    assert calls[-1].upstream == tuple(c.invocation_id for c in squares)


def test_a_replay_of_a_mapped_flow_reuses_every_item() -> None:
    source = mapped.run(20)
    CALLS.clear()
    replay = mapped.replay(source.exec_id)
    assert replay.wait() == sum(x * x for x in range(1, 21))
    assert CALLS == []
    src = {c.invocation_id: c.output_object_id for c in _calls(source.exec_id)}
    new = _calls(replay.exec_id)
    assert [c.status for c in new] == ["reused"] * 21
    assert {c.invocation_id: c.output_object_id for c in new} == src

    CALLS.clear()
    partial = mapped.replay(source.exec_id, from_="square_15")
    assert partial.wait() == sum(x * x for x in range(1, 21))
    assert sorted(CALLS) == list(range(15, 21))
    statuses = [(c.invocation_id, c.status) for c in _calls(partial.exec_id)]
    assert statuses[13:16] == [
        ("square_14", "reused"),
        ("square_15", "completed"),
        ("square_16", "completed"),
    ]


def test_map_zips_several_iterables() -> None:
    @flow(name="cc_zip")
    def zipped() -> Any:
        return [o.load() for o in add.map([1, 2, 3], [10, 20, 30, 40])]

    handle = zipped.run()
    assert handle.wait() == [11, 22, 33]
    assert [c.invocation_id for c in _calls(handle.exec_id)] == ["add", "add_2", "add_3"]


def test_a_failing_submitted_call_whose_future_is_never_read_fails_the_flow() -> None:
    @flow(name="cc_unobserved")
    def unobserved() -> Any:
        fails.submit(1)
        return square(2)

    handle = unobserved.run()
    assert handle.status == "failed"
    with pytest.raises(FlowExecutionError) as info:
        handle.wait()
    assert isinstance(info.value.__cause__, ValueError)
    assert info.value.failure.type == "ValueError"
    assert info.value.failure.checkpoint == "fails"
    calls = {c.invocation_id: c.status for c in _calls(handle.exec_id)}
    assert calls == {"fails": "failed", "square": "completed"}


def test_a_failure_the_flow_body_handles_does_not_fail_the_flow() -> None:
    @flow(name="cc_observed")
    def observed() -> Any:
        future = fails.submit(7)
        try:
            future.result()
        except ValueError as exc:
            return f"handled: {exc}"
        return "unreachable"

    assert observed.run().wait() == "handled: no 7"


def test_a_failing_map_item_fails_the_flow() -> None:
    @checkpoint(name="cc_picky")
    def picky(x: int) -> int:
        if x == 3:
            raise ValueError("three")
        return x

    @flow(name="cc_picky_map")
    def picky_map() -> Any:
        return picky.map(range(5))

    handle = picky_map.run()
    assert handle.status == "failed"
    statuses = {c.invocation_id: c.status for c in _calls(handle.exec_id)}
    assert statuses["cc_picky_4"] == "failed"
    assert statuses["cc_picky"] == "completed" and statuses["cc_picky_3"] == "completed"
    with pytest.raises(FlowExecutionError) as info:
        handle.wait()
    assert str(info.value.__cause__) == "three"


def test_a_retry_of_a_failed_map_reruns_only_the_failed_item() -> None:
    broken = {"on": True}

    @checkpoint(name="cc_sometimes")
    def sometimes(x: int) -> int:
        _record(x)
        if broken["on"] and x == 2:
            raise ValueError("two")
        return x

    @flow(name="cc_sometimes_map")
    def sometimes_map() -> Any:
        return total(sometimes.map(range(4)))

    handle = sometimes_map.run()
    assert handle.status == "failed"
    broken["on"] = False
    CALLS.clear()
    assert [(c.invocation_id, c.status) for c in _calls(handle.exec_id)] == [
        ("cc_sometimes", "completed"),
        ("cc_sometimes_2", "completed"),
        ("cc_sometimes_3", "failed"),
        ("cc_sometimes_4", "completed"),
    ]
    before = {c.invocation_id: c.output_object_id for c in _calls(handle.exec_id)}
    assert sometimes_map.retry(handle.exec_id).wait() == 6
    # the failed item runs again; the items that completed beside it, before or after, do not
    assert CALLS == [2]
    after = {c.invocation_id: c.output_object_id for c in _calls(handle.exec_id)}
    for inv in ("cc_sometimes", "cc_sometimes_2", "cc_sometimes_4"):
        assert after[inv] == before[inv]
    assert [c.status for c in _calls(handle.exec_id)] == ["completed"] * 5


def test_an_explicit_id_on_submit() -> None:
    @flow(name="cc_explicit")
    def explicit() -> Any:
        return square.submit(4, id="sixteen")

    handle = explicit.run()
    assert handle.wait() == 16
    assert [c.invocation_id for c in _calls(handle.exec_id)] == ["sixteen"]


def test_submit_and_map_outside_a_flow() -> None:
    with pytest.raises(KitaruContextError, match="called outside a flow"):
        square.submit(1)
    with pytest.raises(KitaruContextError, match="called outside a flow"):
        square.map([1, 2])


def test_submit_inside_a_checkpoint_is_refused() -> None:
    @checkpoint(name="cc_outer")
    def outer() -> int:
        square.submit(1)
        return 0

    @flow(name="cc_nested")
    def nested() -> Any:
        return outer()

    handle = nested.run()
    with pytest.raises(FlowExecutionError) as info:
        handle.wait()
    assert isinstance(info.value.__cause__, KitaruContextError)
    assert "inside checkpoint 'cc_outer'" in str(info.value.__cause__)


def test_log_and_save_work_in_submitted_calls() -> None:
    @checkpoint(name="cc_noted")
    def noted(x: int) -> int:
        kitaru.log(item=x)
        kitaru.save("note", f"item {x}")
        return x

    @flow(name="cc_notes")
    def notes() -> Any:
        return [o.load() for o in noted.map([1, 2, 3])]

    handle = notes.run()
    assert handle.wait() == [1, 2, 3]
    ex = KitaruClient().executions.get(handle.exec_id)
    assert [(c.invocation_id, c.metadata) for c in ex.checkpoints] == [
        ("cc_noted", {"item": 1}),
        ("cc_noted_2", {"item": 2}),
        ("cc_noted_3", {"item": 3}),
    ]
    notes_by_call = {a.invocation_id: a.load() for a in ex.artifacts if a.name == "note"}
    assert notes_by_call == {"cc_noted": "item 1", "cc_noted_2": "item 2", "cc_noted_3": "item 3"}
