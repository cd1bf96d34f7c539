"""Who runs an execution, and whether that process is still there (docs/design.md, "The owner
record and the run lock").

The process that runs an execution takes an exclusive flock on ``locks/runs/<exec_id>.lock``
under the store *before* it writes ``running`` with its owner record (pid, host, boot id, the
process's start time), and lets go of it only *after* it writes the final status. So, on the
owner's machine, while a manifest says ``running`` with owner X:

- X's pid is gone, or belongs to a process started at another time, or the machine was
  rebooted since (another boot id): X is dead;
- the lock is free (a shared flock, tried without waiting, succeeds): X is not running it.

Either way the execution has crashed: it reads as ``failed`` with a failure of type "Crashed",
and the first process that can write and sees it records that in a write transaction which
checks again that the manifest is still ``running`` with owner X and that the lock is still free
(a retry takes the lock before it claims the run, so it is never taken for a crash). A run owned
by another host is unknown (None) from here: its lock is not on this machine, and it is never
declared crashed from here.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import os
import threading

from . import layout
from .errors import KitaruError, StoreLockedError
from .locks import FileLock

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (the fast path of `log`)
if TYPE_CHECKING:
    from pathlib import Path
    from typing import Any

    from .manifests import Failure, Manifest, Owner
    from .repository import Repository

CRASHED = "Crashed"  # the failure type of an execution whose owner is gone
# A retry waits this long for the run lock: other processes hold it only for the instant it takes
# to test it; a process still running the execution holds it for good.
CLAIM_TIMEOUT = 2.0

_held: dict[str, FileLock] = {}  # run lock path -> the lock this process holds
_held_lock = threading.Lock()


# --- this process ----------------------------------------------------------------------------


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="ascii", errors="replace") as f:
            return f.read(4096)
    except OSError:
        return None


_BOOT_ID = (_read("/proc/sys/kernel/random/boot_id") or "").strip() or None
_HOST = os.uname().nodename


def proc_start(pid: int) -> int | None:
    """The start time of process ``pid`` (clock ticks after boot, /proc/<pid>/stat field 22), or
    None where there is no /proc; -1 if the process is gone or a zombie (dead, not yet reaped)."""
    if _BOOT_ID is None:
        return None
    stat = _read(f"/proc/{pid}/stat")
    if stat is None:
        return -1
    fields = stat.rpartition(")")[2].split()  # the command name may hold spaces and parentheses
    try:
        return -1 if fields[0] in ("Z", "X") else int(fields[19])
    except (IndexError, ValueError):
        return -1


def this_owner() -> Owner:
    from .manifests import Owner

    pid = os.getpid()
    return Owner(
        pid=pid,
        host=_HOST,
        boot_id=_BOOT_ID,
        proc_start=proc_start(pid),
        claimed_at=dt.datetime.now(dt.UTC),
    )


def describe(owner: Owner) -> str:
    return f"process {owner.pid} on host {owner.host}"


# --- the run lock ----------------------------------------------------------------------------


def lock_path(root: Path | str, exec_id: str) -> str:
    return layout.run_lock_path(root, exec_id)


def claim(repo: Repository, exec_id: str, *, timeout: float = CLAIM_TIMEOUT) -> None:
    """Take the run lock of ``exec_id`` for this process (before writing ``running``).

    StoreLockedError if another process holds it after ``timeout`` seconds: it runs the execution.
    """
    path = lock_path(repo.root, exec_id)
    with _held_lock:
        if path in _held:
            raise StoreLockedError(
                f"execution {exec_id} is already running in this process",
                exec_id=exec_id,
                hint="wait for that run to end",
            )
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    lock = FileLock(path)
    try:
        lock.acquire(exclusive=True, timeout=timeout, what=f"running execution {exec_id}")
    except StoreLockedError as exc:
        raise exc.concerning(exec_id=exec_id) from None
    with _held_lock:
        _held[path] = lock


def release(repo: Repository, exec_id: str) -> None:
    """Let go of the run lock (after the final status is written). The file goes first, while
    the lock is still held: whoever waits on it then finds it replaced and takes a new one.

    If the final status could not be written (the manifest still says ``running``, owned by this
    process), the file stays, free: every reader, the fast path of ``log`` too, then sees the
    run as crashed while this process lives on.
    """
    path = lock_path(repo.root, exec_id)
    with _held_lock:
        lock = _held.pop(path, None)
    if lock is None:
        return
    if not _left_running(repo, exec_id):
        with contextlib.suppress(OSError):
            os.unlink(path)
    lock.release()


def _left_running(repo: Repository, exec_id: str) -> bool:
    try:
        m = repo.get_execution_head(exec_id, observe=False)
    except KitaruError:
        return False
    return m.status == "running" and m.owner is not None and m.owner.pid == os.getpid()


def remove_free(path: str) -> bool:
    """Delete the run lock file at ``path`` if no process holds it; whether it is gone.

    A killed run leaves its file (the kernel drops the flock, not the file), and so does a run
    killed before its first commit. The file goes while this holds the lock, as release() does:
    a claimer waiting on it then finds it replaced and takes a new one. No file reads as a free
    lock (lock_state), so this changes no execution's liveness.
    """
    lock = FileLock(path)
    try:
        lock.acquire(exclusive=True, what="removing a run lock")
    except (StoreLockedError, OSError):
        return False
    try:
        os.unlink(path)
    except OSError:
        return False
    finally:
        lock.release()
    return True


def remove_free_locks(repo: Repository) -> int:
    """Delete the run lock files no process holds (gc); how many went.

    An execution still stored ``running`` is observed first, so that a crash is recorded before
    its file goes (the fast path of ``log`` reads a manifest only where a free file is).
    """
    from .errors import ExecutionNotFoundError

    folder = layout.runs_dir(repo.root)
    try:
        names = os.listdir(folder)
    except OSError:
        return 0
    removed = 0
    for name in names:
        exec_id = layout.run_lock_exec_id(name)
        if exec_id is None:
            continue
        try:
            if repo.get_execution_head(exec_id).status == "running":  # observes
                continue
        except ExecutionNotFoundError:
            pass  # killed before its first commit, or deleted
        except KitaruError:
            continue
        removed += remove_free(os.path.join(folder, name))
    return removed


def holds(repo: Repository, exec_id: str) -> bool:
    return lock_path(repo.root, exec_id) in _held


def _after_fork_in_child() -> None:
    # A forked child shares its parent's open file descriptions, and with them the run locks: it
    # must not keep a crashed parent's run looking alive. Closing the child's copies is enough
    # (the parent's stay), and the child does not run the parent's flows.
    for lock in list(_held.values()):
        lock.forget()
    _held.clear()


os.register_at_fork(after_in_child=_after_fork_in_child)


def lock_state(path: str) -> bool | None:
    """Whether a process holds the run lock at ``path``: True, False, or None (cannot tell: no
    permission to open it).

    No file is a free lock: the owner creates it before it writes ``running`` and keeps it until
    its last write. A file gone while the manifest still says ``running`` means that last write
    failed and the owner let go: a process that lives on (a notebook, a server) no longer has the
    run, whatever its pid says.
    """
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return False
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return None
    finally:
        os.close(fd)  # closing drops the shared lock, if we got it
    return False


# --- liveness --------------------------------------------------------------------------------


def alive(repo: Repository, exec_id: str, owner: Owner) -> bool | None:
    """Whether ``owner`` still runs ``exec_id``: True, False, or None (another host: unknown)."""
    if owner.host != _HOST:
        return None
    if owner.boot_id is not None and _BOOT_ID is not None and owner.boot_id != _BOOT_ID:
        return False  # the machine was rebooted since
    if holds(repo, exec_id):
        return owner.pid == os.getpid()  # this process holds the lock: it is the owner
    if owner.pid == os.getpid():
        return False  # this process does not hold the lock: its run of it has ended
    if not _pid_runs(owner):
        return False
    return lock_state(lock_path(repo.root, exec_id)) is not False


def _pid_runs(owner: Owner) -> bool:
    start = proc_start(owner.pid)
    if start is not None:
        return start != -1 and (owner.proc_start is None or start == owner.proc_start)
    try:
        os.kill(owner.pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    return True


def last_completed(m: Manifest) -> str | None:
    done = [c for c in m.checkpoints if c.output_object_id and c.status != "running"]
    return max(done, key=lambda c: c.seq).invocation_id if done else None


def crash_failure(m: Manifest) -> Failure:
    from .manifests import Failure

    assert m.owner is not None
    last = last_completed(m)
    since = m.owner.claimed_at.isoformat(timespec="seconds")
    return Failure(
        type=CRASHED,
        message=f"{describe(m.owner)} that ran it since {since} is gone; "
        + (f"the last checkpoint it completed is {last!r}" if last else "it completed no checkpoint")
        + "; retry it to run the rest",
    )


def crashed_view(m: Manifest, *, at: dt.datetime | None = None) -> Manifest:
    import msgspec

    return msgspec.structs.replace(
        m, status="failed", failure=crash_failure(m), ended_at=at or dt.datetime.now(dt.UTC)
    )


def is_crashed(m: Manifest) -> bool:
    return m.status == "failed" and m.failure is not None and m.failure.type == CRASHED


class _Changed(Exception):
    """Inside the transition's transaction: the manifest or the lock is no longer as observed."""


def observe(repo: Repository, m: Manifest) -> Manifest:
    """``m`` as it is: a ``running`` execution whose owner is gone reads as failed (Crashed).

    A writable repository records that, once, in a transaction that checks again that the
    manifest is still ``running`` with the same owner and that the run lock is still free. A
    read-only one only shows it.
    """
    owner = m.owner
    if m.status != "running" or owner is None or alive(repo, m.exec_id, owner) is not False:
        return m
    if not (m.entries or m.checkpoints or m.waits):  # maybe a head only: the failure names a checkpoint
        m = repo.get_execution(m.exec_id, observe=False)
        if m.status != "running" or m.owner != owner:
            return m
    view = crashed_view(m)
    if repo.readonly or holds(repo, m.exec_id):
        return view  # read-only; or this process holds the lock to claim the run itself

    path = lock_path(repo.root, m.exec_id)

    def transition(current: Manifest) -> Manifest:
        if current.status != "running" or current.owner != owner or lock_state(path) is True:
            raise _Changed
        return crashed_view(current, at=view.ended_at)

    try:
        with repo.writer() as w:
            w.remote_sync = False  # an observation, not a change of this process's making
            w.mutate(m.exec_id, transition)
    except _Changed:
        return repo.get_execution(m.exec_id, observe=False)
    except KitaruError:
        return view  # a full or read-only store: show it, record it another time
    return view


def observe_summary(repo: Repository, summary: Any) -> Any:
    """A listing's row, as :func:`observe` sees its execution (only ``running`` rows are read)."""
    if summary.status != "running":
        return summary
    try:
        m = repo.get_execution_head(summary.exec_id)  # observes
    except KitaruError:
        return summary
    if m.status == summary.status:
        return summary
    import msgspec

    if isinstance(summary, msgspec.Struct):
        return msgspec.structs.replace(summary, status=m.status, ended_at=m.ended_at)
    import copy

    seen = copy.copy(summary)  # the fast path of `log` has a summary class of its own
    seen.status, seen.ended_at = m.status, m.ended_at
    return seen


# --- cancel requests -------------------------------------------------------------------------

DELETED: Any = object()  # what poll_cancel returns for an execution that is no longer stored


def poll_cancel(repo: Repository, exec_id: str, seen: list[Any]) -> Any:
    """The execution's cancel request (a CancelRequest), DELETED, or None; cheap enough for
    every checkpoint boundary: it reads the execution's head, one small record whatever the
    flow's length. ``seen`` (kept by the caller) holds the request found last."""
    from .errors import ExecutionNotFoundError

    try:
        request = repo.get_execution_head(exec_id, observe=False).cancel_request
    except ExecutionNotFoundError:
        return DELETED
    except KitaruError:
        return None  # damage is for the run's own reads to report
    seen[:] = [request]
    return request
