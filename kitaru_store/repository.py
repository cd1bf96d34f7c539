"""Repository: the store's public interface over objects, manifests, indexes and refs."""

from __future__ import annotations

import datetime as dt
import errno
import functools
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec

from . import config, ids, layout, listing
from . import manifest_store as ms
from . import manifests as mf
from .backend import Backend, open_backend
from .errors import (
    AmbiguousIdError,
    CorruptionError,
    ExecutionNotFoundError,
    IdCollisionError,
    NotFoundError,
    ObjectNotFoundError,
    ReadOnlyStoreError,
    StateError,
    StoreNotFoundError,
    UsageError,
)
from .kv import ReadTxn, WriteTxn
from .lazy import lazy_module
from .manifests import Entry, ExecutionSummary, Manifest
from .names import fits, validate_name
from .resolve import name_index, resolve

if TYPE_CHECKING:
    from . import codec, objects, serialization
    from .kv import Store
    from .memory import MemoryStore
else:
    # Imported on first use: listing and reading manifests (``kitaru-store log``, ``show``) thus
    # never load the object engine (FastCDC, zstd, BLAKE3) or the serializers.
    codec = lazy_module("codec", globals())
    objects = lazy_module("objects", globals())
    serialization = lazy_module("serialization", globals())

# A writer commits the objects it holds once they pass this many bytes (objects before manifest).
FLUSH_BYTES = 64 << 20
_MANIFEST_CACHE = 64  # manifests kept per process for load by name (checked against their head)
# Fields a caller may set through update_execution; entries and checkpoints have their own calls.
_UPDATABLE = frozenset(
    {
        "status",
        "started_at",
        "ended_at",
        "flow_name",
        "failure",
        "metadata",
        "result_object_id",
        "input_object_id",
        "replay_of",
    }
)


@dataclass(frozen=True, slots=True)
class StoredValue:
    object_id: str
    size: int
    serializer: str


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    object_id: str
    size: int
    stored_size: int
    codec: str
    chunks: int
    touched_at: dt.datetime | None


# A change to one execution, applied inside the commit's write transaction (manifest_store.Staged).
Mutation = Callable[[ms.Staged], None]


@dataclass
class _Pending:
    values: list[objects.PreparedValue] = field(default_factory=list)
    keys: set[bytes] = field(default_factory=set)
    bytes: int = 0


class Writer:
    """Collects objects and manifest changes and commits them in one LMDB write transaction.

    Values are hashed and compressed when they are added, outside the write lock; the commit
    writes what is new, touches what was already there, and applies manifest changes. An entry
    and its object therefore become visible (and durable) together. A writer whose objects pass
    FLUSH_BYTES commits those objects early, recording them as in-flight so that gc keeps them.
    """

    def __init__(self, repo: Repository) -> None:
        self._repo = repo
        self._pending = _Pending()
        self._mutations: dict[str, list[Mutation]] = {}
        self._entries: dict[str, dict[object, Entry]] = {}
        self._plain_adds = 0
        self._checkpoints: dict[str, dict[str, mf.CheckpointRecord]] = {}
        self._touch: set[bytes] = set()
        self._inflight: set[bytes] = set()
        self._on_commit: list[Callable[[WriteTxn], None]] = []
        self._done = False
        # After a commit that changed executions, push them to a write-through remote (if one is
        # configured, kitaru_store/remote/hooks.py). Pulls turn it off: an import is no change.
        self.remote_sync = True
        # Staged objects past this many bytes are flushed (committed as in-flight) at once.
        self.flush_bytes = FLUSH_BYTES

    # -- objects ----------------------------------------------------------------------------

    def put_bytes(self, data: bytes | bytearray | memoryview, *, owned: bool = False) -> str:
        """Stage ``data``; its id is returned now, the bytes are durable at commit.

        A mutable buffer is copied unless ``owned`` says nobody else will change it before the
        commit (the serializer's fresh buffers): the staged bytes must stay the hashed bytes.
        """
        if not owned and not isinstance(data, bytes):
            data = bytes(data)
        prepared = objects.prepare(data)
        if prepared.key in self._pending.keys:
            return prepared.object_id
        with self._repo._backend().read(buffers=True) as rt:
            objects.stage(rt, prepared, level=self._repo.level, seen=self._pending.keys)
        self._pending.values.append(prepared)
        self._pending.bytes += prepared.size
        if self._pending.bytes >= self.flush_bytes:
            self.flush_objects()
        return prepared.object_id

    def put_value(self, value: Any, *, allow_pickle: bool | None = None) -> StoredValue:
        data, serializer = serialization.serialize(value, allow_pickle=allow_pickle)
        object_id = self.put_bytes(data, owned=True)
        return StoredValue(object_id, len(data), serializer)

    def reference(self, object_id: str) -> None:
        """Name an object stored earlier (replay reuse): it must exist, and gets touched."""
        self._touch.add(layout.object_key(object_id))

    def put_record(self, key: bytes, record: bytes) -> None:
        """Stage a record as it is stored (codec.py frame) under ``key``: a remote's copy.

        The caller has verified it (a data record hashes to ``key``; an index record's chunks are
        staged before it and reassemble to ``key``): it is written as is, never re-encoded.
        """
        if key in self._pending.keys:
            return
        kind, _ = codec.header(record)
        piece = objects.Piece(key, b"", kind=kind, record=record)
        self._pending.values.append(objects.PreparedValue(key, len(record), [piece]))
        self._pending.keys.add(key)
        self._pending.bytes += len(record)
        if self._pending.bytes >= self.flush_bytes:
            self.flush_objects()

    # -- manifests --------------------------------------------------------------------------

    def create_execution(
        self,
        flow_name: str,
        *,
        exec_id: str | None = None,
        replay_of: str | None = None,
        metadata: dict[str, Any] | None = None,
        started_at: dt.datetime | None = None,
        status: str = "running",
    ) -> str:
        validate_name(flow_name, what="flow name")
        exec_id = layout.uuid_key(exec_id).hex() if exec_id else ids.new_uuid()  # one spelling: 32 lower hex
        manifest = Manifest(
            exec_id=exec_id,
            flow_name=flow_name,
            status=status,
            started_at=started_at or mf.utcnow(),
            replay_of=replay_of,
            metadata=dict(metadata or {}),
        )

        def create(st: ms.Staged) -> None:
            if st.head is not None:
                raise StateError(
                    f"execution {exec_id} exists already",
                    exec_id=exec_id,
                    hint="let create_execution pick a new id, or update the existing execution",
                )
            st.create(manifest)

        self._mutations.setdefault(exec_id, []).insert(0, create)
        return exec_id

    def put_manifest(self, manifest: Manifest, *, expect: Manifest | None) -> None:
        """Store ``manifest`` whole (an import), if the local one is still ``expect`` at commit.

        ``expect=None`` requires the execution to be absent. Every object the manifest names
        must be stored by then (checked and touched at commit, chunks included). Its flow name
        is part of a key (exec_flow): checked as one given to create_execution is.
        """
        validate_name(manifest.flow_name, what="flow name", exec_id=manifest.exec_id)
        exec_id = manifest.exec_id
        seen: set[str] = set()
        for entry in manifest.entries:
            if entry.artifact_id in seen:
                raise IdCollisionError(
                    f"execution {exec_id} names artifact id {entry.artifact_id} twice",
                    exec_id=exec_id,
                    artifact_id=entry.artifact_id,
                    hint="artifact ids are unique in a store: this manifest was not written by kitaru",
                )
            seen.add(entry.artifact_id)
        for object_id in mf.referenced_ids(manifest):
            self._referenced(object_id)

        def apply(st: ms.Staged) -> None:
            if not mf.same_content(st.manifest(), expect):
                raise IdCollisionError(
                    f"execution {exec_id} "
                    + ("was created" if expect is None else "changed")
                    + " in this store while it was being imported",
                    exec_id=exec_id,
                    hint="run the pull again",
                )
            st.replace_whole(manifest)

        self._mutations.setdefault(exec_id, []).append(apply)

    def mutate(self, exec_id: str, fn: Callable[[Manifest], Manifest], *, head_only: bool = False) -> None:
        """Change an execution at commit by ``fn(manifest) -> manifest``; the stored manifest
        becomes what ``fn`` returns (only what differs is written).

        Reading the whole manifest costs what the flow has grown to; ``head_only=True`` hands
        ``fn`` the head alone (its entries, checkpoints and waits empty), for a change of
        scalar fields (status, owner, times) whose cost then does not grow with the flow. ``fn``
        must then return a manifest whose part tuples are still empty.
        """

        def apply(st: ms.Staged) -> None:
            if not head_only:
                current = st.manifest()
                if current is None:
                    raise ExecutionNotFoundError(exec_id)
                st.replace_whole(fn(current))
                return
            new = fn(ms.as_manifest(st.current()))
            if new.entries or new.checkpoints or new.waits:
                raise UsageError(
                    "a head_only mutation returned entries, checkpoints or waits",
                    exec_id=exec_id,
                    hint="change parts with add_entry, set_checkpoint or set_wait, or mutate the whole",
                )
            st.update(**{f: getattr(new, f) for f in ms.SCALARS})

        self._mutations.setdefault(exec_id, []).append(apply)

    def _change(self, exec_id: str, fn: Mutation) -> None:
        self._mutations.setdefault(exec_id, []).append(fn)

    def _referenced(self, object_id: str) -> None:
        key = layout.object_key(object_id)
        if key not in self._pending.keys:
            self._touch.add(key)

    def _entry_batch(self, exec_id: str) -> dict[object, Entry]:
        """This writer's new entries for one execution, applied to the manifest in one step.

        Keyed by artifact id (plain adds) or by (name, kind, invocation) for replacing adds, so
        that a thousand saves in one checkpoint cost a thousand dict writes, not n**2 copies.
        """
        batch = self._entries.get(exec_id)
        if batch is None:
            batch = self._entries[exec_id] = {}
            new = batch
            self._change(exec_id, lambda st: st.add_entries(new))
        return batch

    def add_entry(self, exec_id: str, entry: Entry) -> None:
        self._referenced(entry.object_id)
        self._entry_batch(exec_id)[entry.artifact_id] = entry
        self._plain_adds += 1

    def replace_entry(self, exec_id: str, entry: Entry) -> None:
        """Add ``entry``, dropping an earlier entry of the same kind, name and invocation."""
        self._referenced(entry.object_id)
        batch = self._entry_batch(exec_id)
        triple = (entry.name, entry.kind, entry.invocation_id)
        if self._plain_adds:  # only then can the batch hold an earlier entry under another key
            for k in [k for k, e in batch.items() if not isinstance(k, tuple)]:
                if (batch[k].name, batch[k].kind, batch[k].invocation_id) == triple:
                    del batch[k]
        batch[triple] = entry

    def set_wait(self, exec_id: str, record: mf.WaitRecord) -> None:
        """Insert or replace one wait record (by name)."""
        if record.value_object_id:
            self._referenced(record.value_object_id)
        self._change(exec_id, lambda st: st.set_parts(ms.WAIT, iter((record,))))

    def merge_metadata(self, exec_id: str, metadata: dict[str, Any]) -> None:
        """Add keys to the execution's metadata (later values win), read and written at commit."""
        self._change(exec_id, lambda st: st.update(metadata={**st.current().metadata, **metadata}))

    def set_checkpoint(self, exec_id: str, record: mf.CheckpointRecord) -> None:
        """Insert or replace the record of one checkpoint invocation."""
        if record.output_object_id:
            self._referenced(record.output_object_id)
        batch = self._checkpoints.get(exec_id)
        if batch is None:
            batch = self._checkpoints[exec_id] = {}
            new = batch
            self._change(exec_id, lambda st: st.set_parts(ms.CHECKPOINT, iter(new.values())))
        batch[record.invocation_id] = record

    def update_execution(self, exec_id: str, **changes: Any) -> None:
        """Change scalar fields of a manifest (status, times, failure, metadata, result ids)."""
        unknown = set(changes) - _UPDATABLE
        if unknown:
            raise UsageError(
                f"update_execution cannot change {', '.join(sorted(unknown))}",
                exec_id=exec_id,
                hint="entries and checkpoints go through add_entry/replace_entry/set_checkpoint,"
                " which check that their objects exist",
            )
        if "flow_name" in changes:
            validate_name(changes["flow_name"], what="flow name", exec_id=exec_id)
        for field_name in ("result_object_id", "input_object_id"):
            object_id = changes.get(field_name)
            if object_id:
                self._referenced(object_id)
        self._change(exec_id, lambda st: st.update(**changes))

    def on_commit(self, fn: Callable[[WriteTxn], None]) -> None:
        """Run ``fn`` inside the commit's write transaction, after the objects and manifests.

        For records kept outside manifests (memory versions) that must commit with the objects
        they name. ``fn`` must be safe to repeat: a commit that grows the map runs it again.
        """
        self._on_commit.append(fn)

    # -- commit -----------------------------------------------------------------------------

    def flush_objects(self) -> None:
        """Commit the objects gathered so far, kept alive as in-flight until the manifest commit."""
        pending, self._pending = self._pending, _Pending(keys=set())
        if not pending.values:
            return
        keys = [v.key for v in pending.values]
        suffix = ids.new_uuid().encode()

        def txn(wt: WriteTxn) -> bytes:
            # The stamp is taken inside the write transaction, as in commit(): gc relies on a
            # touch time earlier than its cutoff belonging to a transaction committed before it.
            stamp_ns = objects.now_ns()
            # Named by its flush time: gc drops it when it is very old.
            token = layout.inflight_ref(stamp_ns, suffix)
            for prepared in pending.values:
                objects.write(wt, prepared, stamp=objects.pack_time(stamp_ns), level=self._repo.level)
            wt.put(layout.REFS, token, b"".join(keys))
            return token

        token = self._repo._backend().update(txn)
        self._inflight.add(token)
        self._touch.update(keys)

    def commit(self) -> None:
        if self._done:
            raise StateError("this writer was committed already", hint="use a new writer for further changes")
        self._done = True
        pending = self._pending
        mutations = self._mutations
        touch = self._touch - pending.keys
        inflight = self._inflight
        hooks = self._on_commit
        if not (pending.values or mutations or touch or inflight or hooks):
            return
        level = self._repo.level
        from . import reachability  # with the object engine: not at import time

        def txn(wt: WriteTxn) -> None:
            stamp = objects.pack_time(objects.now_ns())
            for prepared in pending.values:
                objects.write(wt, prepared, stamp=stamp, level=level)
            for key in touch:
                reachability.keep(wt, key, stamp)  # stored and whole, or nothing commits
            for exec_id, fns in mutations.items():
                staged = ms.Staged(wt, exec_id)
                for fn in fns:
                    fn(staged)
                staged.finish()
            for hook in hooks:
                hook(wt)
            for token in inflight:
                wt.delete(layout.REFS, token)

        self._repo._backend().update(txn)
        if mutations and self.remote_sync:
            self._repo._after_commit(list(mutations))

    def abort(self) -> None:
        """Drop what was not committed. Objects flushed early stay, unreferenced, for gc."""
        self._done = True
        if self._inflight:
            tokens = self._inflight

            def txn(wt: WriteTxn) -> None:
                for token in tokens:
                    wt.delete(layout.REFS, token)

            self._repo._backend().update(txn)

    def __enter__(self) -> Writer:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.abort()


# Assembled manifests and their name indexes, shared by every Repository of the process (a flow
# run opens its own): (LMDB path, execution key) -> (version, head checksum, manifest, index).
_manifests: dict[tuple[str, bytes], tuple[tuple[int, int], bytes, Manifest, dict[str, list[Entry]]]] = {}
_manifests_lock = threading.Lock()


def _keep(cache: dict[Any, Any], key: Any, value: Any, limit: int) -> None:
    """Put ``value`` in ``cache`` as its newest entry, dropping the oldest beyond ``limit``."""
    cache.pop(key, None)
    if len(cache) >= limit:
        cache.pop(next(iter(cache)))
    cache[key] = value


class Repository:
    """A kitaru store: content-addressed objects plus one manifest per execution.

    Open it with :meth:`open`. Instances are cheap; the LMDB environment behind them is shared
    by every Repository on the same path in the process.
    """

    def __init__(self, location: config.Location, *, readonly: bool = False, level: int = 3) -> None:
        self.location = location
        self.root = location.path
        self.readonly = readonly
        self.level = level
        self._db_path = layout.db_dir(self.root)
        self._lock = threading.Lock()
        self._cached: tuple[int, Backend, Backend] | None = None
        self.config = config.read_config(self.root) or {}
        self._remotes: Any = None  # kitaru_store.remote.hooks.SdkRemotes, or False: none apply
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
        cached = self._cached
        if cached is not None and cached[0] == os.getpid() and cached[2].is_open:
            return cached[1]  # hot path: no realpath, no registry lock
        shared = open_backend(
            self._db_path,
            readonly=self.readonly,
            lock_path=layout.lock_file(self.root, layout.STORE_LOCK),
        )
        # The process may share a writable handle; a read-only Repository must still refuse writes.
        backend = shared.readonly_view() if self.readonly and not shared.readonly else shared
        self._cached = (os.getpid(), backend, shared)
        return backend

    @property
    def path(self) -> Path:
        return self.root

    def close(self) -> None:
        """Nothing to release per instance: the shared environment stays open for the process."""

    def __enter__(self) -> Repository:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def writer(self) -> Writer:
        return Writer(self)

    # -- objects ----------------------------------------------------------------------------

    def put_bytes(self, data: bytes | bytearray | memoryview) -> str:
        with self.writer() as w:
            return w.put_bytes(data)

    def put_value(self, value: Any, *, allow_pickle: bool | None = None) -> StoredValue:
        with self.writer() as w:
            return w.put_value(value, allow_pickle=allow_pickle)

    def get_bytes(self, object_id: str) -> bytes | bytearray:
        """The verified bytes of an object (the serialized form, for a value)."""
        data = self._read(object_id, mapped=False)
        assert not isinstance(data, memoryview)  # only mapped reads return one
        return data

    def _read(self, object_id: str, *, mapped: bool) -> bytes | bytearray | memoryview:
        key = self._object_key(object_id)
        try:
            with self._backend().read(buffers=True) as rt:
                return objects.read(rt, key, mapped=mapped)
        except ObjectNotFoundError:
            remotes = self._sdk_remotes()
            if remotes is None or not remotes.fetch(key.hex()):  # the opt-in load fallback
                raise
        with self._backend().read(buffers=True) as rt:
            return objects.read(rt, key, mapped=mapped)

    def _sdk_remotes(self) -> Any:
        """The remote fallback / write-through of kitaru_store.remote.hooks, if any is configured."""
        if self._remotes is None:
            from .remote import hooks

            self._remotes = hooks.SdkRemotes(self) if hooks.configured(self) else False
            if self._remotes and not self._remotes.active:
                self._remotes = False
        return self._remotes or None

    def _after_commit(self, exec_ids: list[str]) -> None:
        remotes = self._sdk_remotes()
        if remotes is not None:
            remotes.push(exec_ids)

    def get_value(self, object_id: str, *, allow_pickle: bool | None = None) -> Any:
        # A large value is read into a mapped buffer (objects.read): a numpy array views it in place.
        data = self._read(object_id, mapped=True)
        return serialization.deserialize(data, allow_pickle=allow_pickle, object_id=object_id)

    def has_object(self, object_id: str) -> bool:
        key = layout.object_key(object_id)
        with self._backend().read() as rt:
            return rt.has(layout.OBJECTS, key)

    def _object_key(self, object_id: str) -> bytes:
        if len(object_id) == ids.OBJECT_ID_HEX:
            return layout.object_key(object_id.lower())
        return layout.object_key(self.resolve_object(object_id))

    def resolve_object(self, prefix: str) -> str:
        """The full object id for a unique prefix of at least 4 hex characters."""
        return self._resolve_prefix(layout.OBJECTS, prefix, ids.OBJECT_ID_HEX, "object id")

    def object_info(self, object_id: str) -> ObjectInfo:
        key = self._object_key(object_id)
        with self._backend().read(buffers=True) as rt:
            record = rt.get_view(layout.OBJECTS, key)
            if record is None:
                raise ObjectNotFoundError(key.hex())
            touched = objects.unpack_time(rt.get(layout.TOUCH, key))
            chunks = objects.chunk_keys(record, key)
            stored = len(record) + sum(len(rt.get_view(layout.OBJECTS, c) or b"") for c in chunks)
            codec_name = codec.stored_codec_name(record)
        size = len(self.get_bytes(key.hex())) if not chunks else _index_size(record, key)
        return ObjectInfo(
            key.hex(),
            size,
            stored,
            codec_name,
            len(chunks),
            dt.datetime.fromtimestamp(touched / 1e9, dt.UTC) if touched else None,
        )

    def _resolve_prefix(self, db: bytes, prefix: str, full: int, what: str) -> str:
        hexp = ids.normalize_hex(prefix, what=what, full_length=full)
        lo, hi = ids.prefix_range(hexp)
        found: list[str] = []
        with self._backend().read() as rt:
            for key, _ in rt.items(db, lo, hi):
                h = key.hex()
                if h.startswith(hexp):
                    found.append(h)
                    if len(found) > 10:
                        break
        if not found:
            if db == layout.MANIFESTS:
                raise ExecutionNotFoundError(prefix)
            if db == layout.ARTIFACTS:
                raise NotFoundError(
                    f"no artifact {prefix!r} in the store",
                    name=prefix,
                    hint="artifact ids are listed with their execution's artifacts",
                )
            raise ObjectNotFoundError(prefix)
        if len(found) > 1:
            raise AmbiguousIdError(prefix, found, what=what)
        return found[0]

    # -- executions -------------------------------------------------------------------------

    def resolve_execution(self, prefix: str) -> str:
        return self._resolve_prefix(layout.MANIFESTS, prefix, ids.UUID_HEX, "execution id")

    def get_execution(self, exec_id: str, *, observe: bool = True) -> Manifest:
        """The execution's manifest. ``running`` with an owner that is gone reads as failed
        (Crashed), recorded if the store is writable (liveness.py); ``observe=False``: as stored."""
        return self._observed(self._cached_manifest(exec_id)[0], observe)

    def get_execution_head(self, exec_id: str, *, observe: bool = True) -> Manifest:
        """The execution's manifest without its entries, checkpoints and waits (empty tuples):
        status, owner, cancel request and the other scalars, read from one record whatever the
        flow's length (a cancel poll, a handle's status)."""
        full = self._full_exec_id(exec_id)
        with self._backend().read(buffers=True) as rt:
            manifest = ms.load(rt, layout.uuid_key(full), full, parts=False)
        return self._observed(manifest, observe)

    def _observed(self, manifest: Manifest, observe: bool) -> Manifest:
        if observe and manifest.status == "running" and manifest.owner is not None:
            from . import liveness

            manifest = liveness.observe(self, manifest)
        return manifest

    def _full_exec_id(self, exec_id: str) -> str:
        cleaned = exec_id.strip().lower().replace("-", "") if isinstance(exec_id, str) else ""
        return cleaned if len(cleaned) == ids.UUID_HEX else self.resolve_execution(exec_id)

    def _cached_manifest(self, exec_id: str) -> tuple[Manifest, dict[str, list[Entry]]]:
        """The manifest and its name index, read once per version of the execution.

        kitaru.load() by name asks for the same manifest again and again; assembling one of
        thousands of entries takes milliseconds. A cached copy is current if nothing at all was
        committed since it was read (ReadTxn.version); otherwise it serves while the stored
        head is the very head it was read with (its checksum): every commit that changes an
        execution writes a new head (with a new random ``rev``), so a change by any writer, or
        damage to the head, is never missed. Either check costs the same whatever the flow's length.
        """
        full = self._full_exec_id(exec_id)
        key = layout.uuid_key(full)
        slot = (self._db_path, key)
        hit = _manifests.get(slot)
        with self._backend().read(buffers=True) as rt:
            version = rt.version()
            if hit is not None and hit[0] == version:
                return hit[2], hit[3]
            view = rt.get_view(layout.MANIFESTS, key)
            if view is None:
                raise ExecutionNotFoundError(exec_id)
            tag = ms.stored_tag(view, key)
            if hit is not None and tag is not None and tag == hit[1]:
                manifest, index = hit[2], hit[3]
            else:
                manifest = ms.from_view(rt, key, view, full)
                index = name_index(manifest)
        with _manifests_lock:  # checkpoints on a thread pool, and every Repository of the process
            if tag is not None:
                _keep(_manifests, slot, (version, tag, manifest, index), _MANIFEST_CACHE)
            else:
                _manifests.pop(slot, None)
        return manifest, index

    def iter_executions(
        self, *, flow: str | None = None, status: str | None = None, expect: int = listing.BATCH
    ) -> Iterator[ExecutionSummary]:
        """Executions newest first, read from the time index in short transactions.

        ``expect``: about how many rows the caller will take (the first read is that large).

        A damaged summary is a row of its own, a ``DamagedSummary`` (status "damaged", whatever
        ``status`` asks for), and the listing goes on.
        """
        from .liveness import observe_summary

        observe = functools.partial(observe_summary, self)
        for batch in listing.summary_batches(self._backend(), flow=flow, first=expect):
            yield from listing.rows(batch, mf.decode_summary, flow=flow, status=status, observe=observe)

    def list_executions(
        self, *, flow: str | None = None, status: str | None = None, limit: int = 50, offset: int = 0
    ) -> list[ExecutionSummary]:
        out: list[ExecutionSummary] = []
        rows = self.iter_executions(flow=flow, status=status, expect=offset + limit + 1)
        for i, summary in enumerate(rows):
            if i < offset:
                continue
            if len(out) >= limit:
                break
            out.append(summary)
        return out

    def count_executions(self) -> int:
        with self._backend().read() as rt:
            return rt.count(layout.MANIFESTS)

    def latest_execution(self, *, flow: str | None = None) -> ExecutionSummary | None:
        return next(iter(self.iter_executions(flow=flow, expect=1)), None)

    def create_execution(self, flow_name: str, **kwargs: Any) -> str:
        with self.writer() as w:
            return w.create_execution(flow_name, **kwargs)

    def update_execution(self, exec_id: str, **changes: Any) -> None:
        with self.writer() as w:
            w.update_execution(self.resolve_execution(exec_id), **changes)

    def delete_execution(self, exec_id: str, *, check: Callable[[Manifest], None] | None = None) -> None:
        """Forget an execution; its objects become garbage for the next gc (after the grace period).

        ``check`` sees the manifest inside the deleting transaction and may refuse by raising.
        """
        full = self.resolve_execution(exec_id)
        key = layout.uuid_key(full)

        self._backend().update(lambda wt: ms.delete(wt, key, full, check))
        from . import liveness

        liveness.remove_free(liveness.lock_path(self.root, full))  # a killed run's, if it left one

    # -- names and artifacts ----------------------------------------------------------------

    def resolve_name(self, exec_id: str, name: str) -> Entry:
        manifest, index = self._cached_manifest(exec_id)
        return resolve(manifest, name, index=index)

    def get_artifact(self, artifact_id: str) -> tuple[Manifest, Entry]:
        full = self._resolve_prefix(layout.ARTIFACTS, artifact_id, ids.UUID_HEX, "artifact id")
        with self._backend().read() as rt:
            exec_key = rt.get(layout.ARTIFACTS, layout.uuid_key(full))
        if exec_key is None:
            raise NotFoundError(
                f"no artifact {artifact_id!r}",
                name=artifact_id,
                hint="the artifact's execution may have been deleted",
            )
        manifest = self.get_execution(exec_key.hex())
        for entry in manifest.entries:
            if entry.artifact_id == full:
                return manifest, entry
        raise CorruptionError(
            f"artifact {full} is indexed but missing from execution {manifest.exec_id}",
            exec_id=manifest.exec_id,
            name=full,
            hint="run `kitaru-store fsck`",
        )

    # -- checkpoint cache -------------------------------------------------------------------

    def cache_get(self, key: bytes) -> mf.CacheRecord | None:
        with self._backend().read() as rt:
            raw = rt.get(layout.CACHE, key)
        if raw is None:
            return None
        try:
            return mf.decode_cache(raw)
        except (msgspec.DecodeError, UnicodeDecodeError):
            return None  # a damaged or newer cache record is a miss; the cache is only an optimisation

    def cache_put(self, key: bytes, record: mf.CacheRecord) -> None:
        self._backend().update(lambda wt: wt.put(layout.CACHE, key, mf.encode(record)))

    def cache_delete(self, key: bytes) -> None:
        self._backend().update(lambda wt: wt.delete(layout.CACHE, key))

    def cache_clear(self) -> int:
        keys = [k for k, _ in self._backend().scan(layout.CACHE)]

        def txn(wt: WriteTxn) -> int:
            return sum(wt.delete(layout.CACHE, k) for k in keys)

        return self._backend().update(txn) if keys else 0

    # -- refs (pins) ------------------------------------------------------------------------

    def pin(self, name: str, object_id: str) -> None:
        """Keep an object alive under ``name`` whatever gc finds."""
        validate_name(name, what="pin name")
        key = self._object_key(object_id)

        from . import reachability

        def txn(wt: WriteTxn) -> None:
            reachability.keep(wt, key, objects.pack_time(objects.now_ns()))
            wt.put(layout.REFS, layout.pin_ref(name), key)

        self._backend().update(txn)

    def unpin(self, name: str) -> bool:
        if not fits(name, "pin name"):
            return False  # no pin has a longer name: it would not fit its key
        return self._backend().update(lambda wt: wt.delete(layout.REFS, layout.pin_ref(name)))

    def pins(self) -> dict[str, str]:
        with self._backend().read() as rt:
            return {
                layout.pin_name(k) or "": v.hex()
                for k, v in rt.items(layout.REFS, layout.PIN_PREFIX, layout.prefix_upper(layout.PIN_PREFIX))
            }

    def set_ref(self, name: bytes, object_keys: Sequence[bytes]) -> None:
        """Low-level root: a ref holds a list of object ids that gc must keep (memory, pins).

        Names under ``inflight/`` and ``erase/`` are the store's own (UsageError)."""
        if layout.reserved_ref(name):
            raise UsageError(
                f"ref name {name!r} is reserved: the store writes inflight/ and erase/ refs itself",
                name=name.decode("utf-8", "replace"),
                hint="choose a ref name outside inflight/ and erase/, e.g. sdk/NAME",
            )
        from . import reachability

        def txn(wt: WriteTxn) -> None:
            stamp = objects.pack_time(objects.now_ns())  # inside the transaction (see gc.collect)
            for k in object_keys:
                reachability.keep(wt, k, stamp)
            wt.put(layout.REFS, name, b"".join(object_keys))

        self._backend().update(txn)

    # -- maintenance ------------------------------------------------------------------------

    def gc(self, **kwargs: Any) -> Any:
        from .gc import collect

        return collect(self, **kwargs)

    def fsck(self, **kwargs: Any) -> Any:
        from .fsck import check

        return check(self, **kwargs)

    def stats(self) -> Any:
        from .stats import compute

        return compute(self)

    def read(self, *, buffers: bool = False) -> Any:
        return self._backend().read(buffers=buffers)

    @property
    def memory(self) -> MemoryStore:
        """Versioned key-value state kept in this store (kitaru_store.memory)."""
        from .memory import MemoryStore

        return MemoryStore(self)


def _index_size(record: memoryview, key: bytes) -> int:
    _, payload = objects.decode_checked(record, key)
    return objects.parse_index(payload, key).size


__all__ = ["ObjectInfo", "ReadTxn", "Repository", "StoredValue", "Writer", "validate_name"]
