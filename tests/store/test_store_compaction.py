"""Compaction: in-process threads go on through it, a full disk is refused first, failures clean up."""

from __future__ import annotations

import os
import select
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from store_helpers import ROOT, SUBPROCESS_TIMEOUT, commit_execution

from kitaru_store import Repository, StoreFullError, compaction
from kitaru_store.backend import Backend


def test_compaction_while_other_threads_read_and_commit(repo: Repository) -> None:
    kept = {repo.put_value(f"kept {i}" * 50).object_id: f"kept {i}" * 50 for i in range(50)}
    for i, oid in enumerate(kept):
        repo.pin(f"kept-{i}", oid)
    for _ in range(20):
        garbage = repo.put_value(os.urandom(20000))
        assert garbage.size
    failures: list[BaseException] = []
    committed: list[tuple[str, str]] = []
    stop = threading.Event()

    def reader() -> None:
        while not stop.is_set():
            try:
                for oid, value in kept.items():
                    assert repo.get_value(oid) == value
                repo.list_executions(limit=5)
            except BaseException as exc:
                failures.append(exc)
                return

    def writer(n: int) -> None:
        i = 0
        while not stop.is_set():
            try:
                value = f"writer {n} value {i}"
                committed.append((commit_execution(repo, f"w{n}", {"v": value}), value))
                i += 1
            except BaseException as exc:
                failures.append(exc)
                return

    threads = [threading.Thread(target=reader) for _ in range(3)]
    threads += [threading.Thread(target=writer, args=(n,)) for n in range(2)]
    for t in threads:
        t.start()
    reports = []
    try:
        for _ in range(4):
            time.sleep(0.2)
            reports.append(repo.gc(grace=0, compact=True))
    finally:
        stop.set()
        for t in threads:
            t.join(60)
    assert not failures, failures[:3]
    assert all(r.compacted for r in reports), [r.compact_error for r in reports]
    assert len(committed) > 10
    for exec_id, value in committed:
        assert repo.get_value(repo.resolve_name(exec_id, "v").object_id) == value
    assert repo.fsck().ok


def test_compaction_refused_when_the_disk_cannot_hold_the_copy(
    repo: Repository, store_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    oid = repo.put_value(os.urandom(200_000)).object_id
    repo.pin("big", oid)
    data = store_path / "db" / "data.mdb"
    inode = data.stat().st_ino
    monkeypatch.setattr(compaction, "free_bytes", lambda path: 1 << 20)
    with pytest.raises(StoreFullError, match="needs about") as excinfo:
        repo.gc(grace=0, compact=True)
    assert "free disk space" in (excinfo.value.hint or "")
    assert data.stat().st_ino == inode and not (store_path / "db.compact").exists()
    assert len(repo.get_value(oid)) == 200_000
    monkeypatch.undo()
    assert repo.gc(grace=0, compact=True).compacted


@pytest.mark.parametrize("failure", [KeyboardInterrupt, OSError])
def test_failed_copy_is_removed_and_the_store_goes_on(
    repo: Repository, store_path: Path, monkeypatch: pytest.MonkeyPatch, failure: type[BaseException]
) -> None:
    oid = repo.put_value("still here").object_id
    repo.pin("here", oid)
    real = Backend.copy_compacted

    def half_copy(self: Backend, dest_dir: str) -> None:
        real(self, dest_dir)
        with open(os.path.join(dest_dir, "data.mdb"), "r+b") as f:
            f.truncate(f.seek(0, 2) // 2)
        raise failure("the copy failed half way")

    monkeypatch.setattr(Backend, "copy_compacted", half_copy)
    with pytest.raises(failure):
        repo.gc(grace=0, compact=True)
    assert not (store_path / "db.compact").exists()
    assert repo.get_value(oid) == "still here"
    assert repo.get_value(repo.put_value("a write after it").object_id) == "a write after it"
    assert repo.fsck().ok


FULL_DISK_CHILD = """
import os, resource, signal, sys
from kitaru_store import Repository
from kitaru_store.errors import KitaruError
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # the kernel refuses the write instead of killing us
data = os.path.join(sys.argv[1], "db", "data.mdb")
limit = os.path.getsize(data)  # the file cannot grow by a byte: a full disk, for this file
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
repo = Repository.open(sys.argv[1])
for what, step in (
    ("delete", lambda: [repo.delete_execution(s.exec_id) for s in repo.list_executions(limit=1000)]),
    ("gc", lambda: repo.gc(grace=0)),
    ("put", lambda: repo.put_bytes(os.urandom(1 << 20))),
):
    try:
        step()
        print(what, "ok")
    except KitaruError as exc:
        print(what, type(exc).__name__)
"""


def test_on_a_full_disk_deleting_and_gc_free_space(repo: Repository, store_path: Path) -> None:
    """RLIMIT_FSIZE in a child: every write past the file's current end fails (EFBIG), as on a
    full disk. Deleting executions and gc still work, from the free pages of an earlier gc; a
    write that needs more room fails typed. (Without free pages, a delete fails typed too.)"""
    for i in range(30):
        commit_execution(repo, "f", {"v": os.urandom(30_000), "w": f"small {i}"})
    repo.put_value(os.urandom(300_000))
    repo.gc(grace=0)  # the garbage value's pages are free pages of the file now
    env = dict(os.environ, KITARU_STORE=str(store_path))
    child = subprocess.run(
        [sys.executable, "-c", FULL_DISK_CHILD, str(store_path)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert child.returncode == 0, child.stderr
    assert child.stdout.split("\n")[:3] == ["delete ok", "gc ok", "put StoreFullError"], child.stdout
    assert repo.count_executions() == 0
    assert repo.fsck().ok


# A real full file system: a small tmpfs in a private mount namespace (unshare maps the user to
# root inside it, so this needs no privilege outside). The store fills it until not even a tiny
# write fits; deleting every execution and gc must still work (LMDB's copy-on-write keeps the
# pages the last commit replaced free for the next one), and so must gc's lock file.
TMPFS_CHILD = """
import os, sys
from store_helpers import commit_execution
from kitaru_store import Repository
from kitaru_store.errors import StoreFullError
repo = Repository.open(os.path.join(sys.argv[1], "store"))
n = 0
for size in (200_000, 20_000, 1_000, 10):  # down to the last free page
    misses = 0
    while misses < 3:
        try:
            commit_execution(repo, "fill", {f"v{n}": os.urandom(size)})
            n += 1
        except StoreFullError:
            misses += 1
st = os.statvfs(sys.argv[1])
print("full", n > 20, st.f_bavail * st.f_frsize < 64 * 1024)
for s in repo.list_executions(limit=10_000):
    repo.delete_execution(s.exec_id)
print("deleted", repo.count_executions() == 0)
report = repo.gc(grace=0)
print("gc", report.objects_removed >= n)
repo.put_bytes(os.urandom(4_000))
print("room again", repo.fsck().ok)
"""


def test_a_full_file_system_still_lets_deletes_and_gc_free_space(tmp_path: Path) -> None:
    mount = tmp_path / "small"
    mount.mkdir()
    script = f'mount -t tmpfs -o size=16m tmpfs {mount} && exec "{sys.executable}" -c "$KITARU_CHILD" {mount}'
    here = str(Path(__file__).resolve().parent)
    path = os.pathsep.join(p for p in (here, os.environ.get("PYTHONPATH", "")) if p)
    env = dict(os.environ, KITARU_CHILD=TMPFS_CHILD, PYTHONPATH=path)
    env.pop("KITARU_STORE", None)
    child = subprocess.run(
        ["unshare", "--map-root-user", "--mount", "sh", "-c", script],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert child.returncode == 0, child.stdout + child.stderr
    assert child.stdout.splitlines() == [
        "full True True",
        "deleted True",
        "gc True",
        "room again True",
    ], child.stdout + child.stderr


# --- read-only processes hold the shared store lock -----------------------------------------------


HOLD_SCRIPT = r"""
import sys
from kitaru_store import Repository

repo = Repository.open(sys.argv[1], readonly=True)
assert repo.get_value(sys.argv[2]) == "kept"
print("ready", flush=True)
sys.stdin.read()  # until the test closes our stdin
print(repr(repo.get_value(sys.argv[2])), flush=True)
"""


def test_readonly_process_blocks_compaction(repo: Repository, store_path: Path) -> None:
    exec_id = commit_execution(repo, "flow", {"a": "kept", "b": list(range(100))})
    oid = repo.resolve_name(exec_id, "a").object_id
    garbage = repo.put_bytes(os.urandom(4096))

    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD_SCRIPT, str(store_path), oid],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    try:
        assert proc.stdout is not None and proc.stdin is not None
        readable, _, _ = select.select([proc.stdout], [], [], SUBPROCESS_TIMEOUT)
        assert readable, "the read-only process never became ready"
        line = proc.stdout.readline().strip()
        assert line == "ready", (line, proc.stderr.read() if proc.poll() is not None else "")

        report = repo.gc(grace=0, compact=True)
        assert report.compacted is False
        assert report.compact_error is not None and "lock" in report.compact_error
        assert report.objects_removed == 1  # the sweep itself still ran
        assert not repo.has_object(garbage)
        assert repo.get_value(oid) == "kept"
        assert repo.get_value(repo.resolve_name(exec_id, "b").object_id) == list(range(100))
        assert repo.fsck().ok

        out, err = proc.communicate(input="", timeout=SUBPROCESS_TIMEOUT)  # closes its stdin
    finally:
        if proc.poll() is None:  # pragma: no cover - only on a failure above
            proc.kill()
            proc.wait(10)
    assert proc.returncode == 0, err
    assert out.strip() == "'kept'"  # the reader's mapping survived the refused compaction

    # With the reader gone, the same gc compacts.
    after = repo.gc(grace=0, compact=True)
    assert after.compacted is True and after.compact_error is None
    assert repo.get_value(oid) == "kept"
