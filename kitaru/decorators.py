"""``@flow`` and ``@checkpoint``: usable bare or with options, validated when applied."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any, Generic, ParamSpec, TypeVar, overload

from .artifacts import normalize_type
from .errors import KitaruUsageError
from .handles import CheckpointOutput, FlowHandle

P = ParamSpec("P")
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


class Flow(Generic[P, R]):
    """A durable workflow. Start it with ``.run(...)``; calling it directly is a usage error."""

    def __init__(self, fn: Callable[P, R], *, name: str | None = None) -> None:
        _check_callable(fn, "flow")
        self.fn = fn
        self.name = _check_name(_name_of(fn, name, "flow"), "flow name")
        functools.update_wrapper(self, fn)

    def run(self, *args: P.args, **kwargs: P.kwargs) -> FlowHandle:
        """Execute the flow in this process on the configured store; returns its handle."""
        from .runtime import run_flow

        return run_flow(self, args, kwargs)

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
        try:
            self._takes_id = "id" in inspect.signature(fn).parameters
        except (TypeError, ValueError):  # no introspectable signature (some builtins)
            self._takes_id = False
        functools.update_wrapper(self, fn)

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> CheckpointOutput:
        from .runtime import call_checkpoint

        explicit = None
        if not self._takes_id and "id" in kwargs:
            explicit = _check_name(kwargs.pop("id"), "checkpoint id")
        return call_checkpoint(self, args, kwargs, invocation_id=explicit)

    def with_id(self, invocation_id: str) -> Callable[P, CheckpointOutput]:
        """This checkpoint, called under an explicit invocation id."""
        from .runtime import call_checkpoint

        explicit = _check_name(invocation_id, "checkpoint id")

        def call(*args: P.args, **kwargs: P.kwargs) -> CheckpointOutput:
            return call_checkpoint(self, args, kwargs, invocation_id=explicit)

        return call

    def __repr__(self) -> str:
        return f"<kitaru checkpoint {self.name}>"


@overload
def flow(fn: Callable[P, R], /) -> Flow[P, R]: ...
@overload
def flow(*, name: str | None = None) -> Callable[[Callable[P, R]], Flow[P, R]]: ...
def flow(fn: Any = None, /, *, name: str | None = None) -> Any:
    """Mark the durable boundary of a workflow. ``@flow`` or ``@flow(name="...")``."""
    if fn is not None:
        return Flow(fn, name=name)
    return lambda f: Flow(f, name=name)


@overload
def checkpoint(fn: Callable[P, R], /) -> Checkpoint[P, R]: ...
@overload
def checkpoint(
    *, name: str | None = None, retries: int = 0, type: str = "output", id: str | None = None
) -> Callable[[Callable[P, R]], Checkpoint[P, R]]: ...
def checkpoint(
    fn: Any = None,
    /,
    *,
    name: str | None = None,
    retries: int = 0,
    type: str = "output",
    id: str | None = None,
) -> Any:
    """Mark a unit of work whose output is persisted. ``@checkpoint`` or ``@checkpoint(retries=2)``."""
    if fn is not None:
        return Checkpoint(fn, name=name, retries=retries, type=type, id=id)
    return lambda f: Checkpoint(f, name=name, retries=retries, type=type, id=id)
