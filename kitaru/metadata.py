"""``kitaru.log(**metadata)``: attach JSON-able metadata to the current checkpoint or execution."""

from __future__ import annotations

from typing import Any

from . import context
from .errors import KitaruContextError

# kitaru keeps its own execution metadata (where the flow is defined, earlier failures) under
# this prefix, so that user keys can never overwrite what replay and retry rely on.
RESERVED_PREFIX = "kitaru."


def log(**metadata: Any) -> None:
    """Record key/value metadata: on the running checkpoint (committed with it), or, in a flow
    body, on the execution (committed now). Later values for a key replace earlier ones.
    Visible through ``KitaruClient`` (``Execution.metadata``, ``CheckpointCall.metadata``) and
    ``kitaru-store show``.
    """
    from .waits import _jsonable

    run = context.maybe_current_flow()
    if run is None:
        raise KitaruContextError(
            "kitaru.log() can only be called while a flow runs",
            hint="call it in a @flow body (execution metadata) or a @checkpoint (checkpoint metadata)",
        )
    cp = context.maybe_current_checkpoint()
    reserved = sorted(k for k in metadata if k.startswith(RESERVED_PREFIX))
    if reserved:
        from .errors import KitaruUsageError

        raise KitaruUsageError(
            f"metadata keys starting with {RESERVED_PREFIX!r} are kitaru's own: {', '.join(reserved)}",
            exec_id=run.exec_id,
            name=reserved[0],
            hint="choose another key",
        )
    data = _jsonable(metadata, run.exec_id, cp.invocation_id if cp else None)
    if cp is not None:
        cp.metadata.update(data)
        return
    with run.repo.writer() as w:
        w.merge_metadata(run.exec_id, data)
