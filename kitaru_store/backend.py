"""The LMDB environment: sub-databases, transactions, map growth. The only module that imports lmdb.

One process opens one environment per path (LMDB forbids opening the same file twice in one
process), so environments live in a registry keyed by (pid, real path). A child created by
fork() never uses its parent's handle: it lets go of it (see _after_fork_in_child) and opens its own.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import itertools
import os
import threading
from contextlib import contextmanager

import lmdb

from . import datafile
from .errors import (
    CorruptStoreError,
    LockFileReplacedError,
    ReadOnlyStoreError,
    StoreError,
    StoreFullError,
)
from .gate import Gate
from .locks import FileLock, file_id

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
    b"manifests",  # execution id (16 bytes) -> head (format 2), or whole Manifest (format 1) (msgpack)
    b"parts",  # execution id + family + position -> entry, checkpoint or wait record (manifest_store.py)
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
    if (
        isinstance(exc, lmdb.DiskError)
        or getattr(exc, "errno", None) in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
        or "No space left" in str(exc)
        or "File too large" in str(exc)
    ):
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
    if isinstance(exc, (lmdb.CorruptedError, lmdb.PageNotFoundError)):
        return CorruptStoreError(os.path.join(path, "data.mdb"), f"LMDB found a broken page ({exc})")
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


class _State:
    """One open LMDB environment, shared by a Backend and its read-only views.

    Compaction reopens the environment in place (same _State), so every holder of the Backend goes
    on with the new one; a forked child swaps in its own _State (see Backend._current).
    """

    def __init__(self) -> None:
        self.env: lmdb.Environment | None = None
        self.dbs: dict[bytes, lmdb._Database | None] = {}
        self.pid = os.getpid()
        self.generation = 0
        self.store_lock: FileLock | None = None
        self.gate = Gate()
        self.lock_id: tuple[int, int] | None = None  # lock.mdb as opened (None: opened without it)
        self.data_fd: int | None = None  # data.mdb as opened: identity, and the writers' flock
        self.closed = False  # by close(); a compaction closes env for a moment, not this


class Backend:
    """One LMDB environment in ``path`` (a directory holding data.mdb and lock.mdb)."""

    def __init__(
        self, path: str, *, readonly: bool = False, create: bool = True, lock_path: str | None = None
    ) -> None:
        self.path = path
        self.readonly = readonly
        self._create = create
        self._lock_path = lock_path
        self._grow_lock = threading.Lock()
        self._s = _State()
        if path in _stuck_after_fork:
            raise StoreError(
                f"this process was forked while another thread of its parent had a transaction open"
                f" on the store {path}, so it cannot open that store",
                hint="fork only while no thread is inside a store call, or start the child with the"
                " multiprocessing 'spawn' method (or exec a new program); the store is not damaged",
            )
        # Every open handle holds this lock shared; compaction takes it exclusive, so the file is
        # never swapped under a process that has it mapped.
        if lock_path:
            self._take_store_lock(self._s, exclusive=False, timeout=60.0)
        try:
            self._open_env(self._s)
        except BaseException:
            if self._s.store_lock is not None:
                self._s.store_lock.release()
            raise

    def _take_store_lock(self, s: _State, *, exclusive: bool, timeout: float) -> None:
        assert self._lock_path is not None
        lock = FileLock(self._lock_path)
        what = "compaction (close other kitaru processes)" if exclusive else "opening the store"
        try:
            lock.acquire(exclusive=exclusive, timeout=timeout, what=what)
        except OSError as exc:
            # EROFS is not a PermissionError: a read-only filesystem raises a plain OSError.
            if not self.readonly or exc.errno not in (errno.EACCES, errno.EPERM, errno.EROFS):
                raise
            return  # a read-only store on a read-only filesystem: nothing can compact it under us
        s.store_lock = lock

    def _open_env(self, s: _State) -> None:
        """Open the environment into ``s`` (its store lock, if any, is held already)."""
        datafile.check(self.path)  # a truncated file would be SIGBUS once mapped
        if self._create and not self.readonly:
            _create_data_file(self.path)
        try:
            try:
                env = self._lmdb_open(self.path, lock=True)
            except lmdb.ReadonlyError:
                if not self.readonly:
                    raise
                # A store this process may read but not write (lock.mdb is not writable: another
                # user's store, or one made read-only with chmod). LMDB cannot register a reader
                # in its lock file, so read without it: whoever could write the store is not us,
                # and every object read is verified against its id, every manifest against its
                # checksum. (docs/reliability.md, "Read-only stores")
                env = self._lmdb_open(self.path, lock=False)
        except lmdb.Error as exc:
            raise translate(exc, self.path) from exc
        lock_id = file_id(os.path.join(self.path, "lock.mdb")) if env.flags()["lock"] else None
        try:
            # A killed process leaves its reader slot behind; clear those now, not at the 1,023rd reader.
            env.reader_check()
            dbs = self._open_databases(env)
            data_fd = os.open(os.path.join(self.path, "data.mdb"), os.O_RDONLY | os.O_CLOEXEC)
        except lmdb.Error as exc:
            env.close()
            raise translate(exc, self.path) from exc
        except BaseException:
            env.close()
            raise
        s.env, s.dbs, s.lock_id, s.data_fd = env, dbs, lock_id, data_fd
        s.pid = os.getpid()
        s.generation = next(_generations)

    def _close_env(self, s: _State) -> None:
        if s.env is not None:
            s.env.close()
            s.env = None
        if s.data_fd is not None:
            os.close(s.data_fd)
            s.data_fd = None

    def _lmdb_open(self, path: str, *, lock: bool) -> lmdb.Environment:
        return lmdb.open(
            path,
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

    def _current(self) -> _State:
        s = self._s
        if s.pid != os.getpid():
            # Forked: the parent's handle must not be used here. Keep it referenced so that it is
            # never deallocated in the child, and share this process's own handle for the path.
            # The parent's flock is shared through the inherited descriptor: never release it here.
            _forked_leftovers.append(s.env)
            current = open_backend(
                self.path, readonly=self.readonly, create=self._create, lock_path=self._lock_path
            )
            s = self._s = current._s
        return s

    @property
    def _env(self) -> lmdb.Environment | None:
        return self._s.env

    @property
    def is_open(self) -> bool:
        """Open in this process, perhaps reopening for a compaction (users wait at its gate)."""
        return not self._s.closed

    @property
    def _dbs(self) -> dict[bytes, lmdb._Database | None]:
        return self._s.dbs

    @property
    def env(self) -> lmdb.Environment:
        env = self._current().env
        if env is None:
            raise StoreError(f"store {self.path} was closed in this process", hint="open it again")
        return env

    def readonly_view(self) -> Backend:
        """This handle, refusing writes: serves a read-only Repository when a writable handle is open."""
        import copy  # here, not at the top: seldom needed, and `kitaru-store log` does without

        view = copy.copy(self)
        view.readonly = True
        return view

    def close(self) -> None:
        s = self._s
        s.closed = True
        if s.env is not None and s.pid == os.getpid():
            self._close_env(s)
            if s.store_lock is not None:
                s.store_lock.release()
                s.store_lock = None
        s.env = None

    def check_files(self) -> None:
        """LockFileReplacedError if lock.mdb, data.mdb or store.lock is no longer the file opened.

        Deleting lock.mdb while the store is open lets the next process start a second lock
        file, and two writers then run at once; a replaced data.mdb would take our writes
        nowhere. Whoever finds the files changed under it stops using the store.
        """
        s = self._s
        if s.env is None or s.pid != os.getpid():
            return
        if s.lock_id is not None and file_id(os.path.join(self.path, "lock.mdb")) != s.lock_id:
            raise self._replaced("its LMDB lock file lock.mdb was deleted or replaced")
        if s.data_fd is not None:
            st = os.fstat(s.data_fd)
            if file_id(os.path.join(self.path, "data.mdb")) != (st.st_dev, st.st_ino):
                raise self._replaced("its data file data.mdb was deleted or replaced")
        if s.store_lock is not None and s.store_lock.replaced():
            raise self._replaced("its lock file store.lock was deleted or replaced")

    def _replaced(self, what: str) -> LockFileReplacedError:
        return LockFileReplacedError(
            f"store {self.path}: {what} while this process had the store open; another process"
            " could then write at the same time as this one, so this process stops writing",
            hint="stop every process that uses this store (this one too), then run `kitaru-store"
            " fsck`; never delete files in the store directory while it is in use",
        )

    # -- transactions ---------------------------------------------------------------------

    def _begin(self, *, write: bool, buffers: bool = False) -> lmdb.Transaction:
        env = self._s.env
        if env is None:
            raise StoreError(f"store {self.path} was closed in this process", hint="open it again")
        for attempt in range(_RESIZE_RETRIES):
            try:
                txn: lmdb.Transaction = env.begin(write=write, buffers=buffers)  # type: ignore[call-overload]
                return txn
            except lmdb.MapResizedError as exc:
                if attempt == _RESIZE_RETRIES - 1:
                    raise translate(exc, self.path) from exc
                env.set_mapsize(0)  # adopt the size another process grew the map to
            except lmdb.Error as exc:
                raise translate(exc, self.path) from exc
        raise AssertionError("unreachable")

    @contextmanager
    def read(self, *, buffers: bool = False) -> Iterator[ReadTxn]:
        s = self._current()
        gate = s.gate
        gate.enter(write=False)  # before begin: a fork or a compaction in between must see it
        try:
            txn = self._begin(write=False, buffers=buffers)
            try:
                yield ReadTxn(txn, s.dbs, s.generation)
            except lmdb.Error as exc:  # from a get or cursor inside the block: typed, always
                raise translate(exc, self.path) from exc
            finally:
                txn.abort()
        finally:
            gate.leave(write=False)

    def update(self, fn: Callable[[WriteTxn], T]) -> T:
        """Run ``fn`` in one write transaction and commit. On a full map, grow it and run ``fn`` again.

        ``fn`` must be safe to repeat: it sees a fresh transaction each time.
        """
        if self.readonly:
            raise ReadOnlyStoreError(
                f"store {self.path} is open read-only", hint="open it without readonly=True to write"
            )
        while True:
            s = self._current()
            s.gate.enter(write=True)
            try:
                txn = self._begin(write=True)
                # LMDB's writer lock lives in lock.mdb: writers that opened different lock files
                # would not exclude each other. The flock on data.mdb does, whatever lock.mdb
                # each has; then whoever opened a lock file that is gone stops (check_files).
                if s.data_fd is not None:
                    fcntl.flock(s.data_fd, fcntl.LOCK_EX)
                try:
                    self.check_files()
                    result = fn(WriteTxn(txn, s.dbs, s.generation))
                    self.check_files()
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
                    if s.data_fd is not None:
                        fcntl.flock(s.data_fd, fcntl.LOCK_UN)
            finally:
                s.gate.leave(write=True)
            self._grow()

    def _grow(self) -> None:
        with self._grow_lock, self._current().gate.use(write=True):
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
        with self._current().gate.use():
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

    def used_pages(self) -> int:
        """Pages the live trees use: about what a compacted copy holds (2 meta pages aside)."""
        with self.read() as rt:
            stats = [rt.txn.stat(rt._dbs[db]) for db in DATABASES if rt._dbs[db] is not None]
            stats.append(self.env.stat())  # the main tree, which names the others
        return sum(int(st["branch_pages"] + st["leaf_pages"] + st["overflow_pages"]) for st in stats)

    # -- compaction ---------------------------------------------------------------------------

    def copy_compacted(self, dest_dir: str) -> None:
        os.makedirs(dest_dir, mode=0o700, exist_ok=True)
        with self._current().gate.use():
            try:
                self.env.copy(dest_dir, compact=True)
            except lmdb.Error as exc:
                raise translate(exc, dest_dir) from exc

    def compact(
        self,
        dest_dir: str,
        *,
        prepare: Callable[[], None],
        install: Callable[[], None],
        timeout: float = 30.0,
    ) -> None:
        """Copy this environment compacted into ``dest_dir`` and put the copy in place.

        In this process, writers wait from the start and readers only while ``install`` runs
        (with the environment closed); then everyone goes on with the reopened environment.
        Other processes must not have the store open: the exclusive store lock is taken without
        waiting (StoreLockedError otherwise). ``prepare`` runs after the copy, writers still
        waiting; whatever fails, the environment is reopened on whichever file is in place.
        """
        s = self._current()
        gate = s.gate
        gate.shut(writers_only=False, timeout=timeout, what="compaction")
        try:
            # Only a process alone with the store may swap its file: trade our shared lock for
            # the exclusive one. Our environment is closed while we hold neither.
            self._close_env(s)
            if s.store_lock is not None:
                s.store_lock.release()
                s.store_lock = None
            try:
                if self._lock_path is not None:
                    self._take_store_lock(s, exclusive=True, timeout=0.0)
                self._open_env(s)
                gate.reopen()
                gate.shut(writers_only=True, timeout=timeout, what="compaction")
                self.copy_compacted(dest_dir)
                prepare()
                gate.shut(writers_only=False, timeout=timeout, what="compaction")
                if s.store_lock is not None and s.store_lock.replaced():
                    raise self._replaced("its lock file store.lock was deleted or replaced")
                self._close_env(s)
                install()
            finally:
                self._close_env(s)
                if s.store_lock is not None:
                    s.store_lock.release()
                    s.store_lock = None
                if self._lock_path is not None:
                    self._take_store_lock(s, exclusive=False, timeout=60.0)
                self._open_env(s)
        finally:
            gate.reopen()


def _create_data_file(path: str) -> None:
    """Create ``data.mdb`` whole or not at all, so that a short one is always damage.

    LMDB creates the file and then writes its two meta pages: a crash in between would leave an
    empty file, which LMDB would silently take for a new, empty store. The file is built in a
    private directory beside it, synced, and linked into place (link never replaces a file, so
    a racing process's file wins and ours is dropped).
    """
    target = os.path.join(path, "data.mdb")
    if os.path.exists(target):
        return
    import tempfile  # here, not at the top: only a new store needs it

    tmp = tempfile.mkdtemp(prefix=".new-", dir=path)
    try:
        env = lmdb.open(tmp, map_size=1 << 20, subdir=True, mode=0o600, lock=False)
        env.close()
        fd = os.open(os.path.join(tmp, "data.mdb"), os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        with contextlib.suppress(FileExistsError):  # another process made it first: theirs wins
            os.link(os.path.join(tmp, "data.mdb"), target)
    finally:
        for name in os.listdir(tmp):
            os.unlink(os.path.join(tmp, name))
        os.rmdir(tmp)


_forked_leftovers: list[object] = []
_stuck_after_fork: set[str] = set()  # paths this forked child cannot open (see below)
_registry: dict[tuple[int, str], Backend] = {}
_registry_lock = threading.Lock()


def _after_fork_in_child() -> None:
    """Let go of the parent's environments, which py-lmdb would otherwise count as open here.

    Closing an inherited handle only unmaps this process's copy, as long as no transaction was
    open in it: closing would end such a transaction's reader slot, which the parent still uses
    (another thread of the parent was inside a transaction at the fork). Such a handle is kept,
    unused, and this process cannot open that store (Backend says why).
    """
    global _registry_lock
    _registry_lock = threading.Lock()  # another thread may have held it at the fork
    for backend in _registry.values():
        s = backend._s
        if s.env is not None and not s.gate.inside:
            s.env.close()
        elif s.env is not None:
            _stuck_after_fork.add(backend.path)
        _forked_leftovers.append(s.env)
    _registry.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def open_backend(
    path: str, *, readonly: bool = False, create: bool = True, lock_path: str | None = None
) -> Backend:
    """The process-wide Backend for ``path`` (opened on first use).

    A read-only request is served by a writable handle that is already open; a writable request
    replaces a read-only handle, since LMDB allows one environment per file and process. The
    replaced handle goes on as a read-only view of the new one: whoever holds it (a listing in
    the middle of its batches) keeps reading.
    """
    real = os.path.realpath(path)
    key = (os.getpid(), real)
    with _registry_lock:
        backend = _registry.get(key)
        if backend is not None and backend.is_open and (readonly or not backend.readonly):
            backend.check_files()  # opening again must not hide that its files were replaced
            return backend
        replaced = backend if backend is not None and backend.is_open and backend.readonly else None
        if backend is not None:
            backend.close()
        backend = _registry[key] = Backend(real, readonly=readonly, create=create, lock_path=lock_path)
        if replaced is not None:
            replaced._s = backend._s
        return backend


def close_backend(path: str) -> None:
    """Close every handle on ``path`` in this process."""
    real = os.path.realpath(path)
    with _registry_lock:
        for key in [k for k in _registry if k == (os.getpid(), real)]:
            _registry.pop(key).close()


MapFullError = lmdb.MapFullError
LmdbError = lmdb.Error
