"""Names inside an execution (resolve_name) and execution id prefixes (resolve_execution)."""

from __future__ import annotations

import uuid

import pytest
from store_helpers import SAVED_KIND, make_entry, output_entry

from kitaru_store import (
    AmbiguousIdError,
    AmbiguousNameError,
    ArtifactNotFoundError,
    ExecutionNotFoundError,
    InvalidIdError,
    Repository,
)


@pytest.fixture
def run(repo: Repository) -> dict[str, str]:
    """An execution with `research` called twice, a saved artifact, an llm record and a wait input."""
    with repo.writer() as w:
        exec_id = w.create_execution("agent")
        out1 = w.put_value("notes one")
        out2 = w.put_value("notes two")
        ctx = w.put_value({"topic": "kitaru"})
        llm = w.put_value({"prompt": "hi", "response": "hello"})
        approval = w.put_value(True)
        w.add_entry(exec_id, output_entry(out1, "research", "research"))
        w.add_entry(exec_id, output_entry(out2, "research", "research_2"))
        w.add_entry(
            exec_id, make_entry(ctx, "research_context", checkpoint="research", invocation_id="research")
        )
        w.add_entry(exec_id, make_entry(llm, "summarise", kind="llm_record", artifact_type="response"))
        w.add_entry(exec_id, make_entry(approval, "approval", kind="wait_input", artifact_type="input"))
    return {
        "exec_id": exec_id,
        "out1": out1.object_id,
        "out2": out2.object_id,
        "ctx": ctx.object_id,
        "llm": llm.object_id,
        "approval": approval.object_id,
    }


def test_checkpoint_output_by_invocation_id(repo: Repository, run: dict[str, str]) -> None:
    second = repo.resolve_name(run["exec_id"], "research_2")
    assert (second.object_id, second.invocation_id, second.kind) == (
        run["out2"],
        "research_2",
        "checkpoint_output",
    )
    assert repo.get_value(second.object_id) == "notes two"


def test_checkpoint_called_twice_is_ambiguous_by_its_name(repo: Repository, run: dict[str, str]) -> None:
    """The checkpoint name matches both calls (docs/guide-artifacts.md), and so does "research"."""
    with pytest.raises(AmbiguousNameError) as info:
        repo.resolve_name(run["exec_id"], "research")
    err = info.value
    assert [(c["name"], c["kind"], c["checkpoint"], c["object_id"]) for c in err.candidates] == [
        ("research_1", "checkpoint_output", "research", run["out1"]),
        ("research_2", "checkpoint_output", "research", run["out2"]),
    ]
    assert "research_1" in str(err) and "research_2" in str(err)
    # Each listed name picks its candidate out.
    assert repo.resolve_name(run["exec_id"], "research_1").object_id == run["out1"]
    assert repo.resolve_name(run["exec_id"], "research_2").object_id == run["out2"]


def test_saved_artifacts_llm_records_and_wait_inputs_by_name(repo: Repository, run: dict[str, str]) -> None:
    assert repo.resolve_name(run["exec_id"], "research_context").object_id == run["ctx"]
    assert repo.resolve_name(run["exec_id"], "summarise").object_id == run["llm"]
    assert repo.resolve_name(run["exec_id"], "approval").object_id == run["approval"]
    entry = repo.resolve_name(run["exec_id"], "research_context")
    assert entry.kind == SAVED_KIND and entry.checkpoint == "research"


def test_checkpoint_output_by_checkpoint_name_when_called_once(repo: Repository) -> None:
    with repo.writer() as w:
        exec_id = w.create_execution("flow")
        sv = w.put_value(1)
        other = w.put_value(2)
        w.add_entry(exec_id, output_entry(sv, "research", "research"))
        w.add_entry(exec_id, output_entry(other, "fetch", "fetch-explicit-id"))
    first = repo.resolve_name(exec_id, "research")  # checkpoint name and invocation id at once
    assert (first.object_id, first.invocation_id) == (sv.object_id, "research")
    assert repo.resolve_name(exec_id, "fetch").object_id == other.object_id
    assert repo.resolve_name(exec_id, "fetch-explicit-id").object_id == other.object_id


def test_execution_prefix_works_for_names(repo: Repository, run: dict[str, str]) -> None:
    assert repo.resolve_name(run["exec_id"][:6], "research_2").object_id == run["out2"]


def test_no_match_lists_existing_names(repo: Repository, run: dict[str, str]) -> None:
    with pytest.raises(ArtifactNotFoundError) as info:
        repo.resolve_name(run["exec_id"], "reserch")
    err = info.value
    assert err.available == [
        "approval",
        "research",
        "research_1",
        "research_2",
        "research_context",
        "summarise",
    ]
    assert err.name == "reserch"
    assert err.exec_id == run["exec_id"]
    assert err.hint and "research_context" in err.hint


def test_no_match_in_an_empty_execution(repo: Repository) -> None:
    exec_id = repo.create_execution("flow")
    with pytest.raises(ArtifactNotFoundError) as info:
        repo.resolve_name(exec_id, "anything")
    assert info.value.available == []
    assert "(none)" in str(info.value)


def test_duplicate_saved_names_are_ambiguous_with_every_candidate(repo: Repository) -> None:
    with repo.writer() as w:
        exec_id = w.create_execution("flow")
        a = w.put_value("a")
        b = w.put_value("b")
        c = w.put_value("c")
        entries = [
            make_entry(a, "report", checkpoint="write", invocation_id="write"),
            make_entry(b, "report", checkpoint="write", invocation_id="write_2"),
            make_entry(c, "report", checkpoint="review", invocation_id="review"),
        ]
        for e in entries:
            w.add_entry(exec_id, e)
    with pytest.raises(AmbiguousNameError) as info:
        repo.resolve_name(exec_id, "report")
    err = info.value
    assert err.name == "report" and err.exec_id == exec_id
    assert len(err.candidates) == 3
    assert [(c["name"], c["kind"], c["checkpoint"], c["object_id"]) for c in err.candidates] == [
        ("report", SAVED_KIND, "write", a.object_id),
        ("report", SAVED_KIND, "write", b.object_id),
        ("report", SAVED_KIND, "review", c.object_id),
    ]
    assert [c["artifact_id"] for c in err.candidates] == [e.artifact_id for e in entries]
    for obj in (a, b, c):
        assert obj.object_id[:12] in str(err)
    assert err.hint


def test_checkpoint_name_with_explicit_ids_is_ambiguous(repo: Repository) -> None:
    with repo.writer() as w:
        exec_id = w.create_execution("flow")
        x = w.put_value("x")
        y = w.put_value("y")
        w.add_entry(exec_id, output_entry(x, "search", "search-web"))
        w.add_entry(exec_id, output_entry(y, "search", "search-docs"))
    with pytest.raises(AmbiguousNameError) as info:
        repo.resolve_name(exec_id, "search")
    assert [(c["name"], c["kind"], c["object_id"]) for c in info.value.candidates] == [
        ("search-web", "checkpoint_output", x.object_id),
        ("search-docs", "checkpoint_output", y.object_id),
    ]
    # Every candidate name it offers resolves.
    for c in info.value.candidates:
        assert repo.resolve_name(exec_id, c["name"]).object_id == c["object_id"]


def test_saved_artifact_named_like_a_checkpoint_is_ambiguous(repo: Repository) -> None:
    with repo.writer() as w:
        exec_id = w.create_execution("flow")
        out = w.put_value("output")
        saved = w.put_value("saved")
        w.add_entry(exec_id, output_entry(out, "plan", "plan"))
        w.add_entry(exec_id, make_entry(saved, "plan"))
    with pytest.raises(AmbiguousNameError) as info:
        repo.resolve_name(exec_id, "plan")
    kinds = sorted(c["kind"] for c in info.value.candidates)
    assert kinds == sorted(["checkpoint_output", SAVED_KIND])


# --- execution ids ----------------------------------------------------------------------------


def test_execution_id_prefixes(repo: Repository) -> None:
    exec_id = repo.create_execution("flow")
    for n in (4, 8, 31, 32):
        assert repo.resolve_execution(exec_id[:n]) == exec_id
    dashed = str(uuid.UUID(exec_id))
    assert repo.resolve_execution(dashed) == exec_id
    assert repo.resolve_execution(dashed[:13].upper()) == exec_id
    assert repo.get_execution(exec_id[:5]).exec_id == exec_id


def test_ambiguous_execution_prefix(repo: Repository) -> None:
    a = "abcd1234" + "0" * 24
    b = "abcd5678" + "0" * 24
    c = "abce" + "0" * 28
    for exec_id in (a, b, c):
        repo.create_execution("flow", exec_id=exec_id)
    with pytest.raises(AmbiguousIdError) as info:
        repo.resolve_execution("abcd")
    assert sorted(info.value.candidates) == [a, b]
    assert "execution id" in str(info.value)
    with pytest.raises(AmbiguousIdError):
        repo.resolve_name("abcd", "x")
    assert repo.resolve_execution("abcd1") == a
    assert repo.resolve_execution("abce") == c


def test_unknown_execution(repo: Repository) -> None:
    repo.create_execution("flow", exec_id="1" * 32)
    for unknown in ("2" * 32, "1112", "ffff"):
        with pytest.raises(ExecutionNotFoundError) as info:
            repo.get_execution(unknown)
        assert info.value.exec_id == unknown
        assert info.value.hint
    with pytest.raises(ExecutionNotFoundError):
        repo.resolve_name("2" * 32, "x")


def test_malformed_execution_ids(repo: Repository) -> None:
    for bad in ("abc", "not-hex!", "g" * 32, "1" * 33):
        with pytest.raises(InvalidIdError):
            repo.resolve_execution(bad)
