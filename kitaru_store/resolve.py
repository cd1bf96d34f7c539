"""Name lookup inside one execution's manifest.

Checkpoint outputs answer to their checkpoint's name and to their invocation id (``research``,
``research_2``, ... or an explicit id); every other entry (saved artifacts, llm records, wait
inputs) answers to its own name. Exactly one match resolves; none is ArtifactNotFoundError with
the names that do exist; more than one is AmbiguousNameError with every candidate.
"""

from __future__ import annotations

from .errors import AmbiguousNameError, ArtifactNotFoundError
from .manifests import Entry, Manifest


def _matches(entry: Entry, name: str) -> bool:
    if entry.kind == "checkpoint_output":
        return name in (entry.invocation_id, entry.checkpoint)
    return entry.name == name


def addressable_names(manifest: Manifest) -> list[str]:
    names: set[str] = set()
    for e in manifest.entries:
        if e.kind == "checkpoint_output":
            names.update(n for n in (e.invocation_id, e.checkpoint) if n)
        else:
            names.add(e.name)
    return sorted(names)


def candidates(manifest: Manifest, name: str) -> list[Entry]:
    return [e for e in manifest.entries if _matches(e, name)]


def resolve(manifest: Manifest, name: str) -> Entry:
    found = candidates(manifest, name)
    if len(found) == 1:
        return found[0]
    if not found:
        raise ArtifactNotFoundError(name, exec_id=manifest.exec_id, available=addressable_names(manifest))
    raise AmbiguousNameError(
        name,
        exec_id=manifest.exec_id,
        candidates=[
            {
                "name": e.invocation_id if e.kind == "checkpoint_output" and e.invocation_id else e.name,
                "kind": e.kind,
                "checkpoint": e.checkpoint,
                "object_id": e.object_id,
                "artifact_id": e.artifact_id,
            }
            for e in found
        ],
    )
