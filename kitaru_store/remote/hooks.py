"""The SDK's opt-in remote behaviours, attached to a Repository on first need.

* **load fallback**: ``Repository.get_bytes`` asks :meth:`SdkRemotes.fetch` for an object that is
  missing locally; the object (with its chunks) is fetched from the remote, verified and stored,
  then read as usual.
* **write-through**: every Writer commit that changed executions calls :meth:`SdkRemotes.push`,
  which pushes those executions. A failure never fails the commit (it is durable already): it
  becomes a RuntimeWarning and pauses write-through for PAUSE_AFTER_FAILURE seconds, so that a
  remote that is down does not make every commit wait for timeouts; the next push, by hand or
  by a later commit of the same execution, catches up.

Both are off unless remotes.json marks a remote ``fallback`` / ``write_through``, or
``KITARU_REMOTE=NAME`` turns both on for remote NAME (``KITARU_REMOTE=off`` turns both off).
"""

from __future__ import annotations

import os
import threading
import time
import warnings
from typing import TYPE_CHECKING

from . import settings

if TYPE_CHECKING:
    from kitaru_store.repository import Repository

    from .sync import Remote

# After a failed write-through push, later commits skip pushing for this long (seconds).
PAUSE_AFTER_FAILURE = 60.0


def configured(repo: Repository) -> bool:
    """Cheap test, done once per Repository: could any remote behaviour apply here?"""
    env = os.environ.get(settings.ENV_VAR, "").strip().lower()
    if env in settings.OFF_VALUES:
        return False
    return bool(env) or (repo.root / settings.REMOTES_FILE).exists()


class SdkRemotes:
    def __init__(self, repo: Repository) -> None:
        from .sync import Remote

        self.error: Exception | None = None
        self.fallback: Remote | None = None
        self.write_through: Remote | None = None
        self._push_lock = threading.Lock()
        self._warned = False
        self._paused_until = 0.0
        try:
            fallback, write_through = settings.sdk_remotes(repo.root)
        except Exception as exc:  # a broken remotes.json must not break local work
            self.error = exc
            return
        self.fallback = Remote(repo, fallback) if fallback else None
        if write_through is not None:
            same = self.fallback is not None and self.fallback.spec == write_through
            self.write_through = self.fallback if same else Remote(repo, write_through)

    @property
    def active(self) -> bool:
        return self.fallback is not None or self.write_through is not None or self.error is not None

    def fetch(self, object_id: str) -> bool:
        """Fetch a missing object from the fallback remote; False if there is none."""
        if self.error is not None:
            raise self.error
        if self.fallback is None:
            return False
        self.fallback.fetch_object(object_id)
        return True

    def push(self, exec_ids: list[str]) -> None:
        """Write-through: push the executions a commit changed. Warns instead of raising."""
        remote = self.write_through
        if remote is None:
            if self.error is not None and not self._warned:
                self._warned = True
                warnings.warn(f"kitaru: remotes are not usable: {self.error}", RuntimeWarning, stacklevel=4)
            return
        with self._push_lock:  # one push at a time per store handle: commits come from many threads
            if time.monotonic() < self._paused_until:
                return  # failed a moment ago: do not make every commit wait for timeouts
            try:
                remote.push(exec_ids)
            except Exception as exc:
                self._paused_until = time.monotonic() + PAUSE_AFTER_FAILURE
                warnings.warn(
                    f"kitaru: write-through push to remote {remote.name!r} failed ({exc}); the local"
                    f" store has everything; write-through pauses for {PAUSE_AFTER_FAILURE:.0f} s:"
                    " run `kitaru-store push` to catch up",
                    RuntimeWarning,
                    stacklevel=4,
                )
