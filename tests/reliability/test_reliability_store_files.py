"""Damaged or replaced store files: a truncated data.mdb, a deleted lock.mdb or store.lock.

Each case runs where a crash would show: a truncated file used to be SIGBUS (the process dies, no
exception), so it is opened in a child process, and the child must exit with the typed error.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import harness
import pytest

from kitaru_store import Repository
from kitaru_store.backend import close_backend
from kitaru_store.errors import LockFileReplacedError

STORE_TESTS = str(Path(__file__).resolve().parents[1] / "store")
if STORE_TESTS not in sys.path:
    sys.path.insert(0, STORE_TESTS)
from store_helpers import make_entry  # noqa: E402

pytestmark = pytest.mark.slow

OPEN_CHILD = """
import sys
from kitaru_store import Repository
from kitaru_store.errors import KitaruError
try:
    repo = Repository.open(sys.argv[1])
    n = sum(1 for _ in repo.list_executions())
    print("opened", n, repo.fsck().ok)
except KitaruError as exc:
    print(type(exc).__name__, exc)
"""


def _populated(root: Path, n: int = 12) -> int:
    repo = Repository.open(root)
    for i in range(n):
        with repo.writer() as w:
            exec_id = w.create_execution(f"flow-{i % 3}")
            for j, size in enumerate((10, 3000, 20000)):
                stored = w.put_value(os.urandom(size) + bytes([i, j]))
                w.add_entry(exec_id, make_entry(stored, f"v{j}"))
    repo.gc(grace=0)  # frees pages, so the file has a free tail now and then
    close_backend(str(root / "db"))
    return n


def _run(argv: list[str], store: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, env=harness.child_env(store))


def test_truncated_data_file_is_a_typed_error_never_a_signal(tmp_path: Path) -> None:
    src = tmp_path / "src"
    n = _populated(src)
    data = src / "db" / "data.mdb"
    size = data.stat().st_size
    psize = os.sysconf("SC_PAGE_SIZE") if size % 4096 else 4096
    points = sorted(
        {
            0,
            100,
            psize - 1,
            psize,
            psize + 100,
            2 * psize,
            2 * psize + 1,
            3 * psize,
            size // 3 // psize * psize,
            size // 2,
            size // 2 + 7,
            size - psize,
            size - 1,
        }
    )
    procs = {}
    for point in points:
        store = tmp_path / f"cut-{point}"
        shutil.copytree(src, store)
        os.truncate(store / "db" / "data.mdb", point)
        procs[point] = subprocess.Popen(
            [sys.executable, "-c", OPEN_CHILD, str(store)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=harness.child_env(store),
        )
    outcomes = {}
    for point, proc in procs.items():
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, f"cut at {point}: exit {proc.returncode} (a signal?) {err}"
        outcomes[point] = out.strip()
    refused = [p for p, out in outcomes.items() if out.startswith("CorruptStoreError")]
    for point, out in outcomes.items():
        # The one other outcome allowed: a cut that removed only free pages, and everything is there.
        assert point in refused or out == f"opened {n} True", (point, out)
    assert len(refused) >= len(points) - 2, outcomes
    assert all("kitaru-store clone" in outcomes[p] and "truncated" in outcomes[p] for p in refused)
    # The CLI's fsck says the same, with an exit code, not a signal.
    for point in (psize + 100, size // 2):
        store = tmp_path / f"cut-{point}"
        child = _run([sys.executable, "-m", "kitaru_store.cli", "--store", str(store), "fsck"], store)
        assert child.returncode > 0, (point, child.returncode, child.stderr)
        assert "is damaged" in child.stderr and "truncated" in child.stderr


@pytest.mark.parametrize(
    ("offset", "value", "said"),
    [
        (16, b"\x00\x00\x00\x00", "not an LMDB meta page"),  # meta 0's magic (after a 16-byte header)
        # meta 1's transaction id made even and the newest: LMDB would read meta 0's stale snapshot
        (4096 + 144, (1 << 20).to_bytes(8, "little"), "belongs in the other"),
    ],
)
def test_damaged_header_is_refused_before_mapping(
    store_path: Path, offset: int, value: bytes, said: str
) -> None:
    _populated(store_path, n=2)
    data = store_path / "db" / "data.mdb"
    raw = bytearray(data.read_bytes())
    raw[offset : offset + len(value)] = value
    data.write_bytes(bytes(raw))
    child = _run([sys.executable, "-c", OPEN_CHILD, str(store_path)], store_path)
    assert child.returncode == 0, child.stderr
    assert child.stdout.startswith("CorruptStoreError") and said in child.stdout, child.stdout


# --- a lock file deleted while the store is open ----------------------------------------------------

WRITER_CHILD = """
import sys, time
from kitaru_store import Repository
from kitaru_store.errors import KitaruError
sys.path.insert(0, sys.argv[3])
from store_helpers import commit_execution
repo = Repository.open(sys.argv[1])
stop_at = time.monotonic() + float(sys.argv[2])
n = 0
print("ready", flush=True)
try:
    while time.monotonic() < stop_at:
        commit_execution(repo, "w", {"v": f"value {n}"})
        n += 1
    print("done", n, flush=True)
except KitaruError as exc:
    print(type(exc).__name__, n, exc, flush=True)
"""


def test_deleted_lock_mdb_stops_the_process_that_opened_it(store_path: Path) -> None:
    """A writes; lock.mdb is deleted; B opens (a new lock.mdb) and writes too: A must stop."""
    Repository.open(store_path)
    close_backend(str(store_path / "db"))
    argv = [sys.executable, "-c", WRITER_CHILD, str(store_path)]
    a = subprocess.Popen(
        [*argv, "8", STORE_TESTS],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=harness.child_env(store_path),
    )
    assert a.stdout is not None and a.stdout.readline().strip() == "ready"
    time.sleep(0.5)  # A is committing
    (store_path / "db" / "lock.mdb").unlink()
    b = _run([*argv, "2", STORE_TESTS], store_path)
    a_out, a_err = a.communicate(timeout=60)
    assert a.returncode == 0 and b.returncode == 0, (a_err, b.stderr)
    assert b.stdout.split()[:1] == ["ready"] and b.stdout.split()[1] == "done", b.stdout
    assert a_out.startswith("LockFileReplacedError"), a_out
    assert "lock.mdb was deleted or replaced" in a_out and "fsck" in a_out
    repo = Repository.open(store_path)
    report = repo.fsck()
    assert report.ok, report
    wrote = int(a_out.split()[1]) + int(b.stdout.split()[2])
    assert repo.count_executions() == wrote


def test_deleted_store_lock_stops_writes(repo: Repository, store_path: Path) -> None:
    repo.put_value("before")
    (store_path / "locks" / "store.lock").unlink()
    with pytest.raises(LockFileReplacedError, match=r"store\.lock was deleted"):
        repo.put_value("after")
    with pytest.raises(LockFileReplacedError):
        Repository.open(store_path)  # opening again in this process does not hide it


def test_file_lock_taken_on_a_replaced_file_moves_to_the_new_one(tmp_path: Path) -> None:
    from kitaru_store.locks import FileLock

    path = str(tmp_path / "x.lock")
    first = FileLock(path)
    first.acquire(exclusive=True)
    os.unlink(path)
    assert first.replaced()
    second = FileLock(path)
    second.acquire(exclusive=True)  # a new file: nothing excludes it, but the holder can tell
    assert not second.replaced()
    first.release()
    second.release()
