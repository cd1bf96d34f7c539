"""gc and fsck while others write: a value kept during a sweep is never broken, and fsck reports
no problem on a healthy store that is being written, yet still finds real damage."""

from __future__ import annotations

import datetime as dt
import os
import random
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from kitaru_store import Entry, ObjectNotFoundError, Repository
from kitaru_store.ids import new_uuid

pytestmark = pytest.mark.slow

MiB = 1 << 20

# A gc in its own process, sweeping one record per transaction (the widest window between
# batches) with grace 0, until the stop file exists.
GC_LOOP = """
import os, sys
from kitaru_store import Repository, gc
gc.DELETE_BATCH = 1
repo = Repository.open(sys.argv[1])
runs = 0
while not os.path.exists(sys.argv[2]):
    repo.gc(grace=0)
    runs += 1
print(runs)
"""


def _entry(name: str, object_id: str, size: int) -> Entry:
    return Entry(
        artifact_id=new_uuid(),
        name=name,
        kind="manual",
        artifact_type="output",
        object_id=object_id,
        size=size,
        serializer="bytes",
        created_at=dt.datetime.now(dt.UTC),
    )


def test_pin_or_reference_racing_gc_never_breaks_a_value(store_path: Path, tmp_path: Path) -> None:
    """Rounds of: store an unreferenced chunked value, wait a random moment while a gc process
    sweeps, then pin it or commit an entry naming it. A keep may be refused (the value was being
    collected: a typed ObjectNotFoundError); one that succeeds must leave the value whole."""
    repo = Repository.open(store_path)
    stop = tmp_path / "stop"
    gc_proc = subprocess.Popen(
        [sys.executable, "-c", GC_LOOP, str(store_path), str(stop)], stdout=subprocess.PIPE, text=True
    )
    rng = random.Random(12)
    kept: dict[str, bytes] = {}
    refused = 0
    try:
        deadline = time.monotonic() + 6
        for n in range(60):
            if time.monotonic() > deadline:
                break
            data = rng.randbytes(rng.randrange(MiB + MiB // 8, 2 * MiB))
            oid = repo.put_bytes(data)
            time.sleep(rng.uniform(0, 0.004))
            try:
                if n % 2:
                    repo.pin(f"p{n}", oid)
                else:
                    with repo.writer() as w:
                        exec_id = w.create_execution("keeper")
                        w.add_entry(exec_id, _entry(f"v{n}", oid, len(data)))
                kept[oid] = data
            except ObjectNotFoundError:
                refused += 1
    finally:
        stop.touch()
        out, _ = gc_proc.communicate(timeout=60)
    assert int(out.strip() or 0) >= 1, "gc never ran"
    assert kept or refused
    for oid, data in kept.items():
        assert repo.get_bytes(oid) == data
    repo.gc(grace=0)
    for oid, data in kept.items():
        assert repo.get_bytes(oid) == data
    report = repo.fsck()
    assert report.ok, report.problems[:5]


def _writer(repo: Repository, stop: threading.Event, errors: list[BaseException], seed: int) -> None:
    """Commit flows with small and chunked saves, a checkpoint and a result; delete some."""
    rng = random.Random(seed)
    mine: list[str] = []
    try:
        while not stop.is_set():
            with repo.writer() as w:
                exec_id = w.create_execution(f"flow-{seed}")
                for i in range(rng.randrange(1, 6)):
                    value = os.urandom(rng.choice([40, 3000, MiB + 200_000]))
                    sv = w.put_value(value)
                    w.add_entry(exec_id, _entry(f"v{i}", sv.object_id, sv.size))
                w.update_execution(exec_id, status="completed", result_object_id=sv.object_id)
            mine.append(exec_id)
            if len(mine) > 4 and rng.random() < 0.4:
                repo.delete_execution(mine.pop(rng.randrange(len(mine))))
            repo.put_value(f"garbage {rng.random()}")
    except BaseException as exc:  # reported by the test
        errors.append(exc)


def _gc(repo: Repository, stop: threading.Event, errors: list[BaseException]) -> None:
    try:
        while not stop.is_set():
            repo.gc(grace=0)
            time.sleep(0.01)
    except BaseException as exc:
        errors.append(exc)


def test_fsck_reports_nothing_on_a_healthy_store_being_written_and_still_finds_damage(
    repo: Repository,
) -> None:
    """fsck, again and again, while two threads commit flows (chunked values included) and
    delete executions and a third runs gc: never a problem. Then an object is damaged behind the
    store's back while they go on: fsck reports exactly that object."""
    victim_value = os.urandom(5000)
    with repo.writer() as w:
        victim_exec = w.create_execution("victim")
        sv = w.put_value(victim_value)
        w.add_entry(victim_exec, _entry("victim", sv.object_id, sv.size))
    victim = sv.object_id
    stop = threading.Event()
    errors: list[BaseException] = []
    threads = [threading.Thread(target=_writer, args=(repo, stop, errors, seed)) for seed in (1, 2)]
    threads.append(threading.Thread(target=_gc, args=(repo, stop, errors)))
    for t in threads:
        t.start()
    runs = 0
    try:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline or runs < 3:
            report = repo.fsck()
            assert report.problems == [], report.problems[:5]
            runs += 1
        key = bytes.fromhex(victim)

        def damage(wt) -> None:  # type: ignore[no-untyped-def]
            raw = bytearray(wt.get(b"objects", key))
            raw[-1] ^= 1
            wt.put(b"objects", key, bytes(raw))

        repo._backend().update(damage)
        report = repo.fsck()
    finally:
        stop.set()
        for t in threads:
            t.join(60)
    assert not errors, errors
    assert [(p.kind, p.object_id) for p in report.problems] == [("corrupt-object", victim)]
    assert repo.count_executions() > 3  # the writers really wrote
