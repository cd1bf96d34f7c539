"""Every error path: a KitaruError of the right class, with the ids it concerns and a hint."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import kitaru
from kitaru import (
    AmbiguousIdError,
    AmbiguousNameError,
    ArtifactNotFoundError,
    DuplicateNameError,
    ExecutionNotFinishedError,
    ExecutionNotFoundError,
    FlowExecutionError,
    FlowHandle,
    InvalidArtifactTypeError,
    InvalidNameError,
    KitaruClient,
    KitaruContextError,
    KitaruError,
    KitaruUsageError,
    PickleNotAllowedError,
    SerializationError,
    StoreNotFoundError,
    checkpoint,
    flow,
)
from kitaru_store import Repository
from kitaru_store.errors import InvalidIdError


@checkpoint
def produce() -> str:
    kitaru.save("saved", 1)
    kitaru.save("produce", "clashes with the checkpoint's own name")
    return "out"


@flow
def source() -> Any:
    return produce()


@flow
def nested_outer() -> Any:
    return source.run()


def in_flow(body: Callable[[], Any]) -> Callable[[Any], Any]:
    """A scenario that runs ``body`` as a flow and raises the error that failed it."""

    def run(_: Any) -> Any:
        handle = flow(body, name="scenario").run()
        try:
            return handle.wait()
        except FlowExecutionError as err:
            assert err.__cause__ is not None
            raise err.__cause__ from None

    return run


def in_checkpoint(body: Callable[[], Any]) -> Callable[[Any], Any]:
    return in_flow(lambda: checkpoint(body, name="scenario_cp")())


def load_from_source(name: str) -> Callable[[Any], Any]:
    def run(ctx: Any) -> Any:
        return in_checkpoint(lambda: kitaru.load(ctx.source_id, name))(ctx)

    return run


@dataclass
class Ctx:
    source_id: str
    repo: Repository
    tmp: Path


@dataclass
class Case:
    raise_it: Callable[[Ctx], Any]
    error: type[KitaruError]
    exec_id: str | None = None  # "source", "run" (the failing execution) or None (not checked)
    name: str | None = None


def _flow_called_directly(_: Ctx) -> Any:
    return source()


def _unfinished(ctx: Ctx) -> Any:
    exec_id = ctx.repo.create_execution("pending")
    return FlowHandle(repo=ctx.repo, exec_id=exec_id, flow_name="pending", status="running").get()


def _failed_flow(_: Ctx) -> Any:
    return flow(lambda: 1 / 0, name="divides").run().wait()


def _handle_misuse(_: Ctx) -> Any:
    return in_flow(lambda: len(produce()))(_)


CASES: dict[str, Case] = {
    "flow called directly": Case(_flow_called_directly, KitaruUsageError, name="source"),
    "flow of a non-callable": Case(lambda _: flow(1), KitaruUsageError),  # type: ignore[call-overload]
    "async flow": Case(lambda _: flow(_async_fn), KitaruUsageError),
    "async checkpoint": Case(lambda _: checkpoint(_async_fn), KitaruUsageError),
    "bad retries": Case(lambda _: checkpoint(retries=-1)(lambda: 1), KitaruUsageError),
    "bad checkpoint type": Case(lambda _: checkpoint(type="img")(lambda: 1), InvalidArtifactTypeError),
    "bad flow name": Case(lambda _: flow(name="a/b")(lambda: 1), InvalidNameError, name="a/b"),
    "flow inside a flow": Case(in_flow(lambda: source.run()), KitaruContextError, "run", "source"),
    "checkpoint outside a flow": Case(lambda _: produce(), KitaruContextError, name="produce"),
    "checkpoint inside a checkpoint": Case(
        in_checkpoint(lambda: produce()), KitaruContextError, "run", "produce"
    ),
    "save outside any flow": Case(lambda _: kitaru.save("x", 1), KitaruContextError),
    "save in a flow body": Case(in_flow(lambda: kitaru.save("x", 1)), KitaruContextError, "run"),
    "load outside any flow": Case(lambda ctx: kitaru.load(ctx.source_id, "saved"), KitaruContextError),
    "load in a flow body": Case(in_flow(lambda: kitaru.load("abcd", "x")), KitaruContextError, "run"),
    "save with a bad type": Case(
        in_checkpoint(lambda: kitaru.save("x", 1, type="image")), InvalidArtifactTypeError
    ),
    "save with a bad name": Case(
        in_checkpoint(lambda: kitaru.save("a/b", 1)), InvalidNameError, "run", "a/b"
    ),
    "save twice": Case(
        in_checkpoint(lambda: (kitaru.save("d", 1), kitaru.save("d", 2))), DuplicateNameError, "run", "d"
    ),
    "duplicate invocation id": Case(
        in_flow(lambda: (produce(id="same"), produce(id="same"))), DuplicateNameError, "run", "same"
    ),
    "save bad metadata": Case(
        in_checkpoint(lambda: kitaru.save("m", 1, metadata={"o": object()})), SerializationError, "run", "m"
    ),
    "save a value that needs pickle": Case(
        in_checkpoint(lambda: kitaru.save("p", object())), PickleNotAllowedError
    ),
    "checkpoint returns a value that needs pickle": Case(
        in_checkpoint(lambda: object()), PickleNotAllowedError
    ),
    "handle used as a value": Case(_handle_misuse, KitaruUsageError, "run", "produce"),
    "load a missing name": Case(load_from_source("nope"), ArtifactNotFoundError, "source", "nope"),
    "load an ambiguous name": Case(load_from_source("produce"), AmbiguousNameError, "source", "produce"),
    "load from a missing execution": Case(
        in_checkpoint(lambda: kitaru.load("ffffffff", "x")), ExecutionNotFoundError, name=None
    ),
    "load with a malformed execution id": Case(in_checkpoint(lambda: kitaru.load("zz", "x")), InvalidIdError),
    "wait on a failed flow": Case(_failed_flow, FlowExecutionError, name="divides"),
    "get on an unfinished execution": Case(_unfinished, ExecutionNotFinishedError, name="pending"),
    "client: unknown status": Case(lambda _: KitaruClient().executions.list(status="ok"), KitaruUsageError),
    "client: unknown execution": Case(
        lambda _: KitaruClient().executions.get("eeeeeeee"), ExecutionNotFoundError
    ),
    "client: unknown artifact type": Case(
        lambda ctx: KitaruClient().artifacts.list(ctx.source_id, type="x"), InvalidArtifactTypeError
    ),
    "client: unknown artifact id": Case(lambda _: KitaruClient().artifacts.get("eeeeeeee"), KitaruError),
    "client: missing store": Case(
        lambda ctx: KitaruClient(store=ctx.tmp / "missing").executions.list(), StoreNotFoundError
    ),
}


async def _async_fn() -> None:
    return None


@pytest.fixture
def ctx(repo: Repository, tmp_path: Path) -> Ctx:
    return Ctx(source_id=source.run().exec_id, repo=repo, tmp=tmp_path)


@pytest.mark.parametrize("case", list(CASES.values()), ids=list(CASES))
def test_error_class_ids_and_hint(case: Case, ctx: Ctx) -> None:
    before = {s.exec_id for s in KitaruClient().executions.list(limit=1000)}
    with pytest.raises(KitaruError) as info:
        case.raise_it(ctx)
    err = info.value
    assert isinstance(err, case.error), f"{type(err).__name__}: {err}"
    # The message says what to do: every error carries a hint, shown in str(err).
    assert err.hint, f"{type(err).__name__} without a hint: {err.message}"
    assert err.hint in str(err)
    assert err.message and err.message != err.hint
    if case.exec_id == "source":
        assert err.exec_id == ctx.source_id
    elif case.exec_id == "run":
        new = {s.exec_id for s in KitaruClient().executions.list(limit=1000)} - before
        assert err.exec_id in new, (err.exec_id, new)
    if case.name is not None:
        assert err.name == case.name
    assert err.to_dict()["error"] == type(err).__name__


def test_ambiguous_execution_prefix(repo: Repository) -> None:
    repo.create_execution("a", exec_id="abcd" + "0" * 28)
    repo.create_execution("b", exec_id="abcd" + "1" * 28)
    with pytest.raises(AmbiguousIdError) as info:
        KitaruClient().executions.get("abcd")
    assert info.value.hint and "more characters" in info.value.hint


def test_store_errors_reaching_the_sdk_carry_a_hint() -> None:
    """Errors kitaru_store raises on the SDK's behalf must say what to do as well (see the report)."""
    source.run()
    found: dict[str, KitaruError] = {}

    def grab(label: str, fn: Callable[[], Any]) -> None:
        try:
            fn()
        except KitaruError as exc:
            found[label] = exc

    grab("save(42, ...)", lambda: in_checkpoint(lambda: kitaru.save(42, 1))(None))  # type: ignore[arg-type]
    grab("save(tags=[1])", lambda: in_checkpoint(lambda: kitaru.save("t", 1, tags=[1]))(None))  # type: ignore[list-item]
    grab("executions.get('0'*40)", lambda: KitaruClient().executions.get("0" * 40))
    grab("executions.get(123)", lambda: KitaruClient().executions.get(123))  # type: ignore[arg-type]
    assert len(found) == 4, found
    missing = {label: f"{type(e).__name__}: {e.message}" for label, e in found.items() if not e.hint}
    assert not missing, f"kitaru_store errors without a hint: {missing}"
