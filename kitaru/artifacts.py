"""``kitaru.save`` and ``kitaru.load``: named values inside checkpoints."""

from __future__ import annotations

import enum
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, TypeVar

from kitaru_store.errors import DuplicateNameError, InvalidArtifactTypeError, KitaruError, SerializationError
from kitaru_store.names import ARTIFACT_TYPES, validate_name

from .context import current_checkpoint

if TYPE_CHECKING:
    from kitaru_store import Entry, StoredValue

T = TypeVar("T")


class ArtifactType(enum.StrEnum):
    """The artifact types kitaru validates."""

    PROMPT = "prompt"
    RESPONSE = "response"
    CONTEXT = "context"
    INPUT = "input"
    OUTPUT = "output"
    BLOB = "blob"


def normalize_type(value: Any) -> str:
    """An artifact type, case-insensitive; anything else is an InvalidArtifactTypeError listing them."""
    if isinstance(value, ArtifactType):
        return value.value
    if isinstance(value, str) and value.strip().lower() in ARTIFACT_TYPES:
        return value.strip().lower()
    raise InvalidArtifactTypeError(
        f"unknown artifact type {value!r}",
        name=str(value),
        hint=f"use one of: {', '.join(ARTIFACT_TYPES)}",
    )


def _tags(tags: Iterable[str] | None) -> tuple[str, ...]:
    if tags is None:
        return ()
    if isinstance(tags, str):
        tags = [tags]
    return tuple(validate_name(t, what="tag") for t in tags)


def _metadata(metadata: Any, *, name: str, exec_id: str) -> dict[str, Any]:
    """Metadata goes into the manifest, so it must read back as MessagePack data with string keys."""
    import msgspec

    from kitaru_store import nesting

    if metadata is None:
        return {}
    nesting.require_within(metadata, f"metadata of artifact {name!r}", exec_id=exec_id, name=name)
    try:
        nesting.on_fresh_stack(
            lambda: msgspec.msgpack.decode(msgspec.msgpack.encode(metadata), type=dict[str, Any])
        )
    except (TypeError, ValueError, RecursionError, msgspec.MsgspecError) as exc:
        raise SerializationError(
            f"metadata of artifact {name!r} cannot be stored: {exc}",
            exec_id=exec_id,
            name=name,
            hint="pass a dict with string keys and plain values (str, int, float, bool, None, lists, dicts)",
        ) from None
    return dict(metadata)


def new_entry(stored: StoredValue, *, name: str, kind: str, artifact_type: str, **fields: Any) -> Entry:
    """A manifest entry for a value just staged in a writer (a new artifact id, the object's facts)."""
    from kitaru_store import Entry
    from kitaru_store.ids import new_uuid

    return Entry(
        artifact_id=new_uuid(),
        name=name,
        kind=kind,
        artifact_type=artifact_type,
        object_id=stored.object_id,
        size=stored.size,
        serializer=stored.serializer,
        **fields,
    )


def save(
    name: str,
    value: Any,
    type: str | ArtifactType = "output",
    tags: Iterable[str] | None = None,
    *,
    metadata: dict[str, Any] | None = None,
    overwrite: bool = False,
    allow_pickle: bool | None = None,
) -> None:
    """Store ``value`` under ``name`` in the current checkpoint. Durable when the checkpoint ends.

    Checkpoint-only. Saving a name twice in one checkpoint is a DuplicateNameError unless
    ``overwrite=True``.
    """
    from kitaru_store.manifests import utcnow

    cp = current_checkpoint("kitaru.save()")
    exec_id = cp.flow.exec_id
    validate_name(name, what="artifact name", exec_id=exec_id)
    artifact_type = normalize_type(type)
    tag_tuple = _tags(tags)
    meta = _metadata(metadata, name=name, exec_id=exec_id)
    if name in cp.saved and not overwrite:
        raise DuplicateNameError(
            f"artifact {name!r} was already saved in checkpoint {cp.invocation_id!r}",
            exec_id=exec_id,
            name=name,
            hint="use another name, or pass overwrite=True to replace it",
        )
    try:
        stored = cp.writer.put_value(value, allow_pickle=allow_pickle)
    except KitaruError as exc:
        exc.concerning(exec_id=exec_id, name=name)
        raise
    entry = new_entry(
        stored,
        name=name,
        kind="manual",
        artifact_type=artifact_type,
        created_at=utcnow(),
        checkpoint=cp.name,
        invocation_id=cp.invocation_id,
        tags=tag_tuple,
        metadata=meta,
    )
    cp.writer.replace_entry(exec_id, entry)
    cp.saved[name] = entry


def load(exec_id: str, name: str, *, allow_pickle: bool | None = None) -> Any:
    """The value named ``name`` in execution ``exec_id`` (a full id or a unique prefix).

    Checkpoint outputs answer to their checkpoint name and invocation id, saved artifacts to
    their name. Checkpoint-only; the read is recorded as an input of the current checkpoint.
    """
    cp = current_checkpoint("kitaru.load()")
    repo = cp.flow.repo
    entry = repo.resolve_name(exec_id, name)
    try:
        value = repo.get_value(entry.object_id, allow_pickle=allow_pickle)
    except KitaruError as exc:
        exc.concerning(exec_id=exec_id, name=name)
        raise
    cp.loaded.append(entry.object_id)
    return value


def register_type(cls: type[T], *, stored_as: str | None = None) -> type[T]:
    """Load stored values that name ``cls`` (a data class, msgspec Struct, pydantic model or Enum) as it.

    Loading never imports a module: a value names its class by ``module:qualname`` and is rebuilt
    only if that module is already imported, or the class is registered here; otherwise it loads as
    plain data (a dict of fields, an enum's value) with a warning. ``stored_as`` registers the
    class under another path (one it was stored under before it moved). Returns ``cls``, so this
    also works as a class decorator.
    """
    from kitaru_store import serialization

    serialization.register(cls, stored_as=stored_as)
    return cls
