"""Work on large values split over this thread and one helper thread.

BLAKE3, zstd and FastCDC release the GIL on large buffers, so a second thread doubles the
throughput of hashing, compressing, chunking and decompressing a large value on a machine with
two cores or more. Small values never come here: a thread costs ~100 us to start.

A helper thread is started per call, never pooled: nothing outlives the call, so a fork()
never inherits a pool it cannot use, and an idle process holds no thread.
"""

from __future__ import annotations

import itertools
import os
import threading
from collections.abc import Callable, Sequence
from typing import TypeVar

T = TypeVar("T")


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        return os.cpu_count() or 1


CORES = _cores()


def enabled() -> bool:
    """Whether a second thread can run at the same time as this one (KITARU_THREADS=1 turns it off)."""
    return CORES > 1 and os.environ.get("KITARU_THREADS") != "1"


def for_each(
    fn: Callable[[T], None],
    items: Sequence[T],
    *,
    helper_first: Callable[[], None] | None = None,
    main_first: Callable[[], Sequence[T]] | None = None,
) -> None:
    """Call ``fn`` on every item, on this thread and a helper thread, each taking the next item.

    ``helper_first`` runs on the helper before it joins in; ``main_first`` runs on this thread
    before it joins in and may return the items (when they are produced by it, e.g. chunk
    boundaries), in which case ``items`` is ignored and the helper waits for them. The first
    exception raised on either thread is raised here once both have stopped.
    """
    if not enabled():
        _serial(fn, items, helper_first, main_first)
        return

    ready = threading.Event()
    box: dict[str, Sequence[T]] = {"items": items}
    claim = itertools.count()
    errors: list[BaseException] = []
    failed = threading.Event()

    def drain() -> None:
        todo = box["items"]
        n = len(todo)
        while not failed.is_set():
            i = next(claim)  # atomic under the GIL
            if i >= n:
                return
            fn(todo[i])

    finished = threading.Event()

    def helper() -> None:
        try:
            if helper_first is not None:
                helper_first()
            ready.wait()
            drain()
        except BaseException as exc:  # re-raised on the calling thread
            errors.append(exc)
            failed.set()
        finally:
            finished.set()

    thread = threading.Thread(target=helper, name="kitaru-store-helper", daemon=True)
    try:
        thread.start()
    except RuntimeError:  # no thread to be had (a resource limit, interpreter shutdown): do it here
        _serial(fn, items, helper_first, main_first)
        return
    try:
        if main_first is not None:
            box["items"] = main_first()
        ready.set()
        drain()
    except BaseException as exc:
        errors.insert(0, exc)
        failed.set()
        ready.set()
    # The helper may be working on buffers the caller frees when this returns (a read
    # transaction's pages): never return before it has stopped, even when interrupted. (An
    # interrupted Thread.join() marks a running thread stopped in Python 3.11: wait on an Event.)
    while True:
        try:
            finished.wait()
            break
        except BaseException as exc:  # KeyboardInterrupt while waiting: stop the helper, then raise
            errors.insert(0, exc)
            failed.set()
            ready.set()
    thread.join()
    if errors:
        raise errors[0]


def _serial(
    fn: Callable[[T], None],
    items: Sequence[T],
    helper_first: Callable[[], None] | None,
    main_first: Callable[[], Sequence[T]] | None,
) -> None:
    if helper_first is not None:
        helper_first()
    if main_first is not None:
        items = main_first()
    for item in items:
        fn(item)
