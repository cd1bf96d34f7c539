"""The objects part of a Repository: values and bytes by content id, their info and prefixes."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from . import ids, layout
from .errors import ObjectNotFoundError
from .lazy import lazy_module
from .prefixes import resolve_prefix

if TYPE_CHECKING:
    from . import codec, objects, serialization
    from .repository import Repository
    from .writer import StoredValue
else:
    # Imported on first use: listing and reading manifests never load the object engine
    # (FastCDC, zstd, BLAKE3) or the serializers.
    codec = lazy_module("codec", globals())
    objects = lazy_module("objects", globals())
    serialization = lazy_module("serialization", globals())


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    object_id: str
    size: int
    stored_size: int
    codec: str
    chunks: int
    touched_at: dt.datetime | None


class Objects:
    """``repo.objects``: content-addressed values. A write is a Writer with one value in it."""

    __slots__ = ("_repo",)

    def __init__(self, repo: Repository) -> None:
        self._repo = repo

    def put_bytes(self, data: bytes | bytearray | memoryview) -> str:
        with self._repo.writer() as w:
            return w.put_bytes(data)

    def put_value(self, value: Any, *, allow_pickle: bool | None = None) -> StoredValue:
        with self._repo.writer() as w:
            return w.put_value(value, allow_pickle=allow_pickle)

    def get_bytes(self, object_id: str) -> bytes | bytearray:
        """The verified bytes of an object (the serialized form, for a value)."""
        data = self.read(object_id, mapped=False)
        assert not isinstance(data, memoryview)  # only mapped reads return one
        return data

    def get_value(self, object_id: str, *, allow_pickle: bool | None = None) -> Any:
        # A large value is read into a mapped buffer (objects.read): a numpy array views it in place.
        data = self.read(object_id, mapped=True)
        return serialization.deserialize(data, allow_pickle=allow_pickle, object_id=object_id)

    def read(self, object_id: str, *, mapped: bool) -> bytes | bytearray | memoryview:
        """An object's verified bytes. One missing here is offered to the Repository's
        ``missing_object`` hooks in turn (a remote's load fallback); the first that fetches it
        into the store has it read again."""
        key = self.key(object_id)
        kv = self._repo.kv
        try:
            with kv.read(buffers=True) as rt:
                return objects.read(rt, key, mapped=mapped)
        except ObjectNotFoundError:
            if not any(fetch(key.hex()) for fetch in self._repo.hooks.missing_object):
                raise
        with kv.read(buffers=True) as rt:
            return objects.read(rt, key, mapped=mapped)

    def has(self, object_id: str) -> bool:
        key = layout.object_key(object_id)
        with self._repo.kv.read() as rt:
            return rt.has(layout.OBJECTS, key)

    def key(self, object_id: str) -> bytes:
        """The store key of a full object id, or of a unique prefix of one."""
        if len(object_id) == ids.OBJECT_ID_HEX:
            return layout.object_key(object_id.lower())
        return layout.object_key(self.resolve(object_id))

    def resolve(self, prefix: str) -> str:
        """The full object id for a unique prefix of at least 4 hex characters."""
        return resolve_prefix(self._repo.kv, layout.OBJECTS, prefix, ids.OBJECT_ID_HEX, "object id")

    def info(self, object_id: str) -> ObjectInfo:
        key = self.key(object_id)
        with self._repo.kv.read(buffers=True) as rt:
            record = rt.get_view(layout.OBJECTS, key)
            if record is None:
                raise ObjectNotFoundError(key.hex())
            touched = objects.unpack_time(rt.get(layout.TOUCH, key))
            chunks = objects.chunk_keys(record, key)
            stored = len(record) + sum(len(rt.get_view(layout.OBJECTS, c) or b"") for c in chunks)
            codec_name = codec.stored_codec_name(record)
            # A view is valid only inside its read transaction: the index is read here.
            index_size = _index_size(record, key) if chunks else None
        size = index_size if index_size is not None else len(self.get_bytes(key.hex()))
        return ObjectInfo(
            key.hex(),
            size,
            stored,
            codec_name,
            len(chunks),
            dt.datetime.fromtimestamp(touched / 1e9, dt.UTC) if touched else None,
        )


def _index_size(record: memoryview, key: bytes) -> int:
    _, payload = objects.decode_checked(record, key)
    return objects.parse_index(payload, key).size
