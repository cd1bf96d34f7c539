"""Remotes: push, pull and clone executions to S3-compatible object storage (docs/remotes.md).

``Remote(repo, spec)`` (or ``Remote.open(repo, name)``) pushes and pulls; ``clone`` makes a new
store from a remote; ``settings`` keeps the configured remotes in ``<store>/remotes.json``.
The S3 client library (boto3, the ``remote`` extra) is imported when a remote is first used.
This package imports nothing heavy itself: names are loaded on first use (PEP 562).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..lazy import lazy_getattr
from .errors import (
    PreconditionFailed,
    RemoteAuthError,
    RemoteConflictError,
    RemoteError,
    RemoteNotFoundError,
    RemotePullError,
)

if TYPE_CHECKING:
    from .settings import RemoteSpec
    from .sync import PullFailure, PullReport, PushReport, Remote, clone

_LAZY = {
    "RemoteSpec": "settings",
    "PullFailure": "sync",
    "PullReport": "sync",
    "PushReport": "sync",
    "Remote": "sync",
    "clone": "sync",
}


__getattr__ = lazy_getattr(__name__, _LAZY)


__all__ = [
    "PreconditionFailed",
    "PullFailure",
    "PullReport",
    "PushReport",
    "Remote",
    "RemoteAuthError",
    "RemoteConflictError",
    "RemoteError",
    "RemoteNotFoundError",
    "RemotePullError",
    "RemoteSpec",
    "clone",
]
