"""Stopping a running flow: cancel requests from other processes, SIGTERM and SIGHUP.

A cancel request is recorded in the execution's manifest (``cancel_request``); the process that
runs the flow looks for it at every checkpoint boundary (before a call starts, after it commits)
and at every wait poll, and then raises :class:`ExecutionCancelled` there. A SIGTERM or SIGHUP
received while a flow runs in the main thread raises it at once, unless the main thread is inside
a write transaction of the store: then at the next boundary. ExecutionCancelled is a
BaseException, so it unwinds the flow body like KeyboardInterrupt (``except Exception`` lets it
through); the execution ends ``cancelled``, and after a signal the process exits as the signal's
default action would (status 128 + n).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import signal
import threading
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from types import FrameType

    from kitaru_store.manifests import Failure

    from .context import FlowRun

CANCELLED = "Cancelled"  # the failure type of a cancelled execution (a request or a signal)
SIGNALS = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGHUP") if hasattr(signal, name))


class ExecutionCancelled(BaseException):
    """Raised in a flow body to stop it: a cancel request, SIGTERM or SIGHUP. Not an Exception,
    so that ``except Exception`` in the body does not swallow it."""

    def __init__(self, message: str, *, signum: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.signum = signum

    def failure(self) -> Failure:
        from kitaru_store.manifests import Failure

        return Failure(type=CANCELLED, message=self.message)


def requester() -> str:
    """Who asks, as a cancel request records it: user@host (pid N)."""
    import getpass

    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid())
    return f"{user}@{os.uname().nodename} (pid {os.getpid()})"


def request_message(by: str, at: dt.datetime, reason: str | None) -> str:
    text = f"cancelled by {by} at {at.isoformat(timespec='seconds')}"
    return f"{text}: {reason}" if reason else text


# --- the boundaries --------------------------------------------------------------------------


def check(run: FlowRun) -> None:
    """Raise ExecutionCancelled if the run was asked to stop (a boundary: any thread of the run)."""
    stop = run.stop
    if stop is None:
        stop = _requested(run)
        if stop is None:
            return
        run.stop = stop
    raise ExecutionCancelled(stop.message, signum=stop.signum)  # a fresh one per thread


# How often a run reads the store for a cancel request: a request is seen within this of the
# next boundary, and a flow of many fast checkpoints does not pay a read at each of them.
POLL_EVERY = 0.05  # seconds


def _requested(run: FlowRun) -> ExecutionCancelled | None:
    from kitaru_store import liveness

    now = time.monotonic()
    if now - run.cancel_polled < POLL_EVERY:
        return None
    run.cancel_polled = now
    found = liveness.poll_cancel(run.repo, run.exec_id, run.cancel_seen)
    if found is None:
        return None
    if found is liveness.DELETED:
        return ExecutionCancelled("the execution was deleted while it ran")
    return ExecutionCancelled(request_message(found.by, found.requested_at, found.reason))


# --- signals ---------------------------------------------------------------------------------


_critical_codes: set[Any] = set()


def _in_store_write(frame: FrameType | None) -> bool:
    """Whether the interrupted code is inside a write transaction of the store."""
    if not _critical_codes:  # both KV implementations (kitaru_store/kv.py)
        from kitaru_store.backend import Backend
        from kitaru_store.kv_memory import MemoryKV

        _critical_codes.update((Backend.update.__code__, MemoryKV.update.__code__))
    while frame is not None:
        if frame.f_code in _critical_codes:
            return True
        frame = frame.f_back
    return False


@contextlib.contextmanager
def signals_handled(run: FlowRun) -> Iterator[None]:
    """SIGTERM and SIGHUP cancel the run while it is in the flow body (main thread only).

    A signal whose handler is SIG_IGN (``nohup``) stays ignored; the previous handlers come back
    when the run ends. :func:`resend` then delivers the signal again. A second signal while the
    run stops ends the process at once.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        if run.signum is None:
            run.signum = signum
        if run.stop is not None and run.stop.signum is not None:
            # A second signal while stopping (checkpoints still running on the pool, a commit):
            # the sender wants the process gone now. It dies by the signal, as by SIGKILL; the
            # run then reads failed (Crashed) and a retry goes on from its committed checkpoints.
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        name = signal.Signals(signum).name
        stop = ExecutionCancelled(f"cancelled by {name} (signal {signum}) sent to {_where()}", signum=signum)
        run.stop = stop
        if run.in_body and not _in_store_write(frame):
            raise stop
        # in a store write, or past the body: the next boundary raises it, or the run just ends

    for signum in SIGNALS:
        current = signal.getsignal(signum)
        if current is signal.SIG_IGN or current is None:
            continue  # ignored on purpose (nohup), or set from C: left alone
        run.previous_handlers[signum] = current
        signal.signal(signum, handler)
    try:
        yield
    finally:
        for signum, previous in run.previous_handlers.items():
            signal.signal(signum, previous)


def resend(run: FlowRun) -> None:
    """After a signal stopped the run: deliver it again to the handler there was before (by
    default, ending the process with status 128 + n)."""
    signum = run.signum
    if signum is None or signum not in run.previous_handlers:
        return
    run.signum = None
    os.kill(os.getpid(), signum)


def _where() -> str:
    return f"process {os.getpid()} on host {os.uname().nodename}"
