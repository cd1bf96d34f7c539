"""Repository: the store's entry point, composed of parts that each own one concern.

* ``repo.objects`` (repo_objects.py): values and bytes by content id, their info and prefixes;
* ``repo.executions`` (executions.py): manifests read, listed, resolved, changed and deleted;
* ``repo.refs`` and ``repo.cache`` (refs.py): pins and refs (gc roots), checkpoint cache records;
* ``repo.memory`` (memory.py): versioned key-value state;
* ``repo.maintenance`` (maintenance.py): gc, fsck and stats;
* ``repo.writer()`` (writer.py): many changes committed in one transaction;
* ``repo.hooks``: what runs after a commit and when an object is missing, attached from outside
  (a remote's write-through and load fallback: kitaru_store/remote/hooks.py). The core never
  imports the remote layer.

The methods documented in docs/api.md stay here as one-line delegates to those parts.
"""

from __future__ import annotations

import errno
import os
import threading
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import MethodType
from typing import TYPE_CHECKING, Concatenate, Generic, ParamSpec, Self, TypeVar, cast, overload

from . import config, layout
from .backend import Backend, close_backend, open_backend
from .errors import ReadOnlyStoreError, StateError, StoreNotFoundError
from .executions import Executions
from .kv import ReadTxn
from .maintenance import Maintenance
from .names import validate_name
from .refs import CheckpointCache, Refs
from .repo_objects import ObjectInfo, Objects
from .writer import StoredValue, Writer

if TYPE_CHECKING:
    from .kv import Store
    from .memory import MemoryStore


@dataclass
class Hooks:
    """Callables a Repository runs at two moments; attached by whoever opens it (the core
    attaches none). Each list runs in order, in the calling thread.

    * ``after_commit(exec_ids)``: after a Writer commit that changed those executions is durable
      (not for imports: ``Writer.remote_sync = False``). It must not raise for a failure of its
      own: the commit has happened.
    * ``missing_object(object_id) -> bool``: an object to read is not in the store; True when the
      hook stored it (verified), and it is read again; False when it cannot.
    """

    after_commit: list[Callable[[list[str]], None]] = field(default_factory=list)
    missing_object: list[Callable[[str], bool]] = field(default_factory=list)


P = ParamSpec("P")
R = TypeVar("R")
PartT = TypeVar("PartT")


class _Via(Generic[PartT, P, R]):
    """A Repository method that is a part's method: ``repo.get_execution(...)`` is
    ``Executions(repo).get(...)``, with its signature and types (one definition, in the part)."""

    __slots__ = ("_method", "_part")

    def __init__(
        self, part: Callable[[Repository], PartT], method: Callable[Concatenate[PartT, P], R]
    ) -> None:
        self._part = part
        self._method = method

    @overload
    def __get__(self, repo: None, owner: type[Repository]) -> Self: ...
    @overload
    def __get__(self, repo: Repository, owner: type[Repository]) -> Callable[P, R]: ...
    def __get__(self, repo: Repository | None, owner: type[Repository]) -> Self | Callable[P, R]:
        if repo is None:
            return self
        # The part's method bound to a new part: its name and docstring, at a bound method's cost.
        return cast("Callable[P, R]", MethodType(self._method, self._part(repo)))


# The Repository objects of this process not yet closed, per LMDB path: the environment of a
# path is closed when the last of them closes (objects collected unclosed simply drop out).
_open: dict[str, weakref.WeakSet[Repository]] = {}
_open_lock = threading.Lock()


class Repository:
    """A kitaru store: content-addressed objects plus one manifest per execution.

    Open it with :meth:`open` (or ``with Repository.open(...) as repo:``). Instances are cheap;
    the LMDB environment behind them is shared by every Repository on the same path in the
    process, and closed when the last of them is closed.
    """

    def __init__(self, location: config.Location, *, readonly: bool = False, level: int = 3) -> None:
        self.location = location
        self.root = location.path
        self.readonly = readonly
        self.level = level
        self.db_path = layout.db_dir(self.root)
        self._real_db_path: str | None = None  # db_path resolved, once connected (_connect)
        self.hooks = Hooks()
        self._closed = False
        self._cached: tuple[int, Backend, Backend] | None = None
        self.config = config.read_config(self.root) or {}
        self._backend()

    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str] | None = None,
        *,
        create: bool = True,
        readonly: bool = False,
        level: int = 3,
    ) -> Repository:
        """Open the store at ``path`` (or the located one). ``create=False`` refuses a missing store."""
        loc = config.locate(path)
        try:
            existing = config.read_config(loc.path)
            if existing is None:
                if readonly or not create:
                    raise StoreNotFoundError(str(loc.path), looked=loc.looked or (str(loc.path),))
                config.init_store(loc.path)
            return cls(loc, readonly=readonly, level=level)
        except OSError as exc:
            if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
                raise ReadOnlyStoreError(
                    f"cannot write to the store at {loc.path}: {exc.strerror}",
                    hint="open it with readonly=True (kitaru-store reads work), or use a writable location",
                ) from exc
            raise

    @classmethod
    def open_memory(cls, path: str | os.PathLike[str] | None = None, *, level: int = 3) -> Repository:
        """A Repository whose data lives in this process's memory, gone with it (for tests and
        throwaway work): memory_repository.py. ``path`` holds only its lock files (default: a
        private temporary directory)."""
        from .memory_repository import MemoryRepository

        return MemoryRepository(path, level=level)

    @property
    def kv(self) -> Store:
        """The key-value store under this Repository (kv.Store): LMDB, or MemoryKV for
        ``open_memory``. gc, fsck, stats and memory read and write through it, and nothing else."""
        return self._backend()

    def _backend(self) -> Store:
        """The one place this Repository's store comes from (StateError once closed)."""
        cached = self._cached
        if cached is not None and cached[0] == os.getpid() and cached[2].is_open:
            return cached[1]  # hot path: no realpath, no registry lock
        if self._closed:
            raise StateError(
                f"repository is closed: {self.root}",
                name=str(self.root),
                hint="open the store again with Repository.open(path)",
            )
        return self._connect()

    def _connect(self) -> Store:
        """Open (or share) the process's LMDB environment for this path."""
        # One environment per real path (backend.open_backend): a store opened under two
        # spellings (a symlink, /tmp and /private/tmp) is one set of users.
        self._real_db_path = os.path.realpath(self.db_path)
        with _open_lock:
            _open.setdefault(self._real_db_path, weakref.WeakSet()).add(self)
        shared = open_backend(
            self.db_path,
            readonly=self.readonly,
            lock_path=layout.lock_file(self.root, layout.STORE_LOCK),
        )
        # The process may share a writable handle; a read-only Repository must still refuse writes.
        backend = shared.readonly_view() if self.readonly and not shared.readonly else shared
        self._cached = (os.getpid(), backend, shared)
        return backend

    def _release(self) -> None:
        """Let go of the store (close()): the environment is closed if no other open
        Repository of the process uses the path."""
        real = self._real_db_path or os.path.realpath(self.db_path)
        with _open_lock:
            users = _open.get(real)
            if users is not None:
                users.discard(self)
                if len(users):
                    return
                del _open[real]
            close_backend(real)

    @property
    def path(self) -> Path:
        return self.root

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Close this handle: later use raises StateError. The process's environment for the
        path is closed too unless another open Repository uses it. Closing twice does nothing."""
        if self._closed:
            return
        self._closed = True
        self._cached = None
        self._release()

    def __enter__(self) -> Repository:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def writer(self) -> Writer:
        return Writer(self)

    def _after_commit(self, exec_ids: list[str]) -> None:
        """Writer.commit's call once a commit that changed ``exec_ids`` is durable."""
        for hook in self.hooks.after_commit:
            hook(exec_ids)

    # -- parts: new views of this Repository (no state of their own, no reference cycles) ----

    @property
    def objects(self) -> Objects:
        return Objects(self)

    @property
    def executions(self) -> Executions:
        return Executions(self)

    @property
    def refs(self) -> Refs:
        return Refs(self)

    @property
    def cache(self) -> CheckpointCache:
        return CheckpointCache(self)

    @property
    def maintenance(self) -> Maintenance:
        return Maintenance(self)

    @property
    def memory(self) -> MemoryStore:
        """Versioned key-value state kept in this store (kitaru_store.memory)."""
        from .memory import MemoryStore

        return MemoryStore(self)

    # -- the documented API (docs/api.md): each name is its part's method ----------------------

    put_bytes = _Via(Objects, Objects.put_bytes)
    put_value = _Via(Objects, Objects.put_value)
    get_bytes = _Via(Objects, Objects.get_bytes)
    get_value = _Via(Objects, Objects.get_value)
    has_object = _Via(Objects, Objects.has)
    resolve_object = _Via(Objects, Objects.resolve)
    object_info = _Via(Objects, Objects.info)
    resolve_execution = _Via(Executions, Executions.resolve)
    get_execution = _Via(Executions, Executions.get)
    get_execution_head = _Via(Executions, Executions.head)
    iter_executions = _Via(Executions, Executions.iterate)
    list_executions = _Via(Executions, Executions.page)
    count_executions = _Via(Executions, Executions.count)
    latest_execution = _Via(Executions, Executions.latest)
    create_execution = _Via(Executions, Executions.create)
    update_execution = _Via(Executions, Executions.update)
    delete_execution = _Via(Executions, Executions.delete)
    resolve_name = _Via(Executions, Executions.resolve_name)
    get_artifact = _Via(Executions, Executions.artifact)
    pin = _Via(Refs, Refs.pin)
    unpin = _Via(Refs, Refs.unpin)
    pins = _Via(Refs, Refs.pins)
    set_ref = _Via(Refs, Refs.set)
    gc = _Via(Maintenance, Maintenance.gc)
    fsck = _Via(Maintenance, Maintenance.fsck)
    stats = _Via(Maintenance, Maintenance.stats)


__all__ = ["Hooks", "ObjectInfo", "ReadTxn", "Repository", "StoredValue", "Writer", "validate_name"]
