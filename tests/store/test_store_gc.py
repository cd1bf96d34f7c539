"""Garbage collection in one process: roots, grace period, dry run, chunks, deletion, compaction."""

from __future__ import annotations

import datetime as dt
import os
import time
import uuid

import numpy as np
import pytest
from store_helpers import T0, commit_execution, make_entry, output_entry, record

from kitaru_store import CheckpointRecord, Repository, StoreLockedError, layout, objects
from kitaru_store import writer as writer_module
from kitaru_store.gc import DEFAULT_GRACE, INFLIGHT_MAX_AGE, stale_inflight
from kitaru_store.locks import FileLock

MiB = 1 << 20


def age_everything(repo: Repository, seconds: float = 7200) -> None:
    """Pretend every object was last touched ``seconds`` ago (past the default grace period)."""
    stamp = objects.pack_time(objects.now_ns() - int(seconds * 1e9))

    def txn(wt) -> None:
        for key, _ in list(wt.items(b"touch")):
            wt.put(b"touch", key, stamp)

    repo._backend().update(txn)


def test_default_grace_keeps_fresh_garbage(repo: Repository) -> None:
    assert dt.timedelta(hours=1) == DEFAULT_GRACE
    oid = repo.put_value("fresh garbage").object_id
    report = repo.gc()
    assert report.grace_seconds == 3600
    assert report.objects_removed == 0
    assert report.objects_in_grace == 1
    assert repo.get_value(oid) == "fresh garbage"


def test_unreferenced_objects_past_grace_are_swept(repo: Repository) -> None:
    garbage = [repo.put_value(f"garbage {i}").object_id for i in range(5)]
    age_everything(repo)
    report = repo.gc()
    assert report.objects_removed == 5
    assert report.objects_total == 5
    assert report.objects_live == 0
    assert report.bytes_removed > 0
    assert not any(repo.has_object(oid) for oid in garbage)
    assert repo.stats().objects == 0
    assert repo.fsck().ok


def test_grace_as_seconds_and_timedelta(repo: Repository) -> None:
    oid = repo.put_value("x").object_id
    time.sleep(0.05)
    assert repo.gc(grace=dt.timedelta(seconds=30)).objects_removed == 0
    assert repo.gc(grace=0.01).objects_removed == 1
    assert not repo.has_object(oid)
    with pytest.raises(ValueError):
        repo.gc(grace=-1)


def test_roots_survive(repo: Repository) -> None:
    # Manifest entries, checkpoint outputs and the result value.
    with repo.writer() as w:
        exec_id = w.create_execution("flow")
        entry_value = w.put_value("entry value")
        w.add_entry(exec_id, make_entry(entry_value, "e"))
        cp_out = w.put_value("checkpoint output only")
        w.set_checkpoint(
            exec_id,
            CheckpointRecord(
                invocation_id="s",
                name="s",
                status="completed",
                started_at=T0,
                output_object_id=cp_out.object_id,
            ),
        )
        result = w.put_value("result only")
        w.update_execution(exec_id, result_object_id=result.object_id)
    # A pin and a raw ref.
    pinned = repo.put_value("pinned").object_id
    repo.pin("keep-me", pinned)
    ref_a = repo.put_value("ref a").object_id
    ref_b = repo.put_value("ref b").object_id
    repo.set_ref(b"memory/agent", [bytes.fromhex(ref_a), bytes.fromhex(ref_b)])
    garbage = repo.put_value("garbage").object_id
    age_everything(repo)

    report = repo.gc(grace=0)
    assert report.objects_removed == 1
    assert not repo.has_object(garbage)
    live = [entry_value.object_id, cp_out.object_id, result.object_id, pinned, ref_a, ref_b]
    assert report.objects_live == len(live)
    for oid in live:
        assert repo.has_object(oid)
        repo.get_value(oid)
    assert repo.pins() == {"keep-me": pinned}


def test_unpin_makes_garbage(repo: Repository) -> None:
    oid = repo.put_value("pinned for a while").object_id
    repo.pin("p", oid)
    assert repo.gc(grace=0).objects_removed == 0
    assert repo.unpin("p") is True
    assert repo.unpin("p") is False
    assert repo.gc(grace=0).objects_removed == 1
    assert not repo.has_object(oid)


def test_pin_by_prefix_and_pins_listing(repo: Repository) -> None:
    a = repo.put_value("a").object_id
    b = repo.put_value("b").object_id
    repo.pin("first", a[:8])
    repo.pin("second", b)
    repo.pin("first", b)  # re-pointing a pin
    assert repo.pins() == {"first": b, "second": b}
    repo.gc(grace=0)
    assert not repo.has_object(a)


def test_dry_run_reports_and_deletes_nothing(repo: Repository) -> None:
    commit_execution(repo, "flow", {"kept": "kept value"})
    for i in range(4):
        repo.put_bytes(os.urandom(1000 + i))
    age_everything(repo)
    before = repo.stats()
    dry = repo.gc(grace=0, dry_run=True)
    assert dry.dry_run
    assert dry.objects_removed == 4
    assert 4 * 1000 < dry.bytes_removed < 4 * 1100
    assert dry.objects_live == 1
    after = repo.stats()
    assert (after.objects, after.stored_bytes) == (before.objects, before.stored_bytes)
    real = repo.gc(grace=0)
    assert (real.objects_removed, real.bytes_removed) == (dry.objects_removed, dry.bytes_removed)
    assert repo.stats().objects == 1


def test_report_to_dict(repo: Repository) -> None:
    report = repo.gc(grace=0, dry_run=True)
    d = report.to_dict()
    assert d["dry_run"] is True
    assert set(d) >= {
        "objects_total",
        "objects_removed",
        "bytes_removed",
        "file_size_before",
        "file_size_after",
    }
    assert report.seconds >= 0


def test_chunks_of_a_live_chunked_value_survive(repo: Repository) -> None:
    rng = np.random.default_rng(0)
    live = rng.integers(0, 256, 4 * MiB, dtype=np.uint8).tobytes()
    dead = rng.integers(0, 256, 3 * MiB, dtype=np.uint8).tobytes()
    with repo.writer() as w:
        exec_id = w.create_execution("flow")
        sv = w.put_bytes(live)
        w.add_entry(exec_id, make_entry(writer_module.StoredValue(sv, len(live), "bytes"), "big"))
    dead_id = repo.put_bytes(dead)
    live_chunks = repo.object_info(sv).chunks
    dead_chunks = repo.object_info(dead_id).chunks
    age_everything(repo)
    report = repo.gc(grace=0)
    assert report.objects_removed == dead_chunks + 1
    assert report.objects_live == live_chunks + 1
    assert repo.get_bytes(sv) == live
    assert not repo.has_object(dead_id)
    assert repo.stats().objects == live_chunks + 1
    assert repo.fsck().ok


def test_chunks_shared_with_a_dead_value_survive(repo: Repository) -> None:
    common = np.random.default_rng(1).integers(0, 256, 4 * MiB, dtype=np.uint8).tobytes()
    live = common + b"live tail"
    dead = common + b"dead tail, different last chunk"
    with repo.writer() as w:
        exec_id = w.create_execution("flow")
        live_id = w.put_bytes(live)
        w.add_entry(exec_id, make_entry(writer_module.StoredValue(live_id, len(live), "bytes"), "v"))
    dead_id = repo.put_bytes(dead)
    age_everything(repo)
    report = repo.gc(grace=0)
    assert 1 <= report.objects_removed <= 3  # the dead index and its own last chunk(s)
    assert repo.get_bytes(live_id) == live
    assert not repo.has_object(dead_id)


def test_delete_execution_then_gc_removes_only_its_unique_objects(repo: Repository) -> None:
    shared = "shared between both executions"
    a = commit_execution(repo, "flow", {"shared": shared, "only_a": "unique to a", "big": "A" * 100_000})
    b = commit_execution(repo, "flow", {"shared": shared, "only_b": "unique to b"})
    m_a = repo.get_execution(a)
    ids_a = {e.name: e.object_id for e in m_a.entries}
    repo.delete_execution(a[:8])
    assert [s.exec_id for s in repo.list_executions()] == [b]
    report = repo.gc(grace=0)
    assert report.objects_removed == 2
    assert not repo.has_object(ids_a["only_a"])
    assert not repo.has_object(ids_a["big"])
    for e in repo.get_execution(b).entries:
        assert repo.get_value(e.object_id) in (shared, "unique to b")
    assert repo.fsck().ok


def test_deleted_execution_objects_wait_for_grace(repo: Repository) -> None:
    a = commit_execution(repo, "flow", {"x": "recently written"})
    repo.delete_execution(a)
    assert repo.gc().objects_removed == 0  # default grace: written moments ago
    assert repo.gc(grace=0).objects_removed == 1


def test_delete_execution_removes_its_artifact_index(repo: Repository) -> None:
    from kitaru_store import ExecutionNotFoundError, KitaruError

    a = commit_execution(repo, "flow", {"x": 1})
    artifact_id = repo.get_execution(a).entries[0].artifact_id
    repo.delete_execution(a)
    with pytest.raises(ExecutionNotFoundError):
        repo.get_execution(a)
    with pytest.raises(ExecutionNotFoundError):
        repo.delete_execution(a)
    with pytest.raises(KitaruError):
        repo.get_artifact(artifact_id)


def test_flushed_writer_objects_are_kept_while_in_flight(repo: Repository, monkeypatch) -> None:
    monkeypatch.setattr(writer_module, "FLUSH_BYTES", 10_000)
    w = repo.writer()
    exec_id = w.create_execution("flow")
    values = [w.put_value(os.urandom(6000).hex()) for _ in range(4)]  # 12 KB each: flushed early
    assert all(repo.has_object(v.object_id) for v in values)  # committed before the manifest
    age_everything(repo)
    assert repo.gc(grace=0).objects_removed == 0  # in-flight refs keep them
    for i, sv in enumerate(values):
        w.add_entry(exec_id, make_entry(sv, f"v{i}"))
    w.commit()
    with repo.kv.read() as rt:
        assert not [k for k, _ in rt.items(b"refs") if k.startswith(b"inflight/")]
    assert repo.gc(grace=0).objects_removed == 0  # now the manifest keeps them
    assert [repo.get_value(e.object_id) for e in repo.get_execution(exec_id).entries] == [
        repo.get_value(v.object_id) for v in values
    ]


def test_aborted_writer_leaves_flushed_objects_to_gc(repo: Repository, monkeypatch) -> None:
    monkeypatch.setattr(writer_module, "FLUSH_BYTES", 10_000)
    with pytest.raises(RuntimeError), repo.writer() as w:
        exec_id = w.create_execution("flow")
        sv = w.put_value(os.urandom(6000).hex())
        w.add_entry(exec_id, make_entry(sv, "v"))
        raise RuntimeError("flow failed")
    assert repo.count_executions() == 0
    assert repo.has_object(sv.object_id)
    assert repo.gc(grace=0).objects_removed == 1


def test_compaction_shrinks_the_file_and_keeps_data(repo: Repository, store_path) -> None:
    keep = commit_execution(repo, "flow", {"a": "kept", "arr": np.arange(300_000), "out": "x" * 10})
    doomed = [repo.put_bytes(os.urandom(100_000)) for _ in range(100)]  # ~10 MB of garbage
    report = repo.gc(grace=0, compact=True)
    assert report.objects_removed == len(doomed)
    assert report.compacted and report.compact_error is None
    assert report.file_size_after < report.file_size_before / 3
    assert report.file_size_after == os.path.getsize(store_path / layout.DB_DIR / "data.mdb")
    values = {e.name: repo.get_value(e.object_id) for e in repo.get_execution(keep).entries}
    assert values["a"] == "kept"
    assert np.array_equal(values["arr"], np.arange(300_000))
    assert not (store_path / "db.compact").exists()
    # The store stays writable after the swap.
    again = commit_execution(repo, "flow", {"after": "compaction"})
    assert repo.resolve_name(again, "after").object_id
    assert repo.fsck().ok


def test_second_concurrent_gc_is_refused(repo: Repository, store_path) -> None:
    repo.put_value("x")
    seen: list[Exception] = []

    def progress(stage: str, done: int, total: int) -> None:
        if seen:
            return
        try:
            repo.gc(grace=0)
        except StoreLockedError as exc:
            seen.append(exc)

    repo.gc(grace=0, progress=progress)
    assert len(seen) == 1
    assert seen[0].hint and "wait" in seen[0].hint
    # Another holder of the gc lock (another process, as far as flock is concerned).
    lock = FileLock(str(store_path / layout.LOCK_DIR / "gc.lock"))
    lock.acquire(exclusive=True)
    try:
        with pytest.raises(StoreLockedError):
            repo.gc(grace=0, dry_run=True)
    finally:
        lock.release()
    repo.gc(grace=0)  # the lock is free again


def test_gc_progress_reports_stages(repo: Repository) -> None:
    for i in range(10):
        repo.put_value(i)
    stages: list[str] = []
    repo.gc(grace=0, progress=lambda stage, done, total: stages.append(stage))
    assert "scan" in stages and "sweep" in stages


def test_gc_on_a_store_with_output_entries(repo: Repository) -> None:
    with repo.writer() as w:
        exec_id = w.create_execution("flow")
        sv = w.put_value("out")
        w.add_entry(exec_id, output_entry(sv, "step", "step"))
    age_everything(repo)
    assert repo.gc(grace=0).objects_removed == 0
    assert repo.get_value(repo.resolve_name(exec_id, "step").object_id) == "out"


def test_chunks_before_and_after_their_index_in_key_order(repo: Repository, monkeypatch) -> None:
    """gc finds the live chunk indexes in its scan of every record; a chunk that comes before its
    index in key order is judged only once the scan is over."""
    from kitaru_store import gc as gc_module

    monkeypatch.setattr(gc_module, "SCAN_BATCH", 7)  # many read transactions
    rng = np.random.default_rng(7)
    values = [rng.integers(0, 256, 3 * MiB, dtype=np.uint8).tobytes() for _ in range(3)]
    with repo.writer() as w:
        exec_id = w.create_execution("flow")
        live = [w.put_bytes(v) for v in values[:2]]
        for i, (oid, v) in enumerate(zip(live, values, strict=False)):
            w.add_entry(exec_id, make_entry(writer_module.StoredValue(oid, len(v), "bytes"), f"v{i}"))
    dead = repo.put_bytes(values[2])
    chunks = {oid: objects.chunk_keys(record(repo, oid), bytes.fromhex(oid)) for oid in (*live, dead)}
    live_chunks = {c for oid in live for c in chunks[oid]}
    assert any(c < bytes.fromhex(oid) for oid in live for c in chunks[oid])
    assert any(c > bytes.fromhex(oid) for oid in live for c in chunks[oid])
    fresh = repo.gc(grace=3600, dry_run=True)  # nothing is old enough: the dead value is in grace
    assert fresh.objects_live == len(live_chunks) + 2
    assert fresh.objects_in_grace == len(set(chunks[dead]) - live_chunks) + 1
    age_everything(repo)
    report = repo.gc(grace=0)
    assert report.objects_removed == len(set(chunks[dead]) - live_chunks) + 1
    assert report.objects_live == len(live_chunks) + 2 and report.objects_in_grace == 0
    assert [repo.get_bytes(oid) for oid in live] == values[:2]
    assert not repo.has_object(dead)
    assert repo.fsck().ok


def test_gc_removes_run_locks_no_process_holds(repo: Repository) -> None:
    # A killed run leaves its run lock file behind (the kernel drops the flock, not the file);
    # so does one killed before its first commit, which has no manifest at all. Free ones go;
    # a held one (a run in progress) stays, and its run still reads as alive.
    from kitaru_store import liveness

    runs = repo.root / layout.LOCK_DIR / layout.RUNS_DIR
    runs.mkdir(parents=True, exist_ok=True)
    left = [runs / f"{i:032x}.lock" for i in range(3)]
    for path in left:
        path.touch()
    liveness.claim(repo, "f" * 32)
    try:
        repo.gc(grace=0)
        assert sorted(p.name for p in runs.iterdir()) == ["f" * 32 + ".lock"]
        assert liveness.lock_state(liveness.lock_path(repo.root, "f" * 32)) is True
    finally:
        liveness.release(repo, "f" * 32)
    assert list(runs.iterdir()) == []


def test_deleting_an_execution_removes_its_free_run_lock(repo: Repository) -> None:
    from kitaru_store import liveness

    exec_id = commit_execution(repo, "f", {"v": 1})
    path = liveness.lock_path(repo.root, exec_id)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    open(path, "w").close()
    repo.delete_execution(exec_id)
    assert not os.path.exists(path)


# --- stale in-flight refs -------------------------------------------------------------------------


def inflight_name(start_ns: int) -> bytes:
    return layout.inflight_ref(start_ns, uuid.uuid4().hex.encode())


def refs(repo: Repository) -> dict[bytes, bytes]:
    with repo.kv.read() as rt:
        return dict(rt.items(b"refs"))


def test_gc_drops_stale_inflight_refs_and_sweeps_their_objects(repo: Repository) -> None:
    stale_oid = repo.put_bytes(b"flushed by a writer that died a week ago")
    fresh_oid = repo.put_bytes(b"flushed by a writer that is still running")
    now = objects.now_ns()
    stale_ref = inflight_name(now - int(dt.timedelta(days=8).total_seconds() * 1e9))
    fresh_ref = inflight_name(now)
    assert stale_inflight(stale_ref, now - int(INFLIGHT_MAX_AGE.total_seconds() * 1e9))
    assert not stale_inflight(fresh_ref, now - int(INFLIGHT_MAX_AGE.total_seconds() * 1e9))

    def txn(wt) -> None:
        wt.put(b"refs", stale_ref, bytes.fromhex(stale_oid))
        wt.put(b"refs", fresh_ref, bytes.fromhex(fresh_oid))

    repo._backend().update(txn)

    dry = repo.gc(grace=0, dry_run=True)
    assert dry.stale_refs_removed == 0
    assert dry.objects_removed == 1  # would remove the stale ref's object...
    assert set(refs(repo)) == {stale_ref, fresh_ref}  # ...but removes nothing
    assert repo.has_object(stale_oid) and repo.has_object(fresh_oid)

    report = repo.gc(grace=0)
    assert report.stale_refs_removed == 1
    assert report.objects_removed == 1
    assert refs(repo) == {fresh_ref: bytes.fromhex(fresh_oid)}
    assert not repo.has_object(stale_oid)
    assert repo.get_bytes(fresh_oid) == b"flushed by a writer that is still running"
    assert repo.fsck().ok

    again = repo.gc(grace=0)
    assert (again.stale_refs_removed, again.objects_removed) == (0, 0)


def test_malformed_inflight_stamp_is_kept() -> None:
    assert not stale_inflight(layout.INFLIGHT_PREFIX + b"not-a-time-stamp/x", objects.now_ns())
    assert not stale_inflight(b"pin/inflight/0000000000000000/x", objects.now_ns())
