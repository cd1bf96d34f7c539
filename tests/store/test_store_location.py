"""Where the store lives, how it is created, what is refused, and name validation."""

from __future__ import annotations

import errno
import json
import os
import stat
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from store_helpers import ROOT, SUBPROCESS_TIMEOUT, commit_execution, snapshot

from kitaru_store import (
    InvalidNameError,
    KitaruError,
    NotAStoreError,
    ReadOnlyStoreError,
    Repository,
    StoreFormatError,
    StoreNotFoundError,
    layout,
    locks,
)
from kitaru_store import config as cfg
from kitaru_store.backend import close_backend
from kitaru_store.names import validate_name


@pytest.fixture
def opened() -> Iterator[list[Path]]:
    """Store roots opened by a test outside KITARU_STORE; their LMDB handles are closed afterwards."""
    roots: list[Path] = []
    yield roots
    for root in roots:
        close_backend(str(root / layout.DB_DIR))


@pytest.fixture
def no_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No KITARU_STORE; HOME and XDG_DATA_HOME inside tmp_path; cwd a fresh directory."""
    monkeypatch.delenv(cfg.ENV_VAR, raising=False)
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    return tmp_path


# --- locate: explicit > env > project > user --------------------------------------------------


def test_explicit_path_wins_over_everything(no_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (no_env / "work" / cfg.PROJECT_DIR).mkdir()
    monkeypatch.setenv(cfg.ENV_VAR, str(no_env / "from-env"))
    loc = cfg.locate(no_env / "explicit")
    assert loc.source == "explicit"
    assert loc.path == no_env / "explicit"


def test_env_var_wins_over_project_and_user(no_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (no_env / "work" / cfg.PROJECT_DIR).mkdir()
    monkeypatch.setenv(cfg.ENV_VAR, str(no_env / "from-env"))
    loc = cfg.locate()
    assert (loc.source, loc.path) == ("env", no_env / "from-env")
    # An empty explicit path means "not given".
    assert cfg.locate("").source == "env"


def test_nearest_project_dir_walking_up_from_cwd(no_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    outer = no_env / "proj"
    inner = outer / "sub"
    nested = inner / "a" / "b" / "c"
    nested.mkdir(parents=True)
    (outer / cfg.PROJECT_DIR).mkdir()
    monkeypatch.chdir(nested)
    loc = cfg.locate()
    assert (loc.source, loc.path) == ("project", outer / cfg.PROJECT_DIR)
    # A nearer .kitaru/ shadows the outer one.
    (inner / cfg.PROJECT_DIR).mkdir()
    assert cfg.locate().path == inner / cfg.PROJECT_DIR
    # A file named .kitaru is not a project store.
    (nested / cfg.PROJECT_DIR).write_text("not a directory")
    assert cfg.locate().path == inner / cfg.PROJECT_DIR


def test_project_store_is_used_by_open(no_env: Path, monkeypatch: pytest.MonkeyPatch, opened) -> None:
    project = no_env / "proj"
    nested = project / "src" / "pkg"
    nested.mkdir(parents=True)
    (project / cfg.PROJECT_DIR).mkdir()
    monkeypatch.chdir(nested)
    repo = Repository.open()
    opened.append(repo.root)
    assert repo.root == project / cfg.PROJECT_DIR
    oid = repo.put_value("in the project").object_id
    assert (project / cfg.PROJECT_DIR / layout.CONFIG_FILE).is_file()
    assert Repository.open(project / cfg.PROJECT_DIR).get_value(oid) == "in the project"


def test_per_user_dir_from_xdg_data_home(no_env: Path, opened) -> None:
    loc = cfg.locate()
    assert loc.source == "user"
    assert loc.path == no_env / "xdg" / "kitaru" / "store"
    repo = Repository.open()
    opened.append(repo.root)
    repo.put_value(1)
    assert (no_env / "xdg" / "kitaru" / "store" / layout.CONFIG_FILE).is_file()
    assert not any((no_env / "home").iterdir())


def test_per_user_dir_defaults_under_home(no_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("XDG_DATA_HOME")
    expected = no_env / "home" / ".local" / "share" / "kitaru" / "store"
    if os.uname().sysname == "Darwin":  # pragma: no cover - the suite runs on Linux
        expected = no_env / "home" / "Library" / "Application Support" / "kitaru" / "store"
    assert cfg.locate().path == expected
    assert cfg.locate().source == "user"


def test_locate_creates_nothing(no_env: Path) -> None:
    cfg.locate()
    cfg.locate(no_env / "explicit")
    assert not (no_env / "xdg").exists()
    assert not (no_env / "explicit").exists()


# --- creation, refusal ------------------------------------------------------------------------


def test_store_created_on_first_open_for_writing(store_path: Path) -> None:
    assert not store_path.exists()
    repo = Repository.open()
    assert repo.root == store_path
    oid = repo.put_value({"a": 1}).object_id
    config = json.loads((store_path / layout.CONFIG_FILE).read_text())
    assert config["kind"] == "kitaru-store"
    assert config["format"] == cfg.STORE_FORMAT
    assert len(config["store_id"]) == 32
    assert (store_path / layout.DB_DIR / "data.mdb").is_file()
    # Opening again finds the same store (same id), and the data.
    again = Repository.open(store_path)
    assert again.config["store_id"] == config["store_id"]
    assert again.get_value(oid) == {"a": 1}


def test_a_store_copied_without_its_locks_directory_opens_and_gets_a_new_one(
    tmp_path: Path, opened: list[Path]
) -> None:
    """Lock files hold no data: a store copied without ``locks/`` (or whose ``locks/`` was
    removed) opens, for reading and writing, with a new one."""
    root = tmp_path / "store"
    opened.append(root)
    repo = Repository.open(root)
    oid = repo.put_value({"kept": True}).object_id
    repo.close()
    close_backend(str(root / layout.DB_DIR))
    for f in (root / layout.LOCK_DIR).iterdir():
        f.unlink()
    (root / layout.LOCK_DIR).rmdir()
    again = Repository.open(root)
    assert again.get_value(oid) == {"kept": True}
    assert again.put_value("more").object_id
    assert (root / layout.LOCK_DIR / layout.STORE_LOCK).is_file()


def test_a_lock_directory_that_cannot_be_made_is_a_typed_error(tmp_path: Path) -> None:
    """Where the lock file's directory cannot be created, the error says which file, typed."""
    blocker = tmp_path / "locks"
    blocker.write_text("a file where the locks directory would be")
    lock = locks.FileLock(str(blocker / "sub" / "store.lock"))
    with pytest.raises(KitaruError, match="cannot create the lock file"):
        lock.acquire(exclusive=False)


@pytest.mark.parametrize("kwargs", [{"create": False}, {"readonly": True}], ids=["create=False", "readonly"])
def test_missing_store_is_not_created_and_says_where_it_looked(
    store_path: Path, kwargs: dict[str, bool]
) -> None:
    with pytest.raises(StoreNotFoundError) as info:
        Repository.open(**kwargs)
    err = info.value
    assert err.path == str(store_path)
    assert str(store_path) in str(err)
    assert f"${cfg.ENV_VAR}={store_path}" in str(err)  # where the path came from
    assert err.hint and "looked at" in err.hint
    assert not store_path.exists()


def test_missing_user_store_message_lists_every_place_looked(no_env: Path) -> None:
    with pytest.raises(StoreNotFoundError) as info:
        Repository.open(create=False)
    text = str(info.value)
    assert f"${cfg.ENV_VAR} (unset)" in text
    assert f"{cfg.PROJECT_DIR}/ in {no_env / 'work'}" in text
    assert str(no_env / "xdg" / "kitaru" / "store") in text
    assert not (no_env / "xdg").exists()


def test_non_empty_directory_without_config_is_not_a_store(tmp_path: Path) -> None:
    target = tmp_path / "someone-elses"
    target.mkdir()
    (target / "notes.txt").write_text("keep me")
    with pytest.raises(NotAStoreError) as info:
        Repository.open(target)
    assert info.value.path == str(target)
    assert "non-empty directory" in str(info.value)
    assert sorted(p.name for p in target.iterdir()) == ["notes.txt"]  # nothing written into it


def test_a_config_that_appears_while_the_directory_is_scanned_is_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another process creates the store between the config check and the scan of its entries."""
    target = tmp_path / "racing"
    (target / layout.DB_DIR).mkdir(parents=True)
    theirs = {"kind": "kitaru-store", "format": cfg.STORE_FORMAT, "store_id": "theirs"}
    real_iterdir = Path.iterdir

    def iterdir_while_created(self: Path) -> Iterator[Path]:
        if self == target and not (target / layout.CONFIG_FILE).exists():
            (target / layout.CONFIG_FILE).write_text(json.dumps(theirs))  # init_store links it now
        return real_iterdir(self)

    monkeypatch.setattr(Path, "iterdir", iterdir_while_created)
    assert cfg.read_config(target) == theirs  # theirs, not "a non-empty directory"


def test_a_file_is_not_a_store(tmp_path: Path) -> None:
    target = tmp_path / "file"
    target.write_text("x")
    with pytest.raises(NotAStoreError):
        Repository.open(target)


def test_empty_directory_becomes_a_store(tmp_path: Path, opened) -> None:
    target = tmp_path / "empty"
    target.mkdir()
    repo = Repository.open(target)
    opened.append(target)
    assert (target / layout.CONFIG_FILE).is_file()
    assert repo.get_value(repo.put_value("x").object_id) == "x"


def test_newer_store_format_is_refused(repo: Repository, store_path: Path) -> None:
    config_file = store_path / layout.CONFIG_FILE
    data = json.loads(config_file.read_text())
    data["format"] = cfg.STORE_FORMAT + 1
    config_file.write_text(json.dumps(data))
    with pytest.raises(StoreFormatError) as info:
        Repository.open(store_path)
    assert str(cfg.STORE_FORMAT + 1) in str(info.value)
    assert info.value.hint and "upgrade" in info.value.hint


def test_foreign_or_garbled_config_is_not_a_store(store_path: Path) -> None:
    Repository.open()
    config_file = store_path / layout.CONFIG_FILE
    config_file.write_text(json.dumps({"kind": "something-else", "format": 1}))
    with pytest.raises(NotAStoreError):
        Repository.open(store_path)
    config_file.write_text("{not json")
    with pytest.raises(NotAStoreError):
        Repository.open(store_path)


def test_store_files_are_owner_only(repo: Repository, store_path: Path) -> None:
    repo.put_value("secret")
    repo.gc(grace=0)  # creates the gc lock file too
    seen = 0
    for path in [store_path, *store_path.rglob("*")]:
        mode = stat.S_IMODE(path.stat().st_mode)
        if path.is_dir():
            assert mode == 0o700, (path, oct(mode))
        else:
            assert mode == 0o600, (path, oct(mode))
        seen += 1
    assert seen >= 7  # root, config, db/, data.mdb, lock.mdb, locks/, store.lock, gc.lock


def test_compacted_data_file_stays_owner_only(repo: Repository, store_path: Path) -> None:
    old = os.umask(0o022)
    try:
        for i in range(50):
            repo.put_bytes(os.urandom(2000) + bytes([i]))
        report = repo.gc(grace=0, compact=True)
    finally:
        os.umask(old)
    assert report.compacted
    mode = stat.S_IMODE((store_path / layout.DB_DIR / "data.mdb").stat().st_mode)
    assert mode == 0o600, oct(mode)


def test_readonly_open_of_existing_store(repo: Repository, store_path: Path) -> None:
    oid = repo.put_value("written").object_id
    ro = Repository.open(store_path, readonly=True)
    assert ro.get_value(oid) == "written"
    assert ro.list_executions() == []
    with pytest.raises(ReadOnlyStoreError) as info:
        ro.put_value("not allowed")
    assert info.value.hint
    with pytest.raises(ReadOnlyStoreError):
        ro.pin("p", oid)
    with pytest.raises(ReadOnlyStoreError):
        ro.create_execution("flow")
    assert repo.pins() == {}
    assert repo.count_executions() == 0
    # The writable repository in the same process is unaffected.
    repo.put_value("still writable")


# --- names ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    ["research", "a", "x" * 255, "my artifact v1.2", "ns:name_2-b", "名前", "emoji 🚀"],
)
def test_valid_names(name: str) -> None:
    assert validate_name(name) == name


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("x" * 256, "longer than 255"),
        ("a\nb", "control"),
        ("tab\there", "control"),
        ("nul\x00", "control"),
        ("del\x7f", "control"),
        ("a/b", "path separator"),
        ("a\\b", "path separator"),
        (" padded", "white space"),
        ("padded ", "white space"),
    ],
)
def test_invalid_names(name: str, problem: str) -> None:
    with pytest.raises(InvalidNameError) as info:
        validate_name(name, what="artifact name", exec_id="e" * 32)
    err = info.value
    assert problem in err.message
    assert err.message.startswith("artifact name")
    assert err.exec_id == "e" * 32
    assert err.name == name[:80]
    assert err.hint


def test_non_string_name_is_invalid() -> None:
    with pytest.raises(InvalidNameError, match="must be a string"):
        validate_name(42)


def test_store_rejects_invalid_flow_and_pin_names(repo: Repository) -> None:
    with pytest.raises(InvalidNameError):
        repo.create_execution("bad/flow")
    oid = repo.put_value(1).object_id
    with pytest.raises(InvalidNameError):
        repo.pin("", oid)
    assert repo.count_executions() == 0
    assert repo.pins() == {}


# --- read-only open in a fresh process ------------------------------------------------------------


def run_python(script: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", script, *args],
        capture_output=True,
        text=True,
        timeout=SUBPROCESS_TIMEOUT,
        cwd=ROOT,
    )


READONLY_SCRIPT = r"""
import json, sys
from kitaru_store import ReadOnlyStoreError, Repository

path, exec_id, oid = sys.argv[1:4]
repo = Repository.open(path, readonly=True)
out = {
    "value": repo.get_value(oid),
    "executions": [s.exec_id for s in repo.list_executions()],
    "by_flow": [s.exec_id for s in repo.list_executions(flow="ro-flow")],
    "count": repo.count_executions(),
}
entry = repo.resolve_name(exec_id, "greeting")
out["resolved"] = entry.object_id
out["resolved_value"] = repo.get_value(entry.object_id)
out["pins"] = repo.pins()
for what, attempt in [
    ("put_value", lambda: repo.put_value("not allowed")),
    ("create_execution", lambda: repo.create_execution("nope")),
    ("pin", lambda: repo.pin("nope", oid)),
]:
    try:
        attempt()
    except ReadOnlyStoreError as exc:
        out[what] = type(exc).__name__
    else:
        out[what] = "succeeded"
out["after"] = repo.get_value(oid)  # reads still work after the refused writes
out["fsck_ok"] = repo.fsck().ok
print(json.dumps(out))
"""


def test_readonly_open_in_a_fresh_process_reads_and_refuses_writes(
    repo: Repository, store_path: Path
) -> None:
    exec_id = commit_execution(repo, "ro-flow", {"greeting": "hello", "n": 42})
    other = commit_execution(repo, "other-flow", {"x": [1, 2, 3]})
    oid = repo.put_value({"standalone": True}).object_id
    repo.pin("keep", oid)
    before = snapshot(repo)

    proc = run_python(READONLY_SCRIPT, str(store_path), exec_id, oid)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["value"] == {"standalone": True}
    assert sorted(out["executions"]) == sorted([exec_id, other])
    assert out["by_flow"] == [exec_id]
    assert out["count"] == 2
    assert out["resolved"] == repo.resolve_name(exec_id, "greeting").object_id
    assert out["resolved_value"] == "hello"
    assert out["pins"] == {"keep": oid}
    assert out["put_value"] == out["create_execution"] == out["pin"] == "ReadOnlyStoreError"
    assert out["after"] == {"standalone": True}
    assert out["fsck_ok"] is True
    assert snapshot(repo) == before


# --- read-only open when the lock file cannot be opened -------------------------------------------


@pytest.mark.parametrize("code", [errno.EROFS, errno.EACCES], ids=["read-only-fs", "no-permission"])
def test_readonly_open_when_the_lock_file_cannot_be_opened(
    repo: Repository, store_path: Path, monkeypatch: pytest.MonkeyPatch, code: int
) -> None:
    """A store on a read-only filesystem (EROFS, not a PermissionError) still opens read-only."""
    oid = repo.put_value("on a read-only filesystem").object_id
    close_backend(str(store_path / layout.DB_DIR))
    real_open = os.open

    def refuse_lock(path, flags, *args):
        if os.fspath(path).endswith("store.lock"):
            raise OSError(code, os.strerror(code), path)
        return real_open(path, flags, *args)

    monkeypatch.setattr(locks.os, "open", refuse_lock)
    ro = Repository.open(store_path, readonly=True)
    assert ro.get_value(oid) == "on a read-only filesystem"
    with pytest.raises(ReadOnlyStoreError):
        ro.put_value("refused")
    # A writable open never goes ahead without the store lock.
    with pytest.raises((OSError, KitaruError)):
        Repository.open(store_path)


# --- a config temp file does not make a directory "not a store" -----------------------------------


def test_directory_with_only_a_config_temp_file_becomes_a_store(tmp_path: Path, opened: list[Path]) -> None:
    root = tmp_path / "being-created"
    root.mkdir()
    tmp = root / f".{layout.CONFIG_FILE}.{os.getpid() + 1}.{uuid.uuid4().hex[:8]}"
    tmp.write_text('{"kind": "kitaru-st')  # another process, half-way through writing its config
    assert cfg.read_config(root) is None
    opened.append(root)
    repo = Repository.open(root)
    assert repo.config["kind"] == "kitaru-store"
    oid = repo.put_value("works").object_id
    assert repo.get_value(oid) == "works"
    assert Repository.open(root).config == repo.config

    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "configuration.txt").write_text("not ours")
    with pytest.raises(NotAStoreError):
        Repository.open(foreign)
