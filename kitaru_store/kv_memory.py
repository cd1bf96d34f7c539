"""MemoryKV: the in-memory implementation of kv.Store, for tests and throwaway stores.

Each sub-database is a dict with its keys kept sorted (bisect) beside it. A committed state is
never changed: a write transaction copies each table the first time it writes to it and, at
commit, puts the new state in place in one assignment. So a read transaction, which holds the
state that was current when it began, never sees a later commit (snapshot isolation); a write
transaction that raises is dropped and changes nothing; a scan batch is a snapshot of its own,
as with LMDB. One writer at a time (a lock); a write inside a write is refused, as LMDB would
refuse it (it would wait for itself).

No file: ``maintenance()`` is None (nothing to measure or compact). Nothing survives the object.
"""

from __future__ import annotations

import bisect
import itertools
import threading
from contextlib import contextmanager

from . import layout
from .errors import ReadOnlyStoreError, StoreError
from .kv import SCAN_BATCH, bounds

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (see kitaru_store/__init__.py)
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator
    from typing import TypeVar

    from .kv import Maintenance

    T = TypeVar("T")

_generations = itertools.count(1)  # negated: never the generation of an LMDB environment
MAX_KEY_BYTES = 511  # LMDB's limit, which names.py budgets keys against: refused here too


class _Table:
    """One sub-database: values by key, and the keys in order."""

    __slots__ = ("keys", "values")

    def __init__(self, values: dict[bytes, bytes] | None = None, keys: list[bytes] | None = None) -> None:
        self.values = values if values is not None else {}
        self.keys = keys if keys is not None else []

    def copy(self) -> _Table:
        return _Table(dict(self.values), list(self.keys))

    def span(self, lo: bytes, hi: bytes | None) -> tuple[int, int]:
        """The positions in ``keys`` of [lo, hi)."""
        i = bisect.bisect_left(self.keys, lo)
        j = len(self.keys) if hi is None else bisect.bisect_left(self.keys, hi, lo=i)
        return i, j


_EMPTY = _Table()


class _State:
    """One committed state: its number and its tables (never changed once committed)."""

    __slots__ = ("number", "tables")

    def __init__(self, number: int, tables: dict[bytes, _Table]) -> None:
        self.number = number
        self.tables = tables


class ReadTxn:
    """kv.ReadTxn over one committed state."""

    def __init__(self, state: _State, generation: int) -> None:
        self._state = state
        self._generation = generation

    def _table(self, db: bytes) -> _Table:
        if db not in layout.DATABASES:
            raise KeyError(db)  # as LMDB's handle table: a name no store has is a bug
        return self._state.tables.get(db, _EMPTY)

    def version(self) -> tuple[int, int]:
        return self._generation, self._state.number

    def get(self, db: bytes, key: bytes) -> bytes | None:
        return self._table(db).values.get(key)

    def get_view(self, db: bytes, key: bytes) -> memoryview | None:
        value = self._table(db).values.get(key)
        return None if value is None else memoryview(value)

    def has(self, db: bytes, key: bytes) -> bool:
        return key in self._table(db).values

    def count(self, db: bytes) -> int:
        return len(self._table(db).keys)

    def items(
        self, db: bytes, lo: bytes = b"", hi: bytes | None = None, *, reverse: bool = False
    ) -> Iterator[tuple[bytes, bytes]]:
        table = self._table(db)
        i, j = table.span(lo, hi)
        keys = table.keys[i:j]
        for key in reversed(keys) if reverse else keys:
            yield key, table.values[key]

    def view_items(
        self, db: bytes, lo: bytes = b"", hi: bytes | None = None
    ) -> Iterator[tuple[bytes, memoryview]]:
        for key, value in self.items(db, lo, hi):
            yield key, memoryview(value)

    def present(self, db: bytes, keys: Iterable[bytes]) -> set[bytes]:
        values = self._table(db).values
        return {k for k in keys if k in values}

    def get_many(self, db: bytes, keys: Iterable[bytes]) -> dict[bytes, bytes]:
        values = self._table(db).values
        return {k: values[k] for k in keys if k in values}


class WriteTxn(ReadTxn):
    """kv.WriteTxn: writes go to copies of the tables, which commit puts in place."""

    def __init__(self, state: _State, generation: int) -> None:
        super().__init__(_State(state.number, dict(state.tables)), generation)
        self._copied: set[bytes] = set()

    def committing(self) -> tuple[int, int]:
        return self._generation, self._state.number + 1

    def _writable(self, db: bytes) -> _Table:
        table = self._table(db)
        if db not in self._copied:
            table = self._state.tables[db] = table.copy()
            self._copied.add(db)
        return table

    def put(
        self, db: bytes, key: bytes, value: bytes | bytearray | memoryview, *, overwrite: bool = True
    ) -> bool:
        if not isinstance(key, bytes) or not 0 < len(key) <= MAX_KEY_BYTES:
            raise StoreError(  # as LMDB refuses it (backend.translate)
                f"a key must be 1 to {MAX_KEY_BYTES} bytes, not {key[:40]!r}",
                hint="the store is fine and the write changed nothing",
            )
        if not overwrite and key in self._table(db).values:
            return False
        table = self._writable(db)
        if key not in table.values:
            bisect.insort(table.keys, key)
        table.values[key] = bytes(value)  # a copy: the caller may change its buffer later
        return True

    def delete(self, db: bytes, key: bytes) -> bool:
        if key not in self._table(db).values:
            return False
        table = self._writable(db)
        del table.values[key]
        del table.keys[bisect.bisect_left(table.keys, key)]
        return True

    def _committed(self) -> _State:
        return _State(self._state.number + 1, self._state.tables)


class MemoryKV:
    """kv.Store in this process's memory (see the module's docstring)."""

    def __init__(self, *, readonly: bool = False, databases: Iterable[bytes] = layout.DATABASES) -> None:
        """``databases``: the sub-databases that exist (the others read as empty until written,
        like those a read-only LMDB store made before them lacks)."""
        self._readonly = readonly
        self._state = _State(0, {db: _Table() for db in databases})
        self._generation = -next(_generations)
        self._write_lock = threading.Lock()
        self._writer: int | None = None  # the thread inside update

    @property
    def readonly(self) -> bool:
        return self._readonly

    @contextmanager
    def read(self, *, buffers: bool = False) -> Iterator[ReadTxn]:
        yield ReadTxn(self._state, self._generation)

    def update(self, fn: Callable[[WriteTxn], T]) -> T:
        if self._readonly:
            raise ReadOnlyStoreError("the in-memory store is open read-only")
        if self._writer == threading.get_ident():
            raise StoreError(
                "a write transaction was begun inside another one in the same thread",
                hint="this is a bug in the caller: one update at a time per thread",
            )
        with self._write_lock:
            self._writer = threading.get_ident()
            try:
                wt = WriteTxn(self._state, self._generation)
                result = fn(wt)
                self._state = wt._committed()
                return result
            finally:
                self._writer = None

    def scan(
        self,
        db: bytes,
        start: bytes = b"",
        stop: bytes | None = None,
        *,
        prefix: bytes | None = None,
        batch: int = SCAN_BATCH,
    ) -> Iterator[tuple[bytes, bytes]]:
        for keys, values in self._batches(db, start, stop, prefix, batch):
            for key in keys:
                yield key, values[key]

    def batches(
        self,
        db: bytes,
        start: bytes = b"",
        stop: bytes | None = None,
        *,
        prefix: bytes | None = None,
        batch: int = SCAN_BATCH,
    ) -> Iterator[Iterator[tuple[bytes, memoryview]]]:
        for keys, values in self._batches(db, start, stop, prefix, batch):
            yield ((key, memoryview(values[key])) for key in keys)

    def key_batches(
        self,
        db: bytes,
        start: bytes = b"",
        stop: bytes | None = None,
        *,
        prefix: bytes | None = None,
        batch: int = SCAN_BATCH,
    ) -> Iterator[list[bytes]]:
        for keys, _ in self._batches(db, start, stop, prefix, batch):
            yield keys

    def _batches(
        self, db: bytes, start: bytes, stop: bytes | None, prefix: bytes | None, batch: int
    ) -> Iterator[tuple[list[bytes], dict[bytes, bytes]]]:
        """Up to ``batch`` keys at a time, each list from the state current when it is asked for."""
        lo, hi = bounds(start, stop, prefix)
        if batch < 1:
            raise ValueError("a scan batch holds at least one record")
        while True:
            with self.read() as rt:
                table = rt._table(db)
                i, j = table.span(lo, hi)
                keys = table.keys[i : min(i + batch, j)]
                if keys:
                    yield keys, table.values
            if i + batch >= j:
                return
            lo = layout.key_after(keys[-1])

    def maintenance(self) -> Maintenance | None:
        """None: an in-memory store has no file to measure or compact."""
        return None
