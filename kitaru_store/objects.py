"""Content-addressed objects: hashing, chunking, dedup with verification, verified reads.

Small values (up to ``CHUNK_THRESHOLD``) are one data record. Larger ones are cut into
content-defined chunks (FastCDC); each chunk is a data record of its own and the value's id
names an index record listing the chunks. Either way the id is the BLAKE3 of the whole value's
bytes, so the same value always has the same id however it is stored.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, overload

import msgspec
from pyfastcdc import FastCDC

from . import buffers, codec, hashing, ids, layout, parallel
from .errors import (
    CorruptObjectError,
    CorruptRecordError,
    ObjectNotFoundError,
    SerializationError,
    StoreFormatError,
)

if TYPE_CHECKING:
    from .kv import ReadTxn, WriteTxn

# Values up to 1 MiB (plus room for a serializer header) are one record; larger ones are chunked.
CHUNK_THRESHOLD = (1 << 20) + (64 << 10)
assert CHUNK_THRESHOLD <= codec.MAX_DATA_SIZE  # a reader refuses data records larger than that
INDEX_VERSION = 1
CHUNK_MIN, CHUNK_AVG, CHUNK_MAX = 64 << 10, 256 << 10, 1 << 20
# The largest value the store holds (docs/design.md 5.4). A chunk index declaring more is
# damaged: a reader checks every size in an index against this and against the index's own
# record before it allocates anything.
MAX_VALUE_SIZE = 1 << 40

Buffer = bytes | bytearray | memoryview

_local = threading.local()


def _chunker() -> FastCDC:
    """One FastCDC per thread: pyfastcdc's chunker objects are not safe to share across threads."""
    chunker: FastCDC | None = getattr(_local, "chunker", None)
    if chunker is None:
        chunker = _local.chunker = FastCDC(avg_size=CHUNK_AVG, min_size=CHUNK_MIN, max_size=CHUNK_MAX)
    return chunker


class ChunkIndex(msgspec.Struct, array_like=True):
    """Payload of an index record: total size and (chunk id, chunk size) in order."""

    version: int
    size: int
    chunks: list[tuple[bytes, int]]


_index_enc = msgspec.msgpack.Encoder()
_index_dec = msgspec.msgpack.Decoder(ChunkIndex)


def now_ns() -> int:
    return time.time_ns()


def pack_time(ns: int) -> bytes:
    return ns.to_bytes(8, "big")


def unpack_time(raw: bytes | None) -> int:
    return int.from_bytes(raw, "big") if raw else 0


@dataclass(slots=True)
class Piece:
    """One record to store: its key and raw bytes; once staged, what to write.

    A staged piece either is ``stored`` already (an equal, verified copy: touch only) or has a
    ``payload`` (raw or zstd, per ``codec``) framed into a record at write time, or a ready
    ``record`` (an index record, or a remote's copy written as is).
    """

    key: bytes
    data: Buffer
    kind: int = codec.KIND_DATA
    record: Buffer | None = None
    payload: Buffer | None = None
    codec: int = codec.CODEC_RAW
    stored: bool = False

    def framed(self) -> Buffer:
        """The record to put: valid until the next framed() on this thread (see codec.frame)."""
        if self.record is not None:
            return self.record
        if self.payload is None:
            raise RuntimeError(f"object piece {self.key.hex()} written before it was staged")
        return codec.frame(self.kind, self.codec, self.payload)


@dataclass(slots=True)
class PreparedValue:
    """A value ready to commit: its id, size and the records it needs."""

    key: bytes
    size: int
    pieces: list[Piece] = field(default_factory=list)
    chunked: bool = False
    compressible: bool = True  # judged once for a chunked value, not at every chunk

    @property
    def object_id(self) -> str:
        return self.key.hex()


# From this size, a value is hashed, chunked, compressed and read back on two threads.
PARALLEL_FROM = 4 << 20


def prepare(data: Buffer) -> PreparedValue:
    """Hash (and chunk) ``data``. Nothing is compressed or written yet."""
    view = memoryview(data).cast("B") if not isinstance(data, bytes) else data
    size = len(view)
    if size > MAX_VALUE_SIZE:
        raise SerializationError(
            f"a value of {size} bytes is larger than the store holds ({MAX_VALUE_SIZE} bytes)",
            hint="split it into several artifacts",
        )
    if size <= CHUNK_THRESHOLD:
        key = hashing.digest(view)
        return PreparedValue(key, size, [Piece(key, view)])
    whole: list[bytes] = []
    chunks: list[memoryview] = []
    ckeys: dict[int, bytes] = {}

    def cut() -> list[int]:
        chunks.extend(memoryview(c.data) for c in _chunker().cut_buf(view))
        return list(range(len(chunks)))

    def hash_chunk(i: int) -> None:
        ckeys[i] = hashing.digest(chunks[i], threaded=False)

    def hash_whole() -> None:
        whole.append(hashing.digest(view, threaded=not two_threads))

    # From PARALLEL_FROM, the whole value's hash (its id) on the helper while this thread finds the
    # chunk boundaries; then both hash chunks.
    two_threads = size >= PARALLEL_FROM and parallel.enabled()
    if two_threads:
        parallel.for_each(hash_chunk, (), helper_first=hash_whole, main_first=cut)
    else:
        hash_whole()
        for i in cut():
            hash_chunk(i)
    key = whole[0]
    pieces = [Piece(ckeys[i], c) for i, c in enumerate(chunks)]
    index = _index_enc.encode(ChunkIndex(INDEX_VERSION, size, [(p.key, len(p.data)) for p in pieces]))
    pieces.append(Piece(key, index, kind=codec.KIND_INDEX))
    return PreparedValue(key, size, pieces, chunked=True, compressible=codec.worth_compressing(view))


def _stored_equals(record: memoryview, piece: Piece) -> bool:
    """Whether a stored record holds exactly ``piece`` (a dedup hit is verified, never trusted)."""
    try:
        kind, payload = codec.decode(record, exact=True)  # bytes after its frame: rewritten too
    except ValueError:
        return False  # damaged: the put rewrites it. A newer record format raises, never overwritten.
    if kind != piece.kind:
        return False
    if kind == codec.KIND_DATA:
        # Hashing beats comparing a memoryview with bytes, which CPython does item by item.
        return hashing.digest(payload) == piece.key
    try:
        parse_index(payload, piece.key)  # a newer index version raises: never overwritten
    except CorruptObjectError:
        return False
    return bytes(payload) == bytes(piece.data)


def stage(rt: ReadTxn, prepared: PreparedValue, *, level: int, seen: set[bytes]) -> None:
    """Decide per record: already stored and intact (touch only) or to be written (encode now).

    Runs in a read transaction, before the write lock is taken, so that compression never
    holds up other writers. A stored copy that does not match is rewritten: a new put of the
    same content repairs a corrupt object instead of pointing at it.
    """
    added: list[bytes] = []
    try:
        todo: list[Piece] = []
        for piece in prepared.pieces:
            if piece.key in seen:
                piece.stored = True  # an earlier piece of this writer writes it
                continue
            seen.add(piece.key)
            added.append(piece.key)
            stored = rt.get_view(layout.OBJECTS, piece.key)
            try:
                equal = stored is not None and _stored_equals(stored, piece)
            except StoreFormatError as exc:
                raise object_format_error(
                    exc, prepared.key, piece.key if piece.key != prepared.key else None
                ) from None
            piece.stored = equal
            if not equal:
                todo.append(piece)
        if prepared.chunked and prepared.compressible and level > 0 and prepared.size >= PARALLEL_FROM:
            parallel.for_each(lambda piece: _encode(prepared, piece, level), todo)
        else:
            for piece in todo:
                _encode(prepared, piece, level)
    except BaseException:
        # Nothing of this value is staged: a retry in the same writer must stage it afresh.
        seen.difference_update(added)
        raise


def _encode(prepared: PreparedValue, piece: Piece, level: int) -> None:
    """Compress (where it pays) the piece's payload; an index becomes its whole record."""
    if piece.kind == codec.KIND_INDEX:
        piece.record = codec.encode(piece.data, kind=piece.kind, level=level)
        return
    if prepared.chunked:
        # Judged once for the whole value: incompressible data (floats, media) does not pay for
        # compression it does not get.
        packed = codec.compress(piece.data, level=level, sample=False) if prepared.compressible else None
    else:
        packed = codec.compress(piece.data, level=level)
    if packed is None:
        piece.payload, piece.codec = piece.data, codec.CODEC_RAW
    else:
        piece.payload, piece.codec = packed, codec.CODEC_ZSTD


def write(wt: WriteTxn, prepared: PreparedValue, *, stamp: bytes, level: int) -> int:
    """Store the staged records and touch every one of them. Returns bytes written."""
    written = 0
    for piece in prepared.pieces:
        if piece.stored:
            if wt.has(layout.OBJECTS, piece.key):
                wt.put(layout.TOUCH, piece.key, stamp)
                continue
            _encode(prepared, piece, level)  # swept between stage and write: store it after all
            piece.stored = False
        record = piece.framed()
        wt.put(layout.OBJECTS, piece.key, record)
        wt.put(layout.TOUCH, piece.key, stamp)
        written += len(record)
    return written


def chunk_keys(record: bytes | memoryview, key: bytes) -> list[bytes]:
    """The chunk keys an index record names (empty for a data record)."""
    kind, payload = decode_checked(record, key)
    if kind != codec.KIND_INDEX:
        return []
    return [k for k, _ in parse_index(payload, key).chunks]


def decode_checked(record: bytes | memoryview, key: bytes, *, exact: bool = False) -> tuple[int, Buffer]:
    try:
        return codec.decode(record, exact=exact)
    except ValueError as exc:
        raise CorruptObjectError(key.hex(), f"undecodable record: {exc}") from None
    except StoreFormatError as exc:
        raise object_format_error(exc, key) from None


def object_format_error(exc: StoreFormatError, key: bytes, chunk: bytes | None = None) -> StoreFormatError:
    """A record-format error that says which object it concerns (and which of its chunks)."""
    if exc.object_id is not None:
        return exc
    where = f"object {key.hex()}" + (f", chunk {chunk.hex()}" if chunk is not None else "")
    return StoreFormatError(f"{where}: {exc.message}", object_id=key.hex(), hint=exc.hint)


def parse_index(payload: Buffer, key: bytes) -> ChunkIndex:
    """The chunk index in ``payload``, every size in it checked (nothing is allocated from it yet).

    msgspec reads no more elements than the payload holds, so the count of chunks is bounded by
    the record's length; each chunk id must be a digest, each size that of a data record, the
    sizes must add up to the declared total, and the total must be at most MAX_VALUE_SIZE.
    """
    try:
        index = _index_dec.decode(payload)
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:
        raise CorruptObjectError(key.hex(), f"bad chunk index: {exc}") from None
    if index.version > INDEX_VERSION:
        raise StoreFormatError(
            f"chunk index format {index.version} of object {key.hex()} is newer than this kitaru"
            f" understands ({INDEX_VERSION})",
            object_id=key.hex(),
            hint="upgrade kitaru to read this value",
        )
    problem = None
    if index.version < 1:
        problem = f"format {index.version} does not exist"
    elif not 0 < index.size <= MAX_VALUE_SIZE:
        problem = f"declares {index.size} bytes (a chunked value has 1 to {MAX_VALUE_SIZE})"
    elif not index.chunks:
        problem = "lists no chunks"
    elif any(len(ckey) != ids.OBJECT_ID_BYTES for ckey, _ in index.chunks):
        problem = "names a chunk by something that is not an object id"
    elif any(not 0 < csize <= codec.MAX_DATA_SIZE for _, csize in index.chunks):
        problem = f"declares a chunk size outside 1 to {codec.MAX_DATA_SIZE} bytes"
    elif sum(csize for _, csize in index.chunks) != index.size:
        problem = f"chunk sizes do not add up to the declared {index.size} bytes"
    if problem:
        raise CorruptObjectError(key.hex(), f"bad chunk index: it {problem}")
    return index


@overload
def read(
    rt: ReadTxn, key: bytes, *, mapped: Literal[False] = False, exact: bool = False
) -> bytes | bytearray: ...
@overload
def read(rt: ReadTxn, key: bytes, *, mapped: bool, exact: bool = False) -> bytes | bytearray | memoryview: ...
def read(
    rt: ReadTxn, key: bytes, *, mapped: bool = False, exact: bool = False
) -> bytes | bytearray | memoryview:
    """The verified bytes of an object. Raises ObjectNotFoundError or CorruptObjectError.

    ``mapped=True`` lets a large chunked value come back in a mapped buffer (a memoryview,
    buffers.py), filled several times faster than a bytearray; else it is a bytearray.
    ``exact=True`` (fsck) also refuses bytes after the zstd frame of the object's own record
    (codec.decode); each chunk is an object too, checked so on its own.
    """
    record = rt.get_view(layout.OBJECTS, key)
    if record is None:
        raise ObjectNotFoundError(key.hex())
    kind, payload = decode_checked(record, key, exact=exact)
    if kind == codec.KIND_DATA:
        data = bytes(payload)
        if hashing.digest(data) != key:
            raise CorruptObjectError(key.hex(), "content does not match its id")
        return data
    index = parse_index(payload, key)  # every size checked, and adding up to index.size
    # Each chunk is there and holds the size the index declares, before anything is allocated.
    records: list[memoryview] = []
    for ckey, csize in index.chunks:
        crecord = rt.get_view(layout.OBJECTS, ckey)
        if crecord is None:
            raise CorruptObjectError(key.hex(), f"chunk {ckey.hex()} is missing")
        try:
            stored = codec.content_size(crecord)
        except CorruptRecordError as exc:
            raise CorruptObjectError(key.hex(), f"chunk {ckey.hex()} undecodable: {exc}") from None
        except StoreFormatError as exc:
            raise object_format_error(exc, key, ckey) from None
        if stored != csize:
            raise CorruptObjectError(key.hex(), f"chunk {ckey.hex()} has the wrong size")
        records.append(crecord)
    # One buffer for the whole value, filled chunk by chunk: never two full copies at once.
    out = buffers.alloc(index.size) if mapped else bytearray(index.size)
    view = memoryview(out)
    slots: list[tuple[bytes, memoryview, memoryview]] = []
    pos = 0
    for (ckey, csize), crecord in zip(index.chunks, records, strict=True):
        slots.append((ckey, crecord, view[pos : pos + csize]))
        pos += csize

    def fill(slot: tuple[bytes, memoryview, memoryview]) -> None:
        ckey, crecord, dest = slot
        try:
            ckind, _ = codec.header(crecord)
            n = codec.decode_into(crecord, dest)
        except ValueError as exc:
            raise CorruptObjectError(key.hex(), f"chunk {ckey.hex()} undecodable: {exc}") from None
        except StoreFormatError as exc:
            raise object_format_error(exc, key, ckey) from None
        if ckind != codec.KIND_DATA or n != len(dest):
            raise CorruptObjectError(key.hex(), f"chunk {ckey.hex()} has the wrong size")

    # Raw chunks are copied under the GIL: only zstd chunks gain from a second thread.
    if index.size >= PARALLEL_FROM and any(codec.is_compressed(record) for _, record, _ in slots):
        parallel.for_each(fill, slots)  # zstd releases the GIL: two chunks decompress at once
    else:
        for slot in slots:
            fill(slot)
    if hashing.digest(view) != key:
        # One hash over the whole value checks every chunk; only on failure say which one.
        pos = 0
        for ckey, csize in index.chunks:
            if hashing.digest(view[pos : pos + csize]) != ckey:
                raise CorruptObjectError(key.hex(), f"chunk {ckey.hex()} does not match its id")
            pos += csize
        raise CorruptObjectError(key.hex(), "reassembled value does not match its id")
    return out


def verify(rt: ReadTxn, key: bytes) -> str | None:
    """None if the object reads back intact, else what is wrong with it."""
    try:
        read(rt, key)
    except (CorruptObjectError, ObjectNotFoundError) as exc:
        return exc.message
    return None
