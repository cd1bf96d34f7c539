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
    from concurrent.futures import ThreadPoolExecutor

    from kitaru_store import Repository, Writer
    from kitaru_store.manifests import Entry

    from .replay import ReusePlan


@dataclass
class FlowRun:
    """One execution of a flow body, in this process."""

    repo: Repository
    exec_id: str
    flow_name: str
    counters: dict[str, int] = field(default_factory=dict)
    used_ids: set[str] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)
    plan: ReusePlan | None = None  # replay, resume or retry: which recorded calls to reuse
    cache: bool = False  # the flow's (or the run's) caching default for its checkpoints
    cache_forced: bool | None = None  # a run-level setting that overrides every checkpoint's
    seq: int = 0
    executor: ThreadPoolExecutor | None = None
    futures: list[Any] = field(default_factory=list)  # CheckpointFutures of submitted calls
    # Stopping (cancellation.py): why the run stops, the signal to deliver again once it has,
    # whether the flow body is running, the handlers the run replaced, the last cancel poll.
    stop: Any = None  # an ExecutionCancelled
    signum: int | None = None
    in_body: bool = False
    previous_handlers: dict[int, Any] = field(default_factory=dict)
    cancel_seen: list[Any] = field(default_factory=list)
    cancel_polled: float = float("-inf")  # time.monotonic() of the last read for a request

    def next_seq(self) -> int:
        with self.lock:
            self.seq += 1
            return self.seq

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
    llm_calls: dict[str, int] = field(default_factory=dict)  # llm() call names used in this attempt


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


def current_flow_body(api: str) -> FlowRun:
    """The running flow, for APIs that belong in the flow body itself (not inside a checkpoint)."""
    fr = _flow.get()
    if fr is None:
        raise KitaruContextError(
            f"{api} can only be called in the body of a running @flow",
            hint=f"call {api} from a function decorated with @flow, started with .run()",
        )
    cp = _checkpoint.get()
    if cp is not None:
        raise KitaruContextError(
            f"{api} cannot be called inside checkpoint {cp.invocation_id!r}",
            exec_id=fr.exec_id,
            name=cp.invocation_id,
            hint=f"call {api} in the flow body, between checkpoints",
        )
    return fr


def current_execution_id() -> str | None:
    """The id of the execution this code runs in, or None outside a flow."""
    fr = _flow.get()
    return fr.exec_id if fr else None
