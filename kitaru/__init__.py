"""kitaru: durable execution for Python agents.

``@flow`` marks the durable boundary of a workflow, ``@checkpoint`` a unit of work whose output
is persisted; inside a checkpoint ``kitaru.save()`` stores a named value and ``kitaru.load()``
reads one from another execution; ``KitaruClient`` browses executions and artifacts.

Importing kitaru is cheap: the storage engine loads when a flow first runs.
"""

from typing import TYPE_CHECKING

from kitaru_store.lazy import lazy_getattr

from . import memory  # the module: kitaru.memory.set/get/list/history/delete/redact
from .artifacts import ArtifactType, load, register_type, save
from .client import ArtifactRef, CheckpointCall, Execution, KitaruClient, WaitInfo
from .context import current_execution_id
from .decorators import Checkpoint, Flow, checkpoint, flow
from .errors import (
    AmbiguousIdError,
    AmbiguousNameError,
    ArtifactNotFoundError,
    CorruptionError,
    CorruptObjectError,
    DivergenceError,
    DuplicateNameError,
    ExecutionNotFinishedError,
    ExecutionNotFoundError,
    ExecutionStateError,
    ExecutionWaitingError,
    FlowExecutionError,
    FlowNotFoundError,
    InputValidationError,
    InvalidArtifactTypeError,
    InvalidNameError,
    KitaruContextError,
    KitaruError,
    KitaruUsageError,
    NotFoundError,
    PickleNotAllowedError,
    SerializationError,
    StateError,
    StoreError,
    StoreNotFoundError,
    UsageError,
    WaitAbortedError,
    WaitNotFoundError,
)
from .handles import CheckpointOutput, FlowHandle

if TYPE_CHECKING:
    from .calls import CheckpointFuture
    from .llm import llm
    from .llm_providers import LLMConfigError, LLMError
    from .memory import MemoryKeyNotFoundError, MemoryRedactedError
    from .metadata import log
    from .waits import PendingWait, wait

# Loaded on first use, so that `import kitaru` stays cheap (thread pools, HTTP, schema handling).
_LAZY = {
    "CheckpointFuture": "calls",
    "llm": "llm",
    "LLMConfigError": "llm_providers",
    "LLMError": "llm_providers",
    "log": "metadata",
    "MemoryKeyNotFoundError": "memory",
    "MemoryRedactedError": "memory",
    "PendingWait": "waits",
    "wait": "waits",
}


__getattr__ = lazy_getattr(__name__, _LAZY)


__version__ = "0.1.0"

__all__ = [
    "AmbiguousIdError",
    "AmbiguousNameError",
    "ArtifactNotFoundError",
    "ArtifactRef",
    "ArtifactType",
    "Checkpoint",
    "CheckpointCall",
    "CheckpointFuture",
    "CheckpointOutput",
    "CorruptObjectError",
    "CorruptionError",
    "DivergenceError",
    "DuplicateNameError",
    "Execution",
    "ExecutionNotFinishedError",
    "ExecutionNotFoundError",
    "ExecutionStateError",
    "ExecutionWaitingError",
    "Flow",
    "FlowExecutionError",
    "FlowHandle",
    "FlowNotFoundError",
    "InputValidationError",
    "InvalidArtifactTypeError",
    "InvalidNameError",
    "KitaruClient",
    "KitaruContextError",
    "KitaruError",
    "KitaruUsageError",
    "LLMConfigError",
    "LLMError",
    "MemoryKeyNotFoundError",
    "MemoryRedactedError",
    "NotFoundError",
    "PendingWait",
    "PickleNotAllowedError",
    "SerializationError",
    "StateError",
    "StoreError",
    "StoreNotFoundError",
    "UsageError",
    "WaitAbortedError",
    "WaitInfo",
    "WaitNotFoundError",
    "checkpoint",
    "current_execution_id",
    "flow",
    "llm",
    "load",
    "log",
    "memory",
    "register_type",
    "save",
    "wait",
]
