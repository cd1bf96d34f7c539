"""The one error hierarchy shared by kitaru_store and kitaru.

Every error derives from :class:`KitaruError`, carries the ids and names it concerns
(``exec_id``, ``name``, ``object_id`` where they apply) and says what to do next in ``hint``.
The SDK re-exports these classes; it adds its own subclasses but never a second base.
Four families directly beneath it (NotFoundError, CorruptionError, StateError, UsageError) say
what the caller should do; each specific error is in one of them or, by design, in none.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (see kitaru_store/__init__.py)
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Any


class KitaruError(Exception):
    """Base of every error raised by kitaru and kitaru_store."""

    def __init__(
        self,
        message: str,
        *,
        exec_id: str | None = None,
        name: str | None = None,
        object_id: str | None = None,
        hint: str | None = None,
    ) -> None:
        self.message = message
        self.exec_id = exec_id
        self.name = name
        self.object_id = object_id
        self.hint = hint
        super().__init__(self._render())

    def _render(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message

    def with_hint(self, hint: str) -> KitaruError:
        """This error, with ``hint`` in place of the one it had (its text follows)."""
        self.hint = hint
        self.args = (self._render(),)
        return self

    def concerning(self, *, exec_id: str | None = None, name: str | None = None) -> KitaruError:
        """This error, with the execution and name it concerns filled in where they were unknown."""
        if self.exec_id is None:
            self.exec_id = exec_id
        if self.name is None:
            self.name = name
        return self

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able form, used by the CLI's ``--json`` error objects."""
        out: dict[str, Any] = {"error": type(self).__name__, "message": self.message}
        for key in ("exec_id", "name", "object_id", "hint"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        return out


# --- families: what the caller should do ------------------------------------------------------


class NotFoundError(KitaruError):
    """Something named does not exist (a store, execution, artifact, object, flow, wait, key):
    check the id or name, list what exists, or create it first."""


class CorruptionError(KitaruError):
    """Stored bytes are damaged or contradict themselves; nothing wrong was returned. Run
    ``kitaru-store fsck``, save the value again, or restore from a backup or remote."""


class StateError(KitaruError):
    """The thing exists but is in the wrong state for the request (running, finished, locked,
    redacted, created already): wait, or act on its current state."""


class UsageError(KitaruError):
    """The API or CLI was called the wrong way (a bad name, id, option or argument): fix the call."""


# --- the store itself ------------------------------------------------------------------------


class StoreError(KitaruError):
    """A problem with the store as a whole (location, format, locking, space)."""


class StoreNotFoundError(StoreError, NotFoundError):
    def __init__(self, path: str, *, looked: Sequence[str] = ()) -> None:
        where = "; ".join(looked) if looked else path
        super().__init__(
            f"no kitaru store at {path}",
            hint=f"looked at: {where}. Run a flow (which creates the store) or pass --store / KITARU_STORE",
        )
        self.path = path


class NotAStoreError(StoreError, UsageError):
    def __init__(self, path: str, reason: str) -> None:
        super().__init__(
            f"{path} is not a kitaru store: {reason}",
            hint="point KITARU_STORE or --store at a store directory, or at an empty or missing directory",
        )
        self.path = path


class StoreFormatError(StoreError):
    """The store (or one record in it) was written by a newer, incompatible format."""


class StoreLockedError(StoreError, StateError):
    """Another process holds a lock this operation needs (gc, compaction)."""


class StoreFullError(StoreError):
    """The disk (or the configured map limit) is full; the failed write left the store unchanged."""


class ReadOnlyStoreError(StoreError):
    """A write was attempted on a store opened read-only or on a read-only filesystem."""


class CorruptStoreError(StoreError, CorruptionError):
    """The store's LMDB data file is damaged (truncated, or its header is not LMDB's): it is not
    opened, since mapping it could crash the process. Nothing was changed."""

    def __init__(self, path: str, detail: str) -> None:
        super().__init__(
            f"the store's data file {path} is damaged: {detail}",
            hint="restore the store directory from a backup, or make a new store from a remote with"
            " `kitaru-store clone URL PATH`; the file was left as it is (if the store never held"
            " data, delete the file)",
        )
        self.path = path


class LockFileReplacedError(StoreError):
    """A lock file of an open store was deleted or replaced: two writers could run at once."""


# --- objects ---------------------------------------------------------------------------------


class ObjectNotFoundError(NotFoundError):
    def __init__(self, object_id: str, *, exec_id: str | None = None, name: str | None = None) -> None:
        super().__init__(
            f"object {object_id} is not in the store",
            exec_id=exec_id,
            name=name,
            object_id=object_id,
            hint="it may have been garbage-collected or never pushed; run `kitaru-store fsck`",
        )


class CorruptObjectError(CorruptionError):
    """Stored bytes do not hash to their id, or cannot be decoded. Never returns wrong data."""

    def __init__(self, object_id: str, detail: str, *, exec_id: str | None = None) -> None:
        super().__init__(
            f"object {object_id} is corrupt: {detail}",
            exec_id=exec_id,
            object_id=object_id,
            hint="saving the same value again repairs it; `kitaru-store fsck` lists every damaged object",
        )


class CorruptManifestError(CorruptionError):
    """A stored manifest cannot be decoded (damaged bytes). Its objects are unaffected."""


class AmbiguousIdError(UsageError):
    """A short id (object or execution) matches more than one full id."""

    def __init__(self, prefix: str, candidates: Sequence[str], *, what: str = "id") -> None:
        self.prefix = prefix
        self.candidates = list(candidates)
        shown = ", ".join(self.candidates[:10]) + (" ..." if len(self.candidates) > 10 else "")
        super().__init__(
            f"{what} prefix {prefix!r} is ambiguous: {shown}",
            name=prefix,
            hint="give more characters of the id",
        )


class InvalidIdError(UsageError):
    """An id or id prefix that is not well-formed (wrong characters, too short)."""


class IncompleteObjectError(ObjectNotFoundError):
    """A chunked value's index is stored but one of its chunks is not (gc is removing the value,
    or the store is damaged): a write refuses to keep it, and commits nothing."""

    def __init__(self, object_id: str, chunk_id: str) -> None:
        KitaruError.__init__(
            self,
            f"object {object_id} is incomplete: its chunk {chunk_id} is not in the store",
            object_id=object_id,
            hint="save the value again (a save stores its missing chunks), then reference it;"
            " `kitaru-store fsck` lists damaged objects",
        )


class CorruptRecordError(CorruptionError, ValueError):
    """A stored record's frame (codec.py) is malformed: a reader that knows which object it
    belongs to re-raises it as CorruptObjectError naming the object. Also a ValueError, which is
    what the frame decoders raised before."""


class CorruptSummaryError(CorruptManifestError):
    """An execution's summary (its row in the time index, what listing shows) is damaged: its
    checksum does not match, it does not decode, or it names another execution. The manifest
    itself may be intact."""


# --- executions and names --------------------------------------------------------------------


class ExecutionNotFoundError(NotFoundError):
    def __init__(self, exec_id: str) -> None:
        super().__init__(
            f"no execution {exec_id!r} in the store",
            exec_id=exec_id,
            hint="list executions with `kitaru-store log` or KitaruClient().executions.list()",
        )


class ArtifactNotFoundError(NotFoundError):
    def __init__(self, name: str, *, exec_id: str | None, available: Sequence[str] = ()) -> None:
        self.available = sorted(set(available))
        where = f" in execution {exec_id}" if exec_id else ""
        names = ", ".join(self.available) if self.available else "(none)"
        super().__init__(
            f"no checkpoint or artifact named {name!r}{where}",
            exec_id=exec_id,
            name=name,
            hint=f"names that exist: {names}",
        )


class AmbiguousNameError(UsageError):
    """A name matches more than one entry; ``candidates`` lists every one."""

    def __init__(self, name: str, *, exec_id: str | None, candidates: Sequence[dict[str, Any]]) -> None:
        self.candidates = list(candidates)
        lines = "; ".join(
            f"{c['name']} (kind={c['kind']}, checkpoint={c.get('checkpoint')}, object={c['object_id'][:12]})"
            for c in self.candidates
        )
        super().__init__(
            f"name {name!r} is ambiguous in execution {exec_id}: {len(self.candidates)} matches: {lines}",
            exec_id=exec_id,
            name=name,
            hint="save artifacts under unique names, or load a checkpoint output by its invocation id",
        )


class InvalidNameError(UsageError):
    """A name (artifact, checkpoint, flow, pin) that cannot be stored."""


class InvalidArtifactTypeError(UsageError):
    """An artifact type that is not one of the documented ones."""


class DuplicateNameError(UsageError):
    """A name saved twice in one checkpoint without ``overwrite=True``."""


class IdCollisionError(StateError):
    """An import would reuse an id the store gives to something else: an artifact id of another
    execution (``artifact_id``, ``owner``), an artifact id twice in one manifest, or an execution
    whose local manifest is not the one the import was decided on. The execution is not imported.
    """

    def __init__(
        self,
        message: str,
        *,
        exec_id: str,
        artifact_id: str | None = None,
        owner: str | None = None,
        hint: str | None = None,
    ) -> None:
        self.artifact_id = artifact_id
        self.owner = owner
        super().__init__(message, exec_id=exec_id, name=artifact_id, hint=hint)


class ManifestTooLargeError(UsageError):
    """A change would make an execution's manifest larger than manifests.MAX_MANIFEST_SIZE.
    Nothing of the change is stored."""


# --- values ----------------------------------------------------------------------------------


class SerializationError(KitaruError):
    """A value cannot be turned into bytes, or stored bytes cannot be turned back into a value."""


class PickleNotAllowedError(SerializationError, UsageError):
    """Pickle is needed but was not opted into. A store is data, not code."""


class CorruptValueError(SerializationError, CorruptionError):
    """Stored value bytes contradict themselves (a declared length or shape the bytes do not hold)."""


class NestingTooDeepError(SerializationError):
    """A value or metadata tree nests deeper than the store allows (nesting.MAX_DEPTH levels)."""
