"""The newest-first walk of the execution indexes (docs/design.md 9.2), and its damaged rows.

Shared by :meth:`Repository.iter_executions` and the fast path of ``kitaru-store log``
(cli/quicklog.py), which decode the summaries with summary.py, each into its own class (an
ExecutionSummary; a summary.PlainSummary, without msgspec). A summary that does not
decode, or does not belong to its key, becomes a damaged row (manifests.DamagedSummary) and the
walk goes on. Imports neither msgspec nor typing at run time: the fast path starts without them.
"""

from __future__ import annotations

import datetime as dt

from . import layout
from .errors import CorruptSummaryError, KitaruError
from .names import fits

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (see kitaru_store/__init__.py)
if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from typing import TypeVar

    from .cli.text import Summary
    from .kv import Store
    from .manifests import DamagedSummary

    S = TypeVar("S", bound=Summary)

BATCH = 256
DAMAGED = "damaged"  # the status of a damaged row: no execution is ever stored with it
HINT = (
    "listing shows it as damaged and goes on; the execution's manifest is checked on its own"
    " (`kitaru-store show EXEC`); run `kitaru-store fsck`"
)


def damaged(detail: str) -> CorruptSummaryError:
    """The error of a damaged summary (listing and fsck add the execution from its key)."""
    return CorruptSummaryError(f"the execution's summary is damaged: {detail}", hint=HINT)


def check_key(key: bytes, exec_id: str, started_at: dt.datetime) -> None:
    """Refuse a summary that is not the one its exec_time key names (another execution's, or one
    whose start time moved): damage that still decodes, in a summary written before checksums."""
    if len(key) != layout.SUMMARY_KEY_BYTES:
        raise damaged(f"its key has {len(key)} bytes, not {layout.SUMMARY_KEY_BYTES}")
    if exec_id != layout.summary_exec_key(key).hex():
        raise damaged(f"it names execution {exec_id[:40]!r}")
    if layout.summary_key(started_at, layout.summary_exec_key(key)) != key:
        raise damaged("its start time is not the one its key records")


def summary_batches(
    backend: Store, *, flow: str | None = None, first: int = BATCH
) -> Iterator[list[tuple[bytes, bytes]]]:
    """The stored ExecutionSummary records with their exec_time keys, newest first, in batches of
    up to BATCH.

    All executions: ``exec_time`` in reverse key order. One flow: ``exec_flow`` in reverse order
    within the flow's prefix, each key's 24-byte tail naming the ``exec_time`` record. Each batch is
    read in its own short read transaction; the next starts strictly below the last key seen. A
    batch shorter than asked for is the last.

    ``first``: the size of the first batch (a caller that shows 20 rows reads about 20, not
    BATCH); each later batch is four times larger, up to BATCH.
    """
    size = max(1, min(first, BATCH))
    if flow is not None and not fits(flow, "flow name"):
        return  # no execution has a flow name longer than its key allows (LMDB would refuse it)
    hi: bytes | None = None
    while True:
        rows: list[tuple[bytes, bytes]] = []
        with backend.read() as rt:
            if flow is None:
                for key, value in rt.items(layout.EXEC_TIME, b"", hi, reverse=True):
                    rows.append((key, value))
                    if len(rows) >= size:
                        break
            else:
                fprefix = layout.flow_prefix(flow)
                upper = layout.flow_key(flow, hi) if hi is not None else layout.flow_upper(flow)
                for key, _ in rt.items(layout.EXEC_FLOW, fprefix, upper, reverse=True):
                    tkey = key[len(fprefix) :]
                    summary_raw = rt.get(layout.EXEC_TIME, tkey)
                    if summary_raw is not None:
                        rows.append((tkey, summary_raw))
                    if len(rows) >= size:
                        break
        yield rows
        if len(rows) < size:
            return
        hi = rows[-1][0]
        size = min(BATCH, size * 4)


def rows(
    batch: list[tuple[bytes, bytes]],
    decode: Callable[[bytes], S],
    *,
    flow: str | None,
    status: str | None,
    observe: Callable[[S], S] | None = None,
) -> Iterator[S | DamagedSummary]:
    """The summaries of ``batch`` with ``status`` (any, if None), decoded by ``decode``; each one
    that is damaged as a damaged row, whatever the status asked for (its own is unknown).

    ``observe`` turns a ``running`` row into what it is (liveness.py: a crashed run is failed)
    before the status is compared."""
    for key, value in batch:
        try:
            summary = decode(value)
            check_key(key, summary.exec_id, summary.started_at)
        except KitaruError as exc:  # CorruptSummaryError, or StoreFormatError
            yield damaged_row(key, flow, exc.message)
            continue
        if observe is not None and summary.status == "running":
            summary = observe(summary)
        if status is None or summary.status == status:
            yield summary


def damaged_row(key: bytes, flow: str | None, problem: str) -> DamagedSummary:
    """What listing shows for a damaged summary: what its key says (the execution and its start
    time), the flow when listing one flow, and the problem."""
    from .manifests import DamagedSummary  # only now: the fast path of `log` runs without msgspec

    return DamagedSummary(
        exec_id=layout.summary_exec_key(key).hex() or key.hex(),
        flow_name=flow if flow is not None else "?",
        status=DAMAGED,
        started_at=layout.summary_time(key),
        problem=problem,
    )
