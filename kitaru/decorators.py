"""``@flow`` and ``@checkpoint``: usable bare or with options, validated when applied."""

from __future__ import annotations

import copy
import functools
import inspect
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, TypeVar, overload

from .artifacts import normalize_type
from .errors import KitaruUsageError
from .handles import CheckpointOutput, FlowHandle

if TYPE_CHECKING:
    from .calls import CheckpointFuture

P = ParamSpec("P")
RESUMABLE = ("waiting",)  # the statuses resume and retry continue an execution from
RETRYABLE = ("failed", "cancelled")
R = TypeVar("R")


def _check_callable(fn: Any, decorator: str) -> None:
    if not callable(fn):
        raise KitaruUsageError(
            f"@{decorator} must decorate a function, not {type(fn).__name__}",
            hint=f"write @{decorator} directly above a def",
        )
    if inspect.iscoroutinefunction(fn) or inspect.isasyncgenfunction(fn):
        raise KitaruUsageError(
            f"@{decorator} does not support async functions ({getattr(fn, '__qualname__', fn)!r})",
            hint="wrap the async code with asyncio.run() inside a regular function",
        )


def _check_name(name: Any, what: str) -> str:
    from kitaru_store.names import validate_name

    return validate_name(name, what=what)


def _name_of(fn: Any, name: str | None, decorator: str) -> Any:
    """The explicit name if one was given (so that ``name=""`` is an error), else the function's."""
    if name is not None:
        return name
    own = getattr(fn, "__name__", None)
    if own is None:  # functools.partial, callable instances
        raise KitaruUsageError(
            f"@{decorator} cannot take a name from a {type(fn).__name__} object, which has no __name__",
            hint=f'pass one: {decorator}(obj, name="...")',
        )
    return own


def _check_cache(cache: Any) -> bool | None:
    if cache is not None and not isinstance(cache, bool):
        raise KitaruUsageError(f"cache must be True, False or None, not {cache!r}")
    return cache


class Flow(Generic[P, R]):
    """A durable workflow. Start it with ``.run(...)``; calling it directly is a usage error."""

    def __init__(self, fn: Callable[P, R], *, name: str | None = None, cache: bool = False) -> None:
        _check_callable(fn, "flow")
        self.fn = fn
        self.name = _check_name(_name_of(fn, name, "flow"), "flow name")
        self.cache = bool(_check_cache(cache))
        self._run_cache: bool | None = None
        functools.update_wrapper(self, fn)
        from .registry import register

        register(self)

    def options(self, *, cache: bool | None = None) -> Flow[P, R]:
        """This flow with run-level settings: ``my_flow.options(cache=True).run(...)``.

        ``cache`` here overrides every checkpoint's own setting for the run.
        """
        clone: Flow[P, R] = copy.copy(self)
        clone._run_cache = _check_cache(cache)
        return clone

    def run(self, *args: P.args, **kwargs: P.kwargs) -> FlowHandle:
        """Execute the flow in this process on the configured store; returns its handle."""
        from .runtime import run_flow

        return run_flow(self, args, kwargs, cache=self._run_cache)

    def replay(
        self,
        exec_id: str,
        *,
        from_: str | None = None,
        overrides: dict[str, Any] | None = None,
        **flow_inputs: Any,
    ) -> FlowHandle:
        """A new execution reusing ``exec_id``'s checkpoint outputs before ``from_``; the rest re-runs.

        ``from_`` is a checkpoint name or invocation id (None: reuse every completed call).
        ``overrides`` maps checkpoint names or invocation ids to injected output values.
        Keyword arguments replace the recorded flow inputs of the same name.
        """
        from .runtime import replay_flow

        return replay_flow(self, exec_id, from_=from_, overrides=overrides, flow_inputs=flow_inputs)

    def resume(self, exec_id: str) -> FlowHandle:
        """Continue a waiting execution (after its wait got input), reusing its completed calls."""
        from .runtime import continue_flow

        return continue_flow(self, exec_id, allowed=RESUMABLE)

    def retry(self, exec_id: str) -> FlowHandle:
        """Run a failed or cancelled execution again, reusing the checkpoints it completed."""
        from .runtime import continue_flow

        return continue_flow(self, exec_id, allowed=RETRYABLE)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise KitaruUsageError(
            f"flow {self.name!r} was called directly",
            name=self.name,
            hint=f"start it with {self.name}.run(...); the handle's .wait() gives the result",
        )

    def __repr__(self) -> str:
        return f"<kitaru flow {self.name}>"


class Checkpoint(Generic[P, R]):
    """A unit of work whose output is persisted. Call it from a flow body."""

    def __init__(
        self,
        fn: Callable[P, R],
        *,
        name: str | None = None,
        retries: int = 0,
        type: str = "output",
        id: str | None = None,
        cache: bool | None = None,
    ) -> None:
        _check_callable(fn, "checkpoint")
        if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
            raise KitaruUsageError(
                f"retries must be a whole number >= 0, not {retries!r}",
                hint="for example @checkpoint(retries=2)",
            )
        self.fn = fn
        self.name = _check_name(_name_of(fn, name, "checkpoint"), "checkpoint name")
        self.retries = retries
        self.type = normalize_type(type)
        self.fixed_id = _check_name(id, "checkpoint id") if id is not None else None
        self.cache = _check_cache(cache)
        try:
            self._takes_id = "id" in inspect.signature(fn).parameters
        except (TypeError, ValueError):  # no introspectable signature (some builtins)
            self._takes_id = False
        functools.update_wrapper(self, fn)

    def _explicit_id(self, kwargs: dict[str, Any]) -> str | None:
        if not self._takes_id and "id" in kwargs:
            return _check_name(kwargs.pop("id"), "checkpoint id")
        return None

    # Arguments are typed Any on purpose: a checkpoint takes output handles and futures of other
    # checkpoints where its function takes their values (the documented pattern).
    def __call__(self, *args: Any, **kwargs: Any) -> CheckpointOutput:
        from .calls import call_checkpoint

        explicit = self._explicit_id(kwargs)
        return call_checkpoint(self, args, kwargs, invocation_id=explicit)

    def with_id(self, invocation_id: str) -> Callable[..., CheckpointOutput]:
        """This checkpoint, called under an explicit invocation id."""
        from .calls import call_checkpoint

        explicit = _check_name(invocation_id, "checkpoint id")

        def call(*args: Any, **kwargs: Any) -> CheckpointOutput:
            return call_checkpoint(self, args, kwargs, invocation_id=explicit)

        return call

    def submit(self, *args: Any, **kwargs: Any) -> CheckpointFuture:
        """Run this checkpoint on the flow's thread pool; returns a future (pass it on like a handle).

        Invocation ids are given in submission order, so they are the same on every run.
        """
        from .calls import submit_checkpoint

        explicit = self._explicit_id(kwargs)
        return submit_checkpoint(self, args, kwargs, invocation_id=explicit)

    def map(self, *iterables: Iterable[Any]) -> list[CheckpointOutput]:
        """One concurrent call per item (``zip`` of the iterables); the outputs in input order."""
        from .calls import map_checkpoint

        return map_checkpoint(self, iterables)

    def __repr__(self) -> str:
        return f"<kitaru checkpoint {self.name}>"


@overload
def flow(fn: Callable[P, R], /) -> Flow[P, R]: ...
@overload
def flow(*, name: str | None = None, cache: bool = False) -> Callable[[Callable[P, R]], Flow[P, R]]: ...
def flow(fn: Any = None, /, *, name: str | None = None, cache: bool = False) -> Any:
    """Mark the durable boundary of a workflow. ``@flow`` or ``@flow(name="...", cache=True)``."""
    if fn is not None:
        return Flow(fn, name=name, cache=cache)
    return lambda f: Flow(f, name=name, cache=cache)


@overload
def checkpoint(fn: Callable[P, R], /) -> Checkpoint[P, R]: ...
@overload
def checkpoint(
    *,
    name: str | None = None,
    retries: int = 0,
    type: str = "output",
    id: str | None = None,
    cache: bool | None = None,
) -> Callable[[Callable[P, R]], Checkpoint[P, R]]: ...
def checkpoint(
    fn: Any = None,
    /,
    *,
    name: str | None = None,
    retries: int = 0,
    type: str = "output",
    id: str | None = None,
    cache: bool | None = None,
) -> Any:
    """Mark a unit of work whose output is persisted. ``@checkpoint`` or ``@checkpoint(retries=2)``.

    ``cache=True`` reuses the output of an earlier completed call with the same code and inputs
    (None: the flow's setting decides).
    """
    if fn is not None:
        return Checkpoint(fn, name=name, retries=retries, type=type, id=id, cache=cache)
    return lambda f: Checkpoint(f, name=name, retries=retries, type=type, id=id, cache=cache)
