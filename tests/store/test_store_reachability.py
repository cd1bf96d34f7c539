"""What the store keeps (reachability.py): one definition for gc, fsck and redaction, and keeping
a value (pin, entry, checkpoint, ref) safe against a gc sweeping between its batches."""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Callable

import pytest
from store_helpers import T0, make_entry

from kitaru_store import CheckpointRecord, KitaruError, ObjectNotFoundError, Repository, layout, objects
from kitaru_store import gc as gc_module
from kitaru_store.errors import IncompleteObjectError, UsageError
from kitaru_store.manifests import WaitRecord
from kitaru_store.memory import MemoryStore
from kitaru_store.repository import StoredValue

MiB = 1 << 20


def chunked_value(repo: Repository) -> tuple[bytes, str, list[bytes]]:
    """A stored chunked value whose first piece in key order is a chunk, not its index: a sweep
    in key order deletes a chunk before the index. (data, object id, chunk keys)"""
    for seed in range(100):
        data = random.Random(seed).randbytes(MiB + MiB // 2)
        prepared = objects.prepare(data)
        chunks = [p.key for p in prepared.pieces if p.key != prepared.key]
        if len(chunks) >= 3 and min(chunks) < prepared.key:
            return data, repo.put_bytes(data), chunks
    raise AssertionError("no seed gives a chunk before its index")


def keep_by_pin(repo: Repository, oid: str, n: int) -> None:
    repo.pin(f"keep-{n}", oid)


def keep_by_entry(repo: Repository, oid: str, n: int) -> None:
    with repo.writer() as w:
        exec_id = w.create_execution("keeper")
        w.add_entry(exec_id, make_entry(StoredValue(oid, 0, "bytes"), f"value-{n}"))


def keep_by_checkpoint(repo: Repository, oid: str, n: int) -> None:
    with repo.writer() as w:
        exec_id = w.create_execution("keeper")
        w.set_checkpoint(
            exec_id,
            CheckpointRecord(
                invocation_id=f"s{n}", name="s", status="completed", started_at=T0, output_object_id=oid
            ),
        )


def keep_by_ref(repo: Repository, oid: str, n: int) -> None:
    repo.set_ref(b"sdk/keep-%d" % n, [bytes.fromhex(oid)])


KEEPS: dict[str, Callable[[Repository, str, int], None]] = {
    "pin": keep_by_pin,
    "entry": keep_by_entry,
    "checkpoint": keep_by_checkpoint,
    "ref": keep_by_ref,
}


@pytest.mark.parametrize("how", sorted(KEEPS))
def test_a_value_kept_between_gc_batches_is_never_broken(
    repo: Repository, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    """gc sweeps one record per transaction; after each, the unreferenced chunked value is kept
    (pinned, referenced by a new entry, a checkpoint output, a ref). A keep that succeeds must
    leave the whole value loadable; one that fails says so with a typed error and commits nothing.
    It used to succeed after a chunk was gone and before its index was, and the value was broken."""
    data, oid, _ = chunked_value(repo)
    monkeypatch.setattr(gc_module, "DELETE_BATCH", 1)
    kept: list[int] = []
    refused: list[KitaruError] = []

    def between_batches(phase: str, done: int, total: int) -> None:
        if phase != "sweep":
            return
        try:
            KEEPS[how](repo, oid, done)
            kept.append(done)
        except ObjectNotFoundError as exc:  # IncompleteObjectError included
            refused.append(exc)

    repo.gc(grace=0, progress=between_batches)
    assert kept or refused  # a keep was tried between batches
    if kept:
        assert repo.get_bytes(oid) == data
    else:
        assert not repo.has_object(oid)
        assert all(e.object_id == oid for e in refused)
    assert repo.fsck().ok, repo.fsck().problems
    repo.gc(grace=0)  # what was kept stays kept
    if kept:
        assert repo.get_bytes(oid) == data


def test_gc_deletes_a_values_index_before_its_chunks(
    repo: Repository, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, oid, chunks = chunked_value(repo)
    monkeypatch.setattr(gc_module, "DELETE_BATCH", 1)
    states: list[tuple[bool, int]] = []

    def between_batches(phase: str, done: int, total: int) -> None:
        if phase == "sweep":
            with repo.kv.read() as rt:
                states.append(
                    (rt.has(b"objects", bytes.fromhex(oid)), sum(rt.has(b"objects", c) for c in chunks))
                )

    repo.gc(grace=0, progress=between_batches)
    assert states[0] == (False, len(chunks))  # the index went first, alone
    assert all(not index for index, _ in states)
    assert states[-1] == (False, 0)


@pytest.mark.parametrize("how", sorted(KEEPS))
def test_keeping_an_incomplete_value_fails_and_commits_nothing(repo: Repository, how: str) -> None:
    data, oid, chunks = chunked_value(repo)
    repo._backend().update(lambda wt: wt.delete(b"objects", chunks[1]))
    with repo.kv.read() as rt:
        before = {db: dict(rt.items(db)) for db in (b"refs", b"manifests", b"touch")}
    with pytest.raises(IncompleteObjectError) as info:
        KEEPS[how](repo, oid, 0)
    assert info.value.object_id == oid and chunks[1].hex() in info.value.message
    with repo.kv.read() as rt:
        assert before == {db: dict(rt.items(db)) for db in (b"refs", b"manifests", b"touch")}
    assert repo.put_bytes(data) == oid  # a save of the same bytes stores the missing chunk
    KEEPS[how](repo, oid, 1)
    assert repo.get_bytes(oid) == data
    assert repo.fsck().ok


def test_gc_keeps_the_chunks_of_a_value_in_its_grace_period(repo: Repository) -> None:
    """A chunk whose own touch time is old is kept while its index is in the grace period."""
    data, oid, chunks = chunked_value(repo)
    old = objects.pack_time(objects.now_ns() - int(7200 * 1e9))
    repo._backend().update(lambda wt: [wt.put(b"touch", c, old) for c in chunks])
    report = repo.gc(grace=dt.timedelta(hours=1))
    assert report.objects_removed == 0
    assert report.objects_in_grace == len(chunks) + 1
    assert repo.get_bytes(oid) == data


def test_a_wait_value_is_a_root_for_gc_fsck_and_redaction(repo: Repository, mem: MemoryStore) -> None:
    """The three used to disagree: gc kept a wait record's value, redaction deleted it, fsck did
    not check it."""
    ns = mem.scope("namespace", "default")
    v = mem.set(ns, "answer", {"approved": True})
    assert v.object_id is not None
    with repo.writer() as w:
        exec_id = w.create_execution("waiting")
        w.set_wait(
            exec_id,
            WaitRecord(name="approval", status="answered", created_at=T0, value_object_id=v.object_id),
        )
    redacted = mem.redact(ns, "answer", 1, reason="test")
    assert redacted.kept_by == (f"execution {exec_id} wait 'approval' value",)
    assert repo.has_object(v.object_id)
    assert repo.fsck().ok
    repo._backend().update(lambda wt: wt.delete(b"objects", bytes.fromhex(v.object_id)))
    (problem,) = repo.fsck().problems
    assert (problem.kind, problem.object_id, problem.exec_id) == ("missing-object", v.object_id, exec_id)
    assert "wait 'approval' value" in problem.detail


def test_a_stale_inflight_ref_keeps_nothing_for_gc_fsck_or_redaction(
    repo: Repository, mem: MemoryStore
) -> None:
    ns = mem.scope("namespace", "default")
    v = mem.set(ns, "k", "held by a dead writer's in-flight list")
    assert v.object_id is not None
    stale = objects.now_ns() - int(gc_module.INFLIGHT_MAX_AGE.total_seconds() * 1e9) - 1
    ref = layout.inflight_ref(stale, b"dead")
    repo._backend().update(lambda wt: wt.put(b"refs", ref, bytes.fromhex(v.object_id) + bytes(32)))
    assert repo.fsck().ok  # bytes(32) names no object, but the ref is no root any more
    redacted = mem.redact(ns, "k", 1, reason="test")
    assert redacted.bytes_erased and redacted.kept_by == ()


@pytest.fixture
def mem(repo: Repository) -> MemoryStore:
    return repo.memory


@pytest.mark.parametrize("name", [b"inflight/0000000000000001/x", b"erase/" + b"ab" * 32])
def test_set_ref_refuses_the_stores_own_ref_names(repo: Repository, name: bytes) -> None:
    """gc reads inflight/ and erase/ refs by their form (an old in-flight list is garbage, an
    erasure queue keeps nothing): a caller's ref there would not keep its objects."""
    oid = repo.put_bytes(b"kept by a ref")
    with pytest.raises(UsageError, match="reserved"):
        repo.set_ref(name, [bytes.fromhex(oid)])
    with repo.kv.read() as rt:
        assert rt.get(layout.REFS, name) is None
