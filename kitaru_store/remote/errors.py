"""Errors of the remote layer. All are KitaruErrors, so the CLI maps them like every other one.

Only the standard library and kitaru_store.errors are imported here.
"""

from __future__ import annotations

from typing import Any

from kitaru_store.errors import CorruptionError, KitaruError, NotFoundError, StateError


class RemoteError(KitaruError):
    """A remote could not be used: unreachable, misconfigured, or answered with an error."""


class RemoteNotFoundError(RemoteError, NotFoundError):
    """No such remote (name), bucket, remote store, or execution on the remote."""


class RemoteAuthError(RemoteError):
    """The remote refused the credentials, or there were none to send."""


class RemoteConflictError(RemoteError, StateError):
    """A conditional write lost a race that the documented rule could not settle, or a local and
    a remote version of an execution diverged.

    ``exec_ids`` lists the executions concerned.
    """

    def __init__(
        self,
        message: str,
        *,
        exec_ids: list[str] | None = None,
        exec_id: str | None = None,
        object_id: str | None = None,
        hint: str | None = None,
    ) -> None:
        self.exec_ids = list(exec_ids or ([exec_id] if exec_id else []))
        super().__init__(message, exec_id=exec_id, object_id=object_id, hint=hint)


class PreconditionFailed(RemoteConflictError):
    """A conditional write (If-None-Match: * or If-Match) found the key changed since it was read.

    The push logic catches it, re-reads the remote and decides again; it reaches a caller only
    when that keeps failing.
    """


class RemotePullError(RemoteError):
    """Some executions could not be pulled (bad data on the remote, an id that collides with one
    of this store); every other one was, and nothing of the failed ones was stored.

    ``report`` is the PullReport of the whole pull; ``failures`` its ``failed`` list (each with
    the execution id and the typed error); ``exec_ids`` the executions that failed.
    """

    def __init__(self, message: str, *, report: Any, hint: str | None = None) -> None:
        self.report = report
        self.failures = list(report.failed)
        self.exec_ids = [f.exec_id for f in self.failures]
        only = self.failures[0] if len(self.failures) == 1 else None
        super().__init__(
            message,
            exec_id=only.exec_id if only else None,
            object_id=only.error.object_id if only else None,
            hint=hint,
        )


class RemoteTooLargeError(RemoteError, CorruptionError):
    """A remote object is longer than the most its kind may hold; it was not read whole.

    The transport raises it; sync turns it into the typed error of what the object should have
    been (CorruptObjectError, CorruptManifestError) or RemoteError for the config.
    """

    def __init__(self, key: str, limit: int, head: bytes = b"") -> None:
        self.key = key
        self.limit = limit
        self.head = head  # its first bytes (up to 16), enough to tell what it claims to be
        super().__init__(
            f"{key} on the remote is longer than {limit} bytes",
            hint="the remote was written by something other than kitaru",
        )


__all__ = [
    "PreconditionFailed",
    "RemoteAuthError",
    "RemoteConflictError",
    "RemoteError",
    "RemoteNotFoundError",
    "RemotePullError",
    "RemoteTooLargeError",
]
