"""Execution manifests: the persisted record of one execution. msgspec Structs, MessagePack on disk.

A manifest maps checkpoint and artifact names to object ids. The store keeps it as a head and one
record per part (manifest_store.py, format 2); this module has the Structs and their whole-manifest
encoding, which format-1 stores hold and remotes exchange. Readers decode with unknown fields
ignored, so a newer minor format stays readable, and refuse a newer major format.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any, Literal

import msgspec

from . import checksum, listing, nesting
from . import summary as summary_layout
from .errors import CorruptManifestError, KitaruError, StoreFormatError
from .listing import DAMAGED as DAMAGED  # the status of a DamagedSummary
from .names import ARTIFACT_TYPES as ARTIFACT_TYPES  # re-exported (kitaru_store.ARTIFACT_TYPES)
from .names import STATUSES as STATUSES  # re-exported (kitaru_store.STATUSES)

MANIFEST_FORMAT = 2  # major version; bump only for changes an older reader would misread
# Format 1 stored each manifest whole; format 2 stores a head plus part records (manifest_store.py).
LAST_WHOLE_FORMAT = 1
# The most a stored manifest may hold (encoded): refused on write, and the cap on one fetched from
# a remote. Some 50,000 entries; values live in objects, a manifest only names them.
MAX_MANIFEST_SIZE = 16 << 20
# The checksum pair (7.2 of docs/design.md) came within format 1; every later format has it.
LAST_FORMAT_WITHOUT_CHECKSUM = 1

# The Literal aliases document the values; persisted fields are plain ``str`` so that a newer
# writer's new status or kind reads as data in an older reader instead of failing validation.
Status = Literal["running", "waiting", "completed", "failed", "cancelled"]  # names.STATUSES
FINISHED: frozenset[str] = frozenset({"completed", "failed", "cancelled"})

EntryKind = Literal["checkpoint_output", "manual", "llm_record", "wait_input"]
# "manual" entries come from kitaru.save(); the others from checkpoint returns, llm() and wait().
ENTRY_KINDS: tuple[str, ...] = ("checkpoint_output", "manual", "llm_record", "wait_input")

ArtifactType = Literal["prompt", "response", "context", "input", "output", "blob"]
# The tuple lives in names.py (importable without msgspec); this Literal must list the same.

CheckpointStatus = Literal["running", "completed", "failed", "reused", "cached", "overridden"]


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Failure(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    type: str
    message: str
    traceback: str = ""
    checkpoint: str | None = None


class Entry(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """One named value of an execution."""

    artifact_id: str
    name: str
    kind: str  # one of ENTRY_KINDS
    artifact_type: str  # one of ARTIFACT_TYPES
    object_id: str
    size: int
    serializer: str
    created_at: dt.datetime
    checkpoint: str | None = None  # the producing checkpoint's function name
    invocation_id: str | None = None  # research, research_2, ... or an explicit id
    tags: tuple[str, ...] = ()
    metadata: dict[str, Any] = {}
    inputs: tuple[str, ...] = ()  # object ids this value was computed from (lineage)


class Attempt(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    started_at: dt.datetime
    ended_at: dt.datetime | None = None
    failure: Failure | None = None


class CheckpointRecord(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """One invocation of a checkpoint inside an execution."""

    invocation_id: str
    name: str
    status: str  # running, completed, failed, reused (replay), cached, overridden
    started_at: dt.datetime
    ended_at: dt.datetime | None = None
    output_object_id: str | None = None
    inputs: tuple[str, ...] = ()  # object ids of the inputs (lineage)
    upstream: tuple[str, ...] = ()  # invocation ids whose outputs were passed in (data-flow edges)
    attempts: tuple[Attempt, ...] = ()
    failure: Failure | None = None
    metadata: dict[str, Any] = {}
    reused_from: str | None = None  # execution id whose recorded output this invocation reused
    seq: int = 0  # call order within the execution (concurrent calls finish out of order)
    kind: str = "checkpoint"  # checkpoint, or llm for a flow-body kitaru.llm() call


class WaitRecord(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """One kitaru.wait() of an execution: a question, and once given, the validated answer."""

    name: str
    status: str  # pending, answered, aborted
    created_at: dt.datetime
    question: str | None = None
    schema: dict[str, Any] = {}  # how to rebuild the type that validates the answer (waits.py)
    json_schema: dict[str, Any] | None = None  # the same as JSON Schema; None in older waits
    metadata: dict[str, Any] = {}
    timeout: float | None = None
    answered_at: dt.datetime | None = None
    value_object_id: str | None = None
    answered_by: dict[str, Any] = {}
    seq: int = 0


class Owner(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """The process that runs (or last ran) an execution: it holds the execution's run lock
    (liveness.py) from before it writes ``running`` until after it writes the final status."""

    pid: int
    host: str  # os.uname().nodename
    boot_id: str | None = None  # /proc/sys/kernel/random/boot_id: a reboot makes every pid new
    proc_start: int | None = None  # /proc/<pid>/stat field 22 (clock ticks after boot): pid reuse
    claimed_at: dt.datetime


class CancelRequest(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """A request, from another process, that the running execution stop as ``cancelled``."""

    requested_at: dt.datetime
    by: str  # who asked: "user@host (pid N)"
    reason: str | None = None


class Manifest(msgspec.Struct, frozen=True, kw_only=True):
    # Not omit_defaults: format_version must be on disk even while it equals the default, or a
    # newer writer's manifests would read as format 1 to an older reader.
    format_version: int = MANIFEST_FORMAT
    exec_id: str
    flow_name: str
    status: str  # one of STATUSES
    started_at: dt.datetime
    ended_at: dt.datetime | None = None
    replay_of: str | None = None
    failure: Failure | None = None
    entries: tuple[Entry, ...] = ()
    checkpoints: tuple[CheckpointRecord, ...] = ()
    metadata: dict[str, Any] = {}
    result_object_id: str | None = None
    input_object_id: str | None = None  # the flow's arguments, kept for replay
    waits: tuple[WaitRecord, ...] = ()
    owner: Owner | None = None  # the process running it (liveness.py); kept when it ends
    cancel_request: CancelRequest | None = None  # seen by the owner at its next checkpoint boundary


# A manifest without a valid checksum pair was written before manifests had one (a minor addition
# to format 1, design.md 14) by a writer that wrote only fields this reader knows: no field was
# ever removed from these Structs, and a writer that knows newer fields also writes the checksum.
# So it is read only if it has no unknown field, at any depth: a damaged checksum key (an unknown
# field) would otherwise pass a checksummed manifest as one written before checksums, unverified.
class _LegacyFailure(Failure, frozen=True, kw_only=True, forbid_unknown_fields=True):
    pass


class _LegacyEntry(Entry, frozen=True, kw_only=True, forbid_unknown_fields=True):
    pass


class _LegacyAttempt(Attempt, frozen=True, kw_only=True, forbid_unknown_fields=True):
    failure: _LegacyFailure | None = None


class _LegacyCheckpoint(CheckpointRecord, frozen=True, kw_only=True, forbid_unknown_fields=True):
    attempts: tuple[_LegacyAttempt, ...] = ()
    failure: _LegacyFailure | None = None


class _LegacyWait(WaitRecord, frozen=True, kw_only=True, forbid_unknown_fields=True):
    pass


class _LegacyOwner(Owner, frozen=True, kw_only=True, forbid_unknown_fields=True):
    pass


class _LegacyCancelRequest(CancelRequest, frozen=True, kw_only=True, forbid_unknown_fields=True):
    pass


class _LegacyManifest(Manifest, frozen=True, kw_only=True, forbid_unknown_fields=True):
    failure: _LegacyFailure | None = None
    owner: _LegacyOwner | None = None
    cancel_request: _LegacyCancelRequest | None = None
    entries: tuple[_LegacyEntry, ...] = ()
    checkpoints: tuple[_LegacyCheckpoint, ...] = ()
    waits: tuple[_LegacyWait, ...] = ()


class CacheRecord(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """Where a cached checkpoint output came from (the cache sub-database's values)."""

    object_id: str
    exec_id: str
    invocation_id: str
    created_at: dt.datetime


class ExecutionSummary(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """What `log` shows, kept in the time index so that listing never decodes a manifest."""

    exec_id: str
    flow_name: str
    status: str  # one of STATUSES
    started_at: dt.datetime
    ended_at: dt.datetime | None = None
    artifact_count: int = 0
    checkpoint_count: int = 0
    replay_of: str | None = None


class _LegacySummary(ExecutionSummary, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A summary written before summaries had a checksum: its writer wrote only these fields, so
    an unknown one (a damaged checksum key, for one) is damage."""


class DamagedSummary(ExecutionSummary, frozen=True, kw_only=True, omit_defaults=True):
    """A listing's row for a summary that is damaged (listing.damaged_row): never stored.

    ``status`` is DAMAGED; ``exec_id`` and ``started_at`` come from the row's key, ``flow_name``
    from the flow listed (else "?"), and ``problem`` says what is wrong.
    """

    problem: str


_encoder = msgspec.msgpack.Encoder()
_manifest_decoder = msgspec.msgpack.Decoder(Manifest)
_legacy_manifest_decoder = msgspec.msgpack.Decoder(_LegacyManifest)
_summary_decoder = msgspec.msgpack.Decoder(ExecutionSummary)
_legacy_summary_decoder = msgspec.msgpack.Decoder(_LegacySummary)
_cache_decoder = msgspec.msgpack.Decoder(CacheRecord)
_probe_decoder = msgspec.msgpack.Decoder(dict[str, Any])


def encode(obj: msgspec.Struct) -> bytes:
    return _encoder.encode(obj)


# A stored manifest ends with one more map pair, "checksum" (checksum.py): the BLAKE3-256 of every
# byte before the digest. Readers that do not know it ignore it as an unknown field; readers that
# do refuse a manifest whose bytes no longer match it.
CHECKSUM_TAIL = checksum.TAIL
checked_tag = checksum.checked_tag


def encode_manifest(m: Manifest) -> bytes:
    """The whole-manifest form (a remote's copy): its MessagePack map plus the checksum pair.

    Its metadata trees nest at most nesting.MAX_DEPTH levels (NestingTooDeepError), so that any
    reader can decode it.
    """
    for tree in _trees(m):
        nesting.require_within(tree, f"metadata of execution {m.exec_id}", exec_id=m.exec_id)
    return checksum.seal(nesting.on_fresh_stack(lambda: _encoder.encode(m)))


def _trees(m: Manifest) -> Iterator[Any]:
    yield m.metadata
    yield from (e.metadata for e in m.entries if e.metadata)
    yield from (c.metadata for c in m.checkpoints if c.metadata)
    for w in m.waits:
        yield from (w.schema, w.json_schema or {}, w.metadata, w.answered_by)


def encode_identity(triple: tuple[str, str, str | None]) -> bytes:
    """An entry's (name, kind, invocation id), as the identity index hashes it (manifest_store)."""
    return _encoder.encode(triple)


def _check_checksum(data: bytes | memoryview, exec_id: str | None) -> None:
    """Refuse a manifest whose checksum does not match; one without a checksum pair must decode
    with no unknown field (see _LegacyManifest)."""
    if checksum.present(data):
        if checked_tag(data) is None:
            raise corrupt(exec_id, "is damaged: its checksum does not match")
        return
    try:
        legacy = nesting.on_fresh_stack(lambda: _legacy_manifest_decoder.decode(data))
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError) as exc:  # bad UTF-8: no DecodeError
        raise _undecodable(data, exec_id, exc, "has no checksum and cannot be decoded") from exc
    if LAST_FORMAT_WITHOUT_CHECKSUM < legacy.format_version <= MANIFEST_FORMAT:
        raise corrupt(exec_id, f"has no checksum, which every manifest of format {legacy.format_version} has")


def corrupt(exec_id: str | None, what: str) -> CorruptManifestError:
    return CorruptManifestError(
        f"the manifest of execution {exec_id} {what}",
        exec_id=exec_id,
        hint="run `kitaru-store fsck`; the execution's objects are still in the store",
    )


def decode_manifest(
    data: bytes | memoryview, *, exec_id: str | None = None, checked: bool = False
) -> Manifest:
    """The manifest in ``data``; ``checked=True``: the caller has verified its checksum (checked_tag)."""
    if not checked:
        _check_checksum(data, exec_id)
    try:
        manifest = nesting.on_fresh_stack(lambda: _manifest_decoder.decode(data))
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError) as exc:  # bad UTF-8: no DecodeError
        raise _undecodable(data, exec_id, exc, "cannot be decoded") from exc
    if manifest.format_version > MANIFEST_FORMAT:
        raise newer_format(manifest.format_version, exec_id)
    return manifest


def _undecodable(data: bytes | memoryview, exec_id: str | None, exc: Exception, what: str) -> KitaruError:
    """StoreFormatError if ``data`` still says it is of a newer format, else CorruptManifestError."""
    version = _probe_version(data)
    if version is not None and version > MANIFEST_FORMAT:
        return newer_format(version, exec_id)
    return corrupt(exec_id, f"{what}: {exc}")


def _probe_version(data: bytes | memoryview) -> int | None:
    try:
        version = _probe_decoder.decode(data).get("format_version")
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
        return None
    return version if isinstance(version, int) else None


def newer_format(version: int, exec_id: str | None) -> StoreFormatError:
    return StoreFormatError(
        f"manifest format {version} is newer than this kitaru understands ({MANIFEST_FORMAT})",
        exec_id=exec_id,
        hint="upgrade kitaru to read this execution",
    )


def decode_cache(data: bytes | memoryview) -> CacheRecord:
    return _cache_decoder.decode(data)


def encode_summary(s: ExecutionSummary) -> bytes:
    """The stored form of a summary (the value of its exec_time key): summary.py's layout."""
    return summary_layout.encode(s)


def decode_summary(data: bytes | memoryview, *, key: bytes | None = None) -> ExecutionSummary:
    """The summary in ``data``, verified (summary.decode) and, given its exec_time ``key``, that
    it is that key's. Else CorruptSummaryError (StoreFormatError: a newer layout)."""
    summary = summary_layout.decode(data, ExecutionSummary)
    if key is not None:
        listing.check_key(key, summary.exec_id, summary.started_at)
    return summary


def decode_msgpack_summary(data: bytes | memoryview) -> ExecutionSummary:
    """A summary written before summary.py's layout: a MessagePack map, verified by its checksum
    pair (one written before checksums: no unknown field). Only summary.decode calls this."""
    sealed = checksum.present(data)
    if sealed and checksum.checked_tag(data) is None:
        raise listing.damaged("its checksum does not match")
    try:
        return (_summary_decoder if sealed else _legacy_summary_decoder).decode(data)
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:  # bad UTF-8 is not a DecodeError
        raise listing.damaged(f"it cannot be decoded: {exc}") from None


def summarize(m: Manifest) -> ExecutionSummary:
    return ExecutionSummary(
        exec_id=m.exec_id,
        flow_name=m.flow_name,
        status=m.status,
        started_at=m.started_at,
        ended_at=m.ended_at,
        artifact_count=len(m.entries),
        checkpoint_count=len(m.checkpoints),
        replay_of=m.replay_of,
    )


def same_content(a: Manifest | None, b: Manifest | None) -> bool:
    """Whether two manifests say the same, whatever format each was read from."""
    if a is None or b is None:
        return a is b
    return a == msgspec.structs.replace(b, format_version=a.format_version)


def referenced_ids(m: Manifest) -> set[str]:
    """Every object id a manifest keeps alive."""
    ids = {e.object_id for e in m.entries}
    ids.update(c.output_object_id for c in m.checkpoints if c.output_object_id)
    ids.update(oid for oid in (m.result_object_id, m.input_object_id) if oid)
    ids.update(w.value_object_id for w in m.waits if w.value_object_id)
    return ids
