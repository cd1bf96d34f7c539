"""Garbage collection: mark what manifests and refs reach, sweep the rest, optionally compact.

Rules (docs/design.md, "Garbage collection"):

* one gc at a time (an flock that dies with its process, so never a stale lock);
* the root set is read in short read transactions: every manifest's entries, checkpoint outputs
  and results, and every ref (pins, in-flight objects of running writers, memory versions);
* chunked values keep their chunks alive;
* an object touched (put, deduplicated or referenced) within the grace period is never swept,
  which protects what a concurrent writer is about to reference;
* each delete re-checks the touch time inside the write transaction that deletes.
"""

from __future__ import annotations

import datetime as dt
import itertools
import os
import time
from collections.abc import Callable, Collection
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

from . import codec, config, ids, memory, objects
from . import manifests as mf
from .backend import WriteTxn
from .compaction import compact_store, discard_leftover_copy
from .errors import ReadOnlyStoreError, StoreLockedError
from .locks import FileLock

if TYPE_CHECKING:
    from .repository import Repository

DEFAULT_GRACE = dt.timedelta(hours=1)
# A writer that flushed objects early names them in an in-flight ref until it commits. One that
# died leaves the ref behind; after this long it is taken for dead and its objects are garbage.
INFLIGHT_MAX_AGE = dt.timedelta(days=7)
INFLIGHT_PREFIX = b"inflight/"
DELETE_BATCH = 1000
SCAN_BATCH = 4096  # records per read transaction in the candidate scan
Progress = Callable[[str, int, int], None]


@dataclass
class GCReport:
    dry_run: bool
    grace_seconds: float
    objects_total: int = 0
    objects_live: int = 0
    objects_removed: int = 0
    bytes_removed: int = 0
    objects_in_grace: int = 0
    file_size_before: int = 0
    file_size_after: int = 0
    stale_refs_removed: int = 0
    compacted: bool = False
    compact_error: str | None = None
    seconds: float = 0.0

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def data_file(repo: Repository) -> str:
    return str(repo.root / config.DB_DIR / "data.mdb")


def _file_size(repo: Repository) -> int:
    try:
        return os.path.getsize(data_file(repo))
    except OSError:
        return 0


def stale_inflight(ref_name: bytes, before_ns: int) -> bool:
    """Whether a ref is the in-flight list of a writer that flushed before ``before_ns``."""
    if not ref_name.startswith(INFLIGHT_PREFIX):
        return False
    stamp = ref_name[len(INFLIGHT_PREFIX) : len(INFLIGHT_PREFIX) + 16]
    try:
        return int(stamp, 16) < before_ns
    except ValueError:
        return False  # not ours to judge: keep it


def _drop_stale_inflight(repo: Repository) -> int:
    before = objects.now_ns() - int(INFLIGHT_MAX_AGE.total_seconds() * 1e9)
    names = [n for n, _ in repo._backend().scan(b"refs", INFLIGHT_PREFIX, INFLIGHT_PREFIX[:-1] + b"0")]
    stale = [n for n in names if stale_inflight(n, before)]

    def txn(wt: WriteTxn) -> int:
        return sum(wt.delete(b"refs", n) for n in stale)

    return repo._backend().update(txn) if stale else 0


def mark(repo: Repository, progress: Progress | None = None) -> set[bytes]:
    """Every object key a manifest or a ref names (the roots).

    The chunks of the chunked values among them are added by ``_candidates``, which reads every
    record's header anyway: finding the chunk indexes here would cost a random read per root.
    """
    backend = repo._backend()
    live: set[bytes] = set()
    total = repo.count_executions()
    for n, (key, raw) in enumerate(backend.scan(b"manifests"), 1):
        manifest = mf.decode_manifest(raw, exec_id=key.hex())
        live.update(_object_keys(mf.referenced_ids(manifest)))
        if progress and n % 1000 == 0:
            progress("mark", n, total)
    stale_before = objects.now_ns() - int(INFLIGHT_MAX_AGE.total_seconds() * 1e9)
    for name, raw in backend.scan(b"refs"):
        if stale_inflight(name, stale_before):
            continue  # a writer that died (or was dropped) long ago: its objects are garbage now
        live.update(raw[i : i + ids.OBJECT_ID_BYTES] for i in range(0, len(raw), ids.OBJECT_ID_BYTES))
    live.update(memory.root_keys(backend))  # memory versions' values (redacted ones name none)
    return live


def _object_keys(object_ids: Collection[str]) -> list[bytes]:
    """``ids.object_key`` of every id (InvalidIdError for one that is not an id: gc stops), with a
    fast path for ids spelled as written: 64 hex characters each."""
    try:
        keys = list(map(bytes.fromhex, object_ids))
        full = set(map(len, keys)) <= {ids.OBJECT_ID_BYTES}  # and no whitespace in between:
        if full and sum(map(len, object_ids)) == ids.OBJECT_ID_HEX * len(keys):
            return keys
    except ValueError:
        pass
    return [ids.object_key(oid) for oid in object_ids]


def _candidates(
    repo: Repository, live: set[bytes], cutoff_ns: int, report: GCReport, progress: Progress | None
) -> list[tuple[bytes, int]]:
    """The objects to sweep: neither live nor touched since ``cutoff_ns``; with their sizes.

    One cursor scan of ``objects`` in key order, SCAN_BATCH records per read transaction, also
    finds the chunk indexes among the live objects (by the kind byte of their record's header)
    and adds their chunks to ``live``. A chunk can come before its index in key order, so an
    object is judged only after the scan: then ``live`` holds every chunk of a live value, and
    the touch times of the others are read, in key order too.
    """
    backend = repo._backend()
    unmarked: list[tuple[bytes, int]] = []  # not live when scanned: (key, record size)
    start = b""
    with backend.read() as rt:
        total = rt.count(b"objects")
    seen = 0
    while True:
        batch = 0
        last = None
        with backend.read(buffers=True) as rt:
            cur = rt.txn.cursor(db=rt._dbs[b"objects"])
            records = cur.iternext(keys=True, values=True) if cur.set_range(start) else iter(())
            for raw_key, record in itertools.islice(records, SCAN_BATCH):
                key = bytes(raw_key)
                batch += 1
                if key not in live:
                    unmarked.append((key, len(record)))
                elif len(record) >= codec.HEADER_SIZE and record[1] == codec.KIND_INDEX:
                    # A live chunked value: its chunks are live. A damaged or newer index raises
                    # (CorruptObjectError, StoreFormatError): gc never sweeps on a partial mark.
                    live.update(objects.chunk_keys(record, key))
                last = key
        seen += batch
        report.objects_total = seen
        if progress:
            progress("scan", seen, total)
        if last is None or batch < SCAN_BATCH:
            break
        start = last + b"\x00"
    found: list[tuple[bytes, int]] = []
    pending = [item for item in unmarked if item[0] not in live]
    for i in range(0, len(pending), SCAN_BATCH):
        with backend.read() as rt:
            for key, size in pending[i : i + SCAN_BATCH]:
                if objects.unpack_time(rt.get(b"touch", key)) >= cutoff_ns:
                    report.objects_in_grace += 1
                else:
                    found.append((key, size))
    return found


def collect(
    repo: Repository,
    *,
    grace: dt.timedelta | float | None = None,
    dry_run: bool = False,
    compact: bool = False,
    progress: Progress | None = None,
) -> GCReport:
    if grace is None:
        grace = DEFAULT_GRACE
    grace_s = grace.total_seconds() if isinstance(grace, dt.timedelta) else float(grace)
    if grace_s < 0:
        raise ValueError("grace must not be negative")
    if repo.readonly and not dry_run:
        raise ReadOnlyStoreError(
            f"store {repo.root} is open read-only: gc would delete from it",
            hint="open it without readonly=True, or pass dry_run=True to see what gc would remove",
        )
    report = GCReport(dry_run=dry_run, grace_seconds=grace_s)
    began = time.monotonic()
    lock = FileLock(str(repo.root / config.LOCK_DIR / "gc.lock"))
    lock.acquire(exclusive=True, what="gc")
    try:
        if not dry_run:
            discard_leftover_copy(repo)  # a killed compaction's copy: space a full disk needs
        report.file_size_before = _file_size(repo)
        cutoff_ns = objects.now_ns() - int(grace_s * 1e9)
        _wait_for_writers(repo)
        live = mark(repo, progress)
        doomed = _candidates(repo, live, cutoff_ns, report, progress)  # (adds live values' chunks)
        report.objects_live = len(live)
        if dry_run:
            report.objects_removed = len(doomed)
            report.bytes_removed = sum(size for _, size in doomed)
        else:
            report.stale_refs_removed = _drop_stale_inflight(repo)
            _sweep(repo, doomed, cutoff_ns, report, progress)
            if compact:
                try:
                    compact_store(repo)
                    report.compacted = True
                except StoreLockedError as exc:
                    report.compact_error = exc.message
        report.file_size_after = _file_size(repo)
    finally:
        lock.release()
    report.seconds = time.monotonic() - began
    return report


def _wait_for_writers(repo: Repository) -> None:
    """Let every write transaction running now commit before the mark reads anything.

    A transaction takes its touch stamp once it holds LMDB's writer lock, and commits (fsync
    included) a little later. One that stamped before the cutoff but commits after the mark read
    its manifest would leave an object that looks unreferenced and older than the cutoff. An
    empty write transaction taken after the cutoff waits for that writer's commit, so every
    stamp before the cutoff belongs to a commit the mark sees. (An empty commit writes nothing.)
    """
    backend = repo._backend()
    if not backend.readonly:
        backend.update(lambda wt: None)


def _sweep(
    repo: Repository,
    doomed: list[tuple[bytes, int]],
    cutoff_ns: int,
    report: GCReport,
    progress: Progress | None,
) -> None:
    backend = repo._backend()
    for start in range(0, len(doomed), DELETE_BATCH):
        batch = doomed[start : start + DELETE_BATCH]

        def txn(wt: WriteTxn, batch: list[tuple[bytes, int]] = batch) -> tuple[int, int]:
            n = removed = 0
            for key, _ in batch:
                # Re-check inside the deleting transaction: a put, dedup hit or new reference
                # since the mark refreshed the touch time, and then the object stays.
                if objects.unpack_time(wt.get(b"touch", key)) >= cutoff_ns:
                    continue
                record = wt.get_view(b"objects", key)
                if record is None:
                    continue
                removed += len(record)
                wt.delete(b"objects", key)
                wt.delete(b"touch", key)
                n += 1
            return n, removed

        n, removed = backend.update(txn)
        report.objects_removed += n
        report.bytes_removed += removed
        if progress:
            progress("sweep", min(start + DELETE_BATCH, len(doomed)), len(doomed))
