"""The executions part of a Repository: manifests read, listed, resolved, changed and deleted."""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from . import ids, layout, listing
from . import manifest_store as ms
from . import manifests as mf
from .errors import CorruptionError, ExecutionNotFoundError, NotFoundError
from .manifests import Entry, ExecutionSummary, Manifest
from .prefixes import resolve_prefix
from .resolve import name_index, resolve

if TYPE_CHECKING:
    from .repository import Repository

_MANIFEST_CACHE = 64  # manifests kept per process for load by name (checked against their head)

# Assembled manifests and their name indexes, shared by every Repository of the process (a flow
# run opens its own): (LMDB path, execution key) -> (version, head checksum, manifest, index).
_manifests: dict[tuple[str, bytes], tuple[tuple[int, int], bytes, Manifest, dict[str, list[Entry]]]] = {}
_manifests_lock = threading.Lock()


def _keep(cache: dict[Any, Any], key: Any, value: Any, limit: int) -> None:
    """Put ``value`` in ``cache`` as its newest entry, dropping the oldest beyond ``limit``."""
    cache.pop(key, None)
    if len(cache) >= limit:
        cache.pop(next(iter(cache)))
    cache[key] = value


class Executions:
    """``repo.executions``: one manifest per execution, and the indexes that find them."""

    __slots__ = ("_repo",)

    def __init__(self, repo: Repository) -> None:
        self._repo = repo

    def resolve(self, prefix: str) -> str:
        """The full execution id for a unique prefix of at least 4 hex characters."""
        return resolve_prefix(self._repo.kv, layout.MANIFESTS, prefix, ids.UUID_HEX, "execution id")

    def get(self, exec_id: str, *, observe: bool = True) -> Manifest:
        """The execution's manifest. ``running`` with an owner that is gone reads as failed
        (Crashed), recorded if the store is writable (liveness.py); ``observe=False``: as stored."""
        return self._observed(self._cached_manifest(exec_id)[0], observe)

    def head(self, exec_id: str, *, observe: bool = True) -> Manifest:
        """The execution's manifest without its entries, checkpoints and waits (empty tuples):
        status, owner, cancel request and the other scalars, read from one record whatever the
        flow's length (a cancel poll, a handle's status)."""
        full = self._full_id(exec_id)
        with self._repo.kv.read(buffers=True) as rt:
            manifest = ms.load(rt, layout.uuid_key(full), full, parts=False)
        return self._observed(manifest, observe)

    def _observed(self, manifest: Manifest, observe: bool) -> Manifest:
        if observe and manifest.status == "running" and manifest.owner is not None:
            from . import liveness

            manifest = liveness.observe(self._repo, manifest)
        return manifest

    def _full_id(self, exec_id: str) -> str:
        cleaned = exec_id.strip().lower().replace("-", "") if isinstance(exec_id, str) else ""
        return cleaned if len(cleaned) == ids.UUID_HEX else self.resolve(exec_id)

    def _cached_manifest(self, exec_id: str) -> tuple[Manifest, dict[str, list[Entry]]]:
        """The manifest and its name index, read once per version of the execution.

        kitaru.load() by name asks for the same manifest again and again; assembling one of
        thousands of entries takes milliseconds. A cached copy is current if nothing at all was
        committed since it was read (ReadTxn.version); otherwise it serves while the stored
        head is the very head it was read with (its checksum): every commit that changes an
        execution writes a new head (with a new random ``rev``), so a change by any writer, or
        damage to the head, is never missed. Either check costs the same whatever the flow's length.
        """
        full = self._full_id(exec_id)
        key = layout.uuid_key(full)
        slot = (self._repo.db_path, key)
        hit = _manifests.get(slot)
        with self._repo.kv.read(buffers=True) as rt:
            version = rt.version()
            if hit is not None and hit[0] == version:
                return hit[2], hit[3]
            view = rt.get_view(layout.MANIFESTS, key)
            if view is None:
                raise ExecutionNotFoundError(exec_id)
            tag = ms.stored_tag(view, key)
            if hit is not None and tag is not None and tag == hit[1]:
                manifest, index = hit[2], hit[3]
            else:
                manifest = ms.from_view(rt, key, view, full)
                index = name_index(manifest)
        with _manifests_lock:  # checkpoints on a thread pool, and every Repository of the process
            if tag is not None:
                _keep(_manifests, slot, (version, tag, manifest, index), _MANIFEST_CACHE)
            else:
                _manifests.pop(slot, None)
        return manifest, index

    def iterate(
        self, *, flow: str | None = None, status: str | None = None, expect: int = listing.BATCH
    ) -> Iterator[ExecutionSummary]:
        """Executions newest first, read from the time index in short transactions.

        ``expect``: about how many rows the caller will take (the first read is that large).

        A damaged summary is a row of its own, a ``DamagedSummary`` (status "damaged", whatever
        ``status`` asks for), and the listing goes on.
        """
        from .liveness import observe_summary

        observe = functools.partial(observe_summary, self._repo)
        for batch in listing.summary_batches(self._repo.kv, flow=flow, first=expect):
            yield from listing.rows(batch, mf.decode_summary, flow=flow, status=status, observe=observe)

    def page(
        self, *, flow: str | None = None, status: str | None = None, limit: int = 50, offset: int = 0
    ) -> list[ExecutionSummary]:
        out: list[ExecutionSummary] = []
        rows = self.iterate(flow=flow, status=status, expect=offset + limit + 1)
        for i, summary in enumerate(rows):
            if i < offset:
                continue
            if len(out) >= limit:
                break
            out.append(summary)
        return out

    def count(self) -> int:
        with self._repo.kv.read() as rt:
            return rt.count(layout.MANIFESTS)

    def latest(self, *, flow: str | None = None) -> ExecutionSummary | None:
        return next(self.iterate(flow=flow, expect=1), None)

    def create(self, flow_name: str, /, **kwargs: Any) -> str:
        """A new execution (Writer.create_execution's arguments), committed at once."""
        with self._repo.writer() as w:
            return w.create_execution(flow_name, **kwargs)

    def update(self, exec_id: str, /, **changes: Any) -> None:
        """Change scalar fields (Writer.update_execution), committed at once."""
        with self._repo.writer() as w:
            w.update_execution(self.resolve(exec_id), **changes)

    def delete(self, exec_id: str, *, check: Callable[[Manifest], None] | None = None) -> None:
        """Forget an execution; its objects become garbage for the next gc (after the grace period).

        ``check`` sees the manifest inside the deleting transaction and may refuse by raising.
        """
        full = self.resolve(exec_id)
        key = layout.uuid_key(full)

        self._repo.kv.update(lambda wt: ms.delete(wt, key, full, check))
        from . import liveness

        liveness.remove_free(liveness.lock_path(self._repo.root, full))  # a killed run's, if it left one

    # -- names and artifacts ----------------------------------------------------------------

    def resolve_name(self, exec_id: str, name: str) -> Entry:
        manifest, index = self._cached_manifest(exec_id)
        return resolve(manifest, name, index=index)

    def artifact(self, artifact_id: str) -> tuple[Manifest, Entry]:
        """The execution holding an artifact (by id or unique prefix), and its entry."""
        full = resolve_prefix(self._repo.kv, layout.ARTIFACTS, artifact_id, ids.UUID_HEX, "artifact id")
        with self._repo.kv.read() as rt:
            exec_key = rt.get(layout.ARTIFACTS, layout.uuid_key(full))
        if exec_key is None:
            raise NotFoundError(
                f"no artifact {artifact_id!r}",
                name=artifact_id,
                hint="the artifact's execution may have been deleted",
            )
        manifest = self.get(exec_key.hex())
        for entry in manifest.entries:
            if entry.artifact_id == full:
                return manifest, entry
        raise CorruptionError(
            f"artifact {full} is indexed but missing from execution {manifest.exec_id}",
            exec_id=manifest.exec_id,
            name=full,
            hint="run `kitaru-store fsck`",
        )
