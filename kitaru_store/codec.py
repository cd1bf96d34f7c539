"""The frame of a stored object record, and zstd. The only module that imports zstandard.

A record is ``[version:1][kind:1][codec:1][payload]``:

* version -- record format, currently 1; a reader refuses a higher one.
* kind    -- 0: the payload is the object's bytes; 1: a chunk index (see objects.py).
* codec   -- 0: payload stored raw; 1: payload is one zstd frame (with its content size).

The object id is always the hash of the uncompressed bytes, so the codec is a storage detail:
re-compressing an object with another level or codec never changes its id.
"""

from __future__ import annotations

import re
import threading

import zstandard

from .errors import CorruptRecordError, StoreFormatError

RECORD_VERSION = 1
KIND_DATA = 0
KIND_INDEX = 1
CODEC_RAW = 0
CODEC_ZSTD = 1
HEADER_SIZE = 3
# The most a record of each kind can hold uncompressed: a data record at most objects.CHUNK_THRESHOLD
# (1 MiB + 64 KiB), a chunk index 40-odd bytes per chunk (256 MiB: objects of terabytes).
MAX_DATA_SIZE = (1 << 20) + (64 << 10)
MAX_INDEX_SIZE = 256 << 20
# A compressed chunk index may expand to at most this many times its stored payload, plus
# INDEX_SLACK: a damaged or hostile few kilobytes never make a reader allocate hundreds of
# megabytes. The writer stores an index raw rather than compress it further (a value of millions
# of identical chunks); indexes up to INDEX_SLACK (25,000 chunks) compress as well as they can.
INDEX_RATIO = 64
INDEX_SLACK = 1 << 20

DEFAULT_LEVEL = 3
# Below this size compression is tried outright; above it, a sample decides first, so that
# incompressible data (random floats, already-compressed media) does not pay for nothing.
_SAMPLE_FROM = 64 << 10
_SAMPLE_PIECE = 4 << 10
# Keep compressed output only when it saves at least this fraction.
_MIN_SAVING = 0.05

_local = threading.local()


def _compressor(level: int) -> zstandard.ZstdCompressor:
    cache: dict[int, zstandard.ZstdCompressor] | None = getattr(_local, "c", None)
    if cache is None:
        cache = _local.c = {}
    comp = cache.get(level)
    if comp is None:
        comp = cache[level] = zstandard.ZstdCompressor(level=level, write_content_size=True)
    return comp


def _decompressor() -> zstandard.ZstdDecompressor:
    d: zstandard.ZstdDecompressor | None = getattr(_local, "d", None)
    if d is None:
        d = _local.d = zstandard.ZstdDecompressor()
    return d


def worth_compressing(data: bytes | bytearray | memoryview, level: int = DEFAULT_LEVEL) -> bool:
    """Whether zstd is likely to pay on ``data``, judged from a few small samples.

    Large values are sampled at eight places, so that a chunked value is judged once instead
    of at every chunk.
    """
    view = memoryview(data).cast("B") if not isinstance(data, bytes) else memoryview(data)
    n = len(view)
    if n < _SAMPLE_FROM:
        return True
    places = 8 if n >= 8 * _SAMPLE_FROM else 3
    step = max(1, (n - _SAMPLE_PIECE) // (places - 1))
    sample = b"".join(bytes(view[off : off + _SAMPLE_PIECE]) for off in range(0, n - _SAMPLE_PIECE + 1, step))
    return len(_compressor(level).compress(sample)) <= len(sample) * (1 - 2 * _MIN_SAVING)


def compress(
    data: bytes | bytearray | memoryview, *, level: int = DEFAULT_LEVEL, sample: bool = True
) -> bytes | None:
    """The zstd payload of ``data`` if compression pays (saves at least 5%), else None.

    ``sample=False`` skips the up-front sampling (the caller judged the whole value already).
    """
    view = memoryview(data).cast("B") if not isinstance(data, bytes) else memoryview(data)
    n = len(view)
    if level > 0 and n >= 64 and (not sample or n < _SAMPLE_FROM or worth_compressing(view, level)):
        packed = _compressor(level).compress(view)
        if len(packed) <= n * (1 - _MIN_SAVING):
            return packed
    return None


def encode(
    data: bytes | bytearray | memoryview,
    *,
    kind: int = KIND_DATA,
    level: int = DEFAULT_LEVEL,
    sample: bool = True,
) -> bytes:
    """Frame ``data`` for storage, compressed only where compression pays (see ``compress``)."""
    packed = compress(data, level=level, sample=sample)
    if packed is not None and kind == KIND_INDEX and not _index_ratio_ok(len(data), len(packed)):
        packed = None  # a reader would refuse to expand it this far
    if packed is not None:
        return bytes((RECORD_VERSION, kind, CODEC_ZSTD)) + packed
    return bytes((RECORD_VERSION, kind, CODEC_RAW)) + memoryview(data).cast("B")


def frame(kind: int, codec: int, payload: bytes | bytearray | memoryview) -> memoryview:
    """The record of ``payload``, assembled in this thread's scratch buffer.

    Valid until the next call on this thread: for handing straight to an LMDB put, which copies
    it. A scratch buffer reused from one record to the next is in memory already; a fresh
    allocation per record costs a page fault per 4 KiB, more than the copy itself.
    """
    n = len(payload) + HEADER_SIZE
    scratch: bytearray | None = getattr(_local, "scratch", None)
    if scratch is None or len(scratch) < n:
        scratch = _local.scratch = bytearray(max(n, MAX_DATA_SIZE + (8 << 10) + HEADER_SIZE))
    view = memoryview(scratch)
    view[0], view[1], view[2] = RECORD_VERSION, kind, codec
    view[HEADER_SIZE:n] = payload
    return view[:n]


def header(record: bytes | memoryview) -> tuple[int, int]:
    """(kind, codec) of a record; refuses records from a newer format.

    Every malformed frame raises CorruptRecordError (a ValueError too), a newer one StoreFormatError.
    """
    if len(record) < HEADER_SIZE:
        raise CorruptRecordError("record shorter than its header")
    version, kind, codec = record[0], record[1], record[2]
    if version < 1:
        raise CorruptRecordError(f"record format {version} does not exist")
    if version > RECORD_VERSION:
        raise StoreFormatError(
            f"object record format {version} is newer than this kitaru_store understands ({RECORD_VERSION})",
            hint="upgrade kitaru to read this store",
        )
    if kind not in (KIND_DATA, KIND_INDEX) or codec not in (CODEC_RAW, CODEC_ZSTD):
        raise CorruptRecordError(f"unknown record kind {kind} or codec {codec}")
    return kind, codec


def is_index(record: bytes | memoryview) -> bool:
    """Whether a record holds a chunk index, without validating the header (see header())."""
    return len(record) >= HEADER_SIZE and record[1] == KIND_INDEX


def is_compressed(record: bytes | memoryview) -> bool:
    """Whether a record's payload is a zstd frame, without validating the header (see header())."""
    return len(record) >= HEADER_SIZE and record[2] == CODEC_ZSTD


def _frame_size(payload: memoryview, limit: int) -> int:
    """The content size a zstd frame declares, checked before anything is allocated for it.

    The writer always records it. A damaged or hostile frame could declare any size, and
    decompressing would first allocate that much (a MemoryError rather than a corrupt object).
    """
    try:
        size = zstandard.frame_content_size(payload)
    except zstandard.ZstdError as exc:
        raise CorruptRecordError(f"zstd: {exc}") from None
    if size < 0:
        raise CorruptRecordError("zstd frame without a content size")
    if size > limit:
        raise CorruptRecordError(
            f"zstd frame declares {size} bytes, more than a record of its kind holds ({limit})"
        )
    return size


def _index_ratio_ok(size: int, stored: int) -> bool:
    return size <= INDEX_RATIO * stored + INDEX_SLACK


def _declared(kind: int, payload: memoryview) -> int:
    """The checked content size of a zstd payload of a record of ``kind``."""
    if kind == KIND_DATA:
        return _frame_size(payload, MAX_DATA_SIZE)
    size = _frame_size(payload, MAX_INDEX_SIZE)
    if not _index_ratio_ok(size, len(payload)):
        raise CorruptRecordError(
            f"a chunk index of {len(payload)} stored bytes declares {size}, more than"
            f" {INDEX_RATIO} times as many plus {INDEX_SLACK}"
        )
    return size


def decode(record: bytes | memoryview, *, exact: bool = False) -> tuple[int, bytes | memoryview]:
    """(kind, uncompressed payload). Raises CorruptRecordError on a malformed record.

    A zstd payload is one frame. Reads stop at its end (``exact=False``): what follows cannot
    change the value, which is verified against its id anyway, and checking it costs a read of
    1 KiB 4% (docs/design.md 5.1). ``exact=True`` refuses anything after the frame: fsck, and a
    write that finds the record already stored, check each record so.
    """
    kind, codec = header(record)
    payload = memoryview(record)[HEADER_SIZE:]
    if codec == CODEC_RAW:
        return kind, payload
    return kind, _decompress(payload, _declared(kind, payload), exact=exact)


def _decompress(payload: memoryview, size: int, *, exact: bool) -> bytes:
    """The zstd frame that starts ``payload``, declaring ``size`` (checked: _frame_size); with
    ``exact``, all of ``payload`` (zstd's own check, allow_extra_data=False)."""
    try:
        out = _decompressor().decompress(payload, allow_extra_data=not exact)
    except zstandard.ZstdError as exc:
        extra = re.search(r"contains (\d+) bytes of unused data", str(exc))
        raise CorruptRecordError(
            f"{extra[1]} bytes follow the zstd frame" if extra else f"zstd: {exc}"
        ) from None
    if exact and len(out) != size:
        raise CorruptRecordError(f"zstd frame decoded to {len(out)} bytes, its header says {size}")
    return out


def decode_into(record: bytes | memoryview, out: memoryview) -> int:
    """Decode a data record straight into ``out``; returns the number of bytes written."""
    _, codec = header(record)
    payload = memoryview(record)[HEADER_SIZE:]
    if codec == CODEC_RAW:
        n = len(payload)
        if n > len(out):
            raise CorruptRecordError("record larger than its slot")
        out[:n] = payload
        return n
    expected = _frame_size(payload, MAX_DATA_SIZE)
    if expected > len(out):
        raise CorruptRecordError("record larger than its slot")
    # Decompress straight into the slot: no temporary value, no second copy.
    try:
        reader = _decompressor().stream_reader(payload, read_across_frames=False)
        n = 0
        while n < expected:
            got = reader.readinto(out[n:expected])
            if not got:
                break
            n += got
    except zstandard.ZstdError as exc:
        raise CorruptRecordError(f"zstd: {exc}") from None
    if n != expected:
        raise CorruptRecordError(f"zstd frame decoded to {n} bytes, its header says {expected}")
    return n


def stored_codec_name(record: bytes | memoryview) -> str:
    return "zstd" if header(record)[1] == CODEC_ZSTD else "raw"


def content_size(record: bytes | memoryview) -> int:
    """The uncompressed payload size of a record, without decompressing it (checked against the
    most a record of its kind holds, as decode does)."""
    kind, codec = header(record)
    payload = memoryview(record)[HEADER_SIZE:]
    if codec == CODEC_RAW:
        return len(payload)
    return _declared(kind, payload)


def decode_exact(record: bytes | memoryview, *, limit: int) -> tuple[int, bytes | memoryview]:
    """decode(), strict, for a record from outside the store (a remote's copy).

    The payload holds at most ``limit`` bytes uncompressed; a zstd payload is exactly one frame
    that declares its size and decodes to exactly that, with nothing after it (decode(exact=True)):
    a record from elsewhere is stored as fetched, so it must be exactly what its length says.
    Raises CorruptRecordError (a ValueError too).
    """
    kind, codec = header(record)
    payload = memoryview(record)[HEADER_SIZE:]
    limit = min(limit, MAX_DATA_SIZE if kind == KIND_DATA else MAX_INDEX_SIZE)
    if codec == CODEC_RAW:
        if len(payload) > limit:
            raise CorruptRecordError(
                f"payload of {len(payload)} bytes, more than a record of its kind holds ({limit})"
            )
        return kind, payload
    return kind, _decompress(payload, _frame_size(payload, limit), exact=True)
