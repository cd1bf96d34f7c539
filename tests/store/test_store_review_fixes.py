"""Regression tests for the store review fixes: one group per fix.

Multi-process cases run a fresh interpreter (``sys.executable -c``), never a fork of the test process.
"""

from __future__ import annotations

import datetime as dt
import errno
import json
import os
import random
import select
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest
from store_helpers import T0, commit_execution, delete_record, make_entry, output_entry, record

from kitaru_store import (
    CheckpointRecord,
    CorruptManifestError,
    KitaruError,
    NotAStoreError,
    ObjectNotFoundError,
    ReadOnlyStoreError,
    Repository,
    StoreError,
    StoreFormatError,
    StoreFullError,
    checksum,
    codec,
    config,
    locks,
    objects,
)
from kitaru_store import manifests as mf
from kitaru_store.backend import DATABASES, close_backend
from kitaru_store.gc import INFLIGHT_MAX_AGE, INFLIGHT_PREFIX, stale_inflight

ROOT = Path(__file__).resolve().parents[2]
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
SUBPROCESS_TIMEOUT = 60


def kinds(report) -> list[str]:
    return sorted(p.kind for p in report.problems)


def snapshot(repo: Repository) -> dict[bytes, dict[bytes, bytes]]:
    """Every record of every sub-database."""
    with repo.read() as rt:
        return {db: dict(rt.items(db)) for db in DATABASES}


def run_python(script: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", script, *args],
        capture_output=True,
        text=True,
        timeout=SUBPROCESS_TIMEOUT,
        cwd=ROOT,
    )


@pytest.fixture
def other_stores() -> Iterator[list[Path]]:
    """Extra store paths a test opens; their environments are closed afterwards."""
    paths: list[Path] = []
    yield paths
    for p in paths:
        close_backend(str(p / config.DB_DIR))


# --- 1. read-only open in a fresh process ---------------------------------------------------------

READONLY_SCRIPT = r"""
import json, sys
from kitaru_store import ReadOnlyStoreError, Repository

path, exec_id, oid = sys.argv[1:4]
repo = Repository.open(path, readonly=True)
out = {
    "value": repo.get_value(oid),
    "executions": [s.exec_id for s in repo.list_executions()],
    "by_flow": [s.exec_id for s in repo.list_executions(flow="ro-flow")],
    "count": repo.count_executions(),
}
entry = repo.resolve_name(exec_id, "greeting")
out["resolved"] = entry.object_id
out["resolved_value"] = repo.get_value(entry.object_id)
out["pins"] = repo.pins()
for what, attempt in [
    ("put_value", lambda: repo.put_value("not allowed")),
    ("create_execution", lambda: repo.create_execution("nope")),
    ("pin", lambda: repo.pin("nope", oid)),
]:
    try:
        attempt()
    except ReadOnlyStoreError as exc:
        out[what] = type(exc).__name__
    else:
        out[what] = "succeeded"
out["after"] = repo.get_value(oid)  # reads still work after the refused writes
out["fsck_ok"] = repo.fsck().ok
print(json.dumps(out))
"""


def test_readonly_open_in_a_fresh_process_reads_and_refuses_writes(
    repo: Repository, store_path: Path
) -> None:
    exec_id = commit_execution(repo, "ro-flow", {"greeting": "hello", "n": 42})
    other = commit_execution(repo, "other-flow", {"x": [1, 2, 3]})
    oid = repo.put_value({"standalone": True}).object_id
    repo.pin("keep", oid)
    before = snapshot(repo)

    proc = run_python(READONLY_SCRIPT, str(store_path), exec_id, oid)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["value"] == {"standalone": True}
    assert sorted(out["executions"]) == sorted([exec_id, other])
    assert out["by_flow"] == [exec_id]
    assert out["count"] == 2
    assert out["resolved"] == repo.resolve_name(exec_id, "greeting").object_id
    assert out["resolved_value"] == "hello"
    assert out["pins"] == {"keep": oid}
    assert out["put_value"] == out["create_execution"] == out["pin"] == "ReadOnlyStoreError"
    assert out["after"] == {"standalone": True}
    assert out["fsck_ok"] is True
    assert snapshot(repo) == before


# --- 2. read-only processes hold the shared store lock --------------------------------------------

HOLD_SCRIPT = r"""
import sys
from kitaru_store import Repository

repo = Repository.open(sys.argv[1], readonly=True)
assert repo.get_value(sys.argv[2]) == "kept"
print("ready", flush=True)
sys.stdin.read()  # until the test closes our stdin
print(repr(repo.get_value(sys.argv[2])), flush=True)
"""


def test_readonly_process_blocks_compaction(repo: Repository, store_path: Path) -> None:
    exec_id = commit_execution(repo, "flow", {"a": "kept", "b": list(range(100))})
    oid = repo.resolve_name(exec_id, "a").object_id
    garbage = repo.put_bytes(os.urandom(4096))

    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD_SCRIPT, str(store_path), oid],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    try:
        assert proc.stdout is not None and proc.stdin is not None
        readable, _, _ = select.select([proc.stdout], [], [], SUBPROCESS_TIMEOUT)
        assert readable, "the read-only process never became ready"
        line = proc.stdout.readline().strip()
        assert line == "ready", (line, proc.stderr.read() if proc.poll() is not None else "")

        report = repo.gc(grace=0, compact=True)
        assert report.compacted is False
        assert report.compact_error is not None and "lock" in report.compact_error
        assert report.objects_removed == 1  # the sweep itself still ran
        assert not repo.has_object(garbage)
        assert repo.get_value(oid) == "kept"
        assert repo.get_value(repo.resolve_name(exec_id, "b").object_id) == list(range(100))
        assert repo.fsck().ok

        out, err = proc.communicate(input="", timeout=SUBPROCESS_TIMEOUT)  # closes its stdin
    finally:
        if proc.poll() is None:  # pragma: no cover - only on a failure above
            proc.kill()
            proc.wait(10)
    assert proc.returncode == 0, err
    assert out.strip() == "'kept'"  # the reader's mapping survived the refused compaction

    # With the reader gone, the same gc compacts.
    after = repo.gc(grace=0, compact=True)
    assert after.compacted is True and after.compact_error is None
    assert repo.get_value(oid) == "kept"


@pytest.mark.parametrize("code", [errno.EROFS, errno.EACCES], ids=["read-only-fs", "no-permission"])
def test_readonly_open_when_the_lock_file_cannot_be_opened(
    repo: Repository, store_path: Path, monkeypatch: pytest.MonkeyPatch, code: int
) -> None:
    """A store on a read-only filesystem (EROFS, not a PermissionError) still opens read-only."""
    oid = repo.put_value("on a read-only filesystem").object_id
    close_backend(str(store_path / config.DB_DIR))
    real_open = os.open

    def refuse_lock(path, flags, *args):
        if os.fspath(path).endswith("store.lock"):
            raise OSError(code, os.strerror(code), path)
        return real_open(path, flags, *args)

    monkeypatch.setattr(locks.os, "open", refuse_lock)
    ro = Repository.open(store_path, readonly=True)
    assert ro.get_value(oid) == "on a read-only filesystem"
    with pytest.raises(ReadOnlyStoreError):
        ro.put_value("refused")
    # A writable open never goes ahead without the store lock.
    with pytest.raises((OSError, KitaruError)):
        Repository.open(store_path)


# --- 3. gc drops stale in-flight refs -------------------------------------------------------------


def inflight_name(start_ns: int) -> bytes:
    return INFLIGHT_PREFIX + b"%016x/" % start_ns + uuid.uuid4().hex.encode()


def refs(repo: Repository) -> dict[bytes, bytes]:
    with repo.read() as rt:
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
    assert not stale_inflight(INFLIGHT_PREFIX + b"not-a-time-stamp/x", objects.now_ns())
    assert not stale_inflight(b"pin/inflight/0000000000000000/x", objects.now_ns())


# --- 4. fsck sampling -----------------------------------------------------------------------------


def test_fsck_sample_fraction_and_count(repo: Repository) -> None:
    for i in range(20):
        repo.put_bytes(b"object %d" % i)
    full = repo.fsck(sample=1.0)
    assert full.objects_total == 20
    assert full.objects_checked == full.objects_total
    assert repo.fsck().objects_checked == 20
    assert repo.fsck(sample=0.5, seed=1).objects_checked == 10
    assert repo.fsck(sample=3, seed=1).objects_checked == 3
    assert repo.fsck(sample=1, seed=1).objects_checked == 1  # an int is a count, even 1
    assert repo.fsck(sample=500).objects_checked == 20


# --- 5. add_entry then replace_entry in one writer ------------------------------------------------


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
    with repo.read() as rt:
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


# --- 6. update_execution refuses entries and checkpoints ------------------------------------------


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


# --- 7. exact time keys ---------------------------------------------------------------------------


def exact_ns(d: dt.datetime) -> int:
    if d.tzinfo is None:
        d = d.replace(tzinfo=dt.UTC)
    return ((d - EPOCH) // dt.timedelta(microseconds=1)) * 1000


def tk(d: dt.datetime) -> int:
    key = mf.time_key(d)
    assert len(key) == 8
    return int.from_bytes(key, "big")


def test_time_key_is_exact_integer_nanoseconds() -> None:
    rng = random.Random(20240101)
    float_was_off = 0
    samples = [
        dt.datetime(2024, 1, 1, 0, 0, 0, 1, tzinfo=dt.UTC),
        dt.datetime(2038, 1, 19, 3, 14, 7, 999999, tzinfo=dt.UTC),
        dt.datetime(2554, 7, 21, 23, 34, 33, 709551, tzinfo=dt.UTC),  # the last microsecond that fits
        EPOCH,
        EPOCH + dt.timedelta(microseconds=1),
    ]
    for _ in range(5000):
        micros = rng.randrange(0, (2**64 - 1) // 1000)
        tz = dt.timezone(dt.timedelta(minutes=rng.randrange(-14 * 60, 14 * 60 + 1)))
        samples.append((EPOCH + dt.timedelta(microseconds=micros)).astimezone(tz))
    for d in samples:
        expected = exact_ns(d)
        assert tk(d) == expected, d
        if int(d.timestamp() * 1e9) != expected:
            float_was_off += 1
    assert float_was_off > 100  # the sample really covers times that float arithmetic gets wrong
    assert tk(EPOCH + dt.timedelta(microseconds=1)) == 1000
    # Key order is time order.
    ordered = sorted(samples)
    assert [mf.time_key(d) for d in ordered] == sorted(mf.time_key(d) for d in ordered)


def test_time_key_naive_is_utc_and_pre_epoch_clamps_to_zero() -> None:
    naive = dt.datetime(2024, 5, 6, 7, 8, 9, 123456)
    assert mf.time_key(naive) == mf.time_key(naive.replace(tzinfo=dt.UTC))
    assert tk(naive) == exact_ns(naive.replace(tzinfo=dt.UTC))
    plus_two = dt.timezone(dt.timedelta(hours=2))
    assert tk(naive.replace(tzinfo=plus_two)) == tk(naive) - 2 * 3600 * 10**9
    for before in [
        dt.datetime(1969, 12, 31, 23, 59, 59, 999999, tzinfo=dt.UTC),
        dt.datetime(1900, 1, 1, tzinfo=dt.UTC),
        dt.datetime(1969, 12, 31, 12, 0),  # naive
        dt.datetime.min.replace(tzinfo=dt.UTC),
    ]:
        assert mf.time_key(before) == bytes(8)


def test_time_key_naive_is_utc_whatever_the_local_zone() -> None:
    naive = dt.datetime(2024, 5, 6, 7, 8, 9, 123456)
    expected = exact_ns(naive.replace(tzinfo=dt.UTC))
    saved = os.environ.get("TZ")
    os.environ["TZ"] = "KIT-07"  # local time is UTC+7: a local reading of naive times is off by 7 h
    time.tzset()
    try:
        assert naive.astimezone(dt.UTC).hour != naive.hour  # the zone really is in effect
        assert tk(naive) == expected
    finally:
        if saved is None:
            del os.environ["TZ"]
        else:
            os.environ["TZ"] = saved
        time.tzset()


def test_executions_list_in_exact_start_order(repo: Repository) -> None:
    base = dt.datetime(2024, 1, 1, 0, 0, 0, 1, tzinfo=dt.UTC)
    starts = [base + dt.timedelta(microseconds=i) for i in (3, 0, 2, 1)]
    by_start = {commit_execution(repo, "flow", {}, started_at=s): s for s in starts}
    listed = [s.exec_id for s in repo.list_executions()]
    assert [by_start[e] for e in listed] == sorted(starts, reverse=True)


# --- 8. newer chunk index version -----------------------------------------------------------------


def test_newer_chunk_index_version_is_a_format_error(repo: Repository) -> None:
    data = random.Random(8).randbytes(objects.CHUNK_THRESHOLD + (512 << 10))
    oid = repo.put_bytes(data)
    repo.pin("big", oid)
    key = bytes.fromhex(oid)
    kind, payload = codec.decode(record(repo, oid))
    assert kind == codec.KIND_INDEX
    index = msgspec.msgpack.decode(bytes(payload), type=objects.ChunkIndex)
    assert index.version == objects.INDEX_VERSION and len(index.chunks) > 1
    newer = objects.ChunkIndex(objects.INDEX_VERSION + 1, index.size, index.chunks)
    rewritten = codec.encode(msgspec.msgpack.encode(newer), kind=codec.KIND_INDEX)
    repo._backend().update(lambda wt: wt.put(b"objects", key, rewritten))

    with pytest.raises(StoreFormatError) as excinfo:
        repo.get_bytes(oid)
    assert excinfo.value.object_id == oid
    assert str(objects.INDEX_VERSION + 1) in excinfo.value.message
    with pytest.raises(StoreFormatError):
        repo.object_info(oid)
    # A live value whose chunk list gc cannot read: gc refuses rather than sweep its chunks.
    with pytest.raises(StoreFormatError):
        repo.gc(grace=0)
    assert all(repo.has_object(c.hex()) for c, _ in index.chunks)


# --- 9. newer record format version is never overwritten; damage is repaired ----------------------


def set_record(repo: Repository, object_id: str, raw: bytes) -> None:
    key = bytes.fromhex(object_id)
    repo._backend().update(lambda wt: wt.put(b"objects", key, raw))


@pytest.mark.parametrize("size", [100, objects.CHUNK_THRESHOLD + (256 << 10)], ids=["small", "chunked"])
def test_put_refuses_to_overwrite_a_newer_record_format(repo: Repository, size: int) -> None:
    data = random.Random(size).randbytes(size)
    oid = repo.put_bytes(data)
    newer = bytes((codec.RECORD_VERSION + 1,)) + record(repo, oid)[1:]
    set_record(repo, oid, newer)
    before = snapshot(repo)

    with pytest.raises(StoreFormatError):
        repo.put_bytes(data)
    with pytest.raises(StoreFormatError), repo.writer() as w:
        w.put_bytes(bytearray(data))
    assert record(repo, oid) == newer
    assert snapshot(repo) == before
    with pytest.raises(StoreFormatError):
        repo.get_bytes(oid)


@pytest.mark.parametrize(
    "damage",
    [
        lambda raw: bytes((codec.RECORD_VERSION, codec.KIND_DATA, codec.CODEC_ZSTD)) + b"\x00garbage" * 8,
        lambda raw: raw[:-1] + bytes((raw[-1] ^ 1,)),
        lambda raw: bytes((codec.RECORD_VERSION, 9, codec.CODEC_RAW)) + raw[3:],
        lambda raw: raw[:2],
        lambda raw: bytes((codec.RECORD_VERSION, codec.KIND_INDEX, codec.CODEC_RAW)) + raw[3:],
    ],
    ids=["garbage-zstd", "flipped-bit", "unknown-kind", "truncated", "wrong-kind"],
)
def test_put_repairs_a_damaged_record(repo: Repository, damage) -> None:
    data = b"repair me " * 50
    oid = repo.put_bytes(data)
    set_record(repo, oid, damage(record(repo, oid)))
    assert not repo.fsck().ok
    assert repo.put_bytes(data) == oid
    assert repo.get_bytes(oid) == data
    assert codec.decode(record(repo, oid))[0] == codec.KIND_DATA
    assert repo.fsck().ok


# --- 10. a config temp file does not make a directory "not a store" -------------------------------


def test_directory_with_only_a_config_temp_file_becomes_a_store(tmp_path: Path, other_stores) -> None:
    root = tmp_path / "being-created"
    root.mkdir()
    tmp = root / f".{config.CONFIG_FILE}.{os.getpid() + 1}.{uuid.uuid4().hex[:8]}"
    tmp.write_text('{"kind": "kitaru-st')  # another process, half-way through writing its config
    assert config.read_config(root) is None
    other_stores.append(root)
    repo = Repository.open(root)
    assert repo.config["kind"] == "kitaru-store"
    oid = repo.put_value("works").object_id
    assert repo.get_value(oid) == "works"
    assert Repository.open(root).config == repo.config

    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "configuration.txt").write_text("not ours")
    with pytest.raises(NotAStoreError):
        Repository.open(foreign)


# --- 11. fsck finds dangling indexes and references -----------------------------------------------


def test_fsck_finds_artifact_index_key_without_entry(repo: Repository) -> None:
    exec_id = commit_execution(repo, "flow", {"a": 1})
    stray = os.urandom(16)
    repo._backend().update(lambda wt: wt.put(b"artifacts", stray, bytes.fromhex(exec_id)))
    report = repo.fsck()
    assert kinds(report) == ["index-mismatch"]
    assert stray.hex() in report.problems[0].detail


def test_fsck_finds_pin_to_deleted_object(repo: Repository) -> None:
    oid = repo.put_value("pinned").object_id
    repo.pin("keep", oid)
    delete_record(repo, oid)
    report = repo.fsck()
    assert kinds(report) == ["missing-object"]
    assert report.problems[0].object_id == oid
    assert "pin/keep" in report.problems[0].detail


@pytest.mark.parametrize("what", ["checkpoint", "result", "input"])
def test_fsck_finds_checkpoint_output_or_result_deleted(repo: Repository, what: str) -> None:
    with repo.writer() as w:
        exec_id = w.create_execution("flow")
        oid = w.put_value(f"{what} value").object_id
        if what == "checkpoint":
            w.set_checkpoint(
                exec_id,
                CheckpointRecord(
                    invocation_id="step", name="step", status="completed", started_at=T0, output_object_id=oid
                ),
            )
        else:
            w.update_execution(exec_id, **{f"{what}_object_id": oid})
    assert repo.fsck().ok
    delete_record(repo, oid)
    report = repo.fsck()
    assert kinds(report) == ["missing-object"]
    (problem,) = report.problems
    assert (problem.object_id, problem.exec_id) == (oid, exec_id)


def test_fsck_finds_flow_index_naming_a_missing_execution(repo: Repository) -> None:
    commit_execution(repo, "flow", {"a": 1}, started_at=T0)
    ghost = os.urandom(16)
    fkey = b"flow\x00" + mf.time_key(T0) + ghost
    repo._backend().update(lambda wt: wt.put(b"exec_flow", fkey, b""))
    report = repo.fsck()
    assert kinds(report) == ["index-mismatch"]
    assert report.problems[0].exec_id == ghost.hex()


# --- 12. put_bytes copies a caller's mutable buffer -----------------------------------------------


@pytest.mark.parametrize("stored_before", [False, True], ids=["new", "swept-dedup-hit"])
@pytest.mark.parametrize("size", [1000, objects.CHUNK_THRESHOLD + (300 << 10)], ids=["small", "chunked"])
@pytest.mark.parametrize(
    "wrap", [bytearray, lambda b: memoryview(bytearray(b))], ids=["bytearray", "memoryview"]
)
def test_put_bytes_of_a_mutable_buffer_stores_the_original(
    repo: Repository, size: int, wrap, stored_before: bool
) -> None:
    original = random.Random(size).randbytes(size)
    if stored_before:
        repo.put_bytes(original)  # staging finds it stored: nothing is encoded until the commit
    buf = wrap(original)
    with repo.writer() as w:
        oid = w.put_bytes(buf)
        buf[:] = b"\xff" * size  # the caller reuses its buffer before the commit
        if stored_before:
            # The stored copy is swept before the commit, which must then write the value itself.
            assert repo.gc(grace=0).objects_removed >= 1
            assert not repo.has_object(oid)
    assert oid == objects.hashing.hexdigest(original)
    assert repo.get_bytes(oid) == original
    assert repo.fsck().ok


# --- 13. a bad KITARU_MAP_LIMIT is a StoreError ---------------------------------------------------


def test_bad_map_limit_is_a_store_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, other_stores
) -> None:
    root = tmp_path / "tiny"
    monkeypatch.setenv("KITARU_MAP_SIZE", "1048576")
    monkeypatch.setenv("KITARU_MAP_LIMIT", "a lot")
    other_stores.append(root)
    repo = Repository.open(root)
    small = repo.put_value("fits").object_id
    too_big = random.Random(13).randbytes(2 << 20)
    with pytest.raises(StoreError) as excinfo:
        repo.put_bytes(too_big)
    assert not isinstance(excinfo.value, ValueError)
    assert "KITARU_MAP_LIMIT" in excinfo.value.message
    assert repo.get_value(small) == "fits"
    assert repo.stats().objects == 1

    monkeypatch.setenv("KITARU_MAP_LIMIT", "1048576")  # a number, but reached already
    with pytest.raises(StoreFullError):
        repo.put_bytes(too_big)
    assert repo.get_value(small) == "fits"


# --- 14. format_version on disk; undecodable manifests --------------------------------------------


def raw_manifest(repo: Repository, exec_id: str) -> bytes:
    with repo.read() as rt:
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
    newer = checksum.seal(msgspec.msgpack.encode(fields))
    repo._backend().update(lambda wt: wt.put(b"manifests", bytes.fromhex(exec_id), newer))
    assert repo.get_execution(exec_id).entries[0].name == "a"
    # A checksum pair that no longer ends the manifest (a field added after it, unsealed): damage,
    # not a manifest written before checksums.
    stale = msgspec.msgpack.encode({**fields, "checksum": newer[-32:], "added_after_it": 1})
    repo._backend().update(lambda wt: wt.put(b"manifests", bytes.fromhex(exec_id), stale))
    with pytest.raises(CorruptManifestError):
        repo.get_execution(exec_id)


# --- 15. errors carry ids -------------------------------------------------------------------------


def test_concerning_fills_only_missing_fields() -> None:
    err = KitaruError("boom", exec_id="e1")
    assert err.concerning(exec_id="e2", name="n1") is err
    assert (err.exec_id, err.name) == ("e1", "n1")
    err.concerning(exec_id="e3", name="n2")
    assert (err.exec_id, err.name) == ("e1", "n1")

    blank = KitaruError("blank")
    blank.concerning()
    assert (blank.exec_id, blank.name) == (None, None)
    blank.concerning(name="only-name")
    assert (blank.exec_id, blank.name) == (None, "only-name")
    blank.concerning(exec_id="e4")
    assert (blank.exec_id, blank.name) == ("e4", "only-name")
    assert blank.to_dict()["exec_id"] == "e4" and blank.to_dict()["name"] == "only-name"

    oid = "ab" * 32
    missing = ObjectNotFoundError(oid).concerning(exec_id="e5", name="x")
    assert (missing.exec_id, missing.name, missing.object_id) == ("e5", "x", oid)
    assert missing.message == ObjectNotFoundError(oid).message  # the message is not rewritten


def test_store_errors_carry_the_ids_they_concern(repo: Repository) -> None:
    exec_id = commit_execution(repo, "flow", {"a": 1})
    with pytest.raises(KitaruError) as excinfo:
        repo.resolve_name(exec_id, "nope")
    assert (excinfo.value.exec_id, excinfo.value.name) == (exec_id, "nope")
    oid = "cd" * 32
    with pytest.raises(ObjectNotFoundError) as excinfo2:
        repo.get_bytes(oid)
    assert excinfo2.value.object_id == oid
