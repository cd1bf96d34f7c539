"""Repository.open_memory: a Repository on kv_memory.MemoryKV, area by area.

The LMDB backend is made unusable for these tests (``no_lmdb``): whatever works here went
through the kv.Store interface, which is what the store's modules are written against.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from store_helpers import commit_execution, make_entry

from kitaru_store import Repository, backend, layout, objects, repository
from kitaru_store.kv_memory import MemoryKV
from kitaru_store.memory_repository import MemoryRepository


@pytest.fixture(autouse=True)
def no_lmdb(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("an in-memory Repository used the LMDB backend")

    monkeypatch.setattr(backend, "open_backend", refuse)
    monkeypatch.setattr(repository, "open_backend", refuse)
    for name in ("read", "update", "scan", "batches", "key_batches"):
        monkeypatch.setattr(backend.Backend, name, refuse)


@pytest.fixture
def mem(tmp_path: Path) -> Repository:
    return Repository.open_memory(tmp_path / "mem")


def age_everything(repo: Repository) -> None:
    """Every touch time an hour back, so that gc's grace keeps nothing."""
    old = objects.pack_time(objects.now_ns() - 3600 * 10**9)
    keys = [k for k, _ in repo.kv.scan(layout.TOUCH)]
    repo.kv.update(lambda wt: [wt.put(layout.TOUCH, k, old) for k in keys])


def test_it_keeps_its_data_in_memory_and_only_lock_files_on_disk(tmp_path: Path) -> None:
    a = Repository.open_memory(tmp_path / "a")
    b = Repository.open_memory()
    assert isinstance(a.kv, MemoryKV) and a.kv is not b.kv
    oid = a.put_value("only in a").object_id
    assert a.has_object(oid) and not b.has_object(oid)
    commit_execution(a, "flow", {"x": 1})
    a.gc(grace=0)
    assert {p.name for p in (tmp_path / "a").iterdir()} == {layout.LOCK_DIR}
    default_root = b.root
    assert default_root.is_dir()
    del b
    assert not default_root.exists()  # its private directory goes with it


def test_saves_and_loads(mem: Repository) -> None:
    big = np.arange(600_000, dtype=np.float64)  # 4.8 MB: a chunked value
    with mem.writer() as w:
        exec_id = w.create_execution("train")
        w.add_entry(exec_id, make_entry(w.put_value({"lr": 0.1}), "params"))
        w.add_entry(exec_id, make_entry(w.put_value(big), "weights"))
    m = mem.get_execution(exec_id)
    assert [e.name for e in m.entries] == ["params", "weights"]
    assert mem.get_value(mem.resolve_name(exec_id, "params").object_id) == {"lr": 0.1}
    assert np.array_equal(mem.get_value(mem.resolve_name(exec_id, "weights").object_id), big)
    assert [s.exec_id for s in mem.list_executions(flow="train")] == [exec_id]
    mem.update_execution(exec_id, status="completed")
    assert mem.get_execution(exec_id).status == "completed"
    mem.pin("best", m.entries[0].object_id)
    assert mem.pins() == {"best": m.entries[0].object_id}
    mem.delete_execution(exec_id)
    assert mem.count_executions() == 0


def test_gc(mem: Repository) -> None:
    kept = commit_execution(mem, "flow", {"kept": "value"})
    garbage = mem.put_value("garbage").object_id
    chunked = mem.put_value(np.ones(400_000)).object_id  # an unreachable value and its chunks
    with mem.kv.read() as rt:
        stored = rt.count(layout.OBJECTS)
    age_everything(mem)
    dry = mem.gc(grace=0, dry_run=True)
    assert dry.objects_removed == stored - 1 and mem.has_object(garbage)
    report = mem.gc(grace=0, compact=True)
    assert report.objects_removed == stored - 1 and report.objects_live == 1
    assert not mem.has_object(garbage) and not mem.has_object(chunked)
    assert mem.get_value(mem.resolve_name(kept, "kept").object_id) == "value"
    assert report.file_size_before == report.file_size_after == 0 and not report.compacted
    assert report.compact_error == "an in-memory store has no file to compact"


def test_fsck(mem: Repository) -> None:
    exec_id = commit_execution(mem, "flow", {"a": "first", "b": "second"})
    assert mem.fsck().ok
    a = bytes.fromhex(mem.resolve_name(exec_id, "a").object_id)
    b = bytes.fromhex(mem.resolve_name(exec_id, "b").object_id)
    with mem.kv.read() as rt:
        record = bytearray(rt.get(layout.OBJECTS, b) or b"")
    record[-1] ^= 1

    def damage(wt):  # type: ignore[no-untyped-def]
        wt.delete(layout.OBJECTS, a)
        wt.put(layout.OBJECTS, b, bytes(record))

    mem.kv.update(damage)
    report = mem.fsck()
    assert sorted(p.kind for p in report.problems) == ["corrupt-object", "missing-object"]
    assert report.objects_total == 1 and report.manifests_checked == 1
    assert mem.fsck(sample=0.5, seed=1).problems  # the sampling walk too


def test_stats(mem: Repository) -> None:
    commit_execution(mem, "flow", {"a": "x" * 1000, "b": "x" * 1000})  # deduplicated
    commit_execution(mem, "flow", {"c": np.zeros(300_000)})  # chunked
    st = mem.stats()
    assert (st.executions, st.entries, st.chunked_values) == (2, 3, 1)
    with mem.kv.read() as rt:
        assert st.objects == rt.count(layout.OBJECTS)
    assert st.dedup_ratio > 1 and st.file_bytes == 0


def test_memory(mem: Repository) -> None:
    store = mem.memory
    scope = store.scope("namespace", "agent")
    store.set(scope, "plan", {"step": 1})
    store.set(scope, "plan", {"step": 2})
    store.set(scope, "notes", "secret")
    assert store.get(scope, "plan") == {"step": 2}
    assert store.get(scope, "plan", version=1) == {"step": 1}
    assert [v.version for v in store.history(scope, "plan")] == [1, 2]
    assert [i.key for i in store.list(scope)] == ["notes", "plan"]
    assert store.scopes() == [scope]
    secret = store.read(scope, "notes")[0].object_id
    assert secret is not None and mem.has_object(secret)
    redacted = store.redact(scope, "notes", 1, reason="leak")
    assert redacted.bytes_erased is True and not mem.has_object(secret)  # erased through gc's eraser
    store.delete(scope, "plan")
    assert [i.key for i in store.list(scope, include_deleted=True)] == ["notes", "plan"]
    assert mem.fsck().ok


def test_a_memory_repository_is_a_repository() -> None:
    assert issubclass(MemoryRepository, Repository)
    assert Repository.open_memory().location.source == "memory"
