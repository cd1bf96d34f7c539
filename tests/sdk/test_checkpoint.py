"""@checkpoint: options, invocation ids, handles and data flow, misuse."""

from __future__ import annotations

import functools
from typing import Any

import pytest

import kitaru
from kitaru import (
    ArtifactType,
    Checkpoint,
    CheckpointOutput,
    DuplicateNameError,
    FlowExecutionError,
    InvalidArtifactTypeError,
    InvalidNameError,
    KitaruClient,
    KitaruContextError,
    KitaruUsageError,
    PickleNotAllowedError,
    SerializationError,
    checkpoint,
    flow,
)
from kitaru_store import Repository


@checkpoint
def fetch(topic: str) -> str:
    return f"notes on {topic}"


@checkpoint(name="summarize", type="response", retries=1)
def summarize_impl(text: str) -> str:
    return text.upper()


@checkpoint
def combine(parts: Any) -> Any:
    return parts


@checkpoint
def with_own_id(id: int) -> int:
    return id * 10


@checkpoint(id="fixed")
def fixed() -> str:
    return "fixed"


def _run(body: Any, *args: Any) -> Any:
    """Run ``body`` as a flow; returns (result, Execution)."""
    handle = flow(body).run(*args)
    return handle.wait(), KitaruClient().executions.get(handle.exec_id)


# --- decoration ------------------------------------------------------------------------------


def test_bare_checkpoint_defaults() -> None:
    assert isinstance(fetch, Checkpoint)
    assert fetch.name == "fetch"
    assert fetch.retries == 0
    assert fetch.type == "output"
    assert fetch.fixed_id is None
    assert fetch.__name__ == "fetch"
    assert "fetch" in repr(fetch)


def test_checkpoint_options_are_kept() -> None:
    assert isinstance(summarize_impl, Checkpoint)
    assert summarize_impl.name == "summarize"
    assert summarize_impl.retries == 1
    assert summarize_impl.type == "response"
    assert fixed.fixed_id == "fixed"


@pytest.mark.parametrize(
    ("given", "expected"),
    [("Context", "context"), ("PROMPT", "prompt"), (" blob ", "blob"), (ArtifactType.INPUT, "input")],
)
def test_checkpoint_type_is_case_insensitive_and_accepts_the_enum(given: Any, expected: str) -> None:
    cp = checkpoint(type=given)(lambda: 1)
    assert cp.type == expected


def test_checkpoint_with_empty_parentheses() -> None:
    cp = checkpoint()(lambda: 1)
    assert isinstance(cp, Checkpoint) and cp.retries == 0


@pytest.mark.parametrize("retries", [-1, 1.5, "2", True, None])
def test_bad_retries_is_a_usage_error(retries: Any) -> None:
    with pytest.raises(KitaruUsageError, match="retries") as info:
        checkpoint(retries=retries)(lambda: 1)
    assert info.value.hint


def test_unknown_checkpoint_type_lists_the_valid_ones() -> None:
    with pytest.raises(InvalidArtifactTypeError) as info:
        checkpoint(type="image")(lambda: 1)
    for t in ("prompt", "response", "context", "input", "output", "blob"):
        assert t in (info.value.hint or "")


@pytest.mark.parametrize("kwargs", [{"name": ""}, {"name": "a/b"}, {"id": ""}, {"id": "x\ty"}])
def test_invalid_checkpoint_name_or_id_is_rejected(kwargs: dict[str, str]) -> None:
    with pytest.raises(InvalidNameError):
        checkpoint(**kwargs)(lambda: 1)  # type: ignore[arg-type]


def test_non_callable_and_async_checkpoints_are_usage_errors() -> None:
    async def coro() -> int:
        return 1

    with pytest.raises(KitaruUsageError, match="must decorate a function"):
        checkpoint(3)  # type: ignore[call-overload]
    with pytest.raises(KitaruUsageError, match="async"):
        checkpoint(coro)
    with pytest.raises(KitaruUsageError, match="async"):
        checkpoint(retries=2)(coro)


def test_a_callable_without_a_name_needs_an_explicit_name() -> None:
    def add(a: int, b: int) -> int:
        return a + b

    with pytest.raises(KitaruUsageError, match="no __name__"):
        checkpoint(functools.partial(add, 1))
    add_one = checkpoint(functools.partial(add, 1), name="add_one")

    def body() -> Any:
        return add_one(2)

    result, execution = _run(body)
    assert result == 3
    assert execution.checkpoints[0].invocation_id == "add_one"


# --- calls and invocation ids --------------------------------------------------------------


def test_call_in_a_flow_returns_a_persisted_checkpoint_output(repo: Repository) -> None:
    seen: list[CheckpointOutput] = []

    def body() -> str:
        out = fetch("kitaru")
        seen.append(out)
        assert isinstance(out, CheckpointOutput)
        return out.load()

    result, execution = _run(body)
    assert result == "notes on kitaru"
    out = seen[0]
    assert out.exec_id == execution.exec_id
    assert out.checkpoint == "fetch" and out.invocation_id == "fetch"
    assert repo.get_value(out.object_id) == "notes on kitaru"
    [call] = execution.checkpoints
    assert call.invocation_id == "fetch" and call.name == "fetch" and call.status == "completed"
    assert call.output_object_id == out.object_id
    assert call.ended_at is not None and call.ended_at >= call.started_at
    [artifact] = execution.artifacts
    assert artifact.kind == "checkpoint_output"
    assert artifact.name == "fetch" and artifact.checkpoint == "fetch" and artifact.type == "output"
    assert artifact.object_id == out.object_id
    assert artifact.load() == "notes on kitaru"


def test_options_name_and_type_reach_the_store() -> None:
    def body() -> Any:
        return summarize_impl("abc")

    result, execution = _run(body)
    assert result == "ABC"
    [artifact] = execution.artifacts
    assert (artifact.name, artifact.checkpoint, artifact.type) == ("summarize", "summarize", "response")


def test_repeated_calls_get_numbered_invocation_ids() -> None:
    def body() -> list[str]:
        return [fetch(t).load() for t in ("a", "b", "c")]

    result, execution = _run(body)
    assert result == ["notes on a", "notes on b", "notes on c"]
    assert [c.invocation_id for c in execution.checkpoints] == ["fetch", "fetch_2", "fetch_3"]
    assert {a.name: a.load() for a in execution.artifacts} == {
        "fetch": "notes on a",
        "fetch_2": "notes on b",
        "fetch_3": "notes on c",
    }
    assert all(a.checkpoint == "fetch" for a in execution.artifacts)


def test_explicit_ids_by_keyword_and_with_id() -> None:
    def body() -> list[str]:
        a = fetch("a", id="first")
        b = fetch.with_id("second")("b")
        c = fetch("c")
        return [a.invocation_id, b.invocation_id, c.invocation_id]

    result, execution = _run(body)
    assert result == ["first", "second", "fetch"]
    assert [c.invocation_id for c in execution.checkpoints] == ["first", "second", "fetch"]
    assert {a.name for a in execution.artifacts} == {"first", "second", "fetch"}
    assert all(c.name == "fetch" for c in execution.checkpoints)


def test_a_function_with_an_id_parameter_receives_it() -> None:
    def body() -> Any:
        out = with_own_id(id=4)
        return [out.load(), out.invocation_id, with_own_id.with_id("explicit")(id=5).invocation_id]

    result, _ = _run(body)
    assert result == [40, "with_own_id", "explicit"]


def test_fixed_id_from_the_decorator() -> None:
    def body() -> str:
        return fixed().invocation_id

    result, execution = _run(body)
    assert result == "fixed"
    assert execution.artifacts[0].name == "fixed"


def test_an_explicit_id_does_not_collide_with_numbered_ids() -> None:
    def body() -> list[str]:
        return [
            fetch.with_id("fetch_2")("x").invocation_id,
            fetch("y").invocation_id,
            fetch("z").invocation_id,
        ]

    result, _ = _run(body)
    assert result == ["fetch_2", "fetch", "fetch_3"]


@pytest.mark.parametrize(
    "second_call",
    [
        lambda: fetch("b", id="dup"),
        lambda: fetch.with_id("dup")("b"),
        lambda: combine.with_id("dup")(1),
        lambda: fetch("b", id="fetch"),
    ],
    ids=["keyword", "with_id", "other-checkpoint", "auto-id-taken"],
)
def test_duplicate_explicit_ids_are_an_error(second_call: Any) -> None:
    def body() -> None:
        fetch("a", id="dup")
        fetch("a")  # takes the id "fetch"
        second_call()

    handle = flow(body).run()
    with pytest.raises(FlowExecutionError) as info:
        handle.wait()
    cause = info.value.__cause__
    assert isinstance(cause, DuplicateNameError)
    assert cause.exec_id == handle.exec_id
    assert cause.name in ("dup", "fetch")
    assert cause.hint
    # The earlier calls are stored; the duplicate never ran.
    assert [c.invocation_id for c in KitaruClient().executions.get(handle.exec_id).checkpoints] == [
        "dup",
        "fetch",
    ]


def test_a_fixed_id_checkpoint_called_twice_is_a_duplicate() -> None:
    def body() -> None:
        fixed()
        fixed()

    with pytest.raises(FlowExecutionError) as info:
        flow(body).run().wait()
    assert isinstance(info.value.__cause__, DuplicateNameError)


def test_an_invalid_explicit_id_is_rejected() -> None:
    def body() -> None:
        fetch("a", id="no/slashes")

    with pytest.raises(FlowExecutionError) as info:
        flow(body).run().wait()
    assert isinstance(info.value.__cause__, InvalidNameError)
    with pytest.raises(InvalidNameError):
        fetch.with_id("")


# --- handles and data flow ------------------------------------------------------------------


def test_passing_a_handle_hands_over_the_value_and_records_the_edge() -> None:
    def body() -> Any:
        notes = fetch("x")
        return summarize_impl(notes)

    result, execution = _run(body)
    assert result == "NOTES ON X"
    first, second = execution.checkpoints
    assert second.upstream == ("fetch",)
    assert second.inputs == (first.output_object_id,)
    assert first.upstream == () and first.inputs == ()
    output = execution.artifact("summarize")
    assert output.inputs == (first.output_object_id,)


def test_handles_inside_lists_tuples_and_dicts_are_handed_over() -> None:
    def body() -> Any:
        a, b, c = fetch("a"), fetch("b"), fetch("c")
        return combine({"list": [a, "plain"], "nested": {"tuple": (b,)}, "c": c})

    result, execution = _run(body)
    assert result == {
        "list": ["notes on a", "plain"],
        "nested": {"tuple": ("notes on b",)},
        "c": "notes on c",
    }
    ids = {c.invocation_id: c.output_object_id for c in execution.checkpoints}
    last = execution.checkpoints[-1]
    assert last.invocation_id == "combine"
    assert set(last.upstream) == {"fetch", "fetch_2", "fetch_3"}
    assert set(last.inputs) == {ids["fetch"], ids["fetch_2"], ids["fetch_3"]}


def test_handles_passed_as_keyword_arguments_are_handed_over() -> None:
    def body() -> Any:
        return combine(parts=fetch("k"))

    result, execution = _run(body)
    assert result == "notes on k"
    assert execution.checkpoints[-1].upstream == ("fetch",)


def test_load_in_the_flow_body_gives_the_value() -> None:
    def body() -> str:
        text = fetch("body").load()
        assert isinstance(text, str)
        return f"preview: {text[:8]}"

    result, _ = _run(body)
    assert result == "preview: notes on"


def test_load_reads_from_the_store_for_a_handle_without_a_cached_value(repo: Repository) -> None:
    captured: list[CheckpointOutput] = []

    def body() -> None:
        captured.append(fetch("stored"))

    _run(body)
    out = captured[0]
    fresh = CheckpointOutput(
        repo=repo,
        exec_id=out.exec_id,
        checkpoint=out.checkpoint,
        invocation_id=out.invocation_id,
        object_id=out.object_id,
    )
    assert fresh.load() == "notes on stored"


def test_str_and_repr_of_a_handle_say_to_call_load() -> None:
    texts: list[str] = []

    def body() -> None:
        out = fetch("x")
        texts.extend([str(out), repr(out), "%s" % out])  # noqa: UP031

    _, execution = _run(body)
    for text in texts:
        assert ".load()" in text
        assert "fetch" in text
        assert execution.exec_id[:12] in text


MISUSES = {
    "f-string": lambda h: f"{h}",
    "format": lambda h: format(h, ""),
    "str.format": lambda h: "{}".format(h),  # noqa: UP032
    "bool": lambda h: bool(h),
    "if": lambda h: 1 if h else 0,
    "iter": lambda h: iter(h),
    "list": lambda h: list(h),
    "unpack": lambda h: [*h],
    "len": lambda h: len(h),
    "index": lambda h: h[0],
    "key": lambda h: h["key"],
    "in": lambda h: "x" in h,
}


@pytest.mark.parametrize("misuse", list(MISUSES.values()), ids=list(MISUSES))
def test_using_a_handle_as_its_value_is_a_usage_error(misuse: Any) -> None:
    errors: list[KitaruUsageError] = []

    def body() -> str:
        out = fetch("x")
        try:
            misuse(out)
        except KitaruUsageError as exc:
            errors.append(exc)
        return out.load()

    result, execution = _run(body)
    assert result == "notes on x"  # the flow body caught the error and went on
    [err] = errors
    assert err.exec_id == execution.exec_id
    assert err.name == "fetch"
    assert ".load()" in (err.hint or "") and ".load()" in str(err)


def test_misusing_a_handle_fails_the_flow_when_not_caught() -> None:
    def body() -> str:
        return f"summary: {fetch('x')}"

    handle = flow(body).run()
    with pytest.raises(FlowExecutionError) as info:
        handle.wait()
    assert isinstance(info.value.__cause__, KitaruUsageError)
    assert info.value.failure.type == "kitaru.errors.KitaruUsageError"


# --- context errors ----------------------------------------------------------------------


def test_checkpoint_called_outside_a_flow_is_a_context_error() -> None:
    with pytest.raises(KitaruContextError, match="outside a flow") as info:
        fetch("x")
    assert info.value.name == "fetch"
    assert info.value.exec_id is None
    assert "@flow" in (info.value.hint or "")
    with pytest.raises(KitaruContextError):
        fetch.with_id("x")("y")


def test_checkpoint_called_inside_a_checkpoint_is_a_context_error() -> None:
    @checkpoint
    def outer() -> str:
        return fetch("inner").load()

    def body() -> Any:
        return outer()

    handle = flow(body).run()
    with pytest.raises(FlowExecutionError) as info:
        handle.wait()
    cause = info.value.__cause__
    assert isinstance(cause, KitaruContextError)
    assert "inside checkpoint 'outer'" in str(cause)
    assert cause.name == "fetch" and cause.exec_id == handle.exec_id
    assert "nest" in (cause.hint or "")
    execution = KitaruClient().executions.get(handle.exec_id)
    assert [(c.invocation_id, c.status) for c in execution.checkpoints] == [("outer", "failed")]
    assert execution.failure is not None and execution.failure.checkpoint == "outer"


def test_a_checkpoint_returning_an_unserializable_value_fails_the_flow() -> None:
    @checkpoint(retries=3)
    def makes_lock() -> Any:
        calls.append(1)
        return object()

    calls: list[int] = []

    def body() -> Any:
        return makes_lock()

    handle = flow(body).run()
    with pytest.raises(FlowExecutionError) as info:
        handle.wait()
    cause = info.value.__cause__
    assert isinstance(cause, PickleNotAllowedError) and isinstance(cause, SerializationError)
    assert "allow_pickle" in (cause.hint or str(cause))
    execution = KitaruClient().executions.get(handle.exec_id)
    assert execution.status == "failed"
    assert execution.failure is not None
    assert execution.failure.type == "kitaru_store.errors.PickleNotAllowedError"
    assert execution.failure.checkpoint == "makes_lock"
    [call] = execution.checkpoints
    assert call.status == "failed" and call.failure is not None
    assert call.failure.type == "kitaru_store.errors.PickleNotAllowedError"
    assert call.output_object_id is None
    assert calls == [1]  # kitaru's own errors are not retried
    assert len(call.attempts) == 1


def test_structured_outputs_round_trip() -> None:
    @checkpoint
    def structured() -> dict[str, Any]:
        return {"ints": [1, 2], "tuple": (1, "a"), "none": None, "bytes": b"\x00\x01"}

    def body() -> Any:
        return structured()

    result, execution = _run(body)
    assert result == {"ints": [1, 2], "tuple": (1, "a"), "none": None, "bytes": b"\x00\x01"}
    assert execution.artifact("structured").load() == result
    assert kitaru.current_execution_id() is None
