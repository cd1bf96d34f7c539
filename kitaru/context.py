"""Runtime state of the running flow and checkpoint, in ContextVars.

``current_flow()`` / ``current_checkpoint()`` raise a KitaruContextError that says where the call
belongs; the ``maybe_`` forms return None. ContextVars (not thread-locals) so that the state
follows the code into threads started with ``contextvars.copy_context()``.
"""

from __future__ import annotations

import threading
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .errors import DuplicateNameError, KitaruContextError

if TYPE_CHECKING:
    from kitaru_store import Repository, Writer
    from kitaru_store.manifests import Entry


@dataclass
class FlowRun:
    """One execution of a flow body, in this process."""

    repo: Repository
    exec_id: str
    flow_name: str
    counters: dict[str, int] = field(default_factory=dict)
    used_ids: set[str] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def next_invocation_id(self, name: str, explicit: str | None = None) -> str:
        """research, research_2, research_3, ... or an explicit id, unique within the execution."""
        with self.lock:
            if explicit is not None:
                if explicit in self.used_ids:
                    raise DuplicateNameError(
                        f"invocation id {explicit!r} is used twice in this execution",
                        exec_id=self.exec_id,
                        name=explicit,
                        hint="give each checkpoint call a unique id",
                    )
                self.used_ids.add(explicit)
                return explicit
            while True:
                n = self.counters.get(name, 0) + 1
                self.counters[name] = n
                candidate = name if n == 1 else f"{name}_{n}"
                if candidate not in self.used_ids:
                    self.used_ids.add(candidate)
                    return candidate


@dataclass
class CheckpointRun:
    """One attempt of one checkpoint invocation."""

    flow: FlowRun
    name: str
    invocation_id: str
    writer: Writer
    saved: dict[str, Entry] = field(default_factory=dict)
    loaded: list[str] = field(default_factory=list)  # object ids read with kitaru.load (lineage)
    metadata: dict[str, Any] = field(default_factory=dict)


_flow: ContextVar[FlowRun | None] = ContextVar("kitaru_flow", default=None)
_checkpoint: ContextVar[CheckpointRun | None] = ContextVar("kitaru_checkpoint", default=None)


def maybe_current_flow() -> FlowRun | None:
    return _flow.get()


def maybe_current_checkpoint() -> CheckpointRun | None:
    return _checkpoint.get()


def current_checkpoint(api: str) -> CheckpointRun:
    cp = _checkpoint.get()
    if cp is None:
        where = "in a flow body" if _flow.get() is not None else "outside any flow"
        raise KitaruContextError(
            f"{api} can only be called inside a @checkpoint function, not {where}",
            exec_id=fr.exec_id if (fr := _flow.get()) else None,
            hint=f"move the {api} call into a function decorated with @checkpoint",
        )
    return cp


def current_execution_id() -> str | None:
    """The id of the execution this code runs in, or None outside a flow."""
    fr = _flow.get()
    return fr.exec_id if fr else None
