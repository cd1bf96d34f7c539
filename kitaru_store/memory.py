"""Memory: durable, versioned key-value state kept beside the executions, outside any manifest.

A memory key lives in a *scope*: a namespace (a user-chosen name), a flow (by name) or an
execution (by id). Every change of a key is a new *version* (1, 2, 3, ...): ``set`` stores the
value as an ordinary content-addressed object and records its id; ``delete`` records a tombstone.
Versions are never removed. ``redact`` erases the bytes of one version's value while its record
(who wrote it, when, how large) stays, marked redacted with who redacted it, when and why.

Layout (sub-database ``memory``)::

    key   = scope kind (1 byte: b"n" namespace, b"f" flow, b"e" execution)
            + scope name (utf-8; an execution's 32 hex characters) + 0x00
            + memory key (utf-8) + 0x00
            + version (u64, big-endian, from 1)
    value = MemoryRecord (MessagePack)

Neither scope names nor memory keys contain control characters, so the 0x00 separators are
unambiguous: the versions of one key lie in ``[prefix + key + 0x00, prefix + key + 0x01)``, in
version order, and a scope's keys in ``[prefix, kind + name + 0x01)``, in key order.

Every memory version's object is a gc root (reachability.py); fsck reports versions whose object
is missing (``record_problems``). This module never imports kitaru: the SDK passes the writer's
identity in.
"""

from __future__ import annotations

import builtins
import datetime as dt
import difflib
import getpass
import os
import socket
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import msgspec

from . import ids, layout, objects, reachability, serialization
from .errors import (
    CorruptionError,
    InvalidIdError,
    InvalidNameError,
    KitaruError,
    NotFoundError,
    StateError,
    StoreFormatError,
    UsageError,
)
from .names import MEMORY_KEY_BYTES, refused_character, utf8, validate_name

if TYPE_CHECKING:
    from .kv import ReadTxn, Store, WriteTxn
    from .repository import Repository

MEMORY_FORMAT = 1  # major version of MemoryRecord; a reader refuses a newer one
SCOPES: tuple[str, ...] = ("namespace", "flow", "execution")
DEFAULT_NAMESPACE = "default"
OPS: tuple[str, ...] = ("set", "delete")
MAX_KEY = 255  # characters
MAX_KEY_BYTES = MEMORY_KEY_BYTES  # scope name + memory key, utf-8: what LMDB's key size leaves (names.py)
MAX_KEPT_BY = 20  # descriptions of other references a redaction records
_KEY_HINT = (
    "memory keys are text of at most 255 characters without control characters; '/' separates"
    ' levels ("user/42/prefs") but may not start, end or double up'
)


# --- errors ----------------------------------------------------------------------------------


class MemoryKeyNotFoundError(NotFoundError):
    """A memory key (or one version of it) that does not exist, or whose latest version is a deletion."""

    def __init__(
        self,
        message: str,
        *,
        key: str,
        scope: Scope,
        version: int | None = None,
        deleted_version: int | None = None,
        similar: Sequence[str] = (),
        hint: str | None = None,
    ) -> None:
        self.key = key
        self.scope = scope.kind
        self.scope_name = scope.name
        self.version = version
        self.deleted_version = deleted_version
        self.similar = list(similar)
        super().__init__(
            message,
            exec_id=scope.name if scope.kind == "execution" else None,
            name=key,
            hint=hint,
        )

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        out.update(key=self.key, scope=self.scope, scope_name=self.scope_name)
        if self.version is not None:
            out["version"] = self.version
        if self.deleted_version is not None:
            out["deleted_version"] = self.deleted_version
        if self.similar:
            out["similar"] = self.similar
        return out


class MemoryRedactedError(StateError):
    """The requested version's value was erased by ``redact``; its record (and reason) remain."""

    def __init__(
        self, version: MemoryVersion, *, message: str | None = None, hint: str | None = None
    ) -> None:
        self.key = version.key
        self.scope = version.scope
        self.scope_name = version.scope_name
        self.version = version.version
        self.redacted_at = version.redacted_at
        self.redaction_reason = version.redaction_reason
        where = Scope(version.scope, version.scope_name).describe()
        when = version.redacted_at.isoformat(timespec="seconds") if version.redacted_at else "?"
        super().__init__(
            message
            or f"version {version.version} of memory key {version.key!r} in {where} was redacted"
            f" at {when} ({version.redaction_reason})",
            exec_id=version.scope_name if version.scope == "execution" else None,
            name=version.key,
            hint=hint
            or "its value is gone; the key's history still shows who wrote it and when."
            " Read another version, or set a new value",
        )

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        out.update(
            key=self.key,
            scope=self.scope,
            scope_name=self.scope_name,
            version=self.version,
            redaction_reason=self.redaction_reason,
        )
        return out


class CorruptMemoryRecordError(CorruptionError):
    """A stored memory record cannot be decoded (damaged bytes)."""


class CorruptMemoryKeyError(CorruptMemoryRecordError, ValueError):
    """A key of the memory sub-database is not a record key (damaged bytes). Also a ValueError,
    which parse_record_key raised before."""


# --- scopes and keys -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Scope:
    """Where a memory key lives: ``kind`` is namespace, flow or execution; ``name`` says which."""

    kind: str
    name: str

    def describe(self) -> str:
        return f"execution {self.name}" if self.kind == "execution" else f"{self.kind} {self.name!r}"

    def __str__(self) -> str:
        return f"{self.kind}:{self.name}"

    @property
    def prefix(self) -> bytes:
        return layout.memory_scope_prefix(self.kind, self.name)

    @property
    def upper(self) -> bytes:
        return layout.memory_scope_upper(self.kind, self.name)


def make_scope(kind: str, name: str) -> Scope:
    """A validated scope. Execution scopes take a full execution id (32 hex, dashes allowed)."""
    if kind not in SCOPES:
        raise UsageError(
            f"unknown memory scope {kind!r}", name=str(kind), hint=f"use one of: {', '.join(SCOPES)}"
        )
    if kind == "execution":
        if not isinstance(name, str):
            raise InvalidIdError(f"execution id must be a string, not {type(name).__name__}")
        return Scope(kind, layout.uuid_key(name.strip().lower()).hex())
    validate_name(name, what="memory namespace" if kind == "namespace" else "flow name")
    return Scope(kind, name)


def validate_key(key: object, scope: Scope | None = None) -> str:
    """A memory key: text of 1-255 characters, no control characters, no surrounding white space;
    '/' separates levels, so it may not start or end a key or appear twice in a row; no '\\'."""
    if not isinstance(key, str):
        raise InvalidNameError(
            f"memory key must be a string, not {type(key).__name__}", hint="pass the key as text"
        )
    problem = None
    if not key or not key.strip():
        problem = "is empty"
    elif len(key) > MAX_KEY:
        problem = f"is longer than {MAX_KEY} characters"
    elif refused := refused_character(key):
        problem = f"contains control characters ({refused})"
    elif key != key.strip():
        problem = "has leading or trailing white space"
    elif "\\" in key:
        problem = "contains a backslash (use '/' to separate levels)"
    elif key.startswith("/") or key.endswith("/") or "//" in key:
        problem = "has an empty level (a leading, trailing or doubled '/')"
    if problem:
        raise InvalidNameError(f"memory key {key[:80]!r} {problem}", name=key[:80], hint=_KEY_HINT)
    raw = utf8(key, "memory key")
    # Without a scope: as if with a scope name of one byte, the shortest.
    used = len(raw) + (len(scope.name.encode()) if scope is not None else 1)
    if used > MAX_KEY_BYTES:
        where = f" in {scope.describe()[:120]}" if scope is not None else ""
        raise InvalidNameError(
            f"memory key {key[:80]!r}{where} is too long: key and scope name together take {used}"
            f" bytes of UTF-8, at most {MAX_KEY_BYTES} fit",
            name=key[:80],
            hint="use a shorter key or scope name",
        )
    return key


def record_key(scope: Scope, key: str, version: int) -> bytes:
    return layout.memory_record_key(scope.prefix, key, version)


def parse_record_key(raw: bytes) -> tuple[Scope, str, int]:
    """(scope, key, version) of a record key; CorruptMemoryKeyError (a ValueError) if it is not one."""
    shown = raw[:120]
    try:
        kind, name, key, version = layout.parse_memory_record_key(raw)
    except UnicodeDecodeError:
        problem = f"memory record key {shown!r} is not UTF-8"
    except ValueError as exc:
        problem = f"memory record key {shown!r} {exc}"
    else:
        return Scope(kind, name), key, version
    raise CorruptMemoryKeyError(problem, hint="run `kitaru-store fsck`")


def _versions_range(scope: Scope, key: str) -> tuple[bytes, bytes]:
    return layout.memory_versions_range(scope.prefix, key.encode())


# --- records ---------------------------------------------------------------------------------


class Author(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """Who wrote (or redacted) a version: the OS user and host, and where the call came from.

    ``origin``: "checkpoint" or "flow" (inside a running flow; then ``exec_id``, ``flow`` and, in
    a checkpoint, ``invocation_id`` are set), "client" (the SDK outside a flow), "cli", "store".
    """

    user: str
    origin: str
    host: str | None = None
    exec_id: str | None = None
    flow: str | None = None
    invocation_id: str | None = None


class MemoryRecord(msgspec.Struct, frozen=True, kw_only=True):
    """One version of one key, as stored. Not omit_defaults: format_version is always on disk."""

    format_version: int = MEMORY_FORMAT
    version: int
    op: str  # one of OPS; persisted as plain str so that a newer op reads as data
    written_at: dt.datetime
    written_by: Author
    object_id: str | None = None  # the value's object (None for a deletion and after redaction)
    size: int = 0  # serialized size of the value (kept after redaction)
    serializer: str | None = None
    redacted_at: dt.datetime | None = None
    redacted_by: Author | None = None
    redaction_reason: str | None = None
    bytes_erased: bool | None = None  # whether the redaction deleted the object (None: queued)
    kept_by: tuple[str, ...] = ()  # at redaction: what else referenced the bytes (why they stayed)


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(MemoryRecord)
_version_probe = msgspec.msgpack.Decoder(dict[str, Any])


def encode_record(record: MemoryRecord) -> bytes:
    return _encoder.encode(record)


def decode_record(raw: bytes | memoryview, *, where: str = "") -> MemoryRecord:
    try:
        record = _decoder.decode(raw)
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:  # bad UTF-8 is not a DecodeError
        try:
            version = _version_probe.decode(raw).get("format_version")
        except (msgspec.DecodeError, UnicodeDecodeError):
            version = None
        if isinstance(version, int) and version > MEMORY_FORMAT:
            raise _newer(version, where) from exc
        raise CorruptMemoryRecordError(
            f"memory record {where} cannot be decoded: {exc}".replace("  ", " "),
            hint="run `kitaru-store fsck`",
        ) from exc
    if record.format_version > MEMORY_FORMAT:
        raise _newer(record.format_version, where)
    return record


def _newer(version: int, where: str) -> StoreFormatError:
    return StoreFormatError(
        f"memory record format {version} {where} is newer than this kitaru understands ({MEMORY_FORMAT})",
        hint="upgrade kitaru to read this memory",
    )


def current_user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no USER/LOGNAME and no passwd entry (some containers)
        return f"uid:{os.getuid()}" if hasattr(os, "getuid") else "unknown"


def make_author(
    origin: str,
    *,
    exec_id: str | None = None,
    flow: str | None = None,
    invocation_id: str | None = None,
) -> Author:
    """An author for this process: the OS user and host, plus the given origin and execution."""
    return Author(
        user=current_user(),
        origin=origin,
        host=socket.gethostname() or None,
        exec_id=exec_id,
        flow=flow,
        invocation_id=invocation_id,
    )


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


# --- what callers see ------------------------------------------------------------------------


class _VersionOf:
    """What MemoryVersion and MemoryItem share: the version they name, and loading it."""

    scope: str
    scope_name: str
    key: str
    version: int
    _repo: Repository | None

    def load(self, *, allow_pickle: bool | None = None) -> Any:
        """The value of this version. A deletion is a MemoryKeyNotFoundError, a redaction a
        MemoryRedactedError."""
        assert self._repo is not None
        return self._repo.memory.get(
            Scope(self.scope, self.scope_name), self.key, version=self.version, allow_pickle=allow_pickle
        )


def _plain_author(author: Author) -> dict[str, Any]:
    plain: dict[str, Any] = msgspec.to_builtins(author, builtin_types=(dt.datetime,))
    return plain


@dataclass(frozen=True)
class MemoryVersion(_VersionOf):
    """One version of a memory key: a set (with its value's object) or a deletion (a tombstone).

    A redacted version keeps its record (``written_at``, ``written_by``, ``size``, ``serializer``)
    and gains ``redacted_at``, ``redacted_by`` and ``redaction_reason``; its ``object_id`` is gone.
    """

    scope: str
    scope_name: str
    key: str
    version: int
    op: str  # "set" or "delete"
    written_at: dt.datetime
    written_by: Author
    object_id: str | None
    size: int
    serializer: str | None
    redacted_at: dt.datetime | None = None
    redacted_by: Author | None = None
    redaction_reason: str | None = None
    bytes_erased: bool | None = None
    kept_by: tuple[str, ...] = ()
    _repo: Repository | None = field(default=None, repr=False, compare=False)

    @property
    def deleted(self) -> bool:
        return self.op == "delete"

    @property
    def redacted(self) -> bool:
        return self.redacted_at is not None

    def to_dict(self) -> dict[str, Any]:
        """Plain data (datetimes stay datetimes; the CLI makes them ISO 8601)."""
        return {
            "scope": self.scope,
            "scope_name": self.scope_name,
            "key": self.key,
            "version": self.version,
            "op": self.op,
            "written_at": self.written_at,
            "written_by": _plain_author(self.written_by),
            "object_id": self.object_id,
            "size": self.size,
            "serializer": self.serializer,
            "redacted": self.redacted,
            "redacted_at": self.redacted_at,
            "redacted_by": _plain_author(self.redacted_by) if self.redacted_by else None,
            "redaction_reason": self.redaction_reason,
            "bytes_erased": self.bytes_erased,
            "kept_by": list(self.kept_by),
        }


@dataclass(frozen=True)
class MemoryItem(_VersionOf):
    """A live key (its latest version is a set) with that latest version's details."""

    scope: str
    scope_name: str
    key: str
    version: int
    updated_at: dt.datetime
    updated_by: Author
    object_id: str | None
    size: int
    serializer: str | None
    redacted: bool
    _repo: Repository | None = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "scope": self.scope,
            "scope_name": self.scope_name,
            "key": self.key,
            "version": self.version,
            "updated_at": self.updated_at,
            "updated_by": _plain_author(self.updated_by),
            "object_id": self.object_id,
            "size": self.size,
            "serializer": self.serializer,
            "redacted": self.redacted,
        }


def _version(scope: Scope, key: str, r: MemoryRecord, repo: Repository | None) -> MemoryVersion:
    return MemoryVersion(
        scope=scope.kind,
        scope_name=scope.name,
        key=key,
        version=r.version,
        op=r.op,
        written_at=r.written_at,
        written_by=r.written_by,
        object_id=r.object_id,
        size=r.size,
        serializer=r.serializer,
        redacted_at=r.redacted_at,
        redacted_by=r.redacted_by,
        redaction_reason=r.redaction_reason,
        bytes_erased=r.bytes_erased,
        kept_by=tuple(r.kept_by),
        _repo=repo,
    )


def _item(scope: Scope, key: str, r: MemoryRecord, repo: Repository | None) -> MemoryItem:
    return MemoryItem(
        scope=scope.kind,
        scope_name=scope.name,
        key=key,
        version=r.version,
        updated_at=r.written_at,
        updated_by=r.written_by,
        object_id=r.object_id,
        size=r.size,
        serializer=r.serializer,
        redacted=r.redacted_at is not None,
        _repo=repo,
    )


# --- low-level reads -------------------------------------------------------------------------


def _last(rt: ReadTxn, scope: Scope, key: str) -> tuple[bytes, MemoryRecord] | None:
    lo, hi = _versions_range(scope, key)
    for k, raw in rt.items(layout.MEMORY, lo, hi, reverse=True):
        return k, decode_record(raw, where=f"{scope}/{key}")
    return None


def _find(rt: ReadTxn, scope: Scope, key: str, version: int | None) -> tuple[bytes, MemoryRecord] | None:
    """The record of ``version`` of ``key`` (None: the latest), with its record key, if stored."""
    if version is None:
        return _last(rt, scope, key)
    rkey = record_key(scope, key, version)
    raw = rt.get(layout.MEMORY, rkey)
    return None if raw is None else (rkey, decode_record(raw, where=f"{scope}/{key} version {version}"))


def describe_version(k: bytes) -> str:
    try:
        scope, key, version = parse_record_key(k)
    except (ValueError, UnicodeDecodeError):
        return f"memory record {k!r}"
    return f"memory {scope.describe()} key {key!r} version {version}"


# --- the store's memory ----------------------------------------------------------------------


class MemoryStore:
    """Versioned key-value state in one Repository (``repo.memory``).

    Every call takes a validated :class:`Scope` (``make_scope`` or :meth:`scope`). Writes take
    an :class:`Author`; without one, the OS user with origin "store" is recorded.
    """

    def __init__(self, repo: Repository) -> None:
        self.repo = repo

    @property
    def _kv(self) -> Store:
        return self.repo.kv

    def scope(self, kind: str, name: str, *, must_exist: bool = False) -> Scope:
        """A validated scope; an execution may be given by a unique id prefix (4+ characters).

        A full execution id is taken as it is (memory outlives a deleted execution) unless
        ``must_exist``; a prefix must match a stored execution.
        """
        if kind == "execution" and isinstance(name, str):
            cleaned = name.strip().lower().replace("-", "")
            if must_exist or len(cleaned) != ids.UUID_HEX:
                name = self.repo.resolve_execution(cleaned)
        return make_scope(kind, name)

    # -- writes -----------------------------------------------------------------------------

    def set(
        self,
        scope: Scope,
        key: str,
        value: Any,
        *,
        allow_pickle: bool | None = None,
        author: Author | None = None,
    ) -> MemoryVersion:
        """Store ``value`` as the next version of ``key``. The value's object and the version
        record commit in one transaction; an unchanged value adds a record, not bytes."""
        validate_key(key, scope)
        author = author or make_author("store")
        writer = self.repo.writer()
        try:
            stored = writer.put_value(value, allow_pickle=allow_pickle)
        except BaseException:
            writer.abort()
            raise
        lo, hi = _versions_range(scope, key)
        done: list[MemoryRecord] = []

        def write(wt: WriteTxn) -> None:
            last = next(iter(wt.items(layout.MEMORY, lo, hi, reverse=True)), None)
            version = layout.memory_record_version(last[0]) + 1 if last else 1
            record = MemoryRecord(
                version=version,
                op="set",
                written_at=_now(),
                written_by=author,
                object_id=stored.object_id,
                size=stored.size,
                serializer=stored.serializer,
            )
            wt.put(layout.MEMORY, record_key(scope, key, version), encode_record(record))
            done[:] = [record]  # the commit may run this again (map growth): keep the last run

        writer.on_commit(write)
        writer.commit()
        return _version(scope, key, done[0], self.repo)

    def delete(self, scope: Scope, key: str, *, author: Author | None = None) -> MemoryVersion:
        """Add a tombstone version. A missing or already deleted key is a MemoryKeyNotFoundError."""
        validate_key(key, scope)
        author = author or make_author("store")
        lo, hi = _versions_range(scope, key)

        def txn(wt: WriteTxn) -> tuple[MemoryRecord | None, MemoryRecord | None]:
            last = next(iter(wt.items(layout.MEMORY, lo, hi, reverse=True)), None)
            if last is None:
                return None, None
            previous = decode_record(last[1], where=f"{scope}/{key}")
            if previous.op == "delete":
                return previous, None
            record = MemoryRecord(
                version=previous.version + 1, op="delete", written_at=_now(), written_by=author
            )
            wt.put(layout.MEMORY, record_key(scope, key, record.version), encode_record(record))
            return previous, record

        previous, record = self._kv.update(txn)
        if record is None:
            raise self._not_found(scope, key, deleted=previous)
        return _version(scope, key, record, self.repo)

    def redact(
        self, scope: Scope, key: str, version: int, *, reason: str, author: Author | None = None
    ) -> MemoryVersion:
        """Erase the value of one version; keep its record, marked with who redacted it, when, why.

        One write transaction marks the version redacted and queues its object for erasure
        (gc.queue_erasure); then gc's eraser runs on the queue (gc.erase_queued) and records
        its outcome here. The object is deleted unless something else still references it:
        another memory version, a manifest (entry, checkpoint output, flow result or inputs,
        wait value), a ref (pin, a running writer's in-flight objects), another value's chunk
        index, or a write that references it while it is being erased. Then only this version
        is redacted, ``bytes_erased`` is False and ``kept_by`` says what holds the bytes. Chunks
        shared with other values stay. Should this process die in between, the queue survives
        and the next gc (or redaction) erases the bytes; until then ``bytes_erased`` is None.
        """
        validate_key(key, scope)
        _check_version(version)
        if not isinstance(reason, str) or not reason.strip():
            raise UsageError(
                "a redaction needs a reason", name=key, hint="say why the value is erased: reason='...'"
            )
        author = author or make_author("store")
        rkey = record_key(scope, key, version)
        where = f"{scope}/{key} version {version}"
        from . import gc  # the eraser: with the maintenance code, not at import time

        def txn(wt: WriteTxn) -> tuple[str, MemoryRecord | None]:
            raw = wt.get(layout.MEMORY, rkey)
            if raw is None:
                return "missing", None
            record = decode_record(raw, where=where)
            if record.op != "set":
                return "not-a-set", record
            if record.redacted_at is not None:
                return "redacted", record
            if record.object_id:
                gc.queue_erasure(wt, layout.object_key(record.object_id), rkey)
            redacted = msgspec.structs.replace(
                record,
                object_id=None,
                redacted_at=_now(),
                redacted_by=author,
                redaction_reason=reason.strip(),
                bytes_erased=None if record.object_id else True,
            )
            wt.put(layout.MEMORY, rkey, encode_record(redacted))
            return "ok", redacted

        status, record = self._kv.update(txn)
        if status == "missing":
            raise self._not_found(scope, key, version=version)
        assert record is not None
        if status == "ok" and record.bytes_erased is None:
            gc.erase_queued(self.repo)
            with self._kv.read() as rt:
                raw = rt.get(layout.MEMORY, rkey)
            record = decode_record(raw, where=where) if raw is not None else record
        found = _version(scope, key, record, self.repo)
        if status == "not-a-set":
            raise StateError(
                f"version {version} of memory key {key!r} in {scope.describe()} is a deletion:"
                " it holds no value to redact",
                exec_id=scope.name if scope.kind == "execution" else None,
                name=key,
                hint="redact the versions that hold a value; the key's history lists them",
            )
        if status == "redacted":
            raise MemoryRedactedError(
                found,
                message=f"version {version} of memory key {key!r} in {scope.describe()} was redacted"
                f" already ({found.redaction_reason})",
                hint="a version is redacted once; the key's history shows who redacted it and when",
            )
        return found

    # -- reads ------------------------------------------------------------------------------

    def version(self, scope: Scope, key: str, version: int | None = None) -> MemoryVersion:
        """The record of one version (default: the latest). A missing key, a missing version or a
        latest version that is a deletion is a MemoryKeyNotFoundError; an explicit version that is
        a deletion is returned (``.deleted``)."""
        validate_key(key, scope)
        if version is not None:
            _check_version(version)
        with self._kv.read() as rt:
            found = _find(rt, scope, key, version)
        if found is None:
            raise self._not_found(scope, key, version=version)
        record = found[1]
        if version is None and record.op == "delete":
            raise self._not_found(scope, key, deleted=record)
        return _version(scope, key, record, self.repo)

    def get(
        self, scope: Scope, key: str, *, version: int | None = None, allow_pickle: bool | None = None
    ) -> Any:
        """The value of ``key`` (latest, or ``version``)."""
        found, data = self.read(scope, key, version=version)
        return serialization.deserialize(data, allow_pickle=allow_pickle, object_id=found.object_id)

    def read(
        self, scope: Scope, key: str, *, version: int | None = None
    ) -> tuple[MemoryVersion, bytes | bytearray]:
        """A version and its serialized value, read in one snapshot (so that a concurrent
        redaction is a MemoryRedactedError, never a missing object).

        A missing key or version, or a deletion, is a MemoryKeyNotFoundError.
        """
        validate_key(key, scope)
        if version is not None:
            _check_version(version)
        data: bytes | bytearray | None = None
        with self._kv.read(buffers=True) as rt:
            found = _find(rt, scope, key, version)
            if found is not None and found[1].object_id and found[1].redacted_at is None:
                data = objects.read(rt, layout.object_key(found[1].object_id))
        if found is None:
            raise self._not_found(scope, key, version=version)
        record = found[1]
        if record.op == "delete":
            raise self._not_found(scope, key, deleted=record, version=version)
        found_version = _version(scope, key, record, self.repo)
        if data is None:
            raise MemoryRedactedError(found_version)
        return found_version, data

    def history(self, scope: Scope, key: str) -> list[MemoryVersion]:
        """Every version of ``key``, oldest first: sets, deletions and redacted versions."""
        validate_key(key, scope)
        lo, hi = _versions_range(scope, key)
        out = [
            _version(scope, key, decode_record(raw, where=f"{scope}/{key}"), self.repo)
            for _, raw in self._scan(lo, hi)
        ]
        if not out:
            raise self._not_found(scope, key)
        return out

    def list(
        self, scope: Scope, *, prefix: str | None = None, include_deleted: bool = False
    ) -> list[MemoryItem]:
        """Live keys of a scope in key order (with ``include_deleted``, deleted ones too)."""
        lo = scope.prefix
        if prefix is not None:
            if not isinstance(prefix, str):
                raise InvalidNameError(f"a key prefix must be a string, not {type(prefix).__name__}")
            if refused := refused_character(prefix):
                raise InvalidNameError(
                    f"key prefix {prefix[:80]!r} contains control characters ({refused})", hint=_KEY_HINT
                )
            raw = utf8(prefix, "key prefix")
            if len(raw) + len(scope.name.encode()) > MAX_KEY_BYTES:
                return []  # longer than any key of the scope can be
            lo += raw
        out: list[MemoryItem] = []
        for key, record in self._latest(scope, lo):
            if record.op == "delete" and not include_deleted:
                continue
            out.append(_item(scope, key, record, self.repo))
        return out

    def scopes(self) -> builtins.list[Scope]:
        """Every scope that holds at least one record: namespaces, then flows, then executions,
        each by name."""
        found: list[Scope] = []
        start = b""
        while True:
            with self._kv.read() as rt:
                k = next((k for k, _ in rt.items(layout.MEMORY, start)), None)
            if k is None:
                return sorted(found, key=lambda s: (SCOPES.index(s.kind), s.name))
            try:
                scope, _, _ = parse_record_key(k)
            except (ValueError, UnicodeDecodeError):
                start = layout.key_after(k)  # fsck reports it
                continue
            found.append(scope)
            start = scope.upper

    def scopes_with(self, key: str) -> builtins.list[Scope]:
        """The scopes in which ``key`` is live."""
        out = []
        for scope in self.scopes():
            try:
                validate_key(key, scope)
            except InvalidNameError:
                continue
            with self._kv.read() as rt:
                last = _last(rt, scope, key)
            if last is not None and last[1].op != "delete":
                out.append(scope)
        return out

    def _scan(self, lo: bytes, hi: bytes) -> Iterator[tuple[bytes, bytes]]:
        yield from self._kv.scan(layout.MEMORY, lo, hi)

    def _latest(self, scope: Scope, lo: bytes, batch: int = 512) -> Iterator[tuple[str, MemoryRecord]]:
        """(key, latest record) for every key of ``scope`` whose encoded key starts at ``lo``,
        jumping from key to key (never reading old versions), ``batch`` keys per read transaction."""
        hi = scope.upper
        start = lo
        while True:
            found: list[tuple[str, MemoryRecord]] = []
            with self._kv.read() as rt:
                while len(found) < batch:
                    first = next((k for k, _ in rt.items(layout.MEMORY, start, hi)), None)
                    if first is None or not first.startswith(lo):
                        start = hi
                        break
                    keyb = layout.memory_key_in(first, scope.prefix)
                    key = keyb.decode()
                    upper = layout.memory_versions_range(scope.prefix, keyb)[1]
                    last = next(iter(rt.items(layout.MEMORY, first, upper, reverse=True)))
                    found.append((key, decode_record(last[1], where=f"{scope}/{key}")))
                    start = upper
            yield from found
            if start == hi:
                return

    # -- errors -----------------------------------------------------------------------------

    def _not_found(
        self,
        scope: Scope,
        key: str,
        *,
        version: int | None = None,
        deleted: MemoryRecord | None = None,
    ) -> MemoryKeyNotFoundError:
        where = scope.describe()
        if deleted is not None and deleted.op == "delete":
            if version is not None:
                message = f"version {version} of memory key {key!r} in {where} is a deletion"
            else:
                message = f"memory key {key!r} in {where} was deleted at version {deleted.version}"
            return MemoryKeyNotFoundError(
                message,
                key=key,
                scope=scope,
                version=version,
                deleted_version=deleted.version,
                hint="the key's history lists every version"
                + (
                    f"; versions 1-{deleted.version - 1} still hold the earlier values"
                    if deleted.version > 2
                    else "; version 1 still holds the value before it"
                    if deleted.version == 2
                    else ""
                ),
            )
        if version is not None:
            try:
                versions = self.history(scope, key)
            except MemoryKeyNotFoundError:
                versions = []
            if versions:
                return MemoryKeyNotFoundError(
                    f"memory key {key!r} in {where} has no version {version}",
                    key=key,
                    scope=scope,
                    version=version,
                    hint=f"its versions are 1-{versions[-1].version}",
                )
        live = [item.key for item in self.list(scope)]
        similar = difflib.get_close_matches(key, live, n=5, cutoff=0.6)
        similar += [k for k in live if k.startswith(key + "/") and k not in similar][: 5 - len(similar)]
        elsewhere = [s for s in self.scopes_with(key) if s != scope]
        hints = []
        if similar:
            hints.append("similar keys here: " + ", ".join(repr(k) for k in similar))
        elif not live:
            hints.append(f"{where} holds no keys")
        if elsewhere:
            hints.append("the key exists in " + ", ".join(s.describe() for s in elsewhere[:5]))
        if not hints:
            hints.append("list the keys with list() or `kitaru-store memory ls`")
        return MemoryKeyNotFoundError(
            f"no memory key {key!r} in {where}",
            key=key,
            scope=scope,
            version=version,
            similar=similar,
            hint="; ".join(hints),
        )


def _check_version(version: object) -> None:
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise UsageError(
            f"memory version {version!r} is not a version number",
            hint="versions are whole numbers from 1; the key's history lists them",
        )


def _capped(descriptions: list[str]) -> list[str]:
    if len(descriptions) <= MAX_KEPT_BY:
        return descriptions
    return [*descriptions[: MAX_KEPT_BY - 1], f"... and {len(descriptions) - MAX_KEPT_BY + 1} more"]


# --- gc and fsck -----------------------------------------------------------------------------


def record_erasure(
    wt: WriteTxn, record_keys: Sequence[bytes], *, erased: bool, kept_by: Sequence[str]
) -> None:
    """gc's eraser, in its deleting transaction: record the outcome in each redacted version
    that waits for it (``bytes_erased`` None). Others are left alone: a key that names no such
    record (damaged, or settled already) changes nothing."""
    for rkey in record_keys:
        raw = wt.get(layout.MEMORY, rkey)
        if raw is None:
            continue
        try:
            record = decode_record(raw, where=describe_version(rkey))
        except KitaruError:
            continue  # fsck reports it
        if record.redacted_at is None or record.bytes_erased is not None:
            continue
        settled = msgspec.structs.replace(record, bytes_erased=erased, kept_by=tuple(_capped(list(kept_by))))
        wt.put(layout.MEMORY, rkey, encode_record(settled))


def record_problems(rt: ReadTxn, k: bytes, raw: bytes | memoryview) -> builtins.list[dict[str, Any]]:
    """fsck, for one record read in ``rt``: an undecodable record or key, or a version naming an
    object that is not stored in the same snapshot. Keyword arguments for ``fsck.Problem``.
    Redacted versions name no object."""
    try:
        scope, key, version = parse_record_key(k)
    except (ValueError, UnicodeDecodeError) as exc:
        return [{"kind": "bad-memory-record", "detail": str(exc)}]
    exec_id = scope.name if scope.kind == "execution" else None
    where = f"memory {scope.describe()} key {key!r} version {version}"
    try:
        record = decode_record(raw, where=f"{scope}/{key} version {version}")
    except KitaruError as exc:
        return [{"kind": "bad-memory-record", "detail": exc.message, "exec_id": exec_id, "name": key}]
    found: builtins.list[dict[str, Any]] = []
    if record.version != version:
        found.append(
            {
                "kind": "bad-memory-record",
                "detail": f"{where} holds version {record.version}",
                "exec_id": exec_id,
                "name": key,
            }
        )
    object_id = reachability.memory_root(raw)  # the roots gc keeps: any version naming an object
    if object_id and not rt.has(layout.OBJECTS, layout.object_key(object_id)):
        found.append(
            {
                "kind": "missing-object",
                "detail": f"{where} names an object that is not stored",
                "object_id": object_id,
                "exec_id": exec_id,
                "name": key,
            }
        )
    return found


__all__ = [
    "DEFAULT_NAMESPACE",
    "SCOPES",
    "Author",
    "CorruptMemoryRecordError",
    "MemoryItem",
    "MemoryKeyNotFoundError",
    "MemoryRecord",
    "MemoryRedactedError",
    "MemoryStore",
    "MemoryVersion",
    "Scope",
    "make_author",
    "make_scope",
    "validate_key",
]
