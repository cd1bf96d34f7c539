"""Running a flow body: a new run, a replay (new execution), a resume or retry (same execution).

A flow commits at its start (the execution exists, status running) and at its end (status,
result); every checkpoint call in between commits once, when it ends (calls.py). A flow that
reaches a ``kitaru.wait()`` without an answer is persisted as ``waiting`` and ``run()`` returns.
"""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING, Any

from kitaru_store.errors import SerializationError

from . import context
from .calls import drain, failure_of, now, unwrap
from .errors import ExecutionStateError, KitaruContextError, KitaruError, KitaruUsageError
from .handles import CheckpointOutput, FlowHandle
from .replay import ReusePlan

if TYPE_CHECKING:
    from kitaru_store import Repository
    from kitaru_store.manifests import Manifest

    from .decorators import Flow


class WaitSuspended(BaseException):
    """Raised by kitaru.wait() to park the flow body; a BaseException so `except Exception` misses it."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name


def open_repository(store: str | None = None) -> Repository:
    from kitaru_store import Repository

    return Repository.open(store)


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
    from .registry import origin

    metadata = origin(flow)  # how another process finds the flow again (registry.find)
    with repo.writer() as w:
        exec_id = w.create_execution(flow.name, metadata=metadata, **extra)
        try:
            stored_inputs = w.put_value({"args": list(args), "kwargs": kwargs})
            w.update_execution(exec_id, input_object_id=stored_inputs.object_id)
        except SerializationError:
            pass  # inputs that are not data are not recorded; only replay needs them
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
    """Run the same execution again, reusing every call it completed (resume, retry)."""
    _not_nested(flow)
    repo = open_repository(store)
    source = repo.get_execution(exec_id)
    _same_flow(flow, source, "resume" if allowed == ("waiting",) else "retry")
    if source.status not in allowed:
        raise ExecutionStateError(
            f"execution {source.exec_id} is {source.status}; this needs it to be {' or '.join(allowed)}",
            exec_id=source.exec_id,
            name=source.flow_name,
            hint="resume continues a waiting execution; retry re-runs a failed or cancelled one",
        )
    args, kwargs = _inputs(repo, flow, source, {})
    plan = ReusePlan.build(source, same_execution=True)
    with repo.writer() as w:
        if source.failure is not None:
            history = [*source.metadata.get("kitaru.previous_failures", [])]
            history.append({"type": source.failure.type, "message": source.failure.message})
            w.merge_metadata(source.exec_id, {"kitaru.previous_failures": history})
        w.update_execution(source.exec_id, status="running", ended_at=None, failure=None)
    run = context.FlowRun(
        repo=repo,
        exec_id=source.exec_id,
        flow_name=flow.name,
        plan=plan,
        cache=flow.cache,
        cache_forced=flow._run_cache,
    )
    return _drive(flow, run, args, kwargs)


def _drive(
    flow: Flow[Any, Any], run: context.FlowRun, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> FlowHandle:
    repo, exec_id = run.repo, run.exec_id
    token = context._flow.set(run)
    try:
        try:
            result = flow.fn(*args, **kwargs)
        finally:
            unobserved = drain(run)
        if unobserved is not None:
            raise unobserved
    except WaitSuspended:
        with repo.writer() as w:
            w.update_execution(exec_id, status="waiting")
        return FlowHandle(repo=repo, exec_id=exec_id, flow_name=flow.name, status="waiting")
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
            w.update_execution(exec_id, status="completed", ended_at=now(), result_object_id=result_id)
    except KitaruError as exc:
        failure = failure_of(exc)
        _finish(repo, exec_id, "failed", failure=failure)
        return FlowHandle(
            repo=repo, exec_id=exec_id, flow_name=flow.name, status="failed", error=exc, failure=failure
        )
    return FlowHandle(repo=repo, exec_id=exec_id, flow_name=flow.name, status="completed", result=value)


def _finish(repo: Repository, exec_id: str, status: str, **changes: Any) -> None:
    with repo.writer() as w:
        w.update_execution(exec_id, status=status, ended_at=now(), **changes)
