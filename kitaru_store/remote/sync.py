"""push, pull and fetch between a local store and a remote on S3-compatible storage.

The remote layout (docs/remotes.md has the whole of it)::

    s3://BUCKET/PREFIX/config                  JSON: kind "kitaru-remote", format, store_id
    s3://BUCKET/PREFIX/objects/<2 hex>/<id>    a record, byte for byte as in LMDB (codec.py)
    s3://BUCKET/PREFIX/manifests/<exec id>     a manifest, MessagePack as in LMDB

Push uploads objects first (chunks before the chunk index that names them), then the manifest
with a conditional write: If-None-Match: * to create, If-Match: <ETag> to replace. A remote
manifest therefore never names a missing object, an interrupted push leaves only orphan
objects (which the next push finds and skips), and two pushers never overwrite each other's
version unseen. Pull fetches only objects missing locally, verifies each against its id
before anything is stored, and imports objects and manifest through a Writer: one commit,
indexes included.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Any, Literal, Protocol

from kitaru_store import codec, hashing, ids, layout, objects
from kitaru_store import manifests as mf
from kitaru_store.errors import (
    AmbiguousIdError,
    CorruptManifestError,
    CorruptObjectError,
    ExecutionNotFoundError,
    IdCollisionError,
    InvalidIdError,
    InvalidNameError,
    KitaruError,
    ManifestTooLargeError,
    NestingTooDeepError,
    ObjectNotFoundError,
    StoreFormatError,
    UsageError,
)

from . import hooks, inbound, settings
from .errors import (
    PreconditionFailed,
    RemoteConflictError,
    RemoteError,
    RemoteNotFoundError,
    RemotePullError,
    RemoteTooLargeError,
)
from .settings import RemoteSpec, Tracked

if TYPE_CHECKING:
    from collections.abc import Generator, Iterator

    from kitaru_store.repository import Repository, Writer

CONFIG_KEY = "config"
REMOTE_KIND = "kitaru-remote"
REMOTE_FORMAT = 1
DEFAULT_JOBS = 8
# Above this many executions, one LIST of manifests/ is cheaper than a HEAD per execution.
HEAD_LIMIT = 16
MAX_ATTEMPTS = 5  # conditional writes lost in a row before a push gives up on an execution

Progress = Callable[[str, int, int], None]
Verdict = Literal["same", "local", "remote", "conflict"]


class Transport(Protocol):
    """What sync needs from a remote (s3.S3Transport; tests may wrap it)."""

    counts: Any

    def describe(self) -> str: ...
    def head(self, key: str) -> str | None: ...
    def get(self, key: str, *, limit: int | None = None) -> tuple[bytes, str] | None: ...
    def put(
        self, key: str, body: bytes, *, if_none_match: bool = False, if_match: str | None = None
    ) -> str: ...
    def list(self, prefix: str) -> Iterator[tuple[str, str]]: ...


def object_path(key: bytes) -> str:
    h = key.hex()
    return f"objects/{h[:2]}/{h}"


def manifest_path(exec_id: str) -> str:
    return f"manifests/{exec_id}"


# --- reports ---------------------------------------------------------------------------------


@dataclass
class PushReport:
    remote: str
    url: str
    pushed: list[str] = field(default_factory=list)  # created or replaced on the remote
    up_to_date: list[str] = field(default_factory=list)
    behind: list[str] = field(default_factory=list)  # the remote holds a newer version: pull it
    conflicts: list[str] = field(default_factory=list)  # diverged: push --force or pull --force
    objects_uploaded: int = 0
    bytes_uploaded: int = 0
    objects_present: int = 0  # found on the remote already (HEAD), not uploaded
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.conflicts

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}


@dataclass
class PullFailure:
    """One execution a pull could not import, and why (the typed error; nothing of it was stored)."""

    exec_id: str
    error: KitaruError

    def to_dict(self) -> dict[str, Any]:
        return {**self.error.to_dict(), "exec_id": self.exec_id}


# What one execution's bad data (or an id that collides here) raises: reported for that execution
# while the pull goes on. Anything else (the remote unreachable or refusing us, a full disk) stops it.
PER_EXECUTION: tuple[type[KitaruError], ...] = (
    CorruptManifestError,
    CorruptObjectError,
    IdCollisionError,
    InvalidIdError,
    InvalidNameError,
    ManifestTooLargeError,
    NestingTooDeepError,
    ObjectNotFoundError,
    RemoteNotFoundError,
    StoreFormatError,
)


@dataclass
class PullReport:
    remote: str
    url: str
    fetched: list[str] = field(default_factory=list)  # new in the local store
    updated: list[str] = field(default_factory=list)  # a newer remote version replaced the local one
    up_to_date: list[str] = field(default_factory=list)
    ahead: list[str] = field(default_factory=list)  # the local version is newer: push it
    conflicts: list[str] = field(default_factory=list)
    failed: list[PullFailure] = field(default_factory=list)  # not imported: bad data, colliding ids
    objects_fetched: int = 0
    bytes_fetched: int = 0
    objects_present: int = 0  # already in the local store, not fetched
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.conflicts and not self.failed

    def to_dict(self) -> dict[str, Any]:
        plain = asdict(replace(self, failed=[]))
        return {**plain, "failed": [f.to_dict() for f in self.failed], "ok": self.ok}


# --- which version wins ----------------------------------------------------------------------


def _utc(t: dt.datetime) -> dt.datetime:
    return t.replace(tzinfo=dt.UTC) if t.tzinfo is None else t


def progress_key(m: mf.Manifest) -> tuple[Any, ...]:
    """How far an execution has got, for versions whose history the tracking files do not know.

    The latest time recorded anywhere in the manifest first (a later event is a later version),
    then finished before unfinished, then more checkpoints, entries, waits, answered waits and
    metadata keys. Equal keys with different bytes are a conflict.
    """
    times = [m.started_at, m.ended_at]
    for e in m.entries:
        times.append(e.created_at)
    for c in m.checkpoints:
        times += [c.started_at, c.ended_at]
        for a in c.attempts:
            times += [a.started_at, a.ended_at]
    for w in m.waits:
        times += [w.created_at, w.answered_at]
    latest = max(_utc(t) for t in times if t is not None)
    return (
        latest,
        m.status in mf.FINISHED,
        len(m.checkpoints),
        len(m.entries),
        len(m.waits),
        sum(1 for w in m.waits if w.status != "pending"),
        len(m.metadata),
    )


def compare(local: bytes, remote: bytes, exec_id: str) -> Verdict:
    """Which of two versions of one execution's manifest is newer (by progress_key)."""
    if local == remote:
        return "same"
    mine = mf.decode_manifest(local, exec_id=exec_id)
    theirs = mf.decode_manifest(remote, exec_id=exec_id)
    if mf.same_content(mine, theirs):  # one of another format (a pull before manifest format 2)
        return "same"
    a, b = progress_key(mine), progress_key(theirs)
    if a > b:
        return "local"
    if a < b:
        return "remote"
    return "conflict"


def _by_tracking(tracked: Tracked | None, digest: str, remote_etag: str) -> Verdict | None:
    """The verdict the tracking file gives without downloading anything, or None."""
    if tracked is None:
        return None
    if tracked.etag == remote_etag:
        return "same" if tracked.digest == digest else "local"
    if tracked.digest == digest:
        return "remote"  # we have not changed since the last sync; the remote has
    return None


# --- the remote ------------------------------------------------------------------------------


class Remote:
    """One configured remote of one local store."""

    def __init__(
        self,
        repo: Repository,
        spec: RemoteSpec,
        *,
        jobs: int = DEFAULT_JOBS,
        transport: Transport | None = None,
    ) -> None:
        self.repo = repo
        self.spec = spec
        self.jobs = max(1, int(jobs))
        if transport is None:
            from .s3 import S3Transport

            transport = S3Transport(spec, pool=self.jobs + 2)
        self.transport: Transport = transport
        self._present: set[bytes] = set()  # object keys known to be on the remote
        self._present_lock = threading.Lock()
        self._config: dict[str, Any] | None = None

    @classmethod
    def open(cls, repo: Repository, name: str | None = None, *, jobs: int = DEFAULT_JOBS) -> Remote:
        return cls(repo, settings.get(repo.root, name), jobs=jobs)

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def url(self) -> str:
        return self.spec.url

    def _pool(self) -> ThreadPoolExecutor:
        return ThreadPoolExecutor(max_workers=self.jobs, thread_name_prefix=f"kitaru-remote-{self.name}")

    # -- the remote's config --------------------------------------------------------------

    def read_config(self) -> dict[str, Any] | None:
        return read_remote_config(self.transport, self.name)

    def config(self, *, create: bool = False) -> dict[str, Any]:
        """The remote's config; ``create`` makes the remote on first use (a push)."""
        if self._config is not None:
            return self._config
        data = self.read_config()
        if data is None and create:
            data = self._create()
        if data is None:
            raise _missing_remote(self.transport, self.name)
        self._config = data
        return data

    def _create(self) -> dict[str, Any]:
        # kitaru never writes into a prefix that merely exists: it must be empty, or ours.
        if next(iter(self.transport.list("")), None) is not None:
            data = self.read_config()  # another pusher may have created it meanwhile
            if data is not None:
                return data
            raise RemoteError(
                f"{self.transport.describe()} holds other data and no kitaru config",
                name=self.name,
                hint="use an empty prefix for the remote, e.g. s3://BUCKET/kitaru",
            )
        data = {
            "kind": REMOTE_KIND,
            "format": REMOTE_FORMAT,
            "store_id": uuid.uuid4().hex,
            "created_at": dt.datetime.now(dt.UTC).isoformat(),
        }
        try:
            self.transport.put(CONFIG_KEY, (json.dumps(data, indent=2) + "\n").encode(), if_none_match=True)
        except PreconditionFailed:
            winner = self.read_config()
            if winner is None:
                raise
            return winner
        return data

    # -- listing --------------------------------------------------------------------------

    def list_executions(self) -> dict[str, str]:
        """Execution id -> the ETag of its manifest, for every execution on the remote."""
        out: dict[str, str] = {}
        for key, etag in self.transport.list("manifests/"):
            exec_id = key[len("manifests/") :]
            if len(exec_id) == ids.UUID_HEX and all(c in "0123456789abcdef" for c in exec_id):
                out[exec_id] = etag
        return out

    def _remote_etags(self, exec_ids: Sequence[str]) -> dict[str, str]:
        if len(exec_ids) > HEAD_LIMIT:
            listed = self.list_executions()
            return {e: listed[e] for e in exec_ids if e in listed}
        out = {}
        for exec_id in exec_ids:
            etag = self.transport.head(manifest_path(exec_id))
            if etag is not None:
                out[exec_id] = etag
        return out

    def resolve_remote(self, prefix: str, listed: dict[str, str]) -> str:
        """A unique prefix of an execution id on the remote -> the full id."""
        hexp = ids.normalize_hex(prefix, what="execution id", full_length=ids.UUID_HEX)
        found = sorted(e for e in listed if e.startswith(hexp))
        if not found:
            raise RemoteNotFoundError(
                f"no execution {prefix!r} on remote {self.name!r}",
                exec_id=prefix,
                name=self.name,
                hint="check the id; `kitaru-store pull` without ids fetches every execution on the remote",
            )
        if len(found) > 1:
            raise AmbiguousIdError(prefix, found[:11], what="execution id")
        return found[0]

    # -- push -----------------------------------------------------------------------------

    def push(
        self,
        exec_ids: Iterable[str] | None = None,
        *,
        force: bool = False,
        progress: Progress | None = None,
        raise_on_conflict: bool = True,
    ) -> PushReport:
        """Push executions (ids or unique prefixes; None: every local execution).

        Objects first, then each manifest with a conditional write. An execution whose remote
        version is newer is left alone (``behind``); one that diverged is a conflict, raised as
        RemoteConflictError after every other execution was pushed (or only reported, with
        ``raise_on_conflict=False``). ``force`` makes the local version win both.
        """
        began = time.monotonic()
        report = PushReport(self.name, self.url)
        if exec_ids is None:
            wanted = [key.hex() for key, _ in self.repo.kv.scan(layout.MANIFESTS)]
        else:
            wanted = list(dict.fromkeys(self.repo.resolve_execution(e) for e in exec_ids))
        self.config(create=True)
        etags = self._remote_etags(wanted)
        for n, exec_id in enumerate(wanted, 1):
            outcome = self._push_one(exec_id, etags.get(exec_id), force, report)
            getattr(report, outcome).append(exec_id)
            if progress:
                progress("push", n, len(wanted))
        report.seconds = time.monotonic() - began
        if report.conflicts and raise_on_conflict:
            raise _conflict(report.conflicts, self.name, pushing=True)
        return report

    def _local_manifest(self, exec_id: str) -> bytes | None:
        """The local manifest in the remote's (whole-manifest) form; None if there is none."""
        try:
            return mf.encode_manifest(self.repo.get_execution(exec_id, observe=False))
        except ExecutionNotFoundError:
            return None

    def _push_one(self, exec_id: str, remote_etag: str | None, force: bool, report: PushReport) -> str:
        local = self._local_manifest(exec_id)
        if local is None:
            return "up_to_date"  # deleted locally since it was listed: nothing to push
        digest = hashing.hexdigest(local)
        tracked = settings.read_tracking(self.repo.root, self.name, exec_id)
        remote: bytes | None = None  # the remote version whose ETag is remote_etag, once read
        uploaded = False
        for _ in range(MAX_ATTEMPTS):
            verdict: Verdict | None = "local" if remote_etag is None else None
            if verdict is None and remote is None:
                verdict = _by_tracking(tracked, digest, remote_etag or "")
            if verdict is None:
                if remote is None:
                    got = self._get_manifest(exec_id)
                    if got is None:  # deleted from the remote meanwhile
                        remote_etag = None
                        continue
                    remote, remote_etag = got
                verdict = compare(local, remote, exec_id)
            if verdict == "same":
                assert remote_etag is not None
                settings.write_tracking(self.repo.root, self.name, exec_id, Tracked(remote_etag, digest))
                return "up_to_date"
            if verdict != "local" and not force:
                return "behind" if verdict == "remote" else "conflicts"
            if not uploaded:
                self._upload_objects(mf.decode_manifest(local, exec_id=exec_id), report)
                uploaded = True
            try:
                etag = self.transport.put(
                    manifest_path(exec_id),
                    local,
                    if_none_match=remote_etag is None,
                    if_match=remote_etag,
                )
            except PreconditionFailed:
                # Another pusher wrote this execution between our read and our write: read
                # their version and decide again (the objects are uploaded already).
                got = self._get_manifest(exec_id)
                remote, remote_etag = got if got is not None else (None, None)
                continue
            settings.write_tracking(self.repo.root, self.name, exec_id, Tracked(etag, digest))
            return "pushed"
        raise RemoteConflictError(
            f"execution {exec_id} changed on remote {self.name!r} {MAX_ATTEMPTS} times while it was pushed",
            exec_id=exec_id,
            hint="another machine keeps writing it; push again later",
        )

    def _upload_objects(self, manifest: mf.Manifest, report: PushReport) -> None:
        """Every object the manifest names, chunks before their index, each at most once.

        A chunk index on the remote vouches for its chunks (they were uploaded before it), so
        the chunks of a value whose index is there already are not even looked at.
        """
        values = sorted({layout.object_key(o) for o in mf.referenced_ids(manifest)})
        chunks_of: dict[bytes, list[bytes]] = {}
        plain: list[bytes] = []
        with self.repo.kv.read(buffers=True) as rt:
            for key in values:
                record = rt.get_view(layout.OBJECTS, key)
                if record is None:
                    raise ObjectNotFoundError(key.hex(), exec_id=manifest.exec_id)
                chunks = objects.chunk_keys(record, key)
                if chunks:
                    chunks_of[key] = chunks
                else:
                    plain.append(key)
        with self._pool() as pool:
            unknown = [k for k in chunks_of if k not in self._present]
            report.objects_present += sum(etag is not None for etag in pool.map(self._head, unknown))
            indexes = [k for k in chunks_of if k not in self._present]
            first = list(dict.fromkeys([*plain, *(c for k in indexes for c in chunks_of[k])]))
            for batch in (first, indexes):
                todo = [k for k in batch if k not in self._present]
                for uploaded in pool.map(self._ensure_uploaded, todo):
                    if uploaded is None:
                        report.objects_present += 1
                    else:
                        report.objects_uploaded += 1
                        report.bytes_uploaded += uploaded

    def _head(self, key: bytes) -> str | None:
        etag = self.transport.head(object_path(key))
        if etag is not None:
            with self._present_lock:
                self._present.add(key)
        return etag

    def _ensure_uploaded(self, key: bytes) -> int | None:
        """Upload one record unless the remote has it; returns the bytes sent (None: present)."""
        path = object_path(key)
        if self._head(key) is not None:
            return None
        with self.repo.kv.read() as rt:
            record = rt.get(layout.OBJECTS, key)
        if record is None:
            raise ObjectNotFoundError(key.hex())
        _check_local(record, key)  # never spread a damaged copy
        self.transport.put(path, record)
        with self._present_lock:
            self._present.add(key)
        return len(record)

    # -- pull -----------------------------------------------------------------------------

    def pull(
        self,
        exec_ids: Iterable[str] | None = None,
        *,
        force: bool = False,
        progress: Progress | None = None,
        raise_on_conflict: bool = True,
        raise_on_failure: bool = True,
    ) -> PullReport:
        """Fetch executions (ids or unique prefixes on the remote; None: all of them).

        An execution missing locally, or whose remote version is newer, is imported: its missing
        objects are fetched and verified, then objects and manifest are committed together. A
        local version that is newer is kept (``ahead``); a diverged one is a conflict (raised
        after everything else, as for push). ``force`` makes the remote version win.

        An execution whose remote data is bad (a record that does not match its id, a manifest
        that does not decode or names what the local API refuses, an id that collides with one
        of this store) is not imported and the pull goes on: ``report.failed`` lists it with its
        typed error, and RemotePullError (carrying the report) is raised after everything else
        (``raise_on_failure=False``: only reported).
        """
        began = time.monotonic()
        report = PullReport(self.name, self.url)
        self.config()
        listed = self.list_executions()
        if exec_ids is None:
            wanted = sorted(listed)
        else:
            wanted = list(dict.fromkeys(self.resolve_remote(e, listed) for e in exec_ids))
        for n, exec_id in enumerate(wanted, 1):
            try:
                outcome = self._pull_one(exec_id, listed[exec_id], force, report)
            except PER_EXECUTION as exc:
                report.failed.append(PullFailure(exec_id, _remote_data(exc.concerning(exec_id=exec_id))))
            else:
                getattr(report, outcome).append(exec_id)
            if progress:
                progress("pull", n, len(wanted))
        report.seconds = time.monotonic() - began
        if report.failed and raise_on_failure:
            raise pull_failed(report)
        if report.conflicts and raise_on_conflict:
            raise _conflict(report.conflicts, self.name, pushing=False)
        return report

    def _pull_one(self, exec_id: str, remote_etag: str, force: bool, report: PullReport) -> str:
        local = self._local_manifest(exec_id)
        remote: bytes | None = None
        verdict: Verdict | None = None
        if local is not None:
            digest = hashing.hexdigest(local)
            tracked = settings.read_tracking(self.repo.root, self.name, exec_id)
            verdict = _by_tracking(tracked, digest, remote_etag)
            if verdict in ("same", "local"):
                return "up_to_date" if verdict == "same" else "ahead"
        got = self._get_manifest(exec_id)
        if got is None:
            raise RemoteNotFoundError(
                f"execution {exec_id} vanished from remote {self.name!r} while it was pulled",
                exec_id=exec_id,
                hint="pull again",
            )
        remote, remote_etag = got
        manifest = inbound.decode_manifest(remote, exec_id, self.name)  # checked before anything else
        if local is not None and verdict is None:
            verdict = compare(local, remote, exec_id)
            if verdict == "same":
                settings.write_tracking(
                    self.repo.root, self.name, exec_id, Tracked(remote_etag, hashing.hexdigest(local))
                )
                return "up_to_date"
            if verdict == "local" and not force:
                return "ahead"
            if verdict == "conflict" and not force:
                return "conflicts"
        expected = mf.decode_manifest(local, exec_id=exec_id) if local is not None else None
        writer = self._import_writer()
        try:
            self._fetch_objects(writer, mf.referenced_ids(manifest), report, exec_id=exec_id)
            writer.put_manifest(manifest, expect=expected)
            writer.commit()
        except BaseException:
            writer.abort()
            raise
        stored = self._local_manifest(exec_id) or b""
        settings.write_tracking(
            self.repo.root, self.name, exec_id, Tracked(remote_etag, hashing.hexdigest(stored))
        )
        return "fetched" if local is None else "updated"

    def _has_local(self, keys: Iterable[bytes]) -> set[bytes]:
        with self.repo.kv.read() as rt:
            return {k for k in keys if rt.has(layout.OBJECTS, k)}

    def _get_manifest(self, exec_id: str) -> tuple[bytes, str] | None:
        """The remote's manifest of ``exec_id`` and its ETag, read with the manifest cap."""
        try:
            return self.transport.get(manifest_path(exec_id), limit=inbound.MAX_MANIFEST)
        except RemoteTooLargeError:
            raise inbound.manifest_too_large(exec_id, self.name) from None

    def _import_writer(self) -> Writer:
        """A writer for an import: not pushed back, and flushing its objects every ``jobs``
        records' worth, so that what a pull holds stays within jobs x the largest record."""
        writer = self.repo.writer()
        writer.remote_sync = False  # an import is not a change to push back
        writer.flush_bytes = self.jobs * inbound.MAX_DATA_RECORD
        return writer

    def _fetch(self, key: bytes, limit: int = inbound.MAX_DATA_RECORD) -> bytes | None:
        """One object's record, read with ``limit`` as its cap. None: longer than a data record,
        but its header says chunk index (read it again with the index cap); anything else longer
        than the cap is refused having read only its first bytes."""
        try:
            got = self.transport.get(object_path(key), limit=limit)
        except RemoteTooLargeError as exc:
            head = exc.head
            if limit < inbound.MAX_INDEX_RECORD and codec.is_index(head):
                return None
            raise inbound.too_large(key, self.name, limit, None) from None
        if got is None:
            raise RemoteNotFoundError(
                f"object {key.hex()} is missing on remote {self.name!r}",
                object_id=key.hex(),
                name=self.name,
                hint="the remote is incomplete: push it again from a store that has the object",
            )
        return got[0]

    def _fetch_many(self, keys: Sequence[bytes]) -> Generator[tuple[bytes, bytes | None]]:
        """(key, record or None if over the data-record cap), in order, fetched in parallel with
        at most ``jobs`` requests (and so records) ahead of the consumer."""
        if not keys:
            return
        pool = self._pool()
        ahead: deque[tuple[bytes, Future[bytes | None]]] = deque()
        todo = iter(keys)
        try:
            while True:
                while len(ahead) < self.jobs and (key := next(todo, None)) is not None:
                    ahead.append((key, pool.submit(self._fetch, key)))
                if not ahead:
                    return
                key, future = ahead.popleft()
                yield key, future.result()
        finally:
            pool.shutdown(wait=True, cancel_futures=True)

    def _fetch_objects(
        self, writer: Writer, object_ids: Iterable[str], report: PullReport | None, *, exec_id: str | None
    ) -> None:
        """Fetch, verify and stage every object missing locally (chunked values with their chunks).

        A record that does not decode exactly and hash to its key raises CorruptObjectError
        before it is staged: it is never stored. Records are read with the cap of a data record;
        one longer than that can only be a chunk index, read again on its own with the index
        cap. A chunked value's chunks are fetched, verified and staged as they come, the value
        hashed as a whole along the way; its index is staged last, once all of it checked out.
        Memory holds at most ``jobs`` records ahead, one index, and what the writer flushes.
        """
        keys = sorted({layout.object_key(o) for o in object_ids})
        local = self._has_local(keys)
        missing = [k for k in keys if k not in local]
        if report is not None:
            report.objects_present += len(local)
        for key, fetched in self._fetch_many(missing):
            record = fetched if fetched is not None else self._fetch(key, inbound.MAX_INDEX_RECORD)
            assert record is not None
            kind, payload = inbound.verify_record(record, key, self.name, exec_id=exec_id)
            if kind == codec.KIND_INDEX:
                index = inbound.parse_index(payload, key, self.name, exec_id=exec_id)
                self._fetch_chunked(writer, key, record, index, report, exec_id=exec_id)
                continue
            writer.put_record(key, record)
            if report is not None:
                report.objects_fetched += 1
                report.bytes_fetched += len(record)

    def _fetch_chunked(
        self,
        writer: Writer,
        key: bytes,
        record: bytes,
        index: objects.ChunkIndex,
        report: PullReport | None,
        *,
        exec_id: str | None,
    ) -> None:
        chunk_keys = [c for c, _ in index.chunks]
        present = self._has_local(chunk_keys)
        missing = list(dict.fromkeys(c for c in chunk_keys if c not in present))
        fetched = self._fetch_many(missing)  # in order of first use below
        staged: set[bytes] = set()
        hasher = hashing.StreamHasher()
        try:
            for ckey, csize in index.chunks:
                data: bytes | bytearray | memoryview
                if ckey in present or ckey in staged:
                    writer.flush_objects()  # a chunk staged earlier is readable once flushed
                    with self.repo.kv.read(buffers=True) as rt:
                        data = bytes(objects.read(rt, ckey))
                else:
                    got_key, crecord = next(fetched)
                    assert got_key == ckey
                    if crecord is None:  # a chunk index, where a chunk belongs
                        raise inbound.too_large(ckey, self.name, inbound.MAX_DATA_RECORD, exec_id)
                    _, data = inbound.verify_record(crecord, ckey, self.name, exec_id=exec_id, index=False)
                    writer.put_record(ckey, crecord)
                    staged.add(ckey)
                    if report is not None:
                        report.objects_fetched += 1
                        report.bytes_fetched += len(crecord)
                if len(data) != csize:
                    raise CorruptObjectError(
                        key.hex(), f"chunk {ckey.hex()} has the wrong size", exec_id=exec_id
                    )
                hasher.update(data)
        finally:
            fetched.close()
        if hasher.digest() != key:
            raise CorruptObjectError(
                key.hex(), f"the copy on remote {self.name!r} does not reassemble to its id", exec_id=exec_id
            )
        writer.put_record(key, record)
        writer.flush_objects()
        if report is not None:
            report.objects_fetched += 1
            report.bytes_fetched += len(record)
            report.objects_present += len(chunk_keys) - len(missing)

    # -- the load fallback ----------------------------------------------------------------

    def fetch_object(self, object_id: str) -> None:
        """Copy one object (with its chunks) from the remote into the local store, verified.

        Raises ObjectNotFoundError if the remote does not have it either.
        """
        key = layout.object_key(object_id)
        self.config()
        if self.transport.head(object_path(key)) is None:
            raise ObjectNotFoundError(object_id)
        writer = self._import_writer()
        try:
            self._fetch_objects(writer, [object_id], None, exec_id=None)
            writer.commit()
        except BaseException:
            writer.abort()
            raise


def read_remote_config(transport: Transport, name: str) -> dict[str, Any] | None:
    """The remote's config (None if the prefix holds none); RemoteError if it is not kitaru's."""
    try:
        got = transport.get(CONFIG_KEY, limit=inbound.MAX_CONFIG)
    except RemoteTooLargeError:
        raise inbound.not_a_remote(transport.describe(), name, "its config is too large") from None
    if got is None:
        return None
    data = inbound.decode_config(got[0], transport.describe(), name)
    fmt = data["format"]
    if data.get("kind") != REMOTE_KIND:
        raise inbound.not_a_remote(transport.describe(), name, f"config kind {str(data.get('kind'))[:80]!r}")
    if fmt > REMOTE_FORMAT:
        raise StoreFormatError(
            f"remote {name!r} has format {fmt}; this kitaru understands up to {REMOTE_FORMAT}",
            name=name,
            hint="upgrade kitaru to use this remote",
        )
    return dict(data)


def _missing_remote(transport: Transport, name: str) -> RemoteNotFoundError:
    return RemoteNotFoundError(
        f"no kitaru remote at {transport.describe()}",
        name=name,
        hint="push to it first (the first push creates it), or check the URL and prefix",
    )


def _conflict(exec_list: list[str], name: str, *, pushing: bool) -> RemoteConflictError:
    shown = ", ".join(ids.short(e) for e in exec_list[:10]) + (" ..." if len(exec_list) > 10 else "")
    other = "pull" if pushing else "push"
    return RemoteConflictError(
        f"{len(exec_list)} execution{'s' if len(exec_list) != 1 else ''} diverged between this store"
        f" and remote {name!r}: {shown}",
        exec_ids=exec_list,
        exec_id=exec_list[0] if len(exec_list) == 1 else None,
        hint=f"both sides changed them; keep one side with `kitaru-store {'push' if pushing else 'pull'}"
        f" --force EXEC` or take the other with `kitaru-store {other} --force EXEC`",
    )


_BAD_REMOTE_DATA = (CorruptManifestError, CorruptObjectError, InvalidIdError, InvalidNameError)
_BAD_REMOTE_HINT = (
    "the remote's copy is bad and nothing of this execution was stored here: push it again from a"
    " store that has it intact (or remove it from the remote), then pull again"
)


def _remote_data(exc: KitaruError) -> KitaruError:
    """The error, with a hint about the remote's copy where the local one (fsck ...) would mislead."""
    if isinstance(exc, _BAD_REMOTE_DATA):
        exc.with_hint(_BAD_REMOTE_HINT)
    return exc


def pull_failed(report: PullReport) -> RemotePullError:
    """The error of a pull that left executions out: how many, which, and why (the first ten)."""
    failed = report.failed
    total = len(failed) + sum(
        map(len, (report.fetched, report.updated, report.up_to_date, report.ahead, report.conflicts))
    )
    reasons = "; ".join(f"{ids.short(f.exec_id)}: {f.error.message}" for f in failed[:10])
    return RemotePullError(
        f"{len(failed)} of {total} execution{'s' if total != 1 else ''} could not be pulled from remote"
        f" {report.remote!r}: {reasons}" + (" ..." if len(failed) > 10 else ""),
        report=report,
        hint="every other execution was pulled; the failed ones were not stored (each failure says"
        " why and what to do: `report.failed`, or `kitaru-store pull --json`)",
    )


def _check_local(record: bytes, key: bytes) -> None:
    """A local record about to be uploaded must be one a pull accepts: intact (an index must at
    least parse), exactly its length, and within the caps of what a remote may send."""
    try:
        kind, _ = codec.header(record)
    except ValueError as exc:
        raise CorruptObjectError(key.hex(), f"undecodable record: {exc}") from None
    except StoreFormatError as exc:
        raise objects.object_format_error(exc, key) from None
    cap = inbound.MAX_DATA_RECORD if kind == codec.KIND_DATA else inbound.MAX_INDEX_RECORD
    if len(record) > cap:
        raise RemoteError(
            f"object {key.hex()} is too large to push: its record takes {len(record)} bytes, a"
            f" remote takes at most {cap} (a chunk index of a value of some 100 GiB)",
            object_id=key.hex(),
            hint="keep values this large out of executions you push",
        )
    try:
        kind, payload = codec.decode_exact(record, limit=cap)
    except ValueError as exc:
        raise CorruptObjectError(
            key.hex(), f"undecodable record: {exc} (not pushed; run `kitaru-store fsck`)"
        ) from None
    if kind == codec.KIND_DATA:
        if hashing.digest(payload) != key:
            raise CorruptObjectError(
                key.hex(), "content does not match its id (not pushed; run `kitaru-store fsck`)"
            )
    else:
        objects.parse_index(payload, key)


def clone(
    url: str,
    path: str,
    *,
    name: str = settings.DEFAULT_NAME,
    endpoint_url: str | None = None,
    region: str | None = None,
    profile: str | None = None,
    fallback: bool = False,
    write_through: bool = False,
    jobs: int = DEFAULT_JOBS,
    progress: Progress | None = None,
    raise_on_failure: bool = True,
) -> tuple[Repository, PullReport]:
    """A new store at ``path`` with ``url`` as remote ``name``, holding everything the remote has.

    Executions the remote holds bad data for are left out, as by pull: RemotePullError (its
    ``report`` says what was cloned; the store at ``path`` holds it) unless ``raise_on_failure``
    is False, then only ``report.failed`` lists them.
    """
    from pathlib import Path

    from kitaru_store import config
    from kitaru_store.repository import Repository

    spec = settings.make_spec(
        name,
        url,
        endpoint_url=endpoint_url,
        region=region,
        profile=profile,
        fallback=fallback,
        write_through=write_through,
    )
    root = Path(path).expanduser().absolute()
    if config.read_config(root) is not None:
        raise UsageError(
            f"{root} is a kitaru store already",
            hint="clone into a new or empty directory; to fetch into an existing store use"
            " `kitaru-store remote add` and `kitaru-store pull`",
        )
    from .s3 import S3Transport

    transport = S3Transport(spec, pool=max(1, jobs) + 2)
    if read_remote_config(transport, name) is None:  # checked before anything is created locally
        raise _missing_remote(transport, name)
    repo = hooks.attach(Repository.open(root))
    settings.add(repo.root, spec)
    remote = Remote(repo, spec, jobs=jobs, transport=transport)
    return repo, remote.pull(progress=progress, raise_on_conflict=False, raise_on_failure=raise_on_failure)


__all__ = [
    "CONFIG_KEY",
    "PER_EXECUTION",
    "PullFailure",
    "PullReport",
    "PushReport",
    "Remote",
    "clone",
    "compare",
    "manifest_path",
    "object_path",
    "progress_key",
]
