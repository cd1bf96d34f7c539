"""One error hierarchy: every error the store raises is a KitaruError with its ids, a hint, to_dict()."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from store_helpers import commit_execution, make_entry, tamper

import kitaru_store
from kitaru_store import (
    AmbiguousIdError,
    AmbiguousNameError,
    ArtifactNotFoundError,
    CorruptObjectError,
    ExecutionNotFoundError,
    InvalidIdError,
    InvalidNameError,
    KitaruError,
    NotAStoreError,
    NotFoundError,
    ObjectNotFoundError,
    PickleNotAllowedError,
    ReadOnlyStoreError,
    Repository,
    SerializationError,
    StateError,
    StoreError,
    StoreFormatError,
    StoreFullError,
    StoreLockedError,
    StoreNotFoundError,
    UsageError,
    layout,
)
from kitaru_store import errors as errors_module
from kitaru_store.locks import FileLock
from kitaru_store.memory import make_scope
from kitaru_store.remote.sync import clone


def test_every_error_class_derives_from_kitaru_error() -> None:
    classes = [
        obj
        for obj in vars(errors_module).values()
        if isinstance(obj, type)
        and issubclass(obj, BaseException)
        and obj.__module__ == errors_module.__name__
    ]
    assert len(classes) >= 19
    for cls in classes:
        assert issubclass(cls, KitaruError), cls
    for cls in (StoreNotFoundError, NotAStoreError, StoreFormatError, StoreLockedError, StoreFullError):
        assert issubclass(cls, StoreError)
    assert issubclass(ReadOnlyStoreError, StoreError)
    assert issubclass(PickleNotAllowedError, SerializationError)
    # Everything public is exported from the package.
    for name in kitaru_store.__all__:
        if name.endswith("Error"):
            assert getattr(kitaru_store, name) is getattr(errors_module, name)


def test_base_error_fields_and_to_dict() -> None:
    err = KitaruError("something failed", exec_id="e" * 32, name="thing", object_id="o" * 64, hint="do this")
    assert str(err) == "something failed (do this)"
    assert err.to_dict() == {
        "error": "KitaruError",
        "message": "something failed",
        "exec_id": "e" * 32,
        "name": "thing",
        "object_id": "o" * 64,
        "hint": "do this",
    }
    bare = KitaruError("bare")
    assert str(bare) == "bare"
    assert bare.to_dict() == {"error": "KitaruError", "message": "bare"}
    json.dumps(err.to_dict())


# --- errors as the store raises them ---------------------------------------------------------


def _missing_object(repo: Repository) -> None:
    repo.get_value("0123" + "0" * 60)


def _corrupt_object(repo: Repository) -> None:
    oid = repo.put_value("x" * 500).object_id
    tamper(repo, oid)
    repo.get_value(oid)


def _ambiguous_execution(repo: Repository) -> None:
    repo.create_execution("f", exec_id="abcd" + "1" * 28)
    repo.create_execution("f", exec_id="abcd" + "2" * 28)
    repo.get_execution("abcd")


def _short_prefix(repo: Repository) -> None:
    repo.resolve_object("abc")


def _too_long_id(repo: Repository) -> None:
    repo.resolve_execution("a" * 40)


def _unknown_execution(repo: Repository) -> None:
    repo.get_execution(uuid.uuid4().hex)


def _unknown_name(repo: Repository) -> None:
    exec_id = commit_execution(repo, "f", {"present": 1})
    repo.resolve_name(exec_id, "absent")


def _ambiguous_name(repo: Repository) -> None:
    sv = repo.put_value(1)
    with repo.writer() as w:
        exec_id = w.create_execution("f")
        w.add_entry(exec_id, make_entry(sv, "twice"))
        w.add_entry(exec_id, make_entry(sv, "twice"))
    repo.resolve_name(exec_id, "twice")


def _invalid_name(repo: Repository) -> None:
    repo.create_execution("bad\nname")


def _pickle_not_allowed(repo: Repository) -> None:
    repo.put_value(object())


def _read_only(repo: Repository) -> None:
    Repository.open(repo.root, readonly=True).put_value("x")


def _store_locked(repo: Repository) -> None:
    lock = FileLock(str(repo.root / layout.LOCK_DIR / "gc.lock"))
    lock.acquire(exclusive=True)
    try:
        repo.gc()
    finally:
        lock.release()


def _store_format(repo: Repository) -> None:
    config_file = repo.root / layout.CONFIG_FILE
    data = json.loads(config_file.read_text())
    config_file.write_text(json.dumps({**data, "format": 99}))
    Repository.open(repo.root)


def _not_a_store(repo: Repository) -> None:
    other = repo.root.parent / "other"
    other.mkdir()
    (other / "file").write_text("x")
    Repository.open(other)


def _store_not_found(repo: Repository) -> None:
    Repository.open(repo.root.parent / "nothing-here", create=False)


def _existing_execution(repo: Repository) -> None:
    exec_id = repo.create_execution("f")
    repo.create_execution("f", exec_id=exec_id)


def _unknown_artifact(repo: Repository) -> None:
    repo.get_artifact(uuid.uuid4().hex)


def _writer_committed_twice(repo: Repository) -> None:
    writer = repo.writer()
    writer.commit()
    writer.commit()


def _unknown_execution_field(repo: Repository) -> None:
    repo.update_execution(repo.create_execution("f"), entries=())


def _redaction_without_reason(repo: Repository) -> None:
    scope = make_scope("namespace", "ns")
    repo.memory.set(scope, "k", 1)
    repo.memory.redact(scope, "k", 1, reason=" ")


def _redacting_a_deletion(repo: Repository) -> None:
    scope = make_scope("namespace", "ns")
    repo.memory.set(scope, "k", 1)
    repo.memory.delete(scope, "k")
    repo.memory.redact(scope, "k", 2, reason="gdpr")


def _unknown_memory_scope(repo: Repository) -> None:
    make_scope("planet", "earth")


def _not_a_memory_version(repo: Repository) -> None:
    repo.memory.redact(make_scope("namespace", "ns"), "k", 0, reason="gdpr")


def _clone_into_a_store(repo: Repository) -> None:
    clone("s3://bucket/prefix", str(repo.root))


CASES: dict[str, tuple[Callable[[Repository], None], type[KitaruError], tuple[str, ...]]] = {
    "object-not-found": (_missing_object, ObjectNotFoundError, ("object_id",)),
    "corrupt-object": (_corrupt_object, CorruptObjectError, ("object_id",)),
    "ambiguous-id": (_ambiguous_execution, AmbiguousIdError, ("name",)),
    "short-prefix": (_short_prefix, InvalidIdError, ("name",)),
    "too-long-id": (_too_long_id, InvalidIdError, ("name",)),
    "execution-not-found": (_unknown_execution, ExecutionNotFoundError, ("exec_id",)),
    "artifact-not-found": (_unknown_name, ArtifactNotFoundError, ("exec_id", "name")),
    "ambiguous-name": (_ambiguous_name, AmbiguousNameError, ("exec_id", "name")),
    "invalid-name": (_invalid_name, InvalidNameError, ("name",)),
    "pickle-not-allowed": (_pickle_not_allowed, PickleNotAllowedError, ()),
    "read-only": (_read_only, ReadOnlyStoreError, ()),
    "store-locked": (_store_locked, StoreLockedError, ()),
    "store-format": (_store_format, StoreFormatError, ()),
    "not-a-store": (_not_a_store, NotAStoreError, ()),
    "store-not-found": (_store_not_found, StoreNotFoundError, ()),
    # Raised as the bare KitaruError before the families: now the family says what to do.
    "execution-exists": (_existing_execution, StateError, ("exec_id",)),
    "unknown-artifact": (_unknown_artifact, NotFoundError, ("name",)),
    "writer-committed-twice": (_writer_committed_twice, StateError, ()),
    "unknown-execution-field": (_unknown_execution_field, UsageError, ("exec_id",)),
    "redaction-without-reason": (_redaction_without_reason, UsageError, ("name",)),
    "redacting-a-deletion": (_redacting_a_deletion, StateError, ("name",)),
    "unknown-memory-scope": (_unknown_memory_scope, UsageError, ("name",)),
    "not-a-memory-version": (_not_a_memory_version, UsageError, ()),
    "clone-into-a-store": (_clone_into_a_store, UsageError, ()),
}


@pytest.mark.parametrize("case", list(CASES))
def test_raised_errors_carry_ids_and_a_hint(repo: Repository, case: str) -> None:
    action, cls, attributes = CASES[case]
    with pytest.raises(cls) as info:
        action(repo)
    err = info.value
    assert isinstance(err, KitaruError)
    assert err.hint, f"{type(err).__name__} has no hint"
    assert err.hint in str(err)
    for attr in attributes:
        assert getattr(err, attr), f"{type(err).__name__}.{attr} is not set"
    d = err.to_dict()
    assert d["error"] == type(err).__name__
    assert d["message"] == err.message
    assert d["hint"] == err.hint
    for attr in attributes:
        assert d[attr] == getattr(err, attr)
    json.dumps(d)


def test_error_ids_name_the_right_things(repo: Repository, store_path: Path) -> None:
    exec_id = commit_execution(repo, "f", {"a": 1})
    with pytest.raises(ArtifactNotFoundError) as info:
        repo.resolve_name(exec_id, "b")
    assert (info.value.exec_id, info.value.name, info.value.available) == (exec_id, "b", ["a"])
    oid = repo.resolve_name(exec_id, "a").object_id
    tamper(repo, oid)
    with pytest.raises(CorruptObjectError) as corrupt:
        repo.get_value(oid)
    assert corrupt.value.object_id == oid
    with pytest.raises(StoreNotFoundError) as missing:
        Repository.open(store_path / "sub", create=False)
    assert missing.value.path == str(store_path / "sub")


def test_cli_problems_it_finds_itself_are_typed(repo: Repository) -> None:
    """`unpin` of a pin that is not there, `memory redact` without a reason: the JSON error names
    the family, not the bare base."""
    from click.testing import CliRunner

    from kitaru_store.cli import cli

    unpinned = CliRunner().invoke(cli, ["unpin", "nope", "--json"])
    assert unpinned.exit_code == 1
    assert json.loads(unpinned.stdout)["error"] == "NotFoundError"
    redacted = CliRunner().invoke(cli, ["memory", "redact", "k", "1", "--reason", " ", "--json"])
    assert redacted.exit_code == 1, redacted.output
    assert json.loads(redacted.stdout)["error"] == "UsageError"


# --- errors carry the ids they concern ------------------------------------------------------------


def test_concerning_fills_only_missing_fields() -> None:
    err = KitaruError("boom", exec_id="e1")
    assert err.concerning(exec_id="e2", name="n1") is err
    assert (err.exec_id, err.name) == ("e1", "n1")
    err.concerning(exec_id="e3", name="n2")
    assert (err.exec_id, err.name) == ("e1", "n1")

    blank = KitaruError("blank")
    blank.concerning()
    assert (blank.exec_id, blank.name) == (None, None)
    blank.concerning(name="only-name")
    assert (blank.exec_id, blank.name) == (None, "only-name")
    blank.concerning(exec_id="e4")
    assert (blank.exec_id, blank.name) == ("e4", "only-name")
    assert blank.to_dict()["exec_id"] == "e4" and blank.to_dict()["name"] == "only-name"

    oid = "ab" * 32
    missing = ObjectNotFoundError(oid).concerning(exec_id="e5", name="x")
    assert (missing.exec_id, missing.name, missing.object_id) == ("e5", "x", oid)
    assert missing.message == ObjectNotFoundError(oid).message  # the message is not rewritten


def test_store_errors_carry_the_ids_they_concern(repo: Repository) -> None:
    exec_id = commit_execution(repo, "flow", {"a": 1})
    with pytest.raises(KitaruError) as excinfo:
        repo.resolve_name(exec_id, "nope")
    assert (excinfo.value.exec_id, excinfo.value.name) == (exec_id, "nope")
    oid = "cd" * 32
    with pytest.raises(ObjectNotFoundError) as excinfo2:
        repo.get_bytes(oid)
    assert excinfo2.value.object_id == oid
