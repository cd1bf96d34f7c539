"""How an execution's manifest is stored (format 2): a small head plus part records.

The value of an execution's key in the ``manifests`` sub-database is its **head**: the scalar
fields of its Manifest (status, times, failure, metadata, owner, ...) and the counters below, a
MessagePack map sealed with a checksum pair bound to the execution's key (checksum.py). The
entries, checkpoint records and waits are **part records** in the ``parts`` sub-database: the parts
of one family that one commit adds are one record, under ``exec key (16) + family (1) + position
(8, big-endian)``, a MessagePack array (array32 header) followed by the BLAKE3-256 of key + array.
So a commit writes the head, one record per family it adds to (and the records it changes), and
the index keys: nothing that grows with the flow, and one hash and one put however many parts.
A record copied under another key (another position, another execution) does not verify.

Order. A Manifest's tuples list the parts in record-position order, and in order within a
record. Positions come from counters in the head (``next_entry`` ...) and are never reused:

* ``add_entry`` appends; ``replace_entry`` removes the earlier entries of the same (name, kind,
  invocation) and appends the new one (as the whole-manifest rewrite did);
* ``set_checkpoint`` overwrites the part of its invocation id where it is (in place), or
  appends; ``set_wait`` does the same by wait name.

Finding "the part of this identity" without reading the others takes a group index in the same
sub-database: ``exec key + family letter (lower case) + BLAKE2b-128 of the group + position ->
b""`` for each group a record holds. A part's group is its invocation id (an entry of none: its
whole identity; a wait: its name): a checkpoint's saves make one group key per commit. A lookup
scans that short prefix and reads the records it names, whose parts are compared with the
identity in full (a digest collision costs a read, never a wrong match).

Format 1 stored the whole Manifest as the value of the execution's key. Such values still read
(``load``); a write converts the execution in its committing transaction, and ``migrate``
converts every one. Bounds: the head records the encoded size of its parts, and a commit that
would take an execution past manifests.MAX_MANIFEST_SIZE (the cap a remote's manifest is read
with) is refused with ManifestTooLargeError, so that its whole form always fits.
"""

from __future__ import annotations

import datetime as dt
import itertools
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import msgspec

from . import checksum, ids, layout, nesting
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
part_key = layout.part_key
family_range = layout.part_family_range
exec_range = layout.part_exec_range
group_prefix = layout.part_group_prefix
key_position = layout.part_position

DIGEST = 32  # the BLAKE3-256 that ends a part record
_ARRAY32 = b"\xdd"  # a record's array header: 0xdd, then the number of parts (4 bytes, big-endian)
_HEADER = 5


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
    n_entries: int  # parts of each family
    n_checkpoints: int
    n_waits: int
    next_entry: int  # the position the next record of entries takes (positions are never reused)
    next_checkpoint: int
    next_wait: int
    size: int  # the encoded size of the part records, digests left out
    rev: int  # random, new at every commit: equal heads (checksums) mean an unchanged execution


# The Manifest fields a head holds as they are, and a change may set.
_NOT_SCALAR = ("format_version", "exec_id", "entries", "checkpoints", "waits")
SCALARS = tuple(f for f in Manifest.__struct_fields__ if f not in _NOT_SCALAR)
_COUNT = {ENTRY: "n_entries", CHECKPOINT: "n_checkpoints", WAIT: "n_waits"}
_NEXT = {ENTRY: "next_entry", CHECKPOINT: "next_checkpoint", WAIT: "next_wait"}
_WHAT = {ENTRY: "entry record", CHECKPOINT: "checkpoint record", WAIT: "wait record"}
_PLURAL = {ENTRY: "entries", CHECKPOINT: "checkpoint records", WAIT: "wait records"}


class _Version(msgspec.Struct):
    format_version: int = 0


_encoder = msgspec.msgpack.Encoder()
_version_decoder = msgspec.msgpack.Decoder(_Version)
_head_decoder = msgspec.msgpack.Decoder(Head)
_array_decoders: dict[bytes, msgspec.msgpack.Decoder[Any]] = {
    ENTRY: msgspec.msgpack.Decoder(list[Entry]),
    CHECKPOINT: msgspec.msgpack.Decoder(list[CheckpointRecord]),
    WAIT: msgspec.msgpack.Decoder(list[WaitRecord]),
}


def identity(family: bytes, part: Any) -> Any:
    """What makes a part the one a later write replaces (see the module docstring)."""
    if family == ENTRY:
        return (part.name, part.kind, part.invocation_id)
    name: str = part.invocation_id if family == CHECKPOINT else part.name
    return name


def group(family: bytes, ident: Any) -> bytes:
    """The group an identity is indexed under: an entry's invocation id (none: its identity)."""
    if family != ENTRY:
        return str(ident).encode()
    inv = ident[2]
    return b"i" + inv.encode() if inv is not None else b"t" + mf.encode_identity(ident)


def _groups(family: bytes, parts: Iterable[Any]) -> set[bytes]:
    """The groups of ``parts`` (one for all the entries of one invocation)."""
    if family != ENTRY:
        return {group(family, identity(family, p)) for p in parts}
    parts = list(parts)
    invs = {p.invocation_id for p in parts}
    out = {b"i" + inv.encode() for inv in invs if inv is not None}
    if None in invs:
        out.update(group(ENTRY, identity(ENTRY, p)) for p in parts if p.invocation_id is None)
    return out


def _trees(family: bytes, part: Any) -> Iterator[Any]:
    if family == WAIT:
        yield from (part.schema, part.json_schema or {}, part.metadata, part.answered_by)
    elif part.metadata:
        yield part.metadata


def _encode(obj: Any) -> bytes:
    try:
        return _encoder.encode(obj)
    except RecursionError:
        return nesting.on_fresh_stack(lambda: _encoder.encode(obj))


def seal_head(head: Head, exec_key: bytes) -> bytes:
    """A head as stored: its map, checked to nest at most nesting.MAX_DEPTH levels
    (NestingTooDeepError) so that any reader can decode it, plus the checksum pair bound to
    ``exec_key``."""
    nesting.require_within(head.metadata, f"metadata of execution {head.exec_id}", exec_id=head.exec_id)
    return checksum.seal(_encode(head), exec_key)


def seal_record(key: bytes, parts: list[Any]) -> bytes:
    """A part record as stored under ``key``: array32 of ``parts``, then BLAKE3(key + array)."""
    body = _encode(parts)
    n = len(parts)
    skip = 1 if n < 16 else 3 if n < 0x10000 else 5
    out = bytearray(_ARRAY32)
    out += n.to_bytes(4, "big")
    out += memoryview(body)[skip:]
    out += checksum.keyed_digest(key, out)
    return bytes(out)


def record_checks(key: bytes, value: bytes | memoryview) -> bool:
    """Whether a part record verifies under ``key``."""
    view = memoryview(value)
    return (
        len(view) >= _HEADER + DIGEST
        and view[0] == _ARRAY32[0]
        and checksum.keyed_digest(key, view[:-DIGEST]) == view[-DIGEST:]
    )


def _version(view: bytes | memoryview) -> int:
    """The format_version of a stored map (whatever else it holds, at any depth)."""
    return nesting.on_fresh_stack(lambda: _version_decoder.decode(view)).format_version


def _probe(view: bytes | memoryview) -> int | None:
    try:
        return _version(view)
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
        return None


def stored_tag(view: bytes | memoryview, exec_key: bytes) -> bytes | None:
    """The checksum of an execution's stored value if it verifies (a head bound to ``exec_key``,
    or a format-1 manifest), else None: equal tags mean the same stored value."""
    return checksum.checked_tag(view, exec_key) or checksum.checked_tag(view)


def decode_stored(view: bytes | memoryview, exec_key: bytes, exec_id: str) -> Head | Manifest:
    """An execution's stored value: a Head (format 2), or the whole Manifest of format 1."""
    if checksum.checked_tag(view, exec_key) is None:
        # Format 1 (its checksum covers the value alone), a manifest from before checksums, or damage.
        version = _probe(view)
        if checksum.checked_tag(view) is not None:
            if version is not None and version > mf.MANIFEST_FORMAT:
                raise mf.newer_format(version, exec_id)
            if version is not None and version > mf.LAST_WHOLE_FORMAT:
                raise mf.corrupt(exec_id, "has a head sealed without its key")
        elif version is not None and mf.LAST_WHOLE_FORMAT < version <= mf.MANIFEST_FORMAT:
            raise mf.corrupt(
                exec_id, "has a damaged head: its checksum does not match (or it is another execution's)"
            )
        return mf.decode_manifest(view, exec_id=exec_id)
    version = _probe(view)
    if version is None:
        raise mf.corrupt(exec_id, "has a head that cannot be decoded")
    if version > mf.MANIFEST_FORMAT:
        raise mf.newer_format(version, exec_id)
    if version <= mf.LAST_WHOLE_FORMAT:
        raise mf.corrupt(exec_id, f"has a format-{version} manifest sealed as a head")
    try:
        head = nesting.on_fresh_stack(lambda: _head_decoder.decode(view))
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise mf.corrupt(exec_id, f"has a head that cannot be decoded: {exc}") from None
    if head.exec_id != exec_id:
        raise mf.corrupt(exec_id, f"has the head of execution {head.exec_id}")
    return head


def decode_record(key: bytes, view: bytes | memoryview, family: bytes, exec_id: str) -> list[Any]:
    """The parts of one record, verified under its key."""
    what = f"{_WHAT[family]} {key_position(key)}"
    if not record_checks(key, view):
        raise mf.corrupt(exec_id, f"has a damaged {what}: its checksum does not match")
    try:
        parts: list[Any] = nesting.on_fresh_stack(lambda: _array_decoders[family].decode(view[:-DIGEST]))
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise mf.corrupt(exec_id, f"has a {what} that cannot be decoded: {exc}") from None
    return parts


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


# Where a family's parts are stored: (record position, number of parts), in order.
Layout = list[tuple[int, int]]


def read_parts(
    rt: ReadTxn, exec_key: bytes, family: bytes, exec_id: str, next_pos: int
) -> tuple[Layout, list[Any]]:
    """One family's parts of an execution, in order, with the layout of their records."""
    return parts_of(list(rt.items(PARTS, *family_range(exec_key, family))), family, exec_id, next_pos)


Row = tuple[bytes, bytes | memoryview]


Decoders = dict[bytes, "msgspec.msgpack.Decoder[Any]"]


def parts_of(
    rows: list[Row], family: bytes, exec_id: str, next_pos: int, decoders: Decoders | None = None
) -> tuple[Layout, list[Any]]:
    """One family's parts from its records ``rows`` (key, value) in key order, with their layout.

    Each record is verified under its key; the records are then decoded in one call, as one
    MessagePack array (their elements concatenated after one array header). Should that fail,
    each record is decoded on its own, to name the one that does not decode. ``decoders``: a
    decoder per family other than the full one (gc's, which reads the roots only).
    """
    if not rows:
        return [], []
    decode = (decoders or _array_decoders)[family].decode
    if len(rows) == 1:  # the usual case, taken fast: anything amiss takes the path below
        key, record = rows[0]
        pos = key_position(key)
        if len(key) == layout.PART_KEY_BYTES and pos < next_pos and record_checks(key, record):
            try:
                return [(pos, int.from_bytes(record[1:_HEADER], "big"))], decode(record[:-DIGEST])
            except (msgspec.DecodeError, UnicodeDecodeError, RecursionError, OverflowError):
                pass
    what = _WHAT[family]
    for key, record in rows:
        if len(key) != layout.PART_KEY_BYTES:
            raise mf.corrupt(exec_id, f"has a {what} under a malformed key {key.hex()}")
        pos = key_position(key)
        if pos >= next_pos:
            raise mf.corrupt(exec_id, f"has a {what} {pos} beyond its head's counter ({next_pos})")
        if not record_checks(key, record):
            raise mf.corrupt(exec_id, f"has a damaged {what} {pos}: its checksum does not match")
    counts = [int.from_bytes(r[1:_HEADER], "big") for _, r in rows]
    where = [(key_position(k), n) for (k, _), n in zip(rows, counts, strict=True)]
    array = _ARRAY32 + sum(counts).to_bytes(4, "big") + b"".join([r[_HEADER:-DIGEST] for _, r in rows])
    try:
        return where, nesting.on_fresh_stack(lambda: decode(array))
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError, OverflowError):
        for key, record in rows:
            decode_record(key, record, family, exec_id)  # raises for the record that does not decode
        raise mf.corrupt(exec_id, f"has {_PLURAL[family]} that cannot be decoded together") from None


class PartKeys:
    """One execution key's keys in PARTS, as one ordered pass reads them: its records by family,
    its group keys by family (upper case), and how many keys there are in all (keys of no family
    included). ``rows`` and ``group_keys`` give a family's, in key order."""

    __slots__ = ("groups", "n", "records")

    def __init__(self) -> None:
        self.records: dict[bytes, list[Row]] = {}
        self.groups: dict[bytes, list[bytes]] = {}
        self.n = 0

    def add(self, key: bytes, value: bytes | memoryview) -> None:
        self.n += 1
        letter = layout.part_family(key)
        if letter in _RECORD_LETTERS:
            self.records.setdefault(letter, []).append((key, value))
        elif letter in _GROUP_LETTERS:
            self.groups.setdefault(letter.upper(), []).append(key)

    def rows(self, family: bytes) -> list[Row]:
        return self.records.get(family, [])

    def group_keys(self, family: bytes) -> list[bytes]:
        return self.groups.get(family, [])


_RECORD_LETTERS = frozenset(FAMILIES)
_GROUP_LETTERS = frozenset(f.lower() for f in FAMILIES)


def part_keys(rt: ReadTxn, exec_key: bytes) -> PartKeys:
    """Every key of ``exec_key`` in PARTS, read by one range scan."""
    found = PartKeys()
    for key, value in rt.view_items(PARTS, *exec_range(exec_key)):
        found.add(key, value)
    return found


def assemble(
    rt: ReadTxn, exec_key: bytes, head: Head, keys: PartKeys | None = None
) -> tuple[Manifest, dict[bytes, Layout]]:
    """The whole Manifest of a format-2 execution, and the layout of its records; every record
    read in ``rt`` (one snapshot; or taken from ``keys``, read in one), checked against the
    head's counters."""
    if keys is None:
        keys = PartKeys()
        for family in FAMILIES:
            keys.records[family] = list(rt.items(PARTS, *family_range(exec_key, family)))
    parts, where = checked_parts(head, keys)
    return as_manifest(head, parts), where


def checked_parts(
    head: Head, keys: PartKeys, decoders: Decoders | None = None
) -> tuple[dict[bytes, list[Any]], dict[bytes, Layout]]:
    """The parts of the records in ``keys`` by family, and their layout, checked against the
    head's counters (``decoders``: as in ``parts_of``)."""
    parts: dict[bytes, list[Any]] = {}
    where: dict[bytes, Layout] = {}
    for family in FAMILIES:
        next_pos = getattr(head, _NEXT[family])
        where[family], parts[family] = parts_of(keys.rows(family), family, head.exec_id, next_pos, decoders)
        want = getattr(head, _COUNT[family])
        if len(parts[family]) != want:
            raise mf.corrupt(
                head.exec_id,
                f"has {len(parts[family])} stored {_PLURAL[family]} where its head counts {want}",
            )
    return parts, where


def load(rt: ReadTxn, exec_key: bytes, exec_id: str, *, parts: bool = True) -> Manifest:
    """The stored manifest of an execution (ExecutionNotFoundError if none); ``parts=False``:
    its head only (the part tuples empty), which reads one record whatever the flow's length."""
    view = rt.get_view(MANIFESTS, exec_key)
    if view is None:
        raise ExecutionNotFoundError(exec_id)
    return from_view(rt, exec_key, view, exec_id, parts=parts)


def from_view(
    rt: ReadTxn,
    exec_key: bytes,
    view: memoryview,
    exec_id: str,
    *,
    parts: bool = True,
    keys: PartKeys | None = None,
) -> Manifest:
    """The manifest whose stored value is ``view``; ``keys``: its keys in PARTS, read already
    in ``rt`` (joined), else read here."""
    stored = decode_stored(view, exec_key, exec_id)
    if isinstance(stored, Manifest):
        return stored if parts else head_only(stored)
    return assemble(rt, exec_key, stored, keys)[0] if parts else as_manifest(stored)


# What fsck reports of the keys in ``parts`` that no reader looks at (kinds as fsck names them).
ORPHAN = "orphan-part"  # nothing reads it: a group key naming no record, keys of no head
INDEX = "index-mismatch"  # a lookup would miss a part, or read a record in vain
_NO_CRASH = "no crash leaves one (every commit is one transaction): written or edited outside kitaru"


def checked(
    rt: ReadTxn, exec_key: bytes, view: memoryview, exec_id: str, keys: PartKeys | None = None
) -> tuple[Manifest, list[tuple[str, str]]]:
    """The manifest (as from_view reads it) and what is wrong with the keys in ``parts`` that
    no reader looks at, as (kind, detail): group keys naming no record or a record without that
    group, records missing from the group index, and part keys of a format-1 execution.
    ``keys``: the execution's keys in PARTS, read in the snapshot of ``rt`` (else read here)."""
    if keys is None:
        keys = part_keys(rt, exec_key)
    stored = decode_stored(view, exec_key, exec_id)
    if isinstance(stored, Manifest):
        n = keys.n
        return stored, [(ORPHAN, f"{n} part keys of a format-1 manifest: {_NO_CRASH}")] if n else []
    m, where = assemble(rt, exec_key, stored, keys)
    return m, group_problems(exec_key, m, where, keys)


def group_problems(
    exec_key: bytes, m: Manifest, where: dict[bytes, Layout], keys: PartKeys
) -> list[tuple[str, str]]:
    """What ``checked`` reports of the group keys of a format-2 execution (its manifest ``m``,
    its records' layout ``where`` and its keys in PARTS)."""
    problems: list[tuple[str, str]] = []
    for family, parts in ((ENTRY, m.entries), (CHECKPOINT, m.checkpoints), (WAIT, m.waits)):
        want: set[bytes] = set()
        i = 0
        for pos, n in where[family]:
            groups = _groups(family, parts[i : i + n])
            want.update(layout.part_group_key(group_prefix(exec_key, family, g), pos) for g in groups)
            i += n
        have = set(keys.group_keys(family))
        if have == want:
            continue
        stored_at = {pos for pos, _ in where[family]}
        for k in sorted(have - want):
            pos = key_position(k)
            if pos in stored_at:
                problems.append(
                    (INDEX, f"a group key names {_WHAT[family]} {pos}, which holds no part of its group")
                )
            else:
                problems.append(
                    (ORPHAN, f"a group key names {_WHAT[family]} {pos}, which is not stored: {_NO_CRASH}")
                )
        for k in sorted(want - have):
            problems.append((INDEX, f"{_WHAT[family]} {key_position(k)} is missing from the group index"))
    return problems


def orphans(rt: ReadTxn, exec_key: bytes) -> list[tuple[str, str]]:
    """The keys of ``parts`` under ``exec_key`` while it has no head, as checked reports them."""
    if rt.has(MANIFESTS, exec_key):
        return []
    n = sum(1 for _ in rt.items(PARTS, *exec_range(exec_key)))
    return (
        [(ORPHAN, f"{n} part records and group keys of an execution with no head: {_NO_CRASH}")] if n else []
    )


def damaged_parts(rt: ReadTxn, exec_key: bytes, exec_id: str) -> list[str]:
    """What is wrong with each damaged part record of a format-2 execution (fsck reports each)."""
    view = rt.get_view(MANIFESTS, exec_key)
    try:
        head = decode_stored(view, exec_key, exec_id) if view is not None else None
    except KitaruError:
        return []
    if not isinstance(head, Head):
        return []
    found: list[str] = []
    for family in FAMILIES:
        lo, hi = family_range(exec_key, family)
        for key, value in rt.items(PARTS, lo, hi):
            try:
                decode_record(key, value, family, exec_id)
            except KitaruError as exc:
                found.append(exc.message)
    return found


def walk(kv: Store, *, batch: int = 256) -> Iterator[tuple[bytes, Manifest | KitaruError]]:
    """Every execution's manifest (or the error that keeps it from being read), in key order,
    from the ordered pass over heads and parts (``joined``: a batch of executions per short
    read transaction, each assembled from the keys that pass read, not read again)."""
    for rt, rows in joined(kv, batch=batch):
        found: list[tuple[bytes, Manifest | KitaruError]] = []
        for key, head, keys in rows:
            if head is None:
                continue  # part keys of no head: fsck's to report, gc's to keep
            try:
                found.append((key, from_view(rt, key, head, key.hex(), keys=keys)))
            except KitaruError as exc:
                found.append((key, exc))
        yield from found


def salvage(keys: PartKeys, decoders: Decoders | None = None) -> dict[bytes, list[Any]]:
    """The parts of every record in ``keys`` that decodes, checksum or not (gc's roots of part
    records with no head: conservative, each record on its own, the others passed over)."""
    out: dict[bytes, list[Any]] = {}
    for family in FAMILIES:
        rows = keys.rows(family)
        decoder = (decoders or _array_decoders)[family]
        got: list[Any] = []
        out[family] = got
        for _, record in rows:
            try:
                got += _decode_with(decoder, record[:-DIGEST])
            except (msgspec.DecodeError, UnicodeDecodeError, RecursionError, OverflowError):
                continue
    return out


def _decode_with(decoder: msgspec.msgpack.Decoder[Any], data: bytes | memoryview) -> list[Any]:
    parts: list[Any] = nesting.on_fresh_stack(lambda: decoder.decode(data))
    return parts


# One execution as ``joined`` reads it: its key, its head (None: part keys of no head), its keys in PARTS.
Joined = tuple[bytes, memoryview | None, PartKeys]


def joined(kv: Store, *, batch: int = 256) -> Iterator[tuple[ReadTxn, list[Joined]]]:
    """Every execution key of MANIFESTS or PARTS, in key order, with its head and its keys in
    PARTS: one ordered pass over each database, merged (both are in execution-key order).

    Each batch (``batch`` heads, and every key of PARTS from where the batch before stopped up
    to the last of them) is read in one short read transaction, which stays open until the next
    batch is asked for (its views are valid until then; write nothing meanwhile): an execution's
    head and parts are always seen in one snapshot. A head under a key that is not an execution
    key gets the keys of its own range, read apart. Part keys of no head come with
    None: each execution key in the batch's range of PARTS whose head it does not hold.
    """
    from .kv import prefix_stop

    m_at: bytes | None = b""
    p_at: bytes | None = b""
    while m_at is not None:
        with kv.read(buffers=True) as rt:
            heads = list(itertools.islice(rt.view_items(MANIFESTS, m_at), batch))
            if len(heads) < batch:
                m_at = p_hi = None  # the last batch: the rest of PARTS too
            else:
                last = heads[-1][0]
                m_at = last + b"\x00"
                p_hi = prefix_stop(layout.part_exec_key(last))
            found: dict[bytes, PartKeys] = {}
            if p_at is not None:
                for key, value in rt.view_items(PARTS, p_at, p_hi):
                    ek = layout.part_exec_key(key)
                    keys = found.get(ek)
                    if keys is None:
                        keys = found[ek] = PartKeys()
                    keys.add(key, value)
            p_at = p_hi
            out: list[Joined] = []
            for key, view in heads:
                if len(key) != ids.UUID_BYTES:  # written outside kitaru
                    out.append((key, view, part_keys(rt, key)))
                    continue
                keys = found.pop(key, None)
                out.append((key, view, keys if keys is not None else PartKeys()))
            out.extend((ek, None, keys) for ek, keys in found.items())
            out.sort(key=lambda j: j[0])
            yield rt, out


# --- writing ------------------------------------------------------------------------------------


def new_rev() -> int:
    return int.from_bytes(os.urandom(8), "big") >> 1


@dataclass
class _Record:
    """A stored record read by a Staged: its parts (None where removed), as a change leaves them."""

    parts: list[Any]
    groups: set[bytes]  # as stored
    size: int  # as stored, digest left out
    dirty: bool = False


# Where a part is: (record position, index in it), or (None, index) for one this commit adds.
Loc = tuple[int | None, int]


@dataclass
class Staged:
    """One execution inside a write transaction: its head and its changed parts in memory until
    ``finish``, which writes one record per family for the parts this commit adds, the stored
    records it changed, the head, the summary and the index keys. A format-1 execution is
    converted to head and parts first, in the same transaction.
    """

    wt: WriteTxn
    exec_id: str
    key: bytes = b""
    head: Head | None = None
    before: tuple[dt.datetime, str] | None = None  # started_at and flow name as stored (indexes)
    # The head's counters as this transaction changes them (``head`` holds the scalars): kept
    # apart, so that adding a part does not copy the head.
    _counts: dict[bytes, int] = field(default_factory=dict)
    _next: dict[bytes, int] = field(default_factory=dict)
    _size: int = 0
    _new: dict[bytes, list[Any]] = field(default_factory=dict)  # parts this commit adds (None: removed)
    _new_index: dict[bytes, dict[Any, list[int]]] = field(default_factory=dict)  # built on a lookup
    _records: dict[tuple[bytes, int], _Record] = field(default_factory=dict)
    _tables: dict[tuple[bytes, bytes], dict[Any, list[Loc]]] = field(default_factory=dict)
    _where: dict[bytes, Layout] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.key = layout.uuid_key(self.exec_id)
        self._new = {f: [] for f in FAMILIES}
        view = self.wt.get_view(MANIFESTS, self.key)
        if view is None:
            return
        stored = decode_stored(view, self.key, self.exec_id)
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
        self._flush()
        m, self._where = assemble(self.wt, self.key, self._synced())
        return m

    def _record(self, family: bytes, pos: int) -> _Record:
        rec = self._records.get((family, pos))
        if rec is None:
            view = self.wt.get_view(PARTS, part_key(self.key, family, pos))
            if view is None:
                raise mf.corrupt(self.exec_id, f"indexes a missing {_WHAT[family]} {pos}")
            parts = decode_record(part_key(self.key, family, pos), view, family, self.exec_id)
            rec = _Record(parts, _groups(family, parts), len(view) - DIGEST)
            self._records[(family, pos)] = rec
        return rec

    def _table(self, family: bytes, grp: bytes) -> dict[Any, list[Loc]]:
        """The stored parts of one group, by identity (read once per commit)."""
        table = self._tables.get((family, grp))
        if table is None:
            table = self._tables[(family, grp)] = {}
            if self._next[family]:  # else no record is stored: nothing to scan
                prefix = group_prefix(self.key, family, grp)
                for k, _ in list(self.wt.items(PARTS, *layout.part_group_range(prefix))):
                    pos = key_position(k)
                    for i, part in enumerate(self._record(family, pos).parts):
                        if part is None:
                            continue
                        ident = identity(family, part)
                        if group(family, ident) == grp:
                            table.setdefault(ident, []).append((pos, i))
        return table

    def _find(self, family: bytes, ident: Any) -> list[Loc]:
        """Where the parts of ``family`` whose identity is ``ident`` are."""
        found = list(self._table(family, group(family, ident)).get(ident, ()))
        if self._new[family]:
            index = self._new_index.get(family)
            if index is None:
                index = self._new_index[family] = {}
                for i, part in enumerate(self._new[family]):
                    if part is not None:
                        index.setdefault(identity(family, part), []).append(i)
            found += [(None, i) for i in index.get(ident, ())]
        return found

    # -- changes

    def create(self, m: Manifest) -> None:
        self._adopt(head_of(m))

    def update(self, **changes: Any) -> None:
        self.head = msgspec.structs.replace(self.current(), **changes)

    def _append(self, family: bytes, part: Any) -> None:
        for tree in _trees(family, part):
            nesting.require_within(tree, f"metadata of execution {self.exec_id}", exec_id=self.exec_id)
        new = self._new[family]
        index = self._new_index.get(family)
        if index is not None:
            index.setdefault(identity(family, part), []).append(len(new))
        new.append(part)
        self._counts[family] += 1

    def _parts_at(self, family: bytes, loc: Loc) -> list[Any]:
        pos, _ = loc
        if pos is None:
            return self._new[family]
        rec = self._record(family, pos)
        rec.dirty = True
        return rec.parts

    def _remove(self, family: bytes, loc: Loc) -> Any:
        pos, i = loc
        parts = self._parts_at(family, loc)
        part = parts[i]
        parts[i] = None
        ident = identity(family, part)
        if pos is None:
            index = self._new_index.get(family)
            if index is not None:
                index[ident].remove(i)
        else:
            table = self._tables.get((family, group(family, ident)))
            if table is not None:
                table[ident].remove(loc)
        self._counts[family] -= 1
        return part

    def _overwrite(self, family: bytes, loc: Loc, part: Any) -> None:
        """Replace the part at ``loc`` by one of the same identity (in place)."""
        for tree in _trees(family, part):
            nesting.require_within(tree, f"metadata of execution {self.exec_id}", exec_id=self.exec_id)
        self._parts_at(family, loc)[loc[1]] = part

    def add_entries(self, batch: dict[object, Entry]) -> None:
        """Apply a writer's batch of entries: each keyed by a (name, kind, invocation) triple
        replaces the stored entries of that triple; then all are appended, in batch order."""
        self.current()
        removed: set[str] = set()
        if self._next[ENTRY] or self._new[ENTRY]:  # else there is nothing to replace: no lookups
            for k in batch:
                if isinstance(k, tuple):
                    for loc in self._find(ENTRY, k):
                        removed.add(self._remove(ENTRY, loc).artifact_id)
        new = self._new[ENTRY]
        index = self._new_index.get(ENTRY)
        for entry in batch.values():
            if entry.metadata:
                nesting.require_within(
                    entry.metadata, f"metadata of execution {self.exec_id}", exec_id=self.exec_id
                )
            if index is not None:
                index.setdefault(identity(ENTRY, entry), []).append(len(new))
            new.append(entry)
            if entry.artifact_id in removed:
                removed.discard(entry.artifact_id)  # indexed to this execution already
            else:
                self._index_artifact(entry.artifact_id)
        self._counts[ENTRY] += len(batch)
        for artifact_id in removed:
            self.wt.delete(layout.ARTIFACTS, layout.uuid_key(artifact_id))

    def set_parts(self, family: bytes, records: Iterator[Any]) -> None:
        """Insert or replace checkpoint records (by invocation id) or waits (by name)."""
        self.current()
        for record in records:
            found = self._find(family, identity(family, record))
            if found:
                self._overwrite(family, found[0], record)
            else:
                self._append(family, record)

    def replace_whole(self, new: Manifest) -> None:
        """Make the stored manifest ``new`` (a generic change, or an import), writing only the
        difference: the parts each family shares with the stored ones as a common prefix stay."""
        old = self.manifest()
        if old is None:
            self.create(new)
            old = head_only(new)
            self._where = {f: [] for f in FAMILIES}
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
            i = 0
            for pos, n in self._where[family]:
                for j in range(n):
                    if i >= same:
                        self._remove(family, (pos, j))
                    i += 1
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
        """Adopt a format-1 manifest: its parts become one record per family (its artifact index
        stays as it is)."""
        self._adopt(head_of(m))
        for family, parts in ((ENTRY, m.entries), (CHECKPOINT, m.checkpoints), (WAIT, m.waits)):
            for part in parts:
                self._append(family, part)

    def _put_groups(self, family: bytes, groups: Iterable[bytes], pos: int, *, delete: bool = False) -> None:
        for g in groups:
            gkey = layout.part_group_key(group_prefix(self.key, family, g), pos)
            if delete:
                self.wt.delete(PARTS, gkey)
            else:
                self.wt.put(PARTS, gkey, b"")

    def _flush(self) -> None:
        """Write the changed records and one new record per family, and forget what was read."""
        for (family, pos), rec in self._records.items():
            if not rec.dirty:
                continue
            pkey = part_key(self.key, family, pos)
            parts = [p for p in rec.parts if p is not None]
            if parts:
                value = seal_record(pkey, parts)
                self.wt.put(PARTS, pkey, value)
                self._size += len(value) - DIGEST - rec.size
            else:
                self.wt.delete(PARTS, pkey)
                self._size -= rec.size
            self._put_groups(family, rec.groups - _groups(family, parts), pos, delete=True)
        for family in FAMILIES:
            parts = [p for p in self._new[family] if p is not None]
            if not parts:
                continue
            pos = self._next[family]
            pkey = part_key(self.key, family, pos)
            value = seal_record(pkey, parts)
            self.wt.put(PARTS, pkey, value)
            self._size += len(value) - DIGEST
            self._put_groups(family, _groups(family, parts), pos)
            self._next[family] = pos + 1
        self._new = {f: [] for f in FAMILIES}
        self._new_index.clear()
        self._records.clear()
        self._tables.clear()

    def finish(self) -> None:
        """Write the parts, the head, the summary and the index keys (the time and flow index
        move with a changed start time or flow name)."""
        self._flush()
        head = msgspec.structs.replace(self._synced(), rev=new_rev(), format_version=mf.MANIFEST_FORMAT)
        encoded = seal_head(head, self.key)
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


def head_of(m: Manifest) -> Head:
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
    """Delete an execution: its head, every part record and group key, and its index keys."""
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


def is_whole(view: bytes | memoryview, exec_key: bytes) -> bool:
    """Whether the stored value of ``exec_key`` is a format-1 whole manifest (damaged ones
    count: to be tried)."""
    if checksum.checked_tag(view, exec_key) is not None:
        return False
    if checksum.checked_tag(view) is None:
        return True
    version = _probe(view)
    return version is None or version <= mf.LAST_WHOLE_FORMAT


def migrate(kv: Store) -> MigrationReport:
    """Convert every format-1 execution to head and parts, each in a transaction of its own; a
    damaged one is left as it is and reported. Running it again converts nothing."""
    report = MigrationReport()
    for key, value in kv.scan(MANIFESTS):
        if not is_whole(value, key):
            report.current += 1
            continue
        exec_id = key.hex()

        def txn(wt: WriteTxn, exec_id: str = exec_id) -> bool:
            view = wt.get_view(MANIFESTS, layout.uuid_key(exec_id))
            if view is None or not is_whole(view, layout.uuid_key(exec_id)):
                return False  # deleted or converted by another writer meanwhile
            Staged(wt, exec_id).finish()
            return True

        try:
            if kv.update(txn):
                report.converted.append(exec_id)
            else:
                report.current += 1
        except KitaruError as exc:
            report.damaged.append((exec_id, exc.message))
    return report
