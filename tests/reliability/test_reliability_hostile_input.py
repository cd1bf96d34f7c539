"""Bad and hostile input: every case is a typed error (a KitaruError subclass) and leaves the
store as it was. Many of these have unit tests in tests/store and tests/sdk; here each is checked
end to end (store, SDK, client, CLI where they apply) against a snapshot of the whole store."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import stat
import subprocess
import sys
import threading
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import harness
import lmdb
import msgspec
import pytest
from click.testing import CliRunner

import kitaru
from kitaru_store import (
    CorruptManifestError,
    ExecutionNotFoundError,
    InvalidIdError,
    InvalidNameError,
    KitaruError,
    NotAStoreError,
    ObjectNotFoundError,
    PickleNotAllowedError,
    ReadOnlyStoreError,
    Repository,
    SerializationError,
    StoreFormatError,
    StoreFullError,
    memory,
    serialization,
)
from kitaru_store import manifests as mf
from kitaru_store.backend import close_backend
from kitaru_store.cli import cli
from kitaru_store.errors import InvalidArtifactTypeError
from kitaru_store.names import validate_name

# --- a store with something in it, and a way to prove it did not change -------------------------


@kitaru.checkpoint
def put(name: str, value: Any, type: str = "output", tags: Any = None) -> str:
    kitaru.save(name, value, type=type, tags=tags)
    return name


@kitaru.flow
def saving(name: str, value: Any, type: str = "output", tags: Any = None) -> str:
    return put(name, value, type, tags).load()


@kitaru.checkpoint
def load_from(exec_id: Any, name: str) -> Any:
    return kitaru.load(exec_id, name)


@kitaru.flow
def loading(exec_id: Any, name: str) -> Any:
    return load_from(exec_id, name).load()


@kitaru.checkpoint
def put_random(name: str, size: int) -> None:
    kitaru.save(name, os.urandom(size))


@kitaru.flow
def saving_random(name: str, size: int) -> None:
    put_random(name, size)


@pytest.fixture
def populated(repo: Repository) -> Repository:
    handle = saving.run("greeting", {"hello": "world"})
    assert handle.wait() == "greeting"
    repo.pin("kept", repo.resolve_name(handle.exec_id, "greeting").object_id)
    return repo


def snapshot(store: Path) -> dict[str, dict[bytes, bytes]]:
    return harness.store_snapshot(store)


def files(root: Path) -> dict[str, str]:
    """Every file under ``root`` with a digest of its bytes (lock files excepted: flock state)."""
    out = {}
    for path in sorted(root.rglob("*")):
        rel = str(path.relative_to(root))
        if path.is_dir():
            out[rel] = "dir"
        elif path.name not in ("store.lock", "gc.lock", "lock.mdb"):
            out[rel] = hashlib.blake2b(path.read_bytes(), digest_size=16).hexdigest()
    return out


def failed_with(handle: Any, cls: type[BaseException]) -> BaseException:
    """The error that failed a flow (FlowHandle.wait() raises FlowExecutionError from it)."""
    assert handle.status == "failed"
    with pytest.raises(kitaru.FlowExecutionError) as excinfo:
        handle.wait()
    cause = excinfo.value.__cause__
    assert isinstance(cause, cls), repr(cause)
    assert isinstance(cause, KitaruError)
    return cause


def entry_names(repo: Repository, exec_id: str) -> set[str]:
    return {e.name for e in repo.get_execution(exec_id).entries}


# --- 1. invalid names ------------------------------------------------------------------------------

BAD_NAMES = {
    "empty": "",
    "blank": "   ",
    "too-long": "n" * 256,
    "nul": "a\x00b",
    "newline": "a\nb",
    "escape": "\x1b[31mred",
    "del": "a\x7f",
    "c1-csi": "a\x9b2Jb",  # U+009B: a terminal's CSI, the start of an escape sequence
    "c1-nel": "a\x85b",
    "bidi-override": "report\u202efdp.exe",  # displays as "reportexe.pdf"
    "bidi-isolate": "a\u2067b\u2069",
    "bidi-mark": "a\u200fb",
    "bom": "\ufeffname",
    "line-separator": "a\u2028b",
    "paragraph-separator": "a\u2029b",
    "slash": "a/b",
    "dotdot": "../../etc/passwd",
    "backslash": "a\\b",
    "padded": " name ",
}


@pytest.mark.parametrize("name", BAD_NAMES.values(), ids=BAD_NAMES.keys())
def test_invalid_names_are_refused_everywhere(populated: Repository, store_path: Path, name: str) -> None:
    repo = populated
    before = snapshot(store_path)
    oid = next(iter(repo.pins().values()))
    with pytest.raises(InvalidNameError):
        repo.pin(name, oid)
    with pytest.raises(InvalidNameError):
        repo.create_execution(name)
    with pytest.raises(InvalidNameError), repo.writer() as w:
        w.create_execution(name)
    with pytest.raises(InvalidNameError):
        kitaru.flow(name=name)(lambda: None)
    with pytest.raises(InvalidNameError):
        kitaru.checkpoint(name=name)(lambda: None)
    with pytest.raises(InvalidNameError):
        put.with_id(name)
    assert snapshot(store_path) == before  # none of it wrote anything

    # Inside a flow: the save is refused, nothing is stored under the name, the flow fails typed.
    for args in ((name, "value"), ("fine", "value", "output", [name])):
        handle = saving.run(*args)
        failed_with(handle, InvalidNameError)
        assert entry_names(repo, handle.exec_id) == set()
    assert repo.fsck().ok


@pytest.mark.parametrize(
    ("name", "shown"),
    [("a\x9bb", "\\u009b"), ("x\u202ey", "\\u202e"), ("\ufeffz", "\\ufeff"), ("\x1b[2J", "\\u001b")],
)
def test_a_refused_name_says_which_character(name: str, shown: str) -> None:
    for check in (lambda: validate_name(name, what="flow name"), lambda: memory.validate_key(name)):
        with pytest.raises(InvalidNameError) as excinfo:
            check()
        assert shown in excinfo.value.message
        assert all(c.isprintable() for c in excinfo.value.message)  # the message prints safely


def test_names_in_any_script_and_emoji_sequences_stay_valid() -> None:
    for name in ("日本語のフロー", "نموذج", "famille 👨‍👩‍👧", "señal", "naïve café", "x\u200cy"):
        assert validate_name(name, what="flow name") == name
        assert memory.validate_key(name) == name


# --- 2. unknown types --------------------------------------------------------------------------------


@pytest.mark.parametrize("bad_type", ["bogus", "", "OUTPUTS", 3, None], ids=str)
def test_unknown_artifact_types_are_refused(populated: Repository, store_path: Path, bad_type: Any) -> None:
    before = snapshot(store_path)
    with pytest.raises(InvalidArtifactTypeError):
        kitaru.checkpoint(type=bad_type)(lambda: None)
    assert snapshot(store_path) == before
    handle = saving.run("typed", "value", bad_type)
    failed_with(handle, InvalidArtifactTypeError)
    assert entry_names(populated, handle.exec_id) == set()


class Unsupported:
    pass


def _self_containing() -> list[Any]:
    loop: list[Any] = []
    loop.append(loop)
    return loop


def _deep() -> list[Any]:
    deep: list[Any] = []
    for _ in range(50_000):
        deep = [deep]
    return deep


UNSERIALIZABLE: dict[str, Callable[[], Any]] = {
    "object": Unsupported,
    "lambda": lambda: lambda: 1,
    "generator": lambda: (i for i in range(3)),
    "lock": threading.Lock,
    "object-key": lambda: {Unsupported(): 1},
    "nested": lambda: {"ok": [1, 2, {"deep": Unsupported()}]},
    "self-containing": _self_containing,
    "too-deep": _deep,
}


@pytest.mark.parametrize("make", UNSERIALIZABLE.values(), ids=UNSERIALIZABLE.keys())
def test_unserializable_values_are_refused(
    populated: Repository, store_path: Path, make: Callable[[], Any]
) -> None:
    repo = populated
    before = snapshot(store_path)
    with pytest.raises(SerializationError):
        repo.put_value(make())
    with pytest.raises(SerializationError), repo.writer() as w:
        w.put_value(make())
    assert snapshot(store_path) == before
    handle = saving.run("value", "placeholder")  # the flow itself is fine ...
    assert handle.wait() == "value"

    @kitaru.checkpoint
    def save_bad() -> None:
        kitaru.save("bad", make())

    @kitaru.flow
    def bad_flow() -> None:
        save_bad()

    handle = bad_flow.run()  # ... the save inside it is refused, typed, and stores nothing
    failed_with(handle, SerializationError)
    assert entry_names(repo, handle.exec_id) == set()


# --- 3. malformed and unknown ids ---------------------------------------------------------------------

MALFORMED_IDS = {
    "empty": "",
    "short": "abc",
    "not-hex": "zzzzzzzz",
    "too-long-uuid": "0" * 33,
    "object-length": "0" * 64,
    "path": "../../etc/passwd",
    "nul": "abcd\x00ef",
    "int": 1234,
    "none": None,
}


@pytest.mark.parametrize("bad", MALFORMED_IDS.values(), ids=MALFORMED_IDS.keys())
def test_malformed_execution_ids(populated: Repository, store_path: Path, bad: Any) -> None:
    repo = populated
    before = snapshot(store_path)
    client = kitaru.KitaruClient()
    for call in (
        lambda: repo.get_execution(bad),
        lambda: repo.resolve_name(bad, "greeting"),
        lambda: repo.update_execution(bad, status="completed"),
        lambda: repo.delete_execution(bad),
        lambda: client.executions.get(bad),
        lambda: client.artifacts.list(bad),
    ):
        with pytest.raises((InvalidIdError, ExecutionNotFoundError)):
            call()
    assert snapshot(store_path) == before
    handle = loading.run(bad, "greeting")  # kitaru.load() inside a checkpoint
    failed_with(handle, KitaruError)


def test_unknown_ids(populated: Repository, store_path: Path) -> None:
    repo = populated
    before = snapshot(store_path)
    unknown_exec, unknown_object = "f00d" * 8, "beef" * 16
    with pytest.raises(ExecutionNotFoundError):
        repo.get_execution(unknown_exec)
    with pytest.raises(ExecutionNotFoundError):
        kitaru.KitaruClient().executions.get(unknown_exec)
    with pytest.raises(ObjectNotFoundError):
        repo.get_bytes(unknown_object)
    with pytest.raises(ObjectNotFoundError):
        repo.pin("ghost", unknown_object)
    with pytest.raises(ObjectNotFoundError), repo.writer() as w:
        w.reference(unknown_object)
    result = CliRunner().invoke(cli, ["--store", str(store_path), "show", unknown_exec, "--json"])
    assert result.exit_code == 1
    assert json.loads(result.stdout)["error"] == "ExecutionNotFoundError"
    assert snapshot(store_path) == before
    failed_with(loading.run(unknown_exec, "greeting"), ExecutionNotFoundError)


# --- 4. values larger than the store can map; a full disk -------------------------------------------


def test_value_larger_than_the_map_limit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = tmp_path / "tiny"
    monkeypatch.setenv("KITARU_MAP_SIZE", str(1 << 20))
    monkeypatch.setenv("KITARU_MAP_LIMIT", str(4 << 20))
    monkeypatch.setenv("KITARU_STORE", str(store))
    try:
        repo = Repository.open(store)
        small = repo.put_value("fits")
        before = snapshot(store)
        with pytest.raises(StoreFullError):
            repo.put_bytes(os.urandom(8 << 20))  # chunked, and more than the map may ever hold
        assert snapshot(store) == before
        with pytest.raises(StoreFullError):
            saving.run("huge", os.urandom(6 << 20))  # as a flow input: the run cannot even start
        assert snapshot(store) == before
        handle = saving_random.run("huge", 6 << 20)
        failed_with(handle, StoreFullError)  # the checkpoint's commit failed as a whole ...
        assert entry_names(repo, handle.exec_id) == set()  # ... and named nothing
        assert repo.get_value(small.object_id) == "fits"
        assert repo.put_value("still writable").size > 0
        assert repo.fsck().ok
    finally:
        close_backend(str(store / "db"))


class _FailingCommit:
    """An LMDB write transaction whose commit fails like a full disk (ENOSPC)."""

    def __init__(self, txn: Any) -> None:
        self._txn = txn

    def commit(self) -> None:
        raise lmdb.DiskError("mdb_txn_commit: No space left on device")

    def __getattr__(self, name: str) -> Any:
        return getattr(self._txn, name)


def test_full_disk_enospc(populated: Repository, store_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Simulated: the commit fails with ENOSPC (no tmpfs here). Typed StoreFullError, nothing written."""
    from kitaru_store.backend import Backend

    repo = populated
    before = snapshot(store_path)
    real_begin = Backend._begin

    def begin(self: Backend, *, write: bool, buffers: bool = False) -> Any:
        txn = real_begin(self, write=write, buffers=buffers)
        return _FailingCommit(txn) if write else txn

    monkeypatch.setattr(Backend, "_begin", begin)
    with pytest.raises(StoreFullError) as excinfo:
        repo.put_value("no room")
    assert "free disk space" in (excinfo.value.hint or "")
    handle_error = None
    try:
        saving.run("no-room", "value")
    except StoreFullError as exc:  # the flow cannot even record its start
        handle_error = exc
    assert handle_error is not None
    monkeypatch.undo()
    assert snapshot(store_path) == before
    assert repo.put_value("room again").size > 0
    assert repo.fsck().ok


FILE_LIMIT_CHILD = """
import os, resource, signal, sys
from kitaru_store import Repository, StoreError
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # the kernel refuses the write instead of killing us
limit = os.path.getsize(os.path.join(sys.argv[1], "db", "data.mdb")) + 65536
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
repo = Repository.open(sys.argv[1])
try:
    repo.put_bytes(os.urandom(3 << 20))
except StoreError as exc:
    print(type(exc).__name__)
    print(exc.hint)
"""


def test_full_disk_file_size_limit(populated: Repository, store_path: Path) -> None:
    """Simulated with RLIMIT_FSIZE in a child: the kernel really refuses LMDB's writes. Typed error,
    nothing written, the store still fine."""
    before = snapshot(store_path)
    size_before = (store_path / "db" / "data.mdb").stat().st_size
    child = subprocess.run(
        [sys.executable, "-c", FILE_LIMIT_CHILD, str(store_path)],
        capture_output=True,
        text=True,
        timeout=120,
        env=harness.child_env(store_path),
    )
    assert child.returncode == 0, child.stderr
    kind, hint = child.stdout.splitlines()[:2]
    assert kind in ("StoreFullError", "StoreError"), child.stdout  # EIO: full, unless free space says not
    assert "changed nothing" in hint
    assert snapshot(store_path) == before
    assert (store_path / "db" / "data.mdb").stat().st_size >= size_before
    assert populated.fsck().ok
    assert populated.put_value("after the limit").size > 0


# --- 5. a newer format; a directory that is not a store --------------------------------------------


def test_store_of_a_newer_format(populated: Repository, store_path: Path) -> None:
    close_backend(str(store_path / "db"))
    config = json.loads((store_path / "config").read_text())
    config["format"] = 2
    (store_path / "config").write_text(json.dumps(config))
    before = files(store_path)
    for call in (
        lambda: Repository.open(store_path),
        lambda: Repository.open(store_path, readonly=True),
        lambda: kitaru.KitaruClient().executions.list(),
        lambda: saving.run("x", 1),
    ):
        with pytest.raises(StoreFormatError):
            call()
    result = CliRunner().invoke(cli, ["--store", str(store_path), "log", "--json"])
    assert result.exit_code == 1 and json.loads(result.stdout)["error"] == "StoreFormatError"
    assert files(store_path) == before


def test_manifest_of_a_newer_format(populated: Repository, store_path: Path) -> None:
    repo = populated
    exec_id = repo.list_executions()[0].exec_id
    newer = mf.encode_manifest(
        msgspec.structs.replace(repo.get_execution(exec_id), format_version=mf.MANIFEST_FORMAT + 1)
    )
    repo._backend().update(lambda wt: wt.put(b"manifests", bytes.fromhex(exec_id), newer))
    before = snapshot(store_path)
    for call in (
        lambda: repo.get_execution(exec_id),
        lambda: kitaru.KitaruClient().executions.get(exec_id),
        lambda: repo.update_execution(exec_id, status="failed"),
        lambda: repo.gc(grace=0),
    ):
        with pytest.raises(StoreFormatError) as excinfo:
            call()
        assert not isinstance(excinfo.value, CorruptManifestError)
    assert snapshot(store_path) == before


@pytest.mark.parametrize("what", ["directory", "file", "garbled-config", "foreign-config"])
def test_not_a_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, what: str) -> None:
    target = tmp_path / "elsewhere"
    if what == "file":
        target.write_text("just a file\n")
    else:
        target.mkdir()
        (target / "notes.txt").write_text("my files\n")
        if what == "garbled-config":
            (target / "config").write_text("{not json")
        elif what == "foreign-config":
            (target / "config").write_text(json.dumps({"kind": "something-else", "format": 1}))
    before = files(target) if target.is_dir() else target.read_bytes()
    monkeypatch.setenv("KITARU_STORE", str(target))
    for call in (
        lambda: Repository.open(target),
        lambda: Repository.open(target, readonly=True),
        lambda: kitaru.KitaruClient().executions.list(),
        lambda: saving.run("x", 1),
    ):
        with pytest.raises(NotAStoreError):
            call()
    result = CliRunner().invoke(cli, ["--store", str(target), "log", "--json"])
    if what == "file":
        assert result.exit_code == 2  # the CLI refuses a file as --store before opening anything
    else:
        assert result.exit_code == 1 and json.loads(result.stdout)["error"] == "NotAStoreError"
    assert (files(target) if target.is_dir() else target.read_bytes()) == before  # nothing created


# --- 6. read-only stores ------------------------------------------------------------------------------


def test_store_opened_read_only_refuses_every_write(populated: Repository, store_path: Path) -> None:
    before = snapshot(store_path)
    ro = Repository.open(store_path, readonly=True)
    oid = next(iter(ro.pins().values()))
    exec_id = ro.list_executions()[0].exec_id
    for call in (
        lambda: ro.put_value("x"),
        lambda: ro.create_execution("flow"),
        lambda: ro.update_execution(exec_id, status="failed"),
        lambda: ro.delete_execution(exec_id),
        lambda: ro.pin("again", oid),
        lambda: ro.unpin("kept"),
        lambda: ro.gc(grace=0),
    ):
        with pytest.raises(ReadOnlyStoreError):
            call()
    assert ro.get_value(oid) == {"hello": "world"}
    assert snapshot(store_path) == before


# Run in a child: drop the capabilities that let root ignore file permissions (CAP_DAC_OVERRIDE,
# CAP_DAC_READ_SEARCH, CAP_FOWNER), so that a store made read-only with chmod really is, even for
# root (the tests run as root here). A non-root user gets the same from chmod alone.
READ_ONLY_CHILD = """
import ctypes, json, sys
if __import__("os").geteuid() == 0:
    libc = ctypes.CDLL(None, use_errno=True)
    class Header(ctypes.Structure):
        _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]
    class Data(ctypes.Structure):
        _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                    ("inheritable", ctypes.c_uint32)]
    header, data = Header(0x20080522, 0), (Data * 2)()
    assert libc.capget(ctypes.byref(header), data) == 0
    for caps in data:
        caps.effective &= ~0b1110
        caps.permitted &= ~0b1110
    assert libc.capset(ctypes.byref(header), data) == 0, ctypes.get_errno()
from click.testing import CliRunner
from kitaru_store import KitaruError, Repository
from kitaru_store.cli import cli
store, exec_id = sys.argv[1], sys.argv[2]
out = {}
try:
    open(store + "/db/data.mdb", "r+b")
    out["writable"] = True
except PermissionError:
    out["writable"] = False
try:
    Repository.open(store)
except KitaruError as exc:
    out["open"] = type(exc).__name__
ro = Repository.open(store, readonly=True)
out["read"] = ro.get_value(ro.resolve_name(exec_id, "greeting").object_id)
out["fsck"] = ro.fsck().ok
try:
    ro.put_value("x")
except KitaruError as exc:
    out["write"] = type(exc).__name__
res = CliRunner().invoke(cli, ["--store", store, "cat", exec_id + ":greeting", "--json"])
out["cli_cat"] = json.loads(res.stdout)["value"] if res.exit_code == 0 else res.stdout
res = CliRunner().invoke(cli, ["--store", store, "gc", "--json"])
out["cli_gc"] = json.loads(res.stdout).get("error")
print(json.dumps(out))
"""


def test_store_without_write_permission(populated: Repository, store_path: Path) -> None:
    exec_id = populated.list_executions()[0].exec_id
    close_backend(str(store_path / "db"))
    before_files = files(store_path)
    before = snapshot(store_path)
    close_backend(str(store_path / "db"))
    with _read_only(store_path):
        child = subprocess.run(
            [sys.executable, "-c", READ_ONLY_CHILD, str(store_path), exec_id],
            capture_output=True,
            text=True,
            timeout=120,
            env=harness.child_env(store_path),
        )
    assert child.returncode == 0, child.stderr
    out = json.loads(child.stdout.splitlines()[-1])
    assert out == {
        "writable": False,
        "open": "ReadOnlyStoreError",  # a writable open says why, typed
        "read": {"hello": "world"},  # readonly=True reads (LMDB without its lock file)
        "fsck": True,
        "write": "ReadOnlyStoreError",
        "cli_cat": {"hello": "world"},  # the CLI falls back to a read-only open for reads
        "cli_gc": "ReadOnlyStoreError",
    }, out
    assert files(store_path) == before_files
    assert snapshot(store_path) == before


class _read_only:
    """chmod -R a-w on a store, restored on exit."""

    def __init__(self, root: Path) -> None:
        self.modes = {p: stat.S_IMODE(p.stat().st_mode) for p in [root, *root.rglob("*")]}

    def __enter__(self) -> None:
        for p, mode in self.modes.items():
            p.chmod(mode & ~0o222)

    def __exit__(self, *exc: object) -> None:
        for p, mode in sorted(self.modes.items(), key=lambda kv: len(kv[0].parts)):
            p.chmod(mode)


# --- 7. pickle never loads without opt-in ----------------------------------------------------------


class Detonator:
    """Unpickling it creates a file: proof that code from the store ran."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (self.marker, "w"))


def test_pickles_never_load_without_opt_in(
    populated: Repository, store_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = populated
    monkeypatch.delenv("KITARU_ALLOW_PICKLE", raising=False)
    marker = tmp_path / "code-ran"
    # Stored two ways: saved by a flow that opted in, and planted raw (no opt-in anywhere).
    planted = repo.put_bytes(serialization.TAG_PICKLE + pickle.dumps(Detonator(str(marker))))

    @kitaru.checkpoint
    def save_pickled() -> None:
        kitaru.save("opaque", Detonator(str(marker)), allow_pickle=True)

    @kitaru.flow
    def pickling() -> None:
        save_pickled()

    exec_id = pickling.run().exec_id
    saved = repo.resolve_name(exec_id, "opaque").object_id
    assert not marker.exists()
    for oid in (saved, planted):
        with pytest.raises(PickleNotAllowedError):
            repo.get_value(oid)
        with pytest.raises(PickleNotAllowedError):
            serialization.deserialize(repo.get_bytes(oid))
    with pytest.raises(PickleNotAllowedError):
        kitaru.KitaruClient().executions.get(exec_id).artifact("opaque").load()
    with pytest.raises(PickleNotAllowedError):
        kitaru.KitaruClient().artifacts.list(exec_id)[0].load()
    failed_with(loading.run(exec_id, "opaque"), PickleNotAllowedError)  # kitaru.load()
    for target in (f"{exec_id}:opaque", planted):
        result = CliRunner().invoke(
            cli, ["--store", str(store_path), "cat", target, "--json"], env={"KITARU_ALLOW_PICKLE": "1"}
        )
        assert result.exit_code == 1  # the CLI needs --allow-pickle, whatever the environment says
        assert json.loads(result.stdout)["error"] == "PickleNotAllowedError"
    assert not marker.exists()  # no code from the store ran
    # With the opt-in it does load (and runs the pickle's code: that is what the opt-in means).
    repo.get_value(planted, allow_pickle=True)
    assert marker.exists()


def _stored_ext(code: int, tree: Any) -> bytes:
    return serialization.TAG_MSGPACK + msgspec.msgpack.encode(
        msgspec.msgpack.Ext(code, msgspec.msgpack.encode(tree))
    )


@pytest.mark.parametrize(
    ("code", "tree"),
    [
        (serialization.X_OBJECT, ["dataclass", "os:system", {"command": "touch {marker}"}]),
        (serialization.X_OBJECT, ["struct", "subprocess:Popen", {"args": ["touch", "{marker}"]}]),
        (serialization.X_OBJECT, ["pydantic", "builtins:eval", {"source": "open('{marker}', 'w')"}]),
        (serialization.X_ENUM, ["subprocess:Popen", ["touch", "{marker}"]]),
        (serialization.X_ENUM, ["builtins:open", "{marker}"]),
    ],
    ids=["dataclass-os.system", "struct-Popen", "pydantic-eval", "enum-Popen", "enum-open"],
)
def test_crafted_class_references_never_call_anything(
    repo: Repository, tmp_path: Path, code: int, tree: Any
) -> None:
    """A tampered value naming a function or a foreign class: loaded as data or refused, never called."""
    marker = tmp_path / "code-ran"
    text = json.dumps(tree).replace("{marker}", str(marker))
    oid = repo.put_bytes(_stored_ext(code, json.loads(text)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # "class unavailable: loaded as fields"
        try:
            value = repo.get_value(oid)
        except SerializationError:
            value = None
    assert not marker.exists(), value
    assert value is None or isinstance(value, (dict, list, str))


# --- 8. permissions ---------------------------------------------------------------------------------

PERMISSIONS_CHILD = """
import os, sys
os.umask(0)  # the most permissive umask: the store must still be owner-only
sys.path.insert(0, sys.argv[2])
import workloads
from kitaru_store import Repository
repo = Repository.open(sys.argv[1])
rng = __import__("random").Random(1)
journal = workloads.Journal(os.path.join(sys.argv[3], "journal"))
phases = workloads.Phases(None)
workloads.run_one(rng, "flows", journal, phases, 0)
repo.put_bytes(os.urandom(100_000))
report = repo.gc(grace=0, compact=True)
assert report.compacted, report.compact_error
print("ok")
"""


def test_store_files_are_readable_by_their_owner_only(tmp_path: Path) -> None:
    store = tmp_path / "private"
    child = subprocess.run(
        [sys.executable, "-c", PERMISSIONS_CHILD, str(store), str(harness.HERE), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        env=harness.child_env(store),
    )
    assert child.returncode == 0, child.stderr
    seen = set()
    for path in [store, *store.rglob("*")]:
        mode = stat.S_IMODE(path.stat().st_mode)
        if path.is_dir():
            assert mode == 0o700, (path, oct(mode))
        else:
            assert mode & 0o077 == 0, (path, oct(mode))  # 0600 (or stricter)
        seen.add(str(path.relative_to(store)))
    assert {
        "config",
        "db",
        "db/data.mdb",
        "db/lock.mdb",
        "locks",
        "locks/store.lock",
        "locks/gc.lock",
    } <= seen


# --- helpers used above ------------------------------------------------------------------------------


def test_helpers_notice_a_change(populated: Repository, store_path: Path) -> None:
    """The snapshot the tests above compare would see a one-byte change anywhere."""
    before = snapshot(store_path)
    populated.put_value("one more")
    assert snapshot(store_path) != before
