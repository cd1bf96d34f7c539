"""Nesting depth: bounded when written (a typed error), and reading never depends on the caller's stack.

Values (the ``m`` serializer) and manifest metadata nest at most ``nesting.MAX_DEPTH`` levels.
A stored tree is read at any depth of the caller's stack, or refused with a typed error; never a
bare RecursionError.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
from collections.abc import Callable
from typing import Any

import msgspec
import pytest
from click.testing import CliRunner

import kitaru
from kitaru import KitaruClient
from kitaru_store import Repository, nesting
from kitaru_store import manifests as mf
from kitaru_store import serialization as ser
from kitaru_store.cli import cli
from kitaru_store.errors import CorruptManifestError, NestingTooDeepError

LIMIT = nesting.MAX_DEPTH


def nested(levels: int, leaf: Any = 1, *, wrap: Callable[[Any], Any] = lambda x: {"a": x}) -> Any:
    tree = leaf
    for _ in range(levels):
        tree = wrap(tree)
    return tree


def at_stack_depth(spare: int, fn: Callable[[], Any]) -> Any:
    """``fn()`` called with only ``spare`` frames left before the recursion limit."""

    def down(n: int) -> Any:
        return down(n - 1) if n > 0 else fn()

    here = len(_frames())
    return down(sys.getrecursionlimit() - here - spare)


def _frames() -> list[Any]:
    frame, out = sys._getframe(1), []
    while frame is not None:
        out.append(frame)
        frame = frame.f_back  # type: ignore[assignment]
    return out


@pytest.mark.parametrize(
    "wrap",
    [lambda x: {"a": x}, lambda x: [x], lambda x: (x,), lambda x: {dt.date(2026, 1, 1): x}],
    ids=["dict", "list", "tuple", "key"],
)
def test_values_at_the_limit_round_trip_at_any_stack_depth(wrap: Callable[[Any], Any]) -> None:
    value = nested(LIMIT, wrap=wrap)
    data, _ = at_stack_depth(30, lambda: ser.serialize(value))
    assert at_stack_depth(30, lambda: ser.deserialize(data)) == value


@pytest.mark.parametrize(
    "value", [nested(LIMIT + 1), nested(LIMIT + 1, wrap=lambda x: (x,))], ids=["dict", "tuple"]
)
def test_values_deeper_than_the_limit_are_refused_when_written(value: Any) -> None:
    with pytest.raises(NestingTooDeepError, match=f"more than {LIMIT} levels"):
        ser.serialize(value)
    cyclic: list[Any] = []
    cyclic.append(cyclic)
    with pytest.raises(NestingTooDeepError, match="contains itself"):
        ser.serialize(cyclic)


@pytest.mark.parametrize("code", [None, ser.X_TUPLE])
def test_a_stored_value_nested_beyond_any_stack_is_a_typed_error(code: int | None) -> None:
    """Bytes kitaru never writes: 100,000 nested arrays (or tuple extensions)."""
    body = msgspec.msgpack.encode(None)
    for _ in range(100_000 if code is None else 3_000):
        body = (
            b"\x91" + body
            if code is None
            else msgspec.msgpack.encode(msgspec.msgpack.Ext(code, b"\x91" + body))
        )
    with pytest.raises(NestingTooDeepError):
        ser.deserialize(ser.TAG_MSGPACK + body)


def _manifest(metadata: dict[str, Any]) -> mf.Manifest:
    return mf.Manifest(
        exec_id="e" * 32,
        flow_name="f",
        status="completed",
        started_at=dt.datetime(2026, 1, 1),
        metadata=metadata,
    )


def test_manifest_metadata_is_bounded_when_written_and_read_at_any_depth() -> None:
    with pytest.raises(NestingTooDeepError):
        mf.encode_manifest(_manifest({"tree": nested(LIMIT)}))  # the metadata map is a level too
    data = mf.encode_manifest(_manifest({"tree": nested(LIMIT - 1)}))
    assert at_stack_depth(30, lambda: mf.decode_manifest(data)).metadata["tree"] == nested(LIMIT - 1)


def _record(name: str, metadata: dict[str, Any]) -> mf.CheckpointRecord:
    return mf.CheckpointRecord(
        invocation_id=name,
        name=name,
        status="completed",
        started_at=dt.datetime(2026, 1, 1),
        metadata=metadata,
    )


def test_a_commit_checks_the_parts_it_changes_and_only_those(
    repo: Repository, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A checkpoint's commit walks the metadata of what it adds or replaces, not the whole flow's
    (it writes only those records): a deep tree in a new checkpoint is refused; one the store
    already held (written before the bound) does not stop a later commit; a replaced part is
    checked again, and so is the execution's own metadata."""
    deep = {"tree": nested(LIMIT)}
    exec_id = repo.create_execution("f")
    with pytest.raises(NestingTooDeepError), repo.writer() as w:
        w.set_checkpoint(exec_id, _record("a", deep))
    with monkeypatch.context() as m:  # as a writer before the bound stored it
        m.setattr(nesting, "depth_exceeds", lambda tree, limit=0: False)
        with repo.writer() as w:
            w.set_checkpoint(exec_id, _record("a", deep))
    ok = _record("b", {"x": 1})
    with repo.writer() as w:
        w.set_checkpoint(exec_id, ok)
    assert repo.get_execution(exec_id).checkpoints[1] == ok
    bad_new = msgspec.structs.replace(ok, metadata=deep)
    for change in (
        lambda w: w.set_checkpoint(exec_id, msgspec.structs.replace(bad_new, invocation_id="c")),  # appended
        lambda w: w.set_checkpoint(exec_id, bad_new),  # replaced in place
        lambda w: w.merge_metadata(exec_id, deep),  # the execution's own
    ):
        with pytest.raises(NestingTooDeepError), repo.writer() as w:
            change(w)
    assert [c.invocation_id for c in repo.get_execution(exec_id).checkpoints] == ["a", "b"]


def test_a_manifest_nested_beyond_any_stack_is_a_corrupt_manifest() -> None:
    data = msgspec.msgpack.encode(_manifest({}))
    body = msgspec.msgpack.encode({"x": None})
    for _ in range(50_000):
        body = b"\x81\xa1x" + body
    deep = data[:1] + data[1:].replace(b"\xa8metadata\x80", b"\xa8metadata" + body)  # omit_defaults is off
    assert len(deep) > len(data)
    with pytest.raises(CorruptManifestError):
        mf.decode_manifest(deep)


@kitaru.flow
def logging_tree(levels: int) -> None:
    kitaru.log(tree=nested(levels))


def test_log_refuses_a_tree_deeper_than_the_limit_and_reads_any_tree_at_any_depth(repo: Repository) -> None:
    with pytest.raises(kitaru.FlowExecutionError, match="NestingTooDeepError: metadata nests"):
        logging_tree.run(LIMIT).wait()  # the log's own map is the first level
    exec_id = logging_tree.run(LIMIT - 1).exec_id
    client = KitaruClient()
    got = at_stack_depth(40, lambda: client.executions.get(exec_id).metadata["tree"])
    assert got == nested(LIMIT - 1)
    shown = CliRunner().invoke(cli, ["show", exec_id, "--json"])
    assert shown.exit_code == 0, shown.output


def test_metadata_stored_before_the_bound_reads_and_shows_as_a_typed_error(
    repo: Repository, monkeypatch: pytest.MonkeyPatch
) -> None:
    """900 levels, as kitaru.log() accepted before: read anywhere; `show` says why it cannot print."""
    with monkeypatch.context() as m:
        m.setattr(nesting, "depth_exceeds", lambda tree, limit=0: False)
        exec_id = logging_tree.run(900).exec_id
    tree = at_stack_depth(100, lambda: KitaruClient().executions.get(exec_id).metadata["tree"])
    assert tree == nested(900)
    shown = CliRunner().invoke(cli, ["show", exec_id, "--json"])
    assert shown.exit_code == 1 and not isinstance(shown.exception, RecursionError)
    assert json.loads(shown.stdout)["error"] == "NestingTooDeepError"
