"""Shared helpers for the kitaru_store tests, and the worker functions of the multi-process tests.

Workers live here (not in a test module) so that spawned children import only this light module.
"""

from __future__ import annotations

import datetime as dt
import os
import random
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from kitaru_store import Entry, Repository
from kitaru_store.manifests import ENTRY_KINDS
from kitaru_store.repository import StoredValue

# The repository root: the working directory of the fresh interpreters some tests start.
ROOT = Path(__file__).resolve().parents[2]
SUBPROCESS_TIMEOUT = 60

# The kind of an entry saved by name (kitaru.save()); the SDK calls it "manual".
SAVED_KIND = next(k for k in ENTRY_KINDS if k not in ("checkpoint_output", "llm_record", "wait_input"))

T0 = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)


def fresh_python(code: str) -> list[str]:
    """The words ``code`` prints in a fresh interpreter (for what an import loads)."""
    probe = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=SUBPROCESS_TIMEOUT, cwd=ROOT
    )
    assert probe.returncode == 0, probe.stderr
    return probe.stdout.split()


def make_entry(
    sv: StoredValue,
    name: str,
    *,
    kind: str = SAVED_KIND,
    checkpoint: str | None = None,
    invocation_id: str | None = None,
    artifact_type: str = "blob",
    **extra: Any,
) -> Entry:
    return Entry(
        artifact_id=uuid.uuid4().hex,
        name=name,
        kind=kind,  # type: ignore[arg-type]
        artifact_type=artifact_type,  # type: ignore[arg-type]
        object_id=sv.object_id,
        size=sv.size,
        serializer=sv.serializer,
        created_at=dt.datetime.now(dt.UTC),
        checkpoint=checkpoint,
        invocation_id=invocation_id,
        **extra,
    )


def output_entry(sv: StoredValue, checkpoint: str, invocation_id: str) -> Entry:
    return make_entry(
        sv,
        checkpoint,
        kind="checkpoint_output",
        checkpoint=checkpoint,
        invocation_id=invocation_id,
        artifact_type="output",
    )


def commit_execution(
    repo: Repository, flow: str, values: dict[str, Any], *, started_at: dt.datetime | None = None
) -> str:
    """One execution with one saved entry per ``values`` item, in one writer transaction."""
    with repo.writer() as w:
        exec_id = w.create_execution(flow, started_at=started_at)
        for name, value in values.items():
            w.add_entry(exec_id, make_entry(w.put_value(value), name))
    return exec_id


def snapshot(repo: Repository) -> dict[bytes, dict[bytes, bytes]]:
    """Every key and value of every sub-database."""
    from kitaru_store.layout import DATABASES

    with repo.kv.read() as rt:
        return {db: dict(rt.items(db)) for db in DATABASES}


def record(repo: Repository, object_id: str) -> bytes:
    """The stored record of an object, as bytes."""
    with repo.kv.read() as rt:
        raw = rt.get(b"objects", bytes.fromhex(object_id))
    assert raw is not None, object_id
    return raw


def tamper(repo: Repository, object_id: str, *, at: int = -1) -> None:
    """Flip one bit of an object's stored record, behind the store's back."""
    raw = bytearray(record(repo, object_id))
    raw[at] ^= 0x01
    key = bytes.fromhex(object_id)
    repo._backend().update(lambda wt: wt.put(b"objects", key, bytes(raw)))


def delete_record(repo: Repository, object_id: str) -> None:
    key = bytes.fromhex(object_id)
    repo._backend().update(lambda wt: wt.delete(b"objects", key))


def all_records(repo: Repository) -> dict[bytes, bytes]:
    with repo.kv.read() as rt:
        return dict(rt.items(b"objects"))


# --- multi-process workers (spawned) ----------------------------------------------------------


def hold_store_open(path: str, ready: Any, stop: Any) -> None:
    """Open the store writable (shared store lock), say so, and keep it open until told to stop."""
    repo = Repository.open(path)
    repo.put_value("held open")
    ready.set()
    stop.wait(30)


def gc_loop(path: str, grace: float, stop: Any, results: Any) -> None:
    repo = Repository.open(path)
    runs = removed = 0
    deadline = time.monotonic() + 30
    while not stop.is_set() and time.monotonic() < deadline:
        report = repo.gc(grace=grace)
        runs += 1
        removed += report.objects_removed
        time.sleep(0.02)
    results.put(("gc", runs, removed))


def writer_loop(path: str, wid: int, seconds: float, results: Any) -> None:
    """Commit executions whose entries are written in the same Writer, while gc sweeps.

    Each round also stores an unreferenced "orphan" value. Even orphans come back as entry values
    a dozen rounds later, when they are older than gc's grace period and may be mid-sweep;
    odd orphans are never referenced, so gc has real garbage to remove.
    """
    repo = Repository.open(path)
    rng = random.Random(wid)
    committed = 0
    deadline = time.monotonic() + seconds
    i = 0
    while time.monotonic() < deadline:
        repo.put_value(f"orphan-{wid}-{i}")
        with repo.writer() as w:
            exec_id = w.create_execution(f"flow-{wid}")
            expected: list[Any] = [
                {"writer": wid, "round": i, "payload": "x" * rng.randrange(10, 3000)},
                f"shared-{i % 5}",  # deduplicated across rounds and writers
                os.urandom(64).hex(),
            ]
            if i >= 12 and i % 2 == 0:
                expected.append(f"orphan-{wid}-{i - 12}")
            for n, value in enumerate(expected):
                sv = w.put_value(value)
                w.add_entry(exec_id, make_entry(sv, f"v{n}", metadata={"expect": value}))
            w.update_execution(exec_id, status="completed")
        committed += 1
        i += 1
        time.sleep(rng.uniform(0.0, 0.04))
    results.put(("writer", wid, committed))
