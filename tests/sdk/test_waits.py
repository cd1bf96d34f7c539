"""kitaru.wait(): a flow parks at a question, takes schema-validated input, and resumes.

Covers where wait() may be called, schemas and input validation (python types, msgspec, dataclasses,
pydantic, enums), the client side (input, resume, abort_wait, pending_waits), resume reusing the
completed checkpoints, two waits in one flow, polling with a timeout, and replay reusing answers.
"""

from __future__ import annotations

import dataclasses
import enum
import threading
import time
from typing import Any, Literal, Optional

import msgspec
import pydantic
import pytest

import kitaru
from kitaru import (
    ExecutionStateError,
    FlowExecutionError,
    InputValidationError,
    KitaruClient,
    KitaruContextError,
    KitaruUsageError,
    SerializationError,
    WaitAbortedError,
    WaitNotFoundError,
    checkpoint,
    flow,
)
from kitaru_store import Repository

# --- schema classes (module level: the input side imports them by name) -----------------------


class Verdict(msgspec.Struct):
    approved: bool
    note: str = ""


@dataclasses.dataclass
class Review:
    score: int
    tags: list[str]


class Rating(pydantic.BaseModel):
    stars: int
    comment: str


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


# --- flows -------------------------------------------------------------------------------------

CALLS = {"research": 0, "write_report": 0, "polish": 0}
RECEIVED: list[Any] = []


@pytest.fixture(autouse=True)
def _reset_counters() -> None:
    for key in CALLS:
        CALLS[key] = 0
    RECEIVED.clear()


@checkpoint
def research(topic: str) -> str:
    CALLS["research"] += 1
    return f"Research notes about {topic}."


@checkpoint
def write_report(summary: str) -> str:
    CALLS["write_report"] += 1
    return f"REPORT: {summary}"


@checkpoint
def polish(report: str, style: str) -> str:
    CALLS["polish"] += 1
    return f"{report} [{style}]"


@flow
def w_approval(topic: str) -> Any:
    """The guide's example: the question is built from summary.load()."""
    summary = research(topic)
    summary_text = summary.load()
    approved = kitaru.wait(
        name="approve_summary",
        question=f"Approve this summary?\n\n{summary_text}",
        schema=bool,
        metadata={"channel": "review"},
    )
    RECEIVED.append(approved)
    if not approved:
        return "rejected"
    return write_report(summary)


@flow
def w_two_waits(topic: str) -> Any:
    summary = research(topic)
    approved = kitaru.wait(name="approve", question="Approve?", schema=bool)
    if not approved:
        return "rejected"
    report = write_report(summary)
    style = kitaru.wait(name="style", question="Which style?", schema=Literal["formal", "casual"])
    return polish(report, style)


SCHEMA: dict[str, Any] = {"schema": bool}


@flow
def w_typed() -> Any:
    value = kitaru.wait(name="answer", question="?", schema=SCHEMA["schema"])
    RECEIVED.append(value)
    return value


def run_typed(schema: Any) -> str:
    SCHEMA["schema"] = schema
    handle = w_typed.run()
    assert handle.status == "waiting"
    return handle.exec_id


# --- the seed example, end to end --------------------------------------------------------------


def test_wait_persists_the_question_and_resume_reuses_completed_checkpoints() -> None:
    client = KitaruClient()
    handle = w_approval.run("tides")
    assert handle.status == "waiting"  # run() returned at the wait
    assert CALLS == {"research": 1, "write_report": 0, "polish": 0}
    assert RECEIVED == []

    execution = client.executions.get(handle.exec_id)
    assert execution.status == "waiting" and execution.ended_at is None
    question = "Approve this summary?\n\nResearch notes about tides."  # built from summary.load()
    assert execution.pending_wait is not None
    assert execution.pending_wait.question == question
    assert [(w.name, w.status, w.schema, w.metadata) for w in execution.waits] == [
        ("approve_summary", "pending", "bool", {"channel": "review"})
    ]
    [pending] = client.executions.pending_waits(handle.exec_id)
    assert (pending.exec_id, pending.name, pending.question, pending.schema) == (
        handle.exec_id,
        "approve_summary",
        question,
        "bool",
    )
    assert pending.metadata == {"channel": "review"} and pending.timeout is None
    with pytest.raises(kitaru.ExecutionNotFinishedError):
        handle.get()

    assert client.executions.input(handle.exec_id, wait="approve_summary", value=True) is True
    answered = client.executions.get(handle.exec_id)
    assert answered.status == "waiting"  # input alone does not run anything
    assert answered.waits[0].status == "answered" and answered.waits[0].answered_at is not None
    assert client.executions.pending_waits(handle.exec_id) == []

    resumed = client.executions.resume(handle.exec_id)
    assert resumed.exec_id == handle.exec_id
    assert resumed.status == "completed"
    assert resumed.wait() == "REPORT: Research notes about tides."
    assert CALLS == {"research": 1, "write_report": 1, "polish": 0}  # research was reused
    assert RECEIVED == [True]  # wait() returned the answer

    final = client.executions.get(handle.exec_id)
    assert [(c.invocation_id, c.status) for c in final.checkpoints] == [
        ("research", "completed"),
        ("write_report", "completed"),
    ]
    assert final.pending_wait is None


def test_the_answer_is_an_input_artifact_of_kind_wait_input() -> None:
    client = KitaruClient()
    handle = w_approval.run("owls")
    client.executions.input(handle.exec_id, value=True)  # the only pending wait: no name needed
    execution = client.executions.get(handle.exec_id)
    [entry] = [a for a in execution.artifacts if a.kind == "wait_input"]
    assert (entry.name, entry.type, entry.invocation_id) == ("approve_summary", "input", "approve_summary")
    assert entry.load() is True
    assert entry.metadata == {"question": "Approve this summary?\n\nResearch notes about owls."}
    assert execution.artifact("approve_summary").artifact_id == entry.artifact_id
    assert [a.name for a in client.artifacts.list(handle.exec_id, type="input")] == ["approve_summary"]
    assert client.artifacts.get(entry.artifact_id).load() is True
    value_id = execution.waits[0].value_object_id
    assert value_id == entry.object_id

    client.executions.resume(handle.exec_id)
    after = client.executions.get(handle.exec_id)
    assert [a.name for a in after.artifacts if a.kind == "wait_input"] == ["approve_summary"]


def test_a_false_answer_takes_the_other_branch() -> None:
    client = KitaruClient()
    handle = w_approval.run("bees")
    client.executions.input(handle.exec_id, wait="approve_summary", value=False)
    assert client.executions.resume(handle.exec_id).wait() == "rejected"
    assert CALLS["write_report"] == 0 and RECEIVED == [False]


def test_two_waits_in_one_flow() -> None:
    client = KitaruClient()
    handle = w_two_waits.run("rain")
    assert handle.status == "waiting"
    assert [w.name for w in client.executions.pending_waits(handle.exec_id)] == ["approve"]

    client.executions.input(handle.exec_id, wait="approve", value=True)
    second = client.executions.resume(handle.exec_id)
    assert second.status == "waiting"  # waits again, at the second question
    [pending] = client.executions.pending_waits(handle.exec_id)
    assert (pending.name, pending.schema) == ("style", "Literal['formal', 'casual']")
    assert CALLS == {"research": 1, "write_report": 1, "polish": 0}

    with pytest.raises(WaitNotFoundError, match="is answered") as info:
        client.executions.input(handle.exec_id, wait="approve", value=False)  # already answered
    assert info.value.hint == "pending waits: style"
    with pytest.raises(InputValidationError, match="expected one of 'casual', 'formal'; got 'loud'"):
        client.executions.input(handle.exec_id, wait="style", value="loud")
    client.executions.input(handle.exec_id, wait="style", value="casual")

    done = client.executions.resume(handle.exec_id)
    assert done.status == "completed"
    assert done.wait() == "REPORT: Research notes about rain. [casual]"
    assert CALLS == {"research": 1, "write_report": 1, "polish": 1}  # nothing ran twice
    execution = client.executions.get(handle.exec_id)
    assert [(w.name, w.status) for w in execution.waits] == [("approve", "answered"), ("style", "answered")]
    assert sorted(a.name for a in execution.artifacts if a.type == "input") == ["approve", "style"]


def test_wait_without_a_name_is_named_wait_and_numbered() -> None:
    @flow
    def w_unnamed() -> Any:
        first = kitaru.wait(question="one?")
        second = kitaru.wait(question="two?")
        return [first, second]

    client = KitaruClient()
    handle = w_unnamed.run()
    [pending] = client.executions.pending_waits(handle.exec_id)
    assert (pending.name, pending.schema) == ("wait", "any")  # no schema: any value
    client.executions.input(handle.exec_id, value={"free": ["form"]})
    client.executions.resume(handle.exec_id)
    assert [w.name for w in client.executions.pending_waits(handle.exec_id)] == ["wait_2"]
    client.executions.input(handle.exec_id, value=7)
    assert client.executions.resume(handle.exec_id).wait() == [{"free": ["form"]}, 7]


# --- where wait() may be called ----------------------------------------------------------------


def test_wait_outside_a_flow_is_a_context_error() -> None:
    with pytest.raises(KitaruContextError, match="only be called in the body of a running @flow"):
        kitaru.wait(name="nowhere", schema=bool)


def test_wait_in_a_checkpoint_is_a_context_error() -> None:
    @checkpoint
    def asks() -> Any:
        return kitaru.wait(name="inside", schema=bool)

    @flow
    def w_in_checkpoint() -> Any:
        return asks()

    handle = w_in_checkpoint.run()
    assert handle.status == "failed"
    with pytest.raises(FlowExecutionError) as info:
        handle.wait()
    cause = info.value.__cause__
    assert isinstance(cause, KitaruContextError)
    assert "cannot be called inside checkpoint 'asks'" in str(cause)
    assert info.value.failure.type == "kitaru.errors.KitaruContextError"
    assert info.value.failure.checkpoint == "asks"
    assert KitaruClient().executions.get(handle.exec_id).waits == []


def test_except_exception_in_the_flow_body_does_not_swallow_the_suspension() -> None:
    @flow
    def w_guarded() -> Any:
        try:
            return kitaru.wait(name="guarded", schema=int)
        except Exception:
            return "swallowed"

    handle = w_guarded.run()
    assert handle.status == "waiting"
    KitaruClient().executions.input(handle.exec_id, value=5)
    assert KitaruClient().executions.resume(handle.exec_id).wait() == 5


# --- bad arguments ----------------------------------------------------------------------------


def _failure_of(handle: Any) -> BaseException:
    assert handle.status == "failed"
    with pytest.raises(FlowExecutionError) as info:
        handle.wait()
    cause = info.value.__cause__
    assert cause is not None
    return cause


@pytest.mark.parametrize(
    ("schema", "shown"),
    [
        (object, "<class 'object'>"),
        ("bool", "'bool'"),
        (list[object], "<class 'object'>"),
        (dict[str, type], "<class 'type'>"),
        (3, "3"),
    ],
)
def test_a_bad_schema_is_a_usage_error(schema: Any, shown: str) -> None:
    SCHEMA["schema"] = schema
    cause = _failure_of(w_typed.run())
    assert isinstance(cause, KitaruUsageError)
    assert f"cannot use {shown} as a schema" in str(cause)
    assert "msgspec Struct, a dataclass, a pydantic model or an Enum" in (cause.hint or "")


def test_a_schema_class_nobody_can_import_is_answered_through_its_json_schema() -> None:
    """A class local to a function: the answer is checked against the stored JSON Schema, stored
    as JSON data, and converted to the class when the flow's wait() returns it."""

    class LocalVerdict(msgspec.Struct):
        ok: bool

    exec_id = run_typed(LocalVerdict)
    client = KitaruClient()
    with pytest.raises(InputValidationError, match=r": answer\.ok: expected bool, got int"):
        client.executions.input(exec_id, value={"ok": 1})
    assert client.executions.input(exec_id, value={"ok": True}) == {"ok": True}
    assert client.executions.get(exec_id).artifact("answer").load() == {"ok": True}
    assert client.executions.resume(exec_id).wait() == LocalVerdict(ok=True)
    assert [LocalVerdict(ok=True)] == RECEIVED


@pytest.mark.parametrize("timeout", [-1, True, "5", [1]])
def test_a_bad_timeout_is_a_usage_error(timeout: Any) -> None:
    @flow
    def w_bad_timeout() -> Any:
        return kitaru.wait(name="t", schema=bool, timeout=timeout)

    cause = _failure_of(w_bad_timeout.run())
    assert isinstance(cause, KitaruUsageError)
    assert "timeout must be a number of seconds >= 0" in str(cause)


def test_a_question_that_is_not_text_is_a_usage_error() -> None:
    @flow
    def w_handle_question(topic: str) -> Any:
        summary = research(topic)
        return kitaru.wait(name="approve", question=summary, schema=bool)  # type: ignore[arg-type]

    handle = w_handle_question.run("mud")
    cause = _failure_of(handle)
    assert isinstance(cause, KitaruUsageError)
    assert "question must be a string, not CheckpointOutput" in str(cause)
    assert ".load()" in (cause.hint or "")
    execution = KitaruClient().executions.get(handle.exec_id)  # the manifest stays readable
    assert execution.waits == [] and execution.status == "failed"


def test_bad_names_and_metadata_are_refused() -> None:
    @flow
    def w_bad_name() -> Any:
        return kitaru.wait(name="a/b", schema=bool)

    @flow
    def w_bad_metadata() -> Any:
        return kitaru.wait(name="m", schema=bool, metadata={"when": object()})

    assert isinstance(_failure_of(w_bad_name.run()), kitaru.InvalidNameError)
    cause = _failure_of(w_bad_metadata.run())
    assert isinstance(cause, SerializationError) and "metadata must be JSON-able" in str(cause)


# --- input validation --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("schema", "value", "what"),
    [
        (bool, "yes", ": answer: expected bool, got str"),
        (bool, 1, ": answer: expected bool, got int"),
        (int, "3", ": answer: expected int, got str"),
        (int, 2.5, ": answer: expected int, got float"),
        (int, True, ": answer: expected int, got bool"),
        (list[str], ["a", 2], ": answer[1]: expected str, got int"),
        (list[str], "ab", ": answer: expected list, got str"),
        (Literal["yes", "no"], "maybe", ": answer: expected one of 'no', 'yes'; got 'maybe'"),
        (Optional[int], "1", ": answer: expected int or null, got str"),  # noqa: UP045 -- Optional on purpose
        (int | None, 1.5, ": answer: expected int or null, got float"),
        (Verdict, {"approved": "yes"}, ": answer.approved: expected bool, got str"),
        (Verdict, {}, ": answer.approved: required field missing"),
        (Verdict, {"approved": True, "note": ["x"]}, ": answer.note: expected str, got list"),
        (Review, {"score": 1}, ": answer.tags: required field missing"),
        (Review, {"score": 1, "tags": [3]}, ": answer.tags[0]: expected str, got int"),
        (Rating, {"stars": "many", "comment": "ok"}, ": answer.stars: expected int, got str"),
        (Rating, {"stars": "3", "comment": "ok"}, ": answer.stars: expected int, got str"),  # JSON: no "3"
        (Rating, {"stars": 3}, ": answer.comment: required field missing"),
        (Color, "green", ": answer: expected one of 'blue', 'red'; got 'green'"),
        (Color, "RED", ": answer: expected one of 'blue', 'red'; got 'RED'"),
    ],
)
def test_input_that_does_not_match_the_schema_is_refused(schema: Any, value: Any, what: str) -> None:
    client = KitaruClient()
    exec_id = run_typed(schema)
    with pytest.raises(InputValidationError) as info:
        client.executions.input(exec_id, wait="answer", value=value)
    err = info.value
    assert "input for wait 'answer' does not match its schema" in str(err)
    assert what in str(err)
    assert (err.exec_id, err.name) == (exec_id, "answer")
    execution = client.executions.get(exec_id)
    assert execution.waits[0].status == "pending"  # a refused input changes nothing
    assert [a for a in execution.artifacts if a.kind == "wait_input"] == []


@pytest.mark.parametrize(
    ("schema", "value", "expected"),
    [
        (bool, False, False),
        (int, 3, 3),
        (float, 2, 2.0),
        (list[str], ("a", "b"), ["a", "b"]),
        (dict[str, float], {"x": 1}, {"x": 1.0}),
        (tuple[int, str], [1, "a"], (1, "a")),
        (Literal["yes", "no"], "no", "no"),
        (Optional[int], None, None),  # noqa: UP045
        (int | None, 4, 4),
        (Verdict, {"approved": True}, Verdict(approved=True, note="")),
        (Verdict, Verdict(approved=False, note="n"), Verdict(approved=False, note="n")),
        (Review, {"score": 2, "tags": ["x"]}, Review(score=2, tags=["x"])),
        (Rating, {"stars": 5, "comment": "great"}, Rating(stars=5, comment="great")),
        (Rating, Rating(stars=1, comment="meh"), Rating(stars=1, comment="meh")),
        (Color, "blue", Color.BLUE),
        (Color, Color.RED, Color.RED),
    ],
)
def test_valid_input_is_converted_and_returned_by_wait(schema: Any, value: Any, expected: Any) -> None:
    client = KitaruClient()
    exec_id = run_typed(schema)
    given = client.executions.input(exec_id, wait="answer", value=value)
    assert given == expected and type(given) is type(expected)
    handle = client.executions.resume(exec_id)
    assert handle.status == "completed"
    [received] = RECEIVED
    assert received == expected and type(received) is type(expected)  # wait() returns the instance
    assert handle.wait() == expected
    stored = client.executions.get(exec_id).artifact("answer").load()
    assert stored == expected and type(stored) is type(expected)


# --- the client side: unknown waits, finished executions, several pending waits ---------------


def test_input_to_an_unknown_wait_lists_the_pending_ones() -> None:
    client = KitaruClient()
    handle = w_approval.run("moss")
    with pytest.raises(WaitNotFoundError) as info:
        client.executions.input(handle.exec_id, wait="approve", value=True)
    assert "wait 'approve' of execution" in str(info.value) and "does not exist" in str(info.value)
    assert info.value.hint == "pending waits: approve_summary"
    with pytest.raises(WaitNotFoundError):
        client.executions.abort_wait(handle.exec_id, wait="approve")
    with pytest.raises(kitaru.ExecutionNotFoundError):
        client.executions.input("0" * 32, wait="approve_summary", value=True)


def test_input_to_a_finished_execution_is_a_state_error() -> None:
    client = KitaruClient()
    handle = w_approval.run("ferns")
    client.executions.input(handle.exec_id, value=True)
    client.executions.resume(handle.exec_id)
    for wait in ("approve_summary", None, "other"):
        with pytest.raises(ExecutionStateError, match="is completed; only a waiting execution takes input"):
            client.executions.input(handle.exec_id, wait=wait, value=True)
    with pytest.raises(ExecutionStateError):
        client.executions.abort_wait(handle.exec_id)
    with pytest.raises(ExecutionStateError, match="is completed; this needs it to be waiting"):
        client.executions.resume(handle.exec_id)

    @flow
    def w_no_wait() -> int:
        return 1

    plain = w_no_wait.run()
    with pytest.raises(ExecutionStateError):
        client.executions.input(plain.exec_id, value=1)
    assert client.executions.pending_waits(plain.exec_id) == []


WHICH = {"name": "first"}


@flow
def w_changing() -> Any:
    return kitaru.wait(name=WHICH["name"], question=f"{WHICH['name']}?", schema=int)


def test_several_pending_waits_need_a_name() -> None:
    client = KitaruClient()
    WHICH["name"] = "first"
    handle = w_changing.run()
    WHICH["name"] = "second"  # the flow's code asks another question when resumed unanswered
    assert client.executions.resume(handle.exec_id).status == "waiting"
    pending = client.executions.pending_waits(handle.exec_id)
    assert [w.name for w in pending] == ["first", "second"]
    assert client.executions.get(handle.exec_id).pending_wait.name == "first"  # type: ignore[union-attr]

    with pytest.raises(WaitNotFoundError, match="has 2 pending waits; say which one") as info:
        client.executions.input(handle.exec_id, value=1)
    assert info.value.hint == "pending: first, second"
    with pytest.raises(WaitNotFoundError, match="has 2 pending waits"):
        client.executions.abort_wait(handle.exec_id)

    client.executions.input(handle.exec_id, wait="second", value=2)
    assert client.executions.resume(handle.exec_id).wait() == 2
    WHICH["name"] = "first"


def test_no_pending_wait_without_a_name() -> None:
    client = KitaruClient()
    handle = w_two_waits.run("sun")
    client.executions.input(handle.exec_id, wait="approve", value=True)  # answered, not yet resumed
    with pytest.raises(WaitNotFoundError, match="has no pending wait") as info:
        client.executions.input(handle.exec_id, value=True)
    assert info.value.hint == "pending: (none)"


def test_an_answer_given_meanwhile_is_not_overwritten(monkeypatch: pytest.MonkeyPatch) -> None:
    """Two answers racing: the check is repeated inside the commit, so the second one loses."""
    import kitaru.waits as waits_module

    client = KitaruClient()
    exec_id = run_typed(int)
    real_validate = waits_module.validate_answer
    raced: list[Any] = []

    def validate_while_another_answers(record: Any, value: Any, **kw: Any) -> Any:
        if not raced:  # the first caller has read the wait as pending; now someone else answers
            raced.append("busy")
            raced[0] = client.executions.input(exec_id, wait="answer", value=1)
        return real_validate(record, value, **kw)

    monkeypatch.setattr(waits_module, "validate_answer", validate_while_another_answers)
    with pytest.raises(WaitNotFoundError, match="was answered meanwhile"):
        client.executions.input(exec_id, wait="answer", value=2)
    assert raced == [1]
    monkeypatch.setattr(waits_module, "validate_answer", real_validate)
    assert client.executions.get(exec_id).artifact("answer").load() == 1
    assert client.executions.resume(exec_id).wait() == 1

    exec_id = run_typed(int)
    raced.clear()

    def abort_meanwhile(record: Any, value: Any, **kw: Any) -> Any:
        if not raced:
            raced.append("busy")
            client.executions.abort_wait(exec_id, wait="answer")
        return real_validate(record, value, **kw)

    monkeypatch.setattr(waits_module, "validate_answer", abort_meanwhile)
    with pytest.raises(ExecutionStateError, match="became failed meanwhile"):
        client.executions.input(exec_id, wait="answer", value=2)
    monkeypatch.setattr(waits_module, "validate_answer", real_validate)
    execution = client.executions.get(exec_id)
    assert execution.waits[0].status == "aborted"
    assert [a for a in execution.artifacts if a.kind == "wait_input"] == []


# --- abort -------------------------------------------------------------------------------------


def test_abort_wait_fails_the_execution_and_resume_is_refused() -> None:
    client = KitaruClient()
    handle = w_approval.run("storms")
    client.executions.abort_wait(handle.exec_id, wait="approve_summary", reason="not today")

    execution = client.executions.get(handle.exec_id)
    assert execution.status == "failed" and execution.ended_at is not None
    assert execution.failure is not None
    assert "WaitAbortedError" in execution.failure.type
    assert execution.failure.message == "wait 'approve_summary' was aborted: not today"
    assert execution.failure.checkpoint == "approve_summary"
    assert [(w.name, w.status) for w in execution.waits] == [("approve_summary", "aborted")]
    assert client.executions.pending_waits(handle.exec_id) == []
    assert [a for a in execution.artifacts if a.kind == "wait_input"] == []

    with pytest.raises(FlowExecutionError, match="WaitAbortedError"):
        handle.wait()
    with pytest.raises(ExecutionStateError, match="is failed; this needs it to be waiting"):
        client.executions.resume(handle.exec_id)
    with pytest.raises(ExecutionStateError):
        client.executions.input(handle.exec_id, wait="approve_summary", value=True)

    retried = client.executions.retry(handle.exec_id)  # the wait stays aborted
    cause = _failure_of(retried)
    assert isinstance(cause, WaitAbortedError)
    again = client.executions.get(handle.exec_id)
    assert again.failure is not None and again.failure.type == execution.failure.type
    assert CALLS["research"] == 1 and CALLS["write_report"] == 0


# --- polling with a timeout --------------------------------------------------------------------


@flow
def w_polling(timeout: float) -> Any:
    answer = kitaru.wait(name="quick", question="Now?", schema=str, timeout=timeout)
    return f"got {answer}"


def test_an_answer_given_while_the_flow_polls_completes_the_run_without_suspending(repo: Repository) -> None:
    errors: list[BaseException] = []

    def answer() -> None:
        try:
            client = KitaruClient()
            deadline = time.monotonic() + 4
            while time.monotonic() < deadline:
                latest = client.executions.latest(flow="w_polling")
                if latest is not None and client.executions.pending_waits(latest.exec_id):
                    assert latest.status == "running"
                    client.executions.input(latest.exec_id, wait="quick", value="now")
                    return
                time.sleep(0.02)
            raise AssertionError("the wait never appeared")
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=answer)
    thread.start()
    started = time.monotonic()
    handle = w_polling.run(5)
    thread.join(10)
    assert errors == []
    assert time.monotonic() - started < 4
    assert handle.status == "completed"  # run() itself finished: no resume needed
    assert handle.wait() == "got now"
    execution = KitaruClient().executions.get(handle.exec_id)
    assert execution.waits[0].status == "answered"
    assert execution.artifact("quick").load() == "now"
    [pending_record] = repo.get_execution(handle.exec_id).waits
    assert pending_record.timeout == 5


def test_a_timeout_without_an_answer_suspends_after_polling() -> None:
    started = time.monotonic()
    handle = w_polling.run(0.3)
    assert 0.3 <= time.monotonic() - started < 3
    assert handle.status == "waiting"
    [pending] = KitaruClient().executions.pending_waits(handle.exec_id)
    assert pending.timeout == 0.3
    KitaruClient().executions.input(handle.exec_id, value="later")
    assert KitaruClient().executions.resume(handle.exec_id).wait() == "got later"


def test_an_abort_while_the_flow_polls_fails_the_run(repo: Repository) -> None:
    def abort() -> None:
        client = KitaruClient()
        for _ in range(200):
            latest = client.executions.latest(flow="w_polling")
            if latest is not None and client.executions.pending_waits(latest.exec_id):
                client.executions.abort_wait(latest.exec_id, reason="no")
                return
            time.sleep(0.02)

    thread = threading.Thread(target=abort)
    thread.start()
    handle = w_polling.run(5)
    thread.join(10)
    cause = _failure_of(handle)
    assert isinstance(cause, WaitAbortedError)
    failure = KitaruClient().executions.get(handle.exec_id).failure
    assert failure is not None and "WaitAbortedError" in failure.type


@flow
def w_quick(timeout: float) -> Any:
    return kitaru.wait(name="quick", schema=int, timeout=timeout)


def test_a_polling_wait_sees_an_answer_from_elsewhere_within_half_a_second() -> None:
    """Polling backs off to 0.5 s between looks: an answer is taken within about that long."""
    answered_at: list[float] = []

    def answer() -> None:
        client = KitaruClient()
        time.sleep(2.0)  # the poll has backed off to its longest pause by now
        latest = client.executions.latest(flow="w_quick")
        assert latest is not None
        client.executions.input(latest.exec_id, wait="quick", value=7)
        answered_at.append(time.monotonic())

    thread = threading.Thread(target=answer)
    thread.start()
    handle = w_quick.run(30)
    returned = time.monotonic()
    thread.join(10)
    assert handle.status == "completed" and handle.wait() == 7
    assert returned - answered_at[0] < 0.75


def test_an_old_wait_without_a_json_schema_is_answered_as_before() -> None:
    """A wait stored before waits kept a JSON Schema is validated by its rebuilt type."""
    client = KitaruClient()
    handle = w_quick.run(0)
    repo = client.repository
    [record] = repo.get_execution(handle.exec_id).waits
    assert record.json_schema == {"type": "integer"}
    with repo.writer() as w:
        w.set_wait(handle.exec_id, msgspec.structs.replace(record, json_schema=None))
    with pytest.raises(InputValidationError, match="Expected `int`, got `str`"):
        client.executions.input(handle.exec_id, value="3")
    [pending] = client.executions.pending_waits(handle.exec_id)
    assert pending.json_schema is None
    assert pending.commands[0].endswith("--wait quick --value '0'")
    assert client.executions.input(handle.exec_id, value=3) == 3
    assert client.executions.resume(handle.exec_id).wait() == 3


# --- replay --------------------------------------------------------------------------------


def test_replay_reuses_the_answer_before_the_replay_point() -> None:
    client = KitaruClient()
    handle = w_approval.run("glaciers")
    client.executions.input(handle.exec_id, value=True)
    client.executions.resume(handle.exec_id)
    assert CALLS == {"research": 1, "write_report": 1, "polish": 0}

    replay = w_approval.replay(handle.exec_id, from_="write_report")  # the wait is before it
    assert replay.status == "completed"
    assert replay.wait() == "REPORT: Research notes about glaciers."
    assert CALLS == {"research": 1, "write_report": 2, "polish": 0}
    assert RECEIVED == [True, True]
    copy = client.executions.get(replay.exec_id)
    assert copy.replay_of == handle.exec_id
    assert [(w.name, w.status) for w in copy.waits] == [("approve_summary", "answered")]
    [entry] = [a for a in copy.artifacts if a.kind == "wait_input"]
    assert (entry.name, entry.type, entry.load()) == ("approve_summary", "input", True)

    full = client.executions.replay(handle.exec_id)  # no replay point: everything is reused
    assert full.status == "completed" and CALLS["write_report"] == 2


def test_replay_from_before_the_wait_asks_again() -> None:
    client = KitaruClient()
    handle = w_approval.run("dunes")
    client.executions.input(handle.exec_id, value=True)
    client.executions.resume(handle.exec_id)

    replay = w_approval.replay(handle.exec_id, from_="research")
    assert replay.status == "waiting"
    assert CALLS["research"] == 2
    [pending] = client.executions.pending_waits(replay.exec_id)
    assert pending.name == "approve_summary"
    client.executions.input(replay.exec_id, value=False)
    assert client.executions.resume(replay.exec_id).wait() == "rejected"
    assert client.executions.get(handle.exec_id).waits[0].status == "answered"  # source untouched
