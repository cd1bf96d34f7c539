"""Garbage collection: mark what the roots reach, sweep the rest, optionally compact; and the
store's one eraser, which deletes what a redaction queued (``erase_queued``).

Rules (docs/design.md, "Garbage collection"):

* one gc at a time (an flock that dies with its process, so never a stale lock);
* the roots and what is reachable are defined once, in reachability.py (manifests, refs with
  pins and running writers' in-flight objects, memory versions; chunks of reachable values),
  and read in short read transactions;
* an object touched (put, deduplicated or referenced) within the grace period is never swept,
  which protects what a concurrent writer is about to reference; nor is a chunk of a value that
  is kept for that reason;
* each delete re-checks the touch time inside the write transaction that deletes, and chunk
  indexes are deleted before any chunk: no transaction leaves a stored value without its chunks.

Both the sweep and the eraser delete through ``_erase_record``; nothing else deletes an object.
"""

from __future__ import annotations

import datetime as dt
import functools
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

import msgspec

from . import codec, layout, liveness, memory, objects, reachability
from .compaction import compact_store, discard_leftover_copy
from .errors import (
    CorruptObjectError,
    ReadOnlyStoreError,
    StoreFormatError,
    StoreFullError,
    StoreLockedError,
)
from .locks import FileLock
from .reachability import INFLIGHT_MAX_AGE as INFLIGHT_MAX_AGE  # re-exported: gc's rule
from .reachability import stale_inflight

if TYPE_CHECKING:
    from .kv import WriteTxn
    from .repository import Repository

DEFAULT_GRACE = dt.timedelta(hours=1)
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
    erasures: int = 0  # queued erasures (redactions) processed; for a dry run, waiting
    erasures_kept: int = 0  # of those, objects kept because something still holds them
    erased_objects: int = 0  # objects (records and chunks) the erasures deleted
    erased_bytes: int = 0
    compacted: bool = False
    compact_error: str | None = None
    seconds: float = 0.0

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def _file_size(repo: Repository) -> int:
    maintenance = repo.kv.maintenance()
    return maintenance.file_size() if maintenance is not None else 0


def _drop_stale_inflight(repo: Repository) -> int:
    before = reachability.inflight_stale_before()
    names = [n for n, _ in repo.kv.scan(layout.REFS, prefix=layout.INFLIGHT_PREFIX)]
    stale = [n for n in names if stale_inflight(n, before)]

    def txn(wt: WriteTxn) -> int:
        return sum(wt.delete(layout.REFS, n) for n in stale)

    return repo.kv.update(txn) if stale else 0


def mark(repo: Repository, progress: Progress | None = None) -> set[bytes]:
    """Every root's object key (reachability.root_keys).

    The chunks of the chunked values among them are added by ``_candidates``, which reads every
    record's header anyway: finding the chunk indexes here would cost a random read per root.
    """
    return reachability.root_keys(repo.kv, progress, repo.count_executions())


def _candidates(
    repo: Repository, live: set[bytes], cutoff_ns: int, report: GCReport, progress: Progress | None
) -> list[tuple[bytes, int]]:
    """The objects to sweep: neither live nor touched since ``cutoff_ns``, nor a chunk of a value
    kept for its touch time; with their sizes, chunk indexes first (then key order).

    One batched scan of ``objects`` in key order, SCAN_BATCH records per read transaction, also
    finds the chunk indexes among the live objects (by the kind byte of their record's header)
    and adds their chunks to ``live``, and notes the chunks of the other indexes. A chunk can
    come before its index in key order, so an object is judged only after the scan: then
    ``live`` holds every chunk of a live value, and the touch times of the others are read, in
    key order too.
    """
    kv = repo.kv
    unmarked: list[tuple[bytes, int]] = []  # not live when scanned: (key, record size)
    unmarked_chunks: dict[bytes, list[bytes]] = {}  # unmarked index -> its chunks
    with kv.read() as rt:
        total = rt.count(layout.OBJECTS)
    seen = 0
    for batch in kv.batches(layout.OBJECTS, batch=SCAN_BATCH):
        for key, record in batch:
            seen += 1
            is_index = codec.is_index(record)
            if key not in live:
                unmarked.append((key, len(record)))
                if is_index:
                    unmarked_chunks[key] = _chunks_if_readable(record, key)
            elif is_index:
                # A live chunked value: its chunks are live. A damaged or newer index raises
                # (CorruptObjectError, StoreFormatError): gc never sweeps on a partial mark.
                live.update(objects.chunk_keys(record, key))
        report.objects_total = seen
        if progress:
            progress("scan", seen, total)
    indexes: list[tuple[bytes, int]] = []
    found: list[tuple[bytes, int]] = []
    kept: set[bytes] = set()  # chunks of the values kept for their touch time
    pending = [item for item in unmarked if item[0] not in live]
    for i in range(0, len(pending), SCAN_BATCH):
        with kv.read() as rt:
            for key, size in pending[i : i + SCAN_BATCH]:
                if objects.unpack_time(rt.get(layout.TOUCH, key)) >= cutoff_ns:
                    report.objects_in_grace += 1
                    kept.update(unmarked_chunks.get(key, ()))
                else:
                    (indexes if key in unmarked_chunks else found).append((key, size))
    if kept:
        report.objects_in_grace += sum(1 for key, _ in found if key in kept)
        found = [item for item in found if item[0] not in kept]
    return indexes + found


def _chunks_if_readable(record: bytes | memoryview, key: bytes) -> list[bytes]:
    """The chunks of an unreachable index; none if it cannot be read (its chunks are then judged
    on their own touch times, as a damaged index keeps nothing)."""
    try:
        return objects.chunk_keys(record, key)
    except (CorruptObjectError, StoreFormatError):
        return []


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
    lock = FileLock(layout.lock_file(repo.root, layout.GC_LOCK))
    lock.acquire(exclusive=True, what="gc")
    try:
        if not dry_run:
            discard_leftover_copy(repo)  # a killed compaction's copy: space a full disk needs
        report.file_size_before = _file_size(repo)
        _process_queue(repo, report)
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
            liveness.remove_free_locks(repo)  # killed runs leave their run lock files
            if compact:
                try:
                    report.compacted = compact_store(repo)
                    if not report.compacted:
                        report.compact_error = "an in-memory store has no file to compact"
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
    kv = repo.kv
    if not kv.readonly:
        kv.update(lambda wt: None)


def _sweep(
    repo: Repository,
    doomed: list[tuple[bytes, int]],
    cutoff_ns: int,
    report: GCReport,
    progress: Progress | None,
) -> None:
    """Delete ``doomed`` (chunk indexes first), DELETE_BATCH per write transaction.

    Between two batches any write may commit. One that keeps a value (reachability.keep, or a put
    that dedups it) checks that the value is whole and touches it and every chunk: the later
    batches see the touch times and leave them. An index goes before its chunks, so no batch
    leaves a stored index without a chunk; a value whose index is gone cannot be kept (the keep
    fails) until a put stores the index again, touching the chunks. ``progress`` is called
    between batches (the tests' hook point).
    """
    kv = repo.kv
    start, size = 0, DELETE_BATCH
    while start < len(doomed):
        batch = doomed[start : start + size]

        def txn(wt: WriteTxn, batch: list[tuple[bytes, int]] = batch) -> tuple[int, int]:
            n = removed = 0
            for key, _ in batch:
                size = _erase_record(wt, key, cutoff_ns)
                if size:
                    removed += size
                    n += 1
            return n, removed

        try:
            n, removed = kv.update(txn)
        except StoreFullError:
            if size == 1:
                raise
            # A full disk: deleting copies pages too (LMDB never writes in place). A smaller
            # batch needs fewer new pages, and each batch committed frees pages for the next.
            size = max(size // 8, 1)
            continue
        report.objects_removed += n
        report.bytes_removed += removed
        start += len(batch)
        if progress:
            progress("sweep", start, len(doomed))


def _erase_record(wt: WriteTxn, key: bytes, cutoff_ns: int) -> int | None:
    """Delete one object's record and touch time: the record's size (0: it was not stored), or
    None if it was touched at or after ``cutoff_ns`` and stays.

    The one place an object is deleted. The touch time is read inside the deleting transaction:
    a put, dedup hit or new reference since the caller decided refreshed it, and then it stays.
    """
    if objects.unpack_time(wt.get(layout.TOUCH, key)) >= cutoff_ns:
        return None
    record = wt.get_view(layout.OBJECTS, key)
    if record is None:
        return 0
    size = len(record)
    wt.delete(layout.OBJECTS, key)
    wt.delete(layout.TOUCH, key)
    return size


# --- the erasure queue: what redaction asks to delete now ----------------------------------------

_waiting_enc = msgspec.msgpack.Encoder()
_waiting_dec = msgspec.msgpack.Decoder(list[bytes])
TOUCHED_DURING_ERASURE = "a write that referenced it while it was being erased"


@dataclass
class Erasure:
    """What the eraser did with one queued object."""

    object_key: bytes
    erased: bool  # the object is not stored any more
    kept_by: list[str] = field(default_factory=list)  # why it (or some of its chunks) stayed
    objects_removed: int = 0
    bytes_removed: int = 0


@dataclass
class _Plan:
    """What a read snapshot found for one queued object: who waits, its chunks, what holds it."""

    name: bytes
    key: bytes
    waiting: list[bytes]
    chunks: set[bytes] | None  # None: the object is not stored
    kept_by: list[str]
    shared: set[bytes]


def _decode_waiting(raw: bytes | None) -> list[bytes]:
    """The memory record keys a queue record lists (none if damaged: the object is still erased
    by the rule, only the outcome is not recorded)."""
    if not raw:
        return []
    try:
        return _waiting_dec.decode(raw)
    except msgspec.DecodeError:
        return []


def queue_erasure(wt: WriteTxn, key: bytes, waiting: bytes) -> None:
    """In the caller's write transaction: queue object ``key`` for erasure, the outcome to be
    recorded in memory record ``waiting`` (memory.record_erasure). Durable from that commit on:
    if the caller dies before ``erase_queued`` runs, the next gc or redaction erases it."""
    name = layout.erase_ref(key)
    listed = _decode_waiting(wt.get(layout.REFS, name))
    if waiting not in listed:
        listed.append(waiting)
    wt.put(layout.REFS, name, _waiting_enc.encode(listed))


def erase_queued(repo: Repository) -> list[Erasure]:
    """Erase every queued object unless something still holds it, and drop its queue record.

    gc's rules, without its grace period: a cutoff fixed first, then an empty write transaction
    that waits for running writers (``_wait_for_writers``); what holds the object is found in a
    read snapshot (``reachability.holders``, ``chunk_users``), never under the write lock; a
    short write transaction then deletes it unless it was touched since the cutoff (a writer
    that references it in its commit touches it, ``reachability.keep``), and records the outcome
    in the waiting memory records.
    """
    kv = repo.kv
    names = [n for n, _ in kv.scan(layout.REFS, prefix=layout.ERASE_PREFIX)]
    if not names:
        return []
    cutoff_ns = objects.now_ns()
    _wait_for_writers(repo)
    done: list[Erasure] = []
    for name in names:
        key = layout.erase_target(name)
        if key is None:
            continue  # not a queue record's name: left alone
        plan = _plan(repo, name, key)
        if plan is None:
            continue  # another eraser got there first
        outcome = kv.update(functools.partial(_erase_planned, plan=plan, cutoff_ns=cutoff_ns))
        if outcome is not None:
            done.append(outcome)
    return done


def _plan(repo: Repository, name: bytes, key: bytes) -> _Plan | None:
    """Read, in one snapshot, the queue record and what holds its object (None: it is gone)."""
    with repo.kv.read(buffers=True) as rt:
        raw = rt.get(layout.REFS, name)
        if raw is None:
            return None
        record = rt.get_view(layout.OBJECTS, key)
        try:
            chunks = set(objects.chunk_keys(record, key)) if record is not None else None
        except (CorruptObjectError, StoreFormatError):
            chunks = set()  # damaged: delete the record; a damaged index's chunks are the sweep's
        kept = reachability.holders(rt, key)
        parents, shared = reachability.chunk_users(rt, key, chunks or set())
    kept += [f"a chunk of object {p.hex()}" for p in parents]
    return _Plan(name, key, _decode_waiting(raw), chunks, kept, shared)


def _erase_planned(wt: WriteTxn, plan: _Plan, cutoff_ns: int) -> Erasure | None:
    """The write transaction of one erasure: delete (the index before its chunks, so ``wt`` never
    shows an index without them), record the outcome, drop what the plan read of the queue."""
    raw = wt.get(layout.REFS, plan.name)
    if raw is None:
        return None
    out = Erasure(plan.key, erased=False, kept_by=list(plan.kept_by))
    if not out.kept_by and plan.chunks is not None:
        size = _erase_record(wt, plan.key, cutoff_ns)
        if size is None:
            out.kept_by.append(TOUCHED_DURING_ERASURE)
        else:
            out.erased = True
            out.objects_removed, out.bytes_removed = (1, size) if size else (0, 0)
            kept = len(plan.shared)
            for ckey in sorted(plan.chunks - plan.shared):
                size = _erase_record(wt, ckey, cutoff_ns)
                if size is None:
                    kept += 1  # a value stored since the plan lists it too
                elif size:
                    out.objects_removed += 1
                    out.bytes_removed += size
            if kept:
                out.kept_by.append(f"{kept} of {len(plan.chunks)} chunks are shared with other stored values")
    elif plan.chunks is None and not out.kept_by:
        out.erased = True  # not stored (fsck would have reported it)
    memory.record_erasure(wt, plan.waiting, erased=out.erased, kept_by=out.kept_by)
    rest = [k for k in _decode_waiting(raw) if k not in plan.waiting]  # queued since the plan
    if rest:
        wt.put(layout.REFS, plan.name, _waiting_enc.encode(rest))
    else:
        wt.delete(layout.REFS, plan.name)
    return out


def _process_queue(repo: Repository, report: GCReport) -> None:
    """gc's first step: the erasures a redaction queued and did not finish (it died)."""
    if report.dry_run:
        queued = repo.kv.scan(layout.REFS, prefix=layout.ERASE_PREFIX)
        report.erasures = sum(1 for n, _ in queued if layout.erase_target(n) is not None)
        return
    for done in erase_queued(repo):
        report.erasures += 1
        report.erasures_kept += not done.erased
        report.erased_objects += done.objects_removed
        report.erased_bytes += done.bytes_removed
