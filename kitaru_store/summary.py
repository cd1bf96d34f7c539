"""The stored form of an execution summary: a fixed-layout record, with one decoder.

A summary is the value of an execution's ``exec_time`` key: what listing (``log``,
Repository.iter_executions) shows without decoding the manifest. :class:`manifests.ExecutionSummary`
is its msgspec form; this module writes and reads its bytes with ``struct`` alone, so that the fast
path of ``kitaru-store log`` (cli/quicklog.py), which starts without msgspec, reads it with the
same code as everything else. Layout 1, big-endian (docs/design.md 7.3):

    offset  size   field
    0       1      layout, 0x01 (a MessagePack map, what summaries were before: 0x80-0x8f, 0xde, 0xdf)
    1       1      flags: ENDED, REPLAY, STARTED_NAIVE, ENDED_NAIVE
    2       16     exec_id
    18      8      started_at: int64, microseconds since the Unix epoch, UTC
    26      8      ended_at: the same (0 without ENDED)
    34      4      artifact_count, uint32
    38      4      checkpoint_count, uint32
    42      2 + n  status: uint16 length, UTF-8
            2 + n  flow_name
            2 + n  replay_of, with REPLAY only
            ...    fields a newer writer appended: skipped
    end-32  32     BLAKE3-256 of every byte before it

Summaries written before this layout (MessagePack maps, most with checksum.py's pair) are read
by manifests.py with msgspec, and rewritten in this layout at the execution's next write.
Imports neither msgspec nor typing, and blake3 only once it hashes.
"""

from __future__ import annotations

import datetime as dt
import struct

from .errors import InvalidIdError, StoreFormatError, UsageError
from .listing import damaged

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (see kitaru_store/__init__.py)
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, TypeVar

    T = TypeVar("T")

LAYOUT = 1
ENDED, REPLAY, STARTED_NAIVE, ENDED_NAIVE = 1, 2, 4, 8  # flags
_FLAGS = ENDED | REPLAY | STARTED_NAIVE | ENDED_NAIVE
_HEAD = struct.Struct(">BB16sqqII")
_LENGTH = struct.Struct(">H")
DIGEST = 32
MIN_SIZE = _HEAD.size + 2 * _LENGTH.size + DIGEST  # status and flow name empty
MAX_TEXT = 0xFFFF  # UTF-8 bytes of one text field
MAX_COUNT = 0xFFFF_FFFF
_MSGPACK_MAPS = frozenset((*range(0x80, 0x90), 0xDE, 0xDF))
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_MICROSECOND = dt.timedelta(microseconds=1)


class PlainSummary:
    """An ExecutionSummary's fields, without msgspec: what the fast path of ``log`` lists."""

    __slots__ = (
        "artifact_count",
        "checkpoint_count",
        "ended_at",
        "exec_id",
        "flow_name",
        "replay_of",
        "started_at",
        "status",
    )

    def __init__(
        self,
        *,
        exec_id: str,
        flow_name: str,
        status: str,
        started_at: dt.datetime,
        ended_at: dt.datetime | None = None,
        artifact_count: int = 0,
        checkpoint_count: int = 0,
        replay_of: str | None = None,
    ) -> None:
        self.exec_id = exec_id
        self.flow_name = flow_name
        self.status = status
        self.started_at = started_at
        self.ended_at = ended_at
        self.artifact_count = artifact_count
        self.checkpoint_count = checkpoint_count
        self.replay_of = replay_of


def _digest(data: bytes | bytearray | memoryview) -> bytes:
    from . import hashing  # blake3: not imported before a summary is read or written

    return hashing.digest(data)


def is_msgpack(data: bytes | memoryview) -> bool:
    """Whether ``data`` is a summary written before this layout: a MessagePack map."""
    return len(data) > 0 and data[0] in _MSGPACK_MAPS


def encode(s: Any) -> bytes:
    """The stored form of summary ``s`` (an ExecutionSummary, or anything with its fields).

    UsageError for what the layout cannot hold, which no valid execution has: an exec_id that is
    not 32 lower-case hex digits, a count above 2**32 - 1, a text field of more than 65,535 bytes.
    """
    raw_id = _id_bytes(s.exec_id)
    flags = 0
    ended = 0
    if s.ended_at is not None:
        flags |= ENDED | (ENDED_NAIVE if s.ended_at.tzinfo is None else 0)
        ended = _micros(s.ended_at)
    if s.started_at.tzinfo is None:
        flags |= STARTED_NAIVE
    texts = [("status", s.status), ("flow_name", s.flow_name)]
    if s.replay_of is not None:
        flags |= REPLAY
        texts.append(("replay_of", s.replay_of))
    for name, count in (("artifact_count", s.artifact_count), ("checkpoint_count", s.checkpoint_count)):
        if not 0 <= count <= MAX_COUNT:
            raise UsageError(f"a summary's {name} is 0 to {MAX_COUNT}, not {count}", exec_id=s.exec_id)
    out = bytearray(
        _HEAD.pack(LAYOUT, flags, raw_id, _micros(s.started_at), ended, s.artifact_count, s.checkpoint_count)
    )
    for name, value in texts:
        encoded = value.encode()
        if len(encoded) > MAX_TEXT:
            raise UsageError(
                f"a summary's {name} takes at most {MAX_TEXT} bytes of UTF-8, not {len(encoded)}",
                exec_id=s.exec_id,
            )
        out += _LENGTH.pack(len(encoded))
        out += encoded
    out += _digest(out)
    return bytes(out)


def _id_bytes(exec_id: str) -> bytes:
    try:
        raw = bytes.fromhex(exec_id)
    except ValueError:
        raw = b""
    if len(raw) != 16 or raw.hex() != exec_id:
        raise InvalidIdError(
            f"a summary's exec_id is 32 lower-case hex digits, not {exec_id[:80]!r}", exec_id=exec_id[:80]
        )
    return raw


def _micros(t: dt.datetime) -> int:
    """Microseconds since the Unix epoch (a naive time taken as UTC): every datetime fits int64."""
    if t.tzinfo is None:
        t = t.replace(tzinfo=dt.UTC)
    return (t - _EPOCH) // _MICROSECOND


def decode(data: bytes | memoryview, make: Callable[..., T]) -> T:
    """The summary in ``data``, made by ``make`` from its fields as keywords (ExecutionSummary's).

    Verified: its digest, then its layout. CorruptSummaryError for damage (bounded: nothing is
    read or allocated past ``data``), StoreFormatError for a layout or flag this version does not
    know. A MessagePack summary (written before this layout) is read by manifests.py (msgspec).
    """
    if is_msgpack(data):
        from .manifests import decode_msgpack_summary

        old = decode_msgpack_summary(data)
        return make(**{name: getattr(old, name) for name in PlainSummary.__slots__})
    view = memoryview(data)
    if len(view) < MIN_SIZE:
        raise damaged(f"it has {len(view)} bytes, fewer than any summary ({MIN_SIZE})")
    end = len(view) - DIGEST
    if _digest(view[:end]) != view[end:]:
        raise damaged("its checksum does not match")
    layout, flags, raw_id, started, ended, artifacts, checkpoints = _HEAD.unpack_from(view)
    if layout != LAYOUT or flags & ~_FLAGS:
        raise StoreFormatError(
            f"the execution's summary has layout {layout} and flags {flags:#04x}, newer than this"
            f" kitaru reads (layout {LAYOUT}, flags {_FLAGS:#04x})",
            hint="upgrade kitaru to list this execution",
        )
    status, pos = _text(view, _HEAD.size, end)
    flow_name, pos = _text(view, pos, end)
    replay_of = _text(view, pos, end)[0] if flags & REPLAY else None
    return make(
        exec_id=raw_id.hex(),
        flow_name=flow_name,
        status=status,
        started_at=_time(started, flags & STARTED_NAIVE),
        ended_at=_time(ended, flags & ENDED_NAIVE) if flags & ENDED else None,
        artifact_count=artifacts,
        checkpoint_count=checkpoints,
        replay_of=replay_of,
    )


def _text(view: memoryview, pos: int, end: int) -> tuple[str, int]:
    if pos + _LENGTH.size > end:
        raise damaged("it ends inside a text field's length")
    (size,) = _LENGTH.unpack_from(view, pos)
    pos += _LENGTH.size
    if pos + size > end:
        raise damaged(f"a text field of {size} bytes runs past its end")
    try:
        return str(view[pos : pos + size], "utf-8"), pos + size
    except UnicodeDecodeError:
        raise damaged("a text field is not UTF-8") from None


def _time(micros: int, naive: int) -> dt.datetime:
    try:
        t = _EPOCH + micros * _MICROSECOND
    except OverflowError:
        raise damaged(f"a time of {micros} microseconds since 1970 is out of range") from None
    return t.replace(tzinfo=None) if naive else t
