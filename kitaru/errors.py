"""kitaru's errors: the store's hierarchy, re-exported, plus the SDK's own. One base: KitaruError."""

from __future__ import annotations

from typing import Any

from kitaru_store.errors import (
    AmbiguousIdError,
    AmbiguousNameError,
    ArtifactNotFoundError,
    CorruptObjectError,
    DuplicateNameError,
    ExecutionNotFoundError,
    InvalidArtifactTypeError,
    InvalidIdError,
    InvalidNameError,
    KitaruError,
    NotAStoreError,
    ObjectNotFoundError,
    PickleNotAllowedError,
    ReadOnlyStoreError,
    SerializationError,
    StoreError,
    StoreFormatError,
    StoreFullError,
    StoreLockedError,
    StoreNotFoundError,
)


class KitaruContextError(KitaruError):
    """An API was called where it cannot work (save() outside a checkpoint, a checkpoint outside a flow)."""


class KitaruUsageError(KitaruError):
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


class ExecutionNotFinishedError(KitaruError):
    """The execution has not finished (it is running or waiting), so it has no result yet."""


__all__ = [
    "AmbiguousIdError",
    "AmbiguousNameError",
    "ArtifactNotFoundError",
    "CorruptObjectError",
    "DuplicateNameError",
    "ExecutionNotFinishedError",
    "ExecutionNotFoundError",
    "FlowExecutionError",
    "InvalidArtifactTypeError",
    "InvalidIdError",
    "InvalidNameError",
    "KitaruContextError",
    "KitaruError",
    "KitaruUsageError",
    "NotAStoreError",
    "ObjectNotFoundError",
    "PickleNotAllowedError",
    "ReadOnlyStoreError",
    "SerializationError",
    "StoreError",
    "StoreFormatError",
    "StoreFullError",
    "StoreLockedError",
    "StoreNotFoundError",
]
