"""The public API surface and kitaru.current_execution_id()."""

from __future__ import annotations

import contextvars
import threading
from typing import Any

import pytest

import kitaru
from kitaru import checkpoint, flow

EXPECTED_ALL = [
    "AmbiguousIdError",
    "AmbiguousNameError",
    "ArtifactNotFoundError",
    "ArtifactRef",
    "ArtifactType",
    "Checkpoint",
    "CheckpointCall",
    "CheckpointFuture",
    "CheckpointOutput",
    "CorruptObjectError",
    "DivergenceError",
    "DuplicateNameError",
    "Execution",
    "ExecutionNotFinishedError",
    "ExecutionNotFoundError",
    "ExecutionStateError",
    "ExecutionWaitingError",
    "Flow",
    "FlowExecutionError",
    "FlowHandle",
    "FlowNotFoundError",
    "InputValidationError",
    "InvalidArtifactTypeError",
    "InvalidNameError",
    "KitaruClient",
    "KitaruContextError",
    "KitaruError",
    "KitaruUsageError",
    "LLMConfigError",
    "LLMError",
    "MemoryKeyNotFoundError",
    "MemoryRedactedError",
    "PendingWait",
    "PickleNotAllowedError",
    "SerializationError",
    "StoreError",
    "StoreNotFoundError",
    "WaitAbortedError",
    "WaitInfo",
    "WaitNotFoundError",
    "checkpoint",
    "current_execution_id",
    "flow",
    "llm",
    "load",
    "log",
    "memory",
    "register_type",
    "save",
    "wait",
]


def test_public_api_is_pinned() -> None:
    assert kitaru.__all__ == EXPECTED_ALL
    for name in EXPECTED_ALL:  # every listed name resolves, the lazily loaded ones included
        assert getattr(kitaru, name) is not None
    assert sorted(kitaru.__all__) == kitaru.__all__
    for name in EXPECTED_ALL:
        assert hasattr(kitaru, name), name


def test_every_public_error_is_a_kitaru_error() -> None:
    errors = [getattr(kitaru, n) for n in EXPECTED_ALL if n.endswith("Error")]
    assert len(errors) == 28
    for cls in errors:
        assert issubclass(cls, kitaru.KitaruError), cls
    assert issubclass(kitaru.PickleNotAllowedError, kitaru.SerializationError)
    assert issubclass(kitaru.StoreNotFoundError, kitaru.StoreError)
    assert issubclass(kitaru.ExecutionWaitingError, kitaru.ExecutionNotFinishedError)


def test_errors_are_shared_with_the_store() -> None:
    import kitaru_store.errors as store_errors

    assert kitaru.KitaruError is store_errors.KitaruError
    assert kitaru.ArtifactNotFoundError is store_errors.ArtifactNotFoundError


def test_version() -> None:
    assert kitaru.__version__ == "0.1.0"


# --- current_execution_id -----------------------------------------------------------------


@checkpoint
def report_id() -> Any:
    return kitaru.current_execution_id()


def test_current_execution_id_outside_any_flow_is_none() -> None:
    assert kitaru.current_execution_id() is None


def test_current_execution_id_in_the_flow_body_and_in_checkpoints() -> None:
    seen: dict[str, Any] = {}

    @flow
    def f() -> Any:
        seen["body"] = kitaru.current_execution_id()
        seen["checkpoint"] = report_id().load()
        return seen["body"]

    handle = f.run()
    assert handle.wait() == handle.exec_id
    assert seen == {"body": handle.exec_id, "checkpoint": handle.exec_id}
    assert kitaru.current_execution_id() is None  # reset after the run


def test_current_execution_id_is_reset_after_a_failed_flow() -> None:
    @flow
    def fails() -> None:
        raise RuntimeError("x")

    fails.run()
    assert kitaru.current_execution_id() is None


def test_each_run_sees_its_own_id() -> None:
    @flow
    def f() -> Any:
        return kitaru.current_execution_id()

    first, second = f.run(), f.run()
    assert first.wait() == first.exec_id
    assert second.wait() == second.exec_id


def test_current_execution_id_follows_copied_contexts_into_threads() -> None:
    @flow
    def f() -> Any:
        out: dict[str, Any] = {}
        ctx = contextvars.copy_context()
        copied = threading.Thread(
            target=lambda: out.__setitem__("copied", ctx.run(kitaru.current_execution_id))
        )
        plain = threading.Thread(target=lambda: out.__setitem__("plain", kitaru.current_execution_id()))
        for t in (copied, plain):
            t.start()
            t.join()
        return out

    handle = f.run()
    assert handle.wait() == {"copied": handle.exec_id, "plain": None}


@pytest.mark.parametrize(
    "name", ["save", "load", "current_execution_id", "flow", "checkpoint", "register_type"]
)
def test_entry_points_have_docstrings(name: str) -> None:
    assert (getattr(kitaru, name).__doc__ or "").strip()
