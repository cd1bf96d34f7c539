"""Fuzzing the store's record decoders: the record frame (codec.py), the chunk index (objects.py),
the manifest (manifests.py, with its checksum), the head and part records of format 2
(manifest_store.py, checked under their keys, and resealed so that the decoders behind the
checksum see the mutations too), the execution summary (summary.py's layout and
the MessagePack summaries written before it, as manifests.py and the fast path of `log` read them)
and memory records and their keys (memory.py).

Each decoder gets pure random bytes and mutations of valid encodings (bit flips, truncations,
extensions, overwritten bytes and spliced length fields), and must give a value or a KitaruError
within fuzz_helpers' memory bound (decode_within_bounds).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import msgspec
from fuzz_helpers import FUZZ, decode_within_bounds, mutations
from hypothesis import given
from hypothesis import strategies as st

from kitaru_store import checksum, codec, layout, listing, objects, summary
from kitaru_store import manifest_store as ms
from kitaru_store import manifests as mf
from kitaru_store import memory as mem

T0 = dt.datetime(2025, 3, 1, 12, 0, 0, 123456, tzinfo=dt.UTC)
KEY = bytes(range(32))
EXEC = "0123456789abcdef0123456789abcdef"
CHUNK_IDS = [bytes([i]) * 32 for i in range(3)]


# --- valid encodings, to mutate ----------------------------------------------------------------


def _frames() -> list[bytes]:
    index = _indexes()[0]
    return [
        codec.encode(b"hello, world"),
        codec.encode(b"abc" * 5000),  # zstd
        codec.encode(bytes(range(256)) * 8, level=0),  # raw
        codec.encode(index, kind=codec.KIND_INDEX),
        codec.encode(index * 50, kind=codec.KIND_INDEX),  # zstd
        codec.encode(bytes(4 << 20), kind=codec.KIND_INDEX),  # as far as an index may expand
    ]


def _indexes() -> list[bytes]:
    return [
        msgspec.msgpack.encode(objects.ChunkIndex(1, 3 << 20, [(cid, 1 << 20) for cid in CHUNK_IDS])),
        msgspec.msgpack.encode(objects.ChunkIndex(1, 1_500_000, [(KEY, 1_000_000), (KEY[::-1], 500_000)])),
    ]


def _manifest() -> mf.Manifest:
    entry = mf.Entry(
        artifact_id=EXEC,
        name="research_context",
        kind="manual",
        artifact_type="context",
        object_id=KEY.hex(),
        size=123,
        serializer="m",
        created_at=T0,
        tags=("a", "b"),
        metadata={"k": [1, 2.5, "x", None, {"n": True}]},
    )
    cp = mf.CheckpointRecord(
        invocation_id="research",
        name="research",
        status="completed",
        started_at=T0,
        ended_at=T0,
        output_object_id=KEY.hex(),
        attempts=(mf.Attempt(started_at=T0, failure=mf.Failure(type="E", message="m")),),
    )
    wait = mf.WaitRecord(name="approve", status="pending", created_at=T0, schema={"type": "bool"})
    return mf.Manifest(
        exec_id=EXEC,
        flow_name="flow",
        status="completed",
        started_at=T0,
        ended_at=T0,
        entries=(entry,),
        checkpoints=(cp,),
        waits=(wait,),
        metadata={"user": "me"},
    )


def _summaries() -> list[bytes]:
    full = mf.ExecutionSummary(
        exec_id=EXEC,
        flow_name="ingest \u00e9",
        status="failed",
        started_at=T0,
        ended_at=T0 + dt.timedelta(seconds=3),
        artifact_count=3,
        checkpoint_count=70000,
        replay_of=EXEC,
    )
    small = mf.ExecutionSummary(exec_id=EXEC, flow_name="f", status="running", started_at=T0)
    naive = mf.ExecutionSummary(exec_id=EXEC, flow_name="f", status="s", started_at=T0.replace(tzinfo=None))
    layout = [mf.encode_summary(s) for s in (full, small, naive)]
    return [*layout, *(checksum.seal(mf.encode(s)) for s in (full, small)), mf.encode(full), mf.encode(small)]


def _memory_records() -> list[bytes]:
    author = mem.Author(user="u", origin="flow", host="h", exec_id=EXEC, flow="f", invocation_id="i")
    set_ = mem.MemoryRecord(
        version=3, op="set", written_at=T0, written_by=author, object_id=KEY.hex(), size=10, serializer="m"
    )
    redacted = mem.MemoryRecord(
        version=4,
        op="set",
        written_at=T0,
        written_by=author,
        size=10,
        redacted_at=T0,
        redacted_by=author,
        redaction_reason="gdpr",
        bytes_erased=True,
        kept_by=("pin x",),
    )
    cli = mem.Author(user="u", origin="cli")
    delete = mem.MemoryRecord(version=5, op="delete", written_at=T0, written_by=cli)
    return [mem.encode_record(r) for r in (set_, redacted, delete)]


def _memory_keys() -> list[bytes]:
    return [
        mem.record_key(mem.make_scope("namespace", "default"), "user/42/prefs", 1),
        mem.record_key(mem.make_scope("flow", "ingest \u00e9"), "k", 2**40),
        mem.record_key(mem.make_scope("execution", EXEC), "x", 7),
    ]


# --- mutations ---------------------------------------------------------------------------------

_LENGTHS = [b"\xff", b"\x7f", b"\x00", b"\xff\xff", b"\x80\x00", b"\xff\xff\xff\xff", b"\x7f\xff\xff\xff"]
_LENGTHS += [b"\xff" * 8, bytes(8), b"\xdf\xff\xff\xff\xff", b"\xdd\xff\xff\xff\xff"]
_LENGTHS += [b"\xc6\x7f\xff\xff\xff", b"\xdb\x7f\xff\xff\xff", b"\xcf" + b"\xff" * 8, b"\xd3\x80" + bytes(7)]


def inputs(samples: list[bytes]) -> st.SearchStrategy[bytes]:
    return st.one_of(st.binary(max_size=512), mutations(samples, _LENGTHS))


def _all(decoders: list[Callable[[bytes], Any]], data: bytes) -> None:
    for decode in decoders:
        decode_within_bounds(lambda d=decode: d(data), len(data))  # type: ignore[misc]


# --- the properties ----------------------------------------------------------------------------


@FUZZ
@given(inputs(_frames()))
def test_record_frame(data: bytes) -> None:
    out = memoryview(bytearray(codec.MAX_DATA_SIZE))  # the slot a chunk decodes into (the caller's)
    _all(
        [
            codec.decode,
            codec.header,
            codec.content_size,
            codec.stored_codec_name,
            lambda d: codec.decode_into(d, out),
            lambda d: objects.chunk_keys(d, KEY),
        ],
        data,
    )


class _Records:
    """A read transaction over a few records (objects.read needs get_view only)."""

    def __init__(self, records: dict[bytes, bytes]) -> None:
        self.records = records

    def get_view(self, db: bytes, key: bytes) -> memoryview | None:
        raw = self.records.get(key)
        return memoryview(raw) if raw is not None else None


# The chunks the sample indexes name, each stored as the 1 MiB of zeros its size says.
_CHUNKS = {cid: codec.encode(bytes(1 << 20)) for cid in CHUNK_IDS}


@FUZZ
@given(inputs(_indexes()))
def test_chunk_index(data: bytes) -> None:
    _all([lambda d: objects.parse_index(d, KEY)], data)
    framed = codec.encode(data, kind=codec.KIND_INDEX)
    _all([lambda d: objects.chunk_keys(d, KEY)], framed)
    # Reading the value the index describes: every size checked before the value is allocated.
    rt: Any = _Records({KEY: framed, **_CHUNKS})
    _all([lambda d: objects.read(rt, KEY), lambda d: objects.read(rt, KEY, mapped=True)], data)


@FUZZ
@given(inputs([mf.encode_manifest(_manifest()), mf.encode(_manifest())]))
def test_manifest(data: bytes) -> None:
    _all([lambda d: mf.decode_manifest(d, exec_id=EXEC), mf.checked_tag], data)


EXEC_KEY = bytes.fromhex(EXEC)


def _heads() -> list[bytes]:
    m = _manifest()
    head = ms.head_of(m)
    full = msgspec.structs.replace(head, n_entries=1, n_checkpoints=1, n_waits=1, next_entry=1, size=900)
    return [ms.seal_head(h, EXEC_KEY) for h in (head, full)] + [mf.encode(full)]


def _part_records() -> list[tuple[bytes, bytes]]:
    m = _manifest()
    out = []
    for family, parts in ((ms.ENTRY, m.entries), (ms.CHECKPOINT, m.checkpoints), (ms.WAIT, m.waits)):
        key = layout.part_key(EXEC_KEY, family, 0)
        out += [(key, ms.seal_record(key, list(parts))), (key, ms.seal_record(key, list(parts) * 20))]
    return out


class _Parts:
    """A read transaction over one execution's part records (what read_parts reads)."""

    def __init__(self, records: dict[bytes, bytes]) -> None:
        self.records = records

    def items(self, db: bytes, lo: bytes, hi: bytes) -> list[tuple[bytes, bytes]]:
        return sorted((k, v) for k, v in self.records.items() if lo <= k < hi)


def _resealed_head(data: bytes) -> bytes:
    try:
        return checksum.seal(data, EXEC_KEY)
    except (ValueError, IndexError):  # not a map: sealed as it is
        return data + checksum.TAIL + checksum.keyed_digest(EXEC_KEY, data + checksum.TAIL)


@FUZZ
@given(inputs(_heads()))
def test_manifest_head(data: bytes) -> None:
    for stored in (data, _resealed_head(data)):
        _all(
            [
                lambda d: ms.decode_stored(d, EXEC_KEY, EXEC),
                lambda d: ms.stored_tag(d, EXEC_KEY),
                lambda d: ms.is_whole(d, EXEC_KEY),
            ],
            stored,
        )


@FUZZ
@given(inputs([v for _, v in _part_records()]), st.sampled_from(_part_records()))
def test_part_record(data: bytes, sample: tuple[bytes, bytes]) -> None:
    key, valid = sample
    family = key[16:17]
    after = layout.part_key(EXEC_KEY, family, 1)
    resealed = data[:-32] + checksum.keyed_digest(after, data[:-32])  # what the checksum guards, fuzzed
    for stored in (data, resealed):
        _all(
            [
                lambda d: ms.decode_record(after, d, family, EXEC),
                # After a valid record, as one execution's family: decoded in one call.
                lambda d: ms.read_parts(_Parts({key: valid, after: d}), EXEC_KEY, family, EXEC, 2),
            ],
            stored,
        )


@FUZZ
@given(inputs(_summaries()), st.sampled_from([layout.time_key(T0) + bytes.fromhex(EXEC), bytes(24), b"k"]))
def test_execution_summary(data: bytes, key: bytes) -> None:
    def fast(d: bytes) -> Any:  # as the fast path of `log` reads it (cli/quicklog.py)
        s = summary.decode(d, summary.PlainSummary)
        listing.check_key(key, s.exec_id, s.started_at)
        return s

    _all([lambda d: mf.decode_summary(d, key=key), fast], data)


@FUZZ
@given(inputs(_memory_records()))
def test_memory_record(data: bytes) -> None:
    _all([lambda d: mem.decode_record(d, where="fuzz")], data)


@FUZZ
@given(inputs(_memory_keys()))
def test_memory_record_key(data: bytes) -> None:
    _all([mem.parse_record_key], data)
