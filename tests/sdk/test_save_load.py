"""kitaru.save() and kitaru.load(): checkpoint-only named values, name lookup, errors."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

import kitaru
from kitaru import (
    AmbiguousNameError,
    ArtifactNotFoundError,
    ArtifactType,
    DuplicateNameError,
    ExecutionNotFoundError,
    FlowExecutionError,
    InvalidArtifactTypeError,
    InvalidNameError,
    KitaruClient,
    KitaruContextError,
    KitaruError,
    PickleNotAllowedError,
    SerializationError,
    checkpoint,
    flow,
)

TYPES = ["prompt", "response", "context", "input", "output", "blob"]


@dataclasses.dataclass
class Opaque:
    """Stored as data, but holds a field msgpack cannot take."""

    handle: object


class Plain:
    """Not a data class: only pickle can store it."""

    def __init__(self, n: int) -> None:
        self.n = n


# --- fixtures: a source execution to load from -------------------------------------------


@checkpoint
def research(topic: str) -> str:
    notes = f"Research notes about {topic}."
    kitaru.save("research_context", {"topic": topic, "notes": notes}, type="context")
    return notes


@checkpoint
def step(i: int) -> int:
    return i * 10


@flow
def source_flow(topic: str) -> Any:
    research(topic)
    return step(1)


@checkpoint
def loader(exec_id: str, name: str) -> Any:
    return kitaru.load(exec_id, name)


@flow
def load_flow(exec_id: str, name: str) -> Any:
    return loader(exec_id, name)


def load(exec_id: str, name: str) -> Any:
    """kitaru.load from a checkpoint of a new execution; raises what the load raised."""
    handle = load_flow.run(exec_id, name)
    try:
        return handle.wait()
    except FlowExecutionError as err:
        assert err.__cause__ is not None
        raise err.__cause__ from None


def run_checkpoint(fn: Any, *args: Any) -> tuple[Any, Any]:
    """Run ``fn`` as a checkpoint of a fresh flow; returns (flow result, Execution)."""
    cp = checkpoint(fn)

    @flow
    def host() -> Any:
        return cp(*args)

    handle = host.run()
    return handle.wait(), KitaruClient().executions.get(handle.exec_id)


def errors_of(fn: Any) -> list[BaseException]:
    """Run ``fn`` inside a checkpoint and return what it raised (the checkpoint itself succeeds)."""
    caught: list[BaseException] = []

    def body() -> None:
        try:
            fn()
        except KitaruError as exc:
            caught.append(exc)

    run_checkpoint(body)
    return caught


# --- save: where it may be called ----------------------------------------------------------


def test_save_outside_any_flow_is_a_context_error() -> None:
    with pytest.raises(KitaruContextError) as info:
        kitaru.save("x", 1)
    assert "only be called inside a @checkpoint" in str(info.value)
    assert "outside any flow" in str(info.value)
    assert info.value.exec_id is None
    assert "@checkpoint" in (info.value.hint or "")


def test_save_in_a_flow_body_is_a_context_error() -> None:
    @flow
    def body_saves() -> None:
        kitaru.save("x", 1)

    handle = body_saves.run()
    with pytest.raises(FlowExecutionError) as info:
        handle.wait()
    cause = info.value.__cause__
    assert isinstance(cause, KitaruContextError)
    assert "in a flow body" in str(cause)
    assert "@checkpoint" in str(cause)
    assert cause.exec_id == handle.exec_id
    assert KitaruClient().executions.get(handle.exec_id).artifacts == []


def test_load_outside_a_checkpoint_is_a_context_error() -> None:
    source = source_flow.run("x")
    with pytest.raises(KitaruContextError, match="outside any flow"):
        kitaru.load(source.exec_id, "research")

    @flow
    def body_loads() -> Any:
        return kitaru.load(source.exec_id, "research")

    with pytest.raises(FlowExecutionError) as info:
        body_loads.run().wait()
    assert isinstance(info.value.__cause__, KitaruContextError)
    assert "kitaru.load()" in str(info.value.__cause__)
    assert "in a flow body" in str(info.value.__cause__)


# --- save: what is stored ---------------------------------------------------------------


def test_save_stores_a_manual_entry_with_type_tags_and_metadata() -> None:
    def body() -> str:
        kitaru.save(
            "prompt_text",
            "You are a helpful agent.",
            type="prompt",
            tags=["v1", "system"],
            metadata={"model": "m-1", "tokens": 7, "nested": {"ok": [1, 2]}},
        )
        return "done"

    result, execution = run_checkpoint(body)
    assert result == "done"
    ref = next(a for a in execution.artifacts if a.name == "prompt_text")
    assert ref.kind == "manual" and ref.is_manual_save
    assert ref.type == "prompt"
    assert ref.tags == ("v1", "system")
    assert ref.metadata == {"model": "m-1", "tokens": 7, "nested": {"ok": [1, 2]}}
    assert ref.checkpoint == "body" and ref.invocation_id == "body"
    assert ref.exec_id == execution.exec_id
    assert ref.load() == "You are a helpful agent."


def test_save_defaults_to_type_output_and_no_tags() -> None:
    def body() -> None:
        kitaru.save("plain", [1, 2, 3])

    _, execution = run_checkpoint(body)
    ref = execution.artifact("plain")
    assert (ref.type, ref.tags, ref.metadata) == ("output", (), {})


def test_a_single_tag_may_be_a_string() -> None:
    def body() -> None:
        kitaru.save("tagged", 1, tags="only")

    _, execution = run_checkpoint(body)
    assert execution.artifact("tagged").tags == ("only",)


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        *[(t, t) for t in TYPES],
        *[(t.upper(), t) for t in TYPES],
        ("Context", "context"),
        *[(member, member.value) for member in ArtifactType],
    ],
)
def test_save_accepts_every_type_case_insensitively(given: Any, expected: str) -> None:
    def body() -> None:
        kitaru.save("typed", "v", type=given)

    _, execution = run_checkpoint(body)
    assert execution.artifact("typed").type == expected


def test_artifact_type_enum_lists_the_documented_types() -> None:
    assert [m.value for m in ArtifactType] == TYPES


@pytest.mark.parametrize("bad", ["image", "", "outputs", 3, None])
def test_unknown_type_is_an_error_listing_the_valid_ones(bad: Any) -> None:
    [err] = errors_of(lambda: kitaru.save("x", 1, type=bad))
    assert isinstance(err, InvalidArtifactTypeError)
    for t in TYPES:
        assert t in (err.hint or "") and t in str(err)


@pytest.mark.parametrize("bad", ["", "   ", "a/b", "a\\b", "tab\there", "x" * 256, " lead", "trail "])
def test_invalid_artifact_names_are_rejected(bad: str) -> None:
    [err] = errors_of(lambda: kitaru.save(bad, 1))
    assert isinstance(err, InvalidNameError)
    assert err.hint
    assert err.exec_id is not None


def test_a_non_string_name_is_rejected() -> None:
    [err] = errors_of(lambda: kitaru.save(42, 1))  # type: ignore[arg-type]
    assert isinstance(err, InvalidNameError)
    assert "string" in str(err)


def test_invalid_tags_are_rejected() -> None:
    [err] = errors_of(lambda: kitaru.save("x", 1, tags=["ok", "bad/tag"]))
    assert isinstance(err, InvalidNameError)


def test_names_may_hold_spaces_dots_and_unicode() -> None:
    def body() -> None:
        kitaru.save("draft v2.final: résumé", 1)

    _, execution = run_checkpoint(body)
    assert execution.artifact("draft v2.final: résumé").load() == 1


def test_saving_a_name_twice_is_a_duplicate_error() -> None:
    def body() -> None:
        kitaru.save("draft", "first")
        kitaru.save("draft", "second")

    with pytest.raises(FlowExecutionError) as info:
        run_checkpoint(body)
    cause = info.value.__cause__
    assert isinstance(cause, DuplicateNameError)
    assert cause.name == "draft"
    assert "overwrite=True" in (cause.hint or "")
    # The first save is kept: what the failing checkpoint saved stays loadable.
    execution = KitaruClient().executions.get(info.value.exec_id)
    [ref] = [a for a in execution.artifacts if a.name == "draft"]
    assert ref.load() == "first"


def test_overwrite_keeps_the_last_value_in_one_entry() -> None:
    def body() -> None:
        kitaru.save("draft", "first try", type="response")
        kitaru.save("draft", "second try", type="response", overwrite=True)
        kitaru.save("draft", "third try", type="context", tags=["final"], overwrite=True)

    _, execution = run_checkpoint(body)
    drafts = [a for a in execution.artifacts if a.name == "draft"]
    assert len(drafts) == 1
    assert drafts[0].load() == "third try"
    assert drafts[0].type == "context" and drafts[0].tags == ("final",)
    assert KitaruClient().artifacts.get(drafts[0].artifact_id).load() == "third try"


def test_the_same_name_in_two_checkpoints_is_allowed_to_save() -> None:
    @checkpoint
    def a() -> None:
        kitaru.save("shared", "from a")

    @checkpoint
    def b() -> None:
        kitaru.save("shared", "from b")

    @flow
    def both() -> None:
        a()
        b()

    handle = both.run()
    handle.wait()
    refs = KitaruClient().artifacts.list(handle.exec_id, name="shared")
    assert sorted((r.checkpoint, r.load()) for r in refs) == [("a", "from a"), ("b", "from b")]


def test_save_is_durable_when_the_checkpoint_ends() -> None:
    seen: dict[str, list[str]] = {}

    @checkpoint
    def saves() -> None:
        kitaru.save("durable", {"k": "v"})

    @flow
    def durable_flow() -> None:
        saves()
        exec_id = kitaru.current_execution_id()
        assert exec_id is not None
        # A separate client, while the flow is still running, sees the committed save.
        seen["during"] = [a.name for a in KitaruClient().executions.get(exec_id).artifacts]

    handle = durable_flow.run()
    handle.wait()
    assert "durable" in seen["during"]
    fresh = KitaruClient()
    ref = fresh.executions.get(handle.exec_id).artifact("durable")
    assert ref.load() == {"k": "v"}
    assert fresh.artifacts.get(ref.artifact_id).load() == {"k": "v"}


def test_metadata_that_is_not_plain_data_is_rejected_and_the_execution_stays_readable() -> None:
    def body() -> None:
        with pytest.raises(SerializationError, match="metadata") as info:
            kitaru.save("m1", 1, metadata={1: "int key"})  # type: ignore[dict-item]
        assert info.value.hint
        with pytest.raises(SerializationError, match="metadata"):
            kitaru.save("m2", 1, metadata={"obj": object()})
        with pytest.raises(SerializationError, match="metadata"):
            kitaru.save("m3", 1, metadata=["not", "a", "dict"])  # type: ignore[arg-type]
        kitaru.save("good", 2, metadata={"fine": True})

    _, execution = run_checkpoint(body)
    assert execution.status == "completed"
    assert [a.name for a in execution.artifacts if a.kind == "manual"] == ["good"]
    assert execution.artifact("good").metadata == {"fine": True}


def test_unserializable_values_need_pickle() -> None:
    def body() -> None:
        with pytest.raises(PickleNotAllowedError):
            kitaru.save("obj", Plain(1))
        with pytest.raises(SerializationError):
            kitaru.save("opaque", Opaque(object()))
        kitaru.save("obj", Plain(5), allow_pickle=True)

    _, execution = run_checkpoint(body)
    ref = execution.artifact("obj")
    with pytest.raises(PickleNotAllowedError):
        ref.load()
    assert ref.load(allow_pickle=True).n == 5


# --- load: name lookup -----------------------------------------------------------------


def test_load_by_checkpoint_name_and_by_saved_name() -> None:
    source = source_flow.run("kitaru")
    assert load(source.exec_id, "research") == "Research notes about kitaru."
    assert load(source.exec_id, "research_context") == {
        "topic": "kitaru",
        "notes": "Research notes about kitaru.",
    }
    assert load(source.exec_id, "step") == 10


def test_load_records_the_read_as_lineage() -> None:
    source = source_flow.run("lineage")
    wanted = KitaruClient().executions.get(source.exec_id).artifact("research_context").object_id
    handle = load_flow.run(source.exec_id, "research_context")
    handle.wait()
    execution = KitaruClient().executions.get(handle.exec_id)
    assert execution.checkpoints[0].inputs == (wanted,)
    assert execution.artifact("loader").inputs == (wanted,)


def test_load_by_invocation_id_and_explicit_id() -> None:
    @flow
    def many() -> None:
        step(1)
        step(2)
        step.with_id("custom")(3)
        step(4, id="other")

    source = many.run()
    source.wait()
    assert load(source.exec_id, "step_2") == 20
    assert load(source.exec_id, "custom") == 30
    assert load(source.exec_id, "other") == 40


def test_a_single_call_answers_to_its_checkpoint_name_even_with_an_explicit_id() -> None:
    @flow
    def once() -> None:
        research.with_id("custom")("x")

    source = once.run()
    source.wait()
    assert load(source.exec_id, "custom") == "Research notes about x."
    assert load(source.exec_id, "research") == "Research notes about x."


@pytest.mark.parametrize("form", ["prefix8", "prefix4", "upper", "dashed"])
def test_exec_id_prefixes_and_forms_work(form: str) -> None:
    source = source_flow.run("prefix")
    full = source.exec_id
    given = {
        "prefix8": full[:8],
        "prefix4": full[:4],
        "upper": full.upper(),
        "dashed": f"{full[:8]}-{full[8:12]}-{full[12:16]}-{full[16:20]}-{full[20:]}",
    }[form]
    assert load(given, "research_context")["topic"] == "prefix"


def test_load_of_the_running_execution_sees_finished_checkpoints() -> None:
    @checkpoint
    def reads_own() -> Any:
        exec_id = kitaru.current_execution_id()
        assert exec_id is not None
        return kitaru.load(exec_id, "research_context")["topic"]

    @flow
    def own() -> Any:
        research("self")
        return reads_own()

    assert own.run().wait() == "self"


def test_not_found_lists_the_names_that_exist() -> None:
    source = source_flow.run("x")
    with pytest.raises(ArtifactNotFoundError) as info:
        load(source.exec_id[:8], "missing")
    err = info.value
    assert err.name == "missing"
    assert err.exec_id == source.exec_id  # the full id, even when a prefix was given
    assert err.available == ["research", "research_context", "step"]
    for name in ("research", "research_context", "step"):
        assert name in (err.hint or "")
    assert "missing" in str(err)


def test_a_missing_execution_is_execution_not_found() -> None:
    source_flow.run("x")
    with pytest.raises(ExecutionNotFoundError) as info:
        load("0000000000000000000000000000dead", "research")
    assert info.value.hint


def test_a_save_named_like_a_checkpoint_is_ambiguous() -> None:
    @checkpoint
    def clash() -> str:
        kitaru.save("clash", "saved")
        return "returned"

    @flow
    def clash_flow() -> Any:
        return clash()

    source = clash_flow.run()
    source.wait()
    with pytest.raises(AmbiguousNameError) as info:
        load(source.exec_id, "clash")
    err = info.value
    assert err.exec_id == source.exec_id and err.name == "clash"
    assert sorted(c["kind"] for c in err.candidates) == ["checkpoint_output", "manual"]
    assert "2 matches" in str(err)
    assert err.hint and "unique" in err.hint


def test_a_name_saved_in_two_checkpoints_is_ambiguous() -> None:
    @checkpoint
    def first() -> None:
        kitaru.save("shared", 1)

    @checkpoint
    def second() -> None:
        kitaru.save("shared", 2)

    @flow
    def two() -> None:
        first()
        second()

    source = two.run()
    source.wait()
    with pytest.raises(AmbiguousNameError) as info:
        load(source.exec_id, "shared")
    candidates = info.value.candidates
    assert sorted(c["checkpoint"] for c in candidates) == ["first", "second"]
    assert {c["object_id"] for c in candidates} == {
        a.object_id for a in KitaruClient().artifacts.list(source.exec_id, name="shared")
    }
    for c in candidates:
        assert c["object_id"][:12] in str(info.value)


def test_a_checkpoint_called_twice_is_ambiguous_by_its_name() -> None:
    """The guide: "the checkpoint name matches both calls" -> AmbiguousNameError listing both."""

    @flow
    def twice() -> None:
        step(1)
        step(2)

    source = twice.run()
    source.wait()
    with pytest.raises(AmbiguousNameError) as info:
        load(source.exec_id, "step")
    assert sorted(c["name"] for c in info.value.candidates) == ["step_1", "step_2"]
    assert "step_2" in str(info.value)
    assert load(source.exec_id, "step_2") == 20
    assert load(source.exec_id, "step_1") == 10  # the first call, by the name the error listed


def test_load_from_a_failed_execution_returns_what_was_persisted() -> None:
    @checkpoint
    def breaks() -> None:
        kitaru.save("partial", "saved before the crash")
        raise RuntimeError("crash")

    @flow
    def fails() -> None:
        research("before")
        breaks()
        step(99)  # never runs

    source = fails.run()
    assert source.status == "failed"
    assert load(source.exec_id, "research") == "Research notes about before."
    assert load(source.exec_id, "research_context")["topic"] == "before"
    assert load(source.exec_id, "partial") == "saved before the crash"
    with pytest.raises(ArtifactNotFoundError) as info:
        load(source.exec_id, "breaks")  # the failing checkpoint has no output
    assert "breaks" not in info.value.available
    with pytest.raises(ArtifactNotFoundError):
        load(source.exec_id, "step")
