"""The LMDB environment: sub-databases, transactions, map growth. The only module that imports lmdb.

One process opens one environment per path (LMDB forbids opening the same file twice in one
process), so environments live in a registry keyed by (pid, real path). A child created by
fork() never uses its parent's handle: it lets go of it (see _after_fork_in_child) and opens its own.
"""

from __future__ import annotations

import errno
import itertools
import os
import threading
from contextlib import contextmanager

import lmdb

from .errors import ReadOnlyStoreError, StoreError, StoreFullError
from .locks import FileLock

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (see kitaru_store/__init__.py)
if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from typing import TypeVar

    T = TypeVar("T")

# Sub-databases and what they hold (docs/design.md has the byte layouts).
DATABASES = (
    b"meta",  # reserved for store-level records; the store's settings live in its config file
    b"objects",  # object id (32 bytes) -> record (codec.py)
    b"touch",  # object id -> last put or reference time, ns since epoch (8 bytes, big-endian)
    b"manifests",  # execution id (16 bytes) -> Manifest (msgpack)
    b"exec_time",  # started_at ns (8) + execution id (16) -> ExecutionSummary (msgpack)
    b"exec_flow",  # flow name (utf-8) + 0x00 + started_at ns (8) + execution id (16) -> b""
    b"artifacts",  # artifact id (16 bytes) -> execution id (16 bytes)
    b"refs",  # ref name (utf-8: "pin/NAME", "inflight/...") -> object ids (32 bytes each, concatenated)
    b"cache",  # checkpoint cache key (32 bytes) -> CacheRecord (msgpack); not a gc root
    # scope kind (b"n" namespace, b"f" flow, b"e" execution) + scope name (utf-8) + 0x00 + memory key
    # (utf-8) + 0x00 + version (8 bytes, big-endian, from 1) -> MemoryRecord (msgpack, memory.py)
    b"memory",
)

# Adopting another process's map growth is retried: several processes may grow it in a row.
_RESIZE_RETRIES = 10
DEFAULT_MAP_SIZE = 1 << 36  # 64 GiB of address space; the file grows only as data arrives
MAX_READERS = 1022
SCAN_BATCH = 2048
_generations = itertools.count(1)  # one per environment opened in this process (ReadTxn.version)


def _map_size_from_env() -> int:
    raw = os.environ.get("KITARU_MAP_SIZE")
    if not raw:
        return DEFAULT_MAP_SIZE
    try:
        return max(1 << 20, int(raw))
    except ValueError:
        raise StoreError(
            f"KITARU_MAP_SIZE={raw!r} is not a byte count",
            hint="set it to a whole number of bytes, or unset it",
        ) from None


def translate(exc: lmdb.Error, path: str) -> StoreError:
    """Map an LMDB failure onto a typed store error."""
    if isinstance(exc, lmdb.ReadonlyError) or getattr(exc, "errno", None) in (errno.EACCES, errno.EROFS):
        return ReadOnlyStoreError(
            f"store {path} is read-only: {exc}", hint="open it from a writable location"
        )
    if isinstance(exc, lmdb.DiskError) or "No space left" in str(exc):
        return StoreFullError(
            f"the disk holding {path} is full: {exc}",
            hint="free disk space; the failed write changed nothing",
        )
    if isinstance(exc, lmdb.BadValsizeError):
        # A key longer than LMDB takes: names are checked against their key's budget first
        # (names.py), so this is a limit missed, not damage. The write changed nothing.
        return StoreError(
            f"a key is longer than LMDB accepts in {path}: {exc}",
            hint="the store is fine and the write changed nothing; use a shorter name, and report"
            " this as a bug (a name passed validation that its key could not hold)",
        )
    if "Input/output error" in str(exc):
        # LMDB reports a short write (what a full disk or a file size limit gives) as EIO.
        if _free_bytes(path) < _NEARLY_FULL:
            return StoreFullError(
                f"the disk holding {path} is full: {exc}",
                hint="free disk space; the failed write changed nothing",
            )
        return StoreError(
            f"writing to the store {path} failed: {exc}",
            hint="the disk may be full, over a quota or size limit, or failing;"
            " the failed write changed nothing",
        )
    return StoreError(f"LMDB error in {path}: {exc}", hint="run `kitaru-store fsck`; see docs/design.md")


_NEARLY_FULL = 16 << 20


def _free_bytes(path: str) -> int:
    try:
        st = os.statvfs(path)
    except OSError:
        return _NEARLY_FULL  # cannot tell: not "full"
    return st.f_bavail * st.f_frsize


class ReadTxn:
    """A read (or write) transaction with helpers over the named sub-databases.

    A sub-database a read-only handle could not open (a store made before it existed) reads as
    empty: its handle is None, which LMDB would otherwise take for the top-level table.
    """

    def __init__(
        self, txn: lmdb.Transaction, dbs: dict[bytes, lmdb._Database | None], generation: int = 0
    ) -> None:
        self.txn = txn
        self._dbs = dbs
        self._generation = generation

    def version(self) -> tuple[int, int]:
        """The committed state this transaction sees: (environment generation, LMDB txn id).

        Equal versions mean that nothing was committed in between, by any process: a cache of
        something decoded from the store is current without reading it again. The generation
        changes whenever this process (re)opens the environment (a compacted copy restarts ids).
        """
        return self._generation, self.txn.id()

    def get(self, db: bytes, key: bytes) -> bytes | None:
        handle = self._dbs[db]
        value = self.txn.get(key, db=handle) if handle is not None else None
        return None if value is None else bytes(value)

    def get_view(self, db: bytes, key: bytes) -> memoryview | None:
        """A zero-copy view, valid only inside this transaction (needs buffers=True)."""
        handle = self._dbs[db]
        value = self.txn.get(key, db=handle) if handle is not None else None
        return None if value is None else memoryview(value)

    def has(self, db: bytes, key: bytes) -> bool:
        handle = self._dbs[db]
        return handle is not None and self.txn.get(key, db=handle) is not None

    def count(self, db: bytes) -> int:
        handle = self._dbs[db]
        return int(self.txn.stat(handle)["entries"]) if handle is not None else 0

    def items(
        self, db: bytes, lo: bytes = b"", hi: bytes | None = None, *, reverse: bool = False
    ) -> Iterator[tuple[bytes, bytes]]:
        """Items with lo <= key < hi, in key order (or reversed)."""
        handle = self._dbs[db]
        if handle is None:
            return
        cur = self.txn.cursor(db=handle)
        if not reverse:
            if not cur.set_range(lo):
                return
            for key, value in cur:
                k = bytes(key)
                if hi is not None and k >= hi:
                    return
                yield k, bytes(value)
            return
        positioned = cur.set_range(hi) if hi is not None else cur.last()
        if hi is not None:
            positioned = cur.prev() if positioned else cur.last()
        if not positioned:
            return
        while True:
            k = bytes(cur.key())
            if k < lo:
                return
            yield k, bytes(cur.value())
            if not cur.prev():
                return


class WriteTxn(ReadTxn):
    def version(self) -> tuple[int, int]:
        return self._generation, self.txn.id() - 1  # a write transaction has the next id

    def committing(self) -> tuple[int, int]:
        """The version() later transactions see once this one has committed, if nothing else has."""
        return self._generation, self.txn.id()

    def put(
        self, db: bytes, key: bytes, value: bytes | bytearray | memoryview, *, overwrite: bool = True
    ) -> bool:
        return bool(self.txn.put(key, value, db=self._dbs[db], overwrite=overwrite))

    def delete(self, db: bytes, key: bytes) -> bool:
        return bool(self.txn.delete(key, db=self._dbs[db]))


class Backend:
    """One LMDB environment in ``path`` (a directory holding data.mdb and lock.mdb)."""

    def __init__(
        self, path: str, *, readonly: bool = False, create: bool = True, lock_path: str | None = None
    ) -> None:
        self.path = path
        # Every open handle holds this lock shared; compaction takes it exclusive, so the file is
        # never swapped under a process that has it mapped.
        self._store_lock = FileLock(lock_path) if lock_path else None
        self.readonly = readonly
        self._create = create
        self._pid = -1
        self._env: lmdb.Environment | None = None
        self._dbs: dict[bytes, lmdb._Database | None] = {}
        self._grow_lock = threading.Lock()
        self._live: set[object] = set()  # one marker per transaction open now (see _after_fork_in_child)
        self._open()

    def _open(self) -> None:
        if self._store_lock is not None:
            try:
                self._store_lock.acquire(exclusive=False, timeout=60.0, what="opening the store")
            except OSError as exc:
                # EROFS is not a PermissionError: a read-only filesystem raises a plain OSError.
                if not self.readonly or exc.errno not in (errno.EACCES, errno.EPERM, errno.EROFS):
                    raise
                # A read-only store on a read-only filesystem: nothing can compact it under us.
                self._store_lock = None
        try:
            try:
                env = self._lmdb_open(lock=True)
            except lmdb.ReadonlyError:
                if not self.readonly:
                    raise
                # A store this process may read but not write (lock.mdb is not writable: another
                # user's store, or one made read-only with chmod). LMDB cannot register a reader
                # in its lock file, so read without it: whoever could write the store is not us,
                # and every object read is verified against its id, every manifest against its
                # checksum. (docs/reliability.md, "Read-only stores")
                env = self._lmdb_open(lock=False)
        except lmdb.Error as exc:
            if self._store_lock is not None:
                self._store_lock.release()
            raise translate(exc, self.path) from exc
        # A killed process leaves its reader slot behind; clear those now, not at the 1,023rd reader.
        env.reader_check()
        try:
            dbs = self._open_databases(env)
        except lmdb.Error as exc:
            env.close()
            if self._store_lock is not None:
                self._store_lock.release()
            raise translate(exc, self.path) from exc
        self._env = env
        self._dbs = dbs
        self._pid = os.getpid()
        self._generation = next(_generations)

    def _lmdb_open(self, *, lock: bool) -> lmdb.Environment:
        return lmdb.open(
            self.path,
            map_size=_map_size_from_env(),
            subdir=True,
            readonly=self.readonly,
            create=self._create and not self.readonly,
            max_dbs=len(DATABASES) + 2,
            max_readers=MAX_READERS,
            readahead=False,
            mode=0o600,
            lock=lock,
        )

    def _open_databases(self, env: lmdb.Environment) -> dict[bytes, lmdb._Database | None]:
        for attempt in range(_RESIZE_RETRIES):
            dbs: dict[bytes, lmdb._Database | None] = {}
            try:
                if self.readonly:
                    # Opened outside any transaction: handles opened inside a read transaction are
                    # only valid in it (every later cursor failed with EINVAL).
                    for name in DATABASES:
                        try:
                            dbs[name] = env.open_db(name, create=False)
                        except lmdb.NotFoundError:
                            dbs[name] = None
                else:
                    for name in DATABASES:
                        dbs[name] = env.open_db(name)
                return dbs
            except lmdb.MapResizedError:
                # Another process grew the map between our open and this transaction: adopt it.
                if attempt == _RESIZE_RETRIES - 1:
                    raise
                env.set_mapsize(0)
        raise AssertionError("unreachable")

    @property
    def env(self) -> lmdb.Environment:
        if self._pid != os.getpid():
            # Forked: the parent's handle must not be used here. Keep it referenced so that it is
            # never deallocated in the child, and share this process's own handle for the path.
            _forked_leftovers.append(self._env)
            lock_path = self._store_lock.path if self._store_lock is not None else None
            # The parent's flock is shared through the inherited descriptor: never release it here.
            self._store_lock = None
            current = open_backend(
                self.path, readonly=self.readonly, create=self._create, lock_path=lock_path
            )
            self._env, self._dbs, self._pid = current.env, current._dbs, current._pid
            self._generation = current._generation
        assert self._env is not None
        return self._env

    def readonly_view(self) -> Backend:
        """This handle, refusing writes: serves a read-only Repository when a writable handle is open."""
        import copy  # here, not at the top: seldom needed, and `kitaru-store log` does without

        view = copy.copy(self)
        view.readonly = True
        return view

    def close(self) -> None:
        if self._env is not None and self._pid == os.getpid():
            self._env.close()
            if self._store_lock is not None:
                self._store_lock.release()
        self._env = None

    # -- transactions ---------------------------------------------------------------------

    def _begin(self, *, write: bool, buffers: bool = False) -> lmdb.Transaction:
        env = self.env
        for attempt in range(_RESIZE_RETRIES):
            try:
                return env.begin(write=write, buffers=buffers)  # type: ignore[call-overload]
            except lmdb.MapResizedError as exc:
                if attempt == _RESIZE_RETRIES - 1:
                    raise translate(exc, self.path) from exc
                env.set_mapsize(0)  # adopt the size another process grew the map to
            except lmdb.Error as exc:
                raise translate(exc, self.path) from exc
        raise AssertionError("unreachable")

    @contextmanager
    def read(self, *, buffers: bool = False) -> Iterator[ReadTxn]:
        mark = object()
        self._live.add(mark)  # before begin: a fork in between must see it
        try:
            txn = self._begin(write=False, buffers=buffers)
            try:
                yield ReadTxn(txn, self._dbs, self._generation)
            finally:
                txn.abort()
        finally:
            self._live.discard(mark)

    def update(self, fn: Callable[[WriteTxn], T]) -> T:
        """Run ``fn`` in one write transaction and commit. On a full map, grow it and run ``fn`` again.

        ``fn`` must be safe to repeat: it sees a fresh transaction each time.
        """
        if self.readonly:
            raise ReadOnlyStoreError(
                f"store {self.path} is open read-only", hint="open it without readonly=True to write"
            )
        while True:
            mark = object()
            self._live.add(mark)
            try:
                txn = self._begin(write=True)
                try:
                    result = fn(WriteTxn(txn, self._dbs, self._generation))
                    txn.commit()
                    return result
                except lmdb.MapFullError:
                    txn.abort()
                except lmdb.Error as exc:
                    txn.abort()
                    raise translate(exc, self.path) from exc
                except BaseException:
                    txn.abort()
                    raise
            finally:
                self._live.discard(mark)
            self._grow()

    def _grow(self) -> None:
        with self._grow_lock:
            env = self.env
            current = env.info()["map_size"]
            raw_limit = os.environ.get("KITARU_MAP_LIMIT", "")
            try:
                ceiling = int(raw_limit) if raw_limit else 1 << 44
            except ValueError:
                raise StoreError(f"KITARU_MAP_LIMIT={raw_limit!r} is not a byte count") from None
            if current >= ceiling:
                raise StoreFullError(
                    f"store {self.path} reached its map limit of {current} bytes",
                    hint="raise KITARU_MAP_LIMIT or run `kitaru-store gc --compact`",
                )
            env.set_mapsize(min(current * 2, ceiling))

    def scan(
        self, db: bytes, lo: bytes = b"", hi: bytes | None = None, *, batch: int = SCAN_BATCH
    ) -> Iterator[tuple[bytes, bytes]]:
        """Iterate a key range in short read transactions of ``batch`` items each.

        A long scan (gc mark, fsck, stats) must not pin one snapshot for minutes while writers
        run: that would keep every page they free from being reused.
        """
        start = lo
        while True:
            with self.read() as rt:
                items = []
                for item in rt.items(db, start, hi):
                    items.append(item)
                    if len(items) >= batch:
                        break
            yield from items
            if len(items) < batch:
                return
            start = items[-1][0] + b"\x00"

    def stat(self) -> dict[str, int]:
        env = self.env
        info = env.info()
        st = env.stat()
        return {
            "map_size": int(info["map_size"]),
            "last_pgno": int(info["last_pgno"]),
            "psize": int(st["psize"]),
            "readers": int(info["num_readers"]),
        }

    def db_stat(self, db: bytes) -> dict[str, int]:
        with self.read() as rt:
            st = rt.txn.stat(self._dbs[db])
        return {k: int(v) for k, v in st.items()}  # type: ignore[call-overload]

    def copy_compacted(self, dest_dir: str) -> None:
        os.makedirs(dest_dir, mode=0o700, exist_ok=True)
        self.env.copy(dest_dir, compact=True)


_forked_leftovers: list[object] = []
_registry: dict[tuple[int, str], Backend] = {}
_registry_lock = threading.Lock()


def _after_fork_in_child() -> None:
    """Let go of the parent's environments, which py-lmdb would otherwise count as open here.

    Closing an inherited handle only unmaps this process's copy, as long as no transaction was
    open in it: closing would end such a transaction's reader slot, which the parent still uses
    (another thread of the parent was inside a transaction at the fork). Such a handle is kept,
    unused, and this process cannot open that store.
    """
    global _registry_lock
    _registry_lock = threading.Lock()  # another thread may have held it at the fork
    for backend in _registry.values():
        if backend._env is not None and not backend._live:
            backend._env.close()
        _forked_leftovers.append(backend._env)
    _registry.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def open_backend(
    path: str, *, readonly: bool = False, create: bool = True, lock_path: str | None = None
) -> Backend:
    """The process-wide Backend for ``path`` (opened on first use).

    A read-only request is served by a writable handle that is already open; a writable request
    replaces a read-only handle, since LMDB allows one environment per file and process.
    """
    real = os.path.realpath(path)
    key = (os.getpid(), real)
    with _registry_lock:
        backend = _registry.get(key)
        if backend is not None and backend._env is not None and (readonly or not backend.readonly):
            return backend
        if backend is not None:
            backend.close()
        backend = _registry[key] = Backend(real, readonly=readonly, create=create, lock_path=lock_path)
        return backend


def close_backend(path: str) -> None:
    """Close every handle on ``path`` in this process (before a compaction swaps the file)."""
    real = os.path.realpath(path)
    with _registry_lock:
        for key in [k for k in _registry if k == (os.getpid(), real)]:
            _registry.pop(key).close()


MapFullError = lmdb.MapFullError
LmdbError = lmdb.Error
