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
    "CorruptionError",
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
    "NotFoundError",
    "PendingWait",
    "PickleNotAllowedError",
    "SerializationError",
    "StateError",
    "StoreError",
    "StoreNotFoundError",
    "UsageError",
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
    assert len(errors) == 32
    for cls in errors:
        assert issubclass(cls, kitaru.KitaruError), cls
    assert issubclass(kitaru.PickleNotAllowedError, kitaru.SerializationError)
    assert issubclass(kitaru.StoreNotFoundError, kitaru.StoreError)
    assert issubclass(kitaru.ExecutionWaitingError, kitaru.ExecutionNotFinishedError)


def test_errors_are_shared_with_the_store() -> None:
    import kitaru_store.errors as store_errors

    assert kitaru.KitaruError is store_errors.KitaruError
    assert kitaru.ArtifactNotFoundError is store_errors.ArtifactNotFoundError


FAMILIES = (kitaru.NotFoundError, kitaru.CorruptionError, kitaru.StateError, kitaru.UsageError)

# Errors directly under KitaruError (or a domain base) by design, in no family: the environment
# or a backend failed (StoreError, RemoteError, LLMError), the flow's own code failed
# (FlowExecutionError), or a value is refused either way (SerializationError: not storable, or
# nested too deep to store or print).
NO_FAMILY = {
    "kitaru_store.errors.KitaruError",
    "kitaru_store.errors.StoreError",
    "kitaru_store.errors.StoreFormatError",
    "kitaru_store.errors.StoreFullError",
    "kitaru_store.errors.ReadOnlyStoreError",
    "kitaru_store.errors.LockFileReplacedError",
    "kitaru_store.errors.SerializationError",
    "kitaru_store.errors.NestingTooDeepError",
    "kitaru_store.remote.errors.RemoteError",
    "kitaru_store.remote.errors.RemoteAuthError",
    "kitaru_store.remote.errors.RemotePullError",
    "kitaru.errors.FlowExecutionError",
    "kitaru.llm_providers.LLMError",
}


def _error_classes() -> list[type[kitaru.KitaruError]]:
    import importlib
    import pkgutil

    import kitaru_store

    for package in (kitaru, kitaru_store):  # import every module, so every error class is defined
        for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
            if not info.name.endswith("__main__"):
                importlib.import_module(info.name)
    found: list[type[kitaru.KitaruError]] = []
    todo: list[type[kitaru.KitaruError]] = [kitaru.KitaruError]
    while todo:
        cls = todo.pop()
        if cls not in found and cls.__module__.split(".")[0] in ("kitaru", "kitaru_store"):
            found.append(cls)
            todo.extend(cls.__subclasses__())
    return found


def test_every_error_is_in_exactly_one_family_or_in_none_by_design() -> None:
    classes = _error_classes()
    assert len(classes) >= 50
    for family in FAMILIES:
        assert family.__bases__ == (kitaru.KitaruError,)
    seen_without = set()
    for cls in classes:
        if cls in FAMILIES:
            continue
        families = [f.__name__ for f in FAMILIES if issubclass(cls, f)]
        qualname = f"{cls.__module__}.{cls.__name__}"
        if qualname in NO_FAMILY:
            assert families == [], qualname
            seen_without.add(qualname)
        else:
            assert len(families) == 1, (qualname, families)
    assert seen_without == NO_FAMILY  # the list names only classes that exist


def test_families_keep_the_existing_bases() -> None:
    import kitaru_store
    from kitaru_store.memory import CorruptMemoryKeyError
    from kitaru_store.remote.errors import RemoteNotFoundError

    assert issubclass(kitaru.ExecutionWaitingError, kitaru.ExecutionNotFinishedError)
    assert issubclass(kitaru.ExecutionWaitingError, kitaru.StateError)
    assert issubclass(kitaru_store.StoreNotFoundError, kitaru.StoreError)
    assert issubclass(kitaru_store.StoreNotFoundError, kitaru.NotFoundError)
    assert issubclass(kitaru_store.CorruptValueError, kitaru.SerializationError)
    assert issubclass(kitaru_store.CorruptRecordError, ValueError)
    assert issubclass(CorruptMemoryKeyError, ValueError)
    assert issubclass(CorruptMemoryKeyError, kitaru.CorruptionError)
    assert issubclass(RemoteNotFoundError, kitaru.NotFoundError)
    assert issubclass(kitaru_store.IncompleteObjectError, kitaru_store.ObjectNotFoundError)


def test_formerly_bare_errors_raise_their_family_through_the_public_api() -> None:
    kitaru.memory.set("k", 1, namespace="ns")
    with pytest.raises(kitaru.UsageError, match="a redaction needs a reason"):
        kitaru.memory.redact("k", 1, reason="", namespace="ns")
    with pytest.raises(kitaru.UsageError, match="is not a version number"):
        kitaru.memory.redact("k", 0, reason="gdpr", namespace="ns")
    kitaru.memory.delete("k", namespace="ns")
    with pytest.raises(kitaru.StateError, match="is a deletion") as deletion:
        kitaru.memory.redact("k", 2, reason="gdpr", namespace="ns")
    assert deletion.value.name == "k" and deletion.value.hint
    with pytest.raises(kitaru.UsageError, match="unknown memory scope") as scope:
        kitaru.memory.get("k", scope="planet")
    assert scope.value.hint


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
