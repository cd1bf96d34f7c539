"""BLAKE3, the content hash. The only module that imports blake3."""

from __future__ import annotations

from collections.abc import Iterable

from blake3 import blake3

Buffer = bytes | bytearray | memoryview

# blake3's own threads pay off only on large inputs; below this they cost more than they save.
_THREADED_FROM = 8 << 20


def digest(data: Buffer, *, threaded: bool = True) -> bytes:
    """The 32-byte BLAKE3-256 digest of ``data``.

    ``threaded=False`` when the caller runs other work on the other cores at the same time;
    KITARU_THREADS=1 keeps every hash on the calling thread (parallel.py).
    """
    if threaded and len(data) >= _THREADED_FROM:
        from . import parallel  # here: the fast path of `log` hashes summaries without typing

        if parallel.enabled():
            return blake3(data, max_threads=blake3.AUTO).digest()
    return blake3(data).digest()


def keyed_digest(key: bytes, data: Buffer) -> bytes:
    """BLAKE3-256 of ``key`` followed by ``data`` (no copy of either), on the calling thread."""
    hasher = blake3(key)
    hasher.update(data)
    return hasher.digest()


def hexdigest(data: Buffer) -> str:
    return digest(data).hex()


class StreamHasher:
    """Incremental BLAKE3 over several buffers (a chunked value, read back chunk by chunk)."""

    def __init__(self) -> None:
        self._h = blake3()

    def update(self, data: Buffer) -> None:
        self._h.update(data)

    def digest(self) -> bytes:
        return self._h.digest()


def digest_parts(parts: Iterable[Buffer]) -> bytes:
    h = StreamHasher()
    for part in parts:
        h.update(part)
    return h.digest()
