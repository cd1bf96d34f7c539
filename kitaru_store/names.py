"""Validation of user-given names (artifacts, checkpoints, flows, pins). No heavy imports."""

from __future__ import annotations

from .errors import InvalidNameError

MAX_NAME = 255
ARTIFACT_TYPES: tuple[str, ...] = ("prompt", "response", "context", "input", "output", "blob")
# An execution's statuses (manifests.Status lists the same); here, importable without msgspec.
STATUSES: tuple[str, ...] = ("running", "waiting", "completed", "failed", "cancelled")


def validate_name(name: object, *, what: str = "name", exec_id: str | None = None) -> str:
    """Names are non-empty text of at most 255 characters with no control characters or slashes."""
    if not isinstance(name, str):
        raise InvalidNameError(
            f"{what} must be a string, not {type(name).__name__}",
            exec_id=exec_id,
            hint="pass the name as text",
        )
    problem = None
    if not name or not name.strip():
        problem = "is empty"
    elif len(name) > MAX_NAME:
        problem = f"is longer than {MAX_NAME} characters"
    elif not (name.isascii() and name.isprintable()) and any(ord(c) < 32 or ord(c) == 127 for c in name):
        problem = "contains control characters"
    elif "/" in name or "\\" in name:
        problem = "contains a path separator"
    elif name != name.strip():
        problem = "has leading or trailing white space"
    if problem:
        raise InvalidNameError(
            f"{what} {name[:80]!r} {problem}",
            exec_id=exec_id,
            name=name[:80],
            hint="use letters, digits, '_', '-', '.', ':' and spaces; at most 255 characters",
        )
    return name
