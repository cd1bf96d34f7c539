"""Name lookup inside one execution's manifest.

Checkpoint outputs answer to their checkpoint's name and to their invocation id (``research``,
``research_2``, ... or an explicit id); every other entry (saved artifacts, llm records, wait
inputs) answers to its own name. The first call's invocation id is the bare checkpoint name, which
is ambiguous once the checkpoint ran twice, so the first call also answers to ``research_1``.
Exactly one match resolves; none is ArtifactNotFoundError with
the names that do exist; more than one is AmbiguousNameError with every candidate.
"""

from __future__ import annotations

from .errors import AmbiguousNameError, ArtifactNotFoundError
from .manifests import Entry, Manifest


def _first_call_alias(entry: Entry) -> str | None:
    if entry.kind == "checkpoint_output" and entry.checkpoint and entry.invocation_id == entry.checkpoint:
        return f"{entry.checkpoint}_1"
    return None


def _matches(entry: Entry, name: str) -> bool:
    if entry.kind == "checkpoint_output":
        return name in (entry.invocation_id, entry.checkpoint) or name == _first_call_alias(entry)
    return entry.name == name


def _display_name(entry: Entry, found: list[Entry]) -> str:
    """The name that picks ``entry`` out of an ambiguous set."""
    if entry.kind != "checkpoint_output" or not entry.invocation_id:
        return entry.name
    alias = _first_call_alias(entry)
    repeated = alias is not None and any(
        e is not entry and e.kind == "checkpoint_output" and e.checkpoint == entry.checkpoint for e in found
    )
    return alias if repeated and alias else entry.invocation_id


def addressable_names(manifest: Manifest) -> list[str]:
    names: set[str] = set()
    calls: dict[str, int] = {}
    for e in manifest.entries:
        if e.kind == "checkpoint_output":
            names.update(n for n in (e.invocation_id, e.checkpoint) if n)
            if e.checkpoint:
                calls[e.checkpoint] = calls.get(e.checkpoint, 0) + 1
        else:
            names.add(e.name)
    for e in manifest.entries:
        alias = _first_call_alias(e)
        if alias and e.checkpoint and calls.get(e.checkpoint, 0) > 1:
            names.add(alias)
    return sorted(names)


def candidates(manifest: Manifest, name: str) -> list[Entry]:
    return [e for e in manifest.entries if _matches(e, name)]


def name_index(manifest: Manifest) -> dict[str, list[Entry]]:
    """Every name an entry answers to -> the entries answering to it (in manifest order)."""
    index: dict[str, list[Entry]] = {}
    for e in manifest.entries:
        if e.kind == "checkpoint_output":
            names = {n for n in (e.invocation_id, e.checkpoint, _first_call_alias(e)) if n}
        else:
            names = {e.name}
        for n in names:
            index.setdefault(n, []).append(e)
    return index


def resolve(manifest: Manifest, name: str, *, index: dict[str, list[Entry]] | None = None) -> Entry:
    found = list(index.get(name, ())) if index is not None else candidates(manifest, name)
    if len(found) == 1:
        return found[0]
    if not found:
        raise ArtifactNotFoundError(name, exec_id=manifest.exec_id, available=addressable_names(manifest))
    raise AmbiguousNameError(
        name,
        exec_id=manifest.exec_id,
        candidates=[
            {
                "name": _display_name(e, found),
                "kind": e.kind,
                "checkpoint": e.checkpoint,
                "object_id": e.object_id,
                "artifact_id": e.artifact_id,
            }
            for e in found
        ],
    )
