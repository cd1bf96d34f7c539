"""Every name the store gives things on disk: files, sub-databases, keys and ref names.

The one owner of these byte layouts (docs/design.md, "Layout" tabulates them): every other
module builds and takes apart keys through the names here, never by spelling them. Values
(object records, manifests, summaries, memory records) belong to their own modules.

Import-light on purpose: the fast path of ``kitaru-store log`` loads it (cli/quicklog.py), so it
imports nothing beyond datetime, os and the store's errors.
"""

from __future__ import annotations

import datetime as dt
import os

from .errors import InvalidIdError
from .ids import ID_HINT, OBJECT_ID_BYTES, UUID_BYTES

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (see kitaru_store/__init__.py)
if TYPE_CHECKING:
    from pathlib import Path

# --- files and directories under the store root ---------------------------------------------

CONFIG_FILE = "config"  # JSON: format, store id, creation time (config.py)
DB_DIR = "db"  # the LMDB environment
DATA_FILE = "data.mdb"  # in DB_DIR: LMDB's data file
LMDB_LOCK_FILE = "lock.mdb"  # in DB_DIR: LMDB's reader table and writer lock
LOCK_DIR = "locks"
STORE_LOCK = "store.lock"  # in LOCK_DIR: shared by every open handle, exclusive for compaction
GC_LOCK = "gc.lock"  # in LOCK_DIR: one gc at a time
RUNS_DIR = "runs"  # in LOCK_DIR: one flock per running execution (liveness.py)


def db_dir(root: Path | str) -> str:
    return os.path.join(root, DB_DIR)


def data_file(root: Path | str) -> str:
    return os.path.join(root, DB_DIR, DATA_FILE)


def lock_file(root: Path | str, name: str) -> str:
    """The path of lock ``name`` (STORE_LOCK, GC_LOCK, ...) in the store's locks directory."""
    return os.path.join(root, LOCK_DIR, name)


def runs_dir(root: Path | str) -> str:
    return os.path.join(root, LOCK_DIR, RUNS_DIR)


def run_lock_path(root: Path | str, exec_id: str) -> str:
    """``locks/runs/<exec_id>.lock``: held by the process that runs the execution."""
    return os.path.join(root, LOCK_DIR, RUNS_DIR, f"{exec_id}.lock")


def run_lock_exec_id(file_name: str) -> str | None:
    """The execution id a file name in the runs directory is the run lock of (None: not one)."""
    exec_id, _, ext = file_name.partition(".")
    if len(exec_id) != 2 * UUID_BYTES or ext != "lock" or exec_id.strip("0123456789abcdef"):
        return None
    return exec_id


# --- sub-databases ---------------------------------------------------------------------------

META = b"meta"  # reserved for store-level records; the store's settings live in its config file
OBJECTS = b"objects"  # object key -> record (codec.py)
TOUCH = b"touch"  # object key -> last put or reference time, ns since epoch (8 bytes, big-endian)
MANIFESTS = b"manifests"  # execution key -> head (format 2) or whole Manifest (format 1) (manifest_store.py)
PARTS = b"parts"  # part key -> entry, checkpoint or wait record; identity keys -> b"" (manifest_store.py)
EXEC_TIME = b"exec_time"  # summary key -> ExecutionSummary (fixed layout, summary.py)
EXEC_FLOW = b"exec_flow"  # flow key -> b""
ARTIFACTS = b"artifacts"  # artifact key -> execution key
REFS = b"refs"  # ref name ("pin/NAME", "inflight/...") -> object keys (32 bytes each, concatenated)
CACHE = b"cache"  # checkpoint cache key (32-byte digest, kitaru/calls.py) -> CacheRecord; not a gc root
MEMORY = b"memory"  # memory record key -> MemoryRecord (msgpack, memory.py)
DATABASES = (META, OBJECTS, TOUCH, MANIFESTS, PARTS, EXEC_TIME, EXEC_FLOW, ARTIFACTS, REFS, CACHE, MEMORY)


def key_after(key: bytes) -> bytes:
    """The least key greater than ``key``: where a scan resumes after it."""
    return key + b"\x00"


# --- ids as keys -----------------------------------------------------------------------------


def object_key(object_id: str) -> bytes:
    """The key of a full object id (64 hex characters -> 32 bytes)."""
    if len(object_id) != 2 * OBJECT_ID_BYTES:
        raise InvalidIdError(
            f"object id {object_id!r} must be {2 * OBJECT_ID_BYTES} hex characters",
            name=object_id,
            hint=ID_HINT,
        )
    try:
        return bytes.fromhex(object_id)
    except ValueError:
        raise InvalidIdError(f"object id {object_id!r} is not hex", name=object_id, hint=ID_HINT) from None


def uuid_key(hex_id: str) -> bytes:
    """The key of a full execution id (MANIFESTS, the tail of summary and flow keys) or artifact id
    (ARTIFACTS) (32 hex characters, dashes allowed -> 16 bytes)."""
    try:
        key = bytes.fromhex(hex_id.replace("-", ""))
    except ValueError:
        raise InvalidIdError(f"id {hex_id!r} is not hex", name=hex_id, hint=ID_HINT) from None
    if len(key) != UUID_BYTES:
        raise InvalidIdError(
            f"id {hex_id!r} must be {2 * UUID_BYTES} hex characters", name=hex_id, hint=ID_HINT
        )
    return key


def hex_prefix_range(hex_prefix: str) -> tuple[bytes, bytes | None]:
    """The byte-key range [lo, hi) that holds every key whose hex form starts with ``hex_prefix``."""
    if len(hex_prefix) % 2:
        lo = bytes.fromhex(hex_prefix + "0")
        hi_int = int(hex_prefix, 16) + 1
        width = len(hex_prefix)
        if hi_int >= 16**width:
            return lo, None
        return lo, bytes.fromhex(format(hi_int, f"0{width}x") + "0")
    lo = bytes.fromhex(hex_prefix)
    hi_int = int.from_bytes(lo, "big") + 1 if lo else 1
    if hi_int >= 256 ** len(lo):
        return lo, None
    return lo, hi_int.to_bytes(len(lo), "big")


def split_object_keys(raw: bytes | memoryview) -> list[bytes]:
    """A REFS value cut into its 32-byte object keys (a shorter tail is kept as it is)."""
    raw = bytes(raw)
    return [raw[i : i + OBJECT_ID_BYTES] for i in range(0, len(raw), OBJECT_ID_BYTES)]


# --- the execution indexes -------------------------------------------------------------------

TIME_BYTES = 8
SUMMARY_KEY_BYTES = TIME_BYTES + UUID_BYTES
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def time_key(started_at: dt.datetime) -> bytes:
    """8 bytes, big-endian: nanoseconds since the Unix epoch, in exact integer arithmetic.

    Naive datetimes are taken as UTC. Times before 1970 clamp to 0, after 2554 to the maximum.
    """
    if started_at.tzinfo is None:
        started_at = started_at.replace(tzinfo=dt.UTC)
    ns = (started_at - _EPOCH) // dt.timedelta(microseconds=1) * 1000
    return min(max(ns, 0), 2**64 - 1).to_bytes(TIME_BYTES, "big")  # clamps past 2554, like before 1970


def summary_key(started_at: dt.datetime, exec_key: bytes) -> bytes:
    """An EXEC_TIME key: time_key(started_at) + execution key (24 bytes; newest last)."""
    return time_key(started_at) + exec_key


def summary_exec_key(key: bytes) -> bytes:
    """The execution key at the end of an EXEC_TIME key."""
    return key[TIME_BYTES:]


def summary_time(key: bytes) -> dt.datetime:
    """The start time an EXEC_TIME key records (to the microsecond)."""
    ns = int.from_bytes(key[:TIME_BYTES], "big")
    return _EPOCH + dt.timedelta(microseconds=ns // 1000)


def flow_prefix(flow_name: str) -> bytes:
    """What every EXEC_FLOW key of one flow starts with: the name (UTF-8) and a 0x00."""
    return flow_name.encode() + b"\x00"


def flow_key(flow_name: str, summary_key: bytes) -> bytes:
    """An EXEC_FLOW key: flow name (UTF-8) + 0x00 + the execution's EXEC_TIME key."""
    return flow_prefix(flow_name) + summary_key


def flow_upper(flow_name: str) -> bytes:
    """A bound above every EXEC_FLOW key of the flow (exclusive)."""
    return flow_prefix(flow_name) + b"\xff" * (SUMMARY_KEY_BYTES + 1)


def flow_summary_key(key: bytes) -> bytes:
    """The EXEC_TIME key at the end of an EXEC_FLOW key."""
    return key[-SUMMARY_KEY_BYTES:]


def flow_exec_key(key: bytes) -> bytes:
    """The execution key at the end of an EXEC_FLOW key."""
    return key[-UUID_BYTES:]


# --- manifest part keys (format 2, manifest_store.py) ----------------------------------------
#
# A record: exec key (16) + family (1: E entry, C checkpoint, W wait) + position (8, big-endian).
# A group key: exec key + family in lower case + BLAKE2b-128 of the group + position -> b"".

PART_ENTRY, PART_CHECKPOINT, PART_WAIT = b"E", b"C", b"W"
PART_FAMILIES = (PART_ENTRY, PART_CHECKPOINT, PART_WAIT)
POSITION_BYTES = 8
PART_KEY_BYTES = UUID_BYTES + 1 + POSITION_BYTES
GROUP_DIGEST_BYTES = 16
GROUP_KEY_BYTES = UUID_BYTES + 1 + GROUP_DIGEST_BYTES + POSITION_BYTES


def part_key(exec_key: bytes, family: bytes, pos: int) -> bytes:
    return exec_key + family + pos.to_bytes(POSITION_BYTES, "big")


def part_family_range(exec_key: bytes, family: bytes) -> tuple[bytes, bytes]:
    """The key range of one family's records (or, family in lower case, group keys) of one execution."""
    return exec_key + family, exec_key + bytes((family[0] + 1,))


def part_exec_range(exec_key: bytes) -> tuple[bytes, bytes]:
    """Every key of one execution in PARTS (records and group keys)."""
    return exec_key, exec_key + b"\xff"


def part_group_prefix(exec_key: bytes, family: bytes, group: bytes) -> bytes:
    return exec_key + _group_tail(family, group)


_group_tails: dict[tuple[bytes, bytes], bytes] = {}  # the last ones built (fsck builds one per record)


def _group_tail(family: bytes, group: bytes) -> bytes:
    """The family letter (lower case) and the BLAKE2b-128 of the group: what follows the exec key."""
    tail = _group_tails.get((family, group))
    if tail is None:
        import hashlib  # not at import time: the fast path of `log` never builds one

        tail = family.lower() + hashlib.blake2b(group, digest_size=GROUP_DIGEST_BYTES).digest()
        if len(group) <= 256:  # a short group (an invocation id, a wait name): kept
            if len(_group_tails) >= 4096:
                _group_tails.clear()
            _group_tails[(family, group)] = tail
    return tail


def part_group_key(prefix: bytes, pos: int) -> bytes:
    return prefix + pos.to_bytes(POSITION_BYTES, "big")


def part_group_range(prefix: bytes) -> tuple[bytes, bytes]:
    """The group keys under ``prefix`` (part_group_prefix): one per record position."""
    return prefix, prefix + b"\xff" * (POSITION_BYTES + 1)


def part_position(key: bytes) -> int:
    """The position at the end of a part record or group key."""
    return int.from_bytes(key[-POSITION_BYTES:], "big")


def part_exec_key(key: bytes) -> bytes:
    """The execution key a key of PARTS begins with."""
    return key[:UUID_BYTES]


def part_family(key: bytes) -> bytes:
    """The family letter of a key of PARTS (upper case: a record; lower case: a group key)."""
    return key[UUID_BYTES : UUID_BYTES + 1]


# --- ref names -------------------------------------------------------------------------------

PIN_PREFIX = b"pin/"
INFLIGHT_PREFIX = b"inflight/"
_STAMP_HEX = 16


def pin_ref(name: str) -> bytes:
    """``pin/NAME``: the ref of a pin."""
    return PIN_PREFIX + name.encode()


def pin_name(ref: bytes) -> str | None:
    """The pin name of a ref name, None if it is not a pin's."""
    return ref[len(PIN_PREFIX) :].decode() if ref.startswith(PIN_PREFIX) else None


def prefix_upper(prefix: bytes) -> bytes:
    """A bound above every key that starts with ``prefix`` (one ending in "/"), exclusive."""
    return prefix[:-1] + bytes([prefix[-1] + 1])


def inflight_ref(stamp_ns: int, suffix: bytes) -> bytes:
    """``inflight/<flush time: 16 hex digits of ns>/<uuid>``: a writer's objects before its commit."""
    return INFLIGHT_PREFIX + b"%016x/" % stamp_ns + suffix


def inflight_stamp(ref: bytes) -> int | None:
    """The flush time of an in-flight ref name; None for any other ref (or one not ours to judge)."""
    if not ref.startswith(INFLIGHT_PREFIX):
        return None
    stamp = ref[len(INFLIGHT_PREFIX) : len(INFLIGHT_PREFIX) + _STAMP_HEX]
    try:
        return int(stamp, 16)
    except ValueError:
        return None


# Redaction queues an object for gc's eraser under erase/<object id, 64 hex>; the ref's value lists
# the memory record keys waiting for the outcome (not object ids: it keeps nothing alive).
ERASE_PREFIX = b"erase/"
ERASE_END = prefix_upper(ERASE_PREFIX)  # the first name after every erase/ name
_OBJECT_KEY_BYTES = 32


def erase_ref(okey: bytes) -> bytes:
    """The name of the erasure queue record of an object (gc.queue_erasure)."""
    return ERASE_PREFIX + okey.hex().encode()


def erase_target(name: bytes) -> bytes | None:
    """The object key an erasure queue record names; None for a name that is not one."""
    if not name.startswith(ERASE_PREFIX) or len(name) != len(ERASE_PREFIX) + 2 * _OBJECT_KEY_BYTES:
        return None
    try:
        okey = bytes.fromhex(name[len(ERASE_PREFIX) :].decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        return None
    return okey if len(okey) == _OBJECT_KEY_BYTES else None  # (fromhex skips spaces)


def reserved_ref(name: bytes) -> bool:
    """Whether a ref name is one the store writes for itself (in-flight lists, erasure queue):
    never a caller's (Repository.set_ref refuses it: gc reads these names by their form)."""
    return name.startswith((INFLIGHT_PREFIX, ERASE_PREFIX))


# --- memory record keys ----------------------------------------------------------------------
#
# scope kind (b"n" namespace, b"f" flow, b"e" execution) + scope name (UTF-8) + 0x00 + memory key
# (UTF-8) + 0x00 + version (8 bytes, big-endian, from 1). Every version of a key sorts together,
# oldest first; every key of a scope between memory_scope_prefix and memory_scope_upper.

MEMORY_KINDS = {"namespace": b"n", "flow": b"f", "execution": b"e"}
_MEMORY_KIND_NAME = {v[0]: k for k, v in MEMORY_KINDS.items()}
VERSION_BYTES = 8
MEMORY_KEY_OVERHEAD = 1 + 1 + 1 + VERSION_BYTES  # kind, two 0x00, version (names.py budgets the rest)


def memory_scope_prefix(kind: str, name: str) -> bytes:
    return MEMORY_KINDS[kind] + name.encode() + b"\x00"


def memory_scope_upper(kind: str, name: str) -> bytes:
    return MEMORY_KINDS[kind] + name.encode() + b"\x01"


def memory_record_key(scope_prefix: bytes, key: str, version: int) -> bytes:
    return scope_prefix + key.encode() + b"\x00" + version.to_bytes(VERSION_BYTES, "big")


def memory_versions_range(scope_prefix: bytes, key: bytes) -> tuple[bytes, bytes]:
    """[lo, hi): every version of memory key ``key`` (UTF-8) of the scope."""
    base = scope_prefix + key
    return base + b"\x00", base + b"\x01"


def memory_key_in(record_key: bytes, scope_prefix: bytes) -> bytes:
    """The memory key (UTF-8) of a record key of the scope; ValueError if it has none."""
    return record_key[len(scope_prefix) : record_key.index(b"\x00", len(scope_prefix))]


def memory_record_version(record_key: bytes) -> int:
    return int.from_bytes(record_key[-VERSION_BYTES:], "big")


def parse_memory_record_key(raw: bytes) -> tuple[str, str, str, int]:
    """(scope kind, scope name, memory key, version) of a record key.

    ValueError (a UnicodeDecodeError for names that are not UTF-8) if it is not one.
    """
    if len(raw) < 12 or raw[-VERSION_BYTES - 1] != 0 or raw[0] not in _MEMORY_KIND_NAME:
        raise ValueError("is malformed")
    body = raw[1 : -VERSION_BYTES - 1]
    if body.count(b"\x00") != 1:
        raise ValueError("is malformed")
    name, key = body.split(b"\x00")
    version = memory_record_version(raw)
    if version < 1:
        raise ValueError("has version 0")
    return _MEMORY_KIND_NAME[raw[0]], name.decode(), key.decode(), version
