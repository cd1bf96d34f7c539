"""kitaru_store.memory: versions, tombstones, scopes, keys, gc roots, fsck and redaction."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import msgspec
import pytest
from store_helpers import commit_execution, delete_record

from kitaru_store import (
    InvalidIdError,
    InvalidNameError,
    KitaruError,
    ReadOnlyStoreError,
    Repository,
    StoreFormatError,
    codec,
    layout,
    objects,
)
from kitaru_store.memory import (
    MAX_KEY,
    Author,
    CorruptMemoryRecordError,
    MemoryKeyNotFoundError,
    MemoryRedactedError,
    MemoryStore,
    Scope,
    current_user,
    decode_record,
    encode_record,
    make_author,
    make_scope,
    parse_record_key,
    record_key,
    validate_key,
)

NS = make_scope("namespace", "default")


@pytest.fixture
def mem(repo: Repository) -> MemoryStore:
    return repo.memory


def object_count(repo: Repository) -> int:
    with repo.kv.read() as rt:
        return int(rt.count(b"objects"))


# --- versions --------------------------------------------------------------------------------


def test_versions_start_at_one_and_increment(mem: MemoryStore) -> None:
    v1 = mem.set(NS, "model", "small")
    v2 = mem.set(NS, "model", "large")
    assert (v1.version, v2.version) == (1, 2)
    assert (v1.op, v1.deleted, v1.redacted) == ("set", False, False)
    assert v1.serializer == "str" and v1.size == len("small") + 1  # a 1-byte serializer tag
    assert v1.written_by.user == current_user() and v1.written_by.origin == "store"
    assert v1.written_at <= v2.written_at
    assert mem.get(NS, "model") == "large"
    assert mem.get(NS, "model", version=1) == "small"
    assert v1.load() == "small"
    assert mem.version(NS, "model").version == 2


def test_unchanged_value_adds_a_version_not_bytes(repo: Repository, mem: MemoryStore) -> None:
    value = {"prefs": ["brief", "formal"], "n": 42, "blob": "x" * 5000}
    first = mem.set(NS, "profile", value)
    before = repo.stats()
    second = mem.set(NS, "profile", dict(value))
    after = repo.stats()
    assert second.version == 2
    assert second.object_id == first.object_id
    assert (after.objects, after.stored_bytes, after.unique_bytes) == (
        before.objects,
        before.stored_bytes,
        before.unique_bytes,
    )
    assert [v.version for v in mem.history(NS, "profile")] == [1, 2]


def test_a_value_already_in_an_execution_is_shared(repo: Repository, mem: MemoryStore) -> None:
    commit_execution(repo, "f", {"answer": "forty-two"})
    n = object_count(repo)
    v = mem.set(NS, "answer", "forty-two")
    assert object_count(repo) == n
    assert repo.get_value(v.object_id) == "forty-two"


def test_the_author_is_recorded(mem: MemoryStore) -> None:
    who = Author(user="alice", origin="checkpoint", exec_id="ab" * 16, flow="f", invocation_id="step_2")
    v = mem.set(NS, "k", 1, author=who)
    assert mem.history(NS, "k")[0].written_by == who
    assert v.to_dict()["written_by"] == {
        "user": "alice",
        "origin": "checkpoint",
        "exec_id": "ab" * 16,
        "flow": "f",
        "invocation_id": "step_2",
    }
    assert make_author("cli").origin == "cli"


def test_get_of_an_old_version_and_of_versions_that_do_not_exist(mem: MemoryStore) -> None:
    for n in range(3):
        mem.set(NS, "counter", n)
    assert [mem.get(NS, "counter", version=v) for v in (1, 2, 3)] == [0, 1, 2]
    with pytest.raises(MemoryKeyNotFoundError, match="has no version 4") as info:
        mem.get(NS, "counter", version=4)
    assert info.value.hint == "its versions are 1-3"
    for bad in (0, -1, True, "1", 1.0):
        with pytest.raises(KitaruError, match="is not a version number"):
            mem.get(NS, "counter", version=bad)  # type: ignore[arg-type]


# --- tombstones ------------------------------------------------------------------------------


def test_delete_is_a_tombstone(mem: MemoryStore) -> None:
    mem.set(NS, "token", "abc")
    mem.set(NS, "token", "def")
    mem.set(NS, "other", 1)
    tomb = mem.delete(NS, "token")
    assert (tomb.version, tomb.op, tomb.deleted, tomb.object_id, tomb.size) == (3, "delete", True, None, 0)
    assert [i.key for i in mem.list(NS)] == ["other"]
    assert [i.key for i in mem.list(NS, include_deleted=True)] == ["other", "token"]
    with pytest.raises(MemoryKeyNotFoundError, match="was deleted at version 3") as info:
        mem.get(NS, "token")
    assert info.value.deleted_version == 3
    assert "versions 1-2 still hold the earlier values" in (info.value.hint or "")
    assert [(v.version, v.op) for v in mem.history(NS, "token")] == [(1, "set"), (2, "set"), (3, "delete")]
    assert mem.get(NS, "token", version=2) == "def"
    assert mem.version(NS, "token", version=3).deleted
    with pytest.raises(MemoryKeyNotFoundError, match=r"version 3 of memory key 'token' .* is a deletion"):
        mem.get(NS, "token", version=3)
    again = mem.set(NS, "token", "ghi")
    assert again.version == 4
    assert mem.get(NS, "token") == "ghi"


def test_deleting_a_missing_or_deleted_key_is_an_error(mem: MemoryStore) -> None:
    with pytest.raises(MemoryKeyNotFoundError, match="no memory key 'nope' in namespace 'default'"):
        mem.delete(NS, "nope")
    mem.set(NS, "k", 1)
    mem.delete(NS, "k")
    with pytest.raises(MemoryKeyNotFoundError, match="was deleted at version 2"):
        mem.delete(NS, "k")
    assert len(mem.history(NS, "k")) == 2


# --- scopes ----------------------------------------------------------------------------------


def test_scopes_isolate(repo: Repository, mem: MemoryStore) -> None:
    exec_id = commit_execution(repo, "research", {})
    scopes = [
        make_scope("namespace", "default"),
        make_scope("namespace", "team-a"),
        make_scope("flow", "research"),
        make_scope("execution", exec_id),
    ]
    for n, s in enumerate(scopes):
        for _ in range(n + 1):
            mem.set(s, "shared-key", f"value in {s}")
    for n, s in enumerate(scopes):
        assert mem.get(s, "shared-key") == f"value in {s}"
        assert len(mem.history(s, "shared-key")) == n + 1
        assert [(i.scope, i.scope_name, i.key) for i in mem.list(s)] == [(s.kind, s.name, "shared-key")]
    mem.delete(scopes[1], "shared-key")
    assert mem.get(scopes[0], "shared-key") == "value in namespace:default"
    assert set(mem.scopes()) == set(scopes)
    assert set(mem.scopes_with("shared-key")) == {scopes[0], scopes[2], scopes[3]}
    # A namespace, a flow and an execution of the same name are still three scopes.
    mem.set(make_scope("flow", "default"), "shared-key", "flow default")
    assert mem.get(NS, "shared-key") == "value in namespace:default"


def test_scope_validation_and_execution_prefixes(repo: Repository, mem: MemoryStore) -> None:
    exec_id = commit_execution(repo, "f", {})
    assert mem.scope("execution", exec_id[:8]) == Scope("execution", exec_id)
    dashed = f"{exec_id[:8]}-{exec_id[8:12]}-{exec_id[12:16]}-{exec_id[16:20]}-{exec_id[20:]}"
    assert mem.scope("execution", dashed.upper()) == Scope("execution", exec_id)
    gone = "0" * 32
    assert mem.scope("execution", gone) == Scope("execution", gone)  # memory outlives executions
    with pytest.raises(KitaruError, match="no execution"):
        mem.scope("execution", gone, must_exist=True)
    with pytest.raises(InvalidIdError):
        make_scope("execution", "not-hex")
    with pytest.raises(KitaruError, match="unknown memory scope 'team'"):
        make_scope("team", "x")
    with pytest.raises(InvalidNameError, match="memory namespace 'a/b' contains a path separator"):
        make_scope("namespace", "a/b")
    with pytest.raises(InvalidNameError, match="flow name '' is empty"):
        make_scope("flow", "")


# --- keys ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "key",
    ["a", "user/42/prefs", "with space", "ünïcödé/日本", "a:b.c-d_e", "x" * MAX_KEY, "./..", "emoji 🎉"],
)
def test_valid_keys(mem: MemoryStore, key: str) -> None:
    assert validate_key(key, NS) == key
    mem.set(NS, key, key)
    assert mem.get(NS, key) == key
    assert [i.key for i in mem.list(NS)] == [key]


@pytest.mark.parametrize(
    ("key", "problem"),
    [
        ("", "is empty"),
        ("   ", "is empty"),
        ("x" * (MAX_KEY + 1), "is longer than 255 characters"),
        ("a\x00b", "contains control characters"),
        ("a\nb", "contains control characters"),
        ("a\x7fb", "contains control characters"),
        ("a\x85b", "contains control characters"),
        (" padded", "has leading or trailing white space"),
        ("padded\t", "contains control characters"),
        ("a\\b", "contains a backslash"),
        ("/a", "has an empty level"),
        ("a/", "has an empty level"),
        ("a//b", "has an empty level"),
        ("a\ud800", "is not valid unicode text"),
    ],
)
def test_invalid_keys(mem: MemoryStore, key: str, problem: str) -> None:
    with pytest.raises(InvalidNameError, match=problem):
        mem.set(NS, key, 1)
    with pytest.raises(InvalidNameError, match=problem):
        mem.get(NS, key)
    assert mem.scopes() == []


def test_non_text_keys_and_byte_limits(mem: MemoryStore) -> None:
    with pytest.raises(InvalidNameError, match="memory key must be a string, not int"):
        mem.set(NS, 42, 1)  # type: ignore[arg-type]
    wide = "🎉" * 200  # 200 characters, 800 bytes of UTF-8: more than an LMDB key holds
    with pytest.raises(InvalidNameError, match="too long: key and scope name together take 807 bytes"):
        mem.set(NS, wide, 1)
    fits = "🎉" * 123  # 492 bytes + "default" (7) = 499
    assert mem.set(NS, fits, 1).version == 1


def test_record_key_layout() -> None:
    scope = make_scope("flow", "research")
    raw = record_key(scope, "user/42", 7)
    assert raw == b"f" + b"research" + b"\x00" + b"user/42" + b"\x00" + (7).to_bytes(8, "big")
    assert parse_record_key(raw) == (scope, "user/42", 7)
    assert record_key(make_scope("namespace", "n"), "k", 1)[0:1] == b"n"
    assert record_key(make_scope("execution", "ab" * 16), "k", 1)[0:1] == b"e"
    for bad in (b"", b"x" * 20, b"nfoo\x00bar" + b"\x00" * 9, b"nfoo\x00b\x00r\x00" + b"\x00" * 7 + b"\x01"):
        with pytest.raises(ValueError):
            parse_record_key(bad)


def test_list_order_prefix_and_latest_version(mem: MemoryStore) -> None:
    for key in ["user/2", "user/10/a", "users", "user/1", "zeta", "alpha"]:
        mem.set(NS, key, key)
    mem.set(NS, "user/1", "again")
    assert [i.key for i in mem.list(NS)] == ["alpha", "user/1", "user/10/a", "user/2", "users", "zeta"]
    assert [i.key for i in mem.list(NS, prefix="user/")] == ["user/1", "user/10/a", "user/2"]
    assert [i.key for i in mem.list(NS, prefix="user")] == ["user/1", "user/10/a", "user/2", "users"]
    assert mem.list(NS, prefix="nothing") == []
    item = mem.list(NS, prefix="user/1")[0]
    assert (item.key, item.version, item.serializer, item.redacted) == ("user/1", 2, "str", False)
    assert item.load() == "again"
    assert mem.list(make_scope("namespace", "empty")) == []
    with pytest.raises(InvalidNameError, match="contains control characters"):
        mem.list(NS, prefix="user\x00")


def test_list_jumps_many_keys_across_batches(mem: MemoryStore) -> None:
    for n in range(40):
        mem.set(NS, f"k{n:03d}", n)
    keys = [key for key, _ in mem._latest(NS, NS.prefix, batch=7)]
    assert keys == [f"k{n:03d}" for n in range(40)]


def test_not_found_names_the_scope_and_similar_keys(repo: Repository, mem: MemoryStore) -> None:
    mem.set(NS, "user/42/prefs", 1)
    mem.set(NS, "user/43/prefs", 1)
    flow = make_scope("flow", "research")
    mem.set(flow, "budget", 10)
    with pytest.raises(MemoryKeyNotFoundError) as info:
        mem.get(NS, "user/42/pref")
    err = info.value
    assert err.message == "no memory key 'user/42/pref' in namespace 'default'"
    assert err.similar[0] == "user/42/prefs"
    assert (err.key, err.scope, err.scope_name, err.name) == (
        "user/42/pref",
        "namespace",
        "default",
        "user/42/pref",
    )
    assert err.to_dict()["similar"] == err.similar
    with pytest.raises(MemoryKeyNotFoundError) as info:
        mem.get(NS, "user")
    assert info.value.similar == ["user/42/prefs", "user/43/prefs"]
    with pytest.raises(MemoryKeyNotFoundError) as info:
        mem.get(NS, "budget")
    assert "the key exists in flow 'research'" in (info.value.hint or "")
    with pytest.raises(MemoryKeyNotFoundError) as info:
        mem.history(make_scope("namespace", "void"), "x")
    assert "namespace 'void' holds no keys" in (info.value.hint or "")
    exec_scope = make_scope("execution", "cd" * 16)
    with pytest.raises(MemoryKeyNotFoundError) as info:
        mem.get(exec_scope, "x")
    assert info.value.exec_id == "cd" * 16
    assert info.value.message == f"no memory key 'x' in execution {'cd' * 16}"


def test_values_need_pickle_opt_in(mem: MemoryStore) -> None:
    class Opaque:
        pass

    with pytest.raises(KitaruError, match="pickle"):
        mem.set(NS, "obj", Opaque())
    assert mem.scopes() == []


def test_a_failing_commit_hook_commits_nothing(repo: Repository) -> None:
    writer = repo.writer()
    object_id = writer.put_value("never stored").object_id

    def boom(wt: object) -> None:
        raise RuntimeError("hook failed")

    writer.on_commit(boom)
    with pytest.raises(RuntimeError, match="hook failed"):
        writer.commit()
    assert not repo.has_object(object_id)


def test_records_from_a_newer_format_are_refused(repo: Repository, mem: MemoryStore) -> None:
    v = mem.set(NS, "k", 1)
    raw = record_key(NS, "k", 1)
    with repo.kv.read() as rt:
        stored = decode_record(rt.get(layout.MEMORY, raw))
    newer = msgspec.msgpack.encode({**msgspec.to_builtins(stored), "format_version": 2, "new_field": [1]})
    repo._backend().update(lambda wt: wt.put(layout.MEMORY, raw, newer))
    with pytest.raises(StoreFormatError, match="memory record format 2"):
        mem.get(NS, "k")
    assert v.object_id  # gc still finds the root: the probe reads any format
    assert repo.gc(grace=0).objects_removed == 0
    assert decode_record(encode_record(stored)) == stored


# --- gc --------------------------------------------------------------------------------------


def test_memory_values_survive_gc_while_a_deleted_executions_objects_go(
    repo: Repository, mem: MemoryStore
) -> None:
    exec_id = commit_execution(repo, "f", {"a": "only in the execution", "b": "in memory too"})
    kept = mem.set(NS, "b", "in memory too")
    old = mem.set(NS, "history", "first")
    mem.set(NS, "history", "second")
    tomb = mem.set(NS, "gone", "before the tombstone")
    mem.delete(NS, "gone")
    only_exec = repo.get_execution(exec_id).entries[0].object_id
    repo.delete_execution(exec_id)
    report = repo.gc(grace=0)
    assert report.objects_removed >= 1
    assert not repo.has_object(only_exec)
    for v in (kept, old, tomb):
        assert v.object_id is not None and repo.has_object(v.object_id)
    assert mem.get(NS, "b") == "in memory too"
    assert mem.get(NS, "history", version=1) == "first"
    assert mem.get(NS, "gone", version=1) == "before the tombstone"
    assert repo.fsck().ok


def test_gc_stops_on_an_undecodable_memory_record(repo: Repository, mem: MemoryStore) -> None:
    mem.set(NS, "k", "value")
    repo._backend().update(lambda wt: wt.put(layout.MEMORY, record_key(NS, "k", 2), b"\xc1 not msgpack"))
    with pytest.raises(CorruptMemoryRecordError, match="cannot be decoded"):
        repo.gc(grace=0)
    assert mem.get(NS, "k", version=1) == "value"


# --- fsck ------------------------------------------------------------------------------------


def test_fsck_reports_missing_objects_and_bad_records(repo: Repository, mem: MemoryStore) -> None:
    v = mem.set(make_scope("execution", "ab" * 16), "k", "value")
    assert repo.fsck().ok
    assert v.object_id is not None
    delete_record(repo, v.object_id)
    problems = repo.fsck().problems
    assert [(p.kind, p.object_id, p.name, p.exec_id) for p in problems] == [
        ("missing-object", v.object_id, "k", "ab" * 16)
    ]
    assert "version 1 names an object that is not stored" in problems[0].detail
    repo._backend().update(lambda wt: wt.put(layout.MEMORY, b"\xffjunk", b"\x00"))
    repo._backend().update(lambda wt: wt.put(layout.MEMORY, record_key(NS, "x", 1), b"\xc1"))
    kinds = sorted(p.kind for p in repo.fsck().problems)
    assert kinds == ["bad-memory-record", "bad-memory-record", "missing-object"]


def test_fsck_reports_a_record_under_the_wrong_version(repo: Repository, mem: MemoryStore) -> None:
    mem.set(NS, "k", 1)
    with repo.kv.read() as rt:
        raw = rt.get(layout.MEMORY, record_key(NS, "k", 1))
    repo._backend().update(lambda wt: wt.put(layout.MEMORY, record_key(NS, "k", 5), raw))
    assert [p.detail for p in repo.fsck().problems] == [
        "memory namespace 'default' key 'k' version 5 holds version 1"
    ]


# --- redaction -------------------------------------------------------------------------------


def test_redaction_erases_the_bytes_and_keeps_the_audit_trail(repo: Repository, mem: MemoryStore) -> None:
    writer = Author(user="alice", origin="client")
    admin = Author(user="dpo", origin="cli")
    secret = mem.set(NS, "user/42/ssn", "078-05-1120", author=writer)
    mem.set(NS, "user/42/ssn", "redacted on request", author=writer)
    assert secret.object_id is not None
    n = object_count(repo)
    r = mem.redact(NS, "user/42/ssn", 1, reason="GDPR erasure request #17", author=admin)
    assert (r.version, r.op, r.redacted, r.bytes_erased, r.kept_by) == (1, "set", True, True, ())
    assert r.object_id is None
    assert (r.written_by, r.written_at, r.size, r.serializer) == (
        writer,
        secret.written_at,
        secret.size,
        secret.serializer,
    )
    assert r.redacted_by == admin and r.redaction_reason == "GDPR erasure request #17"
    assert r.redacted_at is not None and r.redacted_at >= secret.written_at
    assert not repo.has_object(secret.object_id)
    assert object_count(repo) == n - 1
    assert mem.history(NS, "user/42/ssn")[0] == r
    with pytest.raises(MemoryRedactedError, match="GDPR erasure request #17") as info:
        mem.get(NS, "user/42/ssn", version=1)
    assert info.value.to_dict()["version"] == 1
    assert mem.get(NS, "user/42/ssn") == "redacted on request"  # the later version is untouched
    assert repo.fsck().ok
    assert repo.gc(grace=0).objects_removed == 0
    assert repo.fsck().ok


def test_redacting_the_latest_version(repo: Repository, mem: MemoryStore) -> None:
    mem.set(NS, "k", "old")
    mem.set(NS, "k", "secret")
    mem.redact(NS, "k", 2, reason="leak")
    with pytest.raises(MemoryRedactedError, match=r"version 2 of memory key 'k' .* was redacted"):
        mem.get(NS, "k")
    item = mem.list(NS)[0]
    assert (item.key, item.version, item.redacted, item.object_id) == ("k", 2, True, None)
    assert mem.get(NS, "k", version=1) == "old"
    assert mem.set(NS, "k", "fresh").version == 3


def test_redaction_keeps_bytes_a_manifest_entry_references(repo: Repository, mem: MemoryStore) -> None:
    exec_id = commit_execution(repo, "f", {"answer": "shared secret"})
    v = mem.set(NS, "k", "shared secret")
    r = mem.redact(NS, "k", 1, reason="oops")
    assert r.redacted and r.bytes_erased is False
    assert r.kept_by == (f"execution {exec_id} entry 'answer'",)
    assert v.object_id is not None and repo.has_object(v.object_id)
    assert repo.get_value(repo.resolve_name(exec_id, "answer").object_id) == "shared secret"
    with pytest.raises(MemoryRedactedError):
        mem.get(NS, "k")
    assert repo.fsck().ok
    # Once the execution is gone, gc collects the bytes: the redacted version is no root.
    repo.delete_execution(exec_id)
    repo.gc(grace=0)
    assert not repo.has_object(v.object_id)
    assert repo.fsck().ok


def test_redaction_keeps_bytes_other_versions_or_pins_reference(repo: Repository, mem: MemoryStore) -> None:
    other = make_scope("namespace", "other")
    first = mem.set(NS, "k", "same bytes")
    mem.set(NS, "k", "same bytes")
    mem.set(other, "copy", "same bytes")
    assert first.object_id is not None
    r1 = mem.redact(NS, "k", 1, reason="r")
    assert r1.bytes_erased is False
    assert r1.kept_by == (
        "memory namespace 'default' key 'k' version 2",
        "memory namespace 'other' key 'copy' version 1",
    )
    mem.redact(NS, "k", 2, reason="r")
    repo.pin("keep", first.object_id)
    r3 = mem.redact(other, "copy", 1, reason="r")
    assert (r3.bytes_erased, r3.kept_by) == (False, ("pin 'keep'",))
    repo.unpin("keep")
    assert repo.has_object(first.object_id)
    repo.gc(grace=0)
    assert not repo.has_object(first.object_id)
    assert all(v.redacted for s in (NS, other) for v in mem.history(s, "k" if s == NS else "copy"))
    assert repo.fsck().ok


def test_redaction_keeps_bytes_a_checkpoint_output_or_result_references(
    repo: Repository, mem: MemoryStore
) -> None:
    v = mem.set(NS, "k", {"result": 1})
    assert v.object_id is not None
    with repo.writer() as w:
        exec_id = w.create_execution("f")
        w.update_execution(exec_id, result_object_id=v.object_id)
    r = mem.redact(NS, "k", 1, reason="r")
    assert r.kept_by == (f"execution {exec_id} result",)


def test_redaction_errors(mem: MemoryStore) -> None:
    mem.set(NS, "k", 1)
    mem.delete(NS, "k")
    with pytest.raises(KitaruError, match=r"version 2 of memory key 'k' .* is a deletion"):
        mem.redact(NS, "k", 2, reason="r")
    with pytest.raises(MemoryKeyNotFoundError, match="has no version 9"):
        mem.redact(NS, "k", 9, reason="r")
    with pytest.raises(MemoryKeyNotFoundError, match="no memory key 'x'"):
        mem.redact(NS, "x", 1, reason="r")
    for reason in ("", "   ", None):
        with pytest.raises(KitaruError, match="a redaction needs a reason"):
            mem.redact(NS, "k", 1, reason=reason)  # type: ignore[arg-type]
    mem.redact(NS, "k", 1, reason="first")
    with pytest.raises(MemoryRedactedError, match=r"was redacted already \(first\)"):
        mem.redact(NS, "k", 1, reason="second")
    assert mem.history(NS, "k")[0].redaction_reason == "first"


def test_redaction_of_a_chunked_value_erases_its_chunks(repo: Repository, mem: MemoryStore) -> None:
    big = os.urandom(3 << 20)  # chunked: an index record and its chunks
    v = mem.set(NS, "big", big)
    assert v.object_id is not None
    with repo.kv.read() as rt:
        chunks = objects.chunk_keys(rt.get(b"objects", bytes.fromhex(v.object_id)), b"")
    assert len(chunks) > 2
    n = object_count(repo)
    r = mem.redact(NS, "big", 1, reason="r")
    assert (r.bytes_erased, r.kept_by) == (True, ())
    assert object_count(repo) == n - 1 - len(chunks)
    assert repo.fsck().ok


def test_redaction_keeps_chunks_another_value_shares(repo: Repository, mem: MemoryStore) -> None:
    base = os.urandom(3 << 20)
    v = mem.set(NS, "a", base)
    edited = base[: 2 << 20] + os.urandom(1 << 20)  # the same leading chunks, a new tail
    mem.set(NS, "b", edited)
    r = mem.redact(NS, "a", 1, reason="r")
    assert r.bytes_erased is True
    assert len(r.kept_by) == 1 and "chunks are shared with other stored values" in r.kept_by[0]
    assert v.object_id is not None and not repo.has_object(v.object_id)
    assert mem.get(NS, "b") == edited
    assert repo.fsck().ok


def test_redaction_keeps_an_object_that_is_a_chunk_of_another(repo: Repository, mem: MemoryStore) -> None:
    v = mem.set(NS, "small", "bytes that also appear as a chunk")
    assert v.object_id is not None
    key = bytes.fromhex(v.object_id)
    index = objects.ChunkIndex(objects.INDEX_VERSION, v.size, [(key, v.size)])
    parent = b"\x01" * 32
    record = codec.encode(objects._index_enc.encode(index), kind=codec.KIND_INDEX)
    stamp = objects.pack_time(objects.now_ns())

    def txn(wt: object) -> None:
        wt.put(b"objects", parent, record)  # type: ignore[attr-defined]
        wt.put(b"touch", parent, stamp)  # type: ignore[attr-defined]

    repo._backend().update(txn)  # type: ignore[arg-type]
    r = mem.redact(NS, "small", 1, reason="r")
    assert (r.bytes_erased, r.kept_by) == (False, (f"a chunk of object {parent.hex()}",))
    assert repo.has_object(v.object_id)


def test_redacted_bytes_leave_the_data_file_after_compaction(repo: Repository, mem: MemoryStore) -> None:
    marker = b"SECRET-" + os.urandom(8).hex().encode()  # short and raw: stored uncompressed
    mem.set(NS, "k", marker)
    data_file = repo.root / "db" / "data.mdb"
    assert marker in data_file.read_bytes()
    mem.redact(NS, "k", 1, reason="r")
    repo.gc(grace=0, compact=True)
    assert marker not in data_file.read_bytes()
    assert mem.history(NS, "k")[0].redacted


def test_version_records_round_trip_through_to_dict(mem: MemoryStore) -> None:
    v = mem.set(NS, "k", [1, 2])
    d = v.to_dict()
    assert d["scope"] == "namespace" and d["key"] == "k" and d["version"] == 1 and d["op"] == "set"
    assert isinstance(d["written_at"], dt.datetime)
    assert d["redacted"] is False and d["kept_by"] == []
    assert mem.list(NS)[0].to_dict()["updated_by"]["origin"] == "store"


def test_concurrent_writers_never_share_a_version(repo: Repository, mem: MemoryStore) -> None:
    import threading

    def work(n: int) -> None:
        for i in range(20):
            mem.set(NS, "log", f"{n}-{i}")

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    history = mem.history(NS, "log")
    assert [v.version for v in history] == list(range(1, 81))
    assert sorted(mem.get(NS, "log", version=v.version) for v in history) == sorted(
        f"{n}-{i}" for n in range(4) for i in range(20)
    )


def test_a_read_only_repository_reads_memory_and_refuses_writes(store_path: Path, mem: MemoryStore) -> None:
    mem.set(NS, "k", "v")
    ro = Repository.open(store_path, readonly=True)
    assert ro.memory.get(NS, "k") == "v"
    assert [i.key for i in ro.memory.list(NS)] == ["k"]
    with pytest.raises(ReadOnlyStoreError):
        ro.memory.set(NS, "k", "w")
    with pytest.raises(ReadOnlyStoreError):
        ro.memory.redact(NS, "k", 1, reason="r")
    assert mem.history(NS, "k")[0].redacted is False
