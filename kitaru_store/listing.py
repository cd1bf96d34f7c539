"""The newest-first walk of the execution indexes (docs/design.md 9.2).

Shared by :meth:`Repository.iter_executions` and the fast path of ``kitaru-store log``
(cli/quicklog.py), which decode the summaries each in their own way. Imports neither msgspec
nor typing at run time: the fast path starts without them.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (see kitaru_store/__init__.py)
if TYPE_CHECKING:
    from collections.abc import Iterator

    from .backend import Backend

BATCH = 256


def summary_batches(backend: Backend, *, flow: str | None = None) -> Iterator[list[bytes]]:
    """The stored ExecutionSummary records, newest first, in batches of up to BATCH.

    All executions: ``exec_time`` in reverse key order. One flow: ``exec_flow`` in reverse order
    within the flow's prefix, each key's 24-byte tail naming the ``exec_time`` record. Each batch is
    read in its own short read transaction; the next starts strictly below the last key seen. A
    batch shorter than BATCH is the last.
    """
    hi: bytes | None = None
    while True:
        keys: list[bytes] = []
        values: list[bytes] = []
        with backend.read() as rt:
            if flow is None:
                for key, value in rt.items(b"exec_time", b"", hi, reverse=True):
                    keys.append(key)
                    values.append(value)
                    if len(keys) >= BATCH:
                        break
            else:
                fprefix = flow.encode() + b"\x00"
                upper = fprefix + hi if hi is not None else fprefix + b"\xff" * 25
                for key, _ in rt.items(b"exec_flow", fprefix, upper, reverse=True):
                    tkey = key[len(fprefix) :]
                    summary_raw = rt.get(b"exec_time", tkey)
                    if summary_raw is not None:
                        keys.append(tkey)
                        values.append(summary_raw)
                    if len(keys) >= BATCH:
                        break
        yield values
        if len(keys) < BATCH:
            return
        hi = keys[-1]
