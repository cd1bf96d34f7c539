"""Running a flow body and its checkpoint calls against the store.

Durability: each checkpoint invocation commits once, when it ends: its saved artifacts, its
output and its record go into the store in one LMDB write transaction. A flow commits once at
its start (the execution exists, status running) and once at its end (status, result).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import traceback
from typing import TYPE_CHECKING, Any

from kitaru_store.errors import SerializationError

from . import context
from .errors import KitaruContextError, KitaruError
from .handles import CheckpointOutput, FlowHandle

if TYPE_CHECKING:
    from kitaru_store import Repository
    from kitaru_store.manifests import Attempt, Failure

    from .decorators import Checkpoint, Flow


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _failure(exc: BaseException, *, checkpoint: str | None = None) -> Failure:
    from kitaru_store.manifests import Failure

    cls = type(exc)
    return Failure(
        type=f"{cls.__module__}.{cls.__qualname__}" if cls.__module__ != "builtins" else cls.__qualname__,
        message=str(exc),
        traceback="".join(traceback.format_exception(exc)),
        checkpoint=checkpoint,
    )


def open_repository(store: str | None = None) -> Repository:
    from kitaru_store import Repository

    return Repository.open(store)


# --- flows -----------------------------------------------------------------------------------


def run_flow(
    flow: Flow, args: tuple[Any, ...], kwargs: dict[str, Any], *, store: str | None = None
) -> FlowHandle:
    if context.maybe_current_flow() is not None:
        raise KitaruContextError(
            f"flow {flow.name!r} was started inside another flow",
            exec_id=context.current_execution_id(),
            name=flow.name,
            hint="call its checkpoints directly, or start it from outside the running flow",
        )
    repo = open_repository(store)
    with repo.writer() as w:
        exec_id = w.create_execution(flow.name, metadata={"module": flow.fn.__module__})
        try:
            stored_inputs = w.put_value({"args": list(args), "kwargs": kwargs})
            w.update_execution(exec_id, input_object_id=stored_inputs.object_id)
        except SerializationError:
            pass  # inputs that are not data are simply not recorded; the run does not need them
    run = context.FlowRun(repo=repo, exec_id=exec_id, flow_name=flow.name)
    token = context._flow.set(run)
    try:
        result = flow.fn(*args, **kwargs)
    except (KeyboardInterrupt, SystemExit) as exc:
        _finish(repo, exec_id, "cancelled", failure=_failure(exc))
        raise
    except Exception as exc:
        failure = _failure(exc, checkpoint=getattr(exc, "_kitaru_checkpoint", None))
        _finish(repo, exec_id, "failed", failure=failure)
        return FlowHandle(
            repo=repo, exec_id=exec_id, flow_name=flow.name, status="failed", error=exc, failure=failure
        )
    finally:
        context._flow.reset(token)
    result_id: str | None
    try:
        if isinstance(result, CheckpointOutput):
            result_id = result.object_id
            value = result.load()
        else:
            value = _unwrap(result, [], [])  # handles inside a returned list, tuple or dict
            result_id = repo.put_value(value).object_id if value is not None else None
    except KitaruError as exc:
        failure = _failure(exc)
        _finish(repo, exec_id, "failed", failure=failure)
        return FlowHandle(
            repo=repo, exec_id=exec_id, flow_name=flow.name, status="failed", error=exc, failure=failure
        )
    _finish(repo, exec_id, "completed", result_object_id=result_id)
    return FlowHandle(repo=repo, exec_id=exec_id, flow_name=flow.name, status="completed", result=value)


def _finish(repo: Repository, exec_id: str, status: str, **changes: Any) -> None:
    with repo.writer() as w:
        w.update_execution(exec_id, status=status, ended_at=_now(), **changes)


# --- checkpoints -----------------------------------------------------------------------------


def _unwrap(value: Any, upstream: list[str], inputs: list[str]) -> Any:
    """Replace checkpoint output handles (also inside lists, tuples and dicts) by their values."""
    if isinstance(value, CheckpointOutput):
        upstream.append(value.invocation_id)
        inputs.append(value.object_id)
        return value.load()
    if type(value) in (list, tuple):
        return type(value)(_unwrap(v, upstream, inputs) for v in value)
    if type(value) is dict:
        return {k: _unwrap(v, upstream, inputs) for k, v in value.items()}
    return value


def call_checkpoint(
    cp: Checkpoint, args: tuple[Any, ...], kwargs: dict[str, Any], *, invocation_id: str | None = None
) -> CheckpointOutput:
    from kitaru_store import CheckpointRecord, Entry
    from kitaru_store.ids import new_uuid
    from kitaru_store.manifests import Attempt

    run = context.maybe_current_flow()
    if run is None:
        raise KitaruContextError(
            f"checkpoint {cp.name!r} was called outside a flow",
            name=cp.name,
            hint="call checkpoints from the body of a @flow function and start it with .run()",
        )
    if context.maybe_current_checkpoint() is not None:
        outer = context.maybe_current_checkpoint()
        raise KitaruContextError(
            f"checkpoint {cp.name!r} was called inside checkpoint {outer.invocation_id if outer else '?'!r}",
            exec_id=run.exec_id,
            name=cp.name,
            hint="checkpoints do not nest: call both from the flow body, or make the inner one plain",
        )
    inv = run.next_invocation_id(cp.name, invocation_id or cp.fixed_id)
    upstream: list[str] = []
    inputs: list[str] = []
    call_args = _unwrap(args, upstream, inputs)
    call_kwargs = _unwrap(kwargs, upstream, inputs)
    started = _now()
    attempts: list[Attempt] = []
    repo = run.repo

    def record(status: str, loaded: list[str], **extra: Any) -> CheckpointRecord:
        return CheckpointRecord(
            invocation_id=inv,
            name=cp.name,
            status=status,
            started_at=started,
            ended_at=_now() if status != "running" else None,
            inputs=tuple(dict.fromkeys([*inputs, *loaded])),  # handed-over values and kitaru.load reads
            upstream=tuple(upstream),
            attempts=tuple(attempts),
            **extra,
        )

    for attempt in range(cp.retries + 1):
        last = attempt == cp.retries
        attempt_started = _now()
        writer = repo.writer()
        cp_run = context.CheckpointRun(flow=run, name=cp.name, invocation_id=inv, writer=writer)
        token = context._checkpoint.set(cp_run)
        try:
            value = cp.fn(*call_args, **call_kwargs)
            try:
                stored = writer.put_value(value)
            except KitaruError as exc:
                raise exc.concerning(exec_id=run.exec_id, name=inv) from exc.__cause__
        except Exception as exc:
            failure = _failure(exc, checkpoint=inv)
            attempts.append(Attempt(started_at=attempt_started, ended_at=_now(), failure=failure))
            final = last or isinstance(exc, KitaruError)  # our own errors are not transient
            writer.set_checkpoint(
                run.exec_id,
                record(
                    "failed" if final else "running",
                    cp_run.loaded,
                    failure=failure if final else None,
                    metadata=cp_run.metadata,
                ),
            )
            writer.commit()  # what the failed attempt saved stays loadable
            if final:
                with contextlib.suppress(AttributeError):
                    exc._kitaru_checkpoint = inv  # type: ignore[attr-defined]
                raise
            continue
        finally:
            context._checkpoint.reset(token)
        attempts.append(Attempt(started_at=attempt_started, ended_at=_now()))
        lineage = tuple(dict.fromkeys([*inputs, *cp_run.loaded]))
        writer.replace_entry(
            run.exec_id,
            Entry(
                artifact_id=new_uuid(),
                name=inv,
                kind="checkpoint_output",
                artifact_type=cp.type,
                object_id=stored.object_id,
                size=stored.size,
                serializer=stored.serializer,
                created_at=_now(),
                checkpoint=cp.name,
                invocation_id=inv,
                inputs=lineage,
            ),
        )
        writer.set_checkpoint(
            run.exec_id,
            record("completed", cp_run.loaded, output_object_id=stored.object_id, metadata=cp_run.metadata),
        )
        writer.commit()
        return CheckpointOutput(
            repo=repo,
            exec_id=run.exec_id,
            checkpoint=cp.name,
            invocation_id=inv,
            object_id=stored.object_id,
            value=value,
        )
    raise AssertionError("unreachable")  # pragma: no cover
