"""Cancel and delete an execution from any process (``KitaruClient().executions``, the CLI).

Each decides in the write transaction that makes the change, on the manifest as it is then:
an owner that finishes meanwhile, or another process that cancels or claims it first, makes
the request an ExecutionStateError and the store stays as it was.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import msgspec

from .errors import ExecutionStateError

if TYPE_CHECKING:
    from kitaru_store import Repository
    from kitaru_store.manifests import Manifest


def cancel(repo: Repository, exec_id: str, *, reason: str | None = None) -> Manifest:
    """The execution after the request: ``cancelled`` (waiting, crashed), or ``running`` with
    a cancel request its owner will see."""
    from kitaru_store import liveness
    from kitaru_store.manifests import CancelRequest, Failure

    from .calls import now
    from .cancellation import CANCELLED, request_message, requester

    seen = repo.get_execution(exec_id)  # a crash is observed (and recorded) here
    at, by = now(), requester()
    request = CancelRequest(requested_at=at, by=by, reason=reason)

    def apply(current: Manifest) -> Manifest:
        if current.status == "running" and liveness.is_crashed(seen) and current.owner == seen.owner:
            current = liveness.crashed_view(current)  # read-only observer so far: record it now
        if current.status == "running":
            if current.cancel_request is not None:
                return current  # asked already: the first request stands
            return msgspec.structs.replace(current, cancel_request=request)
        if current.status == "waiting" or liveness.is_crashed(current):
            failure = Failure(type=CANCELLED, message=request_message(by, at, reason))
            return msgspec.structs.replace(
                current, status="cancelled", ended_at=at, failure=failure, cancel_request=None
            )
        raise _finished(current)

    if seen.status not in ("running", "waiting") and not liveness.is_crashed(seen):
        raise _finished(seen)
    with repo.writer() as w:
        w.mutate(seen.exec_id, apply)
    return repo.get_execution(seen.exec_id)


def _finished(m: Manifest) -> ExecutionStateError:
    return ExecutionStateError(
        f"execution {m.exec_id} is {m.status}: only a running, waiting or crashed one can be cancelled",
        exec_id=m.exec_id,
        name=m.flow_name,
        hint="it has ended already; `kitaru-store rm` deletes it",
    )


def check_deletable(m: Manifest, *, force: bool) -> None:
    """ExecutionStateError for a running execution (not crashed) unless ``force``."""
    if m.status == "running" and not force:
        raise ExecutionStateError(
            f"execution {m.exec_id} is running"
            + (f" in process {m.owner.pid} on host {m.owner.host}" if m.owner else ""),
            exec_id=m.exec_id,
            name=m.flow_name,
            hint="cancel it first (`kitaru-store cancel`), or delete it anyway with --force"
            " (force=True): its process then stops at its next checkpoint",
        )


def delete(repo: Repository, exec_id: str, *, force: bool = False) -> None:
    from kitaru_store import liveness

    seen = repo.get_execution(exec_id)  # a crashed run reads failed here (and is recorded so)
    check_deletable(seen, force=force)

    def check(current: Manifest) -> None:
        if current.status == "running" and not (liveness.is_crashed(seen) and current.owner == seen.owner):
            check_deletable(current, force=force)

    repo.delete_execution(seen.exec_id, check=check)
