"""Checkpoint calls: run (with retries), reuse (replay, resume, cache), submit and map.

Durability: each call commits once, when it ends: its saved artifacts, its output and its record
go into the store in one LMDB write transaction.
"""

from __future__ import annotations

import contextlib
import contextvars
import datetime as dt
import inspect
import os
import traceback
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from . import context
from .artifacts import new_entry
from .cancellation import check as check_cancel
from .errors import KitaruContextError, KitaruError
from .handles import CheckpointOutput
from .replay import _UNSET, copy_entries

if TYPE_CHECKING:
    from kitaru_store.manifests import CheckpointRecord, Failure

    from .decorators import Checkpoint

MAX_WORKERS = int(os.environ.get("KITARU_MAX_WORKERS", "8"))


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def failure_of(exc: BaseException, *, checkpoint: str | None = None) -> Failure:
    from kitaru_store.manifests import Failure

    cls = type(exc)
    return Failure(
        type=f"{cls.__module__}.{cls.__qualname__}" if cls.__module__ != "builtins" else cls.__qualname__,
        message=str(exc),
        traceback="".join(traceback.format_exception(exc)),
        checkpoint=checkpoint,
    )


class CheckpointFuture:
    """A checkpoint call submitted to run concurrently. Pass it on like an output handle."""

    __slots__ = ("_future", "_observed", "checkpoint", "invocation_id")

    def __init__(self, future: Future[CheckpointOutput], checkpoint: str, invocation_id: str) -> None:
        self._future = future
        self._observed = False
        self.checkpoint = checkpoint
        self.invocation_id = invocation_id

    def result(self, timeout: float | None = None) -> CheckpointOutput:
        """The call's output handle; raises what the checkpoint raised."""
        self._observed = True
        return self._future.result(timeout)

    def load(self) -> Any:
        return self.result().load()

    def done(self) -> bool:
        return self._future.done()

    def __repr__(self) -> str:
        state = "done" if self.done() else "pending"
        return f"<CheckpointFuture {self.invocation_id} {state}: call .result() or .load()>"


def unwrap(value: Any, upstream: list[str], inputs: list[str]) -> Any:
    """Replace output handles and futures (also inside lists, tuples and dicts) by their values."""
    if isinstance(value, CheckpointFuture):
        value = value.result()
    if isinstance(value, CheckpointOutput):
        upstream.append(value.invocation_id)
        inputs.append(value.object_id)
        return value.load()
    if type(value) in (list, tuple):
        return type(value)(unwrap(v, upstream, inputs) for v in value)
    if type(value) is dict:
        return {k: unwrap(v, upstream, inputs) for k, v in value.items()}
    return value


def _resolve_futures(value: Any) -> Any:
    """Wait for futures among the arguments (in the caller's thread: never a pool deadlock)."""
    if isinstance(value, CheckpointFuture):
        return value.result()
    if type(value) in (list, tuple):
        return type(value)(_resolve_futures(v) for v in value)
    if type(value) is dict:
        return {k: _resolve_futures(v) for k, v in value.items()}
    return value


def _require_flow(cp: Checkpoint[..., Any]) -> context.FlowRun:
    run = context.maybe_current_flow()
    if run is None:
        raise KitaruContextError(
            f"checkpoint {cp.name!r} was called outside a flow",
            name=cp.name,
            hint="call checkpoints from the body of a @flow function and start it with .run()",
        )
    outer = context.maybe_current_checkpoint()
    if outer is not None:
        raise KitaruContextError(
            f"checkpoint {cp.name!r} was called inside checkpoint {outer.invocation_id!r}",
            exec_id=run.exec_id,
            name=cp.name,
            hint="checkpoints do not nest: call both from the flow body, or make the inner one plain",
        )
    return run


def _output(
    run: context.FlowRun, cp_name: str, inv: str, object_id: str, value: Any = _UNSET
) -> CheckpointOutput:
    kwargs: dict[str, Any] = {} if value is _UNSET else {"value": value}
    return CheckpointOutput(
        repo=run.repo,
        exec_id=run.exec_id,
        checkpoint=cp_name,
        invocation_id=inv,
        object_id=object_id,
        **kwargs,
    )


# --- reuse -----------------------------------------------------------------------------------


def reuse_record(
    run: context.FlowRun,
    *,
    name: str,
    inv: str,
    seq: int,
    record: CheckpointRecord,
    source_exec: str,
    status: str,
    kind: str = "checkpoint",
) -> CheckpointOutput:
    """Take a recorded call's output instead of running it (replay, retry, resume, cache)."""
    from kitaru_store import CheckpointRecord

    assert record.output_object_id
    if source_exec == run.exec_id and record.invocation_id == inv:
        return _output(run, name, inv, record.output_object_id)  # already in this manifest
    source = run.repo.get_execution(source_exec)
    stamp = now()
    with run.repo.writer() as w:
        copy_entries(w, source, run.exec_id, record.invocation_id, inv)
        w.set_checkpoint(
            run.exec_id,
            CheckpointRecord(
                invocation_id=inv,
                name=name,
                status=status,
                started_at=stamp,
                ended_at=stamp,
                output_object_id=record.output_object_id,
                inputs=record.inputs,
                upstream=record.upstream,
                reused_from=source_exec,
                seq=seq,
                kind=kind,
                metadata=dict(record.metadata),
            ),
        )
    return _output(run, name, inv, record.output_object_id)


def _override(
    run: context.FlowRun, cp: Checkpoint[..., Any], inv: str, seq: int, value: Any
) -> CheckpointOutput:
    from kitaru_store import CheckpointRecord

    stamp = now()
    with run.repo.writer() as w:
        stored = w.put_value(value)
        w.replace_entry(
            run.exec_id,
            new_entry(
                stored,
                name=inv,
                kind="checkpoint_output",
                artifact_type=cp.type,
                created_at=stamp,
                checkpoint=cp.name,
                invocation_id=inv,
                metadata={"overridden": True},
            ),
        )
        w.set_checkpoint(
            run.exec_id,
            CheckpointRecord(
                invocation_id=inv,
                name=cp.name,
                status="overridden",
                started_at=stamp,
                ended_at=stamp,
                output_object_id=stored.object_id,
                seq=seq,
            ),
        )
    return _output(run, cp.name, inv, stored.object_id, value)


def _planned(run: context.FlowRun, cp: Checkpoint[..., Any], inv: str, seq: int) -> CheckpointOutput | None:
    """The output this call takes from an override or a recorded call, if any (caller's thread)."""
    plan = run.plan
    if plan is None:
        return None
    injected = plan.override_for(inv, cp.name)
    if injected is not _UNSET:
        return _override(run, cp, inv, seq, injected)
    record = plan.decide(inv, cp.name, seq)
    if record is None:
        return None
    return reuse_record(
        run,
        name=cp.name,
        inv=inv,
        seq=seq,
        record=record,
        source_exec=plan.source.exec_id,
        status="reused",
    )


# --- caching ---------------------------------------------------------------------------------


def _cache_enabled(run: context.FlowRun, cp: Checkpoint[..., Any]) -> bool:
    if run.cache_forced is not None:
        return run.cache_forced
    return cp.cache if cp.cache is not None else run.cache


def _cache_key(cp: Checkpoint[..., Any], args: Any, kwargs: Any) -> bytes | None:
    from kitaru_store import hashing
    from kitaru_store.errors import SerializationError
    from kitaru_store.serialization import serialize

    inputs: Any = {"args": list(args), "kwargs": kwargs}
    try:  # f(1), f(x=1) and f(1, y=<default>) are the same call
        sig = inspect.signature(cp.fn)
        bound = sig.bind(*args, **kwargs)
        bound.apply_defaults()
        inputs = [
            [k, sorted(v.items()) if sig.parameters[k].kind is inspect.Parameter.VAR_KEYWORD else v]
            for k, v in bound.arguments.items()
        ]
    except (TypeError, ValueError):
        pass  # no signature, or arguments that do not fit (the call itself will say so)
    try:
        data, _ = serialize(inputs)
    except SerializationError:
        return None  # inputs that are not data cannot be compared: no caching
    h = hashing.StreamHasher()
    h.update(b"kitaru-checkpoint-cache-2\x00" + cp.name.encode() + b"\x00")
    h.update(code_fingerprint(cp.fn))
    h.update(data)
    return h.digest()


def code_fingerprint(fn: Any) -> bytes:
    """A digest of a function's bytecode and constants (nested functions included)."""
    from kitaru_store import hashing

    h = hashing.StreamHasher()
    code = getattr(fn, "__code__", None)

    def feed(c: Any) -> None:
        h.update(c.co_code)
        h.update(repr(c.co_names).encode())
        for const in c.co_consts:
            if hasattr(const, "co_code"):
                feed(const)
            elif isinstance(const, frozenset):
                h.update(repr(sorted(map(repr, const))).encode())
            else:
                h.update(repr(const).encode())

    if code is None:
        h.update(repr(fn).encode())
    else:
        feed(code)
    return h.digest()


def _cached(
    run: context.FlowRun,
    cp: Checkpoint[..., Any],
    inv: str,
    seq: int,
    key: bytes,
    lineage: tuple[tuple[str, ...], tuple[str, ...]],
) -> CheckpointOutput | None:
    """The output of the cached call, recorded with this call's own ``(inputs, upstream)``."""
    import msgspec

    from kitaru_store.errors import ExecutionNotFoundError, ObjectNotFoundError

    hit = run.repo.cache.get(key)
    if hit is None:
        return None
    try:
        source = run.repo.get_execution(hit.exec_id)
        record = next(c for c in source.checkpoints if c.invocation_id == hit.invocation_id)
        if record.output_object_id != hit.object_id:
            raise StopIteration
        record = msgspec.structs.replace(record, inputs=lineage[0], upstream=lineage[1])
        return reuse_record(
            run, name=cp.name, inv=inv, seq=seq, record=record, source_exec=hit.exec_id, status="cached"
        )
    except (ExecutionNotFoundError, ObjectNotFoundError, StopIteration):
        run.repo.cache.delete(key)  # the cached execution or its objects are gone
        return None


# --- running ---------------------------------------------------------------------------------


def _execute(
    run: context.FlowRun,
    cp: Checkpoint[..., Any],
    inv: str,
    seq: int,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> CheckpointOutput:
    from kitaru_store import CheckpointRecord
    from kitaru_store.manifests import Attempt, CacheRecord

    check_cancel(run)  # a boundary: before the call starts (on whichever thread runs it)
    upstream: list[str] = []
    inputs: list[str] = []
    call_args = unwrap(args, upstream, inputs)
    call_kwargs = unwrap(kwargs, upstream, inputs)
    key = _cache_key(cp, call_args, call_kwargs) if _cache_enabled(run, cp) else None
    if key is not None:
        hit = _cached(run, cp, inv, seq, key, (tuple(dict.fromkeys(inputs)), tuple(upstream)))
        if hit is not None:
            return hit
    started = now()
    attempts: list[Attempt] = []
    repo = run.repo

    def record(status: str, loaded: list[str], **extra: Any) -> CheckpointRecord:
        return CheckpointRecord(
            invocation_id=inv,
            name=cp.name,
            status=status,
            started_at=started,
            ended_at=now() if status != "running" else None,
            inputs=tuple(dict.fromkeys([*inputs, *loaded])),  # handed-over values and kitaru.load reads
            upstream=tuple(upstream),
            attempts=tuple(attempts),
            seq=seq,
            **extra,
        )

    for attempt in range(cp.retries + 1):
        last = attempt == cp.retries
        attempt_started = now()
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
            failure = failure_of(exc, checkpoint=inv)
            attempts.append(Attempt(started_at=attempt_started, ended_at=now(), failure=failure))
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
        attempts.append(Attempt(started_at=attempt_started, ended_at=now()))
        lineage = tuple(dict.fromkeys([*inputs, *cp_run.loaded]))
        writer.replace_entry(
            run.exec_id,
            new_entry(
                stored,
                name=inv,
                kind="checkpoint_output",
                artifact_type=cp.type,
                created_at=now(),
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
        if key is not None:
            repo.cache.put(
                key,
                CacheRecord(
                    object_id=stored.object_id, exec_id=run.exec_id, invocation_id=inv, created_at=now()
                ),
            )
        check_cancel(run)  # a boundary: the call has committed
        return _output(run, cp.name, inv, stored.object_id, value)
    raise AssertionError("unreachable")  # pragma: no cover


def call_checkpoint(
    cp: Checkpoint[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    *,
    invocation_id: str | None = None,
) -> CheckpointOutput:
    run = _require_flow(cp)
    check_cancel(run)
    inv = run.next_invocation_id(cp.name, invocation_id or cp.fixed_id)
    seq = run.next_seq()
    planned = _planned(run, cp, inv, seq)
    if planned is not None:
        return planned
    return _execute(run, cp, inv, seq, args, kwargs)


def submit_checkpoint(
    cp: Checkpoint[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    *,
    invocation_id: str | None = None,
) -> CheckpointFuture:
    """Start a checkpoint call on the flow's thread pool. Ids and reuse are decided here, in call order."""
    run = _require_flow(cp)
    check_cancel(run)
    inv = run.next_invocation_id(cp.name, invocation_id or cp.fixed_id)
    seq = run.next_seq()
    future: Future[CheckpointOutput] = Future()
    planned = _planned(run, cp, inv, seq)
    if planned is not None:
        future.set_result(planned)
        return CheckpointFuture(future, cp.name, inv)
    args = _resolve_futures(args)
    kwargs = _resolve_futures(kwargs)
    with run.lock:
        if run.executor is None:
            run.executor = ThreadPoolExecutor(
                max_workers=MAX_WORKERS, thread_name_prefix=f"kitaru-{run.flow_name}"
            )
        executor = run.executor
    ctx = contextvars.copy_context()
    inner = executor.submit(ctx.run, _execute, run, cp, inv, seq, args, kwargs)
    handle = CheckpointFuture(inner, cp.name, inv)
    run.futures.append(handle)
    return handle


def map_checkpoint(cp: Checkpoint[..., Any], iterables: tuple[Iterable[Any], ...]) -> list[CheckpointOutput]:
    """Call the checkpoint once per item (zip of the iterables), concurrently; outputs in order."""
    futures = [submit_checkpoint(cp, tuple(items), {}) for items in zip(*iterables, strict=False)]
    return [f.result() for f in futures]


def drain(run: context.FlowRun) -> BaseException | None:
    """Wait for every submitted call; the first failure nobody looked at, if any."""
    unobserved: BaseException | None = None
    for handle in list(run.futures):
        fut = handle._future
        exc = fut.exception()
        if exc is not None and not handle._observed and unobserved is None:
            unobserved = exc
    if run.executor is not None:
        run.executor.shutdown(wait=True)
        run.executor = None
    return unobserved
