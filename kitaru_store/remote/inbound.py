"""What a remote may send, and the checks everything fetched from one passes before it is stored.

A remote is untrusted: anyone with write access to the bucket (or a broken server) decides what
it holds. Every body is read with a cap (the transport stops reading past it), then decoded by
the store's own bounded decoders, strictly (no bytes after a record, a record of exactly its
length), and checked like user input: names as kitaru_store.names checks them, ids as canonical
hex. Anything else is a typed KitaruError naming the object or execution; nothing of it is stored.

The caps (docs/remotes.md, "What a remote may send"):

* a data record (a small value or one chunk of a large one): ``MAX_DATA_RECORD``, the record
  frame plus ``codec.MAX_DATA_SIZE`` (1 MiB + 64 KiB) and zstd's worst-case overhead;
* a chunk index record: ``MAX_INDEX_RECORD`` (16 MiB: about 400,000 chunks, a value of some
  100 GiB at the average chunk size). push refuses to upload a larger one;
* a manifest: ``manifests.MAX_MANIFEST_SIZE`` (16 MiB), which every local write keeps to as well;
* the remote's config: ``MAX_CONFIG`` (64 KiB).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from typing import Any

from kitaru_store import codec, hashing, objects
from kitaru_store import manifests as mf
from kitaru_store.errors import (
    CorruptManifestError,
    CorruptObjectError,
    InvalidIdError,
    InvalidNameError,
    StoreFormatError,
)
from kitaru_store.names import validate_name

from .errors import RemoteError

MAX_DATA_RECORD = codec.HEADER_SIZE + codec.MAX_DATA_SIZE + (codec.MAX_DATA_SIZE >> 8) + 1024
MAX_INDEX_RECORD = 16 << 20
MAX_MANIFEST = mf.MAX_MANIFEST_SIZE
MAX_CONFIG = 64 << 10

_HEX = re.compile(r"[0-9a-f]+")


# --- records ---------------------------------------------------------------------------------


def verify_record(
    record: bytes, key: bytes, remote: str, *, exec_id: str | None, index: bool = True
) -> tuple[int, bytes | memoryview]:
    """(kind, payload) of a record fetched from a remote, checked; CorruptObjectError if bad.

    A data record must decode exactly and hash to its key. An index record (refused when
    ``index`` is False: a chunk) must decode exactly and parse (parse_index); its chunks and the
    value they reassemble to are checked by the caller.
    """
    try:
        kind, payload = codec.decode_exact(record, limit=MAX_INDEX_RECORD)
    except ValueError as exc:
        raise _corrupt(key, remote, f"is undecodable: {exc}", exec_id) from None
    except StoreFormatError as exc:  # a newer record format: "upgrade kitaru"
        raise objects.object_format_error(exc, key) from None
    if kind == codec.KIND_DATA:
        if hashing.digest(payload) != key:
            raise _corrupt(key, remote, "does not match its id", exec_id)
    elif not index:
        raise _corrupt(key, remote, "is a chunk index where a chunk (a data record) belongs", exec_id)
    else:
        parse_index(payload, key, remote, exec_id=exec_id)
    return kind, payload


def parse_index(
    payload: bytes | memoryview, key: bytes, remote: str, *, exec_id: str | None
) -> objects.ChunkIndex:
    """The chunk index in a remote record's payload: chunk ids of 32 bytes, each chunk 1 byte to
    codec.MAX_DATA_SIZE, adding up to the value's size."""
    try:
        index = objects.parse_index(payload, key)
    except CorruptObjectError as exc:
        raise _corrupt(key, remote, f": {exc.message}", exec_id) from None
    total = 0
    for ckey, csize in index.chunks:
        if len(ckey) != 32 or not 0 < csize <= codec.MAX_DATA_SIZE:
            raise _corrupt(key, remote, "names a chunk of an impossible id or size", exec_id)
        total += csize
    if total != index.size or not index.chunks:
        raise _corrupt(key, remote, "has chunk sizes that do not add up to its size", exec_id)
    return index


def _corrupt(key: bytes, remote: str, what: str, exec_id: str | None) -> CorruptObjectError:
    sep = "" if what.startswith(":") else " "
    return CorruptObjectError(key.hex(), f"the copy on remote {remote!r}{sep}{what}", exec_id=exec_id)


def too_large(key: bytes, remote: str, limit: int, exec_id: str | None) -> CorruptObjectError:
    return _corrupt(key, remote, f"is larger than any record of the store format ({limit} bytes)", exec_id)


# --- manifests -------------------------------------------------------------------------------


def decode_manifest(body: bytes, exec_id: str, remote: str) -> mf.Manifest:
    """The manifest a remote holds under ``exec_id``: decoded like a local one, then checked like
    user input (check_manifest). CorruptManifestError, StoreFormatError, InvalidNameError or
    InvalidIdError."""
    if len(body) > MAX_MANIFEST:
        raise manifest_too_large(exec_id, remote)
    try:
        manifest = mf.decode_manifest(body, exec_id=exec_id)
    except RecursionError:  # metadata nested deeper than the interpreter's stack allows
        raise CorruptManifestError(
            f"the manifest of execution {exec_id} on remote {remote!r} is nested too deeply",
            exec_id=exec_id,
            hint="the remote was written by something other than kitaru; fix or remove that key",
        ) from None
    if manifest.exec_id != exec_id:
        raise CorruptManifestError(
            f"the manifest stored as {exec_id} on remote {remote!r} names execution"
            f" {manifest.exec_id[:80]!r}",
            exec_id=exec_id,
            hint="the remote was written by something other than kitaru; fix or remove that key",
        )
    check_manifest(manifest)
    return manifest


def manifest_too_large(exec_id: str, remote: str) -> CorruptManifestError:
    return CorruptManifestError(
        f"the manifest of execution {exec_id} on remote {remote!r} is larger than a manifest may be"
        f" ({MAX_MANIFEST} bytes)",
        exec_id=exec_id,
        hint="the remote was written by something other than kitaru; fix or remove that key",
    )


def check_manifest(m: mf.Manifest) -> None:
    """Every name, id and metadata key of a manifest, checked as the local API checks them.

    Names (flow, artifacts, checkpoints, invocations, tags, waits, and the kinds, types and
    statuses stored as text) go through names.validate_name: no control characters (ANSI
    escapes included), no path separators, at most 255 characters. Ids must be canonical
    lower-case hex of their length. Metadata keys must be printable text.
    """
    e = m.exec_id
    _hex(m.exec_id, 16, "execution id", e)
    validate_name(m.flow_name, what="flow name", exec_id=e)
    validate_name(m.status, what="status", exec_id=e)
    _hex(m.replay_of, 16, "replay_of", e)
    _hex(m.result_object_id, 32, "result object id", e)
    _hex(m.input_object_id, 32, "input object id", e)
    _failure(m.failure, e)
    _keys(m.metadata, e)
    for entry in m.entries:
        _hex(entry.artifact_id, 16, "artifact id", e)
        _hex(entry.object_id, 32, "object id", e)
        _names(
            e,
            artifact_name=entry.name,
            kind=entry.kind,
            artifact_type=entry.artifact_type,
            serializer=entry.serializer,
            checkpoint=entry.checkpoint,
            invocation_id=entry.invocation_id,
        )
        for tag in entry.tags:
            validate_name(tag, what="tag", exec_id=e)
        _keys(entry.metadata, e)
        _hexes(entry.inputs, e)
        if entry.size < 0:
            raise CorruptManifestError(f"artifact {entry.artifact_id} has a negative size", exec_id=e)
    _unique((c.invocation_id for c in m.checkpoints), "checkpoint invocation id", e)
    for cp in m.checkpoints:
        _names(e, invocation_id=cp.invocation_id, checkpoint=cp.name, status=cp.status, kind=cp.kind)
        for upstream in cp.upstream:
            validate_name(upstream, what="upstream invocation id", exec_id=e)
        _hex(cp.output_object_id, 32, "output object id", e)
        _hex(cp.reused_from, 16, "reused_from", e)
        _hexes(cp.inputs, e)
        _failure(cp.failure, e)
        for attempt in cp.attempts:
            _failure(attempt.failure, e)
        _keys(cp.metadata, e)
    _unique((w.name for w in m.waits), "wait name", e)
    for wait in m.waits:
        _names(e, wait_name=wait.name, status=wait.status)
        _hex(wait.value_object_id, 32, "wait value object id", e)
        _keys(wait.metadata, e)
        _keys(wait.answered_by, e)


def _names(exec_id: str, **named: str | None) -> None:
    for what, value in named.items():
        if value is not None:
            validate_name(value, what=what.replace("_", " "), exec_id=exec_id)


def _failure(failure: mf.Failure | None, exec_id: str) -> None:
    if failure is not None:
        _names(exec_id, failure_type=failure.type, checkpoint=failure.checkpoint)


def _hex(value: str | None, nbytes: int, what: str, exec_id: str) -> None:
    if value is not None and (len(value) != 2 * nbytes or not _HEX.fullmatch(value)):
        raise InvalidIdError(
            f"{what} {value[:80]!r} is not {2 * nbytes} lower-case hex characters",
            exec_id=exec_id,
            hint="the remote was written by something other than kitaru",
        )


def _hexes(values: Iterable[str], exec_id: str) -> None:
    for value in values:
        _hex(value, 32, "input object id", exec_id)


def _unique(values: Iterable[str], what: str, exec_id: str) -> None:
    seen: set[str] = set()
    for value in values:
        if value in seen:
            raise InvalidNameError(f"{what} {value[:80]!r} appears twice", exec_id=exec_id, name=value[:80])
        seen.add(value)


def _keys(metadata: Mapping[str, Any], exec_id: str) -> None:
    for key in metadata:
        if not key.isprintable():
            raise InvalidNameError(
                f"metadata key {key[:80]!r} contains control characters",
                exec_id=exec_id,
                name=key[:80],
                hint="the remote holds metadata that kitaru would not print safely",
            )


# --- the remote's config ---------------------------------------------------------------------


def decode_config(body: bytes, where: str, name: str) -> dict[str, Any]:
    """The remote's ``config`` document: a JSON object with at least ``kind`` and ``format``."""
    try:
        if len(body) > MAX_CONFIG:
            raise ValueError(f"{len(body)} bytes, more than a config holds ({MAX_CONFIG})")
        data = json.loads(body)
        if not isinstance(data, dict):
            raise TypeError("not a JSON object")
        fmt = data["format"]
        if not isinstance(fmt, int) or isinstance(fmt, bool):
            raise TypeError("format is not an integer")
    except (ValueError, KeyError, TypeError, RecursionError) as exc:
        raise not_a_remote(where, name, f"its config is unreadable ({exc})") from None
    return data


def not_a_remote(where: str, name: str, why: str) -> RemoteError:
    return RemoteError(
        f"{where} is not a kitaru remote: {why}", name=name, hint="point the remote at another prefix"
    )


__all__ = [
    "MAX_CONFIG",
    "MAX_DATA_RECORD",
    "MAX_INDEX_RECORD",
    "MAX_MANIFEST",
    "check_manifest",
    "decode_config",
    "decode_manifest",
    "manifest_too_large",
    "not_a_remote",
    "parse_index",
    "too_large",
    "verify_record",
]
