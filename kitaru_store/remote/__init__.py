"""Remotes: push, pull and clone executions to S3-compatible object storage (docs/remotes.md).

``Remote(repo, spec)`` (or ``Remote.open(repo, name)``) pushes and pulls; ``clone`` makes a new
store from a remote; ``settings`` keeps the configured remotes in ``<store>/remotes.json``.
The S3 client library (boto3, the ``remote`` extra) is imported when a remote is first used.
This package imports nothing heavy itself: names are loaded on first use (PEP 562).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .errors import (
    PreconditionFailed,
    RemoteAuthError,
    RemoteConflictError,
    RemoteError,
    RemoteNotFoundError,
)

if TYPE_CHECKING:
    from .settings import RemoteSpec
    from .sync import PullReport, PushReport, Remote, clone

_LAZY = {
    "RemoteSpec": "settings",
    "PullReport": "sync",
    "PushReport": "sync",
    "Remote": "sync",
    "clone": "sync",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


__all__ = [
    "PreconditionFailed",
    "PullReport",
    "PushReport",
    "Remote",
    "RemoteAuthError",
    "RemoteConflictError",
    "RemoteError",
    "RemoteNotFoundError",
    "RemoteSpec",
    "clone",
]
