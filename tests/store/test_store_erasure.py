"""The erasure queue: redaction marks a version and queues its object; gc's eraser deletes it.

A redaction commits its mark and the queue record together, then runs the eraser on the queue.
These tests stop a redaction between the two (as if its process died), check what the next gc
or redaction does with the queue, and race writers against the eraser.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Any

import pytest
from store_helpers import commit_execution

from kitaru_store import Repository, layout, objects, reachability
from kitaru_store import gc as gc_module
from kitaru_store.memory import MemoryStore, MemoryVersion, make_scope

NS = make_scope("namespace", "default")


@pytest.fixture
def mem(repo: Repository) -> MemoryStore:
    return repo.memory


def queued(repo: Repository) -> list[bytes]:
    """The object keys waiting in the erasure queue."""
    names = [n for n, _ in repo._backend().scan(b"refs", layout.ERASE_PREFIX, layout.ERASE_END)]
    return [k for k in map(layout.erase_target, names) if k is not None]


def redact_and_die(
    monkeypatch: pytest.MonkeyPatch, mem: MemoryStore, key: str, version: int = 1
) -> MemoryVersion:
    """A redaction whose process dies after its mark and queue record commit, before it erases."""
    with monkeypatch.context() as m:
        m.setattr(gc_module, "erase_queued", lambda repo: [])
        return mem.redact(NS, key, version, reason="erasure request")


def test_a_redaction_that_died_before_erasing_leaves_a_queue_the_next_gc_erases(
    repo: Repository, mem: MemoryStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    v = mem.set(NS, "ssn", "078-05-1120")
    assert v.object_id is not None
    r = redact_and_die(monkeypatch, mem, "ssn")
    assert (r.redacted, r.object_id, r.bytes_erased, r.kept_by) == (True, None, None, ())
    assert repo.has_object(v.object_id)  # the eraser never ran
    assert queued(repo) == [bytes.fromhex(v.object_id)]
    assert repo.fsck().ok  # a queue record names no object: nothing is missing
    assert repo.gc(dry_run=True).erasures == 1
    assert repo.has_object(v.object_id)

    report = repo.gc()  # the default grace period: the sweep alone would keep this fresh object
    assert (report.erasures, report.erasures_kept, report.erased_objects) == (1, 0, 1)
    assert report.erased_bytes > 0 and report.objects_removed == 0
    assert not repo.has_object(v.object_id)
    assert queued(repo) == []
    (settled,) = mem.history(NS, "ssn")
    assert (settled.bytes_erased, settled.kept_by, settled.redaction_reason) == (True, (), "erasure request")
    assert repo.gc().erasures == 0
    assert repo.fsck().ok


def test_the_next_redaction_also_erases_what_a_dead_one_queued(
    repo: Repository, mem: MemoryStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    a = mem.set(NS, "a", "first secret")
    b = mem.set(NS, "b", "second secret")
    redact_and_die(monkeypatch, mem, "a")
    r = mem.redact(NS, "b", 1, reason="r")
    assert r.bytes_erased is True
    assert a.object_id and b.object_id
    assert not repo.has_object(a.object_id) and not repo.has_object(b.object_id)
    assert mem.history(NS, "a")[0].bytes_erased is True
    assert queued(repo) == []


def test_two_dead_redactions_of_one_object_are_both_settled(
    repo: Repository, mem: MemoryStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    v = mem.set(NS, "k", "same bytes")
    mem.set(NS, "k", "same bytes")  # version 2 shares version 1's object
    redact_and_die(monkeypatch, mem, "k", 1)
    redact_and_die(monkeypatch, mem, "k", 2)
    assert queued(repo) == [bytes.fromhex(v.object_id or "")]
    report = repo.gc()
    assert (report.erasures, report.erasures_kept) == (1, 0)
    assert [h.bytes_erased for h in mem.history(NS, "k")] == [True, True]
    assert v.object_id is not None and not repo.has_object(v.object_id)


def test_a_queued_value_another_execution_holds_is_kept_and_kept_by_says_why(
    repo: Repository, mem: MemoryStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    exec_id = commit_execution(repo, "f", {"answer": "shared secret"})
    v = mem.set(NS, "k", "shared secret")
    redact_and_die(monkeypatch, mem, "k")
    report = repo.gc(grace=0)
    assert (report.erasures, report.erasures_kept, report.erased_objects) == (1, 1, 0)
    assert v.object_id is not None and repo.has_object(v.object_id)
    (settled,) = mem.history(NS, "k")
    assert (settled.bytes_erased, settled.kept_by) == (False, (f"execution {exec_id} entry 'answer'",))
    assert repo.get_value(repo.resolve_name(exec_id, "answer").object_id) == "shared secret"
    assert queued(repo) == []
    assert repo.fsck().ok


def test_a_part_record_whose_head_is_gone_still_keeps_its_value(
    repo: Repository, mem: MemoryStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """gc's mark counts the roots of part records with no head (conservative); the eraser must
    too, or a redaction could erase what gc itself would keep."""
    exec_id = commit_execution(repo, "f", {"answer": "held by an orphan record"})
    repo.kv.update(lambda wt: wt.delete(layout.MANIFESTS, layout.uuid_key(exec_id)))
    v = mem.set(NS, "k", "held by an orphan record")
    r = mem.redact(NS, "k", 1, reason="erasure request")
    assert v.object_id is not None and repo.has_object(v.object_id)
    assert r.bytes_erased is False
    assert r.kept_by == (f"a part record of execution {exec_id} with no head (run `kitaru-store fsck`)",)


def test_a_queued_chunked_value_loses_only_the_chunks_no_other_value_lists(
    repo: Repository, mem: MemoryStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    base = os.urandom(3 << 20)
    v = mem.set(NS, "a", base)
    edited = base[: 2 << 20] + os.urandom(1 << 20)  # the same leading chunks, a new tail
    mem.set(NS, "b", edited)
    assert v.object_id is not None
    with repo.kv.read() as rt:
        chunks = objects.chunk_keys(rt.get(b"objects", bytes.fromhex(v.object_id)), b"")
    redact_and_die(monkeypatch, mem, "a")
    report = repo.gc()
    assert report.erasures == 1 and 1 < report.erased_objects < 1 + len(chunks)
    assert not repo.has_object(v.object_id)
    assert mem.get(NS, "b") == edited
    (settled,) = mem.history(NS, "a")
    assert settled.bytes_erased is True
    assert len(settled.kept_by) == 1 and "chunks are shared with other stored values" in settled.kept_by[0]
    assert repo.fsck().ok


def _pin(repo: Repository, object_id: str) -> None:
    repo.pin("keep", object_id)


def _save(repo: Repository, object_id: str) -> None:
    commit_execution(repo, "f", {"copy": repo.get_value(object_id)})  # a put that finds it stored


@pytest.mark.parametrize("write", [_pin, _save], ids=["pin", "save"])
def test_a_write_referencing_the_value_while_it_is_erased_keeps_it(
    repo: Repository,
    mem: MemoryStore,
    monkeypatch: pytest.MonkeyPatch,
    write: Callable[[Repository, str], None],
) -> None:
    """The writer commits in another thread while the eraser looks for holders, after its read
    snapshot began: the re-check in the deleting transaction sees the writer's touch and keeps
    the object. (Had the eraser scanned under the write lock, the writer could not commit.)"""
    v = mem.set(NS, "k", {"value": "referenced during the erasure"})
    assert v.object_id is not None
    object_id = v.object_id
    holders = reachability.holders
    finished: list[bool] = []

    def holders_then_a_write(rt: Any, okey: bytes, **kw: Any) -> list[str]:
        found = holders(rt, okey, **kw)
        thread = threading.Thread(target=lambda: (write(repo, object_id), finished.append(True)))
        thread.start()
        thread.join(timeout=20)
        return found

    monkeypatch.setattr(reachability, "holders", holders_then_a_write)
    r = mem.redact(NS, "k", 1, reason="r")
    assert finished == [True]  # the writer committed while the eraser held no write lock
    assert (r.bytes_erased, r.kept_by) == (False, (gc_module.TOUCHED_DURING_ERASURE,))
    assert repo.get_value(object_id) == {"value": "referenced during the erasure"}
    monkeypatch.undo()
    assert repo.fsck().ok
    assert repo.gc(grace=0).objects_removed == 0  # now a root: the pin or the saved entry
    assert repo.has_object(object_id)


def test_gc_sweeps_a_kept_object_once_its_last_holder_goes(
    repo: Repository, mem: MemoryStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The queue is dropped once processed; what a redaction could not erase is ordinary garbage
    when nothing holds it any more."""
    v = mem.set(NS, "k", "pinned secret")
    assert v.object_id is not None
    repo.pin("hold", v.object_id)
    redact_and_die(monkeypatch, mem, "k")
    assert repo.gc(grace=0).erasures_kept == 1
    repo.unpin("hold")
    report = repo.gc(grace=0)
    assert (report.erasures, report.objects_removed) == (0, 1)
    assert not repo.has_object(v.object_id)


def test_an_erasure_queue_record_is_no_root(repo: Repository) -> None:
    key = bytes.fromhex(repo.put_value("queued").object_id)
    assert layout.erase_target(layout.erase_ref(key)) == key
    assert reachability.ref_roots(layout.erase_ref(key), key, 0) == []
    for name in (b"erase/" + b"zz" * 32, b"erase/" + b"ab " * 21 + b"a", b"erase/ab", b"pin/x"):
        assert layout.erase_target(name) is None
    assert reachability.ref_roots(b"erase/ab", key, 0) == [key]  # not a queue record: a ref as any


def test_concurrent_redactions_of_one_object_erase_it_once_and_settle_every_version(
    repo: Repository, mem: MemoryStore
) -> None:
    """Each version's redaction queues the shared object; whichever eraser sees no holder left
    erases it. A key queued after an eraser's snapshot stays queued for the next run: no version
    is left unsettled, and none is told it keeps itself."""
    v = mem.set(NS, "k", "one value, eight versions")
    for _ in range(7):
        mem.set(NS, "k", "one value, eight versions")
    assert v.object_id is not None
    errors: list[BaseException] = []

    def redact(version: int) -> None:
        try:
            mem.redact(NS, "k", version, reason="r")
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=redact, args=(n,)) for n in range(1, 9)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == []
    history = mem.history(NS, "k")
    assert all(h.bytes_erased is not None for h in history)
    assert sum(h.bytes_erased is True for h in history) >= 1
    for h in history:
        assert f"version {h.version}" not in " ".join(h.kept_by)
    assert not repo.has_object(v.object_id)
    assert queued(repo) == []
    assert repo.fsck().ok


def test_a_version_queued_after_the_erasers_snapshot_stays_queued_for_the_next_run(
    repo: Repository, mem: MemoryStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Version 2 is redacted (and dies) while version 1's eraser looks for holders: that eraser
    saw version 2 as a holder, so it settles version 1 only, and leaves version 2 in the queue."""
    v = mem.set(NS, "k", "shared by two versions")
    mem.set(NS, "k", "shared by two versions")
    assert v.object_id is not None
    holders = reachability.holders
    raced: list[bool] = []

    def holders_then_redact_version_2(rt: Any, okey: bytes, **kw: Any) -> list[str]:
        found = holders(rt, okey, **kw)
        if not raced:
            raced.append(True)
            thread = threading.Thread(target=redact_and_die, args=(monkeypatch, mem, "k", 2))
            thread.start()
            thread.join(timeout=20)
        return found

    monkeypatch.setattr(reachability, "holders", holders_then_redact_version_2)
    r1 = mem.redact(NS, "k", 1, reason="r")
    assert (r1.bytes_erased, r1.kept_by) == (False, ("memory namespace 'default' key 'k' version 2",))
    assert mem.history(NS, "k")[1].bytes_erased is None
    assert queued(repo) == [bytes.fromhex(v.object_id)]
    report = repo.gc()
    assert (report.erasures, report.erasures_kept, report.erased_objects) == (1, 0, 1)
    assert [h.bytes_erased for h in mem.history(NS, "k")] == [False, True]
    assert not repo.has_object(v.object_id)
