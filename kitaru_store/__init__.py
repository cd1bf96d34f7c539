"""kitaru_store: a content-addressed artifact repository (BLAKE3 ids, zstd, LMDB).

It never imports kitaru. The public surface is :class:`Repository` and the error classes.

The error classes are imported eagerly (they need only the standard library); everything that
pulls in lmdb, zstandard, msgspec or blake3 is imported on first use through the module-level
``__getattr__`` below (PEP 562), so that ``kitaru-store --help`` and ``import kitaru_store.errors``
stay fast. The public names are the same either way.

The modules that ``kitaru-store log`` loads (this one, errors, lazy, names, config, backend and
locks; see kitaru_store/cli/quicklog.py) do not import ``typing`` at run time either: it costs
~10 ms of start-up here. Their annotations are strings (``from __future__ import annotations``),
and what they name is imported under ``TYPE_CHECKING = False``, a constant that type checkers
take to be true, as they do ``typing.TYPE_CHECKING``.
"""

from __future__ import annotations

from .errors import (
    AmbiguousIdError,
    AmbiguousNameError,
    ArtifactNotFoundError,
    CorruptionError,
    CorruptManifestError,
    CorruptObjectError,
    CorruptRecordError,
    CorruptStoreError,
    CorruptSummaryError,
    CorruptValueError,
    ExecutionNotFoundError,
    IdCollisionError,
    IncompleteObjectError,
    InvalidIdError,
    InvalidNameError,
    KitaruError,
    LockFileReplacedError,
    ManifestTooLargeError,
    NestingTooDeepError,
    NotAStoreError,
    NotFoundError,
    ObjectNotFoundError,
    PickleNotAllowedError,
    ReadOnlyStoreError,
    SerializationError,
    StateError,
    StoreError,
    StoreFormatError,
    StoreFullError,
    StoreLockedError,
    StoreNotFoundError,
    UsageError,
)
from .lazy import lazy_getattr

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (see above)
if TYPE_CHECKING:
    from .manifests import (
        ARTIFACT_TYPES,
        ENTRY_KINDS,
        STATUSES,
        CheckpointRecord,
        Entry,
        Failure,
        Manifest,
    )
    from .repository import Repository
    from .writer import StoredValue, Writer

__version__ = "0.1.0"

# Public name -> the submodule that defines it; imported when the name is first looked up.
_LAZY = {
    "ARTIFACT_TYPES": "manifests",
    "ENTRY_KINDS": "manifests",
    "STATUSES": "manifests",
    "CheckpointRecord": "manifests",
    "Entry": "manifests",
    "Failure": "manifests",
    "Manifest": "manifests",
    "Repository": "repository",
    "StoredValue": "writer",
    "Writer": "writer",
}


__getattr__ = lazy_getattr(__name__, _LAZY)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "ARTIFACT_TYPES",
    "ENTRY_KINDS",
    "STATUSES",
    "AmbiguousIdError",
    "AmbiguousNameError",
    "ArtifactNotFoundError",
    "CheckpointRecord",
    "CorruptManifestError",
    "CorruptObjectError",
    "CorruptRecordError",
    "CorruptStoreError",
    "CorruptSummaryError",
    "CorruptValueError",
    "CorruptionError",
    "Entry",
    "ExecutionNotFoundError",
    "Failure",
    "IdCollisionError",
    "IncompleteObjectError",
    "InvalidIdError",
    "InvalidNameError",
    "KitaruError",
    "LockFileReplacedError",
    "Manifest",
    "ManifestTooLargeError",
    "NestingTooDeepError",
    "NotAStoreError",
    "NotFoundError",
    "ObjectNotFoundError",
    "PickleNotAllowedError",
    "ReadOnlyStoreError",
    "Repository",
    "SerializationError",
    "StateError",
    "StoreError",
    "StoreFormatError",
    "StoreFullError",
    "StoreLockedError",
    "StoreNotFoundError",
    "StoredValue",
    "UsageError",
    "Writer",
]
