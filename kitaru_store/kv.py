"""The key-value interface the store is written against, and its key-range rules.

Two implementations: backend.Backend (LMDB, the store on disk; the only module that imports
lmdb) and kv_memory.MemoryKV (a dict and sorted keys per sub-database, for tests and
throwaway stores). tests/store/test_kv_contract.py runs one suite against both.

The model: named sub-databases (layout.DATABASES) of byte keys in byte order. A read
transaction sees one committed state (a snapshot) until it ends; writes go through ``update``,
one writer at a time, committed whole or not at all. A sub-database that does not exist (a
read-only store made before it) reads as empty.

Long reads (gc's mark and scan, fsck, stats) go through ``scan``, ``batches`` or
``key_batches``: ``batch`` records per short read transaction, each resuming just after the
last key of the one before, so that no snapshot is held for the length of the walk (a pinned
snapshot keeps every page writers free from being reused). A walk spanning several
transactions sees each batch from its own snapshot: what is committed meanwhile may or may not
be seen, and callers that need one snapshot use ``read`` and ``ReadTxn.items``.

Import-light on purpose: backend.py (on the fast path of ``kitaru-store log``) imports it, so
``typing`` is only imported by type checkers; at run time the protocols are plain classes.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (see kitaru_store/__init__.py)
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator
    from contextlib import AbstractContextManager
    from typing import Protocol, TypeVar

    T = TypeVar("T")
else:
    Protocol = object  # the protocols below are for type checkers; nothing checks them at run time

SCAN_BATCH = 2048  # records per read transaction of a scan, unless the caller says


def bounds(
    start: bytes = b"", stop: bytes | None = None, prefix: bytes | None = None
) -> tuple[bytes, bytes | None]:
    """[lo, hi) of a scan: keys from ``start`` (inclusive) to ``stop`` (exclusive, None: the end)
    that start with ``prefix`` (if given)."""
    if prefix:
        start = max(start, prefix)
        upper = prefix_stop(prefix)
        if upper is not None and (stop is None or upper < stop):
            stop = upper
    return start, stop


def prefix_stop(prefix: bytes) -> bytes | None:
    """The least key above every key that starts with ``prefix`` (None: there is none, the prefix
    being all 0xff bytes)."""
    stripped = prefix.rstrip(b"\xff")
    if not stripped:
        return None
    return stripped[:-1] + bytes([stripped[-1] + 1])


class ReadTxn(Protocol):
    """One snapshot of the store, valid inside the ``with`` of ``Store.read``."""

    def version(self) -> tuple[int, int]:
        """The committed state this transaction sees. Equal versions (from the same store object)
        mean nothing was committed in between, by anyone: a cache of something decoded from the
        store is current. What the numbers are is the implementation's."""
        ...

    def get(self, db: bytes, key: bytes) -> bytes | None:
        """The value of ``key``, copied (None: not stored)."""
        ...

    def get_view(self, db: bytes, key: bytes) -> memoryview | None:
        """The value of ``key`` without a copy where the implementation can (LMDB: opened with
        ``buffers=True``, a view of the map), valid only inside this transaction."""
        ...

    def has(self, db: bytes, key: bytes) -> bool: ...

    def count(self, db: bytes) -> int:
        """How many keys ``db`` holds (0 for a database that does not exist)."""
        ...

    def items(
        self, db: bytes, lo: bytes = b"", hi: bytes | None = None, *, reverse: bool = False
    ) -> Iterator[tuple[bytes, bytes]]:
        """(key, value) with lo <= key < hi in key order (or reversed), values copied."""
        ...

    def view_items(
        self, db: bytes, lo: bytes = b"", hi: bytes | None = None
    ) -> Iterator[tuple[bytes, memoryview]]:
        """(key, value) with lo <= key < hi in key order, values as in ``get_view``."""
        ...

    def present(self, db: bytes, keys: Iterable[bytes]) -> set[bytes]:
        """Which of ``keys`` ``db`` holds, looked up in key order (LMDB: a cursor moving forward
        finds each next key in pages it has just read, several times faster than random order)."""
        ...

    def get_many(self, db: bytes, keys: Iterable[bytes]) -> dict[bytes, bytes]:
        """The values ``db`` holds for those of ``keys`` it has, looked up in key order."""
        ...


class WriteTxn(ReadTxn, Protocol):
    """The one write transaction of ``Store.update``: it sees its own writes."""

    def committing(self) -> tuple[int, int]:
        """The ``version()`` later transactions see once this one has committed, if nothing else
        has."""
        ...

    def put(
        self, db: bytes, key: bytes, value: bytes | bytearray | memoryview, *, overwrite: bool = True
    ) -> bool:
        """Store ``value``; with ``overwrite=False`` a stored key is left as it is and False
        returned."""
        ...

    def delete(self, db: bytes, key: bytes) -> bool:
        """Delete ``key``; False if it was not stored."""
        ...


class Maintenance(Protocol):
    """What only a store with a file has. ``Store.maintenance()`` gives it, or None where it does
    not apply (MemoryKV: nothing on disk, no free pages to give back)."""

    def file_size(self) -> int:
        """Bytes the store's data file takes (0 if it cannot be read)."""
        ...

    def used_bytes(self) -> int:
        """About what a compacted copy would take: the pages the live data uses."""
        ...

    def compact(
        self,
        dest_dir: str,
        *,
        prepare: Callable[[], None],
        install: Callable[[], None],
        timeout: float = 30.0,
    ) -> None:
        """Copy the store compacted into ``dest_dir``; ``prepare`` runs on the copy, ``install``
        puts it in place while nothing uses the store (backend.Backend.compact)."""
        ...


class Store(Protocol):
    """A key-value store: snapshot reads, one atomic writer at a time, batched scans."""

    @property
    def readonly(self) -> bool: ...

    def read(self, *, buffers: bool = False) -> AbstractContextManager[ReadTxn]:
        """A read transaction. ``buffers``: ``get_view`` may return views of the store's own memory."""
        ...

    def update(self, fn: Callable[[WriteTxn], T]) -> T:
        """Run ``fn`` in one write transaction and commit it; ``fn``'s result is returned. If ``fn``
        raises, nothing it wrote is kept. ``fn`` must be safe to run again: an implementation may
        run it once more in a fresh transaction (LMDB: after growing a full map)."""
        ...

    def scan(
        self,
        db: bytes,
        start: bytes = b"",
        stop: bytes | None = None,
        *,
        prefix: bytes | None = None,
        batch: int = SCAN_BATCH,
    ) -> Iterator[tuple[bytes, bytes]]:
        """(key, value) in key order over ``bounds(start, stop, prefix)``, values copied, read
        ``batch`` records per short read transaction."""
        ...

    def batches(
        self,
        db: bytes,
        start: bytes = b"",
        stop: bytes | None = None,
        *,
        prefix: bytes | None = None,
        batch: int = SCAN_BATCH,
    ) -> Iterator[Iterator[tuple[bytes, memoryview]]]:
        """As ``scan``, up to ``batch`` records at a time, values not copied: each batch is read
        in one read transaction, which stays open until the next batch is asked for, so its views
        are valid until then; what the caller leaves of a batch is passed over. A batch is an
        iterator, not a list: holding thousands of views at once costs Python's cyclic gc more
        than the walk itself. Consume it in one thread, and write nothing meanwhile."""
        ...

    def key_batches(
        self,
        db: bytes,
        start: bytes = b"",
        stop: bytes | None = None,
        *,
        prefix: bytes | None = None,
        batch: int = SCAN_BATCH,
    ) -> Iterator[list[bytes]]:
        """The keys of ``scan``, a list of up to ``batch`` per read transaction (values not read)."""
        ...

    def maintenance(self) -> Maintenance | None:
        """The store's file maintenance, None where it does not apply."""
        ...
