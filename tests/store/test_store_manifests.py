"""Execution manifests written through a Writer: fields, atomic commits, format versions."""

from __future__ import annotations

import datetime as dt
import uuid

import msgspec
import pytest
from blake3 import blake3
from store_helpers import SAVED_KIND, T0, all_records, commit_execution, make_entry, output_entry, snapshot

from kitaru_store import (
    CheckpointRecord,
    CorruptManifestError,
    Entry,
    ExecutionNotFoundError,
    Failure,
    KitaruError,
    Manifest,
    ObjectNotFoundError,
    Repository,
    StoreFormatError,
    checksum,
    layout,
)
from kitaru_store import manifests as mf
from kitaru_store.manifests import Attempt


def test_full_execution_roundtrip(repo: Repository) -> None:
    with repo.writer() as w:
        exec_id = w.create_execution(
            "research_flow", started_at=T0, metadata={"user": "ada", "tags": ["a", "b"]}
        )
        topic = w.put_value({"topic": "kitaru"})
        notes = w.put_value("Research notes about kitaru.")
        prompt = w.put_value("Summarise kitaru")
        cp = CheckpointRecord(
            invocation_id="research",
            name="research",
            status="completed",
            started_at=T0 + dt.timedelta(seconds=1),
            ended_at=T0 + dt.timedelta(seconds=3),
            output_object_id=notes.object_id,
            inputs=(topic.object_id,),
            upstream=("fetch",),
            attempts=(
                Attempt(
                    started_at=T0,
                    ended_at=T0 + dt.timedelta(seconds=1),
                    failure=Failure(
                        type="TimeoutError", message="slow", traceback="tb", checkpoint="research"
                    ),
                ),
                Attempt(started_at=T0 + dt.timedelta(seconds=1), ended_at=T0 + dt.timedelta(seconds=3)),
            ),
            metadata={"retries": 1},
        )
        w.set_checkpoint(exec_id, cp)
        output = output_entry(notes, "research", "research")
        saved = make_entry(
            topic,
            "research_context",
            artifact_type="context",
            checkpoint="research",
            invocation_id="research",
            tags=("important", "v1"),
            metadata={"source": "web", "n": 3},
            inputs=(prompt.object_id,),
        )
        llm = make_entry(prompt, "llm_call", kind="llm_record", artifact_type="prompt")
        for entry in (output, saved, llm):
            w.add_entry(exec_id, entry)
        w.update_execution(
            exec_id,
            status="completed",
            ended_at=T0 + dt.timedelta(seconds=5),
            result_object_id=notes.object_id,
        )
    m = repo.get_execution(exec_id)
    assert m.format_version == mf.MANIFEST_FORMAT
    assert m.exec_id == exec_id
    assert m.flow_name == "research_flow"
    assert m.status == "completed"
    assert m.started_at == T0
    assert m.ended_at == T0 + dt.timedelta(seconds=5)
    assert m.metadata == {"user": "ada", "tags": ["a", "b"]}
    assert m.result_object_id == notes.object_id
    assert m.entries == (output, saved, llm)
    assert m.checkpoints == (cp,)
    assert m.replay_of is None and m.failure is None
    assert repo.get_value(m.result_object_id) == "Research notes about kitaru."
    summary = repo.list_executions()[0]
    assert (summary.exec_id, summary.flow_name, summary.status) == (exec_id, "research_flow", "completed")
    assert (summary.artifact_count, summary.checkpoint_count) == (3, 1)
    assert summary.ended_at == m.ended_at


def test_failed_execution_and_replay_fields(repo: Repository) -> None:
    first = repo.create_execution("flow", started_at=T0)
    failure = Failure(type="ValueError", message="boom", traceback="Traceback ...", checkpoint="step")
    repo.update_execution(first, status="failed", failure=failure, ended_at=T0 + dt.timedelta(minutes=1))
    replay = repo.create_execution("flow", replay_of=first, started_at=T0 + dt.timedelta(hours=1))
    m = repo.get_execution(first)
    assert m.status == "failed" and m.failure == failure
    r = repo.get_execution(replay)
    assert r.replay_of == first
    assert repo.list_executions()[0].replay_of == first


def test_set_checkpoint_replaces_by_invocation_id(repo: Repository) -> None:
    exec_id = repo.create_execution("flow")
    running = CheckpointRecord(invocation_id="step", name="step", status="running", started_at=T0)
    done = msgspec.structs.replace(running, status="completed", ended_at=T0 + dt.timedelta(seconds=1))
    other = CheckpointRecord(invocation_id="step_2", name="step", status="running", started_at=T0)
    with repo.writer() as w:
        w.set_checkpoint(exec_id, running)
        w.set_checkpoint(exec_id, other)
    with repo.writer() as w:
        w.set_checkpoint(exec_id, done)
    assert repo.get_execution(exec_id).checkpoints == (done, other)


def test_replace_entry_drops_the_earlier_one(repo: Repository) -> None:
    exec_id = repo.create_execution("flow")
    a = repo.put_value("first")
    b = repo.put_value("second")
    first = make_entry(a, "notes", invocation_id="step")
    with repo.writer() as w:
        w.add_entry(exec_id, first)
        w.add_entry(exec_id, make_entry(a, "notes", invocation_id="other"))
    second = make_entry(b, "notes", invocation_id="step")
    with repo.writer() as w:
        w.replace_entry(exec_id, second)
    entries = repo.get_execution(exec_id).entries
    assert [(e.invocation_id, e.object_id) for e in entries] == [
        ("other", a.object_id),
        ("step", b.object_id),
    ]
    # The replaced entry's artifact id no longer leads anywhere; the new one does.
    assert repo.get_artifact(second.artifact_id)[1] == second
    with pytest.raises(KitaruError):
        repo.get_artifact(first.artifact_id)
    assert repo.fsck().ok


def test_get_artifact_by_id_and_prefix(repo: Repository) -> None:
    sv = repo.put_value(123)
    entry = make_entry(sv, "number")
    with repo.writer() as w:
        exec_id = w.create_execution("flow")
        w.add_entry(exec_id, entry)
    manifest, found = repo.get_artifact(entry.artifact_id)
    assert manifest.exec_id == exec_id and found == entry
    assert repo.get_artifact(entry.artifact_id[:10])[1] == entry
    with pytest.raises(KitaruError) as info:
        repo.get_artifact(uuid.uuid4().hex)
    assert not isinstance(info.value, ObjectNotFoundError)


def test_entry_with_missing_object_fails_the_whole_commit(repo: Repository) -> None:
    keep = repo.create_execution("existing", started_at=T0)
    before = snapshot(repo)
    missing = "ab" * 32
    with pytest.raises(ObjectNotFoundError) as info, repo.writer() as w:
        exec_id = w.create_execution("doomed")
        good = w.put_value("this would be new")
        w.add_entry(exec_id, make_entry(good, "good"))
        w.add_entry(keep, make_entry(good, "also good"))
        w.add_entry(
            exec_id, Entry(**{**msgspec.structs.asdict(make_entry(good, "bad")), "object_id": missing})
        )
    assert info.value.object_id == missing
    assert snapshot(repo) == before
    assert repo.count_executions() == 1
    with pytest.raises(ExecutionNotFoundError):
        repo.get_execution(exec_id)
    assert repo.get_execution(keep).entries == ()


def test_checkpoint_output_and_result_must_exist_too(repo: Repository) -> None:
    exec_id = repo.create_execution("flow")
    before = snapshot(repo)
    missing = "cd" * 32
    record = CheckpointRecord(
        invocation_id="s", name="s", status="completed", started_at=T0, output_object_id=missing
    )
    with pytest.raises(ObjectNotFoundError), repo.writer() as w:
        w.set_checkpoint(exec_id, record)
    with pytest.raises(ObjectNotFoundError):
        repo.update_execution(exec_id, result_object_id=missing)
    assert snapshot(repo) == before


def test_writer_exception_aborts_everything(repo: Repository) -> None:
    before = all_records(repo)
    with pytest.raises(RuntimeError), repo.writer() as w:
        exec_id = w.create_execution("flow")
        w.add_entry(exec_id, make_entry(w.put_value("x"), "x"))
        raise RuntimeError("user code failed")
    assert all_records(repo) == before
    assert repo.count_executions() == 0


def test_writer_commits_once(repo: Repository) -> None:
    w = repo.writer()
    w.create_execution("flow")
    w.commit()
    with pytest.raises(KitaruError, match="committed already"):
        w.commit()


def test_creating_an_existing_execution_fails(repo: Repository) -> None:
    exec_id = repo.create_execution("flow")
    with pytest.raises(KitaruError, match="exists already") as info:
        repo.create_execution("flow", exec_id=exec_id)
    assert info.value.exec_id == exec_id


def test_mutating_an_unknown_execution_fails(repo: Repository) -> None:
    with pytest.raises(ExecutionNotFoundError), repo.writer() as w:
        w.update_execution(uuid.uuid4().hex, status="completed")


def test_explicit_exec_id_is_normalised(repo: Repository) -> None:
    given = str(uuid.uuid4()).upper()
    exec_id = repo.create_execution("flow", exec_id=given)
    assert exec_id == given.replace("-", "").lower()
    assert repo.get_execution(given[:8]).exec_id == exec_id
    assert repo.list_executions()[0].exec_id == exec_id


def test_changing_start_time_moves_the_execution_in_the_indexes(repo: Repository) -> None:
    a = repo.create_execution("flow", started_at=T0)
    b = repo.create_execution("flow", started_at=T0 + dt.timedelta(days=1))
    repo.update_execution(a, started_at=T0 + dt.timedelta(days=2))
    assert [s.exec_id for s in repo.list_executions()] == [a, b]
    assert [s.exec_id for s in repo.list_executions(flow="flow")] == [a, b]
    assert repo.list_executions()[0].started_at == T0 + dt.timedelta(days=2)
    assert repo.fsck().ok


def test_newer_manifest_format_is_refused(repo: Repository) -> None:
    m = Manifest(
        exec_id="0" * 32,
        flow_name="f",
        status="running",
        started_at=T0,
        format_version=mf.MANIFEST_FORMAT + 1,
    )
    with pytest.raises(StoreFormatError) as info:
        mf.decode_manifest(mf.encode(m), exec_id="0" * 32)
    assert info.value.exec_id == "0" * 32
    assert info.value.hint and "upgrade" in info.value.hint


def test_newer_manifest_with_unreadable_fields_is_a_format_error(repo: Repository) -> None:
    raw = msgspec.msgpack.encode(
        {
            "format_version": mf.MANIFEST_FORMAT + 1,
            "exec_id": "1" * 32,
            "flow_name": "f",
            "status": "a-status-from-the-future",
            "started_at": {"new": "layout"},
        }
    )
    with pytest.raises(StoreFormatError):
        mf.decode_manifest(raw)
    # The same garbage at the current format is a corrupt manifest, not a format error.
    garbled = msgspec.msgpack.encode({"format_version": 1, "exec_id": "1" * 32, "status": 5})
    with pytest.raises(CorruptManifestError) as info:
        mf.decode_manifest(garbled, exec_id="1" * 32)
    assert info.value.exec_id == "1" * 32 and isinstance(info.value.__cause__, msgspec.DecodeError)


def test_newer_manifest_in_the_store(repo: Repository) -> None:
    exec_id = repo.create_execution("flow", started_at=T0)
    key = bytes.fromhex(exec_id)
    newer = mf.encode(msgspec.structs.replace(repo.get_execution(exec_id), format_version=99))
    repo._backend().update(lambda wt: wt.put(b"manifests", key, newer))
    with pytest.raises(StoreFormatError) as info:
        repo.get_execution(exec_id)
    assert info.value.exec_id == exec_id
    # Listing reads the summaries, not the manifests, so it still works.
    assert [s.exec_id for s in repo.list_executions()] == [exec_id]


def test_unknown_fields_are_ignored(repo: Repository) -> None:
    sv = repo.put_value("v")
    entry = make_entry(sv, "thing")
    raw_entry = msgspec.to_builtins(entry)
    raw_entry["added_in_a_minor_version"] = {"x": 1}
    # A writer that knows newer fields knows checksums too (a manifest without one: see below).
    raw = checksum.seal(
        msgspec.msgpack.encode(
            {
                "format_version": mf.MANIFEST_FORMAT,
                "exec_id": "2" * 32,
                "flow_name": "f",
                "status": "completed",
                "started_at": T0,
                "entries": [raw_entry],
                "future_field": [1, 2, 3],
            }
        )
    )
    m = mf.decode_manifest(raw)
    assert m.flow_name == "f" and m.status == "completed" and m.started_at == T0
    assert m.entries == (entry,)
    assert not hasattr(m, "future_field")


def test_all_entry_kinds_and_types_are_storable(repo: Repository) -> None:
    sv = repo.put_value("x")
    with repo.writer() as w:
        exec_id = w.create_execution("flow")
        for kind in mf.ENTRY_KINDS:
            for artifact_type in mf.ARTIFACT_TYPES:
                w.add_entry(
                    exec_id, make_entry(sv, f"{kind}-{artifact_type}", kind=kind, artifact_type=artifact_type)
                )
    entries = repo.get_execution(exec_id).entries
    assert {(e.kind, e.artifact_type) for e in entries} == {
        (k, t) for k in mf.ENTRY_KINDS for t in mf.ARTIFACT_TYPES
    }
    assert SAVED_KIND in mf.ENTRY_KINDS


def test_referenced_ids_covers_entries_checkpoints_and_result(repo: Repository) -> None:
    ids = [repo.put_value(i).object_id for i in range(3)]
    m = Manifest(
        exec_id="3" * 32,
        flow_name="f",
        status="completed",
        started_at=T0,
        entries=(make_entry(repo.put_value(0), "e"),),
        checkpoints=(
            CheckpointRecord(
                invocation_id="s", name="s", status="completed", started_at=T0, output_object_id=ids[1]
            ),
        ),
        result_object_id=ids[2],
    )
    assert mf.referenced_ids(m) >= set(ids)


def test_summaries_do_not_decode_manifests(repo: Repository) -> None:
    exec_id = repo.create_execution("flow", started_at=T0)
    with repo.kv.read() as rt:
        (tkey, raw), *_ = list(rt.items(b"exec_time"))
    assert tkey == layout.time_key(T0) + bytes.fromhex(exec_id)
    summary = mf.decode_summary(raw)
    assert summary.exec_id == exec_id and summary.flow_name == "flow"


def test_checked_tag_is_the_stored_checksum_only_when_it_verifies(repo: Repository) -> None:
    with repo.writer() as w:
        exec_id = w.create_execution("tagged", started_at=T0)
    with repo.kv.read() as rt:
        stored = rt.get(b"manifests", uuid.UUID(exec_id).bytes)
    assert stored is not None
    key = uuid.UUID(exec_id).bytes  # a head's checksum covers its execution's key, then its bytes
    assert mf.checked_tag(stored, key) == stored[-32:] == blake3(key + stored[:-32]).digest()
    assert mf.checked_tag(stored) is None and mf.checked_tag(stored, bytes(16)) is None
    damaged = bytearray(stored)
    damaged[5] ^= 0x10
    assert mf.checked_tag(bytes(damaged), key) is None
    assert mf.checked_tag(msgspec.msgpack.encode({"format_version": 1})) is None  # no checksum pair


def test_cached_manifest_is_refused_once_damaged(repo: Repository) -> None:
    with repo.writer() as w:
        exec_id = w.create_execution("cached", started_at=T0)
        w.add_entry(exec_id, make_entry(w.put_value("one"), "first"))
    assert repo.get_execution(exec_id).flow_name == "cached"  # decoded and cached
    key = uuid.UUID(exec_id).bytes
    with repo.kv.read() as rt:
        damaged = bytearray(rt.get(b"manifests", key) or b"")
    damaged[len(damaged) // 2] ^= 0x01
    repo._backend().update(lambda wt: wt.put(b"manifests", key, bytes(damaged)))
    with pytest.raises(CorruptManifestError):
        repo.get_execution(exec_id)
    with pytest.raises(CorruptManifestError), repo.writer() as w:  # nor does a writer build on it
        w.add_entry(exec_id, make_entry(w.put_value("two"), "second"))


def test_cached_manifest_follows_another_writers_change(repo: Repository) -> None:
    with repo.writer() as w:
        exec_id = w.create_execution("cached", started_at=T0)
        w.add_entry(exec_id, make_entry(w.put_value("one"), "first"))
    assert [e.name for e in repo.get_execution(exec_id).entries] == ["first"]
    other = Repository.open(repo.path)  # another handle, as another process would hold
    with other.writer() as w:
        w.add_entry(exec_id, make_entry(w.put_value("two"), "second"))
    assert [e.name for e in repo.get_execution(exec_id).entries] == ["first", "second"]
    assert repo.resolve_name(exec_id, "second").object_id == other.resolve_name(exec_id, "second").object_id


def test_an_aborted_writers_changes_never_reach_a_later_commit(repo: Repository) -> None:
    with repo.writer() as w:
        exec_id = w.create_execution("aborted", started_at=T0)
    with pytest.raises(KitaruError), repo.writer() as w:
        w.add_entry(exec_id, make_entry(w.put_value("never committed"), "ghost"))
        w.update_execution(exec_id, status="failed")
        w.update_execution(uuid.uuid4().hex, status="failed")  # unknown execution: the commit fails
    repo.put_bytes(b"an unrelated commit in between")
    with repo.writer() as w:
        w.update_execution(exec_id, status="completed")
    manifest = repo.get_execution(exec_id)
    assert manifest.status == "completed"
    assert [e.name for e in manifest.entries] == []
    assert repo.fsck().problems == []


def test_a_callers_dict_changed_after_the_commit_is_not_stored_later(repo: Repository) -> None:
    meta: dict[str, object] = {"step": 1}
    with repo.writer() as w:
        exec_id = w.create_execution("shared", started_at=T0)
        w.update_execution(exec_id, metadata=meta)
    meta["secret"] = "never saved"
    with repo.writer() as w:
        w.update_execution(exec_id, status="completed")
    assert repo.get_execution(exec_id).metadata == {"step": 1}


def test_a_writer_builds_on_a_manifest_another_process_changed(repo: Repository) -> None:
    with repo.writer() as w:
        exec_id = w.create_execution("remembered", started_at=T0)
        w.update_execution(exec_id, metadata={"by": "us"})
    key = uuid.UUID(exec_id).bytes
    # Another process's commit, as it reaches this one: bytes in LMDB, nothing in this process
    # (an older kitaru's: a whole format-1 manifest, which this commit converts as it builds on it).
    theirs = msgspec.structs.replace(repo.get_execution(exec_id), metadata={"by": "them"}, format_version=1)
    repo._backend().update(lambda wt: wt.put(b"manifests", key, mf.encode_manifest(theirs)))
    with repo.writer() as w:
        w.update_execution(exec_id, status="completed")
    got = repo.get_execution(exec_id)
    assert (got.status, got.metadata) == ("completed", {"by": "them"})


def test_a_manifest_without_checksum_is_read_only_if_it_has_no_unknown_field(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Manifests written before checksums wrote only known fields: an unknown one, at any depth
    (a damaged checksum key, a damaged field name), is damage, not a newer minor format."""
    attempt = Attempt(started_at=T0, failure=Failure(type="E", message="m", traceback="tb"))
    cp = CheckpointRecord(invocation_id="s", name="s", status="failed", started_at=T0, attempts=(attempt,))
    m = Manifest(
        exec_id="4" * 32,
        flow_name="f",
        status="failed",
        started_at=T0,
        checkpoints=(cp,),
        metadata={"k": 1},
        format_version=mf.LAST_FORMAT_WITHOUT_CHECKSUM,
    )
    legacy = mf.encode(m)  # no checksum pair
    assert mf.decode_manifest(legacy) == m
    for field in (b"metadata", b"attempts", b"traceback"):  # the top level, a checkpoint, a failure
        damaged = legacy.replace(field, field[:-1] + b"X", 1)
        assert msgspec.msgpack.decode(damaged, type=Manifest) != m  # decodes, that field lost
        with pytest.raises(CorruptManifestError, match="no checksum"):
            mf.decode_manifest(damaged)
    # Every format after the one checksums came in has them: without one, such a manifest is damaged.
    monkeypatch.setattr(mf, "MANIFEST_FORMAT", mf.LAST_FORMAT_WITHOUT_CHECKSUM + 1)
    newer = msgspec.structs.replace(m, format_version=mf.LAST_FORMAT_WITHOUT_CHECKSUM + 1)
    assert mf.decode_manifest(mf.encode_manifest(newer)) == newer
    with pytest.raises(CorruptManifestError, match="has no checksum"):
        mf.decode_manifest(mf.encode(newer))


# --- add_entry then replace_entry in one writer ---------------------------------------------------


def test_add_then_replace_in_one_writer_leaves_one_entry(repo: Repository) -> None:
    with repo.writer() as w:
        exec_id = w.create_execution("flow")
        first = output_entry(w.put_value("first"), "step", "step")
        also_first = output_entry(w.put_value("also first"), "step", "step")
        other = output_entry(w.put_value("other"), "step", "step_2")
        saved = make_entry(w.put_value("saved"), "step", checkpoint="step", invocation_id="step")
        w.add_entry(exec_id, first)
        w.add_entry(exec_id, also_first)
        w.add_entry(exec_id, other)
        w.add_entry(exec_id, saved)  # same name and invocation, another kind: not replaced
        replacing = output_entry(w.put_value("replacing"), "step", "step")
        w.replace_entry(exec_id, replacing)
    m = repo.get_execution(exec_id)
    same = [
        e for e in m.entries if (e.name, e.kind, e.invocation_id) == ("step", "checkpoint_output", "step")
    ]
    assert same == [replacing]
    assert {e.artifact_id for e in m.entries} == {
        replacing.artifact_id,
        other.artifact_id,
        saved.artifact_id,
    }
    assert repo.get_value(repo.get_artifact(replacing.artifact_id)[1].object_id) == "replacing"
    with repo.kv.read() as rt:
        assert rt.get(b"artifacts", bytes.fromhex(first.artifact_id)) is None
        assert rt.get(b"artifacts", bytes.fromhex(also_first.artifact_id)) is None
    assert repo.fsck().ok


def test_replace_twice_in_one_writer_keeps_the_last(repo: Repository) -> None:
    exec_id = commit_execution(repo, "flow", {})
    with repo.writer() as w:
        w.add_entry(exec_id, make_entry(w.put_value(1), "x"))
        w.replace_entry(exec_id, make_entry(w.put_value(2), "x"))
        last = make_entry(w.put_value(3), "x")
        w.replace_entry(exec_id, last)
    assert repo.get_execution(exec_id).entries == (last,)
    assert repo.fsck().ok


# --- update_execution refuses entries and checkpoints ---------------------------------------------


@pytest.mark.parametrize(
    "changes",
    [
        {"entries": ()},
        {"checkpoints": ()},
        {"status": "completed", "entries": ()},  # one bad field refuses the whole call
        {"format_version": 2},
        {"no_such_field": 1},
    ],
    ids=["entries", "checkpoints", "mixed", "format_version", "unknown"],
)
def test_update_execution_only_changes_scalar_fields(repo: Repository, changes: dict) -> None:
    with repo.writer() as w:
        exec_id = w.create_execution("flow")
        sv = w.put_value("out")
        w.add_entry(exec_id, output_entry(sv, "step", "step"))
        w.set_checkpoint(
            exec_id,
            CheckpointRecord(
                invocation_id="step",
                name="step",
                status="completed",
                started_at=T0,
                output_object_id=sv.object_id,
            ),
        )
    before = snapshot(repo)
    bad = sorted(set(changes) - {"status"})

    with pytest.raises(KitaruError) as excinfo, repo.writer() as w:
        w.update_execution(exec_id, **changes)
    assert excinfo.value.exec_id == exec_id
    assert all(name in excinfo.value.message for name in bad)
    assert snapshot(repo) == before

    with pytest.raises(KitaruError):
        repo.update_execution(exec_id, **changes)
    assert snapshot(repo) == before
    m = repo.get_execution(exec_id)
    assert (m.status, len(m.entries), len(m.checkpoints)) == ("running", 1, 1)


# --- format_version on disk; undecodable manifests ------------------------------------------------


def raw_manifest(repo: Repository, exec_id: str) -> bytes:
    with repo.kv.read() as rt:
        raw = rt.get(b"manifests", bytes.fromhex(exec_id))
    assert raw is not None
    return raw


def test_format_version_is_written_even_when_default(repo: Repository) -> None:
    exec_id = commit_execution(repo, "flow", {"a": 1})
    decoded = msgspec.msgpack.decode(raw_manifest(repo, exec_id))
    assert isinstance(decoded, dict)
    assert decoded["format_version"] == mf.MANIFEST_FORMAT
    repo.update_execution(exec_id, status="completed")
    assert msgspec.msgpack.decode(raw_manifest(repo, exec_id))["format_version"] == mf.MANIFEST_FORMAT


@pytest.mark.parametrize(
    "garbage",
    [
        b"\xc1 not msgpack",
        msgspec.msgpack.encode([1, 2, 3]),
        msgspec.msgpack.encode({"format_version": 1, "exec_id": "x"}),  # required fields missing
        msgspec.msgpack.encode({1: "non-string keys"}),
        b"",
    ],
    ids=["bytes", "list", "missing-fields", "int-keys", "empty"],
)
def test_undecodable_manifest_is_a_corrupt_manifest_error(repo: Repository, garbage: bytes) -> None:
    exec_id = commit_execution(repo, "flow", {"a": 1})
    repo._backend().update(lambda wt: wt.put(b"manifests", bytes.fromhex(exec_id), garbage))
    with pytest.raises(CorruptManifestError) as excinfo:
        repo.get_execution(exec_id)
    assert excinfo.value.exec_id == exec_id
    assert isinstance(excinfo.value, KitaruError)
    with pytest.raises(CorruptManifestError) as excinfo:
        repo.resolve_name(exec_id[:8], "a")
    assert excinfo.value.exec_id == exec_id
    with pytest.raises(CorruptManifestError) as excinfo:
        repo.update_execution(exec_id, status="completed")
    assert excinfo.value.exec_id == exec_id
    with pytest.raises(CorruptManifestError):
        mf.decode_manifest(garbage)


def test_manifest_with_unknown_fields_still_decodes(repo: Repository) -> None:
    exec_id = commit_execution(repo, "flow", {"a": 1})
    fields = msgspec.msgpack.decode(raw_manifest(repo, exec_id))
    del fields["checksum"]
    fields["added_by_a_newer_minor_version"] = {"x": [1, 2]}
    # As a newer writer stores it: sealed (a manifest without a checksum has no unknown field).
    newer = checksum.seal(msgspec.msgpack.encode(fields), bytes.fromhex(exec_id))
    repo._backend().update(lambda wt: wt.put(b"manifests", bytes.fromhex(exec_id), newer))
    assert repo.get_execution(exec_id).entries[0].name == "a"
    # A checksum pair that no longer ends the manifest (a field added after it, unsealed): damage,
    # not a manifest written before checksums.
    stale = msgspec.msgpack.encode({**fields, "checksum": newer[-32:], "added_after_it": 1})
    repo._backend().update(lambda wt: wt.put(b"manifests", bytes.fromhex(exec_id), stale))
    with pytest.raises(CorruptManifestError):
        repo.get_execution(exec_id)
