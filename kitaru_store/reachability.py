"""What the store keeps: the one definition of a root and of a reachable object.

gc (what it must not sweep), fsck (what must be stored) and memory redaction (what else holds a
value's bytes) all read it from here (docs/design.md, 10.3):

* **roots** are the object ids named by
  - every manifest (``manifest_roots``): each entry's object, each checkpoint output, the flow
    result and inputs, each wait record's value;
  - every ref (``ref_roots``): pins, SDK refs, and the in-flight lists of running writers, except
    an in-flight list older than ``INFLIGHT_MAX_AGE`` (a writer that died long ago);
  - every memory version that names an object (``memory_root``; a redacted version names none);
* **reachable** is a root, or a chunk listed by the chunk index of a reachable object.

``keep`` is what every write that makes an existing object reachable runs in its own write
transaction: the object and every chunk it needs must be stored then, or the write fails.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

import msgspec

from . import ids, layout, objects
from . import manifest_store as ms
from . import manifests as mf
from .errors import KitaruError, ObjectNotFoundError

if TYPE_CHECKING:
    from .kv import ReadTxn, Store, WriteTxn

# A writer that flushed objects early names them in an in-flight ref until it commits. One that
# died leaves the ref behind; after this long it is taken for dead and its objects are garbage.
INFLIGHT_MAX_AGE = dt.timedelta(days=7)

# What holds a root, as (kind, label): kinds of manifest fields, in the order manifest_roots names them.
ENTRY, CHECKPOINT_OUTPUT, RESULT, INPUTS, WAIT_VALUE = (
    "entry",
    "checkpoint output",
    "result",
    "inputs",
    "wait",
)


def manifest_roots(m: mf.Manifest) -> list[tuple[str, str, str]]:
    """(object id, kind, label) for every object ``m`` keeps alive. Lineage (``inputs``),
    ``reused_from``, ``replay_of`` and metadata are not roots (design.md 7.4)."""
    return _roots(m.entries, m.checkpoints, m.waits, m.result_object_id, m.input_object_id)


def _roots(
    entries: Iterable[mf.Entry | _EntryRoot],
    checkpoints: Iterable[mf.CheckpointRecord | _CheckpointRoot],
    waits: Iterable[mf.WaitRecord | _WaitRoot],
    result: str | None = None,
    inputs: str | None = None,
) -> list[tuple[str, str, str]]:
    out = [(e.object_id, ENTRY, e.name) for e in entries]
    out += [
        (c.output_object_id, CHECKPOINT_OUTPUT, c.invocation_id) for c in checkpoints if c.output_object_id
    ]
    if result:
        out.append((result, RESULT, ""))
    if inputs:
        out.append((inputs, INPUTS, ""))
    out += [(w.value_object_id, WAIT_VALUE, w.name) for w in waits if w.value_object_id]
    return out


class _EntryRoot(msgspec.Struct):
    """What ``_roots`` reads of an entry (the rest of a record is not decoded by gc's mark)."""

    object_id: str
    name: str


class _CheckpointRoot(msgspec.Struct):
    invocation_id: str
    output_object_id: str | None = None


class _WaitRoot(msgspec.Struct):
    name: str
    value_object_id: str | None = None


_ROOT_DECODERS: ms.Decoders = {
    ms.ENTRY: msgspec.msgpack.Decoder(list[_EntryRoot]),
    ms.CHECKPOINT: msgspec.msgpack.Decoder(list[_CheckpointRoot]),
    ms.WAIT: msgspec.msgpack.Decoder(list[_WaitRoot]),
}


def execution_roots(rt: ReadTxn, exec_key: bytes, head: memoryview | None, keys: ms.PartKeys) -> list[str]:
    """The object ids one execution of ``ms.joined`` keeps alive: its manifest's roots, its
    head and records decoded once (the records only as far as their roots), checked as
    ``ms.load`` checks them (checksums, positions, counts: KitaruError if they do not hold);
    for part records with no head, the roots of every record that decodes (conservative)."""
    if head is None:
        parts = ms.salvage(keys, _ROOT_DECODERS)
        return [r[0] for r in _roots(parts[ms.ENTRY], parts[ms.CHECKPOINT], parts[ms.WAIT])]
    stored = ms.decode_stored(head, exec_key, exec_key.hex())
    if isinstance(stored, mf.Manifest):
        return [r[0] for r in manifest_roots(stored)]
    parts, _ = ms.checked_parts(stored, keys, _ROOT_DECODERS)
    roots = _roots(
        parts[ms.ENTRY], parts[ms.CHECKPOINT], parts[ms.WAIT], stored.result_object_id, stored.input_object_id
    )
    return [r[0] for r in roots]


def describe_manifest_root(kind: str, label: str) -> str:
    """How fsck and redaction name one of ``manifest_roots``: "entry 'x'", "result", ..."""
    if kind in (RESULT, INPUTS):
        return kind
    if kind == ENTRY:
        return f"entry {label!r}"
    if kind == CHECKPOINT_OUTPUT:
        return f"checkpoint {label!r} output"
    return f"wait {label!r} value"


def inflight_stale_before(now_ns: int | None = None) -> int:
    """The stamp before which an in-flight ref is stale (its writer taken for dead)."""
    return (objects.now_ns() if now_ns is None else now_ns) - int(INFLIGHT_MAX_AGE.total_seconds() * 1e9)


def stale_inflight(ref_name: bytes, before_ns: int) -> bool:
    """Whether a ref is the in-flight list of a writer that flushed before ``before_ns``."""
    stamp = layout.inflight_stamp(ref_name)
    return stamp is not None and stamp < before_ns  # an unreadable stamp is not ours to judge: kept


def ref_roots(name: bytes, raw: bytes | memoryview, stale_before: int) -> list[bytes]:
    """The object keys a ref keeps alive: its value cut in 32-byte ids; none for a stale in-flight
    ref or an erasure queue record. (A tail shorter than 32 bytes is kept as it is: it matches no
    object, and fsck reports it.)"""
    if stale_inflight(name, stale_before) or layout.erase_target(name) is not None:
        return []
    return layout.split_object_keys(raw)


def describe_ref(name: bytes) -> str:
    label = name.decode(errors="replace")
    if name.startswith(layout.PIN_PREFIX):
        return f"pin {label[len(layout.PIN_PREFIX) :]!r}"
    if name.startswith(layout.INFLIGHT_PREFIX):
        return "a running writer's uncommitted objects"
    return f"ref {label!r}"


class _RootProbe(msgspec.Struct):
    """Just the object id of a memory record, of any format version (a root is never missed)."""

    object_id: str | None = None


_probe = msgspec.msgpack.Decoder(_RootProbe)


def memory_root(raw: bytes | memoryview) -> str | None:
    """The object id a memory version keeps alive (None: a deletion, a redacted version).
    Raises msgspec.DecodeError for a record that is not one."""
    return _probe.decode(raw).object_id


# --- walking the roots ---------------------------------------------------------------------------


def root_keys(kv: Store, progress: Any = None, total: int = 0) -> set[bytes]:
    """Every root's object key, read in short read transactions (the gc mark).

    An undecodable manifest or memory record raises: the root set would be incomplete.
    """
    from .memory import CorruptMemoryRecordError, describe_version

    live: set[bytes] = set()
    n = 0
    for rt, batch in ms.joined(kv):
        found: list[str] = []
        for exec_key, head, keys in batch:
            found += execution_roots(rt, exec_key, head, keys)
            n += head is not None
            if progress and n % 1000 == 0 and head is not None:
                progress("mark", n, total)
        live.update(_object_keys(found))
    stale_before = inflight_stale_before()
    for name, raw in kv.scan(layout.REFS):
        live.update(ref_roots(name, raw, stale_before))
    for k, raw in kv.scan(layout.MEMORY):
        try:
            object_id = memory_root(raw)
        except msgspec.DecodeError as exc:
            raise CorruptMemoryRecordError(
                f"{describe_version(k)} cannot be decoded: {exc}",
                hint="gc cannot tell which object it keeps and stops; run `kitaru-store fsck`",
            ) from exc
        if object_id:
            live.add(layout.object_key(object_id))
    return live


def holders(rt: ReadTxn, okey: bytes, *, skip_memory: bytes | None = None) -> list[str]:
    """The roots that, in the snapshot ``rt``, name ``okey`` (chunk indexes listing it:
    ``chunk_users``). Undecodable manifests and memory records count as holders: their roots
    cannot be ruled out. ``skip_memory`` is a memory record key left out (a redaction's own)."""
    from .memory import describe_version

    object_id = okey.hex()
    found: list[str] = []
    for k, raw in rt.items(layout.MEMORY):
        if k == skip_memory:
            continue
        try:
            other = memory_root(raw)
        except msgspec.DecodeError:
            found.append(f"an undecodable {describe_version(k)} (run `kitaru-store fsck`)")
            continue
        if other == object_id:
            found.append(describe_version(k))
    stale_before = inflight_stale_before()
    found.extend(
        describe_ref(name)
        for name, raw in rt.items(layout.REFS)
        if okey in ref_roots(name, raw, stale_before)
    )
    heads: set[bytes] = set()
    for k, raw in rt.items(layout.MANIFESTS):
        heads.add(k)
        exec_id = k.hex()
        try:
            m = ms.from_view(rt, k, memoryview(raw), exec_id)
        except (msgspec.DecodeError, KitaruError):  # its roots are unknown: it may hold this one
            found.append(f"the undecodable manifest of execution {exec_id} (run `kitaru-store fsck`)")
            continue
        found.extend(
            f"execution {exec_id} {describe_manifest_root(kind, label)}"
            for oid, kind, label in manifest_roots(m)
            if oid == object_id
        )
    # Part records whose head is gone still hold their roots, as in gc's mark (root_keys).
    headless: dict[bytes, ms.PartKeys] = {}
    for key, view in rt.view_items(layout.PARTS):
        exec_key = layout.part_exec_key(key)
        if exec_key not in heads:
            headless.setdefault(exec_key, ms.PartKeys()).add(key, view)
    for exec_key, keys in headless.items():
        parts = ms.salvage(keys, _ROOT_DECODERS)
        if any(r[0] == object_id for r in _roots(parts[ms.ENTRY], parts[ms.CHECKPOINT], parts[ms.WAIT])):
            found.append(
                f"a part record of execution {exec_key.hex()} with no head (run `kitaru-store fsck`)"
            )
    return found


def chunk_users(rt: ReadTxn, okey: bytes, chunks: set[bytes]) -> tuple[list[bytes], set[bytes]]:
    """The stored chunk indexes other than ``okey`` that list ``okey`` as a chunk (it is reachable
    if they are, and gc deletes them first), and which of ``chunks`` such other indexes list too.
    One pass over every record's header."""
    parents: list[bytes] = []
    shared: set[bytes] = set()
    for k, listed in _indexes(rt):
        if k == okey:
            continue
        if okey in listed:
            parents.append(k)
        if chunks:
            shared.update(chunks.intersection(listed))
    return parents, shared


def _indexes(rt: ReadTxn) -> Iterator[tuple[bytes, list[bytes]]]:
    """Every stored chunk index and its chunk keys (a damaged index is passed over)."""
    from . import codec
    from .errors import CorruptObjectError, StoreFormatError

    for key, v in rt.view_items(layout.OBJECTS):
        if not codec.is_index(v):
            continue
        try:
            yield key, objects.chunk_keys(v, key)
        except (CorruptObjectError, StoreFormatError):
            continue


def _object_keys(object_ids: list[str]) -> list[bytes]:
    """``ids.object_key`` of every id (InvalidIdError for one that is not an id: gc stops), with a
    fast path for ids spelled as written: 64 hex characters each."""
    try:
        keys = list(map(bytes.fromhex, object_ids))
        full = set(map(len, keys)) <= {ids.OBJECT_ID_BYTES}  # and no whitespace in between:
        if full and sum(map(len, object_ids)) == ids.OBJECT_ID_HEX * len(keys):
            return keys
    except ValueError:
        pass
    return [layout.object_key(oid) for oid in object_ids]


# --- keeping a value -------------------------------------------------------------------------------


def keep(wt: WriteTxn, key: bytes, stamp: bytes) -> None:
    """Make a stored object reachable in this write transaction: check it is whole, touch it.

    The object and, for a chunked value, every chunk its index lists must be stored in this
    transaction's view; then each gets ``stamp`` as its touch time, which a gc running now sees
    before it deletes any of them (it re-checks touch times in its deleting transactions, which
    LMDB serializes with this one). A missing object raises ObjectNotFoundError, a missing chunk
    IncompleteObjectError: the write that wanted to keep it commits nothing.
    """
    from .errors import IncompleteObjectError

    record = wt.get_view(layout.OBJECTS, key)
    if record is None:
        raise ObjectNotFoundError(key.hex())
    chunks = objects.chunk_keys(record, key)
    for ckey in chunks:
        if not wt.has(layout.OBJECTS, ckey):
            raise IncompleteObjectError(key.hex(), ckey.hex())
    wt.put(layout.TOUCH, key, stamp)
    for ckey in chunks:
        wt.put(layout.TOUCH, ckey, stamp)
