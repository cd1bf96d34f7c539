"""kitaru.memory and KitaruClient().memories: scopes, the writer's identity, defaults, lineage."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import kitaru
from kitaru import (
    ExecutionNotFoundError,
    FlowExecutionError,
    InvalidNameError,
    KitaruClient,
    KitaruContextError,
    KitaruError,
    KitaruUsageError,
    PickleNotAllowedError,
    StoreNotFoundError,
    checkpoint,
    flow,
    memory,
)
from kitaru.memory import MemoryKeyNotFoundError, MemoryRedactedError
from kitaru_store import Repository
from kitaru_store import memory as store_memory
from kitaru_store.memory import current_user


def test_memory_is_a_public_module_with_store_errors() -> None:
    assert kitaru.memory is memory and "memory" in kitaru.__all__
    assert memory.SCOPES == store_memory.SCOPES
    assert memory.DEFAULT_NAMESPACE == store_memory.DEFAULT_NAMESPACE
    assert memory.MemoryKeyNotFoundError is store_memory.MemoryKeyNotFoundError
    assert memory.MemoryVersion is store_memory.MemoryVersion
    assert issubclass(MemoryKeyNotFoundError, KitaruError)
    assert issubclass(MemoryRedactedError, KitaruError)
    with pytest.raises(AttributeError):
        memory.Nope  # noqa: B018
    for name in ("set", "get", "list", "history", "delete", "redact"):
        assert (getattr(memory, name).__doc__ or "").strip(), name


def test_importing_kitaru_memory_stays_cheap() -> None:
    code = "import sys, kitaru.memory; print('msgspec' in sys.modules, 'lmdb' in sys.modules)"
    probe = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert probe.stdout.split() == ["False", "False"], probe.stderr


# --- outside a flow --------------------------------------------------------------------------


def test_set_get_list_history_delete_in_the_default_namespace() -> None:
    v1 = memory.set("user/42/prefs", {"tone": "brief"})
    v2 = memory.set("user/42/prefs", {"tone": "formal"})
    memory.set("greeting", "hello")
    assert (v1.version, v2.version, v2.scope, v2.scope_name) == (1, 2, "namespace", "default")
    assert v1.written_by.origin == "client" and v1.written_by.user == current_user()
    assert v1.written_by.exec_id is None
    assert memory.get("user/42/prefs") == {"tone": "formal"}
    assert memory.get("user/42/prefs", version=1) == {"tone": "brief"}
    assert [i.key for i in memory.list()] == ["greeting", "user/42/prefs"]
    assert [i.key for i in memory.list(prefix="user/")] == ["user/42/prefs"]
    tomb = memory.delete("greeting")
    assert tomb.deleted and tomb.version == 2
    assert [i.key for i in memory.list()] == ["user/42/prefs"]
    assert [v.op for v in memory.history("greeting")] == ["set", "delete"]
    with pytest.raises(MemoryKeyNotFoundError, match="was deleted at version 2"):
        memory.get("greeting")


def test_unchanged_values_share_bytes(store_path: Path) -> None:
    a = memory.set("k", list(range(1000)))
    repo = Repository.open(store_path)
    before = repo.stats()
    b = memory.set("k", list(range(1000)))
    assert b.version == 2 and b.object_id == a.object_id
    assert repo.stats().stored_bytes == before.stored_bytes


def test_get_default_covers_missing_and_deleted_but_not_redacted() -> None:
    assert memory.get("missing", default=None) is None
    assert memory.get("missing", default=0) == 0
    memory.set("k", "v")
    assert memory.get("k", version=5, default="no such version") == "no such version"
    memory.delete("k")
    assert memory.get("k", default="gone") == "gone"
    memory.set("secret", "s3cr3t")
    memory.redact("secret", 1, reason="leaked")
    with pytest.raises(MemoryRedactedError, match="leaked"):
        memory.get("secret", default=None)


def test_namespaces_and_explicit_scopes_outside_a_flow() -> None:
    memory.set("k", "default ns")
    memory.set("k", "team ns", namespace="team")
    memory.set("k", "flow f", flow="f")
    assert memory.get("k") == "default ns"
    assert memory.get("k", namespace="team") == "team ns"
    assert memory.get("k", scope="namespace", namespace="team") == "team ns"
    assert memory.get("k", flow="f") == "flow f"
    assert memory.get("k", scope="flow", flow="f") == "flow f"
    assert [i.scope_name for i in memory.list(namespace="team")] == ["team"]


def test_flow_and_execution_scopes_need_a_name_outside_a_flow() -> None:
    with pytest.raises(KitaruContextError, match="scope='flow' was called outside a flow") as info:
        memory.set("k", 1, scope="flow")
    assert "flow=NAME" in (info.value.hint or "")
    with pytest.raises(KitaruContextError, match="no current execution"):
        memory.get("k", scope="execution")
    with pytest.raises(KitaruContextError):
        memory.list(scope="execution")


def test_scope_arguments_are_checked() -> None:
    with pytest.raises(KitaruUsageError, match="unknown memory scope 'global'"):
        memory.set("k", 1, scope="global")
    with pytest.raises(KitaruUsageError, match="at most one of namespace=, flow= and exec_id="):
        memory.get("k", namespace="a", flow="b")
    with pytest.raises(KitaruUsageError, match="scope='namespace' does not go with flow="):
        memory.get("k", scope="namespace", flow="b")
    with pytest.raises(InvalidNameError, match="memory namespace 'a/b'"):
        memory.set("k", 1, namespace="a/b")
    with pytest.raises(InvalidNameError, match="has an empty level"):
        memory.set("a//b", 1)
    with pytest.raises(InvalidNameError, match="memory key must be a string"):
        memory.get(None)  # type: ignore[arg-type]


def test_execution_ids_resolve_and_writes_need_the_execution(store_path: Path) -> None:
    @flow
    def f() -> None:
        pass

    exec_id = f.run().exec_id
    v = memory.set("note", "after the run", exec_id=exec_id[:8])
    assert (v.scope, v.scope_name) == ("execution", exec_id)
    assert memory.get("note", exec_id=exec_id) == "after the run"
    missing = "0" * 32
    with pytest.raises(ExecutionNotFoundError):
        memory.set("note", 1, exec_id=missing)
    with pytest.raises(MemoryKeyNotFoundError, match=f"in execution {missing}"):
        memory.get("note", exec_id=missing)  # reads take a full id as it is


def test_reads_of_a_missing_store_find_nothing_and_create_nothing(store_path: Path) -> None:
    assert memory.list() == []
    assert memory.get("k", default="d") == "d"
    with pytest.raises(MemoryKeyNotFoundError, match="no memory key 'k' in namespace 'default'") as info:
        memory.get("k")
    assert "no kitaru store yet" in (info.value.hint or "")
    with pytest.raises(MemoryKeyNotFoundError):
        memory.history("k")
    with pytest.raises(MemoryKeyNotFoundError):
        memory.delete("k")
    with pytest.raises(MemoryKeyNotFoundError):
        memory.redact("k", 1, reason="r")
    with pytest.raises(InvalidNameError):
        memory.get("")
    assert not store_path.exists()
    memory.set("k", 1)  # a write creates the store, as running a flow does
    assert store_path.exists()


class Opaque:
    """Not a data class: only pickle can store it."""

    def __init__(self) -> None:
        self.x = 1


def test_pickle_needs_opt_in() -> None:
    with pytest.raises(PickleNotAllowedError) as info:
        memory.set("obj", Opaque())
    assert info.value.name == "obj"
    memory.set("obj", Opaque(), allow_pickle=True)
    with pytest.raises(PickleNotAllowedError):
        memory.get("obj")
    assert memory.get("obj", allow_pickle=True).x == 1


def test_redact_through_the_sdk() -> None:
    memory.set("user/1/email", "a@example.com")
    memory.set("user/1/email", "b@example.com")
    r = memory.redact("user/1/email", 1, reason="erasure request")
    assert r.redacted and r.bytes_erased and r.redacted_by is not None
    assert r.redacted_by.origin == "client"
    assert memory.get("user/1/email") == "b@example.com"
    with pytest.raises(MemoryRedactedError):
        memory.history("user/1/email")[0].load()
    assert memory.history("user/1/email")[1].load() == "b@example.com"
    assert memory.list()[0].load() == "b@example.com"


# --- inside a flow ---------------------------------------------------------------------------


@checkpoint
def remember(key: str, value: Any) -> int:
    return memory.set(key, value, scope="execution").version


@checkpoint
def recall(key: str) -> Any:
    return memory.get(key, scope="flow", default=None)


@flow
def counting() -> int:
    seen = memory.get("runs", scope="flow", default=0)
    memory.set("runs", seen + 1, scope="flow")
    remember("step", "from a checkpoint")
    memory.set("last-run", kitaru.current_execution_id(), scope="execution")
    return int(recall("runs").load())


def test_memory_persists_across_executions_and_records_the_writer() -> None:
    first, second = counting.run(), counting.run()
    assert (first.wait(), second.wait()) == (1, 2)
    history = memory.history("runs", flow="counting")
    assert [v.version for v in history] == [1, 2]
    assert [v.written_by.exec_id for v in history] == [first.exec_id, second.exec_id]
    assert {(v.written_by.origin, v.written_by.flow) for v in history} == {("flow", "counting")}
    assert memory.get("runs", flow="counting") == 2
    # Execution scopes are separate per run.
    for handle in (first, second):
        step = memory.history("step", exec_id=handle.exec_id)
        assert len(step) == 1
        who = step[0].written_by
        assert (who.origin, who.exec_id, who.flow, who.invocation_id) == (
            "checkpoint",
            handle.exec_id,
            "counting",
            "remember",
        )
        assert memory.get("last-run", exec_id=handle.exec_id) == handle.exec_id
    assert memory.list() == []  # nothing leaked into the default namespace


def test_a_memory_read_in_a_checkpoint_is_an_input_of_it() -> None:
    memory.set("runs", 41, flow="counting")
    handle = counting.run()
    assert handle.wait() == 42
    runs = memory.history("runs", flow="counting")[-1]
    calls = {c.invocation_id: c for c in KitaruClient().executions.get(handle.exec_id).checkpoints}
    assert runs.object_id in calls["recall"].inputs


def test_the_flow_body_may_name_other_scopes() -> None:
    @flow
    def other() -> Any:
        memory.set("shared", "from other", namespace="team")
        memory.set("peer", "x", flow="counting")
        return memory.get("shared", namespace="team")

    assert other.run().wait() == "from other"
    assert memory.get("peer", flow="counting") == "x"
    assert memory.history("peer", flow="counting")[0].written_by.flow == "other"


def test_a_failing_memory_call_fails_the_flow() -> None:
    @flow
    def bad() -> None:
        memory.get("never-set", scope="flow")

    handle = bad.run()
    assert handle.status == "failed"
    with pytest.raises(FlowExecutionError) as info:
        handle.wait()
    cause = info.value.__cause__
    assert isinstance(cause, MemoryKeyNotFoundError)
    assert (cause.scope, cause.scope_name, cause.key) == ("flow", "bad", "never-set")


# --- KitaruClient().memories -----------------------------------------------------------------


def test_client_browses_memory() -> None:
    memory.set("a", 1)
    memory.set("a", 2)
    memory.set("b", "x", namespace="team")
    memory.set("c", True, flow="research")
    client = KitaruClient()
    assert [i.key for i in client.memories.list()] == ["a"]
    assert [i.key for i in client.memories.list(namespace="team")] == ["b"]
    assert [i.key for i in client.memories.list(flow="research")] == ["c"]
    assert client.memories.get("a") == 2
    assert client.memories.get("a", version=1) == 1
    assert [v.version for v in client.memories.history("a")] == [1, 2]
    assert client.memories.get("c", scope="flow", flow="research") is True
    with pytest.raises(MemoryKeyNotFoundError, match="no memory key 'zzz'"):
        client.memories.get("zzz")


def test_client_needs_explicit_scope_names_even_inside_a_flow() -> None:
    @flow
    def inside() -> None:
        KitaruClient().memories.list(scope="flow")

    memory.set("x", 1)  # create the store
    with pytest.raises(FlowExecutionError) as info:
        inside.run().wait()
    assert isinstance(info.value.__cause__, KitaruUsageError)
    assert "needs flow=NAME" in str(info.value.__cause__)
    with pytest.raises(KitaruUsageError, match="needs exec_id=ID"):
        KitaruClient().memories.history("x", scope="execution")


def test_client_on_a_missing_store(store_path: Path) -> None:
    with pytest.raises(StoreNotFoundError):
        KitaruClient().memories.list()
    assert not store_path.exists()
