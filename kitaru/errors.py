"""kitaru's errors: the store's hierarchy, re-exported, plus the SDK's own. One base: KitaruError."""

from __future__ import annotations

from typing import Any

from kitaru_store.errors import (
    AmbiguousIdError,
    AmbiguousNameError,
    ArtifactNotFoundError,
    CorruptionError,
    CorruptObjectError,
    DuplicateNameError,
    ExecutionNotFoundError,
    InvalidArtifactTypeError,
    InvalidIdError,
    InvalidNameError,
    KitaruError,
    NotAStoreError,
    NotFoundError,
    ObjectNotFoundError,
    PickleNotAllowedError,
    ReadOnlyStoreError,
    SerializationError,
    StateError,
    StoreError,
    StoreFormatError,
    StoreFullError,
    StoreLockedError,
    StoreNotFoundError,
    UsageError,
)


class KitaruContextError(UsageError):
    """An API was called where it cannot work (save() outside a checkpoint, a checkpoint outside a flow)."""


class KitaruUsageError(UsageError):
    """The API was used the wrong way (a flow called directly, a bad option, a handle used as a value)."""


class FlowExecutionError(KitaruError):
    """The flow failed: ``failure`` has the recorded type, message and traceback; ``__cause__`` the error."""

    def __init__(self, message: str, *, exec_id: str, name: str, failure: Any = None) -> None:
        super().__init__(
            message,
            exec_id=exec_id,
            name=name,
            hint=f"inspect it with `kitaru-store show {exec_id[:12]}` or KitaruClient().executions.get(...)",
        )
        self.failure = failure


class ExecutionNotFinishedError(StateError):
    """The execution has not finished (it is running or waiting), so it has no result yet."""


class ExecutionStateError(StateError):
    """The execution is in the wrong state for the request (say, resuming a completed one)."""


class DivergenceError(StateError):
    """A replay or resume called checkpoints in another order than the execution it reuses.

    ``position`` is the index of the first call that differs; ``expected`` and ``got`` are
    (invocation id, checkpoint name) pairs; ``recorded`` is the recorded sequence.
    """

    def __init__(
        self,
        message: str,
        *,
        exec_id: str | None,
        name: str | None,
        position: int,
        expected: tuple[str, str] | None,
        got: tuple[str, str] | None,
        recorded: list[tuple[str, str]],
    ) -> None:
        shown = " -> ".join(inv for inv, _ in recorded[: position + 3]) or "(nothing)"
        super().__init__(
            f"{message} at call #{position + 1}: recorded {expected[0] if expected else 'nothing'},"
            f" this run called {got[0] if got else 'nothing'} (recorded sequence: {shown})",
            exec_id=exec_id,
            name=name,
            hint="the flow's code changed before the replay point: replay from an earlier checkpoint"
            " (from_=...), or start a fresh run",
        )
        self.position = position
        self.expected = expected
        self.got = got
        self.recorded = recorded


class FlowNotFoundError(NotFoundError):
    """The flow of a stored execution cannot be found in this process (needed to replay or resume it)."""


class WaitNotFoundError(NotFoundError):
    """No wait of that name is pending in the execution."""


class WaitAbortedError(StateError):
    """The wait was aborted; the execution failed."""


class InputValidationError(UsageError):
    """An input given to a wait does not match the wait's schema; the message says what is wrong."""


class ExecutionWaitingError(ExecutionNotFinishedError):
    """The execution waits for input: the hint names the commands that answer and resume it."""


__all__ = [
    "AmbiguousIdError",
    "AmbiguousNameError",
    "ArtifactNotFoundError",
    "CorruptObjectError",
    "CorruptionError",
    "DivergenceError",
    "DuplicateNameError",
    "ExecutionNotFinishedError",
    "ExecutionNotFoundError",
    "ExecutionStateError",
    "ExecutionWaitingError",
    "FlowExecutionError",
    "FlowNotFoundError",
    "InputValidationError",
    "InvalidArtifactTypeError",
    "InvalidIdError",
    "InvalidNameError",
    "KitaruContextError",
    "KitaruError",
    "KitaruUsageError",
    "NotAStoreError",
    "NotFoundError",
    "ObjectNotFoundError",
    "PickleNotAllowedError",
    "ReadOnlyStoreError",
    "SerializationError",
    "StateError",
    "StoreError",
    "StoreFormatError",
    "StoreFullError",
    "StoreLockedError",
    "StoreNotFoundError",
    "UsageError",
    "WaitAbortedError",
    "WaitNotFoundError",
]
