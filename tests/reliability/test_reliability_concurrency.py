"""Concurrent writers, gc and readers on one store; map growth; no stale lock or reader slot.

The 4 x 1,000 version runs in bench/soak.py; CI runs 4 x 200 saves.
"""

from __future__ import annotations

import os
import re
import threading
import time
from pathlib import Path

import harness
import pytest

from kitaru_store import Entry, Repository, StoreLockedError
from kitaru_store.ids import new_uuid
from kitaru_store.locks import FileLock
from kitaru_store.manifests import utcnow

pytestmark = pytest.mark.slow

SAVES = int(os.environ.get("KITARU_RELIABILITY_SAVES", "200"))


def test_four_writers_with_gc_and_a_reader(tmp_path: Path) -> None:
    """4 processes x SAVES kitaru.save() calls, a fifth running gc(grace=0) in a loop, a sixth reading."""
    figures = harness.run_concurrency(tmp_path / "store", tmp_path, writers=4, saves=SAVES, timeout=240)
    assert not figures.violations, "\n".join(figures.violations)
    assert figures.saves_written == 4 * SAVES
    # every save loaded with its promised id twice: before and after a final gc(grace=0)
    assert figures.saves_checked >= 2 * 4 * SAVES
    assert figures.gc_runs >= 1
    assert figures.reader_reads > 0


def test_map_growth_under_concurrency_from_a_tiny_map(tmp_path: Path) -> None:
    """A new store with a 1 MiB map: several processes grow it while writing, gc and a reader run."""
    tiny = {"KITARU_MAP_SIZE": str(1 << 20)}
    figures = harness.run_concurrency(
        tmp_path / "store", tmp_path, writers=4, saves=150, env=tiny, timeout=240
    )
    assert not figures.violations, "\n".join(figures.violations)
    assert figures.saves_written == 600
    assert figures.map_growths >= 2, figures.map_growths  # the map really grew, more than once
    assert (tmp_path / "store" / "db" / "data.mdb").stat().st_size > 2 << 20


def _commit_in_progress(repo: Repository, entered: threading.Event, go: threading.Event) -> str:
    """Commit an execution whose write transaction stalls after taking its touch stamp."""
    with repo.writer() as w:
        exec_id = w.create_execution("stalled")
        stored = w.put_value("written by a slow commit")
        w.add_entry(
            exec_id,
            Entry(
                artifact_id=new_uuid(),
                name="slow",
                kind="manual",
                artifact_type="output",
                object_id=stored.object_id,
                size=stored.size,
                serializer=stored.serializer,
                created_at=utcnow(),
            ),
        )

        def stall(wt: object) -> None:
            entered.set()
            go.wait(10)

        w.on_commit(stall)
    return exec_id


def test_gc_waits_for_a_commit_in_progress(repo: Repository, monkeypatch: pytest.MonkeyPatch) -> None:
    """Regression: a commit that stamped its objects before gc's cutoff but became visible only
    after gc's mark used to lose them (found by the gc crash mode: entries of completed flows
    naming swept objects). gc now waits for running write transactions before it marks."""
    from kitaru_store import gc as gc_module

    entered, go, marked = threading.Event(), threading.Event(), threading.Event()
    real_candidates = gc_module._candidates

    def candidates_after_the_commit(*args, **kwargs):  # type: ignore[no-untyped-def]
        marked.set()
        writer_thread.join(10)  # the stalled commit lands between the mark and the sweep
        return real_candidates(*args, **kwargs)

    monkeypatch.setattr(gc_module, "_candidates", candidates_after_the_commit)
    result: dict[str, str] = {}
    writer_thread = threading.Thread(
        target=lambda: result.update(exec_id=_commit_in_progress(repo, entered, go))
    )
    writer_thread.start()
    assert entered.wait(10)
    time.sleep(0.01)  # the commit's stamp is now older than the cutoff gc is about to take
    gc_thread = threading.Thread(target=lambda: result.update(gc=str(repo.gc(grace=0))))
    gc_thread.start()
    marked.wait(0.5)  # with the fix gc is blocked before its mark until the commit is released
    go.set()
    writer_thread.join(10)
    gc_thread.join(20)
    assert "gc" in result and "exec_id" in result
    entry = repo.resolve_name(result["exec_id"], "slow")
    assert repo.get_value(entry.object_id) == "written by a slow commit"
    assert repo.fsck().ok


def _hold(store: Path, what: str, tmp_path: Path, started: list[harness.Child]) -> harness.Child:
    child = harness.Child("hold", store, tmp_path / f"hold-{what}.jsonl", seed=0, extra_args=["--what", what])
    started.append(child)
    assert child.wait_line("holding"), child.describe()
    return child


def test_killed_gc_leaves_no_stale_gc_lock(repo: Repository, store_path: Path, tmp_path: Path) -> None:
    repo.put_value("garbage for the gc")
    with harness.children() as started:
        holder = _hold(store_path, "gc", tmp_path, started)
        with pytest.raises(StoreLockedError):
            repo.gc(grace=0)  # the lock is really held ...
        assert holder.kill()
    report = repo.gc(grace=0)  # ... and dies with its process
    assert report.objects_removed >= 1
    assert repo.fsck().ok


def test_killed_compaction_leaves_no_stale_store_lock(store_path: Path, tmp_path: Path) -> None:
    repo = Repository.open(store_path)
    values = {f"v{i}": os.urandom(20_000) for i in range(20)}
    oids = {name: repo.put_value(value).object_id for name, value in values.items()}
    for name, oid in oids.items():
        repo.pin(name, oid)
    harness.release(store_path)  # compaction needs the store to itself
    data_file = store_path / "db" / "data.mdb"
    inode = data_file.stat().st_ino
    with harness.children() as started:
        holder = _hold(store_path, "compact", tmp_path, started)
        probe = FileLock(str(store_path / "locks" / "store.lock"))
        with pytest.raises(StoreLockedError):
            probe.acquire(exclusive=False, timeout=0.0)  # held exclusively: opens would wait
        assert (store_path / "db.compact" / "data.mdb").exists()  # half a copy
        assert holder.kill()
    repo = Repository.open(store_path)  # opens at once: the exclusive lock died with the process
    assert data_file.stat().st_ino == inode  # the half copy was never swapped in
    assert {name: repo.get_value(oid) for name, oid in oids.items()} == values
    assert repo.fsck().ok
    harness.release(store_path)
    repo = Repository.open(store_path)
    report = repo.gc(grace=0, compact=True)  # the next compaction clears the leftover and runs
    assert report.compacted, report.compact_error
    assert not (store_path / "db.compact").exists()
    assert {name: repo.get_value(oid) for name, oid in oids.items()} == values


def test_killed_writer_leaves_no_stale_writer_lock(
    repo: Repository, store_path: Path, tmp_path: Path
) -> None:
    """A process killed inside a write transaction (holding LMDB's writer mutex) blocks nobody."""
    before = harness.store_snapshot(store_path)
    with harness.children() as started:
        holder = _hold(store_path, "writer", tmp_path, started)
        assert holder.kill()
    done = threading.Event()

    def write() -> None:
        repo.put_value("after the killed writer")
        done.set()

    t = threading.Thread(target=write, daemon=True)
    t.start()
    assert done.wait(30), "the writer mutex of the killed process was never released"
    after = harness.store_snapshot(store_path)
    assert b"uncommitted" not in after["refs"]  # its transaction left nothing behind
    assert before["manifests"] == after["manifests"]
    assert repo.fsck().ok


def _reader_slots(repo: Repository) -> list[int]:
    """The pids holding LMDB reader slots (read transactions open now)."""
    text = repo._backend().env.readers()
    return [int(m.group(1)) for m in re.finditer(r"^\s*(\d+)\s+\S+\s+\S+\s*$", text, re.M)]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_killed_readers_leave_no_reader_slots(repo: Repository, store_path: Path, tmp_path: Path) -> None:
    """Kill readers inside read transactions, over and over: the slots are reclaimed, not piled up.

    This process keeps the environment open throughout, so LMDB never resets its lock file: only
    the reader_check of each new open clears the slots of the dead.
    """
    repo.put_value("something to read")
    kills = 12
    stale_seen = []
    with harness.children() as started:
        for n in range(kills):
            holder = _hold(store_path, "reader", tmp_path, started)
            assert holder.proc.pid in _reader_slots(repo)  # it really holds a slot
            assert holder.kill()
            stale_seen.append(sum(not _alive(pid) for pid in _reader_slots(repo)))
            assert stale_seen[-1] <= 1, (n, stale_seen)  # the previous victim's slot was cleared
        closer = harness.Child(
            "hold", store_path, tmp_path / "none.jsonl", seed=0, extra_args=["--what", "none"]
        )
        started.append(closer)
        assert closer.finish(60) == 0, closer.describe()
    assert stale_seen[-1] == 1  # the last victim's slot, until ...
    assert [pid for pid in _reader_slots(repo) if not _alive(pid)] == []  # ... the next open cleared it
    info = repo._backend().env.info()
    assert info["num_readers"] <= 4, info  # slots are reused: the table did not grow with the kills
