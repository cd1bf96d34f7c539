"""Unique-prefix lookup: the full id a short hex prefix names in one keyed table."""

from __future__ import annotations

from . import ids, layout
from .errors import AmbiguousIdError, ExecutionNotFoundError, NotFoundError, ObjectNotFoundError

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (see kitaru_store/__init__.py)
if TYPE_CHECKING:
    from .kv import Store

_SHOWN = 10  # candidates an AmbiguousIdError lists at most (one more proves the ambiguity)


def resolve_prefix(kv: Store, db: bytes, prefix: str, full: int, what: str) -> str:
    """The one key of ``db`` whose hex starts with ``prefix`` (``full`` hex digits when whole).

    None: the not-found error of what ``db`` holds; several: AmbiguousIdError naming them."""
    hexp = ids.normalize_hex(prefix, what=what, full_length=full)
    lo, hi = layout.hex_prefix_range(hexp)
    found: list[str] = []
    with kv.read() as rt:
        for key, _ in rt.items(db, lo, hi):
            h = key.hex()
            if h.startswith(hexp):
                found.append(h)
                if len(found) > _SHOWN:
                    break
    if not found:
        if db == layout.MANIFESTS:
            raise ExecutionNotFoundError(prefix)
        if db == layout.ARTIFACTS:
            raise NotFoundError(
                f"no artifact {prefix!r} in the store",
                name=prefix,
                hint="artifact ids are listed with their execution's artifacts",
            )
        raise ObjectNotFoundError(prefix)
    if len(found) > 1:
        raise AmbiguousIdError(prefix, found, what=what)
    return found[0]
