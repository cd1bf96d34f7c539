"""The in-process gate around one LMDB environment: many users, or one compaction.

Every transaction (and every other use of the environment) passes the gate; compaction closes it
in two steps: first to writers (the compacted copy must not miss a commit), then to everyone
(while it closes the environment, swaps the file and reopens). Threads that arrive meanwhile
wait, then go on with the new environment. A thread already inside (a read inside a read, a read
inside a write) goes on without waiting, so nesting never deadlocks; a write begun inside a read
while writers are shut out waits like any other, and compaction gives up (StoreLockedError)
rather than wait for a thread that never leaves.
"""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager

from .errors import StoreLockedError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator


class Gate:
    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._local = threading.local()
        self.inside = 0  # uses under way (nested ones counted too)
        self._writing = 0
        self._no_writers = False
        self._closed = False

    def enter(self, *, write: bool) -> None:
        local = self._local
        depth = getattr(local, "depth", 0)
        with self._cond:
            if depth == 0 or write:
                while self._closed or (write and self._no_writers):
                    self._cond.wait()
            self.inside += 1
            self._writing += write
        local.depth = depth + 1

    def leave(self, *, write: bool) -> None:
        self._local.depth -= 1
        with self._cond:
            self.inside -= 1
            self._writing -= write
            if self._no_writers:  # a compaction waits for us (only it sets this)
                self._cond.notify_all()

    @contextmanager
    def use(self, *, write: bool = False) -> Iterator[None]:
        self.enter(write=write)
        try:
            yield
        finally:
            self.leave(write=write)

    def shut(self, *, writers_only: bool, timeout: float, what: str) -> None:
        """Stop new users (writers only, or all) and wait until those inside have left."""
        if getattr(self._local, "depth", 0):
            raise StoreLockedError(
                f"{what} cannot run inside a transaction of the same thread",
                hint="call it outside any read or write on this store",
            )
        deadline = time.monotonic() + timeout
        with self._cond:
            self._no_writers = True
            self._closed = self._closed or not writers_only
            while self._writing if writers_only else self.inside:
                left = deadline - time.monotonic()
                if left <= 0:
                    self._no_writers = self._closed = False
                    self._cond.notify_all()
                    raise StoreLockedError(
                        f"other threads of this process kept the store busy for {timeout:.0f} s,"
                        f" so {what} did not run",
                        hint="run it again when those threads are idle",
                    )
                self._cond.wait(left)

    def reopen(self) -> None:
        with self._cond:
            self._no_writers = self._closed = False
            self._cond.notify_all()
