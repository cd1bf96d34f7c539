"""Advisory file locks (flock). The kernel drops them when their process dies: never a stale lock."""

from __future__ import annotations

import contextlib
import fcntl
import os
import time

from .errors import StoreError, StoreLockedError


class FileLock:
    """An flock on ``path``, shared or exclusive, optionally waiting up to ``timeout`` seconds."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self, *, exclusive: bool, timeout: float = 0.0, what: str = "this operation") -> None:
        fd = _open(self.path)
        mode = (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, mode)
                if not _same_file(fd, self.path):
                    # Deleted or replaced between our open and our flock: a lock on that file
                    # excludes nobody. Lock the file that is there now.
                    os.close(fd)
                    fd = _open(self.path)
                    continue
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    os.close(fd)
                    raise StoreLockedError(
                        f"another process holds the lock {os.path.basename(self.path)} needed for {what}",
                        hint="wait for it to finish and try again (a lock dies with its process)",
                    ) from None
                time.sleep(0.02)
        if exclusive:
            # Who holds it, for a person looking: the flock is the lock, so a full disk (the
            # reason to run gc) must not stop it.
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)
                os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd

    def replaced(self) -> bool:
        """Whether the held lock's file is no longer the one at its path (deleted or replaced).

        Then another process can take "the" lock at the same time: whoever finds this must stop.
        """
        return self._fd is not None and not _same_file(self._fd, self.path)

    def forget(self) -> None:
        """Close this process's descriptor of the lock file without unlocking it: a forked
        child's copy, while the parent's descriptor keeps the lock."""
        fd, self._fd = self._fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)

    def release(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)


def file_id(path: str) -> tuple[int, int] | None:
    """(device, inode) of the file at ``path``, or None if there is none."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return st.st_dev, st.st_ino


def _same_file(fd: int, path: str) -> bool:
    st = os.fstat(fd)
    return file_id(path) == (st.st_dev, st.st_ino)


def _open(path: str) -> int:
    """The lock file at ``path``, created if missing, with its directory: lock files hold no
    data (a store copied without its ``locks`` directory, or one whose directory was removed,
    gets a new one). A directory that cannot be made is a StoreError that says which; other
    failures (a read-only filesystem, no permission) are the caller's to judge (backend.py
    opens such a store read-only)."""
    try:
        return os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    except (FileNotFoundError, NotADirectoryError):
        pass
    try:
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        return os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise StoreError(
            f"cannot create the lock file {path}: {exc.strerror or exc}",
            hint="check that the store's directory exists and is writable by you",
        ) from None
