"""The checksum pair that ends a stored MessagePack map: manifests and execution summaries.

A checksummed record is a map with one more pair appended: the key ``"checksum"`` and a 32-byte
``bin`` value, the BLAKE3-256 of every byte before the digest (the map header, counting the
extra pair, every field, and the key with its ``bin8`` header). Readers that do not know the
pair ignore it as an unknown field. Imports no msgspec, and blake3 only once it hashes: the
fast path of ``log`` uses it, and the CLI imports that path before it knows the command.

A record may be bound to the key it is stored under (``key=``): the digest then covers the key
followed by the record's bytes, so that the record copied under another key (another position,
another execution) no longer verifies. A manifest head is sealed so (manifest_store.py).
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (see kitaru_store/__init__.py)
if TYPE_CHECKING:
    from collections.abc import Callable

_keyed: Callable[[bytes, bytes | bytearray | memoryview], bytes] | None = None  # hashing.keyed_digest


def _digest(data: bytes | bytearray | memoryview, key: bytes = b"") -> bytes:
    global _keyed
    if _keyed is None:
        from .hashing import keyed_digest  # here, once, not at import time (see above)

        _keyed = keyed_digest
    return _keyed(key, data)


def keyed_digest(key: bytes, data: bytes | bytearray | memoryview) -> bytes:
    """BLAKE3-256 of ``key`` followed by ``data``: a record bound to the key it is stored under."""
    return _digest(data, key)


TAIL = b"\xa8checksum\xc4\x20"  # fixstr(8) "checksum", then bin8 of 32 bytes
SIZE = len(TAIL) + 32  # what the pair adds to a record


def seal(body: bytes, key: bytes = b"") -> bytes:
    """``body`` (a MessagePack map) with the checksum pair appended (bound to ``key``, if given)."""
    out = _one_more_pair(body) + TAIL
    return out + _digest(out, key)


def _one_more_pair(body: bytes) -> bytes:
    """``body`` (a MessagePack map) with its header counting one more key-value pair."""
    head = body[0]
    if 0x80 <= head < 0x8F:
        return bytes((head + 1,)) + body[1:]
    if head == 0x8F:
        return b"\xde\x00\x10" + body[1:]
    if head == 0xDE:
        n = int.from_bytes(body[1:3], "big") + 1
        return (b"\xde" + n.to_bytes(2, "big") if n <= 0xFFFF else b"\xdf" + n.to_bytes(4, "big")) + body[3:]
    if head == 0xDF:
        return b"\xdf" + (int.from_bytes(body[1:5], "big") + 1).to_bytes(4, "big") + body[5:]
    raise ValueError("a checksummed record encodes as a MessagePack map")


def present(data: bytes | memoryview) -> bool:
    """Whether a record ends with the checksum pair (records written before checksums do not)."""
    view = memoryview(data)
    return len(view) > SIZE and view[-SIZE:-32] == TAIL


def checked_tag(data: bytes | memoryview, key: bytes = b"") -> bytes | None:
    """The checksum of a record if it verifies (sealed with ``key``), else None (damaged, sealed
    under another key, or written without one).

    Equal tags mean equal bytes: a reader that decoded (and verified) a record earlier knows
    from this one hash whether its copy is still the stored one, without decoding again.
    """
    view = memoryview(data)
    if not present(view):
        return None
    tag = bytes(view[-32:])
    return tag if _digest(view[:-32], key) == tag else None
