"""The roots part of a Repository: pins and refs (what gc keeps) and checkpoint cache records."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import msgspec

from . import layout
from . import manifests as mf
from .errors import UsageError
from .lazy import lazy_module
from .names import fits, validate_name

if TYPE_CHECKING:
    from . import objects
    from .kv import WriteTxn
    from .repository import Repository
else:
    objects = lazy_module("objects", globals())  # the object engine, on first use


class Refs:
    """``repo.refs``: named roots. gc keeps every object a pin or ref names."""

    __slots__ = ("_repo",)

    def __init__(self, repo: Repository) -> None:
        self._repo = repo

    def pin(self, name: str, object_id: str) -> None:
        """Keep an object alive under ``name`` whatever gc finds."""
        validate_name(name, what="pin name")
        key = self._repo.objects.key(object_id)

        from . import reachability

        def txn(wt: WriteTxn) -> None:
            reachability.keep(wt, key, objects.pack_time(objects.now_ns()))
            wt.put(layout.REFS, layout.pin_ref(name), key)

        self._repo.kv.update(txn)

    def unpin(self, name: str) -> bool:
        if not fits(name, "pin name"):
            return False  # no pin has a longer name: it would not fit its key
        return self._repo.kv.update(lambda wt: wt.delete(layout.REFS, layout.pin_ref(name)))

    def pins(self) -> dict[str, str]:
        with self._repo.kv.read() as rt:
            return {
                layout.pin_name(k) or "": v.hex()
                for k, v in rt.items(layout.REFS, layout.PIN_PREFIX, layout.prefix_upper(layout.PIN_PREFIX))
            }

    def set(self, name: bytes, object_keys: Sequence[bytes]) -> None:
        """Low-level root: a ref holds a list of object ids that gc must keep (memory, pins).

        Names under ``inflight/`` and ``erase/`` are the store's own (UsageError)."""
        if layout.reserved_ref(name):
            raise UsageError(
                f"ref name {name!r} is reserved: the store writes inflight/ and erase/ refs itself",
                name=name.decode("utf-8", "replace"),
                hint="choose a ref name outside inflight/ and erase/, e.g. sdk/NAME",
            )
        from . import reachability

        def txn(wt: WriteTxn) -> None:
            stamp = objects.pack_time(objects.now_ns())  # inside the transaction (see gc.collect)
            for k in object_keys:
                reachability.keep(wt, k, stamp)
            wt.put(layout.REFS, name, b"".join(object_keys))

        self._repo.kv.update(txn)


class CheckpointCache:
    """``repo.cache``: the SDK's checkpoint cache records (an optimisation: damage is a miss)."""

    __slots__ = ("_repo",)

    def __init__(self, repo: Repository) -> None:
        self._repo = repo

    def get(self, key: bytes) -> mf.CacheRecord | None:
        with self._repo.kv.read() as rt:
            raw = rt.get(layout.CACHE, key)
        if raw is None:
            return None
        try:
            return mf.decode_cache(raw)
        except (msgspec.DecodeError, UnicodeDecodeError):
            return None  # a damaged or newer cache record is a miss; the cache is only an optimisation

    def put(self, key: bytes, record: mf.CacheRecord) -> None:
        self._repo.kv.update(lambda wt: wt.put(layout.CACHE, key, mf.encode(record)))

    def delete(self, key: bytes) -> None:
        self._repo.kv.update(lambda wt: wt.delete(layout.CACHE, key))

    def clear(self) -> int:
        kv = self._repo.kv
        keys = [k for k, _ in kv.scan(layout.CACHE)]

        def txn(wt: WriteTxn) -> int:
            return sum(wt.delete(layout.CACHE, k) for k in keys)

        return kv.update(txn) if keys else 0
