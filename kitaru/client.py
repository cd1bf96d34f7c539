"""KitaruClient: browse executions and artifacts from outside a flow."""

from __future__ import annotations

import builtins
import datetime as dt
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .artifacts import normalize_type
from .decorators import RESUMABLE, RETRYABLE
from .errors import KitaruError

if TYPE_CHECKING:
    from kitaru_store import Repository
    from kitaru_store.manifests import CheckpointRecord, Entry, ExecutionSummary, Manifest
    from kitaru_store.memory import MemoryItem, MemoryVersion

    from .handles import FlowHandle
    from .waits import PendingWait


@dataclass(frozen=True)
class Failure:
    type: str
    message: str
    traceback: str = ""
    checkpoint: str | None = None


@dataclass(frozen=True)
class Attempt:
    started_at: dt.datetime
    ended_at: dt.datetime | None
    failure: Failure | None


@dataclass(frozen=True)
class ArtifactRef:
    """A reference to one stored artifact; ``.load()`` materializes the value."""

    artifact_id: str
    name: str
    type: str
    kind: str  # "checkpoint_output", "manual" (kitaru.save), "llm_record" or "wait_input"
    checkpoint: str | None
    invocation_id: str | None
    exec_id: str
    object_id: str
    size: int
    serializer: str
    created_at: dt.datetime
    tags: tuple[str, ...] = ()
    metadata: dict[str, Any] = field(default_factory=dict)
    inputs: tuple[str, ...] = ()
    _repo: Repository | None = field(default=None, repr=False, compare=False)

    @property
    def is_manual_save(self) -> bool:
        return self.kind == "manual"

    def load(self, *, allow_pickle: bool | None = None) -> Any:
        assert self._repo is not None
        try:
            return self._repo.get_value(self.object_id, allow_pickle=allow_pickle)
        except KitaruError as exc:
            exc.concerning(exec_id=self.exec_id, name=self.name)
            raise


@dataclass(frozen=True)
class CheckpointCall:
    invocation_id: str
    name: str
    status: str
    started_at: dt.datetime
    ended_at: dt.datetime | None
    output_object_id: str | None
    inputs: tuple[str, ...]  # object ids (lineage)
    upstream: tuple[str, ...]  # invocation ids whose outputs were passed in
    attempts: tuple[Attempt, ...]
    failure: Failure | None
    metadata: dict[str, Any]
    reused_from: str | None = None  # the execution whose recorded output this call reused
    kind: str = "checkpoint"  # or "llm" for a flow-body kitaru.llm() call
    seq: int = 0


@dataclass(frozen=True)
class WaitInfo:
    name: str
    status: str  # pending, answered, aborted
    question: str | None
    schema: str
    metadata: dict[str, Any]
    created_at: dt.datetime
    answered_at: dt.datetime | None
    value_object_id: str | None


@dataclass(frozen=True)
class Owner:
    """The process that runs (or last ran) an execution (docs/design.md, the owner record).

    ``alive``: True while it runs the execution, False once it does not (it ended, or crashed),
    None when this process cannot tell (the owner is on another host).
    """

    pid: int
    host: str
    claimed_at: dt.datetime
    alive: bool | None


@dataclass(frozen=True)
class Execution:
    exec_id: str
    flow_name: str
    status: str
    started_at: dt.datetime
    ended_at: dt.datetime | None
    failure: Failure | None
    replay_of: str | None
    checkpoints: list[CheckpointCall]
    artifacts: list[ArtifactRef]
    metadata: dict[str, Any]
    result_object_id: str | None = None
    waits: list[WaitInfo] = field(default_factory=list)
    owner: Owner | None = None
    cancel_requested: bool = False  # asked to stop; the owner stops at its next checkpoint boundary
    _repo: Repository | None = field(default=None, repr=False, compare=False)

    @property
    def pending_wait(self) -> WaitInfo | None:
        """The first wait still needing input, if any."""
        return next((w for w in self.waits if w.status == "pending"), None)

    @property
    def duration(self) -> dt.timedelta | None:
        return self.ended_at - self.started_at if self.ended_at else None

    def artifact(self, name: str) -> ArtifactRef:
        """The one artifact answering to ``name`` (same lookup rules as kitaru.load)."""
        from kitaru_store.resolve import resolve

        assert self._repo is not None
        entry = resolve(self._repo.get_execution(self.exec_id), name)
        return _ref(entry, self.exec_id, self._repo)


def _failure(f: Any) -> Failure | None:
    return Failure(f.type, f.message, f.traceback, f.checkpoint) if f else None


def _ref(e: Entry, exec_id: str, repo: Repository) -> ArtifactRef:
    return ArtifactRef(
        artifact_id=e.artifact_id,
        name=e.name,
        type=e.artifact_type,
        kind=e.kind,
        checkpoint=e.checkpoint,
        invocation_id=e.invocation_id,
        exec_id=exec_id,
        object_id=e.object_id,
        size=e.size,
        serializer=e.serializer,
        created_at=e.created_at,
        tags=tuple(e.tags),
        metadata=dict(e.metadata),
        inputs=tuple(e.inputs),
        _repo=repo,
    )


def _call(c: CheckpointRecord) -> CheckpointCall:
    return CheckpointCall(
        invocation_id=c.invocation_id,
        name=c.name,
        status=c.status,
        started_at=c.started_at,
        ended_at=c.ended_at,
        output_object_id=c.output_object_id,
        inputs=tuple(c.inputs),
        upstream=tuple(c.upstream),
        attempts=tuple(Attempt(a.started_at, a.ended_at, _failure(a.failure)) for a in c.attempts),
        failure=_failure(c.failure),
        metadata=dict(c.metadata),
        reused_from=c.reused_from,
        kind=c.kind,
        seq=c.seq,
    )


def _execution(m: Manifest, repo: Repository) -> Execution:
    return Execution(
        exec_id=m.exec_id,
        flow_name=m.flow_name,
        status=m.status,
        started_at=m.started_at,
        ended_at=m.ended_at,
        failure=_failure(m.failure),
        replay_of=m.replay_of,
        checkpoints=[_call(c) for c in sorted(m.checkpoints, key=lambda c: c.seq)],
        artifacts=[_ref(e, m.exec_id, repo) for e in m.entries],
        metadata=dict(m.metadata),
        result_object_id=m.result_object_id,
        waits=[_wait(w) for w in sorted(m.waits, key=lambda w: w.seq)],
        owner=_owner(m, repo),
        cancel_requested=m.cancel_request is not None,
        _repo=repo,
    )


def _owner(m: Manifest, repo: Repository) -> Owner | None:
    if m.owner is None:
        return None
    alive: bool | None = False
    if m.status == "running":
        from kitaru_store.liveness import alive as owner_alive

        alive = owner_alive(repo, m.exec_id, m.owner)
    return Owner(pid=m.owner.pid, host=m.owner.host, claimed_at=m.owner.claimed_at, alive=alive)


def _wait(w: Any) -> WaitInfo:
    from .waits import schema_text

    return WaitInfo(
        name=w.name,
        status=w.status,
        question=w.question,
        schema=schema_text(w.schema),
        metadata=dict(w.metadata),
        created_at=w.created_at,
        answered_at=w.answered_at,
        value_object_id=w.value_object_id,
    )


class _Executions:
    def __init__(self, client: KitaruClient) -> None:
        self._client = client

    def get(self, exec_id: str) -> Execution:
        """One execution by id or unique id prefix."""
        repo = self._client.repository
        return _execution(repo.get_execution(exec_id), repo)

    def list(
        self, *, flow: str | None = None, status: str | None = None, limit: int = 50, offset: int = 0
    ) -> list[ExecutionSummary]:
        """Executions newest first; filter by flow name and status."""
        if status is not None:
            from kitaru_store.manifests import STATUSES

            from .errors import KitaruUsageError

            if status not in STATUSES:
                raise KitaruUsageError(
                    f"unknown status {status!r}", hint=f"use one of: {', '.join(STATUSES)}"
                )
        return self._client.repository.list_executions(flow=flow, status=status, limit=limit, offset=offset)

    def replay(
        self,
        exec_id: str,
        *,
        from_: str | None = None,
        overrides: dict[str, Any] | None = None,
        **flow_inputs: Any,
    ) -> FlowHandle:
        """Replay an execution as a new one (see ``Flow.replay``) in this client's store; the flow
        must be registered or importable (see kitaru.registry)."""
        from .registry import find
        from .runtime import replay_flow

        manifest = self._client.repository.get_execution(exec_id)
        return replay_flow(
            find(manifest),
            manifest.exec_id,
            from_=from_,
            overrides=overrides,
            store=self._client._store_path(),
            flow_inputs=flow_inputs,
        )

    def retry(self, exec_id: str) -> FlowHandle:
        """Run a failed or cancelled execution again in place, reusing its completed checkpoints."""
        return self._continue(exec_id, RETRYABLE)

    def resume(self, exec_id: str) -> FlowHandle:
        """Continue a waiting execution whose waits got input, reusing its completed checkpoints."""
        return self._continue(exec_id, RESUMABLE)

    def _continue(self, exec_id: str, allowed: tuple[str, ...]) -> FlowHandle:
        # Through the runtime with this client's store: Flow.retry/.resume run on the configured one.
        from .registry import find
        from .runtime import continue_flow

        manifest = self._client.repository.get_execution(exec_id)
        return continue_flow(
            find(manifest), manifest.exec_id, store=self._client._store_path(), allowed=allowed
        )

    def input(self, exec_id: str, *, wait: str | None = None, value: Any) -> Any:
        """Answer a pending wait. The value is validated against the wait's schema; returns it."""
        from .waits import provide_input

        return provide_input(self._client.repository, exec_id, wait, value)

    def abort_wait(self, exec_id: str, *, wait: str | None = None, reason: str | None = None) -> None:
        """Refuse a pending wait: the execution fails cleanly."""
        from .waits import abort_wait

        abort_wait(self._client.repository, exec_id, wait, reason)

    def pending_waits(self, exec_id: str) -> builtins.list[PendingWait]:
        """The waits of an execution that still need input, in the order they were reached."""
        from .waits import pending_waits

        return pending_waits(self._client.repository, exec_id)

    def cancel(self, exec_id: str, *, reason: str | None = None) -> Execution:
        """Stop an execution as ``cancelled``.

        A running one gets a cancel request: its process stops at its next checkpoint boundary or
        wait poll (``cancel_requested`` is True until then). A waiting or crashed one is cancelled
        at once. A finished one is ExecutionStateError.
        """
        from .lifecycle import cancel

        return _execution(cancel(self._client.repository, exec_id, reason=reason), self._client.repository)

    def delete(self, exec_id: str, *, force: bool = False) -> None:
        """Forget an execution; ``kitaru-store gc`` then reclaims what only it kept (pins stay).

        A running one whose process is alive (or on another host) only with ``force=True``:
        that process then stops at its next checkpoint boundary. Else ExecutionStateError.
        """
        from .lifecycle import delete

        delete(self._client.repository, exec_id, force=force)

    def latest(self, *, flow: str | None = None) -> Execution | None:
        """The newest execution (of ``flow``, if given), or None in an empty store."""
        summary = self._client.repository.latest_execution(flow=flow)
        return self.get(summary.exec_id) if summary else None


class _Artifacts:
    def __init__(self, client: KitaruClient) -> None:
        self._client = client

    def get(self, artifact_id: str) -> ArtifactRef:
        """A reference to one artifact by id or unique id prefix."""
        repo = self._client.repository
        manifest, entry = repo.get_artifact(artifact_id)
        return _ref(entry, manifest.exec_id, repo)

    def list(self, exec_id: str, *, name: str | None = None, type: str | None = None) -> list[ArtifactRef]:
        """The artifacts of one execution, optionally only those answering to ``name`` or of ``type``."""
        from kitaru_store.resolve import candidates

        repo = self._client.repository
        manifest = repo.get_execution(exec_id)
        entries = candidates(manifest, name) if name is not None else list(manifest.entries)
        if type is not None:
            wanted = normalize_type(type)
            entries = [e for e in entries if e.artifact_type == wanted]
        return [_ref(e, manifest.exec_id, repo) for e in entries]


class _Memories:
    """Browse memory (docs/memory.md): ``get``, ``history`` and ``list``.

    The client never uses a running flow's context: name the scope with ``namespace=`` (default
    "default"), ``flow=`` or ``exec_id=`` (a unique prefix works). Writes go through kitaru.memory.
    """

    def __init__(self, client: KitaruClient) -> None:
        self._client = client

    def _scope(
        self, api: str, scope: str | None, namespace: str | None, flow: str | None, exec_id: str | None
    ) -> Any:
        from .memory import resolve_scope

        return resolve_scope(
            self._client.repository,
            f"KitaruClient().memories.{api}()",
            scope=scope,
            namespace=namespace,
            flow=flow,
            exec_id=exec_id,
            use_context=False,
        )

    def get(
        self,
        key: str,
        *,
        version: int | None = None,
        scope: str | None = None,
        namespace: str | None = None,
        flow: str | None = None,
        exec_id: str | None = None,
        allow_pickle: bool | None = None,
    ) -> Any:
        """The value of ``key`` (latest, or ``version``); MemoryKeyNotFoundError or MemoryRedactedError."""
        target = self._scope("get", scope, namespace, flow, exec_id)
        return self._client.repository.memory.get(target, key, version=version, allow_pickle=allow_pickle)

    def history(
        self,
        key: str,
        *,
        scope: str | None = None,
        namespace: str | None = None,
        flow: str | None = None,
        exec_id: str | None = None,
    ) -> list[MemoryVersion]:
        """Every version of ``key``, oldest first, deletions and redactions included."""
        target = self._scope("history", scope, namespace, flow, exec_id)
        return self._client.repository.memory.history(target, key)

    def list(
        self,
        *,
        scope: str | None = None,
        namespace: str | None = None,
        flow: str | None = None,
        exec_id: str | None = None,
        prefix: str | None = None,
    ) -> list[MemoryItem]:
        """The live keys of one scope, in key order, with their latest version."""
        target = self._scope("list", scope, namespace, flow, exec_id)
        return self._client.repository.memory.list(target, prefix=prefix)


class KitaruClient:
    """Programmatic access to the store: ``executions``, ``artifacts`` and ``memories``."""

    def __init__(self, store: str | os.PathLike[str] | None = None) -> None:
        self._store = store
        self._repo: Repository | None = None
        self.executions = _Executions(self)
        self.artifacts = _Artifacts(self)
        self.memories = _Memories(self)

    def _store_path(self) -> str:
        """The store this client reads, for the runtime to run a flow on the same one."""
        return str(self.repository.path)

    @property
    def repository(self) -> Repository:
        """The underlying store (opened on first use; a missing store is StoreNotFoundError)."""
        if self._repo is None:
            from kitaru_store import ReadOnlyStoreError

            from .runtime import open_repository

            try:
                self._repo = open_repository(self._store, create=False)
            except ReadOnlyStoreError:
                # A store this user may not write: browsing works; input/resume say why not.
                self._repo = open_repository(self._store, create=False, readonly=True)
        return self._repo
