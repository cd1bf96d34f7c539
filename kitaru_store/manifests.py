"""Execution manifests: the persisted record of one execution. msgspec Structs, MessagePack on disk.

A manifest maps checkpoint and artifact names to object ids. It is rewritten whole in the write
transaction that adds entries to it; readers decode it with unknown fields ignored, so a newer
minor format stays readable, and refuse a newer major format.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

import msgspec

from .errors import StoreFormatError
from .names import ARTIFACT_TYPES as ARTIFACT_TYPES  # re-exported (kitaru_store.ARTIFACT_TYPES)

MANIFEST_FORMAT = 1  # major version; bump only for changes an older reader would misread

Status = Literal["running", "waiting", "completed", "failed", "cancelled"]
STATUSES: tuple[str, ...] = ("running", "waiting", "completed", "failed", "cancelled")
FINISHED: frozenset[str] = frozenset({"completed", "failed", "cancelled"})

EntryKind = Literal["checkpoint_output", "manual", "llm_record", "wait_input"]
# "manual" entries come from kitaru.save(); the others from checkpoint returns, llm() and wait().
ENTRY_KINDS: tuple[str, ...] = ("checkpoint_output", "manual", "llm_record", "wait_input")

ArtifactType = Literal["prompt", "response", "context", "input", "output", "blob"]
# The tuple lives in names.py (importable without msgspec); this Literal must list the same.

CheckpointStatus = Literal["running", "completed", "failed", "cached"]


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
    kind: EntryKind
    artifact_type: ArtifactType
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
    status: CheckpointStatus
    started_at: dt.datetime
    ended_at: dt.datetime | None = None
    output_object_id: str | None = None
    inputs: tuple[str, ...] = ()  # object ids of the inputs (lineage)
    upstream: tuple[str, ...] = ()  # invocation ids whose outputs were passed in (data-flow edges)
    attempts: tuple[Attempt, ...] = ()
    failure: Failure | None = None
    metadata: dict[str, Any] = {}
    reused_from: str | None = None  # execution id whose recorded output this invocation reused


class Manifest(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    format_version: int = MANIFEST_FORMAT
    exec_id: str
    flow_name: str
    status: Status
    started_at: dt.datetime
    ended_at: dt.datetime | None = None
    replay_of: str | None = None
    failure: Failure | None = None
    entries: tuple[Entry, ...] = ()
    checkpoints: tuple[CheckpointRecord, ...] = ()
    metadata: dict[str, Any] = {}
    result_object_id: str | None = None
    input_object_id: str | None = None  # the flow's arguments, kept for replay


class ExecutionSummary(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """What `log` shows, kept in the time index so that listing never decodes a manifest."""

    exec_id: str
    flow_name: str
    status: Status
    started_at: dt.datetime
    ended_at: dt.datetime | None = None
    artifact_count: int = 0
    checkpoint_count: int = 0
    replay_of: str | None = None


_encoder = msgspec.msgpack.Encoder()
_manifest_decoder = msgspec.msgpack.Decoder(Manifest)
_summary_decoder = msgspec.msgpack.Decoder(ExecutionSummary)
_probe_decoder = msgspec.msgpack.Decoder(dict[str, Any])


def encode(obj: msgspec.Struct) -> bytes:
    return _encoder.encode(obj)


def decode_manifest(data: bytes | memoryview, *, exec_id: str | None = None) -> Manifest:
    try:
        manifest = _manifest_decoder.decode(data)
    except msgspec.DecodeError as exc:
        version = _probe_version(data)
        if version is not None and version > MANIFEST_FORMAT:
            raise _newer(version, exec_id) from exc
        raise
    if manifest.format_version > MANIFEST_FORMAT:
        raise _newer(manifest.format_version, exec_id)
    return manifest


def _probe_version(data: bytes | memoryview) -> int | None:
    try:
        version = _probe_decoder.decode(data).get("format_version")
    except msgspec.DecodeError:
        return None
    return version if isinstance(version, int) else None


def _newer(version: int, exec_id: str | None) -> StoreFormatError:
    return StoreFormatError(
        f"manifest format {version} is newer than this kitaru understands ({MANIFEST_FORMAT})",
        exec_id=exec_id,
        hint="upgrade kitaru to read this execution",
    )


def decode_summary(data: bytes | memoryview) -> ExecutionSummary:
    return _summary_decoder.decode(data)


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


def referenced_ids(m: Manifest) -> set[str]:
    """Every object id a manifest keeps alive."""
    ids = {e.object_id for e in m.entries}
    ids.update(c.output_object_id for c in m.checkpoints if c.output_object_id)
    ids.update(oid for oid in (m.result_object_id, m.input_object_id) if oid)
    return ids


def time_key(started_at: dt.datetime) -> bytes:
    ns = int(started_at.timestamp() * 1_000_000) * 1000
    return max(ns, 0).to_bytes(8, "big")
