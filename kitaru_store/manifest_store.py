"""How an execution's manifest is stored (format 2): a small head plus one record per part.

The value of an execution's key in the ``manifests`` sub-database is its **head**: the scalar
fields of its Manifest (status, times, failure, metadata, owner, ...) and the counters below. Each
entry, checkpoint record and wait is a **part record** of its own in the ``parts`` sub-database,
under ``exec key (16) + family (1) + position (8, big-endian)``. Every head and part record is a
MessagePack map sealed with its own checksum (checksum.py). A commit therefore writes the head,
the parts it adds or changes, and the index keys: nothing that grows with the flow.

Order. A Manifest's tuples list the parts in position order. Positions come from counters in
the head (``next_entry`` ...) and are never reused, so an appended part sorts last:

* ``add_entry`` appends; ``replace_entry`` deletes the earlier entries of the same (name, kind,
  invocation) and appends the new one (as the whole-manifest rewrite did);
* ``set_checkpoint`` overwrites the record of its invocation id at its position (in place), or
  appends; ``set_wait`` does the same by wait name.

Finding "the record of this invocation" without reading the others takes an identity index in
the same sub-database: ``exec key + family letter (lower case) + BLAKE2b-128 of the identity +
position -> b""``. A lookup scans that short prefix and reads the records it names, which are
compared with the identity in full (a digest collision costs a read, never a wrong match).

Format 1 stored the whole Manifest as the value of the execution's key. Such values still read
(``load``); a write converts the execution in its committing transaction, and ``migrate``
converts every one. Bounds: the head records the encoded size of its parts, and a commit that
would take an execution past manifests.MAX_MANIFEST_SIZE (the cap a remote's manifest is read
with) is refused with ManifestTooLargeError, so that its whole-manifest form always fits.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import msgspec

from . import checksum, layout, nesting
from . import manifests as mf
from .errors import (
    ExecutionNotFoundError,
    IdCollisionError,
    KitaruError,
    ManifestTooLargeError,
)
from .manifests import CheckpointRecord, Entry, Manifest, WaitRecord

if TYPE_CHECKING:
    from .kv import ReadTxn, Store, WriteTxn

# Keys: layout.py (PARTS and the part key functions).
MANIFESTS = layout.MANIFESTS
PARTS = layout.PARTS
ENTRY, CHECKPOINT, WAIT = layout.PART_ENTRY, layout.PART_CHECKPOINT, layout.PART_WAIT
FAMILIES = layout.PART_FAMILIES
_POS = layout.POSITION_BYTES
part_key = layout.part_key
family_range = layout.part_family_range
exec_range = layout.part_exec_range
identity_prefix = layout.part_identity_prefix
key_position = layout.part_position


# --- records ------------------------------------------------------------------------------------


class Head(msgspec.Struct, frozen=True, kw_only=True):
    """The stored head of an execution: its Manifest's scalar fields, and how to find its parts.

    The counters have no default: a whole (format 1) manifest never decodes as a head.
    """

    format_version: int = mf.MANIFEST_FORMAT
    exec_id: str
    flow_name: str
    status: str
    started_at: dt.datetime
    ended_at: dt.datetime | None = None
    replay_of: str | None = None
    failure: mf.Failure | None = None
    metadata: dict[str, Any] = {}
    result_object_id: str | None = None
    input_object_id: str | None = None
    owner: mf.Owner | None = None
    cancel_request: mf.CancelRequest | None = None
    n_entries: int
    n_checkpoints: int
    n_waits: int
    next_entry: int  # the position the next appended entry takes (positions are never reused)
    next_checkpoint: int
    next_wait: int
    size: int  # the encoded size of the part records, checksum pairs left out
    rev: int  # random, new at every commit: equal heads (checksums) mean an unchanged execution


# The Manifest fields a head holds as they are, and a change may set.
_NOT_SCALAR = ("format_version", "exec_id", "entries", "checkpoints", "waits")
SCALARS = tuple(f for f in Manifest.__struct_fields__ if f not in _NOT_SCALAR)
_COUNT = {ENTRY: "n_entries", CHECKPOINT: "n_checkpoints", WAIT: "n_waits"}
_NEXT = {ENTRY: "next_entry", CHECKPOINT: "next_checkpoint", WAIT: "next_wait"}
_WHAT = {ENTRY: "entry", CHECKPOINT: "checkpoint record", WAIT: "wait record"}
_PLURAL = {ENTRY: "entries", CHECKPOINT: "checkpoint records", WAIT: "wait records"}

_Part = Entry | CheckpointRecord | WaitRecord


class _Version(msgspec.Struct):
    format_version: int = 0


_version_decoder = msgspec.msgpack.Decoder(_Version)
_head_decoder = msgspec.msgpack.Decoder(Head)
_part_decoders: dict[bytes, msgspec.msgpack.Decoder[Any]] = {
    ENTRY: msgspec.msgpack.Decoder(Entry),
    CHECKPOINT: msgspec.msgpack.Decoder(CheckpointRecord),
    WAIT: msgspec.msgpack.Decoder(WaitRecord),
}


_array_decoders: dict[bytes, msgspec.msgpack.Decoder[Any]] = {
    ENTRY: msgspec.msgpack.Decoder(list[Entry]),
    CHECKPOINT: msgspec.msgpack.Decoder(list[CheckpointRecord]),
    WAIT: msgspec.msgpack.Decoder(list[WaitRecord]),
}


def identity(family: bytes, part: Any) -> bytes:
    """What makes a part the one a later write replaces (see the module docstring)."""
    if family == ENTRY:
        return mf.encode_identity((part.name, part.kind, part.invocation_id))
    name: str = part.invocation_id if family == CHECKPOINT else part.name
    return name.encode()


def _trees(family: bytes, part: Any) -> Iterator[Any]:
    if family == WAIT:
        yield from (part.schema, part.json_schema or {}, part.metadata, part.answered_by)
    elif part.metadata:
        yield part.metadata


def seal(obj: msgspec.Struct, trees: Iterator[Any], exec_id: str) -> bytes:
    """A head or part record as stored: its map, checked to nest at most nesting.MAX_DEPTH
    levels (NestingTooDeepError) so that any reader can decode it, plus the checksum pair."""
    for tree in trees:
        nesting.require_within(tree, f"metadata of execution {exec_id}", exec_id=exec_id)
    try:
        body = mf.encode(obj)
    except RecursionError:
        body = nesting.on_fresh_stack(lambda: mf.encode(obj))
    return checksum.seal(body)


def _version(view: bytes | memoryview) -> int:
    """The format_version of a stored map (whatever else it holds, at any depth)."""
    return nesting.on_fresh_stack(lambda: _version_decoder.decode(view)).format_version


def decode_stored(view: bytes | memoryview, exec_id: str) -> Head | Manifest:
    """An execution's stored value: a Head (format 2), or the whole Manifest of format 1."""
    tag = checksum.checked_tag(view)
    if tag is None:  # damaged, or a format-1 manifest written before checksums
        return mf.decode_manifest(view, exec_id=exec_id)
    try:
        version = _version(view)
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise mf.corrupt(exec_id, f"cannot be decoded: {exc}") from None
    if version > mf.MANIFEST_FORMAT:
        raise mf.newer_format(version, exec_id)
    if version <= mf.LAST_WHOLE_FORMAT:
        return mf.decode_manifest(view, exec_id=exec_id, checked=True)
    try:
        head = nesting.on_fresh_stack(lambda: _head_decoder.decode(view))
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise mf.corrupt(exec_id, f"has a head that cannot be decoded: {exc}") from None
    if head.exec_id != exec_id:
        raise mf.corrupt(exec_id, f"has the head of execution {head.exec_id}")
    return head


def decode_part(view: bytes | memoryview, family: bytes, pos: int, exec_id: str) -> Any:
    what = f"{_WHAT[family]} {pos}"
    if checksum.checked_tag(view) is None:
        raise mf.corrupt(exec_id, f"has a damaged {what}: its checksum does not match")
    try:
        return nesting.on_fresh_stack(lambda: _part_decoders[family].decode(view))
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise mf.corrupt(exec_id, f"has a {what} that cannot be decoded: {exc}") from None


def _stored_size(record: bytes | memoryview) -> int:
    return len(record) - checksum.SIZE


# --- reading ------------------------------------------------------------------------------------


def as_manifest(head: Head, parts: dict[bytes, list[Any]] | None = None) -> Manifest:
    """The Manifest of ``head``; without ``parts``, one whose part tuples are empty."""
    got = parts or {}
    return Manifest(
        format_version=head.format_version,
        exec_id=head.exec_id,
        entries=tuple(got.get(ENTRY, ())),
        checkpoints=tuple(got.get(CHECKPOINT, ())),
        waits=tuple(got.get(WAIT, ())),
        **{f: getattr(head, f) for f in SCALARS},
    )


def head_only(m: Manifest) -> Manifest:
    return msgspec.structs.replace(m, entries=(), checkpoints=(), waits=())


def read_parts(rt: ReadTxn, exec_key: bytes, family: bytes, exec_id: str) -> tuple[list[int], list[Any]]:
    """One family's part records of an execution, in order, with their positions.

    Each record's checksum is verified on its own; the records are then decoded in one call, as
    the elements of one MessagePack array (their maps concatenated after an array header: the
    checksum pair is an unknown field there, and ignored). Should that fail, each record is
    decoded on its own, to name the one that does not decode.
    """
    keys: list[bytes] = []
    records: list[bytes] = []
    for key, value in rt.items(PARTS, *family_range(exec_key, family)):
        keys.append(key)
        records.append(value)
    size = len(exec_key) + 1 + _POS
    if any(len(k) != size for k in keys):
        bad_key = next(k for k in keys if len(k) != size)
        raise mf.corrupt(exec_id, f"has a {_WHAT[family]} under a malformed key {bad_key.hex()}")
    positions = [int.from_bytes(k[-_POS:], "big") for k in keys]
    bad = checksum.first_damaged(records)
    if bad is not None:
        raise mf.corrupt(
            exec_id, f"has a damaged {_WHAT[family]} {positions[bad]}: its checksum does not match"
        )
    array = b"\xdd" + len(records).to_bytes(4, "big") + b"".join(records)
    try:
        return positions, nesting.on_fresh_stack(lambda: _array_decoders[family].decode(array))
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
        for pos, record in zip(positions, records, strict=True):
            decode_part(record, family, pos, exec_id)  # raises for the record that does not decode
        raise


def assemble(rt: ReadTxn, exec_key: bytes, head: Head) -> tuple[Manifest, dict[bytes, list[int]]]:
    """The whole Manifest of a format-2 execution, and the positions of its parts; every record
    read in ``rt`` (one snapshot), checked against the head's counts."""
    parts: dict[bytes, list[Any]] = {}
    positions: dict[bytes, list[int]] = {}
    for family in FAMILIES:
        positions[family], parts[family] = read_parts(rt, exec_key, family, head.exec_id)
        want = getattr(head, _COUNT[family])
        if len(parts[family]) != want:
            raise mf.corrupt(
                head.exec_id,
                f"has {len(parts[family])} stored {_PLURAL[family]} where its head counts {want}",
            )
    return as_manifest(head, parts), positions


def load(rt: ReadTxn, exec_key: bytes, exec_id: str, *, parts: bool = True) -> Manifest:
    """The stored manifest of an execution (ExecutionNotFoundError if none); ``parts=False``:
    its head only (the part tuples empty), which reads one record whatever the flow's length."""
    view = rt.get_view(MANIFESTS, exec_key)
    if view is None:
        raise ExecutionNotFoundError(exec_id)
    return from_view(rt, exec_key, view, exec_id, parts=parts)


def from_view(
    rt: ReadTxn, exec_key: bytes, view: memoryview, exec_id: str, *, parts: bool = True
) -> Manifest:
    stored = decode_stored(view, exec_id)
    if isinstance(stored, Manifest):
        return stored if parts else head_only(stored)
    return assemble(rt, exec_key, stored)[0] if parts else as_manifest(stored)


def damaged_parts(rt: ReadTxn, exec_key: bytes, exec_id: str) -> list[str]:
    """What is wrong with each damaged part record of a format-2 execution (fsck reports each)."""
    view = rt.get_view(MANIFESTS, exec_key)
    try:
        head = decode_stored(view, exec_id) if view is not None else None
    except KitaruError:
        return []
    if not isinstance(head, Head):
        return []
    found: list[str] = []
    for family in FAMILIES:
        lo, hi = family_range(exec_key, family)
        for key, value in rt.items(PARTS, lo, hi):
            try:
                decode_part(value, family, key_position(key), exec_id)
            except KitaruError as exc:
                found.append(exc.message)
    return found


def walk(kv: Store, *, batch: int = 256) -> Iterator[tuple[bytes, Manifest | KitaruError]]:
    """Every execution's manifest (or the error that keeps it from being read), in key order;
    each batch of executions read in one short read transaction (one deleted since it was
    listed is left out)."""
    for chunk in kv.key_batches(MANIFESTS, batch=batch):
        found: list[tuple[bytes, Manifest | KitaruError]] = []
        with kv.read(buffers=True) as rt:
            for key in chunk:
                try:
                    found.append((key, load(rt, key, key.hex())))
                except ExecutionNotFoundError:
                    continue
                except KitaruError as exc:
                    found.append((key, exc))
        yield from found


# --- writing ------------------------------------------------------------------------------------


def new_rev() -> int:
    return int.from_bytes(os.urandom(8), "big") >> 1


@dataclass
class Staged:
    """One execution inside a write transaction: its head in memory, its parts written through
    to the transaction as each change is applied (the transaction reads its own writes).

    ``finish`` writes the head, the summary and the index keys. A format-1 execution is
    converted to head and parts first, in the same transaction.
    """

    wt: WriteTxn
    exec_id: str
    key: bytes = b""
    head: Head | None = None
    before: tuple[dt.datetime, str] | None = None  # started_at and flow name as stored (indexes)
    _positions: dict[bytes, list[int]] = field(default_factory=dict)
    # The head's counters as this transaction changes them (``head`` holds the scalars): kept
    # apart, so that adding a part does not copy the head.
    _counts: dict[bytes, int] = field(default_factory=dict)
    _next: dict[bytes, int] = field(default_factory=dict)
    _size: int = 0

    def __post_init__(self) -> None:
        self.key = layout.uuid_key(self.exec_id)
        view = self.wt.get_view(MANIFESTS, self.key)
        if view is None:
            return
        stored = decode_stored(view, self.exec_id)
        self.before = (stored.started_at, stored.flow_name)
        if isinstance(stored, Manifest):
            self._convert(stored)
        else:
            self._adopt(stored)

    def _adopt(self, head: Head) -> None:
        self.head = head
        self._counts = {f: getattr(head, _COUNT[f]) for f in FAMILIES}
        self._next = {f: getattr(head, _NEXT[f]) for f in FAMILIES}
        self._size = head.size

    def _synced(self) -> Head:
        """The head with this transaction's counters."""
        return msgspec.structs.replace(
            self.current(),
            size=self._size,
            **{_COUNT[f]: n for f, n in self._counts.items()},
            **{_NEXT[f]: n for f, n in self._next.items()},
        )

    # -- reading the execution as it is now (this transaction's changes included)

    def current(self) -> Head:
        if self.head is None:
            raise ExecutionNotFoundError(self.exec_id)
        return self.head

    def manifest(self) -> Manifest | None:
        """The whole manifest as it is now (reads every part: for the rare changes only)."""
        if self.head is None:
            return None
        m, self._positions = assemble(self.wt, self.key, self._synced())
        return m

    def _find(self, family: bytes, ident: bytes) -> list[tuple[int, Any]]:
        """The positions and records of the parts of ``family`` whose identity is ``ident``."""
        lo = identity_prefix(self.key, family, ident)
        out = []
        for k, _ in list(self.wt.items(PARTS, *layout.part_identity_range(lo))):
            pos = key_position(k)
            view = self.wt.get_view(PARTS, part_key(self.key, family, pos))
            if view is None:
                raise mf.corrupt(self.exec_id, f"indexes a missing {_WHAT[family]} {pos}")
            part = decode_part(view, family, pos, self.exec_id)
            if identity(family, part) == ident:
                out.append((pos, part))
        return out

    # -- changes

    def create(self, m: Manifest) -> None:
        self._adopt(_head_of(m))

    def update(self, **changes: Any) -> None:
        self.head = msgspec.structs.replace(self.current(), **changes)

    def _identity_key(self, family: bytes, part: Any, pos: int) -> bytes:
        return identity_prefix(self.key, family, identity(family, part)) + pos.to_bytes(_POS, "big")

    def _append(self, family: bytes, part: Any) -> None:
        pos = self._next[family]
        record = seal(part, _trees(family, part), self.exec_id)
        self.wt.put(PARTS, part_key(self.key, family, pos), record)
        self.wt.put(PARTS, self._identity_key(family, part, pos), b"")
        self._next[family] = pos + 1
        self._counts[family] += 1
        self._size += _stored_size(record)

    def _remove(self, family: bytes, pos: int, part: Any) -> None:
        pk = part_key(self.key, family, pos)
        old = self.wt.get_view(PARTS, pk)
        self.wt.delete(PARTS, pk)
        self.wt.delete(PARTS, self._identity_key(family, part, pos))
        self._counts[family] -= 1
        self._size -= _stored_size(old) if old is not None else 0

    def _overwrite(self, family: bytes, pos: int, part: Any) -> None:
        """Replace the part at ``pos`` by one of the same identity (in place)."""
        pk = part_key(self.key, family, pos)
        old = self.wt.get_view(PARTS, pk)
        record = seal(part, _trees(family, part), self.exec_id)
        self.wt.put(PARTS, pk, record)
        self._size += _stored_size(record) - (_stored_size(old) if old is not None else 0)

    def add_entries(self, batch: dict[object, Entry]) -> None:
        """Apply a writer's batch of entries: each keyed by a (name, kind, invocation) triple
        replaces the stored entries of that triple; then all are appended, in batch order."""
        self.current()
        removed: set[str] = set()
        stored = self._counts[ENTRY] > 0  # else there is nothing to replace: no lookups
        for k in batch:
            if stored and isinstance(k, tuple):
                for pos, old in self._find(ENTRY, mf.encode_identity(k)):
                    self._remove(ENTRY, pos, old)
                    removed.add(old.artifact_id)
        for entry in batch.values():
            self._append(ENTRY, entry)
            if entry.artifact_id in removed:
                removed.discard(entry.artifact_id)  # indexed to this execution already
            else:
                self._index_artifact(entry.artifact_id)
        for artifact_id in removed:
            self.wt.delete(layout.ARTIFACTS, layout.uuid_key(artifact_id))

    def set_parts(self, family: bytes, records: Iterator[Any]) -> None:
        """Insert or replace checkpoint records (by invocation id) or waits (by name)."""
        self.current()
        for record in records:
            found = self._find(family, identity(family, record))
            if found:
                self._overwrite(family, found[0][0], record)
            else:
                self._append(family, record)

    def replace_whole(self, new: Manifest) -> None:
        """Make the stored manifest ``new`` (a generic change, or an import), writing only the
        difference: the parts each family shares with the stored ones as a common prefix stay."""
        old = self.manifest()
        if old is None:
            self.create(new)
            old = head_only(new)
            self._positions = {f: [] for f in FAMILIES}
        else:
            self.update(**{f: getattr(new, f) for f in SCALARS})
        for family, olds, news in (
            (ENTRY, old.entries, new.entries),
            (CHECKPOINT, old.checkpoints, new.checkpoints),
            (WAIT, old.waits, new.waits),
        ):
            same = 0
            for a, b in zip(olds, news, strict=False):
                if a is not b and a != b:
                    break
                same += 1
            for pos, part in zip(self._positions[family][same:], olds[same:], strict=True):
                self._remove(family, pos, part)
            for part in news[same:]:
                self._append(family, part)
        before = {e.artifact_id for e in old.entries}
        after = {e.artifact_id for e in new.entries}
        for artifact_id in after - before:
            self._index_artifact(artifact_id)
        for artifact_id in before - after:  # replaced entries leave the index
            self.wt.delete(layout.ARTIFACTS, layout.uuid_key(artifact_id))

    def _index_artifact(self, artifact_id: str) -> None:
        # Artifact ids are unique in a store: checked here, in the committing transaction, so
        # that no import (nor a concurrent local write) takes over another's id.
        akey = layout.uuid_key(artifact_id)
        if not self.wt.put(layout.ARTIFACTS, akey, self.key, overwrite=False):
            owner = self.wt.get(layout.ARTIFACTS, akey)
            if owner is not None and owner != self.key:
                raise artifact_taken(self.exec_id, artifact_id, owner.hex())

    def _convert(self, m: Manifest) -> None:
        """Adopt a format-1 manifest: write its parts (its artifact index stays as it is)."""
        self._adopt(_head_of(m))
        for family, parts in ((ENTRY, m.entries), (CHECKPOINT, m.checkpoints), (WAIT, m.waits)):
            for part in parts:
                self._append(family, part)

    def finish(self) -> None:
        """Write the head, the summary and the index keys (the time and flow index move with a
        changed start time or flow name)."""
        head = msgspec.structs.replace(self._synced(), rev=new_rev(), format_version=mf.MANIFEST_FORMAT)
        encoded = seal(head, iter((head.metadata,)), self.exec_id)
        total = head.size + len(encoded)
        if total > mf.MAX_MANIFEST_SIZE:
            raise ManifestTooLargeError(
                f"the manifest of execution {self.exec_id} would take {total} bytes, more than a"
                f" manifest may ({mf.MAX_MANIFEST_SIZE}); nothing of this change was stored",
                exec_id=self.exec_id,
                hint="keep large data in values (kitaru.save), not in metadata or names",
            )
        self.wt.put(MANIFESTS, self.key, encoded)
        tkey = layout.summary_key(head.started_at, self.key)
        flow_key = layout.flow_key(head.flow_name, tkey)
        if self.before is not None:
            old_tkey = layout.summary_key(self.before[0], self.key)
            old_flow_key = layout.flow_key(self.before[1], old_tkey)
            if old_tkey != tkey:
                self.wt.delete(layout.EXEC_TIME, old_tkey)
            if old_flow_key != flow_key:
                self.wt.delete(layout.EXEC_FLOW, old_flow_key)
        self.wt.put(layout.EXEC_TIME, tkey, mf.encode_summary(summary(head)))
        self.wt.put(layout.EXEC_FLOW, flow_key, b"")
        self._adopt(head)


def _head_of(m: Manifest) -> Head:
    """The head of ``m`` without its parts (which are appended to it one by one)."""
    return Head(
        exec_id=m.exec_id,
        n_entries=0,
        n_checkpoints=0,
        n_waits=0,
        next_entry=0,
        next_checkpoint=0,
        next_wait=0,
        size=0,
        rev=0,
        **{f: getattr(m, f) for f in SCALARS},
    )


def summary(head: Head) -> mf.ExecutionSummary:
    return mf.ExecutionSummary(
        exec_id=head.exec_id,
        flow_name=head.flow_name,
        status=head.status,
        started_at=head.started_at,
        ended_at=head.ended_at,
        artifact_count=head.n_entries,
        checkpoint_count=head.n_checkpoints,
        replay_of=head.replay_of,
    )


def artifact_taken(exec_id: str, artifact_id: str, owner: str) -> IdCollisionError:
    return IdCollisionError(
        f"artifact id {artifact_id} of execution {exec_id} belongs to execution {owner} in this"
        f" store; execution {exec_id} was not stored",
        exec_id=exec_id,
        artifact_id=artifact_id,
        owner=owner,
        hint="artifact ids are unique in a store: the other copy was made outside kitaru or"
        " edited by hand; delete one of the two executions to keep the other",
    )


def delete(wt: WriteTxn, exec_key: bytes, exec_id: str, check: Callable[[Manifest], None] | None) -> None:
    """Delete an execution: its head, every part and identity key, and its index keys."""
    m = load(wt, exec_key, exec_id)
    if check is not None:
        check(m)
    tkey = layout.summary_key(m.started_at, exec_key)
    lo, hi = exec_range(exec_key)
    for k in [k for k, _ in wt.items(PARTS, lo, hi)]:
        wt.delete(PARTS, k)
    wt.delete(MANIFESTS, exec_key)
    wt.delete(layout.EXEC_TIME, tkey)
    wt.delete(layout.EXEC_FLOW, layout.flow_key(m.flow_name, tkey))
    for e in m.entries:
        wt.delete(layout.ARTIFACTS, layout.uuid_key(e.artifact_id))


# --- migration ----------------------------------------------------------------------------------


@dataclass
class MigrationReport:
    converted: list[str] = field(default_factory=list)  # execution ids converted to format 2
    current: int = 0  # executions of format 2 already
    damaged: list[tuple[str, str]] = field(default_factory=list)  # (execution id, what is wrong)


def is_whole(view: bytes | memoryview) -> bool:
    """Whether a stored value is a format-1 whole manifest (damaged ones count: to be tried)."""
    if checksum.checked_tag(view) is None:
        return True
    try:
        return _version(view) <= mf.LAST_WHOLE_FORMAT
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
        return True


def migrate(kv: Store) -> MigrationReport:
    """Convert every format-1 execution to head and parts, each in a transaction of its own; a
    damaged one is left as it is and reported. Running it again converts nothing."""
    report = MigrationReport()
    for key, value in kv.scan(MANIFESTS):
        if not is_whole(value):
            report.current += 1
            continue
        exec_id = key.hex()

        def txn(wt: WriteTxn, exec_id: str = exec_id) -> bool:
            view = wt.get_view(MANIFESTS, layout.uuid_key(exec_id))
            if view is None or not is_whole(view):
                return False  # deleted or converted by another writer meanwhile
            staged = Staged(wt, exec_id)
            staged.finish()
            return True

        try:
            if kv.update(txn):
                report.converted.append(exec_id)
            else:
                report.current += 1
        except KitaruError as exc:
            report.damaged.append((exec_id, exc.message))
    return report
