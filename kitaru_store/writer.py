"""Writer: objects and manifest changes gathered, then committed in one write transaction."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from . import ids, layout
from . import manifest_store as ms
from . import manifests as mf
from .errors import ExecutionNotFoundError, IdCollisionError, StateError, UsageError
from .lazy import lazy_module
from .manifests import Entry, Manifest
from .names import validate_name

if TYPE_CHECKING:
    from . import codec, objects, serialization
    from .kv import WriteTxn
    from .repository import Repository
else:
    # Imported on first use (see repository.py): a writer that only changes manifests never
    # loads the object engine.
    codec = lazy_module("codec", globals())
    objects = lazy_module("objects", globals())
    serialization = lazy_module("serialization", globals())

# A writer commits the objects it holds once they pass this many bytes (objects before manifest).
FLUSH_BYTES = 64 << 20
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
        # After a commit that changed executions, the Repository's after_commit hooks get their
        # ids (a write-through remote attached by kitaru_store/remote/hooks.py pushes them).
        # Pulls turn it off: an import is no change.
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
