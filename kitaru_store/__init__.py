"""kitaru_store: a content-addressed artifact repository (BLAKE3 ids, zstd, LMDB).

It never imports kitaru. The public surface is :class:`Repository` and the error classes.
"""

from .errors import (
    AmbiguousIdError,
    AmbiguousNameError,
    ArtifactNotFoundError,
    CorruptObjectError,
    ExecutionNotFoundError,
    InvalidIdError,
    InvalidNameError,
    KitaruError,
    NotAStoreError,
    ObjectNotFoundError,
    PickleNotAllowedError,
    ReadOnlyStoreError,
    SerializationError,
    StoreError,
    StoreFormatError,
    StoreFullError,
    StoreLockedError,
    StoreNotFoundError,
)
from .manifests import ARTIFACT_TYPES, ENTRY_KINDS, STATUSES, CheckpointRecord, Entry, Failure, Manifest
from .repository import Repository, StoredValue, Writer

__version__ = "0.1.0"

__all__ = [
    "ARTIFACT_TYPES",
    "ENTRY_KINDS",
    "STATUSES",
    "AmbiguousIdError",
    "AmbiguousNameError",
    "ArtifactNotFoundError",
    "CheckpointRecord",
    "CorruptObjectError",
    "Entry",
    "ExecutionNotFoundError",
    "Failure",
    "InvalidIdError",
    "InvalidNameError",
    "KitaruError",
    "Manifest",
    "NotAStoreError",
    "ObjectNotFoundError",
    "PickleNotAllowedError",
    "ReadOnlyStoreError",
    "Repository",
    "SerializationError",
    "StoreError",
    "StoreFormatError",
    "StoreFullError",
    "StoreLockedError",
    "StoreNotFoundError",
    "StoredValue",
    "Writer",
]
