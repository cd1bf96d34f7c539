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
from typing import Any

from kitaru_store import codec, hashing, objects
from kitaru_store import manifests as mf
from kitaru_store.errors import (
    CorruptManifestError,
    CorruptObjectError,
    StoreFormatError,
)

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
        raise objects._naming(exc, key) from None
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
        index = objects._parse_index(payload, key)
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
    user input. CorruptManifestError or StoreFormatError."""
    if len(body) > MAX_MANIFEST:
        raise manifest_too_large(exec_id, remote)
    manifest = mf.decode_manifest(body, exec_id=exec_id)
    if manifest.exec_id != exec_id:
        raise CorruptManifestError(
            f"the manifest stored as {exec_id} on remote {remote!r} names execution"
            f" {manifest.exec_id[:80]!r}",
            exec_id=exec_id,
            hint="the remote was written by something other than kitaru; fix or remove that key",
        )
    return manifest


def manifest_too_large(exec_id: str, remote: str) -> CorruptManifestError:
    return CorruptManifestError(
        f"the manifest of execution {exec_id} on remote {remote!r} is larger than a manifest may be"
        f" ({MAX_MANIFEST} bytes)",
        exec_id=exec_id,
        hint="the remote was written by something other than kitaru; fix or remove that key",
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
    "decode_config",
    "decode_manifest",
    "manifest_too_large",
    "not_a_remote",
    "parse_index",
    "too_large",
    "verify_record",
]
