"""kitaru: durable execution for Python agents.

``@flow`` marks the durable boundary of a workflow, ``@checkpoint`` a unit of work whose output
is persisted; inside a checkpoint ``kitaru.save()`` stores a named value and ``kitaru.load()``
reads one from another execution; ``KitaruClient`` browses executions and artifacts.

Importing kitaru is cheap: the storage engine loads when a flow first runs.
"""

from .artifacts import ArtifactType, load, save
from .client import ArtifactRef, CheckpointCall, Execution, KitaruClient
from .context import current_execution_id
from .decorators import Checkpoint, Flow, checkpoint, flow
from .errors import (
    AmbiguousIdError,
    AmbiguousNameError,
    ArtifactNotFoundError,
    CorruptObjectError,
    DuplicateNameError,
    ExecutionNotFinishedError,
    ExecutionNotFoundError,
    FlowExecutionError,
    InvalidArtifactTypeError,
    InvalidNameError,
    KitaruContextError,
    KitaruError,
    KitaruUsageError,
    PickleNotAllowedError,
    SerializationError,
    StoreError,
    StoreNotFoundError,
)
from .handles import CheckpointOutput, FlowHandle

__version__ = "0.1.0"

__all__ = [
    "AmbiguousIdError",
    "AmbiguousNameError",
    "ArtifactNotFoundError",
    "ArtifactRef",
    "ArtifactType",
    "Checkpoint",
    "CheckpointCall",
    "CheckpointOutput",
    "CorruptObjectError",
    "DuplicateNameError",
    "Execution",
    "ExecutionNotFinishedError",
    "ExecutionNotFoundError",
    "Flow",
    "FlowExecutionError",
    "FlowHandle",
    "InvalidArtifactTypeError",
    "InvalidNameError",
    "KitaruClient",
    "KitaruContextError",
    "KitaruError",
    "KitaruUsageError",
    "PickleNotAllowedError",
    "SerializationError",
    "StoreError",
    "StoreNotFoundError",
    "checkpoint",
    "current_execution_id",
    "flow",
    "load",
    "save",
]
