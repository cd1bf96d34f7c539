"""The SDK's opt-in remote behaviours, attached to a Repository from outside the core.

The core (kitaru_store outside remote/ and cli/) never imports this package: a Repository runs
the callables in ``repo.hooks``, and :func:`attach` puts this module's there. The SDK (kitaru's
``runtime.open_repository``) and the CLI open their stores through :func:`open_repository`, which
attaches them; a tool that opens ``Repository.open`` itself calls :func:`attach` to get the same.

* **load fallback** (``repo.hooks.missing_object``): an object missing locally is fetched from the
  remote (with its chunks), verified and stored, then read as usual.
* **write-through** (``repo.hooks.after_commit``): every Writer commit that changed executions
  pushes those executions. A failure never fails the commit (it is durable already): it
  becomes a RuntimeWarning and pauses write-through for PAUSE_AFTER_FAILURE seconds, so that a
  remote that is down does not make every commit wait for timeouts; the next push, by hand or
  by a later commit of the same execution, catches up.

Both are off unless remotes.json marks a remote ``fallback`` / ``write_through``, or
``KITARU_REMOTE=NAME`` turns both on for remote NAME (``KITARU_REMOTE=off`` turns both off). What
applies is decided once per Repository handle, when one of the two is first needed.
"""

from __future__ import annotations

import os
import threading
import time
import warnings
import weakref
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
                warnings.warn(f"kitaru: remotes are not usable: {self.error}", RuntimeWarning, stacklevel=5)
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
                    stacklevel=5,
                )


class Attachment:
    """The remote behaviours of one Repository handle, in its hooks; decided on first need.

    It holds the Repository weakly (the Repository holds it through its hooks): no cycle keeps
    an unused handle alive when no remote applies.
    """

    def __init__(self, repo: Repository) -> None:
        self._repo = weakref.ref(repo)
        self._remotes: SdkRemotes | None = None
        self._decided = False
        self._lock = threading.Lock()

    def remotes(self) -> SdkRemotes | None:
        """The remotes that apply to the handle, or None (read once, then kept)."""
        if not self._decided:
            with self._lock:
                repo = self._repo()
                if not self._decided and repo is not None:
                    remotes = SdkRemotes(repo) if configured(repo) else None
                    self._remotes = remotes if remotes is not None and remotes.active else None
                    self._decided = True
        return self._remotes

    def after_commit(self, exec_ids: list[str]) -> None:
        remotes = self.remotes()
        if remotes is not None:
            remotes.push(exec_ids)

    def missing_object(self, object_id: str) -> bool:
        remotes = self.remotes()
        return remotes is not None and remotes.fetch(object_id)


def attachment(repo: Repository) -> Attachment | None:
    """The Attachment :func:`attach` gave ``repo``, if any."""
    for hook in repo.hooks.after_commit:
        owner = getattr(hook, "__self__", None)
        if isinstance(owner, Attachment):
            return owner
    return None


def attach(repo: Repository) -> Repository:
    """Give ``repo`` the SDK's remote behaviours (as configured when first needed); once only."""
    if attachment(repo) is None:
        found = Attachment(repo)
        repo.hooks.after_commit.append(found.after_commit)
        repo.hooks.missing_object.append(found.missing_object)
    return repo


def open_repository(
    path: str | os.PathLike[str] | None = None, *, create: bool = True, readonly: bool = False
) -> Repository:
    """``Repository.open`` with the remote behaviours attached: how the SDK and the CLI open a store."""
    from kitaru_store.repository import Repository

    return attach(Repository.open(path, create=create, readonly=readonly))
