"""Running a flow body: a new run, a replay (new execution), a resume or retry (same execution).

A flow commits at its start (the execution exists, status running) and at its end (status,
result); every checkpoint call in between commits once, when it ends (calls.py). A flow that
reaches a ``kitaru.wait()`` without an answer is persisted as ``waiting`` and ``run()`` returns.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import msgspec

from kitaru_store.errors import SerializationError
from kitaru_store.manifests import FINISHED

from . import context
from .calls import drain, failure_of, now, unwrap
from .cancellation import ExecutionCancelled, resend, signals_handled
from .errors import ExecutionStateError, KitaruContextError, KitaruError, KitaruUsageError
from .handles import CheckpointOutput, FlowHandle
from .replay import ReusePlan

if TYPE_CHECKING:
    import os

    from kitaru_store import Repository
    from kitaru_store.manifests import Manifest

    from .decorators import Flow


class WaitSuspended(BaseException):
    """Raised by kitaru.wait() to park the flow body; a BaseException so `except Exception` misses it."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name


def open_repository(
    store: str | os.PathLike[str] | None = None, *, create: bool = True, readonly: bool = False
) -> Repository:
    """The SDK's one way to open a store: with the remote behaviours (write-through, load
    fallback) attached from outside the store's core (kitaru_store/remote/hooks.py)."""
    from kitaru_store.remote.hooks import open_repository as open_with_remotes

    return open_with_remotes(store, create=create, readonly=readonly)


def _not_nested(flow: Flow[Any, Any]) -> None:
    if context.maybe_current_flow() is not None:
        raise KitaruContextError(
            f"flow {flow.name!r} was started inside another flow",
            exec_id=context.current_execution_id(),
            name=flow.name,
            hint="call its checkpoints directly, or start it from outside the running flow",
        )


def _create(
    repo: Repository, flow: Flow[Any, Any], args: tuple[Any, ...], kwargs: dict[str, Any], **extra: Any
) -> str:
    """A new execution, ``running`` and owned by this process (which holds its run lock)."""
    from kitaru_store import ids, liveness

    from .registry import origin

    metadata = origin(flow)  # how another process finds the flow again (registry.find)
    exec_id = ids.new_uuid()
    liveness.claim(repo, exec_id)  # before the manifest says running (liveness.py)
    try:
        owner = liveness.this_owner()
        with repo.writer() as w:
            w.create_execution(flow.name, exec_id=exec_id, metadata=metadata, **extra)
            w.mutate(exec_id, lambda m: msgspec.structs.replace(m, owner=owner), head_only=True)
            try:
                stored_inputs = w.put_value({"args": list(args), "kwargs": kwargs})
                w.update_execution(exec_id, input_object_id=stored_inputs.object_id)
            except SerializationError:
                pass  # inputs that are not data are not recorded; only replay needs them
    except BaseException:
        liveness.release(repo, exec_id)
        raise
    return exec_id


def run_flow(
    flow: Flow[Any, Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    *,
    store: str | None = None,
    cache: bool | None = None,
) -> FlowHandle:
    _not_nested(flow)
    repo = open_repository(store)
    exec_id = _create(repo, flow, args, kwargs)
    run = context.FlowRun(
        repo=repo, exec_id=exec_id, flow_name=flow.name, cache=flow.cache, cache_forced=cache
    )
    return _drive(flow, run, args, kwargs)


def _stored_inputs(repo: Repository, source: Manifest) -> tuple[list[Any], dict[str, Any]] | None:
    if not source.input_object_id:
        return None
    stored = repo.get_value(source.input_object_id)
    return list(stored["args"]), dict(stored["kwargs"])


def _inputs(
    repo: Repository, flow: Flow[Any, Any], source: Manifest, changes: dict[str, Any]
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    recorded = _stored_inputs(repo, source)
    if recorded is None and not changes:
        try:
            inspect.signature(flow.fn).bind()
        except TypeError:
            raise KitaruUsageError(
                f"execution {source.exec_id} did not record its inputs (they were not data)",
                exec_id=source.exec_id,
                name=flow.name,
                hint="pass the flow's inputs as keyword arguments to replay(...)",
            ) from None
        return (), {}
    args, kwargs = recorded or ([], {})
    if not changes:
        return tuple(args), kwargs
    try:
        bound = inspect.signature(flow.fn).bind_partial(*args, **kwargs)
    except TypeError as exc:
        raise KitaruUsageError(f"recorded inputs no longer fit flow {flow.name!r}: {exc}") from None
    params = inspect.signature(flow.fn).parameters
    for key, value in changes.items():
        if key not in params:
            raise KitaruUsageError(
                f"flow {flow.name!r} has no parameter {key!r}",
                name=flow.name,
                hint=f"its parameters are: {', '.join(params) or '(none)'}",
            )
        bound.arguments[key] = value
    return tuple(bound.args), dict(bound.kwargs)


def _same_flow(flow: Flow[Any, Any], source: Manifest, action: str) -> None:
    if source.flow_name != flow.name:
        raise KitaruUsageError(
            f"execution {source.exec_id} ran flow {source.flow_name!r}, not {flow.name!r}",
            exec_id=source.exec_id,
            name=flow.name,
            hint=f"{action} it with the {source.flow_name} flow, or KitaruClient().executions.{action}(...)",
        )


def replay_flow(
    flow: Flow[Any, Any],
    exec_id: str,
    *,
    from_: str | None = None,
    overrides: dict[str, Any] | None = None,
    store: str | None = None,
    flow_inputs: dict[str, Any] | None = None,
) -> FlowHandle:
    """A new execution that reuses ``exec_id``'s recorded calls up to ``from_`` and runs the rest."""
    _not_nested(flow)
    repo = open_repository(store)
    source = repo.get_execution(exec_id)
    _same_flow(flow, source, "replay")
    plan = ReusePlan.build(source, same_execution=False, stop_at=from_, overrides=overrides)
    args, kwargs = _inputs(repo, flow, source, dict(flow_inputs or {}))
    new_id = _create(repo, flow, args, kwargs, replay_of=source.exec_id)
    run = context.FlowRun(
        repo=repo,
        exec_id=new_id,
        flow_name=flow.name,
        plan=plan,
        cache=flow.cache,
        cache_forced=flow._run_cache,
    )
    return _drive(flow, run, args, kwargs)


def continue_flow(
    flow: Flow[Any, Any], exec_id: str, *, store: str | None = None, allowed: tuple[str, ...] = ("waiting",)
) -> FlowHandle:
    """Run the same execution again, reusing every call it completed (resume, retry).

    This process becomes its owner: it takes the run lock, reads the execution again, and claims
    it in a transaction that checks it is still in an ``allowed`` state. Of two processes that
    retry it at once, one runs it and the other gets ExecutionStateError.
    """
    from kitaru_store import liveness
    from kitaru_store.errors import StoreLockedError

    _not_nested(flow)
    repo = open_repository(store)
    source = repo.get_execution(exec_id)  # a crash is observed (and recorded) here
    _same_flow(flow, source, "resume" if allowed == ("waiting",) else "retry")
    _require_state(source, allowed)
    try:
        liveness.claim(repo, source.exec_id)
    except StoreLockedError:
        raise ExecutionStateError(
            f"execution {source.exec_id} is being run by another process",
            exec_id=source.exec_id,
            name=source.flow_name,
            hint="wait for it to end (`kitaru-store show` tells), or cancel it first",
        ) from None
    try:
        source = repo.get_execution(source.exec_id)  # as it is now that no one else can claim it
        _require_state(source, allowed)
        args, kwargs = _inputs(repo, flow, source, {})
        plan = ReusePlan.build(source, same_execution=True)
        owner = liveness.this_owner()

        def claim(current: Manifest) -> Manifest:
            if current.status == "running" and current.owner == source.owner and liveness.is_crashed(source):
                current = liveness.crashed_view(current)  # not recorded yet: it is, with the claim
            _require_state(current, allowed, meanwhile=True)
            metadata = current.metadata
            if current.failure is not None:
                history = [*metadata.get("kitaru.previous_failures", [])]
                history.append({"type": current.failure.type, "message": current.failure.message})
                metadata = {**metadata, "kitaru.previous_failures": history}
            return msgspec.structs.replace(
                current,
                status="running",
                ended_at=None,
                failure=None,
                metadata=metadata,
                owner=owner,
                cancel_request=None,
            )

        with repo.writer() as w:
            w.mutate(source.exec_id, claim)
    except BaseException:
        liveness.release(repo, source.exec_id)
        raise
    run = context.FlowRun(
        repo=repo,
        exec_id=source.exec_id,
        flow_name=flow.name,
        plan=plan,
        cache=flow.cache,
        cache_forced=flow._run_cache,
    )
    return _drive(flow, run, args, kwargs)


def _require_state(m: Manifest, allowed: tuple[str, ...], *, meanwhile: bool = False) -> None:
    if m.status not in allowed:
        raise ExecutionStateError(
            f"execution {m.exec_id} {'became' if meanwhile else 'is'} {m.status}"
            + (" meanwhile" if meanwhile else "")
            + f"; this needs it to be {' or '.join(allowed)}",
            exec_id=m.exec_id,
            name=m.flow_name,
            hint="resume continues a waiting execution; retry re-runs a failed or cancelled one",
        )


def _drive(
    flow: Flow[Any, Any], run: context.FlowRun, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> FlowHandle:
    """Run the body of an execution this process owns; its run lock goes after the final status."""
    from kitaru_store import liveness

    try:
        with signals_handled(run):
            return _run_body(flow, run, args, kwargs)
    finally:
        liveness.release(run.repo, run.exec_id)
        resend(run)  # after SIGTERM or SIGHUP: the process ends as the signal says


def _run_body(
    flow: Flow[Any, Any], run: context.FlowRun, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> FlowHandle:
    repo, exec_id = run.repo, run.exec_id
    token = context._flow.set(run)
    try:
        try:
            run.in_body = True
            try:
                result = flow.fn(*args, **kwargs)
            finally:
                run.in_body = False
        finally:
            unobserved = drain(run)
        if unobserved is not None:
            raise unobserved
    except WaitSuspended:
        _finish(repo, exec_id, "waiting", ended=False)
        return FlowHandle(repo=repo, exec_id=exec_id, flow_name=flow.name, status="waiting")
    except ExecutionCancelled as exc:
        failure = exc.failure()
        _finish(repo, exec_id, "cancelled", failure=failure)
        if exc.signum is not None:
            raise
        return FlowHandle(
            repo=repo, exec_id=exec_id, flow_name=flow.name, status="cancelled", error=exc, failure=failure
        )
    except (KeyboardInterrupt, SystemExit) as exc:
        _finish(repo, exec_id, "cancelled", failure=failure_of(exc))
        raise
    except Exception as exc:
        failure = failure_of(exc, checkpoint=getattr(exc, "_kitaru_checkpoint", None))
        _finish(repo, exec_id, "failed", failure=failure)
        return FlowHandle(
            repo=repo, exec_id=exec_id, flow_name=flow.name, status="failed", error=exc, failure=failure
        )
    finally:
        context._flow.reset(token)
    # The result's object and the manifest that names it commit in one transaction: a gc in
    # between could otherwise sweep a result nothing referenced yet.
    try:
        with repo.writer() as w:
            if isinstance(result, CheckpointOutput):
                value = result.load()
                result_id: str | None = result.object_id
            else:
                value = unwrap(result, [], [])  # handles inside a returned list, tuple or dict
                result_id = w.put_value(value).object_id if value is not None else None
            w.mutate(exec_id, _ended("completed", ended_at=now(), result_object_id=result_id), head_only=True)
    except KitaruError as exc:
        failure = failure_of(exc)
        _finish(repo, exec_id, "failed", failure=failure)
        return FlowHandle(
            repo=repo, exec_id=exec_id, flow_name=flow.name, status="failed", error=exc, failure=failure
        )
    return FlowHandle(repo=repo, exec_id=exec_id, flow_name=flow.name, status="completed", result=value)


def _ended(status: str, **changes: Any) -> Callable[[Manifest], Manifest]:
    """The owner's last write: its status, unless another process cancelled it meanwhile (a
    waiting or crashed execution is cancelled at once): a final status stays."""

    def apply(current: Manifest) -> Manifest:
        if current.status in FINISHED:
            return current
        return msgspec.structs.replace(current, status=status, cancel_request=None, **changes)

    return apply


def _finish(repo: Repository, exec_id: str, status: str, *, ended: bool = True, **changes: Any) -> None:
    from kitaru_store.errors import ExecutionNotFoundError

    if ended:
        changes["ended_at"] = now()
    try:
        with repo.writer() as w:
            w.mutate(exec_id, _ended(status, **changes), head_only=True)
    except ExecutionNotFoundError:
        pass  # deleted while it ran (executions.delete(force=True)): nothing left to record
